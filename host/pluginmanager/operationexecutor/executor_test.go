package operationexecutor

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"
)

func TestOneOperationPerKey(t *testing.T) {
	e := New(Config{})
	release := make(chan struct{})
	var ran atomic.Int32
	op := func(context.Context) error { ran.Add(1); <-release; return nil }
	if !e.Run("a", 1, "register", op) {
		t.Fatal("first operation not started")
	}
	if e.Run("a", 1, "deregister", op) {
		t.Fatal("second operation on the same key started while the first runs")
	}
	if !e.Run("b", 1, "register", op) {
		t.Fatal("an operation on another key was held up")
	}
	close(release)
	e.Wait()
	if ran.Load() != 2 {
		t.Fatalf("%d operations ran", ran.Load())
	}
}

func TestBackoffGrowsCapsAndResetsOnNewGeneration(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Unix(1000, 0))
	var wakes atomic.Int32
	e := New(Config{BackoffInitial: 40 * time.Millisecond, BackoffMax: 100 * time.Millisecond, Clock: clk,
		Wake: func() { wakes.Add(1) }})
	fail := func(context.Context) error { return errors.New("boom") }
	for i, want := range []time.Duration{40, 80, 100, 100} {
		if !e.Run("a", 1, "register", fail) {
			t.Fatalf("failure %d: the operation did not start once the backoff ended", i+1)
		}
		e.Wait()
		st, _ := e.Status("a")
		if st.Failures != i+1 || st.LastError == nil || st.NextRetry.Sub(st.LastFailed) != want*time.Millisecond {
			t.Fatalf("after failure %d: %+v; want a %v ms backoff", i+1, st, want)
		}
		// Not a moment before the backoff ends...
		clk.Step(want*time.Millisecond - 1)
		if e.Run("a", 1, "register", fail) {
			t.Fatalf("failure %d: ran during the backoff", i+1)
		}
		// ...and when it ends, the executor wakes the reconciler.
		before := wakes.Load()
		clk.Step(1)
		if wakes.Load() != before+1 {
			t.Fatalf("failure %d: the end of the backoff did not wake the reconciler", i+1)
		}
	}
	// Backing off for generation 1...
	e.Run("a", 1, "register", fail)
	e.Wait()
	if e.Run("a", 1, "register", fail) {
		t.Fatal("ran during backoff")
	}
	// ...but a recreated socket (generation 2) starts clean.
	if !e.Run("a", 2, "register", func(context.Context) error { return nil }) {
		t.Fatal("new generation held up by the old one's backoff")
	}
	e.Wait()
	if st, _ := e.Status("a"); st.Failures != 0 || !st.NextRetry.IsZero() || st.LastError != nil {
		t.Fatalf("status %+v", st)
	}
	// The old generation's timer is gone with it: no stray wake.
	before := wakes.Load()
	clk.Step(time.Hour)
	if wakes.Load() != before {
		t.Fatal("a forgotten backoff woke the reconciler")
	}
}

func TestTimeout(t *testing.T) {
	e := New(Config{Timeout: 30 * time.Millisecond})
	var err atomic.Value
	e.Run("a", 1, "register", func(ctx context.Context) error {
		<-ctx.Done()
		err.Store(ctx.Err())
		return ctx.Err()
	})
	e.Wait()
	if err.Load() != context.DeadlineExceeded {
		t.Fatalf("operation ended with %v", err.Load())
	}
}

func TestWaitingBacksOffUntilReleased(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Unix(1000, 0))
	e := New(Config{BackoffInitial: time.Second, BackoffMax: time.Hour, Clock: clk})
	wait := func(context.Context) error { return &Waiting{For: "a handler", Err: errors.New("no handler")} }
	e.Run("a", 1, "register", wait)
	e.Wait()
	st, _ := e.Status("a")
	if st.Waiting != "a handler" || st.LastError.Error() != "no handler" || st.Failures != 1 || !st.NextRetry.Equal(clk.Now().Add(time.Second)) {
		t.Fatalf("status %+v", st)
	}
	if e.Run("a", 1, "register", wait) {
		t.Fatal("waiting operation ran during its backoff")
	}
	// Without a release it retries when the backoff ends, and backs off further.
	clk.Step(time.Second)
	if !e.Run("a", 1, "register", wait) {
		t.Fatal("waiting operation did not retry after its backoff")
	}
	e.Wait()
	if st, _ := e.Status("a"); st.Failures != 2 || st.NextRetry.Sub(st.LastFailed) != 2*time.Second {
		t.Fatalf("status %+v", st)
	}
	// Release ends the wait at once.
	if !e.Release() {
		t.Fatal("release found nothing waiting")
	}
	if !e.Run("a", 1, "register", func(context.Context) error { return nil }) {
		t.Fatal("released operation did not run")
	}
	e.Wait()
	if st, _ := e.Status("a"); st.Failures != 0 || st.Waiting != "" || !st.NextRetry.IsZero() {
		t.Fatalf("status after success %+v", st)
	}
	e.Forget("a")
	if _, ok := e.Status("a"); ok {
		t.Fatal("forgotten key still known")
	}
}

// A release that comes while the waiting operation still runs (the handler
// arrived after the operation looked for it) is not lost.
func TestReleaseWhileRunning(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Unix(1000, 0))
	e := New(Config{BackoffInitial: time.Hour, Clock: clk})
	looked := make(chan struct{})
	proceed := make(chan struct{})
	e.Run("a", 1, "register", func(context.Context) error {
		close(looked)
		<-proceed
		return &Waiting{For: "a handler", Err: errors.New("no handler")}
	})
	<-looked
	if e.Release() {
		t.Fatal("release reported a waiting operation that is still running")
	}
	close(proceed)
	e.Wait()
	if !e.Run("a", 1, "register", func(context.Context) error { return nil }) {
		t.Fatal("the release during the run was lost: the operation backs off")
	}
	e.Wait()
	// A failure that is not waiting ignores a release during its run.
	e.Run("b", 1, "register", func(context.Context) error { e.Release(); return errors.New("boom") })
	e.Wait()
	if e.Run("b", 1, "register", func(context.Context) error { return nil }) {
		t.Fatal("an ordinary failure skipped its backoff")
	}
}
