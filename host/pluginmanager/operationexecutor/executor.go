// Package operationexecutor runs the plugin manager's register and
// deregister operations, as the kubelet's operation executor does, with three
// differences that matter for latency:
//
//   - at most one operation runs per socket path at a time, but operations on
//     different sockets run in parallel, without a global lock;
//   - after a failure an operation on that socket waits out an exponential
//     backoff, capped; the backoff belongs to one generation of the socket and
//     is forgotten when the socket is recreated (the kubelet keys it by path
//     and keeps it, so a healthy new plugin waits out its predecessor's
//     backoff);
//   - every operation is bounded by a timeout, and the executor wakes the
//     reconciler when an operation finishes and when a backoff expires, so
//     nothing waits for the next periodic resync; an operation that failed
//     because it waits for something (a handler for the plugin's type)
//     backs off too, but Release ends its wait as soon as that may have
//     arrived.
//
// The backoff is host/internal/backoff's, timed by an injectable clock.
package operationexecutor

import (
	"context"
	"errors"
	"sync"
	"time"

	"k8s.io/utils/clock"

	"github.com/wasmlet/wasmlet/host/internal/backoff"
	"github.com/wasmlet/wasmlet/host/internal/defaults"
)

// Config tunes the executor.
type Config struct {
	// Timeout bounds each operation.
	Timeout time.Duration
	// BackoffInitial is the wait after the first failure; each further
	// failure doubles it, up to BackoffMax.
	BackoffInitial, BackoffMax time.Duration
	// Wake is called (without locks held) when an operation finishes or a
	// backoff expires: the reconciler should run.
	Wake func()
	// Clock times the backoffs; nil is the real clock.
	Clock clock.WithDelayedExecution
}

// Waiting is the error of an operation that cannot succeed until something
// outside it changes (a handler for the plugin's type arrives). It counts as
// a failure and backs off like one, but Release ends the wait at once.
type Waiting struct {
	For string // what it waits for ("a handler for plugin type ...")
	Err error  // the failure
}

func (w *Waiting) Error() string { return w.Err.Error() }
func (w *Waiting) Unwrap() error { return w.Err }

// Status is what the executor knows of one socket's operations.
type Status struct {
	Running    string // name of the running operation, if any
	Generation uint64
	Failures   int
	LastError  error
	LastFailed time.Time
	NextRetry  time.Time // zero when not backing off
	Waiting    string    // what the operation waits for, if it does
}

type state struct {
	running    string
	generation uint64
	lastError  error
	lastFailed time.Time
	waiting    string
	released   bool // Release came while the operation ran
	backoff    *backoff.Backoff
	timer      clock.Timer
}

// Executor runs operations keyed by socket path. It is safe for concurrent use.
type Executor struct {
	cfg Config
	mu  sync.Mutex
	ops map[string]*state
	wg  sync.WaitGroup
}

func New(cfg Config) *Executor {
	defaults.Positive(&cfg.Timeout, 10*time.Second)
	defaults.Positive(&cfg.BackoffInitial, 500*time.Millisecond)
	if cfg.Wake == nil {
		cfg.Wake = func() {}
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	return &Executor{cfg: cfg, ops: map[string]*state{}}
}

func (e *Executor) newState(gen uint64) *state {
	return &state{generation: gen, backoff: backoff.New(e.cfg.BackoffInitial, e.cfg.BackoffMax, e.cfg.Clock)}
}

// Run starts op for key unless an operation for key is already running, or
// the key is backing off (for this generation). It reports whether op was
// started. gen identifies the socket's generation: a new one clears the
// backoff.
func (e *Executor) Run(key string, gen uint64, name string, op func(ctx context.Context) error) bool {
	e.mu.Lock()
	s := e.ops[key]
	if s == nil {
		s = e.newState(gen)
		e.ops[key] = s
	}
	if s.running != "" {
		e.mu.Unlock()
		return false
	}
	if s.generation != gen {
		// A new socket at this path: its predecessor's failures are not its own.
		s.stopTimer()
		*s = *e.newState(gen)
	}
	if s.backoff.Waiting() {
		e.mu.Unlock()
		return false
	}
	s.running = name
	e.wg.Add(1)
	e.mu.Unlock()

	go func() {
		defer e.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), e.cfg.Timeout)
		err := op(ctx)
		cancel()
		e.finish(key, gen, err)
		e.cfg.Wake()
	}()
	return true
}

func (e *Executor) finish(key string, gen uint64, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := e.ops[key]
	if s == nil || s.generation != gen {
		return // forgotten, or a newer generation took over meanwhile
	}
	s.running = ""
	s.stopTimer()
	if err == nil {
		*s = *e.newState(gen)
		return
	}
	s.waiting = ""
	if w := (*Waiting)(nil); errors.As(err, &w) {
		s.waiting = w.For
	}
	s.lastError, s.lastFailed = err, e.cfg.Clock.Now()
	d := s.backoff.Fail()
	if s.waiting != "" && s.released {
		// What it waited for may have arrived while it ran: no wait (Run's
		// caller is woken as the operation ends).
		s.backoff.Skip()
	} else {
		s.timer = e.cfg.Clock.AfterFunc(d, e.cfg.Wake)
	}
	s.released = false
}

func (s *state) stopTimer() {
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
}

// Release ends the backoff of every waiting operation, so that it runs
// again at once (what it waits for may have arrived). It reports whether
// any was waiting.
func (e *Executor) Release() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	any := false
	for _, s := range e.ops {
		switch {
		case s.running != "":
			s.released = true
		case s.waiting != "":
			s.stopTimer()
			s.backoff.Skip()
			any = true
		}
	}
	return any
}

// Forget drops what the executor knows about key (its socket is gone for
// good). A running operation finishes, but its outcome is not recorded.
func (e *Executor) Forget(key string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if s := e.ops[key]; s != nil && s.running == "" {
		s.stopTimer()
		delete(e.ops, key)
	}
}

// Prune forgets every key that keep rejects and that has no operation
// running: sockets that are gone and fully deregistered.
func (e *Executor) Prune(keep func(key string) bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for k, s := range e.ops {
		if s.running == "" && !keep(k) {
			s.stopTimer()
			delete(e.ops, k)
		}
	}
}

// Status returns what the executor knows about key.
func (e *Executor) Status(key string) (Status, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	s, ok := e.ops[key]
	if !ok {
		return Status{}, false
	}
	return Status{Running: s.running, Generation: s.generation, Failures: s.backoff.Failures(), LastError: s.lastError,
		LastFailed: s.lastFailed, NextRetry: s.backoff.Until(), Waiting: s.waiting}, true
}

// IsRunning reports whether an operation for key is running.
func (e *Executor) IsRunning(key string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := e.ops[key]
	return s != nil && s.running != ""
}

// Wait blocks until every running operation has finished.
func (e *Executor) Wait() { e.wg.Wait() }
