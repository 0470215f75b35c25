package checkpoint

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/wasmlet/wasmlet/internal/testkit"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
)

// v2State is the message type of a version-2 payload, from the schema of
// that version as protoc compiled it (testdata/v2.protoset; see doc.go).
func v2State(t testing.TB) protoreflect.MessageType {
	t.Helper()
	b, err := os.ReadFile("testdata/v2.protoset")
	if err != nil {
		t.Fatal(err)
	}
	var set descriptorpb.FileDescriptorSet
	if err := proto.Unmarshal(b, &set); err != nil {
		t.Fatal(err)
	}
	files, err := protodesc.NewFiles(&set)
	if err != nil {
		t.Fatal(err)
	}
	d, err := files.FindDescriptorByName("wasmlet.checkpoint.v2.State")
	if err != nil {
		t.Fatal(err)
	}
	return dynamicpb.NewMessageType(d.(protoreflect.MessageDescriptor))
}

// decodeV2Reference decodes a version-2 payload with protobuf-go and the
// version-2 schema, and upgrades it the long way round, through protojson:
// a response's CDI device names become CDIDevice messages. Unknown fields
// do not survive JSON; compare with withoutUnknown.
func decodeV2Reference(t testing.TB, typ protoreflect.MessageType, payload []byte) (*State, error) {
	t.Helper()
	m := typ.New().Interface()
	if err := proto.Unmarshal(payload, m); err != nil {
		return nil, err
	}
	js, err := protojson.Marshal(m)
	if err != nil {
		t.Fatalf("protojson of a decoded version-2 state: %v", err)
	}
	var doc map[string]any
	if err := json.Unmarshal(js, &doc); err != nil {
		t.Fatal(err)
	}
	allocs, _ := doc["allocations"].([]any)
	for _, a := range allocs {
		resp, _ := a.(map[string]any)["response"].(map[string]any)
		names, _ := resp["cdiDevices"].([]any)
		for i, n := range names {
			names[i] = map[string]any{"name": n}
		}
	}
	if js, err = json.Marshal(doc); err != nil {
		t.Fatal(err)
	}
	st := new(State)
	if err := protojson.Unmarshal(js, st); err != nil {
		t.Fatalf("the upgraded JSON %s does not decode as version 3: %v", js, err)
	}
	return st, nil
}

// withoutUnknown returns a copy of st without unknown fields, anywhere.
func withoutUnknown(st *State) *State {
	st = proto.Clone(st).(*State)
	var clear func(m protoreflect.Message)
	clear = func(m protoreflect.Message) {
		m.SetUnknown(nil)
		m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			switch {
			case fd.IsList() && fd.Message() != nil:
				for i := range v.List().Len() {
					clear(v.List().Get(i).Message())
				}
			case fd.IsMap() && fd.MapValue().Message() != nil:
				v.Map().Range(func(_ protoreflect.MapKey, v protoreflect.Value) bool { clear(v.Message()); return true })
			case !fd.IsList() && !fd.IsMap() && fd.Message() != nil:
				clear(v.Message())
			}
			return true
		})
	}
	clear(st.ProtoReflect())
	return st
}

// The v2 fixture in testdata was written by version-2 code (the first, a
// hand-written protowire codec, and checked against protobuf-go since): it
// reads back as v2FixtureState in version 3's types, unknown fields
// included, and protobuf-go with the version-2 schema agrees.
func TestV2Fixture(t *testing.T) {
	const fixture = "testdata/v2.ckpt"
	got, err := Read(fixture)
	if err != nil {
		t.Fatal(err)
	}
	want := v2FixtureState(t)
	mustEqual(t, got, want)

	data, err := os.ReadFile(fixture)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := decodeV2Reference(t, v2State(t), data[headerSize:len(data)-trailerSize])
	if err != nil {
		t.Fatal(err)
	}
	mustEqual(t, withoutUnknown(got), ref)
	if sum, _ := Verify(fixture); sum.Version != 2 { // its edge cases are inconsistent on purpose
		t.Fatalf("summary %v; want version 2", sum)
	}
}

// The v3 fixture is what Encode writes for v2FixtureState, and what a
// version-2 file becomes once read and written again: the migration keeps
// every field, the unknown ones too.
func TestV3Fixture(t *testing.T) {
	const fixture = "testdata/v3.ckpt"
	st := v2FixtureState(t)
	checkFixture(t, fixture, mustEncode(t, st), "Encode writes for v2FixtureState: the version-3 encoding changed")
	got, err := Read(fixture)
	if err != nil {
		t.Fatal(err)
	}
	mustEqual(t, got, st)

	upgraded, err := Read("testdata/v2.ckpt")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "ck")
	if err := Write(path, upgraded); err != nil {
		t.Fatal(err)
	}
	checkFixture(t, fixture, testkit.ReadFile(t, path), "the v2 fixture becomes when read and written again")
}
