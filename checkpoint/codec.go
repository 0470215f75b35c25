package checkpoint

import (
	"fmt"
	"slices"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// This file encodes and decodes the version-2 payload, the protobuf
// encoding of State, by hand, with protowire: the reflection-driven codec of
// google.golang.org/protobuf spends most of its time and allocations on the
// map fields, and every durable commit encodes the whole state. The output
// is byte for byte what proto.MarshalOptions{Deterministic: true} produces,
// and decoding follows proto.Unmarshal: unknown fields, and known fields
// with an unexpected wire type, are kept as unknown fields and written back;
// repeated scalars are accepted packed and unpacked; the last value of a
// singular field wins and a repeated message field merges; strings must be
// valid UTF-8. codec_test.go checks all of this against protobuf-go.
//
// Field numbers are those of checkpoint.proto.

// Encoding takes two passes. The sizer computes the size of every nested
// message once, in the order the encoder will need them (pre-order: a
// message before its children), and the encoder consumes them in that order
// to write each length prefix before the message.

type sizer struct {
	sizes []int
}

// open reserves the slot of the message being sized.
func (z *sizer) open() int {
	z.sizes = append(z.sizes, 0)
	return len(z.sizes) - 1
}

func (z *sizer) close(slot, n int) int {
	z.sizes[slot] = n
	return n
}

func sizeUint(num protowire.Number, v uint64) int {
	if v == 0 {
		return 0
	}
	return protowire.SizeTag(num) + protowire.SizeVarint(v)
}

func sizeBool(num protowire.Number, v bool) int {
	if !v {
		return 0
	}
	return protowire.SizeTag(num) + 1
}

func sizeString(num protowire.Number, s string) int {
	if s == "" {
		return 0
	}
	return protowire.SizeTag(num) + protowire.SizeBytes(len(s))
}

func sizeStrings(num protowire.Number, ss []string) int {
	n := len(ss) * protowire.SizeTag(num)
	for _, s := range ss {
		n += protowire.SizeBytes(len(s))
	}
	return n
}

func sizeMsg(num protowire.Number, size int) int {
	return protowire.SizeTag(num) + protowire.SizeBytes(size)
}

func sizeMap(num protowire.Number, m map[string]string) int {
	n := 0
	for k, v := range m {
		n += sizeMsg(num, sizeEntry(k, v))
	}
	return n
}

// sizeEntry is the size of a map entry: key and value are always written.
func sizeEntry(k, v string) int {
	return 1 + protowire.SizeBytes(len(k)) + 1 + protowire.SizeBytes(len(v))
}

func sizePacked(vs []int64) int {
	n := 0
	for _, v := range vs {
		n += protowire.SizeVarint(uint64(v))
	}
	return n
}

func unknown(m protoreflect.ProtoMessage) int {
	return len(m.ProtoReflect().GetUnknown())
}

// encoder appends the encoding to b. Every string passes through it once;
// the first that is not valid UTF-8, which protobuf forbids, is kept in bad.
type encoder struct {
	b      []byte
	sizes  []int // from the sizer
	next   int   // the next size to use
	bad    string
	hasBad bool
}

func (e *encoder) uint(num protowire.Number, v uint64) {
	if v != 0 {
		e.b = protowire.AppendVarint(protowire.AppendTag(e.b, num, protowire.VarintType), v)
	}
}

func (e *encoder) bool(num protowire.Number, v bool) {
	if v {
		e.b = append(protowire.AppendTag(e.b, num, protowire.VarintType), 1)
	}
}

// str appends s even if it is empty: for repeated fields and map entries.
func (e *encoder) str(num protowire.Number, s string) {
	if !e.hasBad && !utf8.ValidString(s) {
		e.bad, e.hasBad = s, true
	}
	e.b = protowire.AppendString(protowire.AppendTag(e.b, num, protowire.BytesType), s)
}

func (e *encoder) string(num protowire.Number, s string) {
	if s != "" {
		e.str(num, s)
	}
}

func (e *encoder) strings(num protowire.Number, ss []string) {
	for _, s := range ss {
		e.str(num, s)
	}
}

// msg writes the tag and length of the next nested message.
func (e *encoder) msg(num protowire.Number) {
	size := 0
	if e.next < len(e.sizes) { // else the state changed since it was sized: Encode fails
		size = e.sizes[e.next]
	}
	e.next++
	e.b = protowire.AppendVarint(protowire.AppendTag(e.b, num, protowire.BytesType), uint64(size))
}

// stringMap writes the entries in key order, as deterministic protobuf-go
// does. Small maps sort on the stack.
func (e *encoder) stringMap(num protowire.Number, m map[string]string) {
	var stack [16]string
	keys := stack[:0]
	if len(m) > len(stack) {
		keys = make([]string, 0, len(m))
	}
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v := m[k]
		e.b = protowire.AppendVarint(protowire.AppendTag(e.b, num, protowire.BytesType), uint64(sizeEntry(k, v)))
		e.str(1, k)
		e.str(2, v)
	}
}

func (e *encoder) unknown(m protoreflect.ProtoMessage) {
	e.b = append(e.b, m.ProtoReflect().GetUnknown()...)
}

// State: 1 generation, 2 written_unix_nano, 3 allocations, 4 resources,
// 5 plugins. The State itself needs no slot: it has no length prefix.

func (z *sizer) state(m *State) int {
	n := sizeUint(1, m.Generation) + sizeUint(2, uint64(m.WrittenUnixNano))
	for _, a := range m.Allocations {
		n += sizeMsg(3, z.allocation(a))
	}
	for _, r := range m.Resources {
		n += sizeMsg(4, z.resource(r))
	}
	for _, p := range m.Plugins {
		n += sizeMsg(5, z.plugin(p))
	}
	return n + unknown(m)
}

func (e *encoder) state(m *State) {
	e.uint(1, m.Generation)
	e.uint(2, uint64(m.WrittenUnixNano))
	for _, a := range m.Allocations {
		e.msg(3)
		e.allocation(a)
	}
	for _, r := range m.Resources {
		e.msg(4)
		e.resource(r)
	}
	for _, p := range m.Plugins {
		e.msg(5)
		e.plugin(p)
	}
	e.unknown(m)
}

// Allocation: 1 workload, 2 namespace, 3 pod, 4 pod_uid, 5 container,
// 6 resource, 7 device_ids, 8 response, 9 allocated_unix_nano.

func (z *sizer) allocation(m *Allocation) int {
	slot := z.open()
	if m == nil {
		return 0
	}
	n := sizeString(1, m.Workload) + sizeString(2, m.Namespace) + sizeString(3, m.Pod) +
		sizeString(4, m.PodUid) + sizeString(5, m.Container) + sizeString(6, m.Resource) +
		sizeStrings(7, m.DeviceIds) + sizeUint(9, uint64(m.AllocatedUnixNano))
	if m.Response != nil {
		n += sizeMsg(8, z.response(m.Response))
	}
	return z.close(slot, n+unknown(m))
}

func (e *encoder) allocation(m *Allocation) {
	if m == nil {
		return
	}
	e.string(1, m.Workload)
	e.string(2, m.Namespace)
	e.string(3, m.Pod)
	e.string(4, m.PodUid)
	e.string(5, m.Container)
	e.string(6, m.Resource)
	e.strings(7, m.DeviceIds)
	if m.Response != nil {
		e.msg(8)
		e.response(m.Response)
	}
	e.uint(9, uint64(m.AllocatedUnixNano))
	e.unknown(m)
}

// ContainerResponse: 1 envs, 2 mounts, 3 devices, 4 annotations,
// 5 cdi_devices.

func (z *sizer) response(m *ContainerResponse) int {
	slot := z.open()
	n := sizeMap(1, m.Envs) + sizeMap(4, m.Annotations) + sizeStrings(5, m.CdiDevices)
	for _, x := range m.Mounts {
		n += sizeMsg(2, z.mount(x))
	}
	for _, x := range m.Devices {
		n += sizeMsg(3, z.deviceSpec(x))
	}
	return z.close(slot, n+unknown(m))
}

func (e *encoder) response(m *ContainerResponse) {
	e.stringMap(1, m.Envs)
	for _, x := range m.Mounts {
		e.msg(2)
		e.mount(x)
	}
	for _, x := range m.Devices {
		e.msg(3)
		e.deviceSpec(x)
	}
	e.stringMap(4, m.Annotations)
	e.strings(5, m.CdiDevices)
	e.unknown(m)
}

// Mount: 1 container_path, 2 host_path, 3 read_only.

func (z *sizer) mount(m *Mount) int {
	slot := z.open()
	if m == nil {
		return 0
	}
	return z.close(slot, sizeString(1, m.ContainerPath)+sizeString(2, m.HostPath)+sizeBool(3, m.ReadOnly)+unknown(m))
}

func (e *encoder) mount(m *Mount) {
	if m == nil {
		return
	}
	e.string(1, m.ContainerPath)
	e.string(2, m.HostPath)
	e.bool(3, m.ReadOnly)
	e.unknown(m)
}

// DeviceSpec: 1 container_path, 2 host_path, 3 permissions.

func (z *sizer) deviceSpec(m *DeviceSpec) int {
	slot := z.open()
	if m == nil {
		return 0
	}
	return z.close(slot, sizeString(1, m.ContainerPath)+sizeString(2, m.HostPath)+sizeString(3, m.Permissions)+unknown(m))
}

func (e *encoder) deviceSpec(m *DeviceSpec) {
	if m == nil {
		return
	}
	e.string(1, m.ContainerPath)
	e.string(2, m.HostPath)
	e.string(3, m.Permissions)
	e.unknown(m)
}

// Resource: 1 name, 2 provider, 3 devices, 4 last_seen_unix_nano,
// 5 pre_start_required, 6 preferred_allocation.

func (z *sizer) resource(m *Resource) int {
	slot := z.open()
	if m == nil {
		return 0
	}
	n := sizeString(1, m.Name) + sizeString(2, m.Provider) + sizeUint(4, uint64(m.LastSeenUnixNano)) +
		sizeBool(5, m.PreStartRequired) + sizeBool(6, m.PreferredAllocation)
	for _, d := range m.Devices {
		n += sizeMsg(3, z.device(d))
	}
	return z.close(slot, n+unknown(m))
}

func (e *encoder) resource(m *Resource) {
	if m == nil {
		return
	}
	e.string(1, m.Name)
	e.string(2, m.Provider)
	for _, d := range m.Devices {
		e.msg(3)
		e.device(d)
	}
	e.uint(4, uint64(m.LastSeenUnixNano))
	e.bool(5, m.PreStartRequired)
	e.bool(6, m.PreferredAllocation)
	e.unknown(m)
}

// Device: 1 id, 2 healthy, 3 numa_nodes (packed), 4 attributes.

func (z *sizer) device(m *Device) int {
	slot := z.open()
	if m == nil {
		return 0
	}
	n := sizeString(1, m.Id) + sizeBool(2, m.Healthy) + sizeMap(4, m.Attributes)
	if len(m.NumaNodes) > 0 {
		n += sizeMsg(3, sizePacked(m.NumaNodes))
	}
	return z.close(slot, n+unknown(m))
}

func (e *encoder) device(m *Device) {
	if m == nil {
		return
	}
	e.string(1, m.Id)
	e.bool(2, m.Healthy)
	if len(m.NumaNodes) > 0 {
		e.b = protowire.AppendVarint(protowire.AppendTag(e.b, 3, protowire.BytesType), uint64(sizePacked(m.NumaNodes)))
		for _, v := range m.NumaNodes {
			e.b = protowire.AppendVarint(e.b, uint64(v))
		}
	}
	e.stringMap(4, m.Attributes)
	e.unknown(m)
}

// Plugin: 1 name, 2 type, 3 endpoint, 4 socket_path, 5 version, 6 resource.

func (z *sizer) plugin(m *Plugin) int {
	slot := z.open()
	if m == nil {
		return 0
	}
	return z.close(slot, sizeString(1, m.Name)+sizeString(2, m.Type)+sizeString(3, m.Endpoint)+
		sizeString(4, m.SocketPath)+sizeString(5, m.Version)+sizeString(6, m.Resource)+unknown(m))
}

func (e *encoder) plugin(m *Plugin) {
	if m == nil {
		return
	}
	e.string(1, m.Name)
	e.string(2, m.Type)
	e.string(3, m.Endpoint)
	e.string(4, m.SocketPath)
	e.string(5, m.Version)
	e.string(6, m.Resource)
	e.unknown(m)
}

// decoder reads a version-2 payload. Strings are sliced from s, a single
// string copy of the payload, rather than allocated one by one: the
// decoded State's strings then keep that one copy alive (at most the size of
// the file) while any of them is in use.
type decoder struct {
	b []byte
	s string
}

func unmarshalState(payload []byte) (*State, error) {
	d := decoder{b: payload, s: string(payload)}
	st := new(State)
	if err := d.state(st, 0, len(payload)); err != nil {
		return nil, err
	}
	return st, nil
}

// field is one field of a message: tag and value.
type field struct {
	num    protowire.Number
	typ    protowire.Type
	v      uint64 // the value of a varint
	lo, hi int    // where the value of a length-delimited field is in d.b
	value  int    // where the value (of any type) starts in d.b
}

// next reads the field at d.b[i:end] and returns it and where the next one
// starts.
func (d *decoder) next(i, end int) (field, int, error) {
	num, typ, n := protowire.ConsumeTag(d.b[i:end])
	if n < 0 {
		return field{}, 0, fmt.Errorf("at payload byte %d: bad field tag: %w", i, protowire.ParseError(n))
	}
	if num > protowire.MaxValidNumber {
		return field{}, 0, fmt.Errorf("at payload byte %d: field number %d is out of range", i, num)
	}
	j := i + n
	f := field{num: num, typ: typ, value: j}
	switch typ {
	case protowire.VarintType:
		f.v, n = protowire.ConsumeVarint(d.b[j:end])
	case protowire.BytesType:
		var l uint64
		l, n = protowire.ConsumeVarint(d.b[j:end])
		if n >= 0 {
			if l > uint64(end-j-n) {
				return field{}, 0, fmt.Errorf("at payload byte %d: field %d runs past the end of its message", i, num)
			}
			f.lo, f.hi = j+n, j+n+int(l)
			n += int(l)
		}
	default:
		n = protowire.ConsumeFieldValue(num, typ, d.b[j:end])
	}
	if n < 0 {
		return field{}, 0, fmt.Errorf("at payload byte %d: field %d: %w", i, num, protowire.ParseError(n))
	}
	return f, j + n, nil
}

func (d *decoder) str(f field) (string, error) {
	s := d.s[f.lo:f.hi]
	if !utf8.ValidString(s) {
		return "", fmt.Errorf("at payload byte %d: field %d is a string that is not valid UTF-8", f.lo, f.num)
	}
	return s, nil
}

// strTo decodes a string into *dst, or returns false if f is not a string.
func (d *decoder) strTo(f field, dst *string) (bool, error) {
	if f.typ != protowire.BytesType {
		return false, nil
	}
	s, err := d.str(f)
	*dst = s
	return true, err
}

func (d *decoder) strAppend(f field, dst *[]string) (bool, error) {
	if f.typ != protowire.BytesType {
		return false, nil
	}
	s, err := d.str(f)
	*dst = append(*dst, s)
	return true, err
}

func varintTo[T ~uint64 | ~int64](f field, dst *T) bool {
	if f.typ != protowire.VarintType {
		return false
	}
	*dst = T(f.v)
	return true
}

func boolTo(f field, dst *bool) bool {
	if f.typ != protowire.VarintType {
		return false
	}
	*dst = f.v != 0
	return true
}

// msgTo decodes a message field into *dst (merging into a message already
// there, as protobuf does), or returns false if f is not length-delimited.
func msgTo[M any](d *decoder, f field, dst **M, decode func(*decoder, *M, int, int) error) (bool, error) {
	if f.typ != protowire.BytesType {
		return false, nil
	}
	if *dst == nil {
		*dst = new(M)
	}
	return true, decode(d, *dst, f.lo, f.hi)
}

func msgAppend[M any](d *decoder, f field, dst *[]*M, decode func(*decoder, *M, int, int) error) (bool, error) {
	if f.typ != protowire.BytesType {
		return false, nil
	}
	m := new(M)
	*dst = append(*dst, m)
	return true, decode(d, m, f.lo, f.hi)
}

// entryTo decodes a map<string, string> entry into *dst.
func (d *decoder) entryTo(f field, dst *map[string]string) (bool, error) {
	if f.typ != protowire.BytesType {
		return false, nil
	}
	var k, v string
	for i := f.lo; i < f.hi; {
		g, j, err := d.next(i, f.hi)
		if err != nil {
			return true, err
		}
		switch g.num {
		case 1:
			_, err = d.strTo(g, &k)
		case 2:
			_, err = d.strTo(g, &v)
		}
		if err != nil {
			return true, err
		}
		i = j
	}
	if *dst == nil {
		*dst = make(map[string]string)
	}
	(*dst)[k] = v
	return true, nil
}

// fields calls one for each field of the message at d.b[i:end], and keeps
// the fields one does not know (returns false for) as m's unknown fields.
func (d *decoder) fields(m protoreflect.ProtoMessage, i, end int, one func(field) (bool, error)) error {
	var unk []byte
	for i < end {
		f, j, err := d.next(i, end)
		if err != nil {
			return err
		}
		known, err := one(f)
		if err != nil {
			return err
		}
		if !known {
			// As protobuf-go does: the tag re-encoded, then the value.
			unk = protowire.AppendTag(unk, f.num, f.typ)
			unk = append(unk, d.b[f.value:j]...)
		}
		i = j
	}
	if len(unk) > 0 {
		r := m.ProtoReflect()
		r.SetUnknown(append(slices.Clip(r.GetUnknown()), unk...))
	}
	return nil
}

func (d *decoder) state(m *State, i, end int) error {
	return d.fields(m, i, end, func(f field) (bool, error) {
		switch f.num {
		case 1:
			return varintTo(f, &m.Generation), nil
		case 2:
			return varintTo(f, &m.WrittenUnixNano), nil
		case 3:
			return msgAppend(d, f, &m.Allocations, (*decoder).allocation)
		case 4:
			return msgAppend(d, f, &m.Resources, (*decoder).resource)
		case 5:
			return msgAppend(d, f, &m.Plugins, (*decoder).plugin)
		}
		return false, nil
	})
}

func (d *decoder) allocation(m *Allocation, i, end int) error {
	return d.fields(m, i, end, func(f field) (bool, error) {
		switch f.num {
		case 1:
			return d.strTo(f, &m.Workload)
		case 2:
			return d.strTo(f, &m.Namespace)
		case 3:
			return d.strTo(f, &m.Pod)
		case 4:
			return d.strTo(f, &m.PodUid)
		case 5:
			return d.strTo(f, &m.Container)
		case 6:
			return d.strTo(f, &m.Resource)
		case 7:
			return d.strAppend(f, &m.DeviceIds)
		case 8:
			return msgTo(d, f, &m.Response, (*decoder).response)
		case 9:
			return varintTo(f, &m.AllocatedUnixNano), nil
		}
		return false, nil
	})
}

func (d *decoder) response(m *ContainerResponse, i, end int) error {
	return d.fields(m, i, end, func(f field) (bool, error) {
		switch f.num {
		case 1:
			return d.entryTo(f, &m.Envs)
		case 2:
			return msgAppend(d, f, &m.Mounts, (*decoder).mount)
		case 3:
			return msgAppend(d, f, &m.Devices, (*decoder).deviceSpec)
		case 4:
			return d.entryTo(f, &m.Annotations)
		case 5:
			return d.strAppend(f, &m.CdiDevices)
		}
		return false, nil
	})
}

func (d *decoder) mount(m *Mount, i, end int) error {
	return d.fields(m, i, end, func(f field) (bool, error) {
		switch f.num {
		case 1:
			return d.strTo(f, &m.ContainerPath)
		case 2:
			return d.strTo(f, &m.HostPath)
		case 3:
			return boolTo(f, &m.ReadOnly), nil
		}
		return false, nil
	})
}

func (d *decoder) deviceSpec(m *DeviceSpec, i, end int) error {
	return d.fields(m, i, end, func(f field) (bool, error) {
		switch f.num {
		case 1:
			return d.strTo(f, &m.ContainerPath)
		case 2:
			return d.strTo(f, &m.HostPath)
		case 3:
			return d.strTo(f, &m.Permissions)
		}
		return false, nil
	})
}

func (d *decoder) resource(m *Resource, i, end int) error {
	return d.fields(m, i, end, func(f field) (bool, error) {
		switch f.num {
		case 1:
			return d.strTo(f, &m.Name)
		case 2:
			return d.strTo(f, &m.Provider)
		case 3:
			return msgAppend(d, f, &m.Devices, (*decoder).device)
		case 4:
			return varintTo(f, &m.LastSeenUnixNano), nil
		case 5:
			return boolTo(f, &m.PreStartRequired), nil
		case 6:
			return boolTo(f, &m.PreferredAllocation), nil
		}
		return false, nil
	})
}

func (d *decoder) device(m *Device, i, end int) error {
	return d.fields(m, i, end, func(f field) (bool, error) {
		switch f.num {
		case 1:
			return d.strTo(f, &m.Id)
		case 2:
			return boolTo(f, &m.Healthy), nil
		case 3:
			switch f.typ {
			case protowire.VarintType: // unpacked
				m.NumaNodes = append(m.NumaNodes, int64(f.v))
				return true, nil
			case protowire.BytesType: // packed
				for k := f.lo; k < f.hi; {
					v, n := protowire.ConsumeVarint(d.b[k:f.hi])
					if n < 0 {
						return true, fmt.Errorf("at payload byte %d: packed field 3: %w", k, protowire.ParseError(n))
					}
					m.NumaNodes = append(m.NumaNodes, int64(v))
					k += n
				}
				return true, nil
			}
		case 4:
			return d.entryTo(f, &m.Attributes)
		}
		return false, nil
	})
}

func (d *decoder) plugin(m *Plugin, i, end int) error {
	return d.fields(m, i, end, func(f field) (bool, error) {
		switch f.num {
		case 1:
			return d.strTo(f, &m.Name)
		case 2:
			return d.strTo(f, &m.Type)
		case 3:
			return d.strTo(f, &m.Endpoint)
		case 4:
			return d.strTo(f, &m.SocketPath)
		case 5:
			return d.strTo(f, &m.Version)
		case 6:
			return d.strTo(f, &m.Resource)
		}
		return false, nil
	})
}
