package claim_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	resourceapi "k8s.io/api/resource/v1"
	apiresource "k8s.io/apimachinery/pkg/api/resource"

	"github.com/wasmlet/wasmlet/host/allocator"
	"github.com/wasmlet/wasmlet/host/cdi"
	"github.com/wasmlet/wasmlet/host/claim"
	"github.com/wasmlet/wasmlet/host/device"
	"github.com/wasmlet/wasmlet/host/devicemanager"
	"github.com/wasmlet/wasmlet/host/internal/testenv"
)

const driver = "gpu.example.com"

// gpuSource is a structured provider built in Go, to test the claim store
// and the device manager together without a module (the real gpusim
// module is tested through host/node): n GPUs, each in two partitions
// sharing its counters, every device with a device node.
type gpuSource struct {
	mu      sync.Mutex
	devs    []device.Device
	sets    []device.CounterSet
	updates chan []device.Device
}

func newGPUSource(n int) *gpuSource {
	s := &gpuSource{updates: make(chan []device.Device, 8)}
	q := apiresource.MustParse
	for i := range n {
		set := fmt.Sprintf("gpu-%d", i)
		s.sets = append(s.sets, device.CounterSet{Name: set, Counters: map[string]apiresource.Quantity{"memory": q("40Gi")}})
		node := func(id string) device.Edits {
			return device.Edits{DeviceNodes: []device.Node{{ContainerPath: "/dev/" + id, HostPath: "/dev/" + id, Permissions: "rw"}},
				Env: map[string]string{"GPU_" + strings.ReplaceAll(id, "-", "_"): "1"}}
		}
		s.devs = append(s.devs, device.Device{ID: set, Healthy: true, NUMANodes: []int64{int64(i % 2)},
			Attributes:       map[string]device.Attribute{"type": device.StringAttribute("gpu"), "index": device.IntAttribute(int64(i))},
			ConsumesCounters: []device.CounterConsumption{{CounterSet: set, Counters: map[string]apiresource.Quantity{"memory": q("40Gi")}}},
			Edits:            node(set)})
		for j := range 2 {
			id := fmt.Sprintf("gpu-%d-half-%d", i, j)
			s.devs = append(s.devs, device.Device{ID: id, Healthy: true,
				Attributes:       map[string]device.Attribute{"type": device.StringAttribute("half"), "index": device.IntAttribute(int64(i))},
				ConsumesCounters: []device.CounterConsumption{{CounterSet: set, Counters: map[string]apiresource.Quantity{"memory": q("20Gi")}}},
				Edits:            node(id)})
		}
	}
	return s
}

func (s *gpuSource) Name() string { return "test:gpus" }
func (s *gpuSource) Options() devicemanager.ProviderOptions {
	return devicemanager.ProviderOptions{Driver: driver}
}
func (s *gpuSource) SharedCounters() []device.CounterSet {
	s.mu.Lock()
	defer s.mu.Unlock()
	return device.CloneCounterSets(s.sets)
}
func (s *gpuSource) Watch(ctx context.Context, update func([]device.Device)) error {
	s.mu.Lock()
	devs := device.Clone(s.devs)
	s.mu.Unlock()
	update(devs)
	for {
		select {
		case <-ctx.Done():
			return nil
		case d := <-s.updates:
			update(d)
		}
	}
}
func (s *gpuSource) set(f func(devs []device.Device) []device.Device) {
	s.mu.Lock()
	s.devs = f(s.devs)
	devs := device.Clone(s.devs)
	s.mu.Unlock()
	s.updates <- devs
}
func (s *gpuSource) Allocate(_ context.Context, ids []string, _ string) (device.Edits, error) {
	return device.Edits{Env: map[string]string{"GPUS": strings.Join(ids, ",")}}, nil
}
func (s *gpuSource) PreferredAllocation(context.Context, []string, []string, int) ([]string, error) {
	return nil, errors.New("not offered")
}
func (s *gpuSource) PreStart(context.Context, []string, string) error { return nil }
func (s *gpuSource) Close() error                                     { return nil }
func (s *gpuSource) Prepare(_ context.Context, c *resourceapi.ResourceClaim, _ string) ([]device.Prepared, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []device.Prepared
	for _, r := range c.Status.Allocation.Devices.Results {
		for _, d := range s.devs {
			if d.ID == r.Device {
				out = append(out, device.Prepared{Request: r.Request, Device: r.Device, Edits: d.Edits.Clone()})
			}
		}
	}
	return out, nil
}
func (s *gpuSource) Unprepare(context.Context, *resourceapi.ResourceClaim) error { return nil }

type node struct {
	t      testing.TB
	dir    string
	ck     string
	m      *devicemanager.Manager
	alloc  *allocator.Allocator
	claims *claim.Store
	src    *gpuSource
	cdi    string
	stop   func()
}

func start(t testing.TB, dir string, src *gpuSource) *node {
	t.Helper()
	log := hclog.New(&hclog.LoggerOptions{Level: hclog.Warn, Output: testenv.Writer{T: t}})
	n := &node{t: t, dir: dir, ck: filepath.Join(dir, "state", "checkpoint"), src: src, cdi: filepath.Join(dir, "cdi")}
	if err := os.MkdirAll(filepath.Dir(n.ck), 0o700); err != nil {
		t.Fatal(err)
	}
	specs, err := cdi.New(cdi.Config{Dir: n.cdi, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	n.alloc = allocator.New(allocator.Config{NodeName: "node-a", Logger: log})
	n.claims = claim.New(claim.Config{Allocator: n.alloc, Specs: specs, Logger: log})
	n.m, err = devicemanager.New(devicemanager.Config{CheckpointPath: n.ck, Allocator: n.alloc, Parts: []devicemanager.Part{n.claims},
		GracePeriod: time.Hour, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	n.claims.Attach(n.m)
	n.claims.SetDriver(driver, src)
	n.claims.Resume()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { n.m.Run(ctx); close(done) }()
	n.m.SetProvider("example.com/gpu", src)
	n.stop = func() { cancel(); <-done; specs.Close() }
	t.Cleanup(n.stop)
	testenv.Eventually(t, "the pool", func() bool { return len(n.alloc.Available(context.Background(), driver)) > 0 })
	return n
}

func decode(t testing.TB, text string) *resourceapi.ResourceClaim {
	t.Helper()
	c, err := claim.Decode([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func claimOf(name, expr string, count int) string {
	return fmt.Sprintf(`apiVersion: resource.k8s.io/v1
kind: ResourceClaim
metadata:
  name: %s
spec:
  devices:
    requests:
    - name: gpu
      exactly:
        deviceClassName: gpu.example.com
        count: %d
        selectors:
        - cel:
            expression: '%s'
`, name, count, expr)
}

const whole = `device.attributes["gpu.example.com"].type == "gpu"`
const half = `device.attributes["gpu.example.com"].type == "half"`

func devicesOf(c *claim.Claim) []string {
	var out []string
	for _, r := range c.Object.Status.Allocation.Devices.Results {
		out = append(out, r.Device)
	}
	return out
}

// The count path and the claim path share one allocated state: whichever
// comes first, the other never gets its devices, nor, through shared
// counters, a partition of them.
func TestCountAndClaimNeverShare(t *testing.T) {
	ctx := context.Background()
	for _, order := range []string{"count first", "claim first"} {
		t.Run(order, func(t *testing.T) {
			n := start(t, testenv.ShortDir(t), newGPUSource(2))
			req := devicemanager.AllocateRequest{Namespace: "default", Pod: "p", Container: "c", Resource: "example.com/gpu", Count: 1}
			var counted []string
			var claimed *claim.Claim
			count := func() {
				a, err := n.m.Allocate(ctx, req)
				if err != nil {
					t.Fatal(err)
				}
				counted = a.DeviceIDs
			}
			apply := func() {
				var err error
				claimed, err = n.claims.Apply(ctx, decode(t, claimOf("c1", whole, 1)), claim.Workload{})
				if err != nil {
					t.Fatal(err)
				}
			}
			if order == "count first" {
				count()
				apply()
			} else {
				apply()
				count()
			}
			got := devicesOf(claimed)
			if len(counted) != 1 || len(got) != 1 || counted[0] == got[0] {
				t.Fatalf("count %v, claim %v", counted, got)
			}
			// Both whole GPUs are taken: no half of either can be had, by a
			// claim or by a count.
			_, err := n.claims.Apply(ctx, decode(t, claimOf("c2", half, 1)), claim.Workload{})
			if !errors.Is(err, claim.ErrUnsatisfiable) || !strings.Contains(err.Error(), "short of shared counters") {
				t.Fatalf("a half of a taken GPU: %v", err)
			}
			req.Pod = "q"
			if _, err := n.m.Allocate(ctx, req); !errors.Is(err, devicemanager.ErrUnavailable) {
				t.Fatalf("a count with every device taken: %v", err)
			}
			// The device manager shows both holders.
			var held []string
			for _, r := range n.m.Resources() {
				for _, d := range r.Devices {
					if d.AllocatedTo != "" {
						held = append(held, d.ID+"="+d.AllocatedTo)
					}
				}
			}
			slices.Sort(held)
			if len(held) != 2 || !slices.Contains(held, got[0]+"=claim:default/c1") {
				t.Errorf("holders %v", held)
			}
			// Freed, both are available again.
			if _, err := n.m.Release(ctx, "default/p/c", ""); err != nil {
				t.Fatal(err)
			}
			if _, err := n.claims.Delete(ctx, "default", "c1"); err != nil {
				t.Fatal(err)
			}
			if got := n.alloc.Available(ctx, driver); len(got) != 6 {
				t.Errorf("available after both are freed: %v", got)
			}
		})
	}
}

// A claim is durable once applied, restored exactly after a restart, with
// its CDI spec; idempotent; refused when another of its name differs;
// unhealthy and gone devices show on it; deleted, its spec goes.
func TestApplyRestoreDelete(t *testing.T) {
	ctx := context.Background()
	dir := testenv.ShortDir(t)
	n := start(t, dir, newGPUSource(2))
	c, err := n.claims.Apply(ctx, decode(t, claimOf("train", half, 2)), claim.Workload{Pod: "p", Container: "main"})
	if err != nil {
		t.Fatal(err)
	}
	if got := devicesOf(c); fmt.Sprint(got) != "[gpu-0-half-0 gpu-0-half-1]" {
		t.Fatalf("allocated %v", got)
	}
	spec := cdi.ClaimSpecPath(n.cdi, string(c.Object.UID), driver)
	if _, err := os.Stat(spec); err != nil {
		t.Fatalf("no CDI spec: %v", err)
	}
	want := []string{"gpu.example.com/claim=" + string(c.Object.UID) + "-gpu-0-half-0", "gpu.example.com/claim=" + string(c.Object.UID) + "-gpu-0-half-1"}
	if !slices.Equal(c.Edits.CDIDevices, want) || len(c.Edits.DeviceNodes) != 2 {
		t.Fatalf("edits %+v", c.Edits)
	}
	again, err := n.claims.Apply(ctx, decode(t, claimOf("train", half, 2)), claim.Workload{Pod: "p", Container: "main"})
	if err != nil || again.Object.UID != c.Object.UID {
		t.Fatalf("applied again: %v, %v", again, err)
	}
	if _, err := n.claims.Apply(ctx, decode(t, claimOf("train", half, 1)), claim.Workload{Pod: "p", Container: "main"}); !errors.Is(err, claim.ErrConflict) {
		t.Fatalf("a different claim of the same name: %v", err)
	}
	n.stop()

	// Restart: the claim is as it was, its devices held, its spec there.
	n = start(t, dir, newGPUSource(2))
	r := n.claims.Get("default", "train")
	if r == nil || r.Object.UID != c.Object.UID || fmt.Sprint(devicesOf(r)) != fmt.Sprint(devicesOf(c)) || !r.Edits.Equal(c.Edits) ||
		r.Workload != c.Workload {
		t.Fatalf("restored %+v", r)
	}
	if _, err := n.claims.Apply(ctx, decode(t, claimOf("other", whole+` && device.attributes["gpu.example.com"].index == 0`, 1)), claim.Workload{}); !errors.Is(err, claim.ErrUnsatisfiable) {
		t.Fatalf("the restored claim's GPU given again: %v", err)
	}
	if _, err := os.Stat(spec); err != nil {
		t.Fatalf("CDI spec after the restart: %v", err)
	}

	// One device unhealthy, another gone: the claim says so.
	n.src.set(func(devs []device.Device) []device.Device {
		var out []device.Device
		for _, d := range devs {
			switch d.ID {
			case "gpu-0-half-0":
				d.Healthy = false
			case "gpu-0-half-1":
				continue
			}
			out = append(out, d)
		}
		return out
	})
	testenv.Eventually(t, "health on the claim", func() bool {
		st := n.claims.Devices(n.claims.Get("default", "train"))
		return len(st) == 2 && st[0].Health == "unhealthy" && st[1].Health == "gone"
	})

	if _, err := n.claims.Delete(ctx, "default", "train"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(spec); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("CDI spec after delete: %v", err)
	}
	if _, err := n.claims.Delete(ctx, "default", "train"); !errors.Is(err, claim.ErrNotFound) {
		t.Errorf("deleted twice: %v", err)
	}
	n.stop()
	n = start(t, dir, newGPUSource(2))
	if got := n.claims.List(); len(got) != 0 {
		t.Errorf("deleted claim restored: %v", got)
	}
}

// Nothing that is not durable is acknowledged: with the checkpoint's
// directory gone, a claim is refused and leaves its devices free, and a
// deletion is undone, the claim keeping its devices; once the directory is
// back, the deletion succeeds.
func TestNothingUndurableIsAcknowledged(t *testing.T) {
	ctx := context.Background()
	n := start(t, testenv.ShortDir(t), newGPUSource(2))
	if _, err := n.claims.Apply(ctx, decode(t, claimOf("kept", whole, 1)), claim.Workload{}); err != nil {
		t.Fatal(err)
	}
	state := filepath.Dir(n.ck)
	if err := os.RemoveAll(state); err != nil {
		t.Fatal(err)
	}
	_, err := n.claims.Apply(ctx, decode(t, claimOf("lost", half, 1)), claim.Workload{})
	if !errors.Is(err, claim.ErrNotDurable) || n.claims.Get("default", "lost") != nil {
		t.Fatalf("applied without a checkpoint: %v", err)
	}
	if _, err := n.claims.Delete(ctx, "default", "kept"); !errors.Is(err, claim.ErrNotDurable) ||
		!strings.Contains(err.Error(), "nothing was deleted, the claim keeps its devices") {
		t.Fatalf("deleted without a checkpoint: %v", err)
	}
	if n.claims.Get("default", "kept") == nil {
		t.Fatal("the claim whose deletion failed is gone")
	}
	// Its GPU is still held, and so its halves; the refused claim's half
	// is free again.
	if got := n.alloc.Available(ctx, driver); fmt.Sprint(got) != "[gpu-1 gpu-1-half-0 gpu-1-half-1]" {
		t.Fatalf("available: %v", got)
	}
	if err := os.MkdirAll(state, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := n.claims.Delete(ctx, "default", "kept"); err != nil {
		t.Fatal(err)
	}
	if got := n.alloc.Available(ctx, driver); len(got) != 6 {
		t.Errorf("available after the deletion: %v", got)
	}
}
