package node

import (
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wasmlet/wasmlet/host/devicemanager"
	"github.com/wasmlet/wasmlet/host/internal/testplugin"
	"github.com/wasmlet/wasmlet/internal/syncbuf"
)

// TestPluginsRegisterAgainAfterARestart: a device plugin that watches its
// socket, as the Kubernetes documentation recommends (and Intel's and
// KubeVirt's plugins do), registers again with a restarted wasmlet, because
// wasmlet removes the sockets in its device plugin directory when it
// starts, as the kubelet does. The allocation made before the restart is
// restored with its devices, and the plugin's devices are healthy again.
func TestPluginsRegisterAgainAfterARestart(t *testing.T) {
	h := startTOML(t, nil, strings.Replace(nodeTOML("127.0.0.1:0", ""), `grace_period = "200ms"`, `grace_period = "1h"`, 1))
	kubelet := filepath.Join(h.dir, "dp", devicemanager.KubeletSocket)
	p := testplugin.StartDevicePlugin(t, filepath.Join(h.dir, "dp", "gpu.sock"), "example.com/gpu", testplugin.Devices("gpu", 2))
	registrations := p.ReregisterWhenRemoved(t, kubelet)
	if err := p.Register(context.Background(), kubelet); err != nil {
		t.Fatal(err)
	}
	h.eventually("2 healthy gpus", func() bool { r, ok := h.resource("example.com/gpu"); return ok && r.Healthy == 2 })
	a, err := h.n.Devices().Allocate(context.Background(), devicemanager.AllocateRequest{
		Namespace: "ns", Pod: "p", Container: "c", Resource: "example.com/gpu", Count: 1})
	if err != nil {
		t.Fatal(err)
	}

	h.restart()
	h.eventually("the plugin to register again", func() bool {
		r, ok := h.resource("example.com/gpu")
		return ok && r.Connected && r.Healthy == 2 && r.Allocatable == 1
	})
	h.eventually("the plugin to hear its registration answered", func() bool { return registrations() == 1 })
	got := h.n.Devices().Allocations()
	if len(got) != 1 || got[0].Workload != a.Workload || got[0].DeviceIDs[0] != a.DeviceIDs[0] {
		t.Errorf("after the restart: allocations %+v, want %+v", got, a)
	}
}

// TestKubeletSocketIsInReadiness: kubelet.sock deleted while wasmlet runs is
// created again at once; while it is not wasmlet's (another process's
// socket was renamed over it) the node is not ready, and /readyz and status
// say why, while /healthz stays 200; once that process goes, wasmlet serves
// kubelet.sock again and is ready.
func TestKubeletSocketIsInReadiness(t *testing.T) {
	h := start(t, nil, "")
	kubelet := filepath.Join(h.dir, "dp", devicemanager.KubeletSocket)
	get := h.get

	if err := os.Remove(kubelet); err != nil {
		t.Fatal(err)
	}
	h.eventually("kubelet.sock to be created again", func() bool {
		_, err := os.Stat(kubelet)
		return err == nil && h.n.Ready()
	})
	p := testplugin.StartDevicePlugin(t, filepath.Join(h.dir, "dp", "gpu.sock"), "example.com/gpu", testplugin.Devices("gpu", 1))
	if err := p.Register(context.Background(), kubelet); err != nil {
		t.Fatalf("register on the recreated kubelet.sock: %v", err)
	}

	other := filepath.Join(h.dir, "dp", "other")
	lis, err := net.ListenUnix("unix", &net.UnixAddr{Name: other, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(other, kubelet); err != nil {
		t.Fatal(err)
	}
	want := "kubelet.sock: " + kubelet + " is not wasmlet's: another process is serving on " + kubelet
	h.eventually("the node to say kubelet.sock is not its own", func() bool { return h.n.NotReady() == want })
	if code, body := get("/readyz"); code != http.StatusServiceUnavailable || body != "not ready: "+want+"\n" {
		t.Errorf("/readyz: %d %q, want 503 %q", code, body, "not ready: "+want)
	}
	if st := h.n.status(); st.Ready || st.NotReady != want {
		t.Errorf("status: ready %v, %q", st.Ready, st.NotReady)
	}
	if code, _ := get("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz: %d", code)
	}

	// It goes, its socket file first.
	os.Remove(kubelet)
	lis.SetUnlinkOnClose(false)
	lis.Close()
	h.eventually("the node to be ready again", func() bool { return h.n.Ready() })
	if code, _ := get("/readyz"); code != http.StatusOK {
		t.Errorf("/readyz once kubelet.sock is back: %d", code)
	}
}

// TestReadyWaitsForRestoredProviders: right after a restart, the node is not
// ready until the providers of the resources restored from the checkpoint
// are back (its status and /readyz name those it waits for) — allocating
// from them could only fail meanwhile; it waits operation_timeout at most,
// then is ready without them, and says so in its log.
func TestReadyWaitsForRestoredProviders(t *testing.T) {
	var log syncbuf.Buffer
	h := startTOML(t, nil, strings.Replace(nodeTOML("127.0.0.1:0", ""), `grace_period = "200ms"`,
		"grace_period = \"1h\"\noperation_timeout = \"1s\"", 1), withLog(&log))
	kubelet := filepath.Join(h.dir, "dp", devicemanager.KubeletSocket)
	sock := filepath.Join(h.dir, "dp", "gpu.sock")
	p := testplugin.StartDevicePlugin(t, sock, "example.com/gpu", testplugin.Devices("gpu", 2))
	if err := p.Register(context.Background(), kubelet); err != nil {
		t.Fatal(err)
	}
	h.eventually("2 healthy gpus", func() bool { r, ok := h.resource("example.com/gpu"); return ok && r.Healthy == 2 })

	// Restarted while the plugin is down: not ready, saying why.
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
	p.Stop()
	h.runNoWait()
	want := "for the providers of resources restored from the checkpoint to come back: example.com/gpu (plugin:" + sock + ")"
	h.eventually("the node to say what it waits for", func() bool { return strings.Contains(h.n.NotReady(), want) })
	if st := h.n.status(); st.Ready || !strings.Contains(st.NotReady, want) {
		t.Errorf("status: ready %v, %q", st.Ready, st.NotReady)
	}
	if code, body := h.get("/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, want) {
		t.Errorf("/readyz: %d %q", code, body)
	}
	// The plugin comes back: ready.
	p = testplugin.StartDevicePlugin(t, sock, "example.com/gpu", testplugin.Devices("gpu", 2))
	if err := p.Register(context.Background(), kubelet); err != nil {
		t.Fatal(err)
	}
	h.eventually("ready once the plugin is back", func() bool { return h.n.Ready() })
	if r, _ := h.resource("example.com/gpu"); r.Healthy != 2 {
		t.Errorf("ready with %d healthy gpus", r.Healthy)
	}

	// Restarted, and the plugin does not come back: ready after
	// operation_timeout, saying without what.
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
	p.Stop()
	h.runNoWait()
	h.eventually("the node to wait", func() bool { return strings.Contains(h.n.NotReady(), want) })
	h.eventually("ready after operation_timeout", func() bool { return h.n.Ready() })
	h.eventually("the log to say so", func() bool {
		return strings.Contains(log.String(), "ready without these resources restored from the checkpoint") &&
			strings.Contains(log.String(), "example.com/gpu (plugin:"+sock+")")
	})
}
