package devicemanager_test

import (
	"context"
	"flag"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/wasmlet/wasmlet/host/devicemanager"
	"github.com/wasmlet/wasmlet/host/internal/leakcheck"
	"github.com/wasmlet/wasmlet/host/internal/testplugin"
)

var long = flag.Bool("long", false, "run the long variants of the churn tests")

// TestPluginCrashRestartChurn crashes and restarts a device plugin 100 times
// (1,000 with -long), alternating between a new socket and the same socket
// path, with an allocation held throughout and allocations made in between.
// At the end the resource is served by the last plugin with all its devices
// healthy, the held allocation is intact, and goroutines, file descriptors and
// heap are back near where they started.
func TestPluginCrashRestartChurn(t *testing.T) {
	cycles := 100
	if *long {
		cycles = 1000
	}
	e := start(t, "", devicemanager.Config{GracePeriod: time.Hour, Logger: quiet})
	ctx := context.Background()
	p := e.plugin("gpu-0.sock", "example.com/gpu", testplugin.Devices("gpu", 8))
	e.resource("example.com/gpu", healthyCount(8))
	held, err := e.m.Allocate(ctx, req("held", "example.com/gpu", 2))
	if err != nil {
		t.Fatal(err)
	}
	cycle := func(i int) {
		p.Stop()
		e.resource("example.com/gpu", func(r devicemanager.ResourceStatus) bool { return !r.Connected && r.Healthy == 0 })
		name := "gpu-0.sock"
		if i%2 == 1 {
			name = fmt.Sprintf("gpu-%d.sock", i)
		}
		p = e.plugin(name, "example.com/gpu", testplugin.Devices("gpu", 8))
		e.resource("example.com/gpu", healthyCount(8))
		a, err := e.m.Allocate(ctx, req(fmt.Sprintf("c%d", i), "example.com/gpu", 1))
		if err != nil {
			t.Fatalf("cycle %d: %v", i, err)
		}
		for _, id := range a.DeviceIDs {
			for _, h := range held.DeviceIDs {
				if id == h {
					t.Fatalf("cycle %d: device %s given while held", i, id)
				}
			}
		}
		if _, err := e.m.Release(ctx, a.Workload, ""); err != nil {
			t.Fatal(err)
		}
	}
	cycle(0) // warm up
	base := leakcheck.Take()
	for i := 1; i <= cycles; i++ {
		cycle(i)
	}
	r := e.resource("example.com/gpu", healthyCount(8))
	if r.Provider != "plugin:"+filepath.Join(e.dir, filepath.Base(p.Path)) || r.Allocated != 2 {
		t.Fatalf("final state %+v", r)
	}
	if got := e.m.Allocations(); len(got) != 1 || got[0].Workload != held.Workload {
		t.Fatalf("allocations %+v", got)
	}
	leakcheck.Check(t, fmt.Sprintf("%d device plugin crash/restart cycles", cycles), base,
		leakcheck.Bounds{Goroutines: 10, FDs: 10, HeapBytes: 8 << 20})
}
