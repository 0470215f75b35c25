package bridge

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"

	"github.com/wasmlet/wasmlet/abi"
	"github.com/wasmlet/wasmlet/host/device"
	"github.com/wasmlet/wasmlet/host/device/deviceplugin"
	"github.com/wasmlet/wasmlet/host/devicemanager"
)

// devicePlugin is the device plugin API (v1beta1) of one bridged source.
type devicePlugin struct {
	pluginapi.UnimplementedDevicePluginServer
	p *plugin
}

func (d *devicePlugin) GetDevicePluginOptions(context.Context, *pluginapi.Empty) (*pluginapi.DevicePluginOptions, error) {
	d.p.mu.Lock()
	o := d.p.opts
	d.p.mu.Unlock()
	return &pluginapi.DevicePluginOptions{PreStartRequired: o.PreStartRequired, GetPreferredAllocationAvailable: o.PreferredAllocation}, nil
}

// ListAndWatch sends the current device set, then every new one, until the
// kubelet goes or the plugin stops.
func (d *devicePlugin) ListAndWatch(_ *pluginapi.Empty, stream pluginapi.DevicePlugin_ListAndWatchServer) error {
	p := d.p
	p.mu.Lock()
	p.streams++
	stopping := p.stopping
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		p.streams--
		p.mu.Unlock()
	}()
	p.log.Debug("ListAndWatch stream opened")
	for {
		p.mu.Lock()
		devs, changed := p.devices, p.changed
		p.mu.Unlock()
		if err := stream.Send(&pluginapi.ListAndWatchResponse{Devices: devs}); err != nil {
			p.log.Debug("ListAndWatch stream ended", "error", err)
			return err
		}
		select {
		case <-changed:
		case <-stream.Context().Done():
			p.log.Debug("ListAndWatch stream ended: the kubelet went")
			return nil
		case <-stopping:
			// A last set may have been published with the stop (the
			// source went: no devices); send it before ending.
			select {
			case <-changed:
				p.mu.Lock()
				devs = p.devices
				p.mu.Unlock()
				stream.Send(&pluginapi.ListAndWatchResponse{Devices: devs})
			default:
			}
			return nil
		}
	}
}

// provider returns the source and the ids it reported last, or an error
// for the kubelet when there is none.
func (p *plugin) provider(op string) (devicemanager.Provider, map[string]bool, devicemanager.ProviderOptions, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.prov == nil {
		return nil, nil, p.opts, status.Errorf(codes.Unavailable, "%s %s: no device source serves it right now", op, p.resource)
	}
	return p.prov, p.known, p.opts, nil
}

func (p *plugin) checkIDs(op string, i int, ids []string, known map[string]bool) error {
	if len(ids) == 0 {
		return status.Errorf(codes.InvalidArgument, "%s %s: container request %d names no devices", op, p.resource, i)
	}
	for _, id := range ids {
		if !known[id] {
			return status.Errorf(codes.InvalidArgument, "%s %s: container request %d: device %q is not among the %d devices the source reported",
				op, p.resource, i, id, len(known))
		}
	}
	return nil
}

// Allocate asks the source for each container request in turn.
func (d *devicePlugin) Allocate(ctx context.Context, req *pluginapi.AllocateRequest) (*pluginapi.AllocateResponse, error) {
	p := d.p
	prov, known, _, err := p.provider("Allocate")
	if err != nil {
		return nil, err
	}
	resp := &pluginapi.AllocateResponse{ContainerResponses: make([]*pluginapi.ContainerAllocateResponse, 0, len(req.ContainerRequests))}
	for i, cr := range req.ContainerRequests {
		if err := p.checkIDs("Allocate", i, cr.DevicesIds, known); err != nil {
			return nil, err
		}
		edits, err := prov.Allocate(ctx, cr.DevicesIds, "")
		if err != nil {
			p.log.Warn("Allocate failed", "devices", strings.Join(cr.DevicesIds, ","), "error", err)
			return nil, grpcError(err, "Allocate %s (container request %d, devices %s)", p.resource, i, strings.Join(cr.DevicesIds, ","))
		}
		resp.ContainerResponses = append(resp.ContainerResponses, deviceplugin.Response(edits))
	}
	p.log.Debug("Allocate answered", "containers", len(req.ContainerRequests))
	return resp, nil
}

func (d *devicePlugin) GetPreferredAllocation(ctx context.Context, req *pluginapi.PreferredAllocationRequest) (*pluginapi.PreferredAllocationResponse, error) {
	p := d.p
	prov, _, opts, err := p.provider("GetPreferredAllocation")
	if err != nil {
		return nil, err
	}
	if !opts.PreferredAllocation {
		return nil, status.Errorf(codes.Unimplemented, "GetPreferredAllocation %s: the source does not choose devices (its options say so)", p.resource)
	}
	resp := &pluginapi.PreferredAllocationResponse{}
	for i, cr := range req.ContainerRequests {
		ids, err := prov.PreferredAllocation(ctx, cr.AvailableDeviceIDs, cr.MustIncludeDeviceIDs, int(cr.AllocationSize))
		if err != nil {
			return nil, grpcError(err, "GetPreferredAllocation %s (container request %d, %d of %d available)", p.resource, i,
				cr.AllocationSize, len(cr.AvailableDeviceIDs))
		}
		resp.ContainerResponses = append(resp.ContainerResponses, &pluginapi.ContainerPreferredAllocationResponse{DeviceIDs: ids})
	}
	return resp, nil
}

func (d *devicePlugin) PreStartContainer(ctx context.Context, req *pluginapi.PreStartContainerRequest) (*pluginapi.PreStartContainerResponse, error) {
	p := d.p
	prov, known, opts, err := p.provider("PreStartContainer")
	if err != nil {
		return nil, err
	}
	if !opts.PreStartRequired {
		return &pluginapi.PreStartContainerResponse{}, nil
	}
	if err := p.checkIDs("PreStartContainer", 0, req.DevicesIds, known); err != nil {
		return nil, err
	}
	if err := prov.PreStart(ctx, req.DevicesIds, ""); err != nil {
		return nil, grpcError(err, "PreStartContainer %s (devices %s)", p.resource, strings.Join(req.DevicesIds, ","))
	}
	return &pluginapi.PreStartContainerResponse{}, nil
}

// grpcError is err, prefixed with what failed, with the gRPC code its cause
// deserves: a module's own error by its ABI code, edits the module may not
// hand out PermissionDenied, a fault Internal.
func grpcError(err error, format string, args ...any) error {
	code := codes.Internal
	var ae *abi.Error
	var refused *device.Refused
	switch {
	case errors.As(err, &refused):
		code = codes.PermissionDenied
	case errors.As(err, &ae):
		code = map[abi.Code]codes.Code{
			abi.CodeInvalidArgument:    codes.InvalidArgument,
			abi.CodeNotFound:           codes.NotFound,
			abi.CodeFailedPrecondition: codes.FailedPrecondition,
			abi.CodeResourceExhausted:  codes.ResourceExhausted,
			abi.CodeUnavailable:        codes.Unavailable,
			abi.CodeUnimplemented:      codes.Unimplemented,
		}[ae.Code]
		if code == codes.OK {
			code = codes.Unknown
		}
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	}
	return status.Error(code, fmt.Sprintf(format, args...)+": "+err.Error())
}

// registrar answers the kubelet's plugin watcher (plugin registration API
// v1) for one bridged source, in plugin-registry mode.
type registrar struct {
	registerapi.UnimplementedRegistrationServer
	p *plugin
}

func (r *registrar) GetInfo(context.Context, *registerapi.InfoRequest) (*registerapi.PluginInfo, error) {
	return &registerapi.PluginInfo{Type: registerapi.DevicePlugin, Name: r.p.resource, Endpoint: r.p.path,
		SupportedVersions: []string{pluginapi.Version}}, nil
}

func (r *registrar) NotifyRegistrationStatus(_ context.Context, s *registerapi.RegistrationStatus) (*registerapi.RegistrationStatusResponse, error) {
	r.p.notified(s.PluginRegistered, s.Error)
	return &registerapi.RegistrationStatusResponse{}, nil
}
