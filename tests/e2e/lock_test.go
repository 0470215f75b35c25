package e2e

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wasmlet/wasmlet/host/api/adminpb"
)

// fileState is what a second host must not change about a file: which file
// it is, when it was last written, and what it holds.
type fileState struct {
	ino   uint64
	mtime time.Time
	data  []byte
}

func stateOf(t *testing.T, path string) fileState {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fileState{ino: fi.Sys().(*syscall.Stat_t).Ino, mtime: fi.ModTime()}
	if fi.Mode().IsRegular() {
		if st.data, err = os.ReadFile(path); err != nil {
			t.Fatal(err)
		}
	}
	return st
}

// TestSecondRunIsRefusedBeforeItTouchesAnything starts a second `wasmlet
// run` on the configuration of a running one: it exits 1 at once, saying
// that another wasmlet (by pid) holds the state directory, and the running
// one's checkpoint, kubelet.sock, API socket and the device plugin sockets
// beside kubelet.sock are exactly as they were. Once the first stops, the
// same configuration starts.
func TestSecondRunIsRefusedBeforeItTouchesAnything(t *testing.T) {
	h := newHost(t, map[string]string{"counter": "guests/counter"}, `
[modules.counter]
config = { resource = "example.com/counter", count = "4" }
`)
	h.start()
	c := h.client()
	h.eventually("4 healthy counters", func() bool {
		r, err := c.ListResources(context.Background(), &adminpb.ListResourcesRequest{Name: "example.com/counter"})
		return err == nil && len(r.Resources) == 1 && r.Resources[0].Healthy == 4
	})
	if out, code := h.cli("allocate", "--pod", "p", "--container", "c", "example.com/counter", "2"); code != 0 {
		t.Fatalf("allocate: exit %d: %s", code, out)
	}
	// A device plugin's socket beside kubelet.sock, as a plugin serving
	// the first host has.
	lis, err := net.Listen("unix", filepath.Join(h.dir, "dp", "plugin.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	watched := []string{
		filepath.Join(h.dir, "state", "checkpoint"),
		filepath.Join(h.dir, "dp", "kubelet.sock"),
		filepath.Join(h.dir, "dp", "plugin.sock"),
		h.socket,
	}
	before := map[string]fileState{}
	for _, p := range watched {
		before[p] = stateOf(t, p)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	second := exec.CommandContext(ctx, binary, "run", "--config", h.config)
	out, err := second.CombinedOutput()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 1 {
		t.Fatalf("second wasmlet run: %v, want exit 1\n%s", err, out)
	}
	want := "another wasmlet is running on this state directory: process " + strconv.Itoa(h.cmd.Process.Pid) + " holds the lock on " +
		filepath.Join(h.dir, "state", "wasmlet.lock") + "; not starting, and nothing was changed"
	if !strings.Contains(string(out), want) {
		t.Errorf("second wasmlet run says:\n%s\nwant it to say %q", out, want)
	}
	for _, p := range watched {
		after := stateOf(t, p)
		b := before[p]
		if after.ino != b.ino || !after.mtime.Equal(b.mtime) || !bytes.Equal(after.data, b.data) {
			t.Errorf("%s was changed by the refused wasmlet run", p)
		}
	}
	if out, code := h.cli("allocations"); code != 0 || !strings.Contains(out, "default/p/c") {
		t.Errorf("the first host after the refused run: allocations exit %d:\n%s", code, out)
	}

	if err := h.stop(); err != nil {
		t.Fatalf("first wasmlet: %v", err)
	}
	h.start() // the lock went with the first
	if out, code := h.cli("allocations"); code != 0 || !strings.Contains(out, "default/p/c") {
		t.Errorf("after a restart: allocations exit %d:\n%s", code, out)
	}
}
