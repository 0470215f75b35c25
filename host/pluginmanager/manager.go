// Package pluginmanager is wasmlet's plugin manager: it registers the plugins
// that announce themselves with a socket in the registry directory, using a
// WebAssembly handler module for each plugin type.
//
// Follow a plugin socket through the packages in data-flow order:
//
//	host/watcher            the socket appears in the registry directory
//	host/cache              ... and becomes a desired plugin (with a generation)
//	host/reconciler         a pass finds it desired but not registered
//	host/operationexecutor  ... and runs its register operation (one per socket, backoff, timeout)
//	host/registration       GetInfo on the plugin's socket
//	host/module             the handler module for the plugin's type: validate, register
//	host/registration       NotifyRegistrationStatus(true) — or false, and why
//	host/cache              the plugin is in the actual state of the world
//
// A handler's register decision says what else to do: ACTION_DEVICE_PLUGIN
// hands the plugin to the device manager (DevicePlugins), ACTION_RECORD just
// records it. When the socket goes, the same path runs backwards.
package pluginmanager

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/wasmlet/wasmlet/abi"
	"github.com/wasmlet/wasmlet/host/module"
	"github.com/wasmlet/wasmlet/host/pluginmanager/cache"
	"github.com/wasmlet/wasmlet/host/pluginmanager/operationexecutor"
	"github.com/wasmlet/wasmlet/host/pluginmanager/reconciler"
	"github.com/wasmlet/wasmlet/host/pluginmanager/registration"
	"github.com/wasmlet/wasmlet/host/watcher"
)

// DevicePlugin is a device plugin a handler registered with ACTION_DEVICE_PLUGIN.
type DevicePlugin struct {
	Resource   string // extended resource name
	Endpoint   string // absolute path of the device plugin's gRPC socket
	Version    string // device plugin API version
	PluginName string
	SocketPath string // the registration socket it came from
}

// DevicePlugins is the device manager, seen from the plugin manager.
type DevicePlugins interface {
	RegisterDevicePlugin(ctx context.Context, p DevicePlugin) error
	DeregisterDevicePlugin(ctx context.Context, p DevicePlugin) error
}

// Observer is told about registrations, for metrics.
type Observer interface {
	// Registered reports a finished register operation: ok, or the failure
	// reason class ("getinfo", "refused", "handler-fault", "device-manager",
	// "notify"), and for successes the time since the socket appeared.
	Registered(pluginType string, outcome string, latency time.Duration)
	Deregistered(pluginType string)
	Reconciled(d time.Duration)
}

type nopObserver struct{}

func (nopObserver) Registered(string, string, time.Duration) {}
func (nopObserver) Deregistered(string)                      {}
func (nopObserver) Reconciled(time.Duration)                 {}

// Config wires a plugin manager.
type Config struct {
	RegistryDir string
	Modules     *module.Registry
	// DevicePlugins receives ACTION_DEVICE_PLUGIN registrations; without it
	// they are only recorded.
	DevicePlugins    DevicePlugins
	ResyncPeriod     time.Duration
	OperationTimeout time.Duration
	BackoffInitial   time.Duration
	BackoffMax       time.Duration
	Logger           hclog.Logger
	Observer         Observer
}

// Manager is the plugin manager.
type Manager struct {
	cfg     Config
	log     hclog.Logger
	obs     Observer
	desired *cache.DesiredState
	actual  *cache.ActualState
	exec    *operationexecutor.Executor
	rec     *reconciler.Reconciler
	watch   *watcher.Watcher
	ready   chan struct{}
	seenMu  sync.Mutex
	seen    map[string]abi.Plugin // last GetInfo answer per socket, for status
}

// New prepares a plugin manager; Run starts it.
func New(cfg Config) (*Manager, error) {
	if cfg.Modules == nil {
		return nil, errors.New("pluginmanager: a module registry is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	m := &Manager{cfg: cfg, log: cfg.Logger, obs: cfg.Observer, desired: cache.NewDesiredState(),
		actual: cache.NewActualState(), ready: make(chan struct{}), seen: map[string]abi.Plugin{}}
	if m.obs == nil {
		m.obs = nopObserver{}
	}
	m.exec = operationexecutor.New(operationexecutor.Config{
		Timeout: cfg.OperationTimeout, BackoffInitial: cfg.BackoffInitial, BackoffMax: cfg.BackoffMax,
		Wake: func() { m.rec.Trigger() },
	})
	w, err := watcher.New(watcher.Config{
		Dir:   cfg.RegistryDir,
		Match: watcher.IsSocket,
		OnAdd: func(path string, _ watcher.Identity) {
			m.desired.Add(path, time.Now())
			m.rec.Trigger()
		},
		OnRemove: func(path string) {
			m.desired.Remove(path)
			m.forget(path)
			m.rec.Trigger()
		},
		Logger: cfg.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("plugin registry: %w", err)
	}
	m.watch = w
	m.rec = reconciler.New(reconciler.Config{
		Desired: m.desired, Actual: m.actual, Executor: m.exec, Ops: ops{m},
		Resync: cfg.ResyncPeriod, Rescan: w.Rescan, Observe: m.obs.Reconciled,
	})
	cfg.Modules.Subscribe(func(ev module.Event) {
		// A handler arrived, changed or went: plugins waiting for one retry.
		if m.exec.Release() {
			m.rec.Trigger()
		}
	})
	return m, nil
}

// Run watches the registry directory and reconciles until ctx is done, then
// waits for operations in flight. If the watch fails, reconciling stops too
// and Run returns the watch's error: a plugin manager that no longer sees
// the registry must say so, not go on quietly.
func (m *Manager) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 1)
	wg.Add(2)
	go func() {
		defer wg.Done()
		if err := m.watch.Run(ctx); err != nil {
			errc <- fmt.Errorf("watching the plugin registry %s: %w", m.cfg.RegistryDir, err)
			cancel()
		}
	}()
	go func() {
		defer wg.Done()
		m.watch.Rescan(ctx) // the initial scan is done once this returns
		close(m.ready)
		m.rec.Run(ctx)
	}()
	m.log.Info("plugin manager started", "registry_dir", m.cfg.RegistryDir)
	wg.Wait()
	m.exec.Wait()
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}

// Ready is closed once the registry directory has been scanned.
func (m *Manager) Ready() <-chan struct{} { return m.ready }

// ops implements reconciler.Operations.
type ops struct{ m *Manager }

func (o ops) Register(d cache.DesiredPlugin) func(context.Context) error {
	return func(ctx context.Context) error { return o.m.register(ctx, d) }
}

func (o ops) Deregister(r cache.RegisteredPlugin) func(context.Context) error {
	return func(ctx context.Context) error { return o.m.deregister(ctx, r) }
}

func (m *Manager) register(ctx context.Context, d cache.DesiredPlugin) error {
	log := m.log.With("socket", d.SocketPath)
	conn, err := registration.Dial(d.SocketPath)
	if err != nil {
		m.obs.Registered("", "getinfo", 0)
		return err
	}
	defer conn.Close()
	info, err := conn.GetInfo(ctx)
	if err != nil {
		m.obs.Registered("", "getinfo", 0)
		log.Warn("plugin did not say who it is; will retry", "error", err)
		return err
	}
	m.seenMu.Lock()
	m.seen[d.SocketPath] = *info
	m.seenMu.Unlock()
	// In case the socket goes while this operation runs: whatever its
	// outcome, once it ends nobody else would drop this answer.
	defer m.forget(d.SocketPath)
	log = log.With("plugin", info.Name, "type", info.Type)

	h := m.cfg.Modules.Handler(info.Type)
	if h == nil {
		log.Info("no handler module for this plugin type yet; the plugin waits for one")
		return &operationexecutor.Waiting{Reason: fmt.Sprintf("no handler module for plugin type %q is loaded", info.Type)}
	}
	// refuse tells the plugin why it was not registered.
	refuse := func(outcome string, err error) error {
		if nerr := conn.Notify(ctx, false, err.Error()); nerr != nil {
			log.Warn("could not tell the plugin it was refused", "error", nerr)
		}
		m.obs.Registered(info.Type, outcome, 0)
		log.Warn("plugin not registered", "reason", err)
		return err
	}
	// decide handles a handler's error: a refusal is passed on to the
	// plugin, a fault is retried without bothering it.
	decide := func(op string, err error) error {
		if ae, ok := module.ModuleError(err); ok {
			return refuse("refused", fmt.Errorf("handler %q refused plugin %q: %s", h.Name(), info.Name, ae.Message))
		}
		m.obs.Registered(info.Type, "handler-fault", 0)
		log.Warn("handler module failed; will retry", "handler", h.Name(), "op", op, "error", err)
		return err
	}
	if h.Implements(abi.OpValidate) {
		if err := h.Validate(ctx, info); err != nil {
			return decide("validate", err)
		}
	}
	decision, err := h.Register(ctx, info)
	if err != nil {
		return decide("register", err)
	}
	// From here on the handler believes the plugin registered: a step that
	// fails after this tells it otherwise, so that a retry does not register
	// the plugin twice with it.
	undoHandler := func() {
		if h.Implements(abi.OpDeregister) {
			if err := h.Deregister(context.WithoutCancel(ctx), info); err != nil {
				log.Warn("handler module could not deregister the plugin", "handler", h.Name(), "error", err)
			}
		}
	}
	reg := cache.RegisteredPlugin{SocketPath: d.SocketPath, Generation: d.Generation, Info: *info,
		Handler: h.Name(), Decision: *decision, AddedAt: d.AddedAt}
	var dp *DevicePlugin
	if decision.Action == abi.ActionDevicePlugin {
		p := m.devicePlugin(reg)
		dp = &p
		reg.Endpoint = p.Endpoint
		if m.cfg.DevicePlugins != nil {
			if err := m.cfg.DevicePlugins.RegisterDevicePlugin(ctx, p); err != nil {
				undoHandler()
				return refuse("device-manager", fmt.Errorf("device manager refused resource %q at %s: %w", p.Resource, p.Endpoint, err))
			}
		}
	}
	// The registration is recorded before the plugin hears of it (as the
	// kubelet does), so a plugin told "registered" is already listed by the
	// host API.
	reg.Registered = time.Now()
	m.actual.Add(reg)
	if err := conn.Notify(ctx, true, ""); err != nil {
		// The plugin did not hear it is registered: undo, and retry.
		m.actual.Remove(reg.SocketPath, reg.Generation)
		if dp != nil && m.cfg.DevicePlugins != nil {
			m.cfg.DevicePlugins.DeregisterDevicePlugin(context.WithoutCancel(ctx), *dp)
		}
		undoHandler()
		m.obs.Registered(info.Type, "notify", 0)
		return err
	}
	latency := reg.Registered.Sub(d.AddedAt)
	m.obs.Registered(info.Type, "ok", latency)
	log.Info("plugin registered", "handler", h.Name(), "action", decision.Action.String(), "latency", latency)
	return nil
}

// forget drops what GetInfo said at path once the socket is gone and no
// registration is left to undo (deregister drops it then), so that sockets
// that come and go without registering do not accumulate.
func (m *Manager) forget(path string) {
	if _, wanted := m.desired.Get(path); wanted {
		return
	}
	if _, registered := m.actual.Get(path); registered {
		return
	}
	m.seenMu.Lock()
	delete(m.seen, path)
	m.seenMu.Unlock()
}

// devicePlugin resolves a handler's ACTION_DEVICE_PLUGIN decision.
func (m *Manager) devicePlugin(r cache.RegisteredPlugin) DevicePlugin {
	ep := r.Decision.Endpoint
	if ep == "" {
		ep = r.Info.Endpoint
	}
	if ep == "" {
		ep = r.SocketPath
	} else if !filepath.IsAbs(ep) {
		ep = filepath.Join(filepath.Dir(r.SocketPath), ep)
	}
	version := r.Decision.Version
	if version == "" && len(r.Info.SupportedVersions) > 0 {
		version = r.Info.SupportedVersions[0]
	}
	resource := r.Decision.ResourceName
	if resource == "" {
		resource = r.Info.Name
	}
	return DevicePlugin{Resource: resource, Endpoint: ep, Version: version, PluginName: r.Info.Name, SocketPath: r.SocketPath}
}

// deregister undoes a registration. It never fails: the plugin is gone
// either way, so errors are logged and the registration is dropped.
func (m *Manager) deregister(ctx context.Context, r cache.RegisteredPlugin) error {
	log := m.log.With("socket", r.SocketPath, "plugin", r.Info.Name, "type", r.Info.Type)
	if r.Decision.Action == abi.ActionDevicePlugin && m.cfg.DevicePlugins != nil {
		if err := m.cfg.DevicePlugins.DeregisterDevicePlugin(ctx, m.devicePlugin(r)); err != nil {
			log.Warn("device manager could not deregister the plugin", "error", err)
		}
	}
	if h := m.cfg.Modules.Get(r.Handler); h != nil && h.Implements(abi.OpDeregister) {
		info := r.Info
		if err := h.Deregister(ctx, &info); err != nil {
			log.Warn("handler module could not deregister the plugin", "handler", r.Handler, "error", err)
		}
	}
	m.actual.Remove(r.SocketPath, r.Generation)
	m.seenMu.Lock()
	if _, still := m.desired.Get(r.SocketPath); !still {
		delete(m.seen, r.SocketPath)
	}
	m.seenMu.Unlock()
	m.obs.Deregistered(r.Info.Type)
	log.Info("plugin deregistered")
	return nil
}

// Plugin states, as PluginStatus reports them.
const (
	StateRegistered  = "registered"
	StateRegistering = "registering"
	StateFailing     = "failing"
	StateWaiting     = "waiting"
	StateLeaving     = "deregistering"
)

// PluginStatus is what the plugin manager knows of one plugin socket.
type PluginStatus struct {
	SocketPath string
	State      string
	Type       string
	Name       string
	Endpoint   string
	Versions   []string
	Handler    string
	Action     string
	Resource   string
	Attributes map[string]string
	SeenAt     time.Time
	Registered time.Time
	Failures   int
	LastError  string
	NextRetry  time.Time
	Waiting    string
}

// Plugins lists every plugin socket that is desired or registered: which are
// registered, which are failing (with the last error and the next retry) and
// which wait for a handler.
func (m *Manager) Plugins() []PluginStatus {
	byPath := map[string]*PluginStatus{}
	var order []string
	get := func(path string) *PluginStatus {
		if s, ok := byPath[path]; ok {
			return s
		}
		s := &PluginStatus{SocketPath: path}
		byPath[path] = s
		order = append(order, path)
		return s
	}
	for _, d := range m.desired.List() {
		s := get(d.SocketPath)
		s.SeenAt, s.State = d.AddedAt, StateRegistering
		m.seenMu.Lock()
		if info, ok := m.seen[d.SocketPath]; ok {
			s.Type, s.Name, s.Endpoint, s.Versions = info.Type, info.Name, info.Endpoint, info.SupportedVersions
		}
		m.seenMu.Unlock()
	}
	for _, r := range m.actual.List() {
		s := get(r.SocketPath)
		s.Type, s.Name, s.Endpoint, s.Versions = r.Info.Type, r.Info.Name, r.Info.Endpoint, r.Info.SupportedVersions
		s.Handler, s.Action, s.Attributes, s.Registered = r.Handler, r.Decision.Action.String(), r.Decision.Attributes, r.Registered
		if r.Decision.Action == abi.ActionDevicePlugin {
			s.Resource, s.Endpoint = m.devicePlugin(r).Resource, r.Endpoint
		}
		if d, ok := m.desired.Get(r.SocketPath); ok && d.Generation == r.Generation {
			s.State = StateRegistered
		} else {
			s.State = StateLeaving
		}
	}
	out := make([]PluginStatus, 0, len(order))
	for _, path := range order {
		s := byPath[path]
		if st, ok := m.exec.Status(path); ok && s.State == StateRegistering {
			s.Failures = st.Failures
			if st.LastError != nil {
				s.LastError = st.LastError.Error()
			}
			s.NextRetry, s.Waiting = st.NextRetry, st.Waiting
			switch {
			case st.Waiting != "":
				s.State = StateWaiting
			case st.Failures > 0 && st.Running == "":
				s.State = StateFailing
			}
		}
		out = append(out, *s)
	}
	return out
}
