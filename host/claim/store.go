package claim

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	resourceapi "k8s.io/api/resource/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/util/uuid"

	"github.com/wasmlet/wasmlet/checkpoint"
	"github.com/wasmlet/wasmlet/host/allocator"
	"github.com/wasmlet/wasmlet/host/device"
	"github.com/wasmlet/wasmlet/host/internal/defaults"
)

// Errors of the store, for callers that map them to exit codes and gRPC
// codes. A claim that cannot be allocated is an *allocator.Unsatisfiable,
// wrapped in ErrUnsatisfiable.
var (
	ErrUnsatisfiable = errors.New("cannot be allocated")
	ErrConflict      = errors.New("a different claim of that name exists")
	ErrNotFound      = errors.New("no such claim")
	ErrPrepare       = errors.New("prepare failed")
	ErrNotDurable    = errors.New("could not make the change durable")
)

// Driver prepares a driver's devices of a claim: a device source
// (*devicesource.Source).
type Driver interface {
	// Prepare returns what a container needs for each of the claim's
	// allocated devices of the driver (claim.Status.Allocation).
	Prepare(ctx context.Context, claim *resourceapi.ResourceClaim, workload string) ([]device.Prepared, error)
	// Unprepare tells the driver the claim's devices are no longer used.
	Unprepare(ctx context.Context, claim *resourceapi.ResourceClaim) error
}

// Committer makes changes to the store durable: the device manager, whose
// checkpoint holds the claims (*devicemanager.Manager).
type Committer interface {
	// Commit runs change as one change of the checkpointed state and
	// returns once it is durable.
	Commit(ctx context.Context, change func()) error
	// Change runs change without waiting for it to be durable.
	Change(change func())
}

// Specs writes claims' CDI specs (*cdi.Specs).
type Specs interface {
	WriteClaim(uid, name, driver string, devs []device.Prepared) (map[string]string, error)
	RemoveClaim(uid, driver string) error
}

// Observer is told about claims, for metrics.
type Observer interface {
	// ClaimApplied counts an apply, by outcome ("ok", "unsatisfiable",
	// "invalid", "error"), and how long it took.
	ClaimApplied(outcome string, d time.Duration)
	// ClaimDevices is how many devices claims hold, by driver and class;
	// called with every (driver, class) whenever claims change.
	ClaimDevices(driver, class string, n int)
}

// Config wires a Store.
type Config struct {
	Allocator *allocator.Allocator
	// Specs, when set, gets a CDI spec per claim and driver.
	Specs Specs
	// CallTimeout bounds each prepare and unprepare.
	CallTimeout time.Duration
	Logger      hclog.Logger
	Observer    Observer
}

// Workload is the container a claim is applied for; empty when none.
type Workload struct {
	Pod, PodUID, Container string
}

// Claim is an applied claim.
type Claim struct {
	// Object is the ResourceClaim as applied (its namespace set), with
	// Status.Allocation.
	Object   *resourceapi.ResourceClaim
	Workload Workload
	// Prepared are its devices as their sources prepared them, in the
	// order of the allocation's results.
	Prepared []PreparedDevice
	// Edits are what a container of the claim gets: the devices' edits
	// merged, and every CDI device name (the claim's own specs' and those
	// the sources named).
	Edits device.Edits
	At    time.Time
	// KubeletDriver is set on a claim the cluster allocated, prepared for
	// the kubelet by that driver (PrepareForKubelet); Prepared holds only
	// that driver's devices.
	KubeletDriver string

	record  *checkpoint.Claim // built before the claim is published, never modified
	pending bool              // not yet durable: shown to no one
}

// PreparedDevice is one device of a claim.
type PreparedDevice struct {
	device.Prepared
	Driver string
}

// Key is "namespace/name".
func (c *Claim) Key() string { return c.Object.Namespace + "/" + c.Object.Name }

// storeKey is the claim's key in the store: Key for the node's own claims,
// kubeletKey for those prepared for the kubelet.
func (c *Claim) storeKey() string {
	if c.KubeletDriver != "" {
		return kubeletKey(c.KubeletDriver, c.Object.UID)
	}
	return c.Key()
}

// owner is the allocator's name of the claim.
func owner(key string) string { return "claim:" + key }

// Store is the node's claims. It is safe for concurrent use.
type Store struct {
	cfg Config
	log hclog.Logger
	obs Observer

	mu      sync.Mutex
	commit  Committer
	drivers map[string]Driver
	claims  map[string]*Claim        // by key
	busy    map[string]chan struct{} // claims being applied or deleted
	held    map[[2]string]int        // devices held, by driver and class
}

// New returns an empty store; Attach gives it its committer.
func New(cfg Config) *Store {
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	defaults.Positive(&cfg.CallTimeout, 30*time.Second)
	return &Store{cfg: cfg, log: cfg.Logger, obs: cfg.Observer, drivers: map[string]Driver{},
		claims: map[string]*Claim{}, busy: map[string]chan struct{}{}, held: map[[2]string]int{}}
}

// Attach makes c what makes the store's changes durable. Until it is
// called, changes are not durable, and not refused for it.
func (s *Store) Attach(c Committer) {
	s.mu.Lock()
	s.commit = c
	s.mu.Unlock()
}

// SetDriver makes d the driver called name.
func (s *Store) SetDriver(name string, d Driver) {
	s.mu.Lock()
	s.drivers[name] = d
	s.mu.Unlock()
}

// RemoveDriver forgets the driver called name, if it is still d.
func (s *Store) RemoveDriver(name string, d Driver) {
	s.mu.Lock()
	if s.drivers[name] == d {
		delete(s.drivers, name)
	}
	s.mu.Unlock()
}

// Apply allocates and prepares claim for w, makes it durable and returns
// it; or returns the claim of that name already applied, when it has the
// same spec and workload. claim must have been checked (Decode, Validate).
func (s *Store) Apply(ctx context.Context, claim *resourceapi.ResourceClaim, w Workload) (*Claim, error) {
	start := time.Now()
	c, err := s.apply(ctx, claim, w)
	if s.obs != nil {
		outcome := "ok"
		switch {
		case err == nil:
		case errors.Is(err, ErrUnsatisfiable):
			outcome = "unsatisfiable"
		case errors.Is(err, ErrInvalid), errors.Is(err, ErrConflict):
			outcome = "invalid"
		default:
			outcome = "error"
		}
		s.obs.ClaimApplied(outcome, time.Since(start))
	}
	return c, err
}

func (s *Store) apply(ctx context.Context, in *resourceapi.ResourceClaim, w Workload) (*Claim, error) {
	rc := in.DeepCopy()
	if rc.Namespace == "" {
		rc.Namespace = DefaultNamespace
	}
	key := rc.Namespace + "/" + rc.Name
	done, existing, err := s.reserve(ctx, key)
	if err != nil {
		return nil, err
	}
	if existing != nil {
		if !apiequality.Semantic.DeepEqual(existing.Object.Spec, rc.Spec) || existing.Workload != w {
			return nil, fmt.Errorf("%w: claim %s is applied with another spec or workload; delete it first", ErrConflict, key)
		}
		return existing, nil
	}
	defer done()

	if rc.UID == "" {
		rc.UID = uuid.NewUUID()
	}
	rc.Status = resourceapi.ResourceClaimStatus{}
	result, err := s.cfg.Allocator.Allocate(ctx, owner(key), rc)
	var u *allocator.Unsatisfiable
	switch {
	case errors.As(err, &u):
		return nil, fmt.Errorf("claim %s %w: %s", key, ErrUnsatisfiable, strings.Join(u.Reasons, "; "))
	case errors.Is(err, allocator.ErrInvalid):
		return nil, fmt.Errorf("claim %s: %w: %v", key, ErrInvalid, err)
	case err != nil:
		return nil, fmt.Errorf("claim %s: %w", key, err)
	}
	rc.Status.Allocation = result
	c := &Claim{Object: rc, Workload: w, At: time.Now(), pending: true}
	if err := s.prepare(ctx, c, driversOf(c.Object), s.driver); err != nil {
		s.cfg.Allocator.Release(owner(key))
		return nil, err
	}
	c.record = record(c)
	if err := s.durably(ctx, func() { s.claims[key] = c }); err != nil {
		s.undo(func() { delete(s.claims, key) })
		s.unprepare(c, driversOf(c.Object), s.driver)
		s.cfg.Allocator.Release(owner(key))
		return nil, fmt.Errorf("%w: claim %s: %v", ErrNotDurable, key, err)
	}
	s.mu.Lock()
	c.pending = false
	s.count()
	s.mu.Unlock()
	s.log.Info("claim allocated", "claim", key, "devices", strings.Join(c.deviceNames(), ","))
	return c, nil
}

// reserve waits until no other apply or delete of key is in progress, then
// marks it busy (done ends that) — unless a claim of that name is there, which
// it returns.
func (s *Store) reserve(ctx context.Context, key string) (done func(), existing *Claim, err error) {
	for {
		s.mu.Lock()
		if wait, ok := s.busy[key]; ok {
			s.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return nil, nil, ctx.Err()
			}
		}
		if c := s.claims[key]; c != nil {
			s.mu.Unlock()
			return nil, c, nil
		}
		ch := make(chan struct{})
		s.busy[key] = ch
		s.mu.Unlock()
		return func() {
			s.mu.Lock()
			delete(s.busy, key)
			close(ch)
			s.mu.Unlock()
		}, nil, nil
	}
}

// driver is the driver called d, or nil.
func (s *Store) driver(d string) Driver {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.drivers[d]
}

// prepare has each of drivers (found by lookup) prepare its devices of c,
// writes their CDI specs and merges their edits. When one fails, those done
// are undone.
func (s *Store) prepare(ctx context.Context, c *Claim, drivers []string, lookup func(string) Driver) error {
	key := c.Key()
	var done []string
	fail := func(err error) error {
		for _, d := range done {
			s.unprepareDriver(c, d, lookup(d))
		}
		return err
	}
	for _, d := range drivers {
		drv := lookup(d)
		if drv == nil {
			return fail(fmt.Errorf("claim %s: %w: driver %s is not on this node any more", key, ErrPrepare, d))
		}
		cctx, cancel := context.WithTimeout(ctx, s.cfg.CallTimeout)
		prepared, err := drv.Prepare(cctx, c.Object, workloadKey(c.Object.Namespace, c.Workload))
		cancel()
		if err != nil {
			return fail(fmt.Errorf("claim %s: %w: driver %s: %w", key, ErrPrepare, d, err))
		}
		done = append(done, d)
		if s.cfg.Specs != nil {
			names, err := s.cfg.Specs.WriteClaim(string(c.Object.UID), key, d, prepared)
			if err != nil {
				return fail(fmt.Errorf("claim %s: %w: %v", key, ErrPrepare, err))
			}
			for i := range prepared {
				if n := names[prepared[i].Device]; n != "" {
					prepared[i].Edits.CDIDevices = append(slices.Clone(prepared[i].Edits.CDIDevices), n)
				}
			}
		}
		for _, p := range prepared {
			c.Prepared = append(c.Prepared, PreparedDevice{Prepared: p, Driver: d})
		}
	}
	devs := make([]device.Device, len(c.Prepared))
	for i, p := range c.Prepared {
		devs[i] = device.Device{ID: p.Driver + "/" + p.Device, Edits: p.Edits}
	}
	edits, err := device.Merge(devs)
	if err != nil {
		return fail(fmt.Errorf("claim %s: %w: %v", key, ErrPrepare, err))
	}
	c.Edits = edits
	return nil
}

// unprepare undoes prepare: each of drivers (found by lookup) unprepares
// its devices of c, its CDI spec goes. Failures are logged: they must not
// keep the devices held.
func (s *Store) unprepare(c *Claim, drivers []string, lookup func(string) Driver) {
	for _, d := range drivers {
		s.unprepareDriver(c, d, lookup(d))
	}
}

func (s *Store) unprepareDriver(c *Claim, d string, drv Driver) {
	if drv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.CallTimeout)
		if err := drv.Unprepare(ctx, c.Object); err != nil {
			s.log.Warn("unprepare failed; the claim's devices are freed all the same", "claim", c.Key(), "driver", d, "error", err)
		}
		cancel()
	}
	if s.cfg.Specs != nil {
		if err := s.cfg.Specs.RemoveClaim(string(c.Object.UID), d); err != nil {
			s.log.Error("cannot remove a claim's CDI spec", "claim", c.Key(), "driver", d, "error", err)
		}
	}
}

// Delete unprepares the claim, removes its CDI specs, frees its devices and
// returns it once that is durable. A delete that cannot be made durable is
// undone: the claim keeps its devices (unprepared), and a repeated Delete
// unprepares it again and deletes it once the disk agrees.
func (s *Store) Delete(ctx context.Context, namespace, name string) (*Claim, error) {
	if namespace == "" {
		namespace = DefaultNamespace
	}
	key := namespace + "/" + name
	existing, release, err := s.take(ctx, key)
	if err != nil {
		return nil, err
	}
	if existing == nil {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, key)
	}
	defer release()
	if err := s.remove(ctx, key, existing, driversOf(existing.Object), s.driver); err != nil {
		return nil, fmt.Errorf("%w: delete of claim %s: %v; nothing was deleted, the claim keeps its devices "+
			"(its sources were told to unprepare it; delete it again)", ErrNotDurable, key, err)
	}
	s.cfg.Allocator.Release(owner(key))
	s.mu.Lock()
	s.count()
	s.mu.Unlock()
	s.log.Info("claim deleted", "claim", key)
	return existing, nil
}

// remove has drivers (found by lookup) unprepare existing, which take
// returned, and deletes its record, durably. A deletion that cannot be made
// durable is undone, as a release the device manager cannot make durable
// is: the claim keeps its devices until its deletion is durable.
func (s *Store) remove(ctx context.Context, key string, existing *Claim, drivers []string, lookup func(string) Driver) error {
	s.unprepare(existing, drivers, lookup)
	if err := s.durably(ctx, func() { delete(s.claims, key) }); err != nil {
		s.undo(func() { s.claims[key] = existing })
		return err
	}
	return nil
}

// take waits until no other apply or delete of key is in progress, then
// marks the claim of that name busy and returns it, with release to end
// that; or returns nil when there is no such claim.
func (s *Store) take(ctx context.Context, key string) (existing *Claim, release func(), err error) {
	for {
		done, existing, err := s.reserve(ctx, key)
		if err != nil {
			return nil, nil, err
		}
		if existing == nil {
			done()
			return nil, nil, nil
		}
		// existing is durable (pending claims are busy): take it.
		s.mu.Lock()
		if s.claims[key] != existing || s.busy[key] != nil {
			s.mu.Unlock()
			continue
		}
		ch := make(chan struct{})
		s.busy[key] = ch
		s.mu.Unlock()
		return existing, func() {
			s.mu.Lock()
			delete(s.busy, key)
			close(ch)
			s.mu.Unlock()
		}, nil
	}
}

// durably runs change under the store's lock as a durable change.
func (s *Store) durably(ctx context.Context, change func()) error {
	c, locked := s.locked(change)
	if c == nil {
		locked()
		return nil
	}
	return c.Commit(ctx, locked)
}

// undo runs change under the store's lock, without waiting.
func (s *Store) undo(change func()) {
	c, locked := s.locked(change)
	if c == nil {
		locked()
		return
	}
	c.Change(locked)
}

// locked is the committer, and change made to run under the store's lock.
func (s *Store) locked(change func()) (Committer, func()) {
	s.mu.Lock()
	c := s.commit
	s.mu.Unlock()
	return c, func() {
		s.mu.Lock()
		change()
		s.mu.Unlock()
	}
}

// Get returns the claim namespace/name, or nil.
func (s *Store) Get(namespace, name string) *Claim {
	if namespace == "" {
		namespace = DefaultNamespace
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.claims[namespace+"/"+name]; c != nil && !c.pending {
		return c
	}
	return nil
}

// List returns every claim, by namespace and name. Claims are never
// modified once applied: the caller must not modify them either.
func (s *Store) List() []*Claim {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*Claim, 0, len(s.claims))
	for _, c := range s.claims {
		if !c.pending && c.KubeletDriver == "" {
			out = append(out, c)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key() < out[j].Key() })
	return out
}

// DeviceStatus is one device of a claim, and what became of it.
type DeviceStatus struct {
	resourceapi.DeviceRequestAllocationResult
	// Class is the device class of its request.
	Class string
	// Health is "healthy", "unhealthy" or "gone".
	Health string
	// CDIDevices are the qualified CDI names a container gets for it.
	CDIDevices []string
}

// Devices returns c's devices with their health now.
func (s *Store) Devices(c *Claim) []DeviceStatus {
	var out []DeviceStatus
	if c.Object.Status.Allocation == nil {
		return nil
	}
	for _, r := range c.Object.Status.Allocation.Devices.Results {
		st := DeviceStatus{DeviceRequestAllocationResult: r, Class: classOf(c.Object, r.Request),
			Health: s.cfg.Allocator.Health(r.Driver, r.Device)}
		for _, p := range c.Prepared {
			if p.Driver == r.Driver && p.Device == r.Device && p.Request == r.Request {
				st.CDIDevices = p.Edits.CDIDevices
			}
		}
		out = append(out, st)
	}
	return out
}

// count tells the observer how many devices claims hold. Call with s.mu
// held.
func (s *Store) count() {
	if s.obs == nil {
		return
	}
	now := map[[2]string]int{}
	for _, c := range s.claims {
		if c.pending || c.KubeletDriver != "" {
			continue
		}
		for _, r := range c.Object.Status.Allocation.Devices.Results {
			now[[2]string{r.Driver, classOf(c.Object, r.Request)}]++
		}
	}
	for k := range s.held {
		if _, ok := now[k]; !ok {
			now[k] = 0
		}
	}
	for _, k := range slices.SortedFunc(maps.Keys(now), func(a, b [2]string) int { return strings.Compare(a[0]+"/"+a[1], b[0]+"/"+b[1]) }) {
		s.obs.ClaimDevices(k[0], k[1], now[k])
	}
	s.held = now
}

// classOf is the device class of a claim's request ("request" or
// "request/subrequest").
func classOf(c *resourceapi.ResourceClaim, request string) string {
	name, sub, _ := strings.Cut(request, "/")
	for _, r := range c.Spec.Devices.Requests {
		if r.Name != name {
			continue
		}
		if r.Exactly != nil {
			return r.Exactly.DeviceClassName
		}
		for _, s := range r.FirstAvailable {
			if s.Name == sub {
				return s.DeviceClassName
			}
		}
	}
	return ""
}

// driversOf lists the drivers of a claim's allocated devices, in order.
func driversOf(c *resourceapi.ResourceClaim) []string {
	var out []string
	if c.Status.Allocation == nil {
		return nil
	}
	for _, r := range c.Status.Allocation.Devices.Results {
		if !slices.Contains(out, r.Driver) {
			out = append(out, r.Driver)
		}
	}
	return out
}

func (c *Claim) deviceNames() []string {
	var out []string
	for _, r := range c.Object.Status.Allocation.Devices.Results {
		out = append(out, r.Driver+"/"+r.Device)
	}
	return out
}

// workloadKey is "namespace/pod/container", or "namespace/" for a claim
// applied for no container.
func workloadKey(namespace string, w Workload) string {
	if w.Pod == "" {
		return namespace + "/"
	}
	return namespace + "/" + w.Pod + "/" + w.Container
}
