package device_test

import (
	"testing"

	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/wasmlet/wasmlet/host/device"
)

func TestMerge(t *testing.T) {
	node := func(c, h, p string) device.Node { return device.Node{ContainerPath: c, HostPath: h, Permissions: p} }
	mount := func(c, h string, ro bool) device.Mount {
		return device.Mount{ContainerPath: c, HostPath: h, ReadOnly: ro}
	}
	dev := func(id string, e device.Edits) device.Device { return device.Device{ID: id, Edits: e} }
	for _, c := range []struct {
		name string
		devs []device.Device
		want device.Edits
		err  string
	}{
		{"nothing", nil, device.Edits{}, ""},
		{"no edits", []device.Device{dev("a", device.Edits{}), dev("b", device.Edits{Env: map[string]string{}})}, device.Edits{}, ""},
		{"merged in order, the same edits once", []device.Device{
			dev("a", device.Edits{Env: map[string]string{"A": "1", "ALL": "x"}, DeviceNodes: []device.Node{node("/dev/a", "/dev/a", "rw"), node("/dev/ctl", "/dev/ctl", "rw")},
				Mounts: []device.Mount{mount("/lib/x", "/opt/x", true)}, Annotations: map[string]string{"k": "v"}, CDIDevices: []string{"v.com/c=a", "v.com/c=ctl"}}),
			dev("b", device.Edits{Env: map[string]string{"B": "2", "ALL": "x"}, DeviceNodes: []device.Node{node("/dev/b", "/dev/b", "r"), node("/dev/ctl", "/dev/ctl", "rw")},
				Mounts: []device.Mount{mount("/lib/x", "/opt/x", true)}, CDIDevices: []string{"v.com/c=ctl", "v.com/c=b"}}),
		}, device.Edits{
			Env:         map[string]string{"A": "1", "B": "2", "ALL": "x"},
			DeviceNodes: []device.Node{node("/dev/a", "/dev/a", "rw"), node("/dev/ctl", "/dev/ctl", "rw"), node("/dev/b", "/dev/b", "r")},
			Mounts:      []device.Mount{mount("/lib/x", "/opt/x", true)},
			Annotations: map[string]string{"k": "v"},
			CDIDevices:  []string{"v.com/c=a", "v.com/c=ctl", "v.com/c=b"},
		}, ""},
		{"environment", []device.Device{dev("a", device.Edits{Env: map[string]string{"V": "0"}}), dev("b", device.Edits{Env: map[string]string{"V": "1"}})},
			device.Edits{}, `devices a and b set environment variable V to different values ("0" and "1")`},
		{"annotation", []device.Device{dev("a", device.Edits{Annotations: map[string]string{"k": "0"}}), dev("b", device.Edits{Annotations: map[string]string{"k": "1"}})},
			device.Edits{}, `devices a and b set annotation k to different values ("0" and "1")`},
		{"device node", []device.Device{dev("a", device.Edits{DeviceNodes: []device.Node{node("/dev/x", "/dev/a", "rw")}}),
			dev("b", device.Edits{DeviceNodes: []device.Node{node("/dev/x", "/dev/b", "rw")}})},
			device.Edits{}, `devices a and b need different device nodes at /dev/x (host /dev/a, permissions "rw" and host /dev/b, permissions "rw")`},
		{"mount", []device.Device{dev("a", device.Edits{Mounts: []device.Mount{mount("/m", "/x", true)}}),
			dev("b", device.Edits{Mounts: []device.Mount{mount("/m", "/x", false)}})},
			device.Edits{}, `devices a and b need different mounts at /m (host /x read-only and host /x)`},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := device.Merge(c.devs)
			if c.err != "" {
				if err == nil || err.Error() != c.err {
					t.Fatalf("got %v, want %q", err, c.err)
				}
				return
			}
			if err != nil || !got.Equal(c.want) {
				t.Fatalf("got %+v, %v\nwant %+v", got, err, c.want)
			}
		})
	}
}

// Clone copies deeply: changing the copy leaves the original alone, and
// Equal sees the change.
func TestCloneAndEqual(t *testing.T) {
	d := device.Device{ID: "a", Healthy: true, NUMANodes: []int64{0}, Attributes: map[string]device.Attribute{"k": device.StringAttribute("v"), "n": device.IntAttribute(1)},
		Capacity: map[string]device.Capacity{"memory": {Value: resource.MustParse("40Gi"), Policy: &device.CapacityPolicy{
			Default: ptr(resource.MustParse("1Gi")), ValidValues: []resource.Quantity{resource.MustParse("1Gi")}}}},
		ConsumesCounters:         []device.CounterConsumption{{CounterSet: "gpu-0", Counters: map[string]resource.Quantity{"memory": resource.MustParse("5Gi")}}},
		AllowMultipleAllocations: true,
		Edits: device.Edits{Env: map[string]string{"E": "1"}, Mounts: []device.Mount{{ContainerPath: "/c", HostPath: "/h"}},
			DeviceNodes: []device.Node{{ContainerPath: "/dev/x", HostPath: "/dev/x", Permissions: "r"}},
			Annotations: map[string]string{"a": "b"}, CDIDevices: []string{"v.com/c=a"}}}
	for name, change := range map[string]func(*device.Device){
		"numa":             func(c *device.Device) { c.NUMANodes[0] = 1 },
		"attribute":        func(c *device.Device) { *c.Attributes["k"].String = "w" },
		"attribute type":   func(c *device.Device) { c.Attributes["n"] = device.StringAttribute("1") },
		"capacity":         func(c *device.Device) { c.Capacity["memory"].Policy.ValidValues[0] = resource.MustParse("2Gi") },
		"capacity default": func(c *device.Device) { *c.Capacity["memory"].Policy.Default = resource.MustParse("2Gi") },
		"counters":         func(c *device.Device) { c.ConsumesCounters[0].Counters["memory"] = resource.MustParse("6Gi") },
		"shared":           func(c *device.Device) { c.AllowMultipleAllocations = false },
		"env":              func(c *device.Device) { c.Edits.Env["E"] = "2" },
		"mount":            func(c *device.Device) { c.Edits.Mounts[0].ReadOnly = true },
		"node":             func(c *device.Device) { c.Edits.DeviceNodes[0].Permissions = "rw" },
		"annotation":       func(c *device.Device) { c.Edits.Annotations["a"] = "c" },
		"cdi":              func(c *device.Device) { c.Edits.CDIDevices[0] = "v.com/c=b" },
		"health":           func(c *device.Device) { c.Healthy = false },
	} {
		c := d.Clone()
		if !c.Equal(d) {
			t.Fatalf("%s: a clone differs", name)
		}
		change(&c)
		if c.Equal(d) || d.Equal(c) {
			t.Errorf("%s: Equal misses the change", name)
		}
		if !d.Equal(device.Clone([]device.Device{d})[0]) {
			t.Errorf("%s: the original changed with its clone", name)
		}
	}
	if !(device.Edits{Env: map[string]string{}}).Equal(device.Edits{}) || !(device.Edits{}).Empty() {
		t.Error("an empty map is not the same as none")
	}
}

func ptr[T any](v T) *T { return &v }
