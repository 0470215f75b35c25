package node

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wasmlet/wasmlet/host/devicemanager"
	"github.com/wasmlet/wasmlet/host/internal/testplugin"
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
	if n := registrations(); n != 1 {
		t.Errorf("the plugin registered %d times after the restart, want 1", n)
	}
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
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get("http://" + h.metrics + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

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

	lis.Close() // removes its file
	h.eventually("the node to be ready again", func() bool { return h.n.Ready() })
	if code, _ := get("/readyz"); code != http.StatusOK {
		t.Errorf("/readyz once kubelet.sock is back: %d", code)
	}
}
