package dradriver

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/hashicorp/go-hclog"
	"k8s.io/client-go/kubernetes"

	"github.com/wasmlet/wasmlet/host/claim"
	"github.com/wasmlet/wasmlet/host/device"
	"github.com/wasmlet/wasmlet/host/devicemanager"
	"github.com/wasmlet/wasmlet/host/internal/defaults"
)

// Defaults of Config.
const (
	DefaultPluginDir      = "/var/lib/kubelet/plugins"
	DefaultRegistryDir    = "/var/lib/kubelet/plugins_registry"
	DefaultBackoffInitial = 500 * time.Millisecond
	DefaultBackoffMax     = 2 * time.Minute
	DefaultVerifyInitial  = 20 * time.Millisecond
	DefaultRequestTimeout = 10 * time.Second
	DefaultHealthResend   = 10 * time.Second
	DefaultResyncPeriod   = 30 * time.Second
	DefaultMaxDevices     = 1024
)

// Source is a device source that can be a DRA driver
// (*devicesource.Source): a driver name, shared counters, and prepare.
type Source interface {
	devicemanager.Provider
	claim.Driver
	// Driver is the source's driver name.
	Driver() string
	// SharedCounters are the counter sets of the latest discovery.
	SharedCounters() []device.CounterSet
}

// Config wires the drivers.
type Config struct {
	// Client reaches the API server, for the ResourceSlices and to read
	// ResourceClaims. Required.
	Client kubernetes.Interface
	// NodeName is the node's name: the pool of every driver, and the owner
	// of its slices. Required.
	NodeName string
	// NodeUID is the Node's UID, when known; else the ResourceSlice
	// controller looks it up.
	NodeUID string
	// PluginDir is the kubelet's plugin directory: each driver serves its
	// DRA service in <PluginDir>/<driver>.
	PluginDir string
	// RegistryDir is the kubelet's plugin registry, where the registration
	// sockets go.
	RegistryDir string
	// PodUID, when set, is the wasmlet pod's UID: sockets are named after
	// it, so that a new pod serves beside the old one during a rolling
	// update (the kubelet supports it since 1.33).
	PodUID string
	// Claims prepares the kubelet's claims and records them. Required.
	Claims *claim.Store
	// BackoffInitial and BackoffMax shape the retries of sockets that
	// cannot be served and of an API server that cannot be reached.
	BackoffInitial, BackoffMax time.Duration
	// VerifyInitial is the first wait before the slices are checked again
	// in the API server after they were not yet as published.
	VerifyInitial time.Duration
	// RequestTimeout bounds each request wasmlet makes to the API server
	// itself.
	RequestTimeout time.Duration
	// HealthResend is how often device health is sent to the kubelet when
	// nothing changed.
	HealthResend time.Duration
	// ResyncPeriod is how often the sockets are checked without an event.
	ResyncPeriod time.Duration
	// MaxDevices bounds the devices of one driver's pool: a source that
	// discovers more has the rest left out (Status.LeftOut), rather than
	// filling the API server with slices (64 devices to a slice).
	MaxDevices int
	Logger     hclog.Logger
}

// Drivers serves device sources to the kubelet as DRA drivers, one driver
// per source. See the package documentation. It is safe for concurrent
// use.
type Drivers struct {
	cfg Config
	log hclog.Logger

	mu      sync.Mutex
	drivers map[string]*driver // by resource
	ctx     context.Context    // Run's, once it started
	stopped bool
	wanted  chan struct{} // closed by the first SetProvider
	want    sync.Once
	wg      sync.WaitGroup
}

// New checks cfg and returns the drivers; Run starts them.
func New(cfg Config) (*Drivers, error) {
	switch {
	case cfg.Client == nil:
		return nil, errors.New("dra: no client for the API server")
	case cfg.NodeName == "":
		return nil, errors.New("dra: no node name")
	case cfg.Claims == nil:
		return nil, errors.New("dra: no claim store")
	}
	if cfg.PluginDir == "" {
		cfg.PluginDir = DefaultPluginDir
	}
	if cfg.RegistryDir == "" {
		cfg.RegistryDir = DefaultRegistryDir
	}
	for _, dir := range []string{cfg.PluginDir, cfg.RegistryDir} {
		if !filepath.IsAbs(dir) {
			return nil, fmt.Errorf("dra: directory %q: must be an absolute path", dir)
		}
	}
	cfg.PluginDir, cfg.RegistryDir = filepath.Clean(cfg.PluginDir), filepath.Clean(cfg.RegistryDir)
	defaults.Positive(&cfg.BackoffInitial, DefaultBackoffInitial)
	if cfg.BackoffMax < cfg.BackoffInitial {
		cfg.BackoffMax = max(DefaultBackoffMax, cfg.BackoffInitial)
	}
	defaults.Positive(&cfg.VerifyInitial, DefaultVerifyInitial)
	defaults.Positive(&cfg.RequestTimeout, DefaultRequestTimeout)
	defaults.Positive(&cfg.HealthResend, DefaultHealthResend)
	defaults.Positive(&cfg.ResyncPeriod, DefaultResyncPeriod)
	defaults.Positive(&cfg.MaxDevices, DefaultMaxDevices)
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	return &Drivers{cfg: cfg, log: cfg.Logger, drivers: map[string]*driver{}, wanted: make(chan struct{})}, nil
}

// SetProvider serves p, which must be a Source, as the driver of its
// resource. A source replacing the previous one of the resource takes over
// its driver (when the driver's name is the same, its sockets are served
// again and its slices updated, not withdrawn).
func (ds *Drivers) SetProvider(resource string, p devicemanager.Provider) {
	src, ok := p.(Source)
	if !ok {
		ds.log.Error("not a device source with a driver: it cannot be a DRA driver", "resource", resource, "provider", p.Name())
		p.Close()
		return
	}
	ds.want.Do(func() { close(ds.wanted) })
	ds.mu.Lock()
	if ds.stopped {
		ds.mu.Unlock()
		p.Close()
		return
	}
	old := ds.drivers[resource]
	for _, d := range ds.drivers {
		if d.name == src.Driver() && d.resource != resource {
			ds.mu.Unlock()
			ds.log.Error("another source already serves this driver; not served", "driver", src.Driver(),
				"resource", resource, "served_for", d.resource)
			p.Close()
			return
		}
	}
	d := newDriver(ds, resource, src)
	ds.drivers[resource] = d
	ctx := ds.ctx
	ds.mu.Unlock()
	if old != nil {
		// Same driver: the new source's first discovery updates the
		// slices. Another driver: the old one's slices go.
		old.stop(old.name != d.name)
		if ctx != nil {
			<-old.done
		} else {
			old.src.Close() // never started
		}
	}
	if ctx != nil {
		ds.start(ctx, d)
	}
}

// RemoveProvider stops serving resource if providerName still serves it:
// the source went away, and its slices are withdrawn.
func (ds *Drivers) RemoveProvider(resource, providerName string) {
	ds.mu.Lock()
	d := ds.drivers[resource]
	if d == nil || d.src.Name() != providerName {
		ds.mu.Unlock()
		return
	}
	delete(ds.drivers, resource)
	started := ds.ctx != nil
	ds.mu.Unlock()
	ds.log.Info("device source removed: its DRA driver stops", "driver", d.name, "resource", resource)
	d.stop(true)
	if started {
		<-d.done
	} else {
		d.src.Close()
	}
}

func (ds *Drivers) start(ctx context.Context, d *driver) {
	ds.wg.Add(1)
	go func() {
		defer ds.wg.Done()
		defer d.src.Close()
		d.run(ctx)
	}()
}

// Run serves every driver until ctx is done; then it stops serving them
// (their slices stay: a restarted wasmlet takes them over). Until a source
// is given to it, Run waits without touching the kubelet's directories.
func (ds *Drivers) Run(ctx context.Context) error {
	select {
	case <-ds.wanted:
	case <-ctx.Done():
		return nil
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("dra: watch the kubelet's directories: %w", err)
	}
	defer w.Close()
	ds.mu.Lock()
	if ds.ctx != nil {
		ds.mu.Unlock()
		return errors.New("dra: already running")
	}
	ds.ctx = ctx
	for _, d := range ds.drivers {
		ds.start(ctx, d)
	}
	ds.mu.Unlock()
	ds.log.Info("serving device sources to the kubelet as DRA drivers", "node", ds.cfg.NodeName,
		"plugin_dir", ds.cfg.PluginDir, "registry_dir", ds.cfg.RegistryDir)

	watched := map[string]bool{}
	watchAll := func() {
		for _, dir := range ds.dirs() {
			if watched[dir] {
				continue
			}
			if err := os.MkdirAll(dir, 0o750); err != nil {
				ds.log.Warn("cannot create a kubelet directory; retrying at every resync", "dir", dir, "error", err)
				continue
			}
			if err := w.Add(dir); err != nil {
				ds.log.Warn("cannot watch a kubelet directory; retrying at every resync", "dir", dir, "error", err)
				continue
			}
			watched[dir] = true
		}
	}
	watchAll()
	resync := time.NewTicker(ds.cfg.ResyncPeriod)
	defer resync.Stop()
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case ev, ok := <-w.Events:
			if !ok {
				done = true
				break
			}
			if ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) {
				if watched[ev.Name] { // a directory itself
					delete(watched, ev.Name)
					watchAll()
				}
				ds.socketGone(ev.Name)
			}
		case <-w.Errors:
			ds.checkSockets() // events lost
		case <-resync.C:
			for dir := range watched {
				if _, err := os.Stat(dir); err != nil {
					delete(watched, dir)
				}
			}
			watchAll()
			ds.checkSockets()
		}
	}

	ds.mu.Lock()
	ds.stopped = true
	ds.mu.Unlock()
	for _, d := range ds.all() {
		d.stop(false)
	}
	ds.wg.Wait()
	ds.log.Info("stopped serving DRA drivers")
	return nil
}

// all are the drivers now.
func (ds *Drivers) all() []*driver {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	return slices.Collect(maps.Values(ds.drivers))
}

// dirs are the directories watched: the registry, and every driver's
// directory for its service socket.
func (ds *Drivers) dirs() []string {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	out := []string{ds.cfg.RegistryDir}
	for _, d := range ds.drivers {
		out = append(out, d.dataDir)
	}
	return out
}

// socketGone looks at the sockets of the drivers that path (a socket, or
// its directory) concerns, since it was deleted.
func (ds *Drivers) socketGone(path string) {
	for _, d := range ds.all() {
		if path == d.regPath || path == d.sockPath || path == d.dataDir || path == ds.cfg.RegistryDir {
			d.checkSockets()
		}
	}
}

// checkSockets looks for sockets deleted without an event seen.
func (ds *Drivers) checkSockets() {
	for _, d := range ds.all() {
		d.checkSockets()
	}
}

// checkSockets has the driver serve its sockets again if it serves them
// and one is gone. What is there decides, not the event: the driver's own
// restart removes its sockets and makes new ones, and the events of the
// removal may come once the new ones are served.
func (d *driver) checkSockets() {
	d.mu.Lock()
	serving := d.helper != nil
	d.mu.Unlock()
	if serving && d.missingSocket() != "" {
		signal(d.restart)
	}
}

// missingSocket is the first of the driver's sockets not there, or "".
func (d *driver) missingSocket() string {
	for _, p := range []string{d.regPath, d.sockPath} {
		if _, err := os.Lstat(p); err != nil {
			return p
		}
	}
	return ""
}

// Status returns a snapshot of every driver, by driver name.
func (ds *Drivers) Status() []Status {
	all := ds.all()
	out := make([]Status, 0, len(all))
	for _, d := range all {
		out = append(out, d.status())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Driver < out[j].Driver })
	return out
}

// NotReady says why the drivers are not ready — a driver whose slices are
// not published, or that the kubelet has not registered — or "" when they
// all are.
func (ds *Drivers) NotReady() string {
	for _, st := range ds.Status() {
		switch {
		case st.Slices == SlicesUnreachable:
			return fmt.Sprintf("dra driver %s: the API server cannot be reached: %s", st.Driver, st.SlicesError)
		case st.Slices == SlicesRefused:
			return fmt.Sprintf("dra driver %s: the API server refused its ResourceSlices: %s", st.Driver, st.SlicesError)
		case st.Slices != SlicesPublished:
			return fmt.Sprintf("dra driver %s: ResourceSlices %s", st.Driver, st.Slices)
		}
	}
	return ""
}
