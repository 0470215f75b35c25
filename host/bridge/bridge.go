package bridge

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/hashicorp/go-hclog"
	"k8s.io/utils/clock"

	"github.com/wasmlet/wasmlet/host/devicemanager"
	"github.com/wasmlet/wasmlet/host/internal/defaults"
	"github.com/wasmlet/wasmlet/host/watcher"
)

// Registration modes (plugins.toml [bridge] registration).
const (
	// KubeletSocket: Register on <KubeletDir>/kubelet.sock.
	KubeletSocket = "kubelet-socket"
	// PluginRegistry: a registration socket in PluginRegistryDir, found by
	// the kubelet's plugin watcher.
	PluginRegistry = "plugin-registry"
)

// KubeletSocketName is the kubelet's registration socket in its device
// plugin directory.
const KubeletSocketName = "kubelet.sock"

// Defaults of Config.
const (
	DefaultRegisterTimeout = 10 * time.Second
	DefaultBackoffInitial  = 500 * time.Millisecond
	DefaultBackoffMax      = 2 * time.Minute
	DefaultResyncPeriod    = 30 * time.Second
	DefaultGracePeriod     = 5 * time.Minute
)

// Config wires a Bridge.
type Config struct {
	// KubeletDir is the kubelet's device plugin directory: kubelet.sock is
	// there, and the bridge's device plugin sockets go there.
	KubeletDir string
	// Registration is KubeletSocket (default) or PluginRegistry.
	Registration string
	// PluginRegistryDir is the kubelet's plugin registry, for
	// PluginRegistry.
	PluginRegistryDir string
	// RegisterTimeout bounds each Register call on kubelet.sock.
	RegisterTimeout time.Duration
	// BackoffInitial and BackoffMax shape the retries after a refused or
	// failed registration: BackoffInitial, then twice as long each time, up
	// to BackoffMax.
	BackoffInitial, BackoffMax time.Duration
	// ResyncPeriod is how often the sockets are checked without an event:
	// a safety net, not how changes are noticed.
	ResyncPeriod time.Duration
	// GracePeriod is how long a source that went away stays served to the
	// kubelet, its devices unhealthy, before its socket goes: the grace a
	// lost device plugin's devices get ([host] grace_period).
	GracePeriod time.Duration
	// Clock times the grace period; the real clock if nil.
	Clock  clock.WithDelayedExecution
	Logger hclog.Logger
}

// Bridge serves device sources to an external kubelet. See the package
// documentation. It is safe for concurrent use.
type Bridge struct {
	cfg         Config
	log         hclog.Logger
	kubeletSock string

	mu      sync.Mutex
	plugins map[string]*plugin // by resource
	kubelet kubeletState
	ctx     context.Context // Run's, once it started
	stopped bool
	wanted  chan struct{} // closed by the first SetProvider
	want    sync.Once
	wg      sync.WaitGroup // plugin goroutines
}

// kubeletState is what the bridge knows of kubelet.sock.
type kubeletState struct {
	present bool
	// gen counts the kubelet.sock files seen: a new one is a new kubelet
	// (or the same one restarted), to register with again.
	gen uint64
	id  watcher.Identity
	// since is when the current kubelet.sock was noticed.
	since time.Time
}

// New checks cfg and returns a bridge; Run starts it.
func New(cfg Config) (*Bridge, error) {
	if cfg.Registration == "" {
		cfg.Registration = KubeletSocket
	}
	if cfg.Registration != KubeletSocket && cfg.Registration != PluginRegistry {
		return nil, fmt.Errorf("bridge: registration %q: expected %q or %q", cfg.Registration, KubeletSocket, PluginRegistry)
	}
	if !filepath.IsAbs(cfg.KubeletDir) {
		return nil, fmt.Errorf("bridge: kubelet directory %q: must be an absolute path", cfg.KubeletDir)
	}
	if cfg.Registration == PluginRegistry && !filepath.IsAbs(cfg.PluginRegistryDir) {
		return nil, fmt.Errorf("bridge: plugin registry directory %q: must be an absolute path", cfg.PluginRegistryDir)
	}
	defaults.Positive(&cfg.RegisterTimeout, DefaultRegisterTimeout)
	defaults.Positive(&cfg.BackoffInitial, DefaultBackoffInitial)
	if cfg.BackoffMax < cfg.BackoffInitial {
		cfg.BackoffMax = max(DefaultBackoffMax, cfg.BackoffInitial)
	}
	defaults.Positive(&cfg.ResyncPeriod, DefaultResyncPeriod)
	defaults.Positive(&cfg.GracePeriod, DefaultGracePeriod)
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	cfg.KubeletDir = filepath.Clean(cfg.KubeletDir)
	if cfg.PluginRegistryDir != "" {
		cfg.PluginRegistryDir = filepath.Clean(cfg.PluginRegistryDir)
	}
	return &Bridge{cfg: cfg, log: cfg.Logger, kubeletSock: filepath.Join(cfg.KubeletDir, KubeletSocketName),
		plugins: map[string]*plugin{}, wanted: make(chan struct{})}, nil
}

// KubeletSocket is the path of the kubelet's registration socket.
func (b *Bridge) KubeletSocket() string { return b.kubeletSock }

// SetProvider serves p to the kubelet as the device plugin of resource. A
// source of the same module replacing the previous one keeps the socket and
// the open streams (and registers again only if its options differ); a
// source of another module gets a socket of its own, and the previous one's
// goes.
func (b *Bridge) SetProvider(resource string, p devicemanager.Provider) {
	name := socketName(p.Name())
	b.want.Do(func() { close(b.wanted) })
	b.mu.Lock()
	if b.stopped {
		b.mu.Unlock()
		p.Close()
		return
	}
	pl := b.plugins[resource]
	if pl != nil && pl.name != name {
		b.log.Info("another source takes over the resource; it gets its own socket", "resource", resource,
			"old", pl.providerName(), "new", p.Name())
		pl.setGraceTimer(nil)
		pl.stop(false)
		pl = nil
	}
	if pl == nil {
		pl = newPlugin(b, resource, name)
		b.plugins[resource] = pl
		if b.ctx != nil {
			b.startLocked(pl)
		}
	}
	b.mu.Unlock()
	pl.setProvider(p)
}

// RemoveProvider stops serving resource if provider providerName still
// serves it: the source went away. As the kubelet keeps a lost device
// plugin's devices, the socket stays for the grace period, the devices
// reported unhealthy, and a source of the same module that comes back
// within it takes over the socket and the streams; at its end the kubelet
// is sent an empty device set, the streams end and the sockets go.
func (b *Bridge) RemoveProvider(resource, providerName string) {
	b.mu.Lock()
	pl := b.plugins[resource]
	if pl == nil || pl.providerName() != providerName {
		b.mu.Unlock()
		return
	}
	if b.ctx == nil { // never served: nothing to keep
		delete(b.plugins, resource)
		b.mu.Unlock()
		pl.stop(true)
		pl.mu.Lock()
		prov := pl.prov
		pl.prov = nil
		pl.mu.Unlock()
		prov.Close() // never watched: nothing else will close it
		return
	}
	b.mu.Unlock()
	// The timer exists before the deadline shows (in the status), so that
	// whoever sees the deadline and moves a clock past it sees it expire.
	// Its function must not use the clock: a fake one runs it with its own
	// lock held. A timer that fires before orphan is done finds the plugin
	// not orphaned and does nothing, so orphan says when it was late.
	now := b.cfg.Clock.Now()
	timer := b.cfg.Clock.AfterFunc(b.cfg.GracePeriod, func() { b.expire(resource, pl) })
	deadline := pl.orphan(b.cfg.GracePeriod, now, timer)
	b.log.Info("device source went away; its devices stay with the kubelet, unhealthy, for the grace period",
		"resource", resource, "provider", providerName, "until", deadline)
	if !b.cfg.Clock.Now().Before(deadline) {
		b.expire(resource, pl)
	}
}

// expire removes pl, which served resource, if it is still there with no
// source: the grace period is over.
func (b *Bridge) expire(resource string, pl *plugin) {
	b.mu.Lock()
	if b.plugins[resource] != pl || !pl.orphaned() {
		b.mu.Unlock()
		return
	}
	delete(b.plugins, resource)
	b.mu.Unlock()
	b.log.Info("grace period over: device source removed from the kubelet", "resource", resource)
	pl.stop(true)
}

func (b *Bridge) startLocked(pl *plugin) {
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		pl.run(b.ctx)
	}()
}

// kubeletNow is a snapshot of the kubelet's state.
func (b *Bridge) kubeletNow() kubeletState {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.kubelet
}

// Run watches the kubelet's directories and serves every source until ctx
// is done; then it stops serving and removes its sockets. Call it once.
// Until a source is given to the bridge, Run waits without touching the
// kubelet's directories: a host that bridges nothing leaves them alone.
func (b *Bridge) Run(ctx context.Context) error {
	select {
	case <-b.wanted:
	case <-ctx.Done():
		return nil
	}
	dirs := []string{b.cfg.KubeletDir}
	if b.cfg.Registration == PluginRegistry {
		dirs = append(dirs, b.cfg.PluginRegistryDir)
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("bridge: watch the kubelet's directories: %w", err)
	}
	defer w.Close()
	unwatched := map[string]bool{}
	watchAll := func() {
		for _, d := range dirs {
			if err := watchDir(w, d); err != nil {
				if !unwatched[d] {
					b.log.Error("cannot watch a kubelet directory; retrying at every resync", "dir", d, "error", err,
						"resync", b.cfg.ResyncPeriod)
				}
				unwatched[d] = true
				continue
			}
			if unwatched[d] {
				b.log.Info("watching the kubelet directory", "dir", d)
				delete(unwatched, d)
			}
		}
	}
	watchAll()
	b.checkKubelet() // after the watch: no kubelet.sock can slip between

	b.mu.Lock()
	if b.ctx != nil {
		b.mu.Unlock()
		return errors.New("bridge: already running")
	}
	b.ctx = ctx
	for _, pl := range b.plugins {
		b.startLocked(pl)
	}
	b.mu.Unlock()
	b.log.Info("serving device sources to the kubelet", "kubelet_dir", b.cfg.KubeletDir, "registration", b.cfg.Registration,
		"kubelet", b.kubeletNow().present)

	watcher.Follow(ctx, w, b.cfg.ResyncPeriod, func(ev fsnotify.Event) { b.event(w, ev) },
		func(err error) {
			// An overflow loses events: look at everything again.
			b.log.Warn("watching the kubelet's directories; checking every socket", "error", err)
			b.checkKubelet()
			b.kickAll()
		},
		func() {
			for _, d := range dirs {
				if _, err := os.Stat(d); err != nil {
					unwatched[d] = true // removed without an event we saw
				}
			}
			if len(unwatched) > 0 {
				watchAll()
			}
			b.checkKubelet()
			b.kickAll()
		})

	b.mu.Lock()
	b.stopped = true
	all := make([]*plugin, 0, len(b.plugins))
	for _, pl := range b.plugins {
		all = append(all, pl)
	}
	b.mu.Unlock()
	for _, pl := range all {
		pl.setGraceTimer(nil)
		pl.stop(false)
	}
	b.wg.Wait()
	b.log.Info("stopped serving device sources to the kubelet")
	return nil
}

// watchDir creates dir if needed and watches it.
func watchDir(w *fsnotify.Watcher, dir string) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("bridge: %w", err)
	}
	if err := w.Add(dir); err != nil {
		return fmt.Errorf("bridge: watch %s: %w", dir, err)
	}
	return nil
}

// event handles one change in a watched directory.
func (b *Bridge) event(w *fsnotify.Watcher, ev fsnotify.Event) {
	gone := ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename)
	switch {
	case ev.Name == b.kubeletSock && ev.Has(fsnotify.Create):
		b.newKubelet()
	case ev.Name == b.kubeletSock && gone:
		// If a new kubelet.sock is already there, its Create event follows.
		if _, err := os.Lstat(b.kubeletSock); err != nil {
			b.checkKubelet()
		}
	case gone && (ev.Name == b.cfg.KubeletDir || ev.Name == b.cfg.PluginRegistryDir):
		// The directory itself went: make it again, and everything in it.
		b.log.Warn("a kubelet directory was removed; creating it again", "dir", ev.Name)
		if err := watchDir(w, ev.Name); err != nil {
			// The resync finds it gone and tries again.
			b.log.Error("cannot watch the kubelet directory again; retrying at every resync", "dir", ev.Name, "error", err)
		}
		b.checkKubelet()
		b.kickAll()
	case gone:
		b.mu.Lock()
		for _, pl := range b.plugins {
			if ev.Name == pl.path || ev.Name == pl.regPath {
				pl.kick()
			}
		}
		b.mu.Unlock()
	}
}

// newKubelet is told that kubelet.sock was created: a new kubelet (or the
// same one restarted), with which every source registers again at once.
func (b *Bridge) newKubelet() { b.updateKubelet(true) }

// checkKubelet looks at kubelet.sock without an event saying it was
// created (at start, on a resync, after lost events, when it was removed):
// another file than the one seen last is a new kubelet.
func (b *Bridge) checkKubelet() { b.updateKubelet(false) }

func (b *Bridge) updateKubelet(created bool) {
	fi, err := os.Lstat(b.kubeletSock)
	b.mu.Lock()
	prev := b.kubelet
	switch {
	case err != nil:
		b.kubelet.present = false
	case created || !prev.present || watcher.IdentityOf(fi) != prev.id:
		b.kubelet = kubeletState{present: true, gen: prev.gen + 1, id: watcher.IdentityOf(fi), since: time.Now()}
	}
	cur := b.kubelet
	plugins := make([]*plugin, 0, len(b.plugins))
	for _, pl := range b.plugins {
		plugins = append(plugins, pl)
	}
	b.mu.Unlock()
	switch {
	case cur.gen != prev.gen:
		b.log.Info("kubelet.sock appeared: registering every source", "socket", b.kubeletSock, "sources", len(plugins))
		for _, pl := range plugins {
			pl.newKubelet()
		}
	case prev.present && !cur.present:
		b.log.Warn("kubelet.sock is gone: waiting for the kubelet to come back", "socket", b.kubeletSock)
		for _, pl := range plugins {
			pl.kick()
		}
	}
}

func (b *Bridge) kickAll() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, pl := range b.plugins {
		pl.kick()
	}
}

// Status returns a snapshot of every bridged source, by resource.
func (b *Bridge) Status() []Status {
	b.mu.Lock()
	plugins := make([]*plugin, 0, len(b.plugins))
	for _, pl := range b.plugins {
		plugins = append(plugins, pl)
	}
	kub := b.kubelet
	b.mu.Unlock()
	out := make([]Status, 0, len(plugins))
	for _, pl := range plugins {
		st := pl.status()
		st.KubeletPresent = kub.present
		if kub.present {
			st.KubeletSince = kub.since
		}
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Resource < out[j].Resource })
	return out
}

// socketName is the device plugin socket's file name for a provider:
// wasmlet-<module>.sock for "module:<module>".
func socketName(provider string) string {
	name := strings.TrimPrefix(provider, "module:")
	name = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-' {
			return r
		}
		return '_'
	}, name)
	return "wasmlet-" + name + ".sock"
}
