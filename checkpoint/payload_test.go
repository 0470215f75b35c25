package checkpoint

import (
	"bytes"
	"fmt"
	"math"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// The version-3 payload is protobuf-go's deterministic encoding of State.
// These tests check what the checkpoint adds to it: Encode and Decode keep
// everything (unknown fields from a later minor version included), the same
// state always gives the same bytes, and Encode refuses what protobuf
// cannot hold.

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
					CdiDevices: []*CDIDevice{{}}}},
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

func payloadStates(t testing.TB) map[string]*State {
	return map[string]*State{
		"empty":        {},
		"sample":       sampleState(3, 2, 2),
		"edge":         edgeState(),
		"unknown":      withUnknown(t, sampleState(3, 2, 2)),
		"edge+unknown": withUnknown(t, edgeState()),
	}
}

// Decode keeps what Encode wrote, unknown fields included, and encoding the
// result again gives the same bytes: a wasmlet that rewrites a file written
// by a later minor version keeps that version's fields.
func TestPayloadKeepsEverything(t *testing.T) {
	for name, st := range payloadStates(t) {
		data := mustEncode(t, st)
		got, err := Decode(data)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !proto.Equal(got, st) {
			t.Fatalf("%s: decoded state differs\n got %v\nwant %v", name, got, st)
		}
		if again := mustEncode(t, got); !bytes.Equal(again, data) {
			t.Fatalf("%s: re-encoding differs\n got %x\nwant %x", name, again, data)
		}
	}
}

func TestEncodeRefusesInvalidUTF8(t *testing.T) {
	for name, st := range map[string]*State{
		"workload":   {Allocations: []*Allocation{{Workload: "\xff"}}},
		"device id":  {Allocations: []*Allocation{{DeviceIds: []string{"ok", "\xfe"}}}},
		"env value":  {Allocations: []*Allocation{{Response: &ContainerResponse{Envs: map[string]string{"k": "\xc0"}}}}},
		"mount path": {Allocations: []*Allocation{{Response: &ContainerResponse{Mounts: []*Mount{{HostPath: "\xc0"}}}}}},
		"attribute":  {Resources: []*Resource{{Devices: []*Device{{Attributes: map[string]string{"\xc0": ""}}}}}},
		"plugin":     {Plugins: []*Plugin{{Version: "\xc0"}}},
	} {
		if _, err := Encode(st); err == nil {
			t.Fatalf("%s: encoded invalid UTF-8", name)
		}
	}
}

// FuzzPayload puts arbitrary bytes in a well-formed frame of the current
// version and
// checks Decode against protobuf-go on the bare payload: both refuse, or
// both give the same state; and what Decode accepts, Encode writes in a
// canonical form (encoding the decoded encoding gives the same bytes).
func FuzzPayload(f *testing.F) {
	for _, st := range payloadStates(f) {
		b, err := proto.Marshal(st)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		want := new(State)
		werr := proto.Unmarshal(payload, want)
		got, gerr := Decode(frameBytes(FormatVersion, payload))
		if (werr == nil) != (gerr == nil) {
			t.Fatalf("protobuf-go: %v; Decode: %v", werr, gerr)
		}
		if werr != nil {
			if _, ok := gerr.(*CorruptError); !ok {
				t.Fatalf("Decode: %T (%v), want a *CorruptError", gerr, gerr)
			}
			return
		}
		if !proto.Equal(got, want) {
			t.Fatalf("decoded states differ\n got %v\nwant %v", got, want)
		}
		once := mustEncode(t, got)
		back, err := Decode(once)
		if err != nil {
			t.Fatal(err)
		}
		if twice := mustEncode(t, back); !bytes.Equal(once, twice) {
			t.Fatalf("the encoding is not canonical\n once %x\ntwice %x", once, twice)
		}
	})
}
