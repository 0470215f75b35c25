// Package backoff is wasmlet's one retry delay: after the first failure in a
// row wait Initial, after each further one twice as long, never more than
// Max; a success starts over. The plugin manager's operation executor, the
// device sources and the Kubernetes bridge all retry this way. Who owns a
// backoff (a socket's generation, a source, a kubelet) stays with the
// caller; this package only counts and computes, on a clock the caller can
// replace in tests.
package backoff

import (
	"time"

	"k8s.io/utils/clock"
)

// Delay is the wait after the n-th failure in a row (n ≥ 1): initial doubled
// n-1 times, capped at max. It does not overflow, however large n and max
// are. A max below initial is treated as initial.
func Delay(initial, max time.Duration, n int) time.Duration {
	if max < initial {
		max = initial
	}
	d := initial
	for i := 1; i < n && d < max; i++ {
		if d > max/2 {
			return max
		}
		d *= 2
	}
	return min(d, max)
}

// Backoff counts failures in a row and says until when to wait. It is not
// safe for concurrent use: its owner guards it.
type Backoff struct {
	initial, max time.Duration
	clock        clock.PassiveClock
	failures     int
	until        time.Time
}

// New returns a backoff between initial and max (a max below initial is
// initial) that reads the time from clk, or from the real clock when clk is
// nil.
func New(initial, max time.Duration, clk clock.PassiveClock) *Backoff {
	if clk == nil {
		clk = clock.RealClock{}
	}
	return &Backoff{initial: initial, max: max, clock: clk}
}

// Fail records one more failure and returns how long to wait before the
// next attempt.
func (b *Backoff) Fail() time.Duration {
	b.failures++
	d := Delay(b.initial, b.max, b.failures)
	b.until = b.clock.Now().Add(d)
	return d
}

// Reset forgets the failures: the next one waits initial again.
func (b *Backoff) Reset() { b.failures, b.until = 0, time.Time{} }

// Skip ends the current wait now but keeps the count: what the caller was
// waiting for may have changed, and if the next attempt fails too, the wait
// after it goes on growing.
func (b *Backoff) Skip() { b.until = time.Time{} }

// Failures is the number of failures in a row.
func (b *Backoff) Failures() int { return b.failures }

// Until is when the current wait ends; zero when there is none.
func (b *Backoff) Until() time.Time { return b.until }

// Waiting reports whether the current wait has not ended yet.
func (b *Backoff) Waiting() bool { return b.clock.Now().Before(b.until) }
