// Package resourceslice converts the host's structured device model
// (host/device) to resource.k8s.io/v1: a device source's devices and shared
// counters become its driver's pool on this node, as the ResourceSlices a DRA
// driver would publish for it. The allocator (host/allocator) allocates
// from these slices; a DRA kubelet plugin would publish the same ones.
//
// A pool is its shared counter sets (when the source has any), at most 8 to
// a slice (Kubernetes reads a pool's counter sets from all its slices), and
// then its devices, at most 64 to a slice, in the source's order; the upstream
// allocator tries slices by name and devices in order, so the source's order
// is its preference. A device that is not healthy carries the taint
// UnhealthyTaint (NoSchedule): no new claim gets it unless the claim
// tolerates the taint, while the claims that hold it keep it, and its
// counters stay counted.
package resourceslice

import (
	"fmt"

	resourceapi "k8s.io/api/resource/v1"
	apiresource "k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/wasmlet/wasmlet/host/device"
)

// UnhealthyTaint is the key of the taint an unhealthy device carries.
const UnhealthyTaint = "wasmlet.dev/unhealthy"

// MaxDevices is how many devices one slice holds: resource.k8s.io/v1's
// limit for slices whose devices may have taints or consume counters.
const MaxDevices = resourceapi.ResourceSliceMaxDevicesWithAdvancedFeatures

// MaxCounterSets is how many shared counter sets one slice holds.
const MaxCounterSets = resourceapi.ResourceSliceMaxCounterSets

// Pool names a driver's pool on a node.
type Pool struct {
	Driver string
	// Name is the pool's name: the node's name.
	Name string
	// Node is the node the devices are on.
	Node string
	// Generation grows with every change of the pool's devices.
	Generation int64
}

// Slices returns the pool's ResourceSlices holding devs and counters, named
// "<driver>-<pool>-<index>", the index zero-padded: the upstream allocator
// tries slices in the order of their names.
func (p Pool) Slices(devs []device.Device, counters []device.CounterSet) []*resourceapi.ResourceSlice {
	api := make([]resourceapi.Device, len(devs))
	for i := range devs {
		api[i] = Device(devs[i])
	}
	return p.Of(api, CounterSets(counters))
}

// Of is Slices for devices and counter sets already in resource.k8s.io/v1
// (shared, not copied).
func (p Pool) Of(devs []resourceapi.Device, counters []resourceapi.CounterSet) []*resourceapi.ResourceSlice {
	var specs []resourceapi.ResourceSliceSpec
	for _, c := range chunks(counters, MaxCounterSets) {
		specs = append(specs, resourceapi.ResourceSliceSpec{SharedCounters: c})
	}
	for _, d := range chunks(devs, MaxDevices) {
		specs = append(specs, resourceapi.ResourceSliceSpec{Devices: d})
	}
	if len(specs) == 0 { // an empty pool is one empty slice, as a driver publishes it
		specs = append(specs, resourceapi.ResourceSliceSpec{})
	}
	out := make([]*resourceapi.ResourceSlice, len(specs))
	for i, spec := range specs {
		spec.Driver = p.Driver
		spec.Pool = resourceapi.ResourcePool{Name: p.Name, Generation: p.Generation, ResourceSliceCount: int64(len(specs))}
		spec.NodeName = ptr.To(p.Node)
		out[i] = &resourceapi.ResourceSlice{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%s-%05d", p.Driver, p.Name, i)},
			Spec:       spec,
		}
	}
	return out
}

// chunks cuts s into pieces of at most n, each with its own capacity, so
// that appending to one never writes into the next.
func chunks[T any](s []T, n int) [][]T {
	var out [][]T
	for start := 0; start < len(s); start += n {
		end := min(start+n, len(s))
		out = append(out, s[start:end:end])
	}
	return out
}

// Device is d in resource.k8s.io/v1.
func Device(d device.Device) resourceapi.Device {
	out := resourceapi.Device{Name: d.ID}
	if len(d.Attributes) > 0 {
		out.Attributes = make(map[resourceapi.QualifiedName]resourceapi.DeviceAttribute, len(d.Attributes))
		for k, a := range d.Attributes {
			out.Attributes[resourceapi.QualifiedName(k)] = resourceapi.DeviceAttribute{IntValue: a.Int, BoolValue: a.Bool,
				StringValue: a.String, VersionValue: a.Version}
		}
	}
	if len(d.Capacity) > 0 {
		out.Capacity = make(map[resourceapi.QualifiedName]resourceapi.DeviceCapacity, len(d.Capacity))
		for k, c := range d.Capacity {
			dc := resourceapi.DeviceCapacity{Value: c.Value}
			if p := c.Policy; p != nil {
				dc.RequestPolicy = &resourceapi.CapacityRequestPolicy{Default: p.Default, ValidValues: p.ValidValues}
				if p.Min != nil || p.Max != nil || p.Step != nil {
					dc.RequestPolicy.ValidRange = &resourceapi.CapacityRequestPolicyRange{Min: p.Min, Max: p.Max, Step: p.Step}
				}
			}
			out.Capacity[resourceapi.QualifiedName(k)] = dc
		}
	}
	for _, c := range d.ConsumesCounters {
		out.ConsumesCounters = append(out.ConsumesCounters, resourceapi.DeviceCounterConsumption{
			CounterSet: c.CounterSet, Counters: counters(c.Counters)})
	}
	if d.AllowMultipleAllocations {
		out.AllowMultipleAllocations = ptr.To(true)
	}
	if !d.Healthy {
		out.Taints = []resourceapi.DeviceTaint{{Key: UnhealthyTaint, Effect: resourceapi.DeviceTaintEffectNoSchedule}}
	}
	return out
}

// CounterSets are sets in resource.k8s.io/v1.
func CounterSets(sets []device.CounterSet) []resourceapi.CounterSet {
	out := make([]resourceapi.CounterSet, len(sets))
	for i, s := range sets {
		out[i] = resourceapi.CounterSet{Name: s.Name, Counters: counters(s.Counters)}
	}
	return out
}

func counters(m map[string]apiresource.Quantity) map[string]resourceapi.Counter {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]resourceapi.Counter, len(m))
	for k, v := range m {
		out[k] = resourceapi.Counter{Value: v.DeepCopy()}
	}
	return out
}
