// Package abipb is protoc's Go code for abi/wasmlet_abi.proto, the ABI's
// message schema, used only by the differential tests next to it: they hold
// the hand-written, reflection-free codec of package abi (what guests link)
// to protobuf-go, message by message, and fuzz the two against each other
// (FuzzDecode, in `make fuzz`).
//
// It belongs to the main module, not to the abi module, so that abi and the
// guest SDK depend on nothing beyond the standard library: a module author's
// `go mod tidy` never fetches google.golang.org/protobuf.
//
// Regenerate after changing the schema, from the repository root:
//
//	protoc -I abi --go_out=. --go_opt=module=github.com/wasmlet/wasmlet abi/wasmlet_abi.proto
package abipb

//go:generate protoc -I ../../abi --go_out=../.. --go_opt=module=github.com/wasmlet/wasmlet ../../abi/wasmlet_abi.proto
