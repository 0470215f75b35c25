package devicesource

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/wasmlet/wasmlet/abi"
	"github.com/wasmlet/wasmlet/host/devicemanager"
	"github.com/wasmlet/wasmlet/host/internal/defaults"
	"github.com/wasmlet/wasmlet/host/module"
)

// Providers is the part of the device manager a Controller drives
// (*devicemanager.Manager implements it).
type Providers interface {
	SetProvider(resource string, p devicemanager.Provider)
	RemoveProvider(resource, providerName string)
}

// DefaultRestartDelay is how long a source whose Watch ended waits before it
// is started again.
const DefaultRestartDelay = time.Minute

// ControllerConfig wires a Controller.
type ControllerConfig struct {
	// Options gives each source's options, by module name (nil: defaults).
	// It is asked when a source starts and when its module is replaced: if
	// the answer changed, a new source takes over.
	Options func(moduleName string) Options
	// RestartDelay is how long after a source's Watch ended it is started again,
	// if its module is still loaded and not quarantined.
	RestartDelay time.Duration
	Logger       hclog.Logger
}

// Controller keeps the device manager's providers in step with the
// device-source modules of a registry. See the package documentation.
type Controller struct {
	reg  *module.Registry
	dm   Providers
	cfg  ControllerConfig
	log  hclog.Logger
	wake chan struct{} // capacity 1

	mu      sync.Mutex
	dirty   map[string]bool    // module names to reconcile
	served  map[string]*served // by module name
	waiting map[string]string  // module name → the module serving its resource
	running bool
	timers  map[string]*time.Timer // restarts pending, by module name
}

// served is a module the controller has made a provider.
type served struct {
	src     *Source
	mod     *module.Module // the module last seen serving
	ended   error          // why its Watch ended, if it did
	endedAt time.Time
}

// NewController returns a controller that serves the device sources of reg
// as providers of dm. Nothing happens until Run.
func NewController(reg *module.Registry, dm Providers, cfg ControllerConfig) *Controller {
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if cfg.Options == nil {
		cfg.Options = func(string) Options { return Options{} }
	}
	defaults.Positive(&cfg.RestartDelay, DefaultRestartDelay)
	return &Controller{reg: reg, dm: dm, cfg: cfg, log: cfg.Logger, wake: make(chan struct{}, 1),
		dirty: map[string]bool{}, served: map[string]*served{}, waiting: map[string]string{}, timers: map[string]*time.Timer{}}
}

// Run serves every device source already loaded and follows the registry
// until ctx is done. Call it once. When it returns, the sources it started
// keep running in the device manager; each ends by itself if its module goes.
func (c *Controller) Run(ctx context.Context) error {
	c.mu.Lock()
	if c.running {
		c.mu.Unlock()
		return errors.New("device source controller is already running")
	}
	c.running = true
	c.mu.Unlock()
	c.reg.Subscribe(c.notify)
	for _, m := range c.reg.Sources() {
		c.mark(m.Name())
	}
	defer func() {
		c.mu.Lock()
		c.running = false
		for name, t := range c.timers {
			t.Stop()
			delete(c.timers, name)
		}
		c.mu.Unlock()
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-c.wake:
		}
		c.mu.Lock()
		names := make([]string, 0, len(c.dirty))
		for name := range c.dirty {
			names = append(names, name)
		}
		clear(c.dirty)
		c.mu.Unlock()
		sort.Strings(names)
		for _, name := range names {
			c.reconcile(name)
		}
	}
}

// notify is the registry's subscriber: it must not block.
func (c *Controller) notify(ev module.Event) {
	if ev.Kind == module.Refused {
		return // the module running, if any, carries on
	}
	c.mark(ev.Name)
}

// mark asks Run to reconcile module name.
func (c *Controller) mark(name string) {
	c.mu.Lock()
	if !c.running {
		c.mu.Unlock()
		return
	}
	c.dirty[name] = true
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// Sources returns the sources the controller serves, by module name.
func (c *Controller) Sources() []*Source {
	c.mu.Lock()
	out := make([]*Source, 0, len(c.served))
	for _, s := range c.served {
		out = append(out, s.src)
	}
	c.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// Conflicts returns the device-source modules that are loaded but not
// served because another module serves the resource they declare: module
// name → the module serving it. Each takes over when that one goes.
func (c *Controller) Conflicts() map[string]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.waiting)
}

// Owner is the device-source module a resource belongs to: the one serving
// it, or else a loaded one declaring it (waiting, quarantined, or not
// started yet); "" when no loaded module declares it. A device plugin is
// not let serve such a resource (devicemanager.Server.SetOwner).
func (c *Controller) Owner(resource string) string {
	c.mu.Lock()
	for name, s := range c.served {
		if s.src.resource == resource {
			c.mu.Unlock()
			return name
		}
	}
	c.mu.Unlock()
	for _, m := range c.reg.Sources() {
		if m.Description().Resource == resource {
			return m.Name()
		}
	}
	return ""
}

// Source returns the source serving module name, or nil.
func (c *Controller) Source(moduleName string) *Source {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s := c.served[moduleName]; s != nil {
		return s.src
	}
	return nil
}

// reconcile brings module name's provider in line with the registry. Only Run
// calls it.
func (c *Controller) reconcile(name string) {
	m := c.reg.Get(name)
	c.mu.Lock()
	cur := c.served[name]
	var (
		ended   error
		endedAt time.Time
	)
	if cur != nil {
		ended, endedAt = cur.ended, cur.endedAt
	}
	c.mu.Unlock()
	if m == nil || m.Description().Kind != abi.KindDeviceSource {
		c.mu.Lock()
		delete(c.waiting, name)
		c.mu.Unlock()
		if cur != nil {
			c.drop(name, cur, fmt.Errorf("module %q was unloaded", name))
		}
		return
	}
	d := m.Description()
	if cur == nil {
		c.start(name, m)
		return
	}
	switch {
	case d.Resource != cur.src.resource:
		c.log.Info("replacement module serves another resource; moving the source", "module", name,
			"from", cur.src.resource, "to", d.Resource)
		c.drop(name, cur, fmt.Errorf("module %q now serves %s instead", name, d.Resource))
		c.start(name, m)
	case ended != nil:
		if m != cur.mod {
			c.log.Info("module replaced; starting its device source again", "module", name, "resource", d.Resource)
			c.start(name, m)
			return
		}
		if st := m.Status(); st.Quarantined {
			c.log.Warn("device source stays down until its module is replaced or reloaded", "module", name,
				"resource", d.Resource, "quarantine", st.QuarantineReason)
			return
		}
		if wait := c.cfg.RestartDelay - time.Since(endedAt); wait > 0 {
			c.after(name, wait)
			return
		}
		c.log.Info("starting a device source that stopped", "module", name, "resource", d.Resource, "ended", ended)
		c.start(name, m)
	case m != cur.mod && providerOptions(m) != cur.src.popts:
		c.log.Info("replacement module changes its provider options; a new source takes over", "module", name,
			"resource", d.Resource)
		c.start(name, m)
	case m != cur.mod && !c.options(name).same(cur.src.opts):
		c.log.Info("source options changed; a new source takes over", "module", name, "resource", d.Resource)
		c.start(name, m)
	case m != cur.mod:
		c.mu.Lock()
		cur.mod = m
		c.mu.Unlock()
		c.log.Info("module replaced; rediscovering", "module", name, "resource", d.Resource)
		cur.src.Rediscover()
	}
}

// start makes a new source for module m the provider of its resource, unless
// another module already serves that resource.
func (c *Controller) start(name string, m *module.Module) {
	resource := m.Description().Resource
	c.mu.Lock()
	for other, s := range c.served {
		if other != name && s.src.resource == resource {
			logged := c.waiting[name] == other
			c.waiting[name] = other
			c.mu.Unlock()
			if !logged {
				c.log.Error("device source module declares a resource another module already serves; it waits until that one goes",
					"module", name, "resource", resource, "served_by", other)
			}
			return
		}
	}
	delete(c.waiting, name)
	c.mu.Unlock()
	src, err := NewSource(c.reg, name, c.options(name))
	if err != nil { // unloaded meanwhile: its event is on the way
		c.log.Debug("device source not started", "module", name, "error", err)
		return
	}
	s := &served{src: src, mod: m}
	src.onEnd = func(err error) { c.ended(name, s, err) }
	c.mu.Lock()
	c.served[name] = s
	if t := c.timers[name]; t != nil {
		t.Stop()
		delete(c.timers, name)
	}
	c.mu.Unlock()
	c.dm.SetProvider(resource, src)
}

func (c *Controller) options(name string) Options {
	o := c.cfg.Options(name)
	if o.Logger == nil {
		o.Logger = c.log
	}
	return o
}

// drop stops serving module name: its resource loses its provider. A module
// waiting for that resource gets its turn.
func (c *Controller) drop(name string, s *served, cause error) {
	c.mu.Lock()
	if c.served[name] == s {
		delete(c.served, name)
	}
	if t := c.timers[name]; t != nil {
		t.Stop()
		delete(c.timers, name)
	}
	c.mu.Unlock()
	c.log.Info("device source removed", "module", name, "resource", s.src.resource, "cause", cause)
	c.dm.RemoveProvider(s.src.resource, s.src.Name())
	s.src.stop(cause)
	for _, m := range c.reg.Sources() {
		if m.Name() != name && m.Description().Resource == s.src.resource {
			c.mark(m.Name())
		}
	}
}

// ended is told that a source's Watch ended.
func (c *Controller) ended(name string, s *served, err error) {
	c.mu.Lock()
	if c.served[name] != s {
		c.mu.Unlock()
		return // no longer ours
	}
	s.ended, s.endedAt = err, time.Now()
	c.mu.Unlock()
	c.mark(name)
}

// after reconciles module name again in d.
func (c *Controller) after(name string, d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.timers[name] != nil || !c.running {
		return
	}
	var t *time.Timer
	t = time.AfterFunc(d, func() {
		c.mu.Lock() // after the assignment below: it holds c.mu
		if c.timers[name] == t {
			delete(c.timers, name)
		}
		c.mu.Unlock()
		c.mark(name)
	})
	c.timers[name] = t
}
