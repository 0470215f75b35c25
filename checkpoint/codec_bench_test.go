package checkpoint

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/proto"
)

// BenchmarkPayload compares the two ways of encoding and decoding the
// version-2 payload, the hand-written protowire codec (codec.go) and
// protobuf-go's generated code with deterministic marshalling, at the sizes
// a node holds, and puts them next to the fsync'd write every durable
// commit pays:
//
//	go test ./checkpoint -run '^$' -bench BenchmarkPayload -count 6 | benchstat -col /codec -
func BenchmarkPayload(b *testing.B) {
	for _, allocs := range []int{10, 200, 1_000, 10_000} {
		st := sampleState(allocs, 20, 8)
		payload, err := proto.MarshalOptions{Deterministic: true}.Marshal(st)
		if err != nil {
			b.Fatal(err)
		}
		name := fmt.Sprintf("allocs=%d", allocs)
		b.Run(name+"/op=encode/codec=hand", func(b *testing.B) {
			b.SetBytes(int64(len(payload)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := encode(st); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"/op=encode/codec=protobuf", func(b *testing.B) {
			b.SetBytes(int64(len(payload)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := (proto.MarshalOptions{Deterministic: true}).Marshal(st); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"/op=decode/codec=hand", func(b *testing.B) {
			b.SetBytes(int64(len(payload)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := unmarshalState(payload); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"/op=decode/codec=protobuf", func(b *testing.B) {
			b.SetBytes(int64(len(payload)))
			b.ReportAllocs()
			for b.Loop() {
				if err := proto.Unmarshal(payload, new(State)); err != nil {
					b.Fatal(err)
				}
			}
		})
		// The whole durable write (encode, write, fsync, rename, fsync of
		// the directory), for context: what a commit costs in all.
		b.Run(name+"/op=write-fsync/codec=hand", func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "ck")
			b.SetBytes(int64(len(payload)))
			b.ReportAllocs()
			for b.Loop() {
				if err := Write(path, st); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"/op=write-fsync/codec=protobuf", func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "ck")
			b.SetBytes(int64(len(payload)))
			b.ReportAllocs()
			for b.Loop() {
				data, err := encodeProtobuf(st)
				if err != nil {
					b.Fatal(err)
				}
				if err := writeFile(path, data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// encodeProtobuf is encode with protobuf-go marshalling the payload straight
// after the header.
func encodeProtobuf(st *State) ([]byte, error) {
	b := make([]byte, headerSize, 4096)
	copy(b, magic)
	binary.BigEndian.PutUint32(b[8:12], FormatVersion)
	b, err := proto.MarshalOptions{Deterministic: true}.MarshalAppend(b, st)
	if err != nil {
		return nil, err
	}
	binary.BigEndian.PutUint64(b[12:20], uint64(len(b)-headerSize))
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli)), nil
}
