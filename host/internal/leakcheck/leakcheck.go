// Package leakcheck measures what a test leaves behind: goroutines, open file
// descriptors and live heap, so that churn tests can assert that the state
// returns near where it started.
package leakcheck

import (
	"fmt"
	"os"
	"runtime"
	"testing"
	"time"
)

// Sample is one measurement.
type Sample struct {
	Goroutines int
	FDs        int
	HeapBytes  uint64
}

func (s Sample) String() string {
	return fmt.Sprintf("%d goroutines, %d fds, %.1f MiB heap", s.Goroutines, s.FDs, float64(s.HeapBytes)/(1<<20))
}

// Take measures now, after a garbage collection.
func Take() Sample {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fds := -1
	if es, err := os.ReadDir("/proc/self/fd"); err == nil {
		fds = len(es)
	}
	return Sample{Goroutines: runtime.NumGoroutine(), FDs: fds, HeapBytes: ms.HeapAlloc}
}

// Bounds are how far above the baseline a measurement may end.
type Bounds struct {
	Goroutines int
	FDs        int
	HeapBytes  uint64
}

// Check waits (up to 10 s, for goroutines and connections winding down) until
// the state is within bounds of base, and fails the test if it never is. It
// logs both measurements, which the reliability report quotes.
func Check(t testing.TB, what string, base Sample, b Bounds) Sample {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var now Sample
	for {
		now = Take()
		ok := now.Goroutines <= base.Goroutines+b.Goroutines && now.FDs <= base.FDs+b.FDs &&
			now.HeapBytes <= base.HeapBytes+b.HeapBytes
		if ok {
			t.Logf("%s: before %v; after %v", what, base, now)
			return now
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			n := runtime.Stack(buf, true)
			t.Fatalf("%s: state did not return near its start: before %v; after %v (bounds +%d goroutines, +%d fds, +%.1f MiB)\n%s",
				what, base, now, b.Goroutines, b.FDs, float64(b.HeapBytes)/(1<<20), buf[:n])
		}
		time.Sleep(50 * time.Millisecond)
	}
}
