package reconciler

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/wasmlet/wasmlet/host/pluginmanager/cache"
)

// fakeExecutor records what the reconciler asks for and runs nothing; busy
// keys refuse to start, as a key with an operation running or backing off
// does in the real executor.
type fakeExecutor struct {
	mu     sync.Mutex
	runs   []string
	busy   map[string]bool
	pruned []string
	passes chan struct{}
}

func (f *fakeExecutor) Run(key string, gen uint64, name string, _ func(context.Context) error) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.busy[key] {
		return false
	}
	f.runs = append(f.runs, fmt.Sprintf("%s %s#%d", name, key, gen))
	return true
}

func (f *fakeExecutor) Prune(keep func(string) bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pruned = nil
	for _, k := range []string{"/r/a", "/r/b", "/r/c", "/r/gone"} {
		if !keep(k) {
			f.pruned = append(f.pruned, k)
		}
	}
	if f.passes != nil {
		f.passes <- struct{}{}
	}
}

func (f *fakeExecutor) take() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.runs
	f.runs = nil
	sort.Strings(out)
	return out
}

// noOps hands out operations that are never run (the fake executor runs none).
type noOps struct{}

func (noOps) Register(cache.DesiredPlugin) func(context.Context) error      { return nil }
func (noOps) Deregister(cache.RegisteredPlugin) func(context.Context) error { return nil }

func TestPassDeregistersThenRegistersWhatDiffers(t *testing.T) {
	desired, actual := cache.NewDesiredState(), cache.NewActualState()
	exec := &fakeExecutor{}
	var observed int
	r := New(Config{Desired: desired, Actual: actual, Executor: exec, Ops: noOps{}, Observe: func(time.Duration) { observed++ }})

	a := desired.Add("/r/a", time.Now())
	r.Reconcile()
	if got := exec.take(); fmt.Sprint(got) != fmt.Sprintf("[register /r/a#%d]", a.Generation) {
		t.Fatalf("a new socket: %v", got)
	}
	// Registered: nothing to do.
	actual.Add(cache.RegisteredPlugin{SocketPath: "/r/a", Generation: a.Generation})
	r.Reconcile()
	if got := exec.take(); len(got) != 0 {
		t.Fatalf("nothing changed, yet %v", got)
	}
	// Recreated at the same path: the old registration is undone first; the
	// new socket waits until it is (the path is still registered).
	a2 := desired.Add("/r/a", time.Now())
	r.Reconcile()
	if got := exec.take(); fmt.Sprint(got) != fmt.Sprintf("[deregister /r/a#%d]", a.Generation) {
		t.Fatalf("a recreated socket: %v", got)
	}
	actual.Remove("/r/a", a.Generation)
	r.Reconcile()
	if got := exec.take(); fmt.Sprint(got) != fmt.Sprintf("[register /r/a#%d]", a2.Generation) {
		t.Fatalf("after the old registration went: %v", got)
	}
	// A registered socket that went is deregistered; one whose operation
	// is busy is left for a later pass.
	actual.Add(cache.RegisteredPlugin{SocketPath: "/r/gone", Generation: 99})
	b := desired.Add("/r/b", time.Now())
	exec.busy = map[string]bool{"/r/b": true}
	r.Reconcile()
	if got := exec.take(); fmt.Sprint(got) != fmt.Sprintf("[deregister /r/gone#99 register /r/a#%d]", a2.Generation) {
		t.Fatalf("%v", got)
	}
	exec.busy = nil
	r.Reconcile()
	if got := exec.take(); fmt.Sprint(got) != fmt.Sprintf("[deregister /r/gone#99 register /r/a#%d register /r/b#%d]", a2.Generation, b.Generation) {
		t.Fatalf("%v", got)
	}
	// The executor forgets only keys neither desired nor registered.
	if fmt.Sprint(exec.pruned) != "[/r/c]" {
		t.Fatalf("pruned %v, want only the unknown /r/c", exec.pruned)
	}
	if observed != 6 {
		t.Fatalf("observed %d passes, made 6", observed)
	}
}

func TestRunPassesOnTriggerAndOnResync(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Unix(1000, 0))
	exec := &fakeExecutor{passes: make(chan struct{}, 10)}
	rescans := make(chan struct{}, 10)
	r := New(Config{Desired: cache.NewDesiredState(), Actual: cache.NewActualState(), Executor: exec, Ops: noOps{},
		Resync: time.Minute, Clock: clk, Rescan: func(context.Context) { rescans <- struct{}{} }})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx) }()
	pass := func(what string) {
		t.Helper()
		select {
		case <-exec.passes:
		case <-time.After(10 * time.Second):
			t.Fatalf("no pass %s", what)
		}
	}
	pass("at start")
	r.Trigger()
	pass("on a trigger")
	select {
	case <-rescans:
		t.Fatal("rescanned before the resync period")
	default:
	}
	// The resync: a rescan, then a pass.
	if !clk.HasWaiters() {
		t.Fatal("no resync ticker once Run made its first pass")
	}
	clk.Step(time.Minute)
	pass("on resync")
	select {
	case <-rescans:
	default:
		t.Fatal("the resync pass did not rescan first")
	}
	cancel()
	<-done
}

func TestTriggersMerge(t *testing.T) {
	r := New(Config{})
	for range 100 {
		r.Trigger() // never blocks, with nobody running passes
	}
	if len(r.trigger) != 1 {
		t.Fatalf("%d triggers pending, want them merged into 1", len(r.trigger))
	}
}
