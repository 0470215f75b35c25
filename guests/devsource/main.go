// Command devsource is a wasmlet device source that offers the device nodes
// matching configured glob patterns under /dev as one extended resource, like
// the popular generic device plugins (/dev/fuse, /dev/net/tun, /dev/kvm,
// /dev/ttyUSB*, /dev/snd/*...).
//
// Patterns are absolute paths under /dev, matched one path element at a time
// with path.Match: "/dev/tty[0-9]*", "/dev/snd/*", "/dev/bus/usb/*/*". As in a
// shell, a wildcard does not match a name that begins with "." unless the
// pattern element does, and "**" has no special meaning. Only character and
// block devices count: regular files, directories and symbolic links are
// ignored (a link such as /dev/stdin is not followed; the node it points to
// counts under its own name).
//
// The module never opens or stats a device node: the type of each entry comes
// from listing its directory. Under wazero a stat opens the file, and opening
// some devices has effects (a watchdog starts counting, a serial port waits
// for its carrier).
//
// Device ids are the path under /dev with "/" turned into "." and any other
// character outside [A-Za-z0-9._-] into "_": /dev/null is "null",
// /dev/dri/card0 "dri.card0". With shares = n > 1, each node is offered n
// times, as "<id>-0" ... "<id>-<n-1>", so that n containers can use it at
// once. Attributes: path, type (char or block), and share when shared.
//
// allocate returns the device nodes of the allocated devices (container path
// = host path, with the configured permissions; a node allocated twice to one
// container appears once) and DEVICES_<RESOURCE> (the resource name in upper
// case, other characters as "_", e.g. DEVICES_EXAMPLE_COM_DEV) listing their
// paths, comma-separated. Each discovered device also carries its node as its
// container edits, for CDI specs. The module keeps nothing between calls:
// allocate lists the devices again. It suggests a rediscovery every 30
// seconds, besides the host's own watch on the mount, for devices plugged in
// later.
//
// Mount /dev read-only: mounts = [{host = "/dev", guest = "/dev"}].
//
// Configuration keys:
//
//	resource     the extended resource (default "example.com/dev")
//	globs        comma-separated absolute patterns under /dev (required),
//	             e.g. "/dev/null,/dev/tty[0-9]*"
//	dev          guest path where the host's /dev is mounted (default "/dev")
//	permissions  cgroup device permissions, of "r", "w" and "m"
//	             (default "rw")
//	shares       how many containers may share one node (default 1)
package main

import (
	"io/fs"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/wasmlet/wasmlet/abi"
	"github.com/wasmlet/wasmlet/guests/sdk"
	"github.com/wasmlet/wasmlet/guests/sdk/source"
)

func init() {
	source.Serve(source.Source{
		Resource:           sdk.ConfigOr("resource", "example.com/dev"),
		Name:               "devsource",
		Version:            "1.0.0",
		Summary:            "device nodes under /dev matching glob patterns",
		DiscoverIntervalMS: 30000,
		Discover: func() ([]abi.Device, error) {
			cfg, err := loadConfig()
			if err != nil {
				return nil, err
			}
			return discover(cfg, os.ReadDir)
		},
		Allocate: func(req *abi.AllocateRequest) (*abi.AllocateResponse, error) {
			cfg, err := loadConfig()
			if err != nil {
				return nil, err
			}
			return allocate(cfg, req, os.ReadDir)
		},
	})
}

func main() {}

// maxShares bounds shares, so that a typo cannot make millions of devices.
const maxShares = 1000

type config struct {
	resource    string
	globs       []string
	dev         string
	permissions string
	shares      int
}

func configError(key, value, want string) error {
	return sdk.Fail(abi.CodeFailedPrecondition, "configuration "+key+": "+strconv.Quote(value)+" "+want)
}

// loadConfig reads the configuration afresh on every call: the host may send
// discover and allocate to different instances.
func loadConfig() (config, error) {
	cfg := config{
		resource:    sdk.ConfigOr("resource", "example.com/dev"),
		dev:         path.Clean(sdk.ConfigOr("dev", "/dev")),
		permissions: sdk.ConfigOr("permissions", "rw"),
	}
	for _, g := range strings.Split(sdk.ConfigOr("globs", ""), ",") {
		if g = strings.TrimSpace(g); g == "" {
			continue
		}
		rel, ok := strings.CutPrefix(g, "/dev/")
		if !ok || rel == "" || strings.HasSuffix(rel, "/") {
			return cfg, configError("globs", g, "is not an absolute pattern under /dev, like /dev/ttyUSB*")
		}
		for _, elem := range strings.Split(rel, "/") {
			if _, err := path.Match(elem, ""); err != nil || elem == "" || elem == "." || elem == ".." {
				return cfg, configError("globs", g, "has an invalid element "+strconv.Quote(elem))
			}
		}
		cfg.globs = append(cfg.globs, g)
	}
	if len(cfg.globs) == 0 {
		return cfg, sdk.Fail(abi.CodeFailedPrecondition, "configuration globs is empty: set it to the device nodes to offer, "+
			"comma-separated absolute patterns such as /dev/fuse,/dev/ttyUSB*")
	}
	if !path.IsAbs(cfg.dev) {
		return cfg, configError("dev", cfg.dev, "is not an absolute path")
	}
	seen := ""
	for _, c := range cfg.permissions {
		if c != 'r' && c != 'w' && c != 'm' || strings.ContainsRune(seen, c) {
			return cfg, configError("permissions", cfg.permissions, `is not made of "r", "w" and "m"`)
		}
		seen += string(c)
	}
	if cfg.permissions == "" {
		return cfg, configError("permissions", "", `is not made of "r", "w" and "m"`)
	}
	var err error
	if cfg.shares, err = strconv.Atoi(strings.TrimSpace(sdk.ConfigOr("shares", "1"))); err != nil || cfg.shares < 1 || cfg.shares > maxShares {
		return cfg, configError("shares", sdk.ConfigOr("shares", ""), "is not a number from 1 to "+strconv.Itoa(maxShares))
	}
	return cfg, nil
}

// readDirFunc lists a directory; os.ReadDir, or a fake in tests. The entries'
// types come from the listing, so no device node is ever opened.
type readDirFunc func(dir string) ([]fs.DirEntry, error)

// node is a matching device node.
type node struct {
	path string // on the host, /dev/...
	typ  string // char or block
}

// nodes returns the device nodes matching the configured globs, sorted by
// path and without duplicates.
func nodes(cfg *config, readDir readDirFunc) ([]node, error) {
	cache := map[string][]fs.DirEntry{}
	list := func(dir string) []fs.DirEntry {
		es, ok := cache[dir]
		if !ok {
			es, _ = readDir(dir) // a directory that does not exist matches nothing
			cache[dir] = es
		}
		return es
	}
	top, err := readDir(cfg.dev)
	if err != nil {
		return nil, sdk.Fail(abi.CodeUnavailable, "cannot list "+cfg.dev+": "+err.Error()+
			" (grant it in plugins.toml: mounts = [{host = \"/dev\", guest = \""+cfg.dev+"\"}])")
	}
	cache[cfg.dev] = top
	var out []node
	for _, g := range cfg.globs {
		out = walk(list, cfg.dev, "/dev", strings.Split(strings.TrimPrefix(g, "/dev/"), "/"), out)
	}
	slices.SortFunc(out, func(a, b node) int { return strings.Compare(a.path, b.path) })
	uniq := out[:0]
	for i, n := range out {
		if i == 0 || n.path != out[i-1].path {
			uniq = append(uniq, n)
		}
	}
	return uniq, nil
}

// walk matches the pattern elements against the directory seen by the module
// at guest, which is host on the node.
func walk(list func(string) []fs.DirEntry, guest, host string, elems []string, out []node) []node {
	last := len(elems) == 1
	for _, e := range list(guest) {
		name := e.Name()
		if name[0] == '.' && elems[0][0] != '.' {
			continue
		}
		if !utf8.ValidString(name) {
			continue // its path could not be reported: ABI strings are UTF-8
		}
		if ok, _ := path.Match(elems[0], name); !ok {
			continue
		}
		t := e.Type()
		switch {
		case !last:
			if t.IsDir() {
				out = walk(list, guest+"/"+name, host+"/"+name, elems[1:], out)
			}
		case t&fs.ModeCharDevice != 0 && t&fs.ModeDevice != 0:
			out = append(out, node{path: host + "/" + name, typ: "char"})
		case t&fs.ModeDevice != 0:
			out = append(out, node{path: host + "/" + name, typ: "block"})
		}
	}
	return out
}

// deviceID names a node: its path under /dev, "/" as ".", other characters
// outside [A-Za-z0-9._-] as "_".
func deviceID(p string) string {
	b := []byte(strings.TrimPrefix(p, "/dev/"))
	for i, c := range b {
		switch {
		case c == '/':
			b[i] = '.'
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '-':
		default:
			b[i] = '_'
		}
	}
	return string(b)
}

// device is one offered device: a node, or one share of it.
type device struct {
	id    string
	node  node
	share int // -1 when not shared
}

// devices lists the offered devices. Nodes whose ids would be too long or
// would collide are left out, with a warning.
func devices(cfg *config, readDir readDirFunc) ([]device, error) {
	ns, err := nodes(cfg, readDir)
	if err != nil {
		return nil, err
	}
	var out []device
	var skipped []string
	seen := map[string]string{}
	for _, n := range ns {
		id := deviceID(n.path)
		longest := id
		if cfg.shares > 1 {
			longest += "-" + strconv.Itoa(cfg.shares-1)
		}
		if other, dup := seen[id]; dup || len(longest) > 63 {
			why := n.path + " (id " + id + " is longer than 63 bytes)"
			if dup {
				why = n.path + " (same id as " + other + ")"
			}
			skipped = append(skipped, why)
			continue
		}
		seen[id] = n.path
		if cfg.shares == 1 {
			out = append(out, device{id: id, node: n, share: -1})
			continue
		}
		for i := 0; i < cfg.shares; i++ {
			out = append(out, device{id: id + "-" + strconv.Itoa(i), node: n, share: i})
		}
	}
	if len(skipped) > 0 {
		sdk.Warn("device nodes left out: " + strings.Join(skipped, ", "))
	}
	return out, nil
}

func discover(cfg config, readDir readDirFunc) ([]abi.Device, error) {
	ds, err := devices(&cfg, readDir)
	if err != nil {
		return nil, err
	}
	out := make([]abi.Device, len(ds))
	for i, d := range ds {
		attrs := map[string]string{"path": d.node.path, "type": d.node.typ}
		if d.share >= 0 {
			attrs["share"] = strconv.Itoa(d.share)
		}
		out[i] = abi.Device{ID: d.id, Attributes: attrs,
			Edits: &abi.ContainerEdits{DeviceNodes: []abi.DeviceNode{deviceNode(&cfg, d.node.path)}}}
	}
	return out, nil
}

func deviceNode(cfg *config, p string) abi.DeviceNode {
	return abi.DeviceNode{ContainerPath: p, HostPath: p, Permissions: cfg.permissions}
}

func allocate(cfg config, req *abi.AllocateRequest, readDir readDirFunc) (*abi.AllocateResponse, error) {
	if len(req.DeviceIDs) == 0 {
		return nil, sdk.Refuse("no devices requested")
	}
	ds, err := devices(&cfg, readDir)
	if err != nil {
		return nil, err
	}
	byID := make(map[string]string, len(ds))
	for _, d := range ds {
		byID[d.id] = d.node.path
	}
	resp := &abi.AllocateResponse{}
	var paths []string
	for _, id := range req.DeviceIDs {
		p, ok := byID[id]
		if !ok {
			return nil, sdk.Fail(abi.CodeNotFound, "device "+strconv.Quote(id)+" is not one of the "+strconv.Itoa(len(ds))+
				" devices of "+cfg.resource+" on this node (globs "+strings.Join(cfg.globs, ",")+")")
		}
		dup := false
		for _, q := range paths {
			dup = dup || q == p
		}
		if !dup {
			paths = append(paths, p)
			resp.DeviceNodes = append(resp.DeviceNodes, deviceNode(&cfg, p))
		}
	}
	resp.Envs = map[string]string{"DEVICES_" + sdk.EnvName(cfg.resource): strings.Join(paths, ",")}
	return resp, nil
}
