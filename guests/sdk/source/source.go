// Package source turns a Go value into a wasmlet device-source module.
//
//	func init() {
//		source.Serve(source.Source{
//			Resource: "example.com/widget",
//			Discover: func() ([]abi.Device, error) { ... },
//		})
//	}
//
// The host may run several instances of a module at once and may send
// discover and allocate to different instances: keep no state that a later
// call relies on; derive everything from the request and the granted files.
package source

import (
	"unsafe"

	"github.com/wasmlet/wasmlet/abi"
	"github.com/wasmlet/wasmlet/guests/sdk/internal/guest"
)

// Source discovers the devices of one extended resource and decides how they
// are handed out. Discover (or DiscoverAll) is required; the rest are
// optional:
//   - without Allocate, the host answers allocations with each device's
//     ContainerEdits merged;
//   - without PreferredAllocation, the host picks devices itself
//     (fewest NUMA nodes first);
//   - PreStart is called before a container starts when PreStartRequired;
//   - without Prepare, the host derives a claim's container edits from its
//     devices, as for an allocation; Unprepare undoes what Prepare did.
//
// Devices may describe themselves as Kubernetes DRA devices do
// (abi.Device's TypedAttributes, Capacity, ConsumesCounters and
// AllowMultipleAllocations; abi/ABI.md, "Structured devices"): then claims
// select them by attributes and capacity.
type Source struct {
	// Resource is the extended resource name, e.g. "example.com/nic".
	Resource string
	// Driver is the DRA driver the source is, a DNS subdomain such as
	// "gpu.example.com"; empty: abi.DefaultDriver(Resource).
	Driver string
	// Name, Version and Summary describe the module in `wasmlet modules`.
	Name, Version, Summary string
	// PreStartRequired asks the host to call PreStart before containers start.
	PreStartRequired bool
	// DiscoverIntervalMS suggests a rediscovery period (0: on start and on
	// changes to granted files only). plugins.toml may override it.
	DiscoverIntervalMS uint32

	Discover func() ([]abi.Device, error)
	// DiscoverAll, instead of Discover, returns the whole discovery: the
	// devices and the shared counter sets they consume from (partitionable
	// devices).
	DiscoverAll         func() (*abi.DiscoverResponse, error)
	Allocate            func(req *abi.AllocateRequest) (*abi.AllocateResponse, error)
	PreferredAllocation func(req *abi.PreferredAllocationRequest) ([]string, error)
	PreStart            func(req *abi.PreStartRequest) error
	// Prepare answers, for each device allocated to a claim, its CDI device
	// names and container edits. It must give the same answer to the same
	// request, as the host may repeat it.
	Prepare func(req *abi.PrepareRequest) (*abi.PrepareResponse, error)
	// Unprepare releases what Prepare set up for a claim. A claim it does
	// not know is no error: the host may repeat it.
	Unprepare func(req *abi.UnprepareRequest) error
}

var s Source

// Serve makes src this module's device source. Call it once, from an init
// function.
func Serve(src Source) {
	if (src.Discover == nil) == (src.DiscoverAll == nil) {
		panic("wasmlet sdk: source.Serve: set exactly one of Discover and DiscoverAll")
	}
	s = src
	ops := []string{string(abi.OpDiscover)}
	if s.Allocate != nil {
		ops = append(ops, string(abi.OpAllocate))
	}
	if s.PreferredAllocation != nil {
		ops = append(ops, string(abi.OpPreferredAllocation))
	}
	if s.PreStart != nil {
		ops = append(ops, string(abi.OpPreStart))
	}
	if s.Prepare != nil {
		ops = append(ops, string(abi.OpPrepare))
	}
	if s.Unprepare != nil {
		ops = append(ops, string(abi.OpUnprepare))
	}
	guest.Describe(abi.Description{Kind: abi.KindDeviceSource, Name: s.Name, Version: s.Version,
		Summary: s.Summary, Resource: s.Resource, Driver: s.Driver, Operations: ops,
		PreStartRequired: s.PreStartRequired, DiscoverIntervalMS: s.DiscoverIntervalMS})
}

var unimplemented = &abi.Error{Code: abi.CodeUnimplemented, Message: "operation not implemented by this module"}

//go:wasmexport wasmlet_discover
func discover(ptr unsafe.Pointer, n int32) uint64 {
	var req abi.DiscoverRequest
	return guest.Handle(ptr, n, &req, func() (abi.Message, error) {
		if s.DiscoverAll != nil {
			return guest.Reply(s.DiscoverAll())
		}
		devs, err := s.Discover()
		return &abi.DiscoverResponse{Devices: devs}, err
	})
}

//go:wasmexport wasmlet_allocate
func allocate(ptr unsafe.Pointer, n int32) uint64 {
	var req abi.AllocateRequest
	return guest.Handle(ptr, n, &req, func() (abi.Message, error) {
		if s.Allocate == nil {
			return nil, unimplemented
		}
		return guest.Reply(s.Allocate(&req))
	})
}

//go:wasmexport wasmlet_preferred_allocation
func preferredAllocation(ptr unsafe.Pointer, n int32) uint64 {
	var req abi.PreferredAllocationRequest
	return guest.Handle(ptr, n, &req, func() (abi.Message, error) {
		if s.PreferredAllocation == nil {
			return nil, unimplemented
		}
		ids, err := s.PreferredAllocation(&req)
		return &abi.PreferredAllocationResponse{DeviceIDs: ids}, err
	})
}

//go:wasmexport wasmlet_prestart
func prestart(ptr unsafe.Pointer, n int32) uint64 {
	var req abi.PreStartRequest
	return guest.Handle(ptr, n, &req, func() (abi.Message, error) {
		if s.PreStart == nil {
			return nil, unimplemented
		}
		return &abi.PreStartResponse{}, s.PreStart(&req)
	})
}

//go:wasmexport wasmlet_prepare
func prepare(ptr unsafe.Pointer, n int32) uint64 {
	var req abi.PrepareRequest
	return guest.Handle(ptr, n, &req, func() (abi.Message, error) {
		if s.Prepare == nil {
			return nil, unimplemented
		}
		return guest.Reply(s.Prepare(&req))
	})
}

//go:wasmexport wasmlet_unprepare
func unprepare(ptr unsafe.Pointer, n int32) uint64 {
	var req abi.UnprepareRequest
	return guest.Handle(ptr, n, &req, func() (abi.Message, error) {
		if s.Unprepare == nil {
			return nil, unimplemented
		}
		return &abi.UnprepareResponse{}, s.Unprepare(&req)
	})
}
