package config

import (
	"errors"
	"sort"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2/unstable"
)

// This file turns a TOML document into a tree of nodes that remember where
// every key and value is written, so that the schema decoder can report each
// mistake at its line and column. The builder reports keys and tables
// defined twice itself, with the place of the first definition; go-toml's
// decoder then checks the rest of the TOML specification (parseDocument).
// The builder never relies on the document being valid: no input makes it
// panic, and FuzzParse checks that, for every document go-toml accepts, it
// builds exactly what go-toml decodes.

// pos is a position in the document: 1-based line, 1-based byte column.
type pos struct{ line, col int }

// kind is the TOML type of a node.
type kind int

const (
	kindTable kind = iota
	kindArray
	kindString
	kindInteger
	kindFloat
	kindBool
	kindDatetime
)

// String names the kind the way an error message does: "got a boolean".
func (k kind) String() string {
	switch k {
	case kindTable:
		return "a table"
	case kindArray:
		return "an array"
	case kindString:
		return "a string"
	case kindInteger:
		return "an integer"
	case kindFloat:
		return "a float"
	case kindBool:
		return "a boolean"
	default:
		return "a date-time"
	}
}

// node is a TOML value with its position.
type node struct {
	kind kind
	key  pos    // where the key naming this value is first written (elements: the element)
	at   pos    // where the value starts (tables: the key)
	raw  string // scalars other than strings: the source text

	str  string // kindString
	num  int64  // kindInteger
	flag bool   // kindBool

	keys   []string // kindTable: keys in document order
	fields map[string]*node
	elems  []*node // kindArray

	tableArray bool // an array of tables, [[name]]
	header     bool // a table named by a [header], perhaps as a prefix
	explicit   bool // a table defined by its own [header]
	dotted     bool // a table defined by a dotted key
	inline     bool // an inline table or array: closed to further keys
}

func newTable(at pos) *node {
	return &node{kind: kindTable, key: at, at: at, fields: make(map[string]*node)}
}

func (n *node) set(k string, v *node) {
	n.keys = append(n.keys, k)
	n.fields[k] = v
}

// builder assembles the tree from go-toml's unstable parser.
type builder struct {
	p     unstable.Parser
	lines []int // byte offset at which each line starts
	root  *node
	// errs are keys and tables defined twice, or in conflicting ways.
	errs []treeError
}

type treeError struct {
	at   pos
	path string // display form, see keyPath
	msg  string
}

// parseTree builds the tree of a document. A syntax error is returned as a
// *unstable.ParserError, whose highlight locates it.
func parseTree(data []byte) (*node, []treeError, error) {
	b := &builder{lines: []int{0}}
	for i, c := range data {
		if c == '\n' {
			b.lines = append(b.lines, i+1)
		}
	}
	b.root = newTable(pos{1, 1})
	b.p.Reset(data)
	cur, path := b.root, ""
	for b.p.NextExpression() {
		expr := b.p.Expression()
		switch expr.Kind {
		case unstable.KeyValue:
			b.keyValue(cur, expr, path)
		case unstable.Table:
			cur, path = b.header(expr, false)
		case unstable.ArrayTable:
			cur, path = b.header(expr, true)
		}
	}
	if err := b.p.Error(); err != nil {
		return nil, nil, err
	}
	return b.root, b.errs, nil
}

// posAt is the position of a byte offset.
func (b *builder) posAt(offset int) pos {
	line := sort.Search(len(b.lines), func(i int) bool { return b.lines[i] > offset }) - 1
	if line < 0 {
		line = 0
	}
	return pos{line + 1, offset - b.lines[line] + 1}
}

func (b *builder) rangePos(r unstable.Range) pos { return b.posAt(int(r.Offset)) }

type keyPart struct {
	name string
	at   pos
}

// keyParts collects the parts of a (dotted) key.
func (b *builder) keyParts(expr *unstable.Node) []keyPart {
	var parts []keyPart
	it := expr.Key()
	for it.Next() {
		k := it.Node()
		parts = append(parts, keyPart{string(k.Data), b.rangePos(k.Raw)})
	}
	return parts
}

// partsPath is the display path of the first n parts of a key below prefix.
func partsPath(prefix string, parts []keyPart, n int) string {
	for _, p := range parts[:n] {
		prefix = keyPath(prefix, p.name)
	}
	return prefix
}

func (b *builder) conflict(at pos, path string, msg string) {
	b.errs = append(b.errs, treeError{at, path, msg})
}

// header handles [a.b.c] and [[a.b.c]] and returns the table that the
// following key/values belong to, and its path. On a conflict it returns a
// detached table, so the following key/values are dropped, not misplaced.
func (b *builder) header(expr *unstable.Node, array bool) (*node, string) {
	parts := b.keyParts(expr)
	t, path := b.root, ""
	for i, part := range parts {
		last := i == len(parts)-1
		path = keyPath(path, part.name)
		child := t.fields[part.name]
		if child == nil {
			if last && array {
				child = &node{kind: kindArray, key: part.at, at: part.at, tableArray: true}
			} else {
				child = newTable(part.at)
				child.header = true
			}
			t.set(part.name, child)
		} else if msg := headerConflict(child, path, last, array); msg != "" {
			b.conflict(part.at, path, msg)
			return newTable(part.at), path
		}
		switch {
		case last && array:
			elem := newTable(part.at)
			elem.header, elem.explicit = true, true
			child.elems = append(child.elems, elem)
			return elem, indexPath(path, len(child.elems)-1)
		case last:
			child.explicit = true
			return child, path
		case child.kind == kindArray:
			path = indexPath(path, len(child.elems)-1)
			t = child.elems[len(child.elems)-1]
		default:
			t = child
		}
	}
	return t, path
}

// headerConflict says why an existing node cannot be named by a table
// header, or "" if it can.
func headerConflict(n *node, path string, last, array bool) string {
	switch {
	case n.kind == kindTable && n.inline:
		return inlineConflict(n)
	case n.kind == kindArray && n.tableArray && len(n.elems) > 0:
		if last && !array {
			return "already defined as an array of tables at " + n.key.String() + ", expected [[" + path + "]] to add an element"
		}
	case n.kind != kindTable && last && array:
		return "already defined as " + n.kind.String() + " at " + n.key.String() + ", expected an array of tables"
	case n.kind != kindTable:
		return "already defined as " + n.kind.String() + " at " + n.key.String() + ", expected a table"
	case last && array:
		return "already defined as a table at " + n.key.String() + ", expected an array of tables"
	case last && n.explicit:
		return "duplicate table (first defined at " + n.key.String() + "), expected each table to be defined once"
	case last && n.dotted:
		return "table already defined by dotted keys at " + n.key.String() + ", expected each table to be defined once"
	}
	return ""
}

func inlineConflict(n *node) string {
	return "already defined as an inline table at " + n.key.String() + ", expected all its keys within its braces"
}

// keyValue handles key = value in table t, whose path is prefix.
func (b *builder) keyValue(t *node, expr *unstable.Node, prefix string) {
	parts := b.keyParts(expr)
	if len(parts) == 0 {
		return
	}
	path := prefix
	for _, part := range parts[:len(parts)-1] {
		path = keyPath(path, part.name)
		child := t.fields[part.name]
		var msg string
		switch {
		case child == nil:
			child = newTable(part.at)
			child.dotted = true
			t.set(part.name, child)
		case child.kind == kindTable && child.inline:
			msg = inlineConflict(child)
		case child.kind != kindTable:
			msg = "already defined as " + child.kind.String() + " at " + child.key.String() + ", expected a table"
		case child.header:
			msg = "table already defined at " + child.key.String() + ", expected its keys under its [" + path + "] header"
		}
		if msg != "" {
			b.conflict(part.at, path, msg)
			return
		}
		t = child
	}
	part := parts[len(parts)-1]
	path = keyPath(path, part.name)
	if prev := t.fields[part.name]; prev != nil {
		b.conflict(part.at, path, "duplicate key (first defined at "+prev.key.String()+"), expected each key to be defined once")
		return
	}
	v := b.value(expr.Value(), b.valueStart(expr), path)
	v.key = part.at
	t.set(part.name, v)
}

// valueStart is where the value of key = value starts: the array node of
// go-toml's AST carries no position, so find it after the '='.
func (b *builder) valueStart(expr *unstable.Node) pos {
	if v := expr.Value(); v.Raw.Length > 0 {
		return b.rangePos(v.Raw)
	}
	data := b.p.Data()
	// The last key node's raw bytes end where the separator begins.
	var end int
	it := expr.Key()
	for it.Next() {
		r := it.Node().Raw
		end = int(r.Offset + r.Length)
	}
	i := end
	for i < len(data) && (data[i] == ' ' || data[i] == '\t') {
		i++
	}
	if i < len(data) && data[i] == '=' {
		i++
	}
	for i < len(data) && (data[i] == ' ' || data[i] == '\t') {
		i++
	}
	return b.posAt(i)
}

// elementStart is where an array element starts. Arrays carry no position
// in go-toml's AST: find a nested array's '[' by walking back from its
// first element (within a few levels of nesting; beyond, use outer).
func (b *builder) elementStart(v *unstable.Node, outer pos) pos {
	if v.Raw.Length > 0 || v.Kind != unstable.Array {
		return outer // value() uses v.Raw
	}
	depth := 0
	for v.Kind == unstable.Array && depth < 8 {
		v = v.Child()
		if v == nil || v.Kind == unstable.Comment {
			return outer
		}
		depth++
	}
	if v.Raw.Length == 0 {
		return outer
	}
	data := b.p.Data()
	i := int(v.Raw.Offset)
	for ; depth > 0; depth-- {
		i--
		for i >= 0 && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r') {
			i--
		}
		if i < 0 || data[i] != '[' {
			return b.rangePos(v.Raw)
		}
	}
	return b.posAt(i)
}

// value converts a value node; at is its position when the node has none.
func (b *builder) value(v *unstable.Node, at pos, path string) *node {
	if v.Raw.Length > 0 {
		at = b.rangePos(v.Raw)
	}
	n := &node{key: at, at: at, raw: string(v.Data)}
	switch v.Kind {
	case unstable.String:
		n.kind, n.str, n.raw = kindString, n.raw, ""
	case unstable.Integer:
		// An integer that does not parse is out of range or malformed;
		// go-toml's decoder reports it, so the tree never serves it.
		n.kind = kindInteger
		n.num, _ = parseInteger(n.raw)
	case unstable.Float:
		n.kind = kindFloat
	case unstable.Bool:
		n.kind, n.flag = kindBool, n.raw == "true"
	case unstable.Array:
		n.kind, n.raw, n.inline = kindArray, "", true
		it := v.Children()
		for i := 0; it.Next(); i++ {
			c := it.Node()
			if c.Kind == unstable.Comment {
				i--
				continue
			}
			n.elems = append(n.elems, b.value(c, b.elementStart(c, at), indexPath(path, i)))
		}
	case unstable.InlineTable:
		n.kind, n.raw, n.fields, n.inline = kindTable, "", make(map[string]*node), true
		it := v.Children()
		for it.Next() {
			if c := it.Node(); c.Kind == unstable.KeyValue {
				b.keyValue(n, c, path)
			}
		}
	default:
		n.kind = kindDatetime
	}
	return n
}

// keyAt is the path of the value that starts last on p's line at or before
// p, or "" if there is none. n's path is path.
func (n *node) keyAt(p pos, path string) string {
	best, _ := n.findAt(p, path, pos{})
	return best
}

func (n *node) findAt(p pos, path string, after pos) (string, pos) {
	var best string
	if n.at.line == p.line && n.at.col <= p.col && path != "" && !n.at.before(after) {
		best, after = path, n.at
	}
	for _, k := range n.keys {
		if b, at := n.fields[k].findAt(p, keyPath(path, k), after); b != "" {
			best, after = b, at
		}
	}
	for i, e := range n.elems {
		if b, at := e.findAt(p, indexPath(path, i), after); b != "" {
			best, after = b, at
		}
	}
	return best, after
}

func (p pos) before(q pos) bool { return p.line < q.line || p.line == q.line && p.col < q.col }

// parseInteger parses a TOML integer already validated by the parser:
// decimal with optional sign and underscores, or 0x, 0o, 0b.
func parseInteger(s string) (int64, error) {
	s = strings.ReplaceAll(s, "_", "")
	base := 10
	if len(s) > 2 && s[0] == '0' {
		switch s[1] {
		case 'x':
			base = 16
		case 'o':
			base = 8
		case 'b':
			base = 2
		}
		if base != 10 {
			s = s[2:]
		}
	}
	// Non-decimal integers are unsigned in TOML; all must fit in an int64.
	return strconv.ParseInt(s, base, 64)
}

func (p pos) String() string { return strconv.Itoa(p.line) + ":" + strconv.Itoa(p.col) }

// parserErrorOffset is the byte offset a parser error points at.
func parserErrorOffset(data []byte, err error) (int, bool) {
	var pe *unstable.ParserError
	if !errors.As(err, &pe) {
		return 0, false
	}
	off := cap(data) - cap(pe.Highlight)
	if pe.Highlight == nil || off < 0 || off > len(data) {
		return 0, false
	}
	return off, true
}
