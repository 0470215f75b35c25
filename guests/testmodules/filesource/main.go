// Command filesource is a device source whose discovery is a file: for
// tests that make devices appear and go, change their attributes,
// partitions and shared counters, or make them unhealthy, by rewriting the
// file (the host rediscovers when a file under the module's mounts
// changes). It is well-behaved; it lives with the test modules because it
// is meant for tests only.
//
// The file (configuration key file, default /data/devices.json) is JSON
// (package filefmt):
//
//	{"counters": [{"name": "gpu-0", "counters": {"memory": "40Gi"}}],
//	 "devices": [{"id": "gpu-0", "unhealthy": false,
//	              "strings": {"model": "A100"}, "ints": {"index": 0},
//	              "bools": {"mig": true}, "versions": {"driverVersion": "1.2.3"},
//	              "capacity": {"memory": "40Gi"},
//	              "consumes": [{"counterSet": "gpu-0", "counters": {"memory": "40Gi"}}]}]}
//
// A missing file is no devices. prepare answers, for each device, the CDI
// device "<resource>=<device id>" and FILESOURCE_<DEVICE>=<claim uid>.
//
// Configuration keys: resource (default example.com/file), driver (default
// file.example.com), file.
package main

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"sort"
	"strings"

	"github.com/wasmlet/wasmlet/abi"
	"github.com/wasmlet/wasmlet/guests/sdk"
	"github.com/wasmlet/wasmlet/guests/sdk/source"
	"github.com/wasmlet/wasmlet/guests/testmodules/filesource/filefmt"
)

var resource = sdk.ConfigOr("resource", "example.com/file")

func init() {
	source.Serve(source.Source{
		Resource:    resource,
		Driver:      sdk.ConfigOr("driver", "file.example.com"),
		Name:        "filesource",
		Version:     "1.0.0",
		Summary:     "devices described by a JSON file, for tests",
		DiscoverAll: discover,
		Allocate:    func(*abi.AllocateRequest) (*abi.AllocateResponse, error) { return &abi.AllocateResponse{}, nil },
		Prepare:     prepare,
		Unprepare:   func(*abi.UnprepareRequest) error { return nil },
	})
}

func main() {}

func discover() (*abi.DiscoverResponse, error) {
	b, err := os.ReadFile(sdk.ConfigOr("file", "/data/devices.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return &abi.DiscoverResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	var f filefmt.File
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, err
	}
	out := &abi.DiscoverResponse{}
	for _, c := range f.Counters {
		out.SharedCounters = append(out.SharedCounters, abi.CounterSet{Name: c.Name, Counters: c.Counters})
	}
	for _, d := range f.Devices {
		dev := abi.Device{ID: d.ID, Health: abi.Healthy, TypedAttributes: map[string]abi.Attribute{}}
		if d.Unhealthy {
			dev.Health = abi.Unhealthy
		}
		for k, v := range d.Strings {
			dev.TypedAttributes[k] = abi.StringAttribute(v)
		}
		for k, v := range d.Ints {
			dev.TypedAttributes[k] = abi.IntAttribute(v)
		}
		for k, v := range d.Bools {
			dev.TypedAttributes[k] = abi.BoolAttribute(v)
		}
		for k, v := range d.Versions {
			dev.TypedAttributes[k] = abi.VersionAttribute(v)
		}
		if len(d.Capacity) > 0 {
			dev.Capacity = map[string]abi.Capacity{}
			for k, v := range d.Capacity {
				dev.Capacity[k] = abi.Capacity{Value: v}
			}
		}
		for _, c := range d.Consumes {
			dev.ConsumesCounters = append(dev.ConsumesCounters, abi.CounterConsumption{CounterSet: c.CounterSet, Counters: c.Counters})
		}
		out.Devices = append(out.Devices, dev)
	}
	sort.Slice(out.Devices, func(i, j int) bool { return out.Devices[i].ID < out.Devices[j].ID })
	return out, nil
}

func prepare(req *abi.PrepareRequest) (*abi.PrepareResponse, error) {
	out := &abi.PrepareResponse{}
	for _, r := range req.Results {
		env := "FILESOURCE_" + strings.Map(func(c rune) rune {
			if c >= 'a' && c <= 'z' {
				return c - 'a' + 'A'
			}
			if c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
				return c
			}
			return '_'
		}, r.DeviceID)
		out.Devices = append(out.Devices, abi.PreparedDevice{Request: r.Request, DeviceID: r.DeviceID,
			CDIDeviceIDs: []string{resource + "=" + r.DeviceID},
			Edits:        &abi.ContainerEdits{Envs: map[string]string{env: req.Claim.UID}}})
	}
	return out, nil
}
