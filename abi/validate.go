package abi

import "errors"

// Limits of structured devices, Kubernetes' own (resource.k8s.io/v1).
const (
	maxAttributesAndCapacities = 32 // typed attributes plus capacities, per device
	maxAttributeValueLength    = 64 // bytes of a string or version attribute
	maxCounterConsumptions     = 2  // counter sets one device consumes from
	maxCounters                = 32 // counters in a set, or consumed from one
	maxValidValues             = 10 // of a capacity's request policy
)

// ValidDiscovery checks a discover reply as the host does before it accepts
// it: every device id valid (ValidDeviceID) and unique, and the structured
// fields (ABI.md, "Structured devices") as Kubernetes checks a
// ResourceSlice: names, string lengths, semantic versions, quantity syntax,
// the limits, request policies only on devices that allow multiple
// allocations, and counter consumption only of counters that a shared
// counter set declares. It returns the first problem, naming the device or
// counter set and the field. The host also compares quantities (a request
// policy's default within its range, say), which needs arithmetic this
// package leaves to it.
func ValidDiscovery(r *DiscoverResponse) error {
	sets := make(map[string]map[string]string, len(r.SharedCounters))
	for i := range r.SharedCounters {
		cs := &r.SharedCounters[i]
		where := "shared counter set " + quote(cs.Name)
		if err := ValidCounterName(cs.Name); err != nil {
			return errors.New(where + ": " + err.Error())
		}
		if _, dup := sets[cs.Name]; dup {
			return errors.New(where + " appears twice")
		}
		if err := validCounters(cs.Counters); err != nil {
			return errors.New(where + ": " + err.Error())
		}
		sets[cs.Name] = cs.Counters
	}
	seen := make(map[string]bool, len(r.Devices))
	for i := range r.Devices {
		d := &r.Devices[i]
		if err := ValidDeviceID(d.ID); err != nil {
			return errors.New("device " + itoa(int64(i)) + ": " + err.Error())
		}
		if seen[d.ID] {
			return errors.New("device id " + quote(d.ID) + " appears twice")
		}
		seen[d.ID] = true
		if err := validStructured(d, sets); err != nil {
			return errors.New("device " + quote(d.ID) + ": " + err.Error())
		}
	}
	return nil
}

func validStructured(d *Device, sets map[string]map[string]string) error {
	if n := len(d.TypedAttributes) + len(d.Capacity); n > maxAttributesAndCapacities {
		return errors.New("has " + itoa(int64(n)) + " typed attributes and capacities; at most " +
			itoa(maxAttributesAndCapacities) + " are allowed")
	}
	for _, name := range sortedKeys(d.TypedAttributes) {
		if err := validAttribute(name, d.TypedAttributes[name]); err != nil {
			return errors.New("typed attribute " + quote(name) + ": " + err.Error())
		}
	}
	for _, name := range sortedKeys(d.Capacity) {
		c := d.Capacity[name]
		if err := validCapacity(name, &c, d.AllowMultipleAllocations); err != nil {
			return errors.New("capacity " + quote(name) + ": " + err.Error())
		}
	}
	if len(d.ConsumesCounters) > maxCounterConsumptions {
		return errors.New("consumes counters of " + itoa(int64(len(d.ConsumesCounters))) + " sets; at most " +
			itoa(maxCounterConsumptions) + " are allowed")
	}
	for i, cc := range d.ConsumesCounters {
		where := "consumes_counters of " + quote(cc.CounterSet)
		set, ok := sets[cc.CounterSet]
		if !ok {
			return errors.New(where + ": no shared counter set has that name")
		}
		for _, other := range d.ConsumesCounters[:i] {
			if other.CounterSet == cc.CounterSet {
				return errors.New(where + " appears twice")
			}
		}
		if err := validCounters(cc.Counters); err != nil {
			return errors.New(where + ": " + err.Error())
		}
		for _, name := range sortedKeys(cc.Counters) {
			if _, ok := set[name]; !ok {
				return errors.New(where + ": the set has no counter " + quote(name))
			}
		}
	}
	return nil
}

func validAttribute(name string, a Attribute) error {
	if err := ValidQualifiedName(name); err != nil {
		return err
	}
	switch a.Type {
	case AttributeInt, AttributeBool:
	case AttributeString:
		if len(a.String) > maxAttributeValueLength {
			return errors.New("the string is " + itoa(int64(len(a.String))) + " bytes long; at most " +
				itoa(maxAttributeValueLength) + " are allowed")
		}
	case AttributeVersion:
		return ValidVersion(a.String)
	default:
		return errors.New("has no value: set exactly one of int_value, bool_value, string_value and version_value")
	}
	return nil
}

func validCapacity(name string, c *Capacity, shared bool) error {
	if err := ValidQualifiedName(name); err != nil {
		return err
	}
	if err := ValidQuantity(c.Value); err != nil {
		return errors.New("value: " + err.Error())
	}
	p := c.RequestPolicy
	if p == nil {
		return nil
	}
	if !shared {
		return errors.New("a request policy needs allow_multiple_allocations on the device")
	}
	for _, q := range []struct{ what, v string }{{"default", p.Default}, {"min", p.Min}, {"max", p.Max}, {"step", p.Step}} {
		if q.v != "" {
			if err := ValidQuantity(q.v); err != nil {
				return errors.New("request policy " + q.what + ": " + err.Error())
			}
		}
	}
	for _, v := range p.ValidValues {
		if err := ValidQuantity(v); err != nil {
			return errors.New("request policy valid_values: " + err.Error())
		}
	}
	ranged := p.Min != "" || p.Max != "" || p.Step != ""
	switch {
	case len(p.ValidValues) > maxValidValues:
		return errors.New("request policy has " + itoa(int64(len(p.ValidValues))) + " valid_values; at most " +
			itoa(maxValidValues) + " are allowed")
	case len(p.ValidValues) > 0 && ranged:
		return errors.New("request policy sets both valid_values and a range (min, max, step); set one")
	case (len(p.ValidValues) > 0 || ranged) && p.Default == "":
		return errors.New("request policy with valid_values or a range needs a default")
	case ranged && p.Min == "":
		return errors.New("request policy range needs min")
	}
	return nil
}

// validCounters checks the counters of a set or of a consumption: 1 to 32,
// each a counter name with a quantity.
func validCounters(counters map[string]string) error {
	if len(counters) == 0 || len(counters) > maxCounters {
		return errors.New("has " + itoa(int64(len(counters))) + " counters; 1 to " + itoa(maxCounters) + " are allowed")
	}
	for _, name := range sortedKeys(counters) {
		if err := ValidCounterName(name); err != nil {
			return err
		}
		if err := ValidQuantity(counters[name]); err != nil {
			return errors.New("counter " + quote(name) + ": " + err.Error())
		}
	}
	return nil
}
