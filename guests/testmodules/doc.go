// Package testmodules holds modules that misbehave on purpose, for the
// tests that prove the host contains them:
//
//   - faulty/: a Go device source that traps, panics, loops, exhausts
//     memory or the stack, exits, floods the log or replies too much, as its
//     configuration says;
//   - escape/: a Go device source that tries to leave its sandbox;
//   - greedy/: a Go device source that asks the host to hand containers
//     the host's / and docker socket read-write, /dev/sda and /dev/mem
//     with "rwm", and LD_PRELOAD, in discovery and in allocate;
//   - badsource/: a Go device source that breaks the rules of structured
//     devices and of prepare (a bad attribute name, counters of an
//     undeclared set, a prepare that answers differently each time...), as
//     its configuration says, for the conformance checks' own tests;
//   - badhandler/: a Go handler that traps, or answers register with an
//     action no host knows, as the plugin's name says;
//   - wat/: tiny hand-written modules (.wat, with the .wasm built from them by
//     wabt's wat2wasm committed next to each) that break the ABI itself:
//     missing exports, another ABI version, unknown imports, malformed and
//     out-of-bounds replies, start sections, runaway recursion, tables that
//     grow into host memory; or that block in WASI: sleep.wat sleeps in
//     poll_oneoff for ever, sleep_register.wat is a handler that does so in
//     register, poll_fds.wat polls a file and stdin;
//   - malformed/: binaries whose counts and lengths lie (see its README.md).
//
// None of them is meant to be deployed.
package testmodules
