package module

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/wasmlet/wasmlet/internal/syncbuf"
	"github.com/wasmlet/wasmlet/internal/testkit"
)

// settleRegistry is a registry on a fake clock that records its events and
// its log.
type settleRegistry struct {
	*Registry
	clock *clocktesting.FakeClock
	log   *syncbuf.Buffer

	mu     sync.Mutex
	events []EventKind
}

func newSettleRegistry(t *testing.T) *settleRegistry {
	r := &settleRegistry{clock: clocktesting.NewFakeClock(time.Now()), log: &syncbuf.Buffer{}}
	r.Registry = NewRegistry(func(string) Options { return Options{MemoryLimit: 1 << 20, Cache: testCache(t)} }, nil,
		hclog.New(&hclog.LoggerOptions{Output: r.log, Level: hclog.Debug}), WithClock(r.clock), WithSettle(time.Second))
	r.Subscribe(func(e Event) { r.mu.Lock(); r.events = append(r.events, e.Kind); r.mu.Unlock() })
	t.Cleanup(func() { r.Close(context.Background()) })
	return r
}

func (r *settleRegistry) kinds() []EventKind {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]EventKind(nil), r.events...)
}

// info is what List says of name.
func (r *settleRegistry) info(name string) (Info, bool) {
	for _, i := range r.List() {
		if i.Name == name {
			return i, true
		}
	}
	return Info{}, false
}

// writeAt writes b to path with the modification time at.
func writeAt(t *testing.T, path string, b []byte, at time.Time) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, at, at); err != nil {
		t.Fatal(err)
	}
}

// TestCopyInPlace is a module file copied in place rather than renamed into
// place, as `cp` does: loaded while half written, it fails, but it changed
// just now, so it is not refused; the registry waits until it has not
// changed for the settle time, and loads the whole file. Meanwhile List
// shows it loading.
func TestCopyInPlace(t *testing.T) {
	r := newSettleRegistry(t)
	full, err := os.ReadFile(wat(t, "minimal"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "copied.wasm")
	writeAt(t, path, full[:len(full)/2], r.clock.Now())

	type result struct {
		m   *Module
		err error
	}
	done := make(chan result, 1)
	go func() { m, err := r.Load(context.Background(), path); done <- result{m, err} }()
	testkit.Eventually(t, "the load to wait for the file to settle", func() bool { return r.clock.HasWaiters() })
	if i, ok := r.info("copied"); !ok || i.Loading != path || !i.Settling || i.Module != nil || i.Err != nil {
		t.Fatalf("while the file settles, List says %+v", i)
	}
	// The copy goes on; then the file rests.
	r.clock.Step(300 * time.Millisecond)
	writeAt(t, path, full, r.clock.Now())
	for step := 0; step < 100; step++ {
		r.clock.Step(100 * time.Millisecond)
		select {
		case res := <-done:
			if res.err != nil || res.m == nil {
				t.Fatalf("Load: %v", res.err)
			}
			if k := r.kinds(); len(k) != 1 || k[0] != Loaded {
				t.Fatalf("events %v, want one loaded", k)
			}
			if strings.Contains(r.log.String(), "[ERROR]") {
				t.Fatalf("an error was logged while the file was being written:\n%s", r.log.String())
			}
			if i, _ := r.info("copied"); i.Loading != "" || i.Settling || i.Module != res.m {
				t.Fatalf("after the load, List says %+v", i)
			}
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Fatal("the load never finished")
}

// TestStableBadFileIsRefusedOnce: a bad file that was written long ago is
// refused at once; one written just now once it has rested for the settle
// time. Either is refused once: loading it again, unchanged, neither logs
// nor tells subscribers again. Reload tries it again.
func TestStableBadFileIsRefusedOnce(t *testing.T) {
	r := newSettleRegistry(t)
	bad := []byte("\x00asm\x01\x00\x00\x00\x01\xff")
	dir := t.TempDir()
	old := filepath.Join(dir, "old.wasm")
	writeAt(t, old, bad, r.clock.Now().Add(-time.Hour))
	ctx := context.Background()
	if _, err := r.Load(ctx, old); err == nil {
		t.Fatal("a bad file was accepted")
	}
	if _, err := r.Load(ctx, old); err == nil {
		t.Fatal("a bad file was accepted the second time")
	}
	if k := r.kinds(); len(k) != 1 || k[0] != Refused {
		t.Fatalf("events %v, want one refused", k)
	}
	if n := strings.Count(r.log.String(), "module file refused"); n != 1 {
		t.Fatalf("%d refusals logged:\n%s", n, r.log.String())
	}
	if _, err := r.Reload(ctx, "old"); err == nil {
		t.Fatal("reload accepted a bad file")
	}
	if k := r.kinds(); len(k) != 2 {
		t.Fatalf("events after Reload %v, want two refusals", k)
	}

	fresh := filepath.Join(dir, "fresh.wasm")
	writeAt(t, fresh, bad, r.clock.Now())
	done := make(chan error, 1)
	go func() { _, err := r.Load(ctx, fresh); done <- err }()
	testkit.Eventually(t, "the load to wait for the file to settle", func() bool { return r.clock.HasWaiters() })
	select {
	case err := <-done:
		t.Fatalf("a file written just now was judged at once: %v", err)
	default:
	}
	r.clock.Step(time.Second)
	if err := <-done; err == nil || !bytes.Contains([]byte(err.Error()), []byte("fresh")) {
		t.Fatalf("the settled bad file: %v", err)
	}
	if i, _ := r.info("fresh"); i.Err == nil || i.Loading != "" {
		t.Fatalf("List after the refusal: %+v", i)
	}
}

// TestSameFileIsNotLoadedTwice: a file change reported twice (a watcher
// reports each burst of writes) loads the file once.
func TestSameFileIsNotLoadedTwice(t *testing.T) {
	r := newSettleRegistry(t)
	path := filepath.Join(t.TempDir(), "m.wasm")
	copyFile(t, wat(t, "minimal"), path)
	ctx := context.Background()
	first, err := r.Load(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	again, err := r.Load(ctx, path)
	if err != nil || again != first {
		t.Fatalf("second Load: %v, %v (first %v)", again, err, first)
	}
	if k := r.kinds(); len(k) != 1 {
		t.Fatalf("events %v, want one", k)
	}
	// Reload is what loads the same file again.
	reloaded, err := r.Reload(ctx, "m")
	if err != nil || reloaded == first {
		t.Fatalf("Reload: %v, %v", reloaded, err)
	}
}

// TestCancelledLoadIsNoRefusal: a load its caller gave up on judged
// nothing, and leaves no trace.
func TestCancelledLoadIsNoRefusal(t *testing.T) {
	r := newSettleRegistry(t)
	path := filepath.Join(t.TempDir(), "c.wasm")
	writeAt(t, path, []byte("\x00asm"), r.clock.Now())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := r.Load(ctx, path); done <- err }()
	testkit.Eventually(t, "the load to wait", func() bool { return r.clock.HasWaiters() })
	cancel()
	if err := <-done; err == nil {
		t.Fatal("a cancelled load succeeded")
	}
	if _, ok := r.info("c"); ok || len(r.kinds()) != 0 {
		t.Fatalf("a cancelled load left %v, events %v", r.List(), r.kinds())
	}
}
