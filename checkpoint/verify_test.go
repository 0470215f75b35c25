package checkpoint

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestVerify(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ck")
	st := sampleState(30, 3, 8)
	if err := Write(path, st); err != nil {
		t.Fatal(err)
	}
	sum, err := Verify(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(path)
	want := Summary{
		Path: path, Size: fi.Size(), Version: 3, Checksum: sum.Checksum,
		Generation: 31, Written: time.Unix(0, when).UTC(),
		Allocations: 30, Resources: 3, Devices: 24, Plugins: 3,
	}
	if sum != want {
		t.Fatalf("summary\n got %+v\nwant %+v", sum, want)
	}
	data, _ := os.ReadFile(path)
	if sum.Checksum != crcCastagnoli(data[:len(data)-4]) {
		t.Fatalf("checksum %#x is not the file's", sum.Checksum)
	}
	line := sum.String()
	for _, part := range []string{path + ": format version 3, ", " bytes, CRC-32C 0x", "generation 31, written 2026-11-26T06:50:28.123456789Z; 30 allocations, 3 resources with 24 devices, 3 plugins"} {
		if !strings.Contains(line, part) {
			t.Errorf("%q does not contain %q", line, part)
		}
	}
}

func TestVerifyCorrupt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ck")
	data := mustEncode(t, sampleState(3, 1, 1))
	if err := os.WriteFile(path, data[:len(data)-7], 0o600); err != nil {
		t.Fatal(err)
	}
	sum, err := Verify(path)
	var ce *CorruptError
	if !errors.As(err, &ce) || !strings.Contains(ce.Reason, "truncated") {
		t.Fatalf("got %v, want a CorruptError saying it is truncated", err)
	}
	if sum.Path != path || sum.Size != int64(len(data)-7) || sum.Version != 0 {
		t.Fatalf("summary %+v", sum)
	}
	if _, err := Verify(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("got %v, want ErrNotExist", err)
	}
}

func TestVerifyInconsistent(t *testing.T) {
	alloc := func(workload, uid string, ids ...string) *Allocation {
		return &Allocation{Workload: workload, PodUid: uid, Resource: "example.com/dev", DeviceIds: ids}
	}
	for _, tc := range []struct {
		name    string
		st      *State
		problem string // "" for a consistent state
	}{
		{"ok", sampleState(20, 2, 4), ""},
		{"same pod shares a device", &State{Allocations: []*Allocation{
			alloc("ns/p/init", "", "d0"), alloc("ns/p/main", "", "d0")}}, ""},
		{"same pod by uid", &State{Allocations: []*Allocation{
			alloc("ns/p/init", "u1", "d0"), alloc("ns/p/main", "u1", "d0")}}, ""},
		{"two pods share a device", &State{Allocations: []*Allocation{
			alloc("ns/a/c", "", "d0", "d1"), alloc("ns/b/c", "", "d1")}},
			"device d1 of resource example.com/dev is allocated to both ns/a/c and ns/b/c"},
		{"two pod uids share a device", &State{Allocations: []*Allocation{
			alloc("ns/p/c", "u1", "d0"), alloc("ns/p/d", "u2", "d0")}},
			"device d0 of resource example.com/dev is allocated to both ns/p/c and ns/p/d"},
		{"workload holds a resource twice", &State{Allocations: []*Allocation{
			alloc("ns/a/c", "", "d0"), alloc("ns/a/c", "", "d1")}},
			"workload ns/a/c holds resource example.com/dev twice (allocations 0 and 1)"},
		{"no workload", &State{Allocations: []*Allocation{alloc("", "", "d0")}},
			`allocation 0 has no workload or no resource (workload "", resource "example.com/dev")`},
		{"resource twice", &State{Resources: []*Resource{{Name: "r"}, {Name: "r"}}},
			`resource "r" is listed twice (the second time as resource 1)`},
		{"device twice", &State{Resources: []*Resource{{Name: "r", Devices: []*Device{{Id: "d"}, {Id: "d"}}}}},
			`resource r lists device "d" twice`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "ck")
			if err := Write(path, tc.st); err != nil {
				t.Fatal(err)
			}
			sum, err := Verify(path)
			if tc.problem == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.problem) || !strings.Contains(err.Error(), path+" is intact but") {
				t.Fatalf("got %v, want an error saying %q", err, tc.problem)
			}
			if sum.Version != FormatVersion {
				t.Fatalf("summary not filled: %+v", sum)
			}
			// Inconsistent, but readable: Read is about the file, not the state.
			if _, err := Read(path); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestVerifyManyProblems(t *testing.T) {
	st := &State{}
	for range 15 {
		st.Allocations = append(st.Allocations, &Allocation{})
	}
	path := filepath.Join(t.TempDir(), "ck")
	if err := Write(path, st); err != nil {
		t.Fatal(err)
	}
	_, err := Verify(path)
	if err == nil || !strings.HasSuffix(err.Error(), "; and 5 more") {
		t.Fatalf("got %v", err)
	}
}

func TestShow(t *testing.T) {
	st := &State{
		Generation:      9,
		WrittenUnixNano: when,
		Allocations: []*Allocation{{
			Workload: "default/trainer-0/main", Namespace: "default", Pod: "trainer-0", PodUid: "6f1c-22", Container: "main",
			Resource: "example.com/accel", DeviceIds: []string{"accel-0", "accel 1"}, AllocatedUnixNano: when,
			Response: &ContainerResponse{
				Envs:        map[string]string{"B": "2", "A": "1 2"},
				Mounts:      []*Mount{{ContainerPath: "/lib/accel", HostPath: "/opt/accel/lib", ReadOnly: true}},
				Devices:     []*DeviceSpec{{ContainerPath: "/dev/accel0", HostPath: "/dev/accel0", Permissions: "rw"}},
				Annotations: map[string]string{"k": "v\x1b[31m"},
				CdiDevices:  []*CDIDevice{{Name: "example.com/accel=accel-0"}},
			},
		}, {
			Workload: "ns/p/c", Resource: "example.com/nic",
		}},
		Resources: []*Resource{{
			Name: "example.com/accel", Provider: "module:pcisource", LastSeenUnixNano: when, PreStartRequired: true, PreferredAllocation: true,
			Devices: []*Device{
				{Id: "accel-0", Healthy: true, NumaNodes: []int64{0, 1}, Attributes: map[string]string{"model": "X100", "memory": "80Gi"}},
				{Id: "accel 1"},
			},
		}},
		Plugins: []*Plugin{{Name: "accel", Type: "DevicePlugin", Endpoint: "accel.sock", SocketPath: "/var/lib/kubelet/device-plugins/accel.sock", Version: "v1beta1", Resource: "example.com/accel"}},
	}
	var b strings.Builder
	if err := Show(&b, st); err != nil {
		t.Fatal(err)
	}
	want := `generation 9, written 2026-11-26T06:50:28.123456789Z

allocations: 2
  default/trainer-0/main  example.com/accel  devices accel-0,"accel 1"
      pod uid     6f1c-22
      allocated   2026-11-26T06:50:28.123456789Z
      env         A="1 2"
      env         B=2
      mount       /opt/accel/lib -> /lib/accel (ro)
      device      /dev/accel0 -> /dev/accel0 (rw)
      annotation  k="v\x1b[31m"
      cdi device  example.com/accel=accel-0
  ns/p/c  example.com/nic  devices (none)

resources: 1
  example.com/accel  from module:pcisource, last seen 2026-11-26T06:50:28.123456789Z, pre-start required, preferred allocation, 2 devices
      accel-0  healthy  numa 0,1  memory=80Gi  model=X100
      "accel 1"  unhealthy

plugins: 1
  accel  type DevicePlugin  endpoint accel.sock  socket /var/lib/kubelet/device-plugins/accel.sock  version v1beta1  resource example.com/accel
`
	if got := b.String(); got != want {
		t.Fatalf("Show wrote\n%s\nwant\n%s", got, want)
	}
	b.Reset()
	if err := Show(&b, &State{}); err != nil || !strings.HasPrefix(b.String(), "generation 0, written (unknown)\n") {
		t.Fatalf("empty state: %v\n%s", err, b.String())
	}
}
