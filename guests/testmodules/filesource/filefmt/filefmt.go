// Package filefmt is the file guests/testmodules/filesource discovers its
// devices from, as Go types: the guest decodes it, the tests that drive the
// guest (tests/k8s/dra) write it. The format is in the guest's package
// comment.
package filefmt

// File is the whole file.
type File struct {
	Counters []CounterSet `json:"counters,omitempty"`
	Devices  []Device     `json:"devices,omitempty"`
}

// CounterSet is a shared counter set of the pool.
type CounterSet struct {
	Name     string            `json:"name"`
	Counters map[string]string `json:"counters"`
}

// Device is one device: its id, health, typed attributes, capacities and
// what it consumes of the counter sets.
type Device struct {
	ID        string            `json:"id"`
	Unhealthy bool              `json:"unhealthy,omitempty"`
	Strings   map[string]string `json:"strings,omitempty"`
	Ints      map[string]int64  `json:"ints,omitempty"`
	Bools     map[string]bool   `json:"bools,omitempty"`
	Versions  map[string]string `json:"versions,omitempty"`
	Capacity  map[string]string `json:"capacity,omitempty"`
	Consumes  []Consumption     `json:"consumes,omitempty"`
}

// Consumption is what a device consumes of one counter set.
type Consumption struct {
	CounterSet string            `json:"counterSet"`
	Counters   map[string]string `json:"counters"`
}
