package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/wasmlet/wasmlet/guests/build"
	"github.com/wasmlet/wasmlet/host/api"
	"github.com/wasmlet/wasmlet/host/api/adminpb"
)

// What becomes of a hostile module.
type fate int

const (
	// refusedAtLoad: the file is refused, nothing of it runs.
	refusedAtLoad fate = iota
	// quarantined: each call faults within the call timeout + 1 s, and the
	// module is quarantined after quarantine_after faults.
	quarantined
	// contained: the module answers, and what it attempts is refused
	// without a fault (the checks are its own).
	contained
)

// hostile is one module of the corpus, as the table test runs it.
type hostile struct {
	name string
	// file is a committed module (under guests/testmodules), or guest a Go
	// guest's directory.
	file, guest string
	// config is its [modules.<name>] section's body.
	config string
	fate   fate
	// says is part of why it was refused, or of its last fault; "|"
	// separates alternatives.
	says string
	// timesOut: its faults are timeouts, so each of its calls lasts at
	// least the call timeout.
	timesOut bool
	// timeout is its call timeout when not hostileTimeout: a Go guest
	// whose fault is not a timeout gets room, so that a loaded machine
	// (the race detector slows a guest building an 8 MiB reply) cannot
	// turn its fault into a timeout.
	timeout time.Duration
}

// callTimeout is the module's call timeout.
func (m hostile) callTimeout() time.Duration {
	if m.timeout != 0 {
		return m.timeout
	}
	return hostileTimeout
}

// The call timeout and quarantine_after of every hostile module, and the
// first retry of a failed discovery (devicesource.DefaultRetryBackoff).
const (
	hostileTimeout = 300 * time.Millisecond
	quarantineN    = 2
	retryBackoff   = 500 * time.Millisecond
)

// memoryBomb is how a module that grows its memory without end is
// stopped: at its memory limit, or, on a loaded machine, at its deadline
// before it gets there (running, or in a runtime's sleep between
// allocations).
const memoryBomb = "memory: ran out of its 32 MiB memory limit|timeout: "

// hostileCorpus is every hostile module in guests/testmodules, by the case
// of issue 11 it stands for.
func hostileCorpus() []hostile {
	faulty := func(name, fault, says string, f fate) hostile {
		h := hostile{name: name, guest: "guests/testmodules/faulty", fate: f, says: says, timesOut: fault == "loop" || fault == "sleep",
			config: fmt.Sprintf("config = { fault = %q, resource = \"example.com/%s\" }", fault, name)}
		if f == quarantined && !h.timesOut && fault != "memory" {
			h.timeout = 5 * time.Second
			h.config += fmt.Sprintf("\ntimeout = %q", h.timeout.String())
		}
		return h
	}
	wat := func(name string, f fate, says string) hostile {
		return hostile{name: "wat-" + strings.ReplaceAll(name, "_", "-"), file: "guests/testmodules/wat/" + name + ".wasm", fate: f, says: says,
			timesOut: name == "loop" || name == "sleep"}
	}
	malformed := func(name, says string) hostile {
		return hostile{name: "malformed-" + strings.ReplaceAll(name, "_", "-"), file: "guests/testmodules/malformed/" + name + ".wasm",
			fate: refusedAtLoad, says: says}
	}
	return []hostile{
		// 1. Bytes that lie about their sizes, or are not WebAssembly.
		malformed("huge_function_count", "a vector of 4294967295 elements cannot fit"),
		malformed("huge_local_groups", "a vector of 2147483647 elements cannot fit"),
		malformed("huge_locals", "more than 50000 locals"),
		malformed("huge_name_count", "a vector of 4294967295 elements cannot fit"),
		malformed("huge_data_length", "4294967295 bytes wanted"),
		malformed("huge_custom_section", "4294967295 bytes wanted"),
		wat("not_wasm", refusedAtLoad, "not a WebAssembly module"),
		wat("table_huge", refusedAtLoad, "table 0 starts with 134217728 elements"),
		// 2. Start sections, looping or not: modules are reactors.
		wat("start_loop", refusedAtLoad, "a start section is not allowed"),
		wat("start_benign", refusedAtLoad, "a start section is not allowed"),
		// The ABI itself broken.
		wat("bad_import", refusedAtLoad, "imports env.abort"),
		wat("missing_exports", refusedAtLoad, "missing required export"),
		wat("wrong_signature", refusedAtLoad, "export wasmlet_alloc has type (i64) -> i32"),
		wat("wrong_version", refusedAtLoad, "declares ABI version 2"),
		wat("describe_lies", refusedAtLoad, `declares operation "allocate" but does not export`),
		// Initialisation that panics or never ends.
		faulty("go-init-panic", "initpanic", "panic: faulty: panic during initialisation", refusedAtLoad),
		faulty("go-init-loop", "initloop", "_initialize: timeout", refusedAtLoad),
		// 3. Calls that never end, in WebAssembly or in WASI, and recursion.
		wat("loop", quarantined, "timeout: did not return within 300ms"),
		wat("sleep", quarantined, "timeout: blocked in a host call (poll_oneoff, sleeping)"),
		wat("recurse", quarantined, "call depth exceeded"),
		faulty("go-loop", "loop", "timeout: did not return within 300ms", quarantined),
		faulty("go-sleep", "sleep", "timeout: blocked in a host call (poll_oneoff, sleeping)", quarantined),
		faulty("go-stack", "stack", "call depth exceeded", quarantined),
		// Replies and memory out of bounds, traps, panics, exits.
		wat("trap", quarantined, "trap: wasm error: unreachable"),
		wat("memory_grow", quarantined, memoryBomb),
		wat("table_grow", quarantined, "trap"),
		wat("malformed_reply", quarantined, "malformed: decode DiscoverResponse"),
		wat("reply_out_of_bounds", quarantined, "lies outside the module's 64 KiB of memory"),
		faulty("go-panic", "panic", "panic: faulty: deliberate panic in discover", quarantined),
		faulty("go-memory", "memory", memoryBomb, quarantined),
		faulty("go-exit", "exit", "exit: module exited with code 3", quarantined),
		faulty("go-oversized", "oversized", "oversized: reply of 8388639 B exceeds the limit of 1 MiB", quarantined),
		// Blocking opens: a FIFO in its mount, refused at once.
		{name: "fifo-opener", guest: "guests/testmodules/escape", fate: contained,
			config: `mounts = [{ host = "fifos", guest = "/data" }]` + "\n" + `config = { attempt = "read", path = "/data/fifo" }`},
		// 4. Container edits it was not granted.
		{name: "greedy", guest: "guests/testmodules/greedy", fate: contained,
			config: `config = { discover = "hostile", allocate = "hostile" }`},
	}
}

// TestHostileModules puts the whole hostile corpus into one host, next to
// a good device source that a client keeps allocating from, and checks
// that: the host answers `wasmlet status` within a second throughout;
// the good module's allocations all succeed; every hostile module is
// refused at load, or faults within its call timeout + 1 s and is
// quarantined after quarantine_after faults, or is contained; and SIGTERM
// ends the host within 10 seconds.
//
// The modules that take a configuration are there when the host starts (a
// [modules.<name>] entry needs its file); every other one is dropped into
// the module directory of the running host, all at once.
func TestHostileModules(t *testing.T) {
	corpus := hostileCorpus()
	var sections strings.Builder
	for _, m := range corpus {
		if m.config != "" {
			fmt.Fprintf(&sections, "\n[modules.%s]\n%s\n", m.name, m.config)
		}
	}
	h := newHost(t, map[string]string{"good": "guests/counter"}, fmt.Sprintf(`
[sandbox]
timeout = %q
init_timeout = "2s"
quarantine_after = %d
max_reply = "1MiB"
memory = "32MiB"

# The good module keeps its calm under load.
[modules.good]
config = { resource = "example.com/good", count = "2" }
timeout = "10s"
quarantine_after = 1000
%s`, hostileTimeout, quarantineN, sections.String()))
	h.setLine(`metrics_address = ""`, `metrics_address = "127.0.0.1:0"`)
	fifos := filepath.Join(h.dir, "fifos")
	os.MkdirAll(fifos, 0o755)
	if err := syscall.Mkfifo(filepath.Join(fifos, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Build the Go guests first: the test is about the host, not the
	// compiler.
	files := map[string][]byte{}
	for _, m := range corpus {
		path := ""
		if m.file != "" {
			path = build.Testdata(t, m.file)
		} else {
			path = build.Go(t, m.guest)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		files[m.name] = b
	}
	drop := func(configured bool) {
		for _, m := range corpus {
			if (m.config != "") != configured {
				continue
			}
			tmp := filepath.Join(h.dir, "modules", "."+m.name+".tmp")
			if err := os.WriteFile(tmp, files[m.name], 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(tmp, filepath.Join(h.dir, "modules", m.name+".wasm")); err != nil {
				t.Fatal(err)
			}
		}
	}
	drop(true)

	done := make(chan struct{})
	var wg sync.WaitGroup
	// `wasmlet status`, as a person would run it, over and over, from the
	// moment the host first answers.
	var slowest time.Duration
	var statusErrs []string
	statuses := 0
	wg.Add(1)
	go func() {
		defer wg.Done()
		answered := false
		for {
			select {
			case <-done:
				return
			case <-time.After(100 * time.Millisecond):
			}
			start := time.Now()
			out, code := h.cli("status")
			el := time.Since(start)
			if !answered && code == 3 { // not up yet: cannot reach the host
				continue
			}
			answered = true
			statuses++
			slowest = max(slowest, el)
			if code != 0 || el > time.Second {
				statusErrs = append(statusErrs, fmt.Sprintf("exit %d after %v: %s", code, el, out))
			}
		}
	}()
	h.start()
	c := h.client()
	ctx := context.Background()
	h.eventually("the good module's devices", func() bool {
		r, err := c.ListResources(ctx, &adminpb.ListResourcesRequest{Name: "example.com/good"})
		return err == nil && len(r.Resources) == 1 && r.Resources[0].Healthy == 2
	})
	// A client allocating from the good module and releasing, over and over.
	var allocErrs []string
	allocations := 0
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			default:
			}
			pod := fmt.Sprintf("p%d", i)
			a, err := c.Allocate(ctx, &adminpb.AllocateRequest{Namespace: "ns", Pod: pod, Container: "c", Resource: "example.com/good", Count: 1})
			if err == nil && a.Allocation.GetResponse().GetEnvs()["COUNTER_DEVICES"] == "" {
				err = fmt.Errorf("allocation without the module's edits: %v", a)
			}
			if err == nil {
				_, err = c.Release(ctx, &adminpb.ReleaseRequest{Workload: "ns/" + pod + "/c"})
			}
			if err != nil {
				allocErrs = append(allocErrs, err.Error())
				continue
			}
			allocations++
		}
	}()

	dropped := time.Now()
	drop(false)

	// Follow every module until each has met its fate.
	var last map[string]*adminpb.Module
	h.eventually("every hostile module refused, quarantined or contained", func() bool {
		ms, err := c.ListModules(ctx, &adminpb.ListModulesRequest{})
		if err != nil {
			return false
		}
		last = map[string]*adminpb.Module{}
		for _, m := range ms.Modules {
			last[m.Name] = m
		}
		for _, m := range corpus {
			got := last[m.name]
			switch {
			case got == nil:
				return false
			case m.fate == refusedAtLoad && got.Refused == "":
				return false
			case m.fate == quarantined && !got.Quarantined:
				return false
			case m.fate == contained && !h.containedNow(c, m.name):
				return false
			}
		}
		return true
	})
	t.Logf("%d hostile modules met their fate %v after they were dropped in", len(corpus), time.Since(dropped).Round(time.Millisecond))
	durations := h.callDurations(c, "discover")

	for _, m := range corpus {
		got := last[m.name]
		switch m.fate {
		case refusedAtLoad:
			if got.Refused == "" || got.State != "refused" || !saysOne(got.Refused, m.says) {
				t.Errorf("%s: state %s, refused %q; want refused, saying %q", m.name, got.State, got.Refused, m.says)
			}
		case quarantined:
			if got.Faults != quarantineN || got.ConsecutiveFaults != quarantineN || !saysOne(got.LastFault, m.says) {
				t.Errorf("%s: %d faults (%d in a row), last %q; want %d, the last saying %q", m.name, got.Faults,
					got.ConsecutiveFaults, got.LastFault, quarantineN, m.says)
			}
			// Each call ends within its timeout + 1 s: the durations the
			// host measured add up to at most that for the longest, plus
			// the least the others can have taken.
			n, sum := durations[m.name].n, durations[m.name].sum
			least := time.Duration(0)
			if m.timesOut {
				least = hostileTimeout
			}
			if longest := sum - time.Duration(n-1)*least; n != quarantineN || longest > m.callTimeout()+time.Second {
				t.Errorf("%s: %d discover calls, lasting %v in all; want %d, each within %v", m.name, n, sum, quarantineN, m.callTimeout()+time.Second)
			}
		}
	}
	// The greedy module's allocations are refused, naming the edits.
	_, err := c.Allocate(ctx, &adminpb.AllocateRequest{Namespace: "ns", Pod: "greedy", Container: "c", Resource: "example.com/greedy", Count: 1})
	if err == nil || !strings.Contains(err.Error(), "environment variable LD_PRELOAD") || !strings.Contains(err.Error(), "/dev/mem") {
		t.Errorf("an allocation from the greedy module: %v", err)
	}

	close(done)
	wg.Wait()
	t.Logf("%d `wasmlet status` runs, the slowest %v; %d allocations from the good module", statuses, slowest.Round(time.Millisecond), allocations)
	if len(statusErrs) > 0 {
		t.Errorf("wasmlet status failed or took over a second %d times of %d: %s", len(statusErrs), statuses, strings.Join(statusErrs, "\n"))
	}
	if len(allocErrs) > 0 || allocations == 0 {
		t.Errorf("%d allocations from the good module failed, %d succeeded: %s", len(allocErrs), allocations, strings.Join(allocErrs, "\n"))
	}

	start := time.Now()
	if err := h.stop(); err != nil {
		t.Fatalf("wasmlet exited with %v\n%s", err, h.logs())
	}
	if el := time.Since(start); el > 10*time.Second {
		t.Fatalf("wasmlet took %v to stop after SIGTERM", el)
	} else {
		t.Logf("stopped %v after SIGTERM", el.Round(time.Millisecond))
	}
}

// containedNow reports whether the contained module name has done its
// worst, and been refused: the FIFO opener answers that its open failed,
// and the greedy module offers only its plain device.
func (h *host) containedNow(c *api.Client, name string) bool {
	resource := map[string]string{"fifo-opener": "example.com/escape", "greedy": "example.com/greedy"}[name]
	r, err := c.ListResources(context.Background(), &adminpb.ListResourcesRequest{Name: resource})
	if err != nil || len(r.Resources) != 1 {
		return false
	}
	var ids []string
	for _, d := range r.Resources[0].Devices {
		ids = append(ids, d.Id)
		if name == "fifo-opener" && d.Attributes["ok"] != "false" {
			return false
		}
	}
	if name == "greedy" {
		return slices.Equal(ids, []string{"plain-0"})
	}
	return slices.Equal(ids, []string{"outcome"})
}

// saysOne reports whether s contains one of the "|"-separated parts.
func saysOne(s, parts string) bool {
	return slices.ContainsFunc(strings.Split(parts, "|"), func(p string) bool { return strings.Contains(s, p) })
}

// setLine replaces a line of the host's plugins.toml.
func (h *host) setLine(old, line string) {
	h.t.Helper()
	b, err := os.ReadFile(h.config)
	if err != nil {
		h.t.Fatal(err)
	}
	if !strings.Contains(string(b), old+"\n") {
		h.t.Fatalf("plugins.toml has no line %s", old)
	}
	b = []byte(strings.Replace(string(b), old+"\n", line+"\n", 1))
	if err := os.WriteFile(h.config, b, 0o644); err != nil {
		h.t.Fatal(err)
	}
}

// callDurations scrapes the host's /metrics for how many calls of op each
// module had, and how long they lasted in all
// (wasmlet_module_call_duration_seconds).
func (h *host) callDurations(c *api.Client, op string) map[string]struct {
	n   int
	sum time.Duration
} {
	h.t.Helper()
	st, err := c.Status(context.Background(), &adminpb.StatusRequest{})
	if err != nil {
		h.t.Fatal(err)
	}
	resp, err := http.Get("http://" + st.MetricsAddress + "/metrics")
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	out := map[string]struct {
		n   int
		sum time.Duration
	}{}
	suffix := `",op="` + op + `"} `
	for _, line := range strings.Split(string(body), "\n") {
		for _, series := range []string{"_sum", "_count"} {
			rest, ok := strings.CutPrefix(line, "wasmlet_module_call_duration_seconds"+series+`{module="`)
			if !ok {
				continue
			}
			name, value, ok := strings.Cut(rest, suffix)
			if !ok {
				continue
			}
			v, err := strconv.ParseFloat(value, 64)
			if err != nil {
				h.t.Fatalf("/metrics: %q: %v", line, err)
			}
			d := out[name]
			if series == "_sum" {
				d.sum = time.Duration(v * float64(time.Second))
			} else {
				d.n = int(v)
			}
			out[name] = d
		}
	}
	return out
}
