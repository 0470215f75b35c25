package conformance

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/wasmlet/wasmlet/abi"
	"github.com/wasmlet/wasmlet/guests/build"
	"github.com/wasmlet/wasmlet/host/module"
)

var (
	modulePath = flag.String("module", "", "run the conformance checks on this .wasm file")
	moduleConf = flag.String("config", "", "configuration for -module, as key=value,key=value")
)

// TestModule checks the module given with -module; without it, it is skipped
// (the tests below cover the repository's own modules). A relative path is
// taken from where go test runs, the repository root or this package's
// directory, whichever has the file.
func TestModule(t *testing.T) {
	if *modulePath == "" {
		t.Skip("no -module given")
	}
	cfg := map[string]string{}
	for _, kv := range strings.Split(*moduleConf, ",") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			cfg[k] = v
		}
	}
	Run(t, modulePathFor(t, *modulePath), module.Options{Config: cfg})
}

// modulePathFor resolves a relative -module: go test runs the test in the
// package's directory, but its user named the file from where they typed
// the command, usually the repository root.
func modulePathFor(t *testing.T, path string) string {
	if filepath.IsAbs(path) {
		return path
	}
	if _, err := os.Stat(path); err == nil {
		return path
	}
	root, err := build.Root()
	if err != nil {
		t.Fatal(err)
	}
	if p := filepath.Join(root, path); fileExists(p) {
		return p
	}
	t.Fatalf("-module=%s: no such file in the package directory or in the repository root %s", path, root)
	return ""
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// TestCheckReports: Check runs on a module that traps in discover and
// reports each check it fails, with the fault, and the checks that depend
// on discovery as skipped; a module the host refuses is an error with the
// host's reasons.
func TestCheckReports(t *testing.T) {
	ctx := context.Background()
	r, err := Check(ctx, build.Testdata(t, "guests/testmodules/wat/trap.wasm"), module.Options{})
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]Result{}
	for _, res := range r.Results {
		byName[res.Name] = res
	}
	for _, name := range []string{"discover survives an empty request", "discover returns valid devices", "concurrent calls"} {
		if err := byName[name].Err; err == nil || !strings.Contains(err.Error(), "trap") {
			t.Errorf("%s: %v, want a trap", name, err)
		}
	}
	if res := byName["describe is stable"]; res.Err != nil {
		t.Errorf("describe: %v", res.Err)
	}
	if r.Failed() == 0 || r.Kind != "device-source" || r.Serves != "example.com/wat-trap" {
		t.Errorf("report %+v", r)
	}

	r, err = Check(ctx, build.Testdata(t, "guests/testmodules/wat/minimal.wasm"), module.Options{})
	if err != nil || r.Failed() != 0 || len(r.Results) < 5 {
		t.Fatalf("minimal: %+v, %v", r, err)
	}

	_, err = Check(ctx, build.Testdata(t, "guests/testmodules/wat/missing_exports.wasm"), module.Options{})
	var le *module.LoadError
	if !errors.As(err, &le) || !strings.Contains(err.Error(), "missing required export") {
		t.Fatalf("a module the host refuses: %v", err)
	}
}

// TestRelativeModule runs the go test wrapper as a module author does, from
// the repository root with a relative -module.
func TestRelativeModule(t *testing.T) {
	if *modulePath != "" {
		t.Skip("checking -module")
	}
	root, err := build.Root()
	if err != nil {
		t.Fatal(err)
	}
	rel, err := filepath.Rel(root, build.Testdata(t, "guests/testmodules/wat/minimal.wasm"))
	if err != nil || strings.HasPrefix(rel, "..") {
		t.Skipf("the module is not under the repository root: %s", rel)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestModule$", "-test.v", "-module="+rel)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestModule/describe_is_stable") {
		t.Fatalf("-module=%s: %v\n%s", rel, err, out)
	}
}

// TestStartSectionsAreRefused runs the checks, as a module author would
// (this test binary with -module), on the two modules with a start section:
// each fails at once with the host's reason. The one whose start function
// never returns used to hang the checks for good.
func TestStartSectionsAreRefused(t *testing.T) {
	if *modulePath != "" {
		t.Skip("checking -module")
	}
	for _, name := range []string{"start_loop", "start_benign"} {
		path := build.Testdata(t, "guests/testmodules/wat/"+name+".wasm")
		cmd := exec.Command(os.Args[0], "-test.run=^TestModule$", "-module="+path)
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "the host refuses the module: ") ||
			!strings.Contains(string(out), "modules are reactors; a start section is not allowed") {
			t.Errorf("%s: %v\n%s", name, err, out)
		}
	}
}

func TestGoCounter(t *testing.T) {
	Run(t, build.Go(t, "guests/counter"), module.Options{Config: map[string]string{"count": "5"}})
}

func TestCCounter(t *testing.T) {
	Run(t, cModule(t), module.Options{Config: map[string]string{"count": "5"}})
}

func TestHandWrittenWAT(t *testing.T) {
	Run(t, build.Testdata(t, "guests/testmodules/wat/minimal.wasm"), module.Options{})
}

func TestDevicePluginHandler(t *testing.T) {
	Run(t, build.Go(t, "guests/devicepluginhandler"), module.Options{})
}

func TestCSIHandler(t *testing.T) {
	Run(t, build.Go(t, "guests/csihandler"), module.Options{Config: map[string]string{"min_version": "1.0.0"}})
}

func TestCustomHandler(t *testing.T) {
	Run(t, build.Go(t, "guests/customhandler"), module.Options{Config: map[string]string{"type": "ConformancePlugin"}})
}

// TestPCISource checks the PCI source on a small fake sysfs tree, and on this
// machine's sysfs when it has one.
func TestPCISource(t *testing.T) {
	wasm := build.Go(t, "guests/pcisource")
	sys := t.TempDir()
	for _, d := range []struct{ addr, class string }{{"0000:00:1f.6", "0x020000"}, {"0000:3b:00.0", "0x030000"}} {
		dir := filepath.Join(sys, "devices", "pci0000:00", d.addr)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for f, v := range map[string]string{"vendor": "0x8086", "device": "0x15bc", "class": d.class, "numa_node": "0", "uevent": "DRIVER=e1000e\n"} {
			if err := os.WriteFile(filepath.Join(dir, f), []byte(v+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		os.MkdirAll(filepath.Join(sys, "bus", "pci", "devices"), 0o755)
		if err := os.Symlink("../../../devices/pci0000:00/"+d.addr, filepath.Join(sys, "bus", "pci", "devices", d.addr)); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("fake sysfs", func(t *testing.T) {
		Run(t, wasm, module.Options{Mounts: []module.Mount{{Host: filepath.Join(sys, "bus", "pci", "devices"), Guest: "/sys/bus/pci/devices", Root: sys}}})
	})
	t.Run("this machine", func(t *testing.T) {
		if _, err := os.Stat("/sys/bus/pci/devices"); err != nil {
			t.Skip("no /sys/bus/pci/devices on this machine")
		}
		Run(t, wasm, module.Options{Mounts: []module.Mount{{Host: "/sys/bus/pci/devices", Guest: "/sys/bus/pci/devices", Root: "/sys"}}})
	})
}

var (
	cacheOnce sync.Once
	cache     *module.Cache
	cacheErr  error
)

// testCache is the compilation cache the module tests share: a test that
// loads one module many times compiles it once.
func testCache(t *testing.T) *module.Cache {
	cacheOnce.Do(func() { cache, cacheErr = module.NewCache(filepath.Join(build.CacheDir(), "wazero")) })
	if cacheErr != nil {
		t.Fatal(cacheErr)
	}
	return cache
}

// TestGPUSim checks the simulated GPUs in each of their modes: whole,
// partitioned (shared counters) and shared (consumable capacity), each with
// prepare and unprepare.
func TestGPUSim(t *testing.T) {
	wasm := build.Go(t, "guests/gpusim")
	for name, cfg := range map[string]map[string]string{
		"whole":       {"gpus": "4"},
		"partitioned": {"gpus": "2", "partitions": "1g.5gb,3g.20gb"},
		"shared":      {"gpus": "2", "shared": "true"},
	} {
		t.Run(name, func(t *testing.T) { Run(t, wasm, module.Options{Config: cfg, Cache: testCache(t)}) })
	}
}

// TestBadSource: each way the badsource module breaks the rules of
// structured devices and of prepare fails the check that holds that rule,
// naming what is wrong, and only that one; the module without a fault
// passes every check.
func TestBadSource(t *testing.T) {
	ctx := context.Background()
	wasm := build.Go(t, "guests/testmodules/badsource")
	const (
		discovery = "discover returns valid devices"
		prepare   = "prepare a discovered device twice, with the same answer"
		unknown   = "unprepare a claim never prepared"
	)
	for bad, want := range map[string]struct{ check, says string }{
		"":          {},
		"attribute": {discovery, `device "bad-0": typed attribute "pcie-root": qualified name "pcie-root"`},
		"counters":  {discovery, `device "bad-1": consumes_counters of "undeclared": no shared counter set has that name`},
		"policy":    {discovery, `capacity "memory": a request policy needs allow_multiple_allocations on the device`},
		"step":      {discovery, `device "bad-0": capacity "memory": request policy: step 0 is not positive`},
		"quantity":  {discovery, `capacity "memory": value: quantity "1.5e-2147483648" has suffix "e-2147483648"`},
		"prepare":   {prepare, "the same prepare answered differently"},
		"stranger":  {prepare, `prepare answered for request "conformance", device "bad-1"; it was asked for request "conformance", device "bad-0"`},
		"cdi":       {prepare, `device "bad-0": CDI device "gpu-0"`},
		"unprepare": {unknown, "claim conformance-unknown-claim was never prepared"},
	} {
		r, err := Check(ctx, wasm, module.Options{Config: map[string]string{"bad": bad}, Cache: testCache(t)})
		if err != nil {
			t.Fatalf("%q: %v", bad, err)
		}
		for _, res := range r.Results {
			switch {
			case res.Name == want.check && (res.Err == nil || !strings.Contains(res.Err.Error(), want.says)):
				t.Errorf("%q: %s: %v, want an error saying %q", bad, res.Name, res.Err, want.says)
			case res.Name != want.check && res.Err != nil:
				t.Errorf("%q: %s: %v", bad, res.Name, res.Err)
			}
		}
	}
}

// TestDevSource checks the /dev source on this machine's /dev.
func TestDevSource(t *testing.T) {
	if _, err := os.Stat("/dev/null"); err != nil {
		t.Skip("no /dev/null on this machine")
	}
	Run(t, build.Go(t, "guests/devsource"), module.Options{Mounts: []module.Mount{{Host: "/dev", Guest: "/dev"}},
		Config: map[string]string{"globs": "/dev/null,/dev/zero,/dev/*random", "shares": "2"}})
}

// cModule builds the C twin. Without clang it fails in CI and skips elsewhere.
func cModule(t *testing.T) string {
	if os.Getenv("CI") == "" {
		if _, err := build.CModule("guests/c/counter.c"); err != nil && strings.Contains(err.Error(), "needs clang") {
			t.Skip(err)
		}
	}
	return build.C(t, "guests/c/counter.c")
}

// TestTwinsAgree sends the Go counter and its C twin the same requests and
// requires the same answers, errors included.
func TestTwinsAgree(t *testing.T) {
	ctx := context.Background()
	for _, cfg := range []map[string]string{
		{},
		{"count": "7", "resource": "example.com/twin"},
		{"count": "0"},
		{"count": "not a number"},
	} {
		t.Run(fmt.Sprint(cfg), func(t *testing.T) {
			load := func(path string) *module.Module {
				m, err := module.Load(ctx, path, module.Options{Config: cfg, MemoryLimit: 64 << 20})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { m.Close(ctx) })
				return m
			}
			goM, cM := load(build.Go(t, "guests/counter")), load(cModule(t))
			if g, c := goM.Description(), cM.Description(); !reflect.DeepEqual(g, c) {
				t.Fatalf("describe differs:\nGo %+v\nC  %+v", g, c)
			}
			requests := []struct {
				op       abi.Op
				req      abi.Message
				newReply func() abi.Message
			}{
				{abi.OpDiscover, &abi.DiscoverRequest{}, func() abi.Message { return &abi.DiscoverResponse{} }},
				{abi.OpAllocate, &abi.AllocateRequest{DeviceIDs: []string{"dev-1", "dev-0"}, Workload: "pod/ctr"}, func() abi.Message { return &abi.AllocateResponse{} }},
				{abi.OpAllocate, &abi.AllocateRequest{DeviceIDs: []string{"dev-2"}}, func() abi.Message { return &abi.AllocateResponse{} }},
				{abi.OpAllocate, &abi.AllocateRequest{Workload: "nothing"}, func() abi.Message { return &abi.AllocateResponse{} }},
				{abi.OpPreferredAllocation, &abi.PreferredAllocationRequest{Available: []string{"a", "b", "c"}, MustInclude: []string{"c"}, Size: 2}, func() abi.Message { return &abi.PreferredAllocationResponse{} }},
				{abi.OpPreferredAllocation, &abi.PreferredAllocationRequest{Available: []string{"a", "a", "b"}, Size: 2}, func() abi.Message { return &abi.PreferredAllocationResponse{} }},
				{abi.OpPreferredAllocation, &abi.PreferredAllocationRequest{Available: []string{"a"}, Size: 3}, func() abi.Message { return &abi.PreferredAllocationResponse{} }},
				{abi.OpPreferredAllocation, &abi.PreferredAllocationRequest{Available: []string{"a"}, Size: -2}, func() abi.Message { return &abi.PreferredAllocationResponse{} }},
				{abi.OpPreStart, &abi.PreStartRequest{DeviceIDs: []string{"dev-0"}}, func() abi.Message { return &abi.PreStartResponse{} }},
			}
			for _, r := range requests {
				gr, cr := r.newReply(), r.newReply()
				gerr, cerr := goM.Call(ctx, r.op, r.req, gr), cM.Call(ctx, r.op, r.req, cr)
				if module.IsFault(gerr) || module.IsFault(cerr) {
					t.Fatalf("%s %+v: fault: Go %v, C %v", r.op, r.req, gerr, cerr)
				}
				ge, _ := module.ModuleError(gerr)
				ce, _ := module.ModuleError(cerr)
				if !reflect.DeepEqual(ge, ce) {
					t.Errorf("%s %+v: errors differ:\nGo %v\nC  %v", r.op, r.req, gerr, cerr)
				}
				if !reflect.DeepEqual(gr, cr) {
					t.Errorf("%s %+v: replies differ:\nGo %+v\nC  %+v", r.op, r.req, gr, cr)
				}
			}
		})
	}
}
