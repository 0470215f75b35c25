// Package module is wasmlet's WebAssembly runtime: it loads a module file,
// checks it against the ABI (abi/ABI.md) before accepting it, and serves the
// module's operations from a bounded pool of sandboxed instances.
//
// Every module gets its own wazero runtime, so its memory limit, host imports
// and configuration are its own. Compiled code is shared through an on-disk
// Cache. Instances are created lazily up to the pool size, reused across calls,
// and discarded after any fault: a trap, a Go panic, a timeout, memory
// exhaustion, a malformed or oversized reply. A module that faults repeatedly
// is quarantined until it is replaced.
//
// Calls are always interruptible: modules are compiled with wazero's
// close-on-context-done, and each instance keeps one context and one timer for
// its whole life, so that a per-call deadline costs two timer operations
// rather than a context and goroutine per call (see instance).
//
// Package module knows nothing of plugins or devices; module.Registry, in
// registry.go, keeps the set of loaded modules and finds the one serving a
// plugin type or resource.
package module
