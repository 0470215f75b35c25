// Package abi is the contract between the wasmlet host and its WebAssembly
// modules, version 1.
//
// ABI.md, next to this file, is the specification a module author in any
// language reads; wasmlet_abi.proto is the message schema and the single
// source of truth for field numbers. This package is the Go form of both,
// shared by the host and the Go guest SDK (guests/sdk): export
// and import names, the result packing, and a small reflection-free protobuf
// codec for every message, so that a Go guest does not link the protobuf
// runtime.
//
// The package must build for GOOS=wasip1 and stay small: it imports only
// errors, unicode/utf8 and unsafe (no fmt, strconv or reflect), which
// TestImports checks. ABI.md's "String formats" table defines the names and
// ids that ValidResourceName, ValidDeviceID, ValidCSIDriverName,
// ValidDriverName, ValidQualifiedName, ValidCounterName, ValidQuantity and
// ValidVersion check; ValidDiscovery checks a whole discover reply,
// structured devices included (ABI.md, "Structured devices"), as the host
// does.
//
// # Modules
//
// abi is a Go module of its own, github.com/wasmlet/wasmlet/abi, and so is
// the SDK, github.com/wasmlet/wasmlet/guests/sdk, which requires it; both
// have no other dependency and say "go 1.24" (the release that brought
// //go:wasmexport), so a module author's guest needs neither the host's
// dependencies nor a newer Go. They are two modules, not one, because one
// module holds one directory tree and the only directory holding both abi/
// and guests/sdk/ is the repository root, the host's module; and abi is the
// contract the host builds on too, versioned with the ABI rather than with
// the SDK's conveniences. The repository's main module requires both and
// replaces them with these directories, so the repository builds as one.
// README.md ("Writing a module") and ABI.md ("Building a module") say how a
// module outside the repository depends on them.
//
// The differential tests of the codec against protobuf-go, and FuzzDecode,
// are in the main module (internal/abipb), so that this module needs
// nothing beyond the standard library, even to test.
package abi
