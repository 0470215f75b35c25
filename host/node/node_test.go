package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/wasmlet/wasmlet/guests/build"
	"github.com/wasmlet/wasmlet/host/claim"
	"github.com/wasmlet/wasmlet/host/config"
	"github.com/wasmlet/wasmlet/host/device"
	"github.com/wasmlet/wasmlet/host/devicemanager"
	"github.com/wasmlet/wasmlet/host/internal/testenv"
	"github.com/wasmlet/wasmlet/host/internal/testplugin"
	"github.com/wasmlet/wasmlet/internal/testkit"
)

type harness struct {
	t       *testing.T
	dir     string
	cfg     *config.Config
	log     hclog.Logger
	n       *Node
	metrics string
	cancel  context.CancelFunc
	done    chan error
}

// copyModule copies a guest into place: a Go guest's directory, a C
// guest's file, or a committed .wasm file.
func copyModule(t *testing.T, guest, dst string) {
	t.Helper()
	src := ""
	switch {
	case strings.HasSuffix(guest, ".wasm"):
		src = build.Testdata(t, guest)
	case strings.HasSuffix(guest, ".c"):
		src = build.C(t, guest)
	default:
		src = build.Go(t, guest)
	}
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	testenv.WriteFile(t, dst, b)
}

// nodeTOML is the plugins.toml of a test node: every directory and socket
// inside the test's directory, metrics on metricsAddr, then extra.
func nodeTOML(metricsAddr, extra string) string {
	return fmt.Sprintf(`
[host]
state_dir = "state"
registry_dir = "reg"
device_plugin_dir = "dp"
module_dir = "modules"
api_socket = "api.sock"
metrics_address = %q
grace_period = "200ms"
backoff_initial = "50ms"

# The kubelet's directory and the CDI specs too stay in the test's directory.
[bridge]
kubelet_dir = "kubelet"
cdi_dir = "cdi"

[sandbox]
memory = "64MiB"
%s
`, metricsAddr, extra)
}

// startOption adds to what start sets up.
type startOption func(*startOptions)

type startOptions struct {
	log io.Writer // also gets the node's log, at debug level
}

// withLog copies the node's log, at debug level, to w.
func withLog(w io.Writer) startOption { return func(o *startOptions) { o.log = w } }

// start runs a node on a plugins.toml written into a fresh directory, with
// the given modules (name → guest directory, or .wasm file) in its module
// directory.
func start(t *testing.T, modules map[string]string, extra string, options ...startOption) *harness {
	t.Helper()
	return startTOML(t, modules, nodeTOML("127.0.0.1:0", extra), options...) // port 0: the node picks one
}

// startTOML is start on the given plugins.toml.
func startTOML(t *testing.T, modules map[string]string, toml string, options ...startOption) *harness {
	t.Helper()
	var o startOptions
	for _, opt := range options {
		opt(&o)
	}
	dir := testenv.ShortDir(t)
	h := &harness{t: t, dir: dir, done: make(chan error, 1)}
	os.MkdirAll(filepath.Join(dir, "modules"), 0o755)
	build.SharedCompilationCache(t, filepath.Join(dir, "state"), "wazero-node")
	for name, guest := range modules {
		copyModule(t, guest, filepath.Join(dir, "modules", name+".wasm"))
	}
	path := filepath.Join(dir, "plugins.toml")
	os.WriteFile(path, []byte(toml), 0o644)
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	h.cfg = cfg
	h.log = hclog.New(&hclog.LoggerOptions{Level: hclog.Info, Output: testenv.Writer{T: t}})
	if o.log != nil {
		h.log = hclog.New(&hclog.LoggerOptions{Level: hclog.Debug, Output: io.MultiWriter(testenv.Writer{T: t}, o.log)})
	}
	t.Cleanup(func() { h.stop() })
	h.run()
	return h
}

// run starts a node on h's configuration and waits until it is ready.
func (h *harness) run() {
	h.t.Helper()
	h.runNoWait()
	h.eventually("ready", func() bool { return h.n.Ready() })
}

// runNoWait starts a node on h's configuration and waits until it serves
// its metrics, not until it is ready.
func (h *harness) runNoWait() {
	h.t.Helper()
	n, err := New(h.cfg, h.log)
	if err != nil {
		h.t.Fatal(err)
	}
	h.n = n
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.done <- n.Run(ctx) }()
	if h.cfg.Host.MetricsAddress != "" {
		h.eventually("metrics", func() bool { return n.MetricsAddress() != "" })
	}
	h.metrics = n.MetricsAddress() // port 0: the node picked one
}

// restart stops the node and starts another on the same configuration,
// directories and state, as a restarted wasmlet.
func (h *harness) restart() {
	h.t.Helper()
	if err := h.stop(); err != nil {
		h.t.Fatalf("stop before the restart: %v", err)
	}
	h.run()
}

func (h *harness) stop() error {
	if h.cancel == nil {
		return nil
	}
	h.cancel()
	h.cancel = nil
	select {
	case err := <-h.done:
		return err
	case <-time.After(20 * time.Second):
		h.t.Fatal("node did not stop")
		return nil
	}
}

// get fetches path from the node's metrics listener: its status code and
// body.
func (h *harness) get(path string) (int, string) {
	h.t.Helper()
	resp, err := http.Get("http://" + h.metrics + path)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (h *harness) eventually(what string, cond func() bool) {
	h.t.Helper()
	testenv.Eventually(h.t, what, cond)
}

// metricsHave scrapes /metrics until it contains every one of want (a
// counter moves a moment after the state a test waits for), and fails the
// test naming the missing series if that takes more than 30 seconds.
func (h *harness) metricsHave(want ...string) {
	h.t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		resp, err := http.Get("http://" + h.metrics + "/metrics")
		if err != nil {
			h.t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			h.t.Fatal(err)
		}
		var missing []string
		for _, name := range want {
			if !strings.Contains(string(body), name) {
				missing = append(missing, name)
			}
		}
		if len(missing) == 0 {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("/metrics lacks %s", strings.Join(missing, ", "))
		}
	}
}

func (h *harness) resource(name string) (devicemanager.ResourceStatus, bool) {
	for _, r := range h.n.Devices().Resources() {
		if r.Name == name {
			return r, true
		}
	}
	return devicemanager.ResourceStatus{}, false
}

// TestPluginThroughHandlerToDeviceManager follows a device plugin that
// registers through the plugin registry: the DevicePlugin handler module
// approves it, the device manager connects to it, its devices can be
// allocated, and its removal is noticed.
func TestPluginThroughHandlerToDeviceManager(t *testing.T) {
	h := start(t, map[string]string{"devicepluginhandler": "guests/devicepluginhandler"}, `
[handlers]
DevicePlugin = "devicepluginhandler"
`)
	dpSock := filepath.Join(h.dir, "dp", "gpu.sock")
	dp := testplugin.StartDevicePlugin(t, dpSock, "example.com/gpu", testplugin.Devices("gpu", 4))
	reg := testplugin.StartRegistrant(t, filepath.Join(h.dir, "reg", "gpu-reg.sock"), testplugin.Info{
		Type: "DevicePlugin", Name: "example.com/gpu", Endpoint: dpSock, Versions: []string{"v1beta1"}})
	if s := reg.Expect(t, 10*time.Second); !s.Registered {
		t.Fatalf("%+v", s)
	}
	h.eventually("4 healthy gpus", func() bool { r, ok := h.resource("example.com/gpu"); return ok && r.Healthy == 4 })
	a, err := h.n.Devices().Allocate(context.Background(), devicemanager.AllocateRequest{
		Namespace: "ns", Pod: "p", Container: "c", Resource: "example.com/gpu", Count: 2})
	if err != nil || len(a.DeviceIDs) != 2 {
		t.Fatalf("%v %v", a, err)
	}
	// The registration socket goes: the plugin is deregistered, the devices
	// go unhealthy, then away (grace 200ms) — the allocation stays.
	reg.Stop()
	dp.Stop()
	h.eventually("resource unhealthy", func() bool { r, ok := h.resource("example.com/gpu"); return !ok || r.Healthy == 0 })
	if len(h.n.Devices().Allocations()) != 1 {
		t.Fatal("the allocation was lost with the plugin")
	}
}

func TestKubeletSocketAndModuleDropIn(t *testing.T) {
	h := start(t, nil, "")
	// kubelet.sock is served in the device plugin directory.
	dp := testplugin.StartDevicePlugin(t, filepath.Join(h.dir, "dp", "nic.sock"), "example.com/nic", testplugin.Devices("nic", 2))
	if err := dp.Register(context.Background(), filepath.Join(h.dir, "dp", "kubelet.sock")); err != nil {
		t.Fatal(err)
	}
	h.eventually("2 nics", func() bool { r, ok := h.resource("example.com/nic"); return ok && r.Healthy == 2 })

	// A module dropped into the module directory loads; removed, unloads.
	copyModule(t, "guests/customhandler", filepath.Join(h.dir, "modules", "customhandler.wasm"))
	h.eventually("customhandler loaded", func() bool { return h.n.Modules().Get("customhandler") != nil })
	os.Remove(filepath.Join(h.dir, "modules", "customhandler.wasm"))
	h.eventually("customhandler unloaded", func() bool { return h.n.Modules().Get("customhandler") == nil })
}

func TestMetricsHealthAndCleanShutdown(t *testing.T) {
	h := start(t, map[string]string{"customhandler": "guests/customhandler"}, `
[modules.customhandler]
config = { type = "ExamplePlugin", versions = "v1" }
`)
	reg := testplugin.StartRegistrant(t, filepath.Join(h.dir, "reg", "ex.sock"), testplugin.Info{
		Type: "ExamplePlugin", Name: "ex", Versions: []string{"v1"}})
	reg.Expect(t, 10*time.Second)
	get := h.get
	if code, _ := get("/healthz"); code != 200 {
		t.Fatalf("/healthz %d", code)
	}
	if code, _ := get("/readyz"); code != 200 {
		t.Fatalf("/readyz %d", code)
	}
	// The plugin hears "registered" a moment before the counter moves, so
	// scrape until every series is there.
	h.metricsHave(
		`wasmlet_plugin_registrations_total{outcome="ok",type="ExamplePlugin"} 1`,
		"wasmlet_plugin_registration_latency_seconds_bucket",
		"wasmlet_reconcile_duration_seconds_count",
		`wasmlet_module_calls_total{module="customhandler",op="register",result="ok"} 1`,
		"wasmlet_module_call_duration_seconds_bucket",
		`wasmlet_module_instances{module="customhandler"}`,
		`wasmlet_module_loads_total{event="loaded"} 1`,
	)
	if err := h.stop(); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	for _, sock := range []string{filepath.Join(h.dir, "dp", "kubelet.sock")} {
		if _, err := os.Stat(sock); err == nil {
			t.Errorf("%s left behind", sock)
		}
	}
	if fi, err := os.Stat(filepath.Join(h.dir, "state")); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("state directory mode %v (%v), want 0700", fi.Mode().Perm(), err)
	}
}

// TestDeviceSourceModule runs the /dev device source: its devices become a
// resource like any plugin's, and allocating them returns the module's
// device nodes.
func TestDeviceSourceModule(t *testing.T) {
	h := start(t, map[string]string{"devsource": "guests/devsource"}, testkit.DevSourceTOML)
	h.eventually("2 /dev devices", func() bool { r, ok := h.resource("example.com/dev"); return ok && r.Healthy == 2 })
	a, err := h.n.Devices().Allocate(context.Background(), devicemanager.AllocateRequest{
		Namespace: "ns", Pod: "p", Container: "c", Resource: "example.com/dev", Count: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Edits.DeviceNodes) != 1 || !strings.HasPrefix(a.Edits.DeviceNodes[0].HostPath, "/dev/") {
		t.Fatalf("allocation %+v", a.Edits)
	}
	// Removing the module takes the resource's provider away.
	os.Remove(filepath.Join(h.dir, "modules", "devsource.wasm"))
	h.eventually("devices unhealthy", func() bool { r, ok := h.resource("example.com/dev"); return !ok || r.Healthy == 0 })
}

// TestSourceRoutes: a device source with bridge = true is served to the
// external kubelet and not to wasmlet's own device manager; one without is
// served by the device manager, not the bridge, and its allocations name
// its CDI devices.
func TestSourceRoutes(t *testing.T) {
	h := start(t, map[string]string{"local": "guests/counter", "bridged": "guests/counter"}, `
[modules.local]
config = { resource = "example.com/local", count = "2" }
[modules.bridged]
config = { resource = "example.com/bridged", count = "2" }
[sources.bridged]
bridge = true
`)
	h.eventually("local resource", func() bool { r, ok := h.resource("example.com/local"); return ok && r.Healthy == 2 })
	h.eventually("bridged source", func() bool {
		st := h.n.Bridge().Status()
		return len(st) == 1 && st[0].Resource == "example.com/bridged" && st[0].Devices == 2
	})
	if r, ok := h.resource("example.com/bridged"); ok {
		t.Fatalf("a bridged source is also in the local device manager: %+v", r)
	}
	a, err := h.n.Devices().Allocate(context.Background(), devicemanager.AllocateRequest{
		Namespace: "ns", Pod: "p", Container: "c", Resource: "example.com/local", Count: 1})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"example.com/local=" + a.DeviceIDs[0]}; !slices.Equal(a.Edits.CDIDevices, want) {
		t.Fatalf("CDI names %v, want %v", a.Edits.CDIDevices, want)
	}
	for _, st := range h.n.Bridge().Status() {
		if st.Resource == "example.com/local" {
			t.Fatal("a local source was bridged too")
		}
	}
}

// TestMetricsAddressInUse: a node whose metrics address is taken stops at
// once, saying which setting to change, and leaves nothing behind.
func TestMetricsAddressInUse(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	dir := testenv.ShortDir(t)
	path := filepath.Join(dir, "plugins.toml")
	os.WriteFile(path, []byte(nodeTOML(taken.Addr().String(), "")), 0o644)
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	n, err := New(cfg, hclog.New(&hclog.LoggerOptions{Level: hclog.Warn, Output: testenv.Writer{T: t}}))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = n.Run(ctx)
	if err == nil || ctx.Err() != nil {
		t.Fatalf("Run: %v (context: %v), want a prompt error", err, ctx.Err())
	}
	for _, want := range []string{taken.Addr().String(), "host.metrics_address in " + path, "address already in use"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "api.sock")); err == nil {
		t.Error("the API socket was left behind")
	}
}

// TestShutdownWhileModulesQueue: a node stopped while more module files
// wait to be loaded than its queue holds still stops (the module watcher
// used to block for ever on the full queue, and Run with it).
func TestShutdownWhileModulesQueue(t *testing.T) {
	dir := testenv.ShortDir(t)
	os.MkdirAll(filepath.Join(dir, "modules"), 0o755)
	for i := range 200 { // refused at once, but each is queued and looked at
		os.WriteFile(filepath.Join(dir, "modules", fmt.Sprintf("m%03d.wasm", i)), []byte("not wasm"), 0o644)
	}
	path := filepath.Join(dir, "plugins.toml")
	os.WriteFile(path, []byte(nodeTOML("", "")), 0o644)
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	n, err := New(cfg, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	time.Sleep(20 * time.Millisecond) // the initial scan is under way
	cancel()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the node did not stop")
	}
}

// TestShutdownStopsHostileGuests: a node stops within 10 seconds while its
// modules' guests sleep in a discover, loop in a discover, sleep in an
// allocation made for a caller that does not give up, and sleep in a
// plugin's registration (which runs under operation_timeout, not under the
// node's context) — with call and operation timeouts of five minutes.
func TestShutdownStopsHostileGuests(t *testing.T) {
	toml := nodeTOML("127.0.0.1:0", testkit.SleepersTOML)
	toml = strings.Replace(toml, "[host]\n", "[host]\noperation_timeout = \"5m\"\n", 1)
	h := startTOML(t, map[string]string{"dozer": "guests/testmodules/wat/sleep_register.wasm",
		"sleeper": "guests/testmodules/faulty", "looper": "guests/testmodules/faulty", "napper": "guests/testmodules/faulty"}, toml)
	h.eventually("napper's devices", func() bool { r, ok := h.resource("example.com/napper"); return ok && r.Healthy == 2 })
	allocated := make(chan error, 1)
	go func() {
		_, err := h.n.Devices().Allocate(context.Background(), devicemanager.AllocateRequest{
			Namespace: "ns", Pod: "p", Container: "c", Resource: "example.com/napper", Count: 1})
		allocated <- err
	}()
	testplugin.StartRegistrant(t, filepath.Join(h.dir, "reg", "dozy.sock"),
		testplugin.Info{Type: "ExamplePlugin", Name: "dozy", Versions: []string{"v1"}})
	for name, calls := range map[string]uint64{"sleeper": 1, "looper": 1, "napper": 2, "dozer": 1} {
		h.eventually(name+" to be called", func() bool {
			m := h.n.Modules().Get(name)
			return m != nil && m.Status().Calls >= calls
		})
	}
	start := time.Now()
	if err := h.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if el := time.Since(start); el > 10*time.Second {
		t.Fatalf("the node took %v to stop", el)
	} else {
		t.Logf("stopped in %v", el.Round(time.Millisecond))
	}
	select {
	case err := <-allocated:
		if err == nil {
			t.Fatal("an allocation from a guest asleep until shutdown succeeded")
		}
	case <-time.After(time.Second):
		t.Fatal("the allocation in flight did not end with the node")
	}
}

// TestHostileRequestPolicy: a device source whose device has a request
// policy Kubernetes would refuse — a step of 0, which the upstream
// allocator divides by — has that device left out with the reason, and a
// claim asking for its capacity is refused as unsatisfiable; the node goes
// on allocating the source's other device.
func TestHostileRequestPolicy(t *testing.T) {
	h := start(t, map[string]string{"badsource": "guests/testmodules/badsource"}, "\n[modules.badsource]\nconfig = { bad = \"step\" }\n")
	h.eventually("bad-1 alone", func() bool {
		r, ok := h.resource("example.com/bad")
		return ok && r.Capacity == 1 && r.Devices[0].ID == "bad-1"
	})
	if why := h.n.Sources().Source("badsource").Status().Refused["bad-0"]; why != `capacity "memory": request policy: step 0 is not positive` {
		t.Fatalf("bad-0 refused for %q", why)
	}
	rc, err := claim.Decode([]byte(`{"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim", "metadata": {"name": "memory"},
		"spec": {"devices": {"requests": [{"name": "m", "exactly": {"deviceClassName": "bad.example.com", "capacity": {"requests": {"memory": "4Gi"}}}}]}}}`))
	if err != nil {
		t.Fatal(err)
	}
	_, err = h.n.claims.Apply(context.Background(), rc, claim.Workload{})
	if !errors.Is(err, claim.ErrUnsatisfiable) || !strings.Contains(err.Error(), "1 short of the capacity asked for (memory 4Gi)") {
		t.Fatalf("apply: %v, want it unsatisfiable for want of capacity", err)
	}
	if _, err := h.n.Devices().Allocate(context.Background(), devicemanager.AllocateRequest{
		Namespace: "ns", Pod: "p", Container: "c", Resource: "example.com/bad", Count: 1}); err != nil {
		t.Fatal(err)
	}
}

// TestModuleEditsArePoliced: a device source that asks for the host's /,
// the docker socket, /dev/sda and /dev/mem read-write and LD_PRELOAD, with
// nothing granted, has the device that needs them left out (with the
// reason), out of the CDI spec too, and its allocations refused; each
// refused edit is counted. The same module, granted those edits, has them.
func TestModuleEditsArePoliced(t *testing.T) {
	const module = `
[modules.greedy]
config = { discover = "hostile", allocate = "hostile" }
`
	hostileParts := []string{"/dev/mem", "/dev/sda", "docker.sock", "LD_PRELOAD", "/host"}
	t.Run("refused", func(t *testing.T) {
		h := start(t, map[string]string{"greedy": "guests/testmodules/greedy"}, module)
		h.eventually("the plain device alone", func() bool {
			r, ok := h.resource("example.com/greedy")
			return ok && r.Capacity == 1 && r.Devices[0].ID == "plain-0"
		})
		st := h.n.Sources().Source("greedy").Status()
		if why := st.Refused["greedy-0"]; !strings.Contains(why, "device node /dev/mem (host /dev/mem, permissions \"rwm\")") ||
			!strings.Contains(why, "environment variable LD_PRELOAD") {
			t.Fatalf("greedy-0 refused for %q", why)
		}
		spec, err := os.ReadFile(filepath.Join(h.dir, "cdi", "wasmlet-example.com_greedy.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		for _, part := range append(hostileParts, "greedy-0") {
			if strings.Contains(string(spec), part) {
				t.Errorf("the CDI spec holds %q:\n%s", part, spec)
			}
		}
		_, err = h.n.Devices().Allocate(context.Background(), devicemanager.AllocateRequest{
			Namespace: "ns", Pod: "p", Container: "c", Resource: "example.com/greedy", Count: 1})
		var refused *device.Refused
		if !errors.As(err, &refused) || len(refused.Edits) != 5 || !strings.Contains(err.Error(), `module "greedy": allocate`) {
			t.Fatalf("allocation: %v, want the 5 edits refused", err)
		}
		if a := h.n.Devices().Allocations(); len(a) != 0 {
			t.Fatalf("allocations %+v", a)
		}
		// Discovery refused 2 mounts, 2 device nodes and 1 variable, and so
		// did the allocation.
		h.metricsHave(`wasmlet_module_edits_refused_total{kind="device_node",module="greedy"} 4`,
			`wasmlet_module_edits_refused_total{kind="mount",module="greedy"} 4`,
			`wasmlet_module_edits_refused_total{kind="env",module="greedy"} 2`)
	})
	t.Run("prepare", func(t *testing.T) {
		// A claim of the module's devices: its prepare answers the hostile
		// edits, which are refused as an allocation's are; the claim is not
		// applied, its devices are free again, no CDI spec of it is left.
		h := start(t, map[string]string{"greedy": "guests/testmodules/greedy"}, "\n[modules.greedy]\nconfig = { prepare = \"hostile\" }\n")
		h.eventually("both devices", func() bool { r, ok := h.resource("example.com/greedy"); return ok && r.Healthy == 2 })
		rc, err := claim.Decode([]byte(`{"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim", "metadata": {"name": "greedy"},
			"spec": {"devices": {"requests": [{"name": "all", "exactly": {"deviceClassName": "greedy.example.com", "allocationMode": "All"}}]}}}`))
		if err != nil {
			t.Fatal(err)
		}
		_, err = h.n.claims.Apply(context.Background(), rc, claim.Workload{})
		var refused *device.Refused
		if !errors.Is(err, claim.ErrPrepare) || !errors.As(err, &refused) || len(refused.Edits) != 5 ||
			!strings.Contains(err.Error(), `module "greedy": prepare: device "plain-0": container edits outside the module's grant`) {
			t.Fatalf("apply: %v, want the 5 edits refused", err)
		}
		if got := h.n.claims.List(); len(got) != 0 {
			t.Errorf("claims %v", got)
		}
		if ids := h.n.alloc.Available(context.Background(), "greedy.example.com"); len(ids) != 2 {
			t.Errorf("devices free after the refusal: %v", ids)
		}
		if specs, _ := filepath.Glob(filepath.Join(h.dir, "cdi", "wasmlet-claim-*")); len(specs) != 0 {
			t.Errorf("CDI specs of the refused claim: %v", specs)
		}
		h.metricsHave(`wasmlet_module_edits_refused_total{kind="device_node",module="greedy"} 2`,
			`wasmlet_module_edits_refused_total{kind="mount",module="greedy"} 2`,
			`wasmlet_module_edits_refused_total{kind="env",module="greedy"} 1`,
			`wasmlet_claims_applied_total{outcome="error"} 1`)
	})
	t.Run("granted", func(t *testing.T) {
		h := start(t, map[string]string{"greedy": "guests/testmodules/greedy"}, module+`
[modules.greedy.edits]
device_nodes = ["/dev/sda", "/dev/mem"]
host_paths = ["/"]
writable = ["/"]
env = ["LD_PRELOAD"]
`)
		h.eventually("both devices", func() bool { r, ok := h.resource("example.com/greedy"); return ok && r.Healthy == 2 })
		spec, err := os.ReadFile(filepath.Join(h.dir, "cdi", "wasmlet-example.com_greedy.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		for _, part := range hostileParts {
			if !strings.Contains(string(spec), part) {
				t.Errorf("the CDI spec lacks %q:\n%s", part, spec)
			}
		}
		a, err := h.n.Devices().Allocate(context.Background(), devicemanager.AllocateRequest{
			Namespace: "ns", Pod: "p", Container: "c", Resource: "example.com/greedy", Count: 1})
		if err != nil {
			t.Fatal(err)
		}
		if a.Edits.Env["LD_PRELOAD"] == "" || len(a.Edits.Mounts) != 2 || len(a.Edits.DeviceNodes) != 2 {
			t.Fatalf("edits %+v", a.Edits)
		}
		if st := h.n.Sources().Source("greedy").Status(); len(st.Refused) != 0 {
			t.Fatalf("refused %v", st.Refused)
		}
	})
}
