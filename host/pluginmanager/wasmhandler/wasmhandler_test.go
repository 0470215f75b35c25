package wasmhandler_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/wasmlet/wasmlet/guests/build"
	"github.com/wasmlet/wasmlet/host/internal/testenv"
	"github.com/wasmlet/wasmlet/host/internal/testplugin"
	"github.com/wasmlet/wasmlet/host/module"
	"github.com/wasmlet/wasmlet/host/pluginmanager"
	"github.com/wasmlet/wasmlet/host/pluginmanager/wasmhandler"
	"github.com/wasmlet/wasmlet/internal/testkit"
)

// csiDrivers records the CSI drivers it is asked to register.
type csiDrivers struct{ asked atomic.Int32 }

func (c *csiDrivers) RegisterCSIDriver(context.Context, wasmhandler.CSIDriver) (string, error) {
	c.asked.Add(1)
	return "1.0.0", nil
}

func (c *csiDrivers) DeregisterCSIDriver(context.Context, wasmhandler.CSIDriver) error { return nil }

// start runs a plugin manager whose only handler is the misbehaving module
// guests/testmodules/badhandler, and returns the registry directory.
func start(t *testing.T) (*pluginmanager.Manager, string, *testenv.Calls) {
	pm, dir, c, _ := startWithCSI(t)
	return pm, dir, c
}

func startWithCSI(t *testing.T) (*pluginmanager.Manager, string, *testenv.Calls, *csiDrivers) {
	dir := testenv.ShortDir(t)
	c := &testenv.Calls{}
	reg := module.NewRegistry(func(string) module.Options {
		return module.Options{MemoryLimit: 64 << 20, Cache: testenv.ModuleCache(t), CallTimeout: 5 * time.Second, Observer: c,
			Logger: testenv.Logger(t, hclog.Warn)}
	}, nil, nil)
	t.Cleanup(func() { reg.Close(context.Background()) })
	b, err := os.ReadFile(build.Go(t, "guests/testmodules/badhandler"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "badhandler.wasm")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Load(context.Background(), path); err != nil {
		t.Fatal(err)
	}
	drivers := &csiDrivers{}
	pm, err := pluginmanager.New(pluginmanager.Config{RegistryDir: filepath.Join(dir, "r"), Handlers: wasmhandler.New(wasmhandler.Config{Modules: reg, CSIDrivers: drivers}),
		OperationTimeout: 5 * time.Second, BackoffInitial: time.Hour, Logger: testenv.Logger(t, hclog.Warn)})
	if err != nil {
		t.Fatal(err)
	}
	testkit.Go(t, func(ctx context.Context) { pm.Run(ctx) })
	<-pm.Ready()
	return pm, filepath.Join(dir, "r"), c, drivers
}

func status(t *testing.T, pm *pluginmanager.Manager, socket, state string) pluginmanager.PluginStatus {
	t.Helper()
	var found pluginmanager.PluginStatus
	testenv.Eventually(t, socket+" to be "+state, func() bool {
		for _, s := range pm.Plugins() {
			if s.SocketPath == socket && s.State == state {
				found = s
				return true
			}
		}
		return false
	})
	return found
}

// A register decision the host cannot carry out is refused, with a reason
// naming the module, and the module is told the plugin did not register.
func TestUnknownActionRefused(t *testing.T) {
	pm, regDir, c := start(t)
	p := testplugin.StartRegistrant(t, filepath.Join(regDir, "odd.sock"), testplugin.Info{Type: "BadPlugin", Name: "odd-1"})
	s := p.Expect(t, 10*time.Second)
	if s.Registered || s.Error != `handler "badhandler" registered plugin "odd-1" with action(7), which this host does not carry out` {
		t.Fatalf("plugin told %+v", s)
	}
	status(t, pm, p.Path, pluginmanager.StateFailing)
	if r, d := c.Count("register"), c.Count("deregister"); r != 1 || d != 1 {
		t.Fatalf("module calls: %d register, %d deregister; want one of each", r, d)
	}
}

// A module's fault is the handler's failure, not the plugin's: the plugin
// is not told, and the registration is retried.
func TestModuleFaultNotToldToThePlugin(t *testing.T) {
	pm, regDir, _ := start(t)
	p := testplugin.StartRegistrant(t, filepath.Join(regDir, "panic.sock"), testplugin.Info{Type: "BadPlugin", Name: "panic"})
	st := status(t, pm, p.Path, pluginmanager.StateFailing)
	if !strings.Contains(st.LastError, `module "badhandler": validate: trap`) || !strings.Contains(st.LastError, "asked to panic") {
		t.Fatalf("status %+v", st)
	}
	p.ExpectNone(t, 100*time.Millisecond)
}

// A CSI decision that names another socket than the one the driver
// announced is refused: the host dials no socket a plugin did not announce.
func TestCSIEndpointIsTheDrivers(t *testing.T) {
	pm, regDir, c, drivers := startWithCSI(t)
	p := testplugin.StartRegistrant(t, filepath.Join(regDir, "csi.sock"), testplugin.Info{Type: "BadPlugin", Name: "csi-1",
		Endpoint: "/var/lib/kubelet/plugins/csi-1/csi.sock", Versions: []string{"1.0.0"}})
	s := p.Expect(t, 10*time.Second)
	if s.Registered || s.Error != `CSI driver "csi-1" announced its CSI socket at /var/lib/kubelet/plugins/csi-1/csi.sock, `+
		`but its handler answered /run/elsewhere.sock: a handler may not send the host to another socket` {
		t.Fatalf("plugin told %+v", s)
	}
	status(t, pm, p.Path, pluginmanager.StateFailing)
	if n := drivers.asked.Load(); n != 0 {
		t.Fatalf("the CSI registry was asked %d times", n)
	}
	if d := c.Count("deregister"); d != 1 {
		t.Fatalf("module told of %d deregistrations, want 1", d)
	}
}
