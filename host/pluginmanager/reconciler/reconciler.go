// Package reconciler drives the actual state of the world (registered
// plugins) towards the desired state (plugin sockets present), as the
// kubelet's plugin manager reconciler does — but it runs whenever something
// changes (a socket appears or goes, an operation finishes, a backoff
// expires, a handler module arrives), not on a fixed one-second loop, so a
// plugin is registered milliseconds after its socket appears. A periodic
// resync remains as a safety net.
//
// Each pass deregisters first (plugins whose socket is gone, or was
// recreated), then registers what is missing. The operations themselves run
// in the operation executor, at most one per socket at a time; a socket
// recreated while its old registration is being undone is registered as soon
// as that finishes. Deregistration must not fail (the plugin is gone either
// way): it removes the registration from the actual state whatever the
// handler says. The reconciler only decides which operations to start: what
// they do is the plugin manager's (Operations), when they may run the
// executor's.
package reconciler

import (
	"context"
	"time"

	"k8s.io/utils/clock"

	"github.com/wasmlet/wasmlet/host/internal/defaults"
	"github.com/wasmlet/wasmlet/host/pluginmanager/cache"
)

// Operations are what the reconciler asks the executor to run.
type Operations interface {
	// Register registers the plugin at d's socket.
	Register(d cache.DesiredPlugin) func(ctx context.Context) error
	// Deregister undoes registration r.
	Deregister(r cache.RegisteredPlugin) func(ctx context.Context) error
}

// Executor runs the operations (host/pluginmanager/operationexecutor).
type Executor interface {
	// Run starts op for key, unless one is running or key backs off; it
	// reports whether op was started.
	Run(key string, gen uint64, name string, op func(ctx context.Context) error) bool
	// Prune forgets every idle key that keep rejects.
	Prune(keep func(key string) bool)
}

// Config wires a reconciler.
type Config struct {
	Desired  *cache.DesiredState
	Actual   *cache.ActualState
	Executor Executor
	Ops      Operations
	// Resync is the period of the safety-net pass (and Rescan's).
	Resync time.Duration
	// Rescan, when set, runs before each periodic pass: the watcher's full
	// rescan, so that a missed event cannot leave the desired state wrong.
	Rescan func(ctx context.Context)
	// Observe, when set, is told how long each pass took.
	Observe func(time.Duration)
	// Clock times the resync and the passes; nil is the real clock.
	Clock clock.WithTicker
}

// Reconciler runs passes on demand and periodically.
type Reconciler struct {
	cfg     Config
	trigger chan struct{}
}

func New(cfg Config) *Reconciler {
	defaults.Positive(&cfg.Resync, 30*time.Second)
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	return &Reconciler{cfg: cfg, trigger: make(chan struct{}, 1)}
}

// Trigger asks for a pass soon. It never blocks; triggers that arrive while
// one is pending are merged.
func (r *Reconciler) Trigger() {
	select {
	case r.trigger <- struct{}{}:
	default:
	}
}

// Run makes passes until ctx is done.
func (r *Reconciler) Run(ctx context.Context) {
	t := r.cfg.Clock.NewTicker(r.cfg.Resync)
	defer t.Stop()
	r.Reconcile()
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.trigger:
		case <-t.C():
			if r.cfg.Rescan != nil {
				r.cfg.Rescan(ctx)
			}
		}
		r.Reconcile()
	}
}

// Reconcile makes one pass.
func (r *Reconciler) Reconcile() {
	start := r.cfg.Clock.Now()
	desired := r.cfg.Desired.List()
	actual := r.cfg.Actual.List()
	want := make(map[string]cache.DesiredPlugin, len(desired))
	for _, d := range desired {
		want[d.SocketPath] = d
	}
	have := make(map[string]bool, len(actual))
	for _, a := range actual {
		have[a.SocketPath] = true
		if d, ok := want[a.SocketPath]; !ok || d.Generation != a.Generation {
			r.cfg.Executor.Run(a.SocketPath, a.Generation, "deregister", r.cfg.Ops.Deregister(a))
		}
	}
	for _, d := range desired {
		if !have[d.SocketPath] {
			r.cfg.Executor.Run(d.SocketPath, d.Generation, "register", r.cfg.Ops.Register(d))
		}
	}
	r.cfg.Executor.Prune(func(path string) bool {
		_, wanted := want[path]
		return wanted || have[path]
	})
	if r.cfg.Observe != nil {
		r.cfg.Observe(r.cfg.Clock.Since(start))
	}
}
