package interrupt

import (
	"context"
	"errors"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/wasmlet/wasmlet/guests/build"
	"github.com/wasmlet/wasmlet/host/module/wasmbin"
	"github.com/wasmlet/wasmlet/internal/testkit"
)

func instrument(t testing.TB, bin []byte, maxDepth uint32) []byte {
	t.Helper()
	m, err := wasmbin.Parse(bin)
	if err != nil {
		t.Fatal(err)
	}
	out, err := Instrument(m, Limits{CallDepth: maxDepth, TableElements: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// instantiate compiles bin with wazero's compiler and instantiates it.
func instantiate(t testing.TB, bin []byte) api.Module {
	t.Helper()
	ctx := context.Background()
	rt := wazero.NewRuntime(ctx)
	t.Cleanup(func() { rt.Close(ctx) })
	mod, err := rt.InstantiateWithConfig(ctx, bin, wazero.NewModuleConfig().WithName(""))
	if err != nil {
		t.Fatal(err)
	}
	return mod
}

func call(mod api.Module, name string, args ...uint64) ([]uint64, error) {
	return mod.ExportedFunction(name).Call(context.Background(), args...)
}

// TestResultsAreKept calls every function of calls.wat, which leaves in
// every way a function can (return from nested blocks, br and br_table to
// the function's label, several results, through the table), before and
// after instrumentation: the results are the same. Then it calls each of
// them many times under a depth limit of 100: were the depth not lowered on
// every way out, it would pile up and trap.
func TestResultsAreKept(t *testing.T) {
	bin := testkit.ReadFile(t, "testdata/calls.wasm")
	orig := instantiate(t, bin)
	inst := instantiate(t, instrument(t, bin, 100))
	calls := []struct {
		fn   string
		args []uint64
		want uint64
	}{
		{"fib", []uint64{10}, 55},
		{"early", []uint64{0}, 100},
		{"early", []uint64{1}, 101},
		{"early", []uint64{2}, 112},
		{"early", []uint64{3}, 1102},
		{"early", []uint64{7}, 102},
		{"sum_pair", []uint64{0}, 7},
		{"sum_pair", []uint64{1}, 3},
		{"indirect", []uint64{0, 6}, 8},
		{"indirect", []uint64{1, 3}, 1102},
		{"deep", []uint64{90}, 90},
	}
	for _, c := range calls {
		want, err := call(orig, c.fn, c.args...)
		if err != nil || want[0] != c.want {
			t.Fatalf("original %s%v = %v, %v; want %d", c.fn, c.args, want, err, c.want)
		}
		got, err := call(inst, c.fn, c.args...)
		if err != nil || got[0] != want[0] {
			t.Fatalf("instrumented %s%v = %v, %v; want %v", c.fn, c.args, got, err, want)
		}
	}
	for range 1000 {
		for _, c := range calls {
			if _, err := call(inst, c.fn, c.args...); err != nil {
				t.Fatalf("%s%v: %v: the depth was not lowered on the way out", c.fn, c.args, err)
			}
		}
	}
}

// TestDepthLimit: a recursion traps when it would take the depth past the
// limit, leaving wasmlet_depth over it; one frame less passes, and leaves
// it at zero.
func TestDepthLimit(t *testing.T) {
	bin := testkit.ReadFile(t, "testdata/calls.wasm")
	const limit = 1000
	out := instrument(t, bin, limit)
	mod := instantiate(t, out)
	if got, err := call(mod, "deep", limit-1); err != nil || got[0] != limit-1 { // limit frames
		t.Fatalf("deep(%d) = %v, %v", limit-1, got, err)
	}
	if v := mod.ExportedGlobal(ExportDepth).Get(); v != 0 {
		t.Fatalf("depth = %d after a good call", v)
	}
	_, err := call(mod, "deep", limit)
	if err == nil || !strings.Contains(err.Error(), "unreachable") {
		t.Fatalf("deep(%d): %v, want a trap", limit, err)
	}
	if v := mod.ExportedGlobal(ExportDepth).Get(); v != limit+1 {
		t.Fatalf("depth = %d after the trap, want %d", v, limit+1)
	}
	if v := mod.ExportedGlobal(ExportInterrupt).Get(); v != 0 {
		t.Fatalf("interrupt = %d", v)
	}

	// The same recursion without the limit costs the host ~250 MB of native
	// stack before wazero's ceiling stops it; with it, a few MB. Weights
	// count larger frames more.
	if w := Weight(1, 0, 20); w != 1 {
		t.Errorf("a small function weighs %d", w)
	}
	if w := Weight(2, 1000, 8000); w != 1+9002/FrameUnit {
		t.Errorf("a function with 1,000 locals and 8,000 bytes of code weighs %d", w)
	}
}

// TestInterrupt: a leaf that loops for ever stops at its next loop head once
// the host sets the globals, from another goroutine.
func TestInterrupt(t *testing.T) {
	mod := instantiate(t, instrument(t, testkit.ReadFile(t, "testdata/calls.wasm"), 100))
	fuel := mod.ExportedGlobal(ExportFuel).(api.MutableGlobal)
	intr := mod.ExportedGlobal(ExportInterrupt).(api.MutableGlobal)
	set := make(chan struct{})
	time.AfterFunc(50*time.Millisecond, func() { intr.Set(1); fuel.Set(1); close(set) })
	if _, err := call(mod, "spin"); err == nil || !strings.Contains(err.Error(), "unreachable") {
		t.Fatalf("spin: %v, want a trap", err)
	}
	<-set
	if v := intr.Get(); v != 1 {
		t.Fatalf("interrupt = %d", v)
	}
}

func TestRefusals(t *testing.T) {
	for _, c := range []struct {
		name, path, want string
	}{
		{"start section", "guests/testmodules/wat/start_benign.wasm", "the module has a start section"},
		{"no memory", "", "module has no memory"},
	} {
		bin := []byte("\x00asm\x01\x00\x00\x00")
		if c.path != "" {
			bin = testkit.ReadFile(t, build.Testdata(t, c.path))
		}
		m, err := wasmbin.Parse(bin)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Instrument(m, Limits{CallDepth: 100, TableElements: 1 << 20}); err == nil || err.Error() != c.want {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
	m, _ := wasmbin.Parse(testkit.ReadFile(t, "testdata/calls.wasm"))
	m.Exports = append(m.Exports, wasmbin.Export{Name: ExportFuel, Kind: wasmbin.Global})
	if _, err := Instrument(m, Limits{CallDepth: 100, TableElements: 1 << 20}); err == nil || !strings.Contains(err.Error(), "a name the host reserves") {
		t.Errorf("reserved export: %v", err)
	}
}

// seeds are every committed module, hostile ones included.
func seeds(t testing.TB) [][]byte {
	root := filepath.Dir(build.Testdata(t, "guests/testmodules/doc.go"))
	var files []string
	for _, dir := range []string{"wat", "malformed"} {
		f, _ := filepath.Glob(filepath.Join(root, dir, "*.wasm"))
		files = append(files, f...)
	}
	files = append(files, "testdata/calls.wasm")
	var out [][]byte
	for _, f := range files {
		out = append(out, testkit.ReadFile(t, f))
	}
	return out
}

// exports lists a compiled module's exported functions with their
// signatures.
func exports(cm wazero.CompiledModule) []string {
	var out []string
	for name, d := range cm.ExportedFunctions() {
		out = append(out, name+" "+strings.Join(typeNames(d.ParamTypes()), ",")+" -> "+strings.Join(typeNames(d.ResultTypes()), ","))
	}
	sort.Strings(out)
	return out
}

func typeNames(ts []api.ValueType) []string {
	s := make([]string, len(ts))
	for i, t := range ts {
		s[i] = api.ValueTypeName(t)
	}
	return s
}

// FuzzInstrument checks, for any bytes: Parse then Instrument never panic;
// Instrument's output and allocation are linear in the input, and its time
// too (loosely: a second per call of slack for a loaded machine); and when
// wazero compiles the original, it compiles the instrumented module, which
// exports the same functions with the same signatures, plus the three
// globals.
func FuzzInstrument(f *testing.F) {
	for _, s := range seeds(f) {
		f.Add(s)
	}
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter().WithMemoryLimitPages(1024))
	f.Cleanup(func() { rt.Close(ctx) })
	f.Fuzz(func(t *testing.T, bin []byte) {
		m, err := wasmbin.Parse(bin)
		if err != nil {
			return // never handed to wazero: its decoder trusts counts
		}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		start := time.Now()
		out, ierr := Instrument(m, Limits{CallDepth: 1000, TableElements: 1 << 16})
		took := time.Since(start)
		runtime.ReadMemStats(&after)
		bound := 128*len(bin) + 4096
		if len(out) > bound {
			t.Fatalf("%d bytes in, %d out", len(bin), len(out))
		}
		if n := after.TotalAlloc - before.TotalAlloc; n > uint64(4*bound) {
			t.Fatalf("%d bytes in, %d allocated", len(bin), n)
		}
		if took > time.Second+time.Duration(len(bin))*time.Microsecond {
			t.Fatalf("%d bytes took %s", len(bin), took)
		}
		cm, err := rt.CompileModule(ctx, bin)
		if err != nil {
			return
		}
		defer cm.Close(ctx)
		if ierr != nil {
			if m.Start >= 0 || len(m.Memories) == 0 || errors.Is(ierr, errReserved) || CheckTables(m, 1<<16) != nil {
				return
			}
			t.Fatalf("wazero compiles the original, Instrument fails: %v", ierr)
		}
		icm, err := rt.CompileModule(ctx, out)
		if err != nil {
			t.Fatalf("the original compiles, the instrumented module does not: %v", err)
		}
		defer icm.Close(ctx)
		want, got := exports(cm), exports(icm)
		if strings.Join(want, "\n") != strings.Join(got, "\n") {
			t.Fatalf("exported functions differ:\n%s\ninstrumented:\n%s", strings.Join(want, "\n"), strings.Join(got, "\n"))
		}
		im, err := wasmbin.Parse(out)
		if err != nil {
			t.Fatalf("wazero compiles the instrumented module, Parse does not: %v", err)
		}
		if len(im.Exports) != len(m.Exports)+3 {
			t.Fatalf("%d exports, the original %d", len(im.Exports), len(m.Exports))
		}
		for i, name := range []string{ExportFuel, ExportInterrupt, ExportDepth} {
			e := im.Exports[len(m.Exports)+i]
			if e.Name != name || e.Kind != wasmbin.Global || e.Index != uint32(m.ImportedGlobals+m.Globals+i) {
				t.Fatalf("export %d: %+v", len(m.Exports)+i, e)
			}
		}
	})
}

// TestTablesGetAMaximum: each table's maximum becomes its share of the
// limit (or stays, if smaller); a table that starts larger is refused.
func TestTablesGetAMaximum(t *testing.T) {
	m, err := wasmbin.Parse(testkit.ReadFile(t, "testdata/calls.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		limit uint64
		want  string
	}{{10, "min 2, max 10"}, {1, "table 0 starts with 2 elements; a module's 1 tables may hold 1 elements in all, 1 each"}} {
		out, err := Instrument(m, Limits{CallDepth: 100, TableElements: c.limit})
		got := ""
		if err != nil {
			got = err.Error()
		} else if im, err := wasmbin.Parse(out); err != nil {
			t.Fatal(err)
		} else {
			got = im.Tables[0].Limits.String()
		}
		if got != c.want {
			t.Errorf("limit %d: %s, want %s", c.limit, got, c.want)
		}
	}
}
