package allocator

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/hashicorp/go-hclog"
	v1 "k8s.io/api/core/v1"
	resourceapi "k8s.io/api/resource/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/dynamic-resource-allocation/cel"
	"k8s.io/dynamic-resource-allocation/structured"

	"github.com/wasmlet/wasmlet/host/device"
	"github.com/wasmlet/wasmlet/host/device/resourceslice"
)

// Features are the allocator features wasmlet runs with (see the package
// documentation).
var Features = structured.Features{
	PrioritizedList:         true,
	PartitionableDevices:    true,
	ConsumableCapacity:      true,
	FractionalCapacityRange: true,
	DeviceTaints:            true,
}

// NewCELCache returns a CEL cache for the features wasmlet runs with, as the
// scheduler makes one.
func NewCELCache() *cel.Cache {
	return cel.NewCache(64, cel.Features{EnableConsumableCapacity: Features.ConsumableCapacity})
}

// Errors of Allocate, for callers that map them to exit codes and gRPC
// codes. An allocation that cannot be satisfied is an *Unsatisfiable.
var (
	// ErrInvalid: the claim (or a class) is wrong in a way the upstream
	// allocator rejects outright, such as a selector that does not compile.
	ErrInvalid = errors.New("invalid claim")
	// ErrHeld: the owner holds devices already; release them first.
	ErrHeld = errors.New("already holds devices")
)

// Unsatisfiable says why a claim cannot be allocated now, in terms a person
// can act on: one reason per request, selector or constraint that left too
// few devices.
type Unsatisfiable struct {
	Reasons []string
}

func (u *Unsatisfiable) Error() string {
	return "cannot be allocated: " + strings.Join(u.Reasons, "; ")
}

// Config wires an Allocator.
type Config struct {
	// NodeName names the node, and so every pool on it.
	NodeName string
	// Classes are the operator's device classes. A class named like a
	// driver replaces that driver's default class.
	Classes []*resourceapi.DeviceClass
	Logger  hclog.Logger
}

// Allocator allocates structured devices from the pools of this node's
// drivers, and holds the one record of what is allocated. It is safe for
// concurrent use; allocations are made one at a time.
type Allocator struct {
	node    *v1.Node
	cel     *cel.Cache
	log     hclog.Logger
	classes map[string]*resourceapi.DeviceClass // the operator's

	mu     sync.Mutex
	pools  map[string]*pool // by driver
	slices []*resourceapi.ResourceSlice
	held   map[string]*resourceapi.AllocationResult // by owner
}

type pool struct {
	driver, resource string
	generation       int64
	devices          []resourceapi.Device
	slices           []*resourceapi.ResourceSlice
}

// New returns an allocator for the node, with no pools yet.
func New(cfg Config) *Allocator {
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	a := &Allocator{
		node: &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: cfg.NodeName,
			Labels: map[string]string{v1.LabelHostname: cfg.NodeName}}},
		cel: NewCELCache(), log: cfg.Logger, classes: map[string]*resourceapi.DeviceClass{},
		pools: map[string]*pool{}, held: map[string]*resourceapi.AllocationResult{},
	}
	for _, c := range cfg.Classes {
		a.classes[c.Name] = c.DeepCopy()
	}
	return a
}

// NodeName is the node's name: every pool's.
func (a *Allocator) NodeName() string { return a.node.Name }

// SetPool makes devs, with counters, the pool of driver on this node,
// serving resource (the extended resource count requests name). Unhealthy
// devices stay in the pool, tainted.
func (a *Allocator) SetPool(driver, resource string, devs []device.Device, counters []device.CounterSet) {
	a.mu.Lock()
	defer a.mu.Unlock()
	p := a.pools[driver]
	if p == nil {
		p = &pool{driver: driver}
		a.pools[driver] = p
	}
	p.resource = resource
	p.generation++
	p.slices = resourceslice.Pool{Driver: driver, Name: a.node.Name, Node: a.node.Name, Generation: p.generation}.
		Slices(devs, counters)
	p.devices = p.devices[:0]
	for _, s := range p.slices {
		p.devices = append(p.devices, s.Spec.Devices...)
	}
	a.rebuild()
}

// RemovePool forgets driver's pool: its devices are gone. What holds them
// keeps its record, until released.
func (a *Allocator) RemovePool(driver string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.pools[driver]; ok {
		delete(a.pools, driver)
		a.rebuild()
	}
}

// rebuild collects every pool's slices, by driver. Call with a.mu held.
func (a *Allocator) rebuild() {
	a.slices = a.slices[:0:0]
	for _, d := range slices.Sorted(maps.Keys(a.pools)) {
		a.slices = append(a.slices, a.pools[d].slices...)
	}
}

// preferring is every pool's slices, p's with the devices of prefer first.
// Call with a.mu held.
func (a *Allocator) preferring(p *pool, prefer []string) []*resourceapi.ResourceSlice {
	first := make(map[string]int, len(prefer))
	for i, id := range prefer {
		first[id] = i
	}
	devs := slices.Clone(p.devices)
	sort.SliceStable(devs, func(i, j int) bool {
		pi, iok := first[devs[i].Name]
		pj, jok := first[devs[j].Name]
		if iok != jok {
			return iok
		}
		return iok && pi < pj
	})
	var counters []resourceapi.CounterSet
	for _, s := range p.slices {
		counters = append(counters, s.Spec.SharedCounters...)
	}
	mine := resourceslice.Pool{Driver: p.driver, Name: a.node.Name, Node: a.node.Name, Generation: p.generation}.
		Of(devs, counters)
	out := make([]*resourceapi.ResourceSlice, 0, len(a.slices))
	for _, s := range a.slices {
		if s.Spec.Driver != p.driver {
			out = append(out, s)
		}
	}
	return append(out, mine...)
}

// Available lists the devices of driver's pool that a count request could
// have now, in the pool's order: healthy, not held outright, with their
// shared counters and default capacity free.
func (a *Allocator) Available(ctx context.Context, driver string) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.pools[driver] == nil {
		return nil
	}
	t := a.newDiagnosis(ctx).tally(requestView{name: CountRequest, class: driver, count: 1,
		mode: resourceapi.DeviceAllocationModeExactCount})
	var ids []string
	for _, d := range t.free {
		ids = append(ids, d.dev.Name)
	}
	return ids
}

// Slices returns the ResourceSlices of every pool (shared: do not modify).
func (a *Allocator) Slices() []*resourceapi.ResourceSlice {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.slices)
}

// Allocate allocates claim's devices to owner and records them, or says why
// it cannot (*Unsatisfiable, or ErrInvalid for a claim the upstream
// allocator rejects). The claim may be as users write it (WithDefaults is
// applied) and is not modified; its UID, name and namespace only label the
// result.
func (a *Allocator) Allocate(ctx context.Context, owner string, claim *resourceapi.ResourceClaim) (*resourceapi.AllocationResult, error) {
	return a.allocate(ctx, owner, claim, "", nil)
}

// allocate is Allocate, with driver's pool listing prefer first when
// prefer is not empty.
func (a *Allocator) allocate(ctx context.Context, owner string, claim *resourceapi.ResourceClaim, driver string, prefer []string) (*resourceapi.AllocationResult, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.held[owner]; ok {
		return nil, fmt.Errorf("%s %w", owner, ErrHeld)
	}
	claim = WithDefaults(claim)
	if reasons := a.missingClasses(claim); len(reasons) > 0 {
		return nil, &Unsatisfiable{Reasons: reasons}
	}
	all := a.slices
	if p := a.pools[driver]; p != nil && len(prefer) > 0 {
		all = a.preferring(p, prefer)
	}
	results, err := a.upstream(ctx, all, claim)
	switch {
	case errors.Is(err, errPanicked):
		return nil, err
	case errors.Is(err, structured.ErrFailedAllocationOnNode):
		return nil, &Unsatisfiable{Reasons: []string{strings.TrimSpace(err.Error())}}
	case err != nil && ctx.Err() != nil:
		return nil, ctx.Err()
	case err != nil:
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	case len(results) == 0:
		return nil, &Unsatisfiable{Reasons: a.diagnose(ctx, claim)}
	}
	r := results[0].DeepCopy()
	a.held[owner] = r
	return r.DeepCopy(), nil
}

// errPanicked is the upstream allocator failing on input it did not expect.
var errPanicked = errors.New("the upstream allocator failed")

// upstream runs the upstream allocator on claim over slices. It trusts its
// input as the API server would have validated it, and wasmlet's comes
// from modules: their discoveries are checked to the same rules where they
// enter (devicesource), and a panic the checks missed is this claim's
// error, not the node's end.
func (a *Allocator) upstream(ctx context.Context, slices []*resourceapi.ResourceSlice, claim *resourceapi.ResourceClaim) (_ []resourceapi.AllocationResult, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w on claim %s/%s (please report it, with the devices of the claim's classes): %v", errPanicked, claim.Namespace, claim.Name, p)
		}
	}()
	alloc, err := structured.NewAllocator(ctx, Features, a.state(), classLister{a}, slices, a.cel)
	if err != nil {
		return nil, err
	}
	return alloc.Allocate(ctx, a.node, []*resourceapi.ResourceClaim{claim})
}

// CountRequest is the name of the one request of a count request's claim.
const CountRequest = "devices"

// AllocateCount allocates n devices of driver's default class to owner: a
// count request for the driver's extended resource. It returns their ids.
// The devices of prefer, when they can be had, are taken first: the upstream
// allocator takes the first devices that fit, in the order of the pool's
// slices, and for this allocation the pool lists prefer first.
func (a *Allocator) AllocateCount(ctx context.Context, owner, driver string, n int, prefer []string) ([]string, error) {
	claim := &resourceapi.ResourceClaim{
		ObjectMeta: metav1.ObjectMeta{Name: owner},
		Spec: resourceapi.ResourceClaimSpec{Devices: resourceapi.DeviceClaim{Requests: []resourceapi.DeviceRequest{{
			Name: CountRequest,
			Exactly: &resourceapi.ExactDeviceRequest{DeviceClassName: driver,
				AllocationMode: resourceapi.DeviceAllocationModeExactCount, Count: int64(n)},
		}}}},
	}
	r, err := a.allocate(ctx, owner, claim, driver, prefer)
	if err != nil {
		return nil, err
	}
	ids := make([]string, len(r.Devices.Results))
	for i, d := range r.Devices.Results {
		ids[i] = d.Device
	}
	return ids, nil
}

// Hold records that owner holds result, as restored from the checkpoint.
// It replaces what owner held.
func (a *Allocator) Hold(owner string, result *resourceapi.AllocationResult) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.held[owner] = result.DeepCopy()
}

// HoldDevices records that owner holds devices ids of driver's pool (a
// count allocation, restored).
func (a *Allocator) HoldDevices(owner, driver string, ids []string) {
	r := &resourceapi.AllocationResult{}
	for _, id := range ids {
		r.Devices.Results = append(r.Devices.Results, resourceapi.DeviceRequestAllocationResult{
			Request: CountRequest, Driver: driver, Pool: a.node.Name, Device: id})
	}
	a.Hold(owner, r)
}

// Release frees what owner holds, and says whether it held anything.
func (a *Allocator) Release(owner string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	_, ok := a.held[owner]
	delete(a.held, owner)
	return ok
}

// Holders returns who holds each device of driver's pool, by device id,
// owners sorted.
func (a *Allocator) Holders(driver string) map[string][]string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := map[string][]string{}
	for owner, r := range a.held {
		for _, d := range r.Devices.Results {
			if d.Driver == driver && d.Pool == a.node.Name && !slices.Contains(out[d.Device], owner) {
				out[d.Device] = append(out[d.Device], owner)
			}
		}
	}
	for _, owners := range out {
		sort.Strings(owners)
	}
	return out
}

// state is the allocated state the upstream allocator takes, built from
// what is held as the scheduler builds it from allocated claims: a device
// allocated with a share id (consumable capacity) is shared, with what it
// consumed; any other is allocated outright. Call with a.mu held.
func (a *Allocator) state() structured.AllocatedState {
	st := structured.AllocatedState{
		AllocatedDevices:         sets.New[structured.DeviceID](),
		AllocatedSharedDeviceIDs: sets.New[structured.SharedDeviceID](),
		AggregatedCapacity:       structured.NewConsumedCapacityCollection(),
	}
	for _, r := range a.held {
		for _, d := range r.Devices.Results {
			id := structured.MakeDeviceID(d.Driver, d.Pool, d.Device)
			if d.ShareID != nil {
				st.AllocatedSharedDeviceIDs.Insert(structured.MakeSharedDeviceID(id, d.ShareID))
				if d.ConsumedCapacity != nil {
					st.AggregatedCapacity.Insert(structured.NewDeviceConsumedCapacity(id, d.ConsumedCapacity))
				}
				continue
			}
			st.AllocatedDevices.Insert(id)
		}
	}
	return st
}

// DefaultClass is driver's default device class: every device of the
// driver.
func DefaultClass(driver string) *resourceapi.DeviceClass {
	return &resourceapi.DeviceClass{
		ObjectMeta: metav1.ObjectMeta{Name: driver},
		Spec: resourceapi.DeviceClassSpec{Selectors: []resourceapi.DeviceSelector{{
			CEL: &resourceapi.CELDeviceSelector{Expression: fmt.Sprintf("device.driver == %q", driver)}}}},
	}
}

// Classes lists every device class, the operator's and the drivers'
// defaults, by name.
func (a *Allocator) Classes() []*resourceapi.DeviceClass {
	a.mu.Lock()
	defer a.mu.Unlock()
	list, _ := classLister{a}.List()
	return list
}

// classLister is the allocator's classes as the upstream allocator reads
// them. Call its methods with a.mu held.
type classLister struct{ a *Allocator }

func (l classLister) List() ([]*resourceapi.DeviceClass, error) {
	byName := maps.Clone(l.a.classes)
	for d := range l.a.pools {
		if byName[d] == nil {
			byName[d] = DefaultClass(d)
		}
	}
	out := make([]*resourceapi.DeviceClass, 0, len(byName))
	for _, n := range slices.Sorted(maps.Keys(byName)) {
		out = append(out, byName[n])
	}
	return out, nil
}

func (l classLister) Get(name string) (*resourceapi.DeviceClass, error) {
	if c := l.a.classes[name]; c != nil {
		return c, nil
	}
	if _, ok := l.a.pools[name]; ok {
		return DefaultClass(name), nil
	}
	return nil, apierrors.NewNotFound(resourceapi.Resource("deviceclasses"), name)
}

// missingClasses names the requests whose class does not exist. Call with
// a.mu held.
func (a *Allocator) missingClasses(claim *resourceapi.ResourceClaim) []string {
	var out []string
	check := func(request, class string) {
		if _, err := (classLister{a}).Get(class); err != nil {
			names := make([]string, 0)
			list, _ := classLister{a}.List()
			for _, c := range list {
				names = append(names, c.Name)
			}
			out = append(out, fmt.Sprintf("request %s: there is no device class %q on this node (there are: %s)",
				request, class, strings.Join(names, ", ")))
		}
	}
	for _, r := range claim.Spec.Devices.Requests {
		if r.Exactly != nil {
			check(r.Name, r.Exactly.DeviceClassName)
		}
		for _, s := range r.FirstAvailable {
			check(r.Name+"/"+s.Name, s.DeviceClassName)
		}
	}
	return out
}

// Health says what became of the device id of driver's pool: "healthy",
// "unhealthy" (tainted), or "gone" (not in the pool, or no pool).
func (a *Allocator) Health(driver, id string) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	p := a.pools[driver]
	if p == nil {
		return "gone"
	}
	for i := range p.devices {
		if p.devices[i].Name == id {
			for _, t := range p.devices[i].Taints {
				if t.Key == resourceslice.UnhealthyTaint {
					return "unhealthy"
				}
			}
			return "healthy"
		}
	}
	return "gone"
}
