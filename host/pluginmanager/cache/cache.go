// Package cache holds the plugin manager's two views of the node, named as in
// the kubelet: the desired state of the world (the plugin sockets present in
// the registry directory, as the watcher reports them) and the actual state of
// the world (the plugins wasmlet has registered). The reconciler drives the
// second towards the first.
//
// Each desired plugin carries a generation, new every time a socket appears
// at its path: a socket recreated at the same path is a new plugin, and a
// registration of an older generation must be undone and redone.
//
// It also holds the nouns every stage shares, as the kubelet's cache does:
// what a plugin says of itself (Plugin), the Handler that registers plugins
// of a type, and what a handler made of a plugin (Registration). The plugin
// manager exports them under the same names.
package cache

import (
	"context"
	"sort"
	"sync"
	"time"
)

// Plugin is what a plugin said of itself when asked (GetInfo), and the
// registration socket it said it on.
type Plugin struct {
	SocketPath string
	Type       string
	Name       string
	Endpoint   string // as the plugin gave it: maybe empty, maybe relative to the socket's directory
	Versions   []string
}

// Handler registers the plugins of one type, as the kubelet's PluginHandler
// does. Its calls are bounded by ctx (the operation timeout).
//
// An error that is a *Refusal (see pluginmanager.Refusal) is the handler's
// "no": its reason is sent to the plugin in NotifyRegistrationStatus. Any
// other error is a failure of the handler itself: the plugin is not told,
// and the registration is retried after a backoff.
type Handler interface {
	// Validate says whether the plugin may register.
	Validate(ctx context.Context, p Plugin) error
	// Register registers a validated plugin and returns what to record
	// and show. A handler that fails here has undone its own side effects.
	Register(ctx context.Context, p Plugin) (Registration, error)
	// Deregister undoes a registration: the plugin's socket went, or the
	// plugin could not be told it registered. The registration is dropped
	// whatever it returns.
	Deregister(ctx context.Context, p Plugin, r Registration) error
}

// Refusal is a handler's "no", with the reason the plugin is told.
type Refusal struct{ Reason string }

func (r *Refusal) Error() string { return r.Reason }

// Registration is what a handler made of a plugin it registered: recorded in
// the actual state, shown by the host API, handed back to Deregister.
type Registration struct {
	Handler    string            // who decided: a handler module's name, or a built-in handler's
	Action     string            // what the host did with the plugin ("record", "device-plugin", ...)
	Resource   string            // the resource the plugin serves, if any
	Endpoint   string            // the plugin's service socket, resolved to an absolute path, if any
	Version    string            // the API version agreed with the plugin, if any
	Attributes map[string]string // anything else the handler wants shown
}

// DesiredPlugin is a plugin socket the node should have registered.
type DesiredPlugin struct {
	SocketPath string
	Generation uint64
	AddedAt    time.Time // when the watcher reported the socket
}

// DesiredState is the desired state of the world. It is safe for concurrent
// use.
type DesiredState struct {
	bySocket[DesiredPlugin]
	gen uint64
}

func NewDesiredState() *DesiredState {
	return &DesiredState{bySocket: bySocket[DesiredPlugin]{plugins: map[string]DesiredPlugin{}}}
}

// Add records a socket at path, with a new generation (replacing any earlier
// socket at the same path).
func (s *DesiredState) Add(path string, at time.Time) DesiredPlugin {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gen++
	p := DesiredPlugin{SocketPath: path, Generation: s.gen, AddedAt: at}
	s.plugins[path] = p
	return p
}

// Get returns the desired plugin at path.
func (s *DesiredState) Get(path string) (DesiredPlugin, bool) { return s.get(path) }

// List returns every desired plugin, ordered by socket path.
func (s *DesiredState) List() []DesiredPlugin { return s.list() }

// Remove forgets the socket at path; it reports whether there was one.
func (s *DesiredState) Remove(path string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.plugins[path]
	delete(s.plugins, path)
	return ok
}

// RegisteredPlugin is a plugin wasmlet registered: what the plugin said about
// itself, which handler took it and what the handler made of it.
type RegisteredPlugin struct {
	SocketPath   string
	Generation   uint64
	Plugin       Plugin
	Handler      Handler // the handler that registered it: it deregisters it
	Registration Registration
	AddedAt      time.Time // when the socket was seen
	Registered   time.Time // when the plugin was told it is registered
}

// ActualState is the actual state of the world. It is safe for concurrent
// use.
type ActualState struct {
	bySocket[RegisteredPlugin]
}

func NewActualState() *ActualState {
	return &ActualState{bySocket: bySocket[RegisteredPlugin]{plugins: map[string]RegisteredPlugin{}}}
}

// Add records a registration, replacing any at the same socket path.
func (s *ActualState) Add(p RegisteredPlugin) {
	s.mu.Lock()
	s.plugins[p.SocketPath] = p
	s.mu.Unlock()
}

// Remove forgets the registration at path, if it has generation gen (so that
// a late deregistration of an old socket cannot remove a newer one).
func (s *ActualState) Remove(path string, gen uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.plugins[path]
	if !ok || p.Generation != gen {
		return false
	}
	delete(s.plugins, path)
	return true
}

// Get returns the registration at path.
func (s *ActualState) Get(path string) (RegisteredPlugin, bool) { return s.get(path) }

// List returns every registration, ordered by socket path.
func (s *ActualState) List() []RegisteredPlugin { return s.list() }

// bySocket holds one state's plugins by socket path.
type bySocket[T any] struct {
	mu      sync.RWMutex
	plugins map[string]T
}

func (s *bySocket[T]) get(path string) (T, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	p, ok := s.plugins[path]
	return p, ok
}

// list returns every plugin, ordered by socket path.
func (s *bySocket[T]) list() []T {
	s.mu.RLock()
	defer s.mu.RUnlock()
	paths := make([]string, 0, len(s.plugins))
	for path := range s.plugins {
		paths = append(paths, path)
	}
	sort.Strings(paths)
	out := make([]T, len(paths))
	for i, path := range paths {
		out[i] = s.plugins[path]
	}
	return out
}
