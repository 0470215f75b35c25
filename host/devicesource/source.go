package devicesource

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	resourceapi "k8s.io/api/resource/v1"

	"github.com/wasmlet/wasmlet/abi"
	"github.com/wasmlet/wasmlet/host/device"
	"github.com/wasmlet/wasmlet/host/devicemanager"
	"github.com/wasmlet/wasmlet/host/internal/backoff"
	"github.com/wasmlet/wasmlet/host/internal/defaults"
	"github.com/wasmlet/wasmlet/host/module"
)

// Defaults of Options.
const (
	DefaultDebounce     = 100 * time.Millisecond
	DefaultRetryBackoff = 500 * time.Millisecond
	DefaultMaxBackoff   = 30 * time.Second
	DefaultMaxFailures  = 5
	// MinDiscoverInterval is the shortest rediscovery period, whatever the
	// module suggests or the configuration says.
	MinDiscoverInterval = 10 * time.Millisecond
)

// Options say how a source runs. The zero value is the default: the module's
// own rediscovery interval, and rediscovery when its mounts change.
type Options struct {
	// DiscoverInterval, when positive, overrides the module's
	// discover_interval_ms; when negative, the source never rediscovers on a
	// timer. Zero keeps the module's suggestion (none: no timer).
	DiscoverInterval time.Duration
	// NoWatch turns off rediscovery when files under the module's mounts
	// change.
	NoWatch bool
	// Debounce is how long file events must settle before a rediscovery.
	Debounce time.Duration
	// RetryBackoff is the wait after the first failed discovery; it doubles
	// after every further failure, up to MaxBackoff, or up to the
	// rediscovery interval when that is shorter. A source never stops
	// trying; a change under its mounts tries again at once.
	RetryBackoff, MaxBackoff time.Duration
	// MaxFailures is how many discoveries in a row may fail before the
	// source reports its devices unhealthy (until a discovery succeeds).
	MaxFailures int
	// Grant is what the module may hand containers beyond its own mounts
	// (device.Policy): its [modules.<name>.edits].
	Grant device.Grant
	// Observer, when set, is told of every container edit the policy
	// refuses.
	Observer Observer
	Logger   hclog.Logger
}

// Observer is told what a source refuses, for metrics.
type Observer interface {
	// EditsRefused counts one container edit of module, of a kind of
	// device.KindMount and the like, that the module may not hand out.
	EditsRefused(module, kind string)
}

// same reports whether o and p run a source the same way (defaults
// applied; logger and observer aside).
func (o Options) same(p Options) bool {
	o, p = o.withDefaults(), p.withDefaults()
	o.Logger, p.Logger, o.Observer, p.Observer = nil, nil, nil, nil
	return reflect.DeepEqual(o, p)
}

func (o Options) withDefaults() Options {
	defaults.Positive(&o.Debounce, DefaultDebounce)
	defaults.Positive(&o.RetryBackoff, DefaultRetryBackoff)
	defaults.Positive(&o.MaxBackoff, DefaultMaxBackoff)
	defaults.Positive(&o.MaxFailures, DefaultMaxFailures)
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	return o
}

// Errors that end a Watch at once, because retrying cannot help. They are
// wrapped in errors that name the module.
var (
	// ErrNotLoaded: the module is no longer in the registry.
	ErrNotLoaded = errors.New("the module is not loaded")
	// ErrResourceChanged: the module (replaced) now declares another
	// resource, or is no longer a device source.
	ErrResourceChanged = errors.New("the module no longer serves this resource")
)

// Source is a devicemanager.Provider backed by a device-source module. It is
// safe for concurrent use; Watch runs once at a time.
type Source struct {
	reg      *module.Registry
	name     string
	resource string
	popts    devicemanager.ProviderOptions
	opts     Options
	log      hclog.Logger

	kick     chan struct{} // capacity 1: rediscover now
	done     chan struct{} // closed by stop
	stopOnce sync.Once
	stopErr  error
	watching atomic.Bool

	// onEnd, when set, is told why Watch gave up (never for a stop or a
	// cancelled context). Set before Watch starts.
	onEnd func(error)
	// afterRound, when set, is called after every discovery attempt (tests).
	afterRound func(error)

	// driver is the resource.k8s.io driver the source's devices are a pool
	// of: the module's, or abi.DefaultDriver of its resource.
	driver string

	mu          sync.RWMutex
	devices     []device.Device     // latest discovery, in the module's order, edits included
	counters    []device.CounterSet // the shared counters of the latest discovery
	index       map[string]int
	refused     map[string]error // devices of the latest discovery left out, and why
	files       *fileWatch       // while watching
	interval    time.Duration
	discoveries uint64
	failures    uint64
	consecutive int
	lastAt      time.Time
	lastErr     string
	next        time.Time // the next discovery, if one is due
	ended       string
}

// NewSource returns a provider for the device-source module called name in
// reg, serving the resource the module declares now. The provider options
// (pre-start, preferred allocation) are the module's now and stay fixed; a
// replacement module that changes them needs a new Source (the Controller
// does this).
func NewSource(reg *module.Registry, name string, opts Options) (*Source, error) {
	m := reg.Get(name)
	if m == nil {
		return nil, fmt.Errorf("module %q: %w", name, ErrNotLoaded)
	}
	d := m.Description()
	if d.Kind != abi.KindDeviceSource {
		return nil, fmt.Errorf("module %q is a %s, not a device source", name, d.Kind)
	}
	opts = opts.withDefaults()
	return &Source{
		reg:      reg,
		name:     name,
		resource: d.Resource,
		driver:   driverOf(m),
		popts:    providerOptions(m),
		opts:     opts,
		log:      opts.Logger.With("module", name, "resource", d.Resource),
		kick:     make(chan struct{}, 1),
		done:     make(chan struct{}),
	}, nil
}

func providerOptions(m *module.Module) devicemanager.ProviderOptions {
	return devicemanager.ProviderOptions{
		PreStartRequired:    m.Description().PreStartRequired,
		PreferredAllocation: m.Implements(abi.OpPreferredAllocation),
		Driver:              driverOf(m),
	}
}

// driverOf is the driver a device-source module's devices are a pool of:
// the one it declares, else abi.DefaultDriver of its resource.
func driverOf(m *module.Module) string {
	d := m.Description()
	if d.Driver != "" {
		return d.Driver
	}
	return abi.DefaultDriver(d.Resource)
}

// Name is "module:<module name>".
func (s *Source) Name() string { return "module:" + s.name }

// Module is the name of the module the source serves.
func (s *Source) Module() string { return s.name }

// Resource is the extended resource the source serves.
func (s *Source) Resource() string { return s.resource }

// Driver is the resource.k8s.io driver whose pool on this node the
// source's devices are.
func (s *Source) Driver() string { return s.driver }

// SharedCounters are the counter sets of the latest discovery, which its
// devices' ConsumesCounters refer to. Called from within Watch's update, they
// are those of the device set being reported.
func (s *Source) SharedCounters() []device.CounterSet {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return device.CloneCounterSets(s.counters)
}

// Options are the module's: pre-start when it requires it, preferred
// allocation when it implements it.
func (s *Source) Options() devicemanager.ProviderOptions { return s.popts }

// Close ends Watch, if it is running. The device manager calls it once Watch
// has returned. A closed source stays closed (a later Watch returns at once):
// give SetProvider a new Source each time.
func (s *Source) Close() error {
	s.stop(nil)
	return nil
}

// stop ends Watch with err (nil: as if its context were done), now and
// whenever it is called again.
func (s *Source) stop(err error) {
	s.stopOnce.Do(func() {
		s.stopErr = err
		close(s.done)
	})
}

// Rediscover asks Watch to discover now, and forgets earlier failures: the
// module may have been replaced or its trouble fixed.
func (s *Source) Rediscover() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Devices returns the devices of the latest successful discovery that the
// module may hand out, with their container edits, in the module's order.
// The caller owns the copy.
func (s *Source) Devices() []device.Device {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return device.Clone(s.devices)
}

// Source states (Status.State).
const (
	// StateDiscovering: no discovery has finished yet.
	StateDiscovering = "discovering"
	// StateOK: the last discovery succeeded.
	StateOK = "ok"
	// StateFailing: the last discovery failed; the source tries again at
	// NextDiscovery, and after MaxFailures in a row its devices are
	// reported unhealthy until one succeeds.
	StateFailing = "failing"
	// StateStopped: Watch ended (Ended says why).
	StateStopped = "stopped"
)

// Status is a snapshot of a source, for the API and the CLI.
type Status struct {
	Module, Resource, Provider string
	// State is one of the State* constants.
	State string
	// Watching lists the directories followed for changes.
	Watching []string
	// Interval is the rediscovery period (0: none).
	Interval time.Duration
	Devices  int
	// Refused are the devices of the latest discovery left out because the
	// module may not hand out their container edits, with the reason, by
	// device id.
	Refused map[string]string
	// Discoveries and Failures count discovery attempts and failed ones.
	Discoveries, Failures uint64
	ConsecutiveFailures   int
	LastDiscovery         time.Time
	LastError             string
	// NextDiscovery is when the next discovery is due: the retry of a
	// failed one, or the next interval; zero when none is.
	NextDiscovery time.Time
	// Ended says why Watch ended, if it did: the module was quarantined,
	// unloaded, or serves another resource now.
	Ended string
}

// Status returns a snapshot of the source.
func (s *Source) Status() Status {
	s.mu.RLock()
	defer s.mu.RUnlock()
	st := Status{Module: s.name, Resource: s.resource, Provider: s.Name(), Interval: s.interval,
		Devices: len(s.devices), Discoveries: s.discoveries, Failures: s.failures, ConsecutiveFailures: s.consecutive,
		LastDiscovery: s.lastAt, LastError: s.lastErr, NextDiscovery: s.next, Ended: s.ended}
	switch {
	case s.ended != "":
		st.State, st.NextDiscovery = StateStopped, time.Time{}
	case s.consecutive > 0:
		st.State = StateFailing
	case s.discoveries == 0:
		st.State = StateDiscovering
	default:
		st.State = StateOK
	}
	for id, err := range s.refused {
		if st.Refused == nil {
			st.Refused = map[string]string{}
		}
		st.Refused[id] = err.Error()
	}
	if s.files != nil {
		st.Watching = s.files.watching()
	}
	return st
}

// module returns the module serving the source now.
func (s *Source) module(op abi.Op) (*module.Module, error) {
	m := s.reg.Get(s.name)
	if m == nil {
		return nil, fmt.Errorf("module %q: %s: %w", s.name, op, ErrNotLoaded)
	}
	if d := m.Description(); d.Kind != abi.KindDeviceSource || d.Resource != s.resource {
		return nil, fmt.Errorf("module %q: %s: %w: it serves %q (%s), this source %q", s.name, op, ErrResourceChanged,
			m.Serves(), d.Kind, s.resource)
	}
	return m, nil
}

// call runs fn on the module serving the source now. A module closed under
// the call — replaced between the lookup and the call — is looked up again,
// once. An error that means the source cannot work any more (the module is
// quarantined or gone) makes Watch look at once, rather than at its next
// discovery, so that the devices do not stay healthy meanwhile.
func (s *Source) call(op abi.Op, fn func(*module.Module) error) error {
	for attempt := 0; ; attempt++ {
		var err error
		if m, merr := s.module(op); merr != nil {
			err = merr
		} else {
			err = fn(m)
		}
		var ce *module.CallError
		if attempt == 0 && errors.As(err, &ce) && ce.Fault == module.FaultClosed {
			continue
		}
		if err != nil && op != abi.OpDiscover && terminal(err) {
			s.Rediscover()
		}
		return err
	}
}

// terminal reports whether a discovery error ends Watch at once.
func terminal(err error) bool {
	var ce *module.CallError
	return errors.Is(err, ErrNotLoaded) || errors.Is(err, ErrResourceChanged) ||
		errors.As(err, &ce) && (ce.Fault == module.FaultQuarantined || ce.Fault == module.FaultClosed)
}

// Watch reports the module's devices to update: discovered now, and again
// on the interval, on changes under the module's mounts, and on Rediscover,
// each time the set, or a device's container edits, differs from the one
// reported last. A failed discovery is retried with backoff, for as long
// as it takes; after MaxFailures in a row the devices last reported are
// reported again, unhealthy, until a discovery succeeds. It returns nil
// when ctx is done or the source is closed, and an error naming the module
// when discovery cannot succeed any more (the module is quarantined,
// unloaded, or serves another resource).
func (s *Source) Watch(ctx context.Context, update func([]device.Device)) error {
	if !s.watching.CompareAndSwap(false, true) {
		return fmt.Errorf("module %q: device source for %s is already being watched", s.name, s.resource)
	}
	defer s.watching.Store(false)
	var files *fileWatch
	if !s.opts.NoWatch {
		files = newFileWatch(s.log, s.opts.Debounce)
		s.mu.Lock()
		s.files = files
		s.mu.Unlock()
		defer func() {
			files.close()
			s.mu.Lock()
			s.files = nil
			s.mu.Unlock()
		}()
	}
	stopped, err := s.watch(ctx, files, update)
	if err == nil {
		return nil
	}
	s.mu.Lock()
	s.ended = err.Error()
	s.mu.Unlock()
	if stopped {
		s.log.Info("device source stopped", "reason", err)
		return err
	}
	s.log.Error("device source stopped; its devices are unhealthy until its module is reloaded or replaced", "error", err)
	if s.onEnd != nil {
		s.onEnd(err)
	}
	return err
}

// watch is Watch's loop. It returns why it ended, and whether that was stop.
func (s *Source) watch(ctx context.Context, files *fileWatch, update func([]device.Device)) (stopped bool, err error) {
	var (
		changed          <-chan struct{}
		reported         []device.Device
		reportedCounters []device.CounterSet
		sent             bool
		failures         int
	)
	if files != nil {
		changed = files.changed
	}
	timer := time.NewTimer(0) // discover at once
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return false, nil
		case <-s.done:
			return true, s.stopErr
		case <-timer.C:
		case <-s.kick:
			failures = 0
		case <-changed:
			// Even while backing off: what failed may be what changed. The
			// count is kept, so a failure again waits longer.
		}
		m, devs, counters, err := s.discover(ctx, files)
		if err != nil && ctx.Err() != nil {
			return false, nil
		}
		if err != nil {
			failures++
			if terminal(err) {
				s.recordFailure(err, failures, time.Time{})
				s.round(err)
				return false, err
			}
			wait := s.retryDelay(m, failures)
			s.recordFailure(err, failures, time.Now().Add(wait))
			switch {
			case failures == s.opts.MaxFailures && sent:
				// The devices cannot be vouched for any more.
				reported = unhealthy(reported)
				update(reported)
				s.log.Error("discover keeps failing; the devices are reported unhealthy until it succeeds",
					"failures", failures, "retry_in", wait, "error", err)
			case failures <= s.opts.MaxFailures || failures%10 == 0:
				s.log.Warn("discover failed; retrying", "failures", failures, "retry_in", wait, "error", err)
			}
			timer.Reset(wait)
			s.round(err)
			continue
		}
		if failures > 0 {
			s.log.Info("discover succeeded again", "after_failures", failures)
		}
		failures = 0
		// Edits are compared too: the CDI spec follows them (host/cdi); and
		// the shared counters, which the devices are allocated against.
		if !sent || !device.Equal(devs, reported) || !device.EqualCounterSets(counters, reportedCounters) {
			update(devs)
			reported, reportedCounters, sent = devs, counters, true
		}
		interval := s.intervalFor(m)
		next := time.Time{}
		if interval > 0 {
			timer.Reset(interval)
			next = time.Now().Add(interval)
		} else {
			timer.Stop()
		}
		s.mu.Lock()
		s.next = next
		s.mu.Unlock()
		s.round(nil)
	}
}

// round tells the test hook of a discovery attempt.
func (s *Source) round(err error) {
	if s.afterRound != nil {
		s.afterRound(err)
	}
}

// retryDelay is the wait after the n-th failed discovery in a row: the
// backoff, but never longer than the rediscovery interval.
func (s *Source) retryDelay(m *module.Module, n int) time.Duration {
	wait := backoff.Delay(s.opts.RetryBackoff, s.opts.MaxBackoff, n)
	if m != nil {
		if interval := s.intervalFor(m); interval > 0 && interval < wait {
			wait = interval
		}
	}
	return wait
}

// unhealthy is devs, every one unhealthy.
func unhealthy(devs []device.Device) []device.Device {
	out := device.Clone(devs)
	for i := range out {
		out[i].Healthy = false
	}
	return out
}

// intervalFor is the rediscovery period with module m serving.
func (s *Source) intervalFor(m *module.Module) time.Duration {
	d := s.opts.DiscoverInterval
	if d == 0 {
		d = time.Duration(m.Description().DiscoverIntervalMS) * time.Millisecond
	}
	if d < 0 {
		d = 0
	}
	if d > 0 && d < MinDiscoverInterval {
		d = MinDiscoverInterval
	}
	s.mu.Lock()
	s.interval = d
	s.mu.Unlock()
	return d
}

// discover asks the module for its devices, converts them under the
// module's policy, checks them and keeps them. It returns the module that
// answered (when one did) and the set. Devices the policy refuses are left
// out, logged and counted when they were not refused for the same reason
// the last time. Before it asks, it makes files follow the module's mounts,
// so that no change after the module has looked goes unseen. The set
// returned is the source's own: it is replaced, never modified, by the
// next discovery.
func (s *Source) discover(ctx context.Context, files *fileWatch) (*module.Module, []device.Device, []device.CounterSet, error) {
	var (
		served *module.Module
		found  []abi.Device
		sets   []abi.CounterSet
	)
	err := s.call(abi.OpDiscover, func(m *module.Module) error {
		served = m
		if files != nil {
			mounts := m.Options().Mounts
			dirs := make([]string, 0, len(mounts))
			for _, mt := range mounts {
				dirs = append(dirs, mt.Host)
			}
			files.set(dirs)
		}
		resp, err := m.Discovery(ctx)
		if err != nil {
			return err
		}
		if err := abi.ValidDiscovery(resp); err != nil {
			return fmt.Errorf("module %q: discover: %w", s.name, err)
		}
		found, sets = resp.Devices, resp.SharedCounters
		return nil
	})
	if err != nil {
		return served, nil, nil, err
	}
	devs, refused := s.fromABI(served).devices(found)
	counters, err := counterSets(sets)
	if err != nil {
		return served, nil, nil, fmt.Errorf("module %q: discover: %w", s.name, err)
	}
	if err := devicemanager.ValidDevices(devs); err != nil {
		return served, nil, nil, fmt.Errorf("module %q: discover: returned an invalid device set: %w", s.name, err)
	}
	index := make(map[string]int, len(devs))
	for i := range devs {
		index[devs[i].ID] = i
	}
	s.mu.Lock()
	before := s.refused
	s.devices, s.index, s.refused, s.counters = devs, index, refused, counters
	s.discoveries++
	s.consecutive, s.lastAt, s.lastErr = 0, time.Now(), ""
	s.mu.Unlock()
	for id, err := range refused {
		if old, ok := before[id]; ok && old.Error() == err.Error() {
			continue
		}
		s.log.Warn("device left out: the module may not hand out its container edits", "device", id, "reason", err)
		s.fromABI(served).count(err)
	}
	return served, devs, counters, nil
}

// fromABI is the converter of m's answers, under m's policy.
func (s *Source) fromABI(m *module.Module) fromABI {
	refused := func(string) {}
	if o := s.opts.Observer; o != nil {
		refused = func(kind string) { o.EditsRefused(s.name, kind) }
	}
	return newFromABI(m, s.resource, s.opts.Grant, refused)
}

func (s *Source) recordFailure(err error, consecutive int, next time.Time) {
	s.mu.Lock()
	s.discoveries++
	s.failures++
	s.consecutive, s.lastAt, s.lastErr, s.next = consecutive, time.Now(), err.Error(), next
	s.mu.Unlock()
}

// Allocate returns what a container needs to use devices ids: the module's
// answer when it implements allocate, converted under the module's policy
// (an answer with edits the module may not hand out is refused, with a
// *device.Refused), else the devices' container edits from the latest
// discovery, merged (device.Merge; they passed the policy when they were
// discovered).
func (s *Source) Allocate(ctx context.Context, ids []string, workload string) (device.Edits, error) {
	var edits device.Edits
	err := s.call(abi.OpAllocate, func(m *module.Module) error {
		if !m.Implements(abi.OpAllocate) {
			var err error
			edits, err = s.mergeEdits(ids)
			return err
		}
		resp, err := m.Allocate(ctx, &abi.AllocateRequest{DeviceIDs: ids, Workload: workload})
		if err != nil {
			return err
		}
		if edits, err = s.fromABI(m).allocation(resp); err != nil {
			s.log.Warn("allocation refused: the module may not hand out its container edits", "devices", ids, "reason", err)
			return fmt.Errorf("module %q: allocate: %w", s.name, err)
		}
		return nil
	})
	if err != nil {
		return device.Edits{}, err
	}
	return edits, nil
}

func (s *Source) mergeEdits(ids []string) (device.Edits, error) {
	s.mu.RLock()
	devs := make([]device.Device, len(ids))
	for i, id := range ids {
		j, ok := s.index[id]
		if !ok {
			n := len(s.devices)
			why := ""
			if err := s.refused[id]; err != nil {
				why = " (it was left out: " + err.Error() + ")"
			}
			s.mu.RUnlock()
			return device.Edits{}, fmt.Errorf("module %q: allocate: device %q is not among the %d devices last discovered%s", s.name, id, n, why)
		}
		devs[i] = s.devices[j]
	}
	s.mu.RUnlock()
	edits, err := device.Merge(devs)
	if err != nil {
		return device.Edits{}, fmt.Errorf("module %q: allocate: the module does not implement allocate, and the host cannot merge the devices' edits: %w", s.name, err)
	}
	return edits, nil
}

// PreferredAllocation asks the module which size devices of available to
// hand out, including mustInclude.
func (s *Source) PreferredAllocation(ctx context.Context, available, mustInclude []string, size int) ([]string, error) {
	var ids []string
	err := s.call(abi.OpPreferredAllocation, func(m *module.Module) error {
		if !m.Implements(abi.OpPreferredAllocation) {
			return fmt.Errorf("module %q: %s: not implemented by the module now loaded", s.name, abi.OpPreferredAllocation)
		}
		var err error
		ids, err = m.PreferredAllocation(ctx, &abi.PreferredAllocationRequest{
			Available: available, MustInclude: mustInclude, Size: int32(size)})
		return err
	})
	return ids, err
}

// PreStart tells the module a container with devices ids is starting. A
// module that does not implement prestart has nothing to do.
func (s *Source) PreStart(ctx context.Context, ids []string, workload string) error {
	return s.call(abi.OpPreStart, func(m *module.Module) error {
		if !m.Implements(abi.OpPreStart) {
			return nil
		}
		return m.PreStart(ctx, &abi.PreStartRequest{DeviceIDs: ids, Workload: workload})
	})
}

// Prepare returns what a container needs for each of claim's allocated
// devices of the source's driver (claim.Status.Allocation): the module's
// prepare answer (CDI device names and container edits), under the
// module's policy, or, for a module without prepare, each device's
// container edits from the latest discovery (they passed the policy when
// they were discovered).
func (s *Source) Prepare(ctx context.Context, claim *resourceapi.ResourceClaim, workload string) ([]device.Prepared, error) {
	var results []resourceapi.DeviceRequestAllocationResult
	if a := claim.Status.Allocation; a != nil {
		for _, r := range a.Devices.Results {
			if r.Driver == s.driver {
				results = append(results, r)
			}
		}
	}
	var out []device.Prepared
	err := s.call(abi.OpPrepare, func(m *module.Module) error {
		if !m.Implements(abi.OpPrepare) {
			var err error
			out, err = s.derivePrepared(claim, results)
			return err
		}
		req := prepareRequest(claim, results, s.driver, workload)
		resp, err := m.Prepare(ctx, req)
		if err != nil {
			return err
		}
		if out, err = s.fromABI(m).prepared(resp, req.Results); err != nil {
			s.log.Warn("prepare refused", "claim", claim.Namespace+"/"+claim.Name, "reason", err)
			return fmt.Errorf("module %q: prepare: %w", s.name, err)
		}
		return nil
	})
	return out, err
}

// prepareRequest is the prepare request of claim's results of driver: the
// devices, and the opaque configuration for the driver, from the class
// first and then the claim, as the allocation lists them.
func prepareRequest(claim *resourceapi.ResourceClaim, results []resourceapi.DeviceRequestAllocationResult, driver, workload string) *abi.PrepareRequest {
	req := &abi.PrepareRequest{Claim: abi.Claim{UID: string(claim.UID), Namespace: claim.Namespace, Name: claim.Name},
		Workload: workload}
	for _, r := range results {
		a := abi.AllocatedDevice{Request: r.Request, DeviceID: r.Device}
		if r.ShareID != nil {
			a.ShareID = string(*r.ShareID)
		}
		a.ConsumedCapacity = device.QuantityStrings(r.ConsumedCapacity)
		req.Results = append(req.Results, a)
	}
	if a := claim.Status.Allocation; a != nil {
		for _, src := range []resourceapi.AllocationConfigSource{resourceapi.AllocationConfigSourceClass, resourceapi.AllocationConfigSourceClaim} {
			for _, c := range a.Devices.Config {
				if c.Source == src && c.Opaque != nil && c.Opaque.Driver == driver {
					req.Configs = append(req.Configs, abi.DeviceConfig{Requests: c.Requests, Source: string(src),
						Parameters: c.Opaque.Parameters.Raw})
				}
			}
		}
	}
	return req
}

// derivePrepared is what a source without prepare answers: each device's
// edits from the latest discovery.
func (s *Source) derivePrepared(claim *resourceapi.ResourceClaim, results []resourceapi.DeviceRequestAllocationResult) ([]device.Prepared, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]device.Prepared, 0, len(results))
	for _, r := range results {
		i, ok := s.index[r.Device]
		if !ok {
			return nil, fmt.Errorf("module %q: prepare: device %q of claim %s/%s is not among the %d devices last discovered",
				s.name, r.Device, claim.Namespace, claim.Name, len(s.devices))
		}
		out = append(out, device.Prepared{Request: r.Request, Device: r.Device, Edits: s.devices[i].Edits.Clone()})
	}
	return out, nil
}

// Unprepare tells the source a claim's devices are no longer used. A
// module without unprepare has nothing to do.
func (s *Source) Unprepare(ctx context.Context, claim *resourceapi.ResourceClaim) error {
	return s.call(abi.OpUnprepare, func(m *module.Module) error {
		if !m.Implements(abi.OpUnprepare) {
			return nil
		}
		return m.Unprepare(ctx, &abi.Claim{UID: string(claim.UID), Namespace: claim.Namespace, Name: claim.Name})
	})
}
