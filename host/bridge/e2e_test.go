package bridge_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/wasmlet/wasmlet/guests/build"
	"github.com/wasmlet/wasmlet/host/api"
	"github.com/wasmlet/wasmlet/host/api/adminpb"
	"github.com/wasmlet/wasmlet/host/bridge"
	"github.com/wasmlet/wasmlet/host/internal/testenv"
	"github.com/wasmlet/wasmlet/internal/testkit"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// wasmletBinary builds cmd/wasmlet once per test binary, into a temporary
// directory.
func wasmletBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		binPath, binErr = testkit.BuildWasmlet()
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// proc is one wasmlet process: `wasmlet run --config <dir>/plugins.toml`.
type proc struct {
	t      *testing.T
	name   string
	dir    string
	config string
	socket string // host API

	mu     sync.Mutex
	cmd    *exec.Cmd
	lines  []string // its log
	exited chan struct{}
}

// newProc writes a plugins.toml into dir: the [host] section keeping
// everything under dir, then extra.
func newProc(t *testing.T, name, dir, extra string) *proc {
	t.Helper()
	p := &proc{t: t, name: name, dir: dir, config: filepath.Join(dir, "plugins.toml"), socket: filepath.Join(dir, "run", "api.sock")}
	os.MkdirAll(filepath.Join(dir, "modules"), 0o755)
	build.SharedCompilationCache(t, filepath.Join(dir, "state"), "wazero-bridge-e2e")
	toml := testkit.HostTOML + `grace_period = "1m"
resync_period = "1h"
backoff_initial = "100ms"
log_level = "debug"
` + extra
	if err := os.WriteFile(p.config, []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.stop)
	return p
}

func (p *proc) install(name, guest string) {
	p.t.Helper()
	testkit.InstallGuest(p.t, filepath.Join(p.dir, "modules"), name, guest)
}

func (p *proc) start() {
	p.t.Helper()
	cmd := exec.Command(wasmletBinary(p.t), "run", "--config", p.config)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		p.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	exited := make(chan struct{})
	p.mu.Lock()
	p.cmd, p.exited = cmd, exited
	p.mu.Unlock()
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.mu.Lock()
			p.lines = append(p.lines, sc.Text())
			p.mu.Unlock()
		}
		cmd.Wait()
		close(exited)
	}()
}

// stop sends SIGTERM and waits for a clean exit (SIGKILL after 20 s).
func (p *proc) stop() {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.cmd = nil
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		<-exited
		p.t.Errorf("%s did not stop on SIGTERM", p.name)
	}
	if code := cmd.ProcessState.ExitCode(); code != 0 {
		p.t.Errorf("%s exited with %d", p.name, code)
	}
}

// log returns the process's log so far.
func (p *proc) log() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.lines)
}

func (p *proc) dumpLog() {
	for _, l := range p.log() {
		p.t.Logf("%s: %s", p.name, l)
	}
}

func (p *proc) client() *api.Client {
	p.t.Helper()
	return testkit.DialAPI(p.t, p.socket)
}

// cli runs a wasmlet client command against the process's host API.
func (p *proc) cli(args ...string) (string, error) {
	cmd := exec.Command(wasmletBinary(p.t), append([]string{"--socket", p.socket}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("wasmlet %s: %v: %s", strings.Join(args, " "), err, errb.String())
	}
	return out.String(), nil
}

func resourceOf(c *api.Client, name string) *adminpb.Resource {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	r, err := c.ListResources(ctx, &adminpb.ListResourcesRequest{Name: name})
	if err != nil || len(r.Resources) != 1 {
		return nil
	}
	return r.Resources[0]
}

// TestTwoProcesses runs two wasmlet processes: one bridging Wasm device
// sources (counter; devsource on /dev/null and /dev/zero) to an external
// kubelet, and one acting as that kubelet (its own device manager serves
// kubelet.sock in the directory the first names as kubelet_dir). The kubelet
// side sees the resources with the right capacity, allocates through them
// and gets the modules' answers, device nodes, environment and CDI names
// included; the CDI specs validate; and a restart of the kubelet side is
// followed by a new registration, on its event (neither process resyncs
// within the test).
//
// In plugin-registry mode the bridge registers through the kubelet side's
// plugin registry instead, where its DevicePlugin handler module approves it.
func TestTwoProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the wasmlet binary")
	}
	for _, mode := range []string{bridge.KubeletSocket, bridge.PluginRegistry} {
		t.Run(mode, func(t *testing.T) { twoProcesses(t, mode) })
	}
}

func twoProcesses(t *testing.T, mode string) {
	dir := testenv.ShortDir(t)
	kdir, bdir := filepath.Join(dir, "k"), filepath.Join(dir, "b")
	kubeletDir := filepath.Join(kdir, "dp")

	// The kubelet side: wasmlet's own device manager on kubelet.sock, and
	// its plugin registry with the DevicePlugin handler. No sources of its
	// own.
	kubelet := newProc(t, "kubelet-side", kdir, `
[handlers]
DevicePlugin = "devicepluginhandler"

[bridge]
kubelet_dir = "unused-kubelet"
cdi_dir = "cdi"
`)
	kubelet.install("devicepluginhandler", "guests/devicepluginhandler")
	kubelet.start()
	eventually(t, "kubelet.sock", func() bool { _, err := os.Stat(filepath.Join(kubeletDir, "kubelet.sock")); return err == nil })

	// The bridge side.
	bridgeSide := newProc(t, "bridge-side", bdir, fmt.Sprintf(`
[modules.counter]
config = { resource = "example.com/counter", count = "3" }
`+testkit.DevSourceTOML+`
[sources.counter]
bridge = true

[sources.devsource]
bridge = true

[bridge]
kubelet_dir = %q
registration = %q
plugin_registry_dir = %q
cdi_dir = "cdi"
`, kubeletDir, mode, filepath.Join(kdir, "reg")))
	bridgeSide.install("counter", "guests/counter")
	bridgeSide.install("devsource", "guests/devsource")
	bridgeSide.start()
	defer func() {
		if t.Failed() {
			kubelet.dumpLog()
			bridgeSide.dumpLog()
		}
	}()

	// The kubelet side sees both resources, from the bridge's sockets.
	kc := kubelet.client()
	want := map[string]int32{"example.com/counter": 3, "example.com/dev": 2}
	for name, n := range want {
		var r *adminpb.Resource
		eventually(t, name+" on the kubelet side", func() bool {
			r = resourceOf(kc, name)
			return r != nil && r.Connected && r.Capacity == n && r.Healthy == n
		})
		module := map[string]string{"example.com/counter": "counter", "example.com/dev": "devsource"}[name]
		sock := "plugin:" + filepath.Join(kubeletDir, "wasmlet-"+module+".sock")
		if r.Provider != sock || r.PreferredAllocation != (module == "counter") {
			t.Errorf("%s: provider %q (want %q), preferred allocation %v", name, r.Provider, sock, r.PreferredAllocation)
		}
	}
	// ...and the bridge side keeps them out of its own device manager.
	if r, err := bridgeSide.client().ListResources(context.Background(), &adminpb.ListResourcesRequest{}); err != nil || len(r.Resources) != 0 {
		t.Errorf("the bridge side's own device manager has %v (%v)", r, err)
	}

	// Allocate through the kubelet side's CLI: devsource answers with the
	// device nodes, its environment variable and the CDI names.
	out, err := kubelet.cli("allocate", "--pod", "p1", "--container", "c", "example.com/dev", "2", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var ar adminpb.AllocateResponse
	if err := protojson.Unmarshal([]byte(out), &ar); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	resp := ar.Allocation.Response
	var nodes []string
	for _, d := range resp.Devices {
		nodes = append(nodes, d.HostPath+"->"+d.ContainerPath)
	}
	sort.Strings(nodes)
	cdi := slices.Sorted(slices.Values(resp.CdiDevices))
	if !reflect.DeepEqual(nodes, []string{"/dev/null->/dev/null", "/dev/zero->/dev/zero"}) ||
		!strings.Contains(resp.Envs["DEVICES_EXAMPLE_COM_DEV"], "/dev/null") ||
		!reflect.DeepEqual(cdi, []string{"example.com/dev=null", "example.com/dev=zero"}) {
		t.Errorf("devsource allocation: %s", out)
	}
	// And through its API: the counter's own answer.
	a, err := kc.Allocate(context.Background(), &adminpb.AllocateRequest{Namespace: "ns", Pod: "p2", Container: "c",
		Resource: "example.com/counter", Count: 2})
	if err != nil {
		t.Fatal(err)
	}
	got := a.Allocation
	if len(got.DeviceIds) != 2 || got.Response.Envs["COUNTER_DEVICES"] != strings.Join(got.DeviceIds, ",") ||
		!reflect.DeepEqual(got.Response.CdiDevices, []string{"example.com/counter=" + got.DeviceIds[0], "example.com/counter=" + got.DeviceIds[1]}) {
		t.Errorf("counter allocation: %v", got)
	}

	// The CDI specs exist on the bridge side and validate.
	cache := testenv.CDISpecs(t, filepath.Join(bdir, "cdi"))
	devs := cache.ListDevices()
	wantDevs := []string{"example.com/counter=dev-0", "example.com/counter=dev-1", "example.com/counter=dev-2",
		"example.com/dev=null", "example.com/dev=zero"}
	if !reflect.DeepEqual(devs, wantDevs) {
		t.Errorf("CDI devices %v, want %v", devs, wantDevs)
	}
	if d := cache.GetDevice("example.com/dev=zero"); d == nil || len(d.ContainerEdits.DeviceNodes) != 1 || d.ContainerEdits.DeviceNodes[0].Path != "/dev/zero" {
		t.Errorf("CDI device example.com/dev=zero: %+v", d)
	}

	// Restart the kubelet side, and time the new registration: from the
	// moment its kubelet.sock exists to the moment it has both resources
	// connected again, as its API reports.
	w, err := fsnotify.NewWatcher()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.Add(kubeletDir); err != nil {
		t.Fatal(err)
	}
	// The bridge has its Register replies (a restart could otherwise take
	// one with it, and the bridge would rightly count that attempt failed).
	registeredBefore := map[string]int{}
	eventually(t, "the bridge side to have both registrations acknowledged", func() bool {
		st, err := bridgeSide.client().Status(context.Background(), &adminpb.StatusRequest{})
		if err != nil {
			return false
		}
		clear(registeredBefore)
		for _, b := range st.Bridged {
			if b.Registrations >= 1 {
				registeredBefore[b.Resource] = int(b.Registrations)
			}
		}
		return len(registeredBefore) == len(want)
	})
	kubelet.stop()
	kubelet.start()
	var created time.Time
	for created.IsZero() {
		select {
		case ev := <-w.Events:
			if ev.Name == filepath.Join(kubeletDir, "kubelet.sock") && ev.Has(fsnotify.Create) {
				created = time.Now()
			}
		case err := <-w.Errors:
			t.Fatal(err)
		case <-time.After(30 * time.Second):
			t.Fatal("the kubelet side did not create kubelet.sock again")
		}
	}
	// Wait until both bridged resources are connected and healthy on the
	// kubelet side again, as its API reports: a new connection each time
	// (a client whose first dial failed, the API socket not there yet,
	// waits a second before the next). Neither side resyncs within the
	// test, so this is the bridge reacting to kubelet.sock's event; how
	// fast is BenchmarkKubeletRestart's to measure, and is logged here.
	eventually(t, "the bridge's sources to come back on the kubelet side", func() bool {
		c, err := api.Dial(kubelet.socket)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		for name, n := range want {
			if r := resourceOf(c, name); r == nil || !r.Connected || r.Healthy != n {
				return false
			}
		}
		return true
	})
	t.Logf("kubelet side restarted: both bridged resources connected again %v after kubelet.sock was created",
		time.Since(created).Round(time.Microsecond))
	// And the bridge side counts one more registration of each source, in
	// either mode (through the plugin registry, once the kubelet side's
	// plugin watcher has told it the verdict).
	eventually(t, "the bridge side to count both re-registrations", func() bool {
		st, err := bridgeSide.client().Status(context.Background(), &adminpb.StatusRequest{})
		if err != nil {
			return false
		}
		again := 0
		for _, b := range st.Bridged {
			if int(b.Registrations) > registeredBefore[b.Resource] {
				again++
			}
		}
		return again == len(want)
	})
	// The allocations made before the restart are still there.
	if r := resourceOf(kubelet.client(), "example.com/dev"); r == nil || r.Allocated != 2 {
		t.Errorf("after the restart: %v", r)
	}
}
