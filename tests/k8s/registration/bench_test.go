package registration

import (
	"fmt"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/wasmlet/wasmlet/internal/testkit"
)

// BenchmarkRegistration50: 50 upstream example plugin processes each create
// their registration socket at once; the figure is the time from a socket
// being created to its plugin hearing NotifyRegistrationStatus(true), as
// the plugin measures it, reported as p50-ms and p99-ms over every plugin
// of the run, all-ms, the median time until the last of the 50 heard, and
// manager-cpu-ms, the median CPU time this process (the manager) used in a
// round, from the sockets' creation to the last status.
// One round runs before the measured ones (new connections, first
// instances); each round starts with no plugin registered.
//
//	manager=wasmlet  a wasmlet node from the bundled plugins.toml, the
//	                 customhandler module deciding
//	manager=kubelet  the kubelet's own plugin manager, which reconciles
//	                 once a second, with a Go handler that decides alike
//	manager=wasmlet/held=2/pool_max=N
//	                 wasmlet with a handler module (badhandler) whose
//	                 register does not return for 2 of the plugins until
//	                 the round is over (or the 2 s call deadline): the
//	                 figures are those of the 48 others; pool_max=2 is the
//	                 base pool alone, pool_max=8 the default
func BenchmarkRegistration50(b *testing.B) {
	b.Run("manager=wasmlet", func(b *testing.B) {
		w := startWasmlet(b, bundledConfig(b), bundledModules, nil)
		benchRegistration(b, w.registry, 0, w.registered, nil)
	})
	b.Run("manager=kubelet", func(b *testing.B) {
		k := startKubelet(b)
		benchRegistration(b, k.registry, 0, k.handler.registered, nil)
	})
	for _, poolMax := range []int{2, 8} {
		b.Run(fmt.Sprintf("manager=wasmlet/held=2/pool_max=%d", poolMax), func(b *testing.B) {
			// Quarantine is out of the way: the held calls' faults (at
			// the deadline) are not the point.
			w, release := startHeld(b, "", fmt.Sprintf("pool_size = 2\npool_max = %d\nquarantine_after = 1000", poolMax))
			b.Cleanup(func() { release(true) })
			benchRegistration(b, w.registry, 2, w.registered, release)
		})
	}
}

// benchRegistration runs rounds of fleetSize plugins registering at once
// in registry, the first held of them named "hold-*" (measured not), the
// others "ok-*"; registered says how many plugins the manager holds, and
// release lets the held calls return, or not.
func benchRegistration(b *testing.B, registry string, held int, registered func() int, release func(bool)) {
	f := plugins(b)
	var lat, all, cpu []time.Duration
	round := 0
	run := func() {
		round++
		names := make([]string, fleetSize)
		for i := range names {
			prefix := "ok"
			if i < held {
				prefix = "hold"
			}
			names[i] = fmt.Sprintf("%s-r%d-%d", prefix, round, i)
		}
		cpu0 := processCPU(b)
		f.serve(b, registry, 0, names)
		var last time.Duration
		for i, name := range names[held:] {
			s := f.status(b, held+i, name)
			if !s.registered {
				b.Fatalf("plugin %s: not registered: %q", name, s.reason)
			}
			lat = append(lat, s.after)
			last = max(last, s.after)
		}
		all = append(all, last)
		cpu = append(cpu, processCPU(b)-cpu0)
		b.StopTimer()
		if release != nil {
			// The held plugins register too, so that no call of this
			// round is left running in the next.
			release(true)
			for i, name := range names[:held] {
				f.status(b, i, name)
			}
			release(false)
		}
		f.stop(b, fleetSize)
		testkit.Eventually(b, "every plugin to be deregistered", func() bool { return registered() == 0 })
		b.StartTimer()
	}
	run() // warm-up
	lat, all, cpu = lat[:0], all[:0], cpu[:0]
	for b.Loop() {
		run()
	}
	slices.Sort(lat)
	slices.Sort(all)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(lat[len(lat)/2]), "p50-ms")
	b.ReportMetric(ms(lat[len(lat)*99/100]), "p99-ms")
	b.ReportMetric(ms(all[len(all)/2]), "all-ms")
	slices.Sort(cpu)
	b.ReportMetric(ms(cpu[len(cpu)/2]), "manager-cpu-ms")
}

// processCPU is the CPU time this process (the manager under test, and
// the harness's reading of the plugins' statuses) has used: a round's
// share says how much of the 2 cores' time the manager took, and how much
// was left to the 50 plugin processes and the kernel.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
