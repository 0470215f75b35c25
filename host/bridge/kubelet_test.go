package bridge_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
)

// fakeKubelet is the kubelet's side of device plugin registration, as the
// kubelet does it: Register on kubelet.sock in its directory, then a
// connection to the plugin's socket and a ListAndWatch stream. It can
// refuse registrations, restart (deleting every socket in the directory,
// as the kubelet does) and disappear.
type fakeKubelet struct {
	pluginapi.UnimplementedRegistrationServer
	t   testing.TB
	dir string

	// Registers receives every accepted registration.
	Registers chan registerCall

	mu      sync.Mutex
	refuse  string      // refuse registrations with this reason
	refused []time.Time // when each refused registration arrived
	srv     *grpc.Server
	conns   []*grpc.ClientConn
	cancels []context.CancelFunc
	sets    map[string][]*pluginapi.Device // the latest set per resource
	streams map[string]int                 // open streams per resource
	changed chan struct{}
	created time.Time
}

type registerCall struct {
	Req *pluginapi.RegisterRequest
	At  time.Time
}

func newKubelet(t testing.TB, dir string) *fakeKubelet {
	k := &fakeKubelet{t: t, dir: dir, Registers: make(chan registerCall, 100), sets: map[string][]*pluginapi.Device{},
		streams: map[string]int{}, changed: make(chan struct{})}
	t.Cleanup(k.Stop)
	return k
}

// startKubelet makes a kubelet and starts it.
func startKubelet(t testing.TB, dir string) *fakeKubelet {
	k := newKubelet(t, dir)
	k.Start()
	return k
}

func (k *fakeKubelet) sock() string { return filepath.Join(k.dir, "kubelet.sock") }

// Start creates kubelet.sock and serves on it. It returns when the socket
// exists; Created says when that was.
func (k *fakeKubelet) Start() {
	k.t.Helper()
	os.MkdirAll(k.dir, 0o755)
	os.Remove(k.sock())
	srv := grpc.NewServer()
	pluginapi.RegisterRegistrationServer(srv, k)
	lis, err := net.Listen("unix", k.sock())
	if err != nil {
		k.t.Fatal(err)
	}
	k.mu.Lock()
	k.srv, k.created = srv, time.Now()
	k.mu.Unlock()
	go srv.Serve(lis)
}

// Created is when kubelet.sock was last created.
func (k *fakeKubelet) Created() time.Time {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.created
}

// Stop is the kubelet going away: its connections close, kubelet.sock goes.
func (k *fakeKubelet) Stop() {
	k.mu.Lock()
	srv, conns, cancels := k.srv, k.conns, k.cancels
	k.srv, k.conns, k.cancels = nil, nil, nil
	clear(k.sets) // a new kubelet knows nothing
	k.mu.Unlock()
	for _, c := range cancels {
		c()
	}
	for _, c := range conns {
		c.Close()
	}
	if srv != nil {
		srv.Stop()
	}
	os.Remove(k.sock())
}

// Restart is a kubelet restart: it goes, deletes every socket in its
// directory, and creates kubelet.sock again.
func (k *fakeKubelet) Restart() {
	k.t.Helper()
	k.Stop()
	entries, _ := os.ReadDir(k.dir)
	for _, e := range entries {
		os.Remove(filepath.Join(k.dir, e.Name()))
	}
	k.Start()
}

// Refuse makes the kubelet refuse registrations with reason ("" accepts).
func (k *fakeKubelet) Refuse(reason string) {
	k.mu.Lock()
	k.refuse = reason
	k.mu.Unlock()
}

// Refused returns when each refused registration arrived.
func (k *fakeKubelet) Refused() []time.Time {
	k.mu.Lock()
	defer k.mu.Unlock()
	return slices.Clone(k.refused)
}

func (k *fakeKubelet) Register(_ context.Context, req *pluginapi.RegisterRequest) (*pluginapi.Empty, error) {
	k.mu.Lock()
	refuse := k.refuse
	if refuse != "" {
		k.refused = append(k.refused, time.Now())
	}
	k.mu.Unlock()
	if refuse != "" {
		return nil, status.Error(codes.InvalidArgument, refuse)
	}
	k.Registers <- registerCall{Req: req, At: time.Now()}
	// As the kubelet: answer at once, connect in the background.
	go k.connect(req)
	return &pluginapi.Empty{}, nil
}

func (k *fakeKubelet) connect(req *pluginapi.RegisterRequest) {
	cc, err := grpc.NewClient("unix://"+filepath.Join(k.dir, req.Endpoint), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		k.t.Errorf("kubelet: dial %s: %v", req.Endpoint, err)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	k.mu.Lock()
	if k.srv == nil { // stopped meanwhile
		k.mu.Unlock()
		cancel()
		cc.Close()
		return
	}
	k.conns = append(k.conns, cc)
	k.cancels = append(k.cancels, cancel)
	k.mu.Unlock()
	stream, err := pluginapi.NewDevicePluginClient(cc).ListAndWatch(ctx, &pluginapi.Empty{})
	if err != nil {
		return
	}
	k.mu.Lock()
	k.streams[req.ResourceName]++
	k.mu.Unlock()
	defer func() {
		k.mu.Lock()
		k.streams[req.ResourceName]--
		k.mu.Unlock()
	}()
	for {
		resp, err := stream.Recv()
		if err != nil {
			return
		}
		if resp.Devices == nil {
			resp.Devices = []*pluginapi.Device{} // received, and empty
		}
		k.mu.Lock()
		k.sets[req.ResourceName] = resp.Devices
		close(k.changed)
		k.changed = make(chan struct{})
		k.mu.Unlock()
	}
}

// WaitDevices waits until the latest device set of resource satisfies cond.
func (k *fakeKubelet) WaitDevices(resource string, cond func([]*pluginapi.Device) bool) []*pluginapi.Device {
	k.t.Helper()
	deadline := time.After(time.Minute)
	for {
		k.mu.Lock()
		devs, changed := k.sets[resource], k.changed
		k.mu.Unlock()
		if cond(devs) {
			return devs
		}
		select {
		case <-changed:
		case <-deadline:
			k.t.Fatalf("kubelet: device set of %s never satisfied the condition; last %v", resource, devs)
		}
	}
}

func (k *fakeKubelet) Streams(resource string) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.streams[resource]
}

// ExpectRegister waits for the next accepted registration. The bound only
// matters when something is broken (as testenv.Eventually's): how soon a
// registration comes is BenchmarkKubeletRestart's to measure.
func (k *fakeKubelet) ExpectRegister() registerCall {
	k.t.Helper()
	select {
	case r := <-k.Registers:
		return r
	case <-time.After(time.Minute):
		k.t.Fatal("kubelet: no registration within a minute")
		return registerCall{}
	}
}

// client is a device plugin client on a plugin's socket, as the kubelet
// uses it.
func client(t testing.TB, path string) pluginapi.DevicePluginClient {
	t.Helper()
	cc, err := grpc.NewClient("unix://"+path, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return pluginapi.NewDevicePluginClient(cc)
}

func healthy(n int) func([]*pluginapi.Device) bool {
	return func(devs []*pluginapi.Device) bool {
		if len(devs) != n {
			return false
		}
		for _, d := range devs {
			if d.Health != pluginapi.Healthy {
				return false
			}
		}
		return true
	}
}
