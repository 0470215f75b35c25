// Command greedy is a device source that asks the host to hand containers
// what would give them the node: a read-write bind of the host's / and of
// /var/run/docker.sock, /dev/sda and /dev/mem with "rwm", and LD_PRELOAD —
// with no mounts granted at all. It is the hostile module of the output
// policy's tests (abi/ABI.md, "What a device source may hand a container").
//
// It offers two devices of `resource` (default example.com/greedy):
// "plain-0", whose only edit is an ordinary environment variable, and
// "greedy-0", whose discovered edits are the hostile ones when `discover` is
// "hostile". Its allocate answers the hostile edits when `allocate` is
// "hostile", else the plain ones of the devices asked for; so does its
// prepare, for each device of a claim, when `prepare` is "hostile".
package main

import (
	"strings"

	"github.com/wasmlet/wasmlet/abi"
	"github.com/wasmlet/wasmlet/guests/sdk"
	"github.com/wasmlet/wasmlet/guests/sdk/source"
)

func init() {
	source.Serve(source.Source{
		Resource: sdk.ConfigOr("resource", "example.com/greedy"),
		Name:     "greedy",
		Version:  "1.0.0",
		Summary:  "asks for the host's /, the docker socket, /dev/sda, /dev/mem and LD_PRELOAD",
		Discover: discover,
		Allocate: allocate,
		Prepare:  prepare,
	})
}

func main() {}

// hostile are the edits that would hand a container the node.
func hostile() *abi.ContainerEdits {
	return &abi.ContainerEdits{
		Envs: map[string]string{"LD_PRELOAD": "/tmp/greedy.so"},
		Mounts: []abi.Mount{
			{ContainerPath: "/host", HostPath: "/"},
			{ContainerPath: "/var/run/docker.sock", HostPath: "/var/run/docker.sock"},
		},
		DeviceNodes: []abi.DeviceNode{
			{ContainerPath: "/dev/sda", HostPath: "/dev/sda", Permissions: "rwm"},
			{ContainerPath: "/dev/mem", HostPath: "/dev/mem", Permissions: "rwm"},
		},
	}
}

func discover() ([]abi.Device, error) {
	plain := abi.Device{ID: "plain-0", Edits: &abi.ContainerEdits{Envs: map[string]string{"GREEDY_DEVICE": "plain-0"}}}
	greedy := abi.Device{ID: "greedy-0", Edits: &abi.ContainerEdits{Envs: map[string]string{"GREEDY_DEVICE": "greedy-0"}}}
	if sdk.ConfigOr("discover", "") == "hostile" {
		greedy.Edits = hostile()
	}
	return []abi.Device{plain, greedy}, nil
}

func allocate(req *abi.AllocateRequest) (*abi.AllocateResponse, error) {
	if sdk.ConfigOr("allocate", "") == "hostile" {
		e := hostile()
		return &abi.AllocateResponse{Envs: e.Envs, Mounts: e.Mounts, DeviceNodes: e.DeviceNodes}, nil
	}
	return &abi.AllocateResponse{Envs: map[string]string{"GREEDY_DEVICES": strings.Join(req.DeviceIDs, ",")}}, nil
}

func prepare(req *abi.PrepareRequest) (*abi.PrepareResponse, error) {
	resp := &abi.PrepareResponse{}
	for _, r := range req.Results {
		e := &abi.ContainerEdits{Envs: map[string]string{"GREEDY_DEVICE": r.DeviceID}}
		if sdk.ConfigOr("prepare", "") == "hostile" {
			e = hostile()
		}
		resp.Devices = append(resp.Devices, abi.PreparedDevice{Request: r.Request, DeviceID: r.DeviceID, Edits: e})
	}
	return resp, nil
}
