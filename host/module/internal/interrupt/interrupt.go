// Package interrupt rewrites a WebAssembly module so that the host can stop
// it, cheaply, while it runs.
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
// # What
//
// Instrument adds two mutable i32 globals to the module and exports them:
//
//   - wasmlet_fuel, decremented at the start of every function and at the
//     head of every loop;
//   - wasmlet_interrupt, which the host sets to ask the guest to stop.
//
// When the fuel runs out, the guest refills it, runs memory.grow 0 (which
// leaves native code for a moment, so the Go scheduler and garbage collector
// can run), and traps with unreachable if wasmlet_interrupt is set. The
// common path is a load, a subtract, a store and a not-taken branch: about a
// nanosecond. To interrupt a call the host sets both globals (fuel to 1, so the
// check happens at the next loop head or call) from any goroutine.
//
// Function indices, types and imports are unchanged; only the global, export
// and code sections grow. DWARF sections are dropped, since code offsets move.
package interrupt

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
)

// Names of the globals Instrument exports.
const (
	ExportFuel      = "wasmlet_fuel"
	ExportInterrupt = "wasmlet_interrupt"
)

// Version identifies the instrumentation: caches of instrumented binaries
// must not outlive a change to it.
const Version = 1

// Fuel is the number of function entries and loop iterations between two
// checks of the interrupt flag: small enough that a check comes well under a
// millisecond apart, large enough that its cost vanishes.
const Fuel = 1 << 16

// Section ids.
const (
	secCustom   = 0
	secImport   = 2
	secMemory   = 5
	secGlobal   = 6
	secExport   = 7
	secStart    = 8
	secElement  = 9
	secCode     = 10
	secData     = 11
	secDataCnt  = 12
	secTag      = 13
	kindGlobal  = 3
	valI32      = 0x7f
	blockVoid   = 0x40
	opIf        = 0x04
	opEnd       = 0x0b
	opLoop      = 0x03
	opGlobalGet = 0x23
	opGlobalSet = 0x24
)

// Instrument returns a copy of the module bin with interrupt checks. It fails
// on a module it cannot parse, or that already uses the names it adds.
func Instrument(bin []byte) ([]byte, error) {
	if len(bin) < 8 || !bytes.Equal(bin[:4], []byte("\x00asm")) {
		return nil, errors.New("not a WebAssembly module")
	}
	if !bytes.Equal(bin[4:8], []byte{1, 0, 0, 0}) {
		return nil, fmt.Errorf("binary format version %v is not 1", bin[4:8])
	}
	type section struct {
		id   byte
		body []byte
	}
	var sections []section
	r := reader{b: bin[8:]}
	for !r.done() {
		id := r.byte()
		n := r.u32()
		body := r.bytes(n)
		if r.err != nil {
			return nil, fmt.Errorf("section %d: %w", id, r.err)
		}
		sections = append(sections, section{id, body})
	}

	var importedGlobals, definedGlobals uint32
	hasMemory := false
	for _, s := range sections {
		switch s.id {
		case secImport:
			n, err := countImportedGlobals(s.body, &hasMemory)
			if err != nil {
				return nil, fmt.Errorf("import section: %w", err)
			}
			importedGlobals = n
		case secGlobal:
			sr := reader{b: s.body}
			definedGlobals = sr.u32()
			if sr.err != nil {
				return nil, fmt.Errorf("global section: %w", sr.err)
			}
		case secMemory:
			hasMemory = true
		}
	}
	if !hasMemory {
		return nil, errors.New("module has no memory")
	}
	fuel := importedGlobals + definedGlobals
	intr := fuel + 1

	out := make([]byte, 0, len(bin)+len(bin)/4)
	out = append(out, bin[:8]...)
	emit := func(id byte, body []byte) {
		out = append(out, id)
		out = appendU32(out, uint32(len(body)))
		out = append(out, body...)
	}
	newGlobals := func(existing []byte) []byte {
		var b []byte
		if existing == nil {
			b = appendU32(nil, 2)
		} else {
			er := reader{b: existing}
			n := er.u32()
			b = appendU32(nil, n+2)
			b = append(b, er.rest()...)
		}
		b = append(b, valI32, 1, 0x41) // i32, mutable, i32.const
		b = appendS32(b, Fuel)
		b = append(b, opEnd)
		b = append(b, valI32, 1, 0x41, 0, opEnd)
		return b
	}
	wroteGlobals := false
	for _, s := range sections {
		switch {
		case s.id == secCustom && strings.HasPrefix(customName(s.body), ".debug_"):
			continue // code offsets move: stale debug info would mislead
		case s.id == secGlobal:
			emit(secGlobal, newGlobals(s.body))
			wroteGlobals = true
			continue
		case !wroteGlobals && s.id != secCustom && after(s.id, secGlobal):
			emit(secGlobal, newGlobals(nil))
			wroteGlobals = true
		}
		switch s.id {
		case secExport:
			b, err := addExports(s.body, fuel, intr)
			if err != nil {
				return nil, fmt.Errorf("export section: %w", err)
			}
			emit(secExport, b)
		case secCode:
			b, err := instrumentCode(s.body, fuel, intr)
			if err != nil {
				return nil, fmt.Errorf("code section: %w", err)
			}
			emit(secCode, b)
		default:
			emit(s.id, s.body)
		}
	}
	if !wroteGlobals {
		emit(secGlobal, newGlobals(nil))
	}
	return out, nil
}

// order is the position of each known section in a module.
var order = map[byte]int{1: 1, 2: 2, 3: 3, 4: 4, secMemory: 5, secTag: 6, secGlobal: 7, secExport: 8,
	secStart: 9, secElement: 10, secDataCnt: 11, secCode: 12, secData: 13}

// after reports whether section id comes after section ref in a module.
func after(id, ref byte) bool { return order[id] > order[ref] }

func customName(body []byte) string {
	r := reader{b: body}
	n := r.u32()
	name := r.bytes(n)
	if r.err != nil {
		return ""
	}
	return string(name)
}

func countImportedGlobals(body []byte, hasMemory *bool) (uint32, error) {
	r := reader{b: body}
	n := r.u32()
	var globals uint32
	for i := uint32(0); i < n && r.err == nil; i++ {
		r.bytes(r.u32()) // module
		r.bytes(r.u32()) // name
		switch kind := r.byte(); kind {
		case 0: // func: type index
			r.u32()
		case 1: // table: reftype, limits
			r.byte()
			r.limits()
		case 2: // memory
			r.limits()
			*hasMemory = true
		case kindGlobal: // valtype, mutability
			r.valtype()
			r.byte()
			globals++
		case 4: // tag: attribute, type index
			r.byte()
			r.u32()
		default:
			return 0, fmt.Errorf("import %d has unknown kind %d", i, kind)
		}
	}
	return globals, r.err
}

func addExports(body []byte, fuel, intr uint32) ([]byte, error) {
	r := reader{b: body}
	n := r.u32()
	entries := r.b
	for i := uint32(0); i < n && r.err == nil; i++ {
		name := string(r.bytes(r.u32()))
		if name == ExportFuel || name == ExportInterrupt {
			return nil, fmt.Errorf("the module exports %q, a name the host reserves", name)
		}
		r.byte()
		r.u32()
	}
	if r.err != nil {
		return nil, r.err
	}
	b := appendU32(nil, n+2)
	b = append(b, entries...)
	for _, e := range []struct {
		name string
		idx  uint32
	}{{ExportFuel, fuel}, {ExportInterrupt, intr}} {
		b = appendU32(b, uint32(len(e.name)))
		b = append(b, e.name...)
		b = append(b, kindGlobal)
		b = appendU32(b, e.idx)
	}
	return b, nil
}

// check is the sequence inserted at function entries and loop heads:
//
//	global.get fuel; i32.const 1; i32.sub; global.set fuel
//	global.get fuel; i32.eqz
//	if
//	  i32.const Fuel; global.set fuel
//	  i32.const 0; memory.grow 0; drop
//	  global.get interrupt
//	  if unreachable end
//	end
func check(fuel, intr uint32) []byte {
	var b []byte
	b = append(b, opGlobalGet)
	b = appendU32(b, fuel)
	b = append(b, 0x41, 1, 0x6b, opGlobalSet) // i32.const 1, i32.sub
	b = appendU32(b, fuel)
	b = append(b, opGlobalGet)
	b = appendU32(b, fuel)
	b = append(b, 0x45, opIf, blockVoid) // i32.eqz, if
	b = append(b, 0x41)
	b = appendS32(b, Fuel)
	b = append(b, opGlobalSet)
	b = appendU32(b, fuel)
	b = append(b, 0x41, 0, 0x40, 0, 0x1a) // i32.const 0, memory.grow 0, drop
	b = append(b, opGlobalGet)
	b = appendU32(b, intr)
	b = append(b, opIf, blockVoid, 0x00, opEnd) // if unreachable end
	b = append(b, opEnd)
	return b
}

func instrumentCode(body []byte, fuel, intr uint32) ([]byte, error) {
	chk := check(fuel, intr)
	r := reader{b: body}
	n := r.u32()
	// Room for a check per function and per few dozen bytes of loops: the
	// output rarely grows past it.
	out := make([]byte, 0, len(body)+int(n)*len(chk)+len(body)/8)
	out = appendU32(out, n)
	var fn []byte // one function's instrumented body, reused
	for i := uint32(0); i < n; i++ {
		size := r.u32()
		src := r.bytes(size)
		if r.err != nil {
			return nil, fmt.Errorf("function %d: %w", i, r.err)
		}
		var err error
		if fn, err = instrumentFunc(fn[:0], src, chk); err != nil {
			return nil, fmt.Errorf("function %d: %w", i, err)
		}
		out = appendU32(out, uint32(len(fn)))
		out = append(out, fn...)
	}
	if !r.done() {
		return nil, errors.New("trailing bytes")
	}
	return out, nil
}

// instrumentFunc appends to out one function body, fn, with chk inserted
// after the locals and after every loop instruction.
func instrumentFunc(out, fn []byte, chk []byte) ([]byte, error) {
	r := reader{b: fn}
	groups := r.u32()
	for i := uint32(0); i < groups; i++ {
		r.u32()
		r.valtype()
	}
	if r.err != nil {
		return nil, fmt.Errorf("locals: %w", r.err)
	}
	localsEnd := len(fn) - len(r.b)
	out = append(out, fn[:localsEnd]...)
	out = append(out, chk...)
	start := localsEnd
	for !r.done() {
		at := len(fn) - len(r.b)
		op := r.byte()
		if err := skipImmediates(&r, op); err != nil {
			return nil, fmt.Errorf("instruction 0x%02x at offset %d: %w", op, at, err)
		}
		if r.err != nil {
			return nil, fmt.Errorf("instruction 0x%02x at offset %d: %w", op, at, r.err)
		}
		if op == opLoop {
			end := len(fn) - len(r.b)
			out = append(out, fn[start:end]...)
			out = append(out, chk...)
			start = end
		}
	}
	return append(out, fn[start:]...), nil
}
