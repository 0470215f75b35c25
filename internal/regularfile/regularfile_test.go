package regularfile

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/wasmlet/wasmlet/internal/testkit"
)

func TestReadRegularFilesAndLinksToThem(t *testing.T) {
	dir := t.TempDir()
	file := testkit.WriteFile(t, filepath.Join(dir, "a.yaml"), "12345")
	link := filepath.Join(dir, "link.yaml")
	if err := os.Symlink(file, link); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{file, link} {
		for _, limit := range []int64{5, 1 << 20} {
			got, err := Read(path, limit)
			if err != nil || string(got) != "12345" {
				t.Errorf("Read(%s, %d) = %q, %v; want the content", path, limit, got, err)
			}
		}
	}
	_, err := Read(file, 4)
	var re *RefusedError
	if !errors.Is(err, ErrTooLarge) || !errors.As(err, &re) || re.Path != file ||
		err.Error() != file+": it is 5 bytes, more than the limit of 4" {
		t.Errorf("Read over the limit: %v; want ErrTooLarge naming the file and both sizes", err)
	}
	if _, err := Read(filepath.Join(dir, "none"), 4); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Read of a missing file: %v; want ErrNotExist", err)
	}
}

// Nothing but a regular file is read, and nothing blocks: a named pipe
// without a writer, which os.ReadFile would wait on forever, a socket, a
// directory, a device, and links to them.
func TestReadRefusesWithoutBlocking(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo.yaml")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "s.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	fifoLink := filepath.Join(dir, "link.yaml")
	if err := os.Symlink(fifo, fifoLink); err != nil {
		t.Fatal(err)
	}
	for path, what := range map[string]string{
		fifo: "a named pipe", fifoLink: "a named pipe", sock: "a socket", dir: "a directory", os.DevNull: "a device",
	} {
		_, err := Read(path, 1<<20)
		if !errors.Is(err, ErrNotRegular) || !strings.Contains(err.Error(), path+": it is "+what+", not a regular file") {
			t.Errorf("Read(%s) = %v; want ErrNotRegular saying it is %s", path, err, what)
		}
	}
}
