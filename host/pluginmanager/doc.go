// Package pluginmanager is wasmlet's plugin manager: it registers the plugins
// that announce themselves with a socket in the registry directory, handing
// each to the handler for its type, as the kubelet's plugin manager does.
//
// Follow a plugin socket through the packages in data-flow order:
//
//	host/watcher                         the socket appears in the registry directory
//	host/pluginmanager/cache             ... and becomes a desired plugin (with a generation)
//	host/pluginmanager/reconciler        a pass finds it desired but not registered
//	host/pluginmanager/operationexecutor ... and runs its register operation (one per socket, backoff, timeout)
//	host/pluginmanager                   the operation, step by step (register.go):
//	  host/pluginmanager/registration      GetInfo on the plugin's socket
//	                                       find the Handler for the plugin's type
//	  a Handler                            validate, register
//	  host/pluginmanager/cache             record it in the actual state of the world
//	  host/pluginmanager/registration      NotifyRegistrationStatus(true) — or false, and why
//
// A Handler is added per plugin type with AddHandler (a built-in, Go
// handler), or found through Config.Handlers among handlers that come and go
// (the WebAssembly handler modules: host/pluginmanager/wasmhandler, which
// also carries out a module's register decision on the host). A plugin whose
// type has no handler is told so, as the kubelet tells it, and retried with
// the executor's backoff, or at once when a handler appears. When the socket
// goes, the registration is undone by the handler that made it.
//
// The plugin manager knows nothing of WebAssembly: it sees handlers, plugins
// and registrations (the nouns of host/pluginmanager/cache).
package pluginmanager
