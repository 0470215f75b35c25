package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wasmlet/wasmlet/internal/testkit"
)

// TestAsAUserWould runs wasmlet as the README says: the example device
// sources discover this machine's devices, the CLI lists and allocates them,
// a module dropped into the module directory loads, and SIGTERM stops
// wasmlet cleanly, leaving no socket behind.
func TestAsAUserWould(t *testing.T) {
	if _, err := os.Stat("/sys/bus/pci/devices"); err != nil {
		t.Skip("this machine has no /sys/bus/pci/devices")
	}
	h := newHost(t, map[string]string{"pcisource": "guests/pcisource", "devsource": "guests/devsource"}, `
[modules.pcisource]
mounts = [{ host = "/sys/bus/pci/devices", guest = "/sys/bus/pci/devices", root = "/sys" }]
config = { resource = "example.com/pci" }
[modules.pcisource.edits]
device_nodes = ["/dev/vfio/*"]
writable = ["/dev/vfio"]
`+testkit.DevSourceTOML)
	h.start()

	pci, _ := os.ReadDir("/sys/bus/pci/devices")
	type resource struct {
		Name     string `json:"name"`
		Capacity int    `json:"capacity"`
		Healthy  int    `json:"healthy"`
	}
	var resources []resource
	var last string
	defer func() {
		if t.Failed() {
			t.Logf("last resources output:\n%s", last)
		}
	}()
	h.eventually("both sources' devices", func() bool {
		out, code := h.cli("-o", "json", "resources")
		last = out
		if code != 0 {
			return false
		}
		var doc struct {
			Resources []resource `json:"resources"`
		}
		if json.Unmarshal([]byte(out), &doc) != nil {
			return false
		}
		resources = doc.Resources
		return len(resources) == 2 && resources[0].Healthy == 2 && resources[1].Healthy == len(pci)
	})
	if resources[0].Name != "example.com/dev" || resources[1].Name != "example.com/pci" {
		t.Fatalf("resources %+v", resources)
	}

	out, code := h.cli("devices")
	if code != 0 || !strings.Contains(out, "example.com/dev  null") || !strings.Contains(out, pci[0].Name()) {
		t.Fatalf("devices (exit %d):\n%s", code, out)
	}
	out, code = h.cli("allocate", "--pod", "web", "--container", "app", "example.com/dev", "1")
	if code != 0 || !strings.Contains(out, "Allocated 1 device of example.com/dev to default/web/app") || !strings.Contains(out, "/dev/") {
		t.Fatalf("allocate (exit %d):\n%s", code, out)
	}
	out, code = h.cli("allocations")
	if code != 0 || !strings.Contains(out, "default/web/app") {
		t.Fatalf("allocations (exit %d):\n%s", code, out)
	}
	if out, code = h.cli("allocate", "--pod", "web", "--container", "app", "example.com/nothing", "1"); code != 4 {
		t.Fatalf("allocating an unknown resource: exit %d, want 4:\n%s", code, out)
	}
	if out, code = h.cli("release", "default/web/app"); code != 0 || !strings.Contains(out, "Released") {
		t.Fatalf("release (exit %d):\n%s", code, out)
	}

	// Drop a module in: it shows up in `wasmlet modules`.
	h.install("counter", "guests/counter")
	h.eventually("counter in wasmlet modules", func() bool {
		out, code := h.cli("modules")
		return code == 0 && strings.Contains(out, "example.com/counter")
	})

	if err := h.stop(); err != nil {
		t.Fatalf("wasmlet exited with %v after SIGTERM\n%s", err, h.logs())
	}
	for _, sock := range []string{h.socket, filepath.Join(h.dir, "dp", "kubelet.sock")} {
		if _, err := os.Lstat(sock); err == nil {
			t.Errorf("%s left behind after SIGTERM", sock)
		}
	}
	if !strings.Contains(h.logs(), "wasmlet stopped") {
		t.Errorf("no clean stop in the log:\n%s", h.logs())
	}
	if _, code := h.cli("status"); code != 3 {
		t.Errorf("status with wasmlet stopped: exit %d, want 3 (cannot reach the host)", code)
	}
}
