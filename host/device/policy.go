package device

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// The kinds of edit, as refusals and the metric
// wasmlet_module_edits_refused_total name them.
const (
	KindDeviceNode = "device_node"
	KindMount      = "mount"
	KindEnv        = "env"
	KindAnnotation = "annotation"
	KindCDIDevice  = "cdi_device"
)

// Grant is what a node operator lets one module hand containers beyond what
// a Policy allows by default: its [modules.<name>.edits] in plugins.toml.
// Patterns are path.Match patterns.
type Grant struct {
	// DeviceNodes are patterns of host device node paths the module may
	// hand out (read-only unless Writable covers them), e.g. "/dev/vfio/*".
	DeviceNodes []string
	// HostPaths are host paths the module may mount into containers
	// (read-only unless Writable covers them), with what is under them.
	HostPaths []string
	// Writable are host paths, with what is under them, that may be mounted
	// read-write, or handed out as device nodes with "w" or "m".
	Writable []string
	// Env are patterns of environment variable names allowed beyond the
	// default (see Policy), e.g. "LD_LIBRARY_PATH".
	Env []string
	// Annotations are patterns of annotation keys allowed beyond the
	// resource's own domain.
	Annotations []string
	// CDIDevices are patterns of qualified CDI device names allowed beyond
	// the resource's own kind, e.g. "vendor.com/gpu=*".
	CDIDevices []string
}

// Clone returns a deep copy of g.
func (g Grant) Clone() Grant {
	return Grant{DeviceNodes: slices.Clone(g.DeviceNodes), HostPaths: slices.Clone(g.HostPaths),
		Writable: slices.Clone(g.Writable), Env: slices.Clone(g.Env), Annotations: slices.Clone(g.Annotations),
		CDIDevices: slices.Clone(g.CDIDevices)}
}

// ValidPattern checks a pattern of a Grant: path.ErrBadPattern, or an
// error for an empty one.
func ValidPattern(p string) error {
	if p == "" {
		return errEmptyPattern
	}
	_, err := path.Match(p, "")
	return err
}

var errEmptyPattern = errors.New("empty pattern")

// Root is a host directory a module was given, one of its mounts.
type Root struct {
	// Path is the host directory.
	Path string
	// Within is where symbolic links under Path may lead (the mount's
	// root); "" means Path.
	Within string
	// Devices: the module may open the device nodes under Path, and so may
	// hand them out.
	Devices bool
}

// Policy is what one module may hand a container. By default:
//
//   - mounts of host paths under one of its Roots, read-only;
//   - device nodes under one of its Roots with Devices, read-only
//     (permissions "r"; an empty permission string means "rwm" to the
//     runtimes, and is refused too);
//   - environment variables whose names are made of upper-case letters,
//     digits and '_', start with a letter, and are not reserved: the names
//     a dynamic loader, a libc, a shell or a language runtime reads to load
//     or run other code or to send traffic elsewhere (ReservedEnv);
//   - annotations whose key has the resource's domain as its prefix
//     ("example.com/..." for resource "example.com/gpu");
//   - CDI device names of the resource's own kind ("example.com/gpu=...").
//
// Grant adds to that. Host paths must be absolute and clean; a host path
// that is a symbolic link must lead where the Root or Grant that allows it
// allows (within a Root's Within). Container paths must be absolute.
type Policy struct {
	// Resource is the extended resource the module serves.
	Resource string
	Roots    []Root
	Grant    Grant
}

// Refused is the error of Check: the edits the policy does not allow.
type Refused struct {
	Edits []RefusedEdit
}

// RefusedEdit is one edit outside the policy.
type RefusedEdit struct {
	// Kind is one of the Kind constants.
	Kind string
	// Edit describes the edit, e.g. "device node /dev/mem (host /dev/mem, permissions \"rwm\")".
	Edit string
	// Why says which grant it lacks.
	Why string
}

func (r *Refused) Error() string {
	parts := make([]string, len(r.Edits))
	for i, e := range r.Edits {
		parts[i] = e.Edit + ": " + e.Why
	}
	return "container edits outside the module's grant: " + strings.Join(parts, "; ")
}

// Check returns a *Refused listing every edit of e that p does not allow,
// or nil.
func (p *Policy) Check(e Edits) error {
	var r Refused
	refuse := func(kind, edit, format string, args ...any) {
		r.Edits = append(r.Edits, RefusedEdit{Kind: kind, Edit: edit, Why: fmt.Sprintf(format, args...)})
	}
	for _, m := range e.Mounts {
		edit := fmt.Sprintf("mount of host %s at %s", m.HostPath, m.ContainerPath)
		if !m.ReadOnly {
			edit += " (read-write)"
		}
		if why := p.checkPaths(m.HostPath, m.ContainerPath); why != "" {
			refuse(KindMount, edit, "%s", why)
			continue
		}
		if !p.readable(m.HostPath, false) {
			refuse(KindMount, edit, "%s is under none of the module's mounts and not in edits.host_paths", m.HostPath)
			continue
		}
		if !m.ReadOnly && !p.writable(m.HostPath) {
			refuse(KindMount, edit, "%s is not in edits.writable (without it, mounts must be read-only)", m.HostPath)
		}
	}
	for _, n := range e.DeviceNodes {
		perms := n.Permissions
		if perms == "" {
			perms = "rwm"
		}
		edit := fmt.Sprintf("device node %s (host %s, permissions %q)", n.ContainerPath, n.HostPath, n.Permissions)
		if why := p.checkPaths(n.HostPath, n.ContainerPath); why != "" {
			refuse(KindDeviceNode, edit, "%s", why)
			continue
		}
		if strings.Trim(perms, "rwm") != "" {
			refuse(KindDeviceNode, edit, "permissions must be made of r, w and m")
			continue
		}
		if !p.readable(n.HostPath, true) {
			refuse(KindDeviceNode, edit, "%s is under no mount of the module with devices = true and matches no pattern of edits.device_nodes", n.HostPath)
			continue
		}
		if perms != "r" && !p.writable(n.HostPath) {
			refuse(KindDeviceNode, edit, "%s is not in edits.writable (without it, device nodes get permissions \"r\" only; \"\" means \"rwm\")", n.HostPath)
		}
	}
	for _, k := range sortedKeys(e.Env) {
		if matchAny(p.Grant.Env, k) {
			continue
		}
		if why := envNotAllowed(k); why != "" {
			refuse(KindEnv, "environment variable "+k, "%s, and it matches no pattern of edits.env", why)
		}
	}
	domain, _, _ := strings.Cut(p.Resource, "/")
	for _, k := range sortedKeys(e.Annotations) {
		if prefix, _, ok := strings.Cut(k, "/"); ok && prefix == domain && domain != "" || matchAny(p.Grant.Annotations, k) {
			continue
		}
		refuse(KindAnnotation, "annotation "+k, "its prefix is not the resource's domain %q, and it matches no pattern of edits.annotations", domain)
	}
	for _, name := range e.CDIDevices {
		if p.Resource != "" && strings.HasPrefix(name, p.Resource+"=") || matchAny(p.Grant.CDIDevices, name) {
			continue
		}
		refuse(KindCDIDevice, "CDI device "+name, "it is not of the resource's kind %q, and it matches no pattern of edits.cdi_devices", p.Resource)
	}
	if len(r.Edits) == 0 {
		return nil
	}
	return &r
}

// checkPaths says what is wrong with an edit's paths, or "".
func (p *Policy) checkPaths(host, container string) string {
	switch {
	case !filepath.IsAbs(host) || filepath.Clean(host) != host || strings.ContainsRune(host, 0):
		return fmt.Sprintf("the host path %q is not absolute and clean", host)
	case !path.IsAbs(container) || strings.ContainsRune(container, 0):
		return fmt.Sprintf("the container path %q is not absolute", container)
	}
	return ""
}

// readable reports whether host may be handed out read-only: as a device
// node (device) or as a mount. A host path that is a symbolic link, or
// lies under one, must lead where the same root or grant allows.
func (p *Policy) readable(host string, device bool) bool {
	resolved, ok := resolve(host)
	if !ok {
		return false
	}
	for _, r := range p.Roots {
		if device && !r.Devices || !under(host, r.Path) {
			continue
		}
		within := r.Within
		if within == "" {
			within = r.Path
		}
		if w, ok := resolve(within); ok && under(resolved, w) {
			return true
		}
	}
	if device {
		return matchAny(p.Grant.DeviceNodes, host) && matchAny(p.Grant.DeviceNodes, resolved)
	}
	return underAny(host, resolved, p.Grant.HostPaths)
}

// writable reports whether host may be written to, where it leads included.
func (p *Policy) writable(host string) bool {
	resolved, ok := resolve(host)
	return ok && underAny(host, resolved, p.Grant.Writable)
}

// maxLinks bounds the symbolic links followed resolving one path, as
// Linux's own lookup does.
const maxLinks = 40

// resolve is where the clean absolute path p leads through symbolic links,
// as the container runtime will follow them: like filepath.EvalSymlinks,
// except that what does not exist (a dangling link's target, a device node
// not there yet) is taken as written rather than refused. ok is false when
// the links do not end (a loop).
func resolve(p string) (resolved string, ok bool) {
	resolved = "/"
	rest := strings.Split(strings.TrimPrefix(p, "/"), "/")
	for links := 0; len(rest) > 0; {
		c := rest[0]
		rest = rest[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			resolved = filepath.Dir(resolved)
			continue
		}
		next := filepath.Join(resolved, c)
		fi, err := os.Lstat(next)
		if err != nil || fi.Mode()&fs.ModeSymlink == 0 {
			resolved = next
			continue
		}
		target, err := os.Readlink(next)
		if err != nil {
			resolved = next
			continue
		}
		if links++; links > maxLinks {
			return "", false
		}
		if filepath.IsAbs(target) {
			resolved = "/"
		}
		rest = append(strings.Split(target, "/"), rest...)
	}
	return resolved, true
}

// under reports whether p is dir or lies under it. Both are clean.
func under(p, dir string) bool {
	return p == dir || dir == "/" || strings.HasPrefix(p, dir+"/")
}

// underAny reports whether host lies under one of dirs and resolved (where
// it leads) under the same one, or where that one leads.
func underAny(host, resolved string, dirs []string) bool {
	return slices.ContainsFunc(dirs, func(d string) bool {
		d = filepath.Clean(d)
		if !under(host, d) {
			return false
		}
		rd, ok := resolve(d)
		return under(resolved, d) || ok && under(resolved, rd)
	})
}

func matchAny(patterns []string, s string) bool {
	return slices.ContainsFunc(patterns, func(p string) bool {
		ok, _ := path.Match(p, s)
		return ok
	})
}

// envName is the shape of the environment variable names allowed by
// default.
var envName = regexp.MustCompile(`^[A-Z][A-Z0-9_]*$`)

// ReservedEnv lists the environment variable names no module sets without
// a grant, whatever their shape allows: prefixes ending in '_' or a
// letter, suffixes starting with '_' or a letter, and exact names.
var ReservedEnv = struct{ Prefixes, Suffixes, Names []string }{
	Prefixes: []string{"LD_", "DYLD_", "MALLOC_", "GLIBC_", "GCONV_", "PYTHON", "PERL", "RUBY", "NODE_", "JAVA_",
		"DOTNET_", "CORECLR_", "BASH_", "GIT_", "SSL_"},
	Suffixes: []string{"PATH", "_PRELOAD", "_PROXY"},
	Names: []string{"ENV", "IFS", "SHELL", "HOME", "USER", "TMPDIR", "HOSTALIASES", "LOCALDOMAIN", "RES_OPTIONS",
		"PS4", "PROMPT_COMMAND", "KUBECONFIG"},
}

// envNotAllowed says why name is not allowed by default, or "".
func envNotAllowed(name string) string {
	if !envName.MatchString(name) {
		return "by default a name is made of upper-case letters, digits and '_', and starts with a letter"
	}
	for _, p := range ReservedEnv.Prefixes {
		if strings.HasPrefix(name, p) {
			return fmt.Sprintf("names starting with %s are reserved (a loader, libc or language runtime reads them)", p)
		}
	}
	for _, s := range ReservedEnv.Suffixes {
		if strings.HasSuffix(name, s) {
			return fmt.Sprintf("names ending in %s are reserved (search paths, preloads and proxies)", s)
		}
	}
	if slices.Contains(ReservedEnv.Names, name) {
		return "the name is reserved (a shell or libc reads it)"
	}
	return ""
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
