package devicemanager

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"

	"github.com/wasmlet/wasmlet/abi"
)

// Dialer connects to a device plugin's socket and asks for its options: it
// is host/endpoint.Dial, injected so that this package does not depend on
// the transport.
type Dialer func(ctx context.Context, resource, path string) (Provider, error)

// KubeletSocket is the registration socket's name in the device plugin
// directory, as with the kubelet.
const KubeletSocket = "kubelet.sock"

// Server is the device plugin registration service (Registration.Register of
// API v1beta1) on kubelet.sock, wire-compatible with the kubelet's.
type Server struct {
	pluginapi.UnimplementedRegistrationServer

	m       *Manager
	dir     string
	dial    Dialer
	timeout time.Duration
	srv     *grpc.Server
	mu      sync.Mutex
	lis     net.Listener
}

// NewServer prepares the registration service for the device plugin
// directory dir; Serve starts it. Plugins get timeout to answer
// GetDevicePluginOptions.
func NewServer(m *Manager, dir string, dial Dialer, timeout time.Duration) *Server {
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	s := &Server{m: m, dir: dir, dial: dial, timeout: timeout, srv: grpc.NewServer()}
	pluginapi.RegisterRegistrationServer(s.srv, s)
	return s
}

// Path is the registration socket's path.
func (s *Server) Path() string { return filepath.Join(s.dir, KubeletSocket) }

// Serve creates kubelet.sock and serves until ctx is done; then it removes
// the socket.
func (s *Server) Serve(ctx context.Context) error {
	if err := os.MkdirAll(s.dir, 0o750); err != nil {
		return fmt.Errorf("device plugin directory: %w", err)
	}
	path := s.Path()
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove stale %s: %w", path, err)
	}
	lis, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("serve %s: %w", path, err)
	}
	s.mu.Lock()
	s.lis = lis
	s.mu.Unlock()
	go func() {
		<-ctx.Done()
		s.srv.GracefulStop()
	}()
	err = s.srv.Serve(lis)
	os.Remove(path)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// Register is called by device plugins on kubelet.sock.
func (s *Server) Register(ctx context.Context, req *pluginapi.RegisterRequest) (*pluginapi.Empty, error) {
	path, err := s.check(req)
	if err != nil {
		s.m.log.Warn("device plugin registration refused", "resource", req.ResourceName, "endpoint", req.Endpoint, "error", err)
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	dctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	p, err := s.dial(dctx, req.ResourceName, path)
	if err != nil {
		s.m.log.Warn("device plugin registration refused", "resource", req.ResourceName, "endpoint", path, "error", err)
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	s.m.SetProvider(req.ResourceName, p)
	return &pluginapi.Empty{}, nil
}

// check applies the kubelet's rules, and one it misses: the endpoint must be
// a file name in the device plugin directory, not a path out of it.
func (s *Server) check(req *pluginapi.RegisterRequest) (string, error) {
	who := fmt.Sprintf("device plugin %q (endpoint %q)", req.ResourceName, req.Endpoint)
	if !supportedVersion(req.Version) {
		return "", fmt.Errorf("%s: API version %q is not supported; this node speaks %s",
			who, req.Version, strings.Join(pluginapi.SupportedVersions[:], ", "))
	}
	if err := abi.ValidResourceName(req.ResourceName); err != nil {
		return "", fmt.Errorf("%s: invalid extended resource name: %v", who, err)
	}
	return s.endpointPath(who, req.Endpoint)
}

func (s *Server) endpointPath(who, ep string) (string, error) {
	if ep == "" || ep == "." || ep == ".." || strings.ContainsAny(ep, "/\\\x00") || filepath.Base(ep) != ep {
		return "", fmt.Errorf("%s: the endpoint must be a socket file name in the device plugin directory %s, not a path", who, s.dir)
	}
	if ep == KubeletSocket {
		return "", fmt.Errorf("%s: the endpoint cannot be the registration socket itself", who)
	}
	return filepath.Join(s.dir, ep), nil
}

func supportedVersion(v string) bool {
	for _, sv := range pluginapi.SupportedVersions {
		if v == sv {
			return true
		}
	}
	return false
}

// DevicePlugin is a device plugin that registered through the plugin
// registry (see wasmhandler.DevicePlugin; the types are the same shape).
type DevicePlugin struct {
	Resource, Endpoint, Version, PluginName, SocketPath string
}

// RegisterDevicePlugin connects to a device plugin a DevicePlugin handler
// registered through the plugin registry. Its endpoint may be anywhere (the
// handler approved it), but the version and name rules apply.
func (s *Server) RegisterDevicePlugin(ctx context.Context, p DevicePlugin) error {
	who := fmt.Sprintf("device plugin %q (endpoint %q)", p.Resource, p.Endpoint)
	if !supportedVersion(p.Version) {
		return fmt.Errorf("%s: API version %q is not supported; this node speaks %s",
			who, p.Version, strings.Join(pluginapi.SupportedVersions[:], ", "))
	}
	if err := abi.ValidResourceName(p.Resource); err != nil {
		return fmt.Errorf("%s: invalid extended resource name: %v", who, err)
	}
	if !filepath.IsAbs(p.Endpoint) {
		return fmt.Errorf("%s: the endpoint must be an absolute socket path", who)
	}
	dctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	prov, err := s.dial(dctx, p.Resource, p.Endpoint)
	if err != nil {
		return err
	}
	s.m.SetProvider(p.Resource, prov)
	return nil
}

// DeregisterDevicePlugin stops following a device plugin whose registration
// socket went away.
func (s *Server) DeregisterDevicePlugin(_ context.Context, p DevicePlugin) error {
	s.m.RemoveProvider(p.Resource, "plugin:"+p.Endpoint)
	return nil
}
