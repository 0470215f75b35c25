package config

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/pelletier/go-toml/v2"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/wasmlet/wasmlet/host/device"
	"github.com/wasmlet/wasmlet/host/module"
)

// Limits on sizes, from the wasm32 address space and module.Options.
const (
	maxMemory = 4 << 30        // 65536 pages of 64 KiB
	minMemory = 64 << 10       // one page: a module has at least one, or none
	maxReply  = math.MaxUint32 // module.Options.MaxReply is a uint32
	// maxSocketPath is the longest unix socket path that works everywhere:
	// sun_path is 108 bytes on Linux, including the terminating NUL.
	maxSocketPath = 107
)

// parseDocument builds the positioned tree the schema is decoded from, and
// checks the document against the TOML specification with go-toml's
// decoder. Keys and tables defined twice are reported by the tree builder,
// which knows where the first definition is; syntax errors, and any rule of
// the specification the builder does not check, by go-toml.
func parseDocument(data []byte, file string) (*node, error) {
	root, conflicts, treeErr := parseTree(data)
	if treeErr == nil && len(conflicts) > 0 {
		errs := make(Errors, len(conflicts))
		for i, c := range conflicts {
			errs[i] = errorf(file, c.at, c.path, "%s", c.msg)
		}
		return nil, sortErrors(errs)
	}
	var generic map[string]any
	if err := toml.Unmarshal(data, &generic); err != nil {
		e := tomlError(data, file, err)
		if e.Key == "" && treeErr == nil {
			// A malformed value (a bad escape, an impossible date): go-toml
			// says where, the tree says which key.
			e.Key = root.keyAt(pos{e.Line, e.Column}, "")
		}
		return nil, Errors{e}
	}
	if treeErr != nil {
		// go-toml's decoder accepted what its parser rejects: report it
		// all the same.
		return nil, Errors{tomlError(data, file, treeErr)}
	}
	return root, nil
}

// tomlError converts an error from go-toml into an *Error.
func tomlError(data []byte, file string, err error) *Error {
	e := &Error{File: file, Line: 1, Column: 1, Msg: strings.TrimPrefix(err.Error(), "toml: ")}
	var de *toml.DecodeError
	if errors.As(err, &de) {
		e.Line, e.Column = de.Position()
		for _, k := range de.Key() {
			e.Key = keyPath(e.Key, k)
		}
	} else if off, ok := parserErrorOffset(data, err); ok {
		e.Line, e.Column = positionAt(data, off)
	}
	return e
}

// positionAt is the line and column of a byte offset.
func positionAt(data []byte, off int) (line, col int) {
	line, start := 1, 0
	for i := 0; i < off && i < len(data); i++ {
		if data[i] == '\n' {
			line, start = line+1, i+1
		}
	}
	return line, off - start + 1
}

// decoder decodes the tree into a Config, collecting every mistake.
type decoder struct {
	file string // as named in messages
	dir  string // relative paths are resolved against it
	errs Errors
	// problems are what makes the host refuse a module when it loads it,
	// not the file; warnings are grants a reviewer should look at twice.
	problems, warnings Errors

	moduleDir  string   // resolved [host] module_dir, for module references
	moduleList []string // the modules in moduleDir, once listed
}

func (d *decoder) errorf(at pos, key, format string, args ...any) {
	d.errs = append(d.errs, errorf(d.file, at, key, format, args...))
}

func (d *decoder) problemf(at pos, key, format string, args ...any) {
	d.problems = append(d.problems, errorf(d.file, at, key, format, args...))
}

func (d *decoder) warnf(at pos, key, format string, args ...any) {
	d.warnings = append(d.warnings, errorf(d.file, at, key, format, args...))
}

// field decodes one key of a table.
type field struct {
	name   string
	decode func(n *node, key string)
}

// table decodes the keys of n with fs, in the order of fs (so that a
// section can depend on one decoded before it), and reports every key that
// is not in fs.
func (d *decoder) table(n *node, key string, fs []field) {
	if !d.is(n, key, kindTable, "a table") {
		return
	}
	known := make([]string, len(fs))
	for i, f := range fs {
		known[i] = f.name
		if v, ok := n.fields[f.name]; ok {
			f.decode(v, keyPath(key, f.name))
		}
	}
	for _, k := range n.keys {
		if !slices.Contains(known, k) {
			d.unknown(n.fields[k], keyPath(key, k), k, known)
		}
	}
}

func (d *decoder) unknown(n *node, key, name string, known []string) {
	msg := "unknown key, expected " + oneOf(known)
	if s, ok := suggest(name, known); ok {
		msg += " (did you mean " + s + "?)"
	}
	d.errorf(n.key, key, "%s", msg)
}

// is reports whether n is of kind k, and reports a mistake if not.
func (d *decoder) is(n *node, key string, k kind, expected string) bool {
	if n.kind == k {
		return true
	}
	d.errorf(n.at, key, "got %s, expected %s", n.kind, expected)
	return false
}

// config decodes the whole document over the defaults.
func (d *decoder) config(root *node) *Config {
	c := Default()
	// The directories under state_dir are derived once [host] is decoded;
	// host() does it, or this does when there is no [host].
	c.Host.RegistryDir, c.Host.DevicePluginDir, c.Host.ModuleDir, c.Host.PodResourcesSocket = "", "", "", ""
	if root.fields["host"] == nil {
		c.Host.deriveDirs()
	}
	d.moduleDir = c.Host.ModuleDir
	// The order matters: modules, handlers and sources refer to the
	// module directory and the sandbox defaults.
	d.table(root, "", []field{
		{"host", func(n *node, key string) { d.host(n, key, &c.Host) }},
		{"sandbox", func(n *node, key string) { d.sandbox(n, key, &c.Sandbox, nil) }},
		{"modules", func(n *node, key string) { c.modules = d.modules(n, key, c.Sandbox) }},
		{"handlers", func(n *node, key string) { c.handlers = d.handlers(n, key) }},
		{"sources", func(n *node, key string) { c.sources = d.sources(n, key) }},
		{"bridge", func(n *node, key string) { d.bridge(n, key, &c.Bridge) }},
		{"dra", func(n *node, key string) { d.dra(n, key, &c.DRA) }},
	})
	return c
}

// The [host] section.
func (d *decoder) host(n *node, key string, h *Host) {
	var stateAt, devAt, socketAt, podAt *node
	var backoffInitial, backoffMax *node
	d.table(n, key, []field{
		{"state_dir", func(n *node, key string) {
			if d.path(n, key, &h.StateDir) {
				stateAt = n
			}
		}},
		{"registry_dir", func(n *node, key string) { d.path(n, key, &h.RegistryDir) }},
		{"device_plugin_dir", func(n *node, key string) {
			if d.path(n, key, &h.DevicePluginDir) {
				devAt = n
			}
		}},
		{"module_dir", func(n *node, key string) { d.path(n, key, &h.ModuleDir) }},
		{"api_socket", func(n *node, key string) {
			if d.path(n, key, &h.APISocket) {
				socketAt = n
			}
		}},
		{"pod_resources_socket", func(n *node, key string) {
			if d.path(n, key, &h.PodResourcesSocket) {
				podAt = n
			}
		}},
		{"metrics_address", func(n *node, key string) { d.address(n, key, &h.MetricsAddress) }},
		{"log_level", func(n *node, key string) {
			if v, ok := d.enum(n, key, "trace", "debug", "info", "warn", "error"); ok {
				h.LogLevel = hclog.LevelFromString(v)
			}
		}},
		{"log_format", func(n *node, key string) {
			if v, ok := d.enum(n, key, string(LogText), string(LogJSON)); ok {
				h.LogFormat = LogFormat(v)
			}
		}},
		{"resync_period", func(n *node, key string) { d.duration(n, key, &h.ResyncPeriod, false) }},
		{"grace_period", func(n *node, key string) { d.duration(n, key, &h.GracePeriod, true) }},
		{"operation_timeout", func(n *node, key string) { d.duration(n, key, &h.OperationTimeout, false) }},
		{"backoff_initial", func(n *node, key string) {
			if d.duration(n, key, &h.BackoffInitial, false) {
				backoffInitial = n
			}
		}},
		{"backoff_max", func(n *node, key string) {
			if d.duration(n, key, &h.BackoffMax, false) {
				backoffMax = n
			}
		}},
		{"node_name", func(n *node, key string) {
			if !d.is(n, key, kindString, "a node name (a DNS subdomain)") {
				return
			}
			if msgs := validation.IsDNS1123Subdomain(n.str); len(msgs) > 0 {
				d.errorf(n.at, key, "invalid node name %s: %s, expected a DNS subdomain, as Kubernetes names nodes", quote(n.str), strings.Join(msgs, "; "))
				return
			}
			h.NodeName = n.str
		}},
		{"device_class_dir", func(n *node, key string) { d.path(n, key, &h.DeviceClassDir) }},
	})
	h.deriveDirs()
	d.moduleDir = h.ModuleDir

	if h.BackoffMax < h.BackoffInitial {
		switch {
		case backoffMax != nil:
			d.errorf(backoffMax.at, keyPath(key, "backoff_max"), "%s is shorter than backoff_initial (%s), expected at least backoff_initial", quote(backoffMax.str), h.BackoffInitial)
		case backoffInitial != nil:
			d.errorf(backoffInitial.at, keyPath(key, "backoff_initial"), "%s is longer than backoff_max (%s), expected at most backoff_max", quote(backoffInitial.str), h.BackoffMax)
		}
	}
	// Unix socket paths are short; a long one fails only when bound, with
	// "invalid argument". Say so here, where the path is written.
	if socketAt != nil {
		d.socketPath(socketAt, keyPath(key, "api_socket"), h.APISocket)
	}
	switch {
	case podAt != nil:
		d.socketPath(podAt, keyPath(key, "pod_resources_socket"), h.PodResourcesSocket)
	case stateAt != nil:
		d.socketPath(stateAt, keyPath(key, "state_dir"), h.PodResourcesSocket)
	}
	if h.PodResourcesSocket == h.APISocket {
		at, name := podAt, "pod_resources_socket"
		if at == nil {
			at, name = socketAt, "api_socket"
		}
		if at != nil {
			d.errorf(at.at, keyPath(key, name), "api_socket and pod_resources_socket are both %s, expected two sockets: "+
				"the admin API must not be reachable through the read-only pod resources socket", h.PodResourcesSocket)
		}
	}
	if devAt != nil {
		d.socketPath(devAt, keyPath(key, "device_plugin_dir"), filepath.Join(h.DevicePluginDir, "kubelet.sock"))
	} else if stateAt != nil {
		d.socketPath(stateAt, keyPath(key, "state_dir"), filepath.Join(h.DevicePluginDir, "kubelet.sock"))
	}
}

func (d *decoder) socketPath(n *node, key, socket string) {
	if len(socket) > maxSocketPath {
		d.errorf(n.at, key, "socket path %s is %d bytes long, expected at most %d (the limit of a unix socket path)", socket, len(socket), maxSocketPath)
	}
}

// sandboxFields are the keys of [sandbox], also accepted in [modules.<name>].
func (d *decoder) sandboxFields(s *Sandbox) []field {
	return []field{
		{"memory", func(n *node, key string) { d.memory(n, key, &s.Memory) }},
		{"timeout", func(n *node, key string) { d.duration(n, key, &s.Timeout, false) }},
		{"init_timeout", func(n *node, key string) { d.duration(n, key, &s.InitTimeout, false) }},
		{"pool_size", func(n *node, key string) { d.integer(n, key, &s.PoolSize, 1) }},
		{"pool_max", func(n *node, key string) { d.integer(n, key, &s.PoolMax, 1) }},
		{"max_reply", func(n *node, key string) { d.size(n, key, &s.MaxReply, maxReply, "4294967295 (4GiB - 1)") }},
		{"quarantine_after", func(n *node, key string) { d.integer(n, key, &s.QuarantineAfter, 1) }},
		{"log_rate", func(n *node, key string) { d.integer(n, key, &s.LogRate, 1) }},
		{"log_burst", func(n *node, key string) { d.integer(n, key, &s.LogBurst, 1) }},
	}
}

// memory decodes a memory limit: from one WebAssembly page to the wasm32
// address space. A limit under a page would be rounded up to one.
func (d *decoder) memory(n *node, key string, dst *uint64) {
	v := *dst
	if !d.size(n, key, &v, maxMemory, "4GiB, the wasm32 address space") {
		return
	}
	if v < minMemory {
		text := n.raw
		if n.kind == kindString {
			text = quote(n.str)
		}
		d.errorf(n.at, key, "size %s is less than one WebAssembly page, expected at least 65536 (64KiB)", text)
		return
	}
	*dst = v
}

// sandbox decodes [sandbox], or a [modules.<name>] section when extra holds
// the module-only keys. A pool_max below pool_size is a mistake where the
// table sets it; one inherited from [sandbox] (or the default) rises to the
// table's pool_size.
func (d *decoder) sandbox(n *node, key string, s *Sandbox, extra []field) {
	d.table(n, key, append(d.sandboxFields(s), extra...))
	if s.PoolMax >= s.PoolSize || n.kind != kindTable {
		return
	}
	if at, ok := n.fields["pool_max"]; ok {
		d.errorf(at.at, keyPath(key, "pool_max"), "%d is less than pool_size %d, expected at least as many instances as the pool keeps", s.PoolMax, s.PoolSize)
		return
	}
	s.PoolMax = s.PoolSize
}

// The [modules] section: one table per module, over the [sandbox] defaults.
func (d *decoder) modules(n *node, key string, defaults Sandbox) map[string]moduleEntry {
	entries := make(map[string]moduleEntry)
	if !d.is(n, key, kindTable, "a table of modules, such as [modules.pcisource]") {
		return entries
	}
	for _, name := range n.keys {
		v, key := n.fields[name], keyPath(key, name)
		d.moduleRef(v.key, key, name)
		e := moduleEntry{sandbox: defaults}
		d.sandbox(v, key, &e.sandbox, []field{
			{"sha256", func(n *node, key string) { d.sha256(n, key, &e.sha256) }},
			{"config", func(n *node, key string) { e.config = d.moduleConfig(n, key) }},
			{"mounts", func(n *node, key string) { e.mounts = d.mounts(n, key) }},
			{"edits", func(n *node, key string) { e.edits = d.edits(n, key) }},
		})
		entries[name] = e
	}
	return entries
}

func (d *decoder) sha256(n *node, key string, dst *string) {
	if !d.is(n, key, kindString, "a SHA-256 digest (64 hexadecimal digits)") {
		return
	}
	if _, err := hex.DecodeString(n.str); err != nil || len(n.str) != 64 {
		d.errorf(n.at, key, "%s is not a SHA-256 digest, expected 64 hexadecimal digits (as printed by sha256sum)", quote(n.str))
		return
	}
	*dst = strings.ToLower(n.str)
}

// moduleConfig decodes a module's config table: string values only.
func (d *decoder) moduleConfig(n *node, key string) map[string]string {
	if !d.is(n, key, kindTable, `a table of strings, such as { class = "0x0300" }`) {
		return nil
	}
	m := make(map[string]string, len(n.keys))
	for _, k := range n.keys {
		v, key := n.fields[k], keyPath(key, k)
		switch v.kind {
		case kindString:
			m[k] = v.str
		case kindInteger, kindFloat, kindBool, kindDatetime:
			d.errorf(v.at, key, "got %s, expected a string (write %s)", v.kind, quote(v.raw))
		default:
			d.errorf(v.at, key, "got %s, expected a string", v.kind)
		}
	}
	return m
}

// mounts decodes a module's read-only mounts.
func (d *decoder) mounts(n *node, key string) []module.Mount {
	if !d.is(n, key, kindArray, `an array of mounts, such as [{ host = "/dev", guest = "/dev" }]`) {
		return nil
	}
	var mounts []module.Mount
	guests := make(map[string]int)
	for i, v := range n.elems {
		key := indexPath(key, i)
		var m module.Mount
		var hostAt, guestAt, rootAt *node
		d.table(v, key, []field{
			{"host", func(n *node, key string) {
				if d.path(n, key, &m.Host) {
					hostAt = n
				}
			}},
			{"guest", func(n *node, key string) {
				if d.guestPath(n, key, &m.Guest) {
					guestAt = n
				}
			}},
			{"root", func(n *node, key string) {
				if d.path(n, key, &m.Root) {
					rootAt = n
				}
			}},
			{"devices", func(n *node, key string) { d.boolean(n, key, &m.Devices) }},
		})
		if v.kind != kindTable {
			continue
		}
		var missing []string
		if v.fields["host"] == nil {
			missing = append(missing, "host")
		}
		if v.fields["guest"] == nil {
			missing = append(missing, "guest")
		}
		if len(missing) > 0 {
			d.errorf(v.at, key, "missing %s, expected a mount with host, guest and optionally root and devices", strings.Join(missing, " and "))
			continue
		}
		if hostAt == nil || guestAt == nil {
			continue // already reported
		}
		if rootAt != nil && !within(m.Root, m.Host) {
			d.errorf(rootAt.at, keyPath(key, "root"), "%s does not contain host %s, expected %s or a directory above it", quote(m.Root), quote(m.Host), quote(m.Host))
			continue
		}
		if rootAt == nil && v.fields["root"] != nil {
			continue // already reported
		}
		if j, dup := guests[m.Guest]; dup {
			d.errorf(guestAt.at, keyPath(key, "guest"), "%s is already mounted by %s, expected each guest path once", quote(m.Guest), indexPath("mounts", j))
			continue
		}
		guests[m.Guest] = i
		if err := m.Validate(); err != nil { // belt and braces: the runtime's own check
			d.errorf(v.at, key, "%v, expected a valid mount", err)
			continue
		}
		d.checkMount(m, key, hostAt, rootAt, v.fields["devices"])
		mounts = append(mounts, m)
	}
	return mounts
}

// edits decodes a module's [modules.<name>.edits]: what it may hand
// containers beyond its own mounts (device.Grant).
func (d *decoder) edits(n *node, key string) device.Grant {
	var g device.Grant
	d.table(n, key, []field{
		{"device_nodes", func(n *node, key string) {
			g.DeviceNodes = d.patterns(n, key, `absolute path patterns of host device nodes, such as ["/dev/vfio/*"]`, true)
		}},
		{"host_paths", func(n *node, key string) { g.HostPaths = d.paths(n, key) }},
		{"writable", func(n *node, key string) { g.Writable = d.paths(n, key) }},
		{"env", func(n *node, key string) {
			g.Env = d.patterns(n, key, `patterns of environment variable names, such as ["NVIDIA_*"]`, false)
		}},
		{"annotations", func(n *node, key string) {
			g.Annotations = d.patterns(n, key, `patterns of annotation keys, such as ["vendor.com/*"]`, false)
		}},
		{"cdi_devices", func(n *node, key string) {
			g.CDIDevices = d.patterns(n, key, `patterns of qualified CDI device names, such as ["vendor.com/gpu=*"]`, false)
		}},
	})
	return g
}

// patterns decodes an array of path.Match patterns; abs: of absolute paths.
func (d *decoder) patterns(n *node, key, expected string, abs bool) []string {
	if !d.is(n, key, kindArray, "an array of "+expected) {
		return nil
	}
	var out []string
	for i, v := range n.elems {
		key := indexPath(key, i)
		if !d.is(v, key, kindString, "a string: one of "+expected) {
			continue
		}
		switch err := device.ValidPattern(v.str); {
		case v.str == "":
			d.errorf(v.at, key, "empty pattern, expected %s", expected)
		case err != nil:
			d.errorf(v.at, key, "invalid pattern %s (%v), expected %s", quote(v.str), err, expected)
		case abs && !strings.HasPrefix(v.str, "/"):
			d.errorf(v.at, key, "relative pattern %s, expected %s", quote(v.str), expected)
		default:
			out = append(out, v.str)
		}
	}
	return out
}

// paths decodes an array of paths, resolved as d.path does.
func (d *decoder) paths(n *node, key string) []string {
	if !d.is(n, key, kindArray, `an array of host paths, such as ["/opt/driver/lib"]`) {
		return nil
	}
	var out []string
	for i, v := range n.elems {
		var p string
		if d.path(v, indexPath(key, i), &p) {
			out = append(out, p)
		}
	}
	return out
}

// broadRoots are the directories whose whole a module is rarely meant to
// read: a mount of one is worth a warning.
var broadRoots = []string{"/", "/etc", "/proc", "/sys"}

// checkMount notes what the file system says of a valid mount: a host or
// root that is not a directory makes the module refused at load (a
// problem); a mount of a whole broad root, or devices = true, is a warning.
func (d *decoder) checkMount(m module.Mount, key string, hostAt, rootAt, devicesAt *node) {
	for _, c := range []struct {
		name, path string
		at         *node
	}{{"host", m.Host, hostAt}, {"root", m.Root, rootAt}} {
		if c.at == nil {
			continue
		}
		key := keyPath(key, c.name)
		switch fi, err := os.Stat(c.path); {
		case err != nil:
			d.problemf(c.at.at, key, "%v, expected an existing directory (the module is refused at load without it)", unwrapPathError(err))
		case !fi.IsDir():
			d.problemf(c.at.at, key, "%s is not a directory, expected a directory (the module is refused at load)", c.path)
		}
		if slices.Contains(broadRoots, c.path) {
			d.warnf(c.at.at, key, "the module may read all of %s", c.path)
		}
	}
	if m.Devices && devicesAt != nil {
		d.warnf(devicesAt.at, keyPath(key, "devices"), "the module may open the device nodes under %s", m.Host)
	}
}

// within reports whether dir is root or lies under it. Both are clean and
// absolute.
func within(root, dir string) bool {
	rel, err := filepath.Rel(root, dir)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

// The [handlers] section: plugin type = module name.
func (d *decoder) handlers(n *node, key string) map[string]string {
	handlers := make(map[string]string)
	if !d.is(n, key, kindTable, `a table of plugin types, such as DevicePlugin = "devicepluginhandler"`) {
		return handlers
	}
	for _, typ := range n.keys {
		v, key := n.fields[typ], keyPath(key, typ)
		if typ == "" {
			d.errorf(v.key, key, "empty plugin type, expected the plugin type a handler serves, such as DevicePlugin")
			continue
		}
		if !d.is(v, key, kindString, `a module name, such as "devicepluginhandler"`) {
			continue
		}
		if d.moduleRef(v.at, key, v.str) {
			handlers[typ] = v.str
		}
	}
	return handlers
}

// The [sources] section: one table per device-source module.
func (d *decoder) sources(n *node, key string) map[string]SourceConfig {
	sources := make(map[string]SourceConfig)
	if !d.is(n, key, kindTable, "a table of sources, such as [sources.pcisource]") {
		return sources
	}
	for _, name := range n.keys {
		v, key := n.fields[name], keyPath(key, name)
		d.moduleRef(v.key, key, name)
		s := defaultSource
		d.table(v, key, []field{
			{"discover_interval", func(n *node, key string) { d.duration(n, key, &s.DiscoverInterval, true) }},
			{"watch", func(n *node, key string) { d.boolean(n, key, &s.Watch) }},
			{"bridge", func(n *node, key string) { d.bridgeKind(n, key, &s.Bridge) }},
		})
		sources[name] = s
	}
	return sources
}

// The [bridge] section.
func (d *decoder) bridge(n *node, key string, b *Bridge) {
	d.table(n, key, []field{
		{"kubelet_dir", func(n *node, key string) { d.path(n, key, &b.KubeletDir) }},
		{"registration", func(n *node, key string) {
			if v, ok := d.enum(n, key, string(RegisterKubeletSocket), string(RegisterPluginRegistry)); ok {
				b.Registration = Registration(v)
			}
		}},
		{"plugin_registry_dir", func(n *node, key string) { d.path(n, key, &b.PluginRegistryDir) }},
		{"cdi_dir", func(n *node, key string) { d.path(n, key, &b.CDIDir) }},
	})
}

// bridgeKind decodes a source's bridge: true (a device plugin), false, or
// "device-plugin" or "dra".
func (d *decoder) bridgeKind(n *node, key string, b *BridgeKind) {
	if n.kind == kindBool {
		*b = NoBridge
		if n.flag {
			*b = BridgeDevicePlugin
		}
		return
	}
	if n.kind != kindString {
		d.is(n, key, kindString, `true, false, "device-plugin" or "dra"`)
		return
	}
	if v, ok := d.enum(n, key, string(BridgeDevicePlugin), string(BridgeDRA)); ok {
		*b = BridgeKind(v)
	}
}

// The [dra] section.
func (d *decoder) dra(n *node, key string, c *DRA) {
	d.table(n, key, []field{
		{"kubeconfig", func(n *node, key string) {
			if n.kind == kindString && n.str == "" {
				c.Kubeconfig = "" // the in-cluster configuration
				return
			}
			d.path(n, key, &c.Kubeconfig)
		}},
		{"plugin_dir", func(n *node, key string) { d.path(n, key, &c.PluginDir) }},
		{"registry_dir", func(n *node, key string) { d.path(n, key, &c.RegistryDir) }},
		{"rolling_update", func(n *node, key string) { d.boolean(n, key, &c.RollingUpdate) }},
		{"max_devices", func(n *node, key string) { d.integer(n, key, &c.MaxDevices, 1) }},
	})
}

// moduleRef checks that name is a module in the module directory, and
// reports where it is referenced if not.
func (d *decoder) moduleRef(at pos, key, name string) bool {
	switch {
	case name == "" || name == "." || name == "..":
		d.errorf(at, key, "invalid module name %s, expected the name of a .wasm file in module_dir, without .wasm", quote(name))
		return false
	case strings.ContainsAny(name, "/\x00"):
		d.errorf(at, key, "invalid module name %s, expected a file name without directories", quote(name))
		return false
	case strings.HasSuffix(name, ".wasm"):
		d.errorf(at, key, "invalid module name %s, expected the name without .wasm (%s)", quote(name), quote(strings.TrimSuffix(name, ".wasm")))
		return false
	}
	file := filepath.Join(d.moduleDir, name+".wasm")
	fi, err := os.Stat(file)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		msg := fmt.Sprintf("module %s not found, expected a file %s", quote(name), file)
		if s, ok := suggest(name, d.moduleNames()); ok {
			msg += fmt.Sprintf(" (did you mean %s?)", quote(s))
		}
		d.errorf(at, key, "%s", msg)
	case err != nil:
		d.errorf(at, key, "module %s: %v, expected a readable file %s", quote(name), unwrapPathError(err), file)
	case !fi.Mode().IsRegular():
		d.errorf(at, key, "module %s: %s is not a regular file, expected a .wasm file", quote(name), file)
	default:
		return true
	}
	return false
}

// moduleNames lists the modules in the module directory, for suggestions.
func (d *decoder) moduleNames() []string {
	if d.moduleList == nil {
		d.moduleList = []string{}
		entries, _ := os.ReadDir(d.moduleDir)
		for _, e := range entries {
			if name, ok := strings.CutSuffix(e.Name(), ".wasm"); ok && !e.IsDir() {
				d.moduleList = append(d.moduleList, name)
			}
		}
	}
	return d.moduleList
}

func unwrapPathError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Scalar decoders. Each reports its own mistakes, stores the value in dst
// only if it is valid, and returns whether it was.

func (d *decoder) boolean(n *node, key string, dst *bool) bool {
	if !d.is(n, key, kindBool, "true or false") {
		return false
	}
	*dst = n.flag
	return true
}

func (d *decoder) enum(n *node, key string, values ...string) (string, bool) {
	expected := oneOf(quoteAll(values))
	if !d.is(n, key, kindString, expected) {
		return "", false
	}
	if slices.Contains(values, n.str) {
		return n.str, true
	}
	msg := fmt.Sprintf("invalid value %s, expected %s", quote(n.str), expected)
	if s, ok := suggest(n.str, values); ok {
		msg += fmt.Sprintf(" (did you mean %s?)", quote(s))
	}
	d.errorf(n.at, key, "%s", msg)
	return "", false
}

func quoteAll(values []string) []string {
	q := make([]string, len(values))
	for i, v := range values {
		q[i] = quote(v)
	}
	return q
}

// integer decodes an integer from min to math.MaxInt32.
func (d *decoder) integer(n *node, key string, dst *int, min int64) bool {
	expected := fmt.Sprintf("an integer from %d to %d", min, math.MaxInt32)
	if !d.is(n, key, kindInteger, expected) {
		return false
	}
	if n.num < min || n.num > math.MaxInt32 {
		d.errorf(n.at, key, "%s is out of range, expected %s", n.raw, expected)
		return false
	}
	*dst = int(n.num)
	return true
}

const durationExpected = `a duration such as "500ms", "30s" or "5m" (units ns, us, ms, s, m, h)`

// duration decodes a duration string; zero is allowed only if zeroOK.
func (d *decoder) duration(n *node, key string, dst *time.Duration, zeroOK bool) bool {
	if !d.is(n, key, kindString, durationExpected) {
		return false
	}
	v, err := time.ParseDuration(n.str)
	switch {
	case err != nil:
		d.errorf(n.at, key, "invalid duration %s, expected %s", quote(n.str), durationExpected)
	case v < 0 && zeroOK:
		d.errorf(n.at, key, "negative duration %s, expected a duration of 0 or more", quote(n.str))
	case v < 0:
		d.errorf(n.at, key, "negative duration %s, expected a duration greater than 0", quote(n.str))
	case v == 0 && !zeroOK:
		d.errorf(n.at, key, "zero duration %s, expected a duration greater than 0", quote(n.str))
	default:
		*dst = v
		return true
	}
	return false
}

const sizeExpected = `a size in bytes, such as 67108864 or "64MiB" (units B, KiB, MiB, GiB, KB, MB, GB)`

// size decodes a byte size from 1 to max.
func (d *decoder) size(n *node, key string, dst *uint64, max uint64, maxText string) bool {
	var v uint64
	switch n.kind {
	case kindInteger:
		if n.num <= 0 {
			d.errorf(n.at, key, "size %s is not positive, expected a size greater than 0", n.raw)
			return false
		}
		v = uint64(n.num)
	case kindString:
		var err error
		if v, err = parseSize(n.str); err != nil {
			d.errorf(n.at, key, "invalid size %s, expected %s", quote(n.str), sizeExpected)
			return false
		}
		if v == 0 {
			d.errorf(n.at, key, "size %s is not positive, expected a size greater than 0", quote(n.str))
			return false
		}
	default:
		d.errorf(n.at, key, "got %s, expected %s", n.kind, sizeExpected)
		return false
	}
	if v > max {
		text := n.raw
		if n.kind == kindString {
			text = quote(n.str)
		}
		d.errorf(n.at, key, "size %s is too large, expected at most %s", text, maxText)
		return false
	}
	*dst = v
	return true
}

// path decodes a file system path, resolved against the configuration
// file's directory.
func (d *decoder) path(n *node, key string, dst *string) bool {
	if !d.is(n, key, kindString, "a path") {
		return false
	}
	switch {
	case n.str == "":
		d.errorf(n.at, key, "empty path, expected a path")
	case strings.ContainsRune(n.str, 0):
		d.errorf(n.at, key, "path contains a NUL byte, expected a path")
	default:
		p := n.str
		if !filepath.IsAbs(p) {
			p = filepath.Join(d.dir, p)
		}
		*dst = filepath.Clean(p)
		return true
	}
	return false
}

// guestPath decodes a path as the module sees it: absolute, slash-separated.
func (d *decoder) guestPath(n *node, key string, dst *string) bool {
	const expected = `an absolute path as the module sees it, such as "/sys/bus/pci/devices"`
	if !d.is(n, key, kindString, expected) {
		return false
	}
	switch {
	case !path.IsAbs(n.str):
		d.errorf(n.at, key, "relative path %s, expected %s", quote(n.str), expected)
	case strings.ContainsRune(n.str, 0):
		d.errorf(n.at, key, "path contains a NUL byte, expected %s", expected)
	default:
		*dst = path.Clean(n.str)
		return true
	}
	return false
}

// address decodes a host:port to listen on, or "" for none.
func (d *decoder) address(n *node, key string, dst *string) bool {
	const expected = `host:port, such as "127.0.0.1:9465", or "" to disable`
	if !d.is(n, key, kindString, expected) {
		return false
	}
	if n.str != "" {
		_, port, err := net.SplitHostPort(n.str)
		if err == nil {
			_, err = strconv.ParseUint(port, 10, 16)
		}
		if err != nil {
			d.errorf(n.at, key, "invalid address %s, expected %s", quote(n.str), expected)
			return false
		}
	}
	*dst = n.str
	return true
}
