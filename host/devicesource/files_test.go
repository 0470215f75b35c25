package devicesource

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// signals counts the change signals f gives within d.
func signals(f *fileWatch, d time.Duration) int {
	n := 0
	deadline := time.After(d)
	for {
		select {
		case <-f.changed:
			n++
		case <-deadline:
			return n
		}
	}
}

func TestFileWatch(t *testing.T) {
	dir := t.TempDir()
	f := newFileWatch(hclog.NewNullLogger(), 200*time.Millisecond)
	// Windows are several debounce periods long: a loaded machine may
	// stall the writer or the watcher for a while.
	defer f.close()
	missing := filepath.Join(dir, "missing")
	f.set([]string{dir, missing, dir})
	if got := f.watching(); len(got) != 1 || got[0] != dir {
		t.Fatalf("watching %v", got)
	}

	// A burst of creations is one change.
	for i := range 20 {
		if err := os.WriteFile(filepath.Join(dir, "f"+strconv.Itoa(i)), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if n := signals(f, time.Second); n != 1 {
		t.Errorf("a burst of 20 files gave %d signals", n)
	}
	// A change of mode is not.
	if err := os.Chmod(filepath.Join(dir, "f0"), 0o600); err != nil {
		t.Fatal(err)
	}
	if n := signals(f, 600*time.Millisecond); n != 0 {
		t.Errorf("chmod gave %d signals", n)
	}
	// Writing a regular file, removing one: changes.
	os.WriteFile(filepath.Join(dir, "f1"), []byte("y"), 0o644)
	if n := signals(f, time.Second); n != 1 {
		t.Errorf("a write gave %d signals", n)
	}
	os.Remove(filepath.Join(dir, "f2"))
	if n := signals(f, time.Second); n != 1 {
		t.Errorf("a removal gave %d signals", n)
	}
	// A directory that is no longer wanted is no longer followed.
	f.set(nil)
	os.WriteFile(filepath.Join(dir, "late"), nil, 0o644)
	if n := signals(f, 600*time.Millisecond); n != 0 || len(f.watching()) != 0 {
		t.Errorf("after set(nil): %d signals, watching %v", n, f.watching())
	}
}

// TestFileWatchBusyDirectory: a directory that never settles is still seen
// at least every maxSettle debounce periods.
func TestFileWatchBusyDirectory(t *testing.T) {
	dir := t.TempDir()
	f := newFileWatch(hclog.NewNullLogger(), 20*time.Millisecond)
	defer f.close()
	f.set([]string{dir})
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
				os.WriteFile(filepath.Join(dir, "busy"), []byte(strconv.Itoa(i)), 0o644)
			}
		}
	}()
	n := signals(f, time.Second)
	close(stop)
	<-done
	if n < 2 {
		t.Errorf("a directory busy for 1 s gave %d signals; want at least one per %v", n, maxSettle*20*time.Millisecond)
	}
}
