// Package registration puts wasmlet's plugin manager in front of the
// Kubernetes plugin watcher's own example plugin, unmodified
// (k8s.io/kubernetes/pkg/kubelet/pluginmanager/pluginwatcher), run as 50
// separate processes (exampleplugin/), each serving one registration socket:
//
//   - the bundled plugins.toml registers all of them, as the upstream client
//     offers itself (type ExamplePlugin, versions v1beta1 and v1beta2);
//   - a handler call that does not return holds up only its own plugin;
//   - BenchmarkRegistration50 measures the time from each plugin's socket
//     appearing to the plugin hearing NotifyRegistrationStatus(true), for
//     wasmlet (a whole node, from the bundled plugins.toml) and for the
//     kubelet's own plugin manager (k8s.io/kubernetes/pkg/kubelet/pluginmanager)
//     against the same 50 processes.
//
// It also registers a real CSI driver, Kubernetes' own mock CSI driver
// (k8s.io/kubernetes/test/e2e/storage/drivers/csi-test), through a registrar
// that does what node-driver-registrar does, with the bundled csihandler:
// its node facts recorded, a restart registered again, a driver that is down
// or offers only CSI 0.3.0 refused with the reason, its registrar's going
// forgetting it (csi_test.go).
//
// It lives in the tests/k8s module, apart from the main module, so that
// k8s.io/kubernetes never enters wasmlet's own dependency graph.
package registration
