package devicesource_test

import (
	"context"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/wasmlet/wasmlet/guests/build"
	"github.com/wasmlet/wasmlet/host/device"
	"github.com/wasmlet/wasmlet/host/devicemanager"
	"github.com/wasmlet/wasmlet/host/devicesource"
	"github.com/wasmlet/wasmlet/host/internal/testenv"
	"github.com/wasmlet/wasmlet/host/module"
	"github.com/wasmlet/wasmlet/internal/sysfstest"
)

func dirsource(t testing.TB) string { return build.Go(t, "host/devicesource/testdata/dirsource") }

var nics = []sysfstest.PCIDevice{
	{Addr: "0000:00:1f.6", Vendor: "0x8086", Device: "0x15bc", Class: "0x020000", NUMA: "0", Driver: "e1000e", Group: "7"},
	{Addr: "0000:3b:00.0", Vendor: "0x15b3", Device: "0x1017", Class: "0x020000", NUMA: "1", Driver: "mlx5_core", Group: "30"},
	{Addr: "0000:3b:00.2", Vendor: "0x15b3", Device: "0x1018", Class: "0x020000", NUMA: "1", Driver: "vfio-pci", Group: "31"},
	{Addr: "0000:00:02.0", Vendor: "0x8086", Device: "0x3e92", Class: "0x030000", NUMA: "-1", Driver: "i915", Group: "1"}, // a GPU: filtered out
}

func vfioNode(p string) device.Node {
	return device.Node{ContainerPath: p, HostPath: p, Permissions: "rw"}
}

// vfioGrant lets pcisource hand out the VFIO device nodes it names.
var vfioGrant = device.Grant{DeviceNodes: []string{"/dev/vfio/*"}, Writable: []string{"/dev/vfio"}}

// TestPCISource: the PCI source on a fake sysfs tree becomes a resource with
// NUMA information, allocations go to the module, and a device that appears
// or goes in the followed directory is seen without waiting for the interval.
func TestPCISource(t *testing.T) {
	e := newEnv(t, envConfig{})
	sys := sysfstest.New(t, nics...)
	e.configure("pci", module.Options{Mounts: sysfsMounts(sys), Config: map[string]string{"resource": "example.com/nic", "class": "0x02"}},
		devicesource.Options{Grant: vfioGrant})
	e.mods.Install("pci", build.Go(t, "guests/pcisource"))

	r := e.resource("example.com/nic", healthy(3))
	if r.Provider != "module:pci" || r.Options != (devicemanager.ProviderOptions{Driver: "nic.example.com"}) {
		t.Errorf("provider %q, options %+v", r.Provider, r.Options)
	}
	if got := ids(r); !reflect.DeepEqual(got, []string{"0000:00:1f.6", "0000:3b:00.0", "0000:3b:00.2"}) {
		t.Fatalf("devices %v", got)
	}
	for id, numa := range map[string]int64{"0000:00:1f.6": 0, "0000:3b:00.0": 1, "0000:3b:00.2": 1} {
		if d := deviceOf(r, id); !reflect.DeepEqual(d.NUMANodes, []int64{numa}) || d.Attributes["vendor"].Value() == "" {
			t.Errorf("%s: %+v", id, d)
		}
	}
	src := e.ctrl.Source("pci")
	eventually(t, "status", func() bool {
		st := src.Status()
		return slices.Contains(st.Watching, filepath.Join(sys, "bus/pci/devices")) && st.Interval == 30*time.Second
	})

	// Two devices: the NUMA-aware default picks node 1's, and the module
	// answers (its VFIO device nodes included).
	a, err := e.m.Allocate(context.Background(), req("p1", "example.com/nic", 2))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a.DeviceIDs, []string{"0000:3b:00.0", "0000:3b:00.2"}) {
		t.Fatalf("allocated %v", a.DeviceIDs)
	}
	want := device.Edits{
		Env:         map[string]string{"PCIDEVICE_EXAMPLE_COM_NIC": "0000:3b:00.0,0000:3b:00.2"},
		Annotations: map[string]string{"example.com/nic": "0000:3b:00.0,0000:3b:00.2"},
		DeviceNodes: []device.Node{vfioNode("/dev/vfio/vfio"), vfioNode("/dev/vfio/31")},
	}
	if !a.Edits.Equal(want) {
		t.Fatalf("edits %+v\nwant  %+v", a.Edits, want)
	}

	// A device that appears: its link in bus/pci/devices is an inotify event.
	sysfstest.Add(t, sys, sysfstest.PCIDevice{Addr: "0000:5e:00.0", Vendor: "0x15b3", Device: "0x1017", Class: "0x020000", NUMA: "1", Driver: "mlx5_core", Group: "40"})
	r = e.resource("example.com/nic", healthy(4))
	if d := deviceOf(r, "0000:5e:00.0"); !reflect.DeepEqual(d.NUMANodes, []int64{1}) {
		t.Errorf("new device %+v", d)
	}
	// One that goes.
	if err := os.Remove(filepath.Join(sys, "bus/pci/devices/0000:00:1f.6")); err != nil {
		t.Fatal(err)
	}
	r = e.resource("example.com/nic", healthy(3))
	if r.Allocated != 2 || r.ProviderSwitches != 0 {
		t.Errorf("after removal %+v", r)
	}
}

// TestIntervalRediscovery: with file watching off, the interval finds what
// sysfs (which emits no inotify events) would not report. The source is
// used here without a controller.
func TestIntervalRediscovery(t *testing.T) {
	e := newEnv(t, envConfig{noController: true})
	sys := sysfstest.New(t, nics[:2]...)
	e.configure("pci", module.Options{Mounts: sysfsMounts(sys), Config: map[string]string{"resource": "example.com/nic"}},
		devicesource.Options{})
	e.mods.Install("pci", build.Go(t, "guests/pcisource"))
	src, err := devicesource.NewSource(e.reg, "pci", devicesource.Options{NoWatch: true, DiscoverInterval: 50 * time.Millisecond, Grant: vfioGrant})
	if err != nil {
		t.Fatal(err)
	}
	e.m.SetProvider(src.Resource(), src)
	e.resource("example.com/nic", healthy(2))
	sysfstest.Add(t, sys, nics[2])
	e.resource("example.com/nic", healthy(3))
	if st := src.Status(); len(st.Watching) != 0 || st.Interval != 50*time.Millisecond || st.Discoveries < 2 {
		t.Errorf("status %+v", st)
	}
}

// TestDevSource runs the /dev source on this machine's /dev. Tests cannot
// create device nodes without root, so the ones every Linux has stand in.
func TestDevSource(t *testing.T) {
	for _, p := range []string{"/dev/null", "/dev/zero"} {
		if fi, err := os.Lstat(p); err != nil || fi.Mode()&os.ModeCharDevice == 0 {
			t.Skipf("%s is not a character device here (%v)", p, err)
		}
	}
	e := newEnv(t, envConfig{})
	e.configure("dev", module.Options{Mounts: []module.Mount{{Host: "/dev", Guest: "/dev"}},
		Config: map[string]string{"resource": "example.com/null", "globs": "/dev/null,/dev/zero"}},
		devicesource.Options{Grant: device.Grant{DeviceNodes: []string{"/dev/null", "/dev/zero"}, Writable: []string{"/dev/null", "/dev/zero"}}})
	e.mods.Install("dev", build.Go(t, "guests/devsource"))
	r := e.resource("example.com/null", healthy(2))
	if got := ids(r); !reflect.DeepEqual(got, []string{"null", "zero"}) {
		t.Fatalf("devices %v", got)
	}
	src := e.ctrl.Source("dev")
	if st := src.Status(); !reflect.DeepEqual(st.Watching, []string{"/dev"}) {
		t.Errorf("watching %v", st.Watching)
	}
	devs := src.Devices()
	if len(devs) != 2 || !reflect.DeepEqual(devs[0].Edits.DeviceNodes,
		[]device.Node{{ContainerPath: "/dev/null", HostPath: "/dev/null", Permissions: "rw"}}) {
		t.Errorf("devices with edits %+v", devs)
	}
	a, err := e.m.Allocate(context.Background(), req("p", "example.com/null", 2))
	if err != nil {
		t.Fatal(err)
	}
	got := a.Edits
	if len(got.DeviceNodes) != 2 || got.DeviceNodes[0].HostPath != "/dev/null" || got.DeviceNodes[1].HostPath != "/dev/zero" ||
		got.Env["DEVICES_EXAMPLE_COM_NULL"] != "/dev/null,/dev/zero" {
		t.Fatalf("edits %+v", got)
	}
}

// TestFileChanges: files created, rewritten, renamed into place and removed
// in a followed mount are rediscovered, debounced.
func TestFileChanges(t *testing.T) {
	e := newEnv(t, envConfig{})
	data := t.TempDir()
	e.configure("dir", module.Options{Mounts: []module.Mount{{Host: data, Guest: "/data"}}}, devicesource.Options{})
	e.mods.Install("dir", dirsource(t))
	e.resource("example.com/dir", healthy(0))

	writeFile(t, filepath.Join(data, "a"), "numa=0\nattr.model=x1\n")
	r := e.resource("example.com/dir", healthy(1))
	if d := deviceOf(r, "a"); !reflect.DeepEqual(d.NUMANodes, []int64{0}) || d.Attributes["model"].Value() != "x1" {
		t.Errorf("a: %+v", d)
	}
	// Renamed into place, as careful writers do.
	writeFile(t, filepath.Join(data, ".b.tmp"), "numa=1\n")
	if err := os.Rename(filepath.Join(data, ".b.tmp"), filepath.Join(data, "b")); err != nil {
		t.Fatal(err)
	}
	e.resource("example.com/dir", healthy(2))
	// Rewritten: health changes.
	writeFile(t, filepath.Join(data, "a"), "unhealthy\n")
	r = e.resource("example.com/dir", func(r devicemanager.ResourceStatus) bool { return r.Capacity == 2 && r.Healthy == 1 })
	if deviceOf(r, "a").Healthy {
		t.Errorf("a still healthy: %+v", r)
	}
	os.Remove(filepath.Join(data, "b"))
	r = e.resource("example.com/dir", func(r devicemanager.ResourceStatus) bool { return r.Capacity == 1 })
	if r.ProviderSwitches != 0 || !r.Connected {
		t.Errorf("%+v", r)
	}
}

// TestAllocateMergesEdits: a module without allocate gets the devices' edits
// merged; disagreeing edits and unknown devices are refused, naming the
// module.
func TestAllocateMergesEdits(t *testing.T) {
	e := newEnv(t, envConfig{})
	data := t.TempDir()
	e.configure("dir", module.Options{Mounts: []module.Mount{{Host: data, Guest: "/data"}}}, devicesource.Options{
		Grant: device.Grant{DeviceNodes: []string{"/dev/null", "/dev/zero"}, Writable: []string{"/dev/null"}, HostPaths: []string{"/srv/models"}}})
	writeFile(t, filepath.Join(data, "d0"), "numa=0\nenv.DIR_0=d0\nenv.DIR_SHARED=yes\nannotation.example.com/d0=x\n"+
		"node=/dev/null:/dev/d0:rw\nmount=/srv/models:/models:ro\n")
	writeFile(t, filepath.Join(data, "d1"), "numa=0\nenv.DIR_1=d1\nenv.DIR_SHARED=yes\nnode=/dev/zero:/dev/d1:r\nmount=/srv/models:/models:ro\n")
	writeFile(t, filepath.Join(data, "d2"), "numa=1\nenv.DIR_SHARED=no\n")
	e.mods.Install("dir", dirsource(t))
	e.resource("example.com/dir", healthy(3))

	a, err := e.m.Allocate(context.Background(), req("p", "example.com/dir", 2))
	if err != nil {
		t.Fatal(err)
	}
	want := device.Edits{
		Env:         map[string]string{"DIR_0": "d0", "DIR_1": "d1", "DIR_SHARED": "yes"},
		Annotations: map[string]string{"example.com/d0": "x"},
		Mounts:      []device.Mount{{ContainerPath: "/models", HostPath: "/srv/models", ReadOnly: true}},
		DeviceNodes: []device.Node{{ContainerPath: "/dev/d0", HostPath: "/dev/null", Permissions: "rw"},
			{ContainerPath: "/dev/d1", HostPath: "/dev/zero", Permissions: "r"}},
	}
	if !a.Edits.Equal(want) {
		t.Fatalf("edits %+v\nwant  %+v", a.Edits, want)
	}

	src := e.ctrl.Source("dir")
	_, err = src.Allocate(context.Background(), []string{"d0", "d2"}, "w")
	if err == nil || !strings.Contains(err.Error(), `module "dir": allocate`) ||
		!strings.Contains(err.Error(), `devices d0 and d2 set environment variable DIR_SHARED to different values ("yes" and "no")`) {
		t.Errorf("conflicting edits: %v", err)
	}
	_, err = src.Allocate(context.Background(), []string{"d9"}, "w")
	if err == nil || !strings.Contains(err.Error(), `module "dir": allocate: device "d9" is not among the 3 devices last discovered`) {
		t.Errorf("unknown device: %v", err)
	}
}

// TestModuleAllocateAndPreferred: a module that implements allocate and
// preferred_allocation (counter) decides both.
func TestModuleAllocateAndPreferred(t *testing.T) {
	e := newEnv(t, envConfig{})
	e.configure("ctr", module.Options{Config: map[string]string{"count": "4"}}, devicesource.Options{})
	e.mods.Install("ctr", build.Go(t, "guests/counter"))
	r := e.resource("example.com/counter", healthy(4))
	if !r.Options.PreferredAllocation || r.Options.PreStartRequired {
		t.Errorf("options %+v", r.Options)
	}
	a, err := e.m.Allocate(context.Background(), req("p", "example.com/counter", 3))
	if err != nil {
		t.Fatal(err)
	}
	// counter prefers the available devices in the order given.
	if !reflect.DeepEqual(a.DeviceIDs, []string{"dev-0", "dev-1", "dev-2"}) {
		t.Errorf("allocated %v", a.DeviceIDs)
	}
	if a.Edits.Env["COUNTER_DEVICES"] != "dev-0,dev-1,dev-2" || a.Edits.Env["COUNTER_WORKLOAD"] != "default/p/main" {
		t.Errorf("edits %+v", a.Edits)
	}
	if err := e.ctrl.Source("ctr").PreStart(context.Background(), a.DeviceIDs, a.Workload); err != nil {
		t.Errorf("prestart: %v", err)
	}
}

// TestReplaced: a replaced module file is rediscovered by the same source; a
// replacement that declares another resource moves the source; one with
// other provider options gets a new source that takes over.
func TestReplaced(t *testing.T) {
	e := newEnv(t, envConfig{grace: 200 * time.Millisecond})
	e.configure("ctr", module.Options{Config: map[string]string{"count": "2"}}, devicesource.Options{})
	e.mods.Install("ctr", build.Go(t, "guests/counter"))
	e.resource("example.com/counter", healthy(2))
	src := e.ctrl.Source("ctr")

	e.configure("ctr", module.Options{Config: map[string]string{"count": "5"}}, devicesource.Options{})
	if _, err := e.reg.Reload(context.Background(), "ctr"); err != nil {
		t.Fatal(err)
	}
	r := e.resource("example.com/counter", healthy(5))
	if r.ProviderSwitches != 0 || e.ctrl.Source("ctr") != src {
		t.Errorf("the same source should keep serving: %+v", r)
	}

	// Another file, without preferred_allocation: a new source takes over.
	data := t.TempDir()
	writeFile(t, filepath.Join(data, "only"), "")
	e.configure("ctr", module.Options{Mounts: []module.Mount{{Host: data, Guest: "/data"}},
		Config: map[string]string{"resource": "example.com/counter"}}, devicesource.Options{})
	e.mods.Install("ctr", dirsource(t))
	r = e.resource("example.com/counter", healthy(1))
	if r.ProviderSwitches != 1 || r.Options.PreferredAllocation || e.ctrl.Source("ctr") == src {
		t.Errorf("after a change of options: %+v", r)
	}
	if st := e.ctrl.Source("ctr").Status(); !reflect.DeepEqual(st.Watching, []string{data}) {
		t.Errorf("the new source follows %v", st.Watching)
	}

	// Another resource: the old one loses its provider, the new one gains it.
	e.configure("ctr", module.Options{Config: map[string]string{"count": "3", "resource": "example.com/moved"}}, devicesource.Options{})
	e.mods.Install("ctr", build.Go(t, "guests/counter"))
	e.resource("example.com/moved", healthy(3))
	r = e.resource("example.com/counter", func(r devicemanager.ResourceStatus) bool { return gone(r) || !r.Connected })
	if !gone(r) && r.LastError != "module:ctr deregistered" {
		t.Errorf("old resource %+v", r)
	}
	e.resource("example.com/counter", gone)
}

// TestUnloaded: an unloaded module's devices turn unhealthy, then go after
// the grace period.
func TestUnloaded(t *testing.T) {
	e := newEnv(t, envConfig{grace: 2 * time.Second})
	e.mods.Install("ctr", build.Go(t, "guests/counter"))
	e.resource("example.com/counter", healthy(4))
	e.reg.Unload("ctr")
	r := e.resource("example.com/counter", func(r devicemanager.ResourceStatus) bool { return r.Name != "" && !r.Connected })
	if r.Capacity != 4 || r.Healthy != 0 || !strings.Contains(r.LastError, "ctr") {
		t.Errorf("after unload %+v", r)
	}
	e.resource("example.com/counter", gone)
	if e.ctrl.Source("ctr") != nil {
		t.Error("the controller still serves the module")
	}
}

// TestQuarantine: a module that faults in discover until it is quarantined
// ends Watch with an error: devices go unhealthy, and the source stays down
// until the module is replaced.
func TestQuarantine(t *testing.T) {
	e := newEnv(t, envConfig{restartDelay: 50 * time.Millisecond})
	fast := devicesource.Options{RetryBackoff: 5 * time.Millisecond, MaxFailures: 100}
	e.configure("flt", module.Options{}, fast)
	wasm := build.Go(t, "guests/testmodules/faulty")
	e.mods.Install("flt", wasm)
	e.resource("example.com/faulty", healthy(2))

	e.configure("flt", module.Options{QuarantineAfter: 3, Config: map[string]string{"fault": "panic"}}, fast)
	e.mods.Install("flt", wasm)
	r := e.resource("example.com/faulty", func(r devicemanager.ResourceStatus) bool { return !r.Connected })
	if r.Healthy != 0 || r.Capacity != 2 || !strings.Contains(r.LastError, `module "flt": discover: quarantined`) {
		t.Fatalf("after quarantine %+v", r)
	}
	if st := e.ctrl.Source("flt").Status(); st.Failures != 4 || !strings.Contains(st.Ended, "quarantined after 3 consecutive faults") {
		t.Errorf("status %+v", st)
	}
	time.Sleep(200 * time.Millisecond) // several restart delays
	if r := e.resource("example.com/faulty", func(devicemanager.ResourceStatus) bool { return true }); r.Connected {
		t.Fatalf("a quarantined source was started again: %+v", r)
	}

	e.configure("flt", module.Options{}, fast)
	e.mods.Install("flt", wasm)
	r = e.resource("example.com/faulty", healthy(2))
	if r.Provider != "module:flt" || e.ctrl.Source("flt").Status().Ended != "" {
		t.Errorf("%+v", r)
	}
}

// TestDiscoverErrors: a module that answers discover with errors is retried
// with backoff; it recovers if the trouble goes. After MaxFailures in a row
// its devices are reported unhealthy — the provider stays, and the source
// keeps trying — and it recovers when the trouble goes.
func TestDiscoverErrors(t *testing.T) {
	e := newEnv(t, envConfig{})
	data := t.TempDir()
	mount := module.Options{Mounts: []module.Mount{{Host: data, Guest: "/data"}}}
	writeFile(t, filepath.Join(data, "d0"), "")
	e.configure("dir", mount, devicesource.Options{RetryBackoff: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond, MaxFailures: 1000})
	e.mods.Install("dir", dirsource(t))
	e.resource("example.com/dir", healthy(1))
	src := e.ctrl.Source("dir")

	writeFile(t, filepath.Join(data, "fail"), "the widget bus is resetting")
	eventually(t, "failures", func() bool { return src.Status().ConsecutiveFailures >= 3 })
	st := src.Status()
	if !strings.Contains(st.LastError, `module "dir": discover: unavailable: the widget bus is resetting`) || st.State != devicesource.StateFailing {
		t.Errorf("status %+v", st)
	}
	os.Remove(filepath.Join(data, "fail"))
	eventually(t, "recovery", func() bool { return src.Status().ConsecutiveFailures == 0 })
	if r := e.resource("example.com/dir", healthy(1)); r.ProviderSwitches != 0 {
		t.Errorf("%+v", r)
	}

	// New options, with few failures allowed before the devices go
	// unhealthy, come with the module's replacement: a new source takes
	// over.
	e.configure("dir", mount, devicesource.Options{RetryBackoff: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond, MaxFailures: 3})
	e.mods.Install("dir", dirsource(t))
	e.resource("example.com/dir", func(r devicemanager.ResourceStatus) bool { return r.ProviderSwitches == 1 && r.Healthy == 1 })
	src = e.ctrl.Source("dir")
	writeFile(t, filepath.Join(data, "fail"), "the widget bus is resetting")
	r := e.resource("example.com/dir", func(r devicemanager.ResourceStatus) bool { return r.Healthy == 0 })
	if !r.Connected || r.Capacity != 1 || r.Provider != "module:dir" {
		t.Errorf("the devices of a failing source: %+v", r)
	}
	eventually(t, "the source to keep trying past MaxFailures", func() bool { return src.Status().ConsecutiveFailures >= 6 })
	if st := src.Status(); st.State != devicesource.StateFailing || st.Ended != "" || st.NextDiscovery.IsZero() {
		t.Errorf("status of a failing source: %+v", st)
	}
	os.Remove(filepath.Join(data, "fail"))
	r = e.resource("example.com/dir", healthy(1))
	if e.ctrl.Source("dir") != src || r.ProviderSwitches != 1 {
		t.Errorf("the same source should have recovered: %+v", r)
	}
}

// TestDiscoveryNeverGivesUp: a source whose discovery keeps failing keeps
// trying, however many failures: at the backoff, capped by the rediscovery
// interval when that is shorter; and at once when a file under its mounts
// changes, even in the middle of a long backoff. Its status says it is
// failing, with the last error and when it tries next.
func TestDiscoveryNeverGivesUp(t *testing.T) {
	e := newEnv(t, envConfig{noController: true})
	data := t.TempDir()
	writeFile(t, filepath.Join(data, "fail"), "no bus")
	mount := module.Options{Mounts: []module.Mount{{Host: data, Guest: "/data"}}}
	e.configure("dir", mount, devicesource.Options{})
	e.mods.Install("dir", dirsource(t))
	watch := func(opts devicesource.Options) (*devicesource.Source, chan []device.Device) {
		src, err := devicesource.NewSource(e.reg, "dir", opts)
		if err != nil {
			t.Fatal(err)
		}
		updates := make(chan []device.Device, 100)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- src.Watch(ctx, func(d []device.Device) { updates <- d }) }()
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Watch: %v", err)
			}
		})
		return src, updates
	}

	// The backoff is an hour, the interval 20ms: the interval caps it.
	src, _ := watch(devicesource.Options{DiscoverInterval: 20 * time.Millisecond, RetryBackoff: time.Hour, MaxBackoff: time.Hour,
		MaxFailures: 3, NoWatch: true})
	eventually(t, "ten failures in a row", func() bool { return src.Status().ConsecutiveFailures >= 10 })
	st := src.Status()
	if st.State != devicesource.StateFailing || st.Ended != "" || st.LastError != `module "dir": discover: unavailable: no bus` ||
		st.NextDiscovery.IsZero() || time.Until(st.NextDiscovery) > time.Second {
		t.Errorf("status %+v", st)
	}

	// No interval, an hour's backoff: a file change tries at once.
	src, updates := watch(devicesource.Options{RetryBackoff: time.Hour, MaxBackoff: time.Hour, MaxFailures: 3,
		Debounce: 10 * time.Millisecond})
	eventually(t, "a failure", func() bool { return src.Status().ConsecutiveFailures == 1 })
	if next := src.Status().NextDiscovery; time.Until(next) < 59*time.Minute {
		t.Errorf("next discovery %v, want an hour away", next)
	}
	writeFile(t, filepath.Join(data, "d0"), "")
	os.Remove(filepath.Join(data, "fail"))
	select {
	case devs := <-updates:
		if len(devs) != 1 || devs[0].ID != "d0" || !devs[0].Healthy {
			t.Fatalf("first update %+v", devs)
		}
	case <-time.After(time.Minute):
		t.Fatal("a file change did not cut the backoff short")
	}
	if st := src.Status(); st.State != devicesource.StateOK || st.ConsecutiveFailures != 0 {
		t.Errorf("status after recovery %+v", st)
	}
}

// TestUnchangedNotReported: rediscovering the same devices does not bother
// the device manager.
func TestUnchangedNotReported(t *testing.T) {
	e := newEnv(t, envConfig{noController: true})
	e.mods.Install("ctr", build.Go(t, "guests/counter"))
	src, err := devicesource.NewSource(e.reg, "ctr", devicesource.Options{DiscoverInterval: devicesource.MinDiscoverInterval})
	if err != nil {
		t.Fatal(err)
	}
	var rounds, updates atomic.Int32
	devicesource.AfterRound(src, func(error) { rounds.Add(1) })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- src.Watch(ctx, func([]device.Device) { updates.Add(1) }) }()
	eventually(t, "rounds", func() bool { return rounds.Load() >= 5 })
	src.Rediscover()
	eventually(t, "rounds", func() bool { return rounds.Load() >= 7 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := updates.Load(); n != 1 {
		t.Errorf("%d updates for one unchanged device set", n)
	}
}

// TestEditsChangeReported: a change of container edits alone is reported,
// so that the CDI spec (host/cdi) follows it.
func TestEditsChangeReported(t *testing.T) {
	e := newEnv(t, envConfig{noController: true})
	data := t.TempDir()
	writeFile(t, filepath.Join(data, "a"), "env.A=1\n")
	e.configure("dir", module.Options{Mounts: []module.Mount{{Host: data, Guest: "/data"}}}, devicesource.Options{})
	e.mods.Install("dir", dirsource(t))
	src, err := devicesource.NewSource(e.reg, "dir", devicesource.Options{NoWatch: true})
	if err != nil {
		t.Fatal(err)
	}
	rounds := make(chan error, 10)
	devicesource.AfterRound(src, func(err error) { rounds <- err })
	var updates atomic.Int32
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- src.Watch(ctx, func([]device.Device) { updates.Add(1) }) }()
	round := func() {
		t.Helper()
		if err := <-rounds; err != nil {
			t.Fatal(err)
		}
	}
	round()
	src.Rediscover() // unchanged
	round()
	writeFile(t, filepath.Join(data, "a"), "env.A=2\n")
	src.Rediscover()
	round()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := updates.Load(); n != 2 {
		t.Errorf("%d updates, want 2 (start, edits changed)", n)
	}
	if d := src.Devices(); len(d) != 1 || d[0].Edits.Env["A"] != "2" {
		t.Errorf("devices %+v", d)
	}
}

// TestErrorsNameTheModule: a module that is not there, or not a source, or
// gone from under a source.
func TestErrorsNameTheModule(t *testing.T) {
	e := newEnv(t, envConfig{noController: true})
	if _, err := devicesource.NewSource(e.reg, "nope", devicesource.Options{}); !errors.Is(err, devicesource.ErrNotLoaded) ||
		err.Error() != `module "nope": the module is not loaded` {
		t.Errorf("missing module: %v", err)
	}
	e.mods.Install("handler", build.Go(t, "guests/devicepluginhandler"))
	if _, err := devicesource.NewSource(e.reg, "handler", devicesource.Options{}); err == nil ||
		err.Error() != `module "handler" is a handler, not a device source` {
		t.Errorf("handler: %v", err)
	}
	e.mods.Install("ctr", build.Go(t, "guests/counter"))
	src, err := devicesource.NewSource(e.reg, "ctr", devicesource.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e.reg.Unload("ctr")
	ctx := context.Background()
	_, err = src.Allocate(ctx, []string{"dev-0"}, "w")
	if !errors.Is(err, devicesource.ErrNotLoaded) || err.Error() != `module "ctr": allocate: the module is not loaded` {
		t.Errorf("allocate: %v", err)
	}
	if _, err := src.PreferredAllocation(ctx, []string{"dev-0"}, nil, 1); !errors.Is(err, devicesource.ErrNotLoaded) {
		t.Errorf("preferred allocation: %v", err)
	}
	err = src.Watch(ctx, func([]device.Device) {})
	if !errors.Is(err, devicesource.ErrNotLoaded) || !strings.Contains(err.Error(), `module "ctr": discover`) {
		t.Errorf("watch: %v", err)
	}
}

// TestOneResourceTwoModules: the first module keeps the resource; the second
// is reported in conflict with it, and takes over when the first goes.
func TestOneResourceTwoModules(t *testing.T) {
	e := newEnv(t, envConfig{})
	e.configure("b", module.Options{Config: map[string]string{"count": "2"}}, devicesource.Options{})
	ctr := build.Go(t, "guests/counter")
	e.mods.Install("a", ctr)
	e.resource("example.com/counter", healthy(4))
	e.mods.Install("b", ctr)
	testenv.Eventually(t, "b to be in conflict with a", func() bool { return e.ctrl.Conflicts()["b"] == "a" })
	if r := e.resource("example.com/counter", healthy(4)); r.Provider != "module:a" || e.ctrl.Source("b") != nil || len(e.ctrl.Conflicts()) != 1 {
		t.Fatalf("%+v, conflicts %v", r, e.ctrl.Conflicts())
	}
	e.reg.Unload("a")
	if r := e.resource("example.com/counter", healthy(2)); r.Provider != "module:b" {
		t.Fatalf("%+v", r)
	}
	if c := e.ctrl.Conflicts(); len(c) != 0 {
		t.Fatalf("conflicts once b took over: %v", c)
	}
	// A module in conflict that is unloaded is no longer in conflict.
	e.mods.Install("a", ctr)
	testenv.Eventually(t, "a to be in conflict with b", func() bool { return e.ctrl.Conflicts()["a"] == "b" })
	e.reg.Unload("a")
	testenv.Eventually(t, "no conflict", func() bool { return len(e.ctrl.Conflicts()) == 0 })
}

// TestStartsWhatIsLoaded: modules loaded before the controller runs are
// served too.
func TestStartsWhatIsLoaded(t *testing.T) {
	e := newEnv(t, envConfig{noController: true})
	e.mods.Install("ctr", build.Go(t, "guests/counter"))
	c := devicesource.NewController(e.reg, e.m, devicesource.ControllerConfig{Logger: testenv.Logger(t, hclog.Info)})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); c.Run(ctx) }()
	defer func() { cancel(); wg.Wait() }()
	e.resource("example.com/counter", healthy(4))
	if got := c.Sources(); len(got) != 1 || got[0].Module() != "ctr" || got[0].Name() != "module:ctr" {
		t.Errorf("sources %v", got)
	}
}

// editCounter counts refused edits by kind, as the metrics do.
type editCounter struct {
	mu     sync.Mutex
	counts map[string]int
}

func (c *editCounter) EditsRefused(module, kind string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.counts[module+"/"+kind]++
}

func (c *editCounter) get() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.counts)
}

// TestRefusedDeviceCountedOnce: a discovered device whose edits the module
// may not hand out is left out at every discovery, with its reason in the
// status, but its refused edits are counted once, when first refused, not
// at every rediscovery. Each refused allocation counts again.
func TestRefusedDeviceCountedOnce(t *testing.T) {
	e := newEnv(t, envConfig{noController: true})
	e.configure("greedy", module.Options{Config: map[string]string{"discover": "hostile", "allocate": "hostile"}}, devicesource.Options{})
	e.mods.Install("greedy", build.Go(t, "guests/testmodules/greedy"))
	counts := &editCounter{counts: map[string]int{}}
	src, err := devicesource.NewSource(e.reg, "greedy", devicesource.Options{NoWatch: true, DiscoverInterval: -1, Observer: counts})
	if err != nil {
		t.Fatal(err)
	}
	rounds := make(chan error, 10)
	devicesource.AfterRound(src, func(err error) { rounds <- err })
	var sets [][]device.Device
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- src.Watch(ctx, func(d []device.Device) { sets = append(sets, d) }) }()
	for range 3 {
		if err := <-rounds; err != nil {
			t.Fatal(err)
		}
		src.Rediscover()
	}
	<-rounds
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(sets) != 1 || len(sets[0]) != 1 || sets[0][0].ID != "plain-0" {
		t.Fatalf("device sets %+v", sets)
	}
	if why := src.Status().Refused["greedy-0"]; !strings.Contains(why, "mount of host /var/run/docker.sock at /var/run/docker.sock (read-write)") {
		t.Fatalf("refused for %q", why)
	}
	want := map[string]int{"greedy/mount": 2, "greedy/device_node": 2, "greedy/env": 1}
	if got := counts.get(); !reflect.DeepEqual(got, want) {
		t.Fatalf("counted %v after 4 discoveries, want %v", got, want)
	}
	if _, err := src.Allocate(context.Background(), []string{"plain-0"}, "ns/p/c"); err == nil {
		t.Fatal("a hostile allocation passed")
	}
	want = map[string]int{"greedy/mount": 4, "greedy/device_node": 4, "greedy/env": 2}
	if got := counts.get(); !reflect.DeepEqual(got, want) {
		t.Fatalf("counted %v after an allocation, want %v", got, want)
	}
}
