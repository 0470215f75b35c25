package abipb

// The differential tests of package abi's hand-written codec: every message
// against its protoc-generated twin in this package, encoded and decoded both
// ways, odd but valid encodings, malformed input, and FuzzDecode. They live
// here, in the main module, rather than in abi's own tests, so that the abi
// module (which guests depend on) needs nothing beyond the standard library;
// abi's own tests cover what needs no second implementation.

import (
	"bytes"
	"fmt"
	"math/rand"
	"reflect"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/wasmlet/wasmlet/abi"
)

// pair ties each hand-written message to its protoc-generated twin.
type pair struct {
	ours   func() abi.Message
	theirs func() proto.Message
}

var pairs = []pair{
	{func() abi.Message { return &abi.Error{} }, func() proto.Message { return &Error{} }},
	{func() abi.Message { return &abi.DescribeRequest{} }, func() proto.Message { return &DescribeRequest{} }},
	{func() abi.Message { return &abi.Description{} }, func() proto.Message { return &Description{} }},
	{func() abi.Message { return &abi.Plugin{} }, func() proto.Message { return &Plugin{} }},
	{func() abi.Message { return &abi.ValidateRequest{} }, func() proto.Message { return &ValidateRequest{} }},
	{func() abi.Message { return &abi.ValidateResponse{} }, func() proto.Message { return &ValidateResponse{} }},
	{func() abi.Message { return &abi.RegisterRequest{} }, func() proto.Message { return &RegisterRequest{} }},
	{func() abi.Message { return &abi.RegisterResponse{} }, func() proto.Message { return &RegisterResponse{} }},
	{func() abi.Message { return &abi.DeregisterRequest{} }, func() proto.Message { return &DeregisterRequest{} }},
	{func() abi.Message { return &abi.DeregisterResponse{} }, func() proto.Message { return &DeregisterResponse{} }},
	{func() abi.Message { return &abi.Mount{} }, func() proto.Message { return &Mount{} }},
	{func() abi.Message { return &abi.DeviceNode{} }, func() proto.Message { return &DeviceNode{} }},
	{func() abi.Message { return &abi.ContainerEdits{} }, func() proto.Message { return &ContainerEdits{} }},
	{func() abi.Message { return &abi.Device{} }, func() proto.Message { return &Device{} }},
	{func() abi.Message { return &abi.DiscoverRequest{} }, func() proto.Message { return &DiscoverRequest{} }},
	{func() abi.Message { return &abi.DiscoverResponse{} }, func() proto.Message { return &DiscoverResponse{} }},
	{func() abi.Message { return &abi.AllocateRequest{} }, func() proto.Message { return &AllocateRequest{} }},
	{func() abi.Message { return &abi.AllocateResponse{} }, func() proto.Message { return &AllocateResponse{} }},
	{func() abi.Message { return &abi.PreferredAllocationRequest{} }, func() proto.Message { return &PreferredAllocationRequest{} }},
	{func() abi.Message { return &abi.PreferredAllocationResponse{} }, func() proto.Message { return &PreferredAllocationResponse{} }},
	{func() abi.Message { return &abi.PreStartRequest{} }, func() proto.Message { return &PreStartRequest{} }},
	{func() abi.Message { return &abi.PreStartResponse{} }, func() proto.Message { return &PreStartResponse{} }},
	// Appended, never inserted: FuzzDecode's corpus picks messages by index.
	{func() abi.Message { return &abi.Attribute{} }, func() proto.Message { return &Attribute{} }},
	{func() abi.Message { return &abi.Capacity{} }, func() proto.Message { return &Capacity{} }},
	{func() abi.Message { return &abi.CapacityRequestPolicy{} }, func() proto.Message { return &CapacityRequestPolicy{} }},
	{func() abi.Message { return &abi.CounterSet{} }, func() proto.Message { return &CounterSet{} }},
	{func() abi.Message { return &abi.CounterConsumption{} }, func() proto.Message { return &CounterConsumption{} }},
	{func() abi.Message { return &abi.Claim{} }, func() proto.Message { return &Claim{} }},
	{func() abi.Message { return &abi.AllocatedDevice{} }, func() proto.Message { return &AllocatedDevice{} }},
	{func() abi.Message { return &abi.DeviceConfig{} }, func() proto.Message { return &DeviceConfig{} }},
	{func() abi.Message { return &abi.PrepareRequest{} }, func() proto.Message { return &PrepareRequest{} }},
	{func() abi.Message { return &abi.PreparedDevice{} }, func() proto.Message { return &PreparedDevice{} }},
	{func() abi.Message { return &abi.PrepareResponse{} }, func() proto.Message { return &PrepareResponse{} }},
	{func() abi.Message { return &abi.UnprepareRequest{} }, func() proto.Message { return &UnprepareRequest{} }},
	{func() abi.Message { return &abi.UnprepareResponse{} }, func() proto.Message { return &UnprepareResponse{} }},
}

// TestSchemaCoversEveryMessage fails when wasmlet_abi.proto gains a message
// that has no hand-written twin here.
func TestSchemaCoversEveryMessage(t *testing.T) {
	have := map[string]bool{}
	for _, p := range pairs {
		have[string(p.theirs().ProtoReflect().Descriptor().Name())] = true
	}
	msgs := File_wasmlet_abi_proto.Messages()
	for i := 0; i < msgs.Len(); i++ {
		if name := string(msgs.Get(i).Name()); !have[name] {
			t.Errorf("message %s in wasmlet_abi.proto has no Go twin in package abi", name)
		}
	}
}

// TestEnumsMatchSchema: every Action in wasmlet_abi.proto has a Go name,
// and the Go constants carry the schema's numbers.
func TestEnumsMatchSchema(t *testing.T) {
	for n, name := range Action_name {
		want := strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(name, "ACTION_")), "_", "-")
		if got := abi.Action(n).String(); got != want {
			t.Errorf("Action(%d) is %q; the schema's %s wants %q", n, got, name, want)
		}
	}
	for c, n := range map[abi.Action]Action{abi.ActionRecord: Action_ACTION_RECORD,
		abi.ActionDevicePlugin: Action_ACTION_DEVICE_PLUGIN, abi.ActionCSIDriver: Action_ACTION_CSI_DRIVER} {
		if int32(c) != int32(n) {
			t.Errorf("%v is %d in Go, %d in the schema", c, int32(c), int32(n))
		}
	}
}

// TestAgreesWithProtoc fills each generated message with random values,
// decodes protoc's encoding with the hand-written codec, checks every field
// by name, then re-encodes and checks protoc decodes the same message back.
func TestAgreesWithProtoc(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for _, p := range pairs {
		name := p.theirs().ProtoReflect().Descriptor().Name()
		t.Run(string(name), func(t *testing.T) {
			for i := 0; i < 200; i++ {
				want := p.theirs()
				fill(rng, want.ProtoReflect(), 0)
				wire, err := proto.Marshal(want)
				if err != nil {
					t.Fatal(err)
				}
				got := p.ours()
				if err := got.Unmarshal(wire); err != nil {
					t.Fatalf("decode protoc bytes: %v", err)
				}
				if err := sameFields(want.ProtoReflect(), reflect.ValueOf(got).Elem()); err != nil {
					t.Fatalf("field mismatch: %v\nprotoc: %v\nours: %+v", err, want, got)
				}
				back := p.theirs()
				if err := proto.Unmarshal(got.AppendTo(nil), back); err != nil {
					t.Fatalf("protoc cannot decode our bytes: %v", err)
				}
				dropEmpty(want.ProtoReflect())
				dropEmpty(back.ProtoReflect())
				if !proto.Equal(want, back) {
					t.Fatalf("round trip changed the message\nwant %v\ngot  %v", want, back)
				}
			}
		})
	}
}

// dropEmpty clears singular message fields that are present but empty: the
// Go types hold Plugin by value, so presence of an empty Plugin is not kept,
// which proto3 treats as the same message.
func dropEmpty(m protoreflect.Message) {
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Kind() == protoreflect.MessageKind && !fd.IsList() && !fd.IsMap() {
			dropEmpty(v.Message())
			if proto.Size(v.Message().Interface()) == 0 {
				m.Clear(fd)
			}
		}
		return true
	})
}

// fill sets every field of m to a random value, recursively.
func fill(rng *rand.Rand, m protoreflect.Message, depth int) {
	fields := m.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if rng.Intn(5) == 0 { // leave some fields unset
			continue
		}
		switch {
		case fd.IsMap():
			mp := m.Mutable(fd).Map()
			for j := rng.Intn(4); j > 0; j-- {
				key := protoreflect.ValueOfString(randString(rng)).MapKey()
				if fd.MapValue().Kind() == protoreflect.MessageKind {
					v := mp.NewValue()
					fill(rng, v.Message(), depth+1)
					mp.Set(key, v)
				} else {
					mp.Set(key, protoreflect.ValueOfString(randString(rng)))
				}
			}
		case fd.IsList():
			l := m.Mutable(fd).List()
			for j := rng.Intn(4); j > 0; j-- {
				if fd.Kind() == protoreflect.MessageKind {
					e := l.NewElement()
					fill(rng, e.Message(), depth+1)
					l.Append(e)
				} else {
					l.Append(randScalar(rng, fd))
				}
			}
		case fd.Kind() == protoreflect.MessageKind:
			if depth < 3 {
				fill(rng, m.Mutable(fd).Message(), depth+1)
			}
		default:
			m.Set(fd, randScalar(rng, fd))
		}
	}
}

func randString(rng *rand.Rand) string {
	const alphabet = "abcXYZ019./-_ é"
	var b strings.Builder
	for n := rng.Intn(12); n > 0; n-- {
		b.WriteString(string([]rune(alphabet)[rng.Intn(len([]rune(alphabet)))]))
	}
	if rng.Intn(10) == 0 { // long values exercise multi-byte lengths
		b.WriteString(strings.Repeat("x", 200+rng.Intn(20000)))
	}
	return b.String()
}

func randScalar(rng *rand.Rand, fd protoreflect.FieldDescriptor) protoreflect.Value {
	switch fd.Kind() {
	case protoreflect.StringKind:
		return protoreflect.ValueOfString(randString(rng))
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(rng.Intn(2) == 0)
	case protoreflect.EnumKind:
		vals := fd.Enum().Values()
		return protoreflect.ValueOfEnum(vals.Get(rng.Intn(vals.Len())).Number())
	case protoreflect.Int32Kind:
		return protoreflect.ValueOfInt32(int32(rng.Uint32()))
	case protoreflect.Int64Kind:
		return protoreflect.ValueOfInt64(int64(rng.Uint64()))
	case protoreflect.Uint32Kind:
		return protoreflect.ValueOfUint32(rng.Uint32())
	case protoreflect.BytesKind:
		b := make([]byte, rng.Intn(40))
		rng.Read(b) // not UTF-8, mostly: bytes are not strings
		return protoreflect.ValueOfBytes(b)
	}
	panic(fmt.Sprintf("randScalar: kind %v not used by the schema; teach the test", fd.Kind()))
}

// sameFields compares a generated message with a hand-written one field by
// field, matching names case- and underscore-insensitively.
func sameFields(pm protoreflect.Message, ours reflect.Value) error {
	if pm.Descriptor().Oneofs().Len() > 0 {
		return sameOneof(pm, ours)
	}
	fields := pm.Descriptor().Fields()
	byName := map[string]reflect.Value{}
	for i := 0; i < ours.NumField(); i++ {
		byName[strings.ToLower(ours.Type().Field(i).Name)] = ours.Field(i)
	}
	if len(byName) != fields.Len() {
		return fmt.Errorf("%s: schema has %d fields, Go type has %d", pm.Descriptor().Name(), fields.Len(), len(byName))
	}
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		key := strings.ToLower(strings.ReplaceAll(string(fd.Name()), "_", ""))
		ov, ok := byName[key]
		if !ok {
			return fmt.Errorf("%s.%s has no Go field", pm.Descriptor().Name(), fd.Name())
		}
		where := string(pm.Descriptor().Name()) + "." + string(fd.Name())
		pv := pm.Get(fd)
		switch {
		case fd.IsMap():
			if pv.Map().Len() != ov.Len() {
				return fmt.Errorf("%s: %d entries, want %d", where, ov.Len(), pv.Map().Len())
			}
			var err error
			pv.Map().Range(func(k protoreflect.MapKey, v protoreflect.Value) bool {
				got := ov.MapIndex(reflect.ValueOf(k.String()))
				switch {
				case !got.IsValid():
					err = fmt.Errorf("%s[%q] missing", where, k.String())
				case fd.MapValue().Kind() == protoreflect.MessageKind:
					err = sameFields(v.Message(), got)
				case got.String() != v.String():
					err = fmt.Errorf("%s[%q] = %v, want %q", where, k.String(), got, v.String())
				}
				return err == nil
			})
			if err != nil {
				return err
			}
		case fd.IsList():
			l := pv.List()
			if l.Len() != ov.Len() {
				return fmt.Errorf("%s: %d elements, want %d", where, ov.Len(), l.Len())
			}
			for j := 0; j < l.Len(); j++ {
				if err := sameValue(where, fd, l.Get(j), ov.Index(j)); err != nil {
					return err
				}
			}
		default:
			if fd.Kind() == protoreflect.MessageKind && !pm.Has(fd) {
				if ov.Kind() == reflect.Pointer && !ov.IsNil() {
					return fmt.Errorf("%s: set, want unset", where)
				}
				continue
			}
			if err := sameValue(where, fd, pv, ov); err != nil {
				return err
			}
		}
	}
	return nil
}

func sameValue(where string, fd protoreflect.FieldDescriptor, pv protoreflect.Value, ov reflect.Value) error {
	if ov.Kind() == reflect.Pointer {
		if ov.IsNil() {
			return fmt.Errorf("%s: nil, want a message", where)
		}
		ov = ov.Elem()
	}
	var same bool
	switch fd.Kind() {
	case protoreflect.MessageKind:
		return sameFields(pv.Message(), ov)
	case protoreflect.StringKind:
		same = ov.String() == pv.String()
	case protoreflect.BoolKind:
		same = ov.Bool() == pv.Bool()
	case protoreflect.EnumKind:
		same = ov.Int() == int64(pv.Enum())
	case protoreflect.Int32Kind, protoreflect.Int64Kind:
		same = ov.Int() == pv.Int()
	case protoreflect.Uint32Kind:
		same = ov.Uint() == pv.Uint()
	case protoreflect.BytesKind:
		same = bytes.Equal(ov.Bytes(), pv.Bytes())
	default:
		return fmt.Errorf("%s: kind %v not handled by the test", where, fd.Kind())
	}
	if !same {
		return fmt.Errorf("%s = %v, want %v", where, ov, pv)
	}
	return nil
}

// sameOneof compares a message whose fields are one oneof (Attribute) with
// its Go form: Type names the member that is set, and its value is in the
// field of that type (versions in String).
func sameOneof(pm protoreflect.Message, ours reflect.Value) error {
	oneof := pm.Descriptor().Oneofs().Get(0)
	if pm.Descriptor().Oneofs().Len() != 1 || oneof.Fields().Len() != pm.Descriptor().Fields().Len() {
		return fmt.Errorf("%s: only messages that are one oneof are handled by the test", pm.Descriptor().Name())
	}
	typ := ours.FieldByName("Type").Int()
	fd := pm.WhichOneof(oneof)
	if fd == nil {
		if typ != 0 || !ours.FieldByName("Int").IsZero() || !ours.FieldByName("Bool").IsZero() || !ours.FieldByName("String").IsZero() {
			return fmt.Errorf("%s: no value set, Go has %+v", pm.Descriptor().Name(), ours)
		}
		return nil
	}
	if typ != int64(fd.Number()) {
		return fmt.Errorf("%s: %s set, Go type %d", pm.Descriptor().Name(), fd.Name(), typ)
	}
	v := pm.Get(fd)
	var same bool
	switch fd.Kind() {
	case protoreflect.Int64Kind:
		same = ours.FieldByName("Int").Int() == v.Int()
	case protoreflect.BoolKind:
		same = ours.FieldByName("Bool").Bool() == v.Bool()
	case protoreflect.StringKind:
		same = ours.FieldByName("String").String() == v.String()
	}
	if !same {
		return fmt.Errorf("%s.%s = %v, Go has %+v", pm.Descriptor().Name(), fd.Name(), v, ours)
	}
	return nil
}

// recursionLimit is protobuf-go's default nesting limit (groups count), which
// package abi's decoder matches.
const recursionLimit = 10000

// Wire builders, on protobuf-go's own encoder rather than abi's, so that the
// inputs do not depend on the code under test.
func tag(b []byte, num int, wt protowire.Type) []byte {
	return protowire.AppendTag(b, protowire.Number(num), wt)
}
func str(b []byte, num int, s string) []byte {
	return protowire.AppendString(tag(b, num, protowire.BytesType), s)
}
func msg(b []byte, num int, body []byte) []byte {
	return protowire.AppendBytes(tag(b, num, protowire.BytesType), body)
}
func varint(b []byte, num int, v uint64) []byte {
	return protowire.AppendVarint(tag(b, num, protowire.VarintType), v)
}
func group(b []byte, num int, body []byte) []byte {
	return tag(append(tag(b, num, protowire.StartGroupType), body...), num, protowire.EndGroupType)
}

// deepGroups is n groups of field 9 nested in each other.
func deepGroups(n int) []byte {
	b := bytes.Repeat([]byte{0x4b}, n)                 // field 9, start group
	return append(b, bytes.Repeat([]byte{0x4c}, n)...) // field 9, end group
}

// TestMalformedInputAgreesWithProtobuf: what protobuf-go refuses, every
// decoder of package abi refuses, with an error that names the message.
func TestMalformedInputAgreesWithProtobuf(t *testing.T) {
	cases := map[string][]byte{
		"truncated varint":           {0x08, 0x80},
		"truncated length":           {0x12, 0x05, 'a'},
		"field zero":                 {0x00, 0x01},
		"unterminated group":         {0x0b},
		"lone end of group":          {0x0c},
		"group ends another":         {0x0b, 0x14},   // starts field 1, ends field 2
		"inner group ends the outer": []byte("CSSD"), // starts 8, 10, 10, ends 8
		"groups too deep":            deepGroups(recursionLimit + 2),
		"reserved wire type":         {0x0e},
		"overlong varint":            {0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02},
	}
	for name, in := range cases {
		for _, p := range pairs {
			if proto.Unmarshal(in, p.theirs()) == nil {
				t.Errorf("%s: protobuf-go accepts it: fix the test", name)
			}
			m := p.ours()
			if err := m.Unmarshal(in); err == nil {
				t.Errorf("%s: %T accepts what protobuf-go refuses", name, m)
			} else if !strings.Contains(err.Error(), reflect.TypeOf(m).Elem().Name()) {
				t.Errorf("%s: %T's error %q does not name the message", name, m, err)
			}
		}
	}
}

// TestDecodeLikeProtobuf: odd but valid encodings decode as protobuf-go
// decodes them. A known field with another wire type is an unknown field,
// skipped; groups are skipped whole; the last of a repeated scalar wins; a
// repeated integer may be packed or not; a singular message seen twice is
// merged; a map entry may lack its key or value or hold more.
func TestDecodeLikeProtobuf(t *testing.T) {
	entry := func(k, v string) []byte { return str(str(nil, 1, k), 2, v) }
	for _, c := range []struct {
		name  string
		which proto.Message
		in    []byte
	}{
		{"string as varint", &Description{}, varint(str(nil, 2, "kept"), 2, 7)},
		{"varint as string", &Description{}, str(varint(nil, 1, 2), 1, "x")},
		{"bool as fixed32", &Mount{}, append(tag(nil, 3, protowire.Fixed32Type), 1, 0, 0, 0)},
		{"message as varint", &Device{}, varint(nil, 5, 1)},
		{"repeated string as fixed64", &AllocateResponse{}, append(tag(str(nil, 5, "a"), 5, protowire.Fixed64Type), 1, 2, 3, 4, 5, 6, 7, 8)},
		{"map entry as varint", &RegisterResponse{}, varint(nil, 4, 3)},
		{"group of an unknown field", &Description{}, group(str(nil, 2, "n"), 20, varint(str(nil, 1, "x"), 2, 3))},
		{"group of a known field", &Description{}, group(nil, 2, nil)},
		{"nested groups", &Plugin{}, group(nil, 9, group(group(nil, 3, nil), 4, varint(nil, 1, 1)))},
		{"groups as deep as allowed", &Plugin{}, deepGroups(recursionLimit + 1)},
		{"last scalar wins", &Description{}, varint(varint(str(str(nil, 2, "a"), 2, "b"), 1, 1), 1, 2)},
		{"unpacked numa nodes", &Device{}, varint(varint(nil, 3, 1), 3, 1<<40)},
		{"packed twice", &Device{}, msg(msg(nil, 3, []byte{1, 2}), 3, []byte{0x80, 0x01})},
		{"negative numa node", &Device{}, varint(nil, 3, 1<<64-1)},
		{"edits merged", &Device{}, msg(msg(nil, 5, msg(nil, 1, entry("A", "1"))), 5, msg(msg(nil, 1, entry("A", "2")), 4, entry("B", "3")))},
		{"plugin merged", &ValidateRequest{}, msg(msg(nil, 1, str(nil, 1, "DevicePlugin")), 1, str(str(nil, 2, "p"), 4, "v1"))},
		{"map entry without key or value", &AllocateResponse{}, msg(msg(nil, 1, nil), 4, str(nil, 2, "v"))},
		{"map entry with more", &AllocateResponse{}, msg(nil, 1, varint(varint(entry("k", "v"), 9, 1), 1, 4))},
		{"int32 from a 64-bit varint", &PreferredAllocationRequest{}, varint(nil, 3, 1<<40+5)},
		{"enum out of range", &Error{}, varint(nil, 1, 99)},
		{"uint32 from a 64-bit varint", &DescribeRequest{}, varint(nil, 1, 1<<33+1)},
		{"oneof: the last member wins", &Attribute{}, varint(str(varint(nil, 1, 5), 3, "x"), 2, 1)},
		{"oneof: the last member wins, same type", &Attribute{}, str(str(nil, 4, "1.0.0"), 3, "s")},
		{"oneof member at its zero value", &Attribute{}, varint(nil, 1, 0)},
		{"oneof member as another wire type", &Attribute{}, str(varint(nil, 2, 1), 1, "x")},
		{"attribute entry's values merged", &Device{}, msg(nil, 6, msg(msg(str(nil, 1, "a"), 2, varint(nil, 1, 3)), 2, str(nil, 3, "s")))},
		{"attribute entry without a value", &Device{}, msg(nil, 6, str(nil, 1, "a"))},
		{"attribute entry without a key", &Device{}, msg(nil, 6, msg(nil, 2, varint(nil, 2, 1)))},
		{"attribute key twice", &Device{}, msg(msg(nil, 6, msg(str(nil, 1, "a"), 2, varint(nil, 1, 3))), 6, msg(str(nil, 1, "a"), 2, str(nil, 3, "s")))},
		{"capacity entry's values merged", &Device{}, msg(nil, 7, msg(msg(str(nil, 1, "m"), 2, str(nil, 1, "1Gi")), 2, msg(nil, 2, str(nil, 1, "1"))))},
		{"request policy merged", &Capacity{}, msg(msg(str(nil, 1, "4"), 2, str(str(nil, 1, "1"), 2, "1")), 2, str(str(nil, 2, "2"), 5, "1"))},
		{"counters merged", &CounterSet{}, msg(msg(str(nil, 1, "s"), 2, str(str(nil, 1, "a"), 2, "1")), 2, str(str(nil, 1, "a"), 2, "2"))},
		{"shared counters and devices interleaved", &DiscoverResponse{}, msg(msg(msg(nil, 2, str(nil, 1, "a")), 1, str(nil, 1, "d")), 2, str(nil, 1, "b"))},
		{"claim merged", &PrepareRequest{}, msg(msg(nil, 1, str(nil, 1, "uid")), 1, str(str(nil, 2, "ns"), 3, "c"))},
		{"unprepare claim merged", &UnprepareRequest{}, msg(msg(nil, 1, str(nil, 1, "uid")), 1, str(nil, 3, "c"))},
		{"prepared edits merged", &PreparedDevice{}, msg(msg(nil, 4, msg(nil, 1, entry("A", "1"))), 4, msg(nil, 4, entry("B", "2")))},
		{"bytes: the last wins", &DeviceConfig{}, str(str(nil, 3, "{}"), 3, `{"a":1}`)},
		{"bytes need not be UTF-8", &DeviceConfig{}, msg(nil, 3, []byte{0xff, 0xfe})},
		{"empty bytes", &DeviceConfig{}, msg(str(nil, 3, "x"), 3, nil)},
	} {
		if err := proto.Unmarshal(c.in, c.which); err != nil {
			t.Fatalf("%s: protobuf-go refuses it: %v", c.name, err)
		}
		ours := oursFor(c.which)
		if err := ours.Unmarshal(c.in); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if err := sameFields(c.which.ProtoReflect(), reflect.ValueOf(ours).Elem()); err != nil {
			t.Fatalf("%s: %v\nprotobuf-go: %v\nours: %+v", c.name, err, c.which, ours)
		}
	}
}

// oursFor is the hand-written twin of a generated message.
func oursFor(m proto.Message) abi.Message {
	for _, p := range pairs {
		if reflect.TypeOf(p.theirs()) == reflect.TypeOf(m) {
			return p.ours()
		}
	}
	panic(fmt.Sprintf("no twin for %T", m))
}

// TestInvalidUTF8AgreesWithProtoc: a string that is not UTF-8 is refused,
// as protobuf-go refuses it in proto3, in every message and field.
func TestInvalidUTF8AgreesWithProtoc(t *testing.T) {
	bad := string([]byte{'x', 0xff})
	for _, m := range []abi.Message{
		&abi.Description{Name: bad},
		&abi.Device{ID: "d", Attributes: map[string]string{"k": bad}},
		&abi.Device{ID: "d", Attributes: map[string]string{bad: "v"}},
		&abi.AllocateResponse{Envs: map[string]string{"A": bad}},
		&abi.AllocateResponse{CDIDevices: []string{bad}},
		&abi.Error{Message: bad},
		&abi.Description{Driver: bad},
		&abi.Device{ID: "d", TypedAttributes: map[string]abi.Attribute{"k": abi.StringAttribute(bad)}},
		&abi.Device{ID: "d", TypedAttributes: map[string]abi.Attribute{bad: abi.IntAttribute(1)}},
		&abi.Device{ID: "d", Capacity: map[string]abi.Capacity{"m": {Value: "1", RequestPolicy: &abi.CapacityRequestPolicy{ValidValues: []string{bad}}}}},
		&abi.DiscoverResponse{SharedCounters: []abi.CounterSet{{Name: "s", Counters: map[string]string{"c": bad}}}},
		&abi.PrepareRequest{Claim: abi.Claim{UID: bad}},
		&abi.PrepareRequest{Results: []abi.AllocatedDevice{{ConsumedCapacity: map[string]string{"m": bad}}}},
		&abi.PrepareResponse{Devices: []abi.PreparedDevice{{CDIDeviceIDs: []string{bad}}}},
	} {
		wire := m.AppendTo(nil)
		fresh := reflect.New(reflect.TypeOf(m).Elem()).Interface().(abi.Message)
		err := fresh.Unmarshal(wire)
		if err == nil || !strings.Contains(err.Error(), "not valid UTF-8") {
			t.Errorf("%T with a non-UTF-8 string: %v", m, err)
		}
		for _, p := range pairs {
			if reflect.TypeOf(p.ours()) == reflect.TypeOf(m) {
				if err := proto.Unmarshal(wire, p.theirs()); err == nil {
					t.Errorf("%T: protobuf-go accepts what we refuse", m)
				}
			}
		}
	}
}

// FuzzDecode feeds arbitrary bytes to every decoder and to protobuf-go's
// decoder of the same message: none may panic, both must accept or both
// refuse, what they decode must agree field by field, and what ours decodes
// must re-encode to bytes that decode to the same value.
func FuzzDecode(f *testing.F) {
	f.Add(uint8(0), []byte{})
	f.Add(uint8(13), (&abi.Device{ID: "d0", NUMANodes: []int64{0, 1}, Attributes: map[string]string{"k": "v"},
		Edits: &abi.ContainerEdits{DeviceNodes: []abi.DeviceNode{{HostPath: "/dev/null"}}}}).AppendTo(nil))
	f.Add(uint8(2), (&abi.Description{Kind: abi.KindDeviceSource, Resource: "example.com/x", Operations: []string{"discover"}}).AppendTo(nil))
	f.Add(uint8(17), (&abi.AllocateResponse{Envs: map[string]string{"A": "1"}, CDIDevices: []string{"a.com/b=c"}}).AppendTo(nil))
	f.Add(uint8(15), (&abi.DiscoverResponse{
		SharedCounters: []abi.CounterSet{{Name: "gpu-0", Counters: map[string]string{"memory": "40Gi"}}},
		Devices: []abi.Device{{ID: "gpu-0", AllowMultipleAllocations: true,
			TypedAttributes: map[string]abi.Attribute{"model": abi.StringAttribute("A100"), "index": abi.IntAttribute(0)},
			Capacity: map[string]abi.Capacity{"memory": {Value: "40Gi",
				RequestPolicy: &abi.CapacityRequestPolicy{Default: "1Gi", Min: "1Gi", Step: "1Gi"}}},
			ConsumesCounters: []abi.CounterConsumption{{CounterSet: "gpu-0", Counters: map[string]string{"memory": "40Gi"}}}}}}).AppendTo(nil))
	f.Add(uint8(30), (&abi.PrepareRequest{Claim: abi.Claim{UID: "u", Namespace: "ns", Name: "c"},
		Results: []abi.AllocatedDevice{{Request: "gpu", DeviceID: "gpu-0", ConsumedCapacity: map[string]string{"memory": "4Gi"}, ShareID: "s"}},
		Configs: []abi.DeviceConfig{{Requests: []string{"gpu"}, Source: abi.ConfigFromClaim, Parameters: []byte(`{"a":1}`)}}}).AppendTo(nil))
	f.Add(uint8(32), (&abi.PrepareResponse{Devices: []abi.PreparedDevice{{Request: "gpu", DeviceID: "gpu-0",
		CDIDeviceIDs: []string{"gpu.example.com/gpu=gpu-0"}, Edits: &abi.ContainerEdits{Envs: map[string]string{"A": "1"}}}}}).AppendTo(nil))
	f.Fuzz(func(t *testing.T, which uint8, in []byte) {
		p := pairs[int(which)%len(pairs)]
		m := p.ours()
		err := m.Unmarshal(in)
		want := p.theirs()
		werr := proto.Unmarshal(in, want)
		if (err == nil) != (werr == nil) {
			t.Fatalf("%T: ours: %v; protobuf-go: %v", m, err, werr)
		}
		if err != nil {
			return
		}
		if err := sameFields(want.ProtoReflect(), reflect.ValueOf(m).Elem()); err != nil {
			t.Fatalf("%T decodes differently: %v\nprotobuf-go: %v\nours: %+v", m, err, want, m)
		}
		again := p.ours()
		if err := again.Unmarshal(m.AppendTo(nil)); err != nil {
			t.Fatalf("re-encoded message does not decode: %v", err)
		}
		if !reflect.DeepEqual(normalize(m), normalize(again)) {
			t.Fatalf("re-encoding changed the message:\n%+v\n%+v", m, again)
		}
	})
}

// normalize maps empty-but-allocated containers to nil, which proto3 does not
// distinguish on the wire.
func normalize(m abi.Message) abi.Message {
	var walk func(v reflect.Value)
	walk = func(v reflect.Value) {
		switch v.Kind() {
		case reflect.Pointer:
			if !v.IsNil() {
				walk(v.Elem())
			}
		case reflect.Struct:
			for i := 0; i < v.NumField(); i++ {
				walk(v.Field(i))
			}
		case reflect.Slice:
			if v.Len() == 0 {
				v.Set(reflect.Zero(v.Type()))
				return
			}
			for i := 0; i < v.Len(); i++ {
				walk(v.Index(i))
			}
		case reflect.Map:
			if v.Len() == 0 {
				v.Set(reflect.Zero(v.Type()))
			}
		}
	}
	walk(reflect.ValueOf(m))
	return m
}
