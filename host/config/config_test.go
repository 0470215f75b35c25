package config

import (
	"bytes"
	"errors"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/wasmlet/wasmlet/host/device"
	"github.com/wasmlet/wasmlet/host/module"
)

func TestDefault(t *testing.T) {
	c := Default()
	wantHost := Host{
		StateDir:           "/var/lib/wasmlet",
		RegistryDir:        "/var/lib/wasmlet/plugins_registry",
		DevicePluginDir:    "/var/lib/wasmlet/device-plugins",
		ModuleDir:          "/var/lib/wasmlet/modules",
		APISocket:          "/run/wasmlet/wasmlet.sock",
		PodResourcesSocket: "/var/lib/wasmlet/pod-resources/wasmlet.sock",
		MetricsAddress:     "127.0.0.1:9465",
		LogLevel:           hclog.Info,
		LogFormat:          LogText,
		ResyncPeriod:       30 * time.Second,
		GracePeriod:        5 * time.Minute,
		OperationTimeout:   10 * time.Second,
		BackoffInitial:     500 * time.Millisecond,
		BackoffMax:         2 * time.Minute,
		NodeName:           DefaultNodeName(),
	}
	if c.Host != wantHost {
		t.Errorf("Host:\n got %+v\nwant %+v", c.Host, wantHost)
	}
	wantSandbox := Sandbox{
		Memory: 64 << 20, Timeout: 2 * time.Second, InitTimeout: 10 * time.Second, PoolSize: 2, PoolMax: 8,
		MaxReply: 4 << 20, QuarantineAfter: 5, LogRate: 50, LogBurst: 200,
	}
	if c.Sandbox != wantSandbox {
		t.Errorf("Sandbox:\n got %+v\nwant %+v", c.Sandbox, wantSandbox)
	}
	wantBridge := Bridge{
		KubeletDir:        "/var/lib/kubelet/device-plugins",
		Registration:      RegisterKubeletSocket,
		PluginRegistryDir: "/var/lib/kubelet/plugins_registry",
		CDIDir:            "/var/run/cdi",
	}
	if c.Bridge != wantBridge {
		t.Errorf("Bridge:\n got %+v\nwant %+v", c.Bridge, wantBridge)
	}
	if h := c.Handlers(); h == nil || len(h) != 0 {
		t.Errorf("Handlers() = %#v, want an empty map", h)
	}
	if s := c.Source("any"); s != (SourceConfig{Watch: true}) {
		t.Errorf("Source = %+v", s)
	}
	if c.File != "" {
		t.Errorf("File = %q", c.File)
	}

	// The sandbox defaults are the runtime's: a module with no
	// configuration runs as if the runtime had filled them in itself.
	got := c.ModuleOptions("counter")
	want := module.Options{
		Name:            "counter",
		MemoryLimit:     module.DefaultMemoryLimit,
		CallTimeout:     module.DefaultCallTimeout,
		InitTimeout:     module.DefaultInitTimeout,
		MaxReply:        module.DefaultMaxReply,
		PoolSize:        module.DefaultPoolSize,
		PoolMax:         module.DefaultPoolMax,
		QuarantineAfter: module.DefaultQuarantineAfter,
		LogRate:         module.DefaultLogRate,
		LogBurst:        module.DefaultLogBurst,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ModuleOptions:\n got %+v\nwant %+v", got, want)
	}
}

// TestEmptyFile checks that an empty file (or one of comments) is the
// default configuration.
func TestEmptyFile(t *testing.T) {
	for _, doc := range []string{"", "# nothing\n\n", "[host]\n[sandbox]\n[modules]\n[handlers]\n[sources]\n[bridge]\n"} {
		c, err, dir := parseIn(t, doc)
		if err != nil {
			t.Fatalf("%q: %v", doc, err)
		}
		if c.File != filepath.Join(dir, "plugins.toml") {
			t.Errorf("File = %q", c.File)
		}
		c.File = ""
		if !reflect.DeepEqual(c, Default()) {
			t.Errorf("%q:\n got %+v\nwant %+v", doc, c, Default())
		}
	}
}

func TestRelativePaths(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "etc")
	mustMkdir(t, filepath.Join(sub, "state", "modules"))
	mustWrite(t, filepath.Join(sub, "state", "modules", "x.wasm"), "")
	doc := `
[host]
state_dir = "state"
registry_dir = "../registry/"
api_socket = "./run//wasmlet.sock"

[modules.x]
mounts = [{ host = "data/./in", guest = "/in/", root = "data" }]

[handlers]
T = "x"

[bridge]
cdi_dir = "cdi"
`
	mustWrite(t, filepath.Join(sub, "plugins.toml"), doc)
	c, err := Load(filepath.Join(sub, "plugins.toml"))
	if err != nil {
		t.Fatal(err)
	}
	check := func(what, got, want string) {
		t.Helper()
		if got != want {
			t.Errorf("%s = %q, want %q", what, got, want)
		}
	}
	check("File", c.File, filepath.Join(sub, "plugins.toml"))
	check("StateDir", c.Host.StateDir, filepath.Join(sub, "state"))
	check("RegistryDir", c.Host.RegistryDir, filepath.Join(dir, "registry"))
	check("DevicePluginDir (derived)", c.Host.DevicePluginDir, filepath.Join(sub, "state", "device-plugins"))
	check("ModuleDir (derived)", c.Host.ModuleDir, filepath.Join(sub, "state", "modules"))
	check("APISocket", c.Host.APISocket, filepath.Join(sub, "run", "wasmlet.sock"))
	check("PodResourcesSocket (derived)", c.Host.PodResourcesSocket, filepath.Join(sub, "state", "pod-resources", "wasmlet.sock"))
	check("CDIDir", c.Bridge.CDIDir, filepath.Join(sub, "cdi"))
	check("KubeletDir (absolute default)", c.Bridge.KubeletDir, "/var/lib/kubelet/device-plugins")
	mounts := c.ModuleOptions("x").Mounts
	want := []module.Mount{{Host: filepath.Join(sub, "data", "in"), Guest: "/in", Root: filepath.Join(sub, "data")}}
	if !reflect.DeepEqual(mounts, want) {
		t.Errorf("Mounts = %+v, want %+v", mounts, want)
	}

	// A relative file name is resolved against the current directory.
	t.Chdir(sub)
	c, err = Load("plugins.toml")
	if err != nil {
		t.Fatal(err)
	}
	check("File, relative", c.File, filepath.Join(sub, "plugins.toml"))
	check("StateDir, relative file", c.Host.StateDir, filepath.Join(sub, "state"))

	// So are paths in a configuration without a file.
	t.Chdir(dir)
	c, err = Parse([]byte("host.state_dir = \"state\"\n"), "")
	if err != nil {
		t.Fatal(err)
	}
	check("File, none", c.File, "")
	check("StateDir, no file", c.Host.StateDir, filepath.Join(dir, "state"))
}

func TestModuleOptionsMerge(t *testing.T) {
	const digest = "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855"
	// [modules] comes before [sandbox] on purpose: order does not matter.
	doc := withModules + `
[modules.a]
memory = "16MiB"
pool_size = 4
config = { class = "0x03", vendor = "" }
mounts = [
  { host = "/sys/bus/pci/devices", guest = "/sys/bus/pci/devices", root = "/sys" },
  { host = "/dev", guest = "/dev" },
]
sha256 = "` + digest + `"

[modules.b]
log_rate = 5

[sandbox]
memory = 33554432
timeout = "1s"
max_reply = "1MB"
quarantine_after = 3
pool_max = 3
`
	c, err, _ := parseIn(t, doc, "a", "b")
	if err != nil {
		t.Fatal(err)
	}
	base := module.Options{
		MemoryLimit: 32 << 20, CallTimeout: time.Second, InitTimeout: 10 * time.Second,
		MaxReply: 1e6, PoolSize: 2, PoolMax: 3, QuarantineAfter: 3, LogRate: 50, LogBurst: 200,
	}

	a := base
	// pool_max, inherited from [sandbox], rises to the module's pool_size.
	a.Name, a.MemoryLimit, a.PoolSize, a.PoolMax = "a", 16<<20, 4, 4
	a.Config = map[string]string{"class": "0x03", "vendor": ""}
	a.Mounts = []module.Mount{
		{Host: "/sys/bus/pci/devices", Guest: "/sys/bus/pci/devices", Root: "/sys"},
		{Host: "/dev", Guest: "/dev"},
	}
	a.SHA256 = strings.ToLower(digest)

	b := base
	b.Name, b.LogRate = "b", 5

	other := base
	other.Name = "other"

	for _, want := range []module.Options{a, b, other} {
		if got := c.ModuleOptions(want.Name); !reflect.DeepEqual(got, want) {
			t.Errorf("ModuleOptions(%q):\n got %+v\nwant %+v", want.Name, got, want)
		}
	}
	if c.Sandbox.Memory != 32<<20 || c.Sandbox.MaxReply != 1e6 {
		t.Errorf("Sandbox = %+v", c.Sandbox)
	}

	// The caller owns what it gets.
	got := c.ModuleOptions("a")
	got.Config["class"] = "changed"
	got.Mounts[0].Host = "/changed"
	if again := c.ModuleOptions("a"); !reflect.DeepEqual(again, a) {
		t.Errorf("ModuleOptions changed by its caller: %+v", again)
	}
}

func TestHandlersAndSources(t *testing.T) {
	doc := withModules + `
[handlers]
DevicePlugin = "dph"
"example.com/Custom" = "custom"

[sources.pci]
discover_interval = "45s"
watch = false
bridge = true

[sources.dev]
discover_interval = "0s"

[sources.gpu]
bridge = "dra"

[sources.nic]
bridge = "device-plugin"

[sources.none]
bridge = false
`
	c, err, _ := parseIn(t, doc, "dph", "custom", "pci", "dev", "gpu", "nic", "none")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"DevicePlugin": "dph", "example.com/Custom": "custom"}
	h := c.Handlers()
	if !reflect.DeepEqual(h, want) {
		t.Errorf("Handlers() = %v, want %v", h, want)
	}
	h["DevicePlugin"] = "changed"
	if !reflect.DeepEqual(c.Handlers(), want) {
		t.Errorf("Handlers() changed by its caller")
	}
	for name, want := range map[string]SourceConfig{
		"pci":   {DiscoverInterval: 45 * time.Second, Watch: false, Bridge: BridgeDevicePlugin},
		"dev":   {DiscoverInterval: 0, Watch: true},
		"gpu":   {Watch: true, Bridge: BridgeDRA},
		"nic":   {Watch: true, Bridge: BridgeDevicePlugin},
		"none":  {Watch: true},
		"other": {Watch: true},
	} {
		if got := c.Source(name); got != want {
			t.Errorf("Source(%q) = %+v, want %+v", name, got, want)
		}
	}
}

func TestHostAndBridge(t *testing.T) {
	doc := `
[host]
state_dir = "/srv/wasmlet"
module_dir = "/opt/modules"
metrics_address = ""
log_level = "debug"
log_format = "json"
resync_period = "1m"
grace_period = "0s"
operation_timeout = "3s"
backoff_initial = "1s"
backoff_max = "1s"

[bridge]
registration = "plugin-registry"
plugin_registry_dir = "/k/plugins_registry"

[dra]
kubeconfig = "kube/config"
plugin_dir = "/k/plugins"
rolling_update = true
max_devices = 64
`
	c, err := Parse([]byte(doc), "/etc/wasmlet/plugins.toml")
	if err != nil {
		t.Fatal(err)
	}
	want := Host{
		StateDir: "/srv/wasmlet", RegistryDir: "/srv/wasmlet/plugins_registry",
		DevicePluginDir: "/srv/wasmlet/device-plugins", ModuleDir: "/opt/modules",
		APISocket: "/run/wasmlet/wasmlet.sock", PodResourcesSocket: "/srv/wasmlet/pod-resources/wasmlet.sock", MetricsAddress: "",
		LogLevel: hclog.Debug, LogFormat: LogJSON,
		ResyncPeriod: time.Minute, GracePeriod: 0, OperationTimeout: 3 * time.Second,
		BackoffInitial: time.Second, BackoffMax: time.Second, NodeName: DefaultNodeName(),
	}
	if c.Host != want {
		t.Errorf("Host:\n got %+v\nwant %+v", c.Host, want)
	}
	wantBridge := Bridge{
		KubeletDir: "/var/lib/kubelet/device-plugins", Registration: RegisterPluginRegistry,
		PluginRegistryDir: "/k/plugins_registry", CDIDir: "/var/run/cdi",
	}
	if c.Bridge != wantBridge {
		t.Errorf("Bridge:\n got %+v\nwant %+v", c.Bridge, wantBridge)
	}
	wantDRA := DRA{Kubeconfig: "/etc/wasmlet/kube/config", PluginDir: "/k/plugins",
		RegistryDir: "/var/lib/kubelet/plugins_registry", RollingUpdate: true, MaxDevices: 64}
	if c.DRA != wantDRA {
		t.Errorf("DRA:\n got %+v\nwant %+v", c.DRA, wantDRA)
	}
	if c.Bridges(BridgeDRA) {
		t.Error("Bridges(dra) with no source bridged")
	}
	for level, want := range map[string]hclog.Level{"trace": hclog.Trace, "info": hclog.Info, "warn": hclog.Warn, "error": hclog.Error} {
		c, err := Parse([]byte("host.log_level = \""+level+"\""), "p.toml")
		if err != nil || c.Host.LogLevel != want {
			t.Errorf("log_level %q: %v, %v", level, c, err)
		}
	}
}

// TestRepoPluginsToml checks the example at the root of the repository: it
// is valid on any machine once its modules are built, its comment shows a
// real error, and it says what the project promises it says.
func TestRepoPluginsToml(t *testing.T) {
	data, err := os.ReadFile("../../plugins.toml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "plugins.toml")
	mustWrite(t, file, string(data))

	// Without the modules (make guests builds them), each reference to one
	// is reported.
	_, err = Load(file)
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("without modules: %v", err)
	}
	var missing []string
	for _, e := range errs {
		if !strings.Contains(e.Msg, "not found") {
			t.Errorf("unexpected error: %v", e)
		}
		missing = append(missing, e.Key)
	}
	wantMissing := []string{
		"modules.devicepluginhandler", "modules.csihandler", "modules.customhandler", "modules.pcisource", "modules.devsource",
		"modules.gpusim", "modules.gpusim-shared", "handlers.DevicePlugin", "handlers.CSIPlugin", "handlers.ExamplePlugin", "sources.pcisource", "sources.devsource",
	}
	if !reflect.DeepEqual(missing, wantMissing) {
		t.Errorf("missing modules reported for %v, want %v", missing, wantMissing)
	}

	// With placeholder module files, it is valid.
	modules := filepath.Join(dir, "build", "modules")
	mustMkdir(t, modules)
	for _, m := range []string{"devicepluginhandler", "csihandler", "customhandler", "pcisource", "devsource", "gpusim", "gpusim-shared"} {
		mustWrite(t, filepath.Join(modules, m+".wasm"), "")
	}
	c, err := Load(file)
	if err != nil {
		t.Fatal(err)
	}
	build := filepath.Join(dir, "build")
	for what, got := range map[string]string{
		build + "/state":                      c.Host.StateDir,
		build + "/plugins_registry":           c.Host.RegistryDir,
		build + "/device-plugins":             c.Host.DevicePluginDir,
		build + "/modules":                    c.Host.ModuleDir,
		build + "/run/wasmlet.sock":           c.Host.APISocket,
		build + "/pod-resources/wasmlet.sock": c.Host.PodResourcesSocket,
		"127.0.0.1:9465":                      c.Host.MetricsAddress,
	} {
		if got != what {
			t.Errorf("got %q, want %q", got, what)
		}
	}
	wantHandlers := map[string]string{"DevicePlugin": "devicepluginhandler", "CSIPlugin": "csihandler", "ExamplePlugin": "customhandler"}
	if h := c.Handlers(); !reflect.DeepEqual(h, wantHandlers) {
		t.Errorf("Handlers() = %v, want %v", h, wantHandlers)
	}
	for _, s := range []string{"pcisource", "devsource"} {
		if got, want := c.Source(s), (SourceConfig{DiscoverInterval: 30 * time.Second, Watch: true}); got != want {
			t.Errorf("Source(%q) = %+v, want %+v", s, got, want)
		}
	}
	pci := c.ModuleOptions("pcisource")
	if want := []module.Mount{{Host: "/sys/bus/pci/devices", Guest: "/sys/bus/pci/devices", Root: "/sys"}}; !reflect.DeepEqual(pci.Mounts, want) {
		t.Errorf("pcisource mounts = %+v, want %+v", pci.Mounts, want)
	}
	if pci.Config["class"] != "" || pci.Config["vendor"] != "" {
		t.Errorf("pcisource config = %v, want permissive filters", pci.Config)
	}
	dev := c.ModuleOptions("devsource")
	if want := []module.Mount{{Host: "/dev", Guest: "/dev"}}; !reflect.DeepEqual(dev.Mounts, want) {
		t.Errorf("devsource mounts = %+v, want %+v", dev.Mounts, want)
	}
	if got, want := dev.Config["globs"], "/dev/null,/dev/zero,/dev/random,/dev/urandom"; got != want {
		t.Errorf("devsource globs = %q, want %q", got, want)
	}
	if got := c.ModuleOptions("counter"); got.Mounts != nil || got.Config != nil {
		t.Errorf("counter is configured: %+v", got)
	}

	// The error shown in the file's opening comment is the real one.
	var shown string
	for _, line := range strings.Split(string(data), "\n") {
		if s, ok := strings.CutPrefix(line, "#   plugins.toml:"); ok {
			shown = "plugins.toml:" + s
		}
	}
	broken := bytes.Replace(data, []byte("memory = \"64MiB\""), []byte("memory = \"64M\""), 1)
	mustWrite(t, file, string(broken))
	t.Chdir(dir)
	_, err = Load("plugins.toml")
	if err == nil || err.Error() != shown {
		t.Errorf("the comment shows\n%s\nbut the error is\n%v", shown, err)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.toml"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("got %v, want a not-exist error", err)
	}
}

func TestParseSize(t *testing.T) {
	for s, want := range map[string]uint64{
		"0B": 0, "1B": 1, "4096B": 4096, "1KiB": 1024, "64MiB": 64 << 20, "4GiB": 4 << 30,
		"1KB": 1000, "5MB": 5e6, "2GB": 2e9, " 64 MiB ": 64 << 20,
		"99999999999999999999B": math.MaxUint64, "18446744073709551615KiB": math.MaxUint64,
	} {
		got, err := parseSize(s)
		if err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", s, got, err, want)
		}
	}
	for _, s := range []string{"", "64", "MiB", "64M", "64mib", "64 Mi B", "-1KiB", "+1KiB", "1.5GiB", "1e3B", "0x10B", "1_000B", "64MiB64"} {
		if got, err := parseSize(s); err == nil {
			t.Errorf("parseSize(%q) = %d, want an error", s, got)
		}
	}
}

func mustMkdir(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
}

func mustWrite(t *testing.T, file, data string) {
	t.Helper()
	if err := os.WriteFile(file, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestPodResourcesSocket: the read-only pod resources socket is a key of
// its own, derived from state_dir when left out, checked for length like
// every socket, and never the admin socket.
func TestPodResourcesSocket(t *testing.T) {
	c, err := Parse([]byte("[host]\nstate_dir = \"/s\"\n"), "")
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Host.PodResourcesSocket; got != "/s/pod-resources/wasmlet.sock" {
		t.Errorf("derived PodResourcesSocket %q", got)
	}
	if got := Default().Host.PodResourcesSocket; got != "/var/lib/wasmlet/pod-resources/wasmlet.sock" {
		t.Errorf("default PodResourcesSocket %q", got)
	}
	c, err = Parse([]byte("[host]\npod_resources_socket = \"/run/pr/wasmlet.sock\"\n"), "")
	if err != nil || c.Host.PodResourcesSocket != "/run/pr/wasmlet.sock" {
		t.Fatalf("%v, %v", c, err)
	}
	for doc, want := range map[string]string{
		"[host]\napi_socket = \"/a.sock\"\npod_resources_socket = \"/a.sock\"\n": "3:24: host.pod_resources_socket: api_socket and pod_resources_socket are both /a.sock",
		"[host]\npod_resources_socket = \"/" + strings.Repeat("p", 120) + "\"\n": "2:24: host.pod_resources_socket: socket path",
		"[host]\nstate_dir = \"/" + strings.Repeat("s", 100) + "\"\n":            "2:13: host.state_dir: socket path /sss",
	} {
		_, err := Parse([]byte(doc), "")
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", doc, err, want)
		}
	}
}

// [modules.<name>.edits] becomes the module's grant: patterns as written,
// host paths resolved against the file's directory; a module without one
// is granted nothing.
func TestEditGrant(t *testing.T) {
	c, err, dir := parseIn(t, withModules+`
[modules.x.edits]
device_nodes = ["/dev/vfio/*", "/dev/nvidia[0-9]"]
host_paths = ["/opt/driver", "lib"]
writable = ["/dev/vfio"]
env = ["NVIDIA_*", "LD_LIBRARY_PATH"]
annotations = ["vendor.com/*"]
cdi_devices = ["vendor.com/gpu=*"]
`, "x", "y")
	if err != nil {
		t.Fatal(err)
	}
	want := device.Grant{DeviceNodes: []string{"/dev/vfio/*", "/dev/nvidia[0-9]"}, HostPaths: []string{"/opt/driver", filepath.Join(dir, "lib")},
		Writable: []string{"/dev/vfio"}, Env: []string{"NVIDIA_*", "LD_LIBRARY_PATH"}, Annotations: []string{"vendor.com/*"},
		CDIDevices: []string{"vendor.com/gpu=*"}}
	got := c.EditGrant("x")
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("grant %+v\nwant  %+v", got, want)
	}
	got.Env[0] = "LD_*"
	if c.EditGrant("x").Env[0] != "NVIDIA_*" {
		t.Fatal("EditGrant returned the configuration's own slice")
	}
	if g := c.EditGrant("y"); !reflect.DeepEqual(g, device.Grant{}) {
		t.Fatalf("a module without edits is granted %+v", g)
	}
}
