// Package testenv holds what the host's tests share: short temporary
// directories (unix socket paths are limited to about 108 bytes), a logger
// that writes into the test's log, one compilation cache for the whole test
// run, so each guest module compiles once, a wait for a condition, an
// atomic file write, a count of module calls, and
// a pod resources client connection made as the kubelet's.
package testenv

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/wasmlet/wasmlet/guests/build"
	"github.com/wasmlet/wasmlet/host/module"
	"github.com/wasmlet/wasmlet/internal/atomicfile"
)

// ShortDir returns a new temporary directory with a short path, removed
// when the test ends.
func ShortDir(t testing.TB) string {
	t.Helper()
	d, err := os.MkdirTemp("", "w")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// Writer writes into the test's log, a line per write.
type Writer struct{ T testing.TB }

func (w Writer) Write(p []byte) (int, error) {
	w.T.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// Logger is an hclog logger at level writing into the test's log.
func Logger(t testing.TB, level hclog.Level) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Level: level, Output: Writer{t}})
}

var (
	cacheOnce sync.Once
	cache     *module.Cache
	cacheErr  error
)

// ModuleCache is a compilation cache shared by every test of the process
// and kept across runs, next to the built guests.
func ModuleCache(t testing.TB) *module.Cache {
	cacheOnce.Do(func() { cache, cacheErr = module.NewCache(filepath.Join(build.CacheDir(), "wazero")) })
	if cacheErr != nil {
		t.Fatal(cacheErr)
	}
	return cache
}

// Eventually polls cond until it holds, and fails the test naming what it
// waited for if that takes more than a minute: the bound only matters when
// something is broken, so it leaves a loaded machine under -race room.
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); !cond(); time.Sleep(2 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// WriteFile writes path atomically with atomicfile: a hidden temporary file
// beside it, then a rename. A watcher of the directory (a device source, the
// module directory) never sees the file half written.
func WriteFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := atomicfile.Write(path, data, 0o644); err != nil {
		t.Fatalf("write %s: %v", path, err)
	}
}

// Calls counts module calls by operation; it is a module.Observer.
type Calls struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *Calls) Call(_ string, op string, _ time.Duration, _ module.Fault) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[op]++
}
func (c *Calls) Instances(string, int)    {}
func (c *Calls) Quarantined(string, bool) {}
func (c *Calls) LogsDropped(string, int)  {}

// Count is how many calls of op were made.
func (c *Calls) Count(op string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[op]
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
