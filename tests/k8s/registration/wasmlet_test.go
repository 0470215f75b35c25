package registration

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/wasmlet/wasmlet/host/config"
	"github.com/wasmlet/wasmlet/host/pluginmanager"
	"github.com/wasmlet/wasmlet/internal/testkit"
	"github.com/wasmlet/wasmlet/tests/k8s/internal/wasmletnode"
)

// bundledModules are the modules the bundled plugins.toml configures (the
// Makefile's GO_GUESTS), by name, with the guest each is built from.
var bundledModules = map[string]string{
	"devicepluginhandler": "guests/devicepluginhandler",
	"csihandler":          "guests/csihandler",
	"customhandler":       "guests/customhandler",
	"pcisource":           "guests/pcisource",
	"devsource":           "guests/devsource",
	"gpusim":              "guests/gpusim",
	"gpusim-shared":       "guests/gpusim",
}

// wasmlet is a whole wasmlet node (what `wasmlet run` runs), started from a
// plugins.toml in a short temporary directory of its own, laid out as the
// repository's is for `make run`: modules in build/modules, the registry in
// build/plugins_registry.
type wasmlet struct {
	*wasmletnode.Wasmlet
	registry string
}

// bundledConfig is the repository's own plugins.toml, as `make run` uses it.
func bundledConfig(tb testing.TB) string {
	tb.Helper()
	return string(testkit.RepoFile(tb, "plugins.toml"))
}

// startWasmlet runs a node from toml with the given modules (name → guest
// directory) installed. Relative paths in toml resolve against the node's
// directory; the metrics listener is turned off, since the bundled file
// names a fixed port. The node stops when the test ends.
func startWasmlet(tb testing.TB, toml string, modules map[string]string, setup func(dir string)) *wasmlet {
	tb.Helper()
	dir := testkit.ShortDir(tb)
	if setup != nil {
		setup(dir)
	}
	w := wasmletnode.Start(tb, wasmletnode.Options{Dir: dir, TOML: toml, ModuleDir: "build/modules", Modules: modules,
		Edit: func(cfg *config.Config) { cfg.Host.MetricsAddress = "" }})
	return &wasmlet{Wasmlet: w, registry: w.Config.Host.RegistryDir}
}

// heldConfig runs badhandler as the ExamplePlugin handler; its "hold-*"
// registrations stay in their register call until ctl/release exists (or
// the call deadline). host and sandbox are added to their sections.
const heldConfig = `
[host]
state_dir = "./build/state"
registry_dir = "./build/plugins_registry"
device_plugin_dir = "./build/device-plugins"
module_dir = "./build/modules"
api_socket = "./build/wasmlet.sock"
metrics_address = ""
%s

[sandbox]
%s

[modules.badhandler]
config = { type = "ExamplePlugin", release = "/ctl/release" }
mounts = [{ host = "./ctl", guest = "/ctl" }]

[handlers]
ExamplePlugin = "badhandler"

[bridge]
cdi_dir = "./build/cdi"
`

// startHeld runs a node from heldConfig; release(true) lets the held
// register calls return, release(false) holds the next ones again.
func startHeld(tb testing.TB, host, sandbox string) (w *wasmlet, release func(bool)) {
	tb.Helper()
	var ctl string
	w = startWasmlet(tb, fmt.Sprintf(heldConfig, host, sandbox), map[string]string{"badhandler": "guests/testmodules/badhandler"},
		func(dir string) {
			ctl = filepath.Join(dir, "ctl")
			if err := os.Mkdir(ctl, 0o755); err != nil {
				tb.Fatal(err)
			}
		})
	return w, func(yes bool) {
		file := filepath.Join(ctl, "release")
		var err error
		if yes {
			err = os.WriteFile(file, nil, 0o644)
		} else if err = os.Remove(file); os.IsNotExist(err) {
			err = nil
		}
		if err != nil {
			tb.Error(err)
		}
	}
}

// registered counts the plugins registered now.
func (w *wasmlet) registered() int {
	n := 0
	for _, p := range w.Node.Plugins().Plugins() {
		if p.State == pluginmanager.StateRegistered {
			n++
		}
	}
	return n
}

// plugin is what wasmlet knows of the plugin on socket name.sock.
func (w *wasmlet) plugin(name string) (pluginmanager.PluginStatus, bool) {
	for _, p := range w.Node.Plugins().Plugins() {
		if filepath.Base(p.SocketPath) == name+".sock" {
			return p, true
		}
	}
	return pluginmanager.PluginStatus{}, false
}
