package devicesource

import (
	"errors"
	"maps"
	"slices"

	"github.com/wasmlet/wasmlet/abi"
	"github.com/wasmlet/wasmlet/host/device"
	"github.com/wasmlet/wasmlet/host/module"
)

// fromABI converts what a module answers to the host's model, under the
// module's policy. It is the one way a module's devices and container
// edits enter the host — discovered devices, allocate replies, and any
// later operation that answers edits — so no edit reaches a device
// manager, the kubelet or a CDI spec without passing the policy.
type fromABI struct {
	policy device.Policy
	// refused is told of every edit the policy refuses.
	refused func(kind string)
}

// newFromABI is the converter for module m serving resource, with the
// operator's grant: the module's mounts are its roots.
func newFromABI(m *module.Module, resource string, grant device.Grant, refused func(kind string)) fromABI {
	p := device.Policy{Resource: resource, Grant: grant}
	for _, mt := range m.Options().Mounts {
		p.Roots = append(p.Roots, device.Root{Path: mt.Host, Within: mt.Root, Devices: mt.Devices})
	}
	return fromABI{policy: p, refused: refused}
}

// devices converts a discovered set. A device whose edits the policy
// refuses is left out, and the reason given in refused, by device id.
// The maps and slices of devs are shared, not copied: devs is the
// module's fresh answer, and nothing else holds it.
func (c fromABI) devices(devs []abi.Device) (kept []device.Device, refused map[string]error) {
	kept = make([]device.Device, 0, len(devs))
	for i := range devs {
		d := &devs[i]
		out := device.Device{ID: d.ID, Healthy: d.Health == abi.Healthy, NUMANodes: d.NUMANodes, Attributes: attributes(d)}
		if e := d.Edits; e != nil {
			out.Edits = device.Edits{Env: e.Envs, Mounts: mounts(e.Mounts), DeviceNodes: nodes(e.DeviceNodes), Annotations: e.Annotations}
		}
		if err := c.policy.Check(out.Edits); err != nil {
			if refused == nil {
				refused = map[string]error{}
			}
			refused[d.ID] = err
			continue
		}
		kept = append(kept, out)
	}
	return kept, refused
}

// allocation converts an allocate reply, or refuses it. Every refused edit
// is counted.
func (c fromABI) allocation(r *abi.AllocateResponse) (device.Edits, error) {
	if r == nil {
		return device.Edits{}, nil
	}
	e := device.Edits{Env: maps.Clone(r.Envs), Mounts: mounts(r.Mounts), DeviceNodes: nodes(r.DeviceNodes),
		Annotations: maps.Clone(r.Annotations), CDIDevices: slices.Clone(r.CDIDevices)}
	if err := c.check(e); err != nil {
		return device.Edits{}, err
	}
	return e, nil
}

// check applies the policy to e, counting what it refuses.
func (c fromABI) check(e device.Edits) error {
	err := c.policy.Check(e)
	if err == nil {
		return nil
	}
	c.count(err)
	return err
}

// count tells refused of each edit err refused.
func (c fromABI) count(err error) {
	var r *device.Refused
	if c.refused != nil && errors.As(err, &r) {
		for _, e := range r.Edits {
			c.refused(e.Kind)
		}
	}
}

// attributes are a device's attributes in the structured model: each string
// attribute k=v a string attribute k, and its NUMA node an int attribute
// "numa" when it has exactly one.
func attributes(d *abi.Device) map[string]device.Attribute {
	if len(d.Attributes) == 0 && len(d.NUMANodes) != 1 {
		return nil
	}
	out := make(map[string]device.Attribute, len(d.Attributes)+1)
	for k, v := range d.Attributes {
		out[k] = device.StringAttribute(v)
	}
	if len(d.NUMANodes) == 1 {
		if _, ok := out["numa"]; !ok {
			out["numa"] = device.IntAttribute(d.NUMANodes[0])
		}
	}
	return out
}

func mounts(ms []abi.Mount) []device.Mount {
	return convert(ms, func(m abi.Mount) device.Mount {
		return device.Mount{ContainerPath: m.ContainerPath, HostPath: m.HostPath, ReadOnly: m.ReadOnly}
	})
}

func nodes(ns []abi.DeviceNode) []device.Node {
	return convert(ns, func(n abi.DeviceNode) device.Node {
		return device.Node{ContainerPath: n.ContainerPath, HostPath: n.HostPath, Permissions: n.Permissions}
	})
}

// convert maps in with f; nothing stays nil.
func convert[S, T any](in []S, f func(S) T) []T {
	if len(in) == 0 {
		return nil
	}
	out := make([]T, len(in))
	for i, v := range in {
		out[i] = f(v)
	}
	return out
}
