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
// A module file is read with package wasmbin, which bounds every count it
// claims, then validated by wazero, then instrumented (package interrupt).
// Calls can always be stopped, whatever the guest is doing: the instrumented
// module checks an interrupt flag at function entries and loop heads (and
// counts its call depth, which is limited), and each instance keeps one timer
// for its whole life, so that a per-call deadline costs two timer operations
// rather than a context and goroutine per call. A guest asleep in WASI's
// poll_oneoff is woken by the same stop; opening a file in a mount never
// blocks (fs.go). Module.Call also stops the call when the caller's context
// is cancelled, at the cost of one context.AfterFunc for contexts that can
// be (see instance).
//
// Package module knows nothing of plugins or devices; module.Registry, in
// registry.go, keeps the set of loaded modules and finds the one serving a
// plugin type or resource.
package module
