// Package device is the host's model of devices and of what a container
// needs to use them (Edits), whoever provides them: an external device
// plugin (host/endpoint) or a WebAssembly device source
// (host/devicesource). Every other representation is converted at an edge
// of the host, in one place each:
//
//   - the module ABI, in: host/devicesource, under the module's Policy;
//   - the kubelet's device plugin API, in and out: host/device/deviceplugin
//     (used by host/endpoint, host/bridge and the checkpoint of
//     host/devicemanager, which stores the kubelet's own
//     ContainerAllocateResponse);
//   - CDI specs, out: host/cdi.
//
// Merge combines the edits of several devices for one container; Policy
// says which edits a module may hand a container (see Policy for the
// defaults, and Grant for what plugins.toml adds).
package device
