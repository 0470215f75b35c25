// Package sdk is the Go guest SDK for wasmlet modules: what a module needs
// besides its handler or source, namely logging and configuration.
//
// A module is an ordinary Go main package (Go 1.24 or later) built as a
// WASI reactor:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o my.wasm .
//
// It calls exactly one of handler.Serve (a plugin-type handler) or
// source.Serve (a device source) from an init function; main stays empty,
// because a reactor's main never runs. Those packages export the ABI
// operations (see abi/ABI.md) and translate between the wire and plain Go
// values, so module code never touches pointers or encodings.
//
// The SDK is the Go module github.com/wasmlet/wasmlet/guests/sdk; it requires
// github.com/wasmlet/wasmlet/abi (the message types) and nothing else. The
// abi package's documentation says why they are two modules; README.md,
// "Writing a module", says how a module outside this repository depends on
// them.
//
// The SDK deliberately avoids fmt, reflection and the protobuf runtime: a
// module built with it stays within a few hundred kilobytes of an empty
// reactor (guests/build's TestSDKGuestSize holds it to that).
//
// Outside WebAssembly, under `go test`, the host's imports are simulated:
// Config reads what SetTestConfig set, and log lines go to standard error, so
// a module's logic can be unit-tested natively.
package sdk
