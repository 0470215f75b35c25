package module

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"k8s.io/utils/clock"

	"github.com/wasmlet/wasmlet/abi"
)

// Registry is the set of loaded modules, by name (the file name without
// ".wasm"). It loads, replaces and unloads modules as their files come and
// go, finds the module that handles a plugin type or serves a resource, and
// tells subscribers what changed. It is safe for concurrent use.
type Registry struct {
	options  func(name string) Options
	handlers func() map[string]string
	log      hclog.Logger
	clock    clock.Clock
	settle   time.Duration

	mu      sync.RWMutex
	entries map[string]*entry
	subs    []func(Event)
	closed  bool
	closing chan struct{} // closed by Close: retiring modules close at once
	retired sync.WaitGroup
}

type entry struct {
	mod    *Module   // nil when the last load failed and nothing was running
	path   string    // the file last loaded or tried
	err    error     // the last load's error, if it failed
	failed time.Time // when it failed
	// The files mod and err came from, to tell a file seen again from a
	// new one.
	modFile, errFile fileID

	loads        int       // loads in progress
	loadingPath  string    // the file the last of them loads
	loadingSince time.Time // when it started
	settling     bool      // it waits for the file to stop changing
}

// fileID tells two files at a path apart: a file rewritten in place
// changes its size or modification time, a file replaced its inode.
type fileID struct {
	dev, ino    uint64
	size, mtime int64
}

func fileIDOf(fi fs.FileInfo) fileID {
	id := fileID{size: fi.Size(), mtime: fi.ModTime().UnixNano()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		id.dev, id.ino = uint64(st.Dev), st.Ino
	}
	return id
}

// EventKind says what happened to a module.
type EventKind string

const (
	Loaded   EventKind = "loaded"   // a new module is available
	Replaced EventKind = "replaced" // a new file took over from a running module
	Unloaded EventKind = "unloaded" // the module is gone
	Refused  EventKind = "refused"  // a file was refused; any previous module keeps running
)

// Event tells subscribers about a change. Module is the module now serving
// (nil after Unloaded, the still-running previous module or nil after
// Refused); Previous is the module it replaced or removed.
type Event struct {
	Kind     EventKind
	Name     string
	Module   *Module
	Previous *Module
	Err      error
}

// DefaultSettle is how long a module file must go unchanged before a
// failure to load it counts as a refusal (RegistryOption WithSettle).
const DefaultSettle = time.Second

// RegistryOption configures a Registry.
type RegistryOption func(*Registry)

// WithSettle sets how long a module file must go unchanged before a failure
// to load it counts as a refusal: a file that changed more recently is
// probably still being written (copied in place rather than renamed into
// place), so the registry waits until it has not changed for that long and
// loads it again. 0 refuses at once.
func WithSettle(d time.Duration) RegistryOption { return func(r *Registry) { r.settle = d } }

// WithClock sets the clock the settle time is measured with.
func WithClock(c clock.Clock) RegistryOption { return func(r *Registry) { r.clock = c } }

// NewRegistry returns an empty registry. options gives each module's sandbox
// by name; handlers, when not nil, returns the configured plugin type →
// module name mapping, which takes precedence over what modules declare.
func NewRegistry(options func(name string) Options, handlers func() map[string]string, log hclog.Logger, opts ...RegistryOption) *Registry {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	r := &Registry{options: options, handlers: handlers, log: log, clock: clock.RealClock{}, settle: DefaultSettle,
		entries: map[string]*entry{}, closing: make(chan struct{})}
	for _, o := range opts {
		o(r)
	}
	return r
}

// Subscribe registers fn to be told about every change, in order. fn runs on
// the goroutine that made the change and must not block or call back into
// the registry's Load/Unload.
func (r *Registry) Subscribe(fn func(Event)) {
	r.mu.Lock()
	r.subs = append(r.subs, fn)
	r.mu.Unlock()
}

func (r *Registry) notify(ev Event) {
	r.mu.RLock()
	subs := make([]func(Event), len(r.subs))
	copy(subs, r.subs)
	r.mu.RUnlock()
	for _, fn := range subs {
		fn(ev)
	}
}

// Load loads the module file at path, or replaces the module of the same
// name. The new file is checked completely before it takes over; if it is
// refused, a module already running under that name keeps running. Calls in
// flight on a replaced module finish on it before it is closed.
//
// While it loads, List reports the name as loading. A file that fails to
// load but changed less than the settle time ago (WithSettle) is not
// refused yet: it is probably still being written, so Load waits until it
// has gone unchanged that long and tries again; only a file that fails
// while unchanged is refused. The file already running, or already
// refused, unchanged, is not loaded again: Load returns what it gave the
// first time (Reload loads it again).
func (r *Registry) Load(ctx context.Context, path string) (*Module, error) {
	return r.load(ctx, path, false)
}

func (r *Registry) load(ctx context.Context, path string, again bool) (*Module, error) {
	name := NameFromPath(path)
	e, err := r.begin(name, path)
	if err != nil {
		return nil, err
	}
	defer r.end(name, e)
	opts := Options{}
	if r.options != nil {
		opts = r.options(name)
	}
	opts.Name = name

	var (
		m    *Module
		file fileID
	)
	for {
		fi, statErr := os.Stat(path)
		if statErr == nil {
			file = fileIDOf(fi)
			if !again {
				r.mu.RLock()
				mod, modFile, prevErr, errFile := e.mod, e.modFile, e.err, e.errFile
				r.mu.RUnlock()
				switch {
				case mod != nil && prevErr == nil && modFile == file:
					return mod, nil // running already
				case prevErr != nil && errFile == file:
					return nil, prevErr // refused already
				}
			}
		}
		m, err = Load(ctx, path, opts)
		if err == nil || statErr != nil || ctx.Err() != nil {
			break
		}
		// Refuse only a file that stayed as it was, and was as it is
		// for the settle time: a file still being written fails too.
		if changed, werr := r.waitSettled(ctx, e, path, file); werr != nil || !changed {
			break
		}
		r.log.Debug("module file changed while it was loaded; loading it again once it settles", "module", name, "path", path)
	}

	if err != nil && ctx.Err() != nil {
		return nil, err // cut short: the file was not judged
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		if m != nil {
			m.Close(ctx)
		}
		return nil, errors.New("module registry is closed")
	}
	if r.entries[name] != e { // unloaded meanwhile: the load stands on its own
		e = &entry{}
		r.entries[name] = e
	}
	prev := e.mod
	e.path = path
	if err != nil {
		e.err, e.errFile, e.failed = err, file, r.clock.Now()
		r.mu.Unlock()
		if prev != nil {
			r.log.Error("module file refused; the previous version keeps running", "module", name, "path", path, "error", err)
		} else {
			r.log.Error("module file refused", "module", name, "path", path, "error", err)
		}
		r.notify(Event{Kind: Refused, Name: name, Module: prev, Err: err})
		return nil, err
	}
	e.mod, e.modFile, e.err = m, file, nil
	r.mu.Unlock()

	kind := Loaded
	if prev != nil {
		kind = Replaced
		r.retire(prev)
	}
	d := m.Description()
	r.log.Info("module "+string(kind), "module", name, "kind", d.Kind.String(), "serves", m.Serves(),
		"version", d.Version, "sha256", m.Digest()[:12])
	r.notify(Event{Kind: kind, Name: name, Module: m, Previous: prev})
	return m, nil
}

// begin marks name as loading path, making an entry for it if it has none.
func (r *Registry) begin(name, path string) (*entry, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, errors.New("module registry is closed")
	}
	e := r.entries[name]
	if e == nil {
		e = &entry{path: path}
		r.entries[name] = e
	}
	e.loads++
	e.loadingPath, e.loadingSince = path, r.clock.Now()
	return e, nil
}

// end undoes begin. An entry that was never loaded nor refused (its load
// was cancelled) goes.
func (r *Registry) end(name string, e *entry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e.loads--
	if e.loads > 0 {
		return
	}
	e.loadingPath, e.loadingSince, e.settling = "", time.Time{}, false
	if e.mod == nil && e.err == nil && r.entries[name] == e {
		delete(r.entries, name)
	}
}

// waitSettled is told that the file at path failed to load as it was when
// tried (tried). It reports whether the file has changed since, after
// waiting, if it changed less than the settle time ago, until it has gone
// that long unchanged. An error means the wait was cut short.
func (r *Registry) waitSettled(ctx context.Context, e *entry, path string, tried fileID) (changed bool, err error) {
	last := tried
	for waited := false; ; waited = true {
		fi, err := os.Stat(path)
		if err != nil {
			return true, nil // gone or replaced by nothing: try again, to say why
		}
		id := fileIDOf(fi)
		if id != last {
			changed = true
		} else if waited {
			// Unchanged for as long as it needed, or for a whole settle
			// time when its time is in the future.
			return changed, nil
		}
		quiet := r.clock.Since(fi.ModTime())
		if quiet >= r.settle {
			return changed, nil
		}
		wait := min(r.settle-quiet, r.settle)
		r.mu.Lock()
		e.settling = true
		r.mu.Unlock()
		select {
		case <-r.clock.After(wait):
		case <-ctx.Done():
			return changed, ctx.Err()
		case <-r.closing:
			return changed, errors.New("module registry is closed")
		}
		r.mu.Lock()
		e.settling = false
		r.mu.Unlock()
		last = id
	}
}

// RetireDelay is how long a replaced or removed module keeps accepting
// calls: a caller that looked the module up just before the swap still gets
// its answer, from the old version. Then the module closes, letting calls in
// flight finish (they get twice their deadline).
var RetireDelay = 500 * time.Millisecond

func (r *Registry) retire(m *Module) {
	r.retired.Add(1)
	go func() {
		defer r.retired.Done()
		select {
		case <-time.After(RetireDelay):
		case <-r.closing:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*m.Options().CallTimeout)
		defer cancel()
		m.Close(ctx)
	}()
}

// Unload removes the module called name, if any.
func (r *Registry) Unload(name string) {
	r.mu.Lock()
	e := r.entries[name]
	delete(r.entries, name)
	r.mu.Unlock()
	if e == nil {
		return
	}
	if e.mod != nil {
		r.retire(e.mod)
		r.log.Info("module unloaded", "module", name)
	}
	r.notify(Event{Kind: Unloaded, Name: name, Previous: e.mod})
}

// Reload loads the module called name again from its file: the way out of
// quarantine when the file has not changed.
func (r *Registry) Reload(ctx context.Context, name string) (*Module, error) {
	r.mu.RLock()
	e := r.entries[name]
	r.mu.RUnlock()
	if e == nil {
		return nil, fmt.Errorf("no module %q is loaded", name)
	}
	return r.load(ctx, e.path, true)
}

// Get returns the running module called name, or nil.
func (r *Registry) Get(name string) *Module {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if e := r.entries[name]; e != nil {
		return e.mod
	}
	return nil
}

// Handler returns the module that handles plugins of type pluginType: the
// one the configuration names, or else the first module, by name, that
// declares the type. It returns nil when there is none (yet).
func (r *Registry) Handler(pluginType string) *Module {
	var configured string
	if r.handlers != nil {
		configured = r.handlers()[pluginType]
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	if configured != "" {
		if e := r.entries[configured]; e != nil && e.mod != nil && e.mod.desc.Kind == abi.KindHandler {
			return e.mod
		}
		return nil
	}
	var found *Module
	for _, e := range r.entries {
		m := e.mod
		if m == nil || m.desc.Kind != abi.KindHandler || m.desc.PluginType != pluginType {
			continue
		}
		if found == nil || m.Name() < found.Name() {
			found = m
		}
	}
	return found
}

// Sources returns the running device-source modules, by name.
func (r *Registry) Sources() []*Module {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var out []*Module
	for _, e := range r.entries {
		if e.mod != nil && e.mod.desc.Kind == abi.KindDeviceSource {
			out = append(out, e.mod)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name() < out[j].Name() })
	return out
}

// Info is what the registry knows of one module name.
type Info struct {
	Name   string
	Path   string
	Module *Module // nil if no version of it is running
	Err    error   // why the last file was refused, if it was
	Failed time.Time
	// Loading is the file being loaded under this name, if one is, since
	// LoadingSince; Settling says that the load waits for it to stop
	// changing.
	Loading      string
	LoadingSince time.Time
	Settling     bool
}

// List returns every module name the registry knows: running, loading or
// refused.
func (r *Registry) List() []Info {
	r.mu.RLock()
	out := make([]Info, 0, len(r.entries))
	for name, e := range r.entries {
		out = append(out, Info{Name: name, Path: e.path, Module: e.mod, Err: e.err, Failed: e.failed,
			Loading: e.loadingPath, LoadingSince: e.loadingSince, Settling: e.settling})
	}
	r.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Close unloads every module, letting calls in flight finish until ctx is
// done.
func (r *Registry) Close(ctx context.Context) {
	r.mu.Lock()
	if !r.closed {
		close(r.closing)
	}
	r.closed = true
	entries := r.entries
	r.entries = map[string]*entry{}
	r.mu.Unlock()
	var wg sync.WaitGroup
	for _, e := range entries {
		if e.mod != nil {
			wg.Add(1)
			go func(m *Module) { defer wg.Done(); m.Close(ctx) }(e.mod)
		}
	}
	wg.Wait()
	r.retired.Wait()
}
