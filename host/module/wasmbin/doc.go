// Package wasmbin reads the WebAssembly binary format (WebAssembly Core
// Specification, chapter 5): a module's sections, the vectors in them, and
// the instructions of function bodies. It is the one reader of module bytes
// in wasmlet:
//
//   - the host reads every module file with Parse before anything else does,
//     wazero included: wazero's decoder sizes allocations from the counts it
//     reads (a 15-byte file claiming 2³² functions makes it ask for 309 GB
//     and the Go runtime dies), so Parse checks them first;
//   - the instrumenter (host/module/internal/interrupt) rewrites the module
//     Parse returns, once wazero has validated the original;
//   - `wasmlet module inspect` shows the imports and exports Parse read, even
//     for a module the host refuses.
//
// Parse bounds its work by its input. Every length and every vector count is
// checked against the bytes that remain before anything is allocated or
// looped over (each element takes at least one byte), so a module of n bytes
// costs O(n) time and memory whatever it claims. The one count a byte cannot
// bound, the locals a function declares (a group of a billion locals takes
// five bytes), is limited to MaxLocals, the limit every browser enforces.
//
// Parse checks structure, not meaning: section order and sizes, vector
// counts, value types, names in UTF-8. It does not type-check code; wazero
// validates the module after Parse accepted it. Errors give the offset in the
// file. Nothing panics, whatever the input.
package wasmbin
