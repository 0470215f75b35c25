package registration

import (
	"fmt"
	"testing"

	"github.com/wasmlet/wasmlet/host/pluginmanager"
	"github.com/wasmlet/wasmlet/internal/testkit"
)

// TestBundledConfigRegistersUpstreamExamplePlugins: 50 upstream example
// plugins, offering what the upstream tests offer (v1beta1, v1beta2),
// register at once with a node started from the repository's plugins.toml,
// and each is recorded by customhandler with the version the bundled
// configuration prefers.
func TestBundledConfigRegistersUpstreamExamplePlugins(t *testing.T) {
	w := startWasmlet(t, bundledConfig(t), bundledModules, nil)
	f := plugins(t)
	names := make([]string, fleetSize)
	for i := range names {
		names[i] = fmt.Sprintf("example-%d", i)
	}
	f.serve(t, w.registry, 0, names)
	t.Cleanup(func() { f.stop(t, fleetSize) })
	for i, name := range names {
		if s := f.status(t, i, name); !s.registered {
			t.Errorf("plugin %s: not registered: %q", name, s.reason)
		}
	}
	for _, name := range names {
		p, ok := w.plugin(name)
		switch {
		case !ok:
			t.Errorf("plugin %s: unknown to wasmlet", name)
		case p.State != pluginmanager.StateRegistered || p.Handler != "customhandler" || p.Attributes["version"] != "v1beta2":
			t.Errorf("plugin %s: state %s, handler %q, version %q; want registered by customhandler with v1beta2",
				name, p.State, p.Handler, p.Attributes["version"])
		}
	}
}

// TestKubeletRegistersTheSameFleet checks the comparison's other side: the
// kubelet's plugin manager, with its example handler, registers the same
// upstream plugins.
func TestKubeletRegistersTheSameFleet(t *testing.T) {
	k := startKubelet(t)
	f := plugins(t)
	names := []string{"kubelet-0", "kubelet-1", "kubelet-2"}
	f.serve(t, k.registry, 0, names)
	t.Cleanup(func() { f.stop(t, len(names)) })
	for i, name := range names {
		if s := f.status(t, i, name); !s.registered {
			t.Errorf("plugin %s: not registered: %q", name, s.reason)
		}
	}
	// Waited for: a socket the kubelet's watcher sees twice as it starts
	// (its directory walk and an event) is registered, deregistered and
	// registered again, the plugin hearing "registered" each time.
	testkit.Eventually(t, fmt.Sprintf("the kubelet's handler to hold the %d plugins", len(names)), func() bool {
		return k.handler.registered() == len(names)
	})
}

// TestSlowHandlerCallHoldsUpOnlyItsPlugin: two register calls that do not
// return occupy every instance of the handler's base pool; the 48 other
// plugins of the same type register all the same while both calls are
// still running (the pool grows for them), and the held two register once
// their calls return.
func TestSlowHandlerCallHoldsUpOnlyItsPlugin(t *testing.T) {
	// A call deadline far beyond the test: the held calls return when the
	// test lets them.
	w, release := startHeld(t, `operation_timeout = "2m"`, "pool_size = 2\ntimeout = \"2m\"")
	f := plugins(t)
	t.Cleanup(func() { f.stop(t, fleetSize) })
	// Whatever happens, the held calls return before the plugins stop (a
	// register would otherwise be followed by a notify to a plugin that is
	// gone, which waits out the operation timeout) and the node stops.
	t.Cleanup(func() { release(true) })
	m := w.Node.Modules().Get("badhandler")
	if m == nil {
		t.Fatal("badhandler is not loaded")
	}

	held := []string{"hold-0", "hold-1"}
	f.serve(t, w.registry, 0, held)
	// Both held plugins are in their register call: 4 calls made (validate
	// and register each), 2 instances busy.
	testkit.Eventually(t, "both held register calls to run", func() bool {
		s := m.Status()
		return s.Calls == 4 && s.Instances-s.Idle == 2
	})

	others := make([]string, fleetSize-len(held))
	for i := range others {
		others[i] = fmt.Sprintf("ok-%d", len(held)+i)
	}
	f.serve(t, w.registry, len(held), others)
	for i, name := range others {
		if s := f.status(t, len(held)+i, name); !s.registered {
			t.Errorf("plugin %s: not registered: %q", name, s.reason)
		}
	}
	// ... while the held calls still run.
	for i, name := range held {
		if e, ok := f.heard(i); ok {
			t.Errorf("plugin %s heard %q before its register call returned", name, e.text)
		}
		if p, _ := w.plugin(name); p.State != pluginmanager.StateRegistering {
			t.Errorf("plugin %s: state %q, want %q", name, p.State, pluginmanager.StateRegistering)
		}
	}
	if s := m.Status(); s.Instances-s.Idle < len(held) {
		t.Errorf("%d instances busy, want the %d held calls still running", s.Instances-s.Idle, len(held))
	}

	release(true)
	for i, name := range held {
		if s := f.status(t, i, name); !s.registered {
			t.Errorf("plugin %s: not registered once released: %q", name, s.reason)
		}
	}
	if n := w.registered(); n != fleetSize {
		t.Errorf("%d plugins registered, want %d", n, fleetSize)
	}
}
