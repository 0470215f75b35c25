package interrupt

import (
	"errors"
	"fmt"
)

var errShort = errors.New("unexpected end of data")

// reader decodes the WebAssembly binary format. The first error sticks: every
// later read returns zero, so callers check err once after a run of reads.
type reader struct {
	b   []byte
	err error
}

func (r *reader) done() bool { return len(r.b) == 0 || r.err != nil }

func (r *reader) fail(err error) {
	if r.err == nil {
		r.err = err
	}
	r.b = nil
}

func (r *reader) byte() byte {
	if len(r.b) == 0 {
		r.fail(errShort)
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *reader) bytes(n uint32) []byte {
	if uint64(n) > uint64(len(r.b)) {
		r.fail(errShort)
		return nil
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

func (r *reader) rest() []byte {
	out := r.b
	r.b = nil
	return out
}

// leb reads an unsigned or signed LEB128 value of at most bits bits, and
// returns it unsigned (callers here only skip or count).
func (r *reader) leb(bits uint) uint64 {
	var v uint64
	var shift uint
	for i := uint(0); ; i++ {
		if i*7 >= bits+7 {
			r.fail(errors.New("LEB128 value too long"))
			return 0
		}
		c := r.byte()
		if r.err != nil {
			return 0
		}
		v |= uint64(c&0x7f) << shift
		shift += 7
		if c < 0x80 {
			return v
		}
	}
}

func (r *reader) u32() uint32 { return uint32(r.leb(32)) }

func (r *reader) limits() {
	flags := r.byte()
	r.leb(64)
	if flags&1 != 0 {
		r.leb(64)
	}
}

// valtype reads a value type, including reference types with a heap type.
func (r *reader) valtype() {
	switch t := r.byte(); t {
	case 0x63, 0x64: // (ref null ht), (ref ht)
		r.leb(33)
	default:
		_ = t
	}
}

func appendU32(b []byte, v uint32) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

func appendS32(b []byte, v int32) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

// blocktype skips a block type: empty, a value type, or a type index (s33).
func (r *reader) blocktype() {
	if len(r.b) == 0 {
		r.fail(errShort)
		return
	}
	switch c := r.b[0]; {
	case c == 0x40 || (c >= 0x6f && c <= 0x7f) || c == 0x70:
		r.b = r.b[1:]
	case c == 0x63 || c == 0x64:
		r.valtype()
	default:
		r.leb(33)
	}
}

func (r *reader) memarg() {
	align := r.u32()
	if align&0x40 != 0 { // multi-memory: a memory index follows
		r.u32()
	}
	r.leb(64)
}

// skipImmediates consumes the immediates of the instruction with opcode op.
func skipImmediates(r *reader, op byte) error {
	switch {
	case op == 0x02 || op == 0x03 || op == 0x04 || op == 0x06: // block loop if try
		r.blocktype()
	case op == 0x07 || op == 0x08 || op == 0x09 || op == 0x18: // catch throw rethrow delegate
		r.u32()
	case op == 0x0c || op == 0x0d || op == 0xd4 || op == 0xd6: // br br_if br_on_null br_on_non_null
		r.u32()
	case op == 0x0e: // br_table
		n := r.u32()
		for i := uint32(0); i <= n && r.err == nil; i++ {
			r.u32()
		}
	case op == 0x10 || op == 0x12 || op == 0x14 || op == 0x15 || op == 0xd2: // call return_call call_ref return_call_ref ref.func
		r.u32()
	case op == 0x11 || op == 0x13: // call_indirect return_call_indirect
		r.u32()
		r.u32()
	case op == 0x1c: // select t*
		n := r.u32()
		for i := uint32(0); i < n && r.err == nil; i++ {
			r.valtype()
		}
	case op == 0x1f: // try_table
		r.blocktype()
		n := r.u32()
		for i := uint32(0); i < n && r.err == nil; i++ {
			switch kind := r.byte(); kind {
			case 0x00, 0x01: // catch, catch_ref: tag, label
				r.u32()
				r.u32()
			case 0x02, 0x03: // catch_all, catch_all_ref: label
				r.u32()
			default:
				return fmt.Errorf("unknown catch kind %d", kind)
			}
		}
	case op >= 0x20 && op <= 0x26: // local.* global.* table.get table.set
		r.u32()
	case op >= 0x28 && op <= 0x3e: // loads and stores
		r.memarg()
	case op == 0x3f || op == 0x40: // memory.size memory.grow
		r.u32()
	case op == 0x41:
		r.leb(32)
	case op == 0x42:
		r.leb(64)
	case op == 0x43:
		r.bytes(4)
	case op == 0x44:
		r.bytes(8)
	case op == 0xd0: // ref.null heaptype
		r.leb(33)
	case op == 0xfc:
		return skipFC(r)
	case op == 0xfd:
		return skipSIMD(r)
	case op == 0xfe:
		return skipAtomic(r)
	case op == 0xfb:
		return errors.New("garbage-collection instructions are not supported")
	case op <= 0x01 || op == 0x05 || op == 0x0a || op == 0x0b || op == 0x0f || op == 0x19 ||
		op == 0x1a || op == 0x1b || (op >= 0x45 && op <= 0xc4) || op == 0xd1 || op == 0xd3 || op == 0xd5:
		// no immediates
	default:
		return errors.New("unknown opcode")
	}
	return nil
}

func skipFC(r *reader) error {
	switch sub := r.u32(); {
	case sub <= 7: // saturating truncations
	case sub == 8: // memory.init data mem
		r.u32()
		r.u32()
	case sub == 9 || sub == 13: // data.drop elem.drop
		r.u32()
	case sub == 10 || sub == 12 || sub == 14: // memory.copy table.init table.copy
		r.u32()
		r.u32()
	case sub == 11 || (sub >= 15 && sub <= 17): // memory.fill table.grow table.size table.fill
		r.u32()
	default:
		return fmt.Errorf("unknown 0xfc instruction %d", sub)
	}
	return nil
}

func skipSIMD(r *reader) error {
	switch sub := r.u32(); {
	case sub <= 11 || sub == 92 || sub == 93: // loads, stores, load zero
		r.memarg()
	case sub == 12 || sub == 13: // v128.const, i8x16.shuffle
		r.bytes(16)
	case sub >= 21 && sub <= 34: // extract/replace lane
		r.byte()
	case sub >= 84 && sub <= 91: // load/store lane
		r.memarg()
		r.byte()
	case sub <= 0x113:
		// every other SIMD instruction has no immediates
	default:
		return fmt.Errorf("unknown SIMD instruction %d", sub)
	}
	return nil
}

func skipAtomic(r *reader) error {
	switch sub := r.u32(); {
	case sub == 3: // atomic.fence
		r.byte()
	case sub <= 0x4e:
		r.memarg()
	default:
		return fmt.Errorf("unknown atomic instruction %d", sub)
	}
	return nil
}
