// Package conformance checks that a WebAssembly module follows the wasmlet
// ABI (abi/ABI.md). Module authors run it on their own module:
//
//	wasmlet module check my.wasm [--module-config key=value,...]
//
// or, in a checkout of this repository,
//
//	go test ./host/module/conformance -module=build/modules/my.wasm [-config key=value,...]
//
// or call Check (a report) or Run (a Go test, each check a subtest) from a
// program or test of their own. The same checks run in this repository
// against the Go and C example modules and a hand-written WebAssembly text
// module.
package conformance

import (
	"context"
	"errors"
	"fmt"
	"math"
	"reflect"
	"sync"
	"testing"

	"tags.cncf.io/container-device-interface/pkg/parser"

	"github.com/wasmlet/wasmlet/abi"
	"github.com/wasmlet/wasmlet/host/devicesource"
	"github.com/wasmlet/wasmlet/host/module"
)

// Result is the outcome of one check.
type Result struct {
	// Name says what is checked, e.g. "discover returns valid devices".
	Name string
	// Err is why the module failed the check; nil when it passed.
	Err error
	// Skipped says why the check did not run, when it did not.
	Skipped string
}

// Report is what Check found.
type Report struct {
	// What the module declares.
	Kind, Serves string
	Operations   []string
	Results      []Result
}

// Failed counts the checks the module failed.
func (r *Report) Failed() int {
	n := 0
	for _, res := range r.Results {
		if res.Err != nil {
			n++
		}
	}
	return n
}

// Defaults for what opts leaves unset: Check runs calls concurrently, and
// bounds the module's memory.
const (
	DefaultMemoryLimit = 64 << 20
	DefaultPoolSize    = 4
)

// Check loads the module at path with opts, as the host would, and runs
// every check that applies to what it declares, with quarantine off (each
// check sees the module's own faults). It returns an error only
// when the module cannot be checked at all: the host refuses it (a
// *module.LoadError, whose problems say why) or ctx is done.
func Check(ctx context.Context, path string, opts module.Options) (*Report, error) {
	if opts.MemoryLimit == 0 {
		opts.MemoryLimit = DefaultMemoryLimit
	}
	if opts.PoolSize == 0 {
		opts.PoolSize = DefaultPoolSize
	}
	// Every check sees the module's own faults, not a quarantine that
	// earlier checks' faults brought about.
	opts.QuarantineAfter = math.MaxInt32
	m, err := module.Load(ctx, path, opts)
	if err != nil {
		return nil, err
	}
	defer m.Close(ctx)
	d := m.Description()
	c := &checker{ctx: ctx, m: m, r: &Report{Kind: d.Kind.String(), Serves: m.Serves(), Operations: d.Operations}}
	c.all()
	return c.r, ctx.Err()
}

// Run is Check as a Go test: each check is a subtest, so a failure says
// which rule the module broke. A module the host refuses fails the test
// at once.
func Run(t *testing.T, path string, opts module.Options) {
	t.Helper()
	r, err := Check(context.Background(), path, opts)
	if err != nil {
		t.Fatalf("the host refuses the module: %v", err)
	}
	for _, res := range r.Results {
		t.Run(res.Name, func(t *testing.T) {
			switch {
			case res.Err != nil:
				t.Fatal(res.Err)
			case res.Skipped != "":
				t.Skip(res.Skipped)
			}
		})
	}
}

// checker runs the checks on one module, recording each.
type checker struct {
	ctx context.Context
	m   *module.Module
	r   *Report
}

func (c *checker) check(name string, f func() error) bool {
	if c.ctx.Err() != nil {
		c.r.Results = append(c.r.Results, Result{Name: name, Skipped: "cancelled"})
		return false
	}
	err := f()
	c.r.Results = append(c.r.Results, Result{Name: name, Err: err})
	return err == nil
}

func (c *checker) skip(name, why string) {
	c.r.Results = append(c.r.Results, Result{Name: name, Skipped: why})
}

func (c *checker) all() {
	ctx, m := c.ctx, c.m
	d := m.Description()
	c.check("describe is stable", func() error {
		var again abi.Description
		if err := m.Call(ctx, abi.OpDescribe, &abi.DescribeRequest{HostABIVersion: abi.Version}, &again); err != nil {
			return err
		}
		if fmt.Sprint(again) != fmt.Sprint(d) {
			return fmt.Errorf("second describe differs:\nfirst  %+v\nsecond %+v", d, again)
		}
		return nil
	})

	for _, op := range d.Operations {
		op := abi.Op(op)
		c.check(string(op)+" tolerates unknown fields", func() error {
			// Field 1000, a string and a varint: a future host may send them.
			req := raw(append(appendField(nil, 1000, "from the future"), 0xc0, 0x3e, 0x01))
			return noFault(m.Call(ctx, op, req, responseFor(op)))
		})
		c.check(string(op)+" survives an empty request", func() error {
			return noFault(m.Call(ctx, op, raw(nil), responseFor(op)))
		})
		c.check(string(op)+" survives a malformed request", func() error {
			// A length-delimited field 1 claiming more bytes than follow.
			return noFault(m.Call(ctx, op, raw([]byte{0x0a, 0x7f, 'x'}), responseFor(op)))
		})
	}

	switch d.Kind {
	case abi.KindDeviceSource:
		c.deviceSource()
	case abi.KindHandler:
		c.handler()
	}

	c.check("concurrent calls", func() error {
		op := abi.OpDescribe
		var req abi.Message = &abi.DescribeRequest{HostABIVersion: abi.Version}
		if d.Kind == abi.KindDeviceSource {
			op, req = abi.OpDiscover, &abi.DiscoverRequest{}
		}
		var wg sync.WaitGroup
		errs := make(chan error, 64)
		for g := 0; g < 8; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 25; i++ {
					if err := m.Call(ctx, op, req, responseFor(op)); module.IsFault(err) {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		if first, ok := <-errs; ok {
			return fmt.Errorf("%d of 8 callers met a fault; the first: %w", 1+len(errs), first)
		}
		return nil
	})
}

func (c *checker) deviceSource() {
	ctx, m := c.ctx, c.m
	var devs []abi.Device
	ok := c.check("discover returns valid devices", func() error {
		d, err := m.Discovery(ctx)
		if err != nil {
			return err
		}
		devs = d.Devices
		return ValidDiscovery(d)
	})
	ops := []struct {
		op   abi.Op
		name string
	}{
		{abi.OpAllocate, "allocate a discovered device"},
		{abi.OpPreferredAllocation, "preferred allocation honours size and must-include"},
		{abi.OpPreStart, "prestart a discovered device"},
		{abi.OpPrepare, "prepare a discovered device twice, with the same answer"},
		{abi.OpUnprepare, "unprepare a prepared claim, twice"},
	}
	for _, o := range ops {
		switch {
		case !m.Implements(o.op):
			continue
		case !ok:
			c.skip(o.name, "discover failed")
			continue
		case len(devs) == 0:
			c.skip(o.name, "discover found no devices")
			continue
		}
		ids := make([]string, len(devs))
		for i, dev := range devs {
			ids[i] = dev.ID
		}
		switch o.op {
		case abi.OpAllocate:
			c.check(o.name, func() error {
				_, err := m.Allocate(ctx, &abi.AllocateRequest{DeviceIDs: ids[:1], Workload: "conformance/0"})
				return noFault(err)
			})
		case abi.OpPreferredAllocation:
			c.check(o.name, func() error { return preferred(ctx, m, ids) })
		case abi.OpPreStart:
			c.check(o.name, func() error {
				return noFault(m.PreStart(ctx, &abi.PreStartRequest{DeviceIDs: ids[:1], Workload: "conformance/0"}))
			})
		case abi.OpPrepare:
			c.check(o.name, func() error { return prepareTwice(ctx, m, &devs[0]) })
		case abi.OpUnprepare:
			c.check(o.name, func() error {
				claim := conformanceClaim()
				if err := m.Unprepare(ctx, &claim); err != nil {
					return err
				}
				return m.Unprepare(ctx, &claim)
			})
		}
	}
	if m.Implements(abi.OpUnprepare) {
		c.check("unprepare a claim never prepared", func() error {
			return m.Unprepare(ctx, &abi.Claim{UID: "conformance-unknown-claim", Namespace: "conformance", Name: "unknown"})
		})
	}
	if m.Implements(abi.OpPrepare) {
		c.check("prepare a device that does not exist", func() error {
			req := prepareRequest(&abi.Device{ID: "conformance-no-such-device"})
			return noFault(errOf(m.Prepare(ctx, req)))
		})
	}
}

func errOf(_ any, err error) error { return err }

func conformanceClaim() abi.Claim {
	return abi.Claim{UID: "conformance-claim-uid", Namespace: "conformance", Name: "claim"}
}

// prepareRequest allocates dev to a claim as the host would: a device that
// allows multiple allocations gets a share of it, consuming each capacity's
// default (or all of a capacity without a policy).
func prepareRequest(dev *abi.Device) *abi.PrepareRequest {
	res := abi.AllocatedDevice{Request: "conformance", DeviceID: dev.ID}
	if dev.AllowMultipleAllocations {
		res.ShareID = "conformance-share"
		res.ConsumedCapacity = map[string]string{}
		for name, c := range dev.Capacity {
			res.ConsumedCapacity[name] = c.Value
			if c.RequestPolicy != nil && c.RequestPolicy.Default != "" {
				res.ConsumedCapacity[name] = c.RequestPolicy.Default
			}
		}
	}
	return &abi.PrepareRequest{Claim: conformanceClaim(), Results: []abi.AllocatedDevice{res}, Workload: "conformance/pod/container"}
}

// prepareTwice prepares dev for a claim twice: the answer must be the same
// (the host repeats prepare after a restart, as the kubelet repeats
// NodePrepareResources), answer only for the device asked, and name CDI
// devices as CDI does.
func prepareTwice(ctx context.Context, m *module.Module, dev *abi.Device) error {
	req := prepareRequest(dev)
	first, err := m.Prepare(ctx, req)
	if err != nil {
		return err
	}
	again, err := m.Prepare(ctx, req)
	if err != nil {
		return fmt.Errorf("the second prepare of the same claim failed: %w", err)
	}
	if !reflect.DeepEqual(first, again) {
		return fmt.Errorf("the same prepare answered differently:\nfirst  %+v\nsecond %+v", first, again)
	}
	for _, p := range first.Devices {
		if p.Request != req.Results[0].Request || p.DeviceID != dev.ID {
			return fmt.Errorf("prepare answered for request %q, device %q; it was asked for request %q, device %q",
				p.Request, p.DeviceID, req.Results[0].Request, dev.ID)
		}
		for _, id := range p.CDIDeviceIDs {
			if _, _, _, err := parser.ParseQualifiedName(id); err != nil {
				return fmt.Errorf("device %q: CDI device %q: %w", dev.ID, id, err)
			}
		}
	}
	return nil
}

func preferred(ctx context.Context, m *module.Module, ids []string) error {
	size := min(2, len(ids))
	must := ids[len(ids)-1:]
	got, err := m.PreferredAllocation(ctx, &abi.PreferredAllocationRequest{Available: ids, MustInclude: must, Size: int32(size)})
	if err != nil {
		return err
	}
	if len(got) != size {
		return fmt.Errorf("got %d devices %v, asked for %d", len(got), got, size)
	}
	avail := map[string]bool{}
	for _, id := range ids {
		avail[id] = true
	}
	found := false
	for _, id := range got {
		if !avail[id] {
			return fmt.Errorf("preferred %q, which was not available", id)
		}
		found = found || id == must[0]
	}
	if !found {
		return fmt.Errorf("preferred %v leaves out must-include %q", got, must[0])
	}
	return nil
}

func (c *checker) handler() {
	ctx, m := c.ctx, c.m
	p := &abi.Plugin{Type: m.Description().PluginType, Name: "conformance-plugin", Endpoint: "/tmp/conformance.sock",
		SupportedVersions: []string{"v1", "v1beta1"}, SocketPath: "/tmp/conformance-reg.sock"}
	for _, op := range []abi.Op{abi.OpValidate, abi.OpRegister, abi.OpDeregister} {
		if !m.Implements(op) {
			continue
		}
		c.check(string(op)+" a plugin", func() error {
			return noFault(m.Call(ctx, op, &abi.ValidateRequest{Plugin: *p}, responseFor(op)))
		})
	}
}

// ValidDevices checks a device set the way the host does before accepting it.
func ValidDevices(devs []abi.Device) error {
	return ValidDiscovery(&abi.DiscoverResponse{Devices: devs})
}

// ValidDiscovery checks a discover reply the way the host does before
// accepting it (devicesource.CheckDiscovery: ids, the structured fields as
// Kubernetes checks a ResourceSlice, request policies as its API validates
// them), and that every health is one the ABI defines.
func ValidDiscovery(r *abi.DiscoverResponse) error {
	if err := devicesource.CheckDiscovery(r); err != nil {
		return err
	}
	for _, d := range r.Devices {
		if d.Health != abi.Healthy && d.Health != abi.Unhealthy {
			return fmt.Errorf("device %q: health %d is neither healthy (0) nor unhealthy (1)", d.ID, d.Health)
		}
	}
	return nil
}

// noFault accepts a success or an error the module chose to answer with;
// a fault, or an error of another kind, fails the check.
func noFault(err error) error {
	if module.IsFault(err) {
		return err
	}
	var ce *module.CallError
	if err != nil && !errors.As(err, &ce) {
		return fmt.Errorf("error is not a *module.CallError: %w", err)
	}
	return nil
}

// raw is a request given as bytes.
type raw []byte

func (r raw) AppendTo(b []byte) []byte { return append(b, r...) }
func (r raw) Unmarshal([]byte) error   { return nil }

// responseFor returns the reply message of op, so that every reply is decoded
// and checked.
func responseFor(op abi.Op) abi.Message {
	switch op {
	case abi.OpDescribe:
		return &abi.Description{}
	case abi.OpValidate:
		return &abi.ValidateResponse{}
	case abi.OpRegister:
		return &abi.RegisterResponse{}
	case abi.OpDeregister:
		return &abi.DeregisterResponse{}
	case abi.OpDiscover:
		return &abi.DiscoverResponse{}
	case abi.OpAllocate:
		return &abi.AllocateResponse{}
	case abi.OpPreferredAllocation:
		return &abi.PreferredAllocationResponse{}
	case abi.OpPreStart:
		return &abi.PreStartResponse{}
	case abi.OpPrepare:
		return &abi.PrepareResponse{}
	case abi.OpUnprepare:
		return &abi.UnprepareResponse{}
	}
	panic("conformance: no response type for operation " + string(op))
}

func appendField(b []byte, num int, s string) []byte {
	b = appendVarint(b, uint64(num)<<3|2)
	b = appendVarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendVarint(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}
