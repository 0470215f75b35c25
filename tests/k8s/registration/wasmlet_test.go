package registration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/wasmlet/wasmlet/guests/build"
	"github.com/wasmlet/wasmlet/host/config"
	"github.com/wasmlet/wasmlet/host/node"
	"github.com/wasmlet/wasmlet/host/pluginmanager"
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
	node     *node.Node
	cfg      *config.Config
	dir      string
	registry string
	cancel   context.CancelFunc
	done     chan error
}

// bundledConfig is the repository's own plugins.toml, as `make run` uses it.
func bundledConfig(tb testing.TB) string {
	tb.Helper()
	root, err := build.Root()
	if err != nil {
		tb.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "plugins.toml"))
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

// startWasmlet runs a node from toml with the given modules (name → guest
// directory) installed. Relative paths in toml resolve against the node's
// directory; the metrics listener is turned off, since the bundled file
// names a fixed port. The node stops when the test ends.
func startWasmlet(tb testing.TB, toml string, modules map[string]string, setup func(dir string)) *wasmlet {
	tb.Helper()
	dir := shortDir(tb)
	modDir := filepath.Join(dir, "build", "modules")
	state := filepath.Join(dir, "build", "state")
	for _, d := range []string{modDir, state} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			tb.Fatal(err)
		}
	}
	// Compiled modules are kept across tests and runs, next to the guests.
	shared := filepath.Join(build.CacheDir(), "wazero-k8s")
	if err := os.MkdirAll(shared, 0o700); err != nil {
		tb.Fatal(err)
	}
	if err := os.Symlink(shared, filepath.Join(state, "compilation-cache")); err != nil {
		tb.Fatal(err)
	}
	for name, guest := range modules {
		b, err := os.ReadFile(build.Go(tb, guest))
		if err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(modDir, name+".wasm"), b, 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	if setup != nil {
		setup(dir)
	}
	file := filepath.Join(dir, "plugins.toml")
	if err := os.WriteFile(file, []byte(toml), 0o644); err != nil {
		tb.Fatal(err)
	}
	cfg, err := config.Load(file)
	if err != nil {
		tb.Fatal(err)
	}
	cfg.Host.MetricsAddress = ""
	w := &wasmlet{cfg: cfg, dir: dir, registry: cfg.Host.RegistryDir}
	w.run(tb)
	tb.Cleanup(w.stop)
	return w
}

// run starts a node on w's configuration and waits until it is ready.
func (w *wasmlet) run(tb testing.TB) {
	tb.Helper()
	n, err := node.New(w.cfg, logger(tb))
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	w.node, w.cancel, w.done = n, cancel, make(chan error, 1)
	go func() { w.done <- n.Run(ctx) }()
	eventuallyWithin(tb, startTimeout, "wasmlet to be ready", func() bool {
		select {
		case err := <-w.done:
			w.done <- err
			tb.Fatalf("wasmlet stopped: %v", err)
		default:
		}
		return n.Ready()
	})
}

// restart stops the node and starts another on the same configuration,
// directories and state: a wasmlet restarted.
func (w *wasmlet) restart(tb testing.TB) {
	tb.Helper()
	w.stop()
	w.run(tb)
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

func (w *wasmlet) stop() {
	w.cancel()
	<-w.done
	w.done <- nil
}

// registered counts the plugins registered now.
func (w *wasmlet) registered() int {
	n := 0
	for _, p := range w.node.Plugins().Plugins() {
		if p.State == pluginmanager.StateRegistered {
			n++
		}
	}
	return n
}

// plugin is what wasmlet knows of the plugin on socket name.sock.
func (w *wasmlet) plugin(name string) (pluginmanager.PluginStatus, bool) {
	for _, p := range w.node.Plugins().Plugins() {
		if filepath.Base(p.SocketPath) == name+".sock" {
			return p, true
		}
	}
	return pluginmanager.PluginStatus{}, false
}

// shortDir is a new temporary directory with a short path (unix socket
// paths are limited to about 108 bytes), removed when the test ends.
func shortDir(tb testing.TB) string {
	tb.Helper()
	d, err := os.MkdirTemp("", "k8s")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// logger writes wasmlet's warnings and errors into the test's log.
func logger(tb testing.TB) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Level: hclog.Warn, Output: testWriter{tb}})
}

type testWriter struct{ tb testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.tb.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// eventually polls cond until it holds, failing the test, named by what,
// after a minute: the bound matters only when something is broken.
func eventually(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	eventuallyWithin(tb, time.Minute, what, cond)
}

// startTimeout bounds a wasmlet's first start, which compiles its modules:
// cold (a CI machine's first run, the compilation cache empty), under the
// race detector, beside other packages doing the same, that takes minutes.
const startTimeout = 5 * time.Minute

func eventuallyWithin(tb testing.TB, within time.Duration, what string, cond func() bool) {
	tb.Helper()
	for deadline := time.Now().Add(within); !cond(); time.Sleep(2 * time.Millisecond) {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s (%v)", what, within)
		}
	}
}
