package node

import (
	"strings"
	"sync"

	"github.com/hashicorp/go-hclog"

	"github.com/wasmlet/wasmlet/host/bridge"
	"github.com/wasmlet/wasmlet/host/cdi"
	"github.com/wasmlet/wasmlet/host/claim"
	"github.com/wasmlet/wasmlet/host/config"
	"github.com/wasmlet/wasmlet/host/devicemanager"
	"github.com/wasmlet/wasmlet/host/devicesource"
	"github.com/wasmlet/wasmlet/host/dradriver"
)

// sourceRoutes is the node's policy for its device sources: it is what the
// devicesource.Controller serves them to (a devicesource.Providers). A
// source whose module has bridge = true in [sources.<name>] goes to the
// bridge, and only there: two allocators handing out the same devices would
// give one device to two containers. A source with bridge = "dra" goes to
// the DRA drivers, and only there (the cluster's scheduler allocates its
// devices; each claim the kubelet prepares gets a CDI spec of its own).
// Every other source goes to the local device manager. A source served to
// the local device manager or the device-plugin bridge gets a CDI spec for
// its devices, and its allocations their CDI names.
type sourceRoutes struct {
	local   *devicemanager.Manager
	plugins *devicemanager.Server // where device plugins register
	bridge  *bridge.Bridge
	dra     *dradriver.Drivers // nil when no source has bridge = "dra"
	specs   *cdi.Specs
	claims  *claim.Store
	bridged func(module string) config.BridgeKind
	log     hclog.Logger

	mu      sync.Mutex
	drivers map[string]*devicesource.Source // the local sources' drivers, by provider name
}

var _ devicesource.Providers = (*sourceRoutes)(nil)

// SetProvider serves source p where its configuration says. A resource a
// device source declares is the module's: a device plugin serving it
// locally is replaced (and the replacement noted, for status).
func (r *sourceRoutes) SetProvider(resource string, p devicemanager.Provider) {
	kind, module := config.NoBridge, ""
	if m, ok := p.(interface{ Module() string }); ok {
		module = m.Module()
		kind = r.bridged(module)
	}
	toBridge := kind != config.NoBridge
	if cur := r.local.ProviderName(resource); strings.HasPrefix(cur, "plugin:") {
		r.plugins.NoteReplaced(resource, cur, module)
		if toBridge {
			r.local.RemoveProvider(resource, cur)
		}
	}
	if kind == config.BridgeDRA {
		if r.dra == nil { // config.Validate refuses it; a source loaded without a config entry cannot be here
			r.log.Error("device source has bridge = \"dra\" but no DRA drivers run; not served", "resource", resource, "provider", p.Name())
			p.Close()
			return
		}
		r.log.Info("device source served to the kubelet and the cluster as a DRA driver, not to wasmlet's device manager",
			"resource", resource, "provider", p.Name())
		r.dra.SetProvider(resource, p)
		return
	}
	src, _ := p.(*devicesource.Source)
	if cs, ok := p.(cdi.Source); ok {
		p = r.specs.Wrap(cs)
	}
	if toBridge {
		r.log.Info("device source served to the external kubelet, not to wasmlet's device manager", "resource", resource,
			"provider", p.Name())
		r.bridge.SetProvider(resource, p)
		return
	}
	if src != nil && r.claims != nil {
		// Its driver prepares the claims of its devices.
		r.mu.Lock()
		if r.drivers == nil {
			r.drivers = map[string]*devicesource.Source{}
		}
		r.drivers[src.Name()] = src
		r.mu.Unlock()
		r.claims.SetDriver(src.Driver(), src)
	}
	r.local.SetProvider(resource, p)
}

// RemoveProvider stops serving resource from providerName, wherever it is
// served, and removes its CDI spec.
func (r *sourceRoutes) RemoveProvider(resource, providerName string) {
	r.local.RemoveProvider(resource, providerName)
	r.bridge.RemoveProvider(resource, providerName)
	if r.dra != nil {
		r.dra.RemoveProvider(resource, providerName)
	}
	r.mu.Lock()
	if src := r.drivers[providerName]; src != nil && src.Resource() == resource {
		delete(r.drivers, providerName)
		r.claims.RemoveDriver(src.Driver(), src)
	}
	r.mu.Unlock()
	r.specs.Remove(resource, providerName)
}
