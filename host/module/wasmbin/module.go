package wasmbin

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// MaxLocals is the most locals a function may declare, the limit of the
// WebAssembly JS API that browsers enforce. Without it a five-byte local
// declaration could make a decoder allocate gigabytes.
const MaxLocals = 50000

// Module is what Parse read of a module.
type Module struct {
	// Sections are all the sections, custom ones included, in file order.
	Sections []Section

	Types   []FuncType
	Imports []Import
	// Funcs is the type index of every function, imported ones first. Each
	// is a valid index into Types.
	Funcs []uint32
	// ImportedFuncs, ImportedTables and ImportedGlobals count the
	// functions, tables and globals the module imports.
	ImportedFuncs, ImportedTables, ImportedGlobals int
	Tables                                         []TableDef // defined tables
	// Memories are the limits of every memory, imported ones first.
	Memories []Limits
	Globals  int // defined globals
	Exports  []Export
	// Start is the start function's index, or -1 when there is none.
	Start int64
	// Code are the bodies of the functions the module defines, one per
	// function after the imported ones.
	Code []Body
	// Names are the function names of the name section, when there is one.
	Names map[uint32]string
}

var magic = []byte("\x00asm")

// Parse reads a module, checking every count and length it meets against
// the bytes that remain. It fails on the first structural error, naming the
// section and the offset.
func Parse(bin []byte) (*Module, error) {
	if !bytes.HasPrefix(bin, magic) {
		return nil, fmt.Errorf("not a WebAssembly module: the file starts with %q, not \"\\0asm\"", bin[:min(len(bin), 4)])
	}
	if len(bin) < 8 {
		return nil, errors.New("truncated header")
	}
	switch v := binary.LittleEndian.Uint32(bin[4:8]); {
	case v == 1:
	case v>>16 != 0:
		return nil, fmt.Errorf("a WebAssembly component (version %#x), not a core module", v)
	default:
		return nil, fmt.Errorf("binary format version %d; only version 1 is known", v)
	}
	m := &Module{Start: -1}
	r := NewReader(bin, 0)
	r.off = 8
	var last byte
	for !r.Done() {
		at := r.FileOffset()
		id := r.Byte()
		sr := r.Sub(r.U32())
		if r.err != nil {
			return nil, fmt.Errorf("%s: %w", SectionName(id), r.err)
		}
		if id != SecCustom {
			switch {
			case int(id) >= len(order):
				return nil, fmt.Errorf("at offset %d: unknown section id %d", at, id)
			case id == last:
				return nil, fmt.Errorf("at offset %d: a second %s", at, SectionName(id))
			case last != 0 && !After(id, last):
				return nil, fmt.Errorf("at offset %d: the %s comes after the %s", at, SectionName(id), SectionName(last))
			}
			last = id
		}
		m.Sections = append(m.Sections, Section{ID: id, Offset: sr.base, Body: sr.b})
		m.section(sr, id)
		if sr.err == nil && !sr.Done() {
			sr.Failf("%d bytes left over at the end of the section", sr.Len())
		}
		if sr.err != nil {
			return nil, fmt.Errorf("%s: %w", SectionName(id), sr.err)
		}
	}
	if defined := len(m.Funcs) - m.ImportedFuncs; defined != len(m.Code) {
		return nil, fmt.Errorf("the function section declares %d functions, but the code section has %d bodies", defined, len(m.Code))
	}
	for i := range m.Exports {
		e := &m.Exports[i]
		switch e.Kind {
		case Func:
			if int64(e.Index) >= int64(len(m.Funcs)) {
				return nil, fmt.Errorf("export %q names function %d, which does not exist", e.Name, e.Index)
			}
			e.Type = m.Types[m.Funcs[e.Index]].String()
		case Memory:
			if int64(e.Index) >= int64(len(m.Memories)) {
				return nil, fmt.Errorf("export %q names memory %d, which does not exist", e.Name, e.Index)
			}
			e.Type = "pages: " + m.Memories[e.Index].String()
		}
	}
	if m.Start >= int64(len(m.Funcs)) {
		return nil, fmt.Errorf("the start section names function %d, which does not exist", m.Start)
	}
	return m, nil
}

// section reads the contents of one section into m.
func (m *Module) section(r *Reader, id byte) {
	switch id {
	case SecCustom:
		m.custom(r)
	case SecType:
		m.Types = make([]FuncType, r.Count(3))
		for i := range m.Types {
			if r.err != nil {
				break
			}
			if form := r.Byte(); form != 0x60 && r.err == nil {
				r.failAt(r.off-1, "type %d has form 0x%02x, not a function type (0x60)", i, form)
			}
			m.Types[i].Params = valTypes(r)
			m.Types[i].Results = valTypes(r)
		}
	case SecImport:
		m.Imports = make([]Import, r.Count(4))
		for i := range m.Imports {
			if r.err != nil {
				break
			}
			m.importEntry(r, &m.Imports[i])
		}
	case SecFunction:
		n := r.Count(1)
		m.Funcs = append(make([]uint32, 0, len(m.Funcs)+n), m.Funcs...)
		for i := 0; i < n && r.err == nil; i++ {
			m.Funcs = append(m.Funcs, m.typeIndex(r))
		}
	case SecTable:
		m.Tables = make([]TableDef, r.Count(2))
		for i := range m.Tables {
			if r.err != nil {
				break
			}
			m.Tables[i] = tableDef(r)
		}
	case SecMemory:
		n := r.Count(2)
		for i := 0; i < n && r.err == nil; i++ {
			m.Memories = append(m.Memories, r.Limits())
		}
	case SecGlobal:
		m.Globals = r.Count(3)
		for i := 0; i < m.Globals && r.err == nil; i++ {
			r.ValType()
			r.Byte() // mutability
			constExpr(r)
		}
	case SecExport:
		m.Exports = make([]Export, r.Count(3))
		for i := range m.Exports {
			if r.err != nil {
				break
			}
			e := &m.Exports[i]
			e.Name = r.Name()
			e.Kind = kind(r)
			e.Index = r.U32()
		}
	case SecStart:
		m.Start = int64(r.U32())
	case SecElement:
		elements(r)
	case SecCode:
		m.Code = make([]Body, r.Count(2))
		for i := range m.Code {
			if r.err != nil {
				break
			}
			m.Code[i] = body(r)
		}
	case SecData:
		n := r.Count(2)
		for i := 0; i < n && r.err == nil; i++ {
			switch flags := r.U32(); flags {
			case 0:
				constExpr(r)
			case 1:
			case 2:
				r.U32() // memory
				constExpr(r)
			default:
				r.Failf("data segment %d has flags %d", i, flags)
			}
			r.Bytes(r.U32())
		}
	case SecDataCount:
		r.U32()
	case SecTag:
		n := r.Count(2)
		for i := 0; i < n && r.err == nil; i++ {
			r.Byte() // attribute
			m.typeIndex(r)
		}
	}
}

func valTypes(r *Reader) []ValType {
	ts := make([]ValType, r.Count(1))
	for i := range ts {
		ts[i] = r.ValType()
	}
	return ts
}

// typeIndex reads a type index and checks that the type exists.
func (m *Module) typeIndex(r *Reader) uint32 {
	at := r.off
	idx := r.U32()
	if r.err == nil && int64(idx) >= int64(len(m.Types)) {
		r.failAt(at, "type %d does not exist (there are %d)", idx, len(m.Types))
	}
	return idx
}

func kind(r *Reader) Kind {
	k := r.Byte()
	if r.err != nil {
		return ""
	}
	if int(k) >= len(kinds) {
		r.failAt(r.off-1, "unknown kind 0x%02x", k)
		return ""
	}
	return kinds[k]
}

func (m *Module) importEntry(r *Reader, im *Import) {
	im.Module = r.Name()
	im.Name = r.Name()
	im.Kind = kind(r)
	switch im.Kind {
	case Func:
		idx := m.typeIndex(r)
		if r.err == nil {
			im.Type = m.Types[idx].String()
			m.Funcs = append(m.Funcs, idx)
			m.ImportedFuncs++
		}
	case Table:
		t := tableType(r)
		im.Type = t.Elem.String() + ", " + t.Limits.String()
		m.ImportedTables++
	case Memory:
		l := r.Limits()
		im.Type = "pages: " + l.String()
		m.Memories = append(m.Memories, l)
	case Global:
		t := r.ValType()
		im.Type = t.String()
		if mut := r.Byte(); mut == 1 {
			im.Type = "mut " + im.Type
		}
		m.ImportedGlobals++
	case Tag:
		r.Byte() // attribute
		m.typeIndex(r)
	}
}

func tableType(r *Reader) TableDef {
	var t TableDef
	if t.Elem = r.ValType(); r.err == nil && t.Elem != FuncRef && t.Elem != ExternRef {
		r.failAt(r.off-1, "table element type %s is not a reference type", t.Elem)
	}
	t.Limits = r.Limits()
	return t
}

// tableDef reads a table of the table section: a table type, or 0x40 0x00,
// a table type and an initialiser expression.
func tableDef(r *Reader) TableDef {
	if r.Len() > 0 && r.b[r.off] == 0x40 {
		r.Byte()
		if b := r.Byte(); b != 0 && r.err == nil {
			r.failAt(r.off-1, "table prefix 0x40 0x%02x", b)
		}
		t := tableType(r)
		start := r.off
		constExpr(r)
		t.Init = r.b[start:r.off]
		return t
	}
	return tableType(r)
}

// constExpr skips a constant expression, up to and including its end.
func constExpr(r *Reader) {
	for !r.Done() {
		if op, _ := r.Instr(); op == opEnd {
			return
		}
	}
	if r.err == nil {
		r.fail(ErrTruncated)
	}
}

// elements skips the element section, checking its vectors.
func elements(r *Reader) {
	n := r.Count(2)
	for i := 0; i < n && r.err == nil; i++ {
		flags := r.U32()
		if flags > 7 {
			r.Failf("element segment %d has flags %d", i, flags)
			return
		}
		if flags&3 == 2 { // an explicit table
			r.U32()
		}
		if flags&1 == 0 { // active: an offset
			constExpr(r)
		}
		if flags&3 != 0 { // elemkind or reftype
			r.Byte()
		}
		k := r.Count(1)
		for j := 0; j < k && r.err == nil; j++ {
			if flags&4 != 0 {
				constExpr(r)
			} else {
				r.U32()
			}
		}
	}
}

// body reads one entry of the code section.
func body(r *Reader) Body {
	br := r.Sub(r.U32())
	if r.err != nil {
		return Body{}
	}
	b, at := br.b, br.base
	groups := br.Count(2)
	var n uint64
	for i := 0; i < groups && br.err == nil; i++ {
		at := br.off
		n += uint64(br.U32())
		br.ValType()
		if n > MaxLocals {
			br.failAt(at, "the function declares more than %d locals", MaxLocals)
		}
	}
	if br.err == nil && (br.Done() || b[len(b)-1] != opEnd) {
		br.failAt(len(b)-1, "the function body does not end with end (0x0b)")
	}
	if br.err != nil {
		r.setErr(br.err)
		return Body{}
	}
	return Body{Offset: at, Locals: b[:br.off], NumLocals: uint32(n), Code: b[br.off:]}
}

// custom reads a custom section: its name, and for the name section, the
// function names (and checks the vectors of the local names).
func (m *Module) custom(r *Reader) {
	if r.Name() != "name" || r.err != nil {
		r.off = len(r.b) // other custom sections are opaque
		return
	}
	if m.Names != nil {
		r.Failf("a second name section")
		return
	}
	// wazero decodes the module name, function names and local names from
	// where each subsection starts, whatever its size says: each must be
	// exactly as long as its size, or wazero would read on beyond what was
	// checked here.
	m.Names = map[uint32]string{}
	for !r.Done() {
		id := r.Byte()
		sub := r.Sub(r.U32())
		if r.err != nil {
			return
		}
		switch id {
		case 0: // the module's name
			sub.Name()
		case 1: // function names
			n := sub.Count(2)
			for i := 0; i < n && sub.err == nil; i++ {
				idx := sub.U32()
				m.Names[idx] = sub.Name()
			}
		case 2: // local names
			n := sub.Count(2)
			for i := 0; i < n && sub.err == nil; i++ {
				sub.U32()
				k := sub.Count(2)
				for j := 0; j < k && sub.err == nil; j++ {
					sub.U32()
					sub.Name()
				}
			}
		default: // labels, types...: skipped by their size
			sub.off = len(sub.b)
		}
		if sub.err == nil && !sub.Done() {
			sub.Failf("%d bytes left over at the end of name subsection %d", sub.Len(), id)
		}
		if sub.err != nil {
			r.setErr(sub.err)
			return
		}
	}
}

// FuncName is a name for function idx, for messages: its export name, or its
// name in the name section, or "".
func (m *Module) FuncName(idx uint32) string {
	for _, e := range m.Exports {
		if e.Kind == Func && e.Index == idx {
			return e.Name
		}
	}
	return m.Names[idx]
}
