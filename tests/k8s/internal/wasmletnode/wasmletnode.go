package wasmletnode

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/wasmlet/wasmlet/guests/build"
	"github.com/wasmlet/wasmlet/host/config"
	"github.com/wasmlet/wasmlet/host/node"
	"github.com/wasmlet/wasmlet/internal/testkit"
)

// StartTimeout bounds a node's first start, which compiles its modules:
// cold (a CI machine's first run, the compilation cache empty), under the
// race detector, beside other packages doing the same, that takes minutes.
const StartTimeout = 5 * time.Minute

// Options say what node to start.
type Options struct {
	// Dir is the node's directory: plugins.toml is written into it, and
	// relative paths in TOML resolve against it.
	Dir  string
	TOML string
	// ModuleDir is TOML's module_dir, relative to Dir: Modules (name →
	// Go guest directory, relative to the repository root) are built and
	// installed into it as name.wasm.
	ModuleDir string
	Modules   map[string]string
	// Edit, unless nil, changes the configuration after it is loaded.
	Edit func(*config.Config)
}

// Wasmlet is a running node.
type Wasmlet struct {
	Node   *node.Node
	Config *config.Config

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan error // the node's Run's error, once it returned
	err    error
}

// Start installs the modules, writes plugins.toml and runs a node from it,
// and waits until the node is ready. The node's state directory keeps the
// compiled modules in the directory every test and run shares, unless it
// has a compilation cache already (a node started again on the same
// state). The node stops when the test ends; the test fails if it stopped
// on an error.
func Start(tb testing.TB, o Options) *Wasmlet {
	tb.Helper()
	modDir := filepath.Join(o.Dir, o.ModuleDir)
	if err := os.MkdirAll(modDir, 0o700); err != nil {
		tb.Fatal(err)
	}
	for name, guest := range o.Modules {
		testkit.InstallGuest(tb, modDir, name, guest)
	}
	file := testkit.WriteFile(tb, filepath.Join(o.Dir, "plugins.toml"), o.TOML)
	cfg, err := config.Load(file)
	if err != nil {
		tb.Fatal(err)
	}
	if o.Edit != nil {
		o.Edit(cfg)
	}
	if _, err := os.Lstat(filepath.Join(cfg.Host.StateDir, "compilation-cache")); err != nil {
		build.SharedCompilationCache(tb, cfg.Host.StateDir, "wazero-k8s")
	}
	w := &Wasmlet{Config: cfg}
	w.run(tb)
	tb.Cleanup(func() {
		if err := w.Stop(); err != nil {
			tb.Errorf("wasmlet stopped with an error: %v", err)
		}
	})
	return w
}

// run starts a node on w's configuration and waits until it is ready.
func (w *Wasmlet) run(tb testing.TB) {
	tb.Helper()
	n, err := node.New(w.Config, testkit.Logger(tb, hclog.Warn))
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	w.mu.Lock()
	w.Node, w.cancel, w.done, w.err = n, cancel, done, nil
	w.mu.Unlock()
	go func() { done <- n.Run(ctx) }()
	testkit.EventuallyWithin(tb, StartTimeout, "wasmlet to be ready", func() bool {
		select {
		case err := <-done:
			done <- err
			tb.Fatalf("wasmlet stopped: %v", err)
		default:
		}
		return n.Ready()
	})
}

// Stop stops the node, if it runs, and returns the error its Run returned.
func (w *Wasmlet) Stop() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.cancel != nil {
		w.cancel()
		w.err = <-w.done
		w.cancel = nil
	}
	return w.err
}

// Restart stops the node and starts another on the same configuration,
// directories and state: a wasmlet restarted.
func (w *Wasmlet) Restart(tb testing.TB) {
	tb.Helper()
	if err := w.Stop(); err != nil {
		tb.Fatalf("wasmlet stopped with an error: %v", err)
	}
	w.run(tb)
}
