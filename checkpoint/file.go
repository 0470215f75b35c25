package checkpoint

import (
	"errors"
	"fmt"

	"github.com/wasmlet/wasmlet/internal/atomicfile"
	"github.com/wasmlet/wasmlet/internal/regularfile"
)

// Read reads and decodes the checkpoint at path, upgrading an older format
// version.
//
// A missing file returns an error for which errors.Is(err, fs.ErrNotExist)
// holds: the node has no checkpoint yet and the caller starts empty. A file
// that exists but cannot be used (empty, truncated, not a checkpoint,
// damaged, from a newer wasmlet, undecodable) returns a [*CorruptError]; the
// caller must not start over it. Any other failure to read (permission
// denied, I/O error) is returned as it is, naming the path. Read never
// modifies the file.
func Read(path string) (*State, error) {
	st, _, _, err := readFile(path)
	return st, err
}

// readFile is Read that also returns what Verify reports: the file's size
// and frame, as far as they could be read.
func readFile(path string) (*State, frame, int64, error) {
	data, err := load(path)
	if err != nil {
		return nil, frame{}, 0, err
	}
	st, f, err := decode(data)
	if ce, ok := err.(*CorruptError); ok {
		ce.Path = path
		ce.checkpoint = looksLikeCheckpoint(data)
	}
	return st, f, int64(len(data)), err
}

// looksLikeCheckpoint reports whether data starts as a checkpoint does, or
// is the start of one.
func looksLikeCheckpoint(data []byte) bool {
	n := min(len(data), len(magic))
	return n > 0 && string(data[:n]) == magic[:n]
}

// load returns the bytes of the file at path, refusing what cannot be a
// checkpoint (a FIFO, a directory, a file too large) before reading it.
func load(path string) ([]byte, error) {
	data, err := regularfile.Read(path, maxFileSize)
	var refused *regularfile.RefusedError
	if errors.As(err, &refused) {
		return nil, &CorruptError{Path: path, Reason: refused.Reason}
	}
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err) // "stat PATH: ...", "open PATH: ..."
	}
	return data, nil
}

// Write replaces the checkpoint at path with st, atomically and durably,
// with package atomicfile: it writes a temporary file .NAME.*.tmp (mode
// 0600) in the same directory, fsyncs it, renames it over path and fsyncs
// the directory. After a crash at any instant path holds either its previous
// content or st.
//
// On failure the error names path and the step that failed ("directory ...
// does not exist", "create a temporary file in ...", "fsync ...", ...), the
// temporary file is removed, and path is as it was — except when only the
// final directory fsync failed: then path holds st, but may lose it in a
// crash. Write stores st as it is (it sets no field) and does not modify it;
// st must not be modified while Write runs. The directory must exist.
func Write(path string, st *State) error {
	data, err := encode(st)
	if err != nil {
		return fmt.Errorf("checkpoint: write %s: %w", path, err)
	}
	return writeFile(path, data)
}

func writeFile(path string, data []byte) error {
	if err := atomicfile.Write(path, data, 0o600); err != nil {
		return fmt.Errorf("checkpoint: write %s: %w", path, err)
	}
	return nil
}
