package pluginmanager

// The register and deregister operations, as the kubelet's operation
// generator makes them. Register goes step by step, in the kubelet's order:
//
//	getInfo      ask the plugin who it is
//	findHandler  the handler for its type; none: tell the plugin, wait for one
//	validate     the handler's yes or no
//	register     the handler registers it and says what to record
//	record       the registration enters the actual state of the world
//	notify       the plugin is told it is registered
//
// A handler's refusal is sent to the plugin; its failure is not (the
// operation is retried). A step that fails after the handler registered the
// plugin undoes what came before it, in reverse, so that a retry does not
// register the plugin twice.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/wasmlet/wasmlet/host/pluginmanager/cache"
	"github.com/wasmlet/wasmlet/host/pluginmanager/operationexecutor"
	"github.com/wasmlet/wasmlet/host/pluginmanager/registration"
)

// ops implements reconciler.Operations.
type ops struct{ m *Manager }

func (o ops) Register(d cache.DesiredPlugin) func(context.Context) error {
	return func(ctx context.Context) error { return o.m.register(ctx, d) }
}

func (o ops) Deregister(r cache.RegisteredPlugin) func(context.Context) error {
	return func(ctx context.Context) error { return o.m.deregister(ctx, r) }
}

// registerOp is one register operation on one plugin socket; each step
// fills in what the next ones need.
type registerOp struct {
	m    *Manager
	d    cache.DesiredPlugin
	conn *registration.Conn
	log  hclog.Logger
	p    Plugin  // from getInfo
	h    Handler // from findHandler
}

func (m *Manager) register(ctx context.Context, d cache.DesiredPlugin) error {
	conn, err := registration.Dial(d.SocketPath)
	if err != nil {
		m.obs.Registered("", "getinfo", 0)
		return err
	}
	defer conn.Close()
	op := &registerOp{m: m, d: d, conn: conn, log: m.log.With("socket", d.SocketPath)}
	if err := op.getInfo(ctx); err != nil {
		return err
	}
	// In case the socket goes while this operation runs: whatever its
	// outcome, once it ends nobody else would drop the plugin's answer.
	defer m.forget(d.SocketPath)
	if err := op.findHandler(ctx); err != nil {
		return err
	}
	if err := op.validate(ctx); err != nil {
		return err
	}
	reg, err := op.register(ctx)
	if err != nil {
		return err
	}
	r := op.record(reg)
	if err := op.notify(ctx, r); err != nil {
		// The plugin did not hear it is registered: undo, and retry.
		op.unrecord(r)
		op.undoRegister(ctx, reg)
		return err
	}
	return nil
}

func (op *registerOp) getInfo(ctx context.Context) error {
	p, err := op.conn.GetInfo(ctx)
	if err != nil {
		op.m.obs.Registered("", "getinfo", 0)
		op.log.Warn("plugin did not say who it is; will retry", "error", err)
		return err
	}
	op.m.seenMu.Lock()
	op.m.seen[op.d.SocketPath] = p
	op.m.seenMu.Unlock()
	op.p = p
	op.log = op.log.With("plugin", p.Name, "type", p.Type)
	return nil
}

// findHandler finds the plugin's handler. Without one the plugin is told
// so, as the kubelet tells it, and the operation waits: it is retried after
// the executor's backoff, or as soon as handlers change.
func (op *registerOp) findHandler(ctx context.Context) error {
	h, ok := op.m.handler(op.p.Type)
	if !ok {
		reason := fmt.Sprintf("RegisterPlugin error -- no handler registered for plugin type: %s at socket %s", op.p.Type, op.p.SocketPath)
		op.tell(ctx, false, reason)
		op.m.obs.Registered(op.p.Type, "no-handler", 0)
		op.log.Info("no handler for this plugin type yet; the plugin waits for one")
		return &operationexecutor.Waiting{For: fmt.Sprintf("a handler for plugin type %q", op.p.Type), Err: errors.New(reason)}
	}
	op.h = h
	return nil
}

func (op *registerOp) validate(ctx context.Context) error {
	if err := op.h.Validate(ctx, op.p); err != nil {
		return op.failed(ctx, "validate", err)
	}
	return nil
}

func (op *registerOp) register(ctx context.Context) (Registration, error) {
	reg, err := op.h.Register(ctx, op.p)
	if err != nil {
		return Registration{}, op.failed(ctx, "register", err)
	}
	return reg, nil
}

// failed handles a handler's error: a refusal is passed on to the plugin, a
// failure is retried without bothering it.
func (op *registerOp) failed(ctx context.Context, step string, err error) error {
	var no *Refusal
	if errors.As(err, &no) {
		op.tell(ctx, false, no.Reason)
		op.m.obs.Registered(op.p.Type, "refused", 0)
		op.log.Warn("plugin not registered", "reason", err)
		return err
	}
	op.m.obs.Registered(op.p.Type, "handler-fault", 0)
	op.log.Warn("handler failed; will retry", "step", step, "error", err)
	return err
}

// record enters the registration in the actual state before the plugin
// hears of it (as the kubelet does), so a plugin told "registered" is
// already listed by the host API.
func (op *registerOp) record(reg Registration) cache.RegisteredPlugin {
	r := cache.RegisteredPlugin{SocketPath: op.d.SocketPath, Generation: op.d.Generation, Plugin: op.p,
		Handler: op.h, Registration: reg, AddedAt: op.d.AddedAt, Registered: time.Now()}
	op.m.actual.Add(r)
	return r
}

func (op *registerOp) unrecord(r cache.RegisteredPlugin) {
	op.m.actual.Remove(r.SocketPath, r.Generation)
}

func (op *registerOp) notify(ctx context.Context, r cache.RegisteredPlugin) error {
	if err := op.conn.Notify(ctx, true, ""); err != nil {
		op.m.obs.Registered(op.p.Type, "notify", 0)
		op.log.Warn("could not tell the plugin it is registered; will retry", "error", err)
		return err
	}
	latency := r.Registered.Sub(op.d.AddedAt)
	op.m.obs.Registered(op.p.Type, "ok", latency)
	op.log.Info("plugin registered", "handler", r.Registration.Handler, "action", r.Registration.Action, "latency", latency)
	return nil
}

// undoRegister tells the handler the registration did not happen. It runs
// even when the operation's time is up.
func (op *registerOp) undoRegister(ctx context.Context, reg Registration) {
	if err := op.h.Deregister(context.WithoutCancel(ctx), op.p, reg); err != nil {
		op.log.Warn("handler could not undo the registration", "handler", reg.Handler, "error", err)
	}
}

// tell sends the plugin its registration status.
func (op *registerOp) tell(ctx context.Context, registered bool, reason string) {
	if err := op.conn.Notify(ctx, registered, reason); err != nil {
		op.log.Warn("could not tell the plugin its registration status", "registered", registered, "error", err)
	}
}

// deregister undoes a registration. It never fails: the plugin is gone
// either way, so errors are logged and the registration is dropped.
func (m *Manager) deregister(ctx context.Context, r cache.RegisteredPlugin) error {
	log := m.log.With("socket", r.SocketPath, "plugin", r.Plugin.Name, "type", r.Plugin.Type)
	if err := r.Handler.Deregister(ctx, r.Plugin, r.Registration); err != nil {
		log.Warn("handler could not deregister the plugin", "handler", r.Registration.Handler, "error", err)
	}
	m.actual.Remove(r.SocketPath, r.Generation)
	m.seenMu.Lock()
	if _, still := m.desired.Get(r.SocketPath); !still {
		delete(m.seen, r.SocketPath)
	}
	m.seenMu.Unlock()
	m.obs.Deregistered(r.Plugin.Type)
	log.Info("plugin deregistered")
	return nil
}

// forget drops what GetInfo said at path once the socket is gone and no
// registration is left to undo (deregister drops it then), so that sockets
// that come and go without registering do not accumulate.
func (m *Manager) forget(path string) {
	if _, wanted := m.desired.Get(path); wanted {
		return
	}
	if _, registered := m.actual.Get(path); registered {
		return
	}
	m.seenMu.Lock()
	delete(m.seen, path)
	m.seenMu.Unlock()
}
