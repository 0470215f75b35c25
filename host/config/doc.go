// Package config reads plugins.toml, the one file that configures a wasmlet
// host.
//
// # The file
//
// plugins.toml is TOML with six sections, all optional (the plugins.toml at
// the root of the repository is a commented example):
//
//	[host]               directories (state, plugin registry, device plugins,
//	                     modules), the API socket, the metrics address,
//	                     logging, and the reconciler's timing: resync period,
//	                     grace period, operation timeout, backoff
//	[sandbox]            the limits every module runs under: memory, call and
//	                     init timeouts, pool size, largest reply, faults
//	                     before quarantine, log rate and burst
//	[modules.<name>]     per module (<module_dir>/<name>.wasm): any [sandbox]
//	                     key, plus config (strings the module reads with
//	                     config_get), mounts (read-only directories) and
//	                     sha256 (a pin of the module file)
//	[handlers]           plugin type = module name
//	[sources.<name>]     how a device-source module runs: discover_interval,
//	                     watch, bridge
//	[bridge]             how device sources are served to an external kubelet
//
// Durations are strings for time.ParseDuration ("500ms", "2m"). Sizes are an
// integer number of bytes or a string with a unit: "64MiB" (B, KiB, MiB, GiB,
// powers of 1024) or "64MB" (KB, MB, GB, powers of 1000). Relative paths are
// resolved against the directory holding the file; the mount paths a module
// sees (guest) must be absolute.
//
// # Strictness
//
// Decoding is strict: an unknown key, a value of the wrong type, a malformed
// duration, size or digest, a value out of range, a key defined twice and a
// module name with no file in the module directory are all mistakes. Every
// mistake found is reported, one per line, in file order, each as
//
//	FILE:LINE:COLUMN: KEY: WHAT IS WRONG, expected WHAT
//
// for example
//
//	plugins.toml:12:11: sandbox.timeout: invalid duration "2 seconds", expected a duration such as "500ms", "30s" or "5m" (units ns, us, ms, s, m, h)
//	plugins.toml:31:16: handlers.DevicePlugin: module "devicehandler" not found, expected a file /var/lib/wasmlet/modules/devicehandler.wasm
//
// The error is an Errors, a list of *Error with the position and key of each.
// Mistakes in the TOML itself (a syntax error, a key defined twice) are
// reported first and alone: the schema is checked once the document is TOML.
//
// # Using it
//
// Load (or Parse) gives a *Config whose every field has a value: defaults
// are filled in and paths are absolute. Default is the configuration with no
// file. ModuleOptions gives the module.Options a module is loaded with,
// Handlers the handler of each plugin type, and Source how a device source
// runs.
//
// # Why go-toml's unstable parser
//
// TOML syntax is parsed by github.com/pelletier/go-toml/v2, which also
// enforces the TOML specification; the schema is decoded from a tree built
// from its unstable parser (tree.go), which keeps the position of every key
// and value. go-toml's strict decoder (DisallowUnknownFields) would be less
// code only by reporting less: it stops at the first wrong type, and
// positions only the mistakes it finds itself — unknown keys, wrong types,
// errors from UnmarshalText — not the checks that need more than one value
// (a handler or source whose module is not in module_dir, backoff_max below
// backoff_initial), so those would lose their line and column,
// and every mistake after the first would wait for the next run. Getting
// them back would mean finding each key again in the document, which is
// what the tree does. The unstable package promises no compatibility
// between versions, so go.mod pins go-toml, and gotoml_test.go pins what
// tree.go relies on (the tree and every position of a document using each
// construct, where syntax errors point): an upgrade that changes it fails
// there, naming the cause.
package config
