package claim_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"

	resourceapi "k8s.io/api/resource/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/wasmlet/wasmlet/host/cdi"
	"github.com/wasmlet/wasmlet/host/claim"
	"github.com/wasmlet/wasmlet/host/device"
	"github.com/wasmlet/wasmlet/host/internal/testenv"
)

// counting is a driver that counts its prepares.
type counting struct {
	*gpuSource
	prepares atomic.Int32
}

func (c *counting) Prepare(ctx context.Context, rc *resourceapi.ResourceClaim, w string) ([]device.Prepared, error) {
	c.prepares.Add(1)
	return c.gpuSource.Prepare(ctx, rc, w)
}

// allocated is a claim the cluster allocated: devs of driver in node-a's
// pool, for request gpu, reserved for pod p.
func allocated(name, uid string, devs ...string) *resourceapi.ResourceClaim {
	rc := &resourceapi.ResourceClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "ml", Name: name, UID: types.UID(uid)}}
	rc.Status.Allocation = &resourceapi.AllocationResult{}
	for _, d := range devs {
		rc.Status.Allocation.Devices.Results = append(rc.Status.Allocation.Devices.Results,
			resourceapi.DeviceRequestAllocationResult{Request: "gpu", Driver: driver, Pool: "node-a", Device: d})
	}
	rc.Status.ReservedFor = []resourceapi.ResourceClaimConsumerReference{{Resource: "pods", Name: "p", UID: "p-uid"}}
	return rc
}

// A claim the cluster allocated is prepared for the kubelet once: its CDI
// spec written, recorded durably, a repeated prepare answered from the
// record without the driver; a device it holds is refused to another
// claim; it is not among wasmlet's own claims and holds nothing in the
// node's allocator. After a restart it is still there, and unprepared by
// UID, its CDI spec removed; a second unprepare is no error.
func TestPrepareForKubelet(t *testing.T) {
	ctx := context.Background()
	dir := testenv.ShortDir(t)
	n := start(t, dir, newGPUSource(2))
	drv := &counting{gpuSource: n.src}

	if _, err := n.claims.PrepareForKubelet(ctx, &resourceapi.ResourceClaim{ObjectMeta: metav1.ObjectMeta{Name: "x", UID: "u0"}},
		driver, drv); !errors.Is(err, claim.ErrInvalid) {
		t.Fatalf("an unallocated claim: %v", err)
	}
	c, err := n.claims.PrepareForKubelet(ctx, allocated("train", "u1", "gpu-0"), driver, drv)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"gpu.example.com/claim=u1-gpu-0"}
	if len(c.Prepared) != 1 || c.Prepared[0].Device != "gpu-0" || !slices.Equal(c.Prepared[0].Edits.CDIDevices, want) ||
		c.Workload.Pod != "p" || c.KubeletDriver != driver {
		t.Fatalf("prepared %+v", c)
	}
	spec := cdi.ClaimSpecPath(n.cdi, "u1", driver)
	if _, err := os.Stat(spec); err != nil {
		t.Fatalf("no CDI spec: %v", err)
	}
	again, err := n.claims.PrepareForKubelet(ctx, allocated("train", "u1", "gpu-0"), driver, drv)
	if err != nil || !slices.Equal(again.Prepared[0].Edits.CDIDevices, want) || drv.prepares.Load() != 1 {
		t.Fatalf("prepared again: %v, %v, %d prepares (want the record, 1 prepare)", again, err, drv.prepares.Load())
	}
	if _, err := n.claims.PrepareForKubelet(ctx, allocated("other", "u2", "gpu-0"), driver, drv); !errors.Is(err, claim.ErrConflict) {
		t.Fatalf("gpu-0 prepared for a second claim: %v", err)
	}
	if got := n.claims.List(); len(got) != 0 {
		t.Errorf("wasmlet's own claims list %d", len(got))
	}
	if got := n.alloc.Available(ctx, driver); len(got) != 6 {
		t.Errorf("the node's allocator holds devices of the cluster's claim: available %v", got)
	}
	n.stop()

	n = start(t, dir, newGPUSource(2))
	drv = &counting{gpuSource: n.src}
	if got := n.claims.KubeletClaims(driver); len(got) != 1 || got[0].Object.UID != "u1" || !got[0].Edits.Equal(c.Edits) {
		t.Fatalf("after a restart: %+v", got)
	}
	for range 2 {
		if err := n.claims.UnprepareForKubelet(ctx, driver, "u1", drv); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(spec); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("CDI spec after unprepare: %v", err)
	}
	if got := n.claims.KubeletClaims(driver); len(got) != 0 {
		t.Errorf("after unprepare: %+v", got)
	}
}

// Without a durable checkpoint nothing is acknowledged to the kubelet: a
// prepare fails and leaves nothing recorded; an unprepare fails and keeps
// the record, and succeeds once the checkpoint is back.
func TestKubeletClaimsDurable(t *testing.T) {
	ctx := context.Background()
	n := start(t, testenv.ShortDir(t), newGPUSource(2))
	if _, err := n.claims.PrepareForKubelet(ctx, allocated("kept", "u1", "gpu-0"), driver, n.src); err != nil {
		t.Fatal(err)
	}
	state := filepath.Dir(n.ck)
	if err := os.RemoveAll(state); err != nil {
		t.Fatal(err)
	}
	if _, err := n.claims.PrepareForKubelet(ctx, allocated("lost", "u2", "gpu-1"), driver, n.src); !errors.Is(err, claim.ErrNotDurable) {
		t.Fatalf("prepared without a checkpoint: %v", err)
	}
	if err := n.claims.UnprepareForKubelet(ctx, driver, "u1", n.src); !errors.Is(err, claim.ErrNotDurable) {
		t.Fatalf("unprepared without a checkpoint: %v", err)
	}
	if got := n.claims.KubeletClaims(driver); len(got) != 1 || got[0].Object.UID != "u1" {
		t.Fatalf("records: %+v, want u1 alone", got)
	}
	if err := os.MkdirAll(state, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := n.claims.UnprepareForKubelet(ctx, driver, "u1", n.src); err != nil {
		t.Fatal(err)
	}
	if got := n.claims.KubeletClaims(driver); len(got) != 0 {
		t.Errorf("records after unprepare: %+v", got)
	}
}
