package bridge_test

import (
	"testing"
	"time"
)

// BenchmarkKubeletRestart measures how long after a kubelet restart (its
// sockets deleted, kubelet.sock created again) the bridge has registered a
// source again: from the new kubelet.sock to the kubelet's Register
// handler. Reported as ms/reregistration; ns/op is the whole cycle (stop,
// cleanup, start, registration, first device set).
func BenchmarkKubeletRestart(b *testing.B) {
	e := newEnv(b, envConfig{})
	k := e.startCounter(4)
	var total time.Duration
	n := 0
	for b.Loop() {
		k.Restart()
		// A generous bound: on a loaded machine, fsync storms from other work
		// can stall socket creation for seconds.
		r := k.ExpectRegister()
		total += r.At.Sub(k.Created())
		n++
		k.WaitDevices(counter, healthy(4))
	}
	b.ReportMetric(float64(total.Microseconds())/1000/float64(n), "ms/reregistration")
}
