package abi

// Go forms of the structured-device messages of wasmlet_abi.proto: typed
// attributes, capacities and shared counters, as resource.k8s.io/v1 has them
// (ABI.md, "Structured devices").

// AttributeType says which field of an Attribute holds its value.
type AttributeType int32

const (
	AttributeNone    AttributeType = 0 // no value: not a valid attribute
	AttributeInt     AttributeType = 1 // Int
	AttributeBool    AttributeType = 2 // Bool
	AttributeString  AttributeType = 3 // String
	AttributeVersion AttributeType = 4 // String, a semantic version
)

var attributeTypeNames = [...]string{"none", "int", "bool", "string", "version"}

func (t AttributeType) String() string {
	if t >= 0 && int(t) < len(attributeTypeNames) {
		return attributeTypeNames[t]
	}
	return "type(" + itoa(int64(t)) + ")"
}

// Attribute is a typed attribute value: the schema's Attribute, whose oneof
// is Type plus the field it names. A string and a version both live in
// String.
type Attribute struct {
	Type   AttributeType
	Int    int64
	Bool   bool
	String string
}

// IntAttribute, BoolAttribute, StringAttribute and VersionAttribute make an
// attribute of each type.
func IntAttribute(v int64) Attribute      { return Attribute{Type: AttributeInt, Int: v} }
func BoolAttribute(v bool) Attribute      { return Attribute{Type: AttributeBool, Bool: v} }
func StringAttribute(v string) Attribute  { return Attribute{Type: AttributeString, String: v} }
func VersionAttribute(v string) Attribute { return Attribute{Type: AttributeVersion, String: v} }

// AppendTo writes the field Type names, even when its value is the zero
// value: a oneof member is present or absent, whatever its value.
func (a *Attribute) AppendTo(b []byte) []byte {
	switch a.Type {
	case AttributeInt:
		return appendVarint(appendTag(b, 1, wireVarint), uint64(a.Int))
	case AttributeBool:
		v := byte(0)
		if a.Bool {
			v = 1
		}
		return append(appendTag(b, 2, wireVarint), v)
	case AttributeString, AttributeVersion:
		return appendStringAlways(b, int(a.Type), a.String)
	}
	return b
}

func (a *Attribute) Unmarshal(b []byte) error {
	*a = Attribute{}
	return a.merge(own(b))
}

// merge decodes b over a: as with a protobuf oneof, the last member seen
// wins and replaces whatever a held.
func (a *Attribute) merge(b []byte) error {
	return decode("Attribute", "vvbb", b, func(d *decoder) (err error) {
		switch d.num {
		case 1:
			*a = Attribute{Type: AttributeInt, Int: int64(d.val)}
		case 2:
			*a = Attribute{Type: AttributeBool, Bool: d.val != 0}
		case 3, 4:
			var s string
			s, err = d.str()
			*a = Attribute{Type: AttributeType(d.num), String: s}
		}
		return err
	})
}

// Capacity is a quantity a device has; RequestPolicy, for a device that
// allows multiple allocations, says how requests consume it.
type Capacity struct {
	Value         string // a quantity: ValidQuantity
	RequestPolicy *CapacityRequestPolicy
}

func (c *Capacity) AppendTo(b []byte) []byte {
	b = appendString(b, 1, c.Value)
	if c.RequestPolicy != nil {
		b = appendMessage(b, 2, c.RequestPolicy.AppendTo)
	}
	return b
}

func (c *Capacity) Unmarshal(b []byte) error {
	*c = Capacity{}
	return c.merge(own(b))
}

func (c *Capacity) merge(b []byte) error {
	return decode("Capacity", "bb", b, func(d *decoder) (err error) {
		switch d.num {
		case 1:
			c.Value, err = d.str()
		case 2:
			if c.RequestPolicy == nil {
				c.RequestPolicy = &CapacityRequestPolicy{}
			}
			err = c.RequestPolicy.merge(d.buf)
		}
		return err
	})
}

// CapacityRequestPolicy is resource.k8s.io/v1 CapacityRequestPolicy with its
// validRange flattened into Min, Max and Step. Every value is a quantity;
// "" is unset.
type CapacityRequestPolicy struct {
	Default     string
	ValidValues []string
	Min         string
	Max         string
	Step        string
}

func (p *CapacityRequestPolicy) AppendTo(b []byte) []byte {
	b = appendString(b, 1, p.Default)
	b = appendStrings(b, 2, p.ValidValues)
	b = appendString(b, 3, p.Min)
	b = appendString(b, 4, p.Max)
	return appendString(b, 5, p.Step)
}

func (p *CapacityRequestPolicy) Unmarshal(b []byte) error {
	*p = CapacityRequestPolicy{}
	return p.merge(own(b))
}

func (p *CapacityRequestPolicy) merge(b []byte) error {
	return decode("CapacityRequestPolicy", "bbbbb", b, func(d *decoder) (err error) {
		switch d.num {
		case 1:
			p.Default, err = d.str()
		case 2:
			var s string
			s, err = d.str()
			p.ValidValues = append(p.ValidValues, s)
		case 3:
			p.Min, err = d.str()
		case 4:
			p.Max, err = d.str()
		case 5:
			p.Step, err = d.str()
		}
		return err
	})
}

// CounterSet is a named set of counters (name -> quantity) that devices
// consume from.
type CounterSet struct {
	Name     string
	Counters map[string]string
}

func (s *CounterSet) AppendTo(b []byte) []byte {
	b = appendString(b, 1, s.Name)
	return appendStringMap(b, 2, s.Counters)
}

func (s *CounterSet) Unmarshal(b []byte) error { return s.unmarshal(own(b)) }

func (s *CounterSet) unmarshal(b []byte) error {
	*s = CounterSet{}
	return decodeCounters("CounterSet", b, &s.Name, &s.Counters)
}

// CounterConsumption is what a device consumes (counter name -> quantity)
// from the counter set named CounterSet.
type CounterConsumption struct {
	CounterSet string
	Counters   map[string]string
}

func (c *CounterConsumption) AppendTo(b []byte) []byte {
	b = appendString(b, 1, c.CounterSet)
	return appendStringMap(b, 2, c.Counters)
}

func (c *CounterConsumption) Unmarshal(b []byte) error { return c.unmarshal(own(b)) }

func (c *CounterConsumption) unmarshal(b []byte) error {
	*c = CounterConsumption{}
	return decodeCounters("CounterConsumption", b, &c.CounterSet, &c.Counters)
}

// decodeCounters decodes the shape CounterSet and CounterConsumption share:
// a name, then a map<string,string>.
func decodeCounters(msg string, b []byte, name *string, counters *map[string]string) error {
	return decode(msg, "bb", b, func(d *decoder) (err error) {
		switch d.num {
		case 1:
			*name, err = d.str()
		case 2:
			*counters, err = d.mapEntry(*counters)
		}
		return err
	})
}

// appendMessageMap writes a map<string, V> field whose values are messages
// (Attribute, Capacity), keys sorted.
func appendMessageMap[V any, P interface {
	*V
	AppendTo([]byte) []byte
}](b []byte, num int, m map[string]V) []byte {
	for _, k := range sortedKeys(m) {
		v := m[k]
		b = appendMessage(b, num, func(b []byte) []byte {
			b = appendStringAlways(b, 1, k)
			return appendMessage(b, 2, P(&v).AppendTo)
		})
	}
	return b
}

func (d *decoder) attributeEntry(m map[string]Attribute) (map[string]Attribute, error) {
	return entry(d, m, func(a *Attribute, e *decoder) error { return a.merge(e.buf) })
}

func (d *decoder) capacityEntry(m map[string]Capacity) (map[string]Capacity, error) {
	return entry(d, m, func(c *Capacity, e *decoder) error { return c.merge(e.buf) })
}
