// Package allocator is the node's one allocator of structured devices:
// Kubernetes' own, k8s.io/dynamic-resource-allocation/structured (the code
// the kube-scheduler and the cluster autoscaler run), with one allocated
// state for everything that holds a device of a device source — claims
// (host/claim) and count requests for a source's extended resource
// (host/devicemanager) alike — so no device is ever handed out twice, and
// shared counters and consumable capacity are counted across both.
//
// Each device source is a driver with one pool on this node, named after the
// node; its devices and shared counters are that pool's ResourceSlices
// (host/device/resourceslice). Device classes are the operator's
// (resource.k8s.io/v1 DeviceClass files, host/deviceclass) plus, for every
// driver, a default class of the driver's name that selects all its devices;
// a count request is one exact-count request on that class.
//
// The features are those Kubernetes 1.37 turns on by default that a node
// without an API server can honour: prioritized lists (firstAvailable),
// partitionable devices (shared counters), consumable capacity (with
// fractional ranges) and device taints (an unhealthy device is tainted, so
// it is not allocated again unless a claim tolerates the taint). Admin
// access and binding conditions need a cluster: a claim that asks for them
// is refused.
//
// The upstream allocator answers "no" without a reason. When it does,
// Allocate diagnoses the claim (diagnose.go): it evaluates the class's and
// the request's selectors on every device with the upstream CEL package,
// counts what each one leaves, what is unhealthy, allocated, short of
// capacity or of counters, and checks the constraints on what remains, so
// that a refusal names the request, selector or constraint that left no
// device.
package allocator
