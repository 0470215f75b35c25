package devicesource_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/wasmlet/wasmlet/guests/build"
	"github.com/wasmlet/wasmlet/host/device"
	"github.com/wasmlet/wasmlet/host/devicesource"
	"github.com/wasmlet/wasmlet/host/module"
)

// BenchmarkRediscover measures one rediscovery round trip of a running
// source: Rediscover, the module's discover (counter: n devices with NUMA
// nodes, an attribute and an environment edit each), decoding, validation,
// conversion, and the comparison with the set reported last (unchanged, so
// the device manager is not bothered).
func BenchmarkRediscover(b *testing.B) {
	for _, n := range []int{10, 1000} {
		b.Run("devices="+strconv.Itoa(n), func(b *testing.B) {
			e := newEnv(b, envConfig{noController: true})
			e.configure("ctr", module.Options{Config: map[string]string{"count": strconv.Itoa(n)}}, devicesource.Options{})
			e.mods.Install("ctr", build.Go(b, "guests/counter"))
			src, err := devicesource.NewSource(e.reg, "ctr", devicesource.Options{DiscoverInterval: -1, NoWatch: true})
			if err != nil {
				b.Fatal(err)
			}
			round := make(chan error, 1)
			devicesource.AfterRound(src, func(err error) { round <- err })
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error)
			go func() { done <- src.Watch(ctx, func([]device.Device) {}) }()
			if err := <-round; err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				src.Rediscover()
				if err := <-round; err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			cancel()
			<-done
			if got := len(src.Devices()); got != n {
				b.Fatalf("%d devices, want %d", got, n)
			}
		})
	}
}
