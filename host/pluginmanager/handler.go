package pluginmanager

import "github.com/wasmlet/wasmlet/host/pluginmanager/cache"

// The plugin manager's nouns; see host/pluginmanager/cache for each.
type (
	// Plugin is what a plugin said of itself (GetInfo) and where.
	Plugin = cache.Plugin
	// Handler registers the plugins of one type.
	Handler = cache.Handler
	// Refusal is a handler's "no": its reason is sent to the plugin.
	Refusal = cache.Refusal
	// Registration is what a handler made of a plugin it registered.
	Registration = cache.Registration
)

// HandlerLookup finds handlers that come and go: the WebAssembly handler
// modules (host/pluginmanager/wasmhandler).
type HandlerLookup interface {
	// Handler returns the handler for plugins of pluginType now, if any.
	Handler(pluginType string) (Handler, bool)
	// OnChange registers fn, to be called whenever handlers may have come
	// or gone. fn does not block.
	OnChange(fn func())
}

// AddHandler makes h the handler for plugins of pluginType, ahead of any
// the lookup in Config.Handlers finds, as the kubelet's AddHandler does. A
// plugin waiting for a handler of that type is registered at once.
func (m *Manager) AddHandler(pluginType string, h Handler) {
	m.handlersMu.Lock()
	m.handlers[pluginType] = h
	m.handlersMu.Unlock()
	m.handlersChanged()
}

// handler finds the handler for pluginType.
func (m *Manager) handler(pluginType string) (Handler, bool) {
	m.handlersMu.RLock()
	h, ok := m.handlers[pluginType]
	m.handlersMu.RUnlock()
	if ok || m.cfg.Handlers == nil {
		return h, ok
	}
	return m.cfg.Handlers.Handler(pluginType)
}

// handlersChanged lets plugins waiting for a handler try again at once.
func (m *Manager) handlersChanged() {
	if m.exec.Release() {
		m.rec.Trigger()
	}
}
