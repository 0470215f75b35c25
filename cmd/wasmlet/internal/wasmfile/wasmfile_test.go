package wasmfile

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/wasmlet/wasmlet/guests/build"
)

func read(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestWrongSignature(t *testing.T) {
	info, err := Parse(read(t, build.Testdata(t, "guests/testmodules/wat/wrong_signature.wasm")))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range info.Exports {
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
	if len(info.Imports) != 0 {
		t.Fatalf("imports %v", info.Imports)
	}
}

func sig(d api.FunctionDefinition) string {
	names := func(ts []api.ValueType) string {
		var s []string
		for _, t := range ts {
			s = append(s, api.ValueTypeName(t))
		}
		return strings.Join(s, ", ")
	}
	out := "(" + names(d.ParamTypes()) + ")"
	if len(d.ResultTypes()) > 0 {
		out += " -> " + names(d.ResultTypes())
	}
	return out
}

// TestAgreesWithWazero reads every test module and a real Go guest and
// checks the function imports and exports against wazero's decoder.
func TestAgreesWithWazero(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(filepath.Dir(build.Testdata(t, "guests/testmodules/wat/minimal.wasm")), "*.wasm"))
	files = append(files, build.Go(t, "guests/customhandler"))
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	defer rt.Close(ctx)
	for _, f := range files {
		bin := read(t, f)
		info, err := Parse(bin)
		cm, werr := rt.CompileModule(ctx, bin)
		if werr != nil {
			if err == nil && filepath.Base(f) != "not_wasm.wasm" {
				t.Logf("%s: wazero refuses it (%v), Parse reads it", filepath.Base(f), werr)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		var want, got []string
		for _, d := range cm.ImportedFunctions() {
			mod, name, _ := d.Import()
			want = append(want, "import "+mod+"."+name+" "+sig(d))
		}
		for name, d := range cm.ExportedFunctions() {
			want = append(want, "export "+name+" "+sig(d))
		}
		for _, im := range info.Imports {
			if im.Kind == Func {
				got = append(got, "import "+im.Module+"."+im.Name+" "+im.Type)
			}
		}
		for _, e := range info.Exports {
			if e.Kind == Func {
				got = append(got, "export "+e.Name+" "+e.Type)
			}
		}
		sort.Strings(want)
		sort.Strings(got)
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("%s:\n%s\nwazero:\n%s", filepath.Base(f), strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
}

func TestRefusals(t *testing.T) {
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
		{"section past the end", "\x00asm\x01\x00\x00\x00\x01\x05\x01", "section 1: at offset 10: unexpected end of data"},
		{"huge vector", "\x00asm\x01\x00\x00\x00\x01\x02\xff\x01", "type section: at offset 12: vector of 255 elements cannot fit in 0 bytes"},
		{"overlong integer", "\x00asm\x01\x00\x00\x00\x01\x06\xff\xff\xff\xff\x7f\x00", "integer too large for 32 bits"},
		{"out of order", "\x00asm\x01\x00\x00\x00\x07\x01\x00\x01\x01\x00", "section 1 at offset 13 comes after section 7"},
		{"bad export index", "\x00asm\x01\x00\x00\x00\x07\x05\x01\x01f\x00\x03", `export "f" names function 3, which does not exist`},
	} {
		_, err := Parse([]byte(c.bin))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
}

func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("../../../../guests/testmodules/wat/*.wasm")
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		Parse(b) // must not panic
	})
}
