package main

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"

	"github.com/wasmlet/wasmlet/guests/build"
	"github.com/wasmlet/wasmlet/host/config"
	"github.com/wasmlet/wasmlet/host/node"
	"github.com/wasmlet/wasmlet/internal/testkit"
)

func copyFile(t testing.TB, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	testkit.WriteFile(t, dst+".tmp", string(b))
	if err := os.Rename(dst+".tmp", dst); err != nil {
		t.Fatal(err)
	}
}

// testHost is a real host (package node: module registry, device sources,
// device manager with its checkpoint, plugin manager) with the host API
// served over it, in this process. The counter module offers four devices
// of example.com/counter on two NUMA nodes.
type testHost struct {
	dir, config, socket string
	n                   *node.Node
}

func startHost(t *testing.T) *testHost {
	t.Helper()
	return startHostWith(t, "", func(h *testHost) bool {
		if !h.n.Ready() {
			return false
		}
		for _, r := range h.n.Devices().Resources() {
			if r.Name == "example.com/counter" && r.Healthy == 4 {
				return true
			}
		}
		return false
	})
}

// startHostWith starts a testHost with extra appended to its plugins.toml
// (%[1]s in it is the host's directory), and waits until ready holds and the
// API socket is there.
func startHostWith(t *testing.T, extra string, ready func(*testHost) bool) *testHost {
	t.Helper()
	dir := testkit.ShortDir(t)
	h := &testHost{dir: dir, socket: filepath.Join(dir, "run", "api.sock")}
	modules := filepath.Join(dir, "modules")
	os.MkdirAll(modules, 0o755)
	copyFile(t, build.Go(t, "guests/counter"), filepath.Join(modules, "counter.wasm"))
	copyFile(t, build.Go(t, "guests/customhandler"), filepath.Join(modules, "customhandler.wasm"))
	build.SharedCompilationCache(t, filepath.Join(dir, "state"), "wazero-cli")
	h.config = testkit.WriteFile(t, filepath.Join(dir, "plugins.toml"), testkit.HostTOML+`grace_period = "1h"
backoff_initial = "1m"

[bridge]
cdi_dir = "cdi"

[modules.customhandler]
config = { type = "ExamplePlugin", versions = "v1" }

[handlers]
ExamplePlugin = "customhandler"
`+strings.ReplaceAll(extra, "%[1]s", dir))
	cfg, err := config.Load(h.config)
	if err != nil {
		t.Fatal(err)
	}
	log := testkit.Logger(t, hclog.Warn)
	n, err := node.New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	h.n = n
	// The node serves the host API on h.socket itself, as `wasmlet run` does.
	ctx, cancel := context.WithCancel(context.Background())
	nodeDone := make(chan error, 1)
	go func() { nodeDone <- n.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-nodeDone; err != nil {
			t.Errorf("node.Run: %v", err)
		}
	})
	testkit.Eventually(t, "the host to be ready", func() bool {
		_, err := os.Stat(h.socket)
		return err == nil && ready(h)
	})
	return h
}

// registrant is a plugin announcing itself in the plugin registry
// directory, with the kubelet's plugin registration API v1.
type registrant struct {
	registerapi.UnimplementedRegistrationServer
	info *registerapi.PluginInfo
}

func (r *registrant) GetInfo(context.Context, *registerapi.InfoRequest) (*registerapi.PluginInfo, error) {
	return r.info, nil
}

func (r *registrant) NotifyRegistrationStatus(context.Context, *registerapi.RegistrationStatus) (*registerapi.RegistrationStatusResponse, error) {
	return &registerapi.RegistrationStatusResponse{}, nil
}

func (h *testHost) plugin(t *testing.T, file, name, version string) string {
	t.Helper()
	path := filepath.Join(h.dir, "reg", file)
	lis, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	registerapi.RegisterRegistrationServer(srv, &registrant{info: &registerapi.PluginInfo{
		Type: "ExamplePlugin", Name: name, Endpoint: "/run/" + name + ".sock", SupportedVersions: []string{version}}})
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return path
}

func (h *testHost) pluginState(socket, state string) func() bool {
	return func() bool {
		for _, p := range h.n.Plugins().Plugins() {
			if p.SocketPath == socket && p.State == state {
				return true
			}
		}
		return false
	}
}

func TestClientCommands(t *testing.T) {
	h := startHost(t)
	s := []string{"--socket", h.socket}
	args := func(a ...string) []string { return append(append([]string{}, s...), a...) }

	expect(t, exitOK, args("status"), "CDI specs:", "example.com/counter", "Version:       dev", "Ready:         yes", "Config:        "+h.config, "  checkpoint      "+filepath.Join(h.dir, "state", "checkpoint"),
		"Modules:     2 running, 0 loading, 0 quarantined, 0 in conflict, 0 failing, 0 refused",
		"Plugins:     0 seen: 0 registered, 0 waiting for a handler, 0 failing",
		"Pod resources: "+filepath.Join(h.dir, "state", "pod-resources", "wasmlet.sock")+" (read-only",
		"Resources:   1, with 4 devices (4 healthy, 0 allocated)", "Allocations: 0", "CSI drivers: 0")
	// tests/k8s lists a real CSI driver.
	expect(t, exitOK, args("csi"), "stderr:No CSI drivers registered (wasmlet plugins lists the plugin sockets).")
	// --config finds the socket in the file.
	r := expect(t, exitOK, []string{"--config", h.config, "status", "-o", "json"})
	var st struct {
		Version string `json:"version"`
		Ready   bool   `json:"ready"`
		Counts  struct {
			Devices int `json:"devices"`
		} `json:"counts"`
	}
	decode(t, r, &st)
	if st.Version != "dev" || !st.Ready || st.Counts.Devices != 4 {
		t.Fatalf("status JSON %+v\n%v", st, r)
	}

	expect(t, exitOK, args("modules"), "row:NAME STATE KIND SERVES VERSION INSTANCES CALLS FAULTS SHA256 AGE",
		"row:counter running device-source example.com/counter 1.0.0 1/2",
		"row:customhandler running handler ExamplePlugin 1.0.0")
	expect(t, exitOK, args("modules", "-v"), "Operations: discover, allocate, preferred_allocation, prestart",
		"Limits:     memory 64 MiB, call timeout 2s")
	expect(t, exitOK, args("resources"), "row:RESOURCE PROVIDER STATUS CAPACITY HEALTHY ALLOCATED ALLOCATABLE",
		"row:example.com/counter module:counter connected 4 4 0 4")
	expect(t, exitOK, args("devices"), "row:RESOURCE DEVICE HEALTH NUMA ALLOCATED TO ATTRIBUTES",
		"row:example.com/counter dev-1 healthy 1 -")
	expect(t, exitNotFound, args("devices", "example.com/nope"), `stderr:wasmlet devices: no resource "example.com/nope" on this node (resources: example.com/counter)`)
	expect(t, exitOK, args("plugins"), "stderr:No plugin sockets")
	good := h.plugin(t, "good.sock", "example-good", "v1")
	bad := h.plugin(t, "bad.sock", "example-old", "v0")
	testkit.Eventually(t, "one plugin registered, one failing", func() bool {
		return h.pluginState(good, "registered")() && h.pluginState(bad, "failing")()
	})
	expect(t, exitOK, args("plugins"), "row:NAME TYPE STATE HANDLER ACTION RESOURCE AGE SOCKET",
		"row:example-good ExamplePlugin registered customhandler record -",
		"row:example-old ExamplePlugin failing - - -",
		bad+": failing after 1 failure, next retry in ",
		`ExamplePlugin plugin "example-old" offered versions v0; this node accepts v1`)

	r = expect(t, exitOK, args("allocate", "--namespace", "ml", "--pod", "train", "--container", "main", "example.com/counter", "2"),
		"Allocated 2 devices of example.com/counter to ml/train/main: dev-0, dev-1", "Container response:", "  env         COUNTER_WORKLOAD=ml/train/main", "  annotation  example.com/counter=dev-0,dev-1")
	r = expect(t, exitOK, args("allocate", "--pod", "web", "--container", "app", "--pod-uid", "u-1", "-o", "json", "example.com/counter", "1"))
	var alloc struct {
		Allocation struct {
			Workload  string   `json:"workload"`
			PodUID    string   `json:"pod_uid"`
			DeviceIDs []string `json:"device_ids"`
			Response  struct {
				Envs map[string]string `json:"envs"`
			} `json:"response"`
		} `json:"allocation"`
	}
	decode(t, r, &alloc)
	if a := alloc.Allocation; a.Workload != "default/web/app" || a.PodUID != "u-1" || len(a.DeviceIDs) != 1 {
		t.Fatalf("allocate JSON %+v", alloc)
	}
	expect(t, exitOK, args("allocations"), "row:WORKLOAD RESOURCE DEVICES POD UID AGE",
		"row:default/web/app example.com/counter dev-2 u-1", "row:ml/train/main example.com/counter dev-0,dev-1 -")
	expect(t, exitOK, args("allocations", "ml/train/main", "-v"), "ml/train/main  example.com/counter:", "  env ")
	expect(t, exitOK, args("devices"), "row:example.com/counter dev-0 healthy 0 ml/train/main")

	// Failures, with the exit code that says which.
	expect(t, exitNotFound, args("allocate", "--pod", "p", "--container", "c", "example.com/nope", "1"),
		`stderr:wasmlet allocate: unknown resource: no resource "example.com/nope" on this node`)
	expect(t, exitFailed, args("allocate", "--pod", "p", "--container", "c", "example.com/counter", "9"),
		"stderr:not enough devices: 9 device(s) of example.com/counter requested, 1 free")
	expect(t, exitFailed, args("allocate", "--pod", "train", "--namespace", "ml", "--container", "main", "example.com/counter", "1"),
		"stderr:release it first")
	expect(t, exitUsage, args("release", "ml/train"), `stderr:wasmlet release: workload "ml/train" is not of the form namespace/pod/container`,
		"stderr:Run 'wasmlet release --help' for usage.")
	expect(t, exitUsage, args("release", "nope"), `stderr:workload "nope" is not of the form namespace/pod/container`)
	// The host's own check of what it is sent is a usage error too.
	expect(t, exitUsage, args("allocate", "--pod", "a b", "--container", "c", "example.com/counter", "1"),
		`stderr:pod "a b" contains a space`)

	expect(t, exitOK, args("release", "ml/train/main"), "Released 2 devices of example.com/counter from ml/train/main: dev-0, dev-1")
	expect(t, exitNotFound, args("release", "ml/train/main"), "stderr:wasmlet release: workload ml/train/main holds no devices")
	expect(t, exitNotFound, args("allocations", "ml/train/main"), "stderr:no allocations match")
	r = expect(t, exitOK, args("release", "default/web/app", "example.com/counter", "-o", "json"))
	var rel struct {
		Released []struct {
			Workload string `json:"workload"`
		} `json:"released"`
	}
	decode(t, r, &rel)
	if len(rel.Released) != 1 || rel.Released[0].Workload != "default/web/app" {
		t.Fatalf("release JSON %+v", rel)
	}

	// Modules: reload, an unknown one, and a refused file.
	expect(t, exitOK, args("module", "reload", "counter"), "Reloaded module counter from ", "running, device-source serving example.com/counter")
	expect(t, exitNotFound, args("module", "reload", "nope"), `stderr:wasmlet module reload: no module "nope" (known: counter, customhandler)`)
	copyFile(t, build.Testdata(t, "guests/testmodules/wat/missing_exports.wasm"), filepath.Join(h.dir, "modules", "broken.wasm"))
	testkit.Eventually(t, "the broken module to be refused", func() bool {
		for _, m := range h.n.Modules().List() {
			if m.Name == "broken" && m.Err != nil {
				return true
			}
		}
		return false
	})
	expect(t, exitOK, args("modules"), "row:broken refused - - - - - - -", "broken: refused ", "  - missing required export wasmlet_alloc(i32) -> i32")
	r = expect(t, exitOK, args("modules", "-o", "json"))
	var ms struct {
		Modules []struct {
			Name            string   `json:"name"`
			State           string   `json:"state"`
			RefusedProblems []string `json:"refused_problems"`
			Calls           string   `json:"calls"`
		} `json:"modules"`
	}
	decode(t, r, &ms)
	if len(ms.Modules) != 3 || ms.Modules[0].State != "refused" || len(ms.Modules[0].RefusedProblems) != 2 || ms.Modules[1].State != "running" {
		t.Fatalf("modules JSON %+v", ms)
	}
	expect(t, exitFailed, args("module", "reload", "broken"), "stderr:missing required export")
}

func TestUnreachableHost(t *testing.T) {
	dir := testkit.ShortDir(t)
	missing := filepath.Join(dir, "missing.sock")
	expect(t, exitUnreachable, []string{"--socket", missing, "status"},
		"stderr:wasmlet status: cannot reach the wasmlet host at "+missing+": connect: no such file or directory (is `wasmlet run` running")

	// A socket left by a crashed host: nobody listens.
	stale := filepath.Join(dir, "stale.sock")
	testkit.StaleSocket(t, stale)
	expect(t, exitUnreachable, []string{"resources", "--socket", stale}, "stderr:cannot reach the wasmlet host at "+stale+": connect: connection refused")

	// The socket comes from --config, then from $WASMLET_SOCKET.
	cfg := testkit.WriteFile(t, filepath.Join(dir, "plugins.toml"), "[host]\nstate_dir = \"state\"\napi_socket = \"run/w.sock\"\n")
	expect(t, exitUnreachable, []string{"--config", cfg, "allocations"}, "stderr:cannot reach the wasmlet host at "+filepath.Join(dir, "run", "w.sock"))
	r := run(t, "status")
	if r.code != exitUnreachable || !strings.Contains(r.stderr, "/run/wasmlet/wasmlet.sock") {
		t.Fatalf("default socket: %v", r)
	}
	r = runWith(t, []string{socketEnv + "=" + stale}, "plugins")
	if r.code != exitUnreachable || !strings.Contains(r.stderr, stale) {
		t.Fatalf("$%s: %v", socketEnv, r)
	}
}

// TestStatusOfDRADrivers: a source served as a DRA driver to an API server
// that cannot be reached (nothing listens at the kubeconfig's address) is
// in `wasmlet status`: its driver, its slices unreachable and why, and the
// host not ready because of it, but running.
func TestStatusOfDRADrivers(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	dir := testkit.ShortDir(t)
	kubeconfig := testkit.WriteFile(t, filepath.Join(dir, "kubeconfig"), `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://`+addr+`", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`)
	h := startHostWith(t, `
[dra]
kubeconfig = "`+kubeconfig+`"
plugin_dir = "%[1]s/kubelet/plugins"
registry_dir = "%[1]s/kubelet/plugins_registry"

[sources.counter]
bridge = "dra"
`, func(h *testHost) bool {
		// Started (not "starting: loading modules"), and not ready for
		// the reason the status should give.
		st := h.n.DRA().Status()
		return len(st) == 1 && st[0].Devices == 4 && st[0].Slices == "api-server-unreachable" &&
			strings.HasPrefix(h.n.NotReady(), "dra driver counter.example.com")
	})
	expect(t, exitOK, []string{"--socket", h.socket, "status"},
		"Ready:         no: dra driver counter.example.com: the API server cannot be reached",
		"DRA drivers:", "row:DRIVER RESOURCE STATE SLICES DEVICES PREPARED POOL",
		"row:counter.example.com example.com/counter waiting-for-kubelet api-server-unreachable 4/4 healthy 0",
		"counter.example.com: ResourceSlices api-server-unreachable for ", addr)
}
