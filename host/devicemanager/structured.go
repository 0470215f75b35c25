package devicemanager

import (
	apiresource "k8s.io/apimachinery/pkg/api/resource"

	"github.com/wasmlet/wasmlet/checkpoint"
	"github.com/wasmlet/wasmlet/host/device"
)

// The checkpoint's form of the structured device model, both ways.
// Quantities are stored as text; one that does not parse on restore (a file
// edited by hand) is left out rather than stopping the restore.

func deviceRecord(d device.Device) *checkpoint.Device {
	rec := &checkpoint.Device{Id: d.ID, Healthy: d.Healthy, NumaNodes: d.NUMANodes,
		AllowMultipleAllocations: d.AllowMultipleAllocations}
	if len(d.Attributes) > 0 {
		rec.Attributes = make(map[string]string, len(d.Attributes))
		rec.TypedAttributes = make(map[string]*checkpoint.Attribute, len(d.Attributes))
		for k, a := range d.Attributes {
			rec.Attributes[k] = a.Value()
			rec.TypedAttributes[k] = attributeRecord(a)
		}
	}
	if len(d.Capacity) > 0 {
		rec.Capacity = make(map[string]*checkpoint.Capacity, len(d.Capacity))
		for k, c := range d.Capacity {
			rec.Capacity[k] = capacityRecord(c)
		}
	}
	for _, c := range d.ConsumesCounters {
		rec.ConsumesCounters = append(rec.ConsumesCounters,
			&checkpoint.CounterConsumption{CounterSet: c.CounterSet, Counters: device.QuantityStrings(c.Counters)})
	}
	return rec
}

func deviceFromRecord(rec *checkpoint.Device) device.Device {
	d := device.Device{ID: rec.Id, Healthy: rec.Healthy, NUMANodes: rec.NumaNodes,
		AllowMultipleAllocations: rec.AllowMultipleAllocations}
	for k, v := range rec.Attributes {
		if _, typed := rec.TypedAttributes[k]; !typed {
			setAttribute(&d, k, device.StringAttribute(v)) // a version-3 file from before typed attributes
		}
	}
	for k, a := range rec.TypedAttributes {
		switch v := a.GetValue().(type) {
		case *checkpoint.AttributeInt:
			setAttribute(&d, k, device.IntAttribute(v.Int))
		case *checkpoint.AttributeBool:
			setAttribute(&d, k, device.BoolAttribute(v.Bool))
		case *checkpoint.AttributeString:
			setAttribute(&d, k, device.StringAttribute(v.String_))
		case *checkpoint.AttributeVersion:
			setAttribute(&d, k, device.VersionAttribute(v.Version))
		}
	}
	for k, c := range rec.Capacity {
		capy, ok := capacityFromRecord(c)
		if !ok {
			continue
		}
		if d.Capacity == nil {
			d.Capacity = map[string]device.Capacity{}
		}
		d.Capacity[k] = capy
	}
	for _, c := range rec.ConsumesCounters {
		d.ConsumesCounters = append(d.ConsumesCounters,
			device.CounterConsumption{CounterSet: c.CounterSet, Counters: quantities(c.Counters)})
	}
	return d
}

func setAttribute(d *device.Device, k string, a device.Attribute) {
	if d.Attributes == nil {
		d.Attributes = map[string]device.Attribute{}
	}
	d.Attributes[k] = a
}

func attributeRecord(a device.Attribute) *checkpoint.Attribute {
	switch {
	case a.Int != nil:
		return &checkpoint.Attribute{Value: &checkpoint.AttributeInt{Int: *a.Int}}
	case a.Bool != nil:
		return &checkpoint.Attribute{Value: &checkpoint.AttributeBool{Bool: *a.Bool}}
	case a.String != nil:
		return &checkpoint.Attribute{Value: &checkpoint.AttributeString{String_: *a.String}}
	case a.Version != nil:
		return &checkpoint.Attribute{Value: &checkpoint.AttributeVersion{Version: *a.Version}}
	}
	return &checkpoint.Attribute{}
}

func capacityRecord(c device.Capacity) *checkpoint.Capacity {
	rec := &checkpoint.Capacity{Value: c.Value.String()}
	if p := c.Policy; p != nil {
		rec.Policy = &checkpoint.CapacityPolicy{Default: quantityString(p.Default), Min: quantityString(p.Min),
			Max: quantityString(p.Max), Step: quantityString(p.Step)}
		for _, v := range p.ValidValues {
			rec.Policy.ValidValues = append(rec.Policy.ValidValues, v.String())
		}
	}
	return rec
}

func capacityFromRecord(rec *checkpoint.Capacity) (device.Capacity, bool) {
	v, err := apiresource.ParseQuantity(rec.Value)
	if err != nil {
		return device.Capacity{}, false
	}
	c := device.Capacity{Value: v}
	if p := rec.Policy; p != nil {
		c.Policy = &device.CapacityPolicy{Default: parseQuantity(p.Default), Min: parseQuantity(p.Min),
			Max: parseQuantity(p.Max), Step: parseQuantity(p.Step)}
		for _, s := range p.ValidValues {
			if q := parseQuantity(s); q != nil {
				c.Policy.ValidValues = append(c.Policy.ValidValues, *q)
			}
		}
	}
	return c, true
}

func counterSetRecords(sets []device.CounterSet) []*checkpoint.CounterSet {
	var out []*checkpoint.CounterSet
	for _, s := range sets {
		out = append(out, &checkpoint.CounterSet{Name: s.Name, Counters: device.QuantityStrings(s.Counters)})
	}
	return out
}

func counterSetsFromRecords(recs []*checkpoint.CounterSet) []device.CounterSet {
	var out []device.CounterSet
	for _, r := range recs {
		out = append(out, device.CounterSet{Name: r.Name, Counters: quantities(r.Counters)})
	}
	return out
}

func quantityString(q *apiresource.Quantity) string {
	if q == nil {
		return ""
	}
	return q.String()
}

func parseQuantity(s string) *apiresource.Quantity {
	if s == "" {
		return nil
	}
	q, err := apiresource.ParseQuantity(s)
	if err != nil {
		return nil
	}
	return &q
}

func quantities(m map[string]string) map[string]apiresource.Quantity {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]apiresource.Quantity, len(m))
	for k, s := range m {
		if q := parseQuantity(s); q != nil {
			out[k] = *q
		}
	}
	return out
}
