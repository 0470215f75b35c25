package bridge

import (
	"github.com/hashicorp/go-hclog"

	"github.com/wasmlet/wasmlet/host/cdi"
	"github.com/wasmlet/wasmlet/host/devicemanager"
)

// Local is the local device manager, as Providers drives it
// (*devicemanager.Manager implements it).
type Local interface {
	SetProvider(resource string, p devicemanager.Provider)
	RemoveProvider(resource, providerName string)
}

// Providers routes the device sources a devicesource.Controller serves (it
// implements devicesource.Providers): a source whose module is bridged goes
// to the Bridge, and only there; every other source to the local device
// manager. Either way, a source's devices get a CDI spec (when Specs is
// set), and its Allocate responses the CDI names.
type Providers struct {
	local   Local
	bridge  *Bridge
	specs   *cdi.Specs
	bridged func(module string) bool
	log     hclog.Logger
}

// NewProviders returns the router. bridged says whether a module's source
// is served to the external kubelet ([sources.<name>] bridge = true); b may
// be nil when no source is, and specs nil for no CDI specs.
func NewProviders(local Local, b *Bridge, specs *cdi.Specs, bridged func(module string) bool, log hclog.Logger) *Providers {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	if bridged == nil || b == nil {
		bridged = func(string) bool { return false }
	}
	return &Providers{local: local, bridge: b, specs: specs, bridged: bridged, log: log}
}

// SetProvider serves p, a device source, where its configuration says.
func (r *Providers) SetProvider(resource string, p devicemanager.Provider) {
	toBridge := false
	if m, ok := p.(interface{ Module() string }); ok {
		toBridge = r.bridged(m.Module())
	}
	if src, ok := p.(cdi.Source); ok && r.specs != nil {
		p = r.specs.Wrap(src)
	}
	if toBridge {
		r.log.Info("device source served to the external kubelet, not to wasmlet's device manager", "resource", resource,
			"provider", p.Name())
		r.bridge.SetProvider(resource, p)
		return
	}
	r.local.SetProvider(resource, p)
}

// RemoveProvider stops serving resource from providerName, wherever it is
// served, and removes its CDI spec.
func (r *Providers) RemoveProvider(resource, providerName string) {
	r.local.RemoveProvider(resource, providerName)
	if r.bridge != nil {
		r.bridge.RemoveProvider(resource, providerName)
	}
	if r.specs != nil {
		r.specs.Remove(resource, providerName)
	}
}
