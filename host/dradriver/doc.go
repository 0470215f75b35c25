// Package dradriver serves device sources to a Kubernetes cluster as DRA
// drivers (resource.k8s.io/v1): one driver per source with bridge = "dra"
// in plugins.toml, named after the source's driver, built on the upstream
// kubelet plugin helper (k8s.io/dynamic-resource-allocation/kubeletplugin).
//
// For each source, Drivers:
//
//   - serves the helper's sockets once the source has discovered: the
//     registration socket in the kubelet's plugin registry (type
//     DRAPlugin), and the DRA service in <plugin dir>/<driver>/ — named
//     after the pod's UID when Config.PodUID is set, so that a new wasmlet
//     pod serves beside the old one during a rolling update. A socket that
//     is deleted (a kubelet that restarts with a new registry) is served
//     again at once (fsnotify, and a check at every resync);
//   - publishes the source's devices and shared counters as the
//     ResourceSlices of the node's pool (host/device/resourceslice), owned
//     by the Node, through the helper's ResourceSlice controller, again at
//     every discovery; and checks them in the API server (after every
//     change, and every resync) since the controller says neither when it
//     is done nor that it cannot reach the API server. An API server that
//     cannot be reached, or refuses the slices, is retried with a backoff
//     and shown in Status and NotReady, never fatal;
//   - names each device in the slices after its id when the id is a DNS
//     label, as resource.k8s.io/v1 requires, and otherwise by DeviceName
//     (a PCI address 0000:00:1f.6 becomes 0000-00-1f-6-<hash>); a claim's
//     devices are given back to the source by their ids. A device whose
//     name another device of the source already has, and the devices
//     beyond Config.MaxDevices, are left out and reported (Status.LeftOut):
//     a module cannot make the slices invalid or fill the API server;
//   - prepares the claims the kubelet asks for through the claim store
//     (claim.Store.PrepareForKubelet: the module's prepare, a CDI spec per
//     claim, recorded durably in the checkpoint before the answer), so that
//     a repeated NodePrepareResources gets the same answer and
//     NodeUnprepareResources works after wasmlet restarted;
//   - sends each device's health to the kubelet through the helper's health
//     service (kubelets that support it), now, at every change and every
//     Config.HealthResend; a source that is lost makes every device
//     unhealthy, and unhealthy devices carry a NoSchedule taint in the
//     slices;
//   - withdraws the slices when the source goes (its module unloaded, or
//     replaced by one with another driver name), retried with a backoff.
//     When wasmlet stops, the slices stay: a restarted wasmlet takes them
//     over, and the kubelet deletes those of a driver that stays
//     unregistered (a source removed from the configuration).
package dradriver
