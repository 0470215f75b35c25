package module

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/wasmlet/wasmlet/abi"
	"github.com/wasmlet/wasmlet/guests/build"
	"github.com/wasmlet/wasmlet/internal/syncbuf"
	"github.com/wasmlet/wasmlet/internal/testkit"
)

func wat(t *testing.T, name string) string {
	return build.Testdata(t, "guests/testmodules/wat/"+name+".wasm")
}

// load loads a module with test-friendly limits; the module is closed when
// the test ends.
func load(t *testing.T, path string, opts Options) *Module {
	t.Helper()
	if opts.MemoryLimit == 0 {
		opts.MemoryLimit = 32 << 20
	}
	if opts.callDepth == 0 {
		// Every guest runs its tests at a sixteenth of the call depth limit,
		// so that these tests show the real guests stay far below it.
		opts.callDepth = MaxCallDepth / 16
	}
	opts.Cache = testCache(t)
	m, err := Load(context.Background(), path, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(context.Background()) })
	return m
}

var (
	cacheOnce sync.Once
	cache     *Cache
	cacheErr  error
)

// testCache is a compilation cache shared by the tests of this package (and
// kept across runs), so that each guest compiles once.
func testCache(t testing.TB) *Cache {
	cacheOnce.Do(func() { cache, cacheErr = NewCache(filepath.Join(build.CacheDir(), "wazero")) })
	if cacheErr != nil {
		t.Fatal(cacheErr)
	}
	return cache
}

func captureLogger() (hclog.Logger, *syncbuf.Buffer) {
	buf := &syncbuf.Buffer{}
	return hclog.New(&hclog.LoggerOptions{Output: buf, Level: hclog.Trace}), buf
}

func TestRefusedAtLoad(t *testing.T) {
	cases := []struct {
		file string
		want []string
	}{
		{"not_wasm", []string{"not a WebAssembly module"}},
		{"missing_exports", []string{"missing required export wasmlet_alloc", "missing required export wasmlet_describe"}},
		{"wrong_version", []string{"declares ABI version 2; this host speaks version 1"}},
		{"bad_import", []string{"imports env.abort"}},
		{"wrong_signature", []string{"export wasmlet_alloc has type (i64) -> i32, want (i32) -> i32"}},
		{"describe_lies", []string{`declares operation "allocate" but does not export wasmlet_allocate`}},
		{"start_loop", []string{`modules are reactors; a start section is not allowed (this one runs function 4 ("spin") when the module is instantiated)`}},
		{"start_benign", []string{`modules are reactors; a start section is not allowed (this one runs function 4 when`}},
		{"table_huge", []string{"table 0 starts with 134217728 elements; a module's 1 tables may hold 1048576 elements in all"}},
		// Refused before anything but wasmbin.Parse has read them (see guests/testmodules/malformed).
		{"../malformed/huge_function_count", []string{"is not a well-formed WebAssembly module: code section: at offset 128: a vector of 4294967295 elements cannot fit"}},
		{"../malformed/huge_local_groups", []string{"is not a well-formed WebAssembly module: code section: at offset 164: a vector of 2147483647 elements"}},
		{"../malformed/huge_locals", []string{"is not a well-formed WebAssembly module: code section: at offset 165: the function declares more than 50000 locals"}},
		{"../malformed/huge_name_count", []string{"is not a well-formed WebAssembly module: custom section: at offset 237"}},
		{"../malformed/huge_data_length", []string{"is not a well-formed WebAssembly module: data section: at offset 185: unexpected end of data: 4294967295 bytes wanted"}},
		{"../malformed/huge_custom_section", []string{"is not a well-formed WebAssembly module: custom section: at offset 234"}},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			path := wat(t, c.file)
			_, err := Load(context.Background(), path, Options{MemoryLimit: 1 << 20})
			var le *LoadError
			if !errors.As(err, &le) {
				t.Fatalf("got %v, want a *LoadError", err)
			}
			msg := err.Error()
			if !strings.Contains(msg, `module "`+NameFromPath(path)+`"`) {
				t.Errorf("error does not name the module: %s", msg)
			}
			for _, w := range c.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not say %q", msg, w)
				}
			}
		})
	}
	t.Run("missing file", func(t *testing.T) {
		_, err := Load(context.Background(), filepath.Join(t.TempDir(), "gone.wasm"), Options{})
		if err == nil || !strings.Contains(err.Error(), "no such file") || !strings.Contains(err.Error(), `"gone"`) {
			t.Fatalf("got %v", err)
		}
	})
	// A named pipe called x.wasm is refused at once: opening it for reading
	// would wait for a writer forever.
	t.Run("named pipe", func(t *testing.T) {
		fifo := filepath.Join(t.TempDir(), "pipe.wasm")
		if err := syscall.Mkfifo(fifo, 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Load(context.Background(), fifo, Options{MemoryLimit: 1 << 20})
		if err == nil || !strings.Contains(err.Error(), `"pipe"`) || !strings.Contains(err.Error(), "it is a named pipe, not a regular file") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("memory limit below the module's minimum", func(t *testing.T) {
		_, err := Load(context.Background(), build.Go(t, "guests/counter"), Options{MemoryLimit: 1 << 20})
		if err == nil || !strings.Contains(err.Error(), "needs more memory than its limit of 1 MiB allows") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("an invalid driver", func(t *testing.T) {
		_, err := Load(context.Background(), build.Go(t, "guests/gpusim"),
			Options{MemoryLimit: 64 << 20, Config: map[string]string{"driver": "gpu_sim.example.com"}})
		if err == nil || !strings.Contains(err.Error(), `driver name "gpu_sim.example.com" is not a domain name: label "gpu_sim"`) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("no driver, and none derived from the resource", func(t *testing.T) {
		long := strings.Repeat("d", 60) + ".example.com/counter"
		_, err := Load(context.Background(), build.Go(t, "guests/counter"),
			Options{MemoryLimit: 64 << 20, Config: map[string]string{"resource": long}})
		if err == nil || !strings.Contains(err.Error(), "declares no driver, and the one derived from its resource is no driver name") ||
			!strings.Contains(err.Error(), "must be 1 to 63 characters long (it is 80)") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("initialisation that never ends", func(t *testing.T) {
		_, err := Load(context.Background(), build.Go(t, "guests/testmodules/faulty"),
			Options{MemoryLimit: 32 << 20, Cache: testCache(t), InitTimeout: 300 * time.Millisecond, Config: map[string]string{"fault": "initloop"}})
		if err == nil || !strings.Contains(err.Error(), "timeout") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("initialisation that panics", func(t *testing.T) {
		_, err := Load(context.Background(), build.Go(t, "guests/testmodules/faulty"),
			Options{MemoryLimit: 32 << 20, Cache: testCache(t), Config: map[string]string{"fault": "initpanic"}})
		if err == nil || !strings.Contains(err.Error(), "panic: faulty: panic during initialisation") {
			t.Fatalf("got %v", err)
		}
	})
}

// TestFaultsAreContained runs every kind of fault while a healthy module is
// called concurrently, and checks each fault fails only its own call, with an
// error naming module, operation and fault, and that the module serves again
// afterwards from a fresh instance.
func TestFaultsAreContained(t *testing.T) {
	healthy := load(t, build.Go(t, "guests/counter"), Options{Name: "healthy"})
	stop := make(chan struct{})
	var healthyCalls atomic.Int64
	var healthyErr atomic.Value
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := healthy.Discover(context.Background()); err != nil {
				healthyErr.Store(err)
				return
			}
			healthyCalls.Add(1)
		}
	}()

	faulty := build.Go(t, "guests/testmodules/faulty")
	cases := []struct {
		name   string
		path   string
		opts   Options
		fault  Fault
		detail string // expected in the message
	}{
		{"wasm trap", wat(t, "trap"), Options{}, FaultTrap, "unreachable"},
		{"go panic", faulty, Options{Config: map[string]string{"fault": "panic"}}, FaultTrap, "panic: faulty: deliberate panic in discover"},
		{"wasm infinite loop", wat(t, "loop"), Options{CallTimeout: 200 * time.Millisecond}, FaultTimeout, "did not return within 200ms"},
		{"go infinite loop", faulty, Options{CallTimeout: 200 * time.Millisecond, Config: map[string]string{"fault": "loop"}}, FaultTimeout, "interrupted"},
		{"go memory bomb", faulty, Options{CallTimeout: 30 * time.Second, Config: map[string]string{"fault": "memory"}}, FaultMemory, "memory limit"},
		{"wasm memory.grow to the limit", wat(t, "memory_grow"), Options{MemoryLimit: 4 << 20, CallTimeout: 30 * time.Second}, FaultMemory, "4 MiB memory limit"},
		{"go stack overflow", faulty, Options{CallTimeout: 30 * time.Second, Config: map[string]string{"fault": "stack"}}, FaultTrap, "call depth exceeded 2048"},
		{"wasm stack overflow", wat(t, "recurse"), Options{CallTimeout: 30 * time.Second}, FaultTrap, "call depth exceeded 2048"},
		{"module exits", faulty, Options{Config: map[string]string{"fault": "exit"}}, FaultExit, "exited with code 3"},
		{"oversized reply", faulty, Options{MaxReply: 1 << 20, Config: map[string]string{"fault": "oversized"}}, FaultOversized, "exceeds the limit of 1 MiB"},
		{"malformed reply", wat(t, "malformed_reply"), Options{}, FaultMalformed, "decode DiscoverResponse"},
		{"reply outside memory", wat(t, "reply_out_of_bounds"), Options{}, FaultMalformed, "lies outside the module's 64 KiB of memory"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.opts.Name = strings.ReplaceAll(c.name, " ", "-")
			m := load(t, c.path, c.opts)
			before := healthyCalls.Load()
			_, err := m.Discover(context.Background())
			var ce *CallError
			if !errors.As(err, &ce) {
				t.Fatalf("got %v, want a *CallError", err)
			}
			if ce.Fault != c.fault {
				t.Errorf("fault %q, want %q (%v)", ce.Fault, c.fault, err)
			}
			msg := err.Error()
			if !strings.Contains(msg, `module "`+c.opts.Name+`": discover: `) {
				t.Errorf("error does not name module and operation: %s", msg)
			}
			if !strings.Contains(msg, c.detail) {
				t.Errorf("error %q does not say %q", msg, c.detail)
			}
			st := m.Status()
			if st.Faults != 1 || st.Instances != 0 {
				t.Errorf("after the fault: %d faults, %d instances; want 1 fault, the instance discarded", st.Faults, st.Instances)
			}
			// The same fault again proves a fresh instance was started.
			if _, err := m.Discover(context.Background()); !IsFault(err) {
				t.Errorf("second call: %v, want the fault again from a new instance", err)
			}
			for deadline := time.Now().Add(5 * time.Second); healthyCalls.Load() == before; {
				if time.Now().After(deadline) {
					t.Fatalf("the healthy module made no progress during the fault")
				}
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
	close(stop)
	wg.Wait()
	if err := healthyErr.Load(); err != nil {
		t.Fatalf("healthy module failed during the faults: %v", err)
	}
	t.Logf("healthy module answered %d calls during the fault tests", healthyCalls.Load())
}

func TestInstanceReplacedAfterFault(t *testing.T) {
	// Each instance succeeds once, then panics: success, fault, success...
	m := load(t, build.Go(t, "guests/testmodules/faulty"), Options{PoolSize: 1,
		Config: map[string]string{"fault": "panic", "after": "1"}})
	want := []bool{true, false, true, false, true}
	for i, ok := range want {
		_, err := m.Discover(context.Background())
		if (err == nil) != ok {
			t.Fatalf("call %d: err=%v, want success=%v", i, err, ok)
		}
	}
	if st := m.Status(); st.Quarantined || st.Faults != 2 {
		t.Fatalf("status %+v", st)
	}
}

func TestQuarantine(t *testing.T) {
	log, out := captureLogger()
	obs := &countingObserver{}
	m := load(t, wat(t, "trap"), Options{QuarantineAfter: 3, Logger: log, Observer: obs})
	for i := 0; i < 3; i++ {
		if _, err := m.Discover(context.Background()); !IsFault(err) {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	_, err := m.Discover(context.Background())
	var ce *CallError
	if !errors.As(err, &ce) || ce.Fault != FaultQuarantined {
		t.Fatalf("got %v, want quarantined", err)
	}
	// A quarantined module fails fast: it keeps no instance and starts none.
	st := m.Status()
	if st.Instances != 0 {
		t.Errorf("a quarantined module holds %d instances", st.Instances)
	}
	if !st.Quarantined || !strings.Contains(st.QuarantineReason, "3 consecutive faults") {
		t.Fatalf("status %+v", st)
	}
	if !strings.Contains(out.String(), "module quarantined") || !strings.Contains(out.String(), "module=trap") {
		t.Errorf("log does not report the quarantine with the module's name:\n%s", out)
	}
	if obs.quarantined.Load() != 1 {
		t.Errorf("observer told of %d quarantines", obs.quarantined.Load())
	}
}

func TestModuleErrorIsNotAFault(t *testing.T) {
	m := load(t, wat(t, "error_reply"), Options{QuarantineAfter: 2})
	for i := 0; i < 5; i++ {
		_, err := m.Discover(context.Background())
		ae, ok := ModuleError(err)
		if !ok || ae.Code != abi.CodeUnavailable || ae.Message != "wat says no" || IsFault(err) {
			t.Fatalf("got %v", err)
		}
	}
	if st := m.Status(); st.Quarantined || st.Faults != 0 {
		t.Fatalf("module errors counted as faults: %+v", st)
	}
}

// TestCallerDeadlineShortensTimeout: the caller's deadline, when sooner,
// is the call's: overrunning it is a timeout, held against the module,
// whether the guest runs or sleeps.
func TestCallerDeadlineShortensTimeout(t *testing.T) {
	for _, name := range []string{"loop", "sleep"} {
		m := load(t, wat(t, name), Options{CallTimeout: time.Minute})
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		start := time.Now()
		_, err := m.Discover(ctx)
		cancel()
		var ce *CallError
		if !errors.As(err, &ce) || ce.Fault != FaultTimeout || time.Since(start) > 5*time.Second {
			t.Fatalf("%s: got %v after %v, want a timeout", name, err, time.Since(start))
		}
		if st := m.Status(); st.Faults != 1 {
			t.Fatalf("%s: %d faults counted, want 1", name, st.Faults)
		}
	}
}

func TestCloseLetsCallsInFlightFinish(t *testing.T) {
	m, err := Load(context.Background(), build.Go(t, "guests/testmodules/faulty"), Options{MemoryLimit: 32 << 20,
		Cache: testCache(t), Config: map[string]string{"fault": "slow", "delay_ms": "300"}})
	if err != nil {
		t.Fatal(err)
	}
	done := discoverAdmitted(t, context.Background(), m, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := m.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("call in flight during Close: %v", err)
	}
	var ce *CallError
	if _, err := m.Discover(context.Background()); !errors.As(err, &ce) || ce.Fault != FaultClosed {
		t.Fatalf("call after Close: %v", err)
	}
}

func TestCloseInterruptsCallsThatOverstay(t *testing.T) {
	m, err := Load(context.Background(), wat(t, "loop"), Options{MemoryLimit: 1 << 20, CallTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	done := discoverAdmitted(t, context.Background(), m, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	m.Close(ctx)
	var ce *CallError
	if err := within(t, done, 5*time.Second, "the call Close interrupts"); !errors.As(err, &ce) || ce.Fault != FaultClosed {
		t.Fatalf("got %v", err)
	}
}

// holdModule loads badhandler, whose register for a plugin named "hold-*"
// does not return until release is called (or the call's deadline).
func holdModule(t *testing.T, opts Options) (m *Module, release func()) {
	t.Helper()
	dir := t.TempDir()
	opts.Mounts = []Mount{{Host: dir, Guest: "/ctl"}}
	opts.Config = map[string]string{"release": "/ctl/release"}
	opts.CallTimeout = time.Minute // the test releases the calls
	m = load(t, build.Go(t, "guests/testmodules/badhandler"), opts)
	release = func() {
		if err := os.WriteFile(filepath.Join(dir, "release"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(release) // before the module closes: Close waits for calls
	return m, release
}

// TestPoolGrowsBehindSlowCallsUpToPoolMax: calls that find every instance
// of the base pool busy for long start more instances, up to PoolMax; a
// call that finds PoolMax busy waits, and gets a clear error when it
// cannot wait; once the calls end, the instances beyond the base pool are
// kept for the next burst, and go when the pool has been idle a while.
func TestPoolGrowsBehindSlowCallsUpToPoolMax(t *testing.T) {
	m, release := holdModule(t, Options{PoolSize: 1, PoolMax: 2})
	m.mu.Lock()
	m.keepSurplus = 300 * time.Millisecond
	m.mu.Unlock()
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := m.Register(context.Background(), &abi.Plugin{Name: fmt.Sprintf("hold-%d", i)}); err != nil {
				t.Error(err)
			}
		}()
	}
	// Two calls hold the two instances; the third waits for one.
	testkit.Eventually(t, "two held calls and one waiting", func() bool {
		st := m.Status()
		return st.Instances == 2 && st.Idle == 0 && m.waiting.Load() == 1
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	err := m.Validate(ctx, &abi.Plugin{Name: "ok-1"})
	var ce *CallError
	if !errors.As(err, &ce) || ce.Fault != FaultBusy || !strings.Contains(err.Error(), "pool of 1, up to 2") {
		t.Errorf("got %v, want busy naming the pool", err)
	}
	if st := m.Status(); st.Instances != 2 || st.PoolSize != 1 || st.PoolMax != 2 {
		t.Errorf("%d instances (pool %d, up to %d), want 2 (pool 1, up to 2)", st.Instances, st.PoolSize, st.PoolMax)
	}
	release()
	wg.Wait()
	if st := m.Status(); st.Instances != 2 || st.Idle != 2 {
		t.Errorf("right after the calls: %d instances, %d idle; want both kept, idle", st.Instances, st.Idle)
	}
	// A call meanwhile is served by a kept instance, and the wait starts
	// again from its end.
	if err := m.Validate(context.Background(), &abi.Plugin{Name: "ok-2"}); err != nil {
		t.Fatal(err)
	}
	if st := m.Status(); st.Instances != 2 {
		t.Errorf("after a call within the wait: %d instances, want 2", st.Instances)
	}
	testkit.Eventually(t, "the base pool, idle", func() bool { st := m.Status(); return st.Instances == 1 && st.Idle == 1 })
}

// TestPoolMaxDefaults: PoolMax is DefaultPoolMax, or PoolSize when that is
// larger; it is never below PoolSize.
func TestPoolMaxDefaults(t *testing.T) {
	for _, c := range []struct{ size, max, want int }{
		{0, 0, DefaultPoolMax}, {2, 0, DefaultPoolMax}, {DefaultPoolMax + 4, 0, DefaultPoolMax + 4}, {2, 3, 3}, {4, 3, 4},
	} {
		o := Options{PoolSize: c.size, PoolMax: c.max}.withDefaults("x.wasm")
		if o.PoolMax != c.want {
			t.Errorf("pool_size %d, pool_max %d: PoolMax %d, want %d", c.size, c.max, o.PoolMax, c.want)
		}
	}
}

func TestLogsCarryTheModuleNameAndAreRateLimited(t *testing.T) {
	log, out := captureLogger()
	obs := &countingObserver{}
	m := load(t, build.Go(t, "guests/testmodules/faulty"), Options{Name: "flood", Logger: log, Observer: obs,
		LogRate: 10, LogBurst: 20, Config: map[string]string{"fault": "logflood"},
		// 100,000 lines take about a second under -race on a busy machine.
		CallTimeout: 30 * time.Second})
	start := time.Now()
	if _, err := m.Discover(context.Background()); err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(start)
	// No flush by hand: the call's end reports what it dropped.
	lines := strings.Count(out.String(), "flooding the log")
	// The bucket holds 20 lines and refills at 10 a second.
	if limit := 20 + int(elapsed.Seconds()*10) + 1; lines == 0 || lines > limit {
		t.Fatalf("%d flood lines reached the log in %v; want between 1 and %d", lines, elapsed, limit)
	}
	if !strings.Contains(out.String(), "module=flood") {
		t.Errorf("log lines do not carry the module name:\n%.500s", out)
	}
	if obs.dropped.Load() < 99000 {
		t.Errorf("observer counted %d dropped lines", obs.dropped.Load())
	}
}

func TestStderrGoesToTheLog(t *testing.T) {
	log, out := captureLogger()
	m := load(t, build.Go(t, "guests/testmodules/faulty"), Options{Name: "panicky", Logger: log,
		Config: map[string]string{"fault": "panic"}})
	m.Discover(context.Background())
	if !strings.Contains(out.String(), "stderr: panic: faulty: deliberate panic in discover") {
		t.Fatalf("panic not in the log:\n%s", out)
	}
}

type countingObserver struct {
	calls, faults, quarantined, dropped atomic.Int64
	longest                             atomic.Int64 // the longest call, in nanoseconds
}

func (o *countingObserver) Call(_, _ string, d time.Duration, f Fault) {
	o.calls.Add(1)
	for {
		l := o.longest.Load()
		if int64(d) <= l || o.longest.CompareAndSwap(l, int64(d)) {
			break
		}
	}
	if f != "" {
		o.faults.Add(1)
	}
}
func (o *countingObserver) Instances(string, int) {}
func (o *countingObserver) Quarantined(_ string, q bool) {
	if q {
		o.quarantined.Add(1)
	}
}
func (o *countingObserver) LogsDropped(_ string, n int) { o.dropped.Add(int64(n)) }

// The sandbox: what a module may not do.

func escape(t *testing.T, mounts []Mount, config map[string]string) map[string]string {
	t.Helper()
	m := load(t, build.Go(t, "guests/testmodules/escape"), Options{Mounts: mounts, Config: config})
	devs, err := m.Discover(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return devs[0].Attributes
}

func TestSandbox(t *testing.T) {
	dir := t.TempDir()
	granted := filepath.Join(dir, "granted")
	secretDir := filepath.Join(dir, "secret")
	for _, d := range []string{granted, secretDir, filepath.Join(granted, "sub")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	secret := filepath.Join(secretDir, "key")
	os.WriteFile(secret, []byte("the host's secret"), 0o644)
	os.WriteFile(filepath.Join(granted, "ok.txt"), []byte("granted content"), 0o644)
	os.Symlink(secret, filepath.Join(granted, "abs-link"))
	os.Symlink("../secret/key", filepath.Join(granted, "rel-link"))
	os.Symlink("../ok.txt", filepath.Join(granted, "sub", "inside-link"))
	mount := []Mount{{Host: granted, Guest: "/data"}}

	t.Run("granted file is readable", func(t *testing.T) {
		a := escape(t, mount, map[string]string{"attempt": "read", "path": "/data/ok.txt"})
		if a["ok"] != "true" || a["got"] != "granted content" {
			t.Fatalf("%v", a)
		}
	})
	t.Run("a link can be read, not followed out", func(t *testing.T) {
		a := escape(t, mount, map[string]string{"attempt": "readlink", "path": "/data/rel-link"})
		if a["ok"] != "true" || a["got"] != "../secret/key" {
			t.Fatalf("%v", a)
		}
	})
	t.Run("link that stays inside the mount is followed", func(t *testing.T) {
		a := escape(t, mount, map[string]string{"attempt": "read", "path": "/data/sub/inside-link"})
		if a["ok"] != "true" || a["got"] != "granted content" {
			t.Fatalf("%v", a)
		}
	})
	denied := []struct {
		name   string
		mounts []Mount
		config map[string]string
	}{
		{"host file, nothing granted", nil, map[string]string{"attempt": "read", "path": secret}},
		{"host file outside the mount", mount, map[string]string{"attempt": "read", "path": secret}},
		{"dot-dot out of the mount", mount, map[string]string{"attempt": "read", "path": "/data/../secret/key"}},
		{"dot-dot relative", mount, map[string]string{"attempt": "read", "path": "../secret/key"}},
		{"absolute symlink out of the mount", mount, map[string]string{"attempt": "read", "path": "/data/abs-link"}},
		{"relative symlink out of the mount", mount, map[string]string{"attempt": "read", "path": "/data/rel-link"}},
		{"write to the read-only mount", mount, map[string]string{"attempt": "write", "path": "/data/new.txt"}},
		{"overwrite in the read-only mount", mount, map[string]string{"attempt": "write", "path": "/data/ok.txt"}},
		{"list the host root", nil, map[string]string{"attempt": "list", "path": "/"}},
		{"open a socket", nil, map[string]string{"attempt": "dial", "addr": "127.0.0.1:22"}},
	}
	for _, c := range denied {
		t.Run(c.name+" is denied", func(t *testing.T) {
			a := escape(t, c.mounts, c.config)
			if a["ok"] != "false" || strings.Contains(a["got"], "secret") {
				t.Fatalf("the module got through: %v", a)
			}
		})
	}
	if b, _ := os.ReadFile(filepath.Join(granted, "ok.txt")); string(b) != "granted content" {
		t.Fatalf("the read-only mount was modified: %q", b)
	}
	if _, err := os.Stat(filepath.Join(granted, "new.txt")); err == nil {
		t.Fatal("the module created a file in the read-only mount")
	}
	t.Run("the host's environment is invisible", func(t *testing.T) {
		t.Setenv("WASMLET_TEST_SECRET", "hunter2")
		a := escape(t, nil, map[string]string{"attempt": "env"})
		if strings.Contains(a["got"], "hunter2") || strings.Contains(a["got"], "PATH=") {
			t.Fatalf("the module sees the host's environment: %q", a["got"])
		}
		if !strings.HasPrefix(a["got"], "GOMEMLIMIT=") || strings.Contains(a["got"], "\n") {
			t.Fatalf("environment %q, want only GOMEMLIMIT", a["got"])
		}
	})
	t.Run("root lets links resolve within it", func(t *testing.T) {
		// Like sysfs: the mount is granted/, links may resolve anywhere under dir.
		a := escape(t, []Mount{{Host: granted, Guest: "/data", Root: dir}},
			map[string]string{"attempt": "read", "path": "/data/rel-link"})
		if a["ok"] != "true" || a["got"] != "the host's secret" {
			t.Fatalf("%v", a)
		}
	})
}

// TestDeviceNodes: a module granted /dev may list and stat device nodes,
// and open them only when the mount says devices = true.
func TestDeviceNodes(t *testing.T) {
	dev := []Mount{{Host: "/dev", Guest: "/dev"}}
	a := escape(t, dev, map[string]string{"attempt": "stat", "path": "/dev/zero"})
	if a["ok"] != "true" || !strings.HasPrefix(a["got"], "Dc") {
		t.Fatalf("stat /dev/zero: %v, want a character device", a)
	}
	a = escape(t, dev, map[string]string{"attempt": "read", "path": "/dev/null"})
	if a["ok"] != "false" || !strings.Contains(strings.ToLower(a["error"]), "permission denied") {
		t.Fatalf("opening /dev/null without devices = true: %v", a)
	}
	a = escape(t, []Mount{{Host: "/dev", Guest: "/dev", Devices: true}}, map[string]string{"attempt": "read", "path": "/dev/null"})
	if a["ok"] != "true" || a["got"] != "" {
		t.Fatalf("opening /dev/null with devices = true: %v", a)
	}
}

func TestMountValidation(t *testing.T) {
	dir := t.TempDir()
	for _, m := range []Mount{
		{Host: "relative", Guest: "/x"},
		{Host: dir, Guest: "relative"},
		{Host: dir, Guest: "/x", Root: filepath.Join(dir, "below")},
		{Host: filepath.Join(dir, "missing"), Guest: "/x"},
	} {
		_, err := Load(context.Background(), wat(t, "minimal"), Options{MemoryLimit: 1 << 20, Mounts: []Mount{m}})
		if err == nil || !strings.Contains(err.Error(), "mount") {
			t.Errorf("mount %+v: got %v", m, err)
		}
	}
}

// TestCacheKeepsOnlyCheckedModules: an instrumented binary is cached once
// its original passed every check, so a refused module leaves nothing that a
// later load would trust without checking.
func TestCacheKeepsOnlyCheckedModules(t *testing.T) {
	dir := t.TempDir()
	c, err := NewCache(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	entries := func() []string {
		names, _ := filepath.Glob(filepath.Join(dir, "instrumented", "*"))
		return names
	}
	for _, refused := range []string{"start_loop", "missing_exports", "../malformed/huge_locals"} {
		if _, err := Load(context.Background(), wat(t, refused), Options{Cache: c}); err == nil {
			t.Fatalf("%s loaded", refused)
		}
	}
	if e := entries(); len(e) != 0 {
		t.Fatalf("refused modules left %v in the cache", e)
	}
	for range 2 { // the second load is a cache hit
		m, err := Load(context.Background(), wat(t, "minimal"), Options{Cache: c})
		if err != nil {
			t.Fatal(err)
		}
		if e := entries(); len(e) != 1 || !strings.HasPrefix(filepath.Base(e[0]), m.Digest()+"-v") {
			t.Fatalf("cache entries %v", e)
		}
		m.Close(context.Background())
	}
}

// TestSpinningGuestDoesNotHoldUpTheGC: while a guest spins in a loop (its
// call deadline far off), a garbage collection of the host completes. A
// loop in native code cannot be preempted; the instrumented loop head leaves
// it every 65,536 iterations, and that is enough. Were it not, the collector
// would stop the world for good (the deadline's timer stopped with it) and
// the test would fail on the test binary's timeout.
func TestSpinningGuestDoesNotHoldUpTheGC(t *testing.T) {
	m := load(t, wat(t, "loop"), Options{CallTimeout: time.Minute, PoolSize: 1})
	called := make(chan error, 1)
	go func() { _, err := m.Discover(context.Background()); called <- err }()
	var in *instance
	testkit.Eventually(t, "the guest spinning", func() bool {
		m.mu.Lock()
		for i := range m.live {
			in = i
		}
		m.mu.Unlock()
		if in == nil || in.fuel == nil {
			return false
		}
		f := in.fuel.Get()
		time.Sleep(time.Millisecond)
		return in.fuel.Get() != f
	})
	collected := make(chan struct{})
	go func() { runtime.GC(); close(collected) }()
	select {
	case <-collected:
	case err := <-called:
		t.Fatalf("the garbage collection waited for the guest's call to end (%v)", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	m.Close(ctx) // interrupts the guest
	if err := <-called; !IsFault(err) {
		t.Fatalf("the interrupted call: %v", err)
	}
}

// TestTableGrowIsBounded: a module that grows its table by 2²⁸ elements
// (2 GiB of host memory, outside its memory limit, had the host not capped
// its tables) sees the grow fail, and the host allocates next to nothing.
func TestTableGrowIsBounded(t *testing.T) {
	m := load(t, wat(t, "table_grow"), Options{})
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := m.Discover(context.Background())
	runtime.ReadMemStats(&after)
	var ce *CallError
	if !errors.As(err, &ce) || ce.Fault != FaultTrap || !strings.Contains(err.Error(), "unreachable") {
		t.Fatalf("got %v, want the module's own trap once its grow failed", err)
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 64<<20 {
		t.Fatalf("the host allocated %d MB during the call", n>>20)
	}
}
