package bridge_test

import (
	"context"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	testingclock "k8s.io/utils/clock/testing"

	"github.com/wasmlet/wasmlet/guests/build"
	"github.com/wasmlet/wasmlet/host/bridge"
	"github.com/wasmlet/wasmlet/host/cdi"
	"github.com/wasmlet/wasmlet/host/devicemanager"
	"github.com/wasmlet/wasmlet/host/devicesource"
	"github.com/wasmlet/wasmlet/host/internal/testenv"
	"github.com/wasmlet/wasmlet/host/module"
)

func testLogger(t testing.TB) hclog.Logger {
	level := hclog.Debug
	if _, ok := t.(*testing.B); ok {
		level = hclog.Error // keep benchmark output readable
	}
	return hclog.New(&hclog.LoggerOptions{Level: level, Output: testenv.Writer{T: t}})
}

// env is what host/node assembles for the bridge: a module registry, a
// device source controller serving every source to the bridge with a CDI
// spec (host/node does so for the sources with bridge = true), the bridge
// and the CDI specs, with the kubelet's directories in a temporary
// directory.
type env struct {
	t           testing.TB
	kubeletDir  string
	registryDir string
	cdiDir      string
	mods        *testenv.Modules
	reg         *module.Registry // mods.Registry
	br          *bridge.Bridge
	specs       *cdi.Specs
	ctrl        *devicesource.Controller
	// clock times the grace period of a source that went away (a minute),
	// for the bridge and the CDI specs alike.
	clock *testingclock.FakeClock

	done chan error
}

type envConfig struct {
	mode    string        // registration mode; default kubelet-socket
	backoff time.Duration // initial registration backoff; default 50ms
	// failFast: sources report their devices unhealthy after two failed
	// discoveries in a row, and retry every 5 ms.
	failFast bool
}

func newEnv(t testing.TB, cfg envConfig) *env {
	t.Helper()
	if cfg.backoff == 0 {
		cfg.backoff = 50 * time.Millisecond
	}
	dir := testenv.ShortDir(t)
	e := &env{t: t, kubeletDir: filepath.Join(dir, "dp"), registryDir: filepath.Join(dir, "reg"),
		cdiDir: filepath.Join(dir, "cdi"), done: make(chan error, 1), clock: testingclock.NewFakeClock(time.Now())}
	log := testLogger(t)
	e.mods = testenv.NewModules(t, log)
	e.reg = e.mods.Registry
	var err error
	if e.specs, err = cdi.New(cdi.Config{Dir: e.cdiDir, GracePeriod: time.Minute, Clock: e.clock, Logger: log.Named("cdi")}); err != nil {
		t.Fatal(err)
	}
	// No resync within a test: whatever the bridge does, an event made it
	// do it, so a test that waits for a reaction checks that the bridge
	// reacts to the event (how fast is BenchmarkKubeletRestart's to say).
	e.br, err = bridge.New(bridge.Config{KubeletDir: e.kubeletDir, Registration: cfg.mode, PluginRegistryDir: e.registryDir,
		RegisterTimeout: 2 * time.Second, BackoffInitial: cfg.backoff, BackoffMax: 8 * cfg.backoff,
		ResyncPeriod: time.Hour, GracePeriod: time.Minute, Clock: e.clock, Logger: log.Named("bridge")})
	if err != nil {
		t.Fatal(err)
	}
	srcOpts := devicesource.Options{Debounce: 10 * time.Millisecond}
	if cfg.failFast {
		srcOpts.RetryBackoff, srcOpts.MaxBackoff, srcOpts.MaxFailures = 5*time.Millisecond, 5*time.Millisecond, 2
	}
	e.ctrl = devicesource.NewController(e.reg, toBridge{e}, devicesource.ControllerConfig{
		Options: func(string) devicesource.Options { return srcOpts },
		Logger:  log.Named("sources"),
	})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); e.ctrl.Run(ctx) }()
	go func() { defer wg.Done(); e.done <- e.br.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		e.specs.Close()
	})
	return e
}

// toBridge serves every device source to the bridge, with a CDI spec.
type toBridge struct{ e *env }

func (b toBridge) SetProvider(resource string, p devicemanager.Provider) {
	b.e.br.SetProvider(resource, b.e.specs.Wrap(p.(cdi.Source)))
}

// RemoveProvider lets the spec go first: a test that sees the bridge's
// grace deadline and steps the clock past it then finds both grace timers
// set.
func (b toBridge) RemoveProvider(resource, providerName string) {
	b.e.specs.Remove(resource, providerName)
	b.e.br.RemoveProvider(resource, providerName)
}

// counter loads the counter module as a bridged source of example.com/counter.
func (e *env) counter(count string) {
	e.t.Helper()
	e.mods.Configure("counter", module.Options{Config: map[string]string{"resource": "example.com/counter", "count": count}})
	e.mods.Install("counter", build.Go(e.t, "guests/counter"))
}

// startCounter starts a kubelet, then the counter module with count
// devices, and waits until the kubelet has them all, healthy.
func (e *env) startCounter(count int) *fakeKubelet {
	e.t.Helper()
	k := startKubelet(e.t, e.kubeletDir)
	e.counter(strconv.Itoa(count))
	k.ExpectRegister()
	k.WaitDevices(counter, healthy(count))
	return k
}

// startDir starts a kubelet, then dirsource serving a device per file of
// data (one there now), and waits until the kubelet has it, healthy.
func (e *env) startDir(data string) *fakeKubelet {
	e.t.Helper()
	k := startKubelet(e.t, e.kubeletDir)
	e.mods.Configure("dir", module.Options{Mounts: []module.Mount{{Host: data, Guest: "/data"}}})
	e.mods.Install("dir", build.Go(e.t, "host/devicesource/testdata/dirsource"))
	k.ExpectRegister()
	k.WaitDevices("example.com/dir", healthy(1))
	return k
}

func (e *env) status(resource string) bridge.Status {
	for _, st := range e.br.Status() {
		if st.Resource == resource {
			return st
		}
	}
	return bridge.Status{}
}

// waitStatus waits until the bridge's status of resource satisfies cond.
func (e *env) waitStatus(resource, what string, cond func(bridge.Status) bool) bridge.Status {
	e.t.Helper()
	var st bridge.Status
	eventually(e.t, what, func() bool { st = e.status(resource); return cond(st) })
	return st
}

// put writes a file the dirsource test module reads, atomically: a plain
// os.WriteFile truncates first, and a discovery that runs in between would
// see an empty device.
func put(t testing.TB, dir, name, content string) {
	t.Helper()
	testenv.WriteFile(t, filepath.Join(dir, name), []byte(content))
}

var eventually = testenv.Eventually
