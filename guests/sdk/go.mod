// The Go guest SDK: a module of its own, so that a module author outside this
// repository can depend on it, with no dependency but the abi module and a
// low go directive (1.24 brought //go:wasmexport). See ../../abi/doc.go.
//
// The replace below serves this repository's builds only (replace directives
// of a dependency are ignored); a release tags abi/vX.Y.Z first and requires
// that version here.
module github.com/wasmlet/wasmlet/guests/sdk

go 1.24

require github.com/wasmlet/wasmlet/abi v0.0.0-00010101000000-000000000000

replace github.com/wasmlet/wasmlet/abi => ../../abi
