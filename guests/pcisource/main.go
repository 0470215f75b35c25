// Command pcisource is a wasmlet device source that discovers PCI devices
// from sysfs, the way SR-IOV and GPU device plugins do, and offers the ones
// that match a vendor, device and class filter as one extended resource.
//
// Every directory under the sysfs mount (normally /sys/bus/pci/devices, whose
// entries are links into /sys/devices) is a device named by its PCI address,
// such as 0000:00:1f.6, which becomes the device id. The filters need the
// vendor, device and class, which, with the bound driver, the kernel writes
// in one file, the device's uevent (PCI_ID=, PCI_CLASS=, DRIVER=); the module
// reads the vendor, device and class files and the driver link only when
// uevent lacks them. For the devices that pass the filters it then reads
// numa_node (reported as the device's NUMA node when the kernel knows it; it
// writes -1 when it does not), the IOMMU group, and the PCIe root complex
// the device is under (the first pci<domain>:<bus> directory of the path its
// sysfs entry links to). Attributes: address, vendor, device, class (hex
// without 0x, as lspci -n prints them), numa_node, driver and iommu_group
// when known. The same as typed attributes, for claims' selectors (abi/ABI.md,
// "Structured devices"): address, vendor, device, class and driver as
// strings, numa as an int, and the PCIe root as Kubernetes' standard
// resource.kubernetes.io/pcieRoot (e.g. "pci0000:00"), which lets a claim
// align a NIC with a GPU of another driver on one root.
//
// The IOMMU group (like the driver) is the name of a symbolic link,
// iommu_group, which the module reads. Where links cannot be read (wasmlet
// hosts before they confined readlink to mounts did not offer it), it falls
// back to the directory named by iommu_groups, whose <group>/devices/ lists
// each group's members.
//
// Allocation follows the SR-IOV device plugin: the container gets
// PCIDEVICE_<RESOURCE> (the resource name in upper case, other characters as
// "_", e.g. PCIDEVICE_EXAMPLE_COM_PCI) listing the allocated addresses, an
// annotation <resource> with the same list, and, for devices bound to
// vfio-pci, the device nodes /dev/vfio/vfio and /dev/vfio/<group>. Each
// discovered device also carries these as its container edits (with its own
// variable PCI_DEVICE_<ADDRESS>, e.g. PCI_DEVICE_0000_00_1F_6), for CDI specs.
// A vfio-pci device whose IOMMU group cannot be found is reported unhealthy,
// since a container could not use it.
//
// The module keeps nothing between calls: allocate reads the requested
// devices again. sysfs sends no file change events, so it suggests a
// rediscovery every 30 seconds.
//
// Mount sysfs with a root, so that the links resolve:
//
//	mounts = [{host = "/sys/bus/pci/devices", guest = "/sys/bus/pci/devices", root = "/sys"}]
//
// Configuration keys:
//
//	resource      the extended resource (default "example.com/pci")
//	sysfs         guest path of the PCI devices directory (default
//	              "/sys/bus/pci/devices")
//	iommu_groups  guest path of the IOMMU groups directory, used when links
//	              cannot be read (default "/sys/kernel/iommu_groups")
//	vendor        comma-separated vendor ids in hex, e.g. "8086,0x15b3"
//	              (default: any vendor)
//	device        comma-separated device ids in hex (default: any device)
//	class         comma-separated class prefixes of 2, 4 or 6 hex digits,
//	              e.g. "0x02" (network) or "0x0300" (VGA) (default: any class)
package main

import (
	"os"
	"path"
	"strconv"
	"strings"

	"github.com/wasmlet/wasmlet/abi"
	"github.com/wasmlet/wasmlet/guests/sdk"
	"github.com/wasmlet/wasmlet/guests/sdk/source"
)

const vfioDriver = "vfio-pci"

func init() {
	source.Serve(source.Source{
		Resource:           sdk.ConfigOr("resource", "example.com/pci"),
		Name:               "pcisource",
		Version:            "1.0.0",
		Summary:            "PCI devices from sysfs, filtered by vendor, device and class",
		DiscoverIntervalMS: 30000,
		Discover: func() ([]abi.Device, error) {
			cfg, err := loadConfig()
			if err != nil {
				return nil, err
			}
			return discover(cfg)
		},
		Allocate: func(req *abi.AllocateRequest) (*abi.AllocateResponse, error) {
			cfg, err := loadConfig()
			if err != nil {
				return nil, err
			}
			return allocate(cfg, req)
		},
	})
}

func main() {}

type config struct {
	resource    string
	sysfs       string
	iommuGroups string
	vendors     []string // 4 hex digits, lower case
	devices     []string // 4 hex digits, lower case
	classes     []string // prefixes of 2, 4 or 6 hex digits, lower case
}

// loadConfig reads the configuration afresh: the host may send discover and
// allocate to different instances, so nothing is kept between calls.
func loadConfig() (config, error) {
	cfg := config{
		resource:    sdk.ConfigOr("resource", "example.com/pci"),
		sysfs:       sdk.ConfigOr("sysfs", "/sys/bus/pci/devices"),
		iommuGroups: sdk.ConfigOr("iommu_groups", "/sys/kernel/iommu_groups"),
	}
	var err error
	if cfg.vendors, err = hexList("vendor", sdk.ConfigOr("vendor", ""), 4, false); err != nil {
		return cfg, err
	}
	if cfg.devices, err = hexList("device", sdk.ConfigOr("device", ""), 4, false); err != nil {
		return cfg, err
	}
	if cfg.classes, err = hexList("class", sdk.ConfigOr("class", ""), 6, true); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// hexList parses a comma-separated list of hex numbers with an optional 0x.
// Ids are padded to width digits; prefixes keep their length, which must be
// a whole number of bytes.
func hexList(key, s string, width int, prefix bool) ([]string, error) {
	var out []string
	for _, f := range strings.Split(s, ",") {
		f = strings.ToLower(strings.TrimSpace(f))
		if f == "" {
			continue
		}
		h := strings.TrimPrefix(f, "0x")
		ok := h != "" && len(h) <= width && (!prefix || len(h)%2 == 0)
		for i := 0; i < len(h); i++ {
			ok = ok && (h[i] >= '0' && h[i] <= '9' || h[i] >= 'a' && h[i] <= 'f')
		}
		if !ok {
			want := "a hex id of at most " + strconv.Itoa(width) + " digits, like 0x8086"
			if prefix {
				want = "a hex class prefix of 2, 4 or 6 digits, like 0x02 (network) or 0x0300 (VGA)"
			}
			return nil, sdk.Fail(abi.CodeFailedPrecondition, "configuration "+key+": "+strconv.Quote(f)+" is not "+want)
		}
		if !prefix {
			h = strings.Repeat("0", width-len(h)) + h
		}
		out = append(out, h)
	}
	return out, nil
}

// pciDevice is what sysfs says about one device.
type pciDevice struct {
	addr, vendor, device, class string // hex without 0x
	numa                        int64  // -1: unknown
	driver, iommuGroup          string // "" when unbound / unknown
	pcieRoot                    string // "pci0000:00"; "" when unknown
}

func (c *config) matches(d *pciDevice) bool {
	return anyEqual(c.vendors, d.vendor) && anyEqual(c.devices, d.device) && anyPrefix(c.classes, d.class)
}

func anyEqual(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return len(list) == 0
}

func anyPrefix(list []string, s string) bool {
	for _, v := range list {
		if strings.HasPrefix(s, v) {
			return true
		}
	}
	return len(list) == 0
}

// groups maps PCI addresses to IOMMU groups, read from the iommu_groups
// directory the first time a link cannot be read, for one call only.
type groups struct {
	dir    string
	byAddr map[string]string
}

func (g *groups) lookup(addr string) string {
	if g.byAddr == nil {
		g.byAddr = map[string]string{}
		entries, _ := os.ReadDir(g.dir) // not mounted: groups stay unknown
		for _, e := range entries {
			members, _ := os.ReadDir(g.dir + "/" + e.Name() + "/devices")
			for _, m := range members {
				g.byAddr[m.Name()] = e.Name()
			}
		}
	}
	return g.byAddr[addr]
}

// readIdentity reads what the filters need: vendor, device, class and
// driver. One file answers them all on a real kernel: the device's uevent
// (DRIVER=, PCI_CLASS=, PCI_ID=vendor:device). Without it, or without its PCI
// lines, it reads the vendor, device and class files and the driver link.
// An error means there is no PCI device at addr, or it vanished meanwhile.
func readIdentity(cfg *config, addr string) (pciDevice, error) {
	dir := cfg.sysfs + "/" + addr
	d := pciDevice{addr: addr, numa: -1}
	b, uerr := os.ReadFile(dir + "/uevent")
	if uerr == nil {
		for _, line := range strings.Split(string(b), "\n") {
			k, v, _ := strings.Cut(strings.TrimSpace(line), "=")
			switch k {
			case "DRIVER":
				d.driver = v
			case "PCI_CLASS":
				d.class, _ = hexDigits(v, 6)
			case "PCI_ID":
				ven, dev, _ := strings.Cut(v, ":")
				d.vendor, _ = hexDigits(ven, 4)
				d.device, _ = hexDigits(dev, 4)
			}
		}
	} else if target, err := os.Readlink(dir + "/driver"); err == nil {
		d.driver = path.Base(target)
	}
	var err error
	if d.vendor == "" || d.device == "" || d.class == "" {
		if d.vendor, err = readHex(dir+"/vendor", 4); err != nil {
			return d, err
		}
		if d.device, err = readHex(dir+"/device", 4); err != nil {
			return d, err
		}
		if d.class, err = readHex(dir+"/class", 6); err != nil {
			return d, err
		}
	}
	return d, nil
}

// readDetails reads the rest, for a device that passed the filters: its NUMA
// node, IOMMU group and PCIe root.
func readDetails(cfg *config, d *pciDevice, g *groups) {
	dir := cfg.sysfs + "/" + d.addr
	if target, err := os.Readlink(dir); err == nil {
		d.pcieRoot = pcieRoot(target)
	}
	if b, err := os.ReadFile(dir + "/numa_node"); err == nil {
		if n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil && n >= 0 {
			d.numa = n
		}
	}
	if target, err := os.Readlink(dir + "/iommu_group"); err == nil {
		d.iommuGroup = path.Base(target)
	} else {
		d.iommuGroup = g.lookup(d.addr)
	}
}

// pcieRoot finds the root complex in the target of a device's link under
// /sys/bus/pci/devices, such as ../../../devices/pci0000:3a/0000:3a:02.0/0000:3b:00.0:
// the element after "devices" that names one, as Kubernetes'
// deviceattribute package does.
func pcieRoot(target string) string {
	parts := strings.Split(target, "/")
	for i := 0; i+1 < len(parts); i++ {
		if parts[i] == "devices" {
			dom, bus, ok := strings.Cut(strings.TrimPrefix(parts[i+1], "pci"), ":")
			if ok && strings.HasPrefix(parts[i+1], "pci") && isHex(dom, 4, 8) && isHex(bus, 2, 2) {
				return parts[i+1]
			}
			return ""
		}
	}
	return ""
}

// readHex reads a sysfs attribute such as "0x8086\n" as width hex digits.
func readHex(file string, width int) (string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", err
	}
	s, ok := hexDigits(strings.TrimPrefix(strings.TrimSpace(string(b)), "0x"), width)
	if !ok {
		return "", &os.PathError{Op: "parse", Path: file, Err: os.ErrInvalid}
	}
	return s, nil
}

// hexDigits returns s, a hex number of at most width digits, in lower case
// and padded with zeros to width digits.
func hexDigits(s string, width int) (string, bool) {
	if !isHex(s, 1, width) {
		return "", false
	}
	return strings.Repeat("0", width-len(s)) + strings.ToLower(s), true
}

// pciAddress reports whether s looks like a PCI address,
// <domain>:<bus>:<device>.<function>, e.g. 0000:00:1f.6. It keeps a device id
// from naming anything but a device directory.
func pciAddress(s string) bool {
	dom, rest, ok1 := strings.Cut(s, ":")
	bus, rest, ok2 := strings.Cut(rest, ":")
	dev, fn, ok3 := strings.Cut(rest, ".")
	return ok1 && ok2 && ok3 && isHex(dom, 4, 8) && isHex(bus, 2, 2) && isHex(dev, 2, 2) &&
		len(fn) == 1 && fn[0] >= '0' && fn[0] <= '7'
}

func isHex(s string, min, max int) bool {
	if len(s) < min || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

func discover(cfg config) ([]abi.Device, error) {
	entries, err := os.ReadDir(cfg.sysfs)
	if err != nil {
		return nil, sdk.Fail(abi.CodeUnavailable, "cannot list PCI devices: "+err.Error()+
			" (grant the directory in plugins.toml: mounts = [{host = \"/sys/bus/pci/devices\", guest = \""+cfg.sysfs+"\", root = \"/sys\"}])")
	}
	g := &groups{dir: cfg.iommuGroups}
	var devs []abi.Device
	var unreadable, noGroup []string
	for _, e := range entries {
		if !pciAddress(e.Name()) {
			continue
		}
		d, err := readIdentity(&cfg, e.Name())
		if err != nil {
			unreadable = append(unreadable, e.Name())
			continue
		}
		if !cfg.matches(&d) {
			continue
		}
		readDetails(&cfg, &d, g)
		dev := d.abiDevice(cfg.resource)
		if dev.Health == abi.Unhealthy {
			noGroup = append(noGroup, d.addr)
		}
		devs = append(devs, dev)
	}
	if len(unreadable) > 0 {
		sdk.Warn("skipped entries of " + cfg.sysfs + " without readable vendor, device and class: " + strings.Join(unreadable, ", "))
	}
	if len(noGroup) > 0 {
		sdk.Warn("devices bound to vfio-pci with no known IOMMU group, reported unhealthy: " + strings.Join(noGroup, ", ") +
			" (mount /sys/kernel/iommu_groups at " + cfg.iommuGroups + ")")
	}
	return devs, nil
}

func (d *pciDevice) abiDevice(resource string) abi.Device {
	attrs := map[string]string{"address": d.addr, "vendor": d.vendor, "device": d.device, "class": d.class}
	typed := map[string]abi.Attribute{"address": abi.StringAttribute(d.addr), "vendor": abi.StringAttribute(d.vendor),
		"device": abi.StringAttribute(d.device), "class": abi.StringAttribute(d.class)}
	dev := abi.Device{ID: d.addr, Attributes: attrs, TypedAttributes: typed,
		Edits: &abi.ContainerEdits{Envs: map[string]string{"PCI_DEVICE_" + sdk.EnvName(d.addr): d.addr}}}
	if d.numa >= 0 {
		dev.NUMANodes = []int64{d.numa}
		attrs["numa_node"] = strconv.FormatInt(d.numa, 10)
		typed["numa"] = abi.IntAttribute(d.numa)
	}
	if d.driver != "" {
		attrs["driver"] = d.driver
		typed["driver"] = abi.StringAttribute(d.driver)
	}
	if d.pcieRoot != "" {
		typed["resource.kubernetes.io/pcieRoot"] = abi.StringAttribute(d.pcieRoot)
	}
	if d.iommuGroup != "" {
		attrs["iommu_group"] = d.iommuGroup
	}
	if d.driver == vfioDriver {
		if d.iommuGroup == "" {
			dev.Health = abi.Unhealthy
		} else {
			dev.Edits.DeviceNodes = vfioNodes(nil, d.iommuGroup)
		}
	}
	return dev
}

// vfioNodes adds the VFIO container node and the group's node to nodes,
// unless they are there already.
func vfioNodes(nodes []abi.DeviceNode, group string) []abi.DeviceNode {
	for _, p := range []string{"/dev/vfio/vfio", "/dev/vfio/" + group} {
		found := false
		for _, n := range nodes {
			found = found || n.HostPath == p
		}
		if !found {
			nodes = append(nodes, abi.DeviceNode{ContainerPath: p, HostPath: p, Permissions: "rw"})
		}
	}
	return nodes
}

func allocate(cfg config, req *abi.AllocateRequest) (*abi.AllocateResponse, error) {
	if len(req.DeviceIDs) == 0 {
		return nil, sdk.Refuse("no devices requested")
	}
	g := &groups{dir: cfg.iommuGroups}
	resp := &abi.AllocateResponse{}
	var addrs []string
	for _, id := range req.DeviceIDs {
		if contains(addrs, id) {
			continue
		}
		if !pciAddress(id) {
			return nil, sdk.Refuse("device " + strconv.Quote(id) + " is not a PCI address like 0000:00:1f.6")
		}
		d, err := readIdentity(&cfg, id)
		if err != nil {
			return nil, sdk.Fail(abi.CodeNotFound, "PCI device "+id+" is not present on this node: "+err.Error())
		}
		if !cfg.matches(&d) {
			return nil, sdk.Refuse("PCI device " + id + " (vendor " + d.vendor + ", device " + d.device + ", class " + d.class +
				") is not part of " + cfg.resource + ": it does not match the configured filters")
		}
		if d.driver == vfioDriver {
			readDetails(&cfg, &d, g)
		}
		if d.driver == vfioDriver {
			if d.iommuGroup == "" {
				return nil, sdk.Fail(abi.CodeFailedPrecondition, "PCI device "+id+" is bound to vfio-pci but its IOMMU group is unknown")
			}
			resp.DeviceNodes = vfioNodes(resp.DeviceNodes, d.iommuGroup)
		}
		addrs = append(addrs, id)
	}
	list := strings.Join(addrs, ",")
	resp.Envs = map[string]string{"PCIDEVICE_" + sdk.EnvName(cfg.resource): list}
	resp.Annotations = map[string]string{cfg.resource: list}
	return resp, nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
