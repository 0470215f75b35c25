// Package claim is the node's claim store: resource.k8s.io/v1
// ResourceClaims, written as users write them for a cluster, applied on this
// node. A claim is decoded and checked (Decode), allocated by the node's
// one allocator (host/allocator), prepared by the device sources of its
// drivers (their prepare operation, under the sandbox's output policy, or
// the devices' own edits when a source has none), given a CDI spec of its
// own (host/cdi), and recorded durably in the device manager's checkpoint
// before it is acknowledged (group-committed with everything else).
// Deleting it unprepares it, removes its CDI spec and frees its devices.
//
// What the store shows of a claim says what became of its devices since:
// each is healthy, unhealthy, or gone from its source.
//
// The store takes claims from wasmlet's own API; a DRA kubelet plugin can
// use the same allocation-free half (Prepare of a Driver, the CDI specs) for
// claims the cluster's scheduler allocated.
package claim
