package node

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wasmlet/wasmlet/host/api"
	"github.com/wasmlet/wasmlet/host/api/adminpb"
	"github.com/wasmlet/wasmlet/host/devicemanager"
	"github.com/wasmlet/wasmlet/host/internal/testplugin"
)

// TestDeviceSourceOwnsItsResource: a resource a loaded device-source module
// declares is the module's. A device plugin registering it through the
// plugin registry is told no, with the module named, and retried with the
// backoff; the module serves on, and the refusal shows on the resource and
// the module. A device plugin that served a resource before a module
// declaring it was dropped in is replaced by the module, and that shows
// too. When the module goes, the plugin's next attempt is accepted.
func TestDeviceSourceOwnsItsResource(t *testing.T) {
	// late is a handler at first; replaced by a counter, it declares
	// example.com/late, which a device plugin serves by then.
	h := start(t, map[string]string{"devicepluginhandler": "guests/devicepluginhandler", "counter": "guests/counter",
		"late": "guests/customhandler"}, `
[modules.counter]
config = { resource = "example.com/counter", count = "2" }

[modules.late]
config = { type = "LatePlugin", versions = "v1", resource = "example.com/late", count = "3" }

[handlers]
DevicePlugin = "devicepluginhandler"
`)
	h.eventually("2 counters", func() bool { r, ok := h.resource("example.com/counter"); return ok && r.Healthy == 2 })
	dpSock := filepath.Join(h.dir, "dp", "counter.sock")
	testplugin.StartDevicePlugin(t, dpSock, "example.com/counter", testplugin.Devices("c", 5))
	reg := testplugin.StartRegistrant(t, filepath.Join(h.dir, "reg", "counter-reg.sock"), testplugin.Info{
		Type: "DevicePlugin", Name: "example.com/counter", Endpoint: dpSock, Versions: []string{"v1beta1"}})
	s := reg.Expect(t, time.Minute)
	if s.Registered || !strings.Contains(s.Error, `example.com/counter is served by the device source module "counter"`) {
		t.Fatalf("the plugin was told %+v", s)
	}
	if r, _ := h.resource("example.com/counter"); r.Provider != "module:counter" || r.Healthy != 2 {
		t.Fatalf("example.com/counter after the refusal: %+v", r)
	}
	b := h.n.backend()
	conflict := ""
	for _, r := range b.Resources() {
		if r.Name == "example.com/counter" {
			conflict = r.Conflict
		}
	}
	if !strings.Contains(conflict, dpSock+" asked to serve example.com/counter") {
		t.Errorf("the resource's conflict: %q", conflict)
	}
	for _, m := range b.Modules() {
		if m.Name == "counter" && m.PluginConflict != conflict {
			t.Errorf("counter's plugin conflict: %q, want %q", m.PluginConflict, conflict)
		}
	}

	// A plugin first, then a module declaring its resource.
	late := testplugin.StartDevicePlugin(t, filepath.Join(h.dir, "dp", "late.sock"), "example.com/late", testplugin.Devices("l", 1))
	if err := late.Register(context.Background(), filepath.Join(h.dir, "dp", devicemanager.KubeletSocket)); err != nil {
		t.Fatal(err)
	}
	h.eventually("the late plugin's device", func() bool { r, ok := h.resource("example.com/late"); return ok && r.Healthy == 1 })
	copyModule(t, "guests/counter", filepath.Join(h.dir, "modules", "late.wasm"))
	h.eventually("the module to take example.com/late over", func() bool {
		r, ok := h.resource("example.com/late")
		return ok && r.Provider == "module:late" && r.Healthy == 3
	})
	for _, r := range h.n.backend().Resources() {
		if r.Name == "example.com/late" && !strings.Contains(r.Conflict, `took it over`) {
			t.Errorf("example.com/late's conflict: %q", r.Conflict)
		}
	}

	// The module goes: the registry plugin's next attempt is accepted.
	os.Remove(filepath.Join(h.dir, "modules", "counter.wasm"))
	h.eventually("the device plugin to serve example.com/counter", func() bool {
		r, ok := h.resource("example.com/counter")
		return ok && r.Provider == "plugin:"+dpSock && r.Healthy == 5
	})
	for _, r := range h.n.backend().Resources() {
		if r.Name == "example.com/counter" && r.Conflict != "" {
			t.Errorf("a conflict is still shown once the plugin serves: %q", r.Conflict)
		}
	}
}

// TestFailingSourceIsVisible: a device source whose discovery fails is
// shown as failing, with the error and when it tries next; it keeps trying,
// and once the trouble goes it is running again.
func TestFailingSourceIsVisible(t *testing.T) {
	data := t.TempDir()
	os.WriteFile(filepath.Join(data, "d0"), nil, 0o644)
	h := start(t, map[string]string{"dir": "host/devicesource/testdata/dirsource"}, `
[modules.dir]
mounts = [{ host = "`+data+`", guest = "/data" }]
`)
	h.eventually("1 device", func() bool { r, ok := h.resource("example.com/dir"); return ok && r.Healthy == 1 })
	os.WriteFile(filepath.Join(data, "fail"), []byte("the widget bus is resetting"), 0o644)
	module := func() *adminpb.Module {
		for _, m := range h.n.backend().Modules() {
			if m.Name == "dir" {
				return m
			}
		}
		t.Fatal("module dir is not listed")
		return nil
	}
	h.eventually("dir to be failing", func() bool { return module().State == api.ModuleFailing })
	m := module()
	if m.DiscoveryState != "failing" || m.DiscoveryFailures < 1 || m.NextDiscovery == nil ||
		m.DiscoveryError != `module "dir": discover: unavailable: the widget bus is resetting` {
		t.Errorf("a failing source: %+v", m)
	}
	os.Remove(filepath.Join(data, "fail"))
	h.eventually("dir to run again", func() bool { return module().State == api.ModuleRunning })
}
