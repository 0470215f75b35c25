package node

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"

	"github.com/wasmlet/wasmlet/abi"
	"github.com/wasmlet/wasmlet/checkpoint"
	"github.com/wasmlet/wasmlet/guests/build"
	"github.com/wasmlet/wasmlet/host/api"
	"github.com/wasmlet/wasmlet/host/api/adminpb"
	"github.com/wasmlet/wasmlet/host/devicemanager"
	"github.com/wasmlet/wasmlet/host/devicesource"
	"github.com/wasmlet/wasmlet/host/endpoint"
	"github.com/wasmlet/wasmlet/host/internal/testenv"
	"github.com/wasmlet/wasmlet/host/internal/testplugin"
	"github.com/wasmlet/wasmlet/host/module"
	"github.com/wasmlet/wasmlet/host/pluginmanager"
	"github.com/wasmlet/wasmlet/host/pluginmanager/wasmhandler"
	"github.com/wasmlet/wasmlet/internal/testkit"
)

// apiHost is a real device manager (with kubelet.sock), optionally a real
// module registry, device source controller and plugin manager, and the
// host API serving them through the node's backend.
type apiHost struct {
	t       testing.TB
	dir     string
	dm      *devicemanager.Manager
	kubelet string
	modules *module.Registry
	sources *devicesource.Controller
	pm      *pluginmanager.Manager
	regDir  string
	modDir  string
	socket  string // the admin socket
	prSock  string // the pod resources socket
	client  *api.Client
	started time.Time
	// callTimeout bounds the device manager's calls to providers.
	callTimeout time.Duration
}

type hostOption func(*apiHost)

// withModules adds a module registry, a device source controller and a
// plugin manager.
func withModules(h *apiHost) {
	h.modDir = filepath.Join(h.dir, "m")
	h.regDir = filepath.Join(h.dir, "r")
	os.MkdirAll(h.modDir, 0o755)
	h.modules = module.NewRegistry(func(name string) module.Options {
		if name == "slow" { // one instance, whose allocate takes 3 seconds
			return module.Options{Cache: testenv.ModuleCache(h.t), CallTimeout: 10 * time.Second, MemoryLimit: 64 << 20, PoolSize: 1, PoolMax: 1,
				Config: map[string]string{"fault": "slow", "on": "allocate", "delay_ms": "3000"}}
		}
		return module.Options{Cache: testenv.ModuleCache(h.t), CallTimeout: 5 * time.Second, MemoryLimit: 64 << 20,
			Config: map[string]string{"type": "ExamplePlugin", "versions": "v1"}}
	}, nil, testenv.Logger(h.t, hclog.Warn))
	pm, err := pluginmanager.New(pluginmanager.Config{RegistryDir: h.regDir, Handlers: wasmhandler.New(wasmhandler.Config{Modules: h.modules}),
		ResyncPeriod: time.Minute, OperationTimeout: 2 * time.Second, Logger: testenv.Logger(h.t, hclog.Warn)})
	if err != nil {
		h.t.Fatal(err)
	}
	h.pm = pm
}

func startHost(t testing.TB, opts ...hostOption) *apiHost {
	t.Helper()
	h := &apiHost{t: t, dir: testenv.ShortDir(t), started: time.Now().Add(-time.Minute)}
	for _, o := range opts {
		o(h)
	}
	dm, err := devicemanager.New(devicemanager.Config{CheckpointPath: filepath.Join(h.dir, "ckpt"),
		GracePeriod: time.Hour, Logger: testenv.Logger(t, hclog.Warn), CallTimeout: h.callTimeout})
	if err != nil {
		t.Fatal(err)
	}
	h.dm = dm
	if h.modules != nil {
		h.sources = devicesource.NewController(h.modules, dm, devicesource.ControllerConfig{Logger: testenv.Logger(t, hclog.Warn)})
	}
	srv := devicemanager.NewServer(dm, h.dir, func(ctx context.Context, resource, path string) (devicemanager.Provider, error) {
		return endpoint.Dial(ctx, resource, path)
	}, 2*time.Second)
	h.kubelet = srv.Path()
	h.socket = filepath.Join(h.dir, "run", "api.sock")
	h.prSock = filepath.Join(h.dir, "pr", "pr.sock")

	b := backend{parts{
		status: func() *adminpb.StatusResponse {
			return &adminpb.StatusResponse{Version: "test", Started: timestamppb.New(h.started),
				Directories: &adminpb.Directories{State: h.dir, Modules: h.modDir, PluginRegistry: h.regDir},
				ApiSocket:   h.socket, PodResourcesSocket: h.prSock, GracePeriod: durationpb.New(time.Hour), Ready: true}
		},
		grace: time.Hour, modules: h.modules, sources: h.sources, plugins: h.pm, devices: dm,
	}}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	run := func(f func(context.Context) error) {
		wg.Add(1)
		go func() { defer wg.Done(); f(ctx) }()
	}
	run(dm.Run)
	run(srv.Serve)
	if h.pm != nil {
		run(h.pm.Run)
	}
	if h.sources != nil {
		run(h.sources.Run)
	}
	serveErr := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		serveErr <- api.Serve(ctx, api.Config{AdminSocket: h.socket, PodResourcesSocket: h.prSock, Backend: b, Logger: testenv.Logger(t, hclog.Warn)})
	}()
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		if err := <-serveErr; err != nil {
			t.Errorf("Serve: %v", err)
		}
		for _, sock := range []string{h.socket, h.prSock} {
			if _, err := os.Lstat(sock); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s is still there after shutdown (%v)", sock, err)
			}
		}
		if h.modules != nil {
			h.modules.Close(context.Background())
		}
	})
	waitFor(t, "the API sockets and kubelet.sock", func() bool {
		_, e1 := os.Stat(h.socket)
		_, e2 := os.Stat(h.kubelet)
		_, e3 := os.Stat(h.prSock)
		return e1 == nil && e2 == nil && e3 == nil
	})
	if h.pm != nil {
		<-h.pm.Ready()
	}
	c := testkit.DialAPI(t, h.socket)
	h.client = c
	return h
}

var waitFor = testenv.Eventually

// plugin starts a device plugin for resource and waits for its devices.
func (h *apiHost) plugin(name, resource string, devs []*pluginapi.Device) *testplugin.DevicePlugin {
	h.t.Helper()
	p := testplugin.StartDevicePlugin(h.t, filepath.Join(h.dir, name), resource, devs)
	if err := p.Register(context.Background(), h.kubelet); err != nil {
		h.t.Fatal(err)
	}
	waitFor(h.t, resource+" devices", func() bool {
		for _, r := range h.dm.Resources() {
			if r.Name == resource && r.Connected && r.Capacity == len(devs) {
				return true
			}
		}
		return false
	})
	return p
}

func (h *apiHost) allocate(ns, pod, ctr, resource string, n int) *adminpb.Allocation {
	h.t.Helper()
	resp, err := h.client.Allocate(context.Background(), &adminpb.AllocateRequest{
		Namespace: ns, Pod: pod, Container: ctr, Resource: resource, Count: int32(n)})
	if err != nil {
		h.t.Fatalf("allocate %s/%s/%s %d %s: %v", ns, pod, ctr, n, resource, err)
	}
	return resp.Allocation
}

// wantStatus checks a gRPC error's code and message.
func wantStatus(t testing.TB, err error, code codes.Code, substr string) {
	t.Helper()
	if status.Code(err) != code {
		t.Fatalf("got %v, want code %v", err, code)
	}
	if !strings.Contains(status.Convert(err).Message(), substr) {
		t.Fatalf("message %q does not contain %q", status.Convert(err).Message(), substr)
	}
}

// wantCode checks an admin API answer: its code, its message, and that it
// carries a reason (it is the host's answer, not the connection's).
func wantCode(t testing.TB, err error, code codes.Code, substr string) {
	t.Helper()
	wantStatus(t, err, code, substr)
	if api.ReasonOf(err) == "" {
		t.Fatalf("%v carries no reason", err)
	}
}

func TestAllocateListRelease(t *testing.T) {
	h := startHost(t)
	h.plugin("gpu.sock", "example.com/gpu", testplugin.Devices("gpu", 4))
	ctx := context.Background()

	a := h.allocate("default", "train", "main", "example.com/gpu", 2)
	if a.Workload != "default/train/main" || len(a.DeviceIds) != 2 || a.Allocated == nil {
		t.Fatalf("allocation %v", a)
	}
	// The default policy keeps the devices on one NUMA node, and the
	// plugin's container response comes back whole.
	if got := a.Response.Envs["TEST_DEVICES"]; got != strings.Join(a.DeviceIds, ",") {
		t.Fatalf("envs %v, devices %v", a.Response.Envs, a.DeviceIds)
	}
	if len(a.Response.Devices) != 1 || a.Response.Devices[0].HostPath != "/dev/null" || a.Response.Devices[0].Permissions != "rw" {
		t.Fatalf("device specs %v", a.Response.Devices)
	}
	// Asking again is idempotent.
	if again := h.allocate("default", "train", "main", "example.com/gpu", 2); strings.Join(again.DeviceIds, ",") != strings.Join(a.DeviceIds, ",") {
		t.Fatalf("second allocation %v, first %v", again.DeviceIds, a.DeviceIds)
	}

	rs, err := h.client.ListResources(ctx, &adminpb.ListResourcesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rs.Resources) != 1 {
		t.Fatalf("resources %v", rs.Resources)
	}
	r := rs.Resources[0]
	if r.Name != "example.com/gpu" || !r.Connected || r.Capacity != 4 || r.Healthy != 4 || r.Allocated != 2 || r.Allocatable != 2 ||
		!strings.HasPrefix(r.Provider, "plugin:") || len(r.Devices) != 4 {
		t.Fatalf("resource %v", r)
	}
	held := 0
	for _, d := range r.Devices {
		if len(d.NumaNodes) != 1 {
			t.Fatalf("device %v has no NUMA node", d)
		}
		if d.AllocatedTo == "default/train/main" {
			held++
		}
	}
	if held != 2 {
		t.Fatalf("devices %v", r.Devices)
	}
	if _, err := h.client.ListResources(ctx, &adminpb.ListResourcesRequest{Name: "example.com/nope"}); err != nil {
		wantCode(t, err, codes.NotFound, "resources: example.com/gpu")
	} else {
		t.Fatal("an unknown resource was listed")
	}

	as, err := h.client.ListAllocations(ctx, &adminpb.ListAllocationsRequest{})
	if err != nil || len(as.Allocations) != 1 || as.Allocations[0].Workload != "default/train/main" {
		t.Fatalf("allocations %v, %v", as, err)
	}

	rel, err := h.client.Release(ctx, &adminpb.ReleaseRequest{Workload: "default/train/main"})
	if err != nil || len(rel.Released) != 1 || rel.Released[0].Resource != "example.com/gpu" {
		t.Fatalf("release %v, %v", rel, err)
	}
	_, err = h.client.Release(ctx, &adminpb.ReleaseRequest{Workload: "default/train/main"})
	wantCode(t, err, codes.NotFound, "holds no devices")
	if as, _ := h.client.ListAllocations(ctx, &adminpb.ListAllocationsRequest{}); len(as.Allocations) != 0 {
		t.Fatalf("allocations after release: %v", as.Allocations)
	}
	// The release is durable: the checkpoint no longer has it.
	st, err := checkpoint.Read(filepath.Join(h.dir, "ckpt"))
	if err != nil || len(st.GetAllocations()) != 0 {
		t.Fatalf("checkpoint after release: %v, %v", st, err)
	}
}

func TestAllocateErrorsAreStatusCodes(t *testing.T) {
	h := startHost(t)
	p := h.plugin("gpu.sock", "example.com/gpu", testplugin.Devices("gpu", 2))
	ctx := context.Background()
	alloc := func(ns, pod, ctr, res string, n int32) error {
		_, err := h.client.Allocate(ctx, &adminpb.AllocateRequest{Namespace: ns, Pod: pod, Container: ctr, Resource: res, Count: n})
		return err
	}
	wantCode(t, alloc("default", "p", "c", "example.com/tpu", 1), codes.NotFound, `no resource "example.com/tpu"`)
	wantCode(t, alloc("default", "p", "c", "example.com/gpu", 3), codes.ResourceExhausted, "3 device(s) of example.com/gpu requested, 2 free")
	wantCode(t, alloc("", "p/q", "c", "example.com/gpu", 0), codes.InvalidArgument,
		`namespace is required; pod "p/q" contains "/"; count must be at least 1, not 0`)
	h.allocate("default", "p", "c", "example.com/gpu", 1)
	wantCode(t, alloc("default", "p", "c", "example.com/gpu", 2), codes.AlreadyExists, "release it first")

	_, err := h.client.Release(ctx, &adminpb.ReleaseRequest{Workload: "default/p"})
	wantCode(t, err, codes.InvalidArgument, "namespace/pod/container")
	_, err = h.client.Release(ctx, &adminpb.ReleaseRequest{Workload: "default/p/c", Resource: "example.com/tpu"})
	wantCode(t, err, codes.NotFound, "holds no devices of example.com/tpu")

	// The provider goes: its devices stay (unhealthy) for the grace period,
	// with a deadline, and allocating is worth retrying later.
	p.Stop()
	waitFor(t, "the provider to be lost", func() bool {
		rs := h.dm.Resources()
		return len(rs) == 1 && !rs[0].Connected
	})
	wantCode(t, alloc("default", "q", "c", "example.com/gpu", 1), codes.Unavailable, "no provider")
	rs, err := h.client.ListResources(ctx, &adminpb.ListResourcesRequest{Name: "example.com/gpu"})
	if err != nil {
		t.Fatal(err)
	}
	r := rs.Resources[0]
	if r.Connected || r.DisconnectedAt == nil || r.GraceDeadline == nil ||
		r.GraceDeadline.AsTime().Sub(r.DisconnectedAt.AsTime()) != time.Hour || r.Healthy != 0 {
		t.Fatalf("resource after its provider left: %v", r)
	}
}

func TestStatus(t *testing.T) {
	h := startHost(t)
	h.plugin("gpu.sock", "example.com/gpu", testplugin.Devices("gpu", 3))
	h.allocate("default", "p", "c", "example.com/gpu", 1)
	st, err := h.client.Status(context.Background(), &adminpb.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if st.Version != "test" || !st.Ready || st.Uptime.AsDuration() < time.Minute || st.ApiSocket != h.socket ||
		st.Directories.State != h.dir || st.GracePeriod.AsDuration() != time.Hour || st.Pid != int32(os.Getpid()) {
		t.Fatalf("status %v", st)
	}
	c := st.Counts
	if c.Resources != 1 || c.Devices != 3 || c.DevicesHealthy != 3 || c.DevicesAllocated != 1 || c.Allocations != 1 || c.Modules != 0 {
		t.Fatalf("counts %v", c)
	}
}

// install copies a module file into the module directory as name.wasm and
// loads it, as the module directory watcher would.
func (h *apiHost) install(name, src string) (*module.Module, error) {
	h.t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		h.t.Fatal(err)
	}
	dst := filepath.Join(h.modDir, name+".wasm")
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		h.t.Fatal(err)
	}
	return h.modules.Load(context.Background(), dst)
}

func TestModulesAndPlugins(t *testing.T) {
	h := startHost(t, withModules)
	ctx := context.Background()
	if _, err := h.install("customhandler", build.Go(t, "guests/customhandler")); err != nil {
		t.Fatal(err)
	}
	if _, err := h.install("broken", build.Testdata(t, "guests/testmodules/wat/missing_exports.wasm")); err == nil {
		t.Fatal("a module without its exports was accepted")
	}
	reg := testplugin.StartRegistrant(t, filepath.Join(h.regDir, "ex.sock"),
		testplugin.Info{Type: "ExamplePlugin", Name: "example-one", Endpoint: "/run/ex.sock", Versions: []string{"v1"}})
	if s := reg.Expect(t, 10*time.Second); !s.Registered {
		t.Fatalf("plugin not registered: %+v", s)
	}
	waitFor(t, "the plugin to be registered", func() bool {
		ps := h.pm.Plugins()
		return len(ps) == 1 && ps[0].State == pluginmanager.StateRegistered
	})

	ms, err := h.client.ListModules(ctx, &adminpb.ListModulesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(ms.Modules) != 2 {
		t.Fatalf("modules %v", ms.Modules)
	}
	broken, ch := ms.Modules[0], ms.Modules[1]
	if broken.Name != "broken" || broken.State != api.ModuleRefused || broken.RefusedAt == nil ||
		!strings.HasSuffix(broken.RefusedPath, "broken.wasm") || len(broken.RefusedProblems) == 0 ||
		!strings.Contains(strings.Join(broken.RefusedProblems, "\n"), "missing required export") {
		t.Fatalf("refused module %v", broken)
	}
	if ch.Name != "customhandler" || ch.State != api.ModuleRunning || ch.Kind != "handler" || ch.Serves != "ExamplePlugin" ||
		ch.Version != "1.0.0" || len(ch.Sha256) != 64 || ch.Size == 0 || ch.Limits.GetMemoryBytes() != module.DefaultMemoryLimit ||
		ch.Limits.GetCallTimeout().AsDuration() != 5*time.Second || ch.Calls == 0 || ch.Loaded == nil ||
		!contains(ch.Exports, "wasmlet_register") || !contains(ch.Operations, "register") {
		t.Fatalf("running module %v", ch)
	}

	ps, err := h.client.ListPlugins(ctx, &adminpb.ListPluginsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(ps.Plugins) != 1 {
		t.Fatalf("plugins %v", ps.Plugins)
	}
	if p := ps.Plugins[0]; p.State != pluginmanager.StateRegistered || p.Type != "ExamplePlugin" || p.Name != "example-one" ||
		p.Handler != "customhandler" || p.Action != "record" || p.Registered == nil || p.SocketPath != reg.Path {
		t.Fatalf("plugin %v", p)
	}

	st, err := h.client.Status(ctx, &adminpb.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if c := st.Counts; c.Modules != 2 || c.ModulesRunning != 1 || c.ModulesRefused != 1 || c.Plugins != 1 || c.PluginsRegistered != 1 {
		t.Fatalf("counts %v", c)
	}

	// Reload: a running module, an unknown one, a file that turned bad.
	r, err := h.client.ReloadModule(ctx, &adminpb.ReloadModuleRequest{Name: "customhandler"})
	if err != nil || r.Module.State != api.ModuleRunning || r.Module.Sha256 != ch.Sha256 {
		t.Fatalf("reload: %v, %v", r, err)
	}
	_, err = h.client.ReloadModule(ctx, &adminpb.ReloadModuleRequest{Name: "nope"})
	wantCode(t, err, codes.NotFound, `no module "nope" (known: broken, customhandler)`)
	if err := os.WriteFile(filepath.Join(h.modDir, "customhandler.wasm"), []byte("not wasm"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = h.client.ReloadModule(ctx, &adminpb.ReloadModuleRequest{Name: "customhandler"})
	wantCode(t, err, codes.FailedPrecondition, "not a WebAssembly module")
	// The running version carries on, and the refusal is reported with it.
	ms, _ = h.client.ListModules(ctx, &adminpb.ListModulesRequest{})
	if ch := ms.Modules[1]; ch.State != api.ModuleRunning || ch.Refused == "" || ch.Sha256 == "" {
		t.Fatalf("module after a refused reload %v", ch)
	}
}

// TestBusyModuleIsNotAClientTimeout: a device source whose only instance
// is busy makes the host give up on an allocation at its own deadline: the
// client, which would have waited longer, is told BUSY (Unavailable), with
// nothing changed, not that it timed out.
func TestBusyModuleIsNotAClientTimeout(t *testing.T) {
	h := startHost(t, withModules, func(h *apiHost) { h.callTimeout = 300 * time.Millisecond })
	if _, err := h.install("slow", build.Go(t, "guests/testmodules/faulty")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the slow source's devices", func() bool {
		for _, r := range h.dm.Resources() {
			if r.Name == "example.com/faulty" && r.Healthy == 2 {
				return true
			}
		}
		return false
	})
	// Hold the module's only instance for three seconds.
	held := make(chan error, 1)
	go func() {
		_, err := h.modules.Get("slow").Allocate(context.Background(), &abi.AllocateRequest{DeviceIDs: []string{"f0"}, Workload: "x/y/z"})
		held <- err
	}()
	waitFor(t, "the instance to be busy", func() bool {
		st := h.modules.Get("slow").Status()
		return st.Instances == 1 && st.Idle == 0
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := h.client.Allocate(ctx, &adminpb.AllocateRequest{Namespace: "n", Pod: "p", Container: "c", Resource: "example.com/faulty", Count: 1})
	wantCode(t, err, codes.Unavailable, "no instance free (pool of 1)")
	if api.ReasonOf(err) != api.ReasonBusy || ctx.Err() != nil {
		t.Fatalf("reason %q, client context %v", api.ReasonOf(err), ctx.Err())
	}
	if as := h.dm.Allocations(); len(as) != 0 {
		t.Fatalf("allocations after a busy refusal: %v", as)
	}
	if err := <-held; err != nil {
		t.Fatal(err)
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func TestEmptyBackend(t *testing.T) {
	dir := testenv.ShortDir(t)
	sock := filepath.Join(dir, "api.sock")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- api.Serve(ctx, api.Config{AdminSocket: sock, PodResourcesSocket: filepath.Join(dir, "pr.sock"), Backend: backend{}})
	}()
	waitFor(t, "the socket", func() bool { _, err := os.Stat(sock); return err == nil })
	c := testkit.DialAPI(t, sock)
	if _, err := c.Status(ctx, &adminpb.StatusRequest{}); err != nil {
		t.Fatal(err)
	}
	_, err := c.Allocate(ctx, &adminpb.AllocateRequest{Namespace: "a", Pod: "b", Container: "c", Resource: "x.io/y", Count: 1})
	wantCode(t, err, codes.Unavailable, "device manager is not running")
	if api.ReasonOf(err) != api.ReasonNotRunning {
		t.Errorf("reason %q", api.ReasonOf(err))
	}
	_, err = c.ReloadModule(ctx, &adminpb.ReloadModuleRequest{Name: "m"})
	wantCode(t, err, codes.NotFound, "known: none")
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
