package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	podresourcesv1 "k8s.io/kubelet/pkg/apis/podresources/v1"
	podresourcesv1alpha1 "k8s.io/kubelet/pkg/apis/podresources/v1alpha1"

	"github.com/wasmlet/wasmlet/guests/build"
	"github.com/wasmlet/wasmlet/host/api/adminpb"
	"github.com/wasmlet/wasmlet/internal/testkit"
)

func perm(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

// TestPodResourcesSocket reads the running wasmlet's pod resources socket
// with the kubelet's v1 and v1alpha1 clients, after an allocation made with
// the CLI; the socket serves nothing else, and is not the admin socket.
func TestPodResourcesSocket(t *testing.T) {
	h := newHost(t, map[string]string{"counter": "guests/counter"}, "")
	h.start()
	pr := filepath.Join(h.dir, "state", "pod-resources", "wasmlet.sock")
	h.eventually("the counter's devices", func() bool {
		out, code := h.cli("resources")
		return code == 0 && strings.Contains(out, "example.com/counter")
	})
	if out, code := h.cli("allocate", "--namespace", "ml", "--pod", "train", "--container", "main", "example.com/counter", "2"); code != 0 {
		t.Fatalf("allocate (exit %d):\n%s", code, out)
	}
	out, code := h.cli("status")
	if code != 0 || !strings.Contains(out, "Pod resources: "+pr+" (read-only") {
		t.Fatalf("status (exit %d):\n%s", code, out)
	}
	for path, want := range map[string]os.FileMode{h.socket: 0o600, filepath.Dir(h.socket): 0o700, pr: 0o660, filepath.Dir(pr): 0o750} {
		if got := perm(t, path); got != want {
			t.Errorf("%s: mode %04o, want %04o", path, got, want)
		}
	}

	conn := testkit.DialPodResources(t, pr)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	list, err := podresourcesv1.NewPodResourcesListerClient(conn).List(ctx, &podresourcesv1.ListPodResourcesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if ps := list.GetPodResources(); len(ps) != 1 || ps[0].GetNamespace() != "ml" || ps[0].GetName() != "train" ||
		len(ps[0].GetContainers()) != 1 || len(ps[0].GetContainers()[0].GetDevices()) != 2 ||
		ps[0].GetContainers()[0].GetDevices()[0].GetTopology() == nil {
		t.Fatalf("v1 List: %v", ps)
	}
	alpha, err := podresourcesv1alpha1.NewPodResourcesListerClient(conn).List(ctx, &podresourcesv1alpha1.ListPodResourcesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if ps := alpha.GetPodResources(); len(ps) != 1 || ps[0].GetName() != "train" || len(ps[0].GetContainers()[0].GetDevices()) != 2 {
		t.Fatalf("v1alpha1 List: %v", ps)
	}
	// Read-only: the admin service is not there.
	_, err = adminpb.NewAdminClient(conn).Release(ctx, &adminpb.ReleaseRequest{Workload: "ml/train/main"})
	if status.Code(err) != codes.Unimplemented {
		t.Fatalf("Release on the pod resources socket: %v", err)
	}
	if out, _ := h.cli("allocations"); !strings.Contains(out, "ml/train/main") {
		t.Fatalf("the allocation is gone:\n%s", out)
	}
}

// TestSlowCopyIsLoading does what the README says, `cp` a module into the
// module directory, with a copy slow enough that the watcher sees it half
// written: `wasmlet modules` lists it as loading, never refused, nothing is
// logged as an error, and then it runs.
func TestSlowCopyIsLoading(t *testing.T) {
	h := newHost(t, nil, "")
	h.start()
	// The copy's pace, 200 ms a chunk: slower than the watcher's 100 ms.
	copied := testkit.CopySlowly(t, build.Go(t, "guests/counter"), filepath.Join(h.dir, "modules", "counter.wasm"), 6, 200*time.Millisecond)
	var seen []string
	h.eventually("counter to run", func() bool {
		out, _ := h.cli("modules")
		for _, line := range strings.Split(out, "\n") {
			if f := strings.Fields(line); len(f) > 1 && f[0] == "counter" {
				if len(seen) == 0 || seen[len(seen)-1] != f[1] {
					seen = append(seen, f[1])
				}
				return f[1] == "running"
			}
		}
		return false
	})
	if err := <-copied; err != nil {
		t.Fatal(err)
	}
	if strings.Join(seen, " ") != "loading running" {
		t.Errorf("states seen in wasmlet modules: %v, want loading then running", seen)
	}
	if log, _ := os.ReadFile(filepath.Join(h.dir, "wasmlet.log")); strings.Contains(string(log), "[ERROR]") {
		t.Errorf("errors logged while the module was copied:\n%s", h.logs())
	}
}

// TestSharedSocketDirectoryIsRefused: an admin socket in a directory that
// others can read and that holds other files (the state of an older
// plugins.toml: ./build) is refused at start, naming the directory, its
// mode and what to do; a directory of its own is tightened instead.
func TestSharedSocketDirectoryIsRefused(t *testing.T) {
	h := newHost(t, nil, "")
	shared := filepath.Join(h.dir, "build")
	if err := os.Mkdir(shared, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(shared, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(shared, "wasmlet"), nil, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg, err := os.ReadFile(h.config)
	if err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(h.dir, "bad.toml")
	if err := os.WriteFile(bad, []byte(strings.Replace(string(cfg), `api_socket = "api/api.sock"`, `api_socket = "build/wasmlet.sock"`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(binary, "run", "--config", bad).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 ||
		!strings.Contains(string(out), "directory "+shared+" has mode 0755, wider than the 0700 this socket needs") ||
		!strings.Contains(string(out), "give host.api_socket a directory of its own") {
		t.Fatalf("wasmlet run with the admin socket in %s: %v\n%s", shared, err, out)
	}
	if perm(t, shared) != 0o755 {
		t.Errorf("the shared directory's mode was changed")
	}

	// The admin socket's own directory, too wide: tightened.
	own := filepath.Join(h.dir, "api")
	if err := os.Mkdir(own, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(own, 0o755); err != nil {
		t.Fatal(err)
	}
	h.start()
	if got := perm(t, own); got != 0o700 {
		t.Errorf("%s: mode %04o after start, want 0700", own, got)
	}
}
