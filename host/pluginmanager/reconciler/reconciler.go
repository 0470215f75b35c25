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
// handler says.
package reconciler

import (
	"context"
	"time"

	"github.com/wasmlet/wasmlet/host/pluginmanager/cache"
	"github.com/wasmlet/wasmlet/host/pluginmanager/operationexecutor"
)

// Operations are what the reconciler asks the executor to run.
type Operations interface {
	// Register registers the plugin at d's socket.
	Register(d cache.DesiredPlugin) func(ctx context.Context) error
	// Deregister undoes registration r.
	Deregister(r cache.RegisteredPlugin) func(ctx context.Context) error
}

// Config wires a reconciler.
type Config struct {
	Desired  *cache.DesiredState
	Actual   *cache.ActualState
	Executor *operationexecutor.Executor
	Ops      Operations
	// Resync is the period of the safety-net pass (and Rescan's).
	Resync time.Duration
	// Rescan, when set, runs before each periodic pass: the watcher's full
	// rescan, so that a missed event cannot leave the desired state wrong.
	Rescan func(ctx context.Context)
	// Observe, when set, is told how long each pass took.
	Observe func(time.Duration)
}

// Reconciler runs passes on demand and periodically.
type Reconciler struct {
	cfg     Config
	trigger chan struct{}
}

func New(cfg Config) *Reconciler {
	if cfg.Resync <= 0 {
		cfg.Resync = 30 * time.Second
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
	t := time.NewTicker(r.cfg.Resync)
	defer t.Stop()
	r.Reconcile()
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.trigger:
		case <-t.C:
			if r.cfg.Rescan != nil {
				r.cfg.Rescan(ctx)
			}
			r.cfg.Executor.Release() // plugins waiting for a handler try again
		}
		r.Reconcile()
	}
}

// Reconcile makes one pass.
func (r *Reconciler) Reconcile() {
	start := time.Now()
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
		r.cfg.Observe(time.Since(start))
	}
}
