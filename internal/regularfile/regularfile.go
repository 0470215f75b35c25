// Package regularfile reads a file that wasmlet found in a directory it
// watches or was pointed at, without trusting it to be what its name says.
// It is the one way the host reads module files, checkpoints, device class
// files and the files the CLI inspects.
//
// [Read] opens without blocking (a named pipe called x.yaml would otherwise
// wedge the reader until something writes to it), refuses anything that is
// not a regular file (pipe, socket, device, directory), and reads at most
// its limit, also when the file grows while it is read.
//
// The module root's internal/ holds it so that every part of the module
// can import it.
package regularfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
)

var (
	// ErrNotRegular: the path names a named pipe, socket, device or
	// directory.
	ErrNotRegular = errors.New("not a regular file")
	// ErrTooLarge: the file holds more than the limit.
	ErrTooLarge = errors.New("larger than the limit")
)

// RefusedError is a file Read refused: not a regular file, or too large.
type RefusedError struct {
	Path   string
	Reason string // what is wrong, without the path: "it is a named pipe, not a regular file"
	Err    error  // ErrNotRegular or ErrTooLarge
}

func (e *RefusedError) Error() string { return e.Path + ": " + e.Reason }
func (e *RefusedError) Unwrap() error { return e.Err }

// Read returns the content of the regular file at path, a symbolic link to
// one included, if it holds at most limit bytes. The error names path and
// wraps ErrNotRegular or ErrTooLarge for those cases, and the *fs.PathError
// of the failing call otherwise. A refusal is a *RefusedError.
func Read(path string, limit int64) ([]byte, error) {
	// Stat before opening: opening a device can have effects of its own
	// (a watchdog starts counting), and a socket cannot be opened at all.
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if err := check(path, fi, limit); err != nil {
		return nil, err
	}
	// O_NONBLOCK: should the path have become a FIFO since, opening it
	// returns at once instead of waiting for a writer; it changes nothing
	// for a regular file. The open file is checked again.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err = f.Stat(); err != nil {
		return nil, err
	}
	if err := check(path, fi, limit); err != nil {
		return nil, err
	}
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, &RefusedError{path, fmt.Sprintf("it grew past the limit of %d bytes while it was read", limit), ErrTooLarge}
	}
	return b, nil
}

func check(path string, fi fs.FileInfo, limit int64) error {
	if !fi.Mode().IsRegular() {
		return &RefusedError{path, "it is " + Describe(fi.Mode()) + ", not a regular file", ErrNotRegular}
	}
	if fi.Size() > limit {
		return &RefusedError{path, fmt.Sprintf("it is %d bytes, more than the limit of %d", fi.Size(), limit), ErrTooLarge}
	}
	return nil
}

// Describe says what kind of file mode m is, for messages: "a directory",
// "a named pipe", "a socket", "a device", "a regular file".
func Describe(m fs.FileMode) string {
	switch {
	case m.IsRegular():
		return "a regular file"
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeDevice != 0:
		return "a device"
	case m&fs.ModeSymlink != 0:
		return "a symbolic link"
	}
	return "a special file (" + m.Type().String() + ")"
}
