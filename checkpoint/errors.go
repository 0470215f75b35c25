package checkpoint

import (
	"errors"
	"fmt"
	"strings"
)

// ErrNewerVersion is wrapped by the [*CorruptError] for a file written in a
// format version newer than [FormatVersion]: errors.Is(err, ErrNewerVersion)
// tells it apart from damage.
var ErrNewerVersion = errors.New("checkpoint written by a newer wasmlet")

// ErrClosed is returned by [Committer.Sync] after [Committer.Close].
var ErrClosed = errors.New("checkpoint: committer is closed")

// CorruptError reports a checkpoint that exists but cannot be used: empty,
// truncated, not a checkpoint, damaged (checksum mismatch), written by a
// newer wasmlet, or holding a payload that does not decode.
//
// The host must not start over such a file: starting empty would hand out
// again devices that running containers hold. Its message says which file,
// what is wrong, and the commands an operator can run to inspect the file
// and, for a file that starts as a checkpoint does or that is where the
// host keeps its checkpoint (Expected), to move it aside. Nothing in this
// package modifies or replaces the file.
type CorruptError struct {
	// Path is the file; empty when the bytes did not come from a file
	// ([Decode]).
	Path string
	// Reason says what is wrong, e.g. "it is damaged: checksum mismatch, ...".
	Reason string
	// Expected says that the file is where a host keeps its checkpoint (a
	// host reading its own sets it): the message then says how to move it
	// aside even if it does not look like a checkpoint at all. Otherwise
	// only a file that starts as a checkpoint does is worth moving aside;
	// another file was given by mistake.
	Expected bool

	// checkpoint: the file starts as a checkpoint does (its magic).
	checkpoint bool

	// cause is ErrNewerVersion for a newer format version, else nil.
	cause error
}

func (e *CorruptError) Error() string {
	if e.Path == "" {
		return "checkpoint data is unusable: " + e.Reason
	}
	p := shellQuote(e.Path)
	var b strings.Builder
	fmt.Fprintf(&b, "checkpoint %s is unusable: %s. The file was left untouched. ", e.Path, e.Reason)
	if e.cause == ErrNewerVersion {
		b.WriteString("Run the newer wasmlet that wrote it, or inspect it")
	} else {
		b.WriteString("Inspect it")
	}
	if !e.checkpoint && !e.Expected {
		b.Reset()
		fmt.Fprintf(&b, "%s cannot be a checkpoint: %s. The file was left untouched. Is this the right file? "+
			"A host's checkpoint is the file \"checkpoint\" in its state directory (host.state_dir)", e.Path, e.Reason)
		return b.String()
	}
	fmt.Fprintf(&b, " with `wasmlet checkpoint verify %s` and `wasmlet checkpoint show %s`; "+
		"to start with no recorded allocations instead (devices held by running containers may then be handed out again), "+
		"move it aside with `mv %s %s.bad`", p, p, p, p)
	return b.String()
}

// Unwrap returns [ErrNewerVersion] when the file is from a newer wasmlet.
func (e *CorruptError) Unwrap() error { return e.cause }

// shellQuote quotes s for a POSIX shell when it needs quoting, so the
// commands in a CorruptError can be pasted as they are.
func shellQuote(s string) string {
	safe := s != ""
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("_-./:=@%+,", r)) {
			safe = false
			break
		}
	}
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
