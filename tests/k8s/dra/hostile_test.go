package dra

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	drapb "k8s.io/kubelet/pkg/apis/dra/v1"

	"github.com/wasmlet/wasmlet/guests/testmodules/filesource/filefmt"
	"github.com/wasmlet/wasmlet/host/dradriver"
	"github.com/wasmlet/wasmlet/internal/testkit"
)

// TestDiscoveryTheAPIServerWouldRefuse: a source's discovery that, sent as
// it is, the API server would refuse or that would fill it is published as
// valid slices, and what had to be left out is said. Its devices are PCI
// addresses, which are not DNS labels (as device names must be), one of
// them beside a device whose id is the name the other maps to; it has nine
// shared counter sets (a slice holds eight); and more devices than
// max_devices. The slices hold every device that fits, under names of
// their own, and all nine sets; the device that collides and those beyond
// the limit are left out, by id, in status. A claim the upstream allocator
// gives the PCI device is prepared through the kubelet's client: the
// kubelet sees the device's name in the slices, the module its id.
func TestDiscoveryTheAPIServerWouldRefuse(t *testing.T) {
	e := newEnv(t)
	e.maxDevices = 12
	pci, twin := "0000:3b:00.0", "0000:00:1f.6"
	kind := func(k string) map[string]string { return map[string]string{"kind": k} }
	devs := []filefmt.Device{
		{ID: pci, Strings: kind("target")},
		{ID: twin, Strings: kind("nic")},
		{ID: dradriver.DeviceName(twin), Strings: kind("nic")}, // sorts first: twin is the one left out
	}
	var counters []filefmt.CounterSet
	for i := range 9 {
		set := fmt.Sprintf("gpu-%d", i)
		counters = append(counters, filefmt.CounterSet{Name: set, Counters: map[string]string{"memory": "40Gi"}})
		devs = append(devs, filefmt.Device{ID: set, Strings: kind("gpu"),
			Consumes: []filefmt.Consumption{{CounterSet: set, Counters: map[string]string{"memory": "40Gi"}}}})
	}
	for i := range 5 {
		devs = append(devs, filefmt.Device{ID: fmt.Sprintf("z-%d", i), Strings: kind("extra")})
	}
	e.setDevices(t, counters, devs...)
	k := e.startKubelet(t)
	w := e.startWasmlet(t, "filesource")
	testkit.Eventually(t, "the slices published", func() bool { return w.driver(fileDriver).Slices == dradriver.SlicesPublished })

	got, sets := devicesOf(e.slices(t, fileDriver))
	var names []string
	for name := range got {
		names = append(names, name)
	}
	slices.Sort(names)
	want := []string{dradriver.DeviceName(twin), dradriver.DeviceName(pci)}
	for i := range 9 {
		want = append(want, fmt.Sprintf("gpu-%d", i))
	}
	want = append(want, "z-0")
	slices.Sort(want)
	if !slices.Equal(names, want) {
		t.Errorf("devices in the API server:\n got %v\nwant %v", names, want)
	}
	if len(sets) != 9 {
		t.Errorf("%d counter sets in the API server, want 9", len(sets))
	}
	st := w.driver(fileDriver)
	t.Logf("left out: %d: %s", st.LeftOut, st.LeftOutReason)
	if st.Devices != 12 || st.LeftOut != 5 ||
		!strings.Contains(st.LeftOutReason, fmt.Sprintf(`device %q is named %q in the slices, as device %q already is`, twin, dradriver.DeviceName(twin), dradriver.DeviceName(twin))) ||
		!strings.Contains(st.LeftOutReason, `device "z-1" is beyond the 12 devices a driver publishes ([dra] max_devices)`) {
		t.Errorf("status: %d devices, %d left out: %s", st.Devices, st.LeftOut, st.LeftOutReason)
	}
	if why := w.Node.DRA().NotReady(); why != "" {
		t.Errorf("not ready: %s", why)
	}

	testkit.Eventually(t, "the kubelet to register file.example.com", func() bool { return k.plugin(fileDriver) != nil })
	claim := e.allocatedClaim(t, fileDriver, "nic", `device.attributes["file.example.com"].kind == "target"`, "pod-nic")
	ctx := context.Background()
	resp, err := k.plugin(fileDriver).NodePrepareResources(ctx, &drapb.NodePrepareResourcesRequest{
		Claims: []*drapb.Claim{ref(claim)}})
	if err != nil {
		t.Fatal(err)
	}
	c := resp.Claims[string(claim.UID)]
	if c == nil || c.Error != "" || len(c.Devices) != 1 {
		t.Fatalf("NodePrepareResources: %+v", resp)
	}
	if d := c.Devices[0]; d.DeviceName != dradriver.DeviceName(pci) || !slices.Contains(d.CdiDeviceIds, "example.com/file="+pci) {
		t.Errorf("prepared %+v: want device %s, and the module's CDI device example.com/file=%s", d, dradriver.DeviceName(pci), pci)
	}
}

// TestSourceRemovedFromConfig: wasmlet restarts with a source no longer
// served as a DRA driver (its module still loaded, its [sources] entry
// gone): the driver stays unregistered, and the kubelet deletes its slices
// after its wait, as it does for any DRA driver that goes; the other
// driver's slices stay.
func TestSourceRemovedFromConfig(t *testing.T) {
	e := newEnv(t)
	e.wipeDelay = 500 * time.Millisecond
	e.setDevices(t, gpu0Counters, gpu("gpu-0", 0, "40Gi"))
	k := e.startKubelet(t)
	w := e.startWasmlet(t, "filesource", "gpusim")
	testkit.Eventually(t, "both drivers registered", func() bool { return k.plugin(fileDriver) != nil && k.plugin(gpuDriver) != nil })
	testkit.Eventually(t, "file.example.com's slices", func() bool { return len(e.slices(t, fileDriver)) > 0 })

	w.stop(t)
	e.startWasmlet(t, "gpusim") // filesource.wasm is still in the module directory
	testkit.Eventually(t, "file.example.com's slices deleted", func() bool { return len(e.slices(t, fileDriver)) == 0 })
	testkit.Eventually(t, "gpu.example.com registered again", func() bool { return k.plugin(gpuDriver) != nil })
	testkit.Eventually(t, "file.example.com deregistered from the kubelet", func() bool { return k.plugin(fileDriver) == nil })
	testkit.Eventually(t, "gpu.example.com's slices published again", func() bool { return len(e.slices(t, gpuDriver)) > 0 })
}
