package pluginmanager_test

import (
	"flag"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/wasmlet/wasmlet/host/internal/leakcheck"
	"github.com/wasmlet/wasmlet/host/internal/testenv"
	"github.com/wasmlet/wasmlet/host/internal/testplugin"
)

var long = flag.Bool("long", false, "run the long variants of the churn tests")

// TestChurn creates and removes 1,000 plugin sockets (10,000 with -long), in
// rounds of 100 at once, and checks that every one was registered and
// deregistered, and that goroutines, file descriptors and heap come back
// near where they started.
func TestChurn(t *testing.T) {
	total := 1000
	if *long {
		total = 10000
	}
	const batch = 100
	e := start(t, map[string]string{"customhandler": "guests/customhandler"})
	round := func(r int) time.Duration {
		start := time.Now()
		plugins := e.startExamples(t, batch, r, func(i int) string { return filepath.Join(fmt.Sprintf("c%d", i%7), fmt.Sprintf("p%d-%d.sock", r, i)) })
		for _, p := range plugins {
			if s := p.Expect(t, 20*time.Second); !s.Registered {
				t.Fatalf("round %d: %s: %+v", r, p.Path, s)
			}
		}
		took := time.Since(start)
		for _, p := range plugins {
			p.Stop()
		}
		deadline := time.Now().Add(20 * time.Second)
		for len(e.pm.Plugins()) > 0 {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: %d plugins still known after their sockets went", r, len(e.pm.Plugins()))
			}
			time.Sleep(5 * time.Millisecond)
		}
		return took
	}
	// Warm up: gRPC, and the handler's instance pool, grown to its most and
	// each instance's linear memory (on the Go heap, bounded by its memory
	// limit) grown with use; one round did not always get there, and 8 MiB
	// more Wasm memory is not a leak.
	round(-2)
	round(-1)
	base := leakcheck.Take()
	var slowest time.Duration
	for r := 0; r < total/batch; r++ {
		slowest = max(slowest, round(r))
	}
	if n := len(e.pm.RegisteredSockets()); n != 0 {
		t.Fatalf("%d registrations left in the actual state", n)
	}
	t.Logf("%d plugins registered and deregistered; slowest round of %d took %v", total, batch, slowest)
	leakcheck.Check(t, "plugin churn", base, leakcheck.Bounds{Goroutines: 10, FDs: 10, HeapBytes: 8 << 20})
}

// TestForgetsSocketsThatNeverRegistered: what plugins said of themselves is
// dropped when their sockets go, registered or not (it used to be kept for
// every socket that never registered).
func TestForgetsSocketsThatNeverRegistered(t *testing.T) {
	e := start(t, map[string]string{"customhandler": "guests/customhandler"})
	var plugins []*testplugin.Registrant
	for i := range 20 {
		info := example
		info.Name = fmt.Sprintf("example-%d", i)
		if i%2 == 0 {
			info.Type = "NoHandlerForThis" // told there is none, retried, never registered
		}
		plugins = append(plugins, testplugin.StartRegistrant(t, filepath.Join(e.regDir, fmt.Sprintf("p%d.sock", i)), info))
	}
	for _, p := range plugins {
		testenv.Eventually(t, p.Path+" to be asked who it is", func() bool { return p.GetInfos() > 0 })
	}
	for _, p := range plugins {
		p.Stop()
	}
	seen := e.pm.SeenCount
	for deadline := time.Now().Add(20 * time.Second); seen() != 0 || len(e.pm.Plugins()) != 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after every socket went: %d plugins listed, %d GetInfo answers kept", len(e.pm.Plugins()), seen())
		}
	}
}
