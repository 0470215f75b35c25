//go:build !wasip1

package main

import (
	"reflect"
	"strings"
	"testing"

	"github.com/wasmlet/wasmlet/abi"
	"github.com/wasmlet/wasmlet/guests/internal/guesttest"
)

func configure(t *testing.T, c map[string]string) *config {
	t.Helper()
	cfg := guesttest.Configure(t, loadConfig, c)
	return &cfg
}

// discover is what the host sees: the inventory, checked as it checks it.
func discover(t *testing.T, c map[string]string) *abi.DiscoverResponse {
	t.Helper()
	r := inventory(configure(t, c))
	if err := abi.ValidDiscovery(r); err != nil {
		t.Fatalf("%v: an invalid discovery: %v", c, err)
	}
	return r
}

func ids(r *abi.DiscoverResponse) string {
	var out []string
	for _, d := range r.Devices {
		out = append(out, d.ID)
	}
	return strings.Join(out, " ")
}

func TestWholeGPUs(t *testing.T) {
	r := discover(t, map[string]string{"gpus": "4", "model": "H100", "memory": "80Gi", "driver_version": "1.2.3-rc.1"})
	if ids(r) != "gpu-0 gpu-1 gpu-2 gpu-3" || len(r.SharedCounters) != 0 {
		t.Fatalf("devices %q, counters %v", ids(r), r.SharedCounters)
	}
	d := r.Devices[2]
	want := map[string]abi.Attribute{
		"model": abi.StringAttribute("H100"), "index": abi.IntAttribute(2), "numa": abi.IntAttribute(1),
		"resource.kubernetes.io/pcieRoot": abi.StringAttribute("pci0000:01"), "uuid": d.TypedAttributes["uuid"],
		"driverVersion": abi.VersionAttribute("1.2.3-rc.1"), "type": abi.StringAttribute("gpu"),
	}
	if !reflect.DeepEqual(d.TypedAttributes, want) {
		t.Errorf("attributes %+v\nwant %+v", d.TypedAttributes, want)
	}
	if !strings.HasPrefix(d.TypedAttributes["uuid"].String, "GPU-") || len(d.TypedAttributes["uuid"].String) != 40 {
		t.Errorf("uuid %q", d.TypedAttributes["uuid"].String)
	}
	if !reflect.DeepEqual(d.Capacity, map[string]abi.Capacity{"memory": {Value: "80Gi"}}) || d.AllowMultipleAllocations ||
		len(d.ConsumesCounters) != 0 || !reflect.DeepEqual(d.NUMANodes, []int64{1}) {
		t.Errorf("device %+v", d)
	}
	if d.Edits.Envs["GPUSIM_GPU_2_UUID"] != d.TypedAttributes["uuid"].String {
		t.Errorf("edits %+v", d.Edits)
	}
	// Topology: two GPUs per PCIe root, the GPUs spread over two NUMA nodes.
	for i, want := range []struct {
		root string
		numa int64
	}{{"pci0000:00", 0}, {"pci0000:00", 0}, {"pci0000:01", 1}, {"pci0000:01", 1}} {
		a := r.Devices[i].TypedAttributes
		if a["resource.kubernetes.io/pcieRoot"].String != want.root || a["numa"].Int != want.numa {
			t.Errorf("gpu-%d: root %q, numa %d", i, a["resource.kubernetes.io/pcieRoot"].String, a["numa"].Int)
		}
	}
}

// TestUUIDsAreStable: a GPU's uuid depends on its model and index only, not
// on how many GPUs there are; different GPUs have different ones.
func TestUUIDsAreStable(t *testing.T) {
	two := discover(t, map[string]string{"gpus": "2"})
	eight := discover(t, map[string]string{"gpus": "8", "numa_nodes": "4"})
	other := discover(t, map[string]string{"gpus": "2", "model": "L4"})
	u := func(r *abi.DiscoverResponse, i int) string { return r.Devices[i].TypedAttributes["uuid"].String }
	if u(two, 1) != u(eight, 1) || u(two, 0) == u(two, 1) || u(two, 0) == u(other, 0) {
		t.Errorf("uuids: %s %s %s %s", u(two, 0), u(two, 1), u(eight, 1), u(other, 0))
	}
}

func TestPartitions(t *testing.T) {
	r := discover(t, map[string]string{"gpus": "2", "partitions": "1g.5gb, 3g.20gb"})
	want := "gpu-0 gpu-0-1g-5gb-0 gpu-0-1g-5gb-1 gpu-0-1g-5gb-2 gpu-0-1g-5gb-3 gpu-0-1g-5gb-4 gpu-0-1g-5gb-5 gpu-0-1g-5gb-6 " +
		"gpu-0-3g-20gb-0 gpu-0-3g-20gb-1 gpu-1 gpu-1-1g-5gb-0 gpu-1-1g-5gb-1 gpu-1-1g-5gb-2 gpu-1-1g-5gb-3 gpu-1-1g-5gb-4 " +
		"gpu-1-1g-5gb-5 gpu-1-1g-5gb-6 gpu-1-3g-20gb-0 gpu-1-3g-20gb-1"
	if ids(r) != want {
		t.Fatalf("devices %q\nwant %q", ids(r), want)
	}
	counters := []abi.CounterSet{{Name: "gpu-0", Counters: map[string]string{"memory": "40Gi", "slices": "7"}},
		{Name: "gpu-1", Counters: map[string]string{"memory": "40Gi", "slices": "7"}}}
	if !reflect.DeepEqual(r.SharedCounters, counters) {
		t.Errorf("counters %+v", r.SharedCounters)
	}
	whole, part := r.Devices[10], r.Devices[19]
	if !reflect.DeepEqual(whole.ConsumesCounters, []abi.CounterConsumption{{CounterSet: "gpu-1",
		Counters: map[string]string{"memory": "40Gi", "slices": "7"}}}) {
		t.Errorf("the whole GPU consumes %+v", whole.ConsumesCounters)
	}
	if !reflect.DeepEqual(part.ConsumesCounters, []abi.CounterConsumption{{CounterSet: "gpu-1",
		Counters: map[string]string{"memory": "20Gi", "slices": "3"}}}) ||
		part.Capacity["memory"].Value != "20Gi" || part.TypedAttributes["profile"].String != "3g.20gb" ||
		part.TypedAttributes["type"].String != "partition" || part.TypedAttributes["index"].Int != 1 ||
		!strings.HasPrefix(part.TypedAttributes["uuid"].String, "MIG-") {
		t.Errorf("partition %+v", part)
	}
	// Memory can bound a profile as well as slices: 4 of 2g.10gb in 40Gi
	// would need 8 slices of 7; 3 fit.
	r = discover(t, map[string]string{"gpus": "1", "partitions": "2g.10gb", "slices": "8", "memory": "30Gi"})
	if ids(r) != "gpu-0 gpu-0-2g-10gb-0 gpu-0-2g-10gb-1 gpu-0-2g-10gb-2" {
		t.Errorf("devices %q", ids(r))
	}
}

func TestShared(t *testing.T) {
	r := discover(t, map[string]string{"gpus": "1", "shared": "true", "share_default": "8Gi"})
	d := r.Devices[0]
	want := abi.Capacity{Value: "40Gi", RequestPolicy: &abi.CapacityRequestPolicy{Default: "8Gi", Min: "1Gi", Step: "1Gi"}}
	if !d.AllowMultipleAllocations || !reflect.DeepEqual(d.Capacity["memory"], want) {
		t.Errorf("device %+v", d)
	}
}

// TestBenchmarkShape: the shape of issue 14's benchmark, 64 GPUs of 16
// partitions, is a valid discovery that fits the default reply limit.
func TestBenchmarkShape(t *testing.T) {
	r := discover(t, map[string]string{"gpus": "64", "slices": "16", "memory": "80Gi", "partitions": "1g.5gb"})
	if len(r.Devices) != 64*17 || len(r.SharedCounters) != 64 {
		t.Fatalf("%d devices, %d counter sets", len(r.Devices), len(r.SharedCounters))
	}
	if n := len(r.AppendTo(nil)); n > 4<<20 {
		t.Errorf("the reply is %d bytes, more than the default reply limit", n)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, c := range []struct {
		cfg  map[string]string
		want string
	}{
		{map[string]string{"gpus": "-1"}, `configuration gpus: "-1" is not a whole number from 0 to 1024`},
		{map[string]string{"gpus": "2000"}, "configuration gpus"},
		{map[string]string{"slices": "0"}, "configuration slices"},
		{map[string]string{"numa_nodes": "x"}, "configuration numa_nodes"},
		{map[string]string{"gpus_per_pcie_root": ""}, "configuration gpus_per_pcie_root"},
		{map[string]string{"memory": "40G"}, `configuration memory: "40G" is not a whole number of Gi`},
		{map[string]string{"memory": "0Gi"}, "configuration memory"},
		{map[string]string{"share_default": "41Gi"}, "configuration share_default: is more than a GPU's memory (40Gi)"},
		{map[string]string{"driver_version": "v1"}, `configuration driver_version: version "v1" is not a semantic version`},
		{map[string]string{"shared": "yes"}, `configuration shared: "yes" is neither true nor false`},
		{map[string]string{"partitions": "1g"}, `configuration partitions: "1g" is not a profile`},
		{map[string]string{"partitions": "01g.5gb"}, "is not a profile"},
		{map[string]string{"partitions": "0g.5gb"}, "is not a profile"},
		{map[string]string{"partitions": "8g.5gb"}, "profile 8g.5gb is larger than a GPU (7 slices, 40Gi)"},
		{map[string]string{"partitions": "1g.50gb"}, "is larger than a GPU"},
		{map[string]string{"partitions": "1g.5gb", "shared": "true"}, "shared GPUs cannot be partitioned too"},
	} {
		if err := guesttest.ConfigError(loadConfig, c.cfg); !guesttest.Refused(err, abi.CodeFailedPrecondition, c.want) {
			t.Errorf("%v: got %v, want %q", c.cfg, err, c.want)
		}
	}
}

func TestPrepare(t *testing.T) {
	cfg := configure(t, map[string]string{"gpus": "2", "partitions": "1g.5gb"})
	uuid := func(id string) string {
		for _, d := range devices(cfg) {
			if d.ID == id {
				return d.uuid
			}
		}
		t.Fatalf("no device %s", id)
		return ""
	}
	req := &abi.PrepareRequest{Claim: abi.Claim{UID: "u", Namespace: "ns", Name: "c"},
		Results: []abi.AllocatedDevice{{Request: "big", DeviceID: "gpu-0"}, {Request: "small/mig", DeviceID: "gpu-1-1g-5gb-3"}},
		Configs: []abi.DeviceConfig{
			{Source: abi.ConfigFromClass, Parameters: []byte(`{"apiVersion": "gpu.example.com/v1", "kind": "GpuConfig", "computeMode": "Default"}`)},
			{Source: abi.ConfigFromClaim, Requests: []string{"small"}, Parameters: []byte(`{"computeMode":"Exclusive"}`)},
			{Source: abi.ConfigFromClaim, Requests: []string{"other"}, Parameters: []byte(`{"computeMode":"Prohibited"}`)},
		}}
	got, err := prepare(cfg, req)
	if err != nil {
		t.Fatal(err)
	}
	visible := uuid("gpu-0") + "," + uuid("gpu-1-1g-5gb-3")
	want := &abi.PrepareResponse{Devices: []abi.PreparedDevice{
		{Request: "big", DeviceID: "gpu-0", CDIDeviceIDs: []string{"gpu.example.com/gpu=gpu-0"},
			Edits: &abi.ContainerEdits{Envs: map[string]string{"GPUSIM_VISIBLE_DEVICES": visible,
				"GPUSIM_GPU_0_UUID": uuid("gpu-0"), "GPUSIM_GPU_0_BIG_MEMORY": "40Gi", "GPUSIM_GPU_0_BIG_COMPUTE_MODE": "Default"}}},
		{Request: "small/mig", DeviceID: "gpu-1-1g-5gb-3", CDIDeviceIDs: []string{"gpu.example.com/gpu=gpu-1-1g-5gb-3"},
			Edits: &abi.ContainerEdits{Envs: map[string]string{"GPUSIM_VISIBLE_DEVICES": visible,
				"GPUSIM_GPU_1_1G_5GB_3_UUID": uuid("gpu-1-1g-5gb-3"), "GPUSIM_GPU_1_1G_5GB_3_SMALL_MIG_MEMORY": "5Gi",
				"GPUSIM_GPU_1_1G_5GB_3_SMALL_MIG_COMPUTE_MODE": "Exclusive"}}},
	}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("prepare = %+v\nwant %+v", got, want)
	}
	again, err := prepare(cfg, req)
	if err != nil || !reflect.DeepEqual(again, got) {
		t.Errorf("the same prepare again: %+v, %v", again, err)
	}
}

func TestPrepareShared(t *testing.T) {
	cfg := configure(t, map[string]string{"gpus": "1", "shared": "true"})
	got, err := prepare(cfg, &abi.PrepareRequest{Results: []abi.AllocatedDevice{
		{Request: "a", DeviceID: "gpu-0", ConsumedCapacity: map[string]string{"memory": "4Gi"}, ShareID: "s-1"},
		{Request: "b", DeviceID: "gpu-0", ConsumedCapacity: map[string]string{"memory": "12Gi"}, ShareID: "s-2"}}})
	if err != nil {
		t.Fatal(err)
	}
	// Two shares of one GPU in one claim: their variables do not collide.
	a, b := got.Devices[0].Edits.Envs, got.Devices[1].Edits.Envs
	if a["GPUSIM_GPU_0_A_MEMORY"] != "4Gi" || a["GPUSIM_GPU_0_A_SHARE"] != "s-1" || b["GPUSIM_GPU_0_B_MEMORY"] != "12Gi" ||
		b["GPUSIM_GPU_0_B_SHARE"] != "s-2" || a["GPUSIM_VISIBLE_DEVICES"] != b["GPUSIM_VISIBLE_DEVICES"] ||
		strings.Contains(a["GPUSIM_VISIBLE_DEVICES"], ",") {
		t.Errorf("envs %v and %v", a, b)
	}
}

func TestPrepareRefuses(t *testing.T) {
	cfg := configure(t, map[string]string{"gpus": "1"})
	for _, c := range []struct {
		req  abi.PrepareRequest
		code abi.Code
		want string
	}{
		{abi.PrepareRequest{Results: []abi.AllocatedDevice{{Request: "r", DeviceID: "gpu-7"}}},
			abi.CodeNotFound, `device "gpu-7" (request r) is not one of this node's simulated GPUs`},
		{abi.PrepareRequest{Results: []abi.AllocatedDevice{{Request: "r", DeviceID: "gpu-0"}},
			Configs: []abi.DeviceConfig{{Source: "claim", Parameters: []byte(`{"computeMode": 3}`)}}},
			abi.CodeInvalidArgument, "opaque configuration 0 (from the claim): json: cannot unmarshal number"},
		{abi.PrepareRequest{Results: []abi.AllocatedDevice{{Request: "r", DeviceID: "gpu-0"}},
			Configs: []abi.DeviceConfig{{Source: "class"}, {Source: "claim", Parameters: []byte(`{"sharing": {}}`)}}},
			abi.CodeInvalidArgument, "opaque configuration 0 (from the class): EOF"},
		{abi.PrepareRequest{Results: []abi.AllocatedDevice{{Request: "r", DeviceID: "gpu-0"}},
			Configs: []abi.DeviceConfig{{Source: "claim", Parameters: []byte(`{"sharing": {}}`)}}},
			abi.CodeInvalidArgument, `json: unknown field "sharing"`},
		{abi.PrepareRequest{Results: []abi.AllocatedDevice{{Request: "r", DeviceID: "gpu-0"}},
			Configs: []abi.DeviceConfig{{Source: "claim", Parameters: []byte(`{"kind": "NicConfig"}`)}}},
			abi.CodeInvalidArgument, `kind "NicConfig" is not GpuConfig`},
		{abi.PrepareRequest{Results: []abi.AllocatedDevice{{Request: "r", DeviceID: "gpu-0"}},
			Configs: []abi.DeviceConfig{{Source: "claim", Parameters: []byte(`{"apiVersion": "nic.example.com/v1"}`)}}},
			abi.CodeInvalidArgument, `apiVersion "nic.example.com/v1" is not gpu.example.com/v1`},
		{abi.PrepareRequest{Results: []abi.AllocatedDevice{{Request: "r", DeviceID: "gpu-0"}},
			Configs: []abi.DeviceConfig{{Source: "claim", Parameters: []byte(`{"computeMode": "Fast"}`)}}},
			abi.CodeInvalidArgument, `computeMode "Fast" is none of Default, Exclusive and Prohibited`},
	} {
		_, err := prepare(cfg, &c.req)
		if !guesttest.Refused(err, c.code, c.want) {
			t.Errorf("%+v: got %v, want %v %q", c.req, err, c.code, c.want)
		}
	}
	// A configuration for another request is not read at all.
	if _, err := prepare(cfg, &abi.PrepareRequest{Results: []abi.AllocatedDevice{{Request: "r", DeviceID: "gpu-0"}},
		Configs: []abi.DeviceConfig{{Requests: []string{"s"}, Parameters: []byte(`not json`)}}}); err != nil {
		t.Errorf("a configuration of another request: %v", err)
	}
}
