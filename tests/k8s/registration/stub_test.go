package registration

import (
	"bufio"
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wasmlet/wasmlet/host/api"
	"github.com/wasmlet/wasmlet/host/api/adminpb"
	"github.com/wasmlet/wasmlet/host/devicemanager"
	"github.com/wasmlet/wasmlet/internal/testkit"
)

// The device plugin in these tests is the kubelet's own device plugin Stub
// (k8s.io/kubernetes/pkg/kubelet/cm/devicemanager/plugin/v1beta1), run as a
// process of its own by stubplugin: it registers on kubelet.sock, and with
// the Stub's Watch registers again whenever kubelet.sock is created.

// startStub runs stubplugin serving resource on socket, and returns what it
// printed once its registration was answered: "registered" or the error.
func startStub(tb testing.TB, socket, resource string, watch bool) (registered bool, refusal string) {
	tb.Helper()
	cmd := exec.Command(stubBinary, "-socket", socket, "-resource", resource, "-watch="+strconv.FormatBool(watch))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	})
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Scan()
		line <- sc.Text()
	}()
	select {
	case l := <-line:
		if l == "registered" {
			return true, ""
		}
		if msg, ok := strings.CutPrefix(l, "refused "); ok {
			if refusal, err = strconv.Unquote(msg); err == nil {
				return false, refusal
			}
		}
		tb.Fatalf("stubplugin printed %q\n%s", l, stderr.String())
	case <-time.After(time.Minute):
		tb.Fatalf("stubplugin said nothing for a minute\n%s", stderr.String())
	}
	return false, ""
}

// TestDevicePluginCannotTakeADeviceSourcesResource: with the bundled
// plugins.toml, the devsource module serves example.com/dev; the kubelet's
// Stub registering example.com/dev on kubelet.sock is refused, with a reason
// naming the module, and the module keeps serving the resource. The
// refusal shows in wasmlet resources, modules and status.
func TestDevicePluginCannotTakeADeviceSourcesResource(t *testing.T) {
	w := startWasmlet(t, bundledConfig(t), bundledModules, nil)
	dev := func() (devicemanager.ResourceStatus, bool) {
		for _, r := range w.Node.Devices().Resources() {
			if r.Name == "example.com/dev" {
				return r, true
			}
		}
		return devicemanager.ResourceStatus{}, false
	}
	testkit.Eventually(t, "devsource to serve example.com/dev", func() bool { r, ok := dev(); return ok && r.Healthy > 0 })
	before, _ := dev()

	dp := w.Node.Config().Host.DevicePluginDir
	registered, refusal := startStub(t, filepath.Join(dp, "stub.sock"), "example.com/dev", false)
	want := `example.com/dev is served by the device source module "devsource"`
	if registered || !strings.Contains(refusal, want) {
		t.Fatalf("the Stub's registration: registered %v, %q; want it refused saying %q", registered, refusal, want)
	}
	if r, _ := dev(); r.Provider != "module:devsource" || !r.Connected || r.Healthy != before.Healthy || r.ProviderSwitches != 0 {
		t.Fatalf("example.com/dev after the refusal: %+v", r)
	}

	c := testkit.DialAPI(t, w.Node.Config().Host.APISocket)
	ctx := context.Background()
	rs, err := c.ListResources(ctx, &adminpb.ListResourcesRequest{Name: "example.com/dev"})
	if err != nil || len(rs.Resources) != 1 {
		t.Fatalf("ListResources: %v %v", rs, err)
	}
	conflict := rs.Resources[0].Conflict
	for _, s := range []string{filepath.Join(dp, "stub.sock"), "asked to serve example.com/dev", `the device source module "devsource" serves it`} {
		if !strings.Contains(conflict, s) {
			t.Errorf("the resource's conflict %q does not say %q", conflict, s)
		}
	}
	ms, err := c.ListModules(ctx, &adminpb.ListModulesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms.Modules {
		if m.Name == "devsource" && (m.State != api.ModuleRunning || m.PluginConflict != conflict || m.DiscoveryState != "ok") {
			t.Errorf("devsource: state %s, discovery %s, plugin conflict %q", m.State, m.DiscoveryState, m.PluginConflict)
		}
	}
	st, err := c.Status(ctx, &adminpb.StatusRequest{})
	if err != nil || st.Counts.ResourcesConflicting != 1 {
		t.Errorf("status: %v, %v", st.GetCounts(), err)
	}
	// The module still hands out its devices.
	if _, err := c.Allocate(ctx, &adminpb.AllocateRequest{Namespace: "ns", Pod: "p", Container: "c", Resource: "example.com/dev", Count: 1}); err != nil {
		t.Errorf("allocate from devsource after the refusal: %v", err)
	}
}

// TestStubRegistersAgainAfterARestart: the kubelet's Stub, registered with a
// wasmlet that then restarts, registers again with the new one (its Watch
// sees kubelet.sock created, after wasmlet removed the Stub's socket as the
// kubelet does), and its devices are healthy again.
func TestStubRegistersAgainAfterARestart(t *testing.T) {
	w := startWasmlet(t, bundledConfig(t), bundledModules, nil)
	socket := filepath.Join(w.Node.Config().Host.DevicePluginDir, "stub.sock")
	if registered, refusal := startStub(t, socket, "example.com/stub", true); !registered {
		t.Fatalf("the Stub was refused: %s", refusal)
	}
	connected := func() bool {
		for _, r := range w.Node.Devices().Resources() {
			if r.Name == "example.com/stub" {
				return r.Connected && r.Healthy == 2 && r.Provider == "plugin:"+socket
			}
		}
		return false
	}
	testkit.Eventually(t, "the Stub's devices", connected)
	w.Restart(t)
	testkit.Eventually(t, "the Stub to register with the restarted wasmlet", connected)
}
