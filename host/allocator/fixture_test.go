package allocator_test

import (
	"fmt"

	apiresource "k8s.io/apimachinery/pkg/api/resource"

	"github.com/wasmlet/wasmlet/host/device"
)

const driver = "gpu.example.com"

var q = apiresource.MustParse

func qp(s string) *apiresource.Quantity { v := q(s); return &v }

// gpus is a pool like the gpusim example's, built in Go: whole GPUs, each
// the counter set "gpu-<i>" (memory, slices) that its own consumption and
// its partitions' share, partitions of profile 1g.10gb on the first
// partitioned GPUs, and one shared GPU whose memory claims consume.
//
//	gpu-i: type gpu, model A100 (i < n/2) or H100, index i, numa i*2/n,
//	       pcieRoot pci<i*2/n>, memory 40Gi (A100) or 80Gi (H100)
//	gpu-i-1g-j: type partition, profile 1g.10gb, parent i, same numa and pcieRoot, memory 10Gi
//	vgpu-0: type shared, allowMultipleAllocations, memory 16Gi (default 1Gi, 1Gi..16Gi by 1Gi)
func gpus(n, partitioned, parts int) ([]device.Device, []device.CounterSet) {
	devs, sets := gpuDevices(n, partitioned, parts)
	devs = append(devs, device.Device{ID: "vgpu-0", Healthy: true, AllowMultipleAllocations: true,
		Attributes: map[string]device.Attribute{"type": device.StringAttribute("shared"), "model": device.StringAttribute("A100")},
		Capacity: map[string]device.Capacity{"memory": {Value: q("16Gi"), Policy: &device.CapacityPolicy{
			Default: qp("1Gi"), Min: qp("1Gi"), Max: qp("16Gi"), Step: qp("1Gi")}}}})
	return devs, sets
}

// gpuDevices are gpus without the shared GPU: n*(1+parts) devices when
// every GPU is partitioned.
func gpuDevices(n, partitioned, parts int) ([]device.Device, []device.CounterSet) {
	var devs []device.Device
	var sets []device.CounterSet
	for i := range n {
		model, mem := "A100", "40Gi"
		if i >= n/2 {
			model, mem = "H100", "80Gi"
		}
		set := fmt.Sprintf("gpu-%d", i)
		sets = append(sets, device.CounterSet{Name: set, Counters: map[string]apiresource.Quantity{"memory": q(mem), "slices": q("16")}})
		common := func(typ string) map[string]device.Attribute {
			return map[string]device.Attribute{
				"type":          device.StringAttribute(typ),
				"model":         device.StringAttribute(model),
				"index":         device.IntAttribute(int64(i)),
				"numa":          device.IntAttribute(int64(i * 2 / n)),
				"pcieRoot":      device.StringAttribute(fmt.Sprintf("pci%d", i*2/n)),
				"uuid":          device.StringAttribute(fmt.Sprintf("GPU-%04d", i)),
				"driverVersion": device.VersionAttribute("1.2.3"),
			}
		}
		devs = append(devs, device.Device{ID: set, Healthy: true, Attributes: common("gpu"),
			Capacity:         map[string]device.Capacity{"memory": {Value: q(mem)}},
			ConsumesCounters: []device.CounterConsumption{{CounterSet: set, Counters: map[string]apiresource.Quantity{"memory": q(mem), "slices": q("16")}}}})
		if i < partitioned {
			for j := range parts {
				a := common("partition")
				a["profile"] = device.StringAttribute("1g.10gb")
				devs = append(devs, device.Device{ID: fmt.Sprintf("gpu-%d-1g-%d", i, j), Healthy: true, Attributes: a,
					Capacity: map[string]device.Capacity{"memory": {Value: q("10Gi")}},
					ConsumesCounters: []device.CounterConsumption{{CounterSet: set,
						Counters: map[string]apiresource.Quantity{"memory": q("10Gi"), "slices": q("1")}}}})
			}
		}
	}
	return devs, sets
}
