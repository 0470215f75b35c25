//go:build !wasip1

package guest

// Outside WebAssembly (module code under `go test` on the host), the host
// imports are simulated: log lines go to standard error and configuration
// comes from SetTestConfig. Call lets the SDK's own tests drive an export as
// the host would.

import (
	"errors"
	"os"
	"unsafe"

	"github.com/wasmlet/wasmlet/abi"
)

var testConfig map[string]string

// SetTestConfig sets the configuration Config returns outside WebAssembly.
func SetTestConfig(c map[string]string) { testConfig = c }

func hostLog(level int32, ptr unsafe.Pointer, n int32) {
	os.Stderr.WriteString(unsafe.String((*byte)(ptr), n) + "\n")
}

func hostConfigGet(kptr unsafe.Pointer, klen int32, bptr unsafe.Pointer, blen int32) int32 {
	v, ok := testConfig[unsafe.String((*byte)(kptr), klen)]
	if !ok {
		return abi.ConfigAbsent
	}
	if int(blen) >= len(v) && len(v) > 0 {
		copy(unsafe.Slice((*byte)(bptr), blen), v)
	}
	return int32(len(v))
}

// Reset forgets what Describe recorded, so that a test may Serve again.
func Reset() { desc, set = abi.Description{}, false }

// Call calls export the way the host calls an operation: it asks
// wasmlet_alloc for a buffer, writes req into it, passes the buffer's address
// and length, and returns a copy of the reply and whether it is an Error
// message. Natively an address does not fit the result's 32 bits, so the
// reply is read from the reply buffer, after checking that the result's
// length and (truncated) address describe it.
func Call(export func(unsafe.Pointer, int32) uint64, req []byte) (reply []byte, isErr bool, err error) {
	p := alloc(int32(len(req)))
	if p == nil {
		return nil, false, errors.New("wasmlet_alloc returned 0")
	}
	copy(in, req)
	ptr, n, isErr := abi.UnpackResult(export(p, int32(len(req))))
	if int(n) != len(out) || (n > 0 && ptr != uint32(uintptr(unsafe.Pointer(&out[0])))) {
		return nil, false, errors.New("the result does not describe the reply buffer")
	}
	return append([]byte(nil), out...), isErr, nil
}

// CallMessage is Call with messages: it encodes req and decodes the reply
// into resp. The module's error reply is returned as an *abi.Error; any other
// error is the test's.
func CallMessage(export func(unsafe.Pointer, int32) uint64, req, resp abi.Message) error {
	reply, isErr, err := Call(export, req.AppendTo(nil))
	if err != nil {
		return err
	}
	if isErr {
		var e abi.Error
		if err := e.Unmarshal(reply); err != nil {
			return errors.New("error reply does not decode: " + err.Error())
		}
		return &e
	}
	return resp.Unmarshal(reply)
}

// Description calls wasmlet_describe.
func Description() (abi.Description, error) {
	var d abi.Description
	err := CallMessage(describe, &abi.DescribeRequest{}, &d)
	return d, err
}
