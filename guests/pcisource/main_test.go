//go:build !wasip1

package main

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/wasmlet/wasmlet/abi"
	"github.com/wasmlet/wasmlet/guests/internal/guesttest"
	"github.com/wasmlet/wasmlet/guests/sdk"
	"github.com/wasmlet/wasmlet/internal/sysfstest"
)

// fakeSysfs lays out a tree like the kernel's (see internal/sysfstest) with
// an entry in bus/pci/devices that is not a device, for discovery to ignore.
// It returns the /sys directory.
func fakeSysfs(t *testing.T, devs []sysfstest.PCIDevice) string {
	t.Helper()
	sys := sysfstest.New(t, devs...)
	if err := os.WriteFile(filepath.Join(sys, sysfstest.PCIDevices, "README"), []byte("not a device"), 0o444); err != nil {
		t.Fatal(err)
	}
	return sys
}

var machine = []sysfstest.PCIDevice{
	{Addr: "0000:00:1f.6", Vendor: "0x8086", Device: "0x15bc", Class: "0x020000", NUMA: "0", Driver: "e1000e", Group: "7"},
	{Addr: "0000:3b:00.0", Vendor: "0x15b3", Device: "0x1017", Class: "0x020000", NUMA: "1", Driver: "mlx5_core", Group: "30", NoUevent: true,
		Under: "pci0000:3a/0000:3a:02.0"},
	{Addr: "0000:3b:00.2", Vendor: "0x15b3", Device: "0x1018", Class: "0x020000", NUMA: "1", Driver: "vfio-pci", Group: "31"},
	{Addr: "0000:3b:00.3", Vendor: "0x15b3", Device: "0x1018", Class: "0x020000", NUMA: "1", Driver: "vfio-pci", Group: "32", GroupOnlyInDir: true},
	{Addr: "0000:00:02.0", Vendor: "0x8086", Device: "0x3e92", Class: "0x030000", NUMA: "-1", Driver: "i915", Group: "1"},
	{Addr: "0000:00:00.0", Vendor: "0x8086", Device: "0x3e30", Class: "0x060000", NUMA: "-1"},
}

func configure(t *testing.T, sys string, extra map[string]string) config {
	t.Helper()
	c := map[string]string{"sysfs": filepath.Join(sys, "bus/pci/devices"), "iommu_groups": filepath.Join(sys, "kernel/iommu_groups")}
	for k, v := range extra {
		c[k] = v
	}
	return guesttest.Configure(t, loadConfig, c)
}

func node(p string) abi.DeviceNode {
	return abi.DeviceNode{ContainerPath: p, HostPath: p, Permissions: "rw"}
}

func ids(devs []abi.Device) []string {
	var out []string
	for _, d := range devs {
		out = append(out, d.ID)
	}
	return out
}

func TestDiscoverFilters(t *testing.T) {
	sys := fakeSysfs(t, machine)
	cases := []struct {
		config map[string]string
		want   []string
	}{
		{nil, []string{"0000:00:00.0", "0000:00:02.0", "0000:00:1f.6", "0000:3b:00.0", "0000:3b:00.2", "0000:3b:00.3"}},
		{map[string]string{"vendor": "8086"}, []string{"0000:00:00.0", "0000:00:02.0", "0000:00:1f.6"}},
		{map[string]string{"vendor": "0x15B3, 0x1234"}, []string{"0000:3b:00.0", "0000:3b:00.2", "0000:3b:00.3"}},
		{map[string]string{"class": "0x02"}, []string{"0000:00:1f.6", "0000:3b:00.0", "0000:3b:00.2", "0000:3b:00.3"}},
		{map[string]string{"class": "0x0300,06"}, []string{"0000:00:00.0", "0000:00:02.0"}},
		{map[string]string{"class": "0x02", "vendor": "15b3", "device": "1018"}, []string{"0000:3b:00.2", "0000:3b:00.3"}},
		{map[string]string{"vendor": "10de"}, nil},
	}
	for _, c := range cases {
		devs, err := discover(configure(t, sys, c.config))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(ids(devs), c.want) {
			t.Errorf("%v: got %v, want %v", c.config, ids(devs), c.want)
		}
	}
}

func TestDiscoverReadsEverything(t *testing.T) {
	devs, err := discover(configure(t, fakeSysfs(t, machine), nil))
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
		t.Errorf("nic: %+v", nic)
	}
	if !reflect.DeepEqual(nic.Edits, &abi.ContainerEdits{Envs: map[string]string{"PCI_DEVICE_0000_00_1F_6": "0000:00:1f.6"}}) {
		t.Errorf("nic edits: %+v", nic.Edits)
	}
	typed := map[string]abi.Attribute{"address": abi.StringAttribute("0000:00:1f.6"), "vendor": abi.StringAttribute("8086"),
		"device": abi.StringAttribute("15bc"), "class": abi.StringAttribute("020000"), "numa": abi.IntAttribute(0),
		"driver": abi.StringAttribute("e1000e"), "resource.kubernetes.io/pcieRoot": abi.StringAttribute("pci0000:00")}
	if !reflect.DeepEqual(nic.TypedAttributes, typed) {
		t.Errorf("nic typed attributes: %+v\nwant %+v", nic.TypedAttributes, typed)
	}
	if err := abi.ValidDiscovery(&abi.DiscoverResponse{Devices: devs}); err != nil {
		t.Error(err)
	}
	// Behind a bridge: the root is the first directory under devices/.
	if a := byID["0000:3b:00.0"].TypedAttributes; a["resource.kubernetes.io/pcieRoot"] != abi.StringAttribute("pci0000:3a") ||
		a["numa"] != abi.IntAttribute(1) {
		t.Errorf("behind a bridge: %+v", a)
	}
	// Without uevent: the vendor, device and class files and the driver link.
	want = map[string]string{"address": "0000:3b:00.0", "vendor": "15b3", "device": "1017", "class": "020000",
		"numa_node": "1", "driver": "mlx5_core", "iommu_group": "30"}
	if a := byID["0000:3b:00.0"].Attributes; !reflect.DeepEqual(a, want) {
		t.Errorf("without uevent: %v", a)
	}
	// A vfio-pci device gets its group's device node, found by link or by
	// the iommu_groups directory.
	for id, group := range map[string]string{"0000:3b:00.2": "31", "0000:3b:00.3": "32"} {
		d := byID[id]
		nodes := []abi.DeviceNode{node("/dev/vfio/vfio"), node("/dev/vfio/" + group)}
		if d.Attributes["iommu_group"] != group || d.Health != abi.Healthy || !reflect.DeepEqual(d.Edits.DeviceNodes, nodes) {
			t.Errorf("%s: %+v %+v", id, d, d.Edits)
		}
	}
	// NUMA -1 means unknown: no NUMA node; no driver, no group: no attribute.
	host := byID["0000:00:00.0"]
	if len(host.NUMANodes) != 0 || host.Attributes["numa_node"] != "" || len(host.Attributes) != 4 {
		t.Errorf("host bridge: %+v", host)
	}
	if _, ok := host.TypedAttributes["numa"]; ok || len(host.TypedAttributes) != 5 {
		t.Errorf("host bridge: %+v", host.TypedAttributes)
	}
}

func TestVFIOWithoutGroupIsUnhealthy(t *testing.T) {
	sys := fakeSysfs(t, machine[3:4]) // group only in the iommu_groups directory...
	cfg := configure(t, sys, map[string]string{"iommu_groups": "/nonexistent"})
	devs, err := discover(cfg) // ...which is not granted
	if err != nil {
		t.Fatal(err)
	}
	if len(devs) != 1 || devs[0].Health != abi.Unhealthy || len(devs[0].Edits.DeviceNodes) != 0 {
		t.Fatalf("%+v", devs)
	}
	_, err = allocate(cfg, &abi.AllocateRequest{DeviceIDs: []string{"0000:3b:00.3"}})
	if !guesttest.Refused(err, abi.CodeFailedPrecondition, "IOMMU group is unknown") {
		t.Fatalf("got %v", err)
	}
}

func TestAllocate(t *testing.T) {
	sys := fakeSysfs(t, machine)
	cfg := configure(t, sys, map[string]string{"resource": "vendor.com/sriov_net", "class": "02"})
	resp, err := allocate(cfg, &abi.AllocateRequest{DeviceIDs: []string{"0000:3b:00.2", "0000:00:1f.6", "0000:3b:00.3", "0000:3b:00.2"}, Workload: "pod/c"})
	if err != nil {
		t.Fatal(err)
	}
	list := "0000:3b:00.2,0000:00:1f.6,0000:3b:00.3"
	want := &abi.AllocateResponse{
		Envs:        map[string]string{"PCIDEVICE_VENDOR_COM_SRIOV_NET": list},
		Annotations: map[string]string{"vendor.com/sriov_net": list},
		DeviceNodes: []abi.DeviceNode{node("/dev/vfio/vfio"), node("/dev/vfio/31"), node("/dev/vfio/32")},
	}
	if !reflect.DeepEqual(resp, want) {
		t.Fatalf("got  %+v\nwant %+v", resp, want)
	}

	refusals := []struct {
		ids  []string
		code abi.Code
		want string
	}{
		{nil, abi.CodeInvalidArgument, "no devices requested"},
		{[]string{"../../../etc"}, abi.CodeInvalidArgument, "is not a PCI address"},
		{[]string{"0000:00:1f.6", "0000:99:00.0"}, abi.CodeNotFound, "PCI device 0000:99:00.0 is not present"},
		{[]string{"0000:00:02.0"}, abi.CodeInvalidArgument, "(vendor 8086, device 3e92, class 030000) is not part of vendor.com/sriov_net"},
	}
	for _, r := range refusals {
		_, err := allocate(cfg, &abi.AllocateRequest{DeviceIDs: r.ids})
		if !guesttest.Refused(err, r.code, r.want) {
			t.Errorf("%v: got %v, want code %d and %q", r.ids, err, r.code, r.want)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	for _, c := range []map[string]string{
		{"vendor": "intel"},
		{"vendor": "0x123456"},
		{"device": "0x"},
		{"class": "0x2"},
		{"class": "0x02000000"},
	} {
		if err := guesttest.ConfigError(loadConfig, c); !guesttest.Refused(err, abi.CodeFailedPrecondition, "") {
			t.Errorf("%v: got %v", c, err)
		}
	}
}

func TestMissingSysfs(t *testing.T) {
	sdk.SetTestConfig(map[string]string{"sysfs": "/nonexistent/pci"})
	cfg, _ := loadConfig()
	_, err := discover(cfg)
	if !guesttest.Refused(err, abi.CodeUnavailable, "mounts =") {
		t.Fatalf("got %v", err)
	}
}

func TestPCIAddress(t *testing.T) {
	for _, ok := range []string{"0000:00:1f.6", "0000:3B:00.7", "10000:00:00.0"} {
		if !pciAddress(ok) {
			t.Errorf("%s refused", ok)
		}
	}
	for _, bad := range []string{"", "..", "0000:00:1f", "0000:00:1f.8", "000:00:1f.6", "0000:00:1g.6", "0000:00:1f.6/..", "pci0000:00"} {
		if pciAddress(bad) {
			t.Errorf("%s accepted", bad)
		}
	}
}

// TestThisMachine discovers the real PCI devices natively, when there are
// any; the host-side tests do the same through wasmlet.
func TestThisMachine(t *testing.T) {
	if _, err := os.Stat("/sys/bus/pci/devices"); err != nil {
		t.Skip("this machine has no /sys/bus/pci/devices")
	}
	sdk.SetTestConfig(nil)
	cfg, _ := loadConfig()
	devs, err := discover(cfg)
	if err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir("/sys/bus/pci/devices")
	if len(devs) != len(entries) {
		t.Errorf("discovered %d devices, sysfs lists %d", len(devs), len(entries))
	}
	for _, d := range devs {
		t.Logf("%s %v numa=%v pcieRoot=%q", d.ID, d.Attributes, d.NUMANodes, d.TypedAttributes["resource.kubernetes.io/pcieRoot"].String)
		if d.TypedAttributes["resource.kubernetes.io/pcieRoot"].Type != abi.AttributeString {
			t.Errorf("%s: no PCIe root found", d.ID)
		}
	}
	if err := abi.ValidDiscovery(&abi.DiscoverResponse{Devices: devs}); err != nil {
		t.Error(err)
	}
}

// TestIdentitySources: the uevent file alone identifies a device; a uevent
// without PCI lines falls back to the files.
func TestIdentitySources(t *testing.T) {
	sys := fakeSysfs(t, machine[:2])
	dev0 := filepath.Join(sys, "devices/pci0000:00/0000:00:1f.6")
	for _, f := range []string{"vendor", "device", "class"} {
		os.Remove(filepath.Join(dev0, f))
	}
	os.WriteFile(filepath.Join(sys, "devices/pci0000:3a/0000:3a:02.0/0000:3b:00.0/uevent"), []byte("DRIVER=other\n"), 0o644)
	devs, err := discover(configure(t, sys, nil))
	if err != nil || len(devs) != 2 {
		t.Fatal(devs, err)
	}
	if a := devs[0].Attributes; a["vendor"] != "8086" || a["device"] != "15bc" || a["class"] != "020000" || a["driver"] != "e1000e" {
		t.Errorf("from uevent: %v", a)
	}
	if a := devs[1].Attributes; a["vendor"] != "15b3" || a["device"] != "1017" || a["class"] != "020000" || a["driver"] != "other" {
		t.Errorf("from files: %v", a)
	}
}

func TestPCIeRoot(t *testing.T) {
	for target, want := range map[string]string{
		"../../../devices/pci0000:00/0000:00:1f.6":              "pci0000:00",
		"../../../devices/pci0000:3a/0000:3a:02.0/0000:3b:00.0": "pci0000:3a",
		"/sys/devices/pci10000:e0/10000:e0:06.0/10000:e1:00.0":  "pci10000:e0",
		"../../../devices/platform/soc/0000:00:00.0":            "",
		"../../../devices/pcix/0000:00:00.0":                    "",
		"0000:00:1f.6":                                          "",
		"../../../devices/pci0000:00":                           "pci0000:00",
		"../../../devices/pci0000:0g/0000:00:1f.6":              "",
	} {
		if got := pcieRoot(target); got != want {
			t.Errorf("pcieRoot(%q) = %q, want %q", target, got, want)
		}
	}
}
