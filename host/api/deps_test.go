package api_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependsOnNoSubsystem: the API speaks its own types; the host's parts
// are converted into them by host/node. Importing one of the parts here
// again would tie the API to it. The host's internal helpers (how a socket
// file is judged live or stale) are no part.
func TestDependsOnNoSubsystem(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/wasmlet/wasmlet/host/api").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, pkg := range strings.Fields(string(out)) {
		if strings.HasPrefix(pkg, "github.com/wasmlet/wasmlet/") &&
			pkg != "github.com/wasmlet/wasmlet/host/api" && pkg != "github.com/wasmlet/wasmlet/host/api/adminpb" &&
			!strings.HasPrefix(pkg, "github.com/wasmlet/wasmlet/host/internal/") {
			t.Errorf("host/api depends on %s", pkg)
		}
	}
}
