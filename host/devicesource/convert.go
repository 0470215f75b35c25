package devicesource

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"

	apiresource "k8s.io/apimachinery/pkg/api/resource"

	"github.com/wasmlet/wasmlet/abi"
	"github.com/wasmlet/wasmlet/host/device"
	"github.com/wasmlet/wasmlet/host/devicemanager"
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

// CheckDiscovery checks a discover reply as a source does before taking
// it: the ABI's rules (abi.ValidDiscovery), then each device as it is
// converted (quantities, request policies as Kubernetes validates them,
// counter sets), then the set as a device manager takes it. Where a source
// leaves out a device that fails the conversion, and says why, this fails
// on it: it is for `wasmlet module check` and the conformance checks, which
// judge the module. Container edits are not judged: they depend on the
// operator's grant.
func CheckDiscovery(r *abi.DiscoverResponse) error {
	if err := abi.ValidDiscovery(r); err != nil {
		return err
	}
	devs := make([]device.Device, 0, len(r.Devices))
	for i := range r.Devices {
		d := device.Device{ID: r.Devices[i].ID}
		if err := structured(&d, &r.Devices[i]); err != nil {
			return fmt.Errorf("device %q: %w", d.ID, err)
		}
		devs = append(devs, d)
	}
	if _, err := counterSets(r.SharedCounters); err != nil {
		return err
	}
	return devicemanager.ValidDevices(devs)
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
			if err := checkPolicy(v, capy.Policy); err != nil {
				return fmt.Errorf("capacity %q: request policy: %w", k, err)
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

// checkPolicy checks a request policy as Kubernetes' API validation does
// (validateRequestPolicy in resource.k8s.io, fractional ranges counted in
// thousandths): valid values ascending, none more than the capacity, the
// default one of them; or a range whose min is at most the capacity and the
// default, whose max is at least min and the default and at most the
// capacity, whose step is positive, fits the capacity once above min, and
// reaches the default and max from min. The upstream allocator trusts what
// the API server validated, and divides by the step: a module's policy
// must pass the same rules before it meets the allocator. abi.ValidDiscovery
// saw to the rest (a default with either, not both; a range has a min).
func checkPolicy(capacity apiresource.Quantity, p *device.CapacityPolicy) error {
	if len(p.ValidValues) > 0 {
		found := false
		for i, v := range p.ValidValues {
			if i > 0 && p.ValidValues[i-1].Cmp(v) >= 0 {
				return fmt.Errorf("valid_values must ascend, each larger than the one before: %s follows %s", v.String(), p.ValidValues[i-1].String())
			}
			if v.Cmp(capacity) > 0 {
				return fmt.Errorf("valid value %s is larger than the capacity, %s", v.String(), capacity.String())
			}
			found = found || v.Cmp(*p.Default) == 0
		}
		if !found {
			return fmt.Errorf("default %s is not one of valid_values", p.Default.String())
		}
		return nil
	}
	if p.Min == nil {
		return nil
	}
	min, def := *p.Min, *p.Default
	switch {
	case min.Sign() < 0:
		return fmt.Errorf("min %s is negative", min.String())
	case min.Cmp(capacity) > 0:
		return fmt.Errorf("min %s is larger than the capacity, %s", min.String(), capacity.String())
	case def.Cmp(min) < 0:
		return fmt.Errorf("default %s is less than min, %s", def.String(), min.String())
	}
	if max := p.Max; max != nil {
		switch {
		case min.Cmp(*max) > 0:
			return fmt.Errorf("min %s is larger than max, %s", min.String(), max.String())
		case max.Cmp(capacity) > 0:
			return fmt.Errorf("max %s is larger than the capacity, %s", max.String(), capacity.String())
		case def.Cmp(*max) > 0:
			return fmt.Errorf("default %s is more than max, %s", def.String(), max.String())
		}
	}
	step := p.Step
	if step == nil {
		return nil
	}
	if step.Sign() <= 0 {
		return fmt.Errorf("step %s is not positive", step.String())
	}
	above := min.DeepCopy()
	above.Add(*step)
	if above.Cmp(capacity) > 0 {
		return fmt.Errorf("one step above min, %s, is larger than the capacity, %s", above.String(), capacity.String())
	}
	for _, v := range []*apiresource.Quantity{p.Default, p.Max} {
		if v == nil {
			continue
		}
		ok, err := reaches(min, *step, *v)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("%s is not min (%s) plus a multiple of step (%s)", v.String(), min.String(), step.String())
		}
	}
	return nil
}

// reaches reports whether v is min plus a whole number of steps, in whole
// units when all three are whole numbers and in thousandths otherwise, as
// Kubernetes computes it, with the same bounds: 0 to 2^63-1 units, or
// thousandths.
func reaches(min, step, v apiresource.Quantity) (bool, error) {
	fractional := false
	for _, q := range []apiresource.Quantity{min, step, v} {
		if q.Sign() < 0 {
			return false, fmt.Errorf("%s is negative", q.String())
		}
		if q.CmpInt64(math.MaxInt64) > 0 {
			return false, fmt.Errorf("%s is larger than %d", q.String(), int64(math.MaxInt64))
		}
		whole := q.DeepCopy()
		whole.RoundUp(0)
		fractional = fractional || whole.Cmp(q) != 0
	}
	if !fractional {
		return (v.Value()-min.Value())%step.Value() == 0, nil
	}
	for _, q := range []apiresource.Quantity{min, step, v} {
		if apiresource.NewMilliQuantity(q.MilliValue(), q.Format).Cmp(q) != 0 {
			return false, fmt.Errorf("%s cannot be counted in thousandths", q.String())
		}
	}
	return (v.MilliValue()-min.MilliValue())%step.MilliValue() == 0, nil
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
