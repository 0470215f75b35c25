// Package e2e runs the wasmlet binary as a user does: built with go build,
// configured with a plugins.toml, driven through its API socket and CLI,
// stopped with signals.
package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wasmlet/wasmlet/guests/build"
	"github.com/wasmlet/wasmlet/host/api"
	"github.com/wasmlet/wasmlet/host/api/adminpb"
	"github.com/wasmlet/wasmlet/internal/testkit"
)

var binary string // the wasmlet binary, built once for the package

func TestMain(m *testing.M) { testkit.MainWithWasmlet(m, &binary) }

// host is one wasmlet installation: a directory with a plugins.toml, its
// modules and its state, and the process running it, if any.
type host struct {
	t      *testing.T
	dir    string
	config string
	socket string
	cmd    *exec.Cmd
	log    *os.File
	exited chan error
}

// newHost writes a plugins.toml with the given extra sections into a fresh
// short directory and copies the given modules (name → guest directory)
// into its module directory.
func newHost(t *testing.T, modules map[string]string, extra string) *host {
	t.Helper()
	dir, err := os.MkdirTemp("", "wl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	h := &host{t: t, dir: dir, config: filepath.Join(dir, "plugins.toml"), socket: filepath.Join(dir, "api", "api.sock")}
	os.MkdirAll(filepath.Join(dir, "modules"), 0o755)
	build.SharedCompilationCache(t, filepath.Join(dir, "state"), "wazero-e2e")
	for name, guest := range modules {
		h.install(name, guest)
	}
	toml := fmt.Sprintf(`
[host]
state_dir = "state"
registry_dir = "reg"
device_plugin_dir = "dp"
module_dir = "modules"
api_socket = "api/api.sock"
metrics_address = ""
log_level = "debug"
grace_period = "1h"

[bridge]
cdi_dir = "cdi"
%s
`, extra)
	if err := os.WriteFile(h.config, []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}
	return h
}

// install copies a built guest into the module directory, atomically.
func (h *host) install(name, guest string) {
	h.t.Helper()
	testkit.InstallGuest(h.t, filepath.Join(h.dir, "modules"), name, guest)
}

// start runs `wasmlet run` and waits until its API says it is ready.
func (h *host) start() {
	h.t.Helper()
	log, err := os.OpenFile(filepath.Join(h.dir, "wasmlet.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		h.t.Fatal(err)
	}
	h.log = log
	h.cmd = exec.Command(binary, "run", "--config", h.config)
	h.cmd.Stdout, h.cmd.Stderr = log, log
	if err := h.cmd.Start(); err != nil {
		h.t.Fatal(err)
	}
	h.exited = make(chan error, 1)
	go func(cmd *exec.Cmd, ch chan error) { ch <- cmd.Wait() }(h.cmd, h.exited)
	h.t.Cleanup(func() { h.kill() })
	h.eventually("wasmlet to be ready", func() bool {
		select {
		case err := <-h.exited:
			h.exited <- err
			h.t.Fatalf("wasmlet exited while starting: %v\n%s", err, h.logs())
		default:
		}
		c, err := api.Dial(h.socket)
		if err != nil {
			return false
		}
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		st, err := c.Status(ctx, &adminpb.StatusRequest{})
		return err == nil && st.Ready
	})
}

// kill sends SIGKILL and waits for the process to be gone.
func (h *host) kill() {
	if h.cmd == nil || h.cmd.Process == nil {
		return
	}
	h.cmd.Process.Signal(syscall.SIGKILL)
	<-h.exited
	h.exited <- nil
	h.log.Close()
	h.cmd = nil
}

// stop sends SIGTERM and returns how the process ended.
func (h *host) stop() error {
	h.t.Helper()
	h.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-h.exited:
		h.exited <- err
		h.log.Close()
		h.cmd = nil
		return err
	case <-time.After(30 * time.Second):
		h.t.Fatalf("wasmlet did not stop within 30s of SIGTERM\n%s", h.logs())
		return nil
	}
}

func (h *host) logs() string {
	b, _ := os.ReadFile(filepath.Join(h.dir, "wasmlet.log"))
	lines := strings.Split(string(b), "\n")
	if len(lines) > 60 {
		lines = lines[len(lines)-60:]
	}
	return strings.Join(lines, "\n")
}

func (h *host) client() *api.Client {
	h.t.Helper()
	return testkit.DialAPI(h.t, h.socket)
}

// cli runs a wasmlet client command against this host and returns its
// output and exit code.
func (h *host) cli(args ...string) (string, int) {
	h.t.Helper()
	cmd := exec.Command(binary, append([]string{"--config", h.config}, args...)...)
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		h.t.Fatal(err)
	}
	return string(out), code
}

// eventually polls cond until it holds, and fails the test with the host's
// log if that takes more than two minutes: the bound only matters when
// something is broken, so it leaves a loaded machine under -race room.
func (h *host) eventually(what string, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out waiting for %s\n%s", what, h.logs())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
