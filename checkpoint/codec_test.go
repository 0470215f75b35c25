package checkpoint

import (
	"bytes"
	"fmt"
	"math"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// The hand-written codec in codec.go is checked against protobuf-go, whose
// generated code for checkpoint.proto is the reference.

// edgeState has what a simple state lacks: extreme integers, empty strings
// in repeated fields and maps, a big map, nil and empty messages.
func edgeState() *State {
	big := make(map[string]string)
	for i := range 40 {
		big[fmt.Sprintf("key-%02d", 40-i)] = fmt.Sprintf("value %d ünïcödé", i)
	}
	big[""] = ""
	return &State{
		Generation:      math.MaxUint64,
		WrittenUnixNano: math.MinInt64,
		Allocations: []*Allocation{
			{Workload: "a/b/c", DeviceIds: []string{"", "x", ""}, AllocatedUnixNano: -1,
				Response: &ContainerResponse{Envs: big, Annotations: map[string]string{"k": ""},
					Mounts:     []*Mount{{}, {ReadOnly: true}},
					Devices:    []*DeviceSpec{{Permissions: "mrw"}},
					CdiDevices: []string{""}}},
			{Response: &ContainerResponse{}},
			{},
		},
		Resources: []*Resource{
			{Name: "r", LastSeenUnixNano: math.MaxInt64, PreStartRequired: true,
				Devices: []*Device{{Id: "d", NumaNodes: []int64{0, -1, math.MaxInt64, math.MinInt64}, Attributes: big}, {}}},
			{},
		},
		Plugins: []*Plugin{{Name: "p", Type: "t", Endpoint: "e", SocketPath: "s", Version: "v", Resource: "r"}, {}},
	}
}

// withUnknown returns st with an unknown field on every kind of message.
func withUnknown(t testing.TB, st *State) *State {
	st = proto.Clone(st).(*State)
	add := func(m proto.Message, num protowire.Number) {
		var b []byte
		b = protowire.AppendVarint(protowire.AppendTag(b, num, protowire.VarintType), 7)
		b = protowire.AppendString(protowire.AppendTag(b, num+1, protowire.BytesType), "from a later minor version")
		b = protowire.AppendFixed32(protowire.AppendTag(b, num+2, protowire.Fixed32Type), 9)
		m.ProtoReflect().SetUnknown(b)
	}
	add(st, 100)
	for _, a := range st.Allocations {
		add(a, 200)
		if a.Response != nil {
			add(a.Response, 300)
			for _, m := range a.Response.Mounts {
				add(m, 400)
			}
			for _, d := range a.Response.Devices {
				add(d, 500)
			}
		}
	}
	for _, r := range st.Resources {
		add(r, 600)
		for _, d := range r.Devices {
			add(d, 700)
		}
	}
	for _, p := range st.Plugins {
		add(p, 800)
	}
	return st
}

func codecStates(t testing.TB) map[string]*State {
	return map[string]*State{
		"empty":        {},
		"sample":       sampleState(3, 2, 2),
		"edge":         edgeState(),
		"unknown":      withUnknown(t, sampleState(3, 2, 2)),
		"edge+unknown": withUnknown(t, edgeState()),
	}
}

// Encode writes exactly what deterministic protobuf-go writes.
func TestCodecEncodeMatchesProtobuf(t *testing.T) {
	states := codecStates(t)
	// nil elements of repeated fields are written as empty messages.
	states["nil elements"] = &State{
		Allocations: []*Allocation{nil, {Workload: "x", Response: &ContainerResponse{Mounts: []*Mount{nil}, Devices: []*DeviceSpec{nil}}}},
		Resources:   []*Resource{nil, {Devices: []*Device{nil}}},
		Plugins:     []*Plugin{nil},
	}
	for name, st := range states {
		want, err := proto.MarshalOptions{Deterministic: true}.Marshal(st)
		if err != nil {
			t.Fatal(err)
		}
		got := mustEncode(t, st)[headerSize:]
		got = got[:len(got)-trailerSize]
		if !bytes.Equal(got, want) {
			t.Errorf("%s: payload differs from protobuf-go's\n got %x\nwant %x", name, got, want)
		}
	}
}

// Decode reads what protobuf-go writes, deterministic or not, unknown
// fields included.
func TestCodecDecodeMatchesProtobuf(t *testing.T) {
	for name, st := range codecStates(t) {
		for _, det := range []bool{false, true} {
			payload, err := proto.MarshalOptions{Deterministic: det}.Marshal(st)
			if err != nil {
				t.Fatal(err)
			}
			got, err := unmarshalState(payload)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if !proto.Equal(got, st) {
				t.Fatalf("%s: decoded state differs\n got %v\nwant %v", name, got, st)
			}
		}
	}
}

// Odd but valid encodings decode as protobuf-go decodes them.
func TestCodecDecodeLikeProtobuf(t *testing.T) {
	tag := protowire.AppendTag
	str := func(b []byte, num protowire.Number, s string) []byte {
		return protowire.AppendString(tag(b, num, protowire.BytesType), s)
	}
	msg := func(b []byte, num protowire.Number, body []byte) []byte {
		return protowire.AppendBytes(tag(b, num, protowire.BytesType), body)
	}
	varint := func(b []byte, num protowire.Number, v uint64) []byte {
		return protowire.AppendVarint(tag(b, num, protowire.VarintType), v)
	}
	entry := func(k, v string) []byte { return str(str(nil, 1, k), 2, v) }

	unpacked := varint(varint(str(nil, 1, "d"), 3, 1), 3, 2)
	packedTwice := msg(msg(nil, 3, []byte{1, 2}), 3, []byte{3})

	for name, payload := range map[string][]byte{
		"scalar repeated, last wins": varint(varint(nil, 1, 5), 1, 6),
		"unpacked numa nodes":        msg(nil, 4, msg(str(nil, 1, "r"), 3, unpacked)),
		"packed twice":               msg(nil, 4, msg(nil, 3, packedTwice)),
		"response merged": msg(nil, 3,
			msg(msg(str(nil, 1, "w"), 8, msg(msg(nil, 1, entry("A", "1")), 5, str(nil, 5, "cdi1"))), 8,
				msg(msg(nil, 1, entry("A", "2")), 1, entry("B", "3")))),
		"map entry without key or value": msg(nil, 3, msg(nil, 8, msg(msg(nil, 1, nil), 4, str(nil, 2, "v")))),
		"map entry with unknown field":   msg(nil, 3, msg(nil, 8, msg(nil, 1, varint(entry("k", "v"), 9, 1)))),
		"wrong wire type is unknown":     varint(str(varint(nil, 2, 3), 1, "not a varint"), 5, 4),
		"group is unknown": append(tag(append(tag(nil, 9, protowire.StartGroupType),
			varint(nil, 1, 1)...), 9, protowire.EndGroupType), varint(nil, 1, 2)...),
		"fixed64 is unknown": protowire.AppendFixed64(tag(nil, 1, protowire.Fixed64Type), 1),
		"bool as big varint": msg(nil, 4, varint(nil, 5, 1<<40)),
		"non-minimal varint": append(tag(nil, 1, protowire.VarintType), 0x81, 0x80, 0x00),
	} {
		want := new(State)
		if err := proto.Unmarshal(payload, want); err != nil {
			t.Fatalf("%s: protobuf-go refuses it: %v", name, err)
		}
		got, err := unmarshalState(payload)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !proto.Equal(got, want) {
			t.Fatalf("%s:\n got %v\nwant %v", name, got, want)
		}
		// And what is kept is written back as protobuf-go would.
		ours := mustEncode(t, got)
		theirs, _ := proto.MarshalOptions{Deterministic: true}.Marshal(want)
		if !bytes.Equal(ours[headerSize:len(ours)-trailerSize], theirs) {
			t.Fatalf("%s: re-encoding differs\n got %x\nwant %x", name, ours, theirs)
		}
	}
}

// Invalid encodings are refused, as protobuf-go refuses them.
func TestCodecDecodeRefuses(t *testing.T) {
	tag := protowire.AppendTag
	for name, payload := range map[string][]byte{
		"truncated varint":        {0x08, 0x80},
		"truncated length":        {0x1a, 0x05, 0x0a},
		"field number 0":          {0x00, 0x01},
		"end group":               tag(nil, 1, protowire.EndGroupType),
		"unterminated group":      tag(nil, 9, protowire.StartGroupType),
		"reserved wire type":      {0x0e},
		"varint overflow":         {0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02},
		"invalid UTF-8 in nested": {0x1a, 0x03, 0x0a, 0x01, 0xff},
		"invalid UTF-8 map key":   {0x1a, 0x0a, 0x42, 0x08, 0x0a, 0x06, 0x0a, 0x01, 0xc0, 0x12, 0x01, 0x76},
		"bad packed varint":       {0x22, 0x04, 0x1a, 0x02, 0x1a, 0x80},
		"nested runs past end":    {0x1a, 0x02, 0x0a, 0x05},
	} {
		if err := proto.Unmarshal(payload, new(State)); err == nil {
			t.Fatalf("%s: protobuf-go accepts it: fix the test", name)
		}
		if st, err := unmarshalState(payload); err == nil {
			t.Fatalf("%s: decoded %v", name, st)
		}
	}
}

func TestCodecInvalidUTF8OnEncode(t *testing.T) {
	for name, st := range map[string]*State{
		"workload":   {Allocations: []*Allocation{{Workload: "\xff"}}},
		"device id":  {Allocations: []*Allocation{{DeviceIds: []string{"ok", "\xfe"}}}},
		"env value":  {Allocations: []*Allocation{{Response: &ContainerResponse{Envs: map[string]string{"k": "\xc0"}}}}},
		"mount path": {Allocations: []*Allocation{{Response: &ContainerResponse{Mounts: []*Mount{{HostPath: "\xc0"}}}}}},
		"attribute":  {Resources: []*Resource{{Devices: []*Device{{Attributes: map[string]string{"\xc0": ""}}}}}},
		"plugin":     {Plugins: []*Plugin{{Version: "\xc0"}}},
	} {
		if _, err := proto.Marshal(st); err == nil {
			t.Fatalf("%s: protobuf-go encodes it: fix the test", name)
		}
		if _, err := Encode(st); err == nil {
			t.Fatalf("%s: encoded invalid UTF-8", name)
		}
	}
}

// FuzzPayload checks the version-2 decoder against protobuf-go on
// arbitrary payloads: both refuse, or both decode the same state, and our
// encoding of it is protobuf-go's.
func FuzzPayload(f *testing.F) {
	for _, st := range codecStates(f) {
		b, err := proto.Marshal(st)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		want := new(State)
		werr := proto.Unmarshal(payload, want)
		got, gerr := unmarshalState(payload)
		if (werr == nil) != (gerr == nil) {
			t.Fatalf("protobuf-go: %v; ours: %v", werr, gerr)
		}
		if werr != nil {
			return
		}
		if !proto.Equal(got, want) {
			t.Fatalf("decoded states differ\n got %v\nwant %v", got, want)
		}
		ours, err := encode(got)
		if err != nil {
			t.Fatal(err)
		}
		theirs, err := proto.MarshalOptions{Deterministic: true}.Marshal(want)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(ours[headerSize:len(ours)-trailerSize], theirs) {
			t.Fatalf("encodings differ\n got %x\nwant %x", ours, theirs)
		}
	})
}
