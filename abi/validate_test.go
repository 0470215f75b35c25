package abi

import (
	"strconv"
	"strings"
	"testing"
)

// gpus is a valid discovery with every structured field: a whole GPU and
// two partitions consuming one counter set, and a shared GPU.
func gpus() *DiscoverResponse {
	return &DiscoverResponse{
		SharedCounters: []CounterSet{{Name: "gpu-0", Counters: map[string]string{"memory": "40Gi", "slices": "7"}}},
		Devices: []Device{
			{ID: "gpu-0", TypedAttributes: map[string]Attribute{"model": StringAttribute("A100"), "index": IntAttribute(0),
				"driverVersion": VersionAttribute("1.2.3"), "resource.kubernetes.io/pcieRoot": StringAttribute("pci0000:00"),
				"mig": BoolAttribute(false)},
				Capacity:         map[string]Capacity{"memory": {Value: "40Gi"}},
				ConsumesCounters: []CounterConsumption{{CounterSet: "gpu-0", Counters: map[string]string{"memory": "40Gi", "slices": "7"}}}},
			{ID: "gpu-0-1g-5gb-0", ConsumesCounters: []CounterConsumption{{CounterSet: "gpu-0", Counters: map[string]string{"memory": "5Gi", "slices": "1"}}}},
			{ID: "gpu-1", AllowMultipleAllocations: true, Capacity: map[string]Capacity{
				"memory":                {Value: "40Gi", RequestPolicy: &CapacityRequestPolicy{Default: "1Gi", Min: "1Gi", Step: "1Gi"}},
				"gpu.example.com/cores": {Value: "100", RequestPolicy: &CapacityRequestPolicy{Default: "10", ValidValues: []string{"10", "50", "100"}}},
				"bandwidth":             {Value: "10G"}}},
		},
	}
}

func TestValidDiscovery(t *testing.T) {
	if err := ValidDiscovery(gpus()); err != nil {
		t.Fatal(err)
	}
	if err := ValidDiscovery(&DiscoverResponse{}); err != nil {
		t.Fatalf("an empty discovery: %v", err)
	}
	many := map[string]Attribute{}
	for i := 0; i < 30; i++ {
		many["a"+strconv.Itoa(i)] = IntAttribute(int64(i))
	}
	tooMany := map[string]string{}
	for i := 0; i < 33; i++ {
		tooMany["c"+strconv.Itoa(i)] = "1"
	}
	for _, c := range []struct {
		name   string
		change func(r *DiscoverResponse)
		want   string
	}{
		{"bad id", func(r *DiscoverResponse) { r.Devices[1].ID = "a/b" }, `device 1: device id "a/b" contains '/'`},
		{"duplicate id", func(r *DiscoverResponse) { r.Devices[1].ID = "gpu-0" }, `device id "gpu-0" appears twice`},
		{"attribute name", func(r *DiscoverResponse) { r.Devices[0].TypedAttributes["pcie-root"] = StringAttribute("x") },
			`device "gpu-0": typed attribute "pcie-root": qualified name "pcie-root"`},
		{"attribute without value", func(r *DiscoverResponse) { r.Devices[0].TypedAttributes["x"] = Attribute{} },
			`typed attribute "x": has no value: set exactly one of`},
		{"attribute of unknown type", func(r *DiscoverResponse) { r.Devices[0].TypedAttributes["x"] = Attribute{Type: 9} },
			"has no value"},
		{"long string", func(r *DiscoverResponse) {
			r.Devices[0].TypedAttributes["model"] = StringAttribute(strings.Repeat("x", 65))
		}, `typed attribute "model": the string is 65 bytes long; at most 64`},
		{"bad version", func(r *DiscoverResponse) { r.Devices[0].TypedAttributes["driverVersion"] = VersionAttribute("v1") },
			`typed attribute "driverVersion": version "v1" is not a semantic version`},
		{"too many attributes", func(r *DiscoverResponse) {
			r.Devices[0].TypedAttributes = many
			r.Devices[0].Capacity["x"] = Capacity{Value: "1"}
			r.Devices[0].Capacity["y"] = Capacity{Value: "1"}
		}, "has 33 typed attributes and capacities; at most 32"},
		{"capacity name", func(r *DiscoverResponse) { r.Devices[0].Capacity["Mem-ory"] = Capacity{Value: "1"} },
			`capacity "Mem-ory": qualified name`},
		{"capacity without value", func(r *DiscoverResponse) { r.Devices[0].Capacity["x"] = Capacity{} },
			`capacity "x": value: quantity "" has no number`},
		{"capacity value", func(r *DiscoverResponse) { r.Devices[0].Capacity["memory"] = Capacity{Value: "40GB"} },
			`capacity "memory": value: quantity "40GB" has suffix "GB"`},
		{"policy on an exclusive device", func(r *DiscoverResponse) {
			r.Devices[0].Capacity["memory"] = Capacity{Value: "1", RequestPolicy: &CapacityRequestPolicy{Default: "1"}}
		}, `capacity "memory": a request policy needs allow_multiple_allocations`},
		{"policy quantity", func(r *DiscoverResponse) { r.Devices[2].Capacity["memory"].RequestPolicy.Step = "1 Gi" },
			`device "gpu-1": capacity "memory": request policy step: quantity "1 Gi"`},
		{"policy valid value", func(r *DiscoverResponse) {
			r.Devices[2].Capacity["gpu.example.com/cores"].RequestPolicy.ValidValues[1] = "x"
		}, "request policy valid_values: quantity \"x\" has no number"},
		{"policy values and range", func(r *DiscoverResponse) {
			r.Devices[2].Capacity["gpu.example.com/cores"].RequestPolicy.Max = "100"
		}, "sets both valid_values and a range"},
		{"policy without default", func(r *DiscoverResponse) { r.Devices[2].Capacity["memory"].RequestPolicy.Default = "" },
			"with valid_values or a range needs a default"},
		{"range without min", func(r *DiscoverResponse) { r.Devices[2].Capacity["memory"].RequestPolicy.Min = "" },
			"request policy range needs min"},
		{"too many valid values", func(r *DiscoverResponse) {
			r.Devices[2].Capacity["gpu.example.com/cores"].RequestPolicy.ValidValues = strings.Split("1,2,3,4,5,6,7,8,9,10,11", ",")
		}, "has 11 valid_values; at most 10"},
		{"counter set name", func(r *DiscoverResponse) { r.SharedCounters[0].Name = "GPU_0" },
			`shared counter set "GPU_0": counter name "GPU_0" must be a DNS label`},
		{"duplicate counter set", func(r *DiscoverResponse) { r.SharedCounters = append(r.SharedCounters, r.SharedCounters[0]) },
			`shared counter set "gpu-0" appears twice`},
		{"empty counter set", func(r *DiscoverResponse) { r.SharedCounters[0].Counters = nil },
			`shared counter set "gpu-0": has 0 counters; 1 to 32`},
		{"counter set too large", func(r *DiscoverResponse) { r.SharedCounters[0].Counters = tooMany }, "has 33 counters"},
		{"counter value", func(r *DiscoverResponse) { r.SharedCounters[0].Counters["slices"] = "seven" },
			`shared counter set "gpu-0": counter "slices": quantity "seven"`},
		{"unknown counter set", func(r *DiscoverResponse) { r.Devices[1].ConsumesCounters[0].CounterSet = "gpu-9" },
			`device "gpu-0-1g-5gb-0": consumes_counters of "gpu-9": no shared counter set has that name`},
		{"unknown counter", func(r *DiscoverResponse) { r.Devices[1].ConsumesCounters[0].Counters["power"] = "1" },
			`consumes_counters of "gpu-0": the set has no counter "power"`},
		{"consumption without counters", func(r *DiscoverResponse) { r.Devices[1].ConsumesCounters[0].Counters = nil },
			`consumes_counters of "gpu-0": has 0 counters`},
		{"one set twice", func(r *DiscoverResponse) {
			r.Devices[1].ConsumesCounters = append(r.Devices[1].ConsumesCounters, r.Devices[1].ConsumesCounters[0])
		}, `consumes_counters of "gpu-0" appears twice`},
		{"three sets", func(r *DiscoverResponse) {
			r.Devices[1].ConsumesCounters = make([]CounterConsumption, 3)
		}, "consumes counters of 3 sets; at most 2"},
	} {
		r := gpus()
		c.change(r)
		err := ValidDiscovery(r)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want %q", c.name, err, c.want)
		}
	}
}
