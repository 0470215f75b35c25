package checkpoint

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/proto"
)

// FuzzDecode feeds Decode arbitrary bytes, both as a whole file and as the
// payload of a well-formed frame of each format version (a fuzzer would
// hardly ever get past the checksum otherwise). Decode must never panic; it
// must accept exactly what the file format in doc.go allows (checked by
// specFrame, written from that description alone, and by protobuf-go: for
// a version-3 payload with the current schema, for a version-2 payload with
// version 2's, upgraded through protojson by decodeV2Reference), refuse the
// rest with a *CorruptError, and what it accepts must encode and decode back
// to the same state.
//
// The seed corpus is testdata/fuzz/FuzzDecode (rewritten by
// `go test ./checkpoint -run TestFuzzSeeds -update`); fuzz with
// `go test ./checkpoint -run '^$' -fuzz FuzzDecode -fuzztime 30s`.
func FuzzDecode(f *testing.F) {
	v2 := v2State(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		for i, in := range [][]byte{data, frameBytes(1, data), frameBytes(2, data), frameBytes(3, data)} {
			st, err := Decode(in)
			version, payload, frameOK := specFrame(in)
			if err != nil {
				if _, ok := err.(*CorruptError); !ok {
					t.Fatalf("input %d: error %T (%v), want a *CorruptError", i, err, err)
				}
				if st != nil {
					t.Fatalf("input %d: a state and an error", i)
				}
				if frameOK && version == 3 && proto.Unmarshal(payload, new(State)) == nil {
					t.Fatalf("input %d: refused (%v), but its frame is good and protobuf-go decodes its payload", i, err)
				}
				if frameOK && version == 2 {
					if _, rerr := decodeV2Reference(t, v2, payload); rerr == nil {
						t.Fatalf("input %d: refused (%v), but its frame is good and protobuf-go decodes its version-2 payload", i, err)
					}
				}
				continue
			}
			if !frameOK {
				t.Fatalf("input %d: accepted, but its frame breaks the format doc.go describes", i)
			}
			switch version {
			case 3:
				want := new(State)
				if err := proto.Unmarshal(payload, want); err != nil {
					t.Fatalf("input %d: accepted, but protobuf-go refuses its payload: %v", i, err)
				}
				if !proto.Equal(st, want) {
					t.Fatalf("input %d: decoded %v, protobuf-go decodes %v", i, st, want)
				}
			case 2:
				want, err := decodeV2Reference(t, v2, payload)
				if err != nil {
					t.Fatalf("input %d: accepted, but protobuf-go refuses its version-2 payload: %v", i, err)
				}
				if got := withoutUnknown(st); !proto.Equal(got, want) {
					t.Fatalf("input %d: upgraded %v, protobuf-go and protojson give %v", i, got, want)
				}
			}
			out, err := Encode(st)
			if err != nil {
				t.Fatalf("input %d: a decoded state does not encode: %v", i, err)
			}
			back, err := Decode(out)
			if err != nil {
				t.Fatalf("input %d: a re-encoded state does not decode: %v", i, err)
			}
			if !proto.Equal(st, back) {
				t.Fatalf("input %d: the state changed through Encode and Decode\nbefore %v\nafter  %v", i, st, back)
			}
		}
	})
}

// specFrame checks data against the frame described in doc.go, written from
// that description and not from format.go: the magic, a length that makes
// the file exactly 24+N bytes, at most 256 MiB, a CRC-32C of everything
// before it, and a version this wasmlet reads (1 to 3).
func specFrame(data []byte) (version uint32, payload []byte, ok bool) {
	if len(data) < 24 || len(data) > 256<<20 || string(data[:8]) != "WLTCKPT\n" {
		return 0, nil, false
	}
	n := binary.BigEndian.Uint64(data[12:20])
	if n != uint64(len(data)-24) {
		return 0, nil, false
	}
	if crcCastagnoli(data[:len(data)-4]) != binary.BigEndian.Uint32(data[len(data)-4:]) {
		return 0, nil, false
	}
	version = binary.BigEndian.Uint32(data[8:12])
	return version, data[20 : len(data)-4], version >= 1 && version <= 3
}

type seed struct {
	name string
	data []byte
}

func fuzzSeeds(t testing.TB) []seed {
	small := mustEncode(t, sampleState(2, 1, 2))
	payload, err := proto.MarshalOptions{Deterministic: true}.Marshal(sampleState(2, 1, 2))
	if err != nil {
		t.Fatal(err)
	}
	v1, err := os.ReadFile("testdata/v1.ckpt")
	if err != nil {
		t.Fatal(err)
	}
	v2, err := os.ReadFile("testdata/v2.ckpt")
	if err != nil {
		t.Fatal(err)
	}
	huge := bytes.Clone(small)
	binary.BigEndian.PutUint64(huge[12:], 1<<63)
	return []seed{
		{"v3-small", small},
		{"v3-empty-state", mustEncode(t, &State{})},
		{"v3-torn", small[:len(small)-5]},
		{"v3-huge-length", huge},
		{"v1-fixture", v1},
		{"v2-fixture", v2},
		{"v2-payload", v2[headerSize : len(v2)-trailerSize]},
		{"v4", frameBytes(4, []byte("from the future"))},
		{"v0", frameBytes(0, nil)},
		{"empty", nil},
		{"magic-only", []byte(magic)},
		{"payload-proto", payload},
		{"payload-json", v1[headerSize : len(v1)-trailerSize]},
		{"payload-json-unknown-field", []byte(`{"allocations":[{"workload":"a/b/c","resource":"r","extra":1}]}`)},
		{"payload-json-nulls", []byte(`{"allocations":[null,{"device_ids":null,"envs":{"K":"\u00ff"}}]}`)},
	}
}

// TestFuzzSeeds keeps the committed seed corpus in step with fuzzSeeds.
func TestFuzzSeeds(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzDecode")
	for _, s := range fuzzSeeds(t) {
		path := filepath.Join(dir, s.name)
		want := fmt.Appendf(nil, "go test fuzz v1\n[]byte(%q)\n", s.data)
		if *update {
			if err := os.WriteFile(path, want, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s is missing or stale (%v): rerun with -update", path, err)
		}
	}
}
