package resourceslice_test

import (
	"fmt"
	"sort"
	"testing"

	resourceapi "k8s.io/api/resource/v1"
	apiresource "k8s.io/apimachinery/pkg/api/resource"

	"github.com/wasmlet/wasmlet/host/device"
	"github.com/wasmlet/wasmlet/host/device/resourceslice"
)

// A pool of 130 devices with counters is a slice of counters and three of
// devices (64, 64, 2), every slice naming the pool, its generation and the
// count; the names sort in the source's order; an unhealthy device is
// tainted; typed attributes, capacity, counters and sharing carry over.
func TestSlices(t *testing.T) {
	var devs []device.Device
	for i := range 130 {
		devs = append(devs, device.Device{ID: fmt.Sprintf("d%d", i), Healthy: i != 129,
			Attributes: map[string]device.Attribute{"index": device.IntAttribute(int64(i)), "model": device.StringAttribute("x")},
			Capacity:   map[string]device.Capacity{"memory": {Value: apiresource.MustParse("1Gi")}},
			ConsumesCounters: []device.CounterConsumption{{CounterSet: "s",
				Counters: map[string]apiresource.Quantity{"memory": apiresource.MustParse("1Gi")}}},
			AllowMultipleAllocations: i == 0})
	}
	sets := []device.CounterSet{{Name: "s", Counters: map[string]apiresource.Quantity{"memory": apiresource.MustParse("200Gi")}}}
	got := resourceslice.Pool{Driver: "gpu.example.com", Name: "node-a", Node: "node-a", Generation: 3}.Slices(devs, sets)
	if len(got) != 4 {
		t.Fatalf("%d slices", len(got))
	}
	names := make([]string, len(got))
	for i, s := range got {
		names[i] = s.Name
		if s.Spec.Driver != "gpu.example.com" || s.Spec.Pool.Name != "node-a" || s.Spec.Pool.Generation != 3 ||
			s.Spec.Pool.ResourceSliceCount != 4 || s.Spec.NodeName == nil || *s.Spec.NodeName != "node-a" {
			t.Errorf("slice %d: %+v", i, s.Spec)
		}
	}
	if !sort.StringsAreSorted(names) {
		t.Errorf("names out of order: %v", names)
	}
	if len(got[0].Spec.SharedCounters) != 1 || len(got[0].Spec.Devices) != 0 || len(got[1].Spec.Devices) != 64 || len(got[3].Spec.Devices) != 2 {
		t.Fatalf("layout: %d counters, %d/%d/%d devices", len(got[0].Spec.SharedCounters), len(got[1].Spec.Devices), len(got[2].Spec.Devices), len(got[3].Spec.Devices))
	}
	first, last := got[1].Spec.Devices[0], got[3].Spec.Devices[1]
	memory := first.Capacity["memory"].Value
	if first.Name != "d0" || *first.Attributes["index"].IntValue != 0 || *first.Attributes["model"].StringValue != "x" ||
		memory.String() != "1Gi" || first.ConsumesCounters[0].CounterSet != "s" ||
		first.AllowMultipleAllocations == nil || !*first.AllowMultipleAllocations || len(first.Taints) != 0 {
		t.Errorf("first device %+v", first)
	}
	if last.Name != "d129" || len(last.Taints) != 1 || last.Taints[0].Key != resourceslice.UnhealthyTaint ||
		last.Taints[0].Effect != resourceapi.DeviceTaintEffectNoSchedule {
		t.Errorf("unhealthy device %+v", last)
	}
	if empty := (resourceslice.Pool{Driver: "d.example.com", Name: "n", Node: "n"}).Slices(nil, nil); len(empty) != 1 ||
		empty[0].Spec.Pool.ResourceSliceCount != 1 {
		t.Errorf("an empty pool: %+v", empty)
	}
}

// Nine shared counter sets, one more than a slice may hold, are two slices
// of counters (8 and 1) before the devices' slice, every set once: the
// API server refuses a slice of more than eight, and reads a pool's sets
// from all its slices.
func TestManyCounterSets(t *testing.T) {
	var sets []device.CounterSet
	var devs []device.Device
	for i := range 9 {
		name := fmt.Sprintf("gpu-%d", i)
		sets = append(sets, device.CounterSet{Name: name, Counters: map[string]apiresource.Quantity{"memory": apiresource.MustParse("40Gi")}})
		devs = append(devs, device.Device{ID: name, Healthy: true, ConsumesCounters: []device.CounterConsumption{{CounterSet: name,
			Counters: map[string]apiresource.Quantity{"memory": apiresource.MustParse("40Gi")}}}})
	}
	got := resourceslice.Pool{Driver: "gpu.example.com", Name: "n", Node: "n"}.Slices(devs, sets)
	if len(got) != 3 || len(got[0].Spec.SharedCounters) != resourceslice.MaxCounterSets || len(got[1].Spec.SharedCounters) != 1 ||
		len(got[2].Spec.Devices) != 9 || len(got[0].Spec.Devices)+len(got[1].Spec.Devices) != 0 {
		t.Fatalf("%d slices: %+v", len(got), got)
	}
	seen := map[string]bool{}
	for _, s := range got {
		if s.Spec.Pool.ResourceSliceCount != 3 {
			t.Errorf("slice %s: count %d, want 3", s.Name, s.Spec.Pool.ResourceSliceCount)
		}
		for _, c := range s.Spec.SharedCounters {
			if seen[c.Name] {
				t.Errorf("counter set %s twice", c.Name)
			}
			seen[c.Name] = true
		}
	}
	if len(seen) != 9 {
		t.Errorf("%d counter sets, want 9", len(seen))
	}
}
