// Package interrupt rewrites a WebAssembly module so that the host can stop
// it, cheaply, while it runs, and so that its recursion is bounded.
//
// # Why
//
// wazero can interrupt a guest only if the module is compiled with
// close-on-context-done, which makes every loop iteration leave native code
// to ask Go whether the module was closed. A Go guest opens every function
// with a loop, so that check costs several microseconds on the smallest call
// (see host/module's benchmarks). Without it, a guest in a loop can be neither
// stopped nor preempted: it holds up the host's garbage collector for as long
// as it spins.
//
// wazero also lets a guest's call stack grow until its native stack reaches
// a ceiling of about 50 MB; getting there allocates stacks of ever doubling
// size, some 250 MB of host memory for one runaway recursion.
//
// # What
//
// Instrument adds three mutable i32 globals to the module and exports them:
//
//   - wasmlet_fuel, decremented at the start of every function and at the
//     head of every loop;
//   - wasmlet_interrupt, which the host sets to ask the guest to stop;
//   - wasmlet_depth, the call depth, raised by a function's weight when it
//     starts and lowered when it returns. Only the guest writes it: after a
//     trap, a depth over the limit says the limit was the cause.
//
// When the fuel runs out, the guest refills it, runs memory.grow 0 (which
// leaves native code for a moment, so the Go scheduler and garbage collector
// can run), and traps with unreachable if wasmlet_interrupt is set. The
// common path is a load, a subtract, a store and a not-taken branch: about a
// nanosecond. To interrupt a call the host sets both globals (fuel to 1, so the
// check happens at the next loop head or call) from any goroutine.
//
// The call depth is counted only in functions that call (a leaf adds one
// frame at most). Such a function's body is wrapped in a block; every return
// becomes a branch to that block, after which the depth is lowered, and a
// tail call lowers it before it leaves. A function weighs more the larger
// its frame can be (see Weight), so that the limit bounds the native stack
// a module can use, not only its number of frames. A call that would take
// the depth over the limit traps instead.
//
// Each table gets a maximum: its share of Limits.TableElements (wazero
// keeps tables in host memory, and would let table.grow take one to 32 GB).
//
// Function indices, types and imports are unchanged (a type may be appended,
// for the block of a function with several results); only the type, table,
// global, export and code sections change. DWARF sections are dropped, since
// code offsets move.
//
// Instrument expects a module that wazero has validated: it checks what it
// relies on and fails rather than panics on anything else, but it does not
// validate. Its time and output are linear in the module's size.
package interrupt

import (
	"errors"
	"fmt"
	"strings"

	"github.com/wasmlet/wasmlet/host/module/wasmbin"
)

// Names of the globals Instrument exports.
const (
	ExportFuel      = "wasmlet_fuel"
	ExportInterrupt = "wasmlet_interrupt"
	ExportDepth     = "wasmlet_depth"
)

// Version identifies the instrumentation: caches of instrumented binaries
// must not outlive a change to it.
const Version = 4

// Fuel is the number of function entries and loop iterations between two
// checks of the interrupt flag: small enough that a check comes well under a
// millisecond apart, large enough that its cost vanishes.
const Fuel = 1 << 16

// FrameUnit is how many parameters, locals and bytes of code add one to a
// function's weight (see Weight).
const FrameUnit = 64

// Weight is how much a call of a function adds to the call depth: 1, plus
// one per FrameUnit of its parameters, locals and code bytes. A function's
// native frame holds its parameters and locals and the values its code keeps
// across calls, so it grows with all three; weighing by them bounds the
// stack a module can use with large frames as well as with many small ones.
func Weight(params, locals, codeBytes int) uint32 {
	return uint32(1 + (params+locals+codeBytes)/FrameUnit)
}

// Limits are what an instrumented module cannot exceed.
type Limits struct {
	// CallDepth bounds the call depth, counted in weights (see Weight).
	CallDepth uint32
	// TableElements bounds the elements of all the module's tables
	// together. wazero keeps a table's elements in host memory (8 bytes
	// each), outside the memory limit, and lets table.grow take a table
	// without a maximum to 2³² elements: 32 GB. Each table's maximum is set
	// to its share of this.
	TableElements uint64
}

// Instrument returns the module m (read from a binary that wazero validated)
// with interrupt checks and within lim. It fails on a module with a start
// section, without a memory, whose tables start larger than lim allows, or
// that already uses the names it adds.
func Instrument(m *wasmbin.Module, lim Limits) ([]byte, error) {
	if m.Start >= 0 {
		return nil, errors.New("the module has a start section")
	}
	if len(m.Memories) == 0 {
		return nil, errors.New("module has no memory")
	}
	if m.Memories[0].Is64 {
		return nil, errors.New("64-bit memories are not supported")
	}
	if err := CheckTables(m, lim.TableElements); err != nil {
		return nil, err
	}
	for _, e := range m.Exports {
		if e.Name == ExportFuel || e.Name == ExportInterrupt || e.Name == ExportDepth {
			return nil, fmt.Errorf("the module exports %q, %w", e.Name, errReserved)
		}
	}
	g := uint32(m.ImportedGlobals + m.Globals)
	in := &instrumenter{m: m, fuel: g, intr: g + 1, depth: g + 2, maxDepth: lim.CallDepth, tableShare: tableShare(m, lim.TableElements)}
	in.blockTypes()
	in.check = in.fuelCheck()

	size := 8 + len(m.Code)*64
	for _, s := range m.Sections {
		size += len(s.Body) + 6
	}
	out := make([]byte, 0, size+size/4)
	out = append(out, "\x00asm\x01\x00\x00\x00"...)
	emit := func(id byte, body []byte) []byte {
		out = append(out, id)
		out = wasmbin.AppendU32(out, uint32(len(body)))
		return append(out, body...)
	}
	// The global and export sections are rewritten, or added where they
	// belong when the module has none.
	added := map[byte]func([]byte) []byte{wasmbin.SecGlobal: in.globals, wasmbin.SecExport: in.exports}
	addMissing := func(before byte) {
		for _, id := range []byte{wasmbin.SecGlobal, wasmbin.SecExport} {
			if f := added[id]; f != nil && (before == 0 || wasmbin.After(before, id)) {
				out = emit(id, f(nil))
				delete(added, id)
			}
		}
	}
	for _, s := range m.Sections {
		if s.ID == wasmbin.SecCustom {
			if !strings.HasPrefix(customName(s.Body), ".debug_") { // code offsets move: stale debug info would mislead
				out = emit(s.ID, s.Body)
			}
			continue
		}
		addMissing(s.ID)
		switch s.ID {
		case wasmbin.SecType:
			out = emit(s.ID, in.types(s.Body))
		case wasmbin.SecTable:
			out = emit(s.ID, in.tables())
		case wasmbin.SecGlobal, wasmbin.SecExport:
			out = emit(s.ID, added[s.ID](s.Body))
			delete(added, s.ID)
		case wasmbin.SecCode:
			b, err := in.code()
			if err != nil {
				return nil, fmt.Errorf("code section: %w", err)
			}
			out = emit(s.ID, b)
		default:
			out = emit(s.ID, s.Body)
		}
	}
	addMissing(0)
	return out, nil
}

var errReserved = errors.New("a name the host reserves")

type instrumenter struct {
	m                 *wasmbin.Module
	fuel, intr, depth uint32 // global indices
	maxDepth          uint32
	tableShare        uint64            // the most elements each defined table may hold
	check             []byte            // the fuel check
	blockType         map[uint32][]byte // block type of each function type's body
	newTypes          [][]wasmbin.ValType
	fn, body          []byte // scratch for one function
}

func customName(body []byte) string {
	r := wasmbin.NewReader(body, 0)
	name := r.Bytes(r.U32())
	if r.Err() != nil {
		return ""
	}
	return string(name)
}

// blockTypes works out the block type that wraps the body of a function of
// each type: empty, one value type, or (for several results) the index of a
// type with no parameters and those results, appended when there is none.
func (in *instrumenter) blockTypes() {
	in.blockType = map[uint32][]byte{}
	key := func(ts []wasmbin.ValType) string {
		b := make([]byte, len(ts))
		for i, t := range ts {
			b[i] = byte(t)
		}
		return string(b)
	}
	noParams := map[string]uint32{}
	for i := len(in.m.Types) - 1; i >= 0; i-- {
		if t := in.m.Types[i]; len(t.Params) == 0 {
			noParams[key(t.Results)] = uint32(i)
		}
	}
	for _, ti := range in.m.Funcs[in.m.ImportedFuncs:] {
		if _, ok := in.blockType[ti]; ok {
			continue
		}
		res := in.m.Types[ti].Results
		switch len(res) {
		case 0:
			in.blockType[ti] = []byte{wasmbin.BlockVoid}
		case 1:
			in.blockType[ti] = []byte{byte(res[0])}
		default:
			idx, ok := noParams[key(res)]
			if !ok {
				idx = uint32(len(in.m.Types) + len(in.newTypes))
				in.newTypes = append(in.newTypes, res)
				noParams[key(res)] = idx
			}
			in.blockType[ti] = wasmbin.AppendS32(nil, int32(idx))
		}
	}
}

// types appends the block types blockTypes added to the type section.
func (in *instrumenter) types(body []byte) []byte {
	if len(in.newTypes) == 0 {
		return body
	}
	b := grow(body, uint32(len(in.newTypes)))
	for _, res := range in.newTypes {
		b = append(b, 0x60, 0)
		b = wasmbin.AppendU32(b, uint32(len(res)))
		for _, t := range res {
			b = append(b, byte(t))
		}
	}
	return b
}

// tableShare is the most elements each table the module defines may hold.
func tableShare(m *wasmbin.Module, total uint64) uint64 {
	return total / uint64(max(1, len(m.Tables)))
}

// CheckTables checks that the tables m defines start within their share of
// total elements, and are not 64-bit.
func CheckTables(m *wasmbin.Module, total uint64) error {
	share := tableShare(m, total)
	for i, t := range m.Tables {
		if t.Limits.Is64 {
			return fmt.Errorf("table %d is a 64-bit table, which is not supported", m.ImportedTables+i)
		}
		if t.Limits.Min > share {
			return fmt.Errorf("table %d starts with %d elements; a module's %d tables may hold %d elements in all, %d each",
				m.ImportedTables+i, t.Limits.Min, len(m.Tables), total, share)
		}
	}
	return nil
}

// tables is the table section with each table's maximum at most its share.
func (in *instrumenter) tables() []byte {
	b := wasmbin.AppendU32(nil, uint32(len(in.m.Tables)))
	for _, t := range in.m.Tables {
		if t.Init != nil {
			b = append(b, 0x40, 0)
		}
		hi := in.tableShare
		if t.Limits.HasMax {
			hi = min(hi, t.Limits.Max)
		}
		b = append(b, byte(t.Elem), 1) // has a maximum
		b = wasmbin.AppendU32(b, uint32(t.Limits.Min))
		b = wasmbin.AppendU32(b, uint32(hi))
		b = append(b, t.Init...)
	}
	return b
}

// grow returns a vector section (nil for none) with its count raised by
// more, ready for more entries to be appended.
func grow(existing []byte, more uint32) []byte {
	var n uint32
	var entries []byte
	if existing != nil {
		r := wasmbin.NewReader(existing, 0)
		n, entries = r.U32(), existing[r.Offset():]
	}
	return append(wasmbin.AppendU32(nil, n+more), entries...)
}

// globals appends the three globals to a global section (nil for none).
func (in *instrumenter) globals(existing []byte) []byte {
	b := grow(existing, 3)
	b = append(b, byte(wasmbin.I32), 1, wasmbin.OpI32Const) // fuel: i32, mutable, i32.const
	b = wasmbin.AppendS32(b, Fuel)
	b = append(b, wasmbin.OpEnd)
	b = append(b, byte(wasmbin.I32), 1, wasmbin.OpI32Const, 0, wasmbin.OpEnd) // interrupt
	b = append(b, byte(wasmbin.I32), 1, wasmbin.OpI32Const, 0, wasmbin.OpEnd) // depth
	return b
}

// exports appends the exports of the three globals to an export section
// (nil for none).
func (in *instrumenter) exports(existing []byte) []byte {
	b := grow(existing, 3)
	for _, e := range []struct {
		name string
		idx  uint32
	}{{ExportFuel, in.fuel}, {ExportInterrupt, in.intr}, {ExportDepth, in.depth}} {
		b = wasmbin.AppendU32(b, uint32(len(e.name)))
		b = append(b, e.name...)
		b = append(b, 3) // global
		b = wasmbin.AppendU32(b, e.idx)
	}
	return b
}

// fuelCheck is the sequence inserted at function entries and loop heads:
//
//	global.get fuel; i32.const 1; i32.sub; global.set fuel
//	global.get fuel; i32.eqz
//	if
//	  i32.const Fuel; global.set fuel
//	  i32.const 0; memory.grow 0; drop
//	  global.get interrupt
//	  if unreachable end
//	end
func (in *instrumenter) fuelCheck() []byte {
	b := in.getAdd(nil, in.fuel, wasmbin.OpI32Sub, 1)
	b = append(b, wasmbin.OpGlobalGet)
	b = wasmbin.AppendU32(b, in.fuel)
	b = append(b, wasmbin.OpI32Eqz, wasmbin.OpIf, wasmbin.BlockVoid, wasmbin.OpI32Const)
	b = wasmbin.AppendS32(b, Fuel)
	b = append(b, wasmbin.OpGlobalSet)
	b = wasmbin.AppendU32(b, in.fuel)
	b = append(b, wasmbin.OpI32Const, 0, wasmbin.OpMemoryGrow, 0, wasmbin.OpDrop)
	b = append(b, wasmbin.OpGlobalGet)
	b = wasmbin.AppendU32(b, in.intr)
	b = append(b, wasmbin.OpIf, wasmbin.BlockVoid, wasmbin.OpUnreachable, wasmbin.OpEnd)
	return append(b, wasmbin.OpEnd)
}

// getAdd appends global.get g; i32.const v; op; global.set g.
func (in *instrumenter) getAdd(b []byte, g uint32, op byte, v uint32) []byte {
	b = append(b, wasmbin.OpGlobalGet)
	b = wasmbin.AppendU32(b, g)
	b = append(b, wasmbin.OpI32Const)
	b = wasmbin.AppendS32(b, int32(v))
	b = append(b, op, wasmbin.OpGlobalSet)
	return wasmbin.AppendU32(b, g)
}

// enter raises the call depth by w and traps when it passes the limit:
//
//	global.get depth; i32.const w; i32.add; global.set depth
//	global.get depth; i32.const max; i32.gt_u
//	if unreachable end
func (in *instrumenter) enter(b []byte, w uint32) []byte {
	b = in.getAdd(b, in.depth, wasmbin.OpI32Add, w)
	b = append(b, wasmbin.OpGlobalGet)
	b = wasmbin.AppendU32(b, in.depth)
	b = append(b, wasmbin.OpI32Const)
	b = wasmbin.AppendS32(b, int32(in.maxDepth))
	return append(b, wasmbin.OpI32GtU, wasmbin.OpIf, wasmbin.BlockVoid, wasmbin.OpUnreachable, wasmbin.OpEnd)
}

func (in *instrumenter) code() ([]byte, error) {
	m := in.m
	out := wasmbin.AppendU32(make([]byte, 0, len(m.Code)*80), uint32(len(m.Code)))
	for i, body := range m.Code {
		ti := m.Funcs[m.ImportedFuncs+i]
		fn, err := in.function(body, ti)
		if err != nil {
			return nil, fmt.Errorf("function %d: %w", m.ImportedFuncs+i, err)
		}
		out = wasmbin.AppendU32(out, uint32(len(fn)))
		out = append(out, fn...)
	}
	return out, nil
}

// function instruments one function body of type ti.
func (in *instrumenter) function(body wasmbin.Body, ti uint32) ([]byte, error) {
	w := Weight(len(in.m.Types[ti].Params), int(body.NumLocals), len(body.Code))
	code := body.Code
	r := wasmbin.NewReader(code, body.Offset+len(body.Locals))
	b := in.body[:0]
	start, open, calls := 0, 0, false
	// copy emits the instructions read since the last rewrite, up to at.
	copyTo := func(at int) {
		b = append(b, code[start:at]...)
		start = at
	}
	for !r.Done() {
		at := r.Offset()
		op, _ := r.Instr()
		if r.Err() != nil {
			return nil, r.Err()
		}
		switch op {
		case wasmbin.OpBlock, wasmbin.OpIf, wasmbin.OpTry, wasmbin.OpTryTable:
			open++
		case wasmbin.OpLoop:
			open++
			copyTo(r.Offset())
			b = append(b, in.check...)
		case wasmbin.OpEnd, wasmbin.OpDelegate:
			open--
		case wasmbin.OpReturn:
			// A branch to the function's outermost block: to the block
			// that lowers the depth, or, in a function that does not
			// count it, to the function's end, which returns.
			copyTo(at)
			b = append(b, wasmbin.OpBr)
			b = wasmbin.AppendU32(b, uint32(open))
			start = r.Offset()
		case wasmbin.OpCall, wasmbin.OpCallIndirect, wasmbin.OpCallRef:
			calls = true
		case wasmbin.OpReturnCall, wasmbin.OpReturnCallIndirect, wasmbin.OpReturnCallRef:
			// The callee takes this frame's place: lower the depth first.
			calls = true
			copyTo(at)
			b = in.getAdd(b, in.depth, wasmbin.OpI32Sub, w)
		}
		if open < 0 {
			if !r.Done() {
				return nil, fmt.Errorf("at offset %d: code after the function's end", r.FileOffset())
			}
			break
		}
	}
	if open >= 0 {
		return nil, errors.New("the function body is not closed")
	}
	copyTo(len(code) - 1) // all but the function's end
	in.body = b

	fn := append(in.fn[:0], body.Locals...)
	fn = append(fn, in.check...)
	if calls {
		fn = in.enter(fn, w)
		fn = append(fn, wasmbin.OpBlock)
		fn = append(fn, in.blockType[ti]...)
		fn = append(fn, b...)
		fn = append(fn, wasmbin.OpEnd)
		fn = in.getAdd(fn, in.depth, wasmbin.OpI32Sub, w)
	} else {
		fn = append(fn, b...)
	}
	fn = append(fn, wasmbin.OpEnd)
	in.fn = fn
	return fn, nil
}
