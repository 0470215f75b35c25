// Package guest is the plumbing shared by the SDK's handler and source
// packages: the exports every module has (wasmlet_abi_version, wasmlet_alloc,
// wasmlet_describe), the request and reply buffers, and the host imports.
//
// It follows abi/ABI.md: the host writes a request into the buffer returned by
// wasmlet_alloc, calls an operation export with its address and length, and
// reads the reply from the buffer whose address and length the export packs
// into its i64 result. Both buffers are reused from call to call, so a steady
// stream of calls allocates nothing here.
package guest

import (
	"unsafe"

	"github.com/wasmlet/wasmlet/abi"
)

var (
	in   []byte // request buffer, owned by the host between alloc and the op
	out  []byte // reply buffer, valid until the next call into the module
	desc abi.Description
	set  bool
)

// Describe records what this module is; handler.Serve and source.Serve call it.
func Describe(d abi.Description) {
	if set {
		panic("wasmlet sdk: a module serves exactly one handler or source; Serve called twice")
	}
	desc, set = d, true
}

//go:wasmexport wasmlet_abi_version
func abiVersion() int32 { return abi.Version }

//go:wasmexport wasmlet_alloc
func alloc(size int32) unsafe.Pointer {
	if size < 0 {
		return nil
	}
	if int(size) > cap(in) {
		in = make([]byte, size)
	}
	in = in[:cap(in)]
	if len(in) == 0 {
		in = make([]byte, 1)
	}
	return unsafe.Pointer(&in[0])
}

//go:wasmexport wasmlet_describe
func describe(ptr unsafe.Pointer, n int32) uint64 {
	var req abi.DescribeRequest
	return Handle(ptr, n, &req, func() (abi.Message, error) {
		if !set {
			return nil, &abi.Error{Code: abi.CodeFailedPrecondition,
				Message: "module did not call handler.Serve or source.Serve in an init function"}
		}
		return &desc, nil
	})
}

// Handle finds the request bytes the host wrote, decodes them into req, runs
// op, and packs op's reply (or error) into the result the host expects. A
// request that is not where wasmlet_alloc put it, or does not decode, is
// answered with an invalid-argument error without running op. When op
// returns an error, that is the reply, whatever message op returned with it;
// one that is not an *abi.Error is sent with code unknown.
func Handle(ptr unsafe.Pointer, n int32, req abi.Message, op func() (abi.Message, error)) uint64 {
	if n < 0 || int(n) > len(in) || (n > 0 && ptr != unsafe.Pointer(&in[0])) {
		return reply(&abi.Error{Code: abi.CodeInvalidArgument,
			Message: "request not in the buffer returned by wasmlet_alloc"}, true)
	}
	if err := req.Unmarshal(in[:n]); err != nil {
		return reply(&abi.Error{Code: abi.CodeInvalidArgument, Message: err.Error()}, true)
	}
	msg, err := op()
	if err != nil {
		e, ok := err.(*abi.Error)
		if !ok {
			e = &abi.Error{Code: abi.CodeUnknown, Message: err.Error()}
		}
		return reply(e, true)
	}
	return reply(msg, false)
}

// Reply is what an operation that answered resp, err replies: err, or else
// resp, or the empty R when resp is nil (a module's function may answer
// nil for "nothing to say").
func Reply[R any, P interface {
	*R
	abi.Message
}](resp P, err error) (abi.Message, error) {
	if err != nil {
		return nil, err
	}
	if resp == nil {
		resp = new(R)
	}
	return resp, nil
}

func reply(m abi.Message, isErr bool) uint64 {
	out = m.AppendTo(out[:0])
	if len(out) == 0 {
		return abi.PackResult(0, 0, isErr)
	}
	return abi.PackResult(uint32(uintptr(unsafe.Pointer(&out[0]))), uint32(len(out)), isErr)
}

// Log sends one line to the host's log.
func Log(level abi.LogLevel, msg string) {
	hostLog(int32(level), unsafe.Pointer(unsafe.StringData(msg)), int32(len(msg)))
}

// Config returns the value of key in the module's configuration.
func Config(key string) (string, bool) {
	buf := make([]byte, 64)
	for {
		n := hostConfigGet(unsafe.Pointer(unsafe.StringData(key)), int32(len(key)),
			unsafe.Pointer(&buf[0]), int32(len(buf)))
		if n < 0 {
			return "", false
		}
		if int(n) <= len(buf) {
			return string(buf[:n]), true
		}
		buf = make([]byte, n)
	}
}
