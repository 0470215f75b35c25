package module

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// rss reads a field of /proc/self/status (VmRSS, VmHWM), in bytes.
func rss(t *testing.T, field string) uint64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skipf("no /proc/self/status: %v", err)
	}
	for _, line := range bytes.Split(b, []byte("\n")) {
		if v, ok := bytes.CutPrefix(line, []byte(field+":")); ok {
			kb, err := strconv.ParseUint(string(bytes.TrimSuffix(bytes.TrimSpace(v), []byte(" kB"))), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no %s in /proc/self/status", field)
	return 0
}

// recursionPeak loads three copies of recurse.wat with call depth limit
// depth, makes them fault in a loop for d (each call recurses until the
// limit, or wazero's own ceiling, stops it; each fault discards its
// instance), and returns the RSS before and at its peak, and the faults.
func recursionPeak(t *testing.T, depth uint32, d time.Duration) (before, peak uint64, faults int64) {
	var mods []*Module
	for i := range 3 {
		mods = append(mods, load(t, wat(t, "recurse"), Options{Name: fmt.Sprintf("recurse-%d", i),
			callDepth: depth, QuarantineAfter: 1 << 30, CallTimeout: 30 * time.Second}))
	}
	before = rss(t, "VmRSS")
	// Peak RSS from here on (Linux: writing 5 to clear_refs resets VmHWM).
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		t.Skipf("cannot reset the peak RSS: %v", err)
	}
	var n atomic.Int64
	var wg sync.WaitGroup
	stop := time.Now().Add(d)
	for _, m := range mods {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stop) {
				if _, err := m.Discover(context.Background()); !IsFault(err) {
					t.Errorf("%s: %v, want a fault", m.Name(), err)
					return
				}
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	return before, rss(t, "VmHWM"), n.Load()
}

// TestRecursionKeepsHostMemoryBounded (with -long): three modules that
// recurse without end, faulting in a loop for a minute, keep the host's RSS
// within 150 MB of what it was before they started. Without the call depth
// limit each fault grew wazero's native stack to its ~50 MB ceiling by
// doubling (~250 MB of host memory each); the variant without the limit
// only reports its figure.
func TestRecursionKeepsHostMemoryBounded(t *testing.T) {
	if !*long {
		t.Skip("a minute long: run with -long")
	}
	before, peak, faults := recursionPeak(t, MaxCallDepth, time.Minute)
	t.Logf("call depth limit %d: RSS %d MB before, peak %d MB (+%d MB) over %d faults in a minute",
		MaxCallDepth, before>>20, peak>>20, (peak-before)>>20, faults)
	if peak > before+150<<20 {
		t.Errorf("peak RSS %d MB is more than 150 MB above the %d MB before", peak>>20, before>>20)
	}
	before, peak, faults = recursionPeak(t, 1<<31-1, 10*time.Second)
	t.Logf("no call depth limit (wazero's ceiling): RSS %d MB before, peak %d MB (+%d MB) over %d faults in 10 s",
		before>>20, peak>>20, (peak-before)>>20, faults)
}
