// Package cluster starts a real Kubernetes control plane inside a test: an
// etcd server (go.etcd.io/etcd/server/v3, embedded, at the version
// k8s.io/kubernetes requires) and a kube-apiserver built from upstream's own
// test server (k8s.io/kubernetes/cmd/kube-apiserver/app/testing), with
// resource.k8s.io/v1 served. Tests get a client-go config and client; the
// API server can be stopped and started again on the same etcd and behind
// the same address, to test what a client does through an outage.
//
// Nothing here is a fake: requests go through the API server's real
// authentication, validation, admission and storage. It lives in the
// tests/k8s module so that wasmlet's own dependency graph stays free of it.
package cluster
