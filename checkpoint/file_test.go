package checkpoint

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/wasmlet/wasmlet/internal/testkit"
)

func TestWriteRead(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ck")
	for _, st := range []*State{sampleState(3, 2, 4), {}, sampleState(50, 4, 8)} {
		if err := Write(path, st); err != nil {
			t.Fatal(err)
		}
		got, err := Read(path)
		if err != nil {
			t.Fatal(err)
		}
		mustEqual(t, got, st)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if mode := fi.Mode(); mode != 0o600 {
		t.Fatalf("mode %v, want -rw-------", mode)
	}
	testkit.OnlyFiles(t, dir, "ck")
}

func TestReadMissing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ck")
	st, err := Read(path)
	if !errors.Is(err, fs.ErrNotExist) || st != nil {
		t.Fatalf("got %v, %v; want fs.ErrNotExist", st, err)
	}
	var ce *CorruptError
	if errors.As(err, &ce) {
		t.Fatal("a missing file is reported as corrupt")
	}
	if !strings.Contains(err.Error(), path) {
		t.Fatalf("error %q does not name %s", err, path)
	}
	if _, err := Read(filepath.Join(path, "below-a-missing-dir")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("got %v, want fs.ErrNotExist", err)
	}
}

func TestReadEmptyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ck")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Read(path)
	var ce *CorruptError
	if !errors.As(err, &ce) || ce.Reason != "the file is empty" || ce.Path != path {
		t.Fatalf("got %#v, want a CorruptError saying the file is empty", err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() != 0 {
		t.Fatal("Read changed the empty file")
	}
}

func TestReadNotARegularFile(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "ck")
	if err := os.Mkdir(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for path, what := range map[string]string{sub: "a directory", fifo: "a named pipe"} {
		_, err := Read(path) // must not block on the FIFO
		var ce *CorruptError
		if !errors.As(err, &ce) || ce.Reason != "it is "+what+", not a regular file" {
			t.Fatalf("%s: got %v, want a CorruptError saying it is %s", path, err, what)
		}
	}
}

// The message of a CorruptError says which file, what is wrong, and the
// commands to inspect it or move it aside, ready to paste.
func TestCorruptErrorMessage(t *testing.T) {
	for _, tc := range []struct{ path, quoted string }{
		{"/var/lib/wasmlet/checkpoint", "/var/lib/wasmlet/checkpoint"},
		{"/tmp/my dir/it's", `'/tmp/my dir/it'\''s'`},
	} {
		msg := (&CorruptError{Path: tc.path, Reason: "it is damaged: checksum mismatch", Expected: true}).Error()
		for _, want := range []string{
			"checkpoint " + tc.path + " is unusable: it is damaged: checksum mismatch.",
			"left untouched",
			"`wasmlet checkpoint verify " + tc.quoted + "`",
			"`wasmlet checkpoint show " + tc.quoted + "`",
			"`mv " + tc.quoted + " " + tc.quoted + ".bad`",
		} {
			if !strings.Contains(msg, want) {
				t.Errorf("message does not contain %q:\n%s", want, msg)
			}
		}
	}
	if msg := (&CorruptError{Reason: "the file is empty"}).Error(); msg != "checkpoint data is unusable: the file is empty" {
		t.Errorf("without a path: %q", msg)
	}
}

// TestMoveAsideOnlyACheckpoint: moving a file aside is advised for a file
// that starts as a checkpoint does, or that is where a host keeps its
// checkpoint (Expected), never for some other file given by mistake.
func TestMoveAsideOnlyACheckpoint(t *testing.T) {
	dir := t.TempDir()
	damaged := filepath.Join(dir, "checkpoint")
	if err := Write(damaged, sampleState(1, 1, 1)); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(damaged)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	truncated := filepath.Join(dir, "truncated")
	other := filepath.Join(dir, "passwd")
	for path, data := range map[string][]byte{damaged: b, truncated: b[:5], other: []byte("root:x:0:0:root:/root:/bin/bash\n")} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		path     string
		expected bool
		mv       bool
		want     string
	}{
		{damaged, false, true, "is unusable: it is damaged"},
		{truncated, false, true, "is unusable: it is truncated"},
		{other, false, false, other + " cannot be a checkpoint: it is not a wasmlet checkpoint: it starts with \"root:x:0\""},
		{other, true, true, "is unusable: it is not a wasmlet checkpoint"},
	} {
		_, err := Read(tc.path)
		var ce *CorruptError
		if !errors.As(err, &ce) {
			t.Fatalf("%s: %v", tc.path, err)
		}
		ce.Expected = tc.expected
		msg := ce.Error()
		if strings.Contains(msg, "mv ") != tc.mv || !strings.Contains(msg, tc.want) {
			t.Errorf("%s (expected %v): %s", tc.path, tc.expected, msg)
		}
	}
}

func TestWriteMissingDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "missing")
	path := filepath.Join(dir, "ck")
	err := Write(path, sampleState(1, 1, 1))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("got %v, want fs.ErrNotExist", err)
	}
	if want := "checkpoint: write " + path + ": directory " + dir + " does not exist"; !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("error %q does not start with %q", err, want)
	}
}

func TestWriteBadPath(t *testing.T) {
	dir := t.TempDir()
	if err := Write(dir+"/", &State{}); err == nil || !strings.Contains(err.Error(), "does not name a file") {
		t.Fatalf("got %v", err)
	}
	// A directory in the way: the rename fails, nothing is left behind.
	sub := filepath.Join(dir, "ck")
	if err := os.Mkdir(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(sub, "keep"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	err := Write(sub, &State{})
	if err == nil || !strings.Contains(err.Error(), "rename the temporary file over it") {
		t.Fatalf("got %v, want the rename to fail", err)
	}
	testkit.OnlyFiles(t, dir, "ck")
}

func TestWriteReplacesAtomically(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ck")
	old := sampleState(3, 1, 2)
	if err := Write(path, old); err != nil {
		t.Fatal(err)
	}
	// An encoding failure leaves the old file in place.
	bad := &State{Allocations: []*Allocation{{Workload: "\xff"}}}
	if err := Write(path, bad); err == nil || !strings.Contains(err.Error(), "checkpoint: write "+path+": encode state") {
		t.Fatalf("got %v, want an encoding error naming the path", err)
	}
	got, err := Read(path)
	if err != nil {
		t.Fatal(err)
	}
	mustEqual(t, got, old)
	testkit.OnlyFiles(t, dir, "ck")
}

// checkReadOnlyDir checks Write against dir, a directory that holds the
// checkpoint "ck" with state old and that no one, root included, can write
// in. It reports through errorf so that it can run on any goroutine.
func checkReadOnlyDir(dir string, old *State, errorf func(format string, args ...any)) {
	// Prove the directory is really read-only, or the test proves nothing.
	if f, err := os.CreateTemp(dir, "probe"); err == nil {
		f.Close()
		os.Remove(f.Name())
		errorf("%s is writable: the read-only test would prove nothing", dir)
		return
	}
	path := filepath.Join(dir, "ck")
	err := Write(path, sampleState(5, 1, 1))
	if err == nil {
		errorf("Write into read-only %s succeeded", dir)
		return
	}
	if want := "checkpoint: write " + path + ": create a temporary file in " + dir + ": "; !strings.HasPrefix(err.Error(), want) {
		errorf("error %q does not start with %q", err, want)
	}
	if !errors.Is(err, syscall.EROFS) && !errors.Is(err, syscall.EACCES) {
		errorf("error %v is neither EROFS nor EACCES", err)
	}
	got, err := Read(path)
	if err != nil {
		errorf("the old checkpoint no longer reads: %v", err)
	} else if !bytes.Equal(mustMarshal(got), mustMarshal(old)) {
		errorf("the old checkpoint changed")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		errorf("%s holds %d entries after the failed write, want only ck", dir, len(entries))
	}
}

func mustMarshal(st *State) []byte {
	b, err := encode(st)
	if err != nil {
		panic(err)
	}
	return b
}

func TestWriteReadOnlyDirectory(t *testing.T) {
	old := sampleState(3, 1, 2)
	if os.Geteuid() != 0 {
		dir := t.TempDir()
		if err := Write(filepath.Join(dir, "ck"), old); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dir, 0o555); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Chmod(dir, 0o755) })
		t.Log("not root: using a directory with mode 0555")
		checkReadOnlyDir(dir, old, t.Errorf)
		return
	}
	// Root ignores permissions: use a file system mounted read-only.
	t.Log("root: using a read-only tmpfs in a private mount namespace")
	inPrivateMount(t, "1m", true,
		func(dir string) error { return Write(filepath.Join(dir, "ck"), old) },
		func(dir string, errorf func(string, ...any)) { checkReadOnlyDir(dir, old, errorf) })
}

// A full disk fails the write at the step that hit it, and leaves the old
// checkpoint and no temporary file.
func TestWriteDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root, to mount a small tmpfs in a private mount namespace")
	}
	old := sampleState(3, 1, 2)
	inPrivateMount(t, "64k", false,
		func(dir string) error { return Write(filepath.Join(dir, "ck"), old) },
		func(dir string, errorf func(string, ...any)) {
			path := filepath.Join(dir, "ck")
			err := Write(path, sampleState(2000, 4, 8))
			if !errors.Is(err, syscall.ENOSPC) {
				errorf("got %v, want ENOSPC", err)
				return
			}
			if want := "checkpoint: write " + path + ": write the temporary file: "; !strings.HasPrefix(err.Error(), want) {
				errorf("error %q does not start with %q", err, want)
			}
			if got, err := Read(path); err != nil || !bytes.Equal(mustMarshal(got), mustMarshal(old)) {
				errorf("the old checkpoint did not survive: %v", err)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 1 {
				errorf("%s holds %d entries after the failed write, want only ck", dir, len(entries))
			}
		})
}
