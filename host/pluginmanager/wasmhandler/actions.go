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

// newActions is every action the host carries out. A new one is an ABI
// constant and an entry here.
func (hs *Handlers) newActions() map[abi.Action]action {
	return map[abi.Action]action{
		abi.ActionRecord:       {}, // recorded by the plugin manager; nothing else
		abi.ActionDevicePlugin: hs.devicePluginAction(),
		abi.ActionCSIDriver:    hs.csiDriverAction(),
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

// endpoint resolves a decision's endpoint: what the handler said, or else
// what the plugin said. A relative endpoint is in the registration socket's
// directory; none at all is the registration socket.
func endpoint(p pluginmanager.Plugin, d *abi.RegisterResponse) string {
	ep := d.Endpoint
	if ep == "" {
		ep = p.Endpoint
	}
	if ep == "" {
		return p.SocketPath
	}
	if !filepath.IsAbs(ep) {
		ep = filepath.Join(filepath.Dir(p.SocketPath), ep)
	}
	return ep
}

// devicePlugin resolves an ACTION_DEVICE_PLUGIN decision: what the handler
// said, or else what the plugin said.
func devicePlugin(p pluginmanager.Plugin, d *abi.RegisterResponse) DevicePlugin {
	ep := endpoint(p, d)
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

// CSIDriver is a CSI driver a handler registered with ACTION_CSI_DRIVER.
type CSIDriver struct {
	Name       string   // the plugin's name: the driver's
	Endpoint   string   // absolute path of the driver's CSI socket
	Version    string   // the CSI spec version the handler chose; empty: the highest 1.x offered
	Offered    []string // the versions the plugin offered
	SocketPath string   // the registration socket it came from
}

// CSIDrivers is the node's CSI driver registry (host/csi), seen from
// ACTION_CSI_DRIVER.
type CSIDrivers interface {
	// RegisterCSIDriver asks the driver for its node facts and records it;
	// it returns the CSI spec version used with it. Its error is the
	// reason the driver is refused.
	RegisterCSIDriver(ctx context.Context, d CSIDriver) (version string, err error)
	DeregisterCSIDriver(ctx context.Context, d CSIDriver) error
}

// csiDriverAction registers the plugin as a CSI driver, which asks the
// driver for its node facts, as the kubelet's CSI plugin handler does. A
// driver that does not answer, or answers facts of the wrong shape, is
// refused with the registry's reason.
//
// The host dials the CSI socket the plugin announced: a handler accepts or
// refuses it, and may repeat it in its decision, but cannot send the host
// to another socket.
func (hs *Handlers) csiDriverAction() action {
	drivers := hs.cfg.CSIDrivers
	return action{
		register: func(ctx context.Context, p pluginmanager.Plugin, d *abi.RegisterResponse, r *pluginmanager.Registration) error {
			announced := endpoint(p, &abi.RegisterResponse{})
			if ep := endpoint(p, d); ep != announced {
				return &pluginmanager.Refusal{Reason: fmt.Sprintf(
					"CSI driver %q announced its CSI socket at %s, but its handler answered %s: a handler may not send the host to another socket",
					p.Name, announced, ep)}
			}
			c := CSIDriver{Name: p.Name, Endpoint: announced, Version: d.Version, Offered: p.Versions, SocketPath: p.SocketPath}
			r.Endpoint, r.Version = c.Endpoint, c.Version
			if drivers == nil {
				return nil
			}
			v, err := drivers.RegisterCSIDriver(ctx, c)
			if err != nil {
				return &pluginmanager.Refusal{Reason: err.Error()}
			}
			r.Version = v
			return nil
		},
		deregister: func(ctx context.Context, p pluginmanager.Plugin, r pluginmanager.Registration) error {
			if drivers == nil {
				return nil
			}
			return drivers.DeregisterCSIDriver(ctx, CSIDriver{Name: p.Name, Endpoint: r.Endpoint, Version: r.Version,
				Offered: p.Versions, SocketPath: p.SocketPath})
		},
	}
}
