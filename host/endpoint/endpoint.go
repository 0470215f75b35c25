// Package endpoint is the device manager's connection to one external device
// plugin (device plugin API v1beta1, k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1):
// the kubelet side of GetDevicePluginOptions, ListAndWatch, Allocate,
// GetPreferredAllocation and PreStartContainer. An Endpoint is a
// devicemanager.Provider.
//
// An endpoint lives as long as its ListAndWatch stream: when the plugin
// stops, Watch returns and the device manager marks the devices unhealthy.
// A plugin that comes back registers again and gets a new endpoint, even on
// the same socket path, even while the old stream has not noticed yet: the
// device manager ignores everything the old endpoint reports from then on.
package endpoint

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"google.golang.org/grpc"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"

	"github.com/wasmlet/wasmlet/host/device"
	"github.com/wasmlet/wasmlet/host/device/deviceplugin"
	"github.com/wasmlet/wasmlet/host/devicemanager"
	"github.com/wasmlet/wasmlet/host/internal/unixgrpc"
)

// Endpoint is a connected device plugin.
type Endpoint struct {
	resource string
	path     string
	cc       *grpc.ClientConn
	client   pluginapi.DevicePluginClient
	opts     devicemanager.ProviderOptions
}

// Dial connects to the device plugin serving resource at socket path and asks
// for its options; a plugin that does not answer within ctx is refused.
func Dial(ctx context.Context, resource, path string) (*Endpoint, error) {
	cc, err := unixgrpc.Dial(path)
	if err != nil {
		return nil, fmt.Errorf("device plugin %s at %s: %w", resource, path, err)
	}
	e := &Endpoint{resource: resource, path: path, cc: cc, client: pluginapi.NewDevicePluginClient(cc)}
	o, err := e.client.GetDevicePluginOptions(ctx, &pluginapi.Empty{})
	if err != nil {
		cc.Close()
		return nil, fmt.Errorf("device plugin %s at %s did not answer GetDevicePluginOptions: %w", resource, path, err)
	}
	e.opts = devicemanager.ProviderOptions{PreStartRequired: o.PreStartRequired, PreferredAllocation: o.GetPreferredAllocationAvailable}
	return e, nil
}

func (e *Endpoint) Name() string                           { return "plugin:" + e.path }
func (e *Endpoint) Options() devicemanager.ProviderOptions { return e.opts }
func (e *Endpoint) Close() error                           { return e.cc.Close() }

// Watch follows the plugin's ListAndWatch stream.
func (e *Endpoint) Watch(ctx context.Context, update func([]device.Device)) error {
	// Not WaitForReady (the connection's default): the plugin has just
	// answered GetDevicePluginOptions, so a connection that is down now
	// means the plugin died, and its resource must go unhealthy rather than
	// wait, connected, for a plugin that may never come back.
	stream, err := e.client.ListAndWatch(ctx, &pluginapi.Empty{}, grpc.WaitForReady(false))
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("device plugin %s at %s: ListAndWatch: %w", e.resource, e.path, err)
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, io.EOF) {
				return fmt.Errorf("device plugin %s at %s ended its ListAndWatch stream", e.resource, e.path)
			}
			return fmt.Errorf("device plugin %s at %s: ListAndWatch: %w", e.resource, e.path, err)
		}
		devs := make([]device.Device, len(resp.Devices))
		for i, d := range resp.Devices {
			devs[i] = deviceplugin.FromDevice(d)
		}
		update(devs)
	}
}

// Allocate asks the plugin for one container's devices. Its answer is the
// plugin's to give, as with the kubelet: a device plugin runs with the
// node's trust, unlike a module (see device.Policy).
func (e *Endpoint) Allocate(ctx context.Context, ids []string, _ string) (device.Edits, error) {
	resp, err := e.client.Allocate(ctx, &pluginapi.AllocateRequest{
		ContainerRequests: []*pluginapi.ContainerAllocateRequest{{DevicesIds: ids}}})
	if err != nil {
		return device.Edits{}, fmt.Errorf("device plugin %s at %s: Allocate: %w", e.resource, e.path, err)
	}
	if len(resp.ContainerResponses) != 1 {
		return device.Edits{}, fmt.Errorf("device plugin %s at %s: Allocate answered %d container responses to one request",
			e.resource, e.path, len(resp.ContainerResponses))
	}
	return deviceplugin.Edits(resp.ContainerResponses[0]), nil
}

func (e *Endpoint) PreferredAllocation(ctx context.Context, available, mustInclude []string, size int) ([]string, error) {
	resp, err := e.client.GetPreferredAllocation(ctx, &pluginapi.PreferredAllocationRequest{
		ContainerRequests: []*pluginapi.ContainerPreferredAllocationRequest{{
			AvailableDeviceIDs: available, MustIncludeDeviceIDs: mustInclude, AllocationSize: int32(size)}}})
	if err != nil {
		return nil, fmt.Errorf("device plugin %s at %s: GetPreferredAllocation: %w", e.resource, e.path, err)
	}
	if len(resp.ContainerResponses) != 1 {
		return nil, fmt.Errorf("device plugin %s at %s: GetPreferredAllocation answered %d container responses to one request",
			e.resource, e.path, len(resp.ContainerResponses))
	}
	return resp.ContainerResponses[0].DeviceIDs, nil
}

// PreStartTimeout is the kubelet's bound on PreStartContainer.
const PreStartTimeout = pluginapi.KubeletPreStartContainerRPCTimeoutInSecs * time.Second

func (e *Endpoint) PreStart(ctx context.Context, ids []string, _ string) error {
	ctx, cancel := context.WithTimeout(ctx, PreStartTimeout)
	defer cancel()
	if _, err := e.client.PreStartContainer(ctx, &pluginapi.PreStartContainerRequest{DevicesIds: ids}); err != nil {
		return fmt.Errorf("device plugin %s at %s: PreStartContainer: %w", e.resource, e.path, err)
	}
	return nil
}
