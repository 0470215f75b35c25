// Package devicesource makes a WebAssembly device-source module (abi/ABI.md,
// kind "device source") a provider of the device manager
// (devicemanager.Provider), exactly as if an external device plugin had
// registered its resource.
//
// # Source
//
// A Source serves one module, by name, from a module.Registry. It looks the
// module up on every call, so when the module file is replaced the next call
// goes to the new module; when the module is gone, calls fail with an error
// naming it. Its provider name is "module:<name>".
//
// Watch discovers on start and then again
//
//   - every interval: Options.DiscoverInterval, else the module's
//     discover_interval_ms, else never;
//   - when an entry is created, removed or renamed, or a regular file
//     written, in the host directory of one of the module's mounts
//     (fsnotify, not recursive, debounced by Options.Debounce). Device nodes
//     appearing in /dev are seen at once. sysfs, however, emits no inotify
//     events at all: a PCI device that appears under /sys/bus/pci/devices is
//     only found by the interval (pcisource suggests 30 s), or by Rediscover;
//   - when the module is replaced (the Controller calls Rediscover), and
//     whenever Rediscover is called.
//
// Each discovered set is validated (device ids as abi.ValidDeviceID
// requires, unique) and reported to the device manager, unless it is the same
// as the set reported last, container edits included (the CDI spec of
// host/cdi follows them). A discovery that fails — the module faulted, or
// answered with an error of its own, or returned an invalid set — is logged
// with the module's name and retried with exponential backoff
// (Options.RetryBackoff, doubling up to Options.MaxBackoff, or up to the
// rediscovery interval when that is shorter), for as long as it takes: a
// source never gives up. A change under the module's mounts, or
// Rediscover, tries again at once. After Options.MaxFailures failures in a
// row the devices last reported are reported again, unhealthy, so that
// nothing is allocated from them, until a discovery succeeds. Status says
// how it goes: failing, the failures in a row, the last error, and when
// the next attempt is due. A quarantined module, an unloaded one, or one
// that now serves another resource ends Watch at once: retrying cannot
// help; the device manager marks the devices unhealthy and starts its
// grace period.
//
// Allocate calls the module's allocate when it implements it. Otherwise the
// host answers with the container edits (environment, mounts, device nodes,
// annotations) of the allocated devices from the latest discovery, merged by
// MergeEdits: identical edits are kept once, and two devices that disagree
// (one variable, two values; one container path, two host paths) fail the
// allocation, since only the module could say how to combine them.
// PreferredAllocation and PreStart go to the module's operations of those
// names. Devices returns the latest discovered devices with their edits, for
// the Kubernetes bridge and the CDI spec writer.
//
// # Controller
//
// A Controller keeps the device manager in step with the registry: a
// device-source module that is loaded gets a Source as the provider of the
// resource it declares; when its file is replaced, the same Source keeps
// serving and rediscovers, unless the new module declares another resource
// (the source moves: the old resource loses its provider, the new one gains
// it), or different provider options, or the source's options changed
// (then a new Source takes over the resource);
// when the module is unloaded, the resource loses its provider, so its
// devices go unhealthy and, after the grace period, away. A source whose
// Watch ended is started again after ControllerConfig.RestartDelay, except
// when its module is quarantined: then it waits for the module to be
// replaced or reloaded. When two modules declare the same resource, the first one keeps
// it; the second waits, and takes over only when the first goes.
package devicesource
