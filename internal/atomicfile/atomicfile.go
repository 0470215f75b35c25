// Package atomicfile replaces files atomically and durably, the one way
// wasmlet writes a file that a crash must not leave half written: the
// checkpoint, CDI specs, installed modules, the test fixtures that a
// watcher reads.
//
// [Write] writes the new content to a temporary file in the same
// directory, fsyncs it, renames it over the target and fsyncs the
// directory, so that after a crash at any instant the target holds either
// its previous content or the new one, and a reader or a directory watcher
// never sees a partial file. Temporary files are named ".NAME.*.tmp":
// hidden (watchers of the directory skip dot files) and ending in ".tmp"
// (the CDI cache reads only *.json and *.yaml); [RemoveStale] removes those
// a crashed process left behind.
//
// The module root's internal/ holds it so that every part of the module
// can import it, deploy/ included.
package atomicfile

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// Write replaces the file at path with data and permissions perm. See
// [Copy].
func Write(path string, data []byte, perm os.FileMode) error {
	return Copy(path, bytes.NewReader(data), perm, nil)
}

// Copy replaces the file at path with what r holds and permissions perm
// (not subject to the umask): it writes a temporary file in path's
// directory, fsyncs it, calls check (if not nil) with the temporary file's
// path, renames the file over path and fsyncs the directory. The directory
// must exist.
//
// An error from check is returned as it is; any other error is a
// [*StepError] naming the step that failed, and the caller adds what it
// was writing and where. On failure the temporary file is removed and path
// is as it was — except when only the final directory fsync failed: then
// path holds the new content, but may lose it in a crash.
func Copy(path string, r io.Reader, perm os.FileMode, check func(tmp string) error) (err error) {
	return replace(path, r, perm, check, true)
}

// Replace is Copy without the fsyncs: a reader or a watcher still sees the
// old content or the new one, never a part, but a crash may leave the old
// one, or none. It is for files wasmlet writes again from durable state
// when it starts (the CDI specs of claims), where a crash costs nothing
// and an fsync per write would.
func Replace(path string, data []byte, perm os.FileMode, check func(tmp string) error) error {
	return replace(path, bytes.NewReader(data), perm, check, false)
}

func replace(path string, r io.Reader, perm os.FileMode, check func(tmp string) error, durable bool) (err error) {
	fail := func(step string, err error) error { return &StepError{Step: step, Err: err} }
	if path == "" || os.IsPathSeparator(path[len(path)-1]) {
		return fail("check the path", errors.New("it does not name a file"))
	}
	dir, base := filepath.Dir(path), filepath.Base(path)
	f, err := os.CreateTemp(dir, "."+base+".*"+tempSuffix)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fail("directory "+dir+" does not exist", unwrapPath(err))
		}
		return fail("create a temporary file in "+dir, unwrapPath(err))
	}
	tmp := f.Name()
	closed := false
	defer func() {
		if err != nil {
			if !closed {
				f.Close()
			}
			os.Remove(tmp) // after a successful rename tmp is gone: this is a no-op
		}
	}()
	if _, err := io.Copy(f, r); err != nil {
		return fail("write the temporary file", unwrapPath(err))
	}
	if perm != 0o600 { // CreateTemp's
		if err := f.Chmod(perm); err != nil {
			return fail("set the temporary file's permissions", unwrapPath(err))
		}
	}
	if !durable {
	} else if err := f.Sync(); err != nil {
		// After a failed fsync the kernel may have dropped the dirty pages:
		// this file is discarded, and a retry writes a new one rather than
		// fsyncing it again.
		return fail("fsync the temporary file", unwrapPath(err))
	}
	closed = true
	if err := f.Close(); err != nil {
		return fail("close the temporary file", unwrapPath(err))
	}
	if check != nil {
		if err := check(tmp); err != nil {
			return err
		}
	}
	if err := os.Rename(tmp, path); err != nil {
		return fail("rename the temporary file over it", unwrapRename(err))
	}
	if !durable {
		return nil
	}
	if err := syncDir(dir); err != nil {
		return fail("fsync directory "+dir+" (the new file is in place but may not survive a crash)", unwrapPath(err))
	}
	return nil
}

// Remove removes the file at path, if it exists, and fsyncs its directory,
// so that the removal survives a crash.
func Remove(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return syncDir(filepath.Dir(path))
}

// RemoveStale removes the temporary files that a process which crashed
// while replacing path left behind. Only the sole writer of path may call
// it (it would remove another writer's file in flight). Errors are ignored:
// a stale file wastes space, nothing more.
func RemoveStale(path string) {
	dir, base := filepath.Dir(path), filepath.Base(path)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if name := e.Name(); e.Type().IsRegular() && IsTemp(name, base) {
			os.Remove(filepath.Join(dir, name))
		}
	}
}

// IsTemp reports whether name is the name of one of the temporary files
// that replace the file named base.
func IsTemp(name, base string) bool {
	return strings.HasPrefix(name, "."+base+".") && strings.HasSuffix(name, tempSuffix) &&
		len(name) > len(base)+2+len(tempSuffix)
}

const tempSuffix = ".tmp"

// StepError is a failure of one step of a replacement.
type StepError struct {
	Step string // "fsync the temporary file", ...
	Err  error
}

func (e *StepError) Error() string { return e.Step + ": " + e.Err.Error() }
func (e *StepError) Unwrap() error { return e.Err }

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// unwrapPath drops the *os.PathError around err, whose message would repeat
// a path that the caller's message names.
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func unwrapRename(err error) error {
	var le *os.LinkError
	if errors.As(err, &le) {
		return le.Err
	}
	return err
}
