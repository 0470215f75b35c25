package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A document that points module_dir at the test's module directory, "m"
// next to the configuration file; it takes lines 1 and 2.
const withModules = "[host]\nmodule_dir = \"m\"\n"

// errorCase is a configuration with mistakes, and the exact report.
type errorCase struct {
	name    string
	doc     string
	modules []string // files created in the module directory, without .wasm; "x/" a directory x.wasm
	want    []string // the lines of the error, the temporary directory removed
}

// parseIn parses doc as plugins.toml in a new temporary directory, with
// empty placeholder module files in its subdirectory m. It returns the
// directory.
func parseIn(t testing.TB, doc string, modules ...string) (*Config, error, string) {
	t.Helper()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "m"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, m := range modules {
		var err error
		if name, isDir := strings.CutSuffix(m, "/"); isDir {
			err = os.Mkdir(filepath.Join(dir, "m", name+".wasm"), 0o755)
		} else {
			err = os.WriteFile(filepath.Join(dir, "m", m+".wasm"), nil, 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	c, err := Parse([]byte(doc), filepath.Join(dir, "plugins.toml"))
	return c, err, dir
}

func runErrorCases(t *testing.T, cases []errorCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err, dir := parseIn(t, tc.doc, tc.modules...)
			if err == nil {
				t.Fatalf("Parse accepted the document:\n%s\ngot %+v", tc.doc, c)
			}
			if c != nil {
				t.Errorf("Parse returned a Config with an error")
			}
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("error %T is not an Errors: %v", err, err)
			}
			got := strings.ReplaceAll(err.Error(), dir+string(filepath.Separator), "")
			want := strings.Join(tc.want, "\n")
			if got != want {
				t.Errorf("document:\n%s\ngot:\n%s\nwant:\n%s", tc.doc, got, want)
			}
		})
	}
}

func TestUnknownKeys(t *testing.T) {
	runErrorCases(t, []errorCase{{
		name: "top-level table",
		doc:  "[hostt]\n",
		want: []string{`plugins.toml:1:2: hostt: unknown key, expected host, sandbox, modules, handlers, sources, bridge or dra (did you mean host?)`},
	}, {
		name: "top-level value",
		doc:  "name = 1\n",
		want: []string{`plugins.toml:1:1: name: unknown key, expected host, sandbox, modules, handlers, sources, bridge or dra`},
	}, {
		name: "nested",
		doc:  "[sandbox]\nmemroy = \"1MiB\"\n",
		want: []string{`plugins.toml:2:1: sandbox.memroy: unknown key, expected memory, timeout, init_timeout, pool_size, pool_max, max_reply, quarantine_after, log_rate or log_burst (did you mean memory?)`},
	}, {
		name: "nested through a dotted key",
		doc:  "sandbox.memroy = 1\n",
		want: []string{`plugins.toml:1:9: sandbox.memroy: unknown key, expected memory, timeout, init_timeout, pool_size, pool_max, max_reply, quarantine_after, log_rate or log_burst (did you mean memory?)`},
	}, {
		name:    "module entry",
		doc:     withModules + "[modules.x]\nsha = \"\"\n",
		modules: []string{"x"},
		want:    []string{`plugins.toml:4:1: modules.x.sha: unknown key, expected memory, timeout, init_timeout, pool_size, pool_max, max_reply, quarantine_after, log_rate, log_burst, sha256, config, mounts or edits`},
	}, {
		name:    "mount",
		doc:     withModules + "[modules.x]\nmounts = [{ host = \"/a\", guest = \"/a\", readonly = true }]\n",
		modules: []string{"x"},
		want:    []string{`plugins.toml:4:40: modules.x.mounts[0].readonly: unknown key, expected host, guest, root or devices`},
	}, {
		name:    "source",
		doc:     withModules + "[sources.x]\ninterval = \"1s\"\n",
		modules: []string{"x"},
		want:    []string{`plugins.toml:4:1: sources.x.interval: unknown key, expected discover_interval, watch or bridge`},
	}, {
		name: "bridge",
		doc:  "[bridge]\nkubelet-dir = \"/k\"\n",
		want: []string{`plugins.toml:2:1: bridge.kubelet-dir: unknown key, expected kubelet_dir, registration, plugin_registry_dir or cdi_dir (did you mean kubelet_dir?)`},
	}, {
		name: "quoted",
		doc:  "[host]\n\"log level\" = \"info\"\n",
		want: []string{`plugins.toml:2:1: host."log level": unknown key, expected state_dir, registry_dir, device_plugin_dir, module_dir, api_socket, pod_resources_socket, metrics_address, log_level, log_format, resync_period, grace_period, operation_timeout, backoff_initial, backoff_max, node_name or device_class_dir (did you mean log_level?)`},
	}})
}

func TestWrongTypes(t *testing.T) {
	runErrorCases(t, []errorCase{{
		name: "path",
		doc:  "[host]\nstate_dir = 3\n",
		want: []string{`plugins.toml:2:13: host.state_dir: got an integer, expected a path`},
	}, {
		name: "integer as string",
		doc:  "[sandbox]\npool_size = \"2\"\n",
		want: []string{`plugins.toml:2:13: sandbox.pool_size: got a string, expected an integer from 1 to 2147483647`},
	}, {
		name: "integer as float",
		doc:  "[sandbox]\npool_size = 2.0\n",
		want: []string{`plugins.toml:2:13: sandbox.pool_size: got a float, expected an integer from 1 to 2147483647`},
	}, {
		name: "section as value",
		doc:  "sandbox = 1\n",
		want: []string{`plugins.toml:1:11: sandbox: got an integer, expected a table`},
	}, {
		name: "handlers as array",
		doc:  "handlers = [\"x\"]\n",
		want: []string{`plugins.toml:1:12: handlers: got an array, expected a table of plugin types, such as DevicePlugin = "devicepluginhandler"`},
	}, {
		name: "handler module",
		doc:  "[handlers]\nDevicePlugin = { module = \"x\" }\n",
		want: []string{`plugins.toml:2:16: handlers.DevicePlugin: got a table, expected a module name, such as "devicepluginhandler"`},
	}, {
		name:    "boolean",
		doc:     withModules + "[sources.x]\nwatch = \"yes\"\n",
		modules: []string{"x"},
		want:    []string{`plugins.toml:4:9: sources.x.watch: got a string, expected true or false`},
	}, {
		name:    "config values are strings",
		doc:     withModules + "[modules.x]\nconfig = { vendor = 0x10de, on = true, list = [\"a\"] }\n",
		modules: []string{"x"},
		want: []string{
			`plugins.toml:4:21: modules.x.config.vendor: got an integer, expected a string (write "0x10de")`,
			`plugins.toml:4:34: modules.x.config.on: got a boolean, expected a string (write "true")`,
			`plugins.toml:4:47: modules.x.config.list: got an array, expected a string`,
		},
	}, {
		name:    "mounts as table",
		doc:     withModules + "[modules.x]\nmounts = { host = \"/a\" }\n",
		modules: []string{"x"},
		want:    []string{`plugins.toml:4:10: modules.x.mounts: got a table, expected an array of mounts, such as [{ host = "/dev", guest = "/dev" }]`},
	}, {
		name:    "mount as array",
		doc:     withModules + "[modules.x]\nmounts = [ { host = \"/a\", guest = \"/a\" },\n  [ \"/b\" ] ]\n",
		modules: []string{"x"},
		want:    []string{`plugins.toml:5:3: modules.x.mounts[1]: got an array, expected a table`},
	}, {
		name: "date-time",
		doc:  "[host]\ngrace_period = 1979-05-27\n",
		want: []string{`plugins.toml:2:16: host.grace_period: got a date-time, expected a duration such as "500ms", "30s" or "5m" (units ns, us, ms, s, m, h)`},
	}})
}

func TestBadDurations(t *testing.T) {
	runErrorCases(t, []errorCase{{
		name: "malformed",
		doc:  "[sandbox]\ntimeout = \"2 seconds\"\n",
		want: []string{`plugins.toml:2:11: sandbox.timeout: invalid duration "2 seconds", expected a duration such as "500ms", "30s" or "5m" (units ns, us, ms, s, m, h)`},
	}, {
		name: "no unit",
		doc:  "[sandbox]\ntimeout = 2\n",
		want: []string{`plugins.toml:2:11: sandbox.timeout: got an integer, expected a duration such as "500ms", "30s" or "5m" (units ns, us, ms, s, m, h)`},
	}, {
		name: "negative",
		doc:  "[sandbox]\ntimeout = \"-1s\"\n",
		want: []string{`plugins.toml:2:11: sandbox.timeout: negative duration "-1s", expected a duration greater than 0`},
	}, {
		name: "zero",
		doc:  "[host]\nresync_period = \"0s\"\n",
		want: []string{`plugins.toml:2:17: host.resync_period: zero duration "0s", expected a duration greater than 0`},
	}, {
		name:    "negative where zero is allowed",
		doc:     withModules + "[sources.x]\ndiscover_interval = \"-5s\"\n",
		modules: []string{"x"},
		want:    []string{`plugins.toml:4:21: sources.x.discover_interval: negative duration "-5s", expected a duration of 0 or more`},
	}, {
		name: "backoff_max below backoff_initial",
		doc:  "[host]\nbackoff_initial = \"5s\"\nbackoff_max = \"1s\"\n",
		want: []string{`plugins.toml:3:15: host.backoff_max: "1s" is shorter than backoff_initial (5s), expected at least backoff_initial`},
	}, {
		name: "backoff_initial above the default backoff_max",
		doc:  "[host]\nbackoff_initial = \"5m\"\n",
		want: []string{`plugins.toml:2:19: host.backoff_initial: "5m" is longer than backoff_max (2m0s), expected at most backoff_max`},
	}})
}

func TestBadSizes(t *testing.T) {
	const expected = `expected a size in bytes, such as 67108864 or "64MiB" (units B, KiB, MiB, GiB, KB, MB, GB)`
	runErrorCases(t, []errorCase{{
		name: "unknown unit",
		doc:  "[sandbox]\nmemory = \"64M\"\n",
		want: []string{`plugins.toml:2:10: sandbox.memory: invalid size "64M", ` + expected},
	}, {
		name: "fraction",
		doc:  "[sandbox]\nmemory = \"1.5GiB\"\n",
		want: []string{`plugins.toml:2:10: sandbox.memory: invalid size "1.5GiB", ` + expected},
	}, {
		name: "no unit in a string",
		doc:  "[sandbox]\nmax_reply = \"4096\"\n",
		want: []string{`plugins.toml:2:13: sandbox.max_reply: invalid size "4096", ` + expected},
	}, {
		name: "float",
		doc:  "[sandbox]\nmemory = 1.5\n",
		want: []string{`plugins.toml:2:10: sandbox.memory: got a float, ` + expected},
	}, {
		name: "zero",
		doc:  "[sandbox]\nmemory = 0\n",
		want: []string{`plugins.toml:2:10: sandbox.memory: size 0 is not positive, expected a size greater than 0`},
	}, {
		name: "zero with a unit",
		doc:  "[sandbox]\nmemory = \"0MiB\"\n",
		want: []string{`plugins.toml:2:10: sandbox.memory: size "0MiB" is not positive, expected a size greater than 0`},
	}, {
		name: "negative",
		doc:  "[sandbox]\nmemory = -1\n",
		want: []string{`plugins.toml:2:10: sandbox.memory: size -1 is not positive, expected a size greater than 0`},
	}, {
		name: "memory beyond wasm32",
		doc:  "[sandbox]\nmemory = \"8GiB\"\n",
		want: []string{`plugins.toml:2:10: sandbox.memory: size "8GiB" is too large, expected at most 4GiB, the wasm32 address space`},
	}, {
		name: "overflow",
		doc:  "[sandbox]\nmemory = \"99999999999999999999GiB\"\n",
		want: []string{`plugins.toml:2:10: sandbox.memory: size "99999999999999999999GiB" is too large, expected at most 4GiB, the wasm32 address space`},
	}, {
		name:    "reply beyond uint32, in a module",
		doc:     withModules + "[modules.x]\nmax_reply = \"5GB\"\n",
		modules: []string{"x"},
		want:    []string{`plugins.toml:4:13: modules.x.max_reply: size "5GB" is too large, expected at most 4294967295 (4GiB - 1)`},
	}})
}

func TestBadEnums(t *testing.T) {
	runErrorCases(t, []errorCase{{
		name: "log_level",
		doc:  "[host]\nlog_level = \"verbose\"\n",
		want: []string{`plugins.toml:2:13: host.log_level: invalid value "verbose", expected "trace", "debug", "info", "warn" or "error"`},
	}, {
		name: "log_level in capitals",
		doc:  "[host]\nlog_level = \"INFO\"\n",
		want: []string{`plugins.toml:2:13: host.log_level: invalid value "INFO", expected "trace", "debug", "info", "warn" or "error" (did you mean "info"?)`},
	}, {
		name: "log_format",
		doc:  "[host]\nlog_format = \"yaml\"\n",
		want: []string{`plugins.toml:2:14: host.log_format: invalid value "yaml", expected "text" or "json"`},
	}, {
		name: "registration",
		doc:  "[bridge]\nregistration = \"socket\"\n",
		want: []string{`plugins.toml:2:16: bridge.registration: invalid value "socket", expected "kubelet-socket" or "plugin-registry"`},
	}, {
		name:    "source bridge",
		doc:     withModules + "[sources.x]\nbridge = \"DRA\"\n",
		modules: []string{"x"},
		want:    []string{`plugins.toml:4:10: sources.x.bridge: invalid value "DRA", expected "device-plugin" or "dra" (did you mean "dra"?)`},
	}, {
		name:    "source bridge of the wrong type",
		doc:     withModules + "[sources.x]\nbridge = 1\n",
		modules: []string{"x"},
		want:    []string{`plugins.toml:4:10: sources.x.bridge: got an integer, expected true, false, "device-plugin" or "dra"`},
	}, {
		name: "dra",
		doc:  "[dra]\nplugins_dir = \"/p\"\n",
		want: []string{`plugins.toml:2:1: dra.plugins_dir: unknown key, expected kubeconfig, plugin_dir, registry_dir, rolling_update or max_devices (did you mean plugin_dir?)`},
	}, {
		name: "dra max_devices",
		doc:  "[dra]\nmax_devices = 0\n",
		want: []string{`plugins.toml:2:15: dra.max_devices: 0 is out of range, expected an integer from 1 to 2147483647`},
	}, {
		name: "enum of the wrong type",
		doc:  "[host]\nlog_format = true\n",
		want: []string{`plugins.toml:2:14: host.log_format: got a boolean, expected "text" or "json"`},
	}})
}

func TestBadSHA256(t *testing.T) {
	const expected = `expected 64 hexadecimal digits (as printed by sha256sum)`
	runErrorCases(t, []errorCase{{
		name:    "short",
		doc:     withModules + "[modules.x]\nsha256 = \"abc\"\n",
		modules: []string{"x"},
		want:    []string{`plugins.toml:4:10: modules.x.sha256: "abc" is not a SHA-256 digest, ` + expected},
	}, {
		name:    "not hex",
		doc:     withModules + "[modules.x]\nsha256 = \"" + strings.Repeat("g", 64) + "\"\n",
		modules: []string{"x"},
		want:    []string{`plugins.toml:4:10: modules.x.sha256: "` + strings.Repeat("g", 64) + `" is not a SHA-256 digest, ` + expected},
	}, {
		name:    "long",
		doc:     withModules + "[modules.x]\nsha256 = \"" + strings.Repeat("a", 66) + "\"\n",
		modules: []string{"x"},
		want:    []string{`plugins.toml:4:10: modules.x.sha256: "` + strings.Repeat("a", 66) + `" is not a SHA-256 digest, ` + expected},
	}})
}

func TestBadMounts(t *testing.T) {
	runErrorCases(t, []errorCase{{
		name:    "relative guest",
		doc:     withModules + "[modules.x]\nmounts = [{ host = \"/sys/bus\", guest = \"sys/bus\" }]\n",
		modules: []string{"x"},
		want:    []string{`plugins.toml:4:40: modules.x.mounts[0].guest: relative path "sys/bus", expected an absolute path as the module sees it, such as "/sys/bus/pci/devices"`},
	}, {
		name:    "root not an ancestor",
		doc:     withModules + "[modules.x]\nmounts = [{ host = \"/sys/bus\", guest = \"/sys/bus\", root = \"/proc\" }]\n",
		modules: []string{"x"},
		want:    []string{`plugins.toml:4:59: modules.x.mounts[0].root: "/proc" does not contain host "/sys/bus", expected "/sys/bus" or a directory above it`},
	}, {
		name:    "root a sibling with a common prefix",
		doc:     withModules + "[modules.x]\nmounts = [{ host = \"/sys/bus\", guest = \"/b\", root = \"/sys/b\" }]\n",
		modules: []string{"x"},
		want:    []string{`plugins.toml:4:53: modules.x.mounts[0].root: "/sys/b" does not contain host "/sys/bus", expected "/sys/bus" or a directory above it`},
	}, {
		name:    "missing host and guest",
		doc:     withModules + "[modules.x]\nmounts = [{ guest = \"/sys/bus\" }, {}]\n",
		modules: []string{"x"},
		want: []string{
			`plugins.toml:4:11: modules.x.mounts[0]: missing host, expected a mount with host, guest and optionally root and devices`,
			`plugins.toml:4:35: modules.x.mounts[1]: missing host and guest, expected a mount with host, guest and optionally root and devices`,
		},
	}, {
		name:    "same guest twice",
		doc:     withModules + "[modules.x]\nmounts = [{ host = \"/a\", guest = \"/d\" }, { host = \"/b\", guest = \"/d/\" }]\n",
		modules: []string{"x"},
		want:    []string{`plugins.toml:4:65: modules.x.mounts[1].guest: "/d" is already mounted by mounts[0], expected each guest path once`},
	}, {
		name:    "array of tables",
		doc:     withModules + "[[modules.x.mounts]]\nhost = \"/a\"\n[[modules.x.mounts]]\nhost = \"/b\"\nguest = \"b\"\n",
		modules: []string{"x"},
		want: []string{
			`plugins.toml:3:13: modules.x.mounts[0]: missing guest, expected a mount with host, guest and optionally root and devices`,
			`plugins.toml:7:9: modules.x.mounts[1].guest: relative path "b", expected an absolute path as the module sees it, such as "/sys/bus/pci/devices"`,
		},
	}})
}

func TestMissingModules(t *testing.T) {
	runErrorCases(t, []errorCase{{
		name: "handler",
		doc:  withModules + "[handlers]\nDevicePlugin = \"devicehandler\"\n",
		want: []string{`plugins.toml:4:16: handlers.DevicePlugin: module "devicehandler" not found, expected a file m/devicehandler.wasm`},
	}, {
		name:    "typo",
		doc:     withModules + "[sources.pcisorce]\n",
		modules: []string{"pcisource", "devsource"},
		want:    []string{`plugins.toml:3:10: sources.pcisorce: module "pcisorce" not found, expected a file m/pcisorce.wasm (did you mean "pcisource"?)`},
	}, {
		name: "source",
		doc:  withModules + "[sources.pci]\ndiscover_interval = \"1m\"\n",
		want: []string{`plugins.toml:3:10: sources.pci: module "pci" not found, expected a file m/pci.wasm`},
	}, {
		name: "module entry",
		doc:  withModules + "[modules.pci]\nmemory = \"1MiB\"\n",
		want: []string{`plugins.toml:3:10: modules.pci: module "pci" not found, expected a file m/pci.wasm`},
	}, {
		name: "module entry, inline",
		doc:  withModules + "[modules]\npci = { memory = \"1MiB\" }\n",
		want: []string{`plugins.toml:4:1: modules.pci: module "pci" not found, expected a file m/pci.wasm`},
	}, {
		name:    "directory, not a file",
		doc:     withModules + "[handlers]\nX = \"d\"\n",
		modules: []string{"d/"},
		want:    []string{`plugins.toml:4:5: handlers.X: module "d": m/d.wasm is not a regular file, expected a .wasm file`},
	}, {
		name:    "names",
		doc:     withModules + "[handlers]\nA = \"x.wasm\"\nB = \"../x\"\nC = \"\"\n\"\" = \"x\"\n",
		modules: []string{"x"},
		want: []string{
			`plugins.toml:4:5: handlers.A: invalid module name "x.wasm", expected the name without .wasm ("x")`,
			`plugins.toml:5:5: handlers.B: invalid module name "../x", expected a file name without directories`,
			`plugins.toml:6:5: handlers.C: invalid module name "", expected the name of a .wasm file in module_dir, without .wasm`,
			`plugins.toml:7:1: handlers."": empty plugin type, expected the plugin type a handler serves, such as DevicePlugin`,
		},
	}})
}

func TestDuplicateKeys(t *testing.T) {
	runErrorCases(t, []errorCase{{
		name: "key",
		doc:  "[sandbox]\nmemory = 1\nmemory = 2\n",
		want: []string{`plugins.toml:3:1: sandbox.memory: duplicate key (first defined at 2:1), expected each key to be defined once`},
	}, {
		name: "table",
		doc:  "[sandbox]\nmemory = 1\n\n[sandbox]\ntimeout = \"1s\"\n",
		want: []string{`plugins.toml:4:2: sandbox: duplicate table (first defined at 1:2), expected each table to be defined once`},
	}, {
		name: "key and dotted key",
		doc:  "[sandbox]\nmemory = 1\n[host]\n[modules]\nx.memory = 1\nx.memory = 2\n",
		want: []string{`plugins.toml:6:3: modules.x.memory: duplicate key (first defined at 5:3), expected each key to be defined once`},
	}, {
		name:    "inline table extended",
		doc:     withModules + "[modules]\nx = { memory = 1 }\nx.timeout = \"1s\"\n",
		modules: []string{"x"},
		want:    []string{`plugins.toml:5:1: modules.x: already defined as an inline table at 4:1, expected all its keys within its braces`},
	}, {
		name: "value then table",
		doc:  "[host]\nstate_dir = \"/s\"\n[host.state_dir]\n",
		want: []string{`plugins.toml:3:7: host.state_dir: already defined as a string at 2:1, expected a table`},
	}, {
		name: "table by dotted keys, then by header",
		doc:  "[modules]\nx.memory = 1\n[modules.x]\n",
		want: []string{`plugins.toml:3:10: modules.x: table already defined by dotted keys at 2:1, expected each table to be defined once`},
	}, {
		name: "syntax error",
		doc:  "[host\nstate_dir = \"/s\"\n",
		want: []string{`plugins.toml:1:6: expected ']' to close table name`},
	}, {
		name: "malformed value",
		doc:  "[sandbox]\nmemory = 99999999999999999999\n",
		want: []string{`plugins.toml:2:10: sandbox.memory: decimal number is too large to fit in a 64-bit signed integer`},
	}, {
		name: "malformed value inside an array",
		doc:  "[modules.x]\nmounts = [{ host = \"/a\", guest = \"/a\" }, { host = 1979-13-45 }]\n",
		want: []string{`plugins.toml:2:56: modules.x.mounts[1].host: impossible date`},
	}, {
		name: "bad escape",
		doc:  "[modules.x]\nmounts = [{ host = \"/a\", guest = \"\\q\" }]\n",
		want: []string{`plugins.toml:2:35: invalid escape character U+0071 'q'`},
	}})
}

func TestHostChecks(t *testing.T) {
	long := "/" + strings.Repeat("a", 120)
	runErrorCases(t, []errorCase{{
		name: "metrics address",
		doc:  "[host]\nmetrics_address = \"9465\"\n",
		want: []string{`plugins.toml:2:19: host.metrics_address: invalid address "9465", expected host:port, such as "127.0.0.1:9465", or "" to disable`},
	}, {
		name: "metrics port",
		doc:  "[host]\nmetrics_address = \"localhost:http2\"\n",
		want: []string{`plugins.toml:2:19: host.metrics_address: invalid address "localhost:http2", expected host:port, such as "127.0.0.1:9465", or "" to disable`},
	}, {
		name: "empty path",
		doc:  "[host]\nstate_dir = \"\"\n",
		want: []string{`plugins.toml:2:13: host.state_dir: empty path, expected a path`},
	}, {
		name: "long API socket",
		doc:  "[host]\napi_socket = \"" + long + "\"\n",
		want: []string{`plugins.toml:2:14: host.api_socket: socket path ` + long + ` is 121 bytes long, expected at most 107 (the limit of a unix socket path)`},
	}, {
		name: "long kubelet socket, through state_dir",
		doc:  "[host]\nstate_dir = \"" + long[:90] + "\"\n",
		want: []string{
			`plugins.toml:2:13: host.state_dir: socket path ` + long[:90] + `/pod-resources/wasmlet.sock is 117 bytes long, expected at most 107 (the limit of a unix socket path)`,
			`plugins.toml:2:13: host.state_dir: socket path ` + long[:90] + `/device-plugins/kubelet.sock is 118 bytes long, expected at most 107 (the limit of a unix socket path)`,
		},
	}})
}

// TestPoolMaxBelowPoolSize: a table that sets pool_max below its pool_size
// is told so where it sets pool_max.
func TestPoolMaxBelowPoolSize(t *testing.T) {
	runErrorCases(t, []errorCase{{
		name: "sandbox",
		doc:  "[sandbox]\npool_size = 4\npool_max = 2\n",
		want: []string{`plugins.toml:3:12: sandbox.pool_max: 2 is less than pool_size 4, expected at least as many instances as the pool keeps`},
	}, {
		name: "module entry over an inherited pool_size",
		doc:  withModules + "[sandbox]\npool_size = 4\n[modules.x]\npool_max = 3\n",
		want: []string{
			`plugins.toml:5:10: modules.x: module "x" not found, expected a file m/x.wasm`,
			`plugins.toml:6:12: modules.x.pool_max: 3 is less than pool_size 4, expected at least as many instances as the pool keeps`,
		},
	}})
}

// TestSeveralMistakes checks that every mistake is reported, in file order,
// whatever order the schema is decoded in.
func TestSeveralMistakes(t *testing.T) {
	runErrorCases(t, []errorCase{{
		name: "all of them",
		doc: withModules + `[modules.x]
memory = "lots"
[handlers]
DevicePlugin = "nope"
[sandbox]
pool_size = 0
[host.extra]
`,
		want: []string{
			`plugins.toml:3:10: modules.x: module "x" not found, expected a file m/x.wasm`,
			`plugins.toml:4:10: modules.x.memory: invalid size "lots", expected a size in bytes, such as 67108864 or "64MiB" (units B, KiB, MiB, GiB, KB, MB, GB)`,
			`plugins.toml:6:16: handlers.DevicePlugin: module "nope" not found, expected a file m/nope.wasm`,
			`plugins.toml:8:13: sandbox.pool_size: 0 is out of range, expected an integer from 1 to 2147483647`,
			`plugins.toml:9:7: host.extra: unknown key, expected state_dir, registry_dir, device_plugin_dir, module_dir, api_socket, pod_resources_socket, metrics_address, log_level, log_format, resync_period, grace_period, operation_timeout, backoff_initial, backoff_max, node_name or device_class_dir`,
		},
	}})
}

func TestErrorFields(t *testing.T) {
	_, err := Parse([]byte("[sandbox]\ntimeout = \"soon\"\n"), "conf/plugins.toml")
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("no *Error in %v", err)
	}
	want := Error{File: "conf/plugins.toml", Line: 2, Column: 11, Key: "sandbox.timeout",
		Msg: `invalid duration "soon", expected a duration such as "500ms", "30s" or "5m" (units ns, us, ms, s, m, h)`}
	if *e != want {
		t.Errorf("got %+v, want %+v", *e, want)
	}
	if _, err := Parse([]byte("x = 1"), ""); err == nil || !strings.HasPrefix(err.Error(), "<input>:1:1: x: ") {
		t.Errorf("without a path: %v", err)
	}
}

func TestByteOrderMark(t *testing.T) {
	_, err := Parse([]byte("\ufeff[sandbox]\nmemory = \"x\"\n[hosts]\n"), "plugins.toml")
	const want = "plugins.toml:2:10: sandbox.memory: invalid size \"x\""
	if err == nil || !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), "\nplugins.toml:3:2: hosts: ") {
		t.Errorf("got %v, want it to start with %s", err, want)
	}
}

func TestEditGrantErrors(t *testing.T) {
	runErrorCases(t, []errorCase{{
		name:    "unknown key",
		doc:     withModules + "[modules.x.edits]\ndevices = []\n",
		modules: []string{"x"},
		want:    []string{`plugins.toml:4:1: modules.x.edits.devices: unknown key, expected device_nodes, host_paths, writable, env, annotations or cdi_devices`},
	}, {
		name:    "not an array",
		doc:     withModules + "[modules.x.edits]\nenv = \"LD_*\"\n",
		modules: []string{"x"},
		want:    []string{`plugins.toml:4:7: modules.x.edits.env: got a string, expected an array of patterns of environment variable names, such as ["NVIDIA_*"]`},
	}, {
		name:    "bad pattern, relative device pattern, a number",
		doc:     withModules + "[modules.x.edits]\ndevice_nodes = [\"/dev/[\", \"dev/x*\", 1]\nannotations = [\"\"]\n",
		modules: []string{"x"},
		want: []string{
			`plugins.toml:4:17: modules.x.edits.device_nodes[0]: invalid pattern "/dev/[" (syntax error in pattern), expected absolute path patterns of host device nodes, such as ["/dev/vfio/*"]`,
			`plugins.toml:4:27: modules.x.edits.device_nodes[1]: relative pattern "dev/x*", expected absolute path patterns of host device nodes, such as ["/dev/vfio/*"]`,
			`plugins.toml:4:37: modules.x.edits.device_nodes[2]: got an integer, expected a string: one of absolute path patterns of host device nodes, such as ["/dev/vfio/*"]`,
			`plugins.toml:5:16: modules.x.edits.annotations[0]: empty pattern, expected patterns of annotation keys, such as ["vendor.com/*"]`,
		},
	}, {
		name:    "paths",
		doc:     withModules + "[modules.x.edits]\nhost_paths = [\"\"]\nwritable = {}\n",
		modules: []string{"x"},
		want: []string{
			`plugins.toml:4:15: modules.x.edits.host_paths[0]: empty path, expected a path`,
			`plugins.toml:5:12: modules.x.edits.writable: got a table, expected an array of host paths, such as ["/opt/driver/lib"]`,
		},
	}})
}

func TestMemoryUnderOnePage(t *testing.T) {
	runErrorCases(t, []errorCase{{
		name: "sandbox",
		doc:  "[sandbox]\nmemory = \"1KiB\"\n",
		want: []string{`plugins.toml:2:10: sandbox.memory: size "1KiB" is less than one WebAssembly page, expected at least 65536 (64KiB)`},
	}, {
		name:    "module",
		doc:     withModules + "[modules.x]\nmemory = 65535\n",
		modules: []string{"x"},
		want:    []string{`plugins.toml:4:10: modules.x.memory: size 65535 is less than one WebAssembly page, expected at least 65536 (64KiB)`},
	}})
}

// Problems: what makes the host refuse a module at load, with its
// position; Warnings: broad mounts and devices = true. Neither stops Parse.
func TestProblemsAndWarnings(t *testing.T) {
	c, err, dir := parseIn(t, withModules+`[modules.x]
mounts = [
  { host = "missing", guest = "/a" },
  { host = "m/x.wasm", guest = "/b" },
  { host = "/sys", guest = "/sys" },
  { host = "/etc/ssl", guest = "/ssl", root = "/etc" },
  { host = "m", guest = "/m", devices = true },
  { host = "/proc", guest = "/proc", devices = false },
]
`, "x")
	if err != nil {
		t.Fatal(err)
	}
	text := func(es Errors) string { return strings.ReplaceAll(es.Error(), dir+string(filepath.Separator), "") }
	wantProblems := strings.Join([]string{
		`plugins.toml:5:12: modules.x.mounts[0].host: no such file or directory, expected an existing directory (the module is refused at load without it)`,
		`plugins.toml:6:12: modules.x.mounts[1].host: m/x.wasm is not a directory, expected a directory (the module is refused at load)`,
	}, "\n")
	if got := text(c.Problems()); got != wantProblems {
		t.Errorf("problems:\n%s\nwant:\n%s", got, wantProblems)
	}
	wantWarnings := strings.Join([]string{
		`plugins.toml:7:12: modules.x.mounts[2].host: the module may read all of /sys`,
		`plugins.toml:8:47: modules.x.mounts[3].root: the module may read all of /etc`,
		`plugins.toml:9:41: modules.x.mounts[4].devices: the module may open the device nodes under m`,
		`plugins.toml:10:12: modules.x.mounts[5].host: the module may read all of /proc`,
	}, "\n")
	if got := text(c.Warnings()); got != wantWarnings {
		t.Errorf("warnings:\n%s\nwant:\n%s", got, wantWarnings)
	}
}

func TestNodeNameAndClassDir(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "plugins.toml")
	os.WriteFile(path, []byte("[host]\nnode_name = \"Node_A\"\n"), 0o644)
	if _, err := Load(path); err == nil || !strings.Contains(err.Error(), `plugins.toml:2:13: host.node_name: invalid node name "Node_A"`) {
		t.Errorf("a node name Kubernetes refuses: %v", err)
	}
	os.WriteFile(path, []byte("[host]\nnode_name = \"node-a\"\ndevice_class_dir = \"classes\"\n"), 0o644)
	c, err := Load(path)
	if err != nil || c.Host.NodeName != "node-a" || c.Host.DeviceClassDir != filepath.Join(dir, "classes") {
		t.Errorf("%+v %v", c, err)
	}
	if d := Default().Host.NodeName; d == "" || d != strings.ToLower(d) {
		t.Errorf("default node name %q", d)
	}
}
