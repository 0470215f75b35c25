//go:build !wasip1

package guesttest

import (
	"fmt"
	"testing"

	"github.com/wasmlet/wasmlet/abi"
)

func TestRefused(t *testing.T) {
	reply := &abi.Error{Code: abi.CodeInvalidArgument, Message: `device plugin "a/b" is refused`}
	for _, c := range []struct {
		err  error
		code abi.Code
		want string
		ok   bool
	}{
		{reply, abi.CodeInvalidArgument, `"a/b"`, true},
		{fmt.Errorf("wrapped: %w", reply), abi.CodeInvalidArgument, "refused", true},
		{reply, abi.CodeInvalidArgument, "", true},
		{reply, abi.CodeFailedPrecondition, "refused", false},
		{reply, abi.CodeInvalidArgument, "accepted", false},
		{fmt.Errorf("invalid argument: refused"), abi.CodeInvalidArgument, "refused", false},
		{nil, abi.CodeUnknown, "", false},
	} {
		if got := Refused(c.err, c.code, c.want); got != c.ok {
			t.Errorf("Refused(%v, %v, %q) = %v", c.err, c.code, c.want, got)
		}
	}
}
