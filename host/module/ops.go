package module

import (
	"context"

	"github.com/wasmlet/wasmlet/abi"
)

// Typed forms of Call, one per ABI operation. Each returns a *CallError on
// failure; a refusal by the module carries an *abi.Error (see ModuleError).
// Calling an operation the module does not implement is a FaultBadRequest;
// check Implements first where the operation is optional.

// Validate asks a handler whether it accepts plugin p.
func (m *Module) Validate(ctx context.Context, p *abi.Plugin) error {
	return m.Call(ctx, abi.OpValidate, &abi.ValidateRequest{Plugin: *p}, &abi.ValidateResponse{})
}

// Register tells a handler that plugin p is registering, and returns what the
// host should do with it.
func (m *Module) Register(ctx context.Context, p *abi.Plugin) (*abi.RegisterResponse, error) {
	var resp abi.RegisterResponse
	if err := m.Call(ctx, abi.OpRegister, &abi.RegisterRequest{Plugin: *p}, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

// Deregister tells a handler that plugin p went away.
func (m *Module) Deregister(ctx context.Context, p *abi.Plugin) error {
	return m.Call(ctx, abi.OpDeregister, &abi.DeregisterRequest{Plugin: *p}, &abi.DeregisterResponse{})
}

// Discover asks a device source for its current devices.
func (m *Module) Discover(ctx context.Context) ([]abi.Device, error) {
	resp, err := m.Discovery(ctx)
	if err != nil {
		return nil, err
	}
	return resp.Devices, nil
}

// Discovery asks a device source for its whole discovery: its current
// devices and the counter sets they consume from.
func (m *Module) Discovery(ctx context.Context) (*abi.DiscoverResponse, error) {
	var resp abi.DiscoverResponse
	if err := m.Call(ctx, abi.OpDiscover, &abi.DiscoverRequest{}, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

// Allocate asks a device source what a container needs to use devices.
func (m *Module) Allocate(ctx context.Context, req *abi.AllocateRequest) (*abi.AllocateResponse, error) {
	var resp abi.AllocateResponse
	if err := m.Call(ctx, abi.OpAllocate, req, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

// PreferredAllocation asks a device source which devices it would hand out.
func (m *Module) PreferredAllocation(ctx context.Context, req *abi.PreferredAllocationRequest) ([]string, error) {
	var resp abi.PreferredAllocationResponse
	if err := m.Call(ctx, abi.OpPreferredAllocation, req, &resp); err != nil {
		return nil, err
	}
	return resp.DeviceIDs, nil
}

// PreStart tells a device source a container with its devices is starting.
func (m *Module) PreStart(ctx context.Context, req *abi.PreStartRequest) error {
	return m.Call(ctx, abi.OpPreStart, req, &abi.PreStartResponse{})
}

// Prepare asks a device source what containers need to use the devices
// allocated to a claim: CDI device names and container edits per device.
// The host holds the edits to the module's output policy as it does an
// allocation's.
func (m *Module) Prepare(ctx context.Context, req *abi.PrepareRequest) (*abi.PrepareResponse, error) {
	var resp abi.PrepareResponse
	if err := m.Call(ctx, abi.OpPrepare, req, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

// Unprepare tells a device source a claim's devices are no longer used.
func (m *Module) Unprepare(ctx context.Context, claim *abi.Claim) error {
	return m.Call(ctx, abi.OpUnprepare, &abi.UnprepareRequest{Claim: *claim}, &abi.UnprepareResponse{})
}
