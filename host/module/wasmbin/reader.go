package wasmbin

import (
	"errors"
	"fmt"
	"unicode/utf8"
)

// ErrTruncated is the error of a read past the end of the data.
var ErrTruncated = errors.New("unexpected end of data")

// Reader reads the binary format from a byte slice. Every read is bounds
// checked. The first error sticks: later reads return zero values and
// consume nothing, so a caller checks Err once after a run of reads (and
// loops stop on Done).
type Reader struct {
	b    []byte
	off  int
	base int // offset of b in the file, for messages
	err  error
}

// NewReader reads b, which starts at offset base of the file (for messages).
func NewReader(b []byte, base int) *Reader { return &Reader{b: b, base: base} }

// Err is the first error met, with the file offset where it happened.
func (r *Reader) Err() error { return r.err }

// Done reports whether every byte was read or an error was met.
func (r *Reader) Done() bool { return r.off >= len(r.b) || r.err != nil }

// Len is the number of bytes left to read.
func (r *Reader) Len() int {
	if r.err != nil {
		return 0
	}
	return len(r.b) - r.off
}

// Offset is the position of the next read in the reader's slice.
func (r *Reader) Offset() int { return r.off }

// FileOffset is the position of the next read in the file.
func (r *Reader) FileOffset() int { return r.base + r.off }

// Failf records an error at the current offset, unless one is recorded.
func (r *Reader) Failf(format string, args ...any) {
	r.fail(fmt.Errorf(format, args...))
}

// failAt records an error at offset off of the reader's slice.
func (r *Reader) failAt(off int, format string, args ...any) {
	if r.err == nil {
		r.off = off
		r.Failf(format, args...)
	}
}

func (r *Reader) fail(err error) {
	if r.err == nil {
		r.err = fmt.Errorf("at offset %d: %w", r.base+r.off, err)
	}
	r.off = len(r.b)
}

// setErr records err, already positioned (from a sub-reader).
func (r *Reader) setErr(err error) {
	if r.err == nil {
		r.err = err
	}
	r.off = len(r.b)
}

// Sub returns a reader of the next n bytes, and skips them.
func (r *Reader) Sub(n uint32) *Reader {
	at := r.FileOffset()
	return NewReader(r.Bytes(n), at)
}

// Byte reads one byte.
func (r *Reader) Byte() byte {
	if r.err != nil || r.off >= len(r.b) {
		r.fail(ErrTruncated)
		return 0
	}
	c := r.b[r.off]
	r.off++
	return c
}

// Bytes reads n bytes, without copying them.
func (r *Reader) Bytes(n uint32) []byte {
	if r.err != nil {
		return nil
	}
	if uint64(n) > uint64(len(r.b)-r.off) {
		r.fail(fmt.Errorf("%w: %d bytes wanted, %d left", ErrTruncated, n, len(r.b)-r.off))
		return nil
	}
	out := r.b[r.off : r.off+int(n)]
	r.off += int(n)
	return out
}

// uleb reads an unsigned LEB128 integer of at most bits bits.
func (r *Reader) uleb(bits uint) uint64 {
	var v uint64
	for shift := uint(0); ; shift += 7 {
		c := r.Byte()
		if r.err != nil {
			return 0
		}
		if shift >= bits || shift+7 > bits && uint(c&0x7f)>>(bits-shift) != 0 {
			r.failAt(r.off-1, "integer too large for %d bits", bits)
			return 0
		}
		v |= uint64(c&0x7f) << shift
		if c&0x80 == 0 {
			return v
		}
	}
}

// sleb skips a signed LEB128 integer of at most bits bits (the bits are not
// checked beyond the encoding's length: wazero validates constants).
func (r *Reader) sleb(bits uint) {
	for n := uint(0); ; n += 7 {
		c := r.Byte()
		if r.err != nil {
			return
		}
		if n >= bits {
			r.failAt(r.off-1, "integer too large for %d bits", bits)
			return
		}
		if c&0x80 == 0 {
			return
		}
	}
}

// U32 reads an unsigned 32-bit LEB128 integer.
func (r *Reader) U32() uint32 { return uint32(r.uleb(32)) }

// U64 reads an unsigned 64-bit LEB128 integer.
func (r *Reader) U64() uint64 { return r.uleb(64) }

// Count reads a vector length and checks that the vector can fit in what
// remains, each of its elements taking at least min bytes. A count that
// passes bounds every allocation and loop sized by it.
func (r *Reader) Count(min int) int {
	at := r.off
	n := r.U32()
	if r.err != nil {
		return 0
	}
	if left := r.Len(); uint64(n)*uint64(min) > uint64(left) {
		r.failAt(at, "a vector of %d elements cannot fit in the %d bytes left", n, left)
		return 0
	}
	return int(n)
}

// Name reads a UTF-8 name.
func (r *Reader) Name() string {
	at := r.off
	b := r.Bytes(r.U32())
	if r.err != nil {
		return ""
	}
	if !utf8.Valid(b) {
		r.failAt(at, "name %q is not UTF-8", b)
		return ""
	}
	return string(b)
}

// ValType reads a value type.
func (r *Reader) ValType() ValType {
	t := ValType(r.Byte())
	if r.err == nil && !t.valid() {
		if t == 0x63 || t == 0x64 {
			r.failAt(r.off-1, "typed function references are not supported")
		} else {
			r.failAt(r.off-1, "value type 0x%02x is not one this reader knows", byte(t))
		}
		return 0
	}
	return t
}

// Limits reads the limits of a memory or table type.
func (r *Reader) Limits() Limits {
	var l Limits
	flags := r.Byte()
	if r.err != nil {
		return l
	}
	if flags > 7 {
		r.failAt(r.off-1, "limits flags 0x%02x", flags)
		return l
	}
	bits := uint(32)
	if flags&4 != 0 {
		bits, l.Is64 = 64, true
	}
	l.Min = r.uleb(bits)
	if flags&1 != 0 {
		l.Max, l.HasMax = r.uleb(bits), true
	}
	l.Shared = flags&2 != 0
	return l
}

// AppendU32 appends v as an unsigned LEB128 integer.
func AppendU32(b []byte, v uint32) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

// AppendS32 appends v as a signed LEB128 integer.
func AppendS32(b []byte, v int32) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}
