package atomicfile

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/wasmlet/wasmlet/internal/testkit"
)

func TestWriteReplaces(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	if err := Write(path, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A reader holding the old file keeps reading the old content: the new
	// one is a new file renamed over it, never the old one rewritten.
	old, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	for _, perm := range []fs.FileMode{0o644, 0o600, 0o640} {
		if err := Write(path, []byte("new"), perm); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != perm {
			t.Fatalf("mode %v, want %v", fi.Mode().Perm(), perm)
		}
	}
	if b, _ := os.ReadFile(path); string(b) != "new" {
		t.Fatalf("content %q", b)
	}
	if b, _ := io.ReadAll(old); string(b) != "old" {
		t.Fatalf("the old file was modified in place: %q", b)
	}
	testkit.OnlyFiles(t, dir, "f")
}

func TestCopyCheckSeesTheWholeFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "spec.json")
	data := bytes.Repeat([]byte("0123456789"), 100_000)
	var seen string
	err := Copy(path, bytes.NewReader(data), 0o644, func(tmp string) error {
		seen = tmp
		b, err := os.ReadFile(tmp)
		if err != nil || !bytes.Equal(b, data) {
			t.Errorf("the temporary file holds %d bytes (%v), want %d", len(b), err, len(data))
		}
		if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s exists before the check passed", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if base := filepath.Base(seen); !IsTemp(base, "spec.json") || !strings.HasPrefix(base, ".") || !strings.HasSuffix(base, ".tmp") {
		t.Fatalf("temporary file %q is not hidden with a .tmp suffix", base)
	}
}

func TestFailureLeavesTheFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	if err := Write(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	refused := errors.New("does not validate")
	if err := Copy(path, strings.NewReader("new"), 0o644, func(string) error { return refused }); err != refused {
		t.Fatalf("got %v, want the check's error as it is", err)
	}
	broken := io.MultiReader(strings.NewReader("half"), iotest.ErrReader(errRead))
	err := Copy(path, broken, 0o644, nil)
	var se *StepError
	if !errors.As(err, &se) || se.Step != "write the temporary file" || !errors.Is(err, errRead) {
		t.Fatalf("got %v, want the write step failing with the reader's error", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "old" {
		t.Fatalf("content %q after failed writes", b)
	}
	testkit.OnlyFiles(t, dir, "f")
}

var errRead = errors.New("read failed")

func TestWriteErrorsNameTheStep(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "no", "f")
	err := Write(missing, nil, 0o600)
	if err == nil || err.Error() != "directory "+filepath.Dir(missing)+" does not exist: no such file or directory" {
		t.Fatalf("got %v", err)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("%v is not fs.ErrNotExist", err)
	}
	if err := Write(dir+"/", nil, 0o600); err == nil || !strings.Contains(err.Error(), "does not name a file") {
		t.Fatalf("got %v", err)
	}
	// A directory in the way: the rename fails, and nothing is left behind.
	if err := os.Mkdir(filepath.Join(dir, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "d", "x"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	err = Write(filepath.Join(dir, "d"), []byte("x"), 0o600)
	var se *StepError
	if !errors.As(err, &se) || se.Step != "rename the temporary file over it" {
		t.Fatalf("got %v, want the rename step to fail", err)
	}
	testkit.OnlyFiles(t, dir, "d")
}

func TestRemoveStale(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ck")
	for _, name := range []string{"ck", ".ck.123.tmp", ".ck.4.tmp", ".ck..tmp", "ck.tmp", ".other.1.tmp", ".ck.1.tmp.bak"} {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	RemoveStale(path)
	testkit.OnlyFiles(t, dir, ".ck..tmp", ".ck.1.tmp.bak", ".other.1.tmp", "ck", "ck.tmp")
}

func TestRemove(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	if err := Remove(path); err != nil {
		t.Fatalf("removing a missing file: %v", err)
	}
	if err := Write(path, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Remove(path); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("still there: %v", err)
	}
}
