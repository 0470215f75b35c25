// Package sysfstest builds fake Linux sysfs trees of PCI devices for tests:
// the unit tests of guests/pcisource read them natively, the host's tests
// mount them into the same guest running in the sandbox. One builder keeps
// the two looking at the same kernel layout.
//
// The tree is shaped like the kernel's: each device's directory under
// devices/pci0000:00 (or a bridge's path) with vendor, device, class,
// numa_node and uevent files; bus/pci/devices/<addr> a relative link to it;
// driver and iommu_group links; kernel/iommu_groups/<group>/devices/<addr> a
// link back to the device.
package sysfstest

import (
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
)

// The directories of a tree, relative to its /sys, that a PCI source reads.
const (
	PCIDevices  = "bus/pci/devices"
	IOMMUGroups = "kernel/iommu_groups"
)

// PCIDevice is one device of a fake tree. Vendor, Device and Class are as
// the kernel prints them ("0x8086", "0x020000"); Driver and Group may be
// empty (no driver bound, no IOMMU group).
type PCIDevice struct {
	Addr, Vendor, Device, Class, NUMA string
	Driver, Group                     string
	NoUevent                          bool   // no uevent file: a reader must use the vendor, device and class files and the driver link
	GroupOnlyInDir                    bool   // no iommu_group link, only kernel/iommu_groups/<group>/devices/<addr>
	Under                             string // the path under devices/, as the kernel nests bridges; default pci0000:00
}

// New builds a tree holding devs and returns its /sys directory.
func New(t testing.TB, devs ...PCIDevice) string {
	t.Helper()
	sys := t.TempDir()
	for _, p := range []string{PCIDevices, IOMMUGroups} {
		if err := os.MkdirAll(filepath.Join(sys, p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range devs {
		Add(t, sys, d)
	}
	return sys
}

// Add adds a device to the tree at sys: its directory first, its link in
// bus/pci/devices last, the order in which the kernel makes it appear to a
// reader of that directory.
func Add(t testing.TB, sys string, d PCIDevice) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	mkdir := func(p string) { must(os.MkdirAll(filepath.Join(sys, p), 0o755)) }
	write := func(p, s string) { must(os.WriteFile(filepath.Join(sys, p), []byte(s), 0o444)) }
	link := func(target, p string) { must(os.Symlink(target, filepath.Join(sys, p))) }
	if d.Under == "" {
		d.Under = "pci0000:00"
	}
	dir := path.Join("devices", d.Under, d.Addr)
	up := strings.Repeat("../", strings.Count(dir, "/")+1) // from dir to /sys
	mkdir(dir)
	write(dir+"/vendor", d.Vendor+"\n")
	write(dir+"/device", d.Device+"\n")
	write(dir+"/class", d.Class+"\n")
	write(dir+"/numa_node", d.NUMA+"\n")
	// As the kernel writes it: class without leading zeros, ids in upper case.
	uevent := "PCI_CLASS=" + strings.TrimLeft(strings.TrimPrefix(d.Class, "0x"), "0") +
		"\nPCI_ID=" + strings.ToUpper(strings.TrimPrefix(d.Vendor, "0x")+":"+strings.TrimPrefix(d.Device, "0x")) +
		"\nPCI_SLOT_NAME=" + d.Addr + "\n"
	if d.Driver != "" {
		mkdir("bus/pci/drivers/" + d.Driver)
		link(up+"bus/pci/drivers/"+d.Driver, dir+"/driver")
		uevent = "DRIVER=" + d.Driver + "\n" + uevent
	}
	if !d.NoUevent {
		write(dir+"/uevent", uevent)
	}
	if d.Group != "" {
		mkdir(IOMMUGroups + "/" + d.Group + "/devices")
		link("../../../../"+dir, IOMMUGroups+"/"+d.Group+"/devices/"+d.Addr)
		if !d.GroupOnlyInDir {
			link(up+IOMMUGroups+"/"+d.Group, dir+"/iommu_group")
		}
	}
	link("../../../"+dir, PCIDevices+"/"+d.Addr)
}
