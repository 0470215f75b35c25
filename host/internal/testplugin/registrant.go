// Package testplugin provides real plugins for tests: gRPC servers built from
// the kubelet's own API types, on real unix sockets. A Registrant announces
// itself through the plugin registry (plugin registration API v1), the way a
// CSI node-driver-registrar or a DRA driver does; a DevicePlugin is a device
// plugin (API v1beta1), the way a GPU or NIC plugin is.
package testplugin

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
)

// Registrant is a plugin registering through the plugin registry.
type Registrant struct {
	registerapi.UnimplementedRegistrationServer

	Path string
	Info Info
	// Statuses receives every NotifyRegistrationStatus, with the time it
	// arrived.
	Statuses chan Status

	mu          sync.Mutex
	hang        bool // GetInfo blocks until the caller gives up
	failGetInfo int  // GetInfo fails this many more times
	failNotify  int  // NotifyRegistrationStatus fails this many more times
	getInfos    int
	srv         *grpc.Server
	lis         net.Listener
	created     time.Time
}

// Info is what the plugin answers to GetInfo.
type Info struct {
	Type, Name, Endpoint string
	Versions             []string
}

// Status is one NotifyRegistrationStatus the plugin received.
type Status struct {
	Registered bool
	Error      string
	At         time.Time
}

// Option changes a Registrant's behaviour.
type Option func(*Registrant)

// Hang makes GetInfo block until the caller's deadline.
func Hang() Option { return func(r *Registrant) { r.hang = true } }

// FailGetInfo makes the first n GetInfo calls fail.
func FailGetInfo(n int) Option { return func(r *Registrant) { r.failGetInfo = n } }

// FailNotify makes the first n NotifyRegistrationStatus calls fail (they are
// not delivered to Statuses).
func FailNotify(n int) Option { return func(r *Registrant) { r.failNotify = n } }

// StartRegistrant creates the plugin's socket at path and serves on it. The
// plugin stops (and removes its socket) when the test ends, or on Stop.
func StartRegistrant(t testing.TB, path string, info Info, opts ...Option) *Registrant {
	t.Helper()
	r := &Registrant{Path: path, Info: info, Statuses: make(chan Status, 16)}
	for _, o := range opts {
		o(r)
	}
	r.created = time.Now()
	var err error
	r.lis, r.srv, err = serve(path, func(s *grpc.Server) { registerapi.RegisterRegistrationServer(s, r) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Stop)
	return r
}

// serve serves a gRPC server, with the services register adds, on a new
// unix socket at path, making its directory if need be.
func serve(path string, register func(*grpc.Server)) (net.Listener, *grpc.Server, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, nil, err
	}
	lis, err := net.Listen("unix", path)
	if err != nil {
		return nil, nil, err
	}
	srv := grpc.NewServer()
	register(srv)
	go srv.Serve(lis)
	return lis, srv, nil
}

// Created is when the socket was created.
func (r *Registrant) Created() time.Time { return r.created }

// Stop stops serving and removes the socket. Like DevicePlugin.Stop it
// drops the server, so that stopped plugins do not weigh on churn tests.
func (r *Registrant) Stop() {
	r.mu.Lock()
	srv := r.srv
	r.srv, r.lis = nil, nil
	r.mu.Unlock()
	if srv != nil {
		srv.Stop()
		os.Remove(r.Path)
	}
}

// Crash stops serving but leaves the socket file behind, as a killed process does.
func (r *Registrant) Crash() {
	r.mu.Lock()
	srv, lis := r.srv, r.lis
	r.srv, r.lis = nil, nil
	r.mu.Unlock()
	if srv != nil {
		lis.(*net.UnixListener).SetUnlinkOnClose(false)
		srv.Stop()
	}
}

// GetInfos is how many times the plugin was asked who it is.
func (r *Registrant) GetInfos() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.getInfos
}

func (r *Registrant) GetInfo(ctx context.Context, _ *registerapi.InfoRequest) (*registerapi.PluginInfo, error) {
	r.mu.Lock()
	r.getInfos++
	hang := r.hang
	fail := r.failGetInfo > 0
	if fail {
		r.failGetInfo--
	}
	r.mu.Unlock()
	if hang {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if fail {
		return nil, errors.New("testplugin: not ready yet")
	}
	return &registerapi.PluginInfo{Type: r.Info.Type, Name: r.Info.Name, Endpoint: r.Info.Endpoint,
		SupportedVersions: r.Info.Versions}, nil
}

func (r *Registrant) NotifyRegistrationStatus(_ context.Context, s *registerapi.RegistrationStatus) (*registerapi.RegistrationStatusResponse, error) {
	r.mu.Lock()
	fail := r.failNotify > 0
	if fail {
		r.failNotify--
	}
	r.mu.Unlock()
	if fail {
		return nil, errors.New("testplugin: cannot take a status now")
	}
	select {
	case r.Statuses <- Status{Registered: s.PluginRegistered, Error: s.Error, At: time.Now()}:
	default:
	}
	return &registerapi.RegistrationStatusResponse{}, nil
}

// Expect waits for the next status notification.
func (r *Registrant) Expect(t testing.TB, timeout time.Duration) Status {
	t.Helper()
	select {
	case s := <-r.Statuses:
		return s
	case <-time.After(timeout):
		t.Fatalf("plugin %s (%s) was not notified within %v", r.Info.Name, r.Path, timeout)
		return Status{}
	}
}

// ExpectNone checks no notification arrives for d.
func (r *Registrant) ExpectNone(t testing.TB, d time.Duration) {
	t.Helper()
	select {
	case s := <-r.Statuses:
		t.Fatalf("plugin %s got an unexpected notification %+v", r.Info.Name, s)
	case <-time.After(d):
	}
}
