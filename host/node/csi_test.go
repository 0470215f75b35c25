package node

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/wasmlet/wasmlet/host/api/adminpb"
	"github.com/wasmlet/wasmlet/host/internal/testplugin"
	"github.com/wasmlet/wasmlet/host/pluginmanager"
	"github.com/wasmlet/wasmlet/internal/testkit"
)

// TestCSIDriverThroughHandler follows a CSI driver through a node: its
// registrar announces it as node-driver-registrar does, the csihandler
// module approves it, the node asks the driver for its node facts and
// records them, and the admin API lists them. A driver not up yet is refused
// with the reason, and registered on a retry; its registration socket's
// removal forgets it.
// (tests/k8s/csi runs the scenarios against a real CSI driver.)
func TestCSIDriverThroughHandler(t *testing.T) {
	h := start(t, map[string]string{"csihandler": "guests/csihandler"}, `
[modules.csihandler]
config = { endpoint_dirs = "" } # the test's directory is anywhere

[handlers]
CSIPlugin = "csihandler"
`)
	endpoint := filepath.Join(h.dir, "plugins", "hostpath", "csi.sock")
	reg := testplugin.StartRegistrant(t, filepath.Join(h.dir, "reg", "hostpath-reg.sock"), testplugin.Info{
		Type: "CSIPlugin", Name: "hostpath.csi.k8s.io", Endpoint: endpoint, Versions: []string{"1.0.0"}})

	s := reg.Expect(t, 10*time.Second)
	if s.Registered || !strings.Contains(s.Error, `CSI driver "hostpath.csi.k8s.io" at `+endpoint+` did not answer NodeGetInfo: Unavailable`) {
		t.Fatalf("%+v", s)
	}
	testplugin.StartCSIDriver(t, endpoint, testplugin.CSINodeInfo{NodeID: "node-a", MaxVolumes: 8,
		Topology:     map[string]string{"topology.hostpath.csi/node": "node-a"},
		Capabilities: []csipb.NodeServiceCapability_RPC_Type{csipb.NodeServiceCapability_RPC_STAGE_UNSTAGE_VOLUME}})
	for !s.Registered {
		s = reg.Expect(t, 10*time.Second) // refused until the next retry finds the driver up
	}
	drivers := h.n.CSI().List()
	if len(drivers) != 1 {
		t.Fatalf("drivers %+v", drivers)
	}
	if d := drivers[0]; d.Name != "hostpath.csi.k8s.io" || d.Version != "1.0.0" || d.Endpoint != endpoint || d.NodeID != "node-a" ||
		d.MaxVolumes != 8 || d.Topology["topology.hostpath.csi/node"] != "node-a" ||
		strings.Join(d.Capabilities, ",") != "STAGE_UNSTAGE_VOLUME" || d.SocketPath != reg.Path {
		t.Fatalf("driver %+v", d)
	}
	plugins := h.n.Plugins().Plugins()
	if len(plugins) != 1 {
		t.Fatalf("plugins %+v", plugins)
	}
	if p := plugins[0]; p.State != pluginmanager.StateRegistered || p.Handler != "csihandler" || p.Action != "csi-driver" ||
		p.Endpoint != endpoint || p.Attributes["csi_version"] != "1.0.0" {
		t.Fatalf("plugin %+v", p)
	}
	c := testkit.DialAPI(t, h.cfg.Host.APISocket)
	ctx := context.Background()
	listed, err := c.ListCSIDrivers(ctx, &adminpb.ListCSIDriversRequest{})
	if err != nil || len(listed.Drivers) != 1 {
		t.Fatalf("ListCSIDrivers: %v, %v", listed, err)
	}
	if d := listed.Drivers[0]; d.Name != "hostpath.csi.k8s.io" || d.Version != "1.0.0" || d.Endpoint != endpoint ||
		d.RegistrationSocket != reg.Path || d.NodeId != "node-a" || d.MaxVolumes != 8 ||
		d.Topology["topology.hostpath.csi/node"] != "node-a" || strings.Join(d.Capabilities, ",") != "STAGE_UNSTAGE_VOLUME" ||
		!d.Registered.AsTime().Equal(drivers[0].Registered) {
		t.Fatalf("listed %v", d)
	}
	if st, err := c.Status(ctx, &adminpb.StatusRequest{}); err != nil || st.Counts.CsiDrivers != 1 {
		t.Fatalf("status: %v, %v", st, err)
	}
	h.metricsHave("wasmlet_csi_drivers 1", `wasmlet_plugin_registrations_total{outcome="ok",type="CSIPlugin"} 1`,
		`wasmlet_plugin_registrations_total{outcome="refused",type="CSIPlugin"}`)

	// The registrar goes (the driver's pod is deleted): the driver and its
	// facts are forgotten.
	reg.Stop()
	h.eventually("the driver forgotten", func() bool { return h.n.CSI().Len() == 0 })
	h.metricsHave("wasmlet_csi_drivers 0")
	if listed, err := c.ListCSIDrivers(ctx, &adminpb.ListCSIDriversRequest{}); err != nil || len(listed.Drivers) != 0 {
		t.Fatalf("after the driver went: %v, %v", listed, err)
	}
}
