package wasmbin

import (
	"fmt"
	"strings"
)

// ValType is a value type.
type ValType byte

// The value types.
const (
	I32       ValType = 0x7f
	I64       ValType = 0x7e
	F32       ValType = 0x7d
	F64       ValType = 0x7c
	V128      ValType = 0x7b
	FuncRef   ValType = 0x70
	ExternRef ValType = 0x6f
)

func (t ValType) valid() bool {
	switch t {
	case I32, I64, F32, F64, V128, FuncRef, ExternRef:
		return true
	}
	return false
}

func (t ValType) String() string {
	switch t {
	case I32:
		return "i32"
	case I64:
		return "i64"
	case F32:
		return "f32"
	case F64:
		return "f64"
	case V128:
		return "v128"
	case FuncRef:
		return "funcref"
	case ExternRef:
		return "externref"
	}
	return fmt.Sprintf("type 0x%02x", byte(t))
}

// FuncType is a function signature.
type FuncType struct {
	Params, Results []ValType
}

// String is the signature as "(i32, i32) -> i64".
func (f FuncType) String() string {
	names := func(ts []ValType) string {
		s := make([]string, len(ts))
		for i, t := range ts {
			s[i] = t.String()
		}
		return strings.Join(s, ", ")
	}
	out := "(" + names(f.Params) + ")"
	if len(f.Results) > 0 {
		out += " -> " + names(f.Results)
	}
	return out
}

// Limits are the size limits of a memory (in pages) or a table.
type Limits struct {
	Min, Max     uint64
	HasMax       bool
	Shared, Is64 bool
}

func (l Limits) String() string {
	s := fmt.Sprintf("min %d", l.Min)
	if l.HasMax {
		s += fmt.Sprintf(", max %d", l.Max)
	}
	if l.Shared {
		s += ", shared"
	}
	if l.Is64 {
		s += ", 64-bit"
	}
	return s
}

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

var kinds = [...]Kind{Func, Table, Memory, Global, Tag}

// Import is one import of a module.
type Import struct {
	Module, Name string
	Kind         Kind
	// Type describes what is imported: a function's signature, such as
	// "(i32, i32) -> i64", or the type of the table, memory or global.
	Type string
}

// Export is one export of a module.
type Export struct {
	Name  string
	Kind  Kind
	Index uint32
	// Type is a function's signature or a memory's limits; empty for the
	// other kinds.
	Type string
}

// Section is one section of a module, as it is in the file.
type Section struct {
	ID     byte
	Offset int // of the section's contents in the file
	Body   []byte
}

// TableDef is a table the module defines.
type TableDef struct {
	Elem   ValType
	Limits Limits
	Init   []byte // the initialiser expression, with its end; nil if none
}

// Body is a function body.
type Body struct {
	Offset int    // of the body in the file
	Locals []byte // the local declarations, as in the file
	// NumLocals is the number of locals declared (not counting parameters).
	NumLocals uint32
	Code      []byte // the instructions, ending with the function's end
}

// Section ids.
const (
	SecCustom    = 0
	SecType      = 1
	SecImport    = 2
	SecFunction  = 3
	SecTable     = 4
	SecMemory    = 5
	SecGlobal    = 6
	SecExport    = 7
	SecStart     = 8
	SecElement   = 9
	SecCode      = 10
	SecData      = 11
	SecDataCount = 12
	SecTag       = 13
)

// order is the position of each known section in a module.
var order = [...]int{SecType: 1, SecImport: 2, SecFunction: 3, SecTable: 4, SecMemory: 5, SecTag: 6,
	SecGlobal: 7, SecExport: 8, SecStart: 9, SecElement: 10, SecDataCount: 11, SecCode: 12, SecData: 13}

// After reports whether a section id comes after section ref in a module.
// Custom sections (id 0) come after nothing.
func After(id, ref byte) bool {
	if int(id) >= len(order) || int(ref) >= len(order) {
		return false
	}
	return order[id] > order[ref]
}

// SectionName is the name of a section id, for messages.
func SectionName(id byte) string {
	names := [...]string{"custom", "type", "import", "function", "table", "memory", "global", "export",
		"start", "element", "code", "data", "data count", "tag"}
	if int(id) < len(names) {
		return names[id] + " section"
	}
	return fmt.Sprintf("section %d", id)
}
