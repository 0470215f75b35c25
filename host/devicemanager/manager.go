// Package devicemanager is wasmlet's device manager: the kubelet's side of
// the device plugin API. It keeps one provider per extended resource — an
// external device plugin (host/endpoint) or a WebAssembly device source
// (host/devicesource) — follows its device set and health, hands devices to
// containers, and checkpoints what it handed out (package checkpoint) before
// it says so.
//
// Device plugins reach it two ways, as with the kubelet: by calling Register
// on kubelet.sock in the device plugin directory (Server), or by registering
// through the plugin registry with a DevicePlugin handler
// (RegisterDevicePlugin, called through host/pluginmanager/wasmhandler).
// Both end in SetProvider. The registration service (Server) keeps the
// device plugin directory as the kubelet does: it refuses a directory where
// another process serves kubelet.sock, removes every socket in it when it
// starts, and creates kubelet.sock again when it goes. A resource a
// device-source module owns (Server.SetOwner) is refused to device
// plugins, with a reason naming the module.
//
// Resources: capacity is every device, allocatable the healthy ones not
// allocated. When a provider is lost its devices turn unhealthy at once and
// disappear after the grace period, unless a provider for the resource comes
// back first — a new provider takes over cleanly, even if the old one's
// stream has not ended yet: updates from a superseded provider are ignored.
//
// Allocation: for a workload (namespace/pod/container) and a count, the
// devices come from the provider's preferred allocation when it offers one,
// or else from a NUMA-aware default that uses as few NUMA nodes as it can;
// then Allocate and, when required, PreStart; then the checkpoint. Devices are
// reserved while that happens, so concurrent allocations never share one.
// Allocation is idempotent per workload and resource. An allocation or a
// release that cannot be made durable is undone.
//
// A provider that names a driver (ProviderOptions.Driver: a Wasm device
// source) is that driver's pool in the node's structured allocator
// (Config.Allocator, host/allocator): the manager keeps the pool in step
// with the provider's devices, and a count request becomes one exact-count
// request on the driver's default class, with the choice above listed
// first, in the one allocated state claims (host/claim) share (pool.go).
// The claims are a Part of the manager's checkpoint, committed with it
// (Commit).
package devicemanager

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/wasmlet/wasmlet/checkpoint"
	"github.com/wasmlet/wasmlet/host/allocator"
	"github.com/wasmlet/wasmlet/host/device"
	"github.com/wasmlet/wasmlet/host/internal/defaults"
)

// Config wires a device manager.
type Config struct {
	// CheckpointPath is the checkpoint file; empty keeps no checkpoint.
	CheckpointPath string
	// GracePeriod is how long a lost provider's devices stay, unhealthy.
	GracePeriod time.Duration
	// CallTimeout bounds each call to a provider during an allocation.
	CallTimeout time.Duration
	Logger      hclog.Logger
	Observer    Observer
	// Allocator, when set, allocates the devices of every provider that
	// names a Driver (ProviderOptions.Driver): the one allocated state that
	// count requests and claims share. Without it such providers' devices
	// are allocated as any other's.
	Allocator *allocator.Allocator
	// Parts are more state kept in the manager's checkpoint, under its
	// generation, so that every change to any of it is group-committed
	// with the rest (host/claim's claims).
	Parts []Part
}

// A Part is state kept in the manager's checkpoint besides its own.
type Part interface {
	// Restore is given the checkpoint read at start, after the manager's
	// own state is restored.
	Restore(st *checkpoint.State)
	// Snapshot adds the part's records to st. It is called with the
	// manager's lock held, so it sees no change made through Commit half
	// done; it must not call the manager.
	Snapshot(st *checkpoint.State)
}

// Observer is told about resources and allocations, for metrics.
type Observer interface {
	Devices(resource string, healthy, unhealthy, allocated int)
	Allocated(resource string, outcome string, d time.Duration)
	Released(resource string)
}

type nopObserver struct{}

func (nopObserver) Devices(string, int, int, int)           {}
func (nopObserver) Allocated(string, string, time.Duration) {}
func (nopObserver) Released(string)                         {}

type resource struct {
	name     string
	provider Provider
	pgen     uint64 // provider generation: bumped on every takeover
	cancel   context.CancelFunc
	opts     ProviderOptions
	// driver names the resource's pool in the structured allocator ("": the
	// classic path).
	driver string
	// counters are the shared counters of the devices, for a driver's pool.
	counters []device.CounterSet

	devices []device.Device // in the provider's order, without their edits
	// records are devices in the checkpoint's form, built by the first
	// snapshot after they change (nil: to build) and then shared by every
	// snapshot, never modified.
	records []*checkpoint.Device
	index   map[string]int // id -> position in devices
	holder  map[string]string

	connected      bool
	disconnectedAt time.Time
	grace          *time.Timer
	lastUpdate     time.Time
	lastErr        string
	switches       int

	allocMu sync.Mutex // serialises device choice for this resource
}

// Manager is the device manager. It is safe for concurrent use.
type Manager struct {
	cfg Config
	log hclog.Logger
	obs Observer

	mu        sync.Mutex
	resources map[string]*resource
	allocs    map[string]map[string]*Allocation // workload -> resource -> allocation
	pending   map[string]chan struct{}          // workload/resource -> allocation in progress
	gen       uint64                            // bumped by every change the checkpoint records
	runCtx    context.Context
	watchers  sync.WaitGroup
	stopping  bool // Run is shutting down: no new provider is followed

	committer *checkpoint.Committer
	restored  map[string]string // resource -> the provider the checkpoint named
}

// New creates a device manager and restores the checkpoint, if any. A
// checkpoint that cannot be read is an error: the manager refuses to start
// rather than forget what it handed out (the error says how to inspect or
// move the file).
func New(cfg Config) (*Manager, error) {
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if cfg.Observer == nil {
		cfg.Observer = nopObserver{}
	}
	defaults.Positive(&cfg.GracePeriod, 5*time.Minute)
	defaults.Positive(&cfg.CallTimeout, 30*time.Second)
	m := &Manager{cfg: cfg, log: cfg.Logger, obs: cfg.Observer, resources: map[string]*resource{},
		allocs: map[string]map[string]*Allocation{}, pending: map[string]chan struct{}{}, runCtx: context.Background()}
	if cfg.CheckpointPath != "" {
		st, err := checkpoint.Read(cfg.CheckpointPath)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			m.log.Info("no checkpoint yet; starting empty", "path", cfg.CheckpointPath)
		case err != nil:
			return nil, err
		default:
			m.restore(st)
			for _, p := range cfg.Parts {
				p.Restore(st)
			}
		}
		m.committer = checkpoint.NewCommitter(cfg.CheckpointPath, m.snapshot)
	}
	return m, nil
}

// Restored lists the resources restored from the checkpoint, each with the
// name of the provider that served it then.
func (m *Manager) Restored() map[string]string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return maps.Clone(m.restored)
}

// Run starts the grace timers of restored resources and keeps the manager
// running until ctx is done; then it stops every provider and flushes the
// checkpoint.
func (m *Manager) Run(ctx context.Context) error {
	m.mu.Lock()
	m.runCtx = ctx
	for _, r := range m.resources {
		if !r.connected {
			m.startGrace(r, r.pgen)
		}
	}
	m.mu.Unlock()
	<-ctx.Done()
	m.mu.Lock()
	m.stopping = true
	for _, r := range m.resources {
		if r.cancel != nil {
			r.cancel()
		}
		if r.grace != nil {
			r.grace.Stop()
		}
	}
	m.mu.Unlock()
	m.watchers.Wait()
	if m.committer != nil {
		return m.committer.Close()
	}
	return nil
}

func (m *Manager) get(name string) *resource {
	r := m.resources[name]
	if r == nil {
		r = &resource{name: name, index: map[string]int{}, holder: map[string]string{}}
		m.resources[name] = r
	}
	return r
}

// SetProvider makes p the provider of resource name, taking over from any
// previous provider, and starts following its devices.
func (m *Manager) SetProvider(name string, p Provider) {
	m.mu.Lock()
	if m.stopping { // (a registration that finished as the node stops)
		m.mu.Unlock()
		p.Close()
		return
	}
	r := m.get(name)
	old, oldCancel := r.provider, r.cancel
	if old != nil {
		r.switches++
	}
	r.pgen++
	gen := r.pgen
	r.provider, r.opts = p, p.Options()
	m.setDriver(r, r.opts.Driver)
	r.connected, r.disconnectedAt, r.lastErr = true, time.Time{}, ""
	if r.grace != nil {
		r.grace.Stop()
		r.grace = nil
	}
	ctx, cancel := context.WithCancel(m.runCtx)
	r.cancel = cancel
	m.watchers.Add(1)
	m.mu.Unlock()

	if oldCancel != nil {
		oldCancel()
	}
	if old != nil {
		m.log.Info("provider replaced", "resource", name, "old", old.Name(), "new", p.Name())
	} else {
		m.log.Info("provider registered", "resource", name, "provider", p.Name(),
			"prestart_required", r.opts.PreStartRequired, "preferred_allocation", r.opts.PreferredAllocation)
	}
	go func() {
		defer m.watchers.Done()
		err := p.Watch(ctx, func(devs []device.Device) { m.update(name, gen, p, devs) })
		m.lost(name, gen, p, err)
		p.Close()
	}()
}

// ProviderName is the name of the provider serving resource name now, or
// "".
func (m *Manager) ProviderName(name string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r := m.resources[name]; r != nil && r.provider != nil {
		return r.provider.Name()
	}
	return ""
}

// RemoveProvider stops p if it still serves resource name (its plugin went
// away); the devices go unhealthy and the grace period starts.
func (m *Manager) RemoveProvider(name string, providerName string) {
	m.mu.Lock()
	r := m.resources[name]
	if r == nil || r.provider == nil || r.provider.Name() != providerName {
		m.mu.Unlock()
		return
	}
	gen, p, cancel := r.pgen, r.provider, r.cancel
	m.mu.Unlock()
	m.lost(name, gen, p, fmt.Errorf("%s deregistered", providerName))
	cancel() // stop following it, even if its stream lingers
}

// update replaces a resource's device set with what its provider reported.
func (m *Manager) update(name string, gen uint64, p Provider, devs []device.Device) {
	if err := ValidDevices(devs); err != nil {
		m.mu.Lock()
		if r := m.resources[name]; r != nil && r.pgen == gen {
			r.lastErr = fmt.Sprintf("device set from %s refused: %v", p.Name(), err)
		}
		m.mu.Unlock()
		m.log.Error("device set refused; keeping the previous one", "resource", name, "provider", p.Name(), "error", err)
		return
	}
	m.mu.Lock()
	r := m.resources[name]
	if r == nil || r.pgen != gen {
		m.mu.Unlock()
		return // a superseded provider: its word no longer counts
	}
	r.devices, r.records = make([]device.Device, len(devs)), nil
	r.index = make(map[string]int, len(devs))
	for i, d := range devs {
		r.devices[i] = cloneDevice(d)
		r.index[d.ID] = i
	}
	r.connected, r.lastUpdate, r.lastErr = true, time.Now(), ""
	if sc, ok := p.(SharedCounters); ok && r.driver != "" {
		r.counters = sc.SharedCounters()
	}
	m.syncPool(r)
	m.gen++
	healthy, unhealthy, allocated := r.counts()
	m.mu.Unlock()
	m.obs.Devices(name, healthy, unhealthy, allocated)
	m.log.Debug("devices updated", "resource", name, "provider", p.Name(), "healthy", healthy, "unhealthy", unhealthy)
}

// lost handles the end of a provider: if it still serves the resource, its
// devices go unhealthy and the grace period starts.
func (m *Manager) lost(name string, gen uint64, p Provider, cause error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := m.resources[name]
	if r == nil || r.pgen != gen || !r.connected || m.runCtx.Err() != nil {
		return // superseded, already lost, or wasmlet is shutting down
	}
	r.connected, r.disconnectedAt = false, time.Now()
	r.provider = nil
	if cause != nil {
		r.lastErr = cause.Error()
	}
	for i := range r.devices {
		r.devices[i].Healthy = false
	}
	r.records = nil
	m.syncPool(r)
	m.gen++
	m.startGrace(r, gen)
	healthy, unhealthy, allocated := r.counts()
	go m.obs.Devices(name, healthy, unhealthy, allocated)
	m.log.Warn("provider lost; devices unhealthy until it comes back", "resource", name, "provider", p.Name(),
		"cause", cause, "grace", m.cfg.GracePeriod)
}

// startGrace arranges for r's devices to go after the grace period, unless
// another provider takes over first. Call with m.mu held.
func (m *Manager) startGrace(r *resource, gen uint64) {
	if r.grace != nil {
		r.grace.Stop()
	}
	wait := m.cfg.GracePeriod - time.Since(r.disconnectedAt)
	r.grace = time.AfterFunc(max(wait, 0), func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		if cur := m.resources[r.name]; cur != r || r.pgen != gen || r.connected {
			return
		}
		m.log.Info("grace period over; devices removed", "resource", r.name, "devices", len(r.devices))
		r.devices, r.index, r.counters, r.records = nil, map[string]int{}, nil, nil
		if r.driver != "" && m.cfg.Allocator != nil {
			m.cfg.Allocator.RemovePool(r.driver)
		}
		r.grace = nil
		// Kept while anything holds its devices, including an allocation
		// still being made: a new resource would think them free.
		if len(r.holder) == 0 && !m.holdsAny(r.name) {
			delete(m.resources, r.name)
		}
		m.gen++
		go m.obs.Devices(r.name, 0, 0, 0)
	})
}

func (m *Manager) holdsAny(resource string) bool {
	for _, byRes := range m.allocs {
		if _, ok := byRes[resource]; ok {
			return true
		}
	}
	return false
}

func (r *resource) counts() (healthy, unhealthy, allocated int) {
	for _, d := range r.devices {
		if d.Healthy {
			healthy++
		} else {
			unhealthy++
		}
		if r.holder[d.ID] != "" {
			allocated++
		}
	}
	return
}

// cloneDevice is the device manager's copy of d. Edits are left out: a
// container's edits are the provider's answer to Allocate.
func cloneDevice(d device.Device) device.Device {
	d.Edits = device.Edits{}
	return d.Clone()
}

// Errors an allocation can meet, for callers that map them to exit codes or
// gRPC codes.
var (
	ErrUnknownResource = errors.New("unknown resource")
	ErrUnavailable     = errors.New("not enough devices")
	ErrConflict        = errors.New("workload already holds a different allocation")
	ErrInvalid         = errors.New("invalid request")
	ErrNotDurable      = errors.New("could not make the allocation durable")
)

// Allocate gives req.Count devices of req.Resource to the container, or
// returns the allocation it already has. It returns only once the allocation
// is durable.
func (m *Manager) Allocate(ctx context.Context, req AllocateRequest) (*Allocation, error) {
	start := time.Now()
	a, err := m.allocate(ctx, req)
	outcome := "ok"
	switch {
	case err == nil:
	case errors.Is(err, ErrUnavailable):
		outcome = "unavailable"
	case errors.Is(err, ErrUnknownResource):
		outcome = "unknown-resource"
	case errors.Is(err, ErrInvalid), errors.Is(err, ErrConflict):
		outcome = "invalid"
	default:
		outcome = "error"
	}
	m.obs.Allocated(req.Resource, outcome, time.Since(start))
	return a, err
}

func (m *Manager) allocate(ctx context.Context, req AllocateRequest) (*Allocation, error) {
	if req.Resource == "" || req.Count < 1 || req.Namespace == "" || req.Pod == "" || req.Container == "" {
		return nil, fmt.Errorf("%w: need namespace, pod, container, resource and a count of at least 1 (got %q/%q/%q, %q, %d)",
			ErrInvalid, req.Namespace, req.Pod, req.Container, req.Resource, req.Count)
	}
	w := req.Workload()
	key := w + "\x00" + req.Resource
	for {
		m.mu.Lock()
		// The same request in progress first: its allocation may be recorded
		// already, but it is not durable, and may yet be undone.
		if wait, busy := m.pending[key]; busy {
			m.mu.Unlock()
			select { // wait for its outcome
			case <-wait:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		if a := m.allocs[w][req.Resource]; a != nil {
			defer m.mu.Unlock()
			if len(a.DeviceIDs) != req.Count {
				return nil, fmt.Errorf("%w: %s already holds %d device(s) of %s, asked for %d; release it first",
					ErrConflict, w, len(a.DeviceIDs), req.Resource, req.Count)
			}
			return cloneAllocation(a), nil
		}
		m.pending[key] = make(chan struct{})
		m.mu.Unlock()
		break
	}
	defer func() {
		m.mu.Lock()
		close(m.pending[key])
		delete(m.pending, key)
		m.mu.Unlock()
	}()

	r, p, ids, err := m.choose(ctx, req, w)
	if err != nil {
		return nil, err
	}
	unreserve := func() {
		m.mu.Lock()
		for _, id := range ids {
			if r.holder[id] == w {
				delete(r.holder, id)
			}
		}
		m.mu.Unlock()
		m.releaseStructured(w, req.Resource)
	}
	cctx, cancel := context.WithTimeout(ctx, m.cfg.CallTimeout)
	defer cancel()
	edits, err := p.Allocate(cctx, ids, w)
	if err != nil {
		unreserve()
		return nil, fmt.Errorf("allocate %s for %s: %w", req.Resource, w, err)
	}
	if p.Options().PreStartRequired {
		if err := p.PreStart(cctx, ids, w); err != nil {
			unreserve()
			return nil, fmt.Errorf("allocate %s for %s: %w", req.Resource, w, err)
		}
	}
	a := &Allocation{Workload: w, Namespace: req.Namespace, Pod: req.Pod, PodUID: req.PodUID, Container: req.Container,
		Resource: req.Resource, DeviceIDs: ids, Edits: edits, At: time.Now(), pending: true}
	a.record = allocationRecord(a)
	m.mu.Lock()
	if m.allocs[w] == nil {
		m.allocs[w] = map[string]*Allocation{}
	}
	m.allocs[w][req.Resource] = a
	m.gen++
	gen := m.gen
	m.mu.Unlock()
	if err := m.sync(ctx, gen); err != nil {
		m.mu.Lock()
		delete(m.allocs[w], req.Resource)
		if len(m.allocs[w]) == 0 {
			delete(m.allocs, w)
		}
		m.gen++
		m.mu.Unlock()
		unreserve()
		return nil, fmt.Errorf("%w: %s for %s: %v", ErrNotDurable, req.Resource, w, err)
	}
	m.mu.Lock()
	a.pending = false
	out := cloneAllocation(a)
	m.mu.Unlock()
	m.log.Info("devices allocated", "workload", w, "resource", req.Resource, "devices", strings.Join(ids, ","))
	return out, nil
}

// choose picks and reserves the devices for an allocation.
func (m *Manager) choose(ctx context.Context, req AllocateRequest, w string) (*resource, Provider, []string, error) {
	m.mu.Lock()
	r := m.resources[req.Resource]
	m.mu.Unlock()
	if r == nil {
		return nil, nil, nil, fmt.Errorf("%w: no resource %q on this node", ErrUnknownResource, req.Resource)
	}
	r.allocMu.Lock()
	defer r.allocMu.Unlock()

	m.mu.Lock()
	p, gen := r.provider, r.pgen
	if p == nil || !r.connected {
		m.mu.Unlock()
		return nil, nil, nil, fmt.Errorf("%w: resource %q has no provider right now (%s)", ErrUnavailable, req.Resource, r.lastErr)
	}
	if m.structured(r) {
		driver := r.driver
		m.mu.Unlock()
		ids, err := m.chooseStructured(ctx, req, w, r, p, driver)
		if err != nil {
			return nil, nil, nil, err
		}
		m.mu.Lock()
		defer m.mu.Unlock()
		if r.pgen != gen || !r.connected {
			m.releaseStructured(w, req.Resource)
			return nil, nil, nil, fmt.Errorf("%w: the provider of %s changed during the allocation; try again", ErrUnavailable, req.Resource)
		}
		for _, id := range ids {
			r.holder[id] = w
		}
		return r, p, ids, nil
	}
	free := r.free()
	capacity, healthy := len(r.devices), 0
	for _, d := range r.devices {
		if d.Healthy {
			healthy++
		}
	}
	m.mu.Unlock()
	if len(free) < req.Count {
		return nil, nil, nil, fmt.Errorf("%w: %d device(s) of %s requested, %d free (capacity %d, %d healthy)",
			ErrUnavailable, req.Count, req.Resource, len(free), capacity, healthy)
	}

	ids, err := m.pick(ctx, p, free, req, w)
	if err != nil {
		return nil, nil, nil, err
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	if r.pgen != gen || !r.connected {
		return nil, nil, nil, fmt.Errorf("%w: the provider of %s changed during the allocation; try again", ErrUnavailable, req.Resource)
	}
	for _, id := range ids {
		i, ok := r.index[id]
		if !ok || !r.devices[i].Healthy || r.holder[id] != "" {
			return nil, nil, nil, fmt.Errorf("%w: device %s of %s is no longer free; try again", ErrUnavailable, id, req.Resource)
		}
	}
	for _, id := range ids {
		r.holder[id] = w
	}
	return r, p, ids, nil
}

// pick chooses req.Count devices of free: the provider's preferred
// allocation when it offers one, else the NUMA-aware default.
func (m *Manager) pick(ctx context.Context, p Provider, free []device.Device, req AllocateRequest, w string) ([]string, error) {
	if !p.Options().PreferredAllocation {
		return ChooseNUMA(free, req.Count), nil
	}
	avail := make([]string, len(free))
	for i, d := range free {
		avail[i] = d.ID
	}
	cctx, cancel := context.WithTimeout(ctx, m.cfg.CallTimeout)
	got, err := p.PreferredAllocation(cctx, avail, nil, req.Count)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("allocate %s for %s: %w", req.Resource, w, err)
	}
	if err := checkChoice(got, avail, req.Count); err != nil {
		return nil, fmt.Errorf("allocate %s for %s: %s's preferred allocation %w", req.Resource, w, p.Name(), err)
	}
	return got, nil
}

// free lists the healthy devices no one holds. Call with m.mu held.
func (r *resource) free() []device.Device {
	var out []device.Device
	for _, d := range r.devices {
		if d.Healthy && r.holder[d.ID] == "" {
			out = append(out, d)
		}
	}
	return out
}

func checkChoice(got, avail []string, n int) error {
	if len(got) != n {
		return fmt.Errorf("has %d device(s), %d were asked for", len(got), n)
	}
	ok := make(map[string]bool, len(avail))
	for _, id := range avail {
		ok[id] = true
	}
	seen := map[string]bool{}
	for _, id := range got {
		if !ok[id] {
			return fmt.Errorf("names %q, which is not available", id)
		}
		if seen[id] {
			return fmt.Errorf("names %q twice", id)
		}
		seen[id] = true
	}
	return nil
}

// ChooseNUMA picks n devices from free using as few NUMA nodes as possible:
// the smallest single node that fits, or else the largest nodes first.
// Devices with no NUMA information count as one more node. Ties break by
// node and device id, so the choice is deterministic.
func ChooseNUMA(free []device.Device, n int) []string {
	byNode := map[int64][]string{}
	for _, d := range free {
		node := int64(-1)
		if len(d.NUMANodes) > 0 {
			node = d.NUMANodes[0]
		}
		byNode[node] = append(byNode[node], d.ID)
	}
	nodes := make([]int64, 0, len(byNode))
	for node, ids := range byNode {
		sort.Strings(ids)
		nodes = append(nodes, node)
	}
	sort.Slice(nodes, func(i, j int) bool { return nodes[i] < nodes[j] })
	best := int64(0)
	found := false
	for _, node := range nodes {
		if len(byNode[node]) >= n && (!found || len(byNode[node]) < len(byNode[best])) {
			best, found = node, true
		}
	}
	if found {
		return append([]string(nil), byNode[best][:n]...)
	}
	sort.SliceStable(nodes, func(i, j int) bool { return len(byNode[nodes[i]]) > len(byNode[nodes[j]]) })
	out := make([]string, 0, n)
	for _, node := range nodes {
		for _, id := range byNode[node] {
			if len(out) == n {
				return out
			}
			out = append(out, id)
		}
	}
	return out
}

// Release frees every device the workload holds (of one resource, or of all
// when resource is empty) and returns what was released, once durable.
// Releasing nothing is not an error. A release is undone when it cannot be
// made durable, exactly as an allocation is: the workload keeps its
// devices, and nobody else can be given them meanwhile — until the release
// is durable, the devices stay held and a repeated Allocate of the same
// workload and resource waits for its outcome.
func (m *Manager) Release(ctx context.Context, workload, resource string) ([]*Allocation, error) {
	m.mu.Lock()
	var releasing []*Allocation
	for res, a := range m.allocs[workload] {
		if (resource != "" && res != resource) || a.pending || a.releasing {
			continue // (an allocation still being made is released after it, if asked again)
		}
		releasing = append(releasing, a)
	}
	if len(releasing) == 0 {
		// Nothing held; but a release asked again while one is being made
		// durable is only done once the state on disk agrees.
		gen := m.gen
		m.mu.Unlock()
		if err := m.sync(ctx, gen); err != nil {
			return nil, fmt.Errorf("%w: release of %s: %v", ErrNotDurable, workload, err)
		}
		return nil, nil
	}
	done := make(chan struct{})
	for _, a := range releasing {
		a.releasing = true // left out of the checkpoint, still held
		m.pending[workload+"\x00"+a.Resource] = done
	}
	m.gen++
	gen := m.gen
	m.mu.Unlock()
	err := m.sync(ctx, gen)

	m.mu.Lock()
	for _, a := range releasing {
		delete(m.pending, workload+"\x00"+a.Resource)
		if err != nil {
			a.releasing = false // and back in the next write
			continue
		}
		delete(m.allocs[workload], a.Resource)
		m.releaseStructured(workload, a.Resource)
		if r := m.resources[a.Resource]; r != nil {
			for _, id := range a.DeviceIDs {
				if r.holder[id] == workload {
					delete(r.holder, id)
				}
			}
			if r.provider == nil && len(r.devices) == 0 && !m.holdsAny(a.Resource) {
				delete(m.resources, a.Resource)
			}
		}
	}
	if len(m.allocs[workload]) == 0 {
		delete(m.allocs, workload)
	}
	m.gen++
	close(done)
	m.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("%w: release of %s: %v; nothing was released, the workload keeps its devices", ErrNotDurable, workload, err)
	}
	for _, a := range releasing {
		m.obs.Released(a.Resource)
		m.log.Info("devices released", "workload", workload, "resource", a.Resource, "devices", strings.Join(a.DeviceIDs, ","))
	}
	sort.Slice(releasing, func(i, j int) bool { return releasing[i].Resource < releasing[j].Resource })
	out := make([]*Allocation, len(releasing))
	for i, a := range releasing {
		out[i] = cloneAllocation(a)
	}
	return out, nil
}

// Commit makes change, a change to a Part's state, one change of the
// checkpointed state: change runs under the manager's lock (it must not
// call the manager), and Commit returns once the change is durable, or
// why it could not be made so (ErrNotDurable). Without a checkpoint it
// returns at once.
func (m *Manager) Commit(ctx context.Context, change func()) error {
	m.mu.Lock()
	change()
	m.gen++
	gen := m.gen
	m.mu.Unlock()
	if err := m.sync(ctx, gen); err != nil {
		return fmt.Errorf("%w: %v", ErrNotDurable, err)
	}
	return nil
}

// Change makes change, under the manager's lock, a change of the
// checkpointed state without waiting for it to be durable: the undoing of a
// change that Commit could not make durable.
func (m *Manager) Change(change func()) {
	m.mu.Lock()
	change()
	m.gen++
	m.mu.Unlock()
}

func (m *Manager) sync(ctx context.Context, gen uint64) error {
	if m.committer == nil {
		return nil
	}
	return m.committer.Sync(ctx, gen)
}

// Allocations lists every allocation, by workload then resource.
func (m *Manager) Allocations() []*Allocation {
	m.mu.Lock()
	var out []*Allocation
	for _, byRes := range m.allocs {
		for _, a := range byRes {
			if !a.pending {
				out = append(out, cloneAllocation(a))
			}
		}
	}
	m.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].Workload != out[j].Workload {
			return out[i].Workload < out[j].Workload
		}
		return out[i].Resource < out[j].Resource
	})
	return out
}

// Resources returns a snapshot of every resource, by name.
func (m *Manager) Resources() []ResourceStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]ResourceStatus, 0, len(m.resources))
	for _, r := range m.resources {
		st := ResourceStatus{Name: r.name, Connected: r.connected, DisconnectedAt: r.disconnectedAt, Options: r.opts,
			Capacity: len(r.devices), LastUpdate: r.lastUpdate, LastError: r.lastErr, ProviderSwitches: r.switches,
			SharedCounters: device.CloneCounterSets(r.counters)}
		if r.provider != nil {
			st.Provider = r.provider.Name()
		}
		st.Healthy, _, st.Allocated = r.counts()
		for _, d := range r.devices {
			holder := r.holder[d.ID]
			if d.Healthy && holder == "" {
				st.Allocatable++
			}
			st.Devices = append(st.Devices, DeviceStatus{Device: cloneDevice(d), AllocatedTo: holder})
		}
		m.claimHolders(r, &st)
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func cloneAllocation(a *Allocation) *Allocation {
	c := *a
	c.DeviceIDs = append([]string(nil), a.DeviceIDs...)
	c.Edits = a.Edits.Clone()
	return &c
}
