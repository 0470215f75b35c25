package wasmhandler

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/wasmlet/wasmlet/abi"
	"github.com/wasmlet/wasmlet/host/pluginmanager"
)

// An action carries out one kind of register decision on the host, and
// undoes it. register fills in what the registration records; a failure it
// returns as a *pluginmanager.Refusal is told to the plugin. Either may be
// nil: nothing to do.
type action struct {
	register   func(ctx context.Context, p pluginmanager.Plugin, d *abi.RegisterResponse, r *pluginmanager.Registration) error
	deregister func(ctx context.Context, p pluginmanager.Plugin, r pluginmanager.Registration) error
}

// newActions is every action the host carries out. A new one (a CSI
// driver's, say) is an ABI constant and an entry here.
func (hs *Handlers) newActions() map[abi.Action]action {
	return map[abi.Action]action{
		abi.ActionRecord:       {}, // recorded by the plugin manager; nothing else
		abi.ActionDevicePlugin: hs.devicePluginAction(),
	}
}

// DevicePlugin is a device plugin a handler registered with ACTION_DEVICE_PLUGIN.
type DevicePlugin struct {
	Resource   string // extended resource name
	Endpoint   string // absolute path of the device plugin's gRPC socket
	Version    string // device plugin API version
	PluginName string
	SocketPath string // the registration socket it came from
}

// DevicePlugins is the device manager, seen from ACTION_DEVICE_PLUGIN.
type DevicePlugins interface {
	RegisterDevicePlugin(ctx context.Context, p DevicePlugin) error
	DeregisterDevicePlugin(ctx context.Context, p DevicePlugin) error
}

// devicePluginAction hands the plugin to the device manager, which follows
// its devices (ListAndWatch) as it does those of plugins registering on
// kubelet.sock.
func (hs *Handlers) devicePluginAction() action {
	dm := hs.cfg.DevicePlugins
	return action{
		register: func(ctx context.Context, p pluginmanager.Plugin, d *abi.RegisterResponse, r *pluginmanager.Registration) error {
			dp := devicePlugin(p, d)
			r.Resource, r.Endpoint, r.Version = dp.Resource, dp.Endpoint, dp.Version
			if dm == nil {
				return nil
			}
			if err := dm.RegisterDevicePlugin(ctx, dp); err != nil {
				return &pluginmanager.Refusal{Reason: fmt.Sprintf("device manager refused resource %q at %s: %v", dp.Resource, dp.Endpoint, err)}
			}
			return nil
		},
		deregister: func(ctx context.Context, p pluginmanager.Plugin, r pluginmanager.Registration) error {
			if dm == nil {
				return nil
			}
			return dm.DeregisterDevicePlugin(ctx, DevicePlugin{Resource: r.Resource, Endpoint: r.Endpoint, Version: r.Version,
				PluginName: p.Name, SocketPath: p.SocketPath})
		},
	}
}

// devicePlugin resolves an ACTION_DEVICE_PLUGIN decision: what the handler
// said, or else what the plugin said. A relative endpoint is in the
// registration socket's directory; none at all is the registration socket.
func devicePlugin(p pluginmanager.Plugin, d *abi.RegisterResponse) DevicePlugin {
	ep := d.Endpoint
	if ep == "" {
		ep = p.Endpoint
	}
	if ep == "" {
		ep = p.SocketPath
	} else if !filepath.IsAbs(ep) {
		ep = filepath.Join(filepath.Dir(p.SocketPath), ep)
	}
	version := d.Version
	if version == "" && len(p.Versions) > 0 {
		version = p.Versions[0]
	}
	resource := d.ResourceName
	if resource == "" {
		resource = p.Name
	}
	return DevicePlugin{Resource: resource, Endpoint: ep, Version: version, PluginName: p.Name, SocketPath: p.SocketPath}
}
