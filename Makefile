# wasmlet — see README.md. `make run` starts the host on plugins.toml;
# `make test` runs the whole test suite.

GO        ?= go
BUILD     ?= build
GOTEST    ?= $(GO) test
TESTFLAGS ?= -race -timeout 40m
BENCHSTAT  = $(GO) run golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da
VERSION   ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)

# Loaded by `make run` (plugins.toml configures them).
GO_GUESTS := devicepluginhandler csihandler customhandler pcisource devsource gpusim
# Built alongside, not loaded: copy one into build/modules while wasmlet runs
# to watch it load.
EXTRA_GO_GUESTS := counter
C_GUESTS  := counter

.PHONY: all build guests wasmlet run test test-short bench fuzz lint wat clean

all: build

build: wasmlet guests

# Go prints nothing while it builds, and a first build (nothing cached yet)
# takes a minute or more: say what is going on.
wasmlet:
	@echo "building wasmlet (the first build takes a minute or two; later ones are quick)..."
	@$(GO) build -ldflags "-X github.com/wasmlet/wasmlet/host/node.Version=$(VERSION)" -o $(BUILD)/wasmlet ./cmd/wasmlet
	@echo "built $(BUILD)/wasmlet"

# Guest modules for `make run`, in the module directory plugins.toml names.
guests: $(GO_GUESTS:%=$(BUILD)/modules/%.wasm) $(EXTRA_GO_GUESTS:%=$(BUILD)/modules-extra/%.wasm) \
	$(C_GUESTS:%=$(BUILD)/modules-extra/c-%.wasm) $(BUILD)/modules/gpusim-shared.wasm

# gpusim-shared is gpusim once more, under another name and configuration
# (plugins.toml): a link, which wasmlet loads as the file it points to.
$(BUILD)/modules/gpusim-shared.wasm: $(BUILD)/modules/gpusim.wasm
	@ln -sfn gpusim.wasm $@

# Modules are built next to their destination and renamed into place, so a
# running wasmlet never sees half a file.
$(BUILD)/modules/%.wasm $(BUILD)/modules-extra/%.wasm: FORCE
	@mkdir -p $(dir $@)
	@echo "building module $* (Go, wasip1) -> $@..."
	@GOOS=wasip1 GOARCH=wasm $(GO) build -buildmode=c-shared -trimpath -o $(dir $@).$(notdir $@).tmp ./guests/$*
	@mv $(dir $@).$(notdir $@).tmp $@

$(BUILD)/modules-extra/c-%.wasm: guests/c/%.c
	@mkdir -p $(dir $@)
	@echo "building module c-$* (C, wasm32-wasi) -> $@..."
	@clang --target=wasm32-wasi -mexec-model=reactor -O2 -Wall -Werror -o $@ $<

FORCE:

run: build
	@echo "starting wasmlet on plugins.toml (Ctrl-C stops it; the first start compiles the modules)..."
	$(BUILD)/wasmlet run --config plugins.toml

# Modules of their own inside the repository, which `./...` at the root does
# not enter: the ABI package and the guest SDK, which module authors depend
# on (abi/doc.go says why they are separate), and tests/k8s (real Kubernetes
# components, kept out of wasmlet's dependency graph). GUEST_MODULES also
# build for wasip1.
GUEST_MODULES := abi guests/sdk
MODULES := $(GUEST_MODULES) tests/k8s

test:
	$(GOTEST) $(TESTFLAGS) ./...
	@set -e; for m in $(MODULES); do echo "cd $$m && $(GOTEST) $(TESTFLAGS) ./..."; \
		(cd $$m && $(GOTEST) $(TESTFLAGS) ./...); done

# The suite without the race detector: quicker while working.
test-short:
	$(GOTEST) -timeout 20m ./...
	@set -e; for m in $(MODULES); do (cd $$m && $(GOTEST) -timeout 20m ./...); done

# Benchmarks, six runs each, summarised as medians by benchstat, written with
# the raw output to bench/results.txt: the file README.md quotes its figures
# from (tests/docs checks that every benchmark it names is there). One
# package at a time (-p 1): the checkpoint's fsync benchmarks would otherwise
# stall every other package's file system operations. BENCH_PKGS, BENCH and
# BENCH_COUNT narrow a run; write it elsewhere (BENCH_OUT) unless it is the
# whole set. BENCH_K8S_PKGS are the packages of the tests/k8s module ("" for
# none).
BENCH_PKGS  ?= ./...
BENCH_K8S_PKGS ?= ./...
BENCH       ?= .
BENCH_COUNT ?= 6
BENCH_OUT   ?= bench/results.txt
bench:
	@mkdir -p $(BUILD) $(dir $(BENCH_OUT))
	$(GOTEST) -p 1 -run '^$$' -bench '$(BENCH)' -count $(BENCH_COUNT) -timeout 60m $(BENCH_PKGS) > $(BUILD)/bench.txt \
		|| { cat $(BUILD)/bench.txt; exit 1; }
	$(if $(BENCH_K8S_PKGS),cd tests/k8s && $(GOTEST) -p 1 -run '^$$' -bench '$(BENCH)' -count $(BENCH_COUNT) -timeout 60m $(BENCH_K8S_PKGS) >> $(abspath $(BUILD))/bench.txt \
		|| { cat $(abspath $(BUILD))/bench.txt; exit 1; })
	$(BENCHSTAT) $(BUILD)/bench.txt > $(BUILD)/benchstat.txt
	{ echo "# make bench: go test -p 1 -run '^$$' -bench '$(BENCH)' -count $(BENCH_COUNT) $(BENCH_PKGS)$(if $(BENCH_K8S_PKGS), and in tests/k8s $(BENCH_K8S_PKGS))"; \
	  echo "# at $(VERSION); medians by benchstat, then the raw output."; echo; \
	  cat $(BUILD)/benchstat.txt; echo; echo "# raw output"; echo; cat $(BUILD)/bench.txt; } > $(BENCH_OUT)
	@cat $(BUILD)/benchstat.txt
	@echo "written to $(BENCH_OUT)"

# Every fuzz target for FUZZTIME each (their seed corpora also run, briefly,
# in `make test`). A failure leaves its input in testdata/fuzz, to commit.
# .ci/fuzz runs each in its package's directory, so targets in the nested
# modules (./abi) work too.
FUZZTIME ?= 30s
FUZZ_TARGETS := \
	./internal/abipb:FuzzDecode \
	./internal/abipb:FuzzNamesAgreeWithKubernetes \
	./checkpoint:FuzzDecode \
	./checkpoint:FuzzPayload \
	./host/config:FuzzParse \
	./host/module:FuzzModuleReply \
	./host/module:FuzzHandlerInputs \
	./abi:FuzzNames \
	./host/devicemanager:FuzzRegisterRequest \
	./host/claim:FuzzDecode \
	./host/module/wasmbin:FuzzParse \
	./host/module/internal/interrupt:FuzzInstrument
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo "== $$pkg $$name ($(FUZZTIME))"; \
		GO=$(GO) .ci/fuzz $$pkg $$name $(FUZZTIME); \
	done

lint:
	$(GO) vet ./...
	cd tests/k8s && $(GO) vet ./...
	GOOS=wasip1 GOARCH=wasm $(GO) vet ./guests/...
	@set -e; for m in $(GUEST_MODULES); do echo "cd $$m && $(GO) vet ./... (host and wasip1)"; \
		(cd $$m && $(GO) vet ./... && GOOS=wasip1 GOARCH=wasm $(GO) vet ./...); done
	@test -z "$$(gofmt -l .)" || (gofmt -l . && exit 1)

# Rebuild the committed hand-written test modules from their .wat sources.
wat:
	for f in guests/testmodules/wat/*.wat host/module/internal/interrupt/testdata/*.wat; do wat2wasm $$f -o $${f%.wat}.wasm; done

clean:
	rm -rf $(BUILD)
