package pluginmanager

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"k8s.io/utils/clock"

	"github.com/wasmlet/wasmlet/host/pluginmanager/cache"
	"github.com/wasmlet/wasmlet/host/pluginmanager/operationexecutor"
	"github.com/wasmlet/wasmlet/host/pluginmanager/reconciler"
	"github.com/wasmlet/wasmlet/host/watcher"
)

// Observer is told about registrations, for metrics.
type Observer interface {
	// Registered reports a finished register operation: ok, or the failure
	// reason class ("getinfo", "no-handler", "refused", "handler-fault",
	// "notify"), and for successes the time since the socket appeared.
	Registered(pluginType string, outcome string, latency time.Duration)
	Deregistered(pluginType string)
	Reconciled(d time.Duration)
}

type nopObserver struct{}

func (nopObserver) Registered(string, string, time.Duration) {}
func (nopObserver) Deregistered(string)                      {}
func (nopObserver) Reconciled(time.Duration)                 {}

// Config wires a plugin manager.
type Config struct {
	RegistryDir string
	// Handlers finds the handlers that come and go (the WebAssembly
	// handler modules); nil when only AddHandler's are used.
	Handlers         HandlerLookup
	ResyncPeriod     time.Duration
	OperationTimeout time.Duration
	BackoffInitial   time.Duration
	BackoffMax       time.Duration
	Logger           hclog.Logger
	Observer         Observer
	// Clock times backoffs and resyncs; nil is the real clock.
	Clock clock.WithTickerAndDelayedExecution
}

// Manager is the plugin manager.
type Manager struct {
	cfg     Config
	log     hclog.Logger
	obs     Observer
	desired *cache.DesiredState
	actual  *cache.ActualState
	exec    *operationexecutor.Executor
	rec     *reconciler.Reconciler
	watch   *watcher.Watcher
	ready   chan struct{}

	handlersMu sync.RWMutex
	handlers   map[string]Handler // AddHandler's, by plugin type

	seenMu sync.Mutex
	seen   map[string]Plugin // last GetInfo answer per socket, for status
}

// New prepares a plugin manager; Run starts it.
func New(cfg Config) (*Manager, error) {
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	m := &Manager{cfg: cfg, log: cfg.Logger, obs: cfg.Observer, desired: cache.NewDesiredState(),
		actual: cache.NewActualState(), ready: make(chan struct{}), handlers: map[string]Handler{}, seen: map[string]Plugin{}}
	if m.obs == nil {
		m.obs = nopObserver{}
	}
	m.exec = operationexecutor.New(operationexecutor.Config{
		Timeout: cfg.OperationTimeout, BackoffInitial: cfg.BackoffInitial, BackoffMax: cfg.BackoffMax,
		Wake: func() { m.rec.Trigger() }, Clock: cfg.Clock,
	})
	w, err := watcher.New(watcher.Config{
		Dir:   cfg.RegistryDir,
		Match: watcher.IsSocket,
		OnAdd: func(path string, _ watcher.Identity) {
			m.desired.Add(path, time.Now())
			m.rec.Trigger()
		},
		OnRemove: func(path string) {
			m.desired.Remove(path)
			m.forget(path)
			m.rec.Trigger()
		},
		Logger: cfg.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("plugin registry: %w", err)
	}
	m.watch = w
	m.rec = reconciler.New(reconciler.Config{
		Desired: m.desired, Actual: m.actual, Executor: m.exec, Ops: ops{m},
		Resync: cfg.ResyncPeriod, Rescan: w.Rescan, Observe: m.obs.Reconciled, Clock: cfg.Clock,
	})
	if cfg.Handlers != nil {
		cfg.Handlers.OnChange(m.handlersChanged)
	}
	return m, nil
}

// Run watches the registry directory and reconciles until ctx is done, then
// waits for operations in flight. If the watch fails, reconciling stops too
// and Run returns the watch's error: a plugin manager that no longer sees
// the registry must say so, not go on quietly.
func (m *Manager) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 1)
	wg.Add(2)
	go func() {
		defer wg.Done()
		if err := m.watch.Run(ctx); err != nil {
			errc <- fmt.Errorf("watching the plugin registry %s: %w", m.cfg.RegistryDir, err)
			cancel()
		}
	}()
	go func() {
		defer wg.Done()
		m.watch.Rescan(ctx) // the initial scan is done once this returns
		close(m.ready)
		m.rec.Run(ctx)
	}()
	m.log.Info("plugin manager started", "registry_dir", m.cfg.RegistryDir)
	wg.Wait()
	m.exec.Wait()
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}

// Ready is closed once the registry directory has been scanned.
func (m *Manager) Ready() <-chan struct{} { return m.ready }
