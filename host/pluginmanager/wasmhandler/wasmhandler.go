// Package wasmhandler makes the WebAssembly handler modules the plugin
// manager's handlers: it finds the module for a plugin type (the one
// plugins.toml names, or else one that declares the type;
// module.Registry.Handler), calls its validate, register and deregister,
// and carries out its register decision on the host.
//
// A module's own error (an *abi.Error) is a refusal: its message goes back
// to the plugin. A module fault (trap, timeout, quarantine...) is a failure
// the plugin manager retries without bothering the plugin.
//
// A register decision names an action (actions.go): ACTION_RECORD only
// records the plugin, ACTION_DEVICE_PLUGIN hands it to the device manager
// (DevicePlugins), ACTION_CSI_DRIVER to the node's CSI driver registry
// (CSIDrivers). An action the host does not know is refused. If an action
// fails, the module is told the plugin did not register after all
// (deregister).
//
// Handlers come and go with their module files: a plugin is registered by
// the module found for its type then, and deregistered by the module of
// that name running when its socket goes (whichever version it is), or by
// nobody if none is; the host's side of the action is undone either way.
package wasmhandler

import (
	"context"
	"errors"
	"fmt"

	"github.com/wasmlet/wasmlet/abi"
	"github.com/wasmlet/wasmlet/host/module"
	"github.com/wasmlet/wasmlet/host/pluginmanager"
)

// Config wires the handler modules to the host.
type Config struct {
	Modules *module.Registry
	// DevicePlugins carries out ACTION_DEVICE_PLUGIN; without it such
	// plugins are only recorded.
	DevicePlugins DevicePlugins
	// CSIDrivers carries out ACTION_CSI_DRIVER; without it such plugins
	// are only recorded.
	CSIDrivers CSIDrivers
}

// Handlers finds the handler modules; it is a pluginmanager.HandlerLookup.
type Handlers struct {
	cfg     Config
	actions map[abi.Action]action
	byName  map[string]action // the same, by the name a Registration records
}

// New returns the handler modules of cfg.Modules as plugin-manager handlers.
func New(cfg Config) *Handlers {
	h := &Handlers{cfg: cfg}
	h.actions = h.newActions()
	h.byName = map[string]action{}
	for a, act := range h.actions {
		h.byName[a.String()] = act
	}
	return h
}

// Handler returns the handler module for plugins of pluginType now.
func (hs *Handlers) Handler(pluginType string) (pluginmanager.Handler, bool) {
	m := hs.cfg.Modules.Handler(pluginType)
	if m == nil {
		return nil, false
	}
	return &handler{hs: hs, name: m.Name()}, true
}

// OnChange calls fn whenever a module is loaded, replaced, refused or
// unloaded: a handler may have come or gone.
func (hs *Handlers) OnChange(fn func()) {
	hs.cfg.Modules.Subscribe(func(module.Event) { fn() })
}

// handler is the module called name, as a pluginmanager.Handler. It finds
// the module at every call, so that a module replaced meanwhile is the one
// called.
type handler struct {
	hs   *Handlers
	name string
}

func (h *handler) module() (*module.Module, error) {
	if m := h.hs.cfg.Modules.Get(h.name); m != nil {
		return m, nil
	}
	return nil, fmt.Errorf("handler module %q is no longer loaded", h.name)
}

func (h *handler) Validate(ctx context.Context, p pluginmanager.Plugin) error {
	m, err := h.module()
	if err != nil {
		return err
	}
	if !m.Implements(abi.OpValidate) {
		return nil
	}
	ap := toABI(p)
	return h.refusal(p, m.Validate(ctx, &ap))
}

func (h *handler) Register(ctx context.Context, p pluginmanager.Plugin) (pluginmanager.Registration, error) {
	m, err := h.module()
	if err != nil {
		return pluginmanager.Registration{}, err
	}
	ap := toABI(p)
	d, err := m.Register(ctx, &ap)
	if err != nil {
		return pluginmanager.Registration{}, h.refusal(p, err)
	}
	reg := pluginmanager.Registration{Handler: h.name, Action: d.Action.String(), Attributes: d.Attributes}
	act, known := h.hs.actions[d.Action]
	switch {
	case !known:
		err = &pluginmanager.Refusal{Reason: fmt.Sprintf("handler %q registered plugin %q with %s, which this host does not carry out",
			h.name, p.Name, d.Action)}
	case act.register != nil:
		err = act.register(ctx, p, d, &reg)
	}
	if err != nil {
		// The module believes the plugin registered: tell it otherwise, so
		// that a retry does not register the plugin twice with it.
		if uerr := h.deregisterModule(context.WithoutCancel(ctx), p); uerr != nil {
			err = errors.Join(err, fmt.Errorf("and the module could not be told: %w", uerr))
		}
		return pluginmanager.Registration{}, err
	}
	return reg, nil
}

func (h *handler) Deregister(ctx context.Context, p pluginmanager.Plugin, r pluginmanager.Registration) error {
	var err error
	if act := h.hs.byName[r.Action]; act.deregister != nil {
		err = act.deregister(ctx, p, r)
	}
	return errors.Join(err, h.deregisterModule(ctx, p))
}

// deregisterModule tells the module called name, if one runs, that p went.
func (h *handler) deregisterModule(ctx context.Context, p pluginmanager.Plugin) error {
	m := h.hs.cfg.Modules.Get(h.name)
	if m == nil || !m.Implements(abi.OpDeregister) {
		return nil
	}
	ap := toABI(p)
	return m.Deregister(ctx, &ap)
}

// refusal makes a module's own error a refusal naming the module; a fault
// stays a failure.
func (h *handler) refusal(p pluginmanager.Plugin, err error) error {
	if ae, ok := module.ModuleError(err); ok {
		return &pluginmanager.Refusal{Reason: fmt.Sprintf("handler %q refused plugin %q: %s", h.name, p.Name, ae.Message)}
	}
	return err
}

// toABI is a plugin as the ABI sends it to a module.
func toABI(p pluginmanager.Plugin) abi.Plugin {
	return abi.Plugin{Type: p.Type, Name: p.Name, Endpoint: p.Endpoint, SupportedVersions: p.Versions, SocketPath: p.SocketPath}
}
