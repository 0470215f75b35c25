package node

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/wasmlet/wasmlet/host/devicemanager"
	"github.com/wasmlet/wasmlet/host/internal/testenv"
	"github.com/wasmlet/wasmlet/internal/syncbuf"
)

// TestFullStateDirectory: a node whose state directory is full (a real
// tmpfs, filled, in a child process of its own) starts, and its modules
// load: the compilation cache that cannot be written is a warning, and the
// module is compiled without it. What must be durable is refused, saying
// why, until there is space again. (The C counter: compiled on every load,
// a Go guest takes seconds under the race detector.)
func TestFullStateDirectory(t *testing.T) {
	state := testenv.InTmpfs(t, "1m")
	if state == "" {
		return // the test ran in a child process
	}
	filler := testenv.Fill(t, state)
	var log syncbuf.Buffer
	toml := strings.Replace(nodeTOML("127.0.0.1:0", `
[modules.counter]
config = { resource = "example.com/counter", count = "2" }
`), `state_dir = "state"`, `state_dir = "`+state+`"`, 1)
	h := startTOML(t, map[string]string{"counter": "guests/c/counter.c"}, toml, withLog(&log))
	h.eventually("2 healthy counters", func() bool {
		r, ok := h.resource("example.com/counter")
		return ok && r.Connected && r.Healthy == 2
	})
	if !strings.Contains(log.String(), "the compilation cache cannot be written; the module is loaded without it") ||
		!strings.Contains(log.String(), "no space left on device") {
		t.Errorf("no warning about the compilation cache in the log:\n%s", log.String())
	}
	req := devicemanager.AllocateRequest{Namespace: "ns", Pod: "p", Container: "c", Resource: "example.com/counter", Count: 1}
	if _, err := h.n.Devices().Allocate(context.Background(), req); !errors.Is(err, devicemanager.ErrNotDurable) ||
		!strings.Contains(err.Error(), "no space left on device") {
		t.Fatalf("allocate with the state directory full: %v", err)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if _, err := h.n.Devices().Allocate(context.Background(), req); err != nil {
		t.Fatalf("allocate once there is space: %v", err)
	}
}
