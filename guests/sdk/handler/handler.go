// Package handler turns a Go value into a wasmlet plugin-type handler module.
//
//	func init() {
//		handler.Serve(handler.Handler{
//			Type:     "CSIPlugin",
//			Validate: func(p *abi.Plugin) error { ... },
//			Register: func(p *abi.Plugin) (*abi.RegisterResponse, error) { ... },
//		})
//	}
//
// A handler that decides by its configuration can serve a Policy instead,
// loaded for each call (ServePolicy).
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

// Policy is a handler's decision about plugins, made from its configuration.
// The host may send validate and register to different instances of the
// module, so register checks what validate checks (see Register).
type Policy interface {
	// Check accepts p, naming the version to use with it, or refuses it.
	Check(p *abi.Plugin) (version string, err error)
	// Accept answers register for p, which Check accepted with version.
	Accept(p *abi.Plugin, version string) *abi.RegisterResponse
}

// ServePolicy makes h, with the policy load returns, this module's handler:
// load runs afresh for every call (it reads the configuration); validate is
// the policy's Check, register is Register, and deregister accepts. h's
// Validate, Register and Deregister are replaced. Call it once, from an init
// function.
func ServePolicy[P Policy](h Handler, load func() P) {
	h.Validate = func(p *abi.Plugin) error {
		_, err := load().Check(p)
		return err
	}
	h.Register = func(p *abi.Plugin) (*abi.RegisterResponse, error) { return Register(load(), p) }
	h.Deregister = func(*abi.Plugin) error { return nil }
	Serve(h)
}

// Register answers register for p under pol: Check, then Accept, so that
// register refuses what validate refuses even when validate did not run in
// this instance.
func Register(pol Policy, p *abi.Plugin) (*abi.RegisterResponse, error) {
	version, err := pol.Check(p)
	if err != nil {
		return nil, err
	}
	return pol.Accept(p, version), nil
}

//go:wasmexport wasmlet_validate
func validate(ptr unsafe.Pointer, n int32) uint64 {
	var req abi.ValidateRequest
	return guest.Handle(ptr, n, &req, func() (abi.Message, error) {
		return &abi.ValidateResponse{}, accept(h.Validate, &req.Plugin)
	})
}

//go:wasmexport wasmlet_register
func register(ptr unsafe.Pointer, n int32) uint64 {
	var req abi.RegisterRequest
	return guest.Handle(ptr, n, &req, func() (abi.Message, error) {
		if h.Register == nil {
			return nil, &abi.Error{Code: abi.CodeUnimplemented, Message: "register"}
		}
		return guest.Reply(h.Register(&req.Plugin))
	})
}

//go:wasmexport wasmlet_deregister
func deregister(ptr unsafe.Pointer, n int32) uint64 {
	var req abi.DeregisterRequest
	return guest.Handle(ptr, n, &req, func() (abi.Message, error) {
		return &abi.DeregisterResponse{}, accept(h.Deregister, &req.Plugin)
	})
}

// accept runs an optional operation on p: absent, it accepts.
func accept(op func(p *abi.Plugin) error, p *abi.Plugin) error {
	if op == nil {
		return nil
	}
	return op(p)
}
