package api_test

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/wasmlet/wasmlet/host/api"
	"github.com/wasmlet/wasmlet/host/api/adminpb"
	"github.com/wasmlet/wasmlet/host/internal/testenv"
	"github.com/wasmlet/wasmlet/internal/testkit"
)

func logger(t testing.TB) hclog.Logger { return testenv.Logger(t, hclog.Warn) }

// serve runs Serve with b on the admin socket sock and the pod resources
// socket pr until the test ends, and waits for both sockets; it returns the
// error Serve returned at once, if any.
func serve(t *testing.T, sock, pr string, b api.Backend) error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- api.Serve(ctx, api.Config{AdminSocket: sock, PodResourcesSocket: pr, Backend: b, Logger: logger(t)})
	}()
	var returned bool
	var serveErr error
	testenv.Eventually(t, "the API to listen on "+sock+" and "+pr+" (or Serve to fail)", func() bool {
		select {
		case serveErr = <-done:
			returned = true
			return true
		default:
		}
		return listening(sock) && listening(pr)
	})
	if returned {
		cancel()
		return serveErr
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return nil
}

func listening(sock string) bool {
	c, err := net.Dial("unix", sock)
	if err == nil {
		c.Close()
	}
	return err == nil
}

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode()
}

// TestSocketsAndDirectoryPermissions: the admin socket is its owner's
// alone; the pod resources socket, which only reads, may be opened to the
// directory's group. Missing directories are created with those modes.
func TestSocketsAndDirectoryPermissions(t *testing.T) {
	dir := testenv.ShortDir(t)
	sock := filepath.Join(dir, "run", "wasmlet", "api.sock")
	pr := filepath.Join(dir, "pod-resources", "wasmlet.sock")
	if err := serve(t, sock, pr, &fake{}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		path      string
		dir, sock os.FileMode
	}{{sock, 0o700, 0o600}, {pr, 0o750, 0o660}} {
		if m := mode(t, filepath.Dir(c.path)); m.Perm() != c.dir || !m.IsDir() {
			t.Errorf("%s: directory mode %v, want %v", c.path, m, os.ModeDir|c.dir)
		}
		if m := mode(t, c.path); m.Type() != os.ModeSocket || m.Perm() != c.sock {
			t.Errorf("%s: socket mode %v, want %v", c.path, m, os.ModeSocket|c.sock)
		}
		// Nothing else is left in the directory (no temporary socket).
		if ents, _ := os.ReadDir(filepath.Dir(c.path)); len(ents) != 1 {
			t.Errorf("directory holds %v", ents)
		}
	}
	// A second host on the same sockets is refused, and the first one
	// keeps them.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := api.Serve(ctx, api.Config{AdminSocket: sock, PodResourcesSocket: pr, Backend: &fake{}, Logger: logger(t)})
	if err == nil || !strings.Contains(err.Error(), "another process is serving on "+sock) {
		t.Fatalf("second Serve: %v", err)
	}
	other := filepath.Join(dir, "other", "api.sock")
	err = api.Serve(ctx, api.Config{AdminSocket: other, PodResourcesSocket: pr, Backend: &fake{}, Logger: logger(t)})
	if err == nil || !strings.Contains(err.Error(), "pod resources socket "+pr+": another process is serving") {
		t.Fatalf("second Serve on the pod resources socket: %v", err)
	}
	if _, err := os.Lstat(other); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the refused Serve left its admin socket behind: %v", err)
	}
	c := testkit.DialAPI(t, sock)
	if _, err := c.Status(context.Background(), &adminpb.StatusRequest{}); err != nil {
		t.Fatalf("the first host no longer answers: %v", err)
	}
}

// TestWideDirectoryOfItsOwnIsTightened: a directory that holds nothing but
// sockets and belongs to wasmlet's user is wasmlet's: a mode wider than the
// socket needs is narrowed, with a warning.
func TestWideDirectoryOfItsOwnIsTightened(t *testing.T) {
	dir := testenv.ShortDir(t)
	admin, pr := filepath.Join(dir, "a"), filepath.Join(dir, "p")
	for _, d := range []string{admin, pr} {
		if err := os.Mkdir(d, 0o777); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, 0o777); err != nil {
			t.Fatal(err)
		}
	}
	if err := serve(t, filepath.Join(admin, "api.sock"), filepath.Join(pr, "pr.sock"), &fake{}); err != nil {
		t.Fatal(err)
	}
	if m := mode(t, admin).Perm(); m != 0o700 {
		t.Errorf("admin directory mode %04o, want 0700", m)
	}
	if m := mode(t, pr).Perm(); m != 0o750 {
		t.Errorf("pod resources directory mode %04o, want 0750", m)
	}
}

// TestWideSharedDirectoryIsRefused: a directory wider than the socket
// needs that holds other files is not wasmlet's to change: refused, with a
// message that names it, its mode, and what to do; and nothing is created.
func TestWideSharedDirectoryIsRefused(t *testing.T) {
	for _, c := range []struct {
		name      string
		perm      os.FileMode
		admin     bool
		want      string
		forbidden os.FileMode
	}{
		{"admin socket in a readable directory", 0o755, true,
			"has mode 0755, wider than the 0700 this socket needs (group or others could reach the socket), and holds other files (notes.txt), so wasmlet leaves it alone: " +
				"give host.api_socket a directory of its own (created with mode 0700 when missing), or run chmod 0700 ", 0},
		{"pod resources socket in a writable directory", 0o777, false,
			"has mode 0777, wider than the 0750 this socket needs (group or others could replace the socket), and holds other files (notes.txt), so wasmlet leaves it alone: " +
				"give host.pod_resources_socket a directory of its own (created with mode 0750 when missing), or run chmod 0750 ", 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			root := testenv.ShortDir(t)
			shared := filepath.Join(root, "shared")
			if err := os.Mkdir(shared, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(shared, "notes.txt"), nil, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(shared, c.perm); err != nil {
				t.Fatal(err)
			}
			sock, pr := filepath.Join(root, "own", "api.sock"), filepath.Join(shared, "pr.sock")
			if c.admin {
				sock, pr = filepath.Join(shared, "api.sock"), filepath.Join(root, "own", "pr.sock")
			}
			err := serve(t, sock, pr, &fake{})
			if err == nil || !strings.Contains(err.Error(), "directory "+shared+" "+c.want+shared) {
				t.Fatalf("Serve: %v", err)
			}
			if m := mode(t, shared).Perm(); m != c.perm {
				t.Errorf("the shared directory's mode changed to %04o", m)
			}
			for _, s := range []string{sock, pr} {
				if _, err := os.Lstat(s); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("%s was left behind: %v", s, err)
				}
			}
		})
	}
}

func TestStaleSocketIsReplacedOtherFilesAreNot(t *testing.T) {
	dir := testenv.ShortDir(t)
	sock := filepath.Join(dir, "api.sock")
	pr := filepath.Join(dir, "pr.sock")
	testkit.StaleSocket(t, sock) // left behind by a crash
	if err := serve(t, sock, pr, &fake{}); err != nil {
		t.Fatalf("Serve over a stale socket: %v", err)
	}

	file := filepath.Join(dir, "file.sock")
	if err := os.WriteFile(file, []byte("mine"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := serve(t, file, filepath.Join(dir, "pr2.sock"), &fake{})
	if err == nil || !strings.Contains(err.Error(), "exists and is not a socket") {
		t.Fatalf("Serve over a regular file: %v", err)
	}
	if b, _ := os.ReadFile(file); string(b) != "mine" {
		t.Fatal("the file was replaced")
	}
}

func TestSocketPathTooLong(t *testing.T) {
	dir := testenv.ShortDir(t)
	sock := filepath.Join(dir, strings.Repeat("s", 120))
	err := serve(t, sock, filepath.Join(dir, "pr.sock"), &fake{})
	if err == nil || !strings.Contains(err.Error(), "unix sockets allow at most 107") {
		t.Fatalf("Serve on a long path: %v", err)
	}
}

func TestUnreachable(t *testing.T) {
	dir := testenv.ShortDir(t)
	for name, prepare := range map[string]func(string){
		"missing": func(string) {},
		"stale":   func(p string) { testkit.StaleSocket(t, p) },
	} {
		sock := filepath.Join(dir, name+".sock")
		prepare(sock)
		c, err := api.Dial(sock)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err = c.Status(ctx, &adminpb.StatusRequest{})
		cancel()
		c.Close()
		var ue *api.UnreachableError
		if !errors.As(err, &ue) || ue.Socket != sock || !strings.Contains(err.Error(), "cannot reach the wasmlet host API at "+sock) {
			t.Fatalf("%s socket: %v", name, err)
		}
		if api.ReasonOf(err) != "" {
			t.Fatalf("%s socket: an unreachable host gave a reason: %v", name, err)
		}
	}
}
