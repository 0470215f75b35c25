package module

// End-to-end tests of the repository's real guest modules (guests/pcisource,
// guests/devsource, guests/devicepluginhandler, guests/csihandler,
// guests/customhandler), built for wasip1 and run by the real runtime with
// real mounts. Their logic is unit-tested natively in their own directories;
// these tests prove it holds inside the sandbox: files reached through
// read-only mounts, links resolved within a mount's root, configuration
// through config_get, replies through the ABI.

import (
	"context"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/wasmlet/wasmlet/abi"
	"github.com/wasmlet/wasmlet/guests/build"
	"github.com/wasmlet/wasmlet/internal/sysfstest"
)

// ---- pcisource ---------------------------------------------------------------

// sysfsMounts grants /sys/bus/pci/devices and /sys/kernel/iommu_groups of
// the tree at sys, with sys as the root within which links resolve.
func sysfsMounts(sys string) []Mount {
	return []Mount{
		{Host: filepath.Join(sys, "bus/pci/devices"), Guest: "/sys/bus/pci/devices", Root: sys},
		{Host: filepath.Join(sys, "kernel/iommu_groups"), Guest: "/sys/kernel/iommu_groups", Root: sys},
	}
}

func deviceIDs(devs []abi.Device) []string {
	out := []string{}
	for _, d := range devs {
		out = append(out, d.ID)
	}
	return out
}

func vfioNode(p string) abi.DeviceNode {
	return abi.DeviceNode{ContainerPath: p, HostPath: p, Permissions: "rw"}
}

func TestPCISourceFakeSysfs(t *testing.T) {
	ctx := context.Background()
	sys := sysfstest.New(t, []sysfstest.PCIDevice{
		{Addr: "0000:00:1f.6", Vendor: "0x8086", Device: "0x15bc", Class: "0x020000", NUMA: "0", Driver: "e1000e", Group: "7"},
		{Addr: "0000:3b:00.0", Vendor: "0x15b3", Device: "0x1017", Class: "0x020000", NUMA: "1", Driver: "mlx5_core", Group: "30"},
		{Addr: "0000:3b:00.2", Vendor: "0x15b3", Device: "0x1018", Class: "0x020000", NUMA: "1", Driver: "vfio-pci", Group: "31"},
		{Addr: "0000:3b:00.3", Vendor: "0x15b3", Device: "0x1018", Class: "0x020000", NUMA: "1", Driver: "vfio-pci", Group: "31"},
		{Addr: "0000:00:02.0", Vendor: "0x8086", Device: "0x3e92", Class: "0x030000", NUMA: "-1", Driver: "i915", Group: "1"},
		{Addr: "0000:00:00.0", Vendor: "0x8086", Device: "0x3e30", Class: "0x060000", NUMA: "-1"},
	}...)
	wasm := build.Go(t, "guests/pcisource")

	t.Run("filters", func(t *testing.T) {
		for _, c := range []struct {
			config map[string]string
			want   []string
		}{
			{nil, []string{"0000:00:00.0", "0000:00:02.0", "0000:00:1f.6", "0000:3b:00.0", "0000:3b:00.2", "0000:3b:00.3"}},
			{map[string]string{"vendor": "0x8086"}, []string{"0000:00:00.0", "0000:00:02.0", "0000:00:1f.6"}},
			{map[string]string{"class": "0x02"}, []string{"0000:00:1f.6", "0000:3b:00.0", "0000:3b:00.2", "0000:3b:00.3"}},
			{map[string]string{"class": "0x02", "vendor": "15b3", "device": "1018"}, []string{"0000:3b:00.2", "0000:3b:00.3"}},
			{map[string]string{"class": "0x0300,0x06"}, []string{"0000:00:00.0", "0000:00:02.0"}},
			{map[string]string{"vendor": "10de"}, []string{}},
		} {
			m := load(t, wasm, Options{Mounts: sysfsMounts(sys), Config: c.config})
			devs, err := m.Discover(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if got := deviceIDs(devs); !reflect.DeepEqual(got, c.want) {
				t.Errorf("%v: got %v, want %v", c.config, got, c.want)
			}
		}
	})

	t.Run("attributes, NUMA, edits", func(t *testing.T) {
		m := load(t, wasm, Options{Mounts: sysfsMounts(sys), Config: map[string]string{"resource": "vendor.com/nic", "class": "02"}})
		if d := m.Description(); d.Resource != "vendor.com/nic" || d.Kind != abi.KindDeviceSource || !d.Implements("allocate") {
			t.Fatalf("description %+v", d)
		}
		devs, err := m.Discover(ctx)
		if err != nil {
			t.Fatal(err)
		}
		byID := map[string]abi.Device{}
		for _, d := range devs {
			byID[d.ID] = d
		}
		nic := byID["0000:00:1f.6"]
		want := map[string]string{"address": "0000:00:1f.6", "vendor": "8086", "device": "15bc", "class": "020000",
			"numa_node": "0", "driver": "e1000e", "iommu_group": "7"}
		if !reflect.DeepEqual(nic.Attributes, want) || !reflect.DeepEqual(nic.NUMANodes, []int64{0}) || nic.Health != abi.Healthy {
			t.Errorf("0000:00:1f.6: %+v", nic)
		}
		if e := nic.Edits; e == nil || e.Envs["PCI_DEVICE_0000_00_1F_6"] != "0000:00:1f.6" || len(e.DeviceNodes) != 0 {
			t.Errorf("0000:00:1f.6 edits: %+v", e)
		}
		// The typed attributes, the PCIe root read from the device's link
		// inside the sandbox.
		typed := map[string]abi.Attribute{"address": abi.StringAttribute("0000:00:1f.6"), "vendor": abi.StringAttribute("8086"),
			"device": abi.StringAttribute("15bc"), "class": abi.StringAttribute("020000"), "numa": abi.IntAttribute(0),
			"driver": abi.StringAttribute("e1000e"), "resource.kubernetes.io/pcieRoot": abi.StringAttribute("pci0000:00")}
		if !reflect.DeepEqual(nic.TypedAttributes, typed) {
			t.Errorf("0000:00:1f.6 typed attributes: %+v", nic.TypedAttributes)
		}
		vf := byID["0000:3b:00.2"]
		if !reflect.DeepEqual(vf.NUMANodes, []int64{1}) || vf.Attributes["driver"] != "vfio-pci" || vf.Attributes["iommu_group"] != "31" ||
			!reflect.DeepEqual(vf.Edits.DeviceNodes, []abi.DeviceNode{vfioNode("/dev/vfio/vfio"), vfioNode("/dev/vfio/31")}) {
			t.Errorf("0000:3b:00.2: %+v %+v", vf, vf.Edits)
		}
	})

	t.Run("NUMA unknown", func(t *testing.T) {
		m := load(t, wasm, Options{Mounts: sysfsMounts(sys), Config: map[string]string{"class": "06"}})
		devs, err := m.Discover(ctx)
		if err != nil || len(devs) != 1 {
			t.Fatal(devs, err)
		}
		if d := devs[0]; len(d.NUMANodes) != 0 || d.Attributes["numa_node"] != "" || d.Attributes["driver"] != "" || d.Attributes["iommu_group"] != "" {
			t.Errorf("host bridge: %+v", d)
		}
	})

	t.Run("allocate", func(t *testing.T) {
		m := load(t, wasm, Options{Mounts: sysfsMounts(sys), Config: map[string]string{"resource": "intel.com/sriov_net", "vendor": "15b3"}})
		resp, err := m.Allocate(ctx, &abi.AllocateRequest{DeviceIDs: []string{"0000:3b:00.2", "0000:3b:00.0", "0000:3b:00.3"}, Workload: "pod/c"})
		if err != nil {
			t.Fatal(err)
		}
		list := "0000:3b:00.2,0000:3b:00.0,0000:3b:00.3"
		want := &abi.AllocateResponse{
			Envs:        map[string]string{"PCIDEVICE_INTEL_COM_SRIOV_NET": list},
			Annotations: map[string]string{"intel.com/sriov_net": list},
			// Two VFs in one IOMMU group: the group's node once.
			DeviceNodes: []abi.DeviceNode{vfioNode("/dev/vfio/vfio"), vfioNode("/dev/vfio/31")},
		}
		if !reflect.DeepEqual(resp, want) {
			t.Fatalf("got  %+v\nwant %+v", resp, want)
		}
		for _, c := range []struct {
			ids  []string
			code abi.Code
			want string
		}{
			{[]string{"0000:00:1f.6"}, abi.CodeInvalidArgument, "does not match the configured filters"},
			{[]string{"0000:99:00.0"}, abi.CodeNotFound, "0000:99:00.0 is not present"},
			{[]string{"..", "0000:3b:00.0"}, abi.CodeInvalidArgument, "is not a PCI address"},
		} {
			_, err := m.Allocate(ctx, &abi.AllocateRequest{DeviceIDs: c.ids})
			e, ok := ModuleError(err)
			if IsFault(err) || !ok || e.Code != c.code || !strings.Contains(e.Message, c.want) {
				t.Errorf("%v: got %v", c.ids, err)
			}
		}
	})

	t.Run("the IOMMU group and driver from their links", func(t *testing.T) {
		// Without /sys/kernel/iommu_groups the module reads each device's
		// iommu_group and driver links, confined to the mount's root.
		m := load(t, wasm, Options{Mounts: sysfsMounts(sys)[:1], Config: map[string]string{"device": "1018"}})
		devs, err := m.Discover(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(devs) == 0 {
			t.Fatal("no devices")
		}
		for _, d := range devs {
			if d.Health != abi.Healthy || d.Attributes["iommu_group"] == "" || d.Attributes["driver"] != "vfio-pci" {
				t.Errorf("%s: %+v", d.ID, d)
			}
		}
	})

	t.Run("links need the mount's root", func(t *testing.T) {
		// Without Root, the links into ../../../devices may not be followed:
		// every entry is skipped, with a warning naming them.
		logger, logs := captureLogger()
		m := load(t, wasm, Options{Logger: logger,
			Mounts: []Mount{{Host: filepath.Join(sys, "bus/pci/devices"), Guest: "/sys/bus/pci/devices"}}})
		devs, err := m.Discover(ctx)
		if err != nil || len(devs) != 0 {
			t.Fatalf("got %v, %v", devs, err)
		}
		if !strings.Contains(logs.String(), "skipped entries of /sys/bus/pci/devices without readable vendor, device and class: 0000:00:00.0") {
			t.Errorf("log: %s", logs)
		}
	})

	t.Run("nothing granted", func(t *testing.T) {
		m := load(t, wasm, Options{})
		_, err := m.Discover(ctx)
		e, ok := ModuleError(err)
		if IsFault(err) || !ok || e.Code != abi.CodeUnavailable || !strings.Contains(e.Message, "cannot list PCI devices") {
			t.Fatalf("got %v", err)
		}
	})
}

// TestPCISourceThisMachine runs the PCI source on this machine's sysfs and
// checks every device against what the host reads itself.
func TestPCISourceThisMachine(t *testing.T) {
	const dir = "/sys/bus/pci/devices"
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Skipf("this machine has no PCI devices in sysfs to discover (%v)", err)
	}
	ctx := context.Background()
	mounts := []Mount{{Host: dir, Guest: dir, Root: "/sys"}}
	if _, err := os.Stat("/sys/kernel/iommu_groups"); err == nil {
		mounts = append(mounts, Mount{Host: "/sys/kernel/iommu_groups", Guest: "/sys/kernel/iommu_groups", Root: "/sys"})
	}
	m := load(t, build.Go(t, "guests/pcisource"), Options{Mounts: mounts})
	devs, err := m.Discover(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(devs) != len(entries) {
		t.Errorf("discovered %d devices; %s lists %d", len(devs), dir, len(entries))
	}
	hex := func(addr, attr string) string {
		b, _ := os.ReadFile(filepath.Join(dir, addr, attr))
		return strings.TrimPrefix(strings.TrimSpace(string(b)), "0x")
	}
	numa := 0
	for _, d := range devs {
		a := d.Attributes
		if a["vendor"] != hex(d.ID, "vendor") || a["device"] != hex(d.ID, "device") || a["class"] != hex(d.ID, "class") {
			t.Errorf("%s: attributes %v disagree with sysfs", d.ID, a)
		}
		wantDriver := ""
		if target, err := os.Readlink(filepath.Join(dir, d.ID, "driver")); err == nil {
			wantDriver = path.Base(target)
		}
		wantGroup := ""
		if target, err := os.Readlink(filepath.Join(dir, d.ID, "iommu_group")); err == nil {
			wantGroup = path.Base(target)
		}
		if a["driver"] != wantDriver || a["iommu_group"] != wantGroup {
			t.Errorf("%s: driver %q, iommu group %q; the links say %q and %q", d.ID, a["driver"], a["iommu_group"], wantDriver, wantGroup)
		}
		// The PCIe root as Kubernetes' deviceattribute package finds it:
		// the directory under /sys/devices the device's link leads into.
		target, _ := filepath.EvalSymlinks(filepath.Join(dir, d.ID))
		wantRoot, _, _ := strings.Cut(strings.TrimPrefix(target, "/sys/devices/"), "/")
		if root := d.TypedAttributes["resource.kubernetes.io/pcieRoot"]; root != abi.StringAttribute(wantRoot) {
			t.Errorf("%s: PCIe root %+v; its link leads to %s", d.ID, root, target)
		}
		n, _ := strconv.Atoi(hex(d.ID, "numa_node"))
		if n >= 0 {
			numa++
			if !reflect.DeepEqual(d.NUMANodes, []int64{int64(n)}) {
				t.Errorf("%s: NUMA nodes %v, sysfs says %d", d.ID, d.NUMANodes, n)
			}
		} else if len(d.NUMANodes) != 0 {
			t.Errorf("%s: NUMA nodes %v, sysfs says unknown", d.ID, d.NUMANodes)
		}
		t.Logf("%s %v numa=%v", d.ID, a, d.NUMANodes)
	}
	t.Logf("%d PCI devices discovered through wasmlet, %d with a NUMA node", len(devs), numa)
	if len(devs) == 0 {
		return
	}
	resp, err := m.Allocate(ctx, &abi.AllocateRequest{DeviceIDs: []string{devs[0].ID}, Workload: "pod/c"})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Envs["PCIDEVICE_EXAMPLE_COM_PCI"] != devs[0].ID || resp.Annotations["example.com/pci"] != devs[0].ID {
		t.Errorf("allocate: %+v", resp)
	}
}

// ---- devsource ---------------------------------------------------------------

func devNode(p string) abi.DeviceNode {
	return abi.DeviceNode{ContainerPath: p, HostPath: p, Permissions: "rw"}
}

// TestDevSource runs the /dev source on this machine's /dev, mounted
// read-only. Tests cannot create device nodes without root, so the real ones
// every Linux has stand in, and a temporary directory shows that what is not
// a device node is ignored.
func TestDevSource(t *testing.T) {
	for _, p := range []string{"/dev/null", "/dev/zero", "/dev/random", "/dev/urandom"} {
		if fi, err := os.Lstat(p); err != nil || fi.Mode()&os.ModeCharDevice == 0 {
			t.Skipf("%s is not a character device here (%v)", p, err)
		}
	}
	ctx := context.Background()
	wasm := build.Go(t, "guests/devsource")
	dev := []Mount{{Host: "/dev", Guest: "/dev"}}

	t.Run("discover and allocate", func(t *testing.T) {
		m := load(t, wasm, Options{Mounts: dev, Config: map[string]string{
			"resource": "example.com/null", "globs": "/dev/null,/dev/zero,/dev/*random,/dev/stdin,/dev/shm,/dev/nonexistent*"}})
		devs, err := m.Discover(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// /dev/stdin is a link, /dev/shm a directory: not devices.
		if got := deviceIDs(devs); !reflect.DeepEqual(got, []string{"null", "random", "urandom", "zero"}) {
			t.Fatalf("got %v", got)
		}
		if d := devs[0]; d.Attributes["path"] != "/dev/null" || d.Attributes["type"] != "char" ||
			!reflect.DeepEqual(d.Edits.DeviceNodes, []abi.DeviceNode{devNode("/dev/null")}) {
			t.Errorf("%+v", d)
		}
		resp, err := m.Allocate(ctx, &abi.AllocateRequest{DeviceIDs: []string{"zero", "null"}, Workload: "pod/c"})
		if err != nil {
			t.Fatal(err)
		}
		want := &abi.AllocateResponse{
			Envs:        map[string]string{"DEVICES_EXAMPLE_COM_NULL": "/dev/zero,/dev/null"},
			DeviceNodes: []abi.DeviceNode{devNode("/dev/zero"), devNode("/dev/null")},
		}
		if !reflect.DeepEqual(resp, want) {
			t.Fatalf("got  %+v\nwant %+v", resp, want)
		}
		_, err = m.Allocate(ctx, &abi.AllocateRequest{DeviceIDs: []string{"full"}})
		if e, ok := ModuleError(err); IsFault(err) || !ok || e.Code != abi.CodeNotFound {
			t.Errorf("allocating an undiscovered device: %v", err)
		}
	})

	t.Run("shares", func(t *testing.T) {
		m := load(t, wasm, Options{Mounts: dev, Config: map[string]string{"globs": "/dev/null", "shares": "3", "permissions": "r"}})
		devs, err := m.Discover(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got := deviceIDs(devs); !reflect.DeepEqual(got, []string{"null-0", "null-1", "null-2"}) {
			t.Fatalf("got %v", got)
		}
		resp, err := m.Allocate(ctx, &abi.AllocateRequest{DeviceIDs: []string{"null-1", "null-2"}})
		if err != nil {
			t.Fatal(err)
		}
		want := []abi.DeviceNode{{ContainerPath: "/dev/null", HostPath: "/dev/null", Permissions: "r"}}
		if !reflect.DeepEqual(resp.DeviceNodes, want) || resp.Envs["DEVICES_EXAMPLE_COM_DEV"] != "/dev/null" {
			t.Fatalf("got %+v", resp)
		}
	})

	t.Run("files, directories and links are not devices", func(t *testing.T) {
		tmp := t.TempDir()
		os.WriteFile(filepath.Join(tmp, "null"), []byte("a file"), 0o644)
		os.MkdirAll(filepath.Join(tmp, "snd", "by-path"), 0o755)
		os.WriteFile(filepath.Join(tmp, "snd", "controlC0"), nil, 0o644)
		os.Symlink("/dev/zero", filepath.Join(tmp, "zero"))
		os.Symlink("null", filepath.Join(tmp, "null-link"))
		m := load(t, wasm, Options{Mounts: []Mount{{Host: tmp, Guest: "/dev"}}, Config: map[string]string{"globs": "/dev/*,/dev/snd/*"}})
		devs, err := m.Discover(ctx)
		if err != nil || len(devs) != 0 {
			t.Fatalf("got %+v, %v", devs, err)
		}
	})

	t.Run("mounted elsewhere", func(t *testing.T) {
		m := load(t, wasm, Options{Mounts: []Mount{{Host: "/dev", Guest: "/host/dev"}},
			Config: map[string]string{"globs": "/dev/null", "dev": "/host/dev"}})
		devs, err := m.Discover(ctx)
		if err != nil || len(devs) != 1 || devs[0].Attributes["path"] != "/dev/null" {
			t.Fatalf("got %+v, %v", devs, err)
		}
	})

	t.Run("errors the operator can act on", func(t *testing.T) {
		for _, c := range []struct {
			opts Options
			code abi.Code
			want string
		}{
			{Options{Config: map[string]string{"globs": "/dev/null"}}, abi.CodeUnavailable, "cannot list /dev"},
			{Options{Mounts: dev}, abi.CodeFailedPrecondition, "configuration globs is empty"},
			{Options{Mounts: dev, Config: map[string]string{"globs": "/etc/passwd"}}, abi.CodeFailedPrecondition, "not an absolute pattern under /dev"},
		} {
			_, err := load(t, wasm, c.opts).Discover(ctx)
			if e, ok := ModuleError(err); IsFault(err) || !ok || e.Code != c.code || !strings.Contains(e.Message, c.want) {
				t.Errorf("%+v: got %v", c.opts.Config, err)
			}
		}
	})
}

// ---- handlers ----------------------------------------------------------------

type handlerCase struct {
	name   string
	plugin abi.Plugin
	code   abi.Code // 0: accepted
	want   string   // in the refusal
}

// checkHandler runs validate, register and deregister for every case:
// accepted plugins must register and deregister, refused ones must be
// refused by register too, with the same message.
func checkHandler(t *testing.T, m *Module, cases []handlerCase, registered func(*testing.T, handlerCase, *abi.RegisterResponse)) {
	ctx := context.Background()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := m.Validate(ctx, &c.plugin)
			resp, rerr := m.Register(ctx, &c.plugin)
			if IsFault(err) || IsFault(rerr) {
				t.Fatalf("fault: %v / %v", err, rerr)
			}
			if c.code == 0 {
				if err != nil || rerr != nil {
					t.Fatalf("refused: %v / %v", err, rerr)
				}
				registered(t, c, resp)
				if err := m.Deregister(ctx, &c.plugin); err != nil {
					t.Fatalf("deregister: %v", err)
				}
				return
			}
			for _, err := range []error{err, rerr} {
				e, ok := ModuleError(err)
				if !ok || e.Code != c.code || !strings.Contains(e.Message, c.want) {
					t.Errorf("got %v, want code %v and %q", err, c.code, c.want)
				}
			}
		})
	}
}

func TestDevicePluginHandlerModule(t *testing.T) {
	m := load(t, build.Go(t, "guests/devicepluginhandler"), Options{Config: map[string]string{
		"versions": "v1beta1", "allowed_domains": "nvidia.com,example.com", "name_pattern": "gpu*"}})
	if d := m.Description(); d.Kind != abi.KindHandler || d.PluginType != "DevicePlugin" ||
		!d.Implements("validate") || !d.Implements("deregister") {
		t.Fatalf("description %+v", d)
	}
	p := func(name string, versions ...string) abi.Plugin {
		return abi.Plugin{Type: "DevicePlugin", Name: name, Endpoint: "gpu.sock", SupportedVersions: versions,
			SocketPath: "/var/lib/kubelet/plugins_registry/gpu.sock"}
	}
	checkHandler(t, m, []handlerCase{
		{"accepted", p("nvidia.com/gpu", "v1alpha", "v1beta1"), 0, ""},
		{"subdomain", p("a100.nvidia.com/gpu-80g", "v1beta1"), 0, ""},
		{"no endpoint", abi.Plugin{Type: "DevicePlugin", Name: "example.com/gpu", SupportedVersions: []string{"v1beta1"}, SocketPath: "/reg/x.sock"}, 0, ""},
		{"old version", p("nvidia.com/gpu", "v1alpha"), abi.CodeInvalidArgument,
			`device plugin "nvidia.com/gpu" offered device plugin API versions v1alpha; this node accepts v1beta1`},
		{"not a resource name", p("gpu", "v1beta1"), abi.CodeInvalidArgument, `"gpu" is not of the form <domain>/<name>`},
		{"kubernetes.io", p("kubernetes.io/gpu", "v1beta1"), abi.CodeInvalidArgument, "reserved for Kubernetes"},
		{"long name", p("nvidia.com/gpu"+strings.Repeat("x", 61), "v1beta1"), abi.CodeInvalidArgument, "1 to 63 characters"},
		{"domain not allowed", p("amd.com/gpu", "v1beta1"), abi.CodeInvalidArgument,
			`resource domain "amd.com" is not allowed on this node; allowed domains (and their subdomains): nvidia.com, example.com`},
		{"look-alike domain", p("notnvidia.com/gpu", "v1beta1"), abi.CodeInvalidArgument, "is not allowed on this node"},
		{"name pattern", p("nvidia.com/nic", "v1beta1"), abi.CodeInvalidArgument, `resource name "nic" does not match the pattern "gpu*"`},
		{"wrong type", abi.Plugin{Type: "CSIPlugin", Name: "nvidia.com/gpu", SupportedVersions: []string{"v1beta1"}}, abi.CodeInvalidArgument,
			`has type "CSIPlugin"; this handler serves DevicePlugin`},
	}, func(t *testing.T, c handlerCase, r *abi.RegisterResponse) {
		endpoint := c.plugin.Endpoint
		if endpoint == "" {
			endpoint = c.plugin.SocketPath
		}
		if r.Action != abi.ActionDevicePlugin || r.ResourceName != c.plugin.Name || r.Endpoint != c.plugin.Endpoint ||
			r.Version != "v1beta1" || r.Attributes["endpoint"] != endpoint || r.Attributes["resource"] != c.plugin.Name {
			t.Errorf("register: %+v", r)
		}
	})
}

func TestCSIHandlerModule(t *testing.T) {
	m := load(t, build.Go(t, "guests/csihandler"), Options{Config: map[string]string{
		"allowed_domains": "csi.k8s.io", "min_version": "1.1.0", "endpoint_dirs": "/var/lib/kubelet/plugins"}})
	if d := m.Description(); d.Kind != abi.KindHandler || d.PluginType != "CSIPlugin" ||
		!d.Implements("validate") || !d.Implements("deregister") {
		t.Fatalf("description %+v", d)
	}
	// What node-driver-registrar announces, but with the versions given.
	p := func(name string, versions ...string) abi.Plugin {
		return abi.Plugin{Type: "CSIPlugin", Name: name, Endpoint: "/var/lib/kubelet/plugins/" + name + "/csi.sock",
			SupportedVersions: versions, SocketPath: "/var/lib/kubelet/plugins_registry/" + name + "-reg.sock"}
	}
	checkHandler(t, m, []handlerCase{
		{"accepted", p("hostpath.csi.k8s.io", "1.0.0", "1.2.0"), 0, ""},
		{"0.x only", p("hostpath.csi.k8s.io", "0.3.0"), abi.CodeInvalidArgument,
			`CSI driver "hostpath.csi.k8s.io" at endpoint "/var/lib/kubelet/plugins/hostpath.csi.k8s.io/csi.sock": offered CSI spec versions 0.3.0`},
		{"below min_version", p("hostpath.csi.k8s.io", "1.0.0"), abi.CodeInvalidArgument, "this node requires at least 1.1.0"},
		{"domain", p("ebs.csi.aws.com", "1.2.0"), abi.CodeInvalidArgument, `CSI driver "ebs.csi.aws.com" is not allowed on this node`},
		{"name", p("hostpath_csi.k8s.io", "1.2.0"), abi.CodeInvalidArgument, `label "hostpath_csi"`},
		{"endpoint", abi.Plugin{Type: "CSIPlugin", Name: "hostpath.csi.k8s.io", Endpoint: "/tmp/csi.sock", SupportedVersions: []string{"1.2.0"}},
			abi.CodeInvalidArgument, `endpoint "/tmp/csi.sock" is outside the directories this node allows CSI sockets in`},
	}, func(t *testing.T, c handlerCase, r *abi.RegisterResponse) {
		if r.Action != abi.ActionCSIDriver || r.Endpoint != c.plugin.Endpoint || r.Version != "1.2.0" ||
			r.Attributes["driver"] != c.plugin.Name || r.Attributes["csi_version"] != "1.2.0" {
			t.Errorf("register: %+v", r)
		}
	})
}

func TestCustomHandlerModule(t *testing.T) {
	m := load(t, build.Go(t, "guests/customhandler"), Options{Config: map[string]string{
		"type": "AcmeWidget", "versions": "v2,v1", "name_pattern": "acme-*"}})
	if d := m.Description(); d.Kind != abi.KindHandler || d.PluginType != "AcmeWidget" {
		t.Fatalf("description %+v", d)
	}
	p := func(name string, versions ...string) abi.Plugin {
		return abi.Plugin{Type: "AcmeWidget", Name: name, Endpoint: "/run/acme.sock", SupportedVersions: versions,
			SocketPath: "/var/lib/kubelet/plugins_registry/acme.sock"}
	}
	checkHandler(t, m, []handlerCase{
		{"accepted", p("acme-1", "v1", "v2"), 0, ""},
		{"older version", p("acme-2", "v1"), 0, ""},
		{"version", p("acme-3", "v3"), abi.CodeInvalidArgument, `AcmeWidget plugin "acme-3" offered versions v3; this node accepts v2, v1`},
		{"name", p("other", "v1"), abi.CodeInvalidArgument, `the name does not match the pattern "acme-*"`},
		{"empty name", p("", "v1"), abi.CodeInvalidArgument, "reported an empty name"},
		{"type", abi.Plugin{Type: "ExamplePlugin", Name: "acme-1", SupportedVersions: []string{"v1"}}, abi.CodeInvalidArgument,
			"this handler serves AcmeWidget"},
	}, func(t *testing.T, c handlerCase, r *abi.RegisterResponse) {
		want := "v2"
		if len(c.plugin.SupportedVersions) == 1 {
			want = "v1"
		}
		if r.Action != abi.ActionRecord || r.Version != want || r.Attributes["version"] != want ||
			r.Attributes["endpoint"] != "/run/acme.sock" || len(r.Attributes["registered_at"]) != len("2006-01-02T15:04:05Z") {
			t.Errorf("register: %+v", r)
		}
	})
}

// ---- gpusim --------------------------------------------------------------------

// TestGPUSim runs the simulated GPUs through the host: the structured
// fields of its discovery (typed attributes, capacity, shared counters,
// multiple allocations) and its prepare cross the ABI intact, its driver is
// in its description, and its configuration comes through config_get.
func TestGPUSim(t *testing.T) {
	ctx := context.Background()
	wasm := build.Go(t, "guests/gpusim")

	t.Run("partitions", func(t *testing.T) {
		m := load(t, wasm, Options{Config: map[string]string{"gpus": "2", "partitions": "3g.20gb", "model": "H100",
			"memory": "80Gi", "driver_version": "535.104.5"}})
		if d := m.Description(); d.Driver != "gpu.example.com" || d.Resource != "gpu.example.com/gpu" ||
			!d.Implements("prepare") || !d.Implements("unprepare") {
			t.Fatalf("description %+v", d)
		}
		r, err := m.Discovery(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := abi.ValidDiscovery(r); err != nil {
			t.Fatal(err)
		}
		if got := deviceIDs(r.Devices); !reflect.DeepEqual(got, []string{"gpu-0", "gpu-0-3g-20gb-0", "gpu-0-3g-20gb-1",
			"gpu-1", "gpu-1-3g-20gb-0", "gpu-1-3g-20gb-1"}) {
			t.Fatalf("devices %v", got)
		}
		if !reflect.DeepEqual(r.SharedCounters[1], abi.CounterSet{Name: "gpu-1", Counters: map[string]string{"memory": "80Gi", "slices": "7"}}) {
			t.Errorf("counters %+v", r.SharedCounters)
		}
		part := r.Devices[5]
		if part.TypedAttributes["model"] != abi.StringAttribute("H100") || part.TypedAttributes["index"] != abi.IntAttribute(1) ||
			part.TypedAttributes["driverVersion"] != abi.VersionAttribute("535.104.5") ||
			part.Capacity["memory"].Value != "20Gi" ||
			!reflect.DeepEqual(part.ConsumesCounters, []abi.CounterConsumption{{CounterSet: "gpu-1",
				Counters: map[string]string{"memory": "20Gi", "slices": "3"}}}) {
			t.Errorf("partition %+v", part)
		}
		req := &abi.PrepareRequest{Claim: abi.Claim{UID: "u", Namespace: "ns", Name: "c"},
			Results: []abi.AllocatedDevice{{Request: "mig", DeviceID: "gpu-1-3g-20gb-1"}},
			Configs: []abi.DeviceConfig{{Source: abi.ConfigFromClaim, Parameters: []byte(`{"computeMode":"Exclusive"}`)}}}
		resp, err := m.Prepare(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		uuid := part.TypedAttributes["uuid"].String
		want := &abi.PrepareResponse{Devices: []abi.PreparedDevice{{Request: "mig", DeviceID: "gpu-1-3g-20gb-1",
			CDIDeviceIDs: []string{"gpu.example.com/gpu=gpu-1-3g-20gb-1"},
			Edits: &abi.ContainerEdits{Envs: map[string]string{"GPUSIM_VISIBLE_DEVICES": uuid, "GPUSIM_GPU_1_3G_20GB_1_UUID": uuid,
				"GPUSIM_GPU_1_3G_20GB_1_MIG_MEMORY": "20Gi", "GPUSIM_GPU_1_3G_20GB_1_MIG_COMPUTE_MODE": "Exclusive"}}}}}
		if !reflect.DeepEqual(resp, want) {
			t.Errorf("prepare = %+v\nwant %+v", resp, want)
		}
		if err := m.Unprepare(ctx, &req.Claim); err != nil {
			t.Error(err)
		}
		_, err = m.Prepare(ctx, &abi.PrepareRequest{Results: []abi.AllocatedDevice{{Request: "r", DeviceID: "gpu-9"}}})
		if e, ok := ModuleError(err); IsFault(err) || !ok || e.Code != abi.CodeNotFound {
			t.Errorf("prepare of no such device: %v", err)
		}
	})

	t.Run("shared", func(t *testing.T) {
		m := load(t, wasm, Options{Config: map[string]string{"gpus": "1", "shared": "true", "resource": "sim.example.org/gpu",
			"driver": "sim.example.org"}})
		if d := m.Description(); d.Driver != "sim.example.org" {
			t.Fatalf("driver %q", d.Driver)
		}
		r, err := m.Discovery(ctx)
		if err != nil {
			t.Fatal(err)
		}
		d := r.Devices[0]
		if !d.AllowMultipleAllocations || !reflect.DeepEqual(d.Capacity["memory"], abi.Capacity{Value: "40Gi",
			RequestPolicy: &abi.CapacityRequestPolicy{Default: "4Gi", Min: "1Gi", Step: "1Gi"}}) {
			t.Errorf("device %+v", d)
		}
		resp, err := m.Prepare(ctx, &abi.PrepareRequest{Results: []abi.AllocatedDevice{
			{Request: "r", DeviceID: "gpu-0", ConsumedCapacity: map[string]string{"memory": "6Gi"}, ShareID: "share-1"}}})
		if err != nil {
			t.Fatal(err)
		}
		if e := resp.Devices[0].Edits.Envs; e["GPUSIM_GPU_0_R_MEMORY"] != "6Gi" || e["GPUSIM_GPU_0_R_SHARE"] != "share-1" ||
			resp.Devices[0].CDIDeviceIDs[0] != "sim.example.org/gpu=gpu-0" {
			t.Errorf("prepare %+v", resp.Devices[0])
		}
	})

	t.Run("a bad configuration", func(t *testing.T) {
		m := load(t, wasm, Options{Config: map[string]string{"partitions": "9g.1gb"}})
		_, err := m.Discovery(ctx)
		if e, ok := ModuleError(err); IsFault(err) || !ok || e.Code != abi.CodeFailedPrecondition ||
			!strings.Contains(e.Message, "configuration partitions: profile 9g.1gb is larger than a GPU") {
			t.Errorf("got %v", err)
		}
	})
}
