package checkpoint

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
)

func TestEncodeDecodeRoundTrip(t *testing.T) {
	for _, st := range []*State{
		{},
		{Generation: 7},
		sampleState(3, 2, 4),
		sampleState(200, 20, 8),
	} {
		data := mustEncode(t, st)
		if got := binary.BigEndian.Uint32(data[8:]); got != FormatVersion {
			t.Fatalf("version field %d, want %d", got, FormatVersion)
		}
		got, err := Decode(data)
		if err != nil {
			t.Fatal(err)
		}
		mustEqual(t, got, st)
		// The same state always encodes to the same bytes.
		if again := mustEncode(t, got); !bytes.Equal(again, data) {
			t.Fatal("re-encoding the decoded state gave different bytes")
		}
	}
}

func TestEncodeLayout(t *testing.T) {
	st := sampleState(1, 1, 1)
	data := mustEncode(t, st)
	payload, err := proto.MarshalOptions{Deterministic: true}.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	// Built by hand from the description in doc.go.
	want := []byte("WLTCKPT\n")
	want = append(want, 0, 0, 0, 3)
	want = binary.BigEndian.AppendUint64(want, uint64(len(payload)))
	want = append(want, payload...)
	want = binary.BigEndian.AppendUint32(want, crcCastagnoli(want))
	if !bytes.Equal(data, want) {
		t.Fatalf("Encode does not follow the documented layout\n got %x\nwant %x", data, want)
	}
}

// crcCastagnoli is CRC-32C computed bit by bit from its definition
// (reflected polynomial 0x82F63B78), independently of hash/crc32.
func crcCastagnoli(b []byte) uint32 {
	crc := ^uint32(0)
	for _, c := range b {
		crc ^= uint32(c)
		for range 8 {
			if crc&1 != 0 {
				crc = crc>>1 ^ 0x82F63B78
			} else {
				crc >>= 1
			}
		}
	}
	return ^crc
}

func TestEncodeNil(t *testing.T) {
	if _, err := Encode(nil); err == nil {
		t.Fatal("Encode(nil) succeeded")
	}
}

func TestEncodeInvalidUTF8(t *testing.T) {
	_, err := Encode(&State{Allocations: []*Allocation{{Workload: "ns/pod/\xff"}}})
	if err == nil || !strings.Contains(err.Error(), "UTF-8") {
		t.Fatalf("got %v, want an error about invalid UTF-8", err)
	}
}

func TestDecodeDoesNotAlias(t *testing.T) {
	data := mustEncode(t, sampleState(2, 1, 1))
	st, err := Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	want := proto.Clone(st)
	for i := range data {
		data[i] = 'x'
	}
	mustEqual(t, st, want.(*State))
}

// corruptReason decodes data and returns the CorruptError's reason, failing
// the test for anything else.
func corruptReason(t *testing.T, data []byte) string {
	t.Helper()
	st, err := Decode(data)
	var ce *CorruptError
	if !errors.As(err, &ce) {
		t.Fatalf("Decode of %d bytes: got state %v, error %v; want a *CorruptError", len(data), st != nil, err)
	}
	if st != nil {
		t.Fatal("Decode returned a state and an error")
	}
	return ce.Reason
}

func TestDecodeRefuses(t *testing.T) {
	good := mustEncode(t, sampleState(2, 1, 2))
	withVersion := func(v uint32) []byte {
		b := bytes.Clone(good)
		binary.BigEndian.PutUint32(b[8:], v)
		return frameBytes(v, b[headerSize:len(b)-trailerSize])
	}
	withLength := func(n uint64) []byte {
		b := bytes.Clone(good)
		binary.BigEndian.PutUint64(b[12:], n)
		return b
	}
	for _, tc := range []struct {
		name, data, reason string
	}{
		{"empty", "", "the file is empty"},
		{"magic prefix", "WLTCK", "truncated"},
		{"header only", string(good[:headerSize]), "truncated"},
		{"not a checkpoint", `{"allocations":[]}`, `not a wasmlet checkpoint: it starts with "{\"alloca"`},
		{"short garbage", "hello", "not a wasmlet checkpoint"},
		{"lower-case magic", "wltckpt\n" + string(good[8:]), "not a wasmlet checkpoint"},
		{"torn", string(good[:len(good)-1]), "truncated (a torn or partial write)"},
		{"appended", string(good) + "x", "1 unexpected bytes at its end"},
		{"huge length", string(withLength(1 << 62)), "header is damaged"},
		{"length one short", string(withLength(uint64(len(good) - frameSize - 1))), "unexpected bytes"},
		{"checksum", string(good[:len(good)-1]) + string([]byte{good[len(good)-1] ^ 1}), "checksum mismatch"},
		{"version 0", string(withVersion(0)), "format version is 0"},
		{"newer version", string(withVersion(4)), "written by a newer wasmlet, in format version 4; this wasmlet reads format versions 1 to 3"},
		{"much newer version", string(withVersion(0xffffffff)), "format version 4294967295"},
		{"v2 garbage payload", string(frameBytes(2, []byte{0xff, 0xff, 0xff})), "format-version-2 payload does not decode"},
		{"v2 invalid UTF-8", string(frameBytes(2, []byte{0x1a, 0x03, 0x0a, 0x01, 0xff})), "format-version-2 payload does not decode"},
		{"v2 response garbage", string(frameBytes(2, []byte{0x1a, 0x04, 0x42, 0x02, 0x2a, 0xff})), "format-version-2 payload does not decode"},
		{"v3 garbage payload", string(frameBytes(3, []byte{0xff, 0xff, 0xff})), "format-version-3 payload does not decode"},
		{"v1 not JSON", string(frameBytes(1, []byte("not json"))), "format-version-1 payload does not decode"},
		{"v1 unknown field", string(frameBytes(1, []byte(`{"allocations":[],"resources":[]}`))), `unknown field "resources"`},
		{"v1 trailing data", string(frameBytes(1, []byte(`{"allocations":[]} {}`))), "unexpected data after"},
		{"v1 wrong type", string(frameBytes(1, []byte(`{"allocations":{}}`))), "format-version-1 payload does not decode"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if reason := corruptReason(t, []byte(tc.data)); !strings.Contains(reason, tc.reason) {
				t.Fatalf("reason %q does not say %q", reason, tc.reason)
			}
		})
	}
}

func TestNewerVersionIsErrNewerVersion(t *testing.T) {
	data := frameBytes(4, []byte("whatever a newer wasmlet writes"))
	_, err := Decode(data)
	if !errors.Is(err, ErrNewerVersion) {
		t.Fatalf("got %v, want ErrNewerVersion", err)
	}
	path := filepath.Join(t.TempDir(), "ck")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Read(path)
	var ce *CorruptError
	if !errors.As(err, &ce) || !errors.Is(err, ErrNewerVersion) {
		t.Fatalf("got %v, want a *CorruptError wrapping ErrNewerVersion", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "Run the newer wasmlet") {
		t.Fatalf("message does not suggest running the newer wasmlet: %s", msg)
	}
	// Damage is not a newer version.
	_, err = Decode(mustEncode(t, &State{})[:10])
	if errors.Is(err, ErrNewerVersion) {
		t.Fatal("a truncated file is reported as a newer version")
	}
}

// Every truncation of a real file is refused, with a CorruptError naming
// the file, and none panics. This is what a torn write leaves behind on a
// file system that does not order data before the rename.
func TestTornWrites(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ck")
	st := sampleState(3, 2, 4)
	if err := Write(path, st); err != nil {
		t.Fatal(err)
	}
	full, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	torn := filepath.Join(dir, "torn")
	for n := range len(full) {
		if err := os.WriteFile(torn, full[:n], 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := Read(torn)
		var ce *CorruptError
		if !errors.As(err, &ce) || got != nil {
			t.Fatalf("%d of %d bytes: got state %v, error %v; want a *CorruptError", n, len(full), got != nil, err)
		}
		if ce.Path != torn {
			t.Fatalf("%d bytes: CorruptError.Path = %q, want %q", n, ce.Path, torn)
		}
		if after, _ := os.ReadFile(torn); !bytes.Equal(after, full[:n]) {
			t.Fatalf("%d bytes: Read modified the file", n)
		}
	}
	got, err := Read(path)
	if err != nil {
		t.Fatal(err)
	}
	mustEqual(t, got, st)
}

// Every single flipped bit, anywhere in the file, is refused.
func TestBitFlips(t *testing.T) {
	good := mustEncode(t, sampleState(3, 2, 4))
	data := bytes.Clone(good)
	for i := range data {
		for bit := range 8 {
			data[i] ^= 1 << bit
			if st, err := Decode(data); err == nil {
				t.Fatalf("byte %d bit %d flipped: decoded %v", i, bit, st)
			} else if _, ok := err.(*CorruptError); !ok {
				t.Fatalf("byte %d bit %d flipped: %T %v, want a *CorruptError", i, bit, err, err)
			}
			data[i] ^= 1 << bit
		}
	}
	if !bytes.Equal(data, good) {
		t.Fatal("test bug: data not restored")
	}
	// And through a real file, one flip in the payload.
	path := filepath.Join(t.TempDir(), "ck")
	data[len(data)/2] ^= 0x10
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Read(path)
	var ce *CorruptError
	if !errors.As(err, &ce) || !strings.Contains(ce.Reason, "checksum mismatch") {
		t.Fatalf("got %v, want a checksum mismatch", err)
	}
}

// The v1 fixture in testdata was written by encodeV1, the first format's
// encoder, and reads back as a v2 state.
func TestV1Fixture(t *testing.T) {
	v1 := v1State{Allocations: []v1Allocation{
		{Workload: "default/trainer-0/main", Resource: "vendor.example.com/accel", DeviceIDs: []string{"accel-0", "accel-1"},
			Envs: map[string]string{"ACCEL_VISIBLE_DEVICES": "0,1"}},
		{Workload: "ml/notebook-7f9c/jupyter", Resource: "vendor.example.com/accel", DeviceIDs: []string{"accel-2"}},
		{Workload: "not-a-key", Resource: "example.com/nic", DeviceIDs: []string{"nic-0"}, Envs: map[string]string{}},
	}}
	const fixture = "testdata/v1.ckpt"
	checkFixture(t, fixture, encodeV1(t, v1), "encodeV1 writes; rerun with -update if the change is intended")

	sum, err := Verify(fixture)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Version != 1 || sum.Allocations != 3 {
		t.Fatalf("summary %v, want version 1 and 3 allocations", sum)
	}
	got, err := Read(fixture)
	if err != nil {
		t.Fatal(err)
	}
	want := &State{Allocations: []*Allocation{
		{Workload: "default/trainer-0/main", Namespace: "default", Pod: "trainer-0", Container: "main",
			Resource: "vendor.example.com/accel", DeviceIds: []string{"accel-0", "accel-1"},
			Response: &ContainerResponse{Envs: map[string]string{"ACCEL_VISIBLE_DEVICES": "0,1"}}},
		{Workload: "ml/notebook-7f9c/jupyter", Namespace: "ml", Pod: "notebook-7f9c", Container: "jupyter",
			Resource: "vendor.example.com/accel", DeviceIds: []string{"accel-2"}, Response: &ContainerResponse{}},
		{Workload: "not-a-key", Resource: "example.com/nic", DeviceIds: []string{"nic-0"}, Response: &ContainerResponse{}},
	}}
	mustEqual(t, got, want)

	// The upgrade is written back as version 2.
	path := filepath.Join(t.TempDir(), "ck")
	if err := Write(path, got); err != nil {
		t.Fatal(err)
	}
	if sum, err := Verify(path); err != nil || sum.Version != FormatVersion {
		t.Fatalf("after rewrite: %v, %v; want version %d", sum, err, FormatVersion)
	}
}

// v2FixtureState is the state of testdata/v2.ckpt: realistic allocations,
// the edge cases of edgeState, and an unknown field on every message.
func v2FixtureState(t testing.TB) *State {
	st := edgeState()
	sample := sampleState(4, 2, 3)
	st.Allocations = append(st.Allocations, sample.Allocations...)
	st.Resources = append(st.Resources, sample.Resources...)
	st.Plugins = append(st.Plugins, sample.Plugins...)
	return withUnknown(t, st)
}

// checkFixture fails unless the committed file fixture holds data (written
// by what says); -update rewrites it.
func checkFixture(t *testing.T, fixture string, data []byte, what string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(fixture, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	committed, err := os.ReadFile(fixture)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(committed, data) {
		t.Fatalf("%s is not what %s", fixture, what)
	}
}
