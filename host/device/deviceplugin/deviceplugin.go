// Package deviceplugin converts between the host's devices and edits
// (package device) and the kubelet's device plugin API, v1beta1
// (k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1): devices and allocation
// responses from external device plugins (host/endpoint), to the kubelet
// (host/bridge), and the allocation responses the checkpoint stores, as the
// kubelet's own checkpoint does. It is the one place that knows both forms.
package deviceplugin

import (
	"maps"

	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"

	"github.com/wasmlet/wasmlet/host/device"
)

// Device is d in the device plugin API's form: its id, health and NUMA
// nodes (the API has no attributes or edits).
func Device(d device.Device) *pluginapi.Device {
	out := &pluginapi.Device{ID: d.ID, Health: pluginapi.Unhealthy}
	if d.Healthy {
		out.Health = pluginapi.Healthy
	}
	if len(d.NUMANodes) > 0 {
		out.Topology = &pluginapi.TopologyInfo{Nodes: make([]*pluginapi.NUMANode, len(d.NUMANodes))}
		for i, n := range d.NUMANodes {
			out.Topology.Nodes[i] = &pluginapi.NUMANode{ID: n}
		}
	}
	return out
}

// FromDevice is a device plugin's device in the host's form.
func FromDevice(d *pluginapi.Device) device.Device {
	out := device.Device{ID: d.GetID(), Healthy: d.GetHealth() == pluginapi.Healthy}
	for _, n := range d.GetTopology().GetNodes() {
		out.NUMANodes = append(out.NUMANodes, n.GetID())
	}
	return out
}

// Response is e as a ContainerAllocateResponse. The maps are copied.
func Response(e device.Edits) *pluginapi.ContainerAllocateResponse {
	out := &pluginapi.ContainerAllocateResponse{}
	if len(e.Env) > 0 {
		out.Envs = maps.Clone(e.Env)
	}
	if len(e.Annotations) > 0 {
		out.Annotations = maps.Clone(e.Annotations)
	}
	for _, m := range e.Mounts {
		out.Mounts = append(out.Mounts, &pluginapi.Mount{ContainerPath: m.ContainerPath, HostPath: m.HostPath, ReadOnly: m.ReadOnly})
	}
	for _, n := range e.DeviceNodes {
		out.Devices = append(out.Devices, &pluginapi.DeviceSpec{ContainerPath: n.ContainerPath, HostPath: n.HostPath, Permissions: n.Permissions})
	}
	for _, name := range e.CDIDevices {
		out.CdiDevices = append(out.CdiDevices, &pluginapi.CDIDevice{Name: name})
	}
	return out
}

// Edits is a ContainerAllocateResponse (nil: none) in the host's form. The
// maps are copied.
func Edits(r *pluginapi.ContainerAllocateResponse) device.Edits {
	var out device.Edits
	if len(r.GetEnvs()) > 0 {
		out.Env = maps.Clone(r.Envs)
	}
	if len(r.GetAnnotations()) > 0 {
		out.Annotations = maps.Clone(r.Annotations)
	}
	for _, m := range r.GetMounts() {
		out.Mounts = append(out.Mounts, device.Mount{ContainerPath: m.GetContainerPath(), HostPath: m.GetHostPath(), ReadOnly: m.GetReadOnly()})
	}
	for _, d := range r.GetDevices() {
		out.DeviceNodes = append(out.DeviceNodes, device.Node{ContainerPath: d.GetContainerPath(), HostPath: d.GetHostPath(), Permissions: d.GetPermissions()})
	}
	for _, c := range r.GetCdiDevices() {
		out.CDIDevices = append(out.CDIDevices, c.GetName())
	}
	return out
}
