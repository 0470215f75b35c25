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
	// GracePeriod is how long spec files found in Dir at start wait to be
	// claimed by a source before they are removed.
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
	grace clock.Timer

	mu    sync.Mutex
	specs map[string]*spec     // by resource
	stale map[string]time.Time // spec files found at start and not claimed yet, by path
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
	if cfg.GracePeriod <= 0 {
		cfg.GracePeriod = DefaultGracePeriod
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	s := &Specs{dir: filepath.Clean(cfg.Dir), log: cfg.Logger, clock: cfg.Clock, specs: map[string]*spec{}, stale: map[string]time.Time{}}
	entries, err := os.ReadDir(s.dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("CDI spec directory %s: %w", s.dir, err)
	}
	now := s.clock.Now()
	for _, e := range entries {
		if n := e.Name(); strings.HasPrefix(n, FilePrefix) && strings.HasSuffix(n, ".yaml") && e.Type().IsRegular() {
			s.stale[filepath.Join(s.dir, n)] = now
		}
	}
	if len(s.stale) > 0 {
		s.grace = s.clock.AfterFunc(cfg.GracePeriod, s.prune)
	}
	return s, nil
}

// Dir is the spec directory.
func (s *Specs) Dir() string { return s.dir }

// Close stops the removal of unclaimed spec files found at start.
func (s *Specs) Close() {
	if s.grace != nil {
		s.grace.Stop()
	}
}

// prune removes the spec files found at start that no source claimed.
func (s *Specs) prune() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, path := range slices.Sorted(maps.Keys(s.stale)) {
		delete(s.stale, path)
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			s.log.Error("cannot remove a CDI spec no device source claimed", "path", path, "error", err)
			continue
		}
		s.log.Info("CDI spec removed: no device source claimed it since wasmlet started", "path", path)
	}
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
		if _, ok := s.stale[sp.path]; ok {
			delete(s.stale, sp.path)
			if data, err := os.ReadFile(sp.path); err == nil {
				sp.data = data // adopted: rewritten only if it differs
			}
		}
	}
}

// Remove deletes the spec of resource if the provider called providerName
// still owns it: the source went away. Later device sets from that provider
// are ignored.
func (s *Specs) Remove(resource, providerName string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	sp := s.specs[resource]
	if sp == nil || sp.owner == nil || sp.owner.Name() != providerName {
		return nil
	}
	delete(s.specs, resource)
	if sp.path == "" || sp.data == nil {
		return nil
	}
	if err := atomicfile.Remove(sp.path); err != nil {
		s.log.Error("cannot remove the CDI spec of a device source that went away", "resource", resource, "path", sp.path, "error", err)
		return fmt.Errorf("CDI spec of %s: %w", resource, err)
	}
	s.log.Info("CDI spec removed: its device source went away", "resource", resource, "provider", providerName, "path", sp.path)
	return nil
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
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("CDI spec directory: %w", err)
	}
	err := atomicfile.Copy(path, bytes.NewReader(data), 0o644, func(tmp string) error {
		if _, err := cdilib.ReadSpec(tmp, 0); err != nil {
			return fmt.Errorf("it does not validate: %w", err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("CDI spec %s: %w", path, err)
	}
	return nil
}
