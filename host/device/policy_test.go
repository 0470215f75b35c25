package device_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/wasmlet/wasmlet/host/device"
)

// tree makes a directory tree for the policy: a module mount (mnt), a
// mount with devices = true (devs), a sysfs-like mount whose links lead
// within its root (sys/bus into sys/devices), and a directory outside every
// mount, reached from inside by a symbolic link.
func tree(t *testing.T) (dir string, p device.Policy) {
	t.Helper()
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"mnt/lib", "devs", "outside", "sys/bus", "sys/devices/dev0", "driver/lib"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"mnt/file", "devs/gpu0", "outside/secret"} {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for link, target := range map[string]string{
		"mnt/escape":   filepath.Join(dir, "outside"),
		"mnt/loop":     "loop",
		"mnt/inner":    "lib",
		"devs/mem":     "/dev/mem",
		"sys/bus/dev0": "../devices/dev0",
	} {
		if err := os.Symlink(target, filepath.Join(dir, link)); err != nil {
			t.Fatal(err)
		}
	}
	return dir, device.Policy{Resource: "example.com/gpu", Roots: []device.Root{
		{Path: filepath.Join(dir, "mnt")},
		{Path: filepath.Join(dir, "devs"), Devices: true},
		{Path: filepath.Join(dir, "sys/bus"), Within: filepath.Join(dir, "sys")},
	}}
}

func TestPolicy(t *testing.T) {
	dir, base := tree(t)
	at := func(p string) string { return filepath.Join(dir, p) }
	mount := func(host string, ro bool) device.Edits {
		return device.Edits{Mounts: []device.Mount{{ContainerPath: "/in", HostPath: host, ReadOnly: ro}}}
	}
	node := func(host, perms string) device.Edits {
		return device.Edits{DeviceNodes: []device.Node{{ContainerPath: "/dev/x", HostPath: host, Permissions: perms}}}
	}
	env := func(name string) device.Edits { return device.Edits{Env: map[string]string{name: "1"}} }
	for _, c := range []struct {
		name  string
		edits device.Edits
		grant device.Grant
		why   string // "" allowed; else a part of the reason
	}{
		{"mount under a mount, read-only", mount(at("mnt/lib"), true), device.Grant{}, ""},
		{"the mount itself", mount(at("mnt"), true), device.Grant{}, ""},
		{"mount read-write", mount(at("mnt/lib"), false), device.Grant{}, "is not in edits.writable"},
		{"mount read-write, granted", mount(at("mnt/lib"), false), device.Grant{Writable: []string{at("mnt")}}, ""},
		{"the host's root", mount("/", true), device.Grant{}, "/ is under none of the module's mounts and not in edits.host_paths"},
		{"a sibling with the mount's name as prefix", mount(at("mnt2"), true), device.Grant{}, "under none of the module's mounts"},
		{"not clean", mount(at("mnt")+"/../outside", true), device.Grant{}, "is not absolute and clean"},
		{"relative", mount("mnt/lib", true), device.Grant{}, "is not absolute and clean"},
		{"relative container path", device.Edits{Mounts: []device.Mount{{ContainerPath: "in", HostPath: at("mnt"), ReadOnly: true}}}, device.Grant{}, `the container path "in" is not absolute`},
		{"a link out of the mount", mount(at("mnt/escape/secret"), true), device.Grant{}, "under none of the module's mounts"},
		{"a link within the mount", mount(at("mnt/inner"), true), device.Grant{}, ""},
		{"a link that loops", mount(at("mnt/loop"), true), device.Grant{}, "under none of the module's mounts"},
		{"a path that does not exist yet", mount(at("mnt/later/x"), true), device.Grant{}, ""},
		{"a link within the mount's root", mount(at("sys/bus/dev0"), true), device.Grant{}, ""},
		{"granted host path", mount(at("driver/lib"), true), device.Grant{HostPaths: []string{at("driver")}}, ""},
		{"granted host path, reached by a link from a mount", mount(at("mnt/escape"), true), device.Grant{HostPaths: []string{at("outside")}}, "under none of the module's mounts"},
		{"the docker socket", mount("/var/run/docker.sock", true), device.Grant{}, "not in edits.host_paths"},

		{"device node under devices = true, read-only", node(at("devs/gpu0"), "r"), device.Grant{}, ""},
		{"device node read-write", node(at("devs/gpu0"), "rw"), device.Grant{}, "is not in edits.writable"},
		{"device node, no permissions: rwm", node(at("devs/gpu0"), ""), device.Grant{}, "is not in edits.writable"},
		{"device node read-write, granted", node(at("devs/gpu0"), "rwm"), device.Grant{Writable: []string{at("devs/gpu0")}}, ""},
		{"device node under a mount without devices", node(at("mnt/file"), "r"), device.Grant{}, "under no mount of the module with devices = true"},
		{"device node through a link out", node(at("devs/mem"), "r"), device.Grant{}, "under no mount of the module with devices = true"},
		{"/dev/mem", node("/dev/mem", "rwm"), device.Grant{}, "matches no pattern of edits.device_nodes"},
		{"/dev/mem granted", node("/dev/mem", "rwm"), device.Grant{DeviceNodes: []string{"/dev/mem"}, Writable: []string{"/dev/mem"}}, ""},
		{"/dev/sda with a /dev/nvidia* grant", node("/dev/sda", "r"), device.Grant{DeviceNodes: []string{"/dev/nvidia*"}}, "matches no pattern"},
		{"bad permissions", node(at("devs/gpu0"), "rx"), device.Grant{}, "permissions must be made of r, w and m"},

		{"a device variable", env("GPU_VISIBLE_DEVICES"), device.Grant{}, ""},
		{"LD_PRELOAD", env("LD_PRELOAD"), device.Grant{}, "names starting with LD_ are reserved"},
		{"LD_LIBRARY_PATH granted", env("LD_LIBRARY_PATH"), device.Grant{Env: []string{"LD_LIBRARY_PATH"}}, ""},
		{"PATH", env("PATH"), device.Grant{}, "names ending in PATH are reserved"},
		{"PYTHONPATH", env("PYTHONPATH"), device.Grant{}, "reserved"},
		{"HTTPS_PROXY", env("HTTPS_PROXY"), device.Grant{}, "names ending in _PROXY are reserved"},
		{"lower case", env("http_proxy"), device.Grant{}, "upper-case letters"},
		{"BASH_ENV", env("BASH_ENV"), device.Grant{}, "reserved"},
		{"HOME", env("HOME"), device.Grant{}, "the name is reserved"},
		{"a pattern grant", env("NVIDIA_DRIVER_CAPABILITIES"), device.Grant{Env: []string{"NVIDIA_*"}}, ""},

		{"own annotation", device.Edits{Annotations: map[string]string{"example.com/gpu-uuid": "x"}}, device.Grant{}, ""},
		{"a runtime's annotation", device.Edits{Annotations: map[string]string{"io.kubernetes.cri-o.Devices": "/dev/sda"}}, device.Grant{}, `not the resource's domain "example.com"`},
		{"CDI by annotation", device.Edits{Annotations: map[string]string{"cdi.k8s.io/x": "nvidia.com/gpu=all"}}, device.Grant{}, "edits.annotations"},
		{"granted annotation", device.Edits{Annotations: map[string]string{"vendor.com/a": "x"}}, device.Grant{Annotations: []string{"vendor.com/*"}}, ""},

		{"own CDI device", device.Edits{CDIDevices: []string{"example.com/gpu=0"}}, device.Grant{}, ""},
		{"another kind's CDI device", device.Edits{CDIDevices: []string{"nvidia.com/gpu=all"}}, device.Grant{}, "edits.cdi_devices"},
		{"a look-alike kind", device.Edits{CDIDevices: []string{"example.com/gpux=0"}}, device.Grant{}, "edits.cdi_devices"},
		{"granted CDI device", device.Edits{CDIDevices: []string{"nvidia.com/gpu=0"}}, device.Grant{CDIDevices: []string{"nvidia.com/gpu=*"}}, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := base
			p.Grant = c.grant
			err := p.Check(c.edits)
			if c.why == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var r *device.Refused
			if !errors.As(err, &r) || len(r.Edits) != 1 || !strings.Contains(err.Error(), c.why) {
				t.Fatalf("got %v, want a refusal saying %q", err, c.why)
			}
		})
	}
}

// The edits of the hostile module, with nothing granted: every one
// is refused, each named with what it lacks.
func TestPolicyRefusesTheHostileEdits(t *testing.T) {
	_, p := tree(t)
	err := p.Check(device.Edits{
		Env: map[string]string{"LD_PRELOAD": "/tmp/x.so"},
		Mounts: []device.Mount{{ContainerPath: "/host", HostPath: "/"},
			{ContainerPath: "/var/run/docker.sock", HostPath: "/var/run/docker.sock"}},
		DeviceNodes: []device.Node{{ContainerPath: "/dev/sda", HostPath: "/dev/sda", Permissions: "rwm"},
			{ContainerPath: "/dev/mem", HostPath: "/dev/mem", Permissions: "rwm"}},
	})
	var r *device.Refused
	if !errors.As(err, &r) {
		t.Fatalf("got %v", err)
	}
	var kinds []string
	for _, e := range r.Edits {
		kinds = append(kinds, e.Kind)
	}
	if want := []string{"mount", "mount", "device_node", "device_node", "env"}; !slices.Equal(kinds, want) {
		t.Fatalf("kinds %v, want %v", kinds, want)
	}
	for _, part := range []string{
		"mount of host / at /host (read-write): / is under none of the module's mounts and not in edits.host_paths",
		"device node /dev/mem (host /dev/mem, permissions \"rwm\"): /dev/mem is under no mount of the module with devices = true",
		"environment variable LD_PRELOAD: names starting with LD_ are reserved",
	} {
		if !strings.Contains(err.Error(), part) {
			t.Errorf("%v\ndoes not say %q", err, part)
		}
	}
}

func TestValidPattern(t *testing.T) {
	for p, ok := range map[string]bool{"/dev/nvidia*": true, "NVIDIA_*": true, "[": false, "a[": false, "": false, `\`: false} {
		if err := device.ValidPattern(p); (err == nil) != ok {
			t.Errorf("%q: %v", p, err)
		}
	}
}
