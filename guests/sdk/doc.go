// Package sdk is the Go guest SDK for wasmlet modules: what a module needs
// besides its handler or source, namely logging and configuration.
//
// A module is an ordinary Go main package built as a WASI reactor:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o my.wasm .
//
// It calls exactly one of handler.Serve (a plugin-type handler) or
// source.Serve (a device source) from an init function; main stays empty,
// because a reactor's main never runs. Those packages export the ABI
// operations (see abi/ABI.md) and translate between the wire and plain Go
// values, so module code never touches pointers or encodings.
//
// The SDK deliberately avoids fmt, reflection and the protobuf runtime: a
// module built with it stays within a few hundred kilobytes of an empty
// reactor.
package sdk
