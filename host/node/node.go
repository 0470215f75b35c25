// Package node assembles a wasmlet host from its parts and runs it: this is
// `wasmlet run`. It is the one place that knows every package, in the order
// of the data flow:
//
//	module directory ─ watcher ─► module.Registry ─► handlers and device sources
//	registry directory ─► pluginmanager (watcher, caches, reconciler, executor) ─► wasmhandler
//	CSIPlugin handler ─► csi (the node's CSI drivers and their node facts)
//	kubelet.sock, DevicePlugin handler, devicesource ─► devicemanager ─► checkpoint
//	devicesource with bridge = true ─► bridge ─► the external kubelet (instead); cdi specs
//	api (admin; pod resources v1 and v1alpha1 on a read-only socket of their own), metrics (/metrics /healthz /readyz)
//
// Start-up order matters: the checkpoint is restored first (a bad one stops
// the start), modules already in the module directory are loaded before any
// plugin is looked at (so a plugin finds its handler), then everything
// serves. Shutdown runs the other way and removes every socket wasmlet made.
package node

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/wasmlet/wasmlet/checkpoint"
	"github.com/wasmlet/wasmlet/host/allocator"
	"github.com/wasmlet/wasmlet/host/api"
	"github.com/wasmlet/wasmlet/host/api/adminpb"
	"github.com/wasmlet/wasmlet/host/bridge"
	"github.com/wasmlet/wasmlet/host/cdi"
	"github.com/wasmlet/wasmlet/host/claim"
	"github.com/wasmlet/wasmlet/host/config"
	"github.com/wasmlet/wasmlet/host/csi"
	"github.com/wasmlet/wasmlet/host/deviceclass"
	"github.com/wasmlet/wasmlet/host/devicemanager"
	"github.com/wasmlet/wasmlet/host/devicesource"
	"github.com/wasmlet/wasmlet/host/dradriver"
	"github.com/wasmlet/wasmlet/host/endpoint"
	"github.com/wasmlet/wasmlet/host/metrics"
	"github.com/wasmlet/wasmlet/host/module"
	"github.com/wasmlet/wasmlet/host/pluginmanager"
	"github.com/wasmlet/wasmlet/host/pluginmanager/wasmhandler"
	"github.com/wasmlet/wasmlet/host/watcher"
)

// Version is the wasmlet build, set by the linker.
var Version = "dev"

// ShutdownGrace is how long module calls still running at shutdown may go
// on before they are stopped. With the sockets' removal after it, shutdown
// stays well within the 10 seconds a SIGTERM allows (see RELIABILITY.md).
const ShutdownGrace = 3 * time.Second

// Node is a running wasmlet host.
type Node struct {
	cfg     *config.Config
	log     hclog.Logger
	metrics *metrics.Metrics
	cache   *module.Cache
	modules *module.Registry
	plugins *pluginmanager.Manager
	csi     *csi.Drivers
	devices *devicemanager.Manager
	alloc   *allocator.Allocator
	claims  *claim.Store
	dmsrv   *devicemanager.Server
	sources *devicesource.Controller
	bridge  *bridge.Bridge
	dra     *dradriver.Drivers // nil when no source has bridge = "dra"
	cdi     *cdi.Specs
	modw    *watcher.Watcher

	loads chan moduleChange
	// stopping is closed when Run begins to shut down: nothing is queued on
	// loads after that (its reader is gone).
	stopping chan struct{}
	loadedMu sync.Mutex
	loaded   map[string]watcher.Identity // module files as last loaded

	linksMu sync.Mutex
	badLink map[string]string // module file links warned about, and why

	// lock is the state directory's, held from New until Run ends.
	lock *stateLock

	startedAt time.Time
	// metricsAddr is the address /metrics is served on, once it is.
	metricsAddr atomic.Value // string
	// started: the modules present at start are loaded and the registry
	// scanned; stopped: shutting down. Ready says more.
	started, stopped atomic.Bool
	// restored are the resources of the checkpoint, with the provider that
	// served each; the node is not ready until they are back, or until
	// restoreBy (operation_timeout after it started).
	restored  map[string]string
	restoreBy atomic.Value // time.Time
}

// New builds a node from its configuration. First it takes the lock on the
// state directory (LockFile): a second host on the same state refuses to
// start (ErrLocked) before it changes anything. Then it creates the
// directories it needs and restores the checkpoint; it starts nothing. The
// lock is held until Run returns.
func New(cfg *config.Config, log hclog.Logger) (_ *Node, err error) {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	module.HostVersion = Version
	n := &Node{cfg: cfg, log: log, metrics: metrics.New(), loads: make(chan moduleChange, 64),
		stopping: make(chan struct{}), badLink: map[string]string{}}
	h := cfg.Host
	// State is private to wasmlet; the plugin directories must be reachable
	// by plugins (often other users' processes), but not writable by others.
	if err := os.MkdirAll(h.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	if n.lock, err = lockState(h.StateDir); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			n.lock.release()
		}
	}()
	// Another process serving kubelet.sock (a kubelet, another wasmlet on
	// another state directory) is refused before its directory is touched.
	if err := devicemanager.CheckDir(h.DevicePluginDir); err != nil {
		return nil, err
	}
	if err := os.Chmod(h.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	for _, d := range []string{h.RegistryDir, h.DevicePluginDir, h.ModuleDir} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return nil, err
		}
	}
	// Without a compilation cache modules load all the same, only slower.
	if n.cache, err = module.NewCache(filepath.Join(h.StateDir, "compilation-cache")); err != nil {
		log.Warn("no compilation cache: every module is compiled on every load", "error", err)
		n.cache = nil
	}
	n.modules = module.NewRegistry(n.moduleOptions, cfg.Handlers, log)
	n.modules.Subscribe(n.metrics.ModuleEvent)

	// Device sources go to the local device manager or the bridge, never
	// both (sourceRoutes); every source's edits get a CDI spec, and every
	// claim one of its own.
	b := cfg.Bridge
	if n.cdi, err = cdi.New(cdi.Config{Dir: b.CDIDir, GracePeriod: h.GracePeriod, Logger: log.Named("cdi")}); err != nil {
		return nil, err
	}
	// The one allocator of the sources' structured devices, for counts and
	// claims; the claims are a part of the device manager's checkpoint.
	classes, err := deviceclass.Load(h.DeviceClassDir, allocator.NewCELCache())
	if err != nil {
		return nil, fmt.Errorf("device classes (host.device_class_dir in %s): %w", cfg.File, err)
	}
	n.alloc = allocator.New(allocator.Config{NodeName: h.NodeName, Classes: classes, Logger: log.Named("allocator")})
	n.claims = claim.New(claim.Config{Allocator: n.alloc, Specs: n.cdi, Logger: log.Named("claims"), Observer: n.metrics})
	n.devices, err = devicemanager.New(devicemanager.Config{
		CheckpointPath: filepath.Join(h.StateDir, "checkpoint"),
		GracePeriod:    h.GracePeriod,
		Logger:         log.Named("devices"),
		Observer:       n.metrics,
		Allocator:      n.alloc,
		Parts:          []devicemanager.Part{n.claims},
	})
	var ce *checkpoint.CorruptError
	if errors.As(err, &ce) {
		ce.Expected = true // the configuration puts it there: moving it aside is the way out
	}
	if err != nil {
		return nil, err
	}
	n.restored = n.devices.Restored()
	n.claims.Attach(n.devices)
	n.claims.Resume()
	n.bridge, err = bridge.New(bridge.Config{KubeletDir: b.KubeletDir, Registration: string(b.Registration),
		PluginRegistryDir: b.PluginRegistryDir, RegisterTimeout: h.OperationTimeout, BackoffInitial: h.BackoffInitial,
		BackoffMax: h.BackoffMax, ResyncPeriod: h.ResyncPeriod, GracePeriod: h.GracePeriod, Logger: log.Named("bridge")})
	if err != nil {
		return nil, err
	}
	n.dmsrv = devicemanager.NewServer(n.devices, h.DevicePluginDir,
		func(ctx context.Context, resource, path string) (devicemanager.Provider, error) {
			return endpoint.Dial(ctx, resource, path)
		}, h.OperationTimeout)
	if cfg.Bridges(config.BridgeDRA) {
		d := cfg.DRA
		client, err := dradriver.NewClient(d.Kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("dra ([dra] kubeconfig in %s): %w", cfg.File, err)
		}
		podUID := ""
		if d.RollingUpdate {
			if podUID = os.Getenv("POD_UID"); podUID == "" {
				return nil, fmt.Errorf("dra: rolling_update = true in %s, but POD_UID is not set (the DaemonSet sets it from the downward API, metadata.uid)", cfg.File)
			}
		}
		n.dra, err = dradriver.New(dradriver.Config{Client: client, NodeName: h.NodeName, PluginDir: d.PluginDir,
			RegistryDir: d.RegistryDir, PodUID: podUID, Claims: n.claims, BackoffInitial: h.BackoffInitial,
			BackoffMax: h.BackoffMax, ResyncPeriod: h.ResyncPeriod, MaxDevices: d.MaxDevices, Logger: log.Named("dra")})
		if err != nil {
			return nil, err
		}
	}
	routes := &sourceRoutes{local: n.devices, plugins: n.dmsrv, bridge: n.bridge, dra: n.dra, specs: n.cdi, claims: n.claims,
		log: log.Named("sources"), bridged: func(module string) config.BridgeKind { return cfg.Source(module).Bridge }}
	n.sources = devicesource.NewController(n.modules, routes, devicesource.ControllerConfig{
		Options: n.sourceOptions,
		Logger:  log.Named("sources"),
	})
	// A resource a device source declares is the module's, not a plugin's.
	n.dmsrv.SetOwner(n.sources.Owner)

	n.csi = csi.New(csi.Config{Logger: log.Named("csi"), Observe: n.metrics.CSIDrivers})
	n.plugins, err = pluginmanager.New(pluginmanager.Config{
		RegistryDir: h.RegistryDir,
		Handlers: wasmhandler.New(wasmhandler.Config{Modules: n.modules, DevicePlugins: devicePlugins{n.dmsrv},
			CSIDrivers: csiDrivers{n.csi}}),
		ResyncPeriod:     h.ResyncPeriod,
		OperationTimeout: h.OperationTimeout,
		BackoffInitial:   h.BackoffInitial,
		BackoffMax:       h.BackoffMax,
		Logger:           log.Named("plugins"),
		Observer:         n.metrics,
	})
	if err != nil {
		return nil, err
	}
	n.modw, err = watcher.New(watcher.Config{
		Dir:      h.ModuleDir,
		Match:    n.moduleFile,
		Settle:   100 * time.Millisecond,
		OnAdd:    func(path string, _ watcher.Identity) { n.queueLoad(moduleChange{path: path}) },
		OnRemove: func(path string) { n.queueLoad(moduleChange{path: path, removed: true}) },
		Logger:   log.Named("modules"),
	})
	if err != nil {
		return nil, err
	}
	return n, nil
}

// moduleFile matches the module directory's module files: a regular file
// named *.wasm, or a symbolic link so named to a regular file, which is
// loaded as that file. The link is followed when the module is loaded: a
// link created, replaced or removed is noticed, a change of the file it
// points to is not (run `wasmlet module reload NAME`, or replace the link).
// A link to anything else is not loaded, and says why, once.
func (n *Node) moduleFile(path string, fi fs.FileInfo) bool {
	if !strings.HasSuffix(path, ".wasm") {
		return false
	}
	if fi.Mode().IsRegular() {
		return true
	}
	if fi.Mode()&fs.ModeSymlink == 0 {
		return false
	}
	why := ""
	target, err := os.Stat(path)
	switch {
	case err != nil:
		why = err.Error()
	case !target.Mode().IsRegular():
		why = "it points to " + target.Mode().Type().String() + ", not to a regular file"
	}
	n.linksMu.Lock()
	defer n.linksMu.Unlock()
	if why == "" {
		delete(n.badLink, path)
		return true
	}
	if n.badLink[path] != why {
		n.badLink[path] = why
		n.log.Warn("symbolic link in the module directory not loaded", "path", path, "reason", why)
	}
	return false
}

// moduleOptions gives each module its sandbox from plugins.toml, with the
// host's logger, cache and metrics.
func (n *Node) moduleOptions(name string) module.Options {
	o := n.cfg.ModuleOptions(name)
	o.Logger = n.log.Named("wasm")
	o.Cache = n.cache
	o.Observer = n.metrics
	return o
}

// sourceOptions runs each device-source module as [sources.<name>] says,
// with the container edits [modules.<name>.edits] grants it.
func (n *Node) sourceOptions(name string) devicesource.Options {
	sc := n.cfg.Source(name)
	return devicesource.Options{DiscoverInterval: sc.DiscoverInterval, NoWatch: !sc.Watch, Grant: n.cfg.EditGrant(name),
		Observer: n.metrics, Logger: n.log.Named("sources")}
}

// devicePlugins adapts the device manager's registration service to the
// handler modules: a DevicePlugin handler's ACTION_DEVICE_PLUGIN hands its
// plugin over here.
type devicePlugins struct{ s *devicemanager.Server }

func (d devicePlugins) RegisterDevicePlugin(ctx context.Context, p wasmhandler.DevicePlugin) error {
	return d.s.RegisterDevicePlugin(ctx, devicemanager.DevicePlugin(p))
}

func (d devicePlugins) DeregisterDevicePlugin(ctx context.Context, p wasmhandler.DevicePlugin) error {
	return d.s.DeregisterDevicePlugin(ctx, devicemanager.DevicePlugin(p))
}

// csiDrivers adapts the node's CSI driver registry to the handler modules:
// a CSIPlugin handler's ACTION_CSI_DRIVER registers its driver here.
type csiDrivers struct{ d *csi.Drivers }

func (c csiDrivers) RegisterCSIDriver(ctx context.Context, d wasmhandler.CSIDriver) (string, error) {
	reg, err := c.d.Register(ctx, csi.Registration(d))
	return reg.Version, err
}

func (c csiDrivers) DeregisterCSIDriver(_ context.Context, d wasmhandler.CSIDriver) error {
	c.d.Deregister(d.Name, d.SocketPath)
	return nil
}

// Run is New then Run: `wasmlet run`.
func Run(ctx context.Context, cfg *config.Config, log hclog.Logger) error {
	n, err := New(cfg, log)
	if err != nil {
		return err
	}
	return n.Run(ctx)
}

// Run serves until ctx is done, then shuts down in order, and releases the
// state directory.
func (n *Node) Run(ctx context.Context) error {
	defer n.lock.release()
	n.startedAt = time.Now()
	n.metrics.SetReadiness(n.NotReady)
	h := n.cfg.Host
	n.log.Info("wasmlet starting", "version", Version, "config", n.cfg.File, "state_dir", h.StateDir,
		"registry_dir", h.RegistryDir, "device_plugin_dir", h.DevicePluginDir, "module_dir", h.ModuleDir)
	for _, p := range n.cfg.Problems() {
		n.log.Error("configuration: a module will be refused when it loads", "problem", p.Error())
	}
	for _, w := range n.cfg.Warnings() {
		n.log.Warn("configuration: a grant worth a second look", "warning", w.Error())
	}

	// Everything below stops when runCtx is canceled: on shutdown, or when a
	// part fails.
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	// One slot per part that can fail (the metrics listener, the device
	// manager, and every goRun below), so that none blocks on its way out.
	errs := make(chan error, 16)
	go func() { <-runCtx.Done(); close(n.stopping) }()
	goRun := func(what string, f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(runCtx); err != nil {
				errs <- fmt.Errorf("%s: %w", what, err)
				cancel()
			}
		}()
	}

	if h.MetricsAddress != "" {
		// Bound here, not in the goroutine, so that an address in use stops
		// the start with a message that says which setting to change. Port 0
		// picks a free port; MetricsAddress and the log say which.
		if lis, err := net.Listen("tcp", h.MetricsAddress); err != nil {
			errs <- fmt.Errorf("metrics: cannot listen on %q (host.metrics_address in %s; \"\" turns metrics off): %w",
				h.MetricsAddress, n.cfg.File, err)
			cancel() // the parts below start and stop at once: one way out
		} else {
			n.metricsAddr.Store(lis.Addr().String())
			n.log.Info("metrics listening", "address", lis.Addr().String())
			goRun("metrics", func(ctx context.Context) error { return n.metrics.Serve(ctx, lis) })
		}
	}
	// The device manager first: restored resources start their grace period,
	// kubelet.sock accepts plugins.
	devicesDone := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(devicesDone)
		if err := n.devices.Run(runCtx); err != nil {
			errs <- fmt.Errorf("device manager: %w", err)
		}
	}()
	goRun("device sources", n.sources.Run)
	goRun("kubernetes bridge", n.bridge.Run)
	if n.dra != nil {
		goRun("dra drivers", n.dra.Run)
	}
	// The API answers from the start (status says the node is starting).
	goRun("host API", func(ctx context.Context) error {
		return api.Serve(ctx, api.Config{AdminSocket: h.APISocket, PodResourcesSocket: h.PodResourcesSocket,
			Backend: n.backend(), Logger: n.log.Named("api")})
	})

	// Modules present at start are loaded before plugins are looked at.
	goRun("module directory", n.modw.Run)
	goRun("module loader", n.loadModules)
	select {
	case <-n.modw.Ready():
		applied := make(chan struct{})
		n.queueLoad(moduleChange{barrier: applied})
		select {
		case <-applied:
		case <-runCtx.Done():
		}
	case <-runCtx.Done():
	}

	// kubelet.sock once the modules are loaded, as the registry below: a
	// device plugin registering finds the device sources that claim their
	// resources.
	goRun("device plugin registration", n.dmsrv.Serve)
	goRun("plugin manager", n.plugins.Run)

	select {
	case <-n.plugins.Ready():
		waitForSocket(runCtx, h.APISocket)
		n.restoreBy.Store(time.Now().Add(h.OperationTimeout))
		n.started.Store(true)
		n.log.Info("wasmlet started", "modules", len(n.modules.List()), "startup", time.Since(n.startedAt).Round(time.Millisecond))
		go n.logReady(runCtx)
	case <-runCtx.Done():
	}

	<-runCtx.Done()
	n.stopped.Store(true)
	n.log.Info("wasmlet shutting down")
	// The parts stop on runCtx, and module calls made under it stop with it.
	// Calls made for a request the node serves (an allocation through the
	// API, the kubelet's Allocate) get ShutdownGrace to finish; then every
	// module is closed, which stops what still runs — a guest asleep,
	// looping or blocked — so that no guest holds up the exit.
	parts := make(chan struct{})
	go func() { wg.Wait(); close(parts) }()
	closeCtx, cancelClose := context.WithTimeout(context.Background(), ShutdownGrace)
	defer cancelClose()
	select {
	case <-parts:
	case <-closeCtx.Done():
		n.log.Warn("module calls still running after the shutdown grace period: stopping them", "grace", ShutdownGrace)
	}
	n.modules.Close(closeCtx)
	<-parts
	n.cache.Close(context.Background())
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	if len(all) > 0 {
		return errors.Join(all...)
	}
	n.log.Info("wasmlet stopped")
	return nil
}

// queueLoad hands a module change to loadModules, unless the node is
// shutting down (then loadModules is gone, and the change does not matter).
func (n *Node) queueLoad(ch moduleChange) {
	select {
	case n.loads <- ch:
	case <-n.stopping:
	}
}

// backend is the node as the host API sees it.
func (n *Node) backend() api.Backend {
	return backend{parts{status: n.status, grace: n.cfg.Host.GracePeriod, modules: n.modules, sources: n.sources,
		plugins: n.plugins, devices: n.devices, kubelet: n.dmsrv, claims: n.claims, csi: n.csi}}
}

// status describes the node for the host API.
func (n *Node) status() *adminpb.StatusResponse {
	h := n.cfg.Host
	st := &adminpb.StatusResponse{Version: Version, Started: ts(n.startedAt), ConfigFile: n.cfg.File,
		Directories: &adminpb.Directories{State: h.StateDir, PluginRegistry: h.RegistryDir,
			DevicePlugins: h.DevicePluginDir, Modules: h.ModuleDir, Checkpoint: filepath.Join(h.StateDir, "checkpoint")},
		ApiSocket: h.APISocket, PodResourcesSocket: h.PodResourcesSocket, MetricsAddress: n.MetricsAddress(),
		GracePeriod: dur(h.GracePeriod)}
	st.NotReady = n.NotReady()
	st.Ready = st.NotReady == ""
	for _, b := range n.bridge.Status() {
		st.Bridged = append(st.Bridged, bridgedView(b))
	}
	if n.dra != nil {
		for _, d := range n.dra.Status() {
			st.DraDrivers = append(st.DraDrivers, draView(d))
		}
	}
	for _, sp := range n.cdi.Status() {
		st.CdiSpecs = append(st.CdiSpecs, cdiView(sp))
	}
	return st
}

// waitForSocket waits (briefly) for a socket a goroutine is creating.
func waitForSocket(ctx context.Context, path string) {
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline) && ctx.Err() == nil; {
		if _, err := os.Stat(path); err == nil {
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// Modules is the node's module registry.
func (n *Node) Modules() *module.Registry { return n.modules }

// Plugins is the node's plugin manager.
func (n *Node) Plugins() *pluginmanager.Manager { return n.plugins }

// Sources is the node's device-source controller.
func (n *Node) Sources() *devicesource.Controller { return n.sources }

// Bridge serves the sources with bridge = true to the external kubelet.
func (n *Node) Bridge() *bridge.Bridge { return n.bridge }

// DRA serves the sources with bridge = "dra" to the kubelet and the
// cluster; nil when there are none.
func (n *Node) DRA() *dradriver.Drivers { return n.dra }

// CDI is the node's CDI spec files.
func (n *Node) CDI() *cdi.Specs { return n.cdi }

// CSI is the node's CSI driver registry.
func (n *Node) CSI() *csi.Drivers { return n.csi }

// Devices is the node's device manager.
func (n *Node) Devices() *devicemanager.Manager { return n.devices }

// MetricsAddress is the host:port serving /metrics, /healthz and /readyz
// (the configured one, with the port filled in when it was 0), or "" when
// metrics are off or not yet listening.
func (n *Node) MetricsAddress() string {
	a, _ := n.metricsAddr.Load().(string)
	return a
}

// Metrics is the node's metrics.
func (n *Node) Metrics() *metrics.Metrics { return n.metrics }

// Config is the node's configuration.
func (n *Node) Config() *config.Config { return n.cfg }

// Ready reports whether the node is ready: NotReady has nothing to say.
func (n *Node) Ready() bool { return n.NotReady() == "" }

// NotReady says why the node is not ready, or "" when it is: it is starting
// (loading the modules present at start, scanning the plugin registry), or
// stopping, or kubelet.sock is not served (device plugins could not
// register), or it waits for the providers of resources restored from the
// checkpoint to come back. /readyz and status answer with it.
func (n *Node) NotReady() string {
	switch {
	case n.stopped.Load():
		return "stopping"
	case !n.started.Load():
		return "starting: loading modules and scanning the plugin registry"
	}
	if why := n.dmsrv.Missing(); why != "" {
		return "kubelet.sock: " + why
	}
	if n.dra != nil {
		if why := n.dra.NotReady(); why != "" {
			return why
		}
	}
	if waiting, left := n.waitingForRestored(); len(waiting) > 0 {
		return fmt.Sprintf("waiting up to %s more for the providers of resources restored from the checkpoint to come back: %s",
			left.Round(time.Millisecond), strings.Join(waiting, ", "))
	}
	return ""
}

// waitingForRestored lists the resources restored from the checkpoint whose
// provider has not reported devices since the start ("resource (provider)"),
// and how long the node still waits for them; none once it waited
// operation_timeout. A resource whose devices went meanwhile is not waited
// for.
func (n *Node) waitingForRestored() ([]string, time.Duration) {
	by, _ := n.restoreBy.Load().(time.Time)
	left := time.Until(by)
	if len(n.restored) == 0 || left <= 0 {
		return nil, 0
	}
	back := map[string]bool{}
	for _, r := range n.devices.Resources() {
		back[r.Name] = r.Connected && !r.LastUpdate.IsZero() || r.Capacity == 0 && r.Provider == ""
	}
	var waiting []string
	for _, name := range slices.Sorted(maps.Keys(n.restored)) {
		if ok, known := back[name]; known && !ok {
			waiting = append(waiting, fmt.Sprintf("%s (%s)", name, n.restored[name]))
		}
	}
	return waiting, left
}

// logReady says when the node becomes ready after it started, and which
// restored resources it stopped waiting for.
func (n *Node) logReady(ctx context.Context) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var last []string
	for ctx.Err() == nil {
		waiting, _ := n.waitingForRestored()
		if len(waiting) > 0 {
			last = waiting
		}
		if n.NotReady() == "" {
			if len(waiting) == 0 && len(last) > 0 && time.Now().After(n.restoreBy.Load().(time.Time)) {
				n.log.Warn("ready without these resources restored from the checkpoint: their providers did not come back within operation_timeout",
					"resources", strings.Join(last, ", "))
			}
			n.log.Info("wasmlet ready", "since_start", time.Since(n.startedAt).Round(time.Millisecond))
			return
		}
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
	}
}

// Started is when Run began.
func (n *Node) Started() time.Time { return n.startedAt }
