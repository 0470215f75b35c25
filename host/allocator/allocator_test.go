package allocator_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	resourceapi "k8s.io/api/resource/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/dynamic-resource-allocation/structured"
	"sigs.k8s.io/yaml"

	"github.com/wasmlet/wasmlet/host/allocator"
)

// claim decodes a ResourceClaim's spec.devices, written as for a cluster.
func claim(t testing.TB, name, devices string) *resourceapi.ResourceClaim {
	t.Helper()
	var c resourceapi.ResourceClaim
	text := "apiVersion: resource.k8s.io/v1\nkind: ResourceClaim\nmetadata:\n  name: " + name +
		"\n  namespace: default\nspec:\n  devices:\n" + indent(devices, "    ")
	if err := yaml.UnmarshalStrict([]byte(text), &c); err != nil {
		t.Fatalf("claim %s: %v\n%s", name, err, text)
	}
	return &c
}

func indent(s, by string) string {
	lines := strings.Split(strings.Trim(s, "\n"), "\n")
	// strip the common indentation of the literal
	common := -1
	for _, l := range lines {
		if strings.TrimSpace(l) == "" {
			continue
		}
		n := len(l) - len(strings.TrimLeft(l, " \t"))
		if common < 0 || n < common {
			common = n
		}
	}
	for i, l := range lines {
		if len(l) >= common {
			l = l[common:]
		}
		lines[i] = by + strings.ReplaceAll(l, "\t", "  ")
	}
	return strings.Join(lines, "\n") + "\n"
}

const (
	isGPU = `device.attributes["gpu.example.com"].type == "gpu"`
	isH   = `device.attributes["gpu.example.com"].model == "H100"`
	isA   = `device.attributes["gpu.example.com"].model == "A100"`
	isMIG = `device.attributes["gpu.example.com"].type == "partition" && device.attributes["gpu.example.com"].profile == "1g.10gb"`
)

func request(name, extra string) string {
	return fmt.Sprintf("- name: %s\n  exactly:\n    deviceClassName: gpu.example.com\n%s", name, indent(extra, "    "))
}

func sel(exprs ...string) string {
	s := "selectors:\n"
	for _, e := range exprs {
		s += "- cel:\n    expression: '" + e + "'\n"
	}
	return s
}

// The table of claims: each selector form, constraints, firstAvailable,
// All, partitions, consumable capacity, over-commit, and claims that must
// fail with their reasons. Every case is also allocated by the upstream
// allocator called directly, on the same slices and the same allocated
// state, and must give the same devices.
func TestClaims(t *testing.T) {
	type want map[string][]string // request -> devices
	for _, c := range []struct {
		name      string
		before    []string // claims allocated first (spec.devices)
		unhealthy []string
		devices   string
		want      want
		consumed  map[string]string // device -> memory consumed
		reason    []string          // substrings of the refusal
		invalid   bool
	}{
		{name: "count", devices: "requests:\n" + request("gpu", "count: 1"), want: want{"gpu": {"gpu-0"}}},
		{name: "string selector", devices: "requests:\n" + request("gpu", sel(isGPU, isH)), want: want{"gpu": {"gpu-2"}}},
		{name: "int selector", devices: "requests:\n" + request("gpu", sel(isGPU, `device.attributes["gpu.example.com"].index >= 3`)),
			want: want{"gpu": {"gpu-3"}}},
		{name: "version selector", devices: "requests:\n" + request("gpu",
			sel(isGPU, `device.attributes["gpu.example.com"].driverVersion.isGreaterThan(semver("1.0.0"))`)), want: want{"gpu": {"gpu-0"}}},
		{name: "capacity selector", devices: "requests:\n" + request("gpu",
			sel(`device.capacity["gpu.example.com"].memory.compareTo(quantity("80Gi")) >= 0`)), want: want{"gpu": {"gpu-2"}}},
		{name: "count 2", devices: "requests:\n" + request("gpu", sel(isGPU)+"count: 2"), want: want{"gpu": {"gpu-0", "gpu-1"}}},
		{name: "matchAttribute", devices: "requests:\n" + request("a", sel(isGPU)) + request("b", sel(isGPU, isH)) +
			"constraints:\n- matchAttribute: gpu.example.com/pcieRoot\n", want: want{"a": {"gpu-2"}, "b": {"gpu-3"}}},
		{name: "distinctAttribute", devices: "requests:\n" + request("a", sel(isGPU)) + request("b", sel(isGPU)) +
			"constraints:\n- distinctAttribute: gpu.example.com/numa\n", want: want{"a": {"gpu-0"}, "b": {"gpu-2"}}},
		{name: "firstAvailable", devices: `requests:
- name: gpu
  firstAvailable:
  - name: big
    deviceClassName: gpu.example.com
    count: 3
` + indent(sel(isGPU, isH), "    ") + `  - name: small
    deviceClassName: gpu.example.com
` + indent(sel(isGPU, isA), "    "), want: want{"gpu/small": {"gpu-0"}}},
		{name: "All", devices: "requests:\n" + request("gpu", sel(isGPU, isH)+"allocationMode: All"),
			want: want{"gpu": {"gpu-2", "gpu-3"}}},
		{name: "partitions", devices: "requests:\n" + request("mig", sel(isMIG)+"count: 2"),
			want: want{"mig": {"gpu-0-1g-0", "gpu-0-1g-1"}}},
		{name: "partitions leave the whole GPU", before: []string{"requests:\n" + request("mig",
			sel(isMIG))},
			devices: "requests:\n" + request("gpu", sel(isGPU, isA)), want: want{"gpu": {"gpu-1"}}},
		{name: "consumable", devices: "requests:\n" + request("vgpu", sel(`device.attributes["gpu.example.com"].type == "shared"`)+
			"capacity:\n  requests:\n    memory: 4Gi"), want: want{"vgpu": {"vgpu-0"}}, consumed: map[string]string{"vgpu-0": "4Gi"}},
		{name: "consumable default", devices: "requests:\n" + request("vgpu", sel(`device.attributes["gpu.example.com"].type == "shared"`)),
			want: want{"vgpu": {"vgpu-0"}}, consumed: map[string]string{"vgpu-0": "1Gi"}},
		{name: "consumable shared twice", before: []string{"requests:\n" + request("vgpu",
			sel(`device.attributes["gpu.example.com"].type == "shared"`)+"capacity:\n  requests:\n    memory: 8Gi")},
			devices: "requests:\n" + request("vgpu", sel(`device.attributes["gpu.example.com"].type == "shared"`)+
				"capacity:\n  requests:\n    memory: 8Gi"), want: want{"vgpu": {"vgpu-0"}}, consumed: map[string]string{"vgpu-0": "8Gi"}},
		{name: "tolerates unhealthy", unhealthy: []string{"gpu-3"}, devices: "requests:\n" + request("gpu",
			sel(isGPU, `device.attributes["gpu.example.com"].index == 3`)+
				"tolerations:\n- key: wasmlet.dev/unhealthy\n  operator: Exists\n  effect: NoSchedule"),
			want: want{"gpu": {"gpu-3"}}},

		// Refusals, with their reasons.
		{name: "over-commit of partitions", devices: "requests:\n" + request("mig",
			sel(isMIG)+"count: 5"),
			reason: []string{"request mig: needs 5 device(s), 4 available", "selector #0 `" + isMIG + "` leaves 4"}},
		{name: "no such model", devices: "requests:\n" + request("gpu", sel(isGPU, `device.attributes["gpu.example.com"].model == "B200"`)),
			reason: []string{"request gpu: needs 1 device(s), 0 available", "selector #0 `" + isGPU + "` leaves 4",
				"selector #1 `device.attributes[\"gpu.example.com\"].model == \"B200\"` leaves 0"}},
		{name: "constraint", devices: "requests:\n" + request("a", sel(isGPU, isA)) + request("b", sel(isGPU, isH)) +
			"constraints:\n- matchAttribute: gpu.example.com/pcieRoot\n",
			reason: []string{"constraint #0 (matchAttribute gpu.example.com/pcieRoot over a, b): no one value of it has enough available devices for every request",
				"pci0: a 2/1, b 0/1", "pci1: a 0/1, b 2/1"}},
		{name: "no such class", devices: "requests:\n- name: gpu\n  exactly:\n    deviceClassName: tpu.example.com\n",
			reason: []string{`request gpu: there is no device class "tpu.example.com" on this node (there are: gpu.example.com)`}},
		{name: "counters in use", before: []string{"requests:\n" + request("gpu", sel(isGPU))},
			devices: "requests:\n" + request("mig", sel(isMIG)),
			reason:  []string{"request mig: needs 1 device(s), 0 available", "4 short of shared counters"}},
		{name: "consumable over-commit", before: []string{"requests:\n" + request("vgpu",
			sel(`device.attributes["gpu.example.com"].type == "shared"`)+"capacity:\n  requests:\n    memory: 12Gi")},
			devices: "requests:\n" + request("vgpu", sel(`device.attributes["gpu.example.com"].type == "shared"`)+
				"capacity:\n  requests:\n    memory: 8Gi"),
			reason: []string{"request vgpu: needs 1 device(s), 0 available", "1 short of the capacity asked for (memory 8Gi)"}},
		{name: "allocated", before: []string{"requests:\n" + request("gpu", sel(isGPU, isH)+"allocationMode: All")},
			devices: "requests:\n" + request("gpu", sel(isGPU, isH)), reason: []string{"2 allocated"}},
		{name: "unhealthy", unhealthy: []string{"gpu-3"}, devices: "requests:\n" + request("gpu",
			sel(isGPU, `device.attributes["gpu.example.com"].index == 3`)), reason: []string{"1 unhealthy"}},
		{name: "All with one taken", before: []string{"requests:\n" + request("gpu", sel(isGPU, isH))},
			devices: "requests:\n" + request("gpu", sel(isGPU, isH)+"allocationMode: All"),
			reason:  []string{"request gpu: allocationMode All needs every device it selects, 2, and only 1 of them are available"}},
		{name: "firstAvailable, none", devices: `requests:
- name: gpu
  firstAvailable:
  - name: big
    deviceClassName: gpu.example.com
    count: 3
` + indent(sel(isGPU, isH), "    ") + `  - name: b200
    deviceClassName: gpu.example.com
` + indent(sel(`device.attributes["gpu.example.com"].model == "B200"`), "    "),
			reason: []string{"request gpu: none of its 2 alternatives (firstAvailable) can be met", "request gpu/big: needs 3 device(s), 2 available",
				"request gpu/b200: needs 1 device(s), 0 available"}},
		{name: "admin access", devices: "requests:\n" + request("gpu", "adminAccess: true"), invalid: true},
		{name: "bad CEL", devices: "requests:\n" + request("gpu", sel(`device.nope ==`)), invalid: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			devs, counters := gpus(4, 1, 4)
			for i := range devs {
				if slices.Contains(c.unhealthy, devs[i].ID) {
					devs[i].Healthy = false
				}
			}
			a := allocator.New(allocator.Config{NodeName: "node-a"})
			a.SetPool(driver, "example.com/gpu", devs, counters)
			var before []*resourceapi.AllocationResult
			for i, b := range c.before {
				r, err := a.Allocate(ctx, fmt.Sprint("before-", i), claim(t, fmt.Sprint("before-", i), b))
				if err != nil {
					t.Fatalf("before %d: %v", i, err)
				}
				before = append(before, r)
			}
			cl := claim(t, "c", c.devices)
			got, err := a.Allocate(ctx, "c", cl)
			direct := upstream(t, a, before, allocator.WithDefaults(cl))
			switch {
			case c.invalid:
				if !errors.Is(err, allocator.ErrInvalid) {
					t.Fatalf("got %v, %v; want an invalid claim", got, err)
				}
				return
			case c.reason != nil:
				var u *allocator.Unsatisfiable
				if !errors.As(err, &u) {
					t.Fatalf("got %v, %v; want a refusal", got, err)
				}
				t.Log(err)
				for _, r := range c.reason {
					if !strings.Contains(err.Error(), r) {
						t.Errorf("the reason\n  %v\ndoes not say\n  %s", err, r)
					}
				}
				if direct != nil {
					t.Errorf("the upstream allocator allocated %v", devicesOf(direct))
				}
				return
			case err != nil:
				t.Fatal(err)
			}
			if g := devicesOf(got); fmt.Sprint(g) != fmt.Sprint(map[string][]string(c.want)) {
				t.Errorf("allocated %v, want %v", g, c.want)
			}
			if direct == nil || fmt.Sprint(devicesOf(direct)) != fmt.Sprint(devicesOf(got)) {
				t.Errorf("the upstream allocator, called directly, allocated %v", devicesOf(direct))
			}
			for _, r := range got.Devices.Results {
				want, ok := c.consumed[r.Device]
				if !ok {
					if r.ShareID != nil {
						t.Errorf("%s: shared, but no capacity consumed was expected", r.Device)
					}
					continue
				}
				m := r.ConsumedCapacity["memory"]
				if r.ShareID == nil || m.String() != want {
					t.Errorf("%s: share %v, consumed %v, want %s", r.Device, r.ShareID, r.ConsumedCapacity, want)
				}
			}
		})
	}
}

func devicesOf(r *resourceapi.AllocationResult) map[string][]string {
	if r == nil {
		return nil
	}
	out := map[string][]string{}
	for _, d := range r.Devices.Results {
		out[d.Request] = append(out[d.Request], d.Device)
	}
	return out
}

// upstream allocates cl with the upstream allocator directly, on a's
// slices, with the state before built as the scheduler builds it.
func upstream(t testing.TB, a *allocator.Allocator, before []*resourceapi.AllocationResult, cl *resourceapi.ResourceClaim) *resourceapi.AllocationResult {
	t.Helper()
	st := structured.AllocatedState{AllocatedDevices: sets.New[structured.DeviceID](),
		AllocatedSharedDeviceIDs: sets.New[structured.SharedDeviceID](), AggregatedCapacity: structured.NewConsumedCapacityCollection()}
	for _, r := range before {
		for _, d := range r.Devices.Results {
			id := structured.MakeDeviceID(d.Driver, d.Pool, d.Device)
			if d.ShareID != nil {
				st.AllocatedSharedDeviceIDs.Insert(structured.MakeSharedDeviceID(id, d.ShareID))
				st.AggregatedCapacity.Insert(structured.NewDeviceConsumedCapacity(id, d.ConsumedCapacity))
			} else {
				st.AllocatedDevices.Insert(id)
			}
		}
	}
	u, err := structured.NewAllocator(context.Background(), allocator.Features, st, defaultClasses{},
		a.Slices(), allocator.NewCELCache())
	if err != nil {
		t.Fatal(err)
	}
	node := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: a.NodeName()}}
	rs, err := u.Allocate(context.Background(), node, []*resourceapi.ResourceClaim{cl})
	if err != nil || len(rs) == 0 {
		return nil
	}
	return &rs[0]
}

// defaultClasses are the default class of the test's driver, alone.
type defaultClasses struct{}

func (defaultClasses) List() ([]*resourceapi.DeviceClass, error) {
	return []*resourceapi.DeviceClass{allocator.DefaultClass(driver)}, nil
}

func (defaultClasses) Get(name string) (*resourceapi.DeviceClass, error) {
	if name == driver {
		return allocator.DefaultClass(driver), nil
	}
	return nil, apierrors.NewNotFound(resourceapi.Resource("deviceclasses"), name)
}
