// Package handler turns a Go value into a wasmlet plugin-type handler module.
//
//	func init() {
//		handler.Serve(handler.Handler{
//			Type:     "CSIPlugin",
//			Validate: func(p *abi.Plugin) error { ... },
//			Register: func(p *abi.Plugin) (*abi.RegisterResponse, error) { ... },
//		})
//	}
package handler

import (
	"unsafe"

	"github.com/wasmlet/wasmlet/abi"
	"github.com/wasmlet/wasmlet/guests/sdk/internal/guest"
)

// Handler handles the plugins of one plugin type. Register is required;
// Validate and Deregister are optional (absent Validate accepts every plugin,
// absent Deregister does nothing).
type Handler struct {
	// Type is the plugin type served, as plugins report it in GetInfo.
	Type string
	// Name, Version and Summary describe the module in `wasmlet modules`.
	Name, Version, Summary string

	Validate   func(p *abi.Plugin) error
	Register   func(p *abi.Plugin) (*abi.RegisterResponse, error)
	Deregister func(p *abi.Plugin) error
}

var h Handler

// Serve makes h this module's handler. Call it once, from an init function.
func Serve(handler Handler) {
	if handler.Register == nil {
		panic("wasmlet sdk: handler.Serve: Register is required")
	}
	h = handler
	ops := []string{string(abi.OpRegister)}
	if h.Validate != nil {
		ops = append(ops, string(abi.OpValidate))
	}
	if h.Deregister != nil {
		ops = append(ops, string(abi.OpDeregister))
	}
	guest.Describe(abi.Description{Kind: abi.KindHandler, Name: h.Name, Version: h.Version,
		Summary: h.Summary, PluginType: h.Type, Operations: ops})
}

//go:wasmexport wasmlet_validate
func validate(ptr unsafe.Pointer, n int32) uint64 {
	var req abi.ValidateRequest
	return guest.Handle(ptr, n, &req, func() (abi.Message, error) {
		if h.Validate != nil {
			if err := h.Validate(&req.Plugin); err != nil {
				return nil, err
			}
		}
		return &abi.ValidateResponse{}, nil
	})
}

//go:wasmexport wasmlet_register
func register(ptr unsafe.Pointer, n int32) uint64 {
	var req abi.RegisterRequest
	return guest.Handle(ptr, n, &req, func() (abi.Message, error) {
		if h.Register == nil {
			return nil, &abi.Error{Code: abi.CodeUnimplemented, Message: "register"}
		}
		resp, err := h.Register(&req.Plugin)
		if err != nil {
			return nil, err
		}
		if resp == nil {
			resp = &abi.RegisterResponse{}
		}
		return resp, nil
	})
}

//go:wasmexport wasmlet_deregister
func deregister(ptr unsafe.Pointer, n int32) uint64 {
	var req abi.DeregisterRequest
	return guest.Handle(ptr, n, &req, func() (abi.Message, error) {
		if h.Deregister != nil {
			if err := h.Deregister(&req.Plugin); err != nil {
				return nil, err
			}
		}
		return &abi.DeregisterResponse{}, nil
	})
}
