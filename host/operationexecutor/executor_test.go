package operationexecutor

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
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
	wakes := make(chan struct{}, 100)
	e := New(Config{BackoffInitial: 40 * time.Millisecond, BackoffMax: 100 * time.Millisecond,
		Wake: func() { wakes <- struct{}{} }})
	fail := func(context.Context) error { return errors.New("boom") }
	var gaps []time.Duration
	for i := 0; i < 4; i++ {
		for !e.Run("a", 1, "register", fail) {
			time.Sleep(time.Millisecond)
		}
		e.Wait()
		st, _ := e.Status("a")
		gaps = append(gaps, st.NextRetry.Sub(st.LastFailed))
		if st.Failures != i+1 || st.LastError == nil {
			t.Fatalf("status after failure %d: %+v", i+1, st)
		}
	}
	want := []time.Duration{40, 80, 100, 100}
	for i := range want {
		if gaps[i] != want[i]*time.Millisecond {
			t.Fatalf("backoffs %v, want %v ms", gaps, want)
		}
	}
	// The backoff timer wakes the reconciler.
	deadline := time.After(10 * time.Second)
	for n := 0; n < 5; {
		select {
		case <-wakes:
			n++
		case <-deadline:
			t.Fatalf("only %d wakes", n)
		}
	}
	// Still backing off for generation 1...
	for !e.Run("a", 1, "register", fail) {
		time.Sleep(time.Millisecond)
	}
	e.Wait()
	// (Only a run that both started and ended inside the backoff window
	// proves anything: a machine that stalls past it makes the run fair.)
	st, _ := e.Status("a")
	if ran := e.Run("a", 1, "register", fail); ran && time.Now().Before(st.NextRetry) {
		t.Fatal("ran during backoff")
	} else if ran {
		e.Wait()
	}
	// ...but a recreated socket (generation 2) starts clean.
	if !e.Run("a", 2, "register", func(context.Context) error { return nil }) {
		t.Fatal("new generation held up by the old one's backoff")
	}
	e.Wait()
	if st, _ := e.Status("a"); st.Failures != 0 || !st.NextRetry.IsZero() {
		t.Fatalf("status %+v", st)
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

func TestWaitingUntilReleased(t *testing.T) {
	e := New(Config{BackoffInitial: time.Hour})
	e.Run("a", 1, "register", func(context.Context) error { return &Waiting{Reason: "no handler"} })
	e.Wait()
	st, _ := e.Status("a")
	if st.Waiting != "no handler" || st.Failures != 0 {
		t.Fatalf("status %+v", st)
	}
	if e.Run("a", 1, "register", func(context.Context) error { return nil }) {
		t.Fatal("waiting operation ran before release")
	}
	if !e.Release() {
		t.Fatal("release found nothing waiting")
	}
	if !e.Run("a", 1, "register", func(context.Context) error { return nil }) {
		t.Fatal("released operation did not run")
	}
	e.Wait()
	e.Forget("a")
	if _, ok := e.Status("a"); ok {
		t.Fatal("forgotten key still known")
	}
}
