package devicesource_test

import (
	"reflect"
	"testing"

	"google.golang.org/protobuf/proto"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"

	"github.com/wasmlet/wasmlet/abi"
	"github.com/wasmlet/wasmlet/host/devicesource"
)

func TestMergeEdits(t *testing.T) {
	node := func(c, h, p string) abi.DeviceNode {
		return abi.DeviceNode{ContainerPath: c, HostPath: h, Permissions: p}
	}
	mount := func(c, h string, ro bool) abi.Mount { return abi.Mount{ContainerPath: c, HostPath: h, ReadOnly: ro} }
	dev := func(id string, e *abi.ContainerEdits) abi.Device { return abi.Device{ID: id, Edits: e} }
	for _, c := range []struct {
		name string
		devs []abi.Device
		want *abi.AllocateResponse
		err  string
	}{
		{"nothing", nil, &abi.AllocateResponse{}, ""},
		{"no edits", []abi.Device{dev("a", nil), dev("b", &abi.ContainerEdits{})}, &abi.AllocateResponse{}, ""},
		{"merged in order, the same edits once", []abi.Device{
			dev("a", &abi.ContainerEdits{Envs: map[string]string{"A": "1", "ALL": "x"}, DeviceNodes: []abi.DeviceNode{node("/dev/a", "/dev/a", "rw"), node("/dev/ctl", "/dev/ctl", "rw")},
				Mounts: []abi.Mount{mount("/lib/x", "/opt/x", true)}, Annotations: map[string]string{"k": "v"}}),
			dev("b", &abi.ContainerEdits{Envs: map[string]string{"B": "2", "ALL": "x"}, DeviceNodes: []abi.DeviceNode{node("/dev/b", "/dev/b", "r"), node("/dev/ctl", "/dev/ctl", "rw")},
				Mounts: []abi.Mount{mount("/lib/x", "/opt/x", true)}}),
		}, &abi.AllocateResponse{
			Envs:        map[string]string{"A": "1", "B": "2", "ALL": "x"},
			DeviceNodes: []abi.DeviceNode{node("/dev/a", "/dev/a", "rw"), node("/dev/ctl", "/dev/ctl", "rw"), node("/dev/b", "/dev/b", "r")},
			Mounts:      []abi.Mount{mount("/lib/x", "/opt/x", true)},
			Annotations: map[string]string{"k": "v"},
		}, ""},
		{"environment", []abi.Device{dev("a", &abi.ContainerEdits{Envs: map[string]string{"V": "0"}}), dev("b", &abi.ContainerEdits{Envs: map[string]string{"V": "1"}})},
			nil, `devices a and b set environment variable V to different values ("0" and "1")`},
		{"annotation", []abi.Device{dev("a", &abi.ContainerEdits{Annotations: map[string]string{"k": "0"}}), dev("b", &abi.ContainerEdits{Annotations: map[string]string{"k": "1"}})},
			nil, `devices a and b set annotation k to different values ("0" and "1")`},
		{"device node", []abi.Device{dev("a", &abi.ContainerEdits{DeviceNodes: []abi.DeviceNode{node("/dev/x", "/dev/a", "rw")}}),
			dev("b", &abi.ContainerEdits{DeviceNodes: []abi.DeviceNode{node("/dev/x", "/dev/b", "rw")}})},
			nil, `devices a and b need different device nodes at /dev/x (host /dev/a, permissions "rw" and host /dev/b, permissions "rw")`},
		{"mount", []abi.Device{dev("a", &abi.ContainerEdits{Mounts: []abi.Mount{mount("/m", "/x", true)}}),
			dev("b", &abi.ContainerEdits{Mounts: []abi.Mount{mount("/m", "/x", false)}})},
			nil, `devices a and b need different mounts at /m (host /x read-only and host /x)`},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := devicesource.MergeEdits(c.devs)
			if c.err != "" {
				if err == nil || err.Error() != c.err {
					t.Fatalf("got %v, want %q", err, c.err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, c.want) {
				t.Fatalf("got %+v, %v\nwant %+v", got, err, c.want)
			}
		})
	}
}

func TestContainerResponse(t *testing.T) {
	got := devicesource.ContainerResponse(&abi.AllocateResponse{
		Envs:        map[string]string{"E": "1"},
		Mounts:      []abi.Mount{{ContainerPath: "/c", HostPath: "/h", ReadOnly: true}},
		DeviceNodes: []abi.DeviceNode{{ContainerPath: "/dev/c", HostPath: "/dev/h", Permissions: "rw"}},
		Annotations: map[string]string{"a": "b"},
		CDIDevices:  []string{"example.com/gpu=gpu0", "example.com/gpu=gpu1"},
	})
	want := &pluginapi.ContainerAllocateResponse{
		Envs:        map[string]string{"E": "1"},
		Mounts:      []*pluginapi.Mount{{ContainerPath: "/c", HostPath: "/h", ReadOnly: true}},
		Devices:     []*pluginapi.DeviceSpec{{ContainerPath: "/dev/c", HostPath: "/dev/h", Permissions: "rw"}},
		Annotations: map[string]string{"a": "b"},
		CdiDevices:  []*pluginapi.CDIDevice{{Name: "example.com/gpu=gpu0"}, {Name: "example.com/gpu=gpu1"}},
	}
	if !proto.Equal(got, want) {
		t.Fatalf("got %v\nwant %v", got, want)
	}
	if got := devicesource.ContainerResponse(nil); !proto.Equal(got, &pluginapi.ContainerAllocateResponse{}) {
		t.Fatalf("nil: %v", got)
	}
}
