package device

import (
	"maps"
	"slices"
)

// Device is one device of an extended resource, as its provider reports it.
type Device struct {
	// ID names the device within its resource (abi.ValidDeviceID).
	ID      string
	Healthy bool
	// NUMANodes are the NUMA nodes the device is attached to.
	NUMANodes []int64
	// Attributes describe the device to allocation logic, to claims'
	// selectors and to people, by qualified name (resource.k8s.io/v1
	// semantics: see structured.go).
	Attributes map[string]Attribute
	// Capacity is what the device has of each capacity, by qualified name.
	Capacity map[string]Capacity
	// ConsumesCounters is what the device takes from its pool's shared
	// counter sets while it is allocated (a partition of a partitionable
	// device).
	ConsumesCounters []CounterConsumption
	// AllowMultipleAllocations lets several claims share the device, each
	// consuming part of its capacity.
	AllowMultipleAllocations bool
	// Edits are what a container needs to use the device, when its
	// provider says so at discovery (device sources do; device plugins
	// answer them only in Allocate).
	Edits Edits
}

// Clone returns a deep copy of d.
func (d Device) Clone() Device {
	d.NUMANodes = slices.Clone(d.NUMANodes)
	d.Attributes = cloneAttributes(d.Attributes)
	d.Capacity = cloneCapacities(d.Capacity)
	d.ConsumesCounters = cloneConsumption(d.ConsumesCounters)
	d.Edits = d.Edits.Clone()
	return d
}

// Equal reports whether d and o are the same device in the same state, edits
// included. A nil and an empty map or slice are equal.
func (d Device) Equal(o Device) bool {
	return d.ID == o.ID && d.Healthy == o.Healthy && slices.Equal(d.NUMANodes, o.NUMANodes) &&
		maps.EqualFunc(d.Attributes, o.Attributes, Attribute.Equal) && maps.EqualFunc(d.Capacity, o.Capacity, Capacity.Equal) &&
		equalConsumption(d.ConsumesCounters, o.ConsumesCounters) && d.AllowMultipleAllocations == o.AllowMultipleAllocations &&
		d.Edits.Equal(o.Edits)
}

// Clone deep-copies a device set.
func Clone(devs []Device) []Device {
	if devs == nil {
		return nil
	}
	out := make([]Device, len(devs))
	for i := range devs {
		out[i] = devs[i].Clone()
	}
	return out
}

// Equal reports whether two device sets hold equal devices in the same
// order.
func Equal(a, b []Device) bool {
	return slices.EqualFunc(a, b, Device.Equal)
}

// Edits are the changes a container needs to use devices: the device
// plugin API's ContainerAllocateResponse and CDI's container edits, in the
// host's terms.
type Edits struct {
	// Env are environment variables, by name.
	Env map[string]string
	// Mounts are host paths bound into the container.
	Mounts []Mount
	// DeviceNodes are host device nodes made available in the container.
	DeviceNodes []Node
	// Annotations are container annotations for the runtime.
	Annotations map[string]string
	// CDIDevices are qualified CDI device names, "vendor.com/class=name",
	// that the runtime resolves from its CDI specs.
	CDIDevices []string
}

// Mount binds a host path into a container.
type Mount struct {
	ContainerPath string
	HostPath      string
	ReadOnly      bool
}

// Node is a device node given to a container.
type Node struct {
	ContainerPath string
	HostPath      string
	// Permissions are cgroup device permissions, of "r", "w" and "m". The
	// runtimes read an empty string as "rwm".
	Permissions string
}

// Empty reports whether e changes nothing.
func (e Edits) Empty() bool {
	return len(e.Env) == 0 && len(e.Mounts) == 0 && len(e.DeviceNodes) == 0 && len(e.Annotations) == 0 &&
		len(e.CDIDevices) == 0
}

// Clone returns a deep copy of e.
func (e Edits) Clone() Edits {
	return Edits{Env: maps.Clone(e.Env), Mounts: slices.Clone(e.Mounts), DeviceNodes: slices.Clone(e.DeviceNodes),
		Annotations: maps.Clone(e.Annotations), CDIDevices: slices.Clone(e.CDIDevices)}
}

// Equal reports whether e and o make the same changes, in the same order.
// A nil and an empty map or slice are equal.
func (e Edits) Equal(o Edits) bool {
	return maps.Equal(e.Env, o.Env) && slices.Equal(e.Mounts, o.Mounts) && slices.Equal(e.DeviceNodes, o.DeviceNodes) &&
		maps.Equal(e.Annotations, o.Annotations) && slices.Equal(e.CDIDevices, o.CDIDevices)
}
