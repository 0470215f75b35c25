//go:build !wasip1

package main

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/wasmlet/wasmlet/abi"
	"github.com/wasmlet/wasmlet/guests/internal/guesttest"
)

// fakeEntry is a directory entry of a fake /dev: tests cannot mknod.
type fakeEntry struct {
	name string
	mode fs.FileMode
}

func (e fakeEntry) Name() string      { return e.name }
func (e fakeEntry) IsDir() bool       { return e.mode.IsDir() }
func (e fakeEntry) Type() fs.FileMode { return e.mode.Type() }
func (e fakeEntry) Info() (fs.FileInfo, error) {
	return nil, errors.New("a device source must not stat")
}

const (
	char  = fs.ModeDevice | fs.ModeCharDevice
	block = fs.ModeDevice
	dir   = fs.ModeDir
	link  = fs.ModeSymlink
	file  = 0
)

// fakeDev is a /dev tree, seen by the module at /guest/dev.
var fakeDev = map[string][]fakeEntry{
	"/guest/dev": {{"null", char}, {"zero", char}, {"tty0", char}, {"tty1", char}, {"tty12", char}, {"ttyS0", char},
		{"tty", char}, {"sda", block}, {"sda1", block}, {"stdin", link}, {"fd", link}, {"shm", dir}, {"snd", dir},
		{"net", dir}, {"dri", dir}, {"README", file}, {".hidden", char}, {"bus", dir}, {"we:ird+name", char},
		{"dup.x", char}, {"dup", dir}, {strings.Repeat("l", 64), char}, {"bad\xffname", char}},
	"/guest/dev/snd":         {{"controlC0", char}, {"pcmC0D0p", char}, {"timer", char}, {"by-path", dir}},
	"/guest/dev/snd/by-path": {{"pci-0000:00:1f.3", link}},
	"/guest/dev/net":         {{"tun", char}},
	"/guest/dev/dri":         {{"card0", char}, {"renderD128", char}, {"by-path", dir}},
	"/guest/dev/bus":         {{"usb", dir}},
	"/guest/dev/bus/usb":     {{"001", dir}, {"002", dir}},
	"/guest/dev/bus/usb/001": {{"001", char}, {"002", char}},
	"/guest/dev/bus/usb/002": {{"001", char}},
	"/guest/dev/dup":         {{"x", char}},
	"/guest/dev/shm":         {{"null", char}},
}

func fakeReadDir(d string) ([]fs.DirEntry, error) {
	es, ok := fakeDev[d]
	if !ok {
		return nil, &fs.PathError{Op: "open", Path: d, Err: fs.ErrNotExist}
	}
	out := make([]fs.DirEntry, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out, nil
}

func configure(t *testing.T, c map[string]string) config {
	t.Helper()
	return guesttest.Configure(t, loadConfig, c)
}

func ids(devs []abi.Device) string {
	var out []string
	for _, d := range devs {
		out = append(out, d.ID)
	}
	return strings.Join(out, " ")
}

func TestDiscover(t *testing.T) {
	cases := []struct {
		globs, want string
	}{
		{"/dev/null", "null"},
		{"/dev/null,/dev/zero,/dev/null", "null zero"},
		{"/dev/tty[0-9]*", "tty0 tty1 tty12"},
		{"/dev/tty*", "tty tty0 tty1 tty12 ttyS0"},
		{"/dev/sd*", "sda sda1"},                       // block devices
		{"/dev/std*,/dev/fd,/dev/README,/dev/shm", ""}, // links, a file, a directory
		{"/dev/*", "dup.x null sda sda1 tty tty0 tty1 tty12 ttyS0 we_ird_name zero"},
		{"/dev/.hidden", ".hidden"},
		{"/dev/bad*", ""}, // a name that is not UTF-8 cannot be reported
		{"/dev/snd/*", "snd.controlC0 snd.pcmC0D0p snd.timer"},
		{"/dev/snd/*/*", ""}, // by-path holds links only
		{"/dev/net/tun,/dev/dri/*", "dri.card0 dri.renderD128 net.tun"},
		{"/dev/bus/usb/*/*", "bus.usb.001.001 bus.usb.001.002 bus.usb.002.001"},
		{"/dev/nonexistent/*,/dev/nothing", ""},
	}
	for _, c := range cases {
		cfg := configure(t, map[string]string{"dev": "/guest/dev", "globs": c.globs})
		devs, err := discover(cfg, fakeReadDir)
		if err != nil {
			t.Fatal(err)
		}
		if got := ids(devs); got != c.want {
			t.Errorf("%s: got %q, want %q", c.globs, got, c.want)
		}
	}
}

func TestCollisionsAndLongNamesAreLeftOut(t *testing.T) {
	cfg := configure(t, map[string]string{"dev": "/guest/dev", "globs": "/dev/dup.x,/dev/dup/x,/dev/l*"})
	devs, err := discover(cfg, fakeReadDir)
	if err != nil {
		t.Fatal(err)
	}
	if ids(devs) != "dup.x" || devs[0].Attributes["path"] != "/dev/dup.x" {
		t.Fatalf("got %q", ids(devs))
	}
}

func TestDevice(t *testing.T) {
	cfg := configure(t, map[string]string{"dev": "/guest/dev", "globs": "/dev/sda,/dev/dri/card0", "permissions": "rwm"})
	devs, err := discover(cfg, fakeReadDir)
	if err != nil {
		t.Fatal(err)
	}
	want := []abi.Device{
		{ID: "dri.card0", Attributes: map[string]string{"path": "/dev/dri/card0", "type": "char"},
			Edits: &abi.ContainerEdits{DeviceNodes: []abi.DeviceNode{{ContainerPath: "/dev/dri/card0", HostPath: "/dev/dri/card0", Permissions: "rwm"}}}},
		{ID: "sda", Attributes: map[string]string{"path": "/dev/sda", "type": "block"},
			Edits: &abi.ContainerEdits{DeviceNodes: []abi.DeviceNode{{ContainerPath: "/dev/sda", HostPath: "/dev/sda", Permissions: "rwm"}}}},
	}
	if !reflect.DeepEqual(devs, want) {
		t.Fatalf("got  %+v\nwant %+v", devs, want)
	}
}

func TestShares(t *testing.T) {
	cfg := configure(t, map[string]string{"dev": "/guest/dev", "globs": "/dev/null,/dev/net/tun", "shares": "3"})
	devs, err := discover(cfg, fakeReadDir)
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(devs); got != "net.tun-0 net.tun-1 net.tun-2 null-0 null-1 null-2" {
		t.Fatalf("got %q", got)
	}
	if devs[4].Attributes["share"] != "1" || devs[4].Attributes["path"] != "/dev/null" {
		t.Fatalf("%+v", devs[4])
	}
	// Two shares of one node in one container: one device node.
	resp, err := allocate(cfg, &abi.AllocateRequest{DeviceIDs: []string{"null-2", "net.tun-0", "null-0"}}, fakeReadDir)
	if err != nil {
		t.Fatal(err)
	}
	want := &abi.AllocateResponse{
		Envs: map[string]string{"DEVICES_EXAMPLE_COM_DEV": "/dev/null,/dev/net/tun"},
		DeviceNodes: []abi.DeviceNode{{ContainerPath: "/dev/null", HostPath: "/dev/null", Permissions: "rw"},
			{ContainerPath: "/dev/net/tun", HostPath: "/dev/net/tun", Permissions: "rw"}},
	}
	if !reflect.DeepEqual(resp, want) {
		t.Fatalf("got  %+v\nwant %+v", resp, want)
	}
}

func TestAllocateRefusals(t *testing.T) {
	cfg := configure(t, map[string]string{"dev": "/guest/dev", "globs": "/dev/null", "resource": "acme.io/null"})
	for _, c := range []struct {
		ids  []string
		code abi.Code
		want string
	}{
		{nil, abi.CodeInvalidArgument, "no devices requested"},
		{[]string{"null", "zero"}, abi.CodeNotFound, `device "zero" is not one of the 1 devices of acme.io/null on this node (globs /dev/null)`},
		{[]string{"null-0"}, abi.CodeNotFound, `"null-0"`},
	} {
		_, err := allocate(cfg, &abi.AllocateRequest{DeviceIDs: c.ids}, fakeReadDir)
		if !guesttest.Refused(err, c.code, c.want) {
			t.Errorf("%v: got %v", c.ids, err)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	for _, c := range []struct {
		config map[string]string
		want   string
	}{
		{map[string]string{}, "globs is empty"},
		{map[string]string{"globs": " , "}, "globs is empty"},
		{map[string]string{"globs": "null"}, `"null" is not an absolute pattern under /dev`},
		{map[string]string{"globs": "/etc/passwd"}, "not an absolute pattern under /dev"},
		{map[string]string{"globs": "/dev/"}, "not an absolute pattern under /dev"},
		{map[string]string{"globs": "/dev/../etc/shadow"}, `invalid element ".."`},
		{map[string]string{"globs": "/dev//null"}, `invalid element ""`},
		{map[string]string{"globs": "/dev/tty[0-"}, `invalid element "tty[0-"`},
		{map[string]string{"globs": "/dev/null", "permissions": "rwx"}, "permissions"},
		{map[string]string{"globs": "/dev/null", "permissions": "rr"}, "permissions"},
		{map[string]string{"globs": "/dev/null", "permissions": ""}, "permissions"},
		{map[string]string{"globs": "/dev/null", "shares": "0"}, "shares"},
		{map[string]string{"globs": "/dev/null", "shares": "many"}, "shares"},
		{map[string]string{"globs": "/dev/null", "shares": "1001"}, "shares"},
		{map[string]string{"globs": "/dev/null", "dev": "dev"}, "not an absolute path"},
	} {
		if err := guesttest.ConfigError(loadConfig, c.config); !guesttest.Refused(err, abi.CodeFailedPrecondition, c.want) {
			t.Errorf("%v: got %v, want %q", c.config, err, c.want)
		}
	}
}

func TestMissingDev(t *testing.T) {
	cfg := configure(t, map[string]string{"dev": "/nonexistent", "globs": "/dev/null"})
	_, err := discover(cfg, os.ReadDir)
	if !guesttest.Refused(err, abi.CodeUnavailable, "mounts =") {
		t.Fatalf("got %v", err)
	}
}

// TestRealFiles lists real directories: regular files, directories and links
// in a temporary directory are not devices; this machine's /dev has the
// usual character devices.
func TestRealFiles(t *testing.T) {
	tmp := t.TempDir()
	os.WriteFile(filepath.Join(tmp, "null"), nil, 0o644)
	os.Mkdir(filepath.Join(tmp, "tty0"), 0o755)
	os.Symlink("/dev/zero", filepath.Join(tmp, "zero"))
	cfg := configure(t, map[string]string{"dev": tmp, "globs": "/dev/*"})
	if devs, err := discover(cfg, os.ReadDir); err != nil || len(devs) != 0 {
		t.Fatalf("got %v, %v", devs, err)
	}

	if _, err := os.Stat("/dev/null"); err != nil {
		t.Skip("no /dev/null here")
	}
	cfg = configure(t, map[string]string{"globs": "/dev/null,/dev/zero,/dev/random,/dev/urandom,/dev/stdin"})
	devs, err := discover(cfg, os.ReadDir)
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(devs); got != "null random urandom zero" {
		t.Fatalf("got %q", got)
	}
}
