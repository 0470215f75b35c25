package watcher

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/wasmlet/wasmlet/host/internal/testenv"
	"github.com/wasmlet/wasmlet/internal/testkit"
)

// recorder collects what a watcher reports.
type recorder struct {
	mu     sync.Mutex
	adds   map[string]int
	ids    map[string]Identity
	live   map[string]bool
	events chan string
}

func newRecorder() *recorder {
	return &recorder{adds: map[string]int{}, ids: map[string]Identity{}, live: map[string]bool{}, events: make(chan string, 100)}
}

func (r *recorder) add(path string, id Identity) {
	r.mu.Lock()
	r.adds[path]++
	r.ids[path] = id
	r.live[path] = true
	r.mu.Unlock()
	r.events <- "add " + path
}

func (r *recorder) remove(path string) {
	r.mu.Lock()
	delete(r.live, path)
	r.mu.Unlock()
	r.events <- "remove " + path
}

func (r *recorder) expect(t *testing.T, want string) {
	t.Helper()
	select {
	case got := <-r.events:
		if got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("timed out waiting for %q", want)
	}
}

func (r *recorder) quiet(t *testing.T) {
	t.Helper()
	select {
	case got := <-r.events:
		t.Fatalf("unexpected event %q", got)
	case <-time.After(100 * time.Millisecond):
	}
}

func start(t *testing.T, cfg Config) *Watcher {
	t.Helper()
	w, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	testkit.Go(t, func(ctx context.Context) { w.Run(ctx) })
	<-w.Ready()
	return w
}

func listen(t *testing.T, path string) net.Listener {
	t.Helper()
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	t.Cleanup(func() { l.Close() })
	return l
}

func TestSockets(t *testing.T) {
	dir := testenv.ShortDir(t)
	outside := testenv.ShortDir(t)
	listen(t, filepath.Join(dir, "before.sock"))
	os.WriteFile(filepath.Join(dir, "not-a-socket"), nil, 0o644)
	r := newRecorder()
	start(t, Config{Dir: dir, Match: IsSocket, OnAdd: r.add, OnRemove: r.remove})
	r.expect(t, "add "+filepath.Join(dir, "before.sock"))

	t.Run("new socket", func(t *testing.T) {
		listen(t, filepath.Join(dir, "a.sock"))
		r.expect(t, "add "+filepath.Join(dir, "a.sock"))
	})
	t.Run("dot names are ignored", func(t *testing.T) {
		listen(t, filepath.Join(dir, ".hidden.sock"))
		os.Mkdir(filepath.Join(dir, ".hiddendir"), 0o755)
		listen(t, filepath.Join(dir, ".hiddendir", "x.sock"))
		r.quiet(t)
	})
	t.Run("regular files and symlinks are ignored", func(t *testing.T) {
		os.WriteFile(filepath.Join(dir, "file.sock"), []byte("x"), 0o644)
		os.Symlink(filepath.Join(dir, "a.sock"), filepath.Join(dir, "link.sock"))
		r.quiet(t)
	})
	t.Run("subdirectories are followed", func(t *testing.T) {
		sub := filepath.Join(dir, "sub", "deeper")
		if err := os.MkdirAll(sub, 0o755); err != nil {
			t.Fatal(err)
		}
		listen(t, filepath.Join(sub, "s.sock")) // possibly before the watch is in place
		r.expect(t, "add "+filepath.Join(sub, "s.sock"))
	})
	t.Run("removal", func(t *testing.T) {
		os.Remove(filepath.Join(dir, "before.sock"))
		r.expect(t, "remove "+filepath.Join(dir, "before.sock"))
	})
	t.Run("recreated at the same path is new", func(t *testing.T) {
		p := filepath.Join(dir, "a.sock")
		r.mu.Lock()
		old := r.ids[p]
		r.mu.Unlock()
		os.Remove(p)
		r.expect(t, "remove "+p)
		listen(t, p)
		r.expect(t, "add "+p)
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.ids[p] == old {
			t.Fatal("the recreated socket has the same identity")
		}
	})
	t.Run("renamed out of the directory", func(t *testing.T) {
		p := filepath.Join(dir, "a.sock")
		if err := os.Rename(p, filepath.Join(outside, "a.sock")); err != nil {
			t.Fatal(err)
		}
		r.expect(t, "remove "+p)
	})
	t.Run("renamed within the directory", func(t *testing.T) {
		listen(t, filepath.Join(dir, "b.sock"))
		r.expect(t, "add "+filepath.Join(dir, "b.sock"))
		os.Rename(filepath.Join(dir, "b.sock"), filepath.Join(dir, "c.sock"))
		got := map[string]bool{}
		for i := 0; i < 2; i++ {
			select {
			case e := <-r.events:
				got[e] = true
			case <-time.After(5 * time.Second):
				t.Fatalf("events so far %v", got)
			}
		}
		if !got["remove "+filepath.Join(dir, "b.sock")] || !got["add "+filepath.Join(dir, "c.sock")] {
			t.Fatalf("events %v", got)
		}
	})
	t.Run("directory removed", func(t *testing.T) {
		os.RemoveAll(filepath.Join(dir, "sub"))
		r.expect(t, "remove "+filepath.Join(dir, "sub", "deeper", "s.sock"))
	})
}

func TestRescanFindsWhatWasMissed(t *testing.T) {
	dir := testenv.ShortDir(t)
	r := newRecorder()
	// A watcher that is not running misses events; Rescan catches up.
	w, err := New(Config{Dir: dir, Match: IsSocket, OnAdd: r.add, OnRemove: r.remove})
	if err != nil {
		t.Fatal(err)
	}
	w.scan()
	listen(t, filepath.Join(dir, "late.sock"))
	w.scan()
	r.expect(t, "add "+filepath.Join(dir, "late.sock"))
	os.Remove(filepath.Join(dir, "late.sock"))
	w.scan()
	r.expect(t, "remove "+filepath.Join(dir, "late.sock"))
}

func TestModuleFilesSettle(t *testing.T) {
	dir := testenv.ShortDir(t)
	r := newRecorder()
	w := start(t, Config{Dir: dir, Match: HasSuffix(".wasm"), Settle: 500 * time.Millisecond, OnAdd: r.add, OnRemove: r.remove})
	// The copy below pauses 20 ms between writes; the settle time is long
	// enough that a loaded machine oversleeping a pause does not end it.
	p := filepath.Join(dir, "m.wasm")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ { // a slow copy: reported once, complete
		f.Write(make([]byte, 1000))
		time.Sleep(20 * time.Millisecond)
	}
	f.Close()
	r.expect(t, "add "+p)
	r.quiet(t)
	if fi, _ := os.Stat(p); r.ids[p].Size != fi.Size() {
		t.Fatalf("reported size %d, file has %d", r.ids[p].Size, fi.Size())
	}
	// Rewritten in place: reported again.
	os.WriteFile(p, []byte("new content"), 0o644)
	r.expect(t, "add "+p)
	// Replaced by rename (the atomic way).
	os.WriteFile(filepath.Join(dir, ".m.wasm.tmp"), []byte("newer content"), 0o644)
	os.Rename(filepath.Join(dir, ".m.wasm.tmp"), p)
	r.expect(t, "add "+p)
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("x"), 0o644)
	r.quiet(t)
	os.Remove(p)
	r.expect(t, "remove "+p)
	w.Rescan(context.Background())
	r.quiet(t)
}

// A file present when the watcher starts is reported once settled, and its
// removal is reported too.
func TestSettledFilesPresentAtStart(t *testing.T) {
	dir := testenv.ShortDir(t)
	p := filepath.Join(dir, "early.wasm")
	os.WriteFile(p, []byte("x"), 0o644)
	r := newRecorder()
	start(t, Config{Dir: dir, Match: HasSuffix(".wasm"), Settle: 30 * time.Millisecond, OnAdd: r.add, OnRemove: r.remove})
	r.expect(t, "add "+p)
	os.Remove(p)
	r.expect(t, "remove "+p)
}
