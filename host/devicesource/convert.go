package devicesource

import (
	"fmt"
	"maps"
	"slices"

	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"

	"github.com/wasmlet/wasmlet/abi"
	"github.com/wasmlet/wasmlet/host/devicemanager"
)

// managerDevices converts a discovered device set to the device manager's
// form. The NUMA nodes and attributes are shared, not copied: neither side
// modifies them (the device manager keeps its own copies).
func managerDevices(devs []abi.Device) []devicemanager.Device {
	out := make([]devicemanager.Device, len(devs))
	for i := range devs {
		d := &devs[i]
		out[i] = devicemanager.Device{ID: d.ID, Healthy: d.Health == abi.Healthy, NUMANodes: d.NUMANodes, Attributes: d.Attributes}
	}
	return out
}

// sameDevices reports whether two device sets are the same, in the same order.
func sameDevices(a, b []devicemanager.Device) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].ID != b[i].ID || a[i].Healthy != b[i].Healthy ||
			!slices.Equal(a[i].NUMANodes, b[i].NUMANodes) || !maps.Equal(a[i].Attributes, b[i].Attributes) {
			return false
		}
	}
	return true
}

// sameEdits reports whether two device sets, in the same order, have the
// same container edits.
func sameEdits(a, b []abi.Device) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i].Edits, b[i].Edits
		if x.Empty() || y.Empty() {
			if x.Empty() != y.Empty() {
				return false
			}
			continue
		}
		if !maps.Equal(x.Envs, y.Envs) || !slices.Equal(x.Mounts, y.Mounts) ||
			!slices.Equal(x.DeviceNodes, y.DeviceNodes) || !maps.Equal(x.Annotations, y.Annotations) {
			return false
		}
	}
	return true
}

// cloneDevices deep-copies devices, edits included.
func cloneDevices(devs []abi.Device) []abi.Device {
	out := make([]abi.Device, len(devs))
	for i, d := range devs {
		d.NUMANodes = slices.Clone(d.NUMANodes)
		d.Attributes = maps.Clone(d.Attributes)
		if d.Edits != nil {
			e := *d.Edits
			e.Envs = maps.Clone(e.Envs)
			e.Mounts = slices.Clone(e.Mounts)
			e.DeviceNodes = slices.Clone(e.DeviceNodes)
			e.Annotations = maps.Clone(e.Annotations)
			d.Edits = &e
		}
		out[i] = d
	}
	return out
}

// MergeEdits combines the container edits of devs, in order, into one
// allocation: what the host answers for a device source that does not
// implement allocate. Edits that are the same for several devices appear
// once. Two devices that disagree — one environment variable or annotation
// with two values, one container path with two different mounts or device
// nodes — are an error naming both, because only the module could say how to
// combine them (by implementing allocate). No CDI device names are returned:
// the edits themselves are the answer.
func MergeEdits(devs []abi.Device) (*abi.AllocateResponse, error) {
	resp := &abi.AllocateResponse{}
	envFrom := map[string]string{}        // variable -> id of the device that set it
	annotationFrom := map[string]string{} // annotation -> id
	mountFrom := map[string]int{}         // container path -> index in resp.Mounts
	nodeFrom := map[string]int{}          // container path -> index in resp.DeviceNodes
	mountOwner := map[string]string{}
	nodeOwner := map[string]string{}
	for _, d := range devs {
		e := d.Edits
		if e.Empty() {
			continue
		}
		for _, k := range slices.Sorted(maps.Keys(e.Envs)) {
			if err := mergeValue(&resp.Envs, envFrom, "environment variable", k, e.Envs[k], d.ID); err != nil {
				return nil, err
			}
		}
		for _, k := range slices.Sorted(maps.Keys(e.Annotations)) {
			if err := mergeValue(&resp.Annotations, annotationFrom, "annotation", k, e.Annotations[k], d.ID); err != nil {
				return nil, err
			}
		}
		for _, m := range e.Mounts {
			if i, ok := mountFrom[m.ContainerPath]; ok {
				if resp.Mounts[i] != m {
					return nil, fmt.Errorf("devices %s and %s need different mounts at %s (%s and %s)",
						mountOwner[m.ContainerPath], d.ID, m.ContainerPath, describeMount(resp.Mounts[i]), describeMount(m))
				}
				continue
			}
			mountFrom[m.ContainerPath], mountOwner[m.ContainerPath] = len(resp.Mounts), d.ID
			resp.Mounts = append(resp.Mounts, m)
		}
		for _, n := range e.DeviceNodes {
			if i, ok := nodeFrom[n.ContainerPath]; ok {
				if resp.DeviceNodes[i] != n {
					return nil, fmt.Errorf("devices %s and %s need different device nodes at %s (%s and %s)",
						nodeOwner[n.ContainerPath], d.ID, n.ContainerPath, describeNode(resp.DeviceNodes[i]), describeNode(n))
				}
				continue
			}
			nodeFrom[n.ContainerPath], nodeOwner[n.ContainerPath] = len(resp.DeviceNodes), d.ID
			resp.DeviceNodes = append(resp.DeviceNodes, n)
		}
	}
	return resp, nil
}

func mergeValue(dst *map[string]string, from map[string]string, what, key, value, id string) error {
	if old, ok := (*dst)[key]; ok {
		if old != value {
			return fmt.Errorf("devices %s and %s set %s %s to different values (%q and %q)", from[key], id, what, key, old, value)
		}
		return nil
	}
	if *dst == nil {
		*dst = map[string]string{}
	}
	(*dst)[key], from[key] = value, id
	return nil
}

func describeMount(m abi.Mount) string {
	s := "host " + m.HostPath
	if m.ReadOnly {
		s += " read-only"
	}
	return s
}

func describeNode(n abi.DeviceNode) string {
	return fmt.Sprintf("host %s, permissions %q", n.HostPath, n.Permissions)
}

// ContainerResponse converts a device source's allocation to the device
// plugin API's form, CDI device names included.
func ContainerResponse(r *abi.AllocateResponse) *pluginapi.ContainerAllocateResponse {
	out := &pluginapi.ContainerAllocateResponse{}
	if r == nil {
		return out
	}
	if len(r.Envs) > 0 {
		out.Envs = maps.Clone(r.Envs)
	}
	if len(r.Annotations) > 0 {
		out.Annotations = maps.Clone(r.Annotations)
	}
	for _, m := range r.Mounts {
		out.Mounts = append(out.Mounts, &pluginapi.Mount{ContainerPath: m.ContainerPath, HostPath: m.HostPath, ReadOnly: m.ReadOnly})
	}
	for _, n := range r.DeviceNodes {
		out.Devices = append(out.Devices, &pluginapi.DeviceSpec{ContainerPath: n.ContainerPath, HostPath: n.HostPath, Permissions: n.Permissions})
	}
	for _, name := range r.CDIDevices {
		out.CdiDevices = append(out.CdiDevices, &pluginapi.CDIDevice{Name: name})
	}
	return out
}
