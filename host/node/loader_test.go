package node

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wasmlet/wasmlet/guests/build"
	"github.com/wasmlet/wasmlet/host/devicemanager"
	"github.com/wasmlet/wasmlet/host/internal/testenv"
	"github.com/wasmlet/wasmlet/internal/syncbuf"
	"github.com/wasmlet/wasmlet/internal/testkit"
)

func testModule(t *testing.T, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(build.Testdata(t, "guests/testmodules/"+rel))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

const slowTOML = `
[modules.slow]
config = { fault = "slowinit", delay_ms = "5000", resource = "example.com/slow" }
`

// TestSlowLoadDoesNotHoldUpOthers: a module file whose initialisation takes
// five seconds loads beside a module dropped in after it, which is served at
// once rather than after the slow one.
func TestSlowLoadDoesNotHoldUpOthers(t *testing.T) {
	h, path, log := startSlowLoad(t, "guests/testmodules/wat/minimal.wasm")
	testenv.WriteFile(t, filepath.Join(h.dir, "modules", "quick.wasm"), testModule(t, "wat/mirror.wasm"))
	h.eventually("quick loaded", func() bool { return h.n.Modules().Get("quick") != nil })
	if log.Count("module load finished: path="+path) != 1 {
		t.Fatal("the slow module finished first: loads were not concurrent")
	}
	h.eventually("slow loaded", func() bool {
		m := h.n.Modules().Get("slow")
		return m != nil && m.Serves() == "example.com/slow"
	})
}

// startSlowLoad starts a node with module slow from first (a quick one:
// the configuration names slow, so its file must exist), then replaces
// slow.wasm, at path, with a module whose initialisation takes five
// seconds, and returns once that load is under way. log is the node's log.
func startSlowLoad(t *testing.T, first string) (h *harness, path string, log *syncbuf.Buffer) {
	t.Helper()
	log = &syncbuf.Buffer{}
	h = start(t, map[string]string{"slow": first}, slowTOML, withLog(log))
	path = filepath.Join(h.dir, "modules", "slow.wasm")
	testenv.WriteFile(t, path, testkit.ReadFile(t, build.Go(t, "guests/testmodules/faulty")))
	h.eventually("the slow load under way", func() bool { return log.Count("loading module: path="+path) == 2 })
	return h, path, log
}

// TestChangesToOneFileApplyInOrder: a file replaced while its previous
// version is still loading ends up served in its last version, whichever
// load would finish first.
func TestChangesToOneFileApplyInOrder(t *testing.T) {
	h, path, log := startSlowLoad(t, "guests/testmodules/wat/mirror.wasm")
	testenv.WriteFile(t, path, testModule(t, "wat/minimal.wasm")) // quick to load, but last
	h.eventually("every load done", func() bool { return log.Count("module load finished: path="+path) == 3 })
	if m := h.n.Modules().Get("slow"); m == nil || m.Serves() != "example.com/wat" {
		t.Fatalf("serving %v, want the last file (minimal.wat)", m)
	}
}

// TestHostileModulesBesideGoodOnes starts a node with every hostile module
// that attacks the bytes or the start of a module, and recursion, next to
// good ones: the node becomes ready (a start function that loops used to
// wedge the loader), each file is refused with a reason naming the problem,
// the recursion faults with its call depth and is quarantined, and the good
// modules serve throughout.
func TestHostileModulesBesideGoodOnes(t *testing.T) {
	modules := map[string]string{
		"counter":      "guests/counter",
		"start_loop":   "guests/testmodules/wat/start_loop.wasm",
		"start_benign": "guests/testmodules/wat/start_benign.wasm",
		"recurse":      "guests/testmodules/wat/recurse.wasm",
		"table_huge":   "guests/testmodules/wat/table_huge.wasm",
	}
	refused := map[string]string{
		"start_loop":   `modules are reactors; a start section is not allowed (this one runs function 4 ("spin")`,
		"start_benign": "modules are reactors; a start section is not allowed (this one runs function 4 when",
		"table_huge":   "table 0 starts with 134217728 elements",
	}
	malformed, _ := filepath.Glob(filepath.Join(filepath.Dir(build.Testdata(t, "guests/testmodules/doc.go")), "malformed", "*.wasm"))
	for _, p := range malformed {
		name := strings.TrimSuffix(filepath.Base(p), ".wasm")
		modules[name] = "guests/testmodules/malformed/" + filepath.Base(p)
		refused[name] = "is not a well-formed WebAssembly module: "
	}
	if len(malformed) < 6 {
		t.Fatalf("malformed modules: %v", malformed)
	}
	h := start(t, modules, `
[modules.counter]
config = { resource = "example.com/counter", count = "2" }

[modules.recurse]
quarantine_after = 3

[sources]
recurse = { discover_interval = "50ms" }
`)

	for _, info := range h.n.Modules().List() {
		want, ok := refused[info.Name]
		if !ok {
			continue
		}
		delete(refused, info.Name)
		if info.Module != nil || info.Err == nil || !strings.Contains(info.Err.Error(), want) ||
			!strings.Contains(info.Err.Error(), `module "`+info.Name+`"`) {
			t.Errorf("%s: loaded %v, error %v; want refused saying %q", info.Name, info.Module != nil, info.Err, want)
		}
	}
	for name := range refused {
		t.Errorf("%s: not tried at start", name)
	}

	h.eventually("recurse quarantined", func() bool {
		m := h.n.Modules().Get("recurse")
		return m != nil && m.Status().Quarantined
	})
	if st := h.n.Modules().Get("recurse").Status(); !strings.Contains(st.LastFault, "trap: call depth exceeded 32768") {
		t.Errorf("recurse: last fault %q", st.LastFault)
	}
	for res, n := range map[string]int{"example.com/counter": 2} {
		h.eventually(res+" healthy", func() bool { r, ok := h.resource(res); return ok && r.Healthy == n })
		if _, err := h.n.Devices().Allocate(context.Background(), devicemanager.AllocateRequest{
			Namespace: "ns", Pod: "p", Container: res, Resource: res, Count: 1}); err != nil {
			t.Errorf("allocate %s: %v", res, err)
		}
	}
	h.metricsHave(`wasmlet_module_faults_total{fault="trap",module="recurse"} 3`, `wasmlet_module_quarantined{module="recurse"} 1`)
	if err := h.stop(); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
}
