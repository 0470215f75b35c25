// Command counter is the smallest useful device source: it offers `count`
// identical devices (default 4) of resource `resource` (default
// example.com/counter), spread over two NUMA nodes, each with a typed
// attribute of every type (index, even, model, firmware; abi/ABI.md,
// "Structured devices"). It has a twin written in
// C (guests/c/counter.c) that answers every request with the same bytes; the
// conformance tests hold both to that.
//
// Configuration keys: resource, count.
package main

import (
	"strconv"

	"github.com/wasmlet/wasmlet/abi"
	"github.com/wasmlet/wasmlet/guests/sdk"
	"github.com/wasmlet/wasmlet/guests/sdk/source"
)

func init() {
	source.Serve(source.Source{
		Resource: sdk.ConfigOr("resource", "example.com/counter"),
		Name:     "counter",
		Version:  "1.0.0",
		Summary:  "identical counted devices, for examples and tests",
		Discover: discover,
		Allocate: allocate,
		PreferredAllocation: func(req *abi.PreferredAllocationRequest) ([]string, error) {
			return preferred(req)
		},
		PreStart: func(req *abi.PreStartRequest) error { return nil },
	})
}

func main() {}

func count() int {
	n, err := strconv.Atoi(sdk.ConfigOr("count", "4"))
	if err != nil || n < 0 || n > 100000 {
		return 4
	}
	return n
}

func discover() ([]abi.Device, error) {
	n := count()
	devs := make([]abi.Device, n)
	for i := range devs {
		id := "dev-" + strconv.Itoa(i)
		devs[i] = abi.Device{
			ID:         id,
			NUMANodes:  []int64{int64(i % 2)},
			Attributes: map[string]string{"index": strconv.Itoa(i)},
			TypedAttributes: map[string]abi.Attribute{
				"index":    abi.IntAttribute(int64(i)),
				"even":     abi.BoolAttribute(i%2 == 0),
				"model":    abi.StringAttribute("counter"),
				"firmware": abi.VersionAttribute("1.0.0"),
			},
			Edits: &abi.ContainerEdits{Envs: map[string]string{"COUNTER_" + strconv.Itoa(i): id}},
		}
	}
	return devs, nil
}

func allocate(req *abi.AllocateRequest) (*abi.AllocateResponse, error) {
	if len(req.DeviceIDs) == 0 {
		return nil, sdk.Refuse("no devices requested")
	}
	ids := ""
	for i, id := range req.DeviceIDs {
		if i > 0 {
			ids += ","
		}
		ids += id
	}
	return &abi.AllocateResponse{
		Envs:        map[string]string{"COUNTER_DEVICES": ids, "COUNTER_WORKLOAD": req.Workload},
		Annotations: map[string]string{"example.com/counter": ids},
	}, nil
}

// preferred returns the must-include devices, then the available ones in the
// order given, up to size.
func preferred(req *abi.PreferredAllocationRequest) ([]string, error) {
	if req.Size < 0 || int(req.Size) > len(req.Available) {
		return nil, sdk.Refuse("size " + strconv.Itoa(int(req.Size)) + " exceeds the " + strconv.Itoa(len(req.Available)) + " available devices")
	}
	out := make([]string, 0, req.Size)
	seen := map[string]bool{}
	for _, id := range req.MustInclude {
		if len(out) < int(req.Size) && !seen[id] {
			out, seen[id] = append(out, id), true
		}
	}
	for _, id := range req.Available {
		if len(out) < int(req.Size) && !seen[id] {
			out, seen[id] = append(out, id), true
		}
	}
	return out, nil
}
