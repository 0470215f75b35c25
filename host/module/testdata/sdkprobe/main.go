// Command sdkprobe is a device source that exercises the Go guest SDK
// through the real host, for what its native tests cannot see: requests and
// replies at real 32-bit addresses in linear memory, the config_get and log
// imports, error replies. host/module's TestSDKThroughTheHost drives it.
//
//   - discover: one device, "probe", whose attributes are the values of the
//     configuration keys listed in "keys" ("<absent>" for a key not set);
//   - allocate, by the workload's pod name: "refuse" (sdk.Refuse), "fail"
//     (sdk.Fail, code unavailable), "plain" (a plain Go error), "nil" (a nil
//     response); any other echoes the request in Envs;
//   - prestart logs one line at each level, naming it;
//   - preferred allocation is not declared.
package main

import (
	"errors"
	"strings"

	"github.com/wasmlet/wasmlet/abi"
	"github.com/wasmlet/wasmlet/guests/sdk"
	"github.com/wasmlet/wasmlet/guests/sdk/source"
)

func init() {
	source.Serve(source.Source{
		Resource:           sdk.ConfigOr("resource", "example.com/sdkprobe"),
		Name:               "sdkprobe",
		Version:            "0.0.1",
		PreStartRequired:   true,
		DiscoverIntervalMS: 2500,
		Discover: func() ([]abi.Device, error) {
			attrs := map[string]string{}
			for _, k := range sdk.ConfigList("keys", "") {
				attrs[k] = sdk.ConfigOr(k, "<absent>")
			}
			return []abi.Device{{ID: "probe", Attributes: attrs}}, nil
		},
		Allocate: func(req *abi.AllocateRequest) (*abi.AllocateResponse, error) {
			parts := strings.Split(req.Workload, "/")
			switch parts[len(parts)/2] {
			case "refuse":
				return nil, sdk.Refuse("refused: " + req.Workload)
			case "fail":
				return nil, sdk.Fail(abi.CodeUnavailable, "try later")
			case "plain":
				return nil, errors.New("a plain error")
			case "nil":
				return nil, nil
			}
			return &abi.AllocateResponse{Envs: map[string]string{
				"DEVICES": strings.Join(req.DeviceIDs, ","), "WORKLOAD": req.Workload}}, nil
		},
		PreStart: func(req *abi.PreStartRequest) error {
			sdk.Debug("probe debug line")
			sdk.Info("probe info line")
			sdk.Warn("probe warn line")
			sdk.Error("probe error line")
			return nil
		},
	})
}

func main() {}
