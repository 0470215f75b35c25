package checkpoint

import (
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"hash/crc32"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
)

// update rewrites the committed test data (the v1 and v2 fixtures and the
// fuzz seed corpus):
// go test ./checkpoint -run 'TestV1Fixture|TestV2Fixture|TestFuzzSeeds' -update
var update = flag.Bool("update", false, "rewrite the files in testdata")

// when is a fixed instant so that test states encode the same every time.
var when = time.Date(2026, 11, 26, 6, 50, 28, 123456789, time.UTC).UnixNano()

// sampleState returns a realistic state: allocs allocations, each holding
// one or two devices of one of the resources with a response shaped like an
// accelerator plugin's, and resources × devices devices, with one plugin per
// resource. Device ids of allocations are unique, so the state is consistent.
func sampleState(allocs, resources, devices int) *State {
	st := &State{Generation: uint64(allocs) + 1, WrittenUnixNano: when}
	names := make([]string, resources)
	for r := range resources {
		name := fmt.Sprintf("vendor%d.example.com/accel", r)
		names[r] = name
		sock := fmt.Sprintf("/var/lib/kubelet/device-plugins/vendor%d-accel.sock", r)
		res := &Resource{
			Name:                name,
			Provider:            "plugin:" + sock,
			LastSeenUnixNano:    when,
			PreStartRequired:    r%2 == 0,
			PreferredAllocation: true,
		}
		for d := range devices {
			res.Devices = append(res.Devices, &Device{
				Id:        fmt.Sprintf("accel-%d", d),
				Healthy:   d != 3,
				NumaNodes: []int64{int64(d / 4)},
				Attributes: map[string]string{
					"model":  "X100-SXM-80GB",
					"memory": "80Gi",
					"pci":    fmt.Sprintf("0000:%02x:00.0", 0x10+d),
				},
			})
		}
		st.Resources = append(st.Resources, res)
		st.Plugins = append(st.Plugins, &Plugin{
			Name:       fmt.Sprintf("vendor%d-accel", r),
			Type:       "DevicePlugin",
			Endpoint:   fmt.Sprintf("vendor%d-accel.sock", r),
			SocketPath: sock,
			Version:    "v1beta1",
			Resource:   name,
		})
	}
	for i := range allocs {
		ns, pod, ctr := fmt.Sprintf("team-%d", i%50), fmt.Sprintf("trainer-%d-7f9c5d8b6-x%05d", i/3, i), "main"
		ids := []string{fmt.Sprintf("accel-%05d-a", i)}
		if i%3 == 0 {
			ids = append(ids, fmt.Sprintf("accel-%05d-b", i))
		}
		resp := &ContainerResponse{
			Envs: map[string]string{
				"ACCEL_VISIBLE_DEVICES": fmt.Sprintf("ACC-%08x-4e1f-9a2b-%012x", i, i*7919),
				"ACCEL_DEVICE_ORDER":    "PCI_BUS_ID",
			},
			Mounts: []*Mount{
				{ContainerPath: "/usr/local/accel/lib64", HostPath: "/opt/accel/driver/lib64", ReadOnly: true},
			},
			Annotations: map[string]string{"vendor.example.com/allocation": fmt.Sprintf("%d", i)},
		}
		for j := range ids {
			dev := fmt.Sprintf("/dev/accel%d", (i+j)%8)
			resp.Devices = append(resp.Devices, &DeviceSpec{ContainerPath: dev, HostPath: dev, Permissions: "rw"})
			resp.CdiDevices = append(resp.CdiDevices, &CDIDevice{Name: "vendor.example.com/accel=" + ids[j]})
		}
		resource := ""
		if resources > 0 {
			resource = names[i%resources]
		}
		st.Allocations = append(st.Allocations, &Allocation{
			Workload:          ns + "/" + pod + "/" + ctr,
			Namespace:         ns,
			Pod:               pod,
			PodUid:            fmt.Sprintf("%08x-1c2d-4e5f-8a9b-%012x", i, i),
			Container:         ctr,
			Resource:          resource,
			DeviceIds:         ids,
			Response:          resp,
			AllocatedUnixNano: when + int64(i),
		})
	}
	return st
}

// frameBytes wraps payload in a frame of the given version, with a correct
// length and checksum.
func frameBytes(version uint32, payload []byte) []byte {
	b := make([]byte, headerSize, frameSize+len(payload))
	copy(b, magic)
	binary.BigEndian.PutUint32(b[8:], version)
	binary.BigEndian.PutUint64(b[12:], uint64(len(payload)))
	b = append(b, payload...)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// encodeV1 writes format version 1, as the first wasmlet did. Only tests
// write it: to produce fixtures.
func encodeV1(t testing.TB, v1 v1State) []byte {
	t.Helper()
	payload, err := json.Marshal(v1)
	if err != nil {
		t.Fatal(err)
	}
	return frameBytes(1, payload)
}

func mustEncode(t testing.TB, st *State) []byte {
	t.Helper()
	b, err := Encode(st)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustEqual(t testing.TB, got, want *State) {
	t.Helper()
	if !proto.Equal(got, want) {
		t.Fatalf("state differs\n got: %v\nwant: %v", got, want)
	}
}
