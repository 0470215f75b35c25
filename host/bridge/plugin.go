package bridge

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
	"k8s.io/utils/clock"

	"github.com/wasmlet/wasmlet/host/device"
	"github.com/wasmlet/wasmlet/host/device/deviceplugin"
	"github.com/wasmlet/wasmlet/host/devicemanager"
	"github.com/wasmlet/wasmlet/host/internal/backoff"
	"github.com/wasmlet/wasmlet/host/internal/unixgrpc"
	"github.com/wasmlet/wasmlet/host/watcher"
)

// State is where a bridged source stands with the kubelet.
type State string

// The states.
const (
	// StateDiscovering: the source has not reported its devices yet; it
	// registers once it has.
	StateDiscovering State = "discovering"
	// StateWaitingForKubelet: there is no kubelet.sock (kubelet-socket
	// mode), or the kubelet's plugin watcher has not called yet
	// (plugin-registry mode).
	StateWaitingForKubelet State = "waiting-for-kubelet"
	StateRegistering       State = "registering"
	StateRegistered        State = "registered"
	// StateRefused: the kubelet answered the registration with an error.
	StateRefused State = "refused"
	// StateUnreachable: the kubelet could not be reached at kubelet.sock,
	// or the socket could not be served.
	StateUnreachable State = "unreachable"
	StateStopped     State = "stopped"
)

// Status is a snapshot of one bridged source.
type Status struct {
	Resource string
	Provider string
	// Socket is the device plugin socket; RegistrationSocket the plugin
	// registry socket (plugin-registry mode).
	Socket, RegistrationSocket string
	Mode                       string
	State                      State
	// LastError is why the last registration failed, or why the source
	// was lost.
	LastError string
	// Attempts counts registration attempts since the last success.
	Attempts int
	// Registrations counts successful registrations; RegisteredAt is the
	// last one.
	Registrations int
	RegisteredAt  time.Time
	// NextAttempt is when a refused or failed registration is retried.
	NextAttempt time.Time
	// GraceDeadline is set when the source went away: its devices stay,
	// unhealthy, and the socket is served until then, unless a source of
	// the module comes back first.
	GraceDeadline time.Time
	// KubeletPresent and KubeletSince: whether kubelet.sock exists, and
	// since when (as noticed).
	KubeletPresent bool
	KubeletSince   time.Time
	// SocketsCreated counts the device plugin socket's creations (the
	// first, and each after it was deleted).
	SocketsCreated int
	Streams        int
	Devices        int
	Healthy        int
	Options        devicemanager.ProviderOptions
}

// plugin is one bridged source: a device plugin socket, its registration,
// and the provider behind it.
type plugin struct {
	b        *Bridge
	resource string
	name     string // socket file name
	path     string // device plugin socket
	regPath  string // registration socket, plugin-registry mode
	log      hclog.Logger

	wake chan struct{} // capacity 1: look at everything again
	quit chan struct{} // closed by stop
	once sync.Once
	gone bool // set before quit closes: the source went away

	mu       sync.Mutex
	ctx      context.Context // run's, once it started
	prov     devicemanager.Provider
	pgen     uint64
	opts     devicemanager.ProviderOptions
	unwatch  context.CancelFunc
	devices  []*pluginapi.Device // the latest set, as sent
	known    map[string]bool
	ready    bool          // a device set is known
	changed  chan struct{} // closed and replaced on every new set
	stopping chan struct{} // closed when the streams must end
	streams  int

	state          State
	lastErr        string
	attempts       int
	registrations  int
	registeredAt   time.Time
	registeredGen  uint64 // kubelet generation registered with; 0: none
	registeredOpts devicemanager.ProviderOptions
	backoff        *backoff.Backoff
	backoffGen     uint64
	nextAttempt    time.Time
	cancelAttempt  context.CancelFunc
	socketsCreated int
	regRefresh     time.Time // plugin-registry: recreate the registration socket then
	graceUntil     time.Time // the source went away: the plugin goes then
	graceTimer     clock.Timer
}

func newPlugin(b *Bridge, resource, name string) *plugin {
	p := &plugin{b: b, resource: resource, name: name, path: filepath.Join(b.cfg.KubeletDir, name),
		log: b.log.With("resource", resource, "socket", name), wake: make(chan struct{}, 1), quit: make(chan struct{}),
		changed: make(chan struct{}), stopping: make(chan struct{}), state: StateDiscovering,
		backoff: backoff.New(b.cfg.BackoffInitial, b.cfg.BackoffMax, nil)}
	if b.cfg.Registration == PluginRegistry {
		p.regPath = filepath.Join(b.cfg.PluginRegistryDir, strings.TrimSuffix(name, ".sock")+"-reg.sock")
	}
	return p
}

// kick makes run look at the sockets and the registration again.
func (p *plugin) kick() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// newKubelet is told that a new kubelet.sock appeared: an attempt on the
// previous one is abandoned, and the source registers at once.
func (p *plugin) newKubelet() {
	p.mu.Lock()
	if p.cancelAttempt != nil {
		p.cancelAttempt()
	}
	p.mu.Unlock()
	p.kick()
}

// stop ends the plugin. gone: the source went away, so the kubelet is sent
// an empty device set first.
func (p *plugin) stop(gone bool) {
	p.once.Do(func() {
		p.gone = gone
		close(p.quit)
	})
}

func (p *plugin) providerName() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.prov == nil {
		return ""
	}
	return p.prov.Name()
}

// orphan is told that the source went away: its devices are unhealthy, and
// the plugin stays until the grace period from now is over, which timer
// marks (it is kept, and stopped if the source comes back). It returns
// when that is.
func (p *plugin) orphan(grace time.Duration, now time.Time, timer clock.Timer) time.Time {
	p.mu.Lock()
	old := p.graceTimer
	p.graceTimer = timer
	if old != nil {
		defer old.Stop()
	}
	prov, unwatch := p.prov, p.unwatch
	p.prov, p.unwatch = nil, nil
	p.pgen++ // what the old source still says is ignored
	devs := make([]*pluginapi.Device, len(p.devices))
	for i, d := range p.devices {
		devs[i] = &pluginapi.Device{ID: d.ID, Health: pluginapi.Unhealthy, Topology: d.Topology}
	}
	p.setDevicesLocked(devs, p.known)
	p.graceUntil = now.Add(grace)
	p.lastErr = fmt.Sprintf("the device source %s went away: its devices stay, unhealthy, until %s, unless it comes back",
		prov.Name(), p.graceUntil.Format(time.RFC3339))
	deadline := p.graceUntil
	p.mu.Unlock()
	if unwatch != nil {
		unwatch() // its goroutine closes it
	} else {
		prov.Close()
	}
	return deadline
}

// orphaned reports whether the source went away and none came back.
func (p *plugin) orphaned() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.prov == nil && !p.graceUntil.IsZero()
}

// setGraceTimer replaces the timer of the grace period (nil: none).
func (p *plugin) setGraceTimer(t clock.Timer) {
	p.mu.Lock()
	old := p.graceTimer
	p.graceTimer = t
	p.mu.Unlock()
	if old != nil {
		old.Stop()
	}
}

// setProvider makes prov the source of the plugin's devices.
func (p *plugin) setProvider(prov devicemanager.Provider) {
	p.setGraceTimer(nil) // back within the grace period, if it went
	p.mu.Lock()
	back := !p.graceUntil.IsZero()
	if back {
		p.graceUntil, p.lastErr = time.Time{}, ""
		p.log.Info("device source back within the grace period; the kubelet keeps its socket and streams", "provider", prov.Name())
	}
	old, oldUnwatch := p.prov, p.unwatch
	if (old != nil || back) && prov.Options() != p.opts && p.regPath != "" {
		// The kubelet reads the options when it registers the plugin:
		// offer the registration socket anew.
		p.regRefresh = time.Now()
	}
	p.prov, p.opts, p.unwatch = prov, prov.Options(), nil
	p.pgen++
	if p.ctx != nil {
		p.watchLocked()
	}
	p.mu.Unlock()
	if oldUnwatch != nil {
		oldUnwatch() // its goroutine closes it
	} else if old != nil {
		old.Close() // never watched
	}
	if old != nil {
		p.log.Info("device source replaced; the kubelet keeps its socket and streams", "old", old.Name(), "new", prov.Name())
	}
	p.kick()
}

// watchLocked follows the current provider. Call with p.mu held, once ctx
// is set.
func (p *plugin) watchLocked() {
	ctx, cancel := context.WithCancel(p.ctx)
	p.unwatch = cancel
	prov, gen := p.prov, p.pgen
	go func() {
		err := prov.Watch(ctx, func(devs []device.Device) { p.update(gen, devs) })
		prov.Close()
		if ctx.Err() == nil {
			p.lost(gen, prov, err)
		}
	}()
}

// update takes a device set from the provider of generation gen.
func (p *plugin) update(gen uint64, devs []device.Device) {
	out := make([]*pluginapi.Device, len(devs))
	known := make(map[string]bool, len(devs))
	for i, d := range devs {
		out[i] = deviceplugin.Device(d)
		known[d.ID] = true
	}
	p.mu.Lock()
	if gen != p.pgen {
		p.mu.Unlock()
		return // a replaced provider
	}
	first := !p.ready
	if first || !sameDevices(out, p.devices) { // edits alone changed: nothing for the kubelet
		p.setDevicesLocked(out, known)
	}
	p.mu.Unlock()
	if first {
		p.kick() // registration waited for this
	}
}

func (p *plugin) setDevicesLocked(devs []*pluginapi.Device, known map[string]bool) {
	p.devices, p.known, p.ready = devs, known, true
	close(p.changed)
	p.changed = make(chan struct{})
}

// lost is told that the provider of generation gen ended by itself: its
// devices are unhealthy until a new provider reports.
func (p *plugin) lost(gen uint64, prov devicemanager.Provider, err error) {
	if p.stopped() {
		return // removed: its Watch ended because the source was stopped
	}
	p.mu.Lock()
	if gen != p.pgen {
		p.mu.Unlock()
		return
	}
	devs := make([]*pluginapi.Device, len(p.devices))
	for i, d := range p.devices {
		devs[i] = &pluginapi.Device{ID: d.ID, Health: pluginapi.Unhealthy, Topology: d.Topology}
	}
	p.setDevicesLocked(devs, p.known)
	if err != nil {
		p.lastErr = err.Error()
	}
	p.mu.Unlock()
	p.log.Warn("device source lost; its devices are unhealthy until it is back", "provider", prov.Name(), "error", err)
	p.kick()
}

// sameDevices reports whether two device sets say the same to the kubelet.
func sameDevices(a, b []*pluginapi.Device) bool {
	return slices.EqualFunc(a, b, func(x, y *pluginapi.Device) bool {
		return x.ID == y.ID && x.Health == y.Health &&
			slices.EqualFunc(x.Topology.GetNodes(), y.Topology.GetNodes(), func(m, n *pluginapi.NUMANode) bool { return m.ID == n.ID })
	})
}

// sock is a unix socket the plugin serves, recreated when it is deleted.
type sock struct {
	path string
	srv  *grpc.Server
	lis  net.Listener
	id   watcher.Identity
}

// ensure serves on path, creating the socket if it is missing or is not the
// one created last. It reports whether it created it.
func (s *sock) ensure() (bool, error) {
	if s.lis != nil {
		if fi, err := os.Lstat(s.path); err == nil && watcher.IdentityOf(fi) == s.id {
			return false, nil
		}
		// Deleted (or replaced): the old listener must not unlink the new file.
		s.lis.(*net.UnixListener).SetUnlinkOnClose(false)
		s.lis.Close()
		s.lis = nil
	}
	if err := os.Remove(s.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return false, fmt.Errorf("remove stale socket %s: %w", s.path, err)
	}
	lis, err := net.Listen("unix", s.path)
	if err != nil {
		return false, fmt.Errorf("serve %s: %w", s.path, err)
	}
	fi, err := os.Lstat(s.path)
	if err != nil {
		lis.Close()
		return false, fmt.Errorf("serve %s: %w", s.path, err)
	}
	s.lis, s.id = lis, watcher.IdentityOf(fi)
	go s.srv.Serve(lis)
	return true, nil
}

// remove deletes the socket if it is still the one created last.
func (s *sock) remove() {
	if s.lis == nil {
		return
	}
	s.lis.(*net.UnixListener).SetUnlinkOnClose(false)
	if fi, err := os.Lstat(s.path); err == nil && watcher.IdentityOf(fi) == s.id {
		os.Remove(s.path)
	}
}

// run serves the plugin until ctx is done or stop is called.
func (p *plugin) run(ctx context.Context) {
	p.mu.Lock()
	p.ctx = ctx
	if p.prov != nil && p.unwatch == nil {
		p.watchLocked()
	}
	p.mu.Unlock()

	dp := &sock{path: p.path, srv: grpc.NewServer()}
	pluginapi.RegisterDevicePluginServer(dp.srv, &devicePlugin{p: p})
	var reg *sock
	if p.regPath != "" {
		reg = &sock{path: p.regPath, srv: grpc.NewServer()}
		registerapi.RegisterRegistrationServer(reg.srv, &registrar{p: p})
	}
	for _, path := range []string{p.path, p.regPath} {
		if len(path) > 107 {
			p.fail(StateUnreachable, fmt.Errorf("socket path %s is longer than a unix socket address allows (107 bytes)", path))
		}
	}

	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	for {
		wait := p.reconcile(ctx, dp, reg)
		if wait > 0 {
			retry.Reset(wait)
		}
		select {
		case <-ctx.Done():
		case <-p.quit:
		case <-p.wake:
		case <-retry.C:
		}
		if ctx.Err() != nil || p.stopped() {
			break
		}
		retry.Stop()
	}
	p.shutdown(dp, reg)
}

func (p *plugin) stopped() bool {
	select {
	case <-p.quit:
		return true
	default:
		return false
	}
}

// reconcile brings the sockets and the registration in line, and returns
// how long to wait before trying again (0: until something happens).
func (p *plugin) reconcile(ctx context.Context, dp, reg *sock) time.Duration {
	if len(p.path) > 107 || len(p.regPath) > 107 {
		return 0
	}
	created, err := dp.ensure()
	if err != nil {
		p.fail(StateUnreachable, err)
		return p.b.cfg.BackoffInitial
	}
	if created {
		p.mu.Lock()
		p.socketsCreated++
		again := p.socketsCreated > 1
		p.registeredGen = 0 // whoever deleted it no longer knows us
		p.mu.Unlock()
		if again {
			p.log.Info("device plugin socket was deleted; created it again", "path", p.path)
		} else {
			p.log.Debug("serving device plugin", "path", p.path)
		}
	}
	if reg != nil {
		return p.reconcileRegistry(reg, created)
	}
	return p.register(ctx)
}

// register registers with the kubelet on kubelet.sock unless that is done.
func (p *plugin) register(ctx context.Context) time.Duration {
	kub := p.b.kubeletNow()
	p.mu.Lock()
	switch {
	case !p.ready:
		p.state = StateDiscovering
		p.mu.Unlock()
		return 0
	case !kub.present:
		p.state = StateWaitingForKubelet // LastError keeps the last failure
		p.registeredGen = 0
		p.mu.Unlock()
		return 0
	case p.registeredGen == kub.gen && p.registeredOpts == p.opts:
		p.mu.Unlock()
		return 0
	case p.backoffGen == kub.gen && time.Now().Before(p.nextAttempt):
		wait := time.Until(p.nextAttempt)
		p.mu.Unlock()
		return wait
	}
	if p.backoffGen != kub.gen {
		p.backoff.Reset() // a new kubelet: no reason to wait
	}
	opts := p.opts
	p.state = StateRegistering
	p.attempts++
	actx, cancel := context.WithTimeout(ctx, p.b.cfg.RegisterTimeout)
	p.cancelAttempt = cancel
	p.mu.Unlock()

	start := time.Now()
	err := p.callRegister(actx, opts)
	abandoned := err != nil && errors.Is(actx.Err(), context.Canceled) // by newKubelet (or ctx)
	cancel()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cancelAttempt = nil
	if err == nil {
		p.registeredLocked()
		p.registeredGen, p.registeredOpts = kub.gen, opts
		p.registrations++
		p.registeredAt = time.Now()
		p.attempts, p.nextAttempt = 0, time.Time{}
		p.backoff.Reset()
		p.log.Info("registered with the kubelet", "kubelet_socket", p.b.kubeletSock, "took", time.Since(start).Round(time.Microsecond),
			"since_kubelet_appeared", time.Since(kub.since).Round(time.Microsecond), "registrations", p.registrations)
		return 0
	}
	if ctx.Err() != nil || p.stopped() {
		return 0
	}
	if abandoned {
		p.log.Debug("registration abandoned: a new kubelet.sock appeared", "error", err)
		return 0 // the kick is pending
	}
	state := StateUnreachable
	if s, ok := status.FromError(err); ok && s.Code() != codes.Unavailable && s.Code() != codes.DeadlineExceeded && s.Code() != codes.Canceled {
		state = StateRefused
	}
	wait := p.backoff.Fail()
	p.backoffGen, p.nextAttempt = kub.gen, p.backoff.Until()
	p.state, p.lastErr = state, err.Error()
	if state == StateRefused {
		p.log.Error("the kubelet refused the registration; retrying", "reason", status.Convert(err).Message(),
			"code", status.Code(err), "attempt", p.attempts, "retry_in", wait)
	} else {
		p.log.Warn("cannot reach the kubelet to register; retrying", "kubelet_socket", p.b.kubeletSock, "error", err,
			"attempt", p.attempts, "retry_in", wait)
	}
	return wait
}

// callRegister is one Register call on kubelet.sock.
func (p *plugin) callRegister(ctx context.Context, opts devicemanager.ProviderOptions) error {
	cc, err := unixgrpc.Dial(p.b.kubeletSock)
	if err != nil {
		return fmt.Errorf("kubelet socket %s: %w", p.b.kubeletSock, err)
	}
	defer cc.Close()
	_, err = pluginapi.NewRegistrationClient(cc).Register(ctx, &pluginapi.RegisterRequest{
		Version:      pluginapi.Version,
		Endpoint:     p.name,
		ResourceName: p.resource,
		Options: &pluginapi.DevicePluginOptions{PreStartRequired: opts.PreStartRequired,
			GetPreferredAllocationAvailable: opts.PreferredAllocation},
	})
	return err
}

// reconcileRegistry serves the registration socket in the plugin registry.
// The device plugin socket made again means the kubelet lost it (it
// restarted): the registration socket is made again too, so that the
// kubelet's plugin watcher registers the source at once.
func (p *plugin) reconcileRegistry(reg *sock, dpCreated bool) time.Duration {
	p.mu.Lock()
	ready := p.ready
	refresh := !p.regRefresh.IsZero() && !time.Now().Before(p.regRefresh)
	if !ready {
		p.state = StateDiscovering
	}
	p.mu.Unlock()
	if !ready {
		return 0
	}
	if (dpCreated || refresh) && reg.lis != nil {
		reg.remove()
		reg.lis.Close()
		reg.lis = nil
		p.mu.Lock()
		p.regRefresh = time.Time{}
		p.mu.Unlock()
	}
	created, err := reg.ensure()
	if err != nil {
		p.fail(StateUnreachable, err)
		return p.b.cfg.BackoffInitial
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if created {
		if p.state != StateRefused {
			p.state = StateWaitingForKubelet
		}
		p.log.Debug("registration socket ready for the kubelet's plugin watcher", "path", p.regPath)
	}
	if !p.regRefresh.IsZero() {
		return time.Until(p.regRefresh)
	}
	return 0
}

// registeredLocked records a registration that succeeded. The error it
// clears is the registration's: a source that went away meanwhile (the
// kubelet answered after orphan) keeps saying so.
func (p *plugin) registeredLocked() {
	p.state = StateRegistered
	if p.graceUntil.IsZero() {
		p.lastErr = ""
	}
}

// notified records the kubelet's answer to a plugin-registry registration.
func (p *plugin) notified(registered bool, reason string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if registered {
		p.registeredLocked()
		p.registrations++
		p.registeredAt = time.Now()
		p.attempts, p.regRefresh, p.nextAttempt = 0, time.Time{}, time.Time{}
		p.backoff.Reset()
		p.log.Info("registered with the kubelet through its plugin registry", "registration_socket", p.regPath,
			"registrations", p.registrations)
		return
	}
	p.attempts++
	wait := p.backoff.Fail()
	p.regRefresh = p.backoff.Until()
	p.nextAttempt = p.regRefresh
	p.state, p.lastErr = StateRefused, reason
	p.log.Error("the kubelet refused the registration; offering it again", "reason", reason, "attempt", p.attempts,
		"retry_in", wait)
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// fail records a failure to serve.
func (p *plugin) fail(state State, err error) {
	p.mu.Lock()
	changed := p.lastErr != err.Error()
	p.state, p.lastErr = state, err.Error()
	p.mu.Unlock()
	if changed {
		p.log.Error("cannot serve the device source to the kubelet", "error", err)
	}
}

// shutdown ends the streams, stops serving and removes the sockets.
func (p *plugin) shutdown(dp, reg *sock) {
	gone := false
	select {
	case <-p.quit:
		gone = p.gone // written before quit closed
	default:
	}
	p.mu.Lock()
	if gone {
		p.setDevicesLocked(nil, nil) // the source went: its devices too
	}
	close(p.stopping)
	if p.unwatch != nil {
		p.unwatch()
	}
	if p.cancelAttempt != nil {
		p.cancelAttempt()
	}
	p.state = StateStopped
	p.mu.Unlock()
	for _, s := range []*sock{reg, dp} {
		if s == nil {
			continue
		}
		s.remove()
		done := make(chan struct{})
		go func() {
			s.srv.GracefulStop() // the streams end at once; calls in a module get a moment
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(2 * time.Second):
			s.srv.Stop()
			<-done
		}
	}
	p.log.Info("stopped serving the device source to the kubelet", "source_gone", gone)
}

// status is a snapshot of the plugin.
func (p *plugin) status() Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := Status{Resource: p.resource, Socket: p.path, RegistrationSocket: p.regPath, Mode: p.b.cfg.Registration,
		State: p.state, LastError: p.lastErr, Attempts: p.attempts, Registrations: p.registrations,
		RegisteredAt: p.registeredAt, NextAttempt: p.nextAttempt, SocketsCreated: p.socketsCreated,
		Streams: p.streams, Devices: len(p.devices), Options: p.opts, GraceDeadline: p.graceUntil}
	if p.prov != nil {
		st.Provider = p.prov.Name()
	}
	if p.state == StateRegistered || p.state == StateRegistering || p.state == StateDiscovering {
		st.NextAttempt = time.Time{}
	}
	for _, d := range p.devices {
		if d.Health == pluginapi.Healthy {
			st.Healthy++
		}
	}
	return st
}
