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
// are handed out. Discover is required; the rest are optional:
//   - without Allocate, the host answers allocations with each device's
//     ContainerEdits merged;
//   - without PreferredAllocation, the host picks devices itself
//     (fewest NUMA nodes first);
//   - PreStart is called before a container starts when PreStartRequired.
type Source struct {
	// Resource is the extended resource name, e.g. "example.com/nic".
	Resource string
	// Name, Version and Summary describe the module in `wasmlet modules`.
	Name, Version, Summary string
	// PreStartRequired asks the host to call PreStart before containers start.
	PreStartRequired bool
	// DiscoverIntervalMS suggests a rediscovery period (0: on start and on
	// changes to granted files only). plugins.toml may override it.
	DiscoverIntervalMS uint32

	Discover            func() ([]abi.Device, error)
	Allocate            func(req *abi.AllocateRequest) (*abi.AllocateResponse, error)
	PreferredAllocation func(req *abi.PreferredAllocationRequest) ([]string, error)
	PreStart            func(req *abi.PreStartRequest) error
}

var s Source

// Serve makes src this module's device source. Call it once, from an init
// function.
func Serve(src Source) {
	if src.Discover == nil {
		panic("wasmlet sdk: source.Serve: Discover is required")
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
	guest.Describe(abi.Description{Kind: abi.KindDeviceSource, Name: s.Name, Version: s.Version,
		Summary: s.Summary, Resource: s.Resource, Operations: ops,
		PreStartRequired: s.PreStartRequired, DiscoverIntervalMS: s.DiscoverIntervalMS})
}

var unimplemented = &abi.Error{Code: abi.CodeUnimplemented, Message: "operation not implemented by this module"}

//go:wasmexport wasmlet_discover
func discover(ptr unsafe.Pointer, n int32) uint64 {
	var req abi.DiscoverRequest
	return guest.Handle(ptr, n, &req, func() (abi.Message, error) {
		devs, err := s.Discover()
		if err != nil {
			return nil, err
		}
		return &abi.DiscoverResponse{Devices: devs}, nil
	})
}

//go:wasmexport wasmlet_allocate
func allocate(ptr unsafe.Pointer, n int32) uint64 {
	var req abi.AllocateRequest
	return guest.Handle(ptr, n, &req, func() (abi.Message, error) {
		if s.Allocate == nil {
			return nil, unimplemented
		}
		resp, err := s.Allocate(&req)
		if err != nil {
			return nil, err
		}
		if resp == nil {
			resp = &abi.AllocateResponse{}
		}
		return resp, nil
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
		if err != nil {
			return nil, err
		}
		return &abi.PreferredAllocationResponse{DeviceIDs: ids}, nil
	})
}

//go:wasmexport wasmlet_prestart
func prestart(ptr unsafe.Pointer, n int32) uint64 {
	var req abi.PreStartRequest
	return guest.Handle(ptr, n, &req, func() (abi.Message, error) {
		if s.PreStart == nil {
			return nil, unimplemented
		}
		if err := s.PreStart(&req); err != nil {
			return nil, err
		}
		return &abi.PreStartResponse{}, nil
	})
}
