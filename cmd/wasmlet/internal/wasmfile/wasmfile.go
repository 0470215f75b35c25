// Package wasmfile reads the interface of a WebAssembly binary module — its
// imports and exports, with the types of functions — without compiling it,
// so that `wasmlet module inspect` can show them even for a module the host
// refuses or cannot compile.
//
// It reads the type, import, function and export sections of the binary
// format (WebAssembly Core Specification, chapter 5) and skips every other
// section. It validates only what it reads; it never panics, whatever the
// input.
package wasmfile

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Kind is what an import or export is.
type Kind string

// The kinds of imports and exports.
const (
	Func   Kind = "func"
	Table  Kind = "table"
	Memory Kind = "memory"
	Global Kind = "global"
	Tag    Kind = "tag"
)

// Import is one import of a module.
type Import struct {
	Module, Name string
	Kind         Kind
	// Type is the function's signature, such as "(i32, i32) -> i64", or a
	// description of the table, memory or global.
	Type string
}

// Export is one export of a module.
type Export struct {
	Name string
	Kind Kind
	Type string
}

// Info is the interface of a module.
type Info struct {
	Imports []Import
	Exports []Export
}

var magic = []byte("\x00asm")

// Parse reads the imports and exports of the module in bin.
func Parse(bin []byte) (*Info, error) {
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
	r := &reader{b: bin, off: 8}
	var (
		types     []string // signatures, by type index
		funcTypes []uint32 // type index of every function, imported ones first
		exported  []uint32 // function index of every export of a function
		memories  []string // limits of every memory, imported ones first
		exportMem []uint32 // memory index of every export of a memory
		info      = &Info{}
		last      byte
	)
	for r.more() {
		id, err := r.byte()
		if err != nil {
			return nil, err
		}
		size, err := r.u32()
		if err != nil {
			return nil, fmt.Errorf("section %d: %w", id, err)
		}
		start := r.off
		body, err := r.bytes(int(size))
		if err != nil {
			return nil, fmt.Errorf("section %d: %w", id, err)
		}
		if id != 0 && id <= 11 && id < last {
			return nil, fmt.Errorf("section %d at offset %d comes after section %d", id, start, last)
		}
		if id != 0 && id <= 11 {
			last = id
		}
		s := &reader{b: body, base: start}
		switch id {
		case 1:
			err = s.types(&types)
		case 2:
			err = s.imports(info, types, &funcTypes, &memories)
		case 3:
			err = s.functions(&funcTypes)
		case 5:
			err = s.memories(&memories)
		case 7:
			err = s.exports(info, &exported, &exportMem)
		}
		if err != nil {
			return nil, fmt.Errorf("%s section: %w", sectionName(id), err)
		}
	}
	j := 0
	for i, e := range info.Exports {
		if e.Kind != Func {
			continue
		}
		idx := exported[j]
		j++
		if idx >= uint32(len(funcTypes)) || funcTypes[idx] >= uint32(len(types)) {
			return nil, fmt.Errorf("export %q names function %d, which does not exist", e.Name, idx)
		}
		info.Exports[i].Type = types[funcTypes[idx]]
	}
	j = 0
	for i, e := range info.Exports {
		if e.Kind != Memory {
			continue
		}
		idx := exportMem[j]
		j++
		if idx >= uint32(len(memories)) {
			return nil, fmt.Errorf("export %q names memory %d, which does not exist", e.Name, idx)
		}
		info.Exports[i].Type = memories[idx]
	}
	return info, nil
}

func sectionName(id byte) string {
	switch id {
	case 1:
		return "type"
	case 2:
		return "import"
	case 3:
		return "function"
	case 5:
		return "memory"
	case 7:
		return "export"
	}
	return fmt.Sprintf("section %d", id)
}

// reader reads the binary format; every read is bounds-checked.
type reader struct {
	b    []byte
	off  int
	base int // offset of b in the file, for messages
}

var errTruncated = errors.New("unexpected end of data")

func (r *reader) more() bool { return r.off < len(r.b) }

func (r *reader) byte() (byte, error) {
	if r.off >= len(r.b) {
		return 0, r.errAt(errTruncated)
	}
	c := r.b[r.off]
	r.off++
	return c, nil
}

func (r *reader) errAt(err error) error {
	return fmt.Errorf("at offset %d: %w", r.base+r.off, err)
}

func (r *reader) bytes(n int) ([]byte, error) {
	if n < 0 || n > len(r.b)-r.off {
		return nil, r.errAt(errTruncated)
	}
	b := r.b[r.off : r.off+n]
	r.off += n
	return b, nil
}

// uleb reads an unsigned LEB128 of at most bits bits.
func (r *reader) uleb(bits uint) (uint64, error) {
	var v uint64
	for shift := uint(0); ; shift += 7 {
		c, err := r.byte()
		if err != nil {
			return 0, err
		}
		if shift >= bits || shift+7 > bits && c&0x7f>>(bits-shift) != 0 {
			return 0, r.errAt(fmt.Errorf("integer too large for %d bits", bits))
		}
		v |= uint64(c&0x7f) << shift
		if c&0x80 == 0 {
			return v, nil
		}
	}
}

func (r *reader) u32() (uint32, error) {
	v, err := r.uleb(32)
	return uint32(v), err
}

// count reads a vector length, refusing one that cannot fit in what is left
// (every element takes at least one byte).
func (r *reader) count() (int, error) {
	n, err := r.u32()
	if err != nil {
		return 0, err
	}
	if int64(n) > int64(len(r.b)-r.off) {
		return 0, r.errAt(fmt.Errorf("vector of %d elements cannot fit in %d bytes", n, len(r.b)-r.off))
	}
	return int(n), nil
}

func (r *reader) name() (string, error) {
	n, err := r.u32()
	if err != nil {
		return "", err
	}
	b, err := r.bytes(int(n))
	if err != nil {
		return "", err
	}
	if !utf8.Valid(b) {
		return "", r.errAt(fmt.Errorf("name %q is not UTF-8", b))
	}
	return string(b), nil
}

func (r *reader) valtype() (string, error) {
	c, err := r.byte()
	if err != nil {
		return "", err
	}
	switch c {
	case 0x7f:
		return "i32", nil
	case 0x7e:
		return "i64", nil
	case 0x7d:
		return "f32", nil
	case 0x7c:
		return "f64", nil
	case 0x7b:
		return "v128", nil
	case 0x70:
		return "funcref", nil
	case 0x6f:
		return "externref", nil
	}
	r.off--
	return "", r.errAt(fmt.Errorf("value type 0x%02x is not one this inspector reads", c))
}

func (r *reader) valtypes() ([]string, error) {
	n, err := r.count()
	if err != nil {
		return nil, err
	}
	out := make([]string, n)
	for i := range out {
		if out[i], err = r.valtype(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (r *reader) types(types *[]string) error {
	n, err := r.count()
	if err != nil {
		return err
	}
	for i := 0; i < n; i++ {
		form, err := r.byte()
		if err != nil {
			return err
		}
		if form != 0x60 {
			return r.errAt(fmt.Errorf("type %d has form 0x%02x, not a function type (0x60)", i, form))
		}
		params, err := r.valtypes()
		if err != nil {
			return err
		}
		results, err := r.valtypes()
		if err != nil {
			return err
		}
		sig := "(" + strings.Join(params, ", ") + ")"
		if len(results) > 0 {
			sig += " -> " + strings.Join(results, ", ")
		}
		*types = append(*types, sig)
	}
	return nil
}

func (r *reader) limits() (string, error) {
	flags, err := r.byte()
	if err != nil {
		return "", err
	}
	if flags > 7 {
		return "", r.errAt(fmt.Errorf("limits flags 0x%02x", flags))
	}
	bits := uint(32)
	if flags&4 != 0 {
		bits = 64
	}
	lo, err := r.uleb(bits)
	if err != nil {
		return "", err
	}
	s := fmt.Sprintf("min %d", lo)
	if flags&1 != 0 {
		hi, err := r.uleb(bits)
		if err != nil {
			return "", err
		}
		s += fmt.Sprintf(", max %d", hi)
	}
	if flags&2 != 0 {
		s += ", shared"
	}
	if flags&4 != 0 {
		s += ", 64-bit"
	}
	return s, nil
}

func (r *reader) imports(info *Info, types []string, funcTypes *[]uint32, memories *[]string) error {
	n, err := r.count()
	if err != nil {
		return err
	}
	for i := 0; i < n; i++ {
		var im Import
		if im.Module, err = r.name(); err != nil {
			return err
		}
		if im.Name, err = r.name(); err != nil {
			return err
		}
		kind, err := r.byte()
		if err != nil {
			return err
		}
		switch kind {
		case 0x00:
			idx, err := r.u32()
			if err != nil {
				return err
			}
			if idx >= uint32(len(types)) {
				return r.errAt(fmt.Errorf("import %s.%s has type %d, which does not exist", im.Module, im.Name, idx))
			}
			im.Kind, im.Type = Func, types[idx]
			*funcTypes = append(*funcTypes, idx)
		case 0x01:
			ref, err := r.valtype()
			if err != nil {
				return err
			}
			lim, err := r.limits()
			if err != nil {
				return err
			}
			im.Kind, im.Type = Table, ref+", "+lim
		case 0x02:
			lim, err := r.limits()
			if err != nil {
				return err
			}
			im.Kind, im.Type = Memory, "pages: "+lim
			*memories = append(*memories, im.Type)
		case 0x03:
			vt, err := r.valtype()
			if err != nil {
				return err
			}
			mut, err := r.byte()
			if err != nil {
				return err
			}
			im.Kind, im.Type = Global, vt
			if mut == 1 {
				im.Type = "mut " + vt
			}
		case 0x04:
			if _, err := r.byte(); err != nil {
				return err
			}
			if _, err := r.u32(); err != nil {
				return err
			}
			im.Kind = Tag
		default:
			return r.errAt(fmt.Errorf("import %s.%s has kind 0x%02x", im.Module, im.Name, kind))
		}
		info.Imports = append(info.Imports, im)
	}
	return nil
}

func (r *reader) functions(funcTypes *[]uint32) error {
	n, err := r.count()
	if err != nil {
		return err
	}
	for i := 0; i < n; i++ {
		idx, err := r.u32()
		if err != nil {
			return err
		}
		*funcTypes = append(*funcTypes, idx)
	}
	return nil
}

func (r *reader) memories(memories *[]string) error {
	n, err := r.count()
	if err != nil {
		return err
	}
	for i := 0; i < n; i++ {
		lim, err := r.limits()
		if err != nil {
			return err
		}
		*memories = append(*memories, "pages: "+lim)
	}
	return nil
}

// exports records each export, and the index of each exported function and
// memory, which Parse resolves to their types.
func (r *reader) exports(info *Info, funcs, mems *[]uint32) error {
	n, err := r.count()
	if err != nil {
		return err
	}
	for i := 0; i < n; i++ {
		var e Export
		if e.Name, err = r.name(); err != nil {
			return err
		}
		kind, err := r.byte()
		if err != nil {
			return err
		}
		idx, err := r.u32()
		if err != nil {
			return err
		}
		switch kind {
		case 0x00:
			e.Kind = Func
			*funcs = append(*funcs, idx)
		case 0x01:
			e.Kind = Table
		case 0x02:
			e.Kind = Memory
			*mems = append(*mems, idx)
		case 0x03:
			e.Kind = Global
		case 0x04:
			e.Kind = Tag
		default:
			return r.errAt(fmt.Errorf("export %q has kind 0x%02x", e.Name, kind))
		}
		info.Exports = append(info.Exports, e)
	}
	return nil
}
