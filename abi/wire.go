package abi

import (
	"errors"
	"unicode/utf8"
	"unsafe"
)

// This file is a minimal protobuf wire-format codec: just what the messages in
// wasmlet_abi.proto need, with no reflection, so that it costs a guest a few
// kilobytes instead of the megabytes of the protobuf runtime.

const (
	wireVarint     = 0
	wireFixed64    = 1
	wireBytes      = 2
	wireStartGroup = 3
	wireEndGroup   = 4
	wireFixed32    = 5
)

// maxGroupDepth is how deeply groups (the deprecated wire types 3 and 4,
// which only unknown fields can hold here) may nest: protobuf-go's limit.
const maxGroupDepth = 10000

var (
	errTruncated = errors.New("truncated message")
	errOverflow  = errors.New("varint overflows 64 bits")
	errWireType  = errors.New("unsupported wire type")
	errFieldNum  = errors.New("invalid field number")
	errEndGroup  = errors.New("end of group without its start")
	errGroupEnd  = errors.New("group ended with another field number")
	errDepth     = errors.New("groups nested too deeply")
	errUTF8      = errors.New("string is not valid UTF-8")
)

// ---- encoding ----------------------------------------------------------------

func appendVarint(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

func appendTag(b []byte, num int, wt int) []byte {
	return appendVarint(b, uint64(num)<<3|uint64(wt))
}

// appendString writes a length-delimited field; empty strings are omitted, as
// proto3 does for scalar fields.
func appendString(b []byte, num int, s string) []byte {
	if s == "" {
		return b
	}
	b = appendTag(b, num, wireBytes)
	b = appendVarint(b, uint64(len(s)))
	return append(b, s...)
}

// appendStringAlways writes a length-delimited field even when empty (repeated
// fields and map entries keep their empty elements).
func appendStringAlways(b []byte, num int, s string) []byte {
	b = appendTag(b, num, wireBytes)
	b = appendVarint(b, uint64(len(s)))
	return append(b, s...)
}

// appendBytes writes a bytes field; empty ones are omitted, as proto3 does.
func appendBytes(b []byte, num int, v []byte) []byte {
	if len(v) == 0 {
		return b
	}
	b = appendTag(b, num, wireBytes)
	b = appendVarint(b, uint64(len(v)))
	return append(b, v...)
}

func appendStrings(b []byte, num int, ss []string) []byte {
	for _, s := range ss {
		b = appendStringAlways(b, num, s)
	}
	return b
}

func appendUint(b []byte, num int, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = appendTag(b, num, wireVarint)
	return appendVarint(b, v)
}

// appendInt writes an int32/int64/enum field: negative values are
// sign-extended to 64 bits, as protobuf does.
func appendInt(b []byte, num int, v int64) []byte {
	return appendUint(b, num, uint64(v))
}

func appendBool(b []byte, num int, v bool) []byte {
	if !v {
		return b
	}
	return append(appendTag(b, num, wireVarint), 1)
}

// appendPackedInts writes a packed repeated int64 field.
func appendPackedInts(b []byte, num int, vs []int64) []byte {
	if len(vs) == 0 {
		return b
	}
	n := 0
	for _, v := range vs {
		n += varintLen(uint64(v))
	}
	b = appendTag(b, num, wireBytes)
	b = appendVarint(b, uint64(n))
	for _, v := range vs {
		b = appendVarint(b, uint64(v))
	}
	return b
}

func varintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// appendMessage writes a nested message. It reserves one byte for the length
// and shifts the body when the length needs more, which keeps the common case
// (bodies under 128 bytes) copy-free.
func appendMessage(b []byte, num int, body func([]byte) []byte) []byte {
	b = appendTag(b, num, wireBytes)
	at := len(b)
	b = append(b, 0)
	b = body(b)
	n := len(b) - at - 1
	if n < 0x80 {
		b[at] = byte(n)
		return b
	}
	extra := varintLen(uint64(n)) - 1
	for i := 0; i < extra; i++ {
		b = append(b, 0)
	}
	copy(b[at+1+extra:], b[at+1:at+1+n])
	appendVarint(b[:at], uint64(n))
	return b
}

// appendStringMap writes a map<string,string> field with its keys sorted, so
// that equal maps encode to equal bytes.
func appendStringMap(b []byte, num int, m map[string]string) []byte {
	for _, k := range sortedKeys(m) {
		v := m[k]
		b = appendMessage(b, num, func(b []byte) []byte {
			b = appendStringAlways(b, 1, k)
			return appendStringAlways(b, 2, v)
		})
	}
	return b
}

// sortedKeys returns the keys of m, sorted, so that equal maps encode to
// equal bytes.
func sortedKeys[V any](m map[string]V) []string {
	if len(m) == 0 {
		return nil
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sortStrings(keys)
	return keys
}

// sortStrings is an insertion sort: maps here hold a handful of keys, and it
// keeps package sort out of guests.
func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// ---- decoding ----------------------------------------------------------------

// decoder walks the fields of one message.
type decoder struct {
	b   []byte
	num int // current field number
	wt  int // current wire type
	val uint64
	buf []byte // current length-delimited payload
}

func readVarint(b []byte) (uint64, int, error) {
	var v uint64
	for i := 0; i < len(b); i++ {
		if i == 10 {
			return 0, 0, errOverflow
		}
		c := b[i]
		if i == 9 && c > 1 {
			return 0, 0, errOverflow
		}
		v |= uint64(c&0x7f) << (7 * uint(i))
		if c < 0x80 {
			return v, i + 1, nil
		}
	}
	return 0, 0, errTruncated
}

// next advances to the next field. It returns false at the end of the
// message or on error.
func (d *decoder) next() (bool, error) { return d.nextIn(maxGroupDepth) }

// nextIn is next within groups that may nest depth more levels. At an end
// of group it returns errEndGroup, with d.num its field number.
func (d *decoder) nextIn(depth int) (bool, error) {
	if len(d.b) == 0 {
		return false, nil
	}
	tag, n, err := readVarint(d.b)
	if err != nil {
		return false, err
	}
	d.b = d.b[n:]
	num := tag >> 3
	if num == 0 || num > 1<<29-1 {
		return false, errFieldNum
	}
	d.num, d.wt = int(num), int(tag&7)
	switch d.wt {
	case wireVarint:
		d.val, n, err = readVarint(d.b)
		if err != nil {
			return false, err
		}
		d.b = d.b[n:]
	case wireFixed64:
		if len(d.b) < 8 {
			return false, errTruncated
		}
		d.b = d.b[8:]
	case wireFixed32:
		if len(d.b) < 4 {
			return false, errTruncated
		}
		d.b = d.b[4:]
	case wireBytes:
		l, n, err := readVarint(d.b)
		if err != nil {
			return false, err
		}
		d.b = d.b[n:]
		if l > uint64(len(d.b)) {
			return false, errTruncated
		}
		d.buf = d.b[:l]
		d.b = d.b[l:]
	case wireStartGroup:
		// Skipped whole, as protobuf-go skips it: every field up to the
		// end of group of the same number.
		if depth < 0 {
			return false, errDepth
		}
		g := decoder{b: d.b}
		for {
			ok, err := g.nextIn(depth - 1)
			if err == errEndGroup { // g read an end of group itself
				if g.num != d.num {
					return false, errGroupEnd
				}
				break
			}
			if err != nil {
				return false, err
			}
			if !ok {
				return false, errTruncated
			}
		}
		d.b = g.b
	case wireEndGroup:
		return false, errEndGroup
	default:
		return false, errWireType
	}
	return true, nil
}

// str returns a string field. It aliases the message's bytes, which are
// always a private copy (see own): a Go guest pays for one allocation per
// message instead of one per string, and allocation is what costs most in a
// Go guest. As in proto3, a string must be valid UTF-8: what a module says
// ends up in checkpoints, gRPC replies and logs, which all require it.
func (d *decoder) str() (string, error) {
	if len(d.buf) == 0 {
		return "", nil
	}
	if !utf8.Valid(d.buf) {
		return "", errUTF8
	}
	return unsafe.String(&d.buf[0], len(d.buf)), nil
}

// own returns a private copy of a message's bytes for decoding into. Strings
// decoded from it share it, so it must never be modified.
func own(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return append(make([]byte, 0, len(b)), b...)
}

// count returns how many times field num occurs in message b, so that a
// repeated field is allocated once. Malformed input counts as far as it goes;
// decoding reports the error.
func count(b []byte, num int) int {
	d := decoder{b: b}
	n := 0
	for {
		ok, err := d.next()
		if !ok || err != nil {
			return n
		}
		if d.num == num {
			n++
		}
	}
}

func (d *decoder) uint() (uint64, error) { return d.val, nil }

func (d *decoder) bool() (bool, error) {
	v, err := d.uint()
	return v != 0, err
}

func (d *decoder) int32() (int32, error) {
	v, err := d.uint()
	return int32(v), err
}

func (d *decoder) bytes() ([]byte, error) { return d.buf, nil }

// ints reads a repeated int64 field element, packed or not.
func (d *decoder) ints(dst []int64) ([]int64, error) {
	if d.wt == wireVarint {
		return append(dst, int64(d.val)), nil
	}
	b := d.buf
	for len(b) > 0 {
		v, n, err := readVarint(b)
		if err != nil {
			return dst, err
		}
		dst = append(dst, int64(v))
		b = b[n:]
	}
	return dst, nil
}

// mapEntry reads one map<string,string> entry into m, creating m if needed.
func (d *decoder) mapEntry(m map[string]string) (map[string]string, error) {
	return entry(d, m, func(v *string, e *decoder) (err error) {
		*v, err = e.str()
		return err
	})
}

// entry reads one entry of a map<string,V> field into m, creating m if
// needed: its key, and its value from every value field in the entry, which
// value decodes over v (the last string wins; messages merge), as
// protobuf-go decodes map entries. An absent key or value is the empty one.
func entry[V any](d *decoder, m map[string]V, value func(v *V, e *decoder) error) (map[string]V, error) {
	var k string
	var v V
	err := decode("map entry", "bb", d.buf, func(e *decoder) (err error) {
		if e.num == 1 {
			k, err = e.str()
		} else {
			err = value(&v, e)
		}
		return err
	})
	if err != nil {
		return m, err
	}
	if m == nil {
		m = make(map[string]V)
	}
	m[k] = v
	return m, nil
}

// fieldError says which field of which message failed to decode.
type fieldError struct {
	msg string
	num int
	err error
}

func (e *fieldError) Error() string {
	return "decode " + e.msg + " field " + itoa(int64(e.num)) + ": " + e.err.Error()
}

func (e *fieldError) Unwrap() error { return e.err }

// decode runs field over each field of b that the message knows, wrapping
// errors with the message name and field number. types gives the wire type
// of each field number from 1: 'v' a varint, 'b' length-delimited, 'i' a
// repeated integer (a varint, or length-delimited when packed), '-' no such
// field. A field of another number or wire type is unknown and skipped, as
// protobuf-go does, so field only sees what it expects.
func decode(msg, types string, b []byte, field func(d *decoder) error) error {
	d := decoder{b: b}
	for {
		ok, err := d.next()
		if err != nil {
			return &fieldError{msg, d.num, err}
		}
		if !ok {
			return nil
		}
		if d.num > len(types) {
			continue
		}
		switch t := types[d.num-1]; {
		case t == 'v' && d.wt == wireVarint, t == 'b' && d.wt == wireBytes,
			t == 'i' && (d.wt == wireVarint || d.wt == wireBytes):
			if err := field(&d); err != nil {
				return &fieldError{msg, d.num, err}
			}
		}
	}
}

// itoa avoids strconv in guests.
func itoa(v int64) string {
	if v == 0 {
		return "0"
	}
	var buf [20]byte
	i := len(buf)
	neg := v < 0
	u := uint64(v)
	if neg {
		u = uint64(-v)
	}
	for u > 0 {
		i--
		buf[i] = byte('0' + u%10)
		u /= 10
	}
	if neg {
		i--
		buf[i] = '-'
	}
	return string(buf[i:])
}
