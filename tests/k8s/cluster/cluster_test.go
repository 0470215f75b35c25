package cluster_test

import (
	"context"
	"testing"
	"time"

	resourceapi "k8s.io/api/resource/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/wasmlet/wasmlet/tests/k8s/cluster"
)

// TestCluster starts the real control plane, stores a ResourceSlice
// (resource.k8s.io/v1) through it, reads it back after the API server was
// stopped and started again on the same etcd, and sees requests refused
// while it was down.
func TestCluster(t *testing.T) {
	start := time.Now()
	c := cluster.Start(t)
	t.Logf("etcd and kube-apiserver started in %v", time.Since(start).Round(time.Millisecond))
	ctx := context.Background()

	slice := &resourceapi.ResourceSlice{
		ObjectMeta: metav1.ObjectMeta{Name: "node-a-gpu"},
		Spec: resourceapi.ResourceSliceSpec{
			Driver:   "gpu.example.com",
			NodeName: ptr("node-a"),
			Pool:     resourceapi.ResourcePool{Name: "node-a", ResourceSliceCount: 1},
			Devices:  []resourceapi.Device{{Name: "gpu-0"}},
		},
	}
	if _, err := c.Client.ResourceV1().ResourceSlices().Create(ctx, slice, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The API server validates: a device name that is not a DNS label is refused.
	bad := slice.DeepCopy()
	bad.Name, bad.Spec.Devices[0].Name = "bad", "0000:00:1f.6"
	if _, err := c.Client.ResourceV1().ResourceSlices().Create(ctx, bad, metav1.CreateOptions{}); !apierrors.IsInvalid(err) {
		t.Fatalf("a device named 0000:00:1f.6: got %v, want Invalid", err)
	}

	c.Stop()
	if _, err := c.Client.ResourceV1().ResourceSlices().Get(ctx, slice.Name, metav1.GetOptions{}); err == nil {
		t.Fatal("the API server answered while stopped")
	}
	start = time.Now()
	c.Start()
	t.Logf("kube-apiserver started again in %v", time.Since(start).Round(time.Millisecond))
	got, err := c.Client.ResourceV1().ResourceSlices().Get(ctx, slice.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Spec.Devices[0].Name != "gpu-0" {
		t.Fatalf("got %+v", got.Spec)
	}
}

func ptr[T any](v T) *T { return &v }
