package checkpoint

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"strings"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"

	"github.com/wasmlet/wasmlet/checkpoint/checkpointpb"
)

// The message types of the checkpoint, aliases of the generated types in
// package checkpointpb (see checkpoint.proto for every field), and of the
// kubelet's device plugin API types an allocation's response is made of.
type (
	State      = checkpointpb.State
	Allocation = checkpointpb.Allocation
	Resource   = checkpointpb.Resource
	Device     = checkpointpb.Device
	Plugin     = checkpointpb.Plugin

	Attribute          = checkpointpb.Attribute
	AttributeInt       = checkpointpb.Attribute_Int
	AttributeBool      = checkpointpb.Attribute_Bool
	AttributeString    = checkpointpb.Attribute_String_
	AttributeVersion   = checkpointpb.Attribute_Version
	Capacity           = checkpointpb.Capacity
	CapacityPolicy     = checkpointpb.CapacityPolicy
	CounterSet         = checkpointpb.CounterSet
	CounterConsumption = checkpointpb.CounterConsumption
	Claim              = checkpointpb.Claim
	PreparedDevice     = checkpointpb.PreparedDevice

	ContainerResponse = pluginapi.ContainerAllocateResponse
	Mount             = pluginapi.Mount
	DeviceSpec        = pluginapi.DeviceSpec
	CDIDevice         = pluginapi.CDIDevice
)

// FormatVersion is the format version [Encode] writes. [Decode] reads every
// version from 1 to FormatVersion.
const FormatVersion uint32 = 3

const (
	magic       = "WLTCKPT\n"
	headerSize  = 20 // magic, version, payload length
	trailerSize = 4  // CRC-32C
	frameSize   = headerSize + trailerSize
	// maxFileSize bounds what Encode produces and what Read loads, and keeps
	// files within the sizes where CRC-32C detects every 3-bit error.
	maxFileSize = 256 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Encode returns st in the current file format (see the package
// documentation). It does not modify st; st must not be modified while
// Encode runs.
func Encode(st *State) ([]byte, error) {
	b, err := encode(st)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	return b, nil
}

// encode is Encode with errors that do not start with "checkpoint:", for
// callers that add their own context.
func encode(st *State) ([]byte, error) {
	if st == nil {
		return nil, errors.New("encode: the State is nil")
	}
	b := make([]byte, headerSize, 4<<10)
	copy(b, magic)
	binary.BigEndian.PutUint32(b[8:12], FormatVersion)
	// Deterministic: map entries are sorted, so the same state always gives
	// the same bytes and files can be compared.
	b, err := proto.MarshalOptions{Deterministic: true}.MarshalAppend(b, st)
	if err != nil {
		return nil, fmt.Errorf("encode state: %w", err)
	}
	size := len(b) - headerSize
	if frameSize+size > maxFileSize {
		return nil, fmt.Errorf("encode: the state takes %d bytes, more than the %d a checkpoint may hold", size, maxFileSize-frameSize)
	}
	binary.BigEndian.PutUint64(b[12:20], uint64(size))
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli)), nil
}

// Decode parses a checkpoint file's bytes, in any format version from 1 to
// [FormatVersion]; an older version is upgraded to the current State. Any
// problem is a [*CorruptError] with an empty Path. The returned State does
// not alias data.
func Decode(data []byte) (*State, error) {
	st, _, err := decode(data)
	if err != nil {
		return nil, err
	}
	return st, nil
}

// frame is what the frame of a file says.
type frame struct {
	version  uint32
	checksum uint32
	payload  []byte
}

func decode(data []byte) (*State, frame, error) {
	f, err := parseFrame(data)
	if err != nil {
		return nil, f, err
	}
	var st *State
	switch f.version {
	case 1:
		st, err = decodeV1(f.payload)
	case 2:
		var up []byte
		if up, err = upgradeV2(f.payload); err == nil {
			st = new(State)
			err = proto.Unmarshal(up, st)
		}
	case 3:
		st = new(State)
		err = proto.Unmarshal(f.payload, st)
	}
	if err != nil {
		return nil, f, &CorruptError{Reason: fmt.Sprintf(
			"its checksum is correct but its format-version-%d payload does not decode (%v): it was written by a faulty program", f.version, err)}
	}
	return st, f, nil
}

// parseFrame checks the frame and the checksum, then the version (see
// "File format" in the package documentation for why in that order).
func parseFrame(data []byte) (frame, error) {
	corrupt := func(format string, args ...any) (frame, error) {
		return frame{}, &CorruptError{Reason: fmt.Sprintf(format, args...)}
	}
	n := len(data)
	switch {
	case n == 0:
		return corrupt("the file is empty")
	case n < len(magic) && strings.HasPrefix(magic, string(data)):
		return corrupt("it is truncated: %d bytes, less than the %d bytes of the smallest checkpoint", n, frameSize)
	case !bytes.HasPrefix(data, []byte(magic)):
		return corrupt("it is not a wasmlet checkpoint: it starts with %q, a checkpoint starts with %q", data[:min(n, len(magic))], magic)
	case n < frameSize:
		return corrupt("it is truncated: %d bytes, less than the %d bytes of the smallest checkpoint", n, frameSize)
	case n > maxFileSize:
		return corrupt("it is %d bytes, more than the %d a checkpoint may hold", n, maxFileSize)
	}
	declared := binary.BigEndian.Uint64(data[12:20])
	if declared > maxFileSize-frameSize {
		return corrupt("its header is damaged: it declares a %d-byte payload, larger than any checkpoint", declared)
	}
	if want := frameSize + int(declared); n != want {
		if n < want {
			return corrupt("it is truncated (a torn or partial write) or its header is damaged: it is %d bytes, but its header declares a %d-byte payload, which makes %d", n, declared, want)
		}
		return corrupt("it has %d unexpected bytes at its end, or its header is damaged: it is %d bytes, but its header declares a %d-byte payload, which makes %d", n-want, n, declared, want)
	}
	f := frame{
		version:  binary.BigEndian.Uint32(data[8:12]),
		checksum: binary.BigEndian.Uint32(data[n-trailerSize:]),
		payload:  data[headerSize : n-trailerSize],
	}
	if sum := crc32.Checksum(data[:n-trailerSize], castagnoli); sum != f.checksum {
		return frame{}, &CorruptError{Reason: fmt.Sprintf(
			"it is damaged: checksum mismatch, bytes 0 to %d have CRC-32C %#08x but the file records %#08x", n-trailerSize-1, sum, f.checksum)}
	}
	switch {
	case f.version == 0:
		return corrupt("its checksum is correct but its format version is 0, which no wasmlet writes")
	case f.version > FormatVersion:
		return f, &CorruptError{
			Reason: fmt.Sprintf("it was written by a newer wasmlet, in format version %d; this wasmlet reads format versions 1 to %d", f.version, FormatVersion),
			cause:  ErrNewerVersion,
		}
	}
	return f, nil
}

// v1State is the payload of format version 1, the first format: JSON holding
// the allocations only.
type v1State struct {
	Allocations []v1Allocation `json:"allocations"`
}

type v1Allocation struct {
	Workload  string            `json:"workload"`
	Resource  string            `json:"resource"`
	DeviceIDs []string          `json:"device_ids"`
	Envs      map[string]string `json:"envs"`
}

// decodeV1 decodes a version-1 payload and upgrades it to a State.
func decodeV1(payload []byte) (*State, error) {
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	var v1 v1State
	if err := dec.Decode(&v1); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("unexpected data after the JSON object")
	}
	st := &State{Allocations: make([]*Allocation, 0, len(v1.Allocations))}
	for _, a := range v1.Allocations {
		up := &Allocation{
			Workload:  a.Workload,
			Resource:  a.Resource,
			DeviceIds: a.DeviceIDs,
			Response:  &pluginapi.ContainerAllocateResponse{Envs: a.Envs},
		}
		if parts := strings.Split(a.Workload, "/"); len(parts) == 3 && parts[0] != "" && parts[1] != "" && parts[2] != "" {
			up.Namespace, up.Pod, up.Container = parts[0], parts[1], parts[2]
		}
		st.Allocations = append(st.Allocations, up)
	}
	return st, nil
}

// Field numbers that differ between format versions 2 and 3.
const (
	stateAllocations   = 3  // State.allocations, both versions
	allocationV2Resp   = 8  // Allocation.response in version 2: wasmlet's copy of the message
	allocationResp     = 10 // Allocation.response in version 3: v1beta1.ContainerAllocateResponse
	responseCDIDevices = 5  // ContainerResponse.cdi_devices: strings in version 2, CDIDevice messages in 3
	cdiDeviceName      = 1  // v1beta1.CDIDevice.name

	// Fields version 3 added, which a version-2 payload can only hold as
	// bytes no version-2 writer wrote.
	stateResources         = 4 // State.resources, both versions
	stateClaims            = 6 // State.claims
	resourceDevices        = 3 // Resource.devices, both versions
	resourceDriver         = 7 // Resource.driver
	resourceSharedCounters = 8 // Resource.shared_counters
	deviceFirstV3          = 5 // Device.typed_attributes ...
	deviceLastV3           = 8 // ... to Device.allow_multiple_allocations
)

// upgradeV2 rewrites a version-2 payload as version 3. The two differ only
// in an allocation's response: version 2's ContainerResponse had the same
// fields, numbers and types as v1beta1.ContainerAllocateResponse, except its
// cdi_devices, which were strings where the kubelet's are CDIDevice
// messages. Every other byte, unknown fields included, is kept as it is,
// except the fields version 3 added (an allocation's field 10, which it
// reads as the response, the state's claims, a resource's driver and
// shared counters, a device's structured fields): no version-2 writer had
// them, and they are dropped.
func upgradeV2(payload []byte) ([]byte, error) {
	return rewrite(payload, func(num protowire.Number, typ protowire.Type, v []byte, out []byte) ([]byte, error) {
		switch {
		case num == stateClaims:
			return out, nil // dropped: no version-2 writer had it
		case num == stateResources && typ == protowire.BytesType:
			return dropV3Fields(out, num, v)
		case num != stateAllocations || typ != protowire.BytesType:
			return nil, nil
		}
		alloc, err := rewrite(v, func(num protowire.Number, typ protowire.Type, v []byte, out []byte) ([]byte, error) {
			if num == allocationResp {
				return out, nil // dropped
			}
			if num != allocationV2Resp || typ != protowire.BytesType {
				return nil, nil
			}
			resp, err := rewrite(v, func(num protowire.Number, typ protowire.Type, v []byte, out []byte) ([]byte, error) {
				if num != responseCDIDevices || typ != protowire.BytesType {
					return nil, nil
				}
				out = protowire.AppendTag(out, responseCDIDevices, protowire.BytesType)
				return protowire.AppendBytes(out, protowire.AppendBytes(protowire.AppendTag(nil, cdiDeviceName, protowire.BytesType), v)), nil
			})
			if err != nil {
				return nil, err
			}
			return protowire.AppendBytes(protowire.AppendTag(out, allocationResp, protowire.BytesType), resp), nil
		})
		if err != nil {
			return nil, err
		}
		return protowire.AppendBytes(protowire.AppendTag(out, stateAllocations, protowire.BytesType), alloc), nil
	})
}

// dropV3Fields appends version-2 resource v (field num of the state)
// without the fields version 3 added to a resource and its devices: no
// version-2 writer had them, so in a version-2 payload they are unknown
// bytes, which version 3 would read as its own (and refuse, if they do not
// parse as its fields) — as the response's field 10.
func dropV3Fields(out []byte, num protowire.Number, v []byte) ([]byte, error) {
	res, err := rewrite(v, func(num protowire.Number, typ protowire.Type, v []byte, out []byte) ([]byte, error) {
		switch {
		case num == resourceDriver || num == resourceSharedCounters:
			return out, nil
		case num != resourceDevices || typ != protowire.BytesType:
			return nil, nil
		}
		dev, err := rewrite(v, func(num protowire.Number, _ protowire.Type, _ []byte, out []byte) ([]byte, error) {
			if num >= deviceFirstV3 && num <= deviceLastV3 {
				return out, nil
			}
			return nil, nil
		})
		if err != nil {
			return nil, err
		}
		return protowire.AppendBytes(protowire.AppendTag(out, num, protowire.BytesType), dev), nil
	})
	if err != nil {
		return nil, err
	}
	return protowire.AppendBytes(protowire.AppendTag(out, num, protowire.BytesType), res), nil
}

// rewrite copies the protobuf message b field by field, asking edit about
// each: a nil answer keeps the field as it is, anything else replaces it
// (edit appends its replacement, if any, to out, which is never nil, and
// returns it). v is a length-delimited field's contents, else nil.
func rewrite(b []byte, edit func(num protowire.Number, typ protowire.Type, v []byte, out []byte) ([]byte, error)) ([]byte, error) {
	out := make([]byte, 0, len(b)+len(b)/8)
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, protowire.ParseError(n)
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			return nil, protowire.ParseError(m)
		}
		field := b[:n+m]
		var v []byte
		if typ == protowire.BytesType {
			v, _ = protowire.ConsumeBytes(b[n:])
		}
		b = b[n+m:]
		replaced, err := edit(num, typ, v, out)
		if err != nil {
			return nil, err
		}
		if replaced == nil {
			out = append(out, field...)
		} else {
			out = replaced
		}
	}
	return out, nil
}
