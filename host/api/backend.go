package api

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/wasmlet/wasmlet/host/bridge"
	"github.com/wasmlet/wasmlet/host/cdi"
	"github.com/wasmlet/wasmlet/host/devicemanager"
	"github.com/wasmlet/wasmlet/host/module"
	"github.com/wasmlet/wasmlet/host/pluginmanager"
)

// Backend is the running host, as the API sees it. Every method must be
// safe for concurrent use; the listing methods return snapshots the API
// does not modify.
type Backend interface {
	// Status describes the host itself.
	Status() NodeStatus
	// Modules lists every module name the host knows, running or refused
	// (module.Registry.List).
	Modules() []module.Info
	// ReloadModule loads the named module again from its file
	// (module.Registry.Reload). A refused file gives a *module.LoadError.
	ReloadModule(ctx context.Context, name string) (*module.Module, error)
	// Plugins lists the plugin sockets (pluginmanager.Manager.Plugins).
	Plugins() []pluginmanager.PluginStatus
	// Resources, Allocations, Allocate and Release are the device
	// manager's (devicemanager.Manager), with its error values.
	Resources() []devicemanager.ResourceStatus
	Allocations() []*devicemanager.Allocation
	Allocate(ctx context.Context, req devicemanager.AllocateRequest) (*devicemanager.Allocation, error)
	Release(ctx context.Context, workload, resource string) ([]*devicemanager.Allocation, error)
}

// NodeStatus is what a host says about itself in the admin Status call.
type NodeStatus struct {
	Version string
	Started time.Time
	// ConfigFile is the plugins.toml the host runs with; "" for defaults.
	ConfigFile string

	StateDir        string
	RegistryDir     string
	DevicePluginDir string
	ModuleDir       string
	Checkpoint      string
	APISocket       string
	MetricsAddress  string

	// GracePeriod is how long a lost provider's devices stay, unhealthy;
	// the API reports each disconnected resource's deadline with it.
	GracePeriod time.Duration

	// Ready is what /readyz reports; NotReady says why not.
	Ready    bool
	NotReady string

	// Bridged are the sources served to an external kubelet; CDISpecs the
	// CDI spec files written for the sources' devices.
	Bridged  []bridge.Status
	CDISpecs []cdi.Status
}

// Parts are the pieces of a running host that NewBackend serves from.
type Parts struct {
	// Status describes the host; nil reports an empty NodeStatus.
	Status  func() NodeStatus
	Modules *module.Registry
	Plugins *pluginmanager.Manager
	Devices *devicemanager.Manager
}

// NewBackend returns a Backend over the given parts. A nil part serves
// nothing: its lists are empty, and calls that need it fail with an error
// saying it is not running.
func NewBackend(p Parts) Backend { return parts{p} }

type parts struct{ p Parts }

var (
	errNoModules = errors.New("the module registry is not running")
	errNoDevices = fmt.Errorf("%w: the device manager is not running", devicemanager.ErrUnavailable)
)

func (b parts) Status() NodeStatus {
	if b.p.Status == nil {
		return NodeStatus{}
	}
	return b.p.Status()
}

func (b parts) Modules() []module.Info {
	if b.p.Modules == nil {
		return nil
	}
	return b.p.Modules.List()
}

func (b parts) ReloadModule(ctx context.Context, name string) (*module.Module, error) {
	if b.p.Modules == nil {
		return nil, errNoModules
	}
	return b.p.Modules.Reload(ctx, name)
}

func (b parts) Plugins() []pluginmanager.PluginStatus {
	if b.p.Plugins == nil {
		return nil
	}
	return b.p.Plugins.Plugins()
}

func (b parts) Resources() []devicemanager.ResourceStatus {
	if b.p.Devices == nil {
		return nil
	}
	return b.p.Devices.Resources()
}

func (b parts) Allocations() []*devicemanager.Allocation {
	if b.p.Devices == nil {
		return nil
	}
	return b.p.Devices.Allocations()
}

func (b parts) Allocate(ctx context.Context, req devicemanager.AllocateRequest) (*devicemanager.Allocation, error) {
	if b.p.Devices == nil {
		return nil, errNoDevices
	}
	return b.p.Devices.Allocate(ctx, req)
}

func (b parts) Release(ctx context.Context, workload, resource string) ([]*devicemanager.Allocation, error) {
	if b.p.Devices == nil {
		return nil, errNoDevices
	}
	return b.p.Devices.Release(ctx, workload, resource)
}
