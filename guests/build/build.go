// Package build compiles the guest modules in guests/ for tests and tools, so
// that `go test` works right after `git clone` with nothing built.
//
// Builds are cached on disk by a hash of everything that goes into them (the
// guest's sources, the SDK, the abi package, go.mod, the toolchain), so the
// suite compiles each guest once per machine, not once per test package.
// Concurrent builds of the same guest (test packages run in parallel) are
// safe: each writes a temporary file and renames it into place.
package build

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
)

// rootModule is the module path of the repository's main module.
const rootModule = "github.com/wasmlet/wasmlet"

// Root returns the repository root: the nearest ancestor of the working
// directory whose go.mod is the main module's. Modules nested in the
// repository (tests/k8s) build the same guests from the same root.
func Root() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && modulePath(b) == rootModule {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod of module %s above the working directory", rootModule)
		}
		dir = parent
	}
}

// modulePath is the path the module directive of a go.mod names.
func modulePath(gomod []byte) string {
	for _, line := range strings.Split(string(gomod), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "module" {
			return strings.Trim(f[1], `"`)
		}
	}
	return ""
}

// CacheDir is where built guests are kept: $WASMLET_GUEST_CACHE, or
// wasmlet/guests under the user cache directory.
func CacheDir() string {
	if d := os.Getenv("WASMLET_GUEST_CACHE"); d != "" {
		return d
	}
	base, err := os.UserCacheDir()
	if err != nil {
		base = os.TempDir()
	}
	return filepath.Join(base, "wasmlet", "guests")
}

// SharedCompilationCache makes stateDir, the state directory of a wasmlet
// a test runs, with its compilation-cache (where wasmlet keeps compiled
// modules) a link to the directory name under CacheDir, so that the
// modules are compiled once across tests and runs: a cold compile under the
// race detector takes seconds.
func SharedCompilationCache(t testing.TB, stateDir, name string) {
	t.Helper()
	shared := filepath.Join(CacheDir(), name)
	for _, d := range []string{shared, stateDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(shared, filepath.Join(stateDir, "compilation-cache")); err != nil {
		t.Fatal(err)
	}
}

var mu sync.Mutex // one build at a time per process: two cores, big links

// GoModule builds the Go guest in directory dir (relative to the repository
// root, e.g. "guests/counter") and returns the path of the .wasm file.
func GoModule(dir string) (string, error) {
	root, err := Root()
	if err != nil {
		return "", err
	}
	key, err := hashInputs(root, []string{dir, "guests/sdk", "abi"}, []string{"go.mod", "go.sum"}, runtime.Version())
	if err != nil {
		return "", err
	}
	out := filepath.Join(CacheDir(), filepath.Base(dir)+"-"+key+".wasm")
	return out, cached(out, func(tmp string) error {
		cmd := exec.Command("go", "build", "-buildmode=c-shared", "-trimpath", "-o", tmp, "./"+dir)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %v\n%s", dir, err, b)
		}
		return nil
	})
}

// CModule builds the C guest file (relative to the repository root, e.g.
// "guests/c/counter.c") with clang for wasm32-wasi as a reactor.
func CModule(file string) (string, error) {
	root, err := Root()
	if err != nil {
		return "", err
	}
	clang, err := exec.LookPath("clang")
	if err != nil {
		return "", fmt.Errorf("building %s needs clang with wasi-libc (Debian: apt-get install clang lld wasi-libc libclang-rt-dev-wasm32): %w", file, err)
	}
	key, err := hashInputs(root, []string{filepath.Dir(file)}, nil, clang)
	if err != nil {
		return "", err
	}
	base := strings.TrimSuffix(filepath.Base(file), ".c")
	out := filepath.Join(CacheDir(), "c-"+base+"-"+key+".wasm")
	return out, cached(out, func(tmp string) error {
		cmd := exec.Command(clang, CFlags(filepath.Join(root, file), tmp)...)
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("clang %s: %v\n%s", file, err, b)
		}
		return nil
	})
}

// CFlags are the clang arguments that build a C guest: see ABI.md.
func CFlags(src, out string) []string {
	return []string{"--target=wasm32-wasi", "-mexec-model=reactor", "-O2", "-Wall", "-Werror",
		"-o", out, src}
}

// Go and C are GoModule and CModule for tests: they fail the test on error.
func Go(t testing.TB, dir string) string { t.Helper(); return must(t, GoModule, dir) }
func C(t testing.TB, file string) string { t.Helper(); return must(t, CModule, file) }

func must(t testing.TB, build func(string) (string, error), src string) string {
	t.Helper()
	p, err := build(src)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Testdata returns the absolute path of a committed file under the
// repository root (hand-written .wasm test modules, for example).
func Testdata(t testing.TB, rel string) string {
	t.Helper()
	root, err := Root()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(root, rel)
	if _, err := os.Stat(p); err != nil {
		t.Fatal(err)
	}
	return p
}

// cached runs build to make out, unless out exists. The compiler writes the
// temporary file itself, so internal/atomicfile (which writes bytes it is
// given) does not fit; a rename is enough, and no fsync is needed: a cache
// entry lost in a crash is built again.
func cached(out string, build func(tmp string) error) error {
	mu.Lock()
	defer mu.Unlock()
	if _, err := os.Stat(out); err == nil {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	tmp := fmt.Sprintf("%s.%d.tmp", out, os.Getpid())
	defer os.Remove(tmp)
	if err := build(tmp); err != nil {
		return err
	}
	return os.Rename(tmp, out)
}

// hashInputs hashes every file under dirs, the listed files, and extra.
func hashInputs(root string, dirs, files []string, extra string) (string, error) {
	var paths []string
	for _, d := range dirs {
		err := filepath.WalkDir(filepath.Join(root, d), func(p string, e fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !e.IsDir() && !strings.HasSuffix(p, "_test.go") {
				paths = append(paths, p)
			}
			return nil
		})
		if err != nil {
			return "", err
		}
	}
	for _, f := range files {
		paths = append(paths, filepath.Join(root, f))
	}
	sort.Strings(paths)
	h := sha256.New()
	io.WriteString(h, extra)
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return "", err
		}
		rel, _ := filepath.Rel(root, p)
		io.WriteString(h, "\x00"+rel+"\x00")
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			return "", err
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}
