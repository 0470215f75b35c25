//go:build !wasip1

package guest

import (
	"errors"
	"strings"
	"testing"
	"unsafe"

	"github.com/wasmlet/wasmlet/abi"
)

// codeOf is the code of an *abi.Error, or fails the test.
func codeOf(t *testing.T, err error) abi.Code {
	t.Helper()
	var e *abi.Error
	if !errors.As(err, &e) {
		t.Fatalf("got %v, want an error reply", err)
	}
	return e.Code
}

func TestABIVersion(t *testing.T) {
	if v := abiVersion(); v != abi.Version {
		t.Fatalf("wasmlet_abi_version = %d, want %d", v, abi.Version)
	}
}

func TestAlloc(t *testing.T) {
	if p := alloc(-1); p != nil {
		t.Errorf("alloc(-1) = %p, want 0", p)
	}
	if p := alloc(0); p == nil {
		t.Error("alloc(0) = 0: the host treats 0 as failure")
	}
	p := alloc(1000)
	if p == nil || len(in) < 1000 {
		t.Fatalf("alloc(1000) = %p with a %d-byte buffer", p, len(in))
	}
	if q := alloc(10); q != p {
		t.Errorf("a smaller request got a new buffer (%p, was %p): buffers are reused", q, p)
	}
	if q := alloc(5000); q == nil || len(in) < 5000 {
		t.Errorf("alloc(5000) = %p with a %d-byte buffer", q, len(in))
	}
}

func TestDescribeBeforeServe(t *testing.T) {
	Reset()
	_, err := Description()
	if codeOf(t, err) != abi.CodeFailedPrecondition || !strings.Contains(err.Error(), "init function") {
		t.Fatalf("describe before Serve: %v", err)
	}
}

func TestDescribe(t *testing.T) {
	Reset()
	t.Cleanup(Reset)
	want := abi.Description{Kind: abi.KindDeviceSource, Name: "n", Resource: "example.com/x", Operations: []string{"discover"}}
	Describe(want)
	got, err := Description()
	if err != nil || got.Name != want.Name || got.Resource != want.Resource || got.Kind != want.Kind ||
		len(got.Operations) != 1 || got.Operations[0] != "discover" {
		t.Fatalf("describe = %+v, %v; want %+v", got, err, want)
	}
	defer func() {
		if r := recover(); r == nil || !strings.Contains(r.(string), "Serve called twice") {
			t.Fatalf("a second Describe: recovered %v", r)
		}
	}()
	Describe(want)
}

// op is an export over Handle, for the tests below.
func op(f func() (abi.Message, error)) func(unsafe.Pointer, int32) uint64 {
	return func(ptr unsafe.Pointer, n int32) uint64 {
		var req abi.DiscoverRequest
		return Handle(ptr, n, &req, f)
	}
}

func TestHandleErrors(t *testing.T) {
	for _, c := range []struct {
		name string
		err  error
		want abi.Error
	}{
		{"abi error", &abi.Error{Code: abi.CodeUnavailable, Message: "busy"}, abi.Error{Code: abi.CodeUnavailable, Message: "busy"}},
		{"plain error", errors.New("disk on fire"), abi.Error{Code: abi.CodeUnknown, Message: "disk on fire"}},
	} {
		// The error is the reply, even with a message beside it.
		for _, msg := range []abi.Message{nil, &abi.DiscoverResponse{Devices: []abi.Device{{ID: "d"}}}} {
			err := CallMessage(op(func() (abi.Message, error) { return msg, c.err }), &abi.DiscoverRequest{}, &abi.DiscoverResponse{})
			var e *abi.Error
			if !errors.As(err, &e) || *e != c.want {
				t.Errorf("%s, message %v: got %v, want %v", c.name, msg, err, &c.want)
			}
		}
	}
}

func TestHandleRefusesBadRequests(t *testing.T) {
	ran := false
	export := op(func() (abi.Message, error) { ran = true; return &abi.DiscoverResponse{}, nil })

	// Not decodable: a truncated varint in field 1.
	reply, isErr, err := Call(export, []byte{0x08, 0x80})
	var e abi.Error
	if err != nil || !isErr || e.Unmarshal(reply) != nil || e.Code != abi.CodeInvalidArgument ||
		!strings.Contains(e.Message, "DiscoverRequest") {
		t.Errorf("malformed request: %v %v %+v", isErr, err, e)
	}

	// Not where wasmlet_alloc put it, or longer than the buffer.
	alloc(16)
	elsewhere := make([]byte, 16)
	for name, call := range map[string]func() uint64{
		"another address": func() uint64 { return export(unsafe.Pointer(&elsewhere[0]), 4) },
		"too long":        func() uint64 { return export(unsafe.Pointer(&in[0]), int32(len(in)+1)) },
		"negative length": func() uint64 { return export(unsafe.Pointer(&in[0]), -1) },
	} {
		_, n, isErr := abi.UnpackResult(call())
		if !isErr || e.Unmarshal(out[:n]) != nil || e.Code != abi.CodeInvalidArgument ||
			!strings.Contains(e.Message, "wasmlet_alloc") {
			t.Errorf("%s: error %v, reply %+v", name, isErr, e)
		}
	}
	if ran {
		t.Error("the operation ran on a request it could not have")
	}
}

func TestEmptyReply(t *testing.T) {
	reply, isErr, err := Call(op(func() (abi.Message, error) { return &abi.DiscoverResponse{}, nil }), nil)
	if err != nil || isErr || len(reply) != 0 {
		t.Fatalf("empty reply: %q %v %v", reply, isErr, err)
	}
}

// noRequest is a request that decodes without allocating, so that
// TestSteadyCallsDoNotAllocate measures Handle alone.
type noRequest struct{}

func (noRequest) AppendTo(b []byte) []byte { return b }
func (noRequest) Unmarshal([]byte) error   { return nil }

// TestSteadyCallsDoNotAllocate: the request and reply buffers are reused.
func TestSteadyCallsDoNotAllocate(t *testing.T) {
	resp := &abi.DiscoverResponse{Devices: []abi.Device{{ID: "d0", NUMANodes: []int64{0}}}}
	var req noRequest
	f := func() (abi.Message, error) { return resp, nil }
	p := alloc(0)
	Handle(p, 0, &req, f) // grows the reply buffer once
	if n := testing.AllocsPerRun(100, func() { Handle(p, 0, &req, f) }); n != 0 {
		t.Fatalf("%v allocations per call", n)
	}
}

func TestConfig(t *testing.T) {
	long := strings.Repeat("v", 1000) // longer than Config's first buffer
	SetTestConfig(map[string]string{"k": "v", "long": long, "empty": ""})
	t.Cleanup(func() { SetTestConfig(nil) })
	for key, want := range map[string]string{"k": "v", "long": long, "empty": ""} {
		if got, ok := Config(key); !ok || got != want {
			t.Errorf("Config(%q) = %.20q, %v; want %.20q", key, got, ok, want)
		}
	}
	if got, ok := Config("absent"); ok || got != "" {
		t.Errorf("Config(absent) = %q, %v", got, ok)
	}
}
