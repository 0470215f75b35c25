package module

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wasmlet/wasmlet/guests/build"
	"github.com/wasmlet/wasmlet/host/internal/leakcheck"
)

var long = flag.Bool("long", false, "run the long variants of the churn tests")

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	tmp := to + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, to); err != nil {
		t.Fatal(err)
	}
}

func TestRegistryLifecycle(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	var mu sync.Mutex
	var events []Event
	r := NewRegistry(func(string) Options {
		return Options{MemoryLimit: 32 << 20, Cache: testCache(t), Config: map[string]string{"count": "2"}}
	}, nil, nil)
	defer r.Close(ctx)
	r.Subscribe(func(e Event) { mu.Lock(); events = append(events, e); mu.Unlock() })
	path := filepath.Join(dir, "src.wasm")

	copyFile(t, build.Go(t, "guests/counter"), path)
	first, err := r.Load(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Sources(); len(got) != 1 || got[0] != first || first.Name() != "src" {
		t.Fatalf("sources %v", got)
	}

	// Replacing the file swaps the new module in.
	copyFile(t, wat(t, "minimal"), path)
	second, err := r.Load(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if r.Get("src") != second || second.Description().Resource != "example.com/wat" {
		t.Fatalf("replacement not in place: %+v", r.Get("src"))
	}
	// The first module is closed once idle.
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := first.Discover(ctx); IsFault(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("replaced module still serves")
		}
		time.Sleep(10 * time.Millisecond)
	}

	// A bad replacement is refused and the running module stays.
	copyFile(t, wat(t, "wrong_version"), path)
	if _, err := r.Load(ctx, path); err == nil {
		t.Fatal("bad file accepted")
	}
	if r.Get("src") != second {
		t.Fatal("a refused file displaced the running module")
	}
	if infos := r.List(); len(infos) != 1 || infos[0].Err == nil || infos[0].Module != second {
		t.Fatalf("list %+v", infos)
	}
	if devs, err := r.Get("src").Discover(ctx); err != nil || len(devs) != 1 {
		t.Fatalf("running module broken: %v %v", devs, err)
	}

	r.Unload("src")
	if r.Get("src") != nil || len(r.Sources()) != 0 {
		t.Fatal("unloaded module still listed")
	}
	mu.Lock()
	defer mu.Unlock()
	var kinds []EventKind
	for _, e := range events {
		kinds = append(kinds, e.Kind)
	}
	want := []EventKind{Loaded, Replaced, Refused, Unloaded}
	if len(kinds) != len(want) {
		t.Fatalf("events %v, want %v", kinds, want)
	}
	for i := range want {
		if kinds[i] != want[i] {
			t.Fatalf("events %v, want %v", kinds, want)
		}
	}
	if events[1].Previous != first || events[3].Previous != second {
		t.Fatal("events do not carry the modules they concern")
	}
}

func TestRegistryPinnedDigest(t *testing.T) {
	r := NewRegistry(func(string) Options { return Options{MemoryLimit: 1 << 20, SHA256: "00ff"} }, nil, nil)
	defer r.Close(context.Background())
	_, err := r.Load(context.Background(), wat(t, "minimal"))
	if err == nil || !strings.Contains(err.Error(), "pins 00ff") {
		t.Fatalf("got %v", err)
	}
	if r.Get("minimal") != nil {
		t.Fatal("pinned mismatch loaded")
	}
}

// TestReplacementsUnderLoad replaces a module's file 100 times (1,000 with
// -long) while four goroutines call it without pause, looking it up before
// each call as the host's callers do. No call may fail, each replacement
// must take effect, and goroutines, descriptors and heap must come back near
// their start once the old versions are closed.
func TestReplacementsUnderLoad(t *testing.T) {
	n := 100
	if *long {
		n = 1000
	}
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "src.wasm")
	versions := []string{build.Go(t, "guests/counter"), build.C(t, "guests/c/counter.c")}
	r := NewRegistry(func(string) Options {
		return Options{MemoryLimit: 32 << 20, Cache: testCache(t), Config: map[string]string{"count": "3"}}
	}, nil, nil)
	defer r.Close(ctx)
	copyFile(t, versions[0], path)
	if _, err := r.Load(ctx, path); err != nil {
		t.Fatal(err)
	}
	warm := func() {
		for i := 0; i < 2; i++ {
			copyFile(t, versions[i%2], path)
			if _, err := r.Load(ctx, path); err != nil {
				t.Fatal(err)
			}
		}
	}
	warm()
	time.Sleep(2 * RetireDelay)
	base := leakcheck.Take()

	stop := make(chan struct{})
	var calls, failures atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				devs, err := r.Get("src").Discover(ctx)
				if err != nil || len(devs) != 3 {
					failures.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("%v (%d devices)", err, len(devs)))
				}
				calls.Add(1)
			}
		}()
	}
	for i := 0; i < n; i++ {
		copyFile(t, versions[i%2], path)
		m, err := r.Load(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		if r.Get("src") != m {
			t.Fatal("the replacement is not the one served")
		}
	}
	close(stop)
	wg.Wait()
	if failures.Load() > 0 {
		t.Fatalf("%d of %d calls failed during %d replacements; first: %v", failures.Load(), calls.Load(), n, firstErr.Load())
	}
	t.Logf("%d calls, none failed, during %d replacements", calls.Load(), n)
	time.Sleep(2 * RetireDelay)
	leakcheck.Check(t, fmt.Sprintf("%d module replacements under load", n), base,
		leakcheck.Bounds{Goroutines: 10, FDs: 10, HeapBytes: 32 << 20})
}

func TestInstrumentedBinariesAreCached(t *testing.T) {
	dir := t.TempDir()
	c, err := NewCache(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	path := wat(t, "minimal")
	m, err := Load(ctx, path, Options{MemoryLimit: 1 << 20, Cache: c})
	if err != nil {
		t.Fatal(err)
	}
	m.Close(ctx)
	entries, _ := os.ReadDir(filepath.Join(dir, "instrumented"))
	if len(entries) != 1 || !strings.HasPrefix(entries[0].Name(), m.Digest()) {
		t.Fatalf("cache holds %v, want the instrumented %s", entries, m.Digest())
	}
	// An entry that is not WebAssembly is redone, not used.
	os.WriteFile(filepath.Join(dir, "instrumented", entries[0].Name()), []byte("junk"), 0o600)
	m, err = Load(ctx, path, Options{MemoryLimit: 1 << 20, Cache: c})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(ctx)
	if _, err := m.Discover(ctx); err != nil {
		t.Fatal(err)
	}
}
