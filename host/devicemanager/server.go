package devicemanager

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"

	"github.com/wasmlet/wasmlet/abi"
	"github.com/wasmlet/wasmlet/host/internal/defaults"
	"github.com/wasmlet/wasmlet/host/internal/sockfile"
	"github.com/wasmlet/wasmlet/host/watcher"
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
	owner   func(resource string) string // set before Serve

	mu        sync.Mutex
	conflicts map[string]Conflict // by resource
	lis       *net.UnixListener
	sock      os.FileInfo // the kubelet.sock served, nil when none is
	missing   string      // why kubelet.sock is not served, "" when it is
	created   int         // kubelet.sock creations: the first, and each after it went
}

// NewServer prepares the registration service for the device plugin
// directory dir; Serve starts it. Plugins get timeout to answer
// GetDevicePluginOptions.
func NewServer(m *Manager, dir string, dial Dialer, timeout time.Duration) *Server {
	defaults.Positive(&timeout, 5*time.Second)
	s := &Server{m: m, dir: dir, dial: dial, timeout: timeout, srv: grpc.NewServer(),
		missing: "not served yet: wasmlet is starting", conflicts: map[string]Conflict{}}
	pluginapi.RegisterRegistrationServer(s.srv, s)
	return s
}

// SetOwner tells the server which resources are not for device plugins:
// owner names the device-source module a resource belongs to, or "". A
// device plugin registering such a resource is refused, with a reason that
// names the module, and the refusal is kept (Conflicts). Call it before
// Serve.
func (s *Server) SetOwner(owner func(resource string) (module string)) { s.owner = owner }

// Conflict is a device plugin that asked to serve a resource a
// device-source module owns: it was refused, or, when it served the
// resource before the module was loaded, replaced.
type Conflict struct {
	Resource string
	// Plugin is the plugin's provider name, "plugin:<socket path>".
	Plugin string
	Module string
	At     time.Time
	// Replaced: the module took the resource over from the plugin.
	Replaced bool
}

// String says what happened, for status.
func (c Conflict) String() string {
	if c.Replaced {
		return fmt.Sprintf("device plugin %s served %s until the device source module %q, which declares it, took it over at %s",
			strings.TrimPrefix(c.Plugin, "plugin:"), c.Resource, c.Module, c.At.Format(time.RFC3339))
	}
	return fmt.Sprintf("device plugin %s asked to serve %s at %s and was refused: the device source module %q serves it",
		strings.TrimPrefix(c.Plugin, "plugin:"), c.Resource, c.At.Format(time.RFC3339), c.Module)
}

// NoteReplaced records that the device-source module took resource over
// from the device plugin provider.
func (s *Server) NoteReplaced(resource, provider, module string) {
	s.mu.Lock()
	s.conflicts[resource] = Conflict{Resource: resource, Plugin: provider, Module: module, At: time.Now(), Replaced: true}
	s.mu.Unlock()
	s.m.log.Warn("a device source module took its resource over from a device plugin: the resource is the module's",
		"resource", resource, "plugin", provider, "module", module)
}

// Conflicts lists the last device plugin refused or replaced for each
// resource, by resource, while the module still owns it (until a device
// plugin is accepted for the resource).
func (s *Server) Conflicts() []Conflict {
	s.mu.Lock()
	all := make([]Conflict, 0, len(s.conflicts))
	for _, c := range s.conflicts {
		all = append(all, c)
	}
	s.mu.Unlock()
	var out []Conflict
	for _, c := range all {
		if s.owner != nil && s.owner(c.Resource) == c.Module {
			out = append(out, c)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Resource < out[j].Resource })
	return out
}

// claimed refuses a device plugin for a resource a module owns.
func (s *Server) claimed(who, resource, endpoint string) error {
	if s.owner == nil {
		return nil
	}
	module := s.owner(resource)
	if module == "" {
		return nil
	}
	s.mu.Lock()
	s.conflicts[resource] = Conflict{Resource: resource, Plugin: "plugin:" + endpoint, Module: module, At: time.Now()}
	s.mu.Unlock()
	return fmt.Errorf("%s: refused: %s is served by the device source module %q, and a resource a device source declares is "+
		"the module's (unload the module, or give it another resource, for a device plugin to serve %s)", who, resource, module, resource)
}

// accepted forgets the conflict of a resource a device plugin now serves.
func (s *Server) accepted(resource string) {
	s.mu.Lock()
	delete(s.conflicts, resource)
	s.mu.Unlock()
}

// Path is the registration socket's path.
func (s *Server) Path() string { return filepath.Join(s.dir, KubeletSocket) }

// CheckDir refuses a device plugin directory where another process serves
// kubelet.sock: a kubelet, or another wasmlet. wasmlet would otherwise
// replace its socket and clear its plugins' sockets.
func CheckDir(dir string) error {
	path := filepath.Join(dir, KubeletSocket)
	if err := sockfile.CheckStale(path); err != nil {
		if errors.Is(err, sockfile.ErrLive) {
			return fmt.Errorf("device plugin directory %s: %w (a kubelet, or another wasmlet?): not replacing it; "+
				"give wasmlet a host.device_plugin_dir of its own", dir, err)
		}
		return fmt.Errorf("device plugin directory %s: %w", dir, err)
	}
	return nil
}

// checkEvery is how often Serve looks at kubelet.sock without an event: a
// safety net for lost events, and the retry of a socket it could not create.
const checkEvery = time.Second

// Serve serves kubelet.sock until ctx is done; then it removes the socket.
// It first refuses a directory where another process serves kubelet.sock
// (CheckDir), then, as the kubelet does when it starts, removes every socket
// in the directory (device plugins that watch their socket take that as the
// sign to register again; a stale kubelet.sock goes too) and creates
// kubelet.sock. It watches the directory: a kubelet.sock that is deleted, or
// replaced by a file nobody serves, is created again at once; Missing says
// why while there is none.
func (s *Server) Serve(ctx context.Context) error {
	if err := os.MkdirAll(s.dir, 0o750); err != nil {
		return fmt.Errorf("device plugin directory: %w", err)
	}
	if err := CheckDir(s.dir); err != nil {
		return err
	}
	removed, err := sockfile.Clear(s.dir)
	if len(removed) > 0 {
		s.m.log.Info("removed the sockets left in the device plugin directory, as the kubelet does when it starts; "+
			"device plugins that watch their socket register again", "dir", s.dir, "sockets", strings.Join(removed, ","))
	}
	if err != nil {
		return fmt.Errorf("device plugin directory %s: remove the sockets left in it: %w", s.dir, err)
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("device plugin directory %s: watch: %w", s.dir, err)
	}
	defer w.Close()
	// Watched before kubelet.sock is created: no deletion can slip between.
	if err := w.Add(s.dir); err != nil {
		return fmt.Errorf("device plugin directory %s: watch: %w", s.dir, err)
	}
	if err := s.listen(); err != nil {
		return err
	}
	watcher.Follow(ctx, w, checkEvery, func(ev fsnotify.Event) {
		switch {
		case ev.Name == s.Path():
			// Removed, or another file renamed over it.
			s.ensure()
		case ev.Name == s.dir && ev.Has(fsnotify.Remove|fsnotify.Rename):
			// The directory itself went: make it again, watch it, serve.
			if err := os.MkdirAll(s.dir, 0o750); err == nil {
				w.Add(s.dir)
			}
			s.ensure()
		}
	}, func(err error) {
		s.m.log.Warn("watching the device plugin directory; checking kubelet.sock", "dir", s.dir, "error", err)
		s.ensure()
	}, s.ensure)
	s.srv.GracefulStop() // closes the listeners, which leave their files
	s.mu.Lock()
	defer s.mu.Unlock()
	if fi, err := os.Lstat(s.Path()); err == nil && s.sock != nil && os.SameFile(fi, s.sock) {
		os.Remove(s.Path())
	}
	s.sock, s.lis, s.missing = nil, nil, "stopped"
	if ctx.Err() != nil {
		return nil
	}
	return fmt.Errorf("device plugin directory %s: the watch ended", s.dir)
}

// listen creates kubelet.sock and serves it. The previous listener, if any,
// is closed without removing its file: the path may be another's by now.
func (s *Server) listen() error {
	path := s.Path()
	lis, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return fmt.Errorf("serve %s: %w", path, err)
	}
	lis.SetUnlinkOnClose(false)
	fi, err := os.Lstat(path)
	if err != nil {
		lis.Close()
		return fmt.Errorf("serve %s: %w", path, err)
	}
	s.mu.Lock()
	old := s.lis
	s.lis, s.sock, s.missing = lis, fi, ""
	s.created++
	s.mu.Unlock()
	if old != nil {
		old.Close()
	}
	go s.srv.Serve(lis) // returns when lis is closed, or at GracefulStop
	return nil
}

// ensure makes sure kubelet.sock is the socket this server listens on: when
// it was deleted, or replaced by a file nobody serves, it is created again.
// A socket another process serves there is left alone, and reported.
func (s *Server) ensure() {
	path := s.Path()
	fi, err := os.Lstat(path)
	s.mu.Lock()
	ours := err == nil && s.sock != nil && os.SameFile(fi, s.sock)
	wasMissing := s.missing
	s.mu.Unlock()
	if ours {
		return
	}
	if err == nil {
		if cerr := sockfile.CheckStale(path); cerr != nil {
			s.setMissing(fmt.Sprintf("%s is not wasmlet's: %v", path, cerr))
			return
		}
		os.Remove(path)
	}
	if err := s.listen(); err != nil {
		s.setMissing(fmt.Sprintf("%s was deleted, and creating it again failed (retried every %s): %v", path, checkEvery, err))
		return
	}
	if wasMissing == "" {
		s.m.log.Warn("kubelet.sock was deleted; created it again", "socket", path)
	} else {
		s.m.log.Info("kubelet.sock is served again", "socket", path, "was", wasMissing)
	}
}

func (s *Server) setMissing(why string) {
	s.mu.Lock()
	changed := s.missing != why
	s.missing = why
	s.mu.Unlock()
	if changed {
		s.m.log.Error("kubelet.sock is not served: device plugins cannot register", "reason", why)
	}
}

// Missing says why kubelet.sock is not served now, or "" when it is: the
// node is not ready while it is missing.
func (s *Server) Missing() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.missing
}

// Created counts the times kubelet.sock was created: once at start, and
// once more each time it had to be created again.
func (s *Server) Created() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.created
}

// Register is called by device plugins on kubelet.sock.
func (s *Server) Register(ctx context.Context, req *pluginapi.RegisterRequest) (*pluginapi.Empty, error) {
	path, err := s.check(req)
	if err != nil {
		s.m.log.Warn("device plugin registration refused", "resource", req.ResourceName, "endpoint", req.Endpoint, "error", err)
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if err := s.claimed(fmt.Sprintf("device plugin %q (endpoint %q)", req.ResourceName, req.Endpoint), req.ResourceName, path); err != nil {
		s.m.log.Warn("device plugin registration refused", "resource", req.ResourceName, "endpoint", path, "error", err)
		return nil, status.Error(codes.AlreadyExists, err.Error())
	}
	dctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	p, err := s.dial(dctx, req.ResourceName, path)
	if err != nil {
		s.m.log.Warn("device plugin registration refused", "resource", req.ResourceName, "endpoint", path, "error", err)
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	s.accepted(req.ResourceName)
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
	if err := s.claimed(who, p.Resource, p.Endpoint); err != nil {
		return err
	}
	dctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	prov, err := s.dial(dctx, p.Resource, p.Endpoint)
	if err != nil {
		return err
	}
	s.accepted(p.Resource)
	s.m.SetProvider(p.Resource, prov)
	return nil
}

// DeregisterDevicePlugin stops following a device plugin whose registration
// socket went away.
func (s *Server) DeregisterDevicePlugin(_ context.Context, p DevicePlugin) error {
	s.m.RemoveProvider(p.Resource, "plugin:"+p.Endpoint)
	return nil
}
