package endpoint_test

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"

	"github.com/wasmlet/wasmlet/host/device"
	"github.com/wasmlet/wasmlet/host/devicemanager"
	"github.com/wasmlet/wasmlet/host/endpoint"
	"github.com/wasmlet/wasmlet/host/internal/testenv"
	"github.com/wasmlet/wasmlet/host/internal/testplugin"
)

const resource = "example.com/gpu"

// plugin starts a real device plugin (k8s.io/kubelet's API, a unix
// socket) with n devices, and dials it.
func plugin(t *testing.T, n int, opts ...testplugin.DPOption) (*testplugin.DevicePlugin, *endpoint.Endpoint) {
	t.Helper()
	path := filepath.Join(testenv.ShortDir(t), "gpu.sock")
	p := testplugin.StartDevicePlugin(t, path, resource, testplugin.Devices("gpu", n), opts...)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e, err := endpoint.Dial(ctx, resource, path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return p, e
}

// watch runs e.Watch until the test ends; its device sets arrive on the
// channel it returns, and its result on done.
func watch(t *testing.T, e *endpoint.Endpoint) (sets <-chan []device.Device, done <-chan error, stop func()) {
	t.Helper()
	ch := make(chan []device.Device, 16)
	end := make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { end <- e.Watch(ctx, func(d []device.Device) { ch <- d }) }()
	t.Cleanup(cancel)
	return ch, end, cancel
}

func next[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(time.Minute): // only when broken
		t.Fatalf("no %s", what)
		panic("unreachable")
	}
}

// The plugin's options, as it answers GetDevicePluginOptions, are the
// endpoint's; its name is the socket's.
func TestDialTakesTheOptions(t *testing.T) {
	for _, c := range []struct {
		opts []testplugin.DPOption
		want devicemanager.ProviderOptions
	}{
		{nil, devicemanager.ProviderOptions{}},
		{[]testplugin.DPOption{testplugin.WithPreStart()}, devicemanager.ProviderOptions{PreStartRequired: true}},
		{[]testplugin.DPOption{testplugin.WithPreferred(func(a, _ []string, n int) []string { return a[:n] })},
			devicemanager.ProviderOptions{PreferredAllocation: true}},
	} {
		p, e := plugin(t, 1, c.opts...)
		if e.Options() != c.want || e.Name() != "plugin:"+p.Path {
			t.Errorf("options %+v name %q, want %+v", e.Options(), e.Name(), c.want)
		}
	}
}

// A plugin that does not answer GetDevicePluginOptions, or is not there,
// is refused with an error naming the resource and the socket.
func TestDialRefuses(t *testing.T) {
	dir := testenv.ShortDir(t)
	hung := filepath.Join(dir, "hung.sock")
	testplugin.StartDevicePlugin(t, hung, resource, nil, testplugin.HangOptions())
	for path, want := range map[string]string{
		hung:                          "did not answer GetDevicePluginOptions",
		filepath.Join(dir, "no.sock"): "did not answer GetDevicePluginOptions",
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		_, err := endpoint.Dial(ctx, resource, path)
		cancel()
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "device plugin "+resource+" at "+path) {
			t.Errorf("%s: %v, want an error saying %q", path, err, want)
		}
	}
}

// ListAndWatch: the first set, then every change, in the host's terms
// (health, NUMA nodes from the topology); the end of the watch's context
// ends it without an error.
func TestWatch(t *testing.T) {
	p, e := plugin(t, 2)
	sets, done, stop := watch(t, e)
	first := next(t, sets, "first device set")
	want := []device.Device{{ID: "gpu0", Healthy: true, NUMANodes: []int64{0}}, {ID: "gpu1", Healthy: true, NUMANodes: []int64{1}}}
	if !device.Equal(first, want) {
		t.Fatalf("devices %+v, want %+v", first, want)
	}
	changed := testplugin.Devices("gpu", 3)
	changed[1].Health = pluginapi.Unhealthy
	changed[2].Topology = nil
	p.SetDevices(changed)
	got := next(t, sets, "changed device set")
	want = []device.Device{{ID: "gpu0", Healthy: true, NUMANodes: []int64{0}}, {ID: "gpu1", NUMANodes: []int64{1}}, {ID: "gpu2", Healthy: true}}
	if !device.Equal(got, want) {
		t.Fatalf("devices %+v, want %+v", got, want)
	}
	stop()
	if err := next(t, done, "end of Watch"); err != nil {
		t.Fatalf("Watch ended with %v after its context", err)
	}
}

// A plugin that dies: its stream ends, Watch says so (naming the plugin),
// and calls fail with an error naming it (at their deadline: the
// connection waits for a plugin to come back, as the device manager's call
// timeout allows).
func TestPluginThatDies(t *testing.T) {
	p, e := plugin(t, 1)
	sets, done, _ := watch(t, e)
	next(t, sets, "first device set")
	p.Stop()
	err := next(t, done, "end of Watch")
	if err == nil || !strings.Contains(err.Error(), "device plugin "+resource+" at "+p.Path) {
		t.Fatalf("Watch ended with %v, want an error naming the plugin", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if _, err := e.Allocate(ctx, []string{"gpu0"}, "ns/p/c"); err == nil || !strings.Contains(err.Error(), p.Path+": Allocate") {
		t.Fatalf("Allocate on a dead plugin: %v", err)
	}
	if err := e.PreStart(ctx, []string{"gpu0"}, "ns/p/c"); err == nil || !strings.Contains(err.Error(), p.Path+": PreStartContainer") {
		t.Fatalf("PreStart on a dead plugin: %v", err)
	}
}

// Allocate sends one container request and returns its response as the
// host's edits, whole; an answer that is not exactly one response, or an
// error, fails with the plugin named.
func TestAllocate(t *testing.T) {
	p, e := plugin(t, 3)
	ctx := context.Background()
	edits, err := e.Allocate(ctx, []string{"gpu0", "gpu2"}, "ns/p/c")
	if err != nil {
		t.Fatal(err)
	}
	if ids := next(t, p.Allocates, "Allocate call"); !slices.Equal(ids, []string{"gpu0", "gpu2"}) {
		t.Fatalf("the plugin was asked for %v", ids)
	}
	want := device.Edits{Env: map[string]string{"TEST_DEVICES": "gpu0,gpu2"},
		DeviceNodes: []device.Node{{ContainerPath: "/dev/test0", HostPath: "/dev/null", Permissions: "rw"}}}
	if !edits.Equal(want) {
		t.Fatalf("edits %+v, want %+v", edits, want)
	}

	full := &pluginapi.ContainerAllocateResponse{
		Envs:        map[string]string{"A": "1"},
		Mounts:      []*pluginapi.Mount{{ContainerPath: "/lib/gpu", HostPath: "/opt/gpu/lib", ReadOnly: true}},
		Devices:     []*pluginapi.DeviceSpec{{ContainerPath: "/dev/gpu0", HostPath: "/dev/gpu0", Permissions: "rwm"}},
		Annotations: map[string]string{"example.com/gpu": "0"},
		CdiDevices:  []*pluginapi.CDIDevice{{Name: "example.com/gpu=gpu0"}},
	}
	_, e = plugin(t, 1, testplugin.AllocateWith(func(*pluginapi.AllocateRequest) (*pluginapi.AllocateResponse, error) {
		return &pluginapi.AllocateResponse{ContainerResponses: []*pluginapi.ContainerAllocateResponse{full}}, nil
	}))
	edits, err = e.Allocate(ctx, []string{"gpu0"}, "")
	want = device.Edits{Env: map[string]string{"A": "1"},
		Mounts:      []device.Mount{{ContainerPath: "/lib/gpu", HostPath: "/opt/gpu/lib", ReadOnly: true}},
		DeviceNodes: []device.Node{{ContainerPath: "/dev/gpu0", HostPath: "/dev/gpu0", Permissions: "rwm"}},
		Annotations: map[string]string{"example.com/gpu": "0"}, CDIDevices: []string{"example.com/gpu=gpu0"}}
	if err != nil || !edits.Equal(want) {
		t.Fatalf("edits %+v, %v; want %+v", edits, err, want)
	}

	for n, answer := range map[string]func(*pluginapi.AllocateRequest) (*pluginapi.AllocateResponse, error){
		"answered 0 container responses to one request": func(*pluginapi.AllocateRequest) (*pluginapi.AllocateResponse, error) {
			return &pluginapi.AllocateResponse{}, nil
		},
		"answered 2 container responses to one request": func(*pluginapi.AllocateRequest) (*pluginapi.AllocateResponse, error) {
			return &pluginapi.AllocateResponse{ContainerResponses: []*pluginapi.ContainerAllocateResponse{{}, {}}}, nil
		},
		"Allocate: rpc error: code = ResourceExhausted desc = gone": func(*pluginapi.AllocateRequest) (*pluginapi.AllocateResponse, error) {
			return nil, status.Error(codes.ResourceExhausted, "gone")
		},
	} {
		p, e := plugin(t, 1, testplugin.AllocateWith(answer))
		_, err := e.Allocate(ctx, []string{"gpu0"}, "")
		if err == nil || !strings.Contains(err.Error(), "device plugin "+resource+" at "+p.Path) || !strings.Contains(err.Error(), n) {
			t.Errorf("%v, want an error saying %q", err, n)
		}
	}
}

// GetPreferredAllocation passes the request through and returns the
// plugin's choice.
func TestPreferredAllocation(t *testing.T) {
	type call struct {
		available, must []string
		size            int
	}
	calls := make(chan call, 1)
	_, e := plugin(t, 4, testplugin.WithPreferred(func(available, must []string, size int) []string {
		calls <- call{available, must, size}
		return []string{"gpu3", "gpu1"}
	}))
	got, err := e.PreferredAllocation(context.Background(), []string{"gpu1", "gpu2", "gpu3"}, []string{"gpu3"}, 2)
	if err != nil || !slices.Equal(got, []string{"gpu3", "gpu1"}) {
		t.Fatalf("%v %v", got, err)
	}
	c := next(t, calls, "GetPreferredAllocation call")
	if !slices.Equal(c.available, []string{"gpu1", "gpu2", "gpu3"}) || !slices.Equal(c.must, []string{"gpu3"}) || c.size != 2 {
		t.Fatalf("the plugin was asked %+v", c)
	}
}

// PreStartContainer is called with the devices; a canceled caller stops
// it.
func TestPreStart(t *testing.T) {
	p, e := plugin(t, 2, testplugin.WithPreStart())
	if err := e.PreStart(context.Background(), []string{"gpu1"}, "ns/p/c"); err != nil {
		t.Fatal(err)
	}
	if ids := next(t, p.PreStarts, "PreStartContainer call"); !slices.Equal(ids, []string{"gpu1"}) {
		t.Fatalf("the plugin was told %v", ids)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := e.PreStart(ctx, []string{"gpu1"}, ""); !errors.Is(err, context.Canceled) && status.Code(errors.Unwrap(err)) != codes.Canceled {
		t.Fatalf("PreStart with a canceled context: %v", err)
	}
}
