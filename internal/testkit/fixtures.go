package testkit

// Sections of plugins.toml that tests at more than one level run alike: a
// node in the test's process (host/node), the bridge between two wasmlet
// processes (host/bridge), the wasmlet binary as a user runs it
// (tests/e2e).

// HostTOML is the start of a [host] section that keeps everything under
// the configuration file's directory: state in state, the plugin registry
// in reg, device plugins in dp, modules in modules, the host API on
// run/api.sock; no metrics listener. More keys of [host] may follow it.
const HostTOML = `
[host]
state_dir = "state"
registry_dir = "reg"
device_plugin_dir = "dp"
module_dir = "modules"
api_socket = "run/api.sock"
metrics_address = ""
`

// DevSourceTOML configures guests/devsource, as module devsource, to serve
// /dev/null and /dev/zero (which every Linux machine has) as
// example.com/dev, each allocation giving the container that device node,
// writable.
const DevSourceTOML = `
[modules.devsource]
mounts = [{ host = "/dev", guest = "/dev" }]
config = { resource = "example.com/dev", globs = "/dev/null,/dev/zero" }
[modules.devsource.edits]
device_nodes = ["/dev/null", "/dev/zero"]
writable = ["/dev/null", "/dev/zero"]
`

// SleepersTOML configures modules whose guests hold their calls as long as
// they may, every call timeout five minutes: dozer (the ExamplePlugin
// handler; guests/testmodules/wat/sleep_register.wasm) sleeps in a
// registration, sleeper and looper (guests/testmodules/faulty) sleep and
// loop in discover, napper (guests/testmodules/faulty) sleeps in an
// allocation. A node must stop promptly all the same.
const SleepersTOML = `
[handlers]
ExamplePlugin = "dozer"

[modules.dozer]
timeout = "5m"

[modules.sleeper]
config = { fault = "sleep", resource = "example.com/sleeper" }
timeout = "5m"

[modules.looper]
config = { fault = "loop", resource = "example.com/looper" }
timeout = "5m"

[modules.napper]
config = { fault = "sleep", on = "allocate", resource = "example.com/napper" }
timeout = "5m"
`
