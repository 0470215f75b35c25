package devicesource

import (
	"errors"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/hashicorp/go-hclog"
)

// maxSettle bounds how long a stream of file events can delay a rediscovery:
// however busy a directory is, its changes are seen at least this often.
const maxSettle = 10

// fileWatch follows the host directories of a module's mounts with fsnotify
// (not recursively) and signals on changed, debounced, when an entry is
// created, removed or renamed, or a regular file is written. Writes to
// device nodes and changes of mode are ignored: every write to /dev/null or
// a terminal is a write event in /dev, and neither changes a device set.
type fileWatch struct {
	log      hclog.Logger
	debounce time.Duration
	changed  chan struct{} // capacity 1

	mu   sync.Mutex
	w    *fsnotify.Watcher // nil until there is something to watch
	want []string          // asked for, sorted
	dirs []string          // followed: want, less those that failed
	done chan struct{}
	wg   sync.WaitGroup
}

func newFileWatch(log hclog.Logger, debounce time.Duration) *fileWatch {
	return &fileWatch{log: log, debounce: debounce, changed: make(chan struct{}, 1), done: make(chan struct{})}
}

// set follows exactly dirs from now on. A directory that cannot be followed
// is logged once and left out: the source still rediscovers on its interval.
func (f *fileWatch) set(dirs []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	dirs = slices.Compact(slices.Sorted(slices.Values(dirs)))
	if slices.Equal(dirs, f.want) {
		return
	}
	f.want = dirs
	if f.w == nil {
		if len(dirs) == 0 {
			return
		}
		w, err := fsnotify.NewWatcher()
		if err != nil {
			f.log.Warn("cannot follow the module's mounts for changes; rediscovering on the interval only", "error", err)
			return
		}
		f.w = w
		f.wg.Add(1)
		go f.run(w)
	}
	for _, d := range f.dirs {
		if !slices.Contains(dirs, d) {
			f.w.Remove(d) // fails only if the directory went away, which removed the watch
		}
	}
	var followed []string
	for _, d := range dirs {
		if slices.Contains(f.dirs, d) {
			followed = append(followed, d)
			continue
		}
		if err := f.w.Add(d); err != nil {
			f.log.Warn("cannot follow a mount for changes; rediscovering on the interval only", "dir", d, "error", err)
			continue
		}
		followed = append(followed, d)
	}
	f.dirs = followed
	f.log.Debug("following mounts for changes", "dirs", followed)
}

// watching lists the directories followed.
func (f *fileWatch) watching() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.dirs)
}

func (f *fileWatch) close() {
	f.mu.Lock()
	close(f.done)
	w := f.w
	f.mu.Unlock()
	if w != nil {
		w.Close()
	}
	f.wg.Wait()
}

func (f *fileWatch) run(w *fsnotify.Watcher) {
	defer f.wg.Done()
	var (
		fire  <-chan time.Time
		timer *time.Timer
		first time.Time // first event of the pending burst
	)
	arm := func() {
		if fire == nil { // a new burst
			if timer == nil {
				timer = time.NewTimer(f.debounce)
			} else {
				timer.Reset(f.debounce)
			}
			first, fire = time.Now(), timer.C
			return
		}
		if time.Since(first) < maxSettle*f.debounce {
			timer.Reset(f.debounce)
		}
	}
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		select {
		case <-f.done:
			return
		case ev, ok := <-w.Events:
			if !ok {
				return
			}
			if relevant(ev) {
				f.lost(ev)
				arm()
			}
		case err, ok := <-w.Errors:
			if !ok {
				return
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				f.log.Debug("file event queue overflowed; rediscovering", "error", err)
			} else {
				f.log.Warn("following the module's mounts", "error", err)
			}
			arm() // something may have been missed
		case <-fire:
			fire = nil
			select {
			case f.changed <- struct{}{}:
			default:
			}
		}
	}
}

// lost notices that a followed directory itself went away, taking its watch
// with it; the next set follows it again if it is still wanted.
func (f *fileWatch) lost(ev fsnotify.Event) {
	if !ev.Has(fsnotify.Remove) && !ev.Has(fsnotify.Rename) {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if i := slices.Index(f.dirs, ev.Name); i >= 0 {
		f.dirs = slices.Delete(f.dirs, i, i+1)
		f.want = nil
		f.log.Warn("a followed mount directory went away; no longer following it", "dir", ev.Name)
	}
}

// relevant reports whether an event can change a device set.
func relevant(ev fsnotify.Event) bool {
	if ev.Has(fsnotify.Create) || ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) {
		return true
	}
	if ev.Has(fsnotify.Write) {
		fi, err := os.Lstat(ev.Name)
		return err == nil && fi.Mode().IsRegular()
	}
	return false
}
