package wasmbin

// Opcodes the instrumenter and the parser look for.
const (
	OpUnreachable        = 0x00
	OpBlock              = 0x02
	OpLoop               = 0x03
	OpIf                 = 0x04
	OpTry                = 0x06
	OpEnd                = 0x0b
	OpBr                 = 0x0c
	OpReturn             = 0x0f
	OpCall               = 0x10
	OpCallIndirect       = 0x11
	OpReturnCall         = 0x12
	OpReturnCallIndirect = 0x13
	OpCallRef            = 0x14
	OpReturnCallRef      = 0x15
	OpDelegate           = 0x18
	OpDrop               = 0x1a
	OpTryTable           = 0x1f
	OpGlobalGet          = 0x23
	OpGlobalSet          = 0x24
	OpI32Const           = 0x41
	OpI32Eqz             = 0x45
	OpI32GtU             = 0x4b
	OpI32Add             = 0x6a
	OpI32Sub             = 0x6b
	OpMemoryGrow         = 0x40
	BlockVoid            = 0x40

	opEnd = OpEnd
)

// Instr reads one instruction: its opcode, and for the prefixed ones (0xfc,
// 0xfd, 0xfe) the sub-opcode, and skips its immediates. It records an error
// for an opcode it does not know, including the garbage-collection ones.
func (r *Reader) Instr() (op byte, sub uint32) {
	op = r.Byte()
	if r.err != nil {
		return 0, 0
	}
	switch {
	case op == OpBlock || op == OpLoop || op == OpIf || op == OpTry:
		r.blockType()
	case op == 0x07 || op == 0x08 || op == 0x09 || op == OpDelegate: // catch throw rethrow delegate
		r.U32()
	case op == OpBr || op == 0x0d || op == 0xd4 || op == 0xd6: // br br_if br_on_null br_on_non_null
		r.U32()
	case op == 0x0e: // br_table
		n := r.Count(1)
		for i := 0; i <= n && r.err == nil; i++ {
			r.U32()
		}
	case op == OpCall || op == OpReturnCall || op == OpCallRef || op == OpReturnCallRef || op == 0xd2: // ... ref.func
		r.U32()
	case op == OpCallIndirect || op == OpReturnCallIndirect:
		r.U32()
		r.U32()
	case op == 0x1c: // select t*
		n := r.Count(1)
		for i := 0; i < n && r.err == nil; i++ {
			r.ValType()
		}
	case op == OpTryTable:
		r.blockType()
		n := r.Count(2)
		for i := 0; i < n && r.err == nil; i++ {
			switch k := r.Byte(); k {
			case 0x00, 0x01: // catch, catch_ref: tag, label
				r.U32()
				r.U32()
			case 0x02, 0x03: // catch_all, catch_all_ref: label
				r.U32()
			default:
				r.Failf("unknown catch kind %d", k)
			}
		}
	case op >= 0x20 && op <= 0x26: // local.* global.* table.get table.set
		r.U32()
	case op >= 0x28 && op <= 0x3e: // loads and stores
		r.memarg()
	case op == 0x3f || op == OpMemoryGrow: // memory.size memory.grow
		r.U32()
	case op == OpI32Const:
		r.sleb(32)
	case op == 0x42: // i64.const
		r.sleb(64)
	case op == 0x43: // f32.const
		r.Bytes(4)
	case op == 0x44: // f64.const
		r.Bytes(8)
	case op == 0xd0: // ref.null heaptype
		r.sleb(33)
	case op == 0xfc:
		sub = r.U32()
		r.miscImmediates(sub)
	case op == 0xfd:
		sub = r.U32()
		r.simdImmediates(sub)
	case op == 0xfe:
		sub = r.U32()
		r.atomicImmediates(sub)
	case op <= 0x01 || op == 0x05 || op == 0x0a || op == OpEnd || op == OpReturn || op == 0x19 ||
		op == OpDrop || op == 0x1b || (op >= 0x45 && op <= 0xc4) || op == 0xd1 || op == 0xd3 || op == 0xd5:
		// no immediates
	default:
		r.failAt(r.off-1, "unknown opcode 0x%02x", op)
	}
	return op, sub
}

// blockType skips a block type: empty, a value type, or a type index (s33).
func (r *Reader) blockType() {
	if r.Len() == 0 {
		r.fail(ErrTruncated)
		return
	}
	switch c := r.b[r.off]; {
	case c == 0x63 || c == 0x64:
		r.ValType() // records the error
	case c >= 0x40 && c < 0x80: // one byte, negative as an s33: empty or a value type
		r.off++
	default:
		r.sleb(33)
	}
}

func (r *Reader) memarg() {
	if align := r.U32(); align&0x40 != 0 { // multi-memory: a memory index follows
		r.U32()
	}
	r.U64()
}

func (r *Reader) miscImmediates(sub uint32) {
	switch {
	case sub <= 7: // saturating truncations
	case sub == 8 || sub == 10 || sub == 12 || sub == 14: // memory.init memory.copy table.init table.copy
		r.U32()
		r.U32()
	case sub == 9 || sub == 11 || sub == 13 || (sub >= 15 && sub <= 17): // data.drop memory.fill elem.drop table.*
		r.U32()
	default:
		r.Failf("unknown instruction 0xfc %d", sub)
	}
}

func (r *Reader) simdImmediates(sub uint32) {
	switch {
	case sub <= 11 || sub == 92 || sub == 93: // loads, stores, load zero
		r.memarg()
	case sub == 12 || sub == 13: // v128.const, i8x16.shuffle
		r.Bytes(16)
	case sub >= 21 && sub <= 34: // extract/replace lane
		r.Byte()
	case sub >= 84 && sub <= 91: // load/store lane
		r.memarg()
		r.Byte()
	case sub <= 0x113: // every other SIMD instruction has no immediates
	default:
		r.Failf("unknown instruction 0xfd %d", sub)
	}
}

func (r *Reader) atomicImmediates(sub uint32) {
	switch {
	case sub == 3: // atomic.fence
		r.Byte()
	case sub <= 2 || (sub >= 0x10 && sub <= 0x4e):
		r.memarg()
	default:
		r.Failf("unknown instruction 0xfe %d", sub)
	}
}
