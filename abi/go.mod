// The wasmlet module ABI in Go: a module of its own, with no dependencies
// and a low go directive, because module authors' guests import it (through
// the SDK, github.com/wasmlet/wasmlet/guests/sdk) and so does the host. See
// doc.go for why abi and the SDK are two modules, not one.
module github.com/wasmlet/wasmlet/abi

go 1.24
