// Package watcher reports the files of interest in a directory tree as they
// appear, change and go away: plugin registration sockets in the registry
// directory, .wasm files in the module directory.
//
// It is the first step of the data flow: a socket created in the registry
// directory becomes a plugin the node desires (host/pluginmanager/cache),
// and a module file dropped into the module directory becomes a loaded
// module (host/module.Registry).
//
// A Watcher starts with a full scan, then follows fsnotify events. It
// follows subdirectories, ignores names starting with ".", and reports an
// entry again when its identity changes (a socket recreated at the same path,
// a module file rewritten), so consumers can treat that as a new entry. A
// rename out of the tree is a removal — the kubelet's watcher misses that
// case. If the kernel's event queue overflows, or on demand (Rescan), it
// rescans and reports the difference, so nothing missed stays missed.
package watcher

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/hashicorp/go-hclog"
)

// Identity tells two files at the same path apart.
type Identity struct {
	Dev, Ino    uint64
	Mtime, Size int64
}

// IdentityOf is the identity of the file fi describes.
func IdentityOf(fi fs.FileInfo) Identity {
	id := Identity{Mtime: fi.ModTime().UnixNano(), Size: fi.Size()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		id.Dev, id.Ino = uint64(st.Dev), st.Ino
	}
	return id
}

// Config says what to watch and whom to tell.
type Config struct {
	// Dir is the root of the watched tree. It is created (0750) if missing.
	Dir string
	// Match selects the entries to report, given their Lstat information.
	// Directories are never passed to it.
	Match func(path string, fi fs.FileInfo) bool
	// Settle, when positive, waits until an entry has not changed for this
	// long before reporting it, so that a file being copied in is reported
	// once, complete.
	Settle time.Duration
	// OnAdd is told about a new entry, or one whose identity changed. OnRemove
	// is told when a reported entry goes away. Both run on the watcher's
	// goroutine, one at a time, and must return quickly.
	OnAdd    func(path string, id Identity)
	OnRemove func(path string)
	Logger   hclog.Logger
}

// IsSocket matches unix sockets (not symbolic links to them).
func IsSocket(_ string, fi fs.FileInfo) bool { return fi.Mode()&fs.ModeSocket != 0 }

// HasSuffix matches regular files whose name ends in suffix.
func HasSuffix(suffix string) func(string, fs.FileInfo) bool {
	return func(path string, fi fs.FileInfo) bool {
		return fi.Mode().IsRegular() && strings.HasSuffix(path, suffix)
	}
}

// Watcher watches one directory tree.
type Watcher struct {
	cfg    Config
	log    hclog.Logger
	fsw    *fsnotify.Watcher
	rescan chan chan struct{}
	ready  chan struct{}

	// Owned by the Run goroutine.
	known   map[string]Identity
	dirs    map[string]bool
	pending map[string]time.Time // entries settling: last change seen
	initial bool                 // the first scan is under way
}

// New prepares a watcher on cfg.Dir; Run starts it.
func New(cfg Config) (*Watcher, error) {
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if cfg.Match == nil || cfg.OnAdd == nil || cfg.OnRemove == nil {
		return nil, errors.New("watcher: Match, OnAdd and OnRemove are required")
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, err
	}
	cfg.Dir = dir
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("watch %s: %w", dir, err)
	}
	fsw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", dir, err)
	}
	return &Watcher{cfg: cfg, log: cfg.Logger.With("dir", dir), fsw: fsw, rescan: make(chan chan struct{}), ready: make(chan struct{}),
		known: map[string]Identity{}, dirs: map[string]bool{}, pending: map[string]time.Time{}}, nil
}

// Run scans the tree, reports what is there, and follows changes until ctx is
// done.
func (w *Watcher) Run(ctx context.Context) error {
	defer w.fsw.Close()
	var settle *time.Timer
	var settleC <-chan time.Time
	armSettle := func() {
		if len(w.pending) == 0 || settleC != nil {
			return
		}
		settle = time.NewTimer(w.cfg.Settle)
		settleC = settle.C
	}
	// What is there at start is reported at once: it is not being written.
	w.initial = true
	w.scan()
	w.initial = false
	close(w.ready)
	for {
		select {
		case <-ctx.Done():
			if settle != nil {
				settle.Stop()
			}
			return nil
		case ev, ok := <-w.fsw.Events:
			if !ok {
				return errors.New("fsnotify closed its event channel")
			}
			w.handle(ev)
			armSettle()
		case err, ok := <-w.fsw.Errors:
			if !ok {
				return errors.New("fsnotify closed its error channel")
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				w.log.Warn("watch events overflowed; rescanning")
				w.scan()
				armSettle()
			} else {
				w.log.Error("watch error", "error", err)
			}
		case done := <-w.rescan:
			w.scan()
			armSettle()
			close(done)
		case <-settleC:
			settleC = nil
			w.flushSettled()
			armSettle()
		}
	}
}

// Ready is closed once the first scan's entries have all been reported (and
// their OnAdd calls returned).
func (w *Watcher) Ready() <-chan struct{} { return w.ready }

// Rescan makes the watcher compare the tree with what it reported, and report
// the difference. It returns once done (or when ctx is).
func (w *Watcher) Rescan(ctx context.Context) {
	done := make(chan struct{})
	select {
	case w.rescan <- done:
	case <-ctx.Done():
		return
	}
	select {
	case <-done:
	case <-ctx.Done():
	}
}

func hidden(name string) bool { return strings.HasPrefix(name, ".") }

// scan walks the whole tree: it adds watches on every directory, reports new
// or changed entries, and removals of entries no longer there.
func (w *Watcher) scan() {
	seen := map[string]bool{}
	w.walk(w.cfg.Dir, seen)
	for path := range w.known {
		if !seen[path] {
			w.remove(path)
		}
	}
}

func (w *Watcher) walk(dir string, seen map[string]bool) {
	w.watchDir(dir)
	entries, err := os.ReadDir(dir)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			w.log.Warn("cannot list directory", "path", dir, "error", err)
		}
		return
	}
	for _, e := range entries {
		if hidden(e.Name()) {
			continue
		}
		path := filepath.Join(dir, e.Name())
		fi, err := os.Lstat(path)
		if err != nil {
			continue
		}
		if fi.IsDir() {
			w.walk(path, seen)
			continue
		}
		if w.cfg.Match(path, fi) {
			seen[path] = true
			w.offer(path, fi)
		}
	}
}

func (w *Watcher) watchDir(dir string) {
	if w.dirs[dir] {
		return
	}
	if err := w.fsw.Add(dir); err != nil {
		w.log.Warn("cannot watch directory", "path", dir, "error", err)
		return
	}
	w.dirs[dir] = true
}

func (w *Watcher) handle(ev fsnotify.Event) {
	path := filepath.Clean(ev.Name)
	if rel, err := filepath.Rel(w.cfg.Dir, path); err != nil || strings.HasPrefix(rel, "..") {
		return
	}
	for _, part := range strings.Split(strings.TrimPrefix(path, w.cfg.Dir), string(filepath.Separator)) {
		if hidden(part) {
			return
		}
	}
	if ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) {
		w.removeTree(path)
		return
	}
	fi, err := os.Lstat(path)
	if err != nil {
		w.removeTree(path) // gone again already
		return
	}
	if fi.IsDir() {
		// Entries may have been created before the watch was in place.
		seen := map[string]bool{}
		w.walk(path, seen)
		return
	}
	if w.cfg.Match(path, fi) {
		w.offer(path, fi)
	} else if _, ok := w.known[path]; ok {
		w.remove(path) // replaced by something that no longer matches
	} else if fi.Mode()&fs.ModeSymlink != 0 {
		w.log.Debug("ignoring symbolic link", "path", path)
	}
}

// offer reports path if it is new or changed, now or once settled.
func (w *Watcher) offer(path string, fi fs.FileInfo) {
	id := IdentityOf(fi)
	if old, ok := w.known[path]; ok && old == id {
		return
	}
	if w.cfg.Settle > 0 && !w.initial {
		w.pending[path] = time.Now()
		return
	}
	w.known[path] = id
	w.cfg.OnAdd(path, id)
}

// flushSettled reports pending entries that have not changed for Settle.
func (w *Watcher) flushSettled() {
	now := time.Now()
	for path, changed := range w.pending {
		if now.Sub(changed) < w.cfg.Settle {
			continue
		}
		delete(w.pending, path)
		fi, err := os.Lstat(path)
		if err != nil || !w.cfg.Match(path, fi) {
			continue
		}
		id := IdentityOf(fi)
		if old, ok := w.known[path]; ok && old == id {
			continue
		}
		w.known[path] = id
		w.cfg.OnAdd(path, id)
	}
}

// removeTree handles the removal of path, which may have been a directory.
func (w *Watcher) removeTree(path string) {
	delete(w.pending, path)
	if _, ok := w.known[path]; ok {
		w.remove(path)
	}
	if w.dirs[path] {
		prefix := path + string(filepath.Separator)
		for p := range w.known {
			if strings.HasPrefix(p, prefix) {
				w.remove(p)
			}
		}
		for d := range w.dirs {
			if d == path || strings.HasPrefix(d, prefix) {
				delete(w.dirs, d)
				_ = w.fsw.Remove(d) // already gone with a deleted directory
			}
		}
	}
}

func (w *Watcher) remove(path string) {
	delete(w.known, path)
	w.cfg.OnRemove(path)
}

// Follow passes what the fsnotify watcher w reports to its handlers until
// ctx is done or w is closed: onEvent each event, onError each error (an
// overflow of the kernel's queue: events were lost, so look at everything
// again), and onTick every period, a safety net. It is the loop of the
// parts that watch a directory of their own without a Watcher: the device
// plugin directory, the kubelet's directories.
func Follow(ctx context.Context, w *fsnotify.Watcher, every time.Duration, onEvent func(fsnotify.Event), onError func(error), onTick func()) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-w.Events:
			if !ok {
				return
			}
			onEvent(ev)
		case err, ok := <-w.Errors:
			if !ok {
				return
			}
			onError(err)
		case <-tick.C:
			onTick()
		}
	}
}
