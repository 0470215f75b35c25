package module

import (
	"errors"
	"fmt"

	"github.com/wasmlet/wasmlet/abi"
)

// Fault classifies why a call failed without an answer from the module (as
// opposed to the module answering with an error of its own). Every fault
// discards the instance it happened in. Those that are the module's doing
// count towards quarantine; cancelled and closed do not, and busy,
// quarantined and bad-request never ran the module.
type Fault string

const (
	FaultTrap        Fault = "trap"        // unreachable, out-of-bounds access, stack overflow, Go panic...
	FaultTimeout     Fault = "timeout"     // the call overran its deadline (running, or asleep in a host call) and was stopped
	FaultExit        Fault = "exit"        // the module called proc_exit
	FaultMemory      Fault = "memory"      // the module ran out of its memory limit
	FaultMalformed   Fault = "malformed"   // the reply lies outside memory or does not decode
	FaultOversized   Fault = "oversized"   // the reply exceeds the module's reply limit
	FaultInit        Fault = "init"        // a new instance failed to start
	FaultQuarantined Fault = "quarantined" // the module is quarantined: not called at all
	FaultClosed      Fault = "closed"      // the module was unloaded (a call still running is stopped)
	FaultCancelled   Fault = "cancelled"   // the caller cancelled the call; it was stopped
	FaultBusy        Fault = "busy"        // no instance became free before the caller gave up
	FaultBadRequest  Fault = "bad-request" // the host could not hand the request over
)

// CallError is the error of a failed operation. Its message always names the
// module and the operation.
type CallError struct {
	Module string
	Op     abi.Op
	// Fault is empty when the module answered with an error of its own; Err
	// is then an *abi.Error.
	Fault Fault
	Err   error
	// Detail is what the module last wrote to stderr before a fault, if
	// anything (a Go panic message, for example).
	Detail string
}

func (e *CallError) Error() string {
	msg := fmt.Sprintf("module %q: %s: ", e.Module, e.Op)
	if e.Fault != "" {
		msg += string(e.Fault) + ": "
	}
	msg += e.Err.Error()
	if e.Detail != "" {
		msg += " (module stderr: " + e.Detail + ")"
	}
	return msg
}

func (e *CallError) Unwrap() error { return e.Err }

// IsFault reports whether err is a module fault (not an error the module chose
// to return).
func IsFault(err error) bool {
	var ce *CallError
	return errors.As(err, &ce) && ce.Fault != ""
}

// ModuleError returns the error the module itself returned, if err carries one.
func ModuleError(err error) (*abi.Error, bool) {
	var ae *abi.Error
	if errors.As(err, &ae) {
		return ae, true
	}
	return nil, false
}

// LoadError is the error of a module the host refused to load.
type LoadError struct {
	Module string
	Path   string
	// Problems lists everything wrong with the module, one per entry.
	Problems []string
}

func (e *LoadError) Error() string {
	msg := fmt.Sprintf("module %q (%s) refused: ", e.Module, e.Path)
	for i, p := range e.Problems {
		if i > 0 {
			msg += "; "
		}
		msg += p
	}
	return msg
}

// Problems lists what is wrong with a module that failed to load: a
// *LoadError's problems, or else the error itself.
func Problems(err error) []string {
	var le *LoadError
	if errors.As(err, &le) {
		return le.Problems
	}
	return []string{err.Error()}
}
