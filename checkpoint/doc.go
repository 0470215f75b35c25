// Package checkpoint stores wasmlet's durable state — the devices handed out
// to containers, the resources and their last known devices, the registered
// plugins — in a versioned, checksummed file that is replaced atomically.
//
// The device manager acknowledges an allocation or a release only once it is
// durable. It keeps its state in memory, bumps a generation number on every
// mutation, and calls [Committer.Sync] with that generation; concurrent
// callers share one write and one fsync (group commit). On start it calls
// [Read]: a missing file means a first start, and a file that exists but
// cannot be used is a [*CorruptError] that must stop the host, because
// starting empty would hand out again devices that running containers hold. A bad file is never
// modified, by Read or by a Committer.
//
// # Types
//
// The state is the protobuf message wasmlet.checkpoint.v3.State, defined in
// checkpoint.proto. An allocation's response is the kubelet's own
// v1beta1.ContainerAllocateResponse (k8s.io/kubelet's device plugin API),
// as the kubelet's checkpoint stores it, not a copy of it. [State],
// [Allocation] and the other message types of this package are aliases of
// the generated types in package checkpointpb and of the kubelet's, so a
// caller needs only this package, and protojson renders a State as JSON.
// The payload is encoded by protobuf-go with deterministic marshalling (map
// entries sorted, so the same state always gives the same bytes) and decoded
// by proto.Unmarshal. An earlier protowire codec written by hand for this
// schema was measured against it (BenchmarkPayload, in the history of
// bench_test.go; on the 2-core development machine, whose fsync takes
// ~0.6 ms): at 200 allocations it saved 0.26 ms of 0.70 ms to encode and
// 0.47 ms of a 1.58 ms durable write, at 10,000 allocations 10 ms of 24 ms
// to encode. Allocations are made as containers start, and concurrent
// commits share one write (group commit), so that saving was not worth 750
// lines to mirror by hand at every schema change. testdata/v2.ckpt, written
// by that codec, checks that version-2 files still read (and that their
// upgrade is what protobuf-go makes of them with version 2's schema,
// testdata/v2.protoset), and testdata/v3.ckpt that the bytes of version 3 do
// not change.
//
// # File format
//
// A checkpoint file is one frame: a fixed 20-byte header, a payload, and a
// 4-byte checksum. All integers are big-endian.
//
//	offset  size  field
//	0       8     magic: the bytes "WLTCKPT\n" (57 4c 54 43 4b 50 54 0a)
//	8       4     format version, uint32 (currently 3)
//	12      8     payload length N, uint64
//	20      N     payload, encoded as the format version says
//	20+N    4     CRC-32C (Castagnoli polynomial, as in iSCSI and ext4) of
//	              bytes 0 to 20+N-1, that is of everything before it
//
// The file is exactly 24+N bytes long; a file of any other length is refused,
// and so is a file larger than 256 MiB (a state of 10,000 allocations takes
// about 5 MB; [Encode] refuses to produce what could not be read back). The
// checksum covers the bytes as written, header included, so a torn write or
// a truncation is found, and so are flipped bits: at these sizes CRC-32C
// detects every error of up to 3 bits and every burst of up to 32 bits,
// before the payload is decoded.
//
// The frame is the same in every format version; only the payload encoding
// changes with the version. A reader therefore checks the frame and the
// checksum first and the version second: a flipped bit in the version field
// is reported as a checksum mismatch, and a higher version with a good
// checksum really was written by a newer wasmlet, which this one refuses
// rather than misread. A future format that needs a different frame will use
// a different magic.
//
// Payload encodings:
//
//   - Version 3 (current): the protobuf encoding of wasmlet.checkpoint.v3.State
//     (checkpoint.proto). Within version 3 fields are only ever added.
//   - Version 2: the protobuf encoding of wasmlet.checkpoint.v2.State
//     (testdata/v2.protoset), the same but for an allocation's response: field
//     8, wasmlet's copy of ContainerAllocateResponse whose CDI device names
//     were strings. [Decode] rewrites such a payload as version 3 (field 10,
//     the names as CDIDevice messages; every other byte kept) before it
//     decodes it; the next write stores version 3.
//   - Version 1, the first format: UTF-8 JSON holding allocations only, as
//     {"allocations":[{"workload":"ns/pod/ctr","resource":"example.com/gpu",
//     "device_ids":["gpu-0"],"envs":{"K":"V"}}]}. No other fields exist; a
//     version-1 payload with unknown fields is refused. [Decode] upgrades it
//     to a current State (generation 0, no resources, no plugins, the
//     namespace, pod and container split out of the workload key); the next
//     write stores the current version. Nothing writes version 1 any more.
//
// # Writing
//
// [Write] replaces a file atomically: it writes a temporary file named
// .NAME.*.tmp in the same directory with mode 0600, fsyncs it, renames it over
// PATH and fsyncs the directory, so after a crash at any instant PATH holds
// either the previous complete file or the new one. A write that fails at any
// step returns an error naming the path and the step, and leaves PATH as it
// was.
//
// # Regenerating the schema code
//
// With protoc and protoc-gen-go (google.golang.org/protobuf/cmd/protoc-gen-go)
// on PATH, `go generate ./checkpoint` rewrites checkpointpb/checkpoint.pb.go
// from checkpoint.proto, which imports the kubelet's api.proto from the
// module cache under the path its generated code registers it by.
// testdata/v2.protoset, version 2's schema as protoc compiled it when version
// 3 replaced it, is frozen: its source was removed once compiled (git show
// 510a89b:checkpoint/testdata/v2.proto), and
//
//	protoc --decode=google.protobuf.FileDescriptorSet \
//		google/protobuf/descriptor.proto < checkpoint/testdata/v2.protoset
//
// shows it.
package checkpoint

//go:generate sh -c "protoc -I . -I staging/src/k8s.io/kubelet=$(go list -m -f '{{.Dir}}' k8s.io/kubelet) --go_out=. --go_opt=module=github.com/wasmlet/wasmlet/checkpoint checkpoint.proto"
