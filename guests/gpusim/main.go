// Command gpusim is a device source that simulates GPUs as a Kubernetes DRA
// driver describes them (abi/ABI.md, "Structured devices"), so that claims
// with selectors, constraints, partitions and shared capacity can be tried
// on any node. It touches nothing on the host: its devices exist only in
// its configuration.
//
// Driver gpu.example.com, resource gpu.example.com/gpu (both configurable).
// Each of the `gpus` GPUs is a device gpu-<i> with these attributes (the
// unqualified ones are the driver's):
//
//	model                            string   the configured model
//	index                            int      i
//	numa                             int      its NUMA node: the GPUs are spread evenly over numa_nodes
//	resource.kubernetes.io/pcieRoot  string   its PCIe root, "pci<domain>:<bus>", shared by
//	                                          gpus_per_pcie_root neighbours (Kubernetes'
//	                                          standard attribute, so that claims can align
//	                                          devices of different drivers)
//	uuid                             string   "GPU-" and a UUID derived from the model and i
//	driverVersion                    version  driver_version
//	type                             string   "gpu" or "partition"
//
// and capacity memory. The modes:
//
//   - whole GPUs (the default): one device per GPU, allocated exclusively;
//   - partitions (partitions set): besides each GPU, MIG-like partitions of
//     it, each a device gpu-<i>-<profile>-<k> with the GPU's attributes
//     (its own uuid, "MIG-..."), an attribute profile, and capacity memory.
//     Every GPU has a counter set gpu-<i> with counters memory and slices
//     (compute slices); the GPU itself consumes all of them, a partition
//     its share, so the allocator never hands out more of a GPU than it has:
//     a whole GPU, or partitions that fit;
//   - shared (shared = "true"): whole GPUs that allow multiple allocations,
//     each claim consuming part of their memory (capacity memory with a
//     request policy: share_default unless the claim asks, at least 1Gi, in
//     steps of 1Gi).
//
// prepare answers, for each allocated device, the CDI device
// <resource>=<device id> and environment variables (which the host's
// default output policy allows; the module hands out no host path):
//
//	GPUSIM_VISIBLE_DEVICES                the uuids of all of the claim's devices, comma-separated
//	GPUSIM_<DEVICE>_UUID                  the device's uuid
//	GPUSIM_<DEVICE>_<REQUEST>_MEMORY      the memory the request has of it: a partition's or a
//	                                      GPU's, or in shared mode the share's
//	GPUSIM_<DEVICE>_<REQUEST>_SHARE       in shared mode, the share's id
//	GPUSIM_<DEVICE>_<REQUEST>_COMPUTE_MODE  when an opaque configuration sets computeMode
//
// (<DEVICE> and <REQUEST> in upper case, other characters as "_"). Opaque
// configurations (from the class, then the claim; a later one wins) are
// JSON objects {"apiVersion": "<driver>/v1", "kind": "GpuConfig",
// "computeMode": "Default" | "Exclusive" | "Prohibited"}, apiVersion and
// kind optional; anything else is refused. The module keeps nothing
// between calls, so prepare gives the same answer to the same request, and
// unprepare has nothing to undo.
//
// Configuration keys:
//
//	resource            the extended resource (default "gpu.example.com/gpu")
//	driver              the DRA driver (default "gpu.example.com")
//	gpus                how many GPUs (default 2, at most 1024)
//	model               their model (default "A100")
//	memory              each GPU's memory, in Gi (default "40Gi")
//	slices              each GPU's compute slices (default 7)
//	partitions          comma-separated profiles "<slices>g.<memory>gb", e.g.
//	                    "1g.5gb,3g.20gb" (default none): each GPU offers as many
//	                    partitions of each profile as fit it
//	shared              "true": whole GPUs shared by claims (not with partitions)
//	share_default       what a claim that does not ask consumes of a shared
//	                    GPU's memory (default "4Gi")
//	numa_nodes          NUMA nodes to spread the GPUs over (default 2)
//	gpus_per_pcie_root  GPUs per PCIe root (default 2)
//	driver_version      a semantic version (default "550.54.15")
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"

	"github.com/wasmlet/wasmlet/abi"
	"github.com/wasmlet/wasmlet/guests/sdk"
	"github.com/wasmlet/wasmlet/guests/sdk/source"
)

func init() {
	source.Serve(source.Source{
		Resource: sdk.ConfigOr("resource", "gpu.example.com/gpu"),
		Driver:   sdk.ConfigOr("driver", "gpu.example.com"),
		Name:     "gpusim",
		Version:  "1.0.0",
		Summary:  "simulated GPUs with typed attributes, partitions and shared memory, for DRA claims",
		DiscoverAll: func() (*abi.DiscoverResponse, error) {
			cfg, err := loadConfig()
			if err != nil {
				return nil, err
			}
			return inventory(&cfg), nil
		},
		Prepare: func(req *abi.PrepareRequest) (*abi.PrepareResponse, error) {
			cfg, err := loadConfig()
			if err != nil {
				return nil, err
			}
			return prepare(&cfg, req)
		},
		Unprepare: func(*abi.UnprepareRequest) error { return nil },
	})
}

func main() {}

type config struct {
	resource, driver, model, driverVersion string
	gpus, slices, numaNodes, perRoot       int
	memoryGi, shareDefaultGi               int64
	profiles                               []profile
	shared                                 bool
}

// profile is a partition profile: "1g.5gb" is 1 compute slice and 5Gi.
type profile struct {
	name     string
	slices   int
	memoryGi int64
}

// loadConfig reads the configuration afresh on every call: the host may
// send discover and prepare to different instances.
func loadConfig() (config, error) {
	cfg := config{
		resource:      sdk.ConfigOr("resource", "gpu.example.com/gpu"),
		driver:        sdk.ConfigOr("driver", "gpu.example.com"),
		model:         sdk.ConfigOr("model", "A100"),
		driverVersion: sdk.ConfigOr("driver_version", "550.54.15"),
		shared:        sdk.ConfigOr("shared", "false") == "true",
	}
	var err error
	ints := []struct {
		key      string
		def      string
		min, max int
		dst      *int
	}{
		{"gpus", "2", 0, 1024, &cfg.gpus},
		{"slices", "7", 1, 64, &cfg.slices},
		{"numa_nodes", "2", 1, 64, &cfg.numaNodes},
		{"gpus_per_pcie_root", "2", 1, 64, &cfg.perRoot},
	}
	for _, c := range ints {
		v := sdk.ConfigOr(c.key, c.def)
		n, err := strconv.Atoi(v)
		if err != nil || n < c.min || n > c.max {
			return cfg, configError(c.key, strconv.Quote(v)+" is not a whole number from "+strconv.Itoa(c.min)+" to "+strconv.Itoa(c.max))
		}
		*c.dst = n
	}
	if cfg.memoryGi, err = gibibytes("memory", sdk.ConfigOr("memory", "40Gi")); err != nil {
		return cfg, err
	}
	if cfg.shareDefaultGi, err = gibibytes("share_default", sdk.ConfigOr("share_default", "4Gi")); err != nil {
		return cfg, err
	}
	if cfg.shareDefaultGi > cfg.memoryGi {
		return cfg, configError("share_default", "is more than a GPU's memory ("+strconv.FormatInt(cfg.memoryGi, 10)+"Gi)")
	}
	if err := abi.ValidVersion(cfg.driverVersion); err != nil {
		return cfg, configError("driver_version", err.Error())
	}
	if s := sdk.ConfigOr("shared", "false"); s != "true" && s != "false" {
		return cfg, configError("shared", strconv.Quote(s)+" is neither true nor false")
	}
	for _, name := range sdk.ConfigList("partitions", "") {
		p, err := parseProfile(name)
		if err != nil {
			return cfg, configError("partitions", err.Error())
		}
		if p.slices > cfg.slices || p.memoryGi > cfg.memoryGi {
			return cfg, configError("partitions", "profile "+name+" is larger than a GPU ("+strconv.Itoa(cfg.slices)+
				" slices, "+strconv.FormatInt(cfg.memoryGi, 10)+"Gi)")
		}
		cfg.profiles = append(cfg.profiles, p)
	}
	if cfg.shared && len(cfg.profiles) > 0 {
		return cfg, configError("shared", "shared GPUs cannot be partitioned too; set shared or partitions")
	}
	return cfg, nil
}

func configError(key, msg string) error {
	return sdk.Fail(abi.CodeFailedPrecondition, "configuration "+key+": "+msg)
}

// gibibytes parses "<n>Gi", n from 1 to 1048576.
func gibibytes(key, s string) (int64, error) {
	n, err := strconv.ParseInt(strings.TrimSuffix(s, "Gi"), 10, 64)
	if err != nil || !strings.HasSuffix(s, "Gi") || n < 1 || n > 1<<20 {
		return 0, configError(key, strconv.Quote(s)+" is not a whole number of Gi from 1Gi to 1048576Gi, like 40Gi")
	}
	return n, nil
}

// parseProfile parses "<slices>g.<memory>gb".
func parseProfile(s string) (profile, error) {
	g, mem, ok := strings.Cut(s, "g.")
	slices, err1 := strconv.Atoi(g)
	gb, err2 := strconv.ParseInt(strings.TrimSuffix(mem, "gb"), 10, 64)
	if !ok || !strings.HasSuffix(mem, "gb") || err1 != nil || err2 != nil || slices < 1 || gb < 1 || strconv.Itoa(slices) != g {
		return profile{}, errors.New(strconv.Quote(s) + ` is not a profile "<slices>g.<memory>gb", like 1g.5gb`)
	}
	return profile{name: s, slices: slices, memoryGi: gb}, nil
}

func (p profile) id() string { return strings.ReplaceAll(p.name, ".", "-") } // 1g.5gb -> 1g-5gb

// device is what gpusim knows of one device: enough for discover and prepare.
type device struct {
	abi.Device
	uuid     string
	memoryGi int64
}

// devices lists every device of the configuration, in a fixed order.
func devices(cfg *config) []device {
	var out []device
	for i := 0; i < cfg.gpus; i++ {
		gpu := "gpu-" + strconv.Itoa(i)
		numa := int64(i * cfg.numaNodes / max(cfg.gpus, 1))
		root := i / cfg.perRoot
		attrs := func(typ, uuid string) map[string]abi.Attribute {
			return map[string]abi.Attribute{
				"model":                           abi.StringAttribute(cfg.model),
				"index":                           abi.IntAttribute(int64(i)),
				"numa":                            abi.IntAttribute(numa),
				"resource.kubernetes.io/pcieRoot": abi.StringAttribute("pci" + hex(uint64(root>>8), 4) + ":" + hex(uint64(root&0xff), 2)),
				"uuid":                            abi.StringAttribute(uuid),
				"driverVersion":                   abi.VersionAttribute(cfg.driverVersion),
				"type":                            abi.StringAttribute(typ),
			}
		}
		whole := device{uuid: "GPU-" + uuid(cfg.model+"/"+strconv.Itoa(i)), memoryGi: cfg.memoryGi}
		whole.Device = abi.Device{ID: gpu, NUMANodes: []int64{numa}, TypedAttributes: attrs("gpu", whole.uuid),
			Capacity: map[string]abi.Capacity{"memory": {Value: gi(cfg.memoryGi)}}}
		if cfg.shared {
			whole.AllowMultipleAllocations = true
			whole.Capacity["memory"] = abi.Capacity{Value: gi(cfg.memoryGi), RequestPolicy: &abi.CapacityRequestPolicy{
				Default: gi(cfg.shareDefaultGi), Min: "1Gi", Step: "1Gi"}}
		}
		if len(cfg.profiles) > 0 {
			whole.ConsumesCounters = []abi.CounterConsumption{{CounterSet: gpu, Counters: map[string]string{
				"memory": gi(cfg.memoryGi), "slices": strconv.Itoa(cfg.slices)}}}
		}
		out = append(out, whole)
		for _, p := range cfg.profiles {
			n := min(cfg.slices/p.slices, int(cfg.memoryGi/p.memoryGi))
			for k := 0; k < n; k++ {
				part := device{uuid: "MIG-" + uuid(whole.uuid+"/"+p.name+"/"+strconv.Itoa(k)), memoryGi: p.memoryGi}
				part.Device = abi.Device{ID: gpu + "-" + p.id() + "-" + strconv.Itoa(k), NUMANodes: []int64{numa},
					TypedAttributes: attrs("partition", part.uuid),
					Capacity:        map[string]abi.Capacity{"memory": {Value: gi(p.memoryGi)}},
					ConsumesCounters: []abi.CounterConsumption{{CounterSet: gpu, Counters: map[string]string{
						"memory": gi(p.memoryGi), "slices": strconv.Itoa(p.slices)}}}}
				part.TypedAttributes["profile"] = abi.StringAttribute(p.name)
				out = append(out, part)
			}
		}
	}
	return out
}

// inventory is the discovery: the devices, with their container edits for
// allocations made without prepare, and a counter set per partitioned GPU.
func inventory(cfg *config) *abi.DiscoverResponse {
	devs := devices(cfg)
	resp := &abi.DiscoverResponse{Devices: make([]abi.Device, len(devs))}
	for i := range devs {
		d := devs[i].Device
		d.Edits = &abi.ContainerEdits{Envs: map[string]string{"GPUSIM_" + sdk.EnvName(d.ID) + "_UUID": devs[i].uuid}}
		resp.Devices[i] = d
	}
	if len(cfg.profiles) > 0 {
		for i := 0; i < cfg.gpus; i++ {
			resp.SharedCounters = append(resp.SharedCounters, abi.CounterSet{Name: "gpu-" + strconv.Itoa(i),
				Counters: map[string]string{"memory": gi(cfg.memoryGi), "slices": strconv.Itoa(cfg.slices)}})
		}
	}
	return resp
}

// gpuConfig is the opaque configuration gpusim understands.
type gpuConfig struct {
	APIVersion  string `json:"apiVersion"`
	Kind        string `json:"kind"`
	ComputeMode string `json:"computeMode"`
}

// computeMode is the compute mode the configurations give request, or "".
func computeMode(cfg *config, configs []abi.DeviceConfig, request string) (string, error) {
	mode := ""
	for i, c := range configs {
		if !appliesTo(c.Requests, request) {
			continue
		}
		var g gpuConfig
		dec := json.NewDecoder(bytes.NewReader(c.Parameters))
		dec.DisallowUnknownFields()
		err := dec.Decode(&g)
		switch {
		case err != nil:
		case g.APIVersion != "" && g.APIVersion != cfg.driver+"/v1":
			err = errors.New("apiVersion " + strconv.Quote(g.APIVersion) + " is not " + cfg.driver + "/v1")
		case g.Kind != "" && g.Kind != "GpuConfig":
			err = errors.New("kind " + strconv.Quote(g.Kind) + " is not GpuConfig")
		case g.ComputeMode != "" && g.ComputeMode != "Default" && g.ComputeMode != "Exclusive" && g.ComputeMode != "Prohibited":
			err = errors.New("computeMode " + strconv.Quote(g.ComputeMode) + " is none of Default, Exclusive and Prohibited")
		}
		if err != nil {
			return "", sdk.Refuse("opaque configuration " + strconv.Itoa(i) + " (from the " + c.Source + "): " + err.Error())
		}
		if g.ComputeMode != "" {
			mode = g.ComputeMode
		}
	}
	return mode, nil
}

func appliesTo(requests []string, request string) bool {
	if len(requests) == 0 {
		return true
	}
	parent, _, _ := strings.Cut(request, "/") // a subrequest is configured by its request's name too
	for _, r := range requests {
		if r == request || r == parent {
			return true
		}
	}
	return false
}

func prepare(cfg *config, req *abi.PrepareRequest) (*abi.PrepareResponse, error) {
	byID := map[string]*device{}
	devs := devices(cfg)
	for i := range devs {
		byID[devs[i].ID] = &devs[i]
	}
	var visible []string
	for _, r := range req.Results {
		d, ok := byID[r.DeviceID]
		if !ok {
			return nil, sdk.Fail(abi.CodeNotFound, "device "+strconv.Quote(r.DeviceID)+" (request "+r.Request+
				") is not one of this node's simulated GPUs")
		}
		if !slices.Contains(visible, d.uuid) {
			visible = append(visible, d.uuid)
		}
	}
	resp := &abi.PrepareResponse{Devices: make([]abi.PreparedDevice, 0, len(req.Results))}
	for _, r := range req.Results {
		d := byID[r.DeviceID]
		mode, err := computeMode(cfg, req.Configs, r.Request)
		if err != nil {
			return nil, err
		}
		dev := "GPUSIM_" + sdk.EnvName(d.ID) + "_"
		share := dev + sdk.EnvName(r.Request) + "_"
		envs := map[string]string{
			"GPUSIM_VISIBLE_DEVICES": strings.Join(visible, ","),
			dev + "UUID":             d.uuid,
			share + "MEMORY":         gi(d.memoryGi),
		}
		if m, ok := r.ConsumedCapacity["memory"]; ok {
			envs[share+"MEMORY"] = m
		}
		if r.ShareID != "" {
			envs[share+"SHARE"] = r.ShareID
		}
		if mode != "" {
			envs[share+"COMPUTE_MODE"] = mode
		}
		resp.Devices = append(resp.Devices, abi.PreparedDevice{Request: r.Request, DeviceID: d.ID,
			CDIDeviceIDs: []string{cfg.resource + "=" + d.ID}, Edits: &abi.ContainerEdits{Envs: envs}})
	}
	return resp, nil
}

func gi(n int64) string { return strconv.FormatInt(n, 10) + "Gi" }

// uuid derives a UUID-shaped identifier from s, the same every time.
func uuid(s string) string {
	h1, h2 := fnv.New64a(), fnv.New64()
	h1.Write([]byte(s))
	h2.Write([]byte(s))
	a, b := hex(h1.Sum64(), 16), hex(h2.Sum64(), 16)
	return a[:8] + "-" + a[8:12] + "-" + a[12:16] + "-" + b[:4] + "-" + b[4:16]
}

// hex formats v in lower-case hex, zero-padded to width digits.
func hex(v uint64, width int) string {
	s := strconv.FormatUint(v, 16)
	return strings.Repeat("0", max(width-len(s), 0)) + s
}
