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

	"github.com/wasmlet/wasmlet/host/api"
	"github.com/wasmlet/wasmlet/host/api/adminpb"
	"github.com/wasmlet/wasmlet/host/internal/testenv"
)

// serve runs Serve on sock with an empty backend until the test ends and
// waits for the socket; it returns the error Serve returned at once, if any.
func serve(t *testing.T, sock string) error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- api.Serve(ctx, sock, api.NewBackend(api.Parts{}), logger(t)) }()
	var returned bool
	var serveErr error
	testenv.Eventually(t, "the API to listen on "+sock+" (or Serve to fail)", func() bool {
		select {
		case serveErr = <-done:
			returned = true
			return true
		default:
		}
		c, err := net.Dial("unix", sock)
		if err == nil {
			c.Close()
		}
		return err == nil
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

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode()
}

func TestSocketAndDirectoryPermissions(t *testing.T) {
	dir := testenv.ShortDir(t)
	sock := filepath.Join(dir, "run", "wasmlet", "api.sock")
	if err := serve(t, sock); err != nil {
		t.Fatal(err)
	}
	if m := mode(t, filepath.Dir(sock)); m.Perm() != 0o700 || !m.IsDir() {
		t.Errorf("socket directory mode %v, want drwx------", m)
	}
	if m := mode(t, sock); m.Type() != os.ModeSocket || m.Perm() != 0o600 {
		t.Errorf("socket mode %v, want Srw-------", m)
	}
	// Nothing else is left in the directory (no temporary socket).
	if ents, _ := os.ReadDir(filepath.Dir(sock)); len(ents) != 1 {
		t.Errorf("directory holds %v", ents)
	}
	// A second host on the same socket is refused, and the first one keeps it.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := api.Serve(ctx, sock, api.NewBackend(api.Parts{}), logger(t))
	if err == nil || !strings.Contains(err.Error(), "another process is serving on "+sock) {
		t.Fatalf("second Serve: %v", err)
	}
	c, err := api.Dial(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Status(context.Background(), &adminpb.StatusRequest{}); err != nil {
		t.Fatalf("the first host no longer answers: %v", err)
	}
}

func TestUnsafeDirectoryIsRefused(t *testing.T) {
	dir := testenv.ShortDir(t)
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "api.sock")
	err := serve(t, sock)
	if err == nil || !strings.Contains(err.Error(), "writable by group or others (mode 0777)") {
		t.Fatalf("Serve in a world-writable directory: %v", err)
	}
	if _, err := os.Lstat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a socket was created: %v", err)
	}
}

func TestStaleSocketIsReplacedOtherFilesAreNot(t *testing.T) {
	dir := testenv.ShortDir(t)
	sock := filepath.Join(dir, "api.sock")
	// A socket left behind by a crash: bound, then closed without unlinking.
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	if err := serve(t, sock); err != nil {
		t.Fatalf("Serve over a stale socket: %v", err)
	}

	file := filepath.Join(dir, "file.sock")
	if err := os.WriteFile(file, []byte("mine"), 0o600); err != nil {
		t.Fatal(err)
	}
	err = serve(t, file)
	if err == nil || !strings.Contains(err.Error(), "exists and is not a socket") {
		t.Fatalf("Serve over a regular file: %v", err)
	}
	if b, _ := os.ReadFile(file); string(b) != "mine" {
		t.Fatal("the file was replaced")
	}
}

func TestSocketPathTooLong(t *testing.T) {
	sock := filepath.Join(testenv.ShortDir(t), strings.Repeat("s", 120))
	err := serve(t, sock)
	if err == nil || !strings.Contains(err.Error(), "unix sockets allow at most 107") {
		t.Fatalf("Serve on a long path: %v", err)
	}
}

func TestUnreachable(t *testing.T) {
	dir := testenv.ShortDir(t)
	for name, prepare := range map[string]func(string){
		"missing": func(string) {},
		"stale": func(p string) {
			l, err := net.ListenUnix("unix", &net.UnixAddr{Name: p, Net: "unix"})
			if err != nil {
				t.Fatal(err)
			}
			l.SetUnlinkOnClose(false)
			l.Close()
		},
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
		t.Logf("%s: %v", name, err)
	}
}
