package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wasmlet/wasmlet/internal/testkit"
)

// store is a minimal stand-in for the device manager: a state under a lock,
// a generation bumped on every mutation, and a snapshot for a Committer.
type store struct {
	mu     sync.Mutex
	allocs []*Allocation // never modified once stored: snapshots share them
	gen    uint64

	entered   int // calls to snapshot
	snapshots int // copies snapshot took
	// If set, snapshot waits on before before it copies the state, and on
	// after after it copied it.
	before, after chan struct{}
}

func (s *store) add(workload string) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.allocs = append(s.allocs, &Allocation{Workload: workload, Resource: "example.com/dev", DeviceIds: []string{workload}})
	s.gen++
	return s.gen
}

func (s *store) snapshot() (*State, uint64) {
	s.mu.Lock()
	s.entered++
	s.mu.Unlock()
	if s.before != nil {
		<-s.before
	}
	s.mu.Lock()
	st := &State{Allocations: slices.Clone(s.allocs)}
	gen := s.gen
	s.snapshots++
	s.mu.Unlock()
	if s.after != nil {
		<-s.after
	}
	return st, gen
}

func (s *store) snapshotCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.snapshots
}

// waitQueued waits until n Syncs are queued on c.
func waitQueued(t *testing.T, c *Committer, n int) {
	t.Helper()
	testkit.Eventually(t, fmt.Sprintf("%d Syncs to be queued", n), func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.waiters) >= n
	})
}

// waitSnapshots waits until s was snapshotted n times.
func waitSnapshots(t *testing.T, s *store, n int) {
	t.Helper()
	testkit.Eventually(t, fmt.Sprintf("%d snapshots", n), func() bool { return s.snapshotCount() >= n })
}

// heldCommitter is a committer of a file in a temporary directory whose
// writes, once they took their snapshot, wait until release is called
// (at the latest when the test ends, before the committer is closed).
func heldCommitter(t *testing.T) (path string, s *store, c *Committer, release func()) {
	path = filepath.Join(t.TempDir(), "ck")
	s = &store{after: make(chan struct{})}
	c = NewCommitter(path, s.snapshot)
	t.Cleanup(func() { c.Close() })
	release = sync.OnceFunc(func() { close(s.after) })
	t.Cleanup(release) // before Close, if the test fails early
	return path, s, c, release
}

func workloads(st *State) map[string]bool {
	m := make(map[string]bool)
	for _, a := range st.GetAllocations() {
		m[a.GetWorkload()] = true
	}
	return m
}

// Concurrent Syncs all return only once their mutation is in the file, and
// they share writes.
func TestCommitterConcurrentSyncsAreDurable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ck")
	s := &store{}
	c := NewCommitter(path, s.snapshot)
	defer c.Close()

	const clients, each = 16, 20
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() {
			for j := range each {
				w := fmt.Sprintf("ns/pod-%d/c%d", i, j)
				gen := s.add(w)
				if err := c.Sync(context.Background(), gen); err != nil {
					t.Errorf("Sync(%d): %v", gen, err)
					return
				}
				st, err := Read(path)
				if err != nil {
					t.Errorf("Read after Sync(%d): %v", gen, err)
					return
				}
				if st.GetGeneration() < gen || !workloads(st)[w] {
					t.Errorf("Sync(%d) returned but the file is at generation %d without %s", gen, st.GetGeneration(), w)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	st, err := Read(path)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(st.GetAllocations()); n != clients*each || st.GetGeneration() != clients*each {
		t.Fatalf("file holds %d allocations at generation %d, want %d", n, st.GetGeneration(), clients*each)
	}
	writes := s.snapshotCount()
	t.Logf("%d commits in %d writes", clients*each, writes)
	if writes >= clients*each {
		t.Fatalf("%d writes for %d commits: no group commit", writes, clients*each)
	}
}

// Syncs queued while a write is in flight share the next write: 16 Syncs,
// two writes.
func TestCommitterGroupsWaiters(t *testing.T) {
	path, s, c, release := heldCommitter(t)

	errs := make(chan error, 16)
	gen := s.add("ns/pod/first")
	go func() { errs <- c.Sync(context.Background(), gen) }()
	waitSnapshots(t, s, 1) // the first write holds a snapshot at generation 1
	for i := range 15 {
		gen := s.add(fmt.Sprintf("ns/pod/c%d", i))
		go func() { errs <- c.Sync(context.Background(), gen) }()
	}
	waitQueued(t, c, 15)
	release()
	for range 16 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if n := s.snapshotCount(); n != 2 {
		t.Fatalf("%d writes, want 2", n)
	}
	st, err := Read(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.GetGeneration() != 16 || len(st.GetAllocations()) != 16 {
		t.Fatalf("file at generation %d with %d allocations, want 16 and 16", st.GetGeneration(), len(st.GetAllocations()))
	}
	// Already durable: no write.
	if err := c.Sync(context.Background(), 10); err != nil || s.snapshotCount() != 2 {
		t.Fatalf("Sync of a durable generation: %v, %d writes", err, s.snapshotCount())
	}
}

// A write that fails is reported to its waiters and never as success; a
// later Sync writes again and succeeds once the cause is fixed.
func TestCommitterWriteFailure(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "ck")
	s := &store{}
	c := NewCommitter(path, s.snapshot)
	defer c.Close()
	ctx := context.Background()

	if err := c.Sync(ctx, s.add("ns/pod/a")); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	gen := s.add("ns/pod/b")
	for range 2 { // the failure is not remembered as success, nor sticky
		err := c.Sync(ctx, gen)
		if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "directory "+dir+" does not exist") {
			t.Fatalf("Sync with the directory removed: %v, want an error saying it does not exist", err)
		}
	}
	if err := c.Sync(ctx, 1); err != nil {
		t.Fatalf("generation 1 was durable before the failure: %v", err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := c.Sync(ctx, gen); err != nil {
		t.Fatalf("Sync after the directory is back: %v", err)
	}
	st, err := Read(path)
	if err != nil {
		t.Fatal(err)
	}
	if w := workloads(st); !w["ns/pod/a"] || !w["ns/pod/b"] || st.GetGeneration() != 2 {
		t.Fatalf("file holds %v at generation %d", w, st.GetGeneration())
	}
	if err := c.Close(); err != nil {
		t.Fatalf("Close after a successful write: %v", err)
	}
}

// A Sync that queued during a failing write whose snapshot covers it is not
// released by that write as a success: it gets a write of its own.
func TestCommitterFailureDuringQueue(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "missing")
	s := &store{before: make(chan struct{})}
	c := NewCommitter(filepath.Join(dir, "ck"), s.snapshot)
	defer c.Close()
	release := sync.OnceFunc(func() { close(s.before) })
	defer release() // before Close, if the test fails early

	first := make(chan error, 1)
	go func() { first <- c.Sync(context.Background(), s.add("ns/pod/a")) }()
	// Wait until the write took the first Sync and waits for its snapshot.
	testkit.Eventually(t, "the first Sync to be taken", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.entered == 1
	})
	second := make(chan error, 1)
	go func() { second <- c.Sync(context.Background(), s.add("ns/pod/b")) }()
	waitQueued(t, c, 1)
	release() // the snapshot now covers both generations; its write fails
	if err := <-first; !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("first Sync: %v, want the write error", err)
	}
	if err := <-second; !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("second Sync: %v, want the error of its own write", err)
	}
	if n := s.snapshotCount(); n != 2 {
		t.Fatalf("%d writes, want 2", n)
	}
}

func TestCommitterContextCancel(t *testing.T) {
	path, s, c, release := heldCommitter(t)

	ctx, cancel := context.WithCancel(context.Background())
	res := make(chan error, 1)
	go func() { res <- c.Sync(ctx, s.add("ns/pod/a")) }()
	waitSnapshots(t, s, 1) // the write is stuck
	cancel()
	select {
	case err := <-res:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v, want context.Canceled", err)
		}
	case <-time.After(time.Minute): // only when broken
		t.Fatal("Sync did not return when its context was cancelled")
	}

	short, cancel2 := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel2()
	if err := c.Sync(short, s.add("ns/pod/b")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want context.DeadlineExceeded", err)
	}
	// An ended context starts no write.
	before := s.snapshotCount()
	if err := c.Sync(ctx, s.add("ns/pod/c")); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}

	release() // the stuck write completes; the abandoned Syncs are released
	if err := c.Sync(context.Background(), 3); err != nil {
		t.Fatal(err)
	}
	if n := s.snapshotCount(); n > before+1 {
		t.Fatalf("%d writes after the cancelled Sync, want at most 1", n-before)
	}
	st, err := Read(path)
	if err != nil || st.GetGeneration() != 3 {
		t.Fatalf("file at generation %d (%v), want 3", st.GetGeneration(), err)
	}
}

func TestCommitterClose(t *testing.T) {
	path, s, c, release := heldCommitter(t)

	first, second := make(chan error, 1), make(chan error, 1)
	go func() { first <- c.Sync(context.Background(), s.add("ns/pod/a")) }()
	waitSnapshots(t, s, 1)
	go func() { second <- c.Sync(context.Background(), s.add("ns/pod/b")) }()
	waitQueued(t, c, 1)
	closed := make(chan error, 1)
	go func() { closed <- c.Close() }()
	release()
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	// Close completed the Syncs that were waiting.
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if err := <-second; err != nil {
		t.Fatal(err)
	}
	if err := c.Sync(context.Background(), s.add("ns/pod/c")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Sync after Close: %v, want ErrClosed", err)
	}
	if err := c.Sync(context.Background(), 2); err != nil {
		t.Fatalf("Sync of a generation made durable before Close: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	st, err := Read(path)
	if err != nil || st.GetGeneration() != 2 {
		t.Fatalf("file at generation %d (%v), want 2", st.GetGeneration(), err)
	}
}

func TestCommitterCloseReportsFailedWrite(t *testing.T) {
	s := &store{}
	c := NewCommitter(filepath.Join(t.TempDir(), "missing", "ck"), s.snapshot)
	if err := c.Sync(context.Background(), 0); err != nil {
		t.Fatalf("Sync(0) needs no write: %v", err)
	}
	if err := c.Sync(context.Background(), s.add("ns/pod/a")); err == nil {
		t.Fatal("Sync into a missing directory succeeded")
	}
	if err := c.Close(); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Close: %v, want the last write's error", err)
	}
}

// A Committer never replaces a file it cannot read: the host may have been
// started over a damaged checkpoint by mistake.
func TestCommitterRefusesToReplaceCorruptFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ck")
	bad := mustEncode(t, sampleState(3, 1, 1))
	bad[40] ^= 4
	if err := os.WriteFile(path, bad, 0o600); err != nil {
		t.Fatal(err)
	}
	s := &store{}
	c := NewCommitter(path, s.snapshot)
	defer c.Close()
	err := c.Sync(context.Background(), s.add("ns/pod/a"))
	var ce *CorruptError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "refusing to replace "+path) {
		t.Fatalf("got %v, want a refusal wrapping a CorruptError", err)
	}
	if got, _ := os.ReadFile(path); string(got) != string(bad) {
		t.Fatal("the damaged file was modified")
	}
	// Once an operator moved it aside, the next Sync writes.
	if err := os.Rename(path, path+".bad"); err != nil {
		t.Fatal(err)
	}
	if err := c.Sync(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	testkit.OnlyFiles(t, dir, "ck", "ck.bad")
}

func TestCommitterRemovesStaleTemporaryFiles(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{".ck.123.tmp", ".ck.456.tmp", ".other.1.tmp", "ck.bad", "ck.tmp"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s := &store{}
	c := NewCommitter(filepath.Join(dir, "ck"), s.snapshot)
	defer c.Close()
	if err := c.Sync(context.Background(), s.add("ns/pod/a")); err != nil {
		t.Fatal(err)
	}
	testkit.OnlyFiles(t, dir, ".other.1.tmp", "ck", "ck.bad", "ck.tmp")
}

func TestCommitterStampsGenerationAndTime(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ck")
	start := time.Now()
	c := NewCommitter(path, func() (*State, uint64) { return &State{Generation: 1}, 42 })
	defer c.Close()
	if err := c.Sync(context.Background(), 42); err != nil {
		t.Fatal(err)
	}
	st, err := Read(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.GetGeneration() != 42 {
		t.Fatalf("generation %d, want 42", st.GetGeneration())
	}
	if w := time.Unix(0, st.GetWrittenUnixNano()); w.Before(start) || w.After(time.Now()) {
		t.Fatalf("written at %v, not during the test", w)
	}
}

// Asking for a generation the state has not reached is a caller bug: it
// gets an error rather than a write loop or a hang.
func TestCommitterFutureGeneration(t *testing.T) {
	s := &store{}
	c := NewCommitter(filepath.Join(t.TempDir(), "ck"), s.snapshot)
	defer c.Close()
	gen := s.add("ns/pod/a")
	err := c.Sync(context.Background(), gen+10)
	if err == nil || !strings.Contains(err.Error(), "has not reached") {
		t.Fatalf("got %v", err)
	}
	if err := c.Sync(context.Background(), gen); err != nil {
		t.Fatal(err)
	}
}

func TestCommitterNilSnapshot(t *testing.T) {
	c := NewCommitter(filepath.Join(t.TempDir(), "ck"), func() (*State, uint64) { return nil, 1 })
	defer c.Close()
	if err := c.Sync(context.Background(), 1); err == nil || !strings.Contains(err.Error(), "nil State") {
		t.Fatalf("got %v", err)
	}
}

// Close writes changes that nobody synced, and only if there are any.
func TestCommitterCloseFlushes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ck")
	s := &store{}
	c := NewCommitter(path, s.snapshot)
	if err := c.Sync(context.Background(), s.add("ns/pod/a")); err != nil {
		t.Fatal(err)
	}
	s.add("ns/pod/unsynced") // a change no one waits for
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	st, err := Read(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.GetGeneration() != 2 || !workloads(st)["ns/pod/unsynced"] {
		t.Fatalf("after Close the file is at generation %d with %v", st.GetGeneration(), workloads(st))
	}

	// Nothing changed: Close writes nothing.
	before, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	c = NewCommitter(path, s.snapshot)
	if err := c.Sync(context.Background(), s.add("ns/pod/b")); err != nil {
		t.Fatal(err)
	}
	synced, _ := os.Stat(path)
	if os.SameFile(before, synced) {
		t.Fatal("Sync did not replace the file")
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if after, _ := os.Stat(path); !os.SameFile(synced, after) {
		t.Fatal("Close rewrote an unchanged state")
	}
}
