// Package docs checks the repository's documents against the code: the
// benchmarks README.md quotes, the files its documents link to, and the way
// README.md and ABI.md tell a module author to build a Go module.
package docs

import (
	"bufio"
	"bytes"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const root = "../.."

// benchRef is a benchmark a row of README.md's performance table names.
type benchRef struct {
	row  int    // 1-based, in the table
	name string // BenchmarkX or BenchmarkX/sub/...
	pkg  string // directory below the repository root
}

var (
	benchName = regexp.MustCompile("`(Benchmark[^`]+)`")
	benchPkg  = regexp.MustCompile(" in `([^`]+)`")
)

// performanceTable returns the benchmarks of each row of the table under
// "## Performance", and fails unless every row names at least one, with its
// package.
func performanceTable(t *testing.T) []benchRef {
	data, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(data), "\n## Performance\n")
	if !ok {
		t.Fatal("README.md has no \"## Performance\" section")
	}
	if i := strings.Index(section, "\n## "); i >= 0 {
		section = section[:i]
	}
	var refs []benchRef
	row := 0
	for line := range strings.SplitSeq(section, "\n") {
		if !strings.HasPrefix(line, "|") || strings.HasPrefix(line, "|---") || strings.HasPrefix(line, "| what ") {
			continue
		}
		row++
		cells := strings.Split(strings.Trim(line, "|"), "|")
		where := cells[len(cells)-1]
		names := benchName.FindAllStringSubmatch(where, -1)
		pkg := benchPkg.FindStringSubmatch(where)
		if len(names) == 0 || pkg == nil {
			t.Errorf("README.md performance table, row %d names no benchmark `BenchmarkX` in `package`: %s", row, line)
			continue
		}
		for _, n := range names {
			refs = append(refs, benchRef{row, n[1], pkg[1]})
		}
	}
	if row == 0 {
		t.Fatal("README.md's performance table has no rows")
	}
	return refs
}

// benchmarks lists the Benchmark functions of the package in dir.
func benchmarks(t *testing.T, dir string) map[string]bool {
	files, err := filepath.Glob(filepath.Join(root, dir, "*_test.go"))
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]bool{}
	fset := token.NewFileSet()
	for _, f := range files {
		file, err := parser.ParseFile(fset, f, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range file.Decls {
			if fn, ok := d.(*ast.FuncDecl); ok && fn.Recv == nil && strings.HasPrefix(fn.Name.Name, "Benchmark") {
				found[fn.Name.Name] = true
			}
		}
	}
	return found
}

// TestPerformanceTableNamesBenchmarks checks that every benchmark README.md
// quotes a figure from exists in the package the row names.
func TestPerformanceTableNamesBenchmarks(t *testing.T) {
	for _, r := range performanceTable(t) {
		fn, _, _ := strings.Cut(r.name, "/")
		if !benchmarks(t, r.pkg)[fn] {
			t.Errorf("README.md performance table, row %d: %s names func %s, which %s does not have", r.row, r.name, fn, r.pkg)
		}
	}
}

// TestPerformanceTableInResults checks that every benchmark the table names
// was run, in its package, for the committed results that `make bench`
// writes and the figures are quoted from: bench/results.txt, the whole set,
// and any narrower run committed beside it (bench/*.txt, `make bench
// BENCH_OUT=...`). A row still waiting for its figure fails too.
func TestPerformanceTableInResults(t *testing.T) {
	refs := performanceTable(t)
	files, err := filepath.Glob(filepath.Join(root, "bench", "*.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(files, filepath.Join(root, "bench", "results.txt")) {
		t.Fatal("bench/results.txt does not exist: run `make bench` (the whole set) and commit it")
	}
	var data []byte
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		data = append(append(data, b...), '\n')
	}
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(readme), "the next `make bench`") {
		t.Error("README.md's performance table still waits for figures from \"the next `make bench`\"")
	}
	ran := map[string]bool{} // "pkg name", every prefix of a sub-benchmark's name
	pkg := ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if p, ok := strings.CutPrefix(line, "pkg: github.com/wasmlet/wasmlet/"); ok {
			pkg = p
			continue
		}
		f := strings.Fields(line)
		if len(f) < 3 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		name := f[0]
		if i := strings.LastIndexByte(name, '-'); i > 0 { // the GOMAXPROCS suffix
			name = name[:i]
		}
		for {
			ran[pkg+" "+name] = true
			i := strings.LastIndexByte(name, '/')
			if i < 0 {
				break
			}
			name = name[:i]
		}
	}
	for _, r := range refs {
		if !ran[r.pkg+" "+r.name] {
			t.Errorf("README.md performance table, row %d: %s in %s is not in bench/*.txt: run `make bench` and update the figures", r.row, r.name, r.pkg)
		}
	}
}

// mdLink is a relative link in a Markdown document: [text](target).
var mdLink = regexp.MustCompile(`\]\(([^)#\s]+)(#[^)\s]*)?\)`)

// TestMarkdownLinks checks that every relative link in the repository's
// Markdown documents names a file or directory that exists.
func TestMarkdownLinks(t *testing.T) {
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "build") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".md") {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for i, line := range strings.Split(string(data), "\n") {
			for _, m := range mdLink.FindAllStringSubmatch(line, -1) {
				target := m[1]
				if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
					continue
				}
				if _, err := os.Stat(filepath.Join(filepath.Dir(path), target)); err != nil {
					rel, _ := filepath.Rel(root, path)
					t.Errorf("%s:%d: link to %s, which does not exist", rel, i+1, target)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// testName is a test, fuzz target or benchmark a document cites.
var testName = regexp.MustCompile("`((?:Test|Fuzz|Benchmark)[A-Z0-9]\\w*)")

// TestDocumentsCiteExistingTests checks that every test, fuzz target and
// benchmark the Markdown documents cite (RELIABILITY.md cites dozens) is a
// function of some package's tests.
func TestDocumentsCiteExistingTests(t *testing.T) {
	have := map[string]bool{}
	cited := map[string][]string{} // name: where
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "build" || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		switch {
		case strings.HasSuffix(path, "_test.go"):
			file, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.SkipObjectResolution)
			if err != nil {
				return err
			}
			for _, d := range file.Decls {
				if fn, ok := d.(*ast.FuncDecl); ok && fn.Recv == nil {
					have[fn.Name.Name] = true
				}
			}
		case strings.HasSuffix(path, ".md"):
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(root, path)
			for i, line := range strings.Split(string(data), "\n") {
				for _, m := range testName.FindAllStringSubmatch(line, -1) {
					cited[m[1]] = append(cited[m[1]], rel+":"+strconv.Itoa(i+1))
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(cited) == 0 {
		t.Fatal("no document cites a test: the pattern is broken")
	}
	for name, where := range cited {
		if !have[name] {
			t.Errorf("%s cites %s, which no package's tests define", strings.Join(where, ", "), name)
		}
	}
}
