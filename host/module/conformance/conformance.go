// Package conformance checks that a WebAssembly module follows the wasmlet
// ABI (abi/ABI.md). Module authors run it on their own module:
//
//	go test ./host/module/conformance -module=/path/to/my.wasm [-config key=value,...]
//
// or call Run from a test of their own. The same checks run in this
// repository against the Go and C example modules and a hand-written
// WebAssembly text module.
package conformance

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/wasmlet/wasmlet/abi"
	"github.com/wasmlet/wasmlet/host/module"
)

// Run loads the module at path with opts and checks it. Each check is a
// subtest, so a failure says which rule the module broke.
func Run(t *testing.T, path string, opts module.Options) {
	t.Helper()
	ctx := context.Background()
	if opts.MemoryLimit == 0 {
		opts.MemoryLimit = 64 << 20
	}
	if opts.PoolSize == 0 {
		opts.PoolSize = 4
	}
	m, err := module.Load(ctx, path, opts)
	if err != nil {
		t.Fatalf("the host refuses the module: %v", err)
	}
	t.Cleanup(func() { m.Close(ctx) })
	d := m.Description()

	t.Run("describe is stable", func(t *testing.T) {
		var again abi.Description
		if err := m.Call(ctx, abi.OpDescribe, &abi.DescribeRequest{HostABIVersion: abi.Version}, &again); err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(again) != fmt.Sprint(d) {
			t.Fatalf("second describe differs:\nfirst  %+v\nsecond %+v", d, again)
		}
	})

	for _, op := range d.Operations {
		op := abi.Op(op)
		t.Run(string(op)+" tolerates unknown fields", func(t *testing.T) {
			// Field 1000, a string and a varint: a future host may send them.
			req := raw(append(appendField(nil, 1000, "from the future"), 0xc0, 0x3e, 0x01))
			noFault(t, m.Call(ctx, op, req, responseFor(op)))
		})
		t.Run(string(op)+" survives an empty request", func(t *testing.T) {
			noFault(t, m.Call(ctx, op, raw(nil), responseFor(op)))
		})
		t.Run(string(op)+" survives a malformed request", func(t *testing.T) {
			// A length-delimited field 1 claiming more bytes than follow.
			noFault(t, m.Call(ctx, op, raw([]byte{0x0a, 0x7f, 'x'}), responseFor(op)))
		})
	}

	switch d.Kind {
	case abi.KindDeviceSource:
		deviceSource(t, m)
	case abi.KindHandler:
		handler(t, m)
	}

	t.Run("concurrent calls", func(t *testing.T) {
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
		for err := range errs {
			t.Error(err)
		}
	})
}

func deviceSource(t *testing.T, m *module.Module) {
	ctx := context.Background()
	var devs []abi.Device
	t.Run("discover returns valid devices", func(t *testing.T) {
		var err error
		devs, err = m.Discover(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := ValidDevices(devs); err != nil {
			t.Fatal(err)
		}
	})
	if len(devs) == 0 {
		return
	}
	ids := make([]string, len(devs))
	for i, dev := range devs {
		ids[i] = dev.ID
	}
	if m.Implements(abi.OpAllocate) {
		t.Run("allocate a discovered device", func(t *testing.T) {
			_, err := m.Allocate(ctx, &abi.AllocateRequest{DeviceIDs: ids[:1], Workload: "conformance/0"})
			noFault(t, err)
		})
	}
	if m.Implements(abi.OpPreferredAllocation) {
		t.Run("preferred allocation honours size and must-include", func(t *testing.T) {
			size := min(2, len(ids))
			must := ids[len(ids)-1:]
			got, err := m.PreferredAllocation(ctx, &abi.PreferredAllocationRequest{Available: ids, MustInclude: must, Size: int32(size)})
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != size {
				t.Fatalf("got %d devices %v, asked for %d", len(got), got, size)
			}
			avail := map[string]bool{}
			for _, id := range ids {
				avail[id] = true
			}
			found := false
			for _, id := range got {
				if !avail[id] {
					t.Fatalf("preferred %q, which was not available", id)
				}
				found = found || id == must[0]
			}
			if !found {
				t.Fatalf("preferred %v leaves out must-include %q", got, must[0])
			}
		})
	}
	if m.Implements(abi.OpPreStart) {
		t.Run("prestart a discovered device", func(t *testing.T) {
			noFault(t, m.PreStart(ctx, &abi.PreStartRequest{DeviceIDs: ids[:1], Workload: "conformance/0"}))
		})
	}
}

func handler(t *testing.T, m *module.Module) {
	ctx := context.Background()
	p := &abi.Plugin{Type: m.Description().PluginType, Name: "conformance-plugin", Endpoint: "/tmp/conformance.sock",
		SupportedVersions: []string{"v1", "v1beta1"}, SocketPath: "/tmp/conformance-reg.sock"}
	for _, op := range []abi.Op{abi.OpValidate, abi.OpRegister, abi.OpDeregister} {
		if !m.Implements(op) {
			continue
		}
		t.Run(string(op)+" a plugin", func(t *testing.T) {
			noFault(t, m.Call(ctx, op, &abi.ValidateRequest{Plugin: *p}, responseFor(op)))
		})
	}
}

// ValidDevices checks a device set the way the host does before accepting it.
func ValidDevices(devs []abi.Device) error {
	seen := map[string]bool{}
	for i, d := range devs {
		if err := abi.ValidDeviceID(d.ID); err != nil {
			return fmt.Errorf("device %d: %w", i, err)
		}
		if seen[d.ID] {
			return fmt.Errorf("device id %q appears twice", d.ID)
		}
		seen[d.ID] = true
		if d.Health != abi.Healthy && d.Health != abi.Unhealthy {
			return fmt.Errorf("device %q: health %d is neither healthy (0) nor unhealthy (1)", d.ID, d.Health)
		}
	}
	return nil
}

func noFault(t *testing.T, err error) {
	t.Helper()
	if module.IsFault(err) {
		t.Fatal(err)
	}
	var ce *module.CallError
	if err != nil && !errors.As(err, &ce) {
		t.Fatalf("error is not a *module.CallError: %v", err)
	}
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
