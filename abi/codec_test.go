package abi

// The codec's own tests, on the standard library alone (the abi module has no
// dependencies). The differential tests against protobuf-go, and FuzzDecode,
// are in internal/abipb, in the main module.

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
)

func TestUnknownFieldsAreSkipped(t *testing.T) {
	var b []byte
	b = appendString(b, 100, "future")
	b = appendUint(b, 101, 7)
	b = append(appendTag(b, 102, wireFixed64), 1, 2, 3, 4, 5, 6, 7, 8)
	b = append(appendTag(b, 103, wireFixed32), 1, 2, 3, 4)
	b = appendString(b, 2, "nic")
	var d Description
	if err := d.Unmarshal(b); err != nil {
		t.Fatal(err)
	}
	if d.Name != "nic" {
		t.Fatalf("Name = %q", d.Name)
	}
}

// Malformed input (truncated, overlong, bad groups, ...) is tested in
// internal/abipb's TestMalformedInputAgreesWithProtobuf, for every message
// and against protobuf-go: each must refuse it with an error naming the
// message.

// TestInvalidUTF8IsRefused: a string that is not UTF-8 is refused, in every
// kind of field (proto3 semantics; internal/abipb checks protobuf-go agrees),
// with an error naming the message.
func TestInvalidUTF8IsRefused(t *testing.T) {
	bad := string([]byte{'x', 0xff})
	for _, m := range []Message{
		&Description{Name: bad},
		&Description{Operations: []string{"discover", bad}},
		&Device{ID: "d", Attributes: map[string]string{"k": bad}},
		&Device{ID: "d", Attributes: map[string]string{bad: "v"}},
		&AllocateResponse{Envs: map[string]string{"A": bad}},
		&AllocateResponse{CDIDevices: []string{bad}},
		&Error{Message: bad},
		&Device{ID: "d", TypedAttributes: map[string]Attribute{"k": VersionAttribute(bad)}},
		&PrepareResponse{Devices: []PreparedDevice{{DeviceID: bad}}},
	} {
		fresh := reflect.New(reflect.TypeOf(m).Elem()).Interface().(Message)
		if err := fresh.Unmarshal(m.AppendTo(nil)); err == nil || !strings.Contains(err.Error(), "not valid UTF-8") ||
			!strings.Contains(err.Error(), reflect.TypeOf(m).Elem().Name()) {
			t.Errorf("%T with a non-UTF-8 string: %v", m, err)
		}
	}
}

// TestAttributeValuesArePresent: an attribute holds its type even at its
// type's zero value (a protobuf oneof member is present or not), and one
// without a type is the empty message.
func TestAttributeValuesArePresent(t *testing.T) {
	for _, a := range []Attribute{IntAttribute(0), BoolAttribute(false), StringAttribute(""), VersionAttribute(""),
		IntAttribute(-1), BoolAttribute(true), StringAttribute("A100"), VersionAttribute("1.2.3")} {
		var got Attribute
		if err := got.Unmarshal(a.AppendTo(nil)); err != nil || got != a {
			t.Errorf("%+v decoded as %+v, %v", a, got, err)
		}
	}
	if b := (&Attribute{}).AppendTo(nil); len(b) != 0 {
		t.Errorf("an attribute without a value encodes as %x", b)
	}
	if AttributeVersion.String() != "version" || AttributeType(7).String() != "type(7)" {
		t.Errorf("names: %v %v", AttributeVersion, AttributeType(7))
	}
}

// TestParametersAreBytes: a DeviceConfig's parameters are bytes, not a
// string: they need not be UTF-8, and come back as they went.
func TestParametersAreBytes(t *testing.T) {
	in := DeviceConfig{Parameters: []byte{0xff, '{', '}'}}
	var got DeviceConfig
	if err := got.Unmarshal(in.AppendTo(nil)); err != nil || !bytes.Equal(got.Parameters, in.Parameters) {
		t.Fatalf("%+v, %v", got, err)
	}
}

func TestPackResult(t *testing.T) {
	for _, c := range []struct {
		ptr, n uint32
		isErr  bool
	}{{0, 0, false}, {1, 2, true}, {0xffffffff, MaxLen, true}, {65536, 100, false}} {
		p, n, e := UnpackResult(PackResult(c.ptr, c.n, c.isErr))
		if p != c.ptr || n != c.n || e != c.isErr {
			t.Errorf("round trip of %+v gave %d %d %v", c, p, n, e)
		}
	}
}

func TestEncodingIsDeterministic(t *testing.T) {
	m := &RegisterResponse{Attributes: map[string]string{"b": "2", "a": "1", "c": "3"}}
	first := m.AppendTo(nil)
	for i := 0; i < 20; i++ {
		if !bytes.Equal(first, m.AppendTo(nil)) {
			t.Fatal("map encoding depends on iteration order")
		}
	}
}

func BenchmarkEncodeDecodeAllocate(b *testing.B) {
	req := &AllocateRequest{DeviceIDs: []string{"0000:00:1f.6", "0000:00:02.0"}, Workload: "pod-0123/container"}
	resp := &AllocateResponse{Envs: map[string]string{"NIC": "0000:00:1f.6"},
		DeviceNodes: []DeviceNode{{ContainerPath: "/dev/nic0", HostPath: "/dev/nic0", Permissions: "rw"}}}
	var buf []byte
	var r AllocateResponse
	b.ReportAllocs()
	for b.Loop() {
		buf = req.AppendTo(buf[:0])
		buf = resp.AppendTo(buf[:0])
		if err := r.Unmarshal(buf); err != nil {
			b.Fatal(err)
		}
	}
}
