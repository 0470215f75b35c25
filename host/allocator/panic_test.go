package allocator_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/wasmlet/wasmlet/host/allocator"
	"github.com/wasmlet/wasmlet/host/device"
)

// TestUpstreamPanicIsTheClaimsError: the upstream allocator divides by a
// request policy's step, trusting the API server to have refused a step
// of 0. A pool that reaches it anyway (devicesource refuses such devices:
// this is the net under that check) fails the claim, not the node, and the
// allocator goes on serving.
func TestUpstreamPanicIsTheClaimsError(t *testing.T) {
	devs := []device.Device{{ID: "vgpu-0", Healthy: true, AllowMultipleAllocations: true,
		Capacity: map[string]device.Capacity{"memory": {Value: q("16Gi"), Policy: &device.CapacityPolicy{
			Default: qp("1Gi"), Min: qp("1Gi"), Step: qp("0")}}}}}
	a := allocator.New(allocator.Config{NodeName: "node-a"})
	a.SetPool(driver, "example.com/gpu", devs, nil)
	ctx := context.Background()
	_, err := a.Allocate(ctx, "a", claim(t, "c", "requests:\n"+request("vgpu", "capacity:\n  requests:\n    memory: 4Gi")))
	if err == nil || !strings.Contains(err.Error(), "the upstream allocator failed on claim default/c") ||
		!strings.Contains(err.Error(), "divide by zero") || errors.Is(err, allocator.ErrHeld) {
		t.Fatalf("got %v", err)
	}
	good, sets := gpus(2, 0, 0)
	a.SetPool(driver, "example.com/gpu", good, sets)
	if _, err := a.Allocate(ctx, "b", claim(t, "d", "requests:\n"+request("gpu", sel(isGPU)))); err != nil {
		t.Fatal(err)
	}
}
