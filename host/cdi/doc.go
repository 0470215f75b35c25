// Package cdi writes Container Device Interface (CDI) spec files for the
// devices of wasmlet's device sources, so that a container runtime with CDI
// support (containerd, CRI-O, podman) can give a container a device by its
// qualified name, "example.com/pci=0000:00:1f.6", and Allocate responses
// can name it.
//
// # One spec file per source
//
// A device source serves one extended resource, "<domain>/<name>". Its spec
// has the CDI kind "<domain>/<name>" (vendor = the domain, class = the
// name), one CDI device per discovered device whose container edits CDI can
// express, named by the device id, and lives in the configured directory
// (/var/run/cdi by default, the runtime's higher-priority directory) as
//
//	wasmlet-<domain>_<name>.yaml
//
// ('_' cannot occur in a Kubernetes resource domain, so the name is unique
// per resource; the "wasmlet-" prefix says who owns the file).
//
// The file is written atomically: a temporary file in the same directory
// (whose name ends in ".tmp", which CDI caches ignore), written, synced,
// validated by the CDI library exactly as a runtime will read it
// (cdi.ReadSpec), renamed over the old one, and the directory synced. It is
// rewritten only when its content changes — the devices, or their edits —
// not on every discovery.
//
// # What goes in, and what does not
//
// A device's environment variables, device nodes and mounts become its CDI
// container edits (mounts as bind mounts, read-only when the source says
// so). Annotations do not: CDI device annotations describe the device to
// the runtime and never reach the container, unlike the device plugin API's,
// so they stay in the Allocate response only. A device is left out of the
// spec, with the reason logged and shown in Status, when
//
//   - its id is not a valid CDI device name (CDI wants it to start and end
//     with a letter or digit, e.g. "dev-" is a valid wasmlet id but not a
//     CDI name);
//   - it has no edits CDI can express (none at all, or annotations only);
//   - its edits fail CDI's validation (device node permissions other than
//     r, w, m, for instance).
//
// A source none of whose devices qualifies has no spec file (a CDI spec
// must have at least one device); one that had a file loses it.
//
// When the resource name is not a valid CDI kind — the vendor must start
// with a letter, the class too (a Kubernetes name may start with a digit,
// "example.com/8021q") — no spec is written for that source at all: the
// error is logged once, shown in Status, and its Allocate responses carry
// no CDI names. The devices still work through the Allocate response's own
// edits; nothing is renamed behind the operator's back, since a made-up
// kind would be a name no one asked for.
//
// # Allocate responses
//
// Provider wraps a device source (a devicemanager.Provider with its latest
// devices and their edits). Its Watch writes the spec before it passes each
// device set on, so a device the device manager (or the kubelet, through the
// bridge) can allocate is already in the spec on disk. Its Allocate adds,
// to the source's own answer, the qualified CDI names of the allocated
// devices that are in the spec on disk, and only those. The source's edits
// stay in the response too, so a runtime without CDI support still gets the
// device; a runtime with CDI applies the same edits again, which is
// harmless: CDI replaces a device node or mount at the same container path
// and sets a variable to the same value.
//
// # Lifetime
//
// A spec outlives its source by the grace period ([host] grace_period), as
// the devices of a lost device plugin do: when its source goes away (Remove:
// the module is unloaded, or now serves another resource) the file stays,
// unchanged, so that a container holding its CDI names can still restart,
// and a source of the same resource that comes within the grace period
// adopts it; at its end the file is removed. Status shows such a spec with
// no provider and the time it goes (RemoveAt). A spec is not removed when a
// source's discovery fails (its devices are then unhealthy), nor when
// wasmlet stops: a container restarting while wasmlet restarts still finds
// its devices. Specs of this host found at start wait the grace period for
// a source to claim them in the same way (the source was removed while
// wasmlet was down).
package cdi
