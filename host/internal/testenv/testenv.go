// Package testenv holds what the host's tests share: one compilation cache
// for the whole test run, so each guest module compiles once, an atomic
// file write, a count of module calls, a module registry whose modules'
// options a test sets as it goes, CDI specs read as a runtime reads them;
// and, from internal/testkit (what the
// tests of every module share), short temporary directories (unix socket
// paths are limited to about 108 bytes), a logger that writes into the
// test's log, a wait for a condition and a pod resources client connection
// made as the kubelet's. Clients runs a benchmark's operations from
// concurrent clients.
package testenv

import (
	"context"
	"maps"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	cdilib "tags.cncf.io/container-device-interface/pkg/cdi"

	"github.com/wasmlet/wasmlet/guests/build"
	"github.com/wasmlet/wasmlet/host/module"
	"github.com/wasmlet/wasmlet/internal/atomicfile"
	"github.com/wasmlet/wasmlet/internal/testkit"
)

// The helpers every test of the repository shares, named here too so that
// the host's tests find them beside their own.
var (
	// ShortDir returns a new temporary directory with a short path,
	// removed when the test ends.
	ShortDir = testkit.ShortDir
	// Logger is an hclog logger at level writing into the test's log.
	Logger = testkit.Logger
	// Eventually polls cond until it holds, failing the test after a
	// minute.
	Eventually = testkit.Eventually
	// DialPodResources connects to a pod resources socket as the
	// kubelet's own client does.
	DialPodResources = testkit.DialPodResources
)

// Writer writes into the test's log, a line per write.
type Writer = testkit.Writer

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

// Modules is a module registry whose modules' options a test sets by name
// as it goes, with what every test module gets: the shared compilation
// cache, the test's logger, a copy of its Config and, unless set, a 32 MiB
// memory limit. The registry is closed when the test ends (after whatever
// the test set up later to run on it has stopped).
type Modules struct {
	Registry *module.Registry
	t        testing.TB
	dir      string
	log      hclog.Logger

	mu   sync.Mutex
	opts map[string]module.Options
}

// NewModules makes a registry logging to log, its module files in a
// temporary directory.
func NewModules(t testing.TB, log hclog.Logger) *Modules {
	m := &Modules{t: t, dir: t.TempDir(), log: log, opts: map[string]module.Options{}}
	m.Registry = module.NewRegistry(m.options, nil, log)
	t.Cleanup(func() { m.Registry.Close(context.Background()) })
	return m
}

func (m *Modules) options(name string) module.Options {
	m.mu.Lock()
	defer m.mu.Unlock()
	o := m.opts[name]
	o.Config = maps.Clone(o.Config)
	o.Cache, o.Logger = ModuleCache(m.t), m.log
	if o.MemoryLimit == 0 {
		o.MemoryLimit = 32 << 20
	}
	return o
}

// Configure sets module name's options from its next load on.
func (m *Modules) Configure(name string, o module.Options) {
	m.mu.Lock()
	m.opts[name] = o
	m.mu.Unlock()
}

// Install copies the module file wasm in as name.wasm, atomically (a
// directory watcher never sees it half written), and loads it: a
// replacement if name is loaded already.
func (m *Modules) Install(name, wasm string) *module.Module {
	m.t.Helper()
	b, err := os.ReadFile(wasm)
	if err != nil {
		m.t.Fatal(err)
	}
	path := filepath.Join(m.dir, name+".wasm")
	WriteFile(m.t, path, b)
	mod, err := m.Registry.Load(context.Background(), path)
	if err != nil {
		m.t.Fatal(err)
	}
	return mod
}

// CDISpecs reads the CDI specs in dir as a container runtime does (the CDI
// project's own cache, refreshed once), failing the test if any is
// invalid.
func CDISpecs(t testing.TB, dir string) *cdilib.Cache {
	t.Helper()
	c, err := cdilib.NewCache(cdilib.WithSpecDirs(dir), cdilib.WithAutoRefresh(false))
	if err != nil {
		t.Fatalf("CDI specs in %s: %v", dir, err)
	}
	if errs := c.GetErrors(); len(errs) > 0 {
		t.Fatalf("CDI specs in %s: %v", dir, errs)
	}
	return c
}

// Clients runs b.N operations from clients goroutines at once, each taking
// the next number i (1 to b.N) and calling op(ctx, client, i) until none is
// left, and reports the operations done a second, as unit. An operation's
// error fails the benchmark and stops its client.
func Clients(b *testing.B, clients int, unit string, op func(ctx context.Context, client int, i int64) error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for c := range clients {
		wg.Go(func() {
			ctx := context.Background()
			for i := next.Add(1); i <= int64(b.N); i = next.Add(1) {
				if err := op(ctx, c, i); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), unit)
}
