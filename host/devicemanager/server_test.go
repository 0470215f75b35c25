package devicemanager_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wasmlet/wasmlet/host/devicemanager"
	"github.com/wasmlet/wasmlet/host/internal/testenv"
	"github.com/wasmlet/wasmlet/host/internal/testplugin"
	"github.com/wasmlet/wasmlet/internal/testkit"
)

func sameFile(t *testing.T, a os.FileInfo, path string) bool {
	t.Helper()
	b, err := os.Lstat(path)
	return err == nil && os.SameFile(a, b)
}

func lstat(t *testing.T, path string) os.FileInfo {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi
}

// TestStartClearsSocketsAsTheKubeletDoes: when the device manager starts it
// removes every socket in its device plugin directory, as the kubelet's
// does (CleanupPluginDirectory): a stale kubelet.sock, a crashed plugin's
// socket, a live plugin's socket, a symbolic link to a socket; it leaves
// regular files (the checkpoint), directories and what is in them. A
// plugin that watches its socket, as the Kubernetes documentation
// recommends, serves a new one and registers again.
func TestStartClearsSocketsAsTheKubeletDoes(t *testing.T) {
	dir := testenv.ShortDir(t)
	kubelet := filepath.Join(dir, devicemanager.KubeletSocket)
	testkit.StaleSocket(t, kubelet)
	testkit.StaleSocket(t, filepath.Join(dir, "crashed.sock"))
	os.Mkdir(filepath.Join(dir, "sub"), 0o755)
	testkit.StaleSocket(t, filepath.Join(dir, "sub", "inner.sock"))
	if err := os.Symlink(filepath.Join(dir, "sub", "inner.sock"), filepath.Join(dir, "link.sock")); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "checkpoint"), []byte("kept"), 0o600)
	old := lstat(t, kubelet)
	// A second link keeps the stale socket's inode from being reused.
	if err := os.Link(kubelet, filepath.Join(dir, "sub", "old-kubelet.sock")); err != nil {
		t.Fatal(err)
	}
	p := testplugin.StartDevicePlugin(t, filepath.Join(dir, "gpu.sock"), "example.com/gpu", testplugin.Devices("gpu", 2))
	registrations := p.ReregisterWhenRemoved(t, kubelet)

	e := start(t, dir, devicemanager.Config{})
	e.resource("example.com/gpu", healthyCount(2))
	testenv.Eventually(t, "the plugin to hear its registration answered", func() bool { return registrations() == 1 })
	for _, gone := range []string{"crashed.sock", "link.sock"} {
		if _, err := os.Lstat(filepath.Join(dir, gone)); !os.IsNotExist(err) {
			t.Errorf("%s is still there: %v", gone, err)
		}
	}
	for _, kept := range []string{"checkpoint", "sub", "sub/inner.sock"} {
		if _, err := os.Lstat(filepath.Join(dir, kept)); err != nil {
			t.Errorf("%s was removed: %v", kept, err)
		}
	}
	if sameFile(t, old, kubelet) {
		t.Error("the stale kubelet.sock was kept")
	}
	if e.srv.Created() != 1 || e.srv.Missing() != "" {
		t.Errorf("kubelet.sock created %d times, missing %q", e.srv.Created(), e.srv.Missing())
	}
}

// TestLiveKubeletSocketIsLeftAlone: a device plugin directory where another
// process serves kubelet.sock (a kubelet) is refused, naming the socket,
// and nothing in it is touched: neither kubelet.sock nor its plugins'
// sockets.
func TestLiveKubeletSocketIsLeftAlone(t *testing.T) {
	dir := testenv.ShortDir(t)
	kubelet := filepath.Join(dir, devicemanager.KubeletSocket)
	lis, err := net.Listen("unix", kubelet)
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	p := testplugin.StartDevicePlugin(t, filepath.Join(dir, "gpu.sock"), "example.com/gpu", testplugin.Devices("gpu", 2))
	before := []os.FileInfo{lstat(t, kubelet), lstat(t, p.Path)}

	m, err := devicemanager.New(devicemanager.Config{})
	if err != nil {
		t.Fatal(err)
	}
	err = devicemanager.NewServer(m, dir, dial, 0).Serve(context.Background())
	want := "device plugin directory " + dir + ": another process is serving on " + kubelet
	if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "host.device_plugin_dir") {
		t.Fatalf("Serve: %v, want an error saying %q and what to do", err, want)
	}
	if cerr := devicemanager.CheckDir(dir); cerr == nil || cerr.Error() != err.Error() {
		t.Errorf("CheckDir: %v, want the same error as Serve", cerr)
	}
	for i, path := range []string{kubelet, p.Path} {
		if !sameFile(t, before[i], path) {
			t.Errorf("%s was replaced or removed", path)
		}
	}
}

// TestDeletedKubeletSocketIsCreatedAgain: a kubelet.sock deleted while the
// device manager runs is created again at once, and plugins register on
// the new one; one that another process serves, renamed over it, is left
// alone and Missing says so, until that process goes.
func TestDeletedKubeletSocketIsCreatedAgain(t *testing.T) {
	e := start(t, "", devicemanager.Config{})
	if err := os.Remove(e.kubelet); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, "kubelet.sock to be created again", func() bool {
		_, err := os.Lstat(e.kubelet)
		return err == nil && e.srv.Created() == 2 && e.srv.Missing() == ""
	})
	e.gpus(2)

	// Another process's socket renamed over kubelet.sock.
	other := filepath.Join(e.dir, "other")
	lis, err := net.ListenUnix("unix", &net.UnixAddr{Name: other, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(other, e.kubelet); err != nil {
		t.Fatal(err)
	}
	taken := lstat(t, e.kubelet)
	want := e.kubelet + " is not wasmlet's: another process is serving on " + e.kubelet
	testenv.Eventually(t, "Missing to say that another process serves kubelet.sock", func() bool {
		return e.srv.Missing() == want
	})
	if !sameFile(t, taken, e.kubelet) {
		t.Fatal("the other process's kubelet.sock was replaced")
	}
	// It goes (its socket file first: a tick in between would find the
	// file stale and replace it): wasmlet serves again.
	os.Remove(e.kubelet)
	lis.SetUnlinkOnClose(false)
	lis.Close()
	testenv.Eventually(t, "kubelet.sock to be served again", func() bool {
		return e.srv.Missing() == "" && e.srv.Created() == 3
	})
	e.plugin("gpu2.sock", "example.com/gpu2", testplugin.Devices("gpu", 1))
	e.resource("example.com/gpu2", healthyCount(1))
}
