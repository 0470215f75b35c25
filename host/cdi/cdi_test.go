package cdi_test

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	oci "github.com/opencontainers/runtime-spec/specs-go"
	testingclock "k8s.io/utils/clock/testing"

	"github.com/wasmlet/wasmlet/host/cdi"
	"github.com/wasmlet/wasmlet/host/device"
	"github.com/wasmlet/wasmlet/host/devicemanager"
	"github.com/wasmlet/wasmlet/host/internal/testenv"
	"github.com/wasmlet/wasmlet/internal/testkit"
)

// fakeSource is a device source whose device sets the test sends.
type fakeSource struct {
	name, resource string
	sets           chan []device.Device
	allocate       func(ids []string) device.Edits
}

func newFake(name, resource string) *fakeSource {
	return &fakeSource{name: name, resource: resource, sets: make(chan []device.Device)}
}

func (f *fakeSource) Name() string                           { return "module:" + f.name }
func (f *fakeSource) Resource() string                       { return f.resource }
func (f *fakeSource) Options() devicemanager.ProviderOptions { return devicemanager.ProviderOptions{} }
func (f *fakeSource) Close() error                           { return nil }
func (f *fakeSource) PreferredAllocation(context.Context, []string, []string, int) ([]string, error) {
	return nil, nil
}
func (f *fakeSource) PreStart(context.Context, []string, string) error { return nil }

func (f *fakeSource) Watch(ctx context.Context, update func([]device.Device)) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case devs := <-f.sets:
			update(devs)
		}
	}
}

func (f *fakeSource) Allocate(_ context.Context, ids []string, _ string) (device.Edits, error) {
	if f.allocate != nil {
		return f.allocate(ids), nil
	}
	return device.Edits{Env: map[string]string{"IDS": strings.Join(ids, ",")}}, nil
}

// watching runs p's Watch; send delivers a device set and waits until it
// has been passed on (the spec is then in line with it).
type watching struct {
	t       *testing.T
	src     *fakeSource
	updates chan []device.Device
}

func watch(t *testing.T, p *cdi.Provider, src *fakeSource) *watching {
	t.Helper()
	w := &watching{t: t, src: src, updates: make(chan []device.Device, 1)}
	testkit.Go(t, func(ctx context.Context) { p.Watch(ctx, func(d []device.Device) { w.updates <- d }) })
	return w
}

// watchFake wraps a new fake source of resource in s and watches the
// wrapped provider.
func watchFake(t *testing.T, s *cdi.Specs, name, resource string) (*cdi.Provider, *watching) {
	t.Helper()
	src := newFake(name, resource)
	p := s.Wrap(src)
	return p, watch(t, p, src)
}

func (w *watching) send(devs ...device.Device) {
	w.t.Helper()
	w.src.sets <- devs
	select {
	case <-w.updates:
	case <-time.After(time.Minute): // only when broken
		w.t.Fatal("device set not passed on")
	}
}

func newSpecs(t *testing.T, dir string) *cdi.Specs {
	t.Helper()
	s, err := cdi.New(cdi.Config{Dir: dir, GracePeriod: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// clockedSpecs is newSpecs with a grace period of a minute on a fake clock.
func clockedSpecs(t *testing.T, dir string) (*cdi.Specs, *testingclock.FakeClock) {
	t.Helper()
	clock := testingclock.NewFakeClock(time.Now())
	s, err := cdi.New(cdi.Config{Dir: dir, GracePeriod: time.Minute, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s, clock
}

func nic(id string, vfio string) device.Device {
	return device.Device{ID: id, Edits: device.Edits{
		Env:         map[string]string{"NIC_" + strings.NewReplacer(":", "_", ".", "_").Replace(id): id, "NIC_DRIVER": "vfio"},
		DeviceNodes: []device.Node{{ContainerPath: "/dev/vfio/vfio", HostPath: "/dev/vfio/vfio", Permissions: "rw"}, {ContainerPath: "/dev/vfio/" + vfio, HostPath: "/dev/vfio/" + vfio, Permissions: "rw"}},
		Mounts:      []device.Mount{{ContainerPath: "/etc/nic/" + id, HostPath: "/etc/hostname", ReadOnly: true}},
		Annotations: map[string]string{"example.com/nic": id},
	}}
}

func TestSpecValidatesAndInjects(t *testing.T) {
	dir := t.TempDir()
	s := newSpecs(t, filepath.Join(dir, "cdi")) // created on first write
	p, w := watchFake(t, s, "pci", "example.com/nic")
	w.send(nic("0000:00:1f.6", "7"), nic("0000:3b:00.0", "30"), device.Device{ID: "plain"})

	path := filepath.Join(dir, "cdi", "wasmlet-example.com_nic.yaml")
	c := testenv.CDISpecs(t, filepath.Join(dir, "cdi"))
	if got, want := c.ListDevices(), []string{"example.com/nic=0000:00:1f.6", "example.com/nic=0000:3b:00.0"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("CDI devices %v, want %v", got, want)
	}
	// A runtime injecting the device gets the edits.
	ociSpec := &oci.Spec{Process: &oci.Process{}, Linux: &oci.Linux{}}
	if _, err := c.InjectDevices(ociSpec, "example.com/nic=0000:3b:00.0"); err != nil {
		// Device nodes are looked up on the host; /dev/vfio does not exist here.
		if !strings.Contains(err.Error(), "/dev/vfio") {
			t.Fatal(err)
		}
	}
	dev := c.GetDevice("example.com/nic=0000:3b:00.0")
	if dev == nil {
		t.Fatal("device not in the cache")
	}
	e := dev.ContainerEdits
	if !reflect.DeepEqual(e.Env, []string{"NIC_0000_3b_00_0=0000:3b:00.0", "NIC_DRIVER=vfio"}) ||
		len(e.DeviceNodes) != 2 || e.DeviceNodes[1].Path != "/dev/vfio/30" || e.DeviceNodes[1].Permissions != "rw" ||
		len(e.Mounts) != 1 || !reflect.DeepEqual(e.Mounts[0].Options, []string{"rbind", "ro"}) || e.Mounts[0].HostPath != "/etc/hostname" {
		t.Fatalf("edits %+v", e)
	}
	b, _ := os.ReadFile(path)
	if !strings.HasPrefix(string(b), "# Written by wasmlet for the device source module:pci (resource example.com/nic).") ||
		!strings.Contains(string(b), "cdiVersion: ") || strings.Contains(string(b), "annotations") {
		t.Fatalf("spec file:\n%s", b)
	}
	// Nothing but the spec in the directory: no temporary file left.
	entries, _ := os.ReadDir(filepath.Join(dir, "cdi"))
	if len(entries) != 1 {
		t.Fatalf("directory holds %v", entries)
	}

	// Allocate names the devices in the spec, and only those.
	resp, err := p.Allocate(context.Background(), []string{"0000:3b:00.0", "plain", "0000:00:1f.6"}, "")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(resp.CDIDevices, []string{"example.com/nic=0000:3b:00.0", "example.com/nic=0000:00:1f.6"}) ||
		resp.Env["IDS"] != "0000:3b:00.0,plain,0000:00:1f.6" {
		t.Fatalf("response %v", resp)
	}
	st := s.Status()
	if len(st) != 1 || st[0].Path != path || st[0].Provider != "module:pci" || st[0].Writes != 1 || len(st[0].Devices) != 2 || st[0].Error != "" {
		t.Fatalf("status %+v", st)
	}
}

// TestRewrittenOnlyOnChange: the same devices again leave the file alone;
// a change of edits alone rewrites it.
func TestRewrittenOnlyOnChange(t *testing.T) {
	dir := t.TempDir()
	s := newSpecs(t, dir)
	src := newFake("pci", "example.com/nic")
	w := watch(t, s.Wrap(src), src)
	w.send(nic("a", "1"))
	path := filepath.Join(dir, "wasmlet-example.com_nic.yaml")
	before, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	w.send(nic("a", "1"))
	after, _ := os.Stat(path)
	if !os.SameFile(before, after) || s.Status()[0].Writes != 1 {
		t.Fatalf("rewritten without a change (writes %d)", s.Status()[0].Writes)
	}
	changed := nic("a", "1")
	changed.Edits.Env["NIC_DRIVER"] = "mlx5"
	w.send(changed)
	after, _ = os.Stat(path)
	if os.SameFile(before, after) || s.Status()[0].Writes != 2 {
		t.Fatal("not rewritten after the edits changed")
	}
	if e := testenv.CDISpecs(t, dir).GetDevice("example.com/nic=a").ContainerEdits; !slices.Contains(e.Env, "NIC_DRIVER=mlx5") {
		t.Fatalf("env %v", e.Env)
	}
}

func TestDevicesLeftOut(t *testing.T) {
	dir := t.TempDir()
	s := newSpecs(t, dir)
	_, w := watchFake(t, s, "x", "example.com/x")
	w.send(
		device.Device{ID: "dev-", Edits: device.Edits{Env: map[string]string{"A": "1"}}},                                         // not a CDI name
		device.Device{ID: "notes", Edits: device.Edits{Annotations: map[string]string{"a": "b"}}},                                // annotations only
		device.Device{ID: "bad", Edits: device.Edits{DeviceNodes: []device.Node{{ContainerPath: "/dev/x", Permissions: "rwx"}}}}, // invalid permissions
		device.Device{ID: "good", Edits: device.Edits{DeviceNodes: []device.Node{{ContainerPath: "/dev/null"}}}},
		device.Device{ID: "none"},
	)
	st := s.Status()[0]
	if !reflect.DeepEqual(st.Devices, []string{"good"}) || len(st.Skipped) != 3 ||
		!strings.Contains(st.Skipped["dev-"], "not a valid CDI device name") ||
		!strings.Contains(st.Skipped["notes"], "annotations") ||
		!strings.Contains(st.Skipped["bad"], "permissions") {
		t.Fatalf("status %+v", st)
	}
	if got := s.Names("example.com/x", []string{"dev-", "notes", "bad", "good", "none"}); !reflect.DeepEqual(got, []string{"example.com/x=good"}) {
		t.Fatalf("names %v", got)
	}
	testenv.CDISpecs(t, dir)

	// No device left with edits: no spec.
	w.send(device.Device{ID: "none"})
	if _, err := os.Stat(filepath.Join(dir, "wasmlet-example.com_x.yaml")); !os.IsNotExist(err) {
		t.Fatalf("spec without devices kept: %v", err)
	}
	if got := s.Names("example.com/x", []string{"good"}); got != nil {
		t.Fatalf("names %v", got)
	}
}

// TestInvalidKind: a resource name CDI does not accept as a kind gets no
// spec, says why, and its allocations carry no CDI names.
func TestInvalidKind(t *testing.T) {
	dir := t.TempDir()
	s := newSpecs(t, dir)
	p, w := watchFake(t, s, "vlan", "example.com/8021q")
	w.send(nic("a", "1"))
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("wrote %v", entries)
	}
	st := s.Status()
	if len(st) != 1 || st[0].Path != "" || !strings.Contains(st[0].Error, `"example.com/8021q" is not a valid CDI kind`) ||
		!strings.Contains(st[0].Error, "should start with letter") {
		t.Fatalf("status %+v", st)
	}
	resp, err := p.Allocate(context.Background(), []string{"a"}, "")
	if err != nil || len(resp.CDIDevices) != 0 || resp.Env["IDS"] != "a" {
		t.Fatalf("%v %v", resp, err)
	}
}

// TestOwnership: a provider that took over a resource decides its spec; the
// one it replaced no longer does, and cannot remove it. When the owner goes,
// the spec stays for the grace period (a container holding its CDI names
// may restart meanwhile), unchanged by the provider that went, and is
// removed at its end; a source of the resource that comes back within it
// adopts it.
func TestOwnership(t *testing.T) {
	dir := t.TempDir()
	s, clock := clockedSpecs(t, dir)
	oldSrc := newFake("a", "example.com/r")
	oldW := watch(t, s.Wrap(oldSrc), oldSrc)
	oldW.send(nic("x", "1"))
	newSrc := newFake("b", "example.com/r")
	newP := s.Wrap(newSrc)
	newW := watch(t, newP, newSrc)
	newW.send(nic("y", "2"))
	oldW.send(nic("x", "1"), nic("z", "3")) // superseded: ignored
	if got := testenv.CDISpecs(t, dir).ListDevices(); !reflect.DeepEqual(got, []string{"example.com/r=y"}) {
		t.Fatalf("devices %v", got)
	}
	path := filepath.Join(dir, "wasmlet-example.com_r.yaml")
	s.Remove("example.com/r", "module:a")
	if st := s.Status(); len(st) != 1 || st[0].Provider != "module:b" || !st[0].RemoveAt.IsZero() {
		t.Fatalf("removed by a provider that no longer owned it: %+v", st)
	}

	s.Remove("example.com/r", "module:b")
	newW.send(nic("y", "2"), nic("w", "4")) // after removal: ignored
	clock.Step(time.Minute - time.Nanosecond)
	if got := testenv.CDISpecs(t, dir).ListDevices(); !reflect.DeepEqual(got, []string{"example.com/r=y"}) {
		t.Fatalf("within the grace period the spec should be as it was: %v", got)
	}
	st := s.Status()
	if len(st) != 1 || st[0].Path != path || st[0].Provider != "" || !reflect.DeepEqual(st[0].Devices, []string{"y"}) ||
		!st[0].RemoveAt.Equal(clock.Now().Add(time.Nanosecond)) {
		t.Fatalf("status within the grace period %+v", st)
	}
	clock.Step(time.Nanosecond)
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatal("not removed at the end of the grace period")
	}
	if len(s.Status()) != 0 {
		t.Fatalf("status %+v", s.Status())
	}

	// Back within the grace period: the spec is the new source's.
	again := newFake("c", "example.com/r")
	w := watch(t, s.Wrap(again), again)
	w.send(nic("v", "5"))
	s.Remove("example.com/r", "module:c")
	clock.Step(time.Second)
	back := newFake("c", "example.com/r")
	watch(t, s.Wrap(back), back).send(nic("v", "5"), nic("u", "6"))
	clock.Step(time.Hour)
	if got := testenv.CDISpecs(t, dir).ListDevices(); !reflect.DeepEqual(got, []string{"example.com/r=u", "example.com/r=v"}) {
		t.Fatalf("a source back within the grace period: devices %v", got)
	}
}

// TestStaleSpecsAtStart: spec files found at start are adopted, unchanged, by
// the sources that claim them; the others go after the grace period.
func TestStaleSpecsAtStart(t *testing.T) {
	dir := t.TempDir()
	first := newSpecs(t, dir)
	for _, r := range []string{"example.com/kept", "example.com/gone"} {
		src := newFake("m", r)
		watch(t, first.Wrap(src), src).send(nic("a", "1"))
	}
	other := filepath.Join(dir, "vendor-other.yaml") // not ours: never touched
	os.WriteFile(other, []byte("x"), 0o644)
	kept := filepath.Join(dir, "wasmlet-example.com_kept.yaml")
	before, _ := os.Stat(kept)

	s, clock := clockedSpecs(t, dir)
	src := newFake("m", "example.com/kept")
	watch(t, s.Wrap(src), src).send(nic("a", "1"))
	gone := filepath.Join(dir, "wasmlet-example.com_gone.yaml")
	// Kept through the grace period, removed at its end (the fake clock
	// runs the removal within Step).
	clock.Step(time.Minute - time.Nanosecond)
	if _, err := os.Stat(gone); err != nil {
		t.Fatalf("unclaimed spec removed before the grace period ended: %v", err)
	}
	clock.Step(time.Nanosecond)
	if _, err := os.Stat(gone); !os.IsNotExist(err) {
		t.Fatalf("unclaimed spec kept after the grace period: %v", err)
	}
	after, err := os.Stat(kept)
	if err != nil || !os.SameFile(before, after) {
		t.Fatalf("adopted spec rewritten or removed: %v", err)
	}
	if _, err := os.Stat(other); err != nil {
		t.Fatal("another writer's spec was removed")
	}
}

// TestWriteFailureKeepsNames: when the spec cannot be written, Allocate names
// only what the file on disk holds.
func TestWriteFailureKeepsNames(t *testing.T) {
	dir := t.TempDir()
	s := newSpecs(t, dir)
	_, w := watchFake(t, s, "m", "example.com/r")
	w.send(nic("a", "1"))
	// Make the rename fail: the spec path becomes a non-empty directory.
	path := filepath.Join(dir, "wasmlet-example.com_r.yaml")
	os.Remove(path)
	os.MkdirAll(filepath.Join(path, "x"), 0o755)
	w.send(nic("a", "1"), nic("b", "2"))
	st := s.Status()[0]
	if st.Error == "" || !strings.Contains(st.Error, path) {
		t.Fatalf("status %+v", st)
	}
	if got := s.Names("example.com/r", []string{"a", "b"}); !reflect.DeepEqual(got, []string{"example.com/r=a"}) {
		t.Fatalf("names %v", got)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("temporary file left: %v", entries)
	}
}

// TestAllocateKeepsModuleCDINames: names the module returned itself are
// kept, and not repeated.
func TestAllocateKeepsModuleCDINames(t *testing.T) {
	s := newSpecs(t, t.TempDir())
	src := newFake("m", "example.com/r")
	src.allocate = func(ids []string) device.Edits {
		return device.Edits{CDIDevices: []string{"vendor.com/other=x", "example.com/r=a"}}
	}
	p := s.Wrap(src)
	watch(t, p, src).send(nic("a", "1"), nic("b", "2"))
	resp, err := p.Allocate(context.Background(), []string{"a", "b"}, "")
	if err != nil {
		t.Fatal(err)
	}
	if names := resp.CDIDevices; !reflect.DeepEqual(names, []string{"vendor.com/other=x", "example.com/r=a", "example.com/r=b"}) {
		t.Fatalf("names %v", names)
	}
}

func TestRelativeDir(t *testing.T) {
	if _, err := cdi.New(cdi.Config{Dir: "run/cdi"}); err == nil || !strings.Contains(err.Error(), "absolute") {
		t.Fatalf("%v", err)
	}
}
