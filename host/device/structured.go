package device

import (
	"maps"
	"slices"
	"strconv"

	"k8s.io/apimachinery/pkg/api/resource"
)

// The structured device model: what resource.k8s.io/v1 says of a device
// (typed attributes, capacities, counters it consumes, whether several
// claims may share it), in the host's terms. Names follow resource.k8s.io/v1
// QualifiedName: an optional DNS-subdomain domain and "/", then a C
// identifier of at most 32 characters; a name without a domain belongs to
// the device's driver.

// Attribute is a typed attribute value. Exactly one field is set.
type Attribute struct {
	Int     *int64
	Bool    *bool
	String  *string
	Version *string // a semantic version, as resource.k8s.io/v1 has it
}

// IntAttribute, BoolAttribute, StringAttribute and VersionAttribute make an
// attribute of each type.
func IntAttribute(v int64) Attribute      { return Attribute{Int: &v} }
func BoolAttribute(v bool) Attribute      { return Attribute{Bool: &v} }
func StringAttribute(v string) Attribute  { return Attribute{String: &v} }
func VersionAttribute(v string) Attribute { return Attribute{Version: &v} }

// Equal reports whether a and o hold the same value of the same type.
func (a Attribute) Equal(o Attribute) bool {
	return eqPtr(a.Int, o.Int) && eqPtr(a.Bool, o.Bool) && eqPtr(a.String, o.String) && eqPtr(a.Version, o.Version)
}

// Clone returns a copy of a that shares nothing with it.
func (a Attribute) Clone() Attribute {
	return Attribute{Int: clonePtr(a.Int), Bool: clonePtr(a.Bool), String: clonePtr(a.String), Version: clonePtr(a.Version)}
}

// Type names the attribute's type: "int", "bool", "string", "version", or
// "" when no field is set.
func (a Attribute) Type() string {
	switch {
	case a.Int != nil:
		return "int"
	case a.Bool != nil:
		return "bool"
	case a.String != nil:
		return "string"
	case a.Version != nil:
		return "version"
	}
	return ""
}

// Value is the attribute's value as text (a version without its type).
func (a Attribute) Value() string {
	switch {
	case a.Int != nil:
		return strconv.FormatInt(*a.Int, 10)
	case a.Bool != nil:
		return strconv.FormatBool(*a.Bool)
	case a.String != nil:
		return *a.String
	case a.Version != nil:
		return *a.Version
	}
	return ""
}

// Capacity is a quantity a device has. Policy, for a device that allows
// multiple allocations, says how much of it one request may consume.
type Capacity struct {
	Value  resource.Quantity
	Policy *CapacityPolicy
}

// CapacityPolicy is resource.k8s.io/v1 CapacityRequestPolicy: the amount a
// request that names none consumes (Default), and the amounts it may ask
// for: one of ValidValues, or a range from Min to Max in steps of Step.
type CapacityPolicy struct {
	Default        *resource.Quantity
	ValidValues    []resource.Quantity
	Min, Max, Step *resource.Quantity
}

// Equal reports whether c and o are the same capacity and policy.
func (c Capacity) Equal(o Capacity) bool {
	if c.Value.Cmp(o.Value) != 0 || (c.Policy == nil) != (o.Policy == nil) {
		return false
	}
	if c.Policy == nil {
		return true
	}
	p, q := c.Policy, o.Policy
	return eqQuantity(p.Default, q.Default) && eqQuantity(p.Min, q.Min) && eqQuantity(p.Max, q.Max) &&
		eqQuantity(p.Step, q.Step) && slices.EqualFunc(p.ValidValues, q.ValidValues, func(a, b resource.Quantity) bool { return a.Cmp(b) == 0 })
}

// Clone returns a copy of c that shares nothing with it.
func (c Capacity) Clone() Capacity {
	out := Capacity{Value: c.Value.DeepCopy()}
	if p := c.Policy; p != nil {
		out.Policy = &CapacityPolicy{Default: cloneQuantity(p.Default), Min: cloneQuantity(p.Min),
			Max: cloneQuantity(p.Max), Step: cloneQuantity(p.Step)}
		for _, v := range p.ValidValues {
			out.Policy.ValidValues = append(out.Policy.ValidValues, v.DeepCopy())
		}
	}
	return out
}

// CounterSet is a named set of counters that the devices of one pool
// consume from: a partitionable device's memory and compute slices, say,
// which its partitions share. Counters are by name.
type CounterSet struct {
	Name     string
	Counters map[string]resource.Quantity
}

// CounterConsumption is what a device consumes, by counter name, from the
// counter set named CounterSet while it is allocated.
type CounterConsumption struct {
	CounterSet string
	Counters   map[string]resource.Quantity
}

// CloneCounterSets deep-copies counter sets.
func CloneCounterSets(sets []CounterSet) []CounterSet {
	if sets == nil {
		return nil
	}
	out := make([]CounterSet, len(sets))
	for i, s := range sets {
		out[i] = CounterSet{Name: s.Name, Counters: cloneQuantities(s.Counters)}
	}
	return out
}

// EqualCounterSets reports whether a and b are the same counter sets, in
// the same order.
func EqualCounterSets(a, b []CounterSet) bool {
	return slices.EqualFunc(a, b, func(x, y CounterSet) bool {
		return x.Name == y.Name && eqQuantities(x.Counters, y.Counters)
	})
}

func cloneConsumption(cs []CounterConsumption) []CounterConsumption {
	if cs == nil {
		return nil
	}
	out := make([]CounterConsumption, len(cs))
	for i, c := range cs {
		out[i] = CounterConsumption{CounterSet: c.CounterSet, Counters: cloneQuantities(c.Counters)}
	}
	return out
}

func equalConsumption(a, b []CounterConsumption) bool {
	return slices.EqualFunc(a, b, func(x, y CounterConsumption) bool {
		return x.CounterSet == y.CounterSet && eqQuantities(x.Counters, y.Counters)
	})
}

func cloneAttributes(m map[string]Attribute) map[string]Attribute {
	return mapValues(m, Attribute.Clone)
}

func cloneCapacities(m map[string]Capacity) map[string]Capacity {
	return mapValues(m, Capacity.Clone)
}

func cloneQuantities(m map[string]resource.Quantity) map[string]resource.Quantity {
	return mapValues(m, resource.Quantity.DeepCopy)
}

// QuantityStrings returns the quantities of m as text ("40Gi"), by name;
// nil if m is empty.
func QuantityStrings[K ~string](m map[K]resource.Quantity) map[string]string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, q := range m {
		out[string(k)] = q.String()
	}
	return out
}

// mapValues returns a map of m's keys to f of their values; nil if m is.
func mapValues[K comparable, V, W any](m map[K]V, f func(V) W) map[K]W {
	if m == nil {
		return nil
	}
	out := make(map[K]W, len(m))
	for k, v := range m {
		out[k] = f(v)
	}
	return out
}

func eqQuantities(a, b map[string]resource.Quantity) bool {
	return maps.EqualFunc(a, b, func(x, y resource.Quantity) bool { return x.Cmp(y) == 0 })
}

func eqQuantity(a, b *resource.Quantity) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Cmp(*b) == 0
}

func cloneQuantity(q *resource.Quantity) *resource.Quantity {
	if q == nil {
		return nil
	}
	c := q.DeepCopy()
	return &c
}

func eqPtr[T comparable](a, b *T) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

func clonePtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}
