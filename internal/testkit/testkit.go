// Package testkit is what the tests of every package and module of the
// repository share (the host's, the checkpoint's, the command's, tests/e2e
// and tests/k8s): a short temporary directory, for unix socket paths
// (limited to about 108 bytes); a logger that writes into the test's log;
// a wait for a condition; a host API client and a pod resources client
// connection made as the kubelet's; a stale socket; a goroutine that runs
// until the test ends; a file read or written that fails the test when it
// cannot be, and a file of the repository's own. Of wasmlet's own
// packages it imports only guests/build (which finds the repository) and
// host/api (the host API's client, which imports no other), so any
// package's tests may use it (those two from outside the package); the
// host's tests add what needs the host's other packages in
// host/internal/testenv.
package testkit

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/wasmlet/wasmlet/guests/build"
	"github.com/wasmlet/wasmlet/host/api"
)

// ShortDir returns a new temporary directory with a short path, removed
// when the test ends.
func ShortDir(tb testing.TB) string {
	tb.Helper()
	d, err := os.MkdirTemp("", "w")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// Writer writes into the test's log, a line per write.
type Writer struct{ T testing.TB }

func (w Writer) Write(p []byte) (int, error) {
	w.T.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// Logger is an hclog logger at level writing into the test's log.
func Logger(tb testing.TB, level hclog.Level) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Level: level, Output: Writer{tb}})
}

// Eventually polls cond until it holds, and fails the test naming what it
// waited for if that takes more than a minute: the bound only matters when
// something is broken, so it leaves a loaded machine under -race room.
func Eventually(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	EventuallyWithin(tb, time.Minute, what, cond)
}

// EventuallyWithin is Eventually with another bound. It polls every
// millisecond at first, then less often (every 5 ms from the fourth poll
// on), so that a condition that holds at once is seen at once and one that
// asks an API server is not asked hundreds of times a second.
func EventuallyWithin(tb testing.TB, within time.Duration, what string, cond func() bool) {
	tb.Helper()
	pause := time.Millisecond
	for deadline := time.Now().Add(within); !cond(); time.Sleep(pause) {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s (%v)", what, within)
		}
		pause = min(2*pause, 5*time.Millisecond)
	}
}

// ReadFile is the content of path.
func ReadFile(tb testing.TB, path string) []byte {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// WriteFile writes content to path, making its directory first, and
// returns path.
func WriteFile(tb testing.TB, path, content string) string {
	tb.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		tb.Fatal(err)
	}
	return path
}

// OnlyFiles fails the test unless directory dir holds exactly names
// (sorted): no temporary file was left behind, none went missing.
func OnlyFiles(tb testing.TB, dir string, names ...string) {
	tb.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		tb.Fatal(err)
	}
	got := []string{}
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if !slices.Equal(got, names) {
		tb.Fatalf("%s holds %q, want %q", dir, got, names)
	}
}

// RepoFile is the content of the repository's file rel (a slash-separated
// path from the repository's root, e.g. "plugins.toml").
func RepoFile(tb testing.TB, rel string) []byte {
	tb.Helper()
	root, err := build.Root()
	if err != nil {
		tb.Fatal(err)
	}
	return ReadFile(tb, filepath.Join(root, filepath.FromSlash(rel)))
}

// DialPodResources connects to a pod resources socket as the kubelet's own
// client does (GetV1Client and GetV1alpha1Client in
// k8s.io/kubernetes/pkg/kubelet/apis/podresources, which consumers are told
// to copy): a unix dialer, no credentials, a 16 MiB reply limit. The
// connection is closed when the test ends.
func DialPodResources(t testing.TB, socket string) *grpc.ClientConn {
	t.Helper()
	var d net.Dialer
	conn, err := grpc.NewClient("unix:"+socket,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return d.DialContext(ctx, "unix", socket) }),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(16<<20)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// CopySlowly copies the file src to dst the way a slow `cp` does: in place,
// in chunks pieces, pausing pace after each (longer than a watcher waits
// for a file to settle, and it sees the file half written). The copy's
// error, once it is done, comes on the channel.
func CopySlowly(tb testing.TB, src, dst string, chunks int, pace time.Duration) <-chan error {
	tb.Helper()
	b := ReadFile(tb, src)
	f, err := os.Create(dst)
	if err != nil {
		tb.Fatal(err)
	}
	copied := make(chan error, 1)
	go func() {
		defer f.Close()
		for i := range chunks {
			if _, err := f.Write(b[i*len(b)/chunks : (i+1)*len(b)/chunks]); err != nil {
				copied <- err
				return
			}
			time.Sleep(pace)
		}
		copied <- nil
	}()
	return copied
}

// Go runs run on a goroutine until the test ends; then run's context is
// cancelled, and the test waits for run to return.
func Go(tb testing.TB, run func(ctx context.Context)) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		run(ctx)
	}()
	tb.Cleanup(func() { cancel(); <-done })
}

// StaleSocket leaves a socket file at path that nobody serves, as a
// process that crashed leaves its socket: bound, then closed without
// unlinking.
func StaleSocket(tb testing.TB, path string) {
	tb.Helper()
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		tb.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
}

// BuildWasmlet builds the wasmlet command (cmd/wasmlet) into a new
// temporary directory, for tests that run it as a user does; remove the
// directory (filepath.Dir of the path) when done. It takes no testing.TB,
// so that a TestMain can build it once for a whole test binary.
func BuildWasmlet() (string, error) {
	root, err := build.Root()
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "wlbin")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "wasmlet")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/wasmlet")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("go build ./cmd/wasmlet: %v\n%s", err, out)
	}
	return bin, nil
}

// DialAPI connects to a wasmlet host API (the admin socket), as the
// wasmlet command does; the client is closed when the test ends.
func DialAPI(tb testing.TB, socket string) *api.Client {
	tb.Helper()
	c, err := api.Dial(socket)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// MainWithWasmlet is the TestMain of a package whose tests run the wasmlet
// command: it builds it (BuildWasmlet) into *bin, runs the tests, removes
// it, and exits with the tests' code.
func MainWithWasmlet(m *testing.M, bin *string) {
	var err error
	if *bin, err = BuildWasmlet(); err != nil {
		fmt.Fprintln(os.Stderr, "building wasmlet:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(filepath.Dir(*bin))
	os.Exit(code)
}

// InstallGuest builds the Go guest (a directory relative to the
// repository's root, e.g. "guests/counter") and installs it into the
// module directory modDir as name.wasm, renamed into place: a wasmlet
// watching modDir never sees it half written.
func InstallGuest(tb testing.TB, modDir, name, guest string) {
	tb.Helper()
	b := ReadFile(tb, build.Go(tb, guest))
	tmp := filepath.Join(modDir, "."+name+".tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		tb.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(modDir, name+".wasm")); err != nil {
		tb.Fatal(err)
	}
}
