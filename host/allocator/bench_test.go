package allocator_test

import (
	"context"
	"slices"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	resourceapi "k8s.io/api/resource/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/dynamic-resource-allocation/structured"

	"github.com/wasmlet/wasmlet/host/allocator"
)

// BenchmarkClaimAllocation allocates one claim — two 1g.10gb partitions of
// one H100, chosen by a CEL selector and held together by a matchAttribute
// constraint — from a pool of 1,024 devices (64 GPUs, each whole and in 15
// partitions): through the allocator ("wasmlet": defaults, class check,
// allocated state, record, and the release that follows), and with the
// upstream allocator called directly on the same slices ("upstream"). The
// per-allocation p50 and p99 are reported as metrics beside ns/op.
func BenchmarkClaimAllocation(b *testing.B) {
	devs, counters := gpuDevices(64, 64, 15)
	if len(devs) != 1024 {
		b.Fatalf("%d devices", len(devs))
	}
	a := allocator.New(allocator.Config{NodeName: "node-a"})
	a.SetPool(driver, "example.com/gpu", devs, counters)
	cl := claim(b, "bench", `
requests:
- name: mig
  exactly:
    deviceClassName: gpu.example.com
    count: 2
    selectors:
    - cel:
        expression: 'device.attributes["gpu.example.com"].type == "partition" && device.attributes["gpu.example.com"].model == "H100"'
constraints:
- matchAttribute: gpu.example.com/uuid
`)
	ctx := context.Background()
	want := []string{"gpu-32-1g-0", "gpu-32-1g-1"}
	b.Run("via=wasmlet", func(b *testing.B) {
		lat := make([]time.Duration, 0, b.N)
		for b.Loop() {
			start := time.Now()
			r, err := a.Allocate(ctx, "bench", cl)
			lat = append(lat, time.Since(start))
			if err != nil || r.Devices.Results[1].Device != want[1] {
				b.Fatalf("%v %v", r, err)
			}
			a.Release("bench")
		}
		report(b, lat)
	})
	b.Run("via=upstream", func(b *testing.B) {
		sl := a.Slices()
		cache := allocator.NewCELCache()
		node := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-a"}}
		full := allocator.WithDefaults(cl)
		lat := make([]time.Duration, 0, b.N)
		for b.Loop() {
			start := time.Now()
			st := structured.AllocatedState{AllocatedDevices: sets.New[structured.DeviceID](),
				AllocatedSharedDeviceIDs: sets.New[structured.SharedDeviceID](), AggregatedCapacity: structured.NewConsumedCapacityCollection()}
			u, err := structured.NewAllocator(ctx, allocator.Features, st, defaultClasses{}, sl, cache)
			if err != nil {
				b.Fatal(err)
			}
			rs, err := u.Allocate(ctx, node, []*resourceapi.ResourceClaim{full})
			lat = append(lat, time.Since(start))
			if err != nil || len(rs) != 1 || rs[0].Devices.Results[1].Device != want[1] {
				b.Fatalf("%v %v", rs, err)
			}
		}
		report(b, lat)
	})
}

func report(b *testing.B, lat []time.Duration) {
	slices.Sort(lat)
	if len(lat) == 0 {
		return
	}
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns")
}
