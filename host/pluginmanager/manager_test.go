package pluginmanager_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/wasmlet/wasmlet/guests/build"
	hostcsi "github.com/wasmlet/wasmlet/host/csi"
	"github.com/wasmlet/wasmlet/host/internal/testenv"
	"github.com/wasmlet/wasmlet/host/internal/testplugin"
	"github.com/wasmlet/wasmlet/host/module"
	"github.com/wasmlet/wasmlet/host/pluginmanager"
	"github.com/wasmlet/wasmlet/host/pluginmanager/wasmhandler"
)

// recorder is the device manager's side of the contract, recorded.
type recorder struct {
	mu      sync.Mutex
	calls   []string
	refuse  error
	current map[string]wasmhandler.DevicePlugin
}

func (r *recorder) RegisterDevicePlugin(_ context.Context, p wasmhandler.DevicePlugin) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, "register "+p.Resource+" "+p.Endpoint+" "+p.Version)
	if r.refuse != nil {
		return r.refuse
	}
	if r.current == nil {
		r.current = map[string]wasmhandler.DevicePlugin{}
	}
	r.current[p.Resource] = p
	return nil
}

func (r *recorder) DeregisterDevicePlugin(_ context.Context, p wasmhandler.DevicePlugin) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, "deregister "+p.Resource+" "+p.Endpoint)
	delete(r.current, p.Resource)
	return nil
}

func (r *recorder) log() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.calls...)
}

type env struct {
	t        testing.TB
	regDir   string
	modDir   string
	modules  *module.Registry
	pm       *pluginmanager.Manager
	dm       *recorder
	csi      *hostcsi.Drivers
	cancel   context.CancelFunc
	done     chan struct{}
	handlers map[string]string
	calls    testenv.Calls // the modules' calls, by operation
}

// start runs a plugin manager with the given handler modules (module name →
// guest directory) loaded.
func start(t testing.TB, modules map[string]string, opts ...func(*pluginmanager.Config)) *env {
	t.Helper()
	dir := testenv.ShortDir(t)
	e := &env{t: t, regDir: filepath.Join(dir, "r"), modDir: filepath.Join(dir, "m"), dm: &recorder{}, done: make(chan struct{})}
	os.MkdirAll(e.modDir, 0o755)
	e.modules = module.NewRegistry(func(name string) module.Options {
		o := module.Options{MemoryLimit: 64 << 20, Cache: testenv.ModuleCache(t), CallTimeout: 5 * time.Second, Observer: &e.calls}
		switch name {
		case "customhandler", "other":
			o.Config = map[string]string{"type": "ExamplePlugin", "versions": "v1,v2", "name_pattern": "example-*"}
		case "foohandler":
			o.Config = map[string]string{"type": "FooPlugin", "versions": "v1"}
		case "csihandler":
			o.Config = map[string]string{"endpoint_dirs": ""} // the tests' directories are anywhere
		}
		return o
	}, func() map[string]string { return e.handlers }, nil)
	for name, dir := range modules {
		e.install(name, dir)
	}
	e.csi = hostcsi.New(hostcsi.Config{})
	cfg := pluginmanager.Config{RegistryDir: e.regDir, Handlers: wasmhandler.New(wasmhandler.Config{Modules: e.modules, DevicePlugins: e.dm,
		CSIDrivers: csiDrivers{e.csi}}),
		ResyncPeriod:     time.Minute,
		OperationTimeout: 2 * time.Second, BackoffInitial: 50 * time.Millisecond, BackoffMax: 400 * time.Millisecond,
		Logger: hclog.New(&hclog.LoggerOptions{Level: hclog.Warn, Output: testenv.Writer{T: t}})}
	for _, o := range opts {
		o(&cfg)
	}
	pm, err := pluginmanager.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.pm = pm
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	go func() { defer close(e.done); pm.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-e.done
		e.modules.Close(context.Background())
	})
	<-pm.Ready()
	return e
}

// startBench is start for benchmarks: only warnings are logged.
func startBench(b *testing.B) *env {
	return start(b, map[string]string{"customhandler": "guests/customhandler"}, func(c *pluginmanager.Config) {
		c.Logger = hclog.New(&hclog.LoggerOptions{Level: hclog.Error})
	})
}

// startExamples starts n example plugins at once, the i-th named
// example-<round>-<i> on socket path(i) under the registry directory.
func (e *env) startExamples(tb testing.TB, n, round int, path func(i int) string) []*testplugin.Registrant {
	plugins := make([]*testplugin.Registrant, n)
	var wg sync.WaitGroup
	for i := range plugins {
		wg.Go(func() {
			info := example
			info.Name = fmt.Sprintf("example-%d-%d", round, i)
			plugins[i] = testplugin.StartRegistrant(tb, filepath.Join(e.regDir, path(i)), info)
		})
	}
	wg.Wait()
	return plugins
}

// install copies a built guest into the module directory as name.wasm and
// loads it, as the module directory watcher would.
func (e *env) install(name, guest string) {
	e.t.Helper()
	src := build.Go(e.t, guest)
	b, err := os.ReadFile(src)
	if err != nil {
		e.t.Fatal(err)
	}
	dst := filepath.Join(e.modDir, name+".wasm")
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.modules.Load(context.Background(), dst); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) plugin(rel string, info testplugin.Info, opts ...testplugin.Option) *testplugin.Registrant {
	return testplugin.StartRegistrant(e.t, filepath.Join(e.regDir, rel), info, opts...)
}

// status waits until the plugin at socket reaches state, and returns it.
func (e *env) status(socket, state string) pluginmanager.PluginStatus {
	e.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	var last []pluginmanager.PluginStatus
	for time.Now().Before(deadline) {
		last = e.pm.Plugins()
		for _, s := range last {
			if s.SocketPath == socket && s.State == state {
				return s
			}
		}
		if state == "" && !has(last, socket) {
			return pluginmanager.PluginStatus{}
		}
		time.Sleep(5 * time.Millisecond)
	}
	e.t.Fatalf("plugin %s never reached state %q; plugins: %+v", socket, state, last)
	return pluginmanager.PluginStatus{}
}

func has(ps []pluginmanager.PluginStatus, socket string) bool {
	for _, p := range ps {
		if p.SocketPath == socket {
			return true
		}
	}
	return false
}

// csiDrivers is the node's adapter (host/node) from the CSI action to the
// CSI driver registry.
type csiDrivers struct{ d *hostcsi.Drivers }

func (c csiDrivers) RegisterCSIDriver(ctx context.Context, d wasmhandler.CSIDriver) (string, error) {
	reg, err := c.d.Register(ctx, hostcsi.Registration(d))
	return reg.Version, err
}

func (c csiDrivers) DeregisterCSIDriver(_ context.Context, d wasmhandler.CSIDriver) error {
	c.d.Deregister(d.Name, d.SocketPath)
	return nil
}

var example = testplugin.Info{Type: "ExamplePlugin", Name: "example-one", Endpoint: "/run/example.sock", Versions: []string{"v2"}}

func TestRegisterAndDeregister(t *testing.T) {
	e := start(t, map[string]string{"customhandler": "guests/customhandler"})
	p := e.plugin("one.sock", example)
	if s := p.Expect(t, 5*time.Second); !s.Registered || s.Error != "" {
		t.Fatalf("notification %+v", s)
	}
	st := e.status(p.Path, pluginmanager.StateRegistered)
	if st.Handler != "customhandler" || st.Name != "example-one" || st.Action != "record" || st.Attributes["version"] != "v2" {
		t.Fatalf("status %+v", st)
	}
	p.Stop()
	e.status(p.Path, "")
}

func TestRefusedPluginIsToldWhy(t *testing.T) {
	e := start(t, map[string]string{"customhandler": "guests/customhandler"})
	bad := example
	bad.Name, bad.Versions = "example-old", []string{"v0"}
	p := e.plugin("old.sock", bad)
	s := p.Expect(t, 5*time.Second)
	if s.Registered || !strings.Contains(s.Error, "v0") || !strings.Contains(s.Error, `handler "customhandler" refused plugin "example-old"`) {
		t.Fatalf("notification %+v", s)
	}
	st := e.status(p.Path, pluginmanager.StateFailing)
	if st.LastError == "" || st.NextRetry.IsZero() {
		t.Fatalf("status %+v", st)
	}
}

func TestDotFilesIgnoredAndSubdirectoriesFollowed(t *testing.T) {
	e := start(t, map[string]string{"customhandler": "guests/customhandler"})
	hidden := e.plugin(".hidden.sock", example)
	deep := example
	deep.Name = "example-deep"
	p := e.plugin(filepath.Join("a", "b", "deep.sock"), deep)
	if s := p.Expect(t, 5*time.Second); !s.Registered {
		t.Fatalf("plugin in a subdirectory: %+v", s)
	}
	hidden.ExpectNone(t, 200*time.Millisecond)
	if has(e.pm.Plugins(), hidden.Path) {
		t.Fatal("a dot-file socket is listed")
	}
}

func TestRecreatedSocketIsANewPlugin(t *testing.T) {
	e := start(t, map[string]string{"devicepluginhandler": "guests/devicepluginhandler"})
	info := testplugin.Info{Type: "DevicePlugin", Name: "example.com/gpu", Endpoint: "gpu.sock", Versions: []string{"v1beta1"}}
	first := e.plugin("gpu-reg.sock", info)
	first.Expect(t, 5*time.Second)
	// The plugin restarts: a new process, a new socket at the same path.
	first.Stop()
	second := e.plugin("gpu-reg.sock", info)
	if s := second.Expect(t, 5*time.Second); !s.Registered {
		t.Fatalf("restarted plugin: %+v", s)
	}
	e.status(second.Path, pluginmanager.StateRegistered)
	ep := filepath.Join(e.regDir, "gpu.sock")
	want := []string{
		"register example.com/gpu " + ep + " v1beta1",
		"deregister example.com/gpu " + ep,
		"register example.com/gpu " + ep + " v1beta1",
	}
	if got := e.dm.log(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("device manager saw %v, want %v", got, want)
	}
}

func TestRenamedOutIsDeregistered(t *testing.T) {
	e := start(t, map[string]string{"customhandler": "guests/customhandler"})
	p := e.plugin("moving.sock", example)
	p.Expect(t, 5*time.Second)
	elsewhere := filepath.Join(testenv.ShortDir(t), "moved.sock")
	if err := os.Rename(p.Path, elsewhere); err != nil {
		t.Fatal(err)
	}
	e.status(p.Path, "")
}

func TestFailingPluginBacksOffAndRecovers(t *testing.T) {
	e := start(t, map[string]string{"customhandler": "guests/customhandler"})
	p := e.plugin("flaky.sock", example, testplugin.FailGetInfo(3))
	st := e.status(p.Path, pluginmanager.StateFailing)
	if st.Failures < 1 || !strings.Contains(st.LastError, "not ready yet") || st.NextRetry.Before(time.Now().Add(-time.Second)) {
		t.Fatalf("failing status %+v", st)
	}
	if s := p.Expect(t, 5*time.Second); !s.Registered {
		t.Fatalf("%+v", s)
	}
	if n := p.GetInfos(); n != 4 {
		t.Fatalf("GetInfo called %d times, want 3 failures then success", n)
	}
}

func TestHangingPluginDoesNotBlockOthers(t *testing.T) {
	e := start(t, map[string]string{"customhandler": "guests/customhandler"})
	hung := example
	hung.Name = "example-hung"
	hp := e.plugin("hung.sock", hung, testplugin.Hang())
	testenv.Eventually(t, "the hung plugin to be asked who it is", func() bool { return hp.GetInfos() > 0 })
	// The hung operation is under way (and lasts the operation timeout, 2 s):
	// a healthy plugin is registered meanwhile, not after it.
	start := time.Now()
	p := e.plugin("fine.sock", example)
	p.Expect(t, 5*time.Second)
	d := time.Since(start)
	hungState := "absent"
	for _, st := range e.pm.Plugins() {
		if st.SocketPath == filepath.Join(e.regDir, "hung.sock") {
			hungState = st.State
		}
	}
	if hungState != pluginmanager.StateRegistering {
		t.Fatalf("a healthy plugin waited %v, until the hung one's operation ended (now %s)", d, hungState)
	}
	// The hung operation times out and backs off.
	st := e.status(filepath.Join(e.regDir, "hung.sock"), pluginmanager.StateFailing)
	if !strings.Contains(st.LastError, "DeadlineExceeded") {
		t.Fatalf("hung plugin status %+v", st)
	}
}

// noHandler is what the kubelet tells a plugin whose type has no handler.
func noHandler(p *testplugin.Registrant) string {
	return "RegisterPlugin error -- no handler registered for plugin type: " + p.Info.Type + " at socket " + p.Path
}

// waitRegistered waits for p to be told it is registered, after any number
// of "no handler" answers.
func waitRegistered(t testing.TB, p *testplugin.Registrant) {
	t.Helper()
	for {
		s := p.Expect(t, 10*time.Second)
		if s.Registered {
			return
		}
		if s.Error != noHandler(p) {
			t.Fatalf("%s: told %+v while waiting for a handler", p.Path, s)
		}
	}
}

func TestHandlerMissingThenArrives(t *testing.T) {
	e := start(t, nil)
	p := e.plugin("early.sock", example)
	// Told, as the kubelet tells it, and waiting.
	if s := p.Expect(t, 5*time.Second); s.Registered || s.Error != noHandler(p) {
		t.Fatalf("notification %+v, want %q", s, noHandler(p))
	}
	st := e.status(p.Path, pluginmanager.StateWaiting)
	if st.Waiting != `a handler for plugin type "ExamplePlugin"` || st.LastError != noHandler(p) || st.NextRetry.IsZero() {
		t.Fatalf("status %+v", st)
	}
	e.install("customhandler", "guests/customhandler")
	waitRegistered(t, p)
}

func TestHandlerReplacedWhileRegistered(t *testing.T) {
	e := start(t, map[string]string{"customhandler": "guests/customhandler"})
	p := e.plugin("one.sock", example)
	p.Expect(t, 5*time.Second)
	// A new file under the same name that handles another type: the
	// registered plugin stays registered, a new plugin of the old type waits.
	e.install("customhandler", "guests/devicepluginhandler")
	second := example
	second.Name = "example-two"
	q := e.plugin("two.sock", second)
	e.status(q.Path, pluginmanager.StateWaiting)
	if st := e.status(p.Path, pluginmanager.StateRegistered); st.Handler != "customhandler" {
		t.Fatalf("%+v", st)
	}
	// The right handler comes back: the waiting plugin registers.
	e.install("customhandler", "guests/customhandler")
	waitRegistered(t, q)
	// Deregistration goes to the module of that name, whichever version runs.
	p.Stop()
	e.status(p.Path, "")
}

func TestConfiguredHandlerWinsOverDeclared(t *testing.T) {
	e := start(t, map[string]string{"customhandler": "guests/customhandler", "other": "guests/customhandler"})
	e.handlers = map[string]string{"ExamplePlugin": "other"}
	p := e.plugin("one.sock", example)
	p.Expect(t, 5*time.Second)
	if st := e.status(p.Path, pluginmanager.StateRegistered); st.Handler != "other" {
		t.Fatalf("handler %q, want the configured one", st.Handler)
	}
}

func TestDeviceManagerRefusal(t *testing.T) {
	e := start(t, map[string]string{"devicepluginhandler": "guests/devicepluginhandler"})
	e.dm.refuse = errors.New("resource already served by another plugin")
	p := e.plugin("gpu.sock", testplugin.Info{Type: "DevicePlugin", Name: "example.com/gpu", Versions: []string{"v1beta1"}})
	s := p.Expect(t, 5*time.Second)
	if s.Registered || !strings.Contains(s.Error, "resource already served") {
		t.Fatalf("%+v", s)
	}
	// The handler had said yes: it is told the registration did not happen.
	if r, d := e.calls.Count("register"), e.calls.Count("deregister"); r != 1 || d != 1 {
		t.Fatalf("handler calls: %d register, %d deregister; want one of each", r, d)
	}
}
