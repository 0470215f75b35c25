package wasmbin

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/wasmlet/wasmlet/guests/build"
	"github.com/wasmlet/wasmlet/internal/testkit"
)

var update = flag.Bool("update", false, "rewrite the committed malformed modules")

func TestWrongSignature(t *testing.T) {
	m, err := Parse(testkit.ReadFile(t, build.Testdata(t, "guests/testmodules/wat/wrong_signature.wasm")))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range m.Exports {
		got = append(got, string(e.Kind)+" "+e.Name+" "+e.Type)
	}
	want := []string{
		"memory memory pages: min 1",
		"func wasmlet_abi_version () -> i32",
		"func wasmlet_alloc (i64) -> i32",
		"func wasmlet_describe (i32, i32) -> i64",
		"func wasmlet_discover (i32, i32) -> i64",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("exports:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if len(m.Imports) != 0 || m.Start != -1 || len(m.Code) != 4 || len(m.Memories) != 1 {
		t.Fatalf("imports %v, start %d, %d bodies, memories %v", m.Imports, m.Start, len(m.Code), m.Memories)
	}
}

func sig(d api.FunctionDefinition) string {
	ft := FuncType{}
	for _, p := range d.ParamTypes() {
		ft.Params = append(ft.Params, ValType(p))
	}
	for _, r := range d.ResultTypes() {
		ft.Results = append(ft.Results, ValType(r))
	}
	return ft.String()
}

// modules are every committed test module and two real Go guests.
func modules(t testing.TB) []string {
	dir := filepath.Dir(build.Testdata(t, "guests/testmodules/wat/minimal.wasm"))
	files, _ := filepath.Glob(filepath.Join(dir, "*.wasm"))
	more, _ := filepath.Glob(filepath.Join(dir, "..", "malformed", "*.wasm"))
	files = append(files, more...)
	if !testing.Short() {
		files = append(files, build.Go(t, "guests/customhandler"), build.C(t, "guests/c/counter.c"))
	}
	return files
}

// TestAgreesWithWazero reads every test module and real guests, and checks
// what Parse reads against wazero's decoder: the same verdict on modules
// wazero accepts, the same function imports and exports, the same number of
// bodies and locals, and instructions that end exactly where each body ends.
func TestAgreesWithWazero(t *testing.T) {
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	defer rt.Close(ctx)
	for _, f := range modules(t) {
		bin := testkit.ReadFile(t, f)
		m, err := Parse(bin)
		if err != nil {
			t.Logf("%s: refused: %v", filepath.Base(f), err)
			continue // never handed to wazero: that is the point
		}
		cm, werr := rt.CompileModule(ctx, bin)
		if werr != nil {
			t.Logf("%s: wazero refuses it (%v), Parse reads it", filepath.Base(f), werr)
			continue
		}
		var want, got []string
		for _, d := range cm.ImportedFunctions() {
			mod, name, _ := d.Import()
			want = append(want, "import "+mod+"."+name+" "+sig(d))
		}
		for name, d := range cm.ExportedFunctions() {
			want = append(want, "export "+name+" "+sig(d))
		}
		for _, im := range m.Imports {
			if im.Kind == Func {
				got = append(got, "import "+im.Module+"."+im.Name+" "+im.Type)
			}
		}
		for _, e := range m.Exports {
			if e.Kind == Func {
				got = append(got, "export "+e.Name+" "+e.Type)
			}
		}
		sort.Strings(want)
		sort.Strings(got)
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("%s:\n%s\nwazero:\n%s", filepath.Base(f), strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		if m.ImportedFuncs != len(cm.ImportedFunctions()) {
			t.Errorf("%s: %d imported functions, wazero %d", filepath.Base(f), m.ImportedFuncs, len(cm.ImportedFunctions()))
		}
		for i, b := range m.Code {
			r := NewReader(b.Code, b.Offset)
			n := 0
			for !r.Done() {
				r.Instr()
				n++
			}
			if r.Err() != nil || n == 0 {
				t.Fatalf("%s: body %d: %d instructions, %v", filepath.Base(f), i, n, r.Err())
			}
		}
	}
}

// minimal returns the sections of the minimal module, by id, and its bytes.
func minimal(t testing.TB) (*Module, []byte) {
	bin := testkit.ReadFile(t, build.Testdata(t, "guests/testmodules/wat/minimal.wasm"))
	m, err := Parse(bin)
	if err != nil {
		t.Fatal(err)
	}
	return m, bin
}

func section(id byte, body []byte) []byte {
	return append(AppendU32([]byte{id}, uint32(len(body))), body...)
}

// rebuild is the minimal module with the section of id replaced by body
// (appended when it has none), or with a section added after it when id is 0.
func rebuild(t testing.TB, replace byte, body []byte) []byte {
	m, _ := minimal(t)
	out := []byte("\x00asm\x01\x00\x00\x00")
	done := false
	for _, s := range m.Sections {
		if s.ID == replace {
			out = append(out, section(s.ID, body)...)
			done = true
			continue
		}
		out = append(out, section(s.ID, s.Body)...)
	}
	if !done {
		out = append(out, section(replace, body)...)
	}
	return out
}

// codeWith is a code section of the minimal module whose last body is b and
// whose count says n.
func codeWith(t testing.TB, n uint32, last []byte) []byte {
	m, _ := minimal(t)
	out := AppendU32(nil, n)
	for i, b := range m.Code {
		body := append(append([]byte(nil), b.Locals...), b.Code...)
		if i == len(m.Code)-1 && last != nil {
			body = last
		}
		out = append(AppendU32(out, uint32(len(body))), body...)
	}
	return out
}

// malformed are the hostile modules committed in guests/testmodules/malformed,
// each the minimal module with one count or length that lies, and the error
// Parse gives. Each one used to cost the host dearly; see that directory's
// README.md.
func malformed(t testing.TB) []struct {
	name string
	bin  []byte
	want string
} {
	nameSection := append(AppendU32(nil, 4), "name"...)
	nameSection = append(nameSection, 1)              // function names
	nameSection = append(nameSection, 5)              // subsection size
	nameSection = AppendU32(nameSection, 0xffff_ffff) // entries
	customSection := []byte{SecCustom, 0xff, 0xff, 0xff, 0xff, 0x0f, 11}
	customSection = append(customSection, ".debug_info"...)
	_, bin := minimal(t)
	bin = bin[:len(bin):len(bin)]
	return []struct {
		name string
		bin  []byte
		want string
	}{
		{"huge_function_count", rebuild(t, SecCode, codeWith(t, 0xffff_ffff, nil)),
			"code section: at offset 128: a vector of 4294967295 elements cannot fit in the 44 bytes left"},
		{"huge_local_groups", rebuild(t, SecCode, codeWith(t, 4, []byte{0xff, 0xff, 0xff, 0xff, 0x07, 0x01, 0x7f, 0x0b})),
			"code section: at offset 164: a vector of 2147483647 elements cannot fit in the 3 bytes left"},
		{"huge_locals", rebuild(t, SecCode, codeWith(t, 4, []byte{2, 0xff, 0xff, 0xff, 0xff, 0x07, 0x7e, 0xff, 0xff, 0xff, 0xff, 0x07, 0x7e, 0x0b})),
			"code section: at offset 165: the function declares more than 50000 locals"},
		{"huge_name_count", append(bin, section(SecCustom, nameSection)...),
			"custom section: at offset 237: a vector of 4294967295 elements cannot fit in the 0 bytes left"},
		{"huge_data_length", rebuild(t, SecData, []byte{1, 0, OpI32Const, 0, OpEnd, 0xff, 0xff, 0xff, 0xff, 0x0f}),
			"data section: at offset 185: unexpected end of data: 4294967295 bytes wanted, 0 left"},
		{"huge_custom_section", append(bin[:len(bin):len(bin)], customSection...),
			"custom section: at offset 234: unexpected end of data: 4294967295 bytes wanted, 12 left"},
	}
}

func TestMalformedCorpus(t *testing.T) {
	dir := filepath.Join(filepath.Dir(filepath.Dir(build.Testdata(t, "guests/testmodules/wat/minimal.wasm"))), "malformed")
	for _, c := range malformed(t) {
		path := filepath.Join(dir, c.name+".wasm")
		if *update {
			if err := os.WriteFile(path, c.bin, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if committed := testkit.ReadFile(t, path); !bytes.Equal(committed, c.bin) {
			t.Errorf("%s is not what this test builds (go test -run MalformedCorpus -update ./host/module/wasmbin)", path)
		}
	}
}

// TestMalformedIsRefusedCheaply: each lie is refused with an error naming
// the section and offset, allocating little: never in proportion to what
// the module claims.
func TestMalformedIsRefusedCheaply(t *testing.T) {
	for _, c := range malformed(t) {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err := Parse(c.bin)
		runtime.ReadMemStats(&after)
		if err == nil || err.Error() != c.want {
			t.Errorf("%s: %v\nwant %s", c.name, err, c.want)
		}
		if n := after.TotalAlloc - before.TotalAlloc; n > 64<<10 {
			t.Errorf("%s: Parse allocated %d bytes", c.name, n)
		}
	}
}

func TestRefusals(t *testing.T) {
	hdr := "\x00asm\x01\x00\x00\x00"
	for _, c := range []struct {
		name string
		bin  string
		want string
	}{
		{"empty", "", `not a WebAssembly module: the file starts with "", not "\0asm"`},
		{"text", "(module)", `not a WebAssembly module: the file starts with "(mod"`},
		{"short", "\x00asm\x01", "truncated header"},
		{"component", "\x00asm\x0d\x00\x01\x00", "a WebAssembly component"},
		{"version 2", "\x00asm\x02\x00\x00\x00", "binary format version 2"},
		{"section past the end", hdr + "\x01\x05\x01", "type section: at offset 10: unexpected end of data"},
		{"huge vector", hdr + "\x01\x02\xff\x01", "type section: at offset 10: a vector of 255 elements cannot fit in the 0 bytes left"},
		{"overlong integer", hdr + "\x01\x06\xff\xff\xff\xff\x7f\x00", "type section: at offset 14: integer too large for 32 bits"},
		{"out of order", hdr + "\x07\x01\x00\x01\x01\x00", "at offset 11: the type section comes after the export section"},
		{"twice", hdr + "\x01\x01\x00\x01\x01\x00", "at offset 11: a second type section"},
		{"unknown section", hdr + "\x0e\x00", "at offset 8: unknown section id 14"},
		{"left over", hdr + "\x01\x02\x00\x00", "type section: at offset 11: 1 bytes left over at the end of the section"},
		{"bad export index", hdr + "\x07\x05\x01\x01f\x00\x03", `export "f" names function 3, which does not exist`},
		{"bad type index", hdr + "\x03\x02\x01\x00", "function section: at offset 11: type 0 does not exist (there are 0)"},
		{"bodies without functions", hdr + "\x0a\x04\x01\x02\x00\x0b", "the function section declares 0 functions, but the code section has 1 bodies"},
		{"body without end", hdr + "\x01\x04\x01\x60\x00\x00\x03\x02\x01\x00\x0a\x04\x01\x02\x00\x01",
			"code section: at offset 23: the function body does not end with end (0x0b)"},
		{"start out of range", hdr + "\x08\x01\x05", "the start section names function 5, which does not exist"},
		{"name subsection too long", hdr + "\x00\x09\x04name\x01\x02\x00\x00", "custom section: at offset 18: 1 bytes left over at the end of name subsection 1"},
		{"two name sections", hdr + "\x00\x05\x04name\x00\x05\x04name", "custom section: at offset 22: a second name section"},
		{"name not UTF-8", hdr + "\x07\x05\x01\x01\xff\x00\x00", `export section: at offset 11: name "\xff" is not UTF-8`},
		{"typed reference", hdr + "\x01\x05\x01\x60\x01\x63\x00", "type section: at offset 13: typed function references are not supported"},
		{"gc type", hdr + "\x01\x04\x01\x5f\x00\x00", "type section: at offset 11: type 0 has form 0x5f, not a function type (0x60)"},
	} {
		_, err := Parse([]byte(c.bin))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
}

// TestStartAndNames reads the start function and names a function by its
// export or its entry in the name section.
func TestStartAndNames(t *testing.T) {
	m, err := Parse(testkit.ReadFile(t, build.Testdata(t, "guests/testmodules/wat/start_loop.wasm")))
	if err != nil {
		t.Fatal(err)
	}
	if m.Start < 0 || m.FuncName(uint32(m.Start)) != "spin" {
		t.Fatalf("start %d, named %q", m.Start, m.FuncName(uint32(max(m.Start, 0))))
	}
	hdr := "\x00asm\x01\x00\x00\x00"
	m, err = Parse([]byte(hdr + "\x00\x0d\x04name\x01\x06\x01\x02\x03two"))
	if err != nil || m.FuncName(2) != "two" || m.FuncName(1) != "" {
		t.Fatalf("%v: names %v", err, m.Names)
	}
}

func TestInstructions(t *testing.T) {
	for _, c := range []struct {
		name string
		code string
		want string // the error, or "" for a body read to its end
	}{
		{"every immediate kind", "\x02\x40\x03\x7f\x04\x01\x0e\x02\x00\x01\x02\x10\x05\x11\x01\x00\x1c\x01\x7f" +
			"\x20\x03\x28\x02\x10\x41\x7f\x42\x80\x7f\x43\x00\x00\x00\x00\x44\x00\x00\x00\x00\x00\x00\x00\x00" +
			"\xd0\x70\xfc\x08\x01\x00\xfd\x0c" + strings.Repeat("\x00", 16) + "\xfd\x15\x03\xfe\x03\x00\xfe\x10\x02\x00\x0b", ""},
		{"unknown opcode", "\xc5\x0b", "at offset 0: unknown opcode 0xc5"},
		{"gc", "\xfb\x00\x0b", "at offset 0: unknown opcode 0xfb"},
		{"huge br_table", "\x0e\xff\xff\xff\xff\x0f\x0b", "at offset 1: a vector of 4294967295 elements cannot fit in the 1 bytes left"},
		{"truncated f64", "\x44\x00\x00", "at offset 1: unexpected end of data: 8 bytes wanted, 2 left"},
		{"bad 0xfc", "\xfc\x12", "at offset 2: unknown instruction 0xfc 18"},
	} {
		r := NewReader([]byte(c.code), 0)
		for !r.Done() {
			r.Instr()
		}
		got := ""
		if r.Err() != nil {
			got = r.Err().Error()
		}
		if got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}

// FuzzParse checks that Parse never panics, allocates in proportion to its
// input, and describes a module it accepts consistently.
func FuzzParse(f *testing.F) {
	for _, p := range modules(f) {
		f.Add(testkit.ReadFile(f, p))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		m, err := Parse(b)
		runtime.ReadMemStats(&after)
		if n := after.TotalAlloc - before.TotalAlloc; n > 64*uint64(len(b))+64<<10 {
			t.Fatalf("Parse allocated %d bytes for %d", n, len(b))
		}
		if err != nil {
			return
		}
		for _, ti := range m.Funcs {
			if int(ti) >= len(m.Types) {
				t.Fatalf("function type %d of %d", ti, len(m.Types))
			}
		}
		if len(m.Funcs)-m.ImportedFuncs != len(m.Code) {
			t.Fatalf("%d functions, %d bodies", len(m.Funcs)-m.ImportedFuncs, len(m.Code))
		}
	})
}
