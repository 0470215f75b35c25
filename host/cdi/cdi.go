package cdi

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"go.yaml.in/yaml/v3"
	"k8s.io/utils/clock"
	cdilib "tags.cncf.io/container-device-interface/pkg/cdi"
	"tags.cncf.io/container-device-interface/pkg/parser"
	specs "tags.cncf.io/container-device-interface/specs-go"

	"github.com/wasmlet/wasmlet/host/device"
	"github.com/wasmlet/wasmlet/host/internal/defaults"
	"github.com/wasmlet/wasmlet/internal/atomicfile"
)

// FilePrefix starts the name of every spec file wasmlet writes.
const FilePrefix = "wasmlet-"

// DefaultGracePeriod is how long a spec file found at start waits for its
// source to come back before it is removed.
const DefaultGracePeriod = 5 * time.Minute

// Config wires Specs.
type Config struct {
	// Dir is the CDI spec directory (the bridge's cdi_dir, /var/run/cdi by
	// default). It is created when the first spec is written.
	Dir string
	// GracePeriod is how long a spec whose source went away, or a spec file
	// found in Dir at start, waits to be claimed by a source of its
	// resource before it is removed.
	GracePeriod time.Duration
	// Clock times the grace period and the status's times; the real clock
	// if nil.
	Clock  clock.WithDelayedExecution
	Logger hclog.Logger
}

// Specs keeps one CDI spec file per device source in a directory. It is
// safe for concurrent use.
type Specs struct {
	dir   string
	log   hclog.Logger
	clock clock.WithDelayedExecution
	grace time.Duration

	mu    sync.Mutex
	specs map[string]*spec      // by resource
	stale map[string]*staleSpec // spec files no source owns, by path
}

// staleSpec is a spec file no source owns: found at start, or left by a
// source that went away. It is removed at deadline unless a source of its
// resource claims it first.
type staleSpec struct {
	resource string
	devices  []string // the device ids in it, when known
	deadline time.Time
	timer    clock.Timer
}

// spec is one resource's spec file.
type spec struct {
	resource      string
	owner         *Provider // the only provider whose device sets count
	vendor, class string
	path          string // "" when the resource is not a valid CDI kind
	kindErr       error

	data      []byte            // the file on disk, nil if there is none
	names     map[string]bool   // device ids in the file on disk
	skipped   map[string]string // device id -> why it is not in the spec
	lastErr   string
	writes    int
	writtenAt time.Time
}

// New returns the spec keeper for cfg.Dir. Spec files of wasmlet already in
// the directory are adopted by the sources that claim them, and removed
// after the grace period if none does.
func New(cfg Config) (*Specs, error) {
	if !filepath.IsAbs(cfg.Dir) {
		return nil, fmt.Errorf("CDI spec directory %q: must be an absolute path", cfg.Dir)
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	defaults.Positive(&cfg.GracePeriod, DefaultGracePeriod)
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	s := &Specs{dir: filepath.Clean(cfg.Dir), log: cfg.Logger, clock: cfg.Clock, grace: cfg.GracePeriod,
		specs: map[string]*spec{}, stale: map[string]*staleSpec{}}
	entries, err := os.ReadDir(s.dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("CDI spec directory %s: %w", s.dir, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range entries {
		n := e.Name()
		switch {
		case !strings.HasPrefix(n, FilePrefix) || !e.Type().IsRegular():
		case strings.HasSuffix(n, ".yaml"):
			s.staleLocked(filepath.Join(s.dir, n), resourceOf(n), nil)
		case strings.HasSuffix(n, ".json"): // a claim's (claims.go), unless the claim store writes it again
			s.staleLocked(filepath.Join(s.dir, n), "", nil)
		}
	}
	return s, nil
}

// resourceOf is the resource of a spec file name, wasmlet-<domain>_<name>.yaml
// ('_' is not allowed in a domain).
func resourceOf(file string) string {
	vc := strings.TrimSuffix(strings.TrimPrefix(file, FilePrefix), ".yaml")
	vendor, class, _ := strings.Cut(vc, "_")
	return vendor + "/" + class
}

// staleLocked makes the file at path a stale spec, removed after the grace
// period unless a source of resource claims it first. Call with s.mu held.
func (s *Specs) staleLocked(path, resource string, devices []string) *staleSpec {
	st := &staleSpec{resource: resource, devices: devices, deadline: s.clock.Now().Add(s.grace)}
	// The timer's function must not use the clock: a fake one runs it with
	// its own lock held.
	st.timer = s.clock.AfterFunc(s.grace, func() { s.prune(path, st) })
	s.stale[path] = st
	return st
}

// Dir is the spec directory.
func (s *Specs) Dir() string { return s.dir }

// Close stops the removal of unclaimed spec files: they stay, for the next
// wasmlet to adopt or remove.
func (s *Specs) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, st := range s.stale {
		st.timer.Stop()
	}
}

// prune removes the stale spec file at path, if it is still st: its grace
// period is over and no source claimed it.
func (s *Specs) prune(path string, st *staleSpec) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stale[path] != st {
		return
	}
	delete(s.stale, path)
	if err := atomicfile.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		s.log.Error("cannot remove a CDI spec no device source claimed", "path", path, "error", err)
		return
	}
	s.log.Info("CDI spec removed: no device source of its resource came within the grace period", "path", path)
}

// SpecPath is the file a resource's spec is written to, or an error saying
// why the resource is not a valid CDI kind.
func SpecPath(dir, resource string) (vendor, class, path string, err error) {
	vendor, class = parser.ParseQualifier(resource)
	if vendor == "" {
		return "", "", "", fmt.Errorf("resource %q is not a valid CDI kind: it is not of the form <vendor>/<class>", resource)
	}
	if err := parser.ValidateVendorName(vendor); err != nil {
		return "", "", "", fmt.Errorf("resource %q is not a valid CDI kind: %w", resource, err)
	}
	if err := parser.ValidateClassName(class); err != nil {
		return "", "", "", fmt.Errorf("resource %q is not a valid CDI kind: %w", resource, err)
	}
	return vendor, class, filepath.Join(dir, FilePrefix+vendor+"_"+class+".yaml"), nil
}

// claim makes p the writer of its resource's spec, from now on.
func (s *Specs) claim(p *Provider) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sp := s.specs[p.resource]
	if sp == nil {
		sp = &spec{resource: p.resource}
		sp.vendor, sp.class, sp.path, sp.kindErr = SpecPath(s.dir, p.resource)
		s.specs[p.resource] = sp
		if sp.kindErr != nil {
			s.log.Error("no CDI spec for this device source: Allocate responses will carry its edits but no CDI device names",
				"resource", p.resource, "provider", p.Name(), "error", sp.kindErr)
		}
	}
	sp.owner = p
	if sp.path != "" {
		if st, ok := s.stale[sp.path]; ok {
			st.timer.Stop()
			delete(s.stale, sp.path)
			if data, err := os.ReadFile(sp.path); err == nil {
				sp.data = data // adopted: rewritten only if it differs
			}
		}
	}
}

// Remove lets the spec of resource go, if the provider called providerName
// still owns it: the source went away. Later device sets from that provider
// are ignored. The file stays for the grace period, as the devices of a lost
// provider do (a container holding its CDI names may restart meanwhile),
// and is adopted by a source of the resource that comes within it;
// otherwise it is removed then.
func (s *Specs) Remove(resource, providerName string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sp := s.specs[resource]
	if sp == nil || sp.owner == nil || sp.owner.Name() != providerName {
		return
	}
	delete(s.specs, resource)
	if sp.path == "" || sp.data == nil {
		return
	}
	st := s.staleLocked(sp.path, resource, slices.Sorted(maps.Keys(sp.names)))
	s.log.Info("device source went away; its CDI spec stays for the grace period, unless a source of the resource comes back",
		"resource", resource, "provider", providerName, "path", sp.path, "until", st.deadline)
}

// sync brings p's resource's spec in line with devs, if p still owns it.
func (s *Specs) sync(p *Provider, devs []device.Device) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sp := s.specs[p.resource]
	if sp == nil || sp.owner != p || sp.kindErr != nil {
		return
	}
	raw, names, skipped := build(p.resource, devs)
	if !maps.Equal(skipped, sp.skipped) {
		for _, id := range slices.Sorted(maps.Keys(skipped)) {
			if sp.skipped[id] != skipped[id] {
				s.log.Warn("device left out of the CDI spec", "resource", p.resource, "device", id, "reason", skipped[id])
			}
		}
		sp.skipped = skipped
	}
	if len(names) == 0 {
		if sp.data != nil {
			if err := atomicfile.Remove(sp.path); err != nil {
				sp.lastErr = err.Error()
				s.log.Error("cannot remove a CDI spec that has no devices left", "resource", p.resource, "path", sp.path, "error", err)
				return
			}
			s.log.Info("CDI spec removed: no device has edits CDI can express", "resource", p.resource, "path", sp.path)
		}
		sp.data, sp.names, sp.lastErr = nil, nil, ""
		return
	}
	data, err := render(raw, p.Name())
	if err != nil {
		sp.lastErr = err.Error()
		s.log.Error("cannot encode the CDI spec", "resource", p.resource, "error", err)
		return
	}
	if bytes.Equal(data, sp.data) {
		sp.names, sp.lastErr = names, ""
		return
	}
	if err := writeSpec(sp.path, data); err != nil {
		// The previous file, if any, is still there, and so are its names.
		sp.lastErr = err.Error()
		s.log.Error("cannot write the CDI spec; Allocate responses name only the devices in the file on disk",
			"resource", p.resource, "path", sp.path, "error", err)
		return
	}
	sp.data, sp.names, sp.lastErr = data, names, ""
	sp.writes++
	sp.writtenAt = s.clock.Now()
	s.log.Debug("CDI spec written", "resource", p.resource, "path", sp.path, "devices", len(names))
}

// Names returns the qualified CDI names of the devices among ids that are in
// resource's spec on disk, in the order of ids.
func (s *Specs) Names(resource string, ids []string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	sp := s.specs[resource]
	if sp == nil || len(sp.names) == 0 {
		return nil
	}
	var out []string
	for _, id := range ids {
		if sp.names[id] {
			out = append(out, parser.QualifiedName(sp.vendor, sp.class, id))
		}
	}
	return out
}

// Status is a snapshot of one resource's spec.
type Status struct {
	Resource string
	// Provider writes the spec.
	Provider string
	// Path is the spec file; empty when the resource is not a valid CDI
	// kind (Error says why).
	Path string
	// Devices are the device ids in the file on disk (none: no file).
	Devices []string
	// Skipped says why devices were left out, by id.
	Skipped map[string]string
	// Error is the last failure to write or remove the file, or why the
	// resource has no spec.
	Error     string
	Writes    int
	WrittenAt time.Time
	// RemoveAt is set when no source owns the spec (its source went away,
	// or it was there when wasmlet started): the file is removed then,
	// unless a source of the resource comes first.
	RemoveAt time.Time
}

// Status returns a snapshot of every spec, by resource.
func (s *Specs) Status() []Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Status, 0, len(s.specs))
	for _, sp := range s.specs {
		st := Status{Resource: sp.resource, Path: sp.path, Devices: slices.Sorted(maps.Keys(sp.names)),
			Skipped: maps.Clone(sp.skipped), Error: sp.lastErr, Writes: sp.writes, WrittenAt: sp.writtenAt}
		if sp.owner != nil {
			st.Provider = sp.owner.Name()
		}
		if sp.kindErr != nil {
			st.Error = sp.kindErr.Error()
		}
		out = append(out, st)
	}
	for path, st := range s.stale {
		out = append(out, Status{Resource: st.resource, Path: path, Devices: st.devices, RemoveAt: st.deadline})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Resource < out[j].Resource })
	return out
}

// build makes the spec of resource from devs: the devices whose edits CDI
// can express, and why the others are left out.
func build(resource string, devs []device.Device) (*specs.Spec, map[string]bool, map[string]string) {
	raw := &specs.Spec{Kind: resource}
	names := map[string]bool{}
	var skipped map[string]string
	skip := func(id, why string) {
		if skipped == nil {
			skipped = map[string]string{}
		}
		skipped[id] = why
	}
	for _, d := range devs {
		if d.Edits.Empty() {
			continue // nothing to say: not an omission worth reporting
		}
		if err := parser.ValidateDeviceName(d.ID); err != nil {
			skip(d.ID, "not a valid CDI device name: "+err.Error())
			continue
		}
		edits := containerEdits(d.Edits)
		if len(edits.Env) == 0 && len(edits.DeviceNodes) == 0 && len(edits.Mounts) == 0 {
			skip(d.ID, "its only edits are annotations, which CDI cannot pass to a container")
			continue
		}
		if err := (&cdilib.ContainerEdits{ContainerEdits: &edits}).Validate(); err != nil {
			skip(d.ID, "its edits are not valid in CDI: "+err.Error())
			continue
		}
		raw.Devices = append(raw.Devices, specs.Device{Name: d.ID, ContainerEdits: edits})
		names[d.ID] = true
	}
	return raw, names, skipped
}

// containerEdits converts a device's edits to CDI's. Annotations have no
// CDI equivalent that reaches the container and are left out; so are CDI
// device names (a discovered device's edits have none).
func containerEdits(e device.Edits) specs.ContainerEdits {
	var out specs.ContainerEdits
	for _, k := range slices.Sorted(maps.Keys(e.Env)) {
		out.Env = append(out.Env, k+"="+e.Env[k])
	}
	for _, n := range e.DeviceNodes {
		out.DeviceNodes = append(out.DeviceNodes, &specs.DeviceNode{Path: n.ContainerPath, HostPath: n.HostPath, Permissions: n.Permissions})
	}
	for _, m := range e.Mounts {
		opts := []string{"rbind"}
		if m.ReadOnly {
			opts = append(opts, "ro")
		}
		out.Mounts = append(out.Mounts, &specs.Mount{HostPath: m.HostPath, ContainerPath: m.ContainerPath, Type: "bind", Options: opts})
	}
	return out
}

// render encodes a spec as YAML, with the oldest CDI version that has every
// field it uses (runtimes refuse versions newer than they know), under a
// comment saying who wrote it.
func render(raw *specs.Spec, provider string) ([]byte, error) {
	v, err := specs.MinimumRequiredVersion(raw)
	if err != nil {
		return nil, err
	}
	raw.Version = v
	body, err := yaml.Marshal(raw)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "# Written by wasmlet for the device source %s (resource %s).\n", provider, raw.Kind)
	b.WriteString("# Do not edit: wasmlet rewrites this file when the devices or their edits change,\n")
	b.WriteString("# and removes it when the source goes away.\n---\n")
	b.Write(body)
	return b.Bytes(), nil
}

// writeSpec replaces the file at path with data atomically
// (atomicfile): a temporary file in the same directory, synced, validated
// by the CDI library as a runtime will read it, renamed into place, the
// directory synced.
func writeSpec(path string, data []byte) error {
	return writeSpecFile(path, data, true, true)
}

// writeSpecFile is writeSpec, without its fsyncs unless durable, and
// without reading the file back unless validate (the caller validated
// every device's edits, and built the rest).
func writeSpecFile(path string, data []byte, durable, validate bool) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("CDI spec directory: %w", err)
	}
	var check func(string) error
	if validate {
		check = func(tmp string) error {
			if _, err := cdilib.ReadSpec(tmp, 0); err != nil {
				return fmt.Errorf("it does not validate: %w", err)
			}
			return nil
		}
	}
	var err error
	if durable {
		err = atomicfile.Copy(path, bytes.NewReader(data), 0o644, check)
	} else {
		err = atomicfile.Replace(path, data, 0o644, check)
	}
	if err != nil {
		return fmt.Errorf("CDI spec %s: %w", path, err)
	}
	return nil
}
