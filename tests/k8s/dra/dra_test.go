package dra

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	resourceapi "k8s.io/api/resource/v1"
	apiresource "k8s.io/apimachinery/pkg/api/resource"
	drapb "k8s.io/kubelet/pkg/apis/dra/v1"

	"github.com/wasmlet/wasmlet/guests/testmodules/filesource/filefmt"
	"github.com/wasmlet/wasmlet/host/dradriver"
	"github.com/wasmlet/wasmlet/internal/testkit"
)

// gpu is a filesource device with an attribute of each type, a capacity and
// a share of the counter set of its name's GPU.
func gpu(id string, index int64, memory string) filefmt.Device {
	return filefmt.Device{ID: id, Strings: map[string]string{"model": "A100"}, Ints: map[string]int64{"index": index},
		Versions: map[string]string{"driverVersion": "1.2.3"}, Capacity: map[string]string{"memory": memory},
		Consumes: []filefmt.Consumption{{CounterSet: "gpu-0", Counters: map[string]string{"memory": memory}}}}
}

var gpu0Counters = []filefmt.CounterSet{{Name: "gpu-0", Counters: map[string]string{"memory": "40Gi"}}}

// TestSlicesFollowDiscovery: a source's devices are ResourceSlices in the
// real API server — typed attributes, capacity, shared counters and their
// consumption, owned by the Node, in the node's pool — and they follow its
// discovery: a device appearing, a partition going, counters changing, a
// device turning unhealthy (a taint); removing the source withdraws them.
func TestSlicesFollowDiscovery(t *testing.T) {
	e := newEnv(t)
	e.setDevices(t, gpu0Counters, gpu("gpu-0", 0, "40Gi"), gpu("gpu-0-half", 1, "20Gi"))
	w := e.startWasmlet(t, "filesource")

	var devs map[string]resourceapi.Device
	var counters []resourceapi.CounterSet
	testkit.Eventually(t, "gpu-0 and gpu-0-half in the API server", func() bool {
		devs, counters = devicesOf(e.slices(t, fileDriver))
		return len(devs) == 2
	})
	slices := e.slices(t, fileDriver)
	for _, s := range slices {
		if s.Spec.NodeName == nil || *s.Spec.NodeName != e.nodeName || s.Spec.Pool.Name != e.nodeName {
			t.Errorf("slice %s: node %v, pool %q: want node and pool %s", s.Name, s.Spec.NodeName, s.Spec.Pool.Name, e.nodeName)
		}
		if len(s.OwnerReferences) != 1 || s.OwnerReferences[0].Kind != "Node" || s.OwnerReferences[0].UID != e.node.UID {
			t.Errorf("slice %s: owners %+v, want the Node %s (uid %s)", s.Name, s.OwnerReferences, e.nodeName, e.node.UID)
		}
	}
	d := devs["gpu-0"]
	if a := d.Attributes["model"]; a.StringValue == nil || *a.StringValue != "A100" {
		t.Errorf("gpu-0 model: %+v", a)
	}
	if a := d.Attributes["index"]; a.IntValue == nil || *a.IntValue != 0 {
		t.Errorf("gpu-0 index: %+v", a)
	}
	if a := d.Attributes["driverVersion"]; a.VersionValue == nil || *a.VersionValue != "1.2.3" {
		t.Errorf("gpu-0 driverVersion: %+v", a)
	}
	if c := d.Capacity["memory"]; c.Value.Cmp(apiresource.MustParse("40Gi")) != 0 {
		t.Errorf("gpu-0 memory capacity: %v", c.Value.String())
	}
	if len(d.ConsumesCounters) != 1 || d.ConsumesCounters[0].CounterSet != "gpu-0" ||
		!quantity(d.ConsumesCounters[0].Counters["memory"], "40Gi") {
		t.Errorf("gpu-0 consumes %+v", d.ConsumesCounters)
	}
	if len(counters) != 1 || counters[0].Name != "gpu-0" || !quantity(counters[0].Counters["memory"], "40Gi") {
		t.Errorf("shared counters %+v", counters)
	}
	testkit.Eventually(t, "the driver's status to say published", func() bool {
		return w.driver(fileDriver).Slices == dradriver.SlicesPublished
	})

	// A device appears, a partition goes, the counters grow.
	e.setDevices(t, []filefmt.CounterSet{{Name: "gpu-0", Counters: map[string]string{"memory": "80Gi"}}},
		gpu("gpu-0", 0, "40Gi"), gpu("gpu-1", 2, "40Gi"))
	testkit.Eventually(t, "gpu-1 in, gpu-0-half out, 80Gi of counters", func() bool {
		devs, counters = devicesOf(e.slices(t, fileDriver))
		_, in := devs["gpu-1"]
		_, out := devs["gpu-0-half"]
		return in && !out && len(counters) == 1 && quantity(counters[0].Counters["memory"], "80Gi")
	})

	// A device turns unhealthy: tainted, so that the scheduler leaves it.
	bad := gpu("gpu-1", 2, "40Gi")
	bad.Unhealthy = true
	e.setDevices(t, gpu0Counters, gpu("gpu-0", 0, "40Gi"), bad)
	testkit.Eventually(t, "gpu-1 tainted", func() bool {
		devs, _ = devicesOf(e.slices(t, fileDriver))
		return len(devs["gpu-1"].Taints) == 1 && len(devs["gpu-0"].Taints) == 0
	})

	// The source goes: its slices are withdrawn.
	if err := os.Remove(filepath.Join(e.dir, "wasmlet", "modules", "filesource.wasm")); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, "the slices withdrawn", func() bool { return len(e.slices(t, fileDriver)) == 0 })
}

// TestPrepareThroughKubelet: a claim allocated by the upstream structured
// allocator against the slices wasmlet published, as the scheduler
// allocates it, is prepared through the kubelet's own DRA plugin client:
// the answer has the module's CDI device and the claim's own CDI spec; a
// second prepare gives the same answer; after wasmlet restarts, unprepare
// works from the checkpoint, and removes the claim's CDI spec.
func TestPrepareThroughKubelet(t *testing.T) {
	e := newEnv(t)
	k, w := e.startGPUs(t)
	claim := e.allocatedClaim(t, gpuDriver, "gpu", `device.attributes["gpu.example.com"].type == "gpu"`, "pod-a")
	dev := claim.Status.Allocation.Devices.Results[0].Device

	ctx := context.Background()
	req := &drapb.NodePrepareResourcesRequest{Claims: []*drapb.Claim{ref(claim)}}
	resp, err := k.plugin(gpuDriver).NodePrepareResources(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	got := resp.Claims[string(claim.UID)]
	if got == nil || got.Error != "" || len(got.Devices) != 1 {
		t.Fatalf("NodePrepareResources: %+v", resp)
	}
	pd := got.Devices[0]
	if pd.DeviceName != dev || pd.PoolName != e.nodeName || !slices.Equal(pd.RequestNames, []string{"gpu"}) {
		t.Errorf("prepared %+v, want device %s of pool %s for request gpu", pd, dev, e.nodeName)
	}
	t.Logf("CDI device IDs: %v", pd.CdiDeviceIds)
	if !slices.Contains(pd.CdiDeviceIds, "gpu.example.com/gpu="+dev) {
		t.Errorf("CDI device IDs %v: want the module's gpu.example.com/gpu=%s", pd.CdiDeviceIds, dev)
	}
	spec := claimSpec(t, e.cdi, string(claim.UID))
	if spec == "" {
		t.Fatalf("no CDI spec of claim %s in %s", claim.UID, e.cdi)
	}
	again, err := k.plugin(gpuDriver).NodePrepareResources(ctx, req)
	if err != nil || !slices.Equal(again.Claims[string(claim.UID)].Devices[0].CdiDeviceIds, pd.CdiDeviceIds) {
		t.Fatalf("prepare again: %+v, %v; want the same answer", again, err)
	}
	if n := w.driver(gpuDriver).Prepared; n != 1 {
		t.Errorf("%d claims prepared, want 1", n)
	}

	// wasmlet restarts: the kubelet unprepares with what it has, the
	// claim's name and UID.
	w.stop(t)
	w = e.startWasmlet(t, "gpusim")
	if n := w.driver(gpuDriver).Prepared; n != 1 {
		t.Errorf("after a restart, %d claims prepared, want 1 (from the checkpoint)", n)
	}
	testkit.Eventually(t, "the kubelet to register gpu.example.com again", func() bool {
		return w.driver(gpuDriver).State == dradriver.StateRegistered && k.plugin(gpuDriver) != nil
	})
	ureq := &drapb.NodeUnprepareResourcesRequest{Claims: req.Claims}
	for i := range 2 { // the second is a claim no longer prepared: no error
		uresp, err := k.plugin(gpuDriver).NodeUnprepareResources(ctx, ureq)
		if err != nil || uresp.Claims[string(claim.UID)] == nil || uresp.Claims[string(claim.UID)].Error != "" {
			t.Fatalf("unprepare %d: %+v, %v", i+1, uresp, err)
		}
	}
	if n := w.driver(gpuDriver).Prepared; n != 0 {
		t.Errorf("%d claims prepared after unprepare, want 0", n)
	}
	if s := claimSpec(t, e.cdi, string(claim.UID)); s != "" {
		t.Errorf("the claim's CDI spec %s is still there", s)
	}
}

// quantity says whether c is q.
func quantity(c resourceapi.Counter, q string) bool {
	return c.Value.Cmp(apiresource.MustParse(q)) == 0
}

// claimSpec is the CDI spec file in dir that names uid, or "".
func claimSpec(tb testing.TB, dir, uid string) string {
	tb.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		tb.Fatal(err)
	}
	for _, ent := range entries {
		b, err := os.ReadFile(filepath.Join(dir, ent.Name()))
		if err == nil && strings.Contains(string(b), uid) {
			return ent.Name()
		}
	}
	return ""
}

// TestKubeletRestart: a kubelet that restarts with a new plugin registry
// (its directory removed and created again) finds the driver's registration
// socket served again, and registers it; the slices that the new kubelet
// deletes when it starts are published again at once; device health
// reaches the kubelet. Three restarts: each serves the sockets once more,
// and only once (the removal of the sockets the driver replaced is not
// taken for another deletion, which would unregister it again).
func TestKubeletRestart(t *testing.T) {
	e := newEnv(t)
	k, w := e.startFileGPU(t)
	testkit.Eventually(t, "the device's health at the kubelet", func() bool {
		return k.health.of(fileDriver+"/"+e.nodeName+"/gpu-0") == "HEALTHY"
	})
	for i := range 3 {
		before := w.driver(fileDriver)
		k.cancel()
		e.removeRegistry(t)
		start := time.Now()
		k = e.startKubelet(t)
		testkit.Eventually(t, "the new kubelet to register file.example.com", func() bool {
			return w.driver(fileDriver).Registrations > before.Registrations && k.plugin(fileDriver) != nil
		})
		t.Logf("registered again %v after the kubelet restarted", time.Since(start).Round(time.Millisecond))
		testkit.Eventually(t, "the slices back after the new kubelet wiped them", func() bool {
			devs, _ := devicesOf(e.slices(t, fileDriver))
			_, ok := devs["gpu-0"]
			return ok
		})
		t.Logf("slices back %v after the kubelet restarted", time.Since(start).Round(time.Millisecond))
		if st := w.driver(fileDriver); st.Starts != before.Starts+1 || st.Registrations != before.Registrations+1 {
			t.Errorf("restart %d: sockets served %d times, registered %d times; want once more each (%d, %d)",
				i+1, st.Starts, st.Registrations, before.Starts+1, before.Registrations+1)
		}
	}
}

// TestAPIServerOutage: while the API server is down the driver says so in
// status and readiness, and keeps running; a device that appeared meanwhile
// is in the slices once the API server is back.
func TestAPIServerOutage(t *testing.T) {
	e := newEnv(t)
	e.setDevices(t, gpu0Counters, gpu("gpu-0", 0, "40Gi"))
	w := e.startWasmlet(t, "filesource")
	testkit.Eventually(t, "published", func() bool { return w.driver(fileDriver).Slices == dradriver.SlicesPublished })

	e.c.Stop() // started again by newEnv's cleanup, should the test fail
	e.setDevices(t, gpu0Counters, gpu("gpu-0", 0, "40Gi"), gpu("gpu-1", 1, "40Gi"))
	testkit.Eventually(t, "the driver to report the API server unreachable", func() bool {
		return w.driver(fileDriver).Slices == dradriver.SlicesUnreachable
	})
	why := w.Node.DRA().NotReady()
	if !strings.Contains(why, "API server") {
		t.Errorf("not ready: %q, want the API server named", why)
	}
	t.Logf("while the API server is down: %s", why)

	e.c.Start()
	start := time.Now()
	testkit.Eventually(t, "gpu-1 in the API server", func() bool {
		devs, _ := devicesOf(e.slices(t, fileDriver))
		_, ok := devs["gpu-1"]
		return ok
	})
	t.Logf("reconciled %v after the API server was back", time.Since(start).Round(time.Millisecond))
	testkit.Eventually(t, "published again", func() bool {
		return w.driver(fileDriver).Slices == dradriver.SlicesPublished && w.Node.DRA().NotReady() == ""
	})
}
