// Package dra serves wasmlet's device sources to a real cluster as DRA
// drivers (bridge = "dra") and checks them with Kubernetes' own parts: a
// kube-apiserver on etcd (package cluster) holding the ResourceSlices,
// ResourceClaims and DeviceClasses; the upstream structured allocator
// allocating claims as the kube-scheduler does; and the kubelet's own plugin
// manager and DRA plugin manager (k8s.io/kubernetes/pkg/kubelet/cm/dra/plugin)
// registering the drivers, calling NodePrepareResources and
// NodeUnprepareResources and watching device health. Devices come from
// gpusim and from filesource, whose discovery is a file the tests rewrite.
//
// It lives in the tests/k8s module, so that k8s.io/kubernetes never enters
// wasmlet's own dependency graph.
package dra
