// Package abi is the contract between the wasmlet host and its WebAssembly
// modules, version 1.
//
// ABI.md, next to this file, is the specification a module author in any
// language reads; wasmlet_abi.proto is the message schema and the single
// source of truth for field numbers. This package is the Go form of both,
// shared by the host (host/module) and the Go guest SDK (guests/sdk): export
// and import names, the result packing, and a small reflection-free protobuf
// codec for every message, so that a Go guest does not link the protobuf
// runtime.
//
// The package must build for GOOS=wasip1 and stay small: it imports only
// errors, unicode/utf8 and unsafe (no fmt, strconv or reflect), which
// TestImports checks. ABI.md's "String formats" table defines the names and
// ids that ValidResourceName and ValidDeviceID check.
package abi
