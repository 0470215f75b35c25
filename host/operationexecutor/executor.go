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
//     nothing waits for the next periodic resync.
package operationexecutor

import (
	"context"
	"errors"
	"sync"
	"time"
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
}

// Waiting is the error of an operation that cannot proceed until something
// outside it changes (a handler module for the plugin's type arrives). It does
// not count as a failure: no backoff, and the operation is not retried until
// Release.
type Waiting struct{ Reason string }

func (w *Waiting) Error() string { return w.Reason }

// Status is what the executor knows of one socket's operations.
type Status struct {
	Running    string // name of the running operation, if any
	Generation uint64
	Failures   int
	LastError  error
	LastFailed time.Time
	NextRetry  time.Time // zero when not backing off
	Waiting    string    // why the operation waits, if it does
}

type state struct {
	Status
	timer *time.Timer
}

// Executor runs operations keyed by socket path. It is safe for concurrent use.
type Executor struct {
	cfg Config
	mu  sync.Mutex
	ops map[string]*state
	wg  sync.WaitGroup
}

func New(cfg Config) *Executor {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.BackoffInitial <= 0 {
		cfg.BackoffInitial = 500 * time.Millisecond
	}
	if cfg.BackoffMax < cfg.BackoffInitial {
		cfg.BackoffMax = cfg.BackoffInitial
	}
	if cfg.Wake == nil {
		cfg.Wake = func() {}
	}
	return &Executor{cfg: cfg, ops: map[string]*state{}}
}

// Run starts op for key unless an operation for key is already running, or
// the key is backing off or waiting (for this generation). It reports whether
// op was started. gen identifies the socket's generation: a new one clears the
// backoff.
func (e *Executor) Run(key string, gen uint64, name string, op func(ctx context.Context) error) bool {
	e.mu.Lock()
	s := e.ops[key]
	if s == nil {
		s = &state{}
		e.ops[key] = s
	}
	if s.Running != "" {
		e.mu.Unlock()
		return false
	}
	if s.Generation != gen {
		// A new socket at this path: its predecessor's failures are not its own.
		s.stopTimer()
		s.Status = Status{Generation: gen}
	}
	if s.Waiting != "" || time.Now().Before(s.NextRetry) {
		e.mu.Unlock()
		return false
	}
	s.Running = name
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
	if s == nil || s.Generation != gen {
		return // forgotten, or a newer generation took over meanwhile
	}
	s.Running = ""
	var w *Waiting
	switch {
	case err == nil:
		s.stopTimer()
		s.Status = Status{Generation: gen}
	case errors.As(err, &w):
		s.Waiting = w.Reason
		s.LastError = err
	default:
		s.Failures++
		s.LastError, s.LastFailed = err, time.Now()
		d := e.cfg.BackoffInitial
		for i := 1; i < s.Failures && d < e.cfg.BackoffMax; i++ {
			if d > e.cfg.BackoffMax/2 { // (doubling could overflow)
				d = e.cfg.BackoffMax
				break
			}
			d *= 2
		}
		d = min(d, e.cfg.BackoffMax)
		s.NextRetry = s.LastFailed.Add(d)
		s.stopTimer()
		s.timer = time.AfterFunc(d, e.cfg.Wake)
	}
}

func (s *state) stopTimer() {
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
}

// Release lets every waiting operation run again (something they were
// waiting for may have arrived). It reports whether any was waiting.
func (e *Executor) Release() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	any := false
	for _, s := range e.ops {
		if s.Waiting != "" {
			s.Waiting = ""
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
	if s := e.ops[key]; s != nil && s.Running == "" {
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
		if s.Running == "" && !keep(k) {
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
	return s.Status, true
}

// IsRunning reports whether an operation for key is running.
func (e *Executor) IsRunning(key string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := e.ops[key]
	return s != nil && s.Running != ""
}

// Wait blocks until every running operation has finished.
func (e *Executor) Wait() { e.wg.Wait() }
