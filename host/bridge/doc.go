// Package bridge serves wasmlet's WebAssembly device sources to an external,
// unmodified kubelet, as ordinary device plugins (API v1beta1). A vendor
// ships one sandboxed .wasm instead of a privileged device-plugin image per
// device type; the kubelet cannot tell the difference.
//
// # One device plugin per source
//
// A bridged source gets its own socket in the kubelet's device-plugin
// directory ([bridge] kubelet_dir, /var/lib/kubelet/device-plugins by
// default), named after its module: wasmlet-<module>.sock. On it:
//
//   - GetDevicePluginOptions: what the module's description declares
//     (pre_start_required; preferred allocation when it implements
//     preferred_allocation);
//   - ListAndWatch: the source's discovery results as they change, as
//     complete device sets (id, health, NUMA nodes). Every open stream gets
//     every set, in order; a set replaced before a slow stream could send it
//     is skipped for the newer one, which says everything it said;
//   - Allocate, GetPreferredAllocation, PreStartContainer: answered by the
//     module, one call per container request (the API allows several per
//     call). Allocate's answer is the module's (or its devices' merged
//     edits), with the qualified CDI names of the devices that have a CDI
//     spec (package host/cdi). Device ids the source has not reported are
//     refused before the module is asked. The device plugin API does not
//     say which pod a request is for, so the module is given no workload.
//
// A module error becomes the gRPC status its ABI code maps to (a refusal,
// CODE_INVALID_ARGUMENT, is InvalidArgument), a module fault Internal, and
// the message names the module and the operation.
//
// # Registration
//
// With registration = "kubelet-socket" (the default), the bridge calls
// Register on <kubelet_dir>/kubelet.sock, as device plugins have always
// done: resource name, API version, the socket's file name and the options.
// With "plugin-registry", it instead serves a registration socket
// (plugin registration API v1), wasmlet-<module>-reg.sock in
// plugin_registry_dir, answering GetInfo with type DevicePlugin, the
// resource as the name, the device plugin socket's path as the endpoint and
// version v1beta1; the kubelet's plugin watcher finds it, and the
// NotifyRegistrationStatus it sends back is recorded. A source registers
// once its first device set is known, so the kubelet never sees it empty.
//
// # Kubelet restarts
//
// A kubelet that starts deletes every socket in its device-plugin
// directory and creates kubelet.sock anew. The bridge watches the
// directory with fsnotify (a slow resync, every 30 s by default, is only a
// safety net for lost events) and:
//
//   - when its own socket is deleted, creates it again at once;
//   - when kubelet.sock is created (or replaced), registers every source
//     again at once, abandoning any attempt still waiting on the previous
//     kubelet;
//   - when kubelet.sock is absent — at start, or after the kubelet went —
//     waits for it, holding nothing but its sockets;
//   - when the kubelet goes mid-stream, its streams end with its
//     connections; the bridge and its sources carry on.
//
// # A source that goes
//
// When a bridged source goes (its module is unloaded, or now serves another
// resource), its devices stay with the kubelet, reported unhealthy, on the
// same socket and streams, for the grace period (Config.GracePeriod, [host]
// grace_period), as the kubelet keeps a lost device plugin's; its CDI spec
// stays as long (package host/cdi). A source of the same module that comes
// back within it takes the socket and streams over, without registering
// again; at its end the kubelet is sent an empty device set, the streams
// end and the sockets go. Status shows the deadline.
//
// Nothing is lost across a kubelet restart: the sources keep discovering,
// and the next kubelet's first ListAndWatch gets the current device set.
// Re-registration takes milliseconds (TestKubeletRestart and the
// end-to-end test measure it; both hold it to a second).
//
// A kubelet that refuses a registration (Register returns an error) is
// logged with its reason and asked again after a backoff that doubles from
// backoff_initial to backoff_max ([host]); a new kubelet.sock cuts the wait
// short. In plugin-registry mode the kubelet's plugin watcher retries by
// itself; after a refusal the bridge also recreates its registration socket
// after the same backoff, which makes the watcher try at once. Status shows
// every source's state: waiting for the kubelet, registering, registered,
// refused or unreachable (with the reason), attempts, open streams and
// devices.
//
// # Instead of the local device manager, never as well
//
// A source with bridge = true in [sources.<name>] is served to the external
// kubelet and not to wasmlet's own device manager: two allocators handing
// out the same devices would give one device to two containers. That choice
// is the node's (host/node routes each source, and gives every source's
// container edits a CDI spec either way); the Bridge serves what it is
// given. A host that bridges no source never touches the kubelet's
// directories.
package bridge
