// Package wasmletnode runs a whole wasmlet node inside a test of tests/k8s,
// as `wasmlet run` runs it (package node, from a plugins.toml), so that the
// packages that test wasmlet against the kubelet's own code (registration,
// dra) start it one way: the modules built from guests/ and installed
// atomically, the compiled modules kept across tests and runs, the node's
// warnings in the test's log, a start that fails the test if the node
// stops, and a stop when the test ends.
package wasmletnode
