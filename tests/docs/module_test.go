package docs

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/wasmlet/wasmlet/abi"
	"github.com/wasmlet/wasmlet/guests/build"
	"github.com/wasmlet/wasmlet/host/module"
	"github.com/wasmlet/wasmlet/host/module/conformance"
)

// fenced returns the fenced code blocks of language lang in text, in order.
func fenced(text, lang string) []string {
	var blocks []string
	for {
		_, rest, ok := strings.Cut(text, "\n```"+lang+"\n")
		if !ok {
			return blocks
		}
		block, after, ok := strings.Cut(rest, "\n```\n")
		if !ok {
			return blocks
		}
		blocks = append(blocks, block+"\n")
		text = "\n" + after
	}
}

// section returns the part of file (below the repository root) under the
// heading, up to the next heading of the same level.
func section(t *testing.T, file, heading string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, file))
	if err != nil {
		t.Fatal(err)
	}
	_, s, ok := strings.Cut(string(data), "\n"+heading+"\n")
	if !ok {
		t.Fatalf("%s has no %q section", file, heading)
	}
	if i := strings.Index(s, "\n## "); i >= 0 {
		s = s[:i]
	}
	return s
}

var (
	exampleResource = regexp.MustCompile(`Resource:\s*"([^"]+)"`)
	exampleDevice   = regexp.MustCompile(`\bID:\s*"([^"]+)"`)
)

// TestGoModuleOutsideTheRepository does what README.md ("Writing a module")
// and ABI.md ("Building a module") tell a module author: it writes the
// example source in a directory outside the repository, runs the documented
// commands there (with $WASMLET this checkout, no network, and an empty
// module cache, so that any dependency of the SDK beyond the standard library
// fails the build), and loads the module it builds in the real host, which
// must find the example's resource and devices and pass the conformance
// checks. Changing the example or the commands in either document changes
// what this test runs.
func TestGoModuleOutsideTheRepository(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a module with the go command")
	}
	repo, err := filepath.Abs(root)
	if err != nil {
		t.Fatal(err)
	}
	cache, err := module.NewCache(filepath.Join(build.CacheDir(), "wazero"))
	if err != nil {
		t.Fatal(err)
	}
	for _, doc := range []struct{ file, heading string }{
		{"README.md", "## Writing a module"},
		{"abi/ABI.md", "## Building a module"},
	} {
		t.Run(doc.file, func(t *testing.T) {
			text := section(t, doc.file, doc.heading)
			src := fenced(text, "go")
			if len(src) == 0 {
				t.Fatalf("%s %q has no Go example", doc.file, doc.heading)
			}
			var script string
			for _, b := range fenced(text, "sh") {
				if strings.Contains(b, "go mod edit -replace") {
					script = b
					break
				}
			}
			if script == "" {
				t.Fatalf("%s %q shows no commands with `go mod edit -replace`", doc.file, doc.heading)
			}

			dir := t.TempDir()
			if rel, err := filepath.Rel(repo, dir); err == nil && !strings.HasPrefix(rel, "..") {
				t.Fatalf("the temporary directory %s is inside the repository; set TMPDIR elsewhere", dir)
			}
			if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(src[0]), 0o644); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command("sh", "-ex", "-c", script)
			cmd.Dir = dir
			// -trimpath makes the module's bytes the same from run to run,
			// so that the host's compilation cache spares a recompile.
			cmd.Env = append(os.Environ(), "WASMLET="+repo, "GOPROXY=off", "GOFLAGS=-mod=mod -trimpath",
				"GOMODCACHE="+t.TempDir(), "GOWORK=off", "GOTOOLCHAIN=local")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("the commands of %s %q fail: %v\n%s", doc.file, doc.heading, err, out)
			}
			built, _ := filepath.Glob(filepath.Join(dir, "*.wasm"))
			if len(built) != 1 {
				t.Fatalf("the commands built %d .wasm files, want 1: %q", len(built), built)
			}

			ctx := context.Background()
			opts := module.Options{MemoryLimit: 32 << 20, Cache: cache}
			m, err := module.Load(ctx, built[0], opts)
			if err != nil {
				t.Fatalf("the host refuses the example module: %v", err)
			}
			defer m.Close(ctx)
			d := m.Description()
			res := exampleResource.FindStringSubmatch(src[0])
			if res == nil || d.Kind != abi.KindDeviceSource || d.Resource != res[1] {
				t.Errorf("describe = %+v; the example serves %q", d, res)
			}
			devs, err := m.Discover(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var got, want []string
			for _, dev := range devs {
				got = append(got, dev.ID)
			}
			for _, id := range exampleDevice.FindAllStringSubmatch(src[0], -1) {
				want = append(want, id[1])
			}
			if len(want) == 0 || !reflect.DeepEqual(got, want) {
				t.Errorf("discover found %q; the example offers %q", got, want)
			}
			conformance.Run(t, built[0], opts)
		})
	}
}

// goDirective is the version a go.mod's go directive names.
func goDirective(t *testing.T, gomod string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, gomod))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "go "); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("%s has no go directive", gomod)
	return ""
}

// TestGoVersionIsDocumented: the oldest Go the documents promise a module
// author is the go directive of the modules the author depends on.
func TestGoVersionIsDocumented(t *testing.T) {
	v := goDirective(t, "abi/go.mod")
	if sdk := goDirective(t, "guests/sdk/go.mod"); sdk != v {
		t.Fatalf("abi/go.mod says go %s, guests/sdk/go.mod go %s", v, sdk)
	}
	sdkDoc, err := os.ReadFile(filepath.Join(root, "guests/sdk/doc.go"))
	if err != nil {
		t.Fatal(err)
	}
	promise := "Go " + v + " or later"
	for where, text := range map[string]string{
		`README.md "Writing a module"`: section(t, "README.md", "## Writing a module"),
		`ABI.md "Building a module"`:   section(t, "abi/ABI.md", "## Building a module"),
		"guests/sdk/doc.go":            strings.ReplaceAll(string(sdkDoc), "\n// ", " "),
	} {
		if !strings.Contains(strings.ReplaceAll(text, "\n", " "), promise) {
			t.Errorf("%s does not say %q, which the modules' go directive means", where, promise)
		}
	}
}
