package devicesource

import (
	"errors"
	"fmt"
	"maps"
	"slices"

	apiresource "k8s.io/apimachinery/pkg/api/resource"

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
		if err := structured(&out, d); err != nil {
			if refused == nil {
				refused = map[string]error{}
			}
			refused[d.ID] = err
			continue
		}
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

// maxAttributes is resource.k8s.io/v1's limit of typed attributes and
// capacities of a device.
const maxAttributes = 32

// attributes are a device's typed attributes, and what its free-form fields
// mean to claims (ABI.md, "Structured devices"): its one NUMA node the int
// attribute "numa" unless typed, then each free-form attribute whose name is
// a qualified name and whose value is at most 64 bytes, not typed, as a
// string attribute, in name order, while the device has fewer than 32
// attributes and capacities.
func attributes(d *abi.Device) map[string]device.Attribute {
	out := make(map[string]device.Attribute, len(d.TypedAttributes)+len(d.Attributes)+1)
	for k, a := range d.TypedAttributes {
		switch a.Type {
		case abi.AttributeInt:
			out[k] = device.IntAttribute(a.Int)
		case abi.AttributeBool:
			out[k] = device.BoolAttribute(a.Bool)
		case abi.AttributeString:
			out[k] = device.StringAttribute(a.String)
		case abi.AttributeVersion:
			out[k] = device.VersionAttribute(a.String)
		}
	}
	room := func() bool { return len(out)+len(d.Capacity) < maxAttributes }
	if _, typed := out["numa"]; len(d.NUMANodes) == 1 && !typed && room() {
		out["numa"] = device.IntAttribute(d.NUMANodes[0])
	}
	for _, k := range slices.Sorted(maps.Keys(d.Attributes)) {
		v := d.Attributes[k]
		if _, taken := out[k]; taken || abi.ValidQualifiedName(k) != nil || len(v) > 64 || !room() {
			continue
		}
		out[k] = device.StringAttribute(v)
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// structured fills in d's capacities and counter consumption from a, whose
// quantities abi.ValidDiscovery checked.
func structured(d *device.Device, a *abi.Device) error {
	for k, c := range a.Capacity {
		v, err := apiresource.ParseQuantity(c.Value)
		if err != nil {
			return fmt.Errorf("capacity %q: %w", k, err)
		}
		capy := device.Capacity{Value: v}
		if p := c.RequestPolicy; p != nil {
			capy.Policy = &device.CapacityPolicy{}
			for _, f := range []struct {
				s   string
				dst **apiresource.Quantity
			}{{p.Default, &capy.Policy.Default}, {p.Min, &capy.Policy.Min}, {p.Max, &capy.Policy.Max}, {p.Step, &capy.Policy.Step}} {
				if f.s == "" {
					continue
				}
				q, err := apiresource.ParseQuantity(f.s)
				if err != nil {
					return fmt.Errorf("capacity %q: %w", k, err)
				}
				*f.dst = &q
			}
			for _, s := range p.ValidValues {
				q, err := apiresource.ParseQuantity(s)
				if err != nil {
					return fmt.Errorf("capacity %q: %w", k, err)
				}
				capy.Policy.ValidValues = append(capy.Policy.ValidValues, q)
			}
		}
		if d.Capacity == nil {
			d.Capacity = map[string]device.Capacity{}
		}
		d.Capacity[k] = capy
	}
	for _, cc := range a.ConsumesCounters {
		q, err := quantities(cc.Counters)
		if err != nil {
			return fmt.Errorf("consumes_counters of %q: %w", cc.CounterSet, err)
		}
		d.ConsumesCounters = append(d.ConsumesCounters, device.CounterConsumption{CounterSet: cc.CounterSet, Counters: q})
	}
	d.AllowMultipleAllocations = a.AllowMultipleAllocations
	return nil
}

// counterSets converts a discovery's shared counter sets.
func counterSets(sets []abi.CounterSet) ([]device.CounterSet, error) {
	var out []device.CounterSet
	for _, s := range sets {
		q, err := quantities(s.Counters)
		if err != nil {
			return nil, fmt.Errorf("shared counter set %q: %w", s.Name, err)
		}
		out = append(out, device.CounterSet{Name: s.Name, Counters: q})
	}
	return out, nil
}

func quantities(m map[string]string) (map[string]apiresource.Quantity, error) {
	out := make(map[string]apiresource.Quantity, len(m))
	for k, s := range m {
		q, err := apiresource.ParseQuantity(s)
		if err != nil {
			return nil, fmt.Errorf("counter %q: %w", k, err)
		}
		out[k] = q
	}
	return out, nil
}

// prepared converts a prepare reply for the devices of results: each
// device's edits, with its CDI device names, under the policy. A reply that
// names a device not asked for, or leaves one out, is refused.
func (c fromABI) prepared(r *abi.PrepareResponse, results []abi.AllocatedDevice) ([]device.Prepared, error) {
	asked := make(map[[2]string]bool, len(results))
	for _, a := range results {
		asked[[2]string{a.Request, a.DeviceID}] = true
	}
	out := make([]device.Prepared, 0, len(r.Devices))
	for _, p := range r.Devices {
		key := [2]string{p.Request, p.DeviceID}
		if !asked[key] {
			return nil, fmt.Errorf("prepared device %q of request %q, which was not asked for, or twice", p.DeviceID, p.Request)
		}
		delete(asked, key)
		e := device.Edits{CDIDevices: slices.Clone(p.CDIDeviceIDs)}
		if p.Edits != nil {
			e.Env, e.Mounts, e.DeviceNodes, e.Annotations = maps.Clone(p.Edits.Envs), mounts(p.Edits.Mounts),
				nodes(p.Edits.DeviceNodes), maps.Clone(p.Edits.Annotations)
		}
		if err := c.check(e); err != nil {
			return nil, fmt.Errorf("device %q: %w", p.DeviceID, err)
		}
		out = append(out, device.Prepared{Request: p.Request, Device: p.DeviceID, Edits: e})
	}
	if len(asked) > 0 {
		var missing []string
		for k := range asked {
			missing = append(missing, k[1])
		}
		slices.Sort(missing)
		return nil, fmt.Errorf("prepared none of devices %v", missing)
	}
	return out, nil
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
