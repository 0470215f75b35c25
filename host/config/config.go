package config

import (
	"bytes"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/wasmlet/wasmlet/host/device"
	"github.com/wasmlet/wasmlet/host/module"
)

// Built-in defaults, used for every key the file leaves out.
const (
	defaultStateDir          = "/var/lib/wasmlet"
	defaultAPISocket         = "/run/wasmlet/wasmlet.sock"
	defaultMetricsAddress    = "127.0.0.1:9465"
	defaultResyncPeriod      = 30 * time.Second
	defaultGracePeriod       = 5 * time.Minute
	defaultOperationTimeout  = 10 * time.Second
	defaultBackoffInitial    = 500 * time.Millisecond
	defaultBackoffMax        = 2 * time.Minute
	defaultKubeletDir        = "/var/lib/kubelet/device-plugins"
	defaultPluginRegistryDir = "/var/lib/kubelet/plugins_registry"
	defaultCDIDir            = "/var/run/cdi"
	defaultDRAPluginDir      = "/var/lib/kubelet/plugins"
	defaultDRAMaxDevices     = 1024
)

// Config is a parsed and validated plugins.toml. Every field holds its final
// value: defaults are filled in and paths are absolute and clean. A Config is not
// modified after Load, Parse or Default return it, so it is safe for
// concurrent use; its methods return copies.
type Config struct {
	// File is the absolute path of the file the configuration was read
	// from, or "" (Default, or Parse without a path).
	File string
	// Host is the [host] section.
	Host Host
	// Sandbox is the [sandbox] section: the limits of every module that
	// has no [modules.<name>] entry of its own, and the base of those that
	// do. ModuleOptions applies them.
	Sandbox Sandbox
	// Bridge is the [bridge] section.
	Bridge Bridge
	// DRA is the [dra] section.
	DRA DRA

	modules  map[string]moduleEntry  // [modules.<name>], sandbox already merged
	handlers map[string]string       // [handlers]: plugin type -> module name
	sources  map[string]SourceConfig // [sources.<name>]

	problems, warnings Errors
}

// Host is the [host] section: where wasmlet keeps and finds things, and how
// it logs and reconciles.
type Host struct {
	// StateDir holds the checkpoint and the compilation cache.
	StateDir string
	// RegistryDir is watched for plugin registration sockets (the kubelet
	// uses /var/lib/kubelet/plugins_registry). Default: StateDir/plugins_registry.
	RegistryDir string
	// DevicePluginDir is where wasmlet serves kubelet.sock and device
	// plugins put their sockets. Default: StateDir/device-plugins.
	DevicePluginDir string
	// ModuleDir holds the .wasm handlers and device sources, and is
	// watched. Default: StateDir/modules.
	ModuleDir string
	// APISocket is the admin API's unix socket (status, allocate, release,
	// module reload): only wasmlet's user can use it.
	APISocket string
	// PodResourcesSocket serves the kubelet's read-only pod resources API
	// (v1 and v1alpha1) on a socket of its own, so that a monitoring agent
	// given it gets no admin rights. Default:
	// StateDir/pod-resources/wasmlet.sock, as the kubelet's is
	// <root-dir>/pod-resources/kubelet.sock.
	PodResourcesSocket string
	// MetricsAddress is the host:port serving /metrics, /healthz and
	// /readyz; "" disables it.
	MetricsAddress string
	// LogLevel is one of hclog.Trace, Debug, Info, Warn, Error.
	LogLevel hclog.Level
	// LogFormat is LogText or LogJSON.
	LogFormat LogFormat
	// ResyncPeriod is how often the reconciler runs without an event.
	ResyncPeriod time.Duration
	// GracePeriod is how long a vanished plugin's devices stay, unhealthy,
	// before they are removed. It may be 0.
	GracePeriod time.Duration
	// OperationTimeout bounds each plugin registration operation.
	OperationTimeout time.Duration
	// BackoffInitial and BackoffMax shape the exponential backoff after a
	// failed registration: the first retry waits BackoffInitial, each next
	// one twice as long, up to BackoffMax.
	BackoffInitial, BackoffMax time.Duration
	// NodeName names the node: the pool of every device source's driver,
	// as a DRA driver names its node's pool. Default: $NODE_NAME, else the
	// host name, in lower case.
	NodeName string
	// DeviceClassDir holds resource.k8s.io/v1 DeviceClass files (*.yaml,
	// *.yml, *.json), read when wasmlet starts; "" is none.
	DeviceClassDir string
}

// DefaultNodeName is $NODE_NAME when it is set (a DaemonSet sets it from
// the downward API, spec.nodeName, since a pod's host name is its own), else
// the host name, lower case, or "localhost" when it cannot be had or is not
// a DNS subdomain.
func DefaultNodeName() string {
	if n := os.Getenv("NODE_NAME"); n != "" && len(validation.IsDNS1123Subdomain(n)) == 0 {
		return n
	}
	h, err := os.Hostname()
	h = strings.ToLower(h)
	if err != nil || len(validation.IsDNS1123Subdomain(h)) > 0 {
		return "localhost"
	}
	return h
}

// LogFormat is how log lines are written.
type LogFormat string

// The log formats.
const (
	LogText LogFormat = "text"
	LogJSON LogFormat = "json"
)

// Sandbox holds a module's limits: the [sandbox] section, or a module's
// entry in [modules] merged over it.
type Sandbox struct {
	// Memory caps each instance's linear memory, in bytes.
	Memory uint64
	// Timeout bounds every call into the module.
	Timeout time.Duration
	// InitTimeout bounds instantiation.
	InitTimeout time.Duration
	// PoolSize is how many instances of the module are kept to serve calls.
	PoolSize int
	// PoolMax is the most instances that run at once: calls that wait for
	// a busy pool start more, up to PoolMax. Never less than PoolSize.
	PoolMax int
	// MaxReply is the largest reply accepted from the module, in bytes.
	MaxReply uint64
	// QuarantineAfter is how many consecutive faults quarantine the module.
	QuarantineAfter int
	// LogRate (lines per second) and LogBurst (lines) limit its logging.
	LogRate, LogBurst int
}

// SourceConfig says how a device-source module is run: its
// [sources.<name>] entry, or the defaults.
type SourceConfig struct {
	// DiscoverInterval is how often the source rediscovers its devices.
	// Zero means the module's own suggestion; if it has none, discovery
	// runs on start and when the module file or a watched file changes.
	DiscoverInterval time.Duration
	// Watch rediscovers when files under the module's mounts change.
	Watch bool
	// Bridge serves the source to an external kubelet instead of
	// wasmlet's own device manager: as a device plugin (BridgeDevicePlugin,
	// bridge = true, as described by Config.Bridge) or as a DRA driver
	// (BridgeDRA, bridge = "dra", as described by Config.DRA).
	Bridge BridgeKind
}

// BridgeKind is how a source is served to an external kubelet.
type BridgeKind string

// The ways a source is served: not to a kubelet (NoBridge), as a device
// plugin (v1beta1) or as a DRA driver (resource.k8s.io/v1).
const (
	NoBridge           BridgeKind = ""
	BridgeDevicePlugin BridgeKind = "device-plugin"
	BridgeDRA          BridgeKind = "dra"
)

// Bridge is the [bridge] section: how device sources are served to an
// unmodified kubelet.
type Bridge struct {
	// KubeletDir is where the external kubelet's kubelet.sock lives.
	KubeletDir string
	// Registration is how bridged sources announce themselves.
	Registration Registration
	// PluginRegistryDir is the kubelet's plugin registry, used with
	// RegisterPluginRegistry.
	PluginRegistryDir string
	// CDIDir is where the CDI spec files for every source's devices (bridged
	// or not) are written.
	CDIDir string
}

// DRA is the [dra] section: how sources with bridge = "dra" are served to
// the kubelet and the cluster, as DRA drivers.
type DRA struct {
	// Kubeconfig is the kubeconfig file that reaches the API server; ""
	// is the in-cluster configuration (the pod's service account).
	Kubeconfig string
	// PluginDir is the kubelet's plugin directory: each driver's DRA
	// service socket goes in <PluginDir>/<driver>/.
	PluginDir string
	// RegistryDir is the kubelet's plugin registry, where the drivers'
	// registration sockets go.
	RegistryDir string
	// RollingUpdate names the sockets after the pod's UID (from the
	// environment variable POD_UID, which the DaemonSet sets from the
	// downward API), so that a new wasmlet pod serves beside the old one
	// during a rolling update (kubelet 1.33 or later).
	RollingUpdate bool
	// MaxDevices bounds the devices one driver publishes: a source that
	// discovers more has the rest left out, and says so in status, rather
	// than filling the API server with ResourceSlices. Default 1024.
	MaxDevices int
}

// Registration is how a bridged device source registers with a kubelet.
type Registration string

// The registration methods.
const (
	// RegisterKubeletSocket calls Register on KubeletDir/kubelet.sock, as
	// device plugins traditionally do.
	RegisterKubeletSocket Registration = "kubelet-socket"
	// RegisterPluginRegistry puts a registration socket in
	// PluginRegistryDir for the kubelet's plugin watcher to find.
	RegisterPluginRegistry Registration = "plugin-registry"
)

// moduleEntry is one [modules.<name>] section.
type moduleEntry struct {
	sandbox Sandbox
	sha256  string
	config  map[string]string
	mounts  []module.Mount
	edits   device.Grant
}

// Default returns the configuration used when there is no file: the built-in
// defaults, no module entries, no handlers and no source entries.
func Default() *Config {
	c := &Config{
		Host: Host{
			StateDir:         defaultStateDir,
			APISocket:        defaultAPISocket,
			MetricsAddress:   defaultMetricsAddress,
			LogLevel:         hclog.Info,
			LogFormat:        LogText,
			ResyncPeriod:     defaultResyncPeriod,
			GracePeriod:      defaultGracePeriod,
			OperationTimeout: defaultOperationTimeout,
			BackoffInitial:   defaultBackoffInitial,
			BackoffMax:       defaultBackoffMax,
			NodeName:         DefaultNodeName(),
		},
		Sandbox: Sandbox{
			Memory:          module.DefaultMemoryLimit,
			Timeout:         module.DefaultCallTimeout,
			InitTimeout:     module.DefaultInitTimeout,
			PoolSize:        module.DefaultPoolSize,
			PoolMax:         module.DefaultPoolMax,
			MaxReply:        module.DefaultMaxReply,
			QuarantineAfter: module.DefaultQuarantineAfter,
			LogRate:         module.DefaultLogRate,
			LogBurst:        module.DefaultLogBurst,
		},
		Bridge: Bridge{
			KubeletDir:        defaultKubeletDir,
			Registration:      RegisterKubeletSocket,
			PluginRegistryDir: defaultPluginRegistryDir,
			CDIDir:            defaultCDIDir,
		},
		DRA: DRA{
			PluginDir:   defaultDRAPluginDir,
			RegistryDir: defaultPluginRegistryDir,
			MaxDevices:  defaultDRAMaxDevices,
		},
		modules:  map[string]moduleEntry{},
		handlers: map[string]string{},
		sources:  map[string]SourceConfig{},
	}
	c.Host.deriveDirs()
	return c
}

// deriveDirs fills in the directories and sockets that default to places
// under StateDir.
func (h *Host) deriveDirs() {
	if h.RegistryDir == "" {
		h.RegistryDir = filepath.Join(h.StateDir, "plugins_registry")
	}
	if h.DevicePluginDir == "" {
		h.DevicePluginDir = filepath.Join(h.StateDir, "device-plugins")
	}
	if h.ModuleDir == "" {
		h.ModuleDir = filepath.Join(h.StateDir, "modules")
	}
	if h.PodResourcesSocket == "" {
		h.PodResourcesSocket = filepath.Join(h.StateDir, "pod-resources", "wasmlet.sock")
	}
}

// Load reads, parses and validates the configuration file at path. A file
// that cannot be read gives the *fs.PathError; an invalid file gives an
// Errors listing every mistake found.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(data, path)
}

// Parse parses and validates a configuration. path names the file in error
// messages, and relative paths in the configuration are resolved against its
// directory (the current directory if path is ""). Validation looks at the
// file system: every module the configuration names must exist in the
// module directory. An invalid configuration gives an Errors listing every
// mistake found, in file order.
func Parse(data []byte, path string) (*Config, error) {
	name, file := "<input>", ""
	if path != "" {
		var err error
		if file, err = filepath.Abs(path); err != nil {
			return nil, err
		}
		name = path
	}
	dir, err := filepath.Abs(filepath.Dir(path)) // "." when path is ""
	if err != nil {
		return nil, err
	}
	// A byte order mark is not TOML, but editors write them; columns are
	// counted without it, as editors show them.
	data = bytes.TrimPrefix(data, []byte("\ufeff"))

	root, err := parseDocument(data, name)
	if err != nil {
		return nil, err
	}
	d := &decoder{file: name, dir: dir}
	c := d.config(root)
	if len(d.errs) > 0 {
		return nil, sortErrors(d.errs)
	}
	c.File = file
	c.problems, c.warnings = sortErrors(d.problems), sortErrors(d.warnings)
	return c, nil
}

// Problems are the mistakes that do not stop the host but make it refuse a
// module when it loads it: a mount whose host or root directory does not
// exist or is not a directory. `wasmlet config validate` reports them as
// errors. Whether a [handlers] entry names a handler module (and not a
// device source) is the module's own answer to describe, known only once
// it is loaded: `wasmlet module inspect` says.
func (c *Config) Problems() Errors { return slices.Clone(c.problems) }

// Warnings are grants worth a second look: a mount of the whole of /,
// /etc, /proc or /sys (as host or root), and devices = true.
func (c *Config) Warnings() Errors { return slices.Clone(c.warnings) }

// Bridges reports whether any [sources.<name>] entry serves its source to a
// kubelet as kind.
func (c *Config) Bridges(kind BridgeKind) bool {
	for _, s := range c.sources {
		if s.Bridge == kind {
			return true
		}
	}
	return false
}

// ModuleOptions returns the sandbox of the named module: its [modules.<name>]
// entry merged over [sandbox], or [sandbox] alone if it has no entry. Logger,
// Cache and Observer are left for the caller to set.
func (c *Config) ModuleOptions(name string) module.Options {
	e, ok := c.modules[name]
	if !ok {
		e.sandbox = c.Sandbox
	}
	s := e.sandbox
	return module.Options{
		Name:            name,
		MemoryLimit:     s.Memory,
		CallTimeout:     s.Timeout,
		InitTimeout:     s.InitTimeout,
		MaxReply:        uint32(min(s.MaxReply, maxReply)),
		PoolSize:        s.PoolSize,
		PoolMax:         s.PoolMax,
		QuarantineAfter: s.QuarantineAfter,
		Mounts:          slices.Clone(e.mounts),
		Config:          maps.Clone(e.config),
		SHA256:          e.sha256,
		LogRate:         s.LogRate,
		LogBurst:        s.LogBurst,
	}
}

// EditGrant returns what the named module may hand containers beyond its
// own mounts: its [modules.<name>.edits], or nothing.
func (c *Config) EditGrant(name string) device.Grant {
	return c.modules[name].edits.Clone()
}

// Handlers returns the [handlers] section: the module name that handles each
// plugin type.
func (c *Config) Handlers() map[string]string {
	return maps.Clone(c.handlers)
}

// Source returns how the named device-source module is run: its
// [sources.<name>] entry, or the defaults (discover interval 0, watch on,
// bridge off) if it has none.
func (c *Config) Source(name string) SourceConfig {
	if s, ok := c.sources[name]; ok {
		return s
	}
	return defaultSource
}

var defaultSource = SourceConfig{Watch: true}
