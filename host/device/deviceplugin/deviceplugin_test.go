package deviceplugin_test

import (
	"testing"

	"google.golang.org/protobuf/proto"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"

	"github.com/wasmlet/wasmlet/host/device"
	"github.com/wasmlet/wasmlet/host/device/deviceplugin"
)

// Every field of the kubelet's ContainerAllocateResponse has a place in
// device.Edits, and back: a response survives the round trip whole.
func TestResponseRoundTrip(t *testing.T) {
	resp := &pluginapi.ContainerAllocateResponse{
		Envs:        map[string]string{"E": "1"},
		Mounts:      []*pluginapi.Mount{{ContainerPath: "/c", HostPath: "/h", ReadOnly: true}, {ContainerPath: "/w", HostPath: "/hw"}},
		Devices:     []*pluginapi.DeviceSpec{{ContainerPath: "/dev/c", HostPath: "/dev/h", Permissions: "rw"}},
		Annotations: map[string]string{"a": "b"},
		CdiDevices:  []*pluginapi.CDIDevice{{Name: "example.com/gpu=gpu0"}, {Name: "example.com/gpu=gpu1"}},
	}
	e := deviceplugin.Edits(resp)
	want := device.Edits{
		Env:         map[string]string{"E": "1"},
		Mounts:      []device.Mount{{ContainerPath: "/c", HostPath: "/h", ReadOnly: true}, {ContainerPath: "/w", HostPath: "/hw"}},
		DeviceNodes: []device.Node{{ContainerPath: "/dev/c", HostPath: "/dev/h", Permissions: "rw"}},
		Annotations: map[string]string{"a": "b"},
		CDIDevices:  []string{"example.com/gpu=gpu0", "example.com/gpu=gpu1"},
	}
	if !e.Equal(want) {
		t.Fatalf("edits %+v\nwant  %+v", e, want)
	}
	if back := deviceplugin.Response(e); !proto.Equal(back, resp) {
		t.Fatalf("back %v\nwant %v", back, resp)
	}
	if !deviceplugin.Edits(nil).Empty() || !proto.Equal(deviceplugin.Response(device.Edits{}), &pluginapi.ContainerAllocateResponse{}) {
		t.Fatal("nothing does not convert to nothing")
	}
	// The maps are the converter's own.
	e.Env["E"] = "2"
	if resp.Envs["E"] != "1" {
		t.Fatal("the edits share the response's map")
	}
}

func TestDeviceRoundTrip(t *testing.T) {
	for _, d := range []device.Device{
		{ID: "a", Healthy: true, NUMANodes: []int64{0, 1}},
		{ID: "b"},
	} {
		got := deviceplugin.FromDevice(deviceplugin.Device(d))
		if !got.Equal(d) {
			t.Errorf("%+v came back as %+v", d, got)
		}
	}
	if d := deviceplugin.Device(device.Device{ID: "x"}); d.Health != pluginapi.Unhealthy || d.Topology != nil {
		t.Errorf("%v", d)
	}
}
