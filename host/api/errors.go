package api

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Reason says why a call failed. The admin service answers a failure with
// the reason's gRPC code and a google.rpc.ErrorInfo detail in the domain
// ErrorDomain naming the reason, so that a client can act on it without
// parsing messages, and can tell the host's answer from a failed
// connection (whose status has no such detail).
type Reason string

// The reasons, with their gRPC codes.
const (
	ReasonNotFound            Reason = "NOT_FOUND"            // codes.NotFound: no such module, resource, workload or pod
	ReasonInvalid             Reason = "INVALID"              // codes.InvalidArgument: a request field is missing or malformed
	ReasonConflict            Reason = "CONFLICT"             // codes.AlreadyExists: the container holds a different allocation
	ReasonNotEnoughDevices    Reason = "NOT_ENOUGH_DEVICES"   // codes.ResourceExhausted
	ReasonModuleRefused       Reason = "MODULE_REFUSED"       // codes.FailedPrecondition: a module file was refused
	ReasonProviderUnavailable Reason = "PROVIDER_UNAVAILABLE" // codes.Unavailable: the resource's provider is gone for now
	ReasonNotDurable          Reason = "NOT_DURABLE"          // codes.Unavailable: the change could not be made durable
	ReasonBusy                Reason = "BUSY"                 // codes.Unavailable: the module has no free instance
	ReasonNotRunning          Reason = "NOT_RUNNING"          // codes.Unavailable: that part of the host is not running
	ReasonTimeout             Reason = "TIMEOUT"              // codes.DeadlineExceeded: the host's own deadline passed
	ReasonFailed              Reason = "FAILED"               // codes.Unknown: the device provider (plugin or module) failed
)

// ErrorDomain is the ErrorInfo domain of the host's errors.
const ErrorDomain = "wasmlet.dev"

var reasonCodes = map[Reason]codes.Code{
	ReasonNotFound: codes.NotFound, ReasonInvalid: codes.InvalidArgument, ReasonConflict: codes.AlreadyExists,
	ReasonNotEnoughDevices: codes.ResourceExhausted, ReasonModuleRefused: codes.FailedPrecondition,
	ReasonProviderUnavailable: codes.Unavailable, ReasonNotDurable: codes.Unavailable, ReasonBusy: codes.Unavailable,
	ReasonNotRunning: codes.Unavailable, ReasonTimeout: codes.DeadlineExceeded, ReasonFailed: codes.Unknown,
}

// Code is the gRPC code the API answers a failure of this reason with.
func (r Reason) Code() codes.Code {
	if c, ok := reasonCodes[r]; ok {
		return c
	}
	return codes.Unknown
}

// Error is a failure a Backend classified: the API answers it with its
// reason. Backends return one, with Fail, for every failure a client can
// act on; any other error is answered as ReasonFailed.
type Error struct {
	Reason Reason
	Err    error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Fail classifies err.
func Fail(r Reason, err error) error { return &Error{Reason: r, Err: err} }

// Failf is Fail with a formatted message.
func Failf(r Reason, format string, args ...any) error {
	return &Error{Reason: r, Err: fmt.Errorf(format, args...)}
}

// ReasonOf is the reason of an error the host answered with, or "" when
// err is not one (a failed connection, a client-side deadline, no error).
func ReasonOf(err error) Reason {
	var ae *Error
	if errors.As(err, &ae) {
		return ae.Reason
	}
	st, ok := status.FromError(err)
	if !ok {
		return ""
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == ErrorDomain {
			return Reason(info.GetReason())
		}
	}
	return ""
}

// statusOf turns a Backend's error into the status the API answers with.
// When the call's own context is done, that is the answer: the client gave
// up or went away, whatever the backend made of it.
func statusOf(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return status.FromContextError(ctx.Err()).Err()
	}
	r := ReasonFailed
	var ae *Error
	switch {
	case errors.As(err, &ae):
		r = ae.Reason
	case errors.Is(err, context.DeadlineExceeded):
		r = ReasonTimeout
	}
	return reasonStatus(r, err.Error())
}

// reasonStatus is a status of reason r's code, with its ErrorInfo.
func reasonStatus(r Reason, msg string) error {
	st := status.New(r.Code(), msg)
	if withInfo, err := st.WithDetails(&errdetails.ErrorInfo{Reason: string(r), Domain: ErrorDomain}); err == nil {
		st = withInfo
	}
	return st.Err()
}

// failf is a status of reason r, for the API's own checks.
func failf(r Reason, format string, args ...any) error {
	return reasonStatus(r, fmt.Sprintf(format, args...))
}
