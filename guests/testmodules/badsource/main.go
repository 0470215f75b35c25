// Command badsource is a device source that breaks the rules of structured
// devices and of prepare (abi/ABI.md, "Structured devices" and "Device
// sources"), as its configuration key `bad` says, for the tests of the
// conformance checks, which must catch each:
//
//	attribute  a typed attribute named "pcie-root", which is no qualified name
//	counters   a device consuming a counter set that no one declares
//	policy     a request policy on a device that does not allow multiple allocations
//	step       a request policy whose step is 0, which the upstream allocator
//	           divides by
//	quantity   a capacity of "1.5e-2147483648", which Kubernetes' parser would
//	           take a day of CPU to read
//	prepare    prepare answers differently every time
//	stranger   prepare answers for a device it was not asked about
//	cdi        prepare names a CDI device "gpu-0", which is no qualified CDI name
//	unprepare  unprepare fails for a claim it never prepared (it keeps no
//	           state: it knows only the claim the conformance checks prepare)
//
// Otherwise it is a well-behaved source of two devices, bad-0 and bad-1, of
// `resource` (default example.com/bad).
package main

import (
	"crypto/rand"
	"encoding/hex"

	"github.com/wasmlet/wasmlet/abi"
	"github.com/wasmlet/wasmlet/guests/sdk"
	"github.com/wasmlet/wasmlet/guests/sdk/source"
)

var bad = sdk.ConfigOr("bad", "")

func init() {
	source.Serve(source.Source{
		Resource:    sdk.ConfigOr("resource", "example.com/bad"),
		Name:        "badsource",
		DiscoverAll: discover,
		Prepare:     prepare,
		Unprepare: func(req *abi.UnprepareRequest) error {
			if bad == "unprepare" && req.Claim.UID != "conformance-claim-uid" {
				return sdk.Fail(abi.CodeNotFound, "claim "+req.Claim.UID+" was never prepared")
			}
			return nil
		},
	})
}

func main() {}

func discover() (*abi.DiscoverResponse, error) {
	r := &abi.DiscoverResponse{
		SharedCounters: []abi.CounterSet{{Name: "set", Counters: map[string]string{"c": "2"}}},
		Devices: []abi.Device{
			{ID: "bad-0", TypedAttributes: map[string]abi.Attribute{"pcieRoot": abi.StringAttribute("pci0000:00")},
				Capacity:         map[string]abi.Capacity{"memory": {Value: "1Gi"}},
				ConsumesCounters: []abi.CounterConsumption{{CounterSet: "set", Counters: map[string]string{"c": "1"}}}},
			{ID: "bad-1", ConsumesCounters: []abi.CounterConsumption{{CounterSet: "set", Counters: map[string]string{"c": "1"}}}},
		},
	}
	switch bad {
	case "attribute":
		r.Devices[0].TypedAttributes["pcie-root"] = abi.StringAttribute("pci0000:00")
	case "counters":
		r.Devices[1].ConsumesCounters[0].CounterSet = "undeclared"
	case "quantity":
		r.Devices[0].Capacity["memory"] = abi.Capacity{Value: "1.5e-2147483648"}
	case "step":
		r.Devices[0].AllowMultipleAllocations = true
		r.Devices[0].Capacity["memory"] = abi.Capacity{Value: "16Gi",
			RequestPolicy: &abi.CapacityRequestPolicy{Default: "1Gi", Min: "1Gi", Step: "0"}}
	case "policy":
		r.Devices[0].Capacity["memory"] = abi.Capacity{Value: "1Gi", RequestPolicy: &abi.CapacityRequestPolicy{Default: "1Gi"}}
	}
	return r, nil
}

func prepare(req *abi.PrepareRequest) (*abi.PrepareResponse, error) {
	resp := &abi.PrepareResponse{}
	for _, r := range req.Results {
		p := abi.PreparedDevice{Request: r.Request, DeviceID: r.DeviceID,
			CDIDeviceIDs: []string{sdk.ConfigOr("resource", "example.com/bad") + "=" + r.DeviceID},
			Edits:        &abi.ContainerEdits{Envs: map[string]string{"BAD_DEVICE": r.DeviceID}}}
		switch bad {
		case "prepare":
			var b [8]byte
			rand.Read(b[:])
			p.Edits.Envs["BAD_NONCE"] = hex.EncodeToString(b[:])
		case "stranger":
			p.DeviceID = "bad-1"
		case "cdi":
			p.CDIDeviceIDs = []string{"gpu-0"}
		}
		resp.Devices = append(resp.Devices, p)
	}
	return resp, nil
}
