package dra

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	resourceapi "k8s.io/api/resource/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	drapb "k8s.io/kubelet/pkg/apis/dra/v1"

	"github.com/wasmlet/wasmlet/host/dradriver"
	"github.com/wasmlet/wasmlet/internal/testkit"
)

// BenchmarkSliceUpdate measures the time from a device appearing in a
// source (filesource's file renamed into place) to the ResourceSlice that
// holds it updated in the API server, as a watch on ResourceSlices sees it.
// It includes the source's own settling of file events (100 ms) and its
// rediscovery; then the driver's publish through the kubelet plugin
// helper's ResourceSlice controller.
func BenchmarkSliceUpdate(b *testing.B) {
	e := newEnv(b)
	e.setDevices(b, gpu0Counters, gpu("gpu-0", 0, "40Gi"))
	w := e.startWasmlet(b, "filesource")
	testkit.Eventually(b, "published", func() bool { return w.driver(fileDriver).Slices == dradriver.SlicesPublished })
	ctx := context.Background()
	watcher, err := e.c.Client.ResourceV1().ResourceSlices().Watch(ctx, metav1.ListOptions{
		FieldSelector: e.selector(fileDriver)})
	if err != nil {
		b.Fatal(err)
	}
	defer watcher.Stop()
	b.ResetTimer()
	for i := range b.N {
		id := fmt.Sprintf("gpu-new-%d", i)
		e.setDevices(b, gpu0Counters, gpu("gpu-0", 0, "40Gi"), gpu(id, 1, "40Gi"))
		waitForDevice(b, watcher, id)
	}
}

// waitForDevice waits for a watch event of a slice holding device id.
func waitForDevice(b *testing.B, w watch.Interface, id string) {
	b.Helper()
	timeout := time.After(time.Minute)
	for {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				b.Fatal("the watch ended")
			}
			s, ok := ev.Object.(*resourceapi.ResourceSlice)
			if !ok || ev.Type == watch.Deleted {
				continue
			}
			if slices.ContainsFunc(s.Spec.Devices, func(d resourceapi.Device) bool { return d.Name == id }) {
				return
			}
		case <-timeout:
			b.Fatalf("device %s never reached the API server", id)
		}
	}
}

// BenchmarkNodePrepareResources measures the kubelet's NodePrepareResources
// of one claim of one gpusim device, through the kubelet's own DRA plugin
// client: the helper reads the claim from the API server, gpusim's prepare
// runs, the claim's CDI spec is written and its record made durable in the
// checkpoint (an fsync). Each claim is unprepared between iterations,
// outside the timing, and then the driver's client given the time to earn
// the request its next prepare makes (it is limited to the kubelet's 50
// requests a second): back to back, hundreds of prepares a second would
// measure that limit (p50 18 ms at 400 a second), not a prepare. p50 and
// p99 are of the iterations of one run.
func BenchmarkNodePrepareResources(b *testing.B) {
	e := newEnv(b)
	k, _ := e.startGPUs(b)
	claim := e.allocatedClaim(b, gpuDriver, "gpu", "", "pod-bench")
	ctx := context.Background()
	plugin := k.plugin(gpuDriver)
	claims := []*drapb.Claim{ref(claim)}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		resp, err := plugin.NodePrepareResources(ctx, &drapb.NodePrepareResourcesRequest{Claims: claims})
		lat = append(lat, time.Since(start))
		if err != nil || resp.Claims[string(claim.UID)].GetError() != "" {
			b.Fatalf("prepare: %v %v", err, resp)
		}
		b.StopTimer()
		if _, err := plugin.NodeUnprepareResources(ctx, &drapb.NodeUnprepareResourcesRequest{Claims: claims}); err != nil {
			b.Fatal(err)
		}
		time.Sleep(time.Second / 50)
		b.StartTimer()
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}

// BenchmarkKubeletRestart measures the time from a kubelet starting anew,
// with its plugin registry removed and created again, to the kubelet's
// plugin manager registering wasmlet's DRA driver (its reconciler runs
// every second: that is most of it).
func BenchmarkKubeletRestart(b *testing.B) {
	e := newEnv(b)
	k, w := e.startFileGPU(b)
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		regs := w.driver(fileDriver).Registrations
		k.cancel()
		e.removeRegistry(b)
		b.StartTimer()
		k = e.startKubelet(b)
		testkit.Eventually(b, "registered again", func() bool { return w.driver(fileDriver).Registrations > regs })
	}
}
