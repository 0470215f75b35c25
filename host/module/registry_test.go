package module

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wasmlet/wasmlet/guests/build"
)

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
