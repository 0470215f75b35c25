package testplugin

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
)

// DevicePlugin is a device plugin (API v1beta1) serving on a real socket.
type DevicePlugin struct {
	pluginapi.UnimplementedDevicePluginServer

	Resource string
	Path     string
	// Allocates and PreStarts receive the device ids of every Allocate and
	// PreStartContainer call.
	Allocates chan []string
	PreStarts chan []string

	opts        pluginapi.DevicePluginOptions
	hangOptions bool
	preferred   func(available, mustInclude []string, size int) []string
	allocate    func(*pluginapi.AllocateRequest) (*pluginapi.AllocateResponse, error)

	mu      sync.Mutex
	stopped bool
	devices []*pluginapi.Device
	version int
	changed chan struct{} // closed and replaced on every SetDevices
	srv     *grpc.Server
	lis     net.Listener
	streams int
}

// DPOption changes a DevicePlugin's behaviour.
type DPOption func(*DevicePlugin)

// WithPreStart makes the plugin require PreStartContainer.
func WithPreStart() DPOption { return func(p *DevicePlugin) { p.opts.PreStartRequired = true } }

// WithPreferred makes the plugin offer GetPreferredAllocation, answered by f.
func WithPreferred(f func(available, mustInclude []string, size int) []string) DPOption {
	return func(p *DevicePlugin) {
		p.opts.GetPreferredAllocationAvailable = true
		p.preferred = f
	}
}

// AllocateWith makes f answer Allocate, instead of one response per
// container request naming its devices.
func AllocateWith(f func(*pluginapi.AllocateRequest) (*pluginapi.AllocateResponse, error)) DPOption {
	return func(p *DevicePlugin) { p.allocate = f }
}

// HangOptions makes GetDevicePluginOptions never answer.
func HangOptions() DPOption { return func(p *DevicePlugin) { p.hangOptions = true } }

// Devices builds n healthy devices "<prefix>0".."<prefix>n-1", alternating
// between NUMA nodes 0 and 1.
func Devices(prefix string, n int) []*pluginapi.Device {
	out := make([]*pluginapi.Device, n)
	for i := range out {
		out[i] = &pluginapi.Device{ID: fmt.Sprintf("%s%d", prefix, i), Health: pluginapi.Healthy,
			Topology: &pluginapi.TopologyInfo{Nodes: []*pluginapi.NUMANode{{ID: int64(i % 2)}}}}
	}
	return out
}

// StartDevicePlugin serves a device plugin for resource on a socket at path.
func StartDevicePlugin(t testing.TB, path, resource string, devices []*pluginapi.Device, opts ...DPOption) *DevicePlugin {
	t.Helper()
	p := &DevicePlugin{Resource: resource, Path: path, devices: devices, changed: make(chan struct{}),
		Allocates: make(chan []string, 16), PreStarts: make(chan []string, 16)}
	for _, o := range opts {
		o(p)
	}
	var err error
	if p.lis, p.srv, err = serve(path, p.register); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	return p
}

func (p *DevicePlugin) register(s *grpc.Server) { pluginapi.RegisterDevicePluginServer(s, p) }

// Register registers the plugin on the registration socket kubeletSock, as a
// device plugin does with the kubelet. The endpoint is the plugin socket's
// file name.
func (p *DevicePlugin) Register(ctx context.Context, kubeletSock string) error {
	return RegisterWith(ctx, kubeletSock, &pluginapi.RegisterRequest{Version: pluginapi.Version,
		Endpoint: filepath.Base(p.Path), ResourceName: p.Resource,
		Options: &pluginapi.DevicePluginOptions{PreStartRequired: p.opts.PreStartRequired,
			GetPreferredAllocationAvailable: p.opts.GetPreferredAllocationAvailable}})
}

// RegisterWith sends an arbitrary registration request to kubeletSock.
func RegisterWith(ctx context.Context, kubeletSock string, req *pluginapi.RegisterRequest) error {
	cc, err := grpc.NewClient("unix://"+kubeletSock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer cc.Close()
	_, err = pluginapi.NewRegistrationClient(cc).Register(ctx, req, grpc.WaitForReady(true))
	return err
}

// SetDevices replaces the device set and sends it on every open ListAndWatch
// stream.
func (p *DevicePlugin) SetDevices(devices []*pluginapi.Device) {
	p.mu.Lock()
	p.devices = devices
	p.version++
	close(p.changed)
	p.changed = make(chan struct{})
	p.mu.Unlock()
}

// Streams is how many ListAndWatch streams are open.
func (p *DevicePlugin) Streams() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.streams
}

// Stop stops the plugin and removes its socket. It drops the server, so
// that a test starting many plugins (each kept until the test ends by its
// cleanup) does not hold their memory: churn tests measure the host's.
func (p *DevicePlugin) Stop() {
	p.mu.Lock()
	srv := p.srv
	p.srv, p.lis, p.devices, p.stopped = nil, nil, nil, true
	p.mu.Unlock()
	if srv != nil {
		srv.Stop()
		os.Remove(p.Path)
	}
}

// ReregisterWhenRemoved makes the plugin do what the Kubernetes
// documentation recommends device plugins do, and Intel's and KubeVirt's
// do: watch its own socket, and when it is removed (a kubelet that starts
// removes every socket in its device plugin directory), serve a new one at
// the same path and register again on kubeletSock, retrying until it is
// accepted. It returns a count of the registrations since; the watch ends
// with the test or with Stop.
func (p *DevicePlugin) ReregisterWhenRemoved(t testing.TB, kubeletSock string) (registrations func() int) {
	t.Helper()
	w, err := fsnotify.NewWatcher()
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Add(filepath.Dir(p.Path)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var (
		mu sync.Mutex
		n  int
	)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case err := <-w.Errors:
				t.Logf("plugin %s: watch: %v", p.Resource, err)
			case ev := <-w.Events:
				if ev.Name != p.Path || !ev.Has(fsnotify.Remove|fsnotify.Rename) {
					continue
				}
				if err := p.restart(); err != nil {
					if !errors.Is(err, errStopped) {
						t.Logf("plugin %s: serve again: %v", p.Resource, err)
					}
					continue
				}
				for ctx.Err() == nil {
					rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
					err := p.Register(rctx, kubeletSock)
					rcancel()
					if err == nil {
						mu.Lock()
						n++
						mu.Unlock()
						break
					}
					time.Sleep(10 * time.Millisecond)
				}
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done; w.Close() })
	return func() int {
		mu.Lock()
		defer mu.Unlock()
		return n
	}
}

var errStopped = errors.New("the plugin was stopped")

// restart serves the plugin on a new socket at its path, unless it was
// stopped.
func (p *DevicePlugin) restart() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return errStopped
	}
	if p.srv != nil {
		p.lis.(*net.UnixListener).SetUnlinkOnClose(false)
		p.srv.Stop()
	}
	lis, srv, err := serve(p.Path, p.register)
	if err != nil {
		return err
	}
	p.lis, p.srv = lis, srv
	return nil
}

// Detach removes the socket file but keeps serving the connections already
// open, like a plugin process that hangs on while its successor starts.
func (p *DevicePlugin) Detach() {
	p.mu.Lock()
	lis := p.lis
	p.mu.Unlock()
	lis.(*net.UnixListener).SetUnlinkOnClose(false)
	lis.Close()
	os.Remove(p.Path)
}

func (p *DevicePlugin) GetDevicePluginOptions(ctx context.Context, _ *pluginapi.Empty) (*pluginapi.DevicePluginOptions, error) {
	if p.hangOptions {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return &pluginapi.DevicePluginOptions{PreStartRequired: p.opts.PreStartRequired,
		GetPreferredAllocationAvailable: p.opts.GetPreferredAllocationAvailable}, nil
}

func (p *DevicePlugin) ListAndWatch(_ *pluginapi.Empty, stream pluginapi.DevicePlugin_ListAndWatchServer) error {
	p.mu.Lock()
	p.streams++
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		p.streams--
		p.mu.Unlock()
	}()
	for {
		p.mu.Lock()
		devs, changed := p.devices, p.changed
		p.mu.Unlock()
		if err := stream.Send(&pluginapi.ListAndWatchResponse{Devices: devs}); err != nil {
			return err
		}
		select {
		case <-changed:
		case <-stream.Context().Done():
			return nil
		}
	}
}

func (p *DevicePlugin) Allocate(_ context.Context, req *pluginapi.AllocateRequest) (*pluginapi.AllocateResponse, error) {
	for _, cr := range req.ContainerRequests {
		select {
		case p.Allocates <- cr.DevicesIds:
		default:
		}
	}
	if p.allocate != nil {
		return p.allocate(req)
	}
	resp := &pluginapi.AllocateResponse{}
	for _, cr := range req.ContainerRequests {
		ids := ""
		for i, id := range cr.DevicesIds {
			if i > 0 {
				ids += ","
			}
			ids += id
		}
		resp.ContainerResponses = append(resp.ContainerResponses, &pluginapi.ContainerAllocateResponse{
			Envs:    map[string]string{"TEST_DEVICES": ids},
			Devices: []*pluginapi.DeviceSpec{{ContainerPath: "/dev/test0", HostPath: "/dev/null", Permissions: "rw"}},
		})
	}
	return resp, nil
}

func (p *DevicePlugin) GetPreferredAllocation(_ context.Context, req *pluginapi.PreferredAllocationRequest) (*pluginapi.PreferredAllocationResponse, error) {
	resp := &pluginapi.PreferredAllocationResponse{}
	for _, cr := range req.ContainerRequests {
		ids := p.preferred(cr.AvailableDeviceIDs, cr.MustIncludeDeviceIDs, int(cr.AllocationSize))
		resp.ContainerResponses = append(resp.ContainerResponses, &pluginapi.ContainerPreferredAllocationResponse{DeviceIDs: ids})
	}
	return resp, nil
}

func (p *DevicePlugin) PreStartContainer(_ context.Context, req *pluginapi.PreStartContainerRequest) (*pluginapi.PreStartContainerResponse, error) {
	select {
	case p.PreStarts <- req.DevicesIds:
	default:
	}
	return &pluginapi.PreStartContainerResponse{}, nil
}

// WaitStreams waits until n ListAndWatch streams are open.
func (p *DevicePlugin) WaitStreams(t testing.TB, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for p.Streams() != n {
		if time.Now().After(deadline) {
			t.Fatalf("plugin %s: %d streams open, want %d", p.Resource, p.Streams(), n)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
