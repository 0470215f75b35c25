package devicemanager_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"

	"github.com/wasmlet/wasmlet/host/device"
	"github.com/wasmlet/wasmlet/host/devicemanager"
	"github.com/wasmlet/wasmlet/host/endpoint"
	"github.com/wasmlet/wasmlet/host/internal/testenv"
	"github.com/wasmlet/wasmlet/host/internal/testplugin"
)

type env struct {
	t       testing.TB
	dir     string
	m       *devicemanager.Manager
	srv     *devicemanager.Server
	kubelet string
	stop    func()
}

func dial(ctx context.Context, resource, path string) (devicemanager.Provider, error) {
	return endpoint.Dial(ctx, resource, path)
}

// start runs a device manager serving kubelet.sock in dir (a new temporary
// directory when dir is ""). A registering plugin has ten seconds to answer
// GetDevicePluginOptions: generous, since a loaded machine under -race can
// take a while to set up a gRPC connection.
func start(t testing.TB, dir string, cfg devicemanager.Config) *env {
	t.Helper()
	return startWith(t, dir, cfg, 10*time.Second)
}

// startWith is start with the time a plugin has to answer.
func startWith(t testing.TB, dir string, cfg devicemanager.Config, answerWithin time.Duration) *env {
	t.Helper()
	if dir == "" {
		dir = testenv.ShortDir(t)
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.New(&hclog.LoggerOptions{Level: hclog.Warn, Output: testenv.Writer{T: t}})
	}
	m, err := devicemanager.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, dir: dir, m: m, srv: devicemanager.NewServer(m, dir, dial, answerWithin)}
	e.kubelet = e.srv.Path()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); m.Run(ctx) }()
	go func() {
		defer wg.Done()
		if err := e.srv.Serve(ctx); err != nil {
			t.Errorf("Serve: %v", err) // a test waiting on the socket would only time out
		}
	}()
	e.stop = func() { cancel(); wg.Wait() }
	t.Cleanup(e.stop)
	testenv.Eventually(t, "kubelet.sock to appear", func() bool {
		_, err := os.Stat(e.kubelet)
		return err == nil
	})
	return e
}

func (e *env) plugin(name, resource string, devs []*pluginapi.Device, opts ...testplugin.DPOption) *testplugin.DevicePlugin {
	e.t.Helper()
	p := testplugin.StartDevicePlugin(e.t, filepath.Join(e.dir, name), resource, devs, opts...)
	if err := p.Register(context.Background(), e.kubelet); err != nil {
		e.t.Fatal(err)
	}
	return p
}

// resource waits until the resource satisfies cond (a resource that does
// not exist is the zero ResourceStatus).
func (e *env) resource(name string, cond func(devicemanager.ResourceStatus) bool) devicemanager.ResourceStatus {
	e.t.Helper()
	var last devicemanager.ResourceStatus
	defer func() {
		if e.t.Failed() {
			e.t.Logf("resource %s, last seen: %+v", name, last)
		}
	}()
	testenv.Eventually(e.t, "resource "+name+" to reach the expected state", func() bool {
		last = devicemanager.ResourceStatus{}
		for _, r := range e.m.Resources() {
			if r.Name == name {
				last = r
			}
		}
		return cond(last)
	})
	return last
}

// gpus serves n healthy devices of example.com/gpu from plugin gpu.sock,
// and waits until the manager has them all.
func (e *env) gpus(n int) *testplugin.DevicePlugin {
	e.t.Helper()
	p := e.plugin("gpu.sock", "example.com/gpu", testplugin.Devices("gpu", n))
	e.resource("example.com/gpu", healthyCount(n))
	return p
}

func healthyCount(n int) func(devicemanager.ResourceStatus) bool {
	return func(r devicemanager.ResourceStatus) bool { return r.Connected && r.Healthy == n && r.Capacity == n }
}

func req(pod, resource string, n int) devicemanager.AllocateRequest {
	return devicemanager.AllocateRequest{Namespace: "default", Pod: pod, Container: "main", Resource: resource, Count: n}
}

func TestRegisterListAndWatchAndHealth(t *testing.T) {
	e := start(t, "", devicemanager.Config{})
	p := e.plugin("gpu.sock", "example.com/gpu", testplugin.Devices("gpu", 4))
	r := e.resource("example.com/gpu", healthyCount(4))
	if r.Allocatable != 4 || r.Provider != "plugin:"+p.Path {
		t.Fatalf("%+v", r)
	}
	// An update replaces the device set.
	p.SetDevices(testplugin.Devices("gpu", 6))
	e.resource("example.com/gpu", healthyCount(6))
	// Health changes per device.
	devs := testplugin.Devices("gpu", 6)
	devs[2].Health = pluginapi.Unhealthy
	p.SetDevices(devs)
	r = e.resource("example.com/gpu", func(r devicemanager.ResourceStatus) bool { return r.Healthy == 5 })
	if r.Capacity != 6 || r.Allocatable != 5 {
		t.Fatalf("%+v", r)
	}
	for _, d := range r.Devices {
		if (d.ID == "gpu2") == d.Healthy {
			t.Fatalf("device %s healthy=%v", d.ID, d.Healthy)
		}
	}
}

func TestCrashGoesUnhealthyThenAway(t *testing.T) {
	e := start(t, "", devicemanager.Config{GracePeriod: 2 * time.Second})
	p := e.gpus(2)
	p.Stop()
	r := e.resource("example.com/gpu", func(r devicemanager.ResourceStatus) bool { return r.Name != "" && !r.Connected })
	if r.Healthy != 0 || r.Capacity != 2 || r.Allocatable != 0 || r.DisconnectedAt.IsZero() {
		t.Fatalf("right after the crash: %+v", r)
	}
	e.resource("example.com/gpu", func(r devicemanager.ResourceStatus) bool { return r.Name == "" })
}

func TestComesBackOnANewSocket(t *testing.T) {
	e := start(t, "", devicemanager.Config{GracePeriod: time.Hour})
	old := e.plugin("gpu-1.sock", "example.com/gpu", testplugin.Devices("old", 2))
	e.resource("example.com/gpu", healthyCount(2))
	old.Stop()
	e.resource("example.com/gpu", func(r devicemanager.ResourceStatus) bool { return !r.Connected })
	e.plugin("gpu-2.sock", "example.com/gpu", testplugin.Devices("new", 3))
	r := e.resource("example.com/gpu", healthyCount(3))
	if r.Devices[0].ID != "new0" {
		t.Fatalf("%+v", r)
	}
}

// The kubelet's bug: a plugin restarts on the same socket path while its old
// stream is still open; the kubelet then keeps following the old stream and
// shows dead devices as healthy forever. Here the new plugin takes over, the
// old stream's updates and its end are ignored.
func TestComesBackOnTheSameSocketWhileOldStreamOpen(t *testing.T) {
	e := start(t, "", devicemanager.Config{GracePeriod: time.Hour})
	old := e.plugin("gpu.sock", "example.com/gpu", testplugin.Devices("old", 2))
	e.resource("example.com/gpu", healthyCount(2))
	old.WaitStreams(t, 1)
	old.Detach() // the old process lingers with its stream open; its socket file is gone
	fresh := e.plugin("gpu.sock", "example.com/gpu", testplugin.Devices("new", 3))
	r := e.resource("example.com/gpu", healthyCount(3))
	if r.Provider != "plugin:"+fresh.Path || r.ProviderSwitches != 1 {
		t.Fatalf("%+v", r)
	}
	// The old plugin's stream is closed by the takeover, so what it sends
	// next reaches no one.
	old.WaitStreams(t, 0)
	old.SetDevices(testplugin.Devices("zombie", 8))
	old.Stop()
	r = e.resource("example.com/gpu", healthyCount(3))
	for _, d := range r.Devices {
		if !strings.HasPrefix(d.ID, "new") {
			t.Fatalf("a superseded plugin's devices got in: %+v", r.Devices)
		}
	}
}

func TestRegistrationRefusals(t *testing.T) {
	// Half a second to answer, so that the plugin that never answers is
	// given up on well within the registrations' own five seconds.
	e := startWith(t, "", devicemanager.Config{}, 500*time.Millisecond)
	testplugin.StartDevicePlugin(t, filepath.Join(e.dir, "ok.sock"), "example.com/ok", testplugin.Devices("d", 1))
	testplugin.StartDevicePlugin(t, filepath.Join(e.dir, "hang.sock"), "example.com/hang", testplugin.Devices("d", 1), testplugin.HangOptions())
	cases := []struct {
		name string
		req  *pluginapi.RegisterRequest
		want string
	}{
		{"wrong version", &pluginapi.RegisterRequest{Version: "v1alpha", Endpoint: "ok.sock", ResourceName: "example.com/ok"},
			`device plugin "example.com/ok" (endpoint "ok.sock"): API version "v1alpha" is not supported; this node speaks v1beta1`},
		{"bad resource name", &pluginapi.RegisterRequest{Version: "v1beta1", Endpoint: "ok.sock", ResourceName: "nodomain"},
			`device plugin "nodomain" (endpoint "ok.sock"): invalid extended resource name`},
		{"kubernetes.io resource", &pluginapi.RegisterRequest{Version: "v1beta1", Endpoint: "ok.sock", ResourceName: "kubernetes.io/gpu"},
			`domain "kubernetes.io" is reserved for Kubernetes`},
		{"endpoint escaping the directory", &pluginapi.RegisterRequest{Version: "v1beta1", Endpoint: "../ok.sock", ResourceName: "example.com/ok"},
			`device plugin "example.com/ok" (endpoint "../ok.sock"): the endpoint must be a socket file name in the device plugin directory`},
		{"absolute endpoint", &pluginapi.RegisterRequest{Version: "v1beta1", Endpoint: "/tmp/ok.sock", ResourceName: "example.com/ok"},
			"must be a socket file name"},
		{"plugin that never answers", &pluginapi.RegisterRequest{Version: "v1beta1", Endpoint: "hang.sock", ResourceName: "example.com/hang"},
			`device plugin example.com/hang at ` + filepath.Join(e.dir, "hang.sock") + ` did not answer GetDevicePluginOptions`},
		{"nothing at the endpoint", &pluginapi.RegisterRequest{Version: "v1beta1", Endpoint: "absent.sock", ResourceName: "example.com/absent"},
			"example.com/absent"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			err := testplugin.RegisterWith(ctx, e.kubelet, c.req)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error containing %q", err, c.want)
			}
		})
	}
	if len(e.m.Resources()) != 0 {
		t.Fatalf("a refused plugin left a resource: %+v", e.m.Resources())
	}
}

func TestBadDeviceSetsAreRefused(t *testing.T) {
	e := start(t, "", devicemanager.Config{})
	p := e.plugin("d.sock", "example.com/d", testplugin.Devices("d", 2))
	e.resource("example.com/d", healthyCount(2))
	for _, c := range []struct {
		name string
		devs []*pluginapi.Device
		want string
	}{
		{"duplicate ids", append(testplugin.Devices("d", 2), testplugin.Devices("d", 1)...), `device id "d0" appears twice`},
		{"id over 63 bytes", []*pluginapi.Device{{ID: strings.Repeat("x", 64), Health: pluginapi.Healthy}}, "must be 1 to 63 bytes long"},
		{"id with a slash", []*pluginapi.Device{{ID: "a/b", Health: pluginapi.Healthy}}, `contains '/'`},
	} {
		t.Run(c.name, func(t *testing.T) {
			p.SetDevices(c.devs)
			r := e.resource("example.com/d", func(r devicemanager.ResourceStatus) bool { return strings.Contains(r.LastError, c.want) })
			if !strings.Contains(r.LastError, "plugin:"+p.Path) || r.Capacity != 2 {
				t.Fatalf("%+v", r)
			}
		})
	}
}

func TestAllocateDefaultPolicyIsNUMAAware(t *testing.T) {
	e := start(t, "", devicemanager.Config{})
	p := e.plugin("gpu.sock", "example.com/gpu", testplugin.Devices("gpu", 8)) // even ids on node 0, odd on node 1
	e.resource("example.com/gpu", healthyCount(8))
	ctx := context.Background()
	a, err := e.m.Allocate(ctx, req("a", "example.com/gpu", 3))
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(a.DeviceIDs) != "[gpu0 gpu2 gpu4]" || a.Edits.Env["TEST_DEVICES"] != "gpu0,gpu2,gpu4" {
		t.Fatalf("allocation %+v", a)
	}
	if got := <-p.Allocates; fmt.Sprint(got) != "[gpu0 gpu2 gpu4]" {
		t.Fatalf("plugin was asked for %v", got)
	}
	// 1 left on node 0, 4 on node 1: four devices fit on node 1 alone.
	b, err := e.m.Allocate(ctx, req("b", "example.com/gpu", 4))
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(b.DeviceIDs) != "[gpu1 gpu3 gpu5 gpu7]" {
		t.Fatalf("allocation %v", b.DeviceIDs)
	}
	// Idempotent per workload.
	again, err := e.m.Allocate(ctx, req("a", "example.com/gpu", 3))
	if err != nil || fmt.Sprint(again.DeviceIDs) != fmt.Sprint(a.DeviceIDs) {
		t.Fatalf("repeat: %v %v", again, err)
	}
	if _, err := e.m.Allocate(ctx, req("a", "example.com/gpu", 2)); !errors.Is(err, devicemanager.ErrConflict) {
		t.Fatalf("a different count for the same workload: %v", err)
	}
	if _, err := e.m.Allocate(ctx, req("c", "example.com/gpu", 2)); !errors.Is(err, devicemanager.ErrUnavailable) ||
		!strings.Contains(err.Error(), "2 device(s) of example.com/gpu requested, 1 free") {
		t.Fatalf("too many: %v", err)
	}
	if _, err := e.m.Allocate(ctx, req("c", "example.com/none", 1)); !errors.Is(err, devicemanager.ErrUnknownResource) {
		t.Fatalf("unknown resource: %v", err)
	}
	rel, err := e.m.Release(ctx, "default/a/main", "")
	if err != nil || len(rel) != 1 {
		t.Fatalf("release: %v %v", rel, err)
	}
	if r := e.resource("example.com/gpu", healthyCount(8)); r.Allocatable != 4 || r.Allocated != 4 {
		t.Fatalf("%+v", r)
	}
}

func TestAllocateWithPreferredAllocationAndPreStart(t *testing.T) {
	e := start(t, "", devicemanager.Config{})
	// The plugin prefers the highest ids.
	p := e.plugin("gpu.sock", "example.com/gpu", testplugin.Devices("gpu", 4), testplugin.WithPreStart(),
		testplugin.WithPreferred(func(avail, must []string, size int) []string {
			sorted := append([]string(nil), avail...)
			sort.Sort(sort.Reverse(sort.StringSlice(sorted)))
			return sorted[:size]
		}))
	r := e.resource("example.com/gpu", healthyCount(4))
	if !r.Options.PreferredAllocation || !r.Options.PreStartRequired {
		t.Fatalf("options %+v", r.Options)
	}
	a, err := e.m.Allocate(context.Background(), req("a", "example.com/gpu", 2))
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(a.DeviceIDs) != "[gpu3 gpu2]" {
		t.Fatalf("allocation %v", a.DeviceIDs)
	}
	if got := <-p.PreStarts; fmt.Sprint(got) != "[gpu3 gpu2]" {
		t.Fatalf("PreStartContainer for %v", got)
	}
}

func TestBadPreferredAllocationIsRefused(t *testing.T) {
	e := start(t, "", devicemanager.Config{})
	e.plugin("gpu.sock", "example.com/gpu", testplugin.Devices("gpu", 4),
		testplugin.WithPreferred(func(avail, must []string, size int) []string { return []string{"gpu0", "gpu0"} }))
	e.resource("example.com/gpu", healthyCount(4))
	_, err := e.m.Allocate(context.Background(), req("a", "example.com/gpu", 2))
	if err == nil || !strings.Contains(err.Error(), `preferred allocation names "gpu0" twice`) {
		t.Fatalf("got %v", err)
	}
	if r := e.resource("example.com/gpu", healthyCount(4)); r.Allocatable != 4 {
		t.Fatalf("a failed allocation kept devices: %+v", r)
	}
}

// TestNoDoubleAllocation runs 50 workloads allocating and releasing in loops
// against 16 devices, and checks that no device is ever held by two of them.
func TestNoDoubleAllocation(t *testing.T) {
	e := start(t, "", devicemanager.Config{})
	e.gpus(16)
	var mu sync.Mutex
	holders := map[string]string{}
	var wg sync.WaitGroup
	var failures sync.Map
	for w := 0; w < 50; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			ctx := context.Background()
			pod := fmt.Sprintf("pod-%d", w)
			for i := 0; i < 20; i++ {
				a, err := e.m.Allocate(ctx, req(pod, "example.com/gpu", 1+w%3))
				if errors.Is(err, devicemanager.ErrUnavailable) {
					continue
				}
				if err != nil {
					failures.Store(pod, err)
					return
				}
				mu.Lock()
				for _, id := range a.DeviceIDs {
					if h, ok := holders[id]; ok {
						failures.Store(pod, fmt.Errorf("device %s given to %s while %s holds it", id, a.Workload, h))
					}
					holders[id] = a.Workload
				}
				mu.Unlock()
				mu.Lock()
				for _, id := range a.DeviceIDs {
					delete(holders, id)
				}
				mu.Unlock()
				if _, err := e.m.Release(ctx, a.Workload, ""); err != nil {
					failures.Store(pod, err)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	failures.Range(func(k, v any) bool {
		t.Errorf("%v: %v", k, v)
		return true
	})
	if r := e.resource("example.com/gpu", healthyCount(16)); r.Allocated != 0 {
		t.Fatalf("devices still held: %+v", r)
	}
}

func TestChooseNUMA(t *testing.T) {
	dev := func(id string, node int64) device.Device {
		return device.Device{ID: id, Healthy: true, NUMANodes: []int64{node}}
	}
	free := []device.Device{dev("a0", 0), dev("a1", 0), dev("b0", 1), dev("b1", 1), dev("b2", 1), {ID: "x", Healthy: true}}
	for _, c := range []struct {
		n    int
		want string
	}{
		{1, "[x]"},           // the smallest group that fits (no NUMA information counts as a node)
		{2, "[a0 a1]"},       // node 0 fits exactly
		{3, "[b0 b1 b2]"},    // only node 1 fits
		{4, "[b0 b1 b2 a0]"}, // largest node first, then the next
		{6, "[b0 b1 b2 a0 a1 x]"},
	} {
		if got := fmt.Sprint(devicemanager.ChooseNUMA(free, c.n)); got != c.want {
			t.Errorf("n=%d: got %s, want %s", c.n, got, c.want)
		}
	}
}
