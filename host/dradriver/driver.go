package dradriver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	resourceapi "k8s.io/api/resource/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/dynamic-resource-allocation/kubeletplugin"
	"k8s.io/dynamic-resource-allocation/resourceslice"
	"k8s.io/klog/v2"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"

	"github.com/wasmlet/wasmlet/host/claim"
	"github.com/wasmlet/wasmlet/host/device"
	wresourceslice "github.com/wasmlet/wasmlet/host/device/resourceslice"
	"github.com/wasmlet/wasmlet/host/internal/backoff"
)

// State is where a driver stands with the kubelet.
type State string

// The states.
const (
	// StateDiscovering: the source has not reported its devices yet; the
	// driver registers once it has.
	StateDiscovering State = "discovering"
	// StateWaitingForKubelet: the sockets are served; the kubelet's plugin
	// watcher has not registered the driver yet.
	StateWaitingForKubelet State = "waiting-for-kubelet"
	StateRegistered        State = "registered"
	// StateRefused: the kubelet answered the registration with an error.
	StateRefused State = "refused"
	// StateFailed: the sockets could not be served; retried after a
	// backoff.
	StateFailed  State = "failed"
	StateStopped State = "stopped"
)

// Slices is where a driver's ResourceSlices stand in the API server.
type Slices string

// The slice states.
const (
	// SlicesPending: not yet published, or not yet seen in the API server
	// as published.
	SlicesPending Slices = "pending"
	// SlicesPublished: the API server holds exactly the pool's devices and
	// counters as last discovered.
	SlicesPublished Slices = "published"
	// SlicesUnreachable: the API server did not answer; retried with a
	// backoff.
	SlicesUnreachable Slices = "api-server-unreachable"
	// SlicesRefused: the API server answered, and refused the slices (they
	// are invalid, too large, or wasmlet may not write them); retried with
	// a backoff, and at every change of the devices.
	SlicesRefused Slices = "refused-by-api-server"
	// SlicesWithdrawn: the source went, and so did its slices.
	SlicesWithdrawn Slices = "withdrawn"
)

// Status is a snapshot of one driver.
type Status struct {
	Driver, Resource, Provider string
	// Pool is the pool's name: the node's.
	Pool string
	// RegistrationSocket is in the kubelet's plugin registry; Socket is
	// the DRA service the kubelet calls.
	RegistrationSocket, Socket string
	State                      State
	// Registrations counts NotifyRegistrationStatus(true) calls of the
	// kubelet; RegisteredAt is the last one.
	Registrations int
	RegisteredAt  time.Time
	// Starts counts the times the sockets were served: the first, and
	// every time after they were deleted.
	Starts int
	// Slices is where the ResourceSlices stand; SlicesError is why the
	// API server was not reached, SlicesSince since when the slices are in
	// that state, Generation the pool's generation in the API server when
	// published.
	Slices      Slices
	SlicesError string
	SlicesSince time.Time
	Generation  int64
	// LastError is the last error of the sockets or of a registration.
	LastError string
	Devices   int
	Healthy   int
	// LeftOut counts the devices of the latest discovery that are not in
	// the slices, and LeftOutReason says why: a device whose name in the
	// slices another device of the source already has, or more devices
	// than Config.MaxDevices.
	LeftOut       int
	LeftOutReason string
	// Prepared counts the claims prepared for the kubelet and not yet
	// unprepared.
	Prepared int
}

// driver is one source served as a DRA driver.
type driver struct {
	ds       *Drivers
	resource string
	src      Source
	name     string // the driver's name
	log      hclog.Logger
	regPath  string // registration socket
	sockPath string // DRA service socket
	dataDir  string

	wake     chan struct{} // capacity 1: look at the sockets and slices again
	publish  chan struct{} // capacity 1: publish the latest devices
	restart  chan struct{} // capacity 1: a socket went, or the server failed; serve them again
	quit     chan struct{}
	quitOnce sync.Once
	gone     atomic.Bool // set before quit closes: the source went away
	done     chan struct{}

	mu           sync.Mutex
	helper       *kubeletplugin.Helper
	devices      []device.Device
	counters     []device.CounterSet
	ids          map[string]string // device id by name
	leftOut      int
	serverFailed bool // a gRPC server of the helper failed: serve again
	leftOutWhy   string
	ready        bool          // a device set is known
	changed      chan struct{} // closed and replaced on every new set
	state        State
	lastErr      string
	regs         int
	regAt        time.Time
	starts       int
	slices       Slices
	slicesErr    string
	since        time.Time
	gen          int64
}

func newDriver(ds *Drivers, resource string, src Source) *driver {
	name := src.Driver()
	d := &driver{ds: ds, resource: resource, src: src, name: name,
		log:  ds.log.With("driver", name, "resource", resource),
		wake: make(chan struct{}, 1), publish: make(chan struct{}, 1), restart: make(chan struct{}, 1),
		quit: make(chan struct{}), done: make(chan struct{}), changed: make(chan struct{}),
		state: StateDiscovering, slices: SlicesPending, since: time.Now(),
		dataDir: filepath.Join(ds.cfg.PluginDir, name)}
	d.sockPath = filepath.Join(d.dataDir, "dra.sock")
	if ds.cfg.PodUID != "" {
		d.sockPath = filepath.Join(d.dataDir, "dra-"+ds.cfg.PodUID+".sock")
		d.regPath = filepath.Join(ds.cfg.RegistryDir, kubeletplugin.RollingUpdateRegistrarSocketFile(ds.cfg.RegistryDir, name, types.UID(ds.cfg.PodUID)))
	} else {
		d.regPath = filepath.Join(ds.cfg.RegistryDir, name+"-reg.sock")
	}
	return d
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// stop ends the driver. gone: the source went away, so its slices are
// withdrawn.
func (d *driver) stop(gone bool) {
	d.quitOnce.Do(func() {
		d.gone.Store(gone)
		close(d.quit)
	})
}

// run serves the driver until ctx is done or stop is called.
func (d *driver) run(ctx context.Context) {
	defer close(d.done)
	ctx, cancel := context.WithCancel(klog.NewContext(ctx, newLogger(d.log)))
	defer cancel()
	go func() {
		select {
		case <-d.quit:
			cancel()
		case <-ctx.Done():
		}
	}()
	watched := make(chan error, 1)
	go func() { watched <- d.src.Watch(ctx, d.update) }()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); d.publisher(ctx) }()

	serve := backoff.New(d.ds.cfg.BackoffInitial, d.ds.cfg.BackoffMax, nil)
	verify := backoff.New(d.ds.cfg.VerifyInitial, d.ds.cfg.BackoffMax, nil)
	var serveAt, verifyAt <-chan time.Time
	timer := func(delay time.Duration) <-chan time.Time { return time.After(delay) }
	lost := false
	// The slices are checked again now and then even when nothing
	// changed: someone may have deleted them, or the API server gone.
	resync := time.NewTicker(d.ds.cfg.ResyncPeriod)
	defer resync.Stop()
	for ctx.Err() == nil {
		d.mu.Lock()
		ready, helper := d.ready, d.helper
		d.mu.Unlock()
		if ready && helper == nil && serveAt == nil && !lost {
			if err := d.serve(ctx); err != nil {
				delay := serve.Fail()
				d.setState(StateFailed, err.Error())
				d.log.Error("cannot serve the DRA driver's sockets; retrying", "error", err, "retry_in", delay)
				serveAt = timer(delay)
			} else {
				serve.Reset()
				signal(d.publish)
				verify.Reset()
				verifyAt = timer(0)
			}
		}
		select {
		case <-ctx.Done():
		case err := <-watched:
			if ctx.Err() == nil {
				lost = true
				d.log.Warn("device source lost; its devices are unhealthy until it is back", "error", err)
				d.markUnhealthy()
				signal(d.publish)
				verifyAt = timer(0)
			}
		case <-serveAt:
			serveAt = nil
		case <-d.restart:
			d.mu.Lock()
			failed := d.serverFailed
			d.serverFailed = false
			d.mu.Unlock()
			// Asked before the last restart, perhaps: only what is
			// there now counts.
			if missing := d.missingSocket(); missing != "" {
				d.log.Info("a socket of the DRA driver was deleted; serving them again", "deleted", missing)
			} else if !failed {
				continue
			}
			d.stopHelper()
		case <-d.wake:
			verify.Reset()
			verifyAt = timer(0)
		case <-resync.C:
			if verifyAt == nil {
				verifyAt = timer(0)
			}
		case <-verifyAt:
			verifyAt = nil
			switch err := d.verify(ctx); {
			case err == nil:
				verify.Reset()
			case ctx.Err() != nil:
			default:
				delay := verify.Fail()
				d.log.Debug("ResourceSlices not in step yet; publishing again", "reason", err, "retry_in", delay)
				signal(d.publish) // the controller's own retries back off up to 17 minutes
				verifyAt = timer(delay)
			}
		}
	}
	d.stopHelper()
	wg.Wait()
	d.mu.Lock()
	d.state = StateStopped
	d.mu.Unlock()
	if d.gone.Load() {
		// Not waited for: a removal must not wait for the API server.
		d.ds.wg.Add(1)
		go func() {
			defer d.ds.wg.Done()
			d.withdraw()
		}()
	}
}

// update takes a device set from the source.
func (d *driver) update(devs []device.Device) {
	counters := d.src.SharedCounters()
	kept, ids, leftOut, why := admit(devs, d.ds.cfg.MaxDevices)
	d.mu.Lock()
	report := why != d.leftOutWhy
	d.devices, d.counters, d.ids, d.ready = kept, counters, ids, true
	d.leftOut, d.leftOutWhy = leftOut, why
	close(d.changed)
	d.changed = make(chan struct{})
	d.mu.Unlock()
	if report && leftOut > 0 {
		d.log.Warn("devices of the source left out of its ResourceSlices", "left_out", leftOut, "reason", why)
	}
	signal(d.publish)
	signal(d.wake)
}

// admit is what of devs the slices hold, in the source's order: every
// device whose name in the slices (DeviceName) no device before it has, up
// to limit devices; and the id of each by its name. The rest are left out,
// and why says why (the first few, by id).
func admit(devs []device.Device, limit int) (kept []device.Device, ids map[string]string, leftOut int, why string) {
	kept = make([]device.Device, 0, min(len(devs), limit))
	ids = make(map[string]string, len(kept))
	var reasons []string
	for _, dev := range devs {
		name := DeviceName(dev.ID)
		var reason string
		if other, taken := ids[name]; taken {
			reason = fmt.Sprintf("device %q is named %q in the slices, as device %q already is", dev.ID, name, other)
		} else if len(kept) == limit {
			reason = fmt.Sprintf("device %q is beyond the %d devices a driver publishes ([dra] max_devices)", dev.ID, limit)
		} else {
			ids[name] = dev.ID
			kept = append(kept, dev)
			continue
		}
		if leftOut++; len(reasons) < 3 {
			reasons = append(reasons, reason)
		}
	}
	if leftOut > len(reasons) {
		reasons = append(reasons, fmt.Sprintf("and %d more", leftOut-len(reasons)))
	}
	return kept, ids, leftOut, strings.Join(reasons, "; ")
}

// markUnhealthy marks every device unhealthy: the source is lost.
func (d *driver) markUnhealthy() {
	d.mu.Lock()
	devs := device.Clone(d.devices)
	for i := range devs {
		devs[i].Healthy = false
	}
	d.devices = devs
	close(d.changed)
	d.changed = make(chan struct{})
	d.mu.Unlock()
}

// resources is the driver's pool as the kubelet plugin helper publishes it.
func (d *driver) resources() resourceslice.DriverResources {
	d.mu.Lock()
	devs, counters := d.devices, d.counters
	d.mu.Unlock()
	pool := wresourceslice.Pool{Driver: d.name, Name: d.ds.cfg.NodeName, Node: d.ds.cfg.NodeName}
	var p resourceslice.Pool
	for _, s := range pool.Slices(devs, counters) {
		for i := range s.Spec.Devices {
			s.Spec.Devices[i].Name = DeviceName(s.Spec.Devices[i].Name)
		}
		p.Slices = append(p.Slices, resourceslice.Slice{Devices: s.Spec.Devices, SharedCounters: s.Spec.SharedCounters})
	}
	return resourceslice.DriverResources{Pools: map[string]resourceslice.Pool{d.ds.cfg.NodeName: p}}
}

// publisher hands the latest devices to the helper whenever they change.
// The helper's first PublishResources starts its ResourceSlice controller,
// which waits for the API server: it runs here, not in run's loop.
func (d *driver) publisher(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.publish:
		}
		d.mu.Lock()
		helper := d.helper
		d.mu.Unlock()
		if helper == nil {
			continue // serve publishes when it starts one
		}
		if err := helper.PublishResources(ctx, d.resources()); err != nil && ctx.Err() == nil {
			d.setSlices(SlicesUnreachable, err.Error())
		}
	}
}

// serve starts the kubelet plugin helper: the DRA service and the
// registration socket, and the ResourceSlice controller on the first
// publish.
func (d *driver) serve(ctx context.Context) error {
	for _, dir := range []string{d.dataDir, d.ds.cfg.RegistryDir} {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return fmt.Errorf("dra driver %s: %w", d.name, err)
		}
	}
	opts := []kubeletplugin.Option{
		kubeletplugin.DriverName(d.name),
		kubeletplugin.KubeClient(d.ds.cfg.Client),
		kubeletplugin.NodeName(d.ds.cfg.NodeName),
		kubeletplugin.RegistrarDirectoryPath(d.ds.cfg.RegistryDir),
		kubeletplugin.PluginDataDirectoryPath(d.dataDir),
		kubeletplugin.GRPCInterceptor(d.intercept),
		kubeletplugin.GRPCVerbosity(-1),
	}
	if d.ds.cfg.NodeUID != "" {
		opts = append(opts, kubeletplugin.NodeUID(types.UID(d.ds.cfg.NodeUID)))
	}
	if d.ds.cfg.PodUID != "" {
		opts = append(opts, kubeletplugin.RollingUpdate(types.UID(d.ds.cfg.PodUID)))
	}
	helper, err := kubeletplugin.Start(ctx, &plugin{d: d}, opts...)
	if err != nil {
		return fmt.Errorf("dra driver %s: registration socket %s, service socket %s: %w", d.name, d.regPath, d.sockPath, err)
	}
	d.mu.Lock()
	d.helper = helper
	d.starts++
	d.state, d.lastErr = StateWaitingForKubelet, ""
	d.mu.Unlock()
	d.log.Info("DRA driver served to the kubelet", "registration", d.regPath, "socket", d.sockPath)
	return nil
}

func (d *driver) stopHelper() {
	d.mu.Lock()
	helper := d.helper
	d.helper = nil
	d.mu.Unlock()
	helper.Stop()
}

// The registration service's methods, as the helper serves them.
const notifyMethod = "/pluginregistration.Registration/NotifyRegistrationStatus"

// intercept sees every call the kubelet makes: a registration notified
// makes the driver publish again (a kubelet that starts deletes the node's
// ResourceSlices, and the helper's controller would only notice 30 s later).
func (d *driver) intercept(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if info.FullMethod == notifyMethod {
		if st, ok := req.(*registerapi.RegistrationStatus); ok {
			d.registered(st)
		}
	}
	return handler(ctx, req)
}

func (d *driver) registered(st *registerapi.RegistrationStatus) {
	d.mu.Lock()
	if st.PluginRegistered {
		d.state, d.lastErr = StateRegistered, ""
		d.regs++
		d.regAt = time.Now()
	} else {
		d.state, d.lastErr = StateRefused, st.Error
	}
	d.mu.Unlock()
	if st.PluginRegistered {
		d.log.Info("registered with the kubelet")
		signal(d.publish)
		signal(d.wake)
	} else {
		d.log.Error("the kubelet refused the DRA driver", "error", st.Error)
	}
}

func (d *driver) setState(s State, err string) {
	d.mu.Lock()
	d.state, d.lastErr = s, err
	d.mu.Unlock()
}

func (d *driver) setSlices(s Slices, err string) {
	d.mu.Lock()
	if d.slices != s {
		d.since = time.Now()
	}
	d.slices, d.slicesErr = s, err
	d.mu.Unlock()
}

// selector selects the driver's slices on this node.
func (d *driver) selector() string {
	return fields.Set{resourceapi.ResourceSliceSelectorDriver: d.name,
		resourceapi.ResourceSliceSelectorNodeName: d.ds.cfg.NodeName}.String()
}

// verify compares the driver's ResourceSlices in the API server with the
// pool as last discovered: the helper's controller publishes without
// saying when it is done, or that it cannot reach the API server.
func (d *driver) verify(ctx context.Context) error {
	d.mu.Lock()
	ready := d.ready && d.helper != nil
	d.mu.Unlock()
	if !ready {
		return nil
	}
	want := d.resources().Pools[d.ds.cfg.NodeName].Slices
	cctx, cancel := context.WithTimeout(ctx, d.ds.cfg.RequestTimeout)
	list, err := d.ds.cfg.Client.ResourceV1().ResourceSlices().List(cctx, metav1.ListOptions{FieldSelector: d.selector()})
	cancel()
	if err != nil {
		d.setSlices(SlicesUnreachable, fmt.Sprintf("listing ResourceSlices of %s: %v", d.name, err))
		return err
	}
	gen, err := inStep(list.Items, want)
	if err != nil {
		d.mu.Lock()
		refused := d.slices == SlicesRefused
		d.mu.Unlock()
		if !refused { // the refusal says more
			d.setSlices(SlicesPending, err.Error())
		}
		return err
	}
	d.mu.Lock()
	changed := d.slices != SlicesPublished || d.gen != gen
	d.gen = gen
	d.mu.Unlock()
	d.setSlices(SlicesPublished, "")
	if changed {
		d.log.Debug("ResourceSlices published", "generation", gen, "slices", len(want))
	}
	return nil
}

// inStep says whether have, the slices of the pool in the API server, are
// want, and at which generation.
func inStep(have []resourceapi.ResourceSlice, want []resourceslice.Slice) (int64, error) {
	var gen int64
	for _, s := range have {
		gen = max(gen, s.Spec.Pool.Generation)
	}
	var current []resourceapi.ResourceSlice
	for _, s := range have {
		if s.Spec.Pool.Generation == gen {
			current = append(current, s)
		}
	}
	if len(current) != len(want) {
		return 0, fmt.Errorf("%d slices in the API server, want %d", len(current), len(want))
	}
	used := make([]bool, len(current))
	for i, w := range want {
		found := false
		for j, s := range current {
			if !used[j] && resourceslice.DevicesDeepEqual(s.Spec.Devices, w.Devices) &&
				apiequality.Semantic.DeepEqual(s.Spec.SharedCounters, w.SharedCounters) {
				used[j], found = true, true
				break
			}
		}
		if !found {
			return 0, fmt.Errorf("slice %d (%d devices) is not in the API server as discovered", i, len(w.Devices))
		}
	}
	return gen, nil
}

// withdraw deletes the driver's slices: its source went. The helper is
// stopped (its controller would publish them again); the kubelet, which
// deletes a driver's slices some time after the driver unregisters, is the
// safety net when the API server cannot be reached before wasmlet stops.
func (d *driver) withdraw() {
	ctx := d.ds.ctx
	b := backoff.New(d.ds.cfg.BackoffInitial, d.ds.cfg.BackoffMax, nil)
	for {
		cctx, cancel := context.WithTimeout(ctx, d.ds.cfg.RequestTimeout)
		err := d.ds.cfg.Client.ResourceV1().ResourceSlices().DeleteCollection(cctx, metav1.DeleteOptions{},
			metav1.ListOptions{FieldSelector: d.selector()})
		cancel()
		if err == nil {
			d.setSlices(SlicesWithdrawn, "")
			d.log.Info("device source removed: its ResourceSlices are withdrawn")
			return
		}
		d.setSlices(SlicesUnreachable, fmt.Sprintf("withdrawing the ResourceSlices of %s: %v", d.name, err))
		delay := b.Fail()
		d.log.Warn("cannot withdraw the ResourceSlices of a removed source; retrying", "error", err, "retry_in", delay)
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
	}
}

// status is a snapshot.
func (d *driver) status() Status {
	d.mu.Lock()
	defer d.mu.Unlock()
	st := Status{Driver: d.name, Resource: d.resource, Provider: d.src.Name(), Pool: d.ds.cfg.NodeName,
		RegistrationSocket: d.regPath, Socket: d.sockPath, State: d.state, Registrations: d.regs, RegisteredAt: d.regAt,
		Starts: d.starts, Slices: d.slices, SlicesError: d.slicesErr, SlicesSince: d.since, Generation: d.gen,
		LastError: d.lastErr, Devices: len(d.devices), LeftOut: d.leftOut, LeftOutReason: d.leftOutWhy}
	for _, dev := range d.devices {
		if dev.Healthy {
			st.Healthy++
		}
	}
	if d.ds.cfg.Claims != nil {
		st.Prepared = len(d.ds.cfg.Claims.KubeletClaims(d.name))
	}
	return st
}

// plugin is the driver as the kubelet plugin helper calls it.
type plugin struct{ d *driver }

var _ kubeletplugin.DRAPlugin = (*plugin)(nil)

// PrepareResourceClaims prepares each claim through the claim store: the
// module's prepare (or its devices' edits), a CDI spec per claim, durably
// recorded; a claim already prepared gets the same answer again.
func (p *plugin) PrepareResourceClaims(ctx context.Context, claims []*resourceapi.ResourceClaim) (map[types.UID]kubeletplugin.PrepareResult, error) {
	d := p.d
	out := make(map[types.UID]kubeletplugin.PrepareResult, len(claims))
	for _, rc := range claims {
		c, err := d.ds.cfg.Claims.PrepareForKubelet(ctx, rc, d.name, source{d})
		if err != nil {
			d.log.Warn("cannot prepare a claim for the kubelet", "claim", rc.Namespace+"/"+rc.Name, "uid", rc.UID, "error", err)
			out[rc.UID] = kubeletplugin.PrepareResult{Err: err}
			continue
		}
		res := kubeletplugin.PrepareResult{Devices: []kubeletplugin.Device{}}
		for _, pd := range c.Prepared {
			res.Devices = append(res.Devices, kubeletplugin.Device{
				Requests: []string{pd.Request}, PoolName: d.ds.cfg.NodeName, DeviceName: DeviceName(pd.Device),
				CDIDeviceIDs: slices.Clone(pd.Edits.CDIDevices), ShareID: shareID(c.Object, pd.Request, pd.Device)})
		}
		out[rc.UID] = res
	}
	return out, nil
}

// shareID is the share of device that request of rc was allocated, if any.
func shareID(rc *resourceapi.ResourceClaim, request, dev string) *types.UID {
	for _, r := range rc.Status.Allocation.Devices.Results {
		if r.Request == request && r.Device == DeviceName(dev) && r.ShareID != nil {
			id := *r.ShareID
			return &id
		}
	}
	return nil
}

// UnprepareResourceClaims unprepares each claim, by UID: it works after a
// restart, from the checkpoint, and a claim that is not prepared is done.
func (p *plugin) UnprepareResourceClaims(ctx context.Context, claims []kubeletplugin.NamespacedObject) (map[types.UID]error, error) {
	d := p.d
	out := make(map[types.UID]error, len(claims))
	for _, c := range claims {
		out[c.UID] = d.ds.cfg.Claims.UnprepareForKubelet(ctx, d.name, c.UID, source{d})
	}
	return out, nil
}

// HandleError is told of errors in the background: publishing slices
// (always recoverable: the controller retries), or a socket's server.
func (p *plugin) HandleError(ctx context.Context, err error, msg string) {
	d := p.d
	var dropped *resourceslice.DroppedFieldsError
	switch {
	case errors.As(err, &dropped):
		d.setSlices(SlicesPending, fmt.Sprintf("%s: the API server dropped fields (features %v disabled): %v", msg, dropped.DisabledFeatures(), err))
		d.log.Error("the API server dropped fields of the driver's ResourceSlices", "features", dropped.DisabledFeatures())
	case refusal(err):
		d.setSlices(SlicesRefused, fmt.Sprintf("%s: %v", msg, err))
		d.log.Warn("the API server refused the driver's ResourceSlices; retrying", "error", err)
		signal(d.wake)
	case errors.Is(err, kubeletplugin.ErrRecoverable):
		d.setSlices(SlicesUnreachable, fmt.Sprintf("%s: %v", msg, err))
		d.log.Debug("publishing ResourceSlices failed; retrying", "error", err)
		signal(d.wake)
	default:
		d.setState(StateFailed, fmt.Sprintf("%s: %v", msg, err))
		d.log.Error("the DRA driver's gRPC server failed; serving again", "error", err, "what", msg)
		d.mu.Lock()
		d.serverFailed = true
		d.mu.Unlock()
		signal(d.restart)
	}
}

// refusal says whether err is the API server's answer that it will not
// take the slices as they are, rather than a failure to reach it: an
// invalid object, one too large, or a request wasmlet may not make.
func refusal(err error) bool {
	return apierrors.IsInvalid(err) || apierrors.IsBadRequest(err) || apierrors.IsRequestEntityTooLargeError(err) ||
		apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err)
}

// WatchHealthStatus sends the health of every device to the kubelet: now,
// whenever it changes, and again every HealthResend (the kubelet forgets a
// device's health it has not heard of within 30 s).
func (p *plugin) WatchHealthStatus(ctx context.Context, reports chan<- kubeletplugin.DeviceHealthReport) error {
	d := p.d
	tick := time.NewTicker(d.ds.cfg.HealthResend)
	defer tick.Stop()
	for {
		d.mu.Lock()
		devs, changed := d.devices, d.changed
		d.mu.Unlock()
		now := time.Now()
		report := kubeletplugin.DeviceHealthReport{Devices: make([]kubeletplugin.DeviceHealth, len(devs))}
		for i, dev := range devs {
			h := kubeletplugin.HealthStatusHealthy
			if !dev.Healthy {
				h = kubeletplugin.HealthStatusUnhealthy
			}
			report.Devices[i] = kubeletplugin.DeviceHealth{PoolName: d.ds.cfg.NodeName, DeviceName: DeviceName(dev.ID),
				Health: h, LastUpdated: now}
		}
		select {
		case <-ctx.Done():
			return nil
		case reports <- report:
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		case <-tick.C:
		}
	}
}

// source is the driver's source as the claim store calls it: claims name
// devices by their names in the slices, the source by their ids.
type source struct{ d *driver }

var _ claim.Driver = source{}

func (s source) Prepare(ctx context.Context, rc *resourceapi.ResourceClaim, workload string) ([]device.Prepared, error) {
	rc, err := s.d.byID(rc)
	if err != nil {
		return nil, err
	}
	return s.d.src.Prepare(ctx, rc, workload)
}

func (s source) Unprepare(ctx context.Context, rc *resourceapi.ResourceClaim) error {
	rc, err := s.d.byID(rc)
	if err != nil {
		return err
	}
	return s.d.src.Unprepare(ctx, rc)
}

// byID is rc with the driver's devices named by their ids.
func (d *driver) byID(rc *resourceapi.ResourceClaim) (*resourceapi.ResourceClaim, error) {
	rc = rc.DeepCopy()
	d.mu.Lock()
	defer d.mu.Unlock()
	for i, r := range rc.Status.Allocation.Devices.Results {
		if r.Driver != d.name {
			continue
		}
		if r.Pool != d.ds.cfg.NodeName {
			return nil, fmt.Errorf("claim %s/%s: device %s is in pool %q, not in this node's (%q)", rc.Namespace, rc.Name, r.Device, r.Pool, d.ds.cfg.NodeName)
		}
		id, ok := d.ids[r.Device]
		if !ok {
			return nil, fmt.Errorf("claim %s/%s: device %s is not among the %d devices driver %s last discovered", rc.Namespace, rc.Name, r.Device, len(d.ids), d.name)
		}
		rc.Status.Allocation.Devices.Results[i].Device = id
	}
	return rc, nil
}
