// Package csi is the node's registry of CSI drivers: the host's side of a
// CSIPlugin registration, as the kubelet's CSI plugin handler
// (k8s.io/kubernetes/pkg/volume/csi, RegistrationHandler) and its node info
// manager do it.
//
// A CSIPlugin handler module decides that a driver may register
// (guests/csihandler: its name, the CSI spec version, where its socket is)
// and answers ACTION_CSI_DRIVER; the Wasm handler adapter
// (host/pluginmanager/wasmhandler) then calls Drivers.Register, which
//
//	checks the decision      a valid CSI driver name (abi.ValidCSIDriverName),
//	                         a CSI spec 1.x version the driver offered (empty:
//	                         the highest, as the kubelet picks it), no other
//	                         socket already serving the driver at that version
//	                         or higher (the kubelet's rule)
//	dials the driver         its CSI socket (CSI spec gRPC, v1)
//	NodeGetInfo              the node id, the maximum number of volumes, the
//	                         accessible topology
//	NodeGetCapabilities      what the node service can do
//	checks the facts         the node id neither empty nor longer than the
//	                         256 bytes a CSINode allows; topology keys and
//	                         values valid as node labels, and none that
//	                         contradicts another driver's
//	records the driver       with its facts: the node-level view the kubelet
//	                         publishes as the node's CSINode object
//
// all within the caller's context (the plugin manager's operation timeout).
// A driver that does not answer, or answers facts of the wrong shape, is
// refused: the error says why, naming the driver and its socket, and the
// plugin manager sends it to the plugin and retries with its backoff. When
// the registration socket goes, Deregister forgets the driver and its facts.
//
// Publishing the facts to the node's CSINode object needs a Kubernetes
// client, which wasmlet does not have yet.
package csi
