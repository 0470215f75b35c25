package csi_test

import (
	"context"
	"math"
	"math/rand"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/wasmlet/wasmlet/abi"
	"github.com/wasmlet/wasmlet/host/csi"
	"github.com/wasmlet/wasmlet/host/internal/testenv"
	"github.com/wasmlet/wasmlet/host/internal/testplugin"
)

var facts = testplugin.CSINodeInfo{NodeID: "node-1", MaxVolumes: 16,
	Topology: map[string]string{"topology.hostpath.csi/node": "node-1"},
	Capabilities: []csipb.NodeServiceCapability_RPC_Type{csipb.NodeServiceCapability_RPC_UNKNOWN,
		csipb.NodeServiceCapability_RPC_STAGE_UNSTAGE_VOLUME, csipb.NodeServiceCapability_RPC_GET_VOLUME_STATS}}

// registration is what the csihandler module decides for what
// node-driver-registrar announces (versions ["1.0.0"]).
func registration(dir, name string) csi.Registration {
	return csi.Registration{Name: name, Endpoint: filepath.Join(dir, name+".sock"), Offered: []string{"1.0.0"}, Version: "1.0.0",
		SocketPath: filepath.Join(dir, "registry", name+"-reg.sock")}
}

func newDrivers(t *testing.T) (*csi.Drivers, *atomic.Int64) {
	var n atomic.Int64
	n.Store(-1)
	return csi.New(csi.Config{Logger: testenv.Logger(t, 0), Observe: func(c int) { n.Store(int64(c)) }}), &n
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestRegisterRecordsTheNodeFacts(t *testing.T) {
	dir := testenv.ShortDir(t)
	ds, n := newDrivers(t)
	r := registration(dir, "hostpath.csi.k8s.io")
	testplugin.StartCSIDriver(t, r.Endpoint, facts)
	r.Version, r.Offered = "", []string{"0.3.0", "1.5.0", "1.0.0", "2.0.0"} // no choice: the kubelet's
	before := time.Now()
	d, err := ds.Register(ctx(t), r)
	if err != nil {
		t.Fatal(err)
	}
	want := csi.Driver{Name: r.Name, Version: "1.5.0", Endpoint: r.Endpoint, SocketPath: r.SocketPath, NodeID: "node-1",
		MaxVolumes: 16, Topology: map[string]string{"topology.hostpath.csi/node": "node-1"},
		Capabilities: []string{"STAGE_UNSTAGE_VOLUME", "GET_VOLUME_STATS"}, Registered: d.Registered}
	if !reflect.DeepEqual(d, want) || d.Registered.Before(before) {
		t.Fatalf("registered %+v\nwant %+v", d, want)
	}
	if l := ds.List(); len(l) != 1 || !reflect.DeepEqual(l[0], want) || n.Load() != 1 {
		t.Fatalf("listed %+v, observed %d", l, n.Load())
	}
	// What List returns is the caller's.
	ds.List()[0].Topology["x"] = "y"
	if _, ok := ds.List()[0].Topology["x"]; ok {
		t.Fatal("List shares its maps")
	}

	if ds.Deregister(r.Name, "/elsewhere/reg.sock") || ds.Len() != 1 {
		t.Fatal("a socket that did not register the driver deregistered it")
	}
	if !ds.Deregister(r.Name, r.SocketPath) || ds.Len() != 0 || len(ds.List()) != 0 || n.Load() != 0 {
		t.Fatalf("after deregistration: %d drivers, observed %d", ds.Len(), n.Load())
	}
}

// TestRefusals: each way a registration is refused, and what the reason
// says. No driver is recorded for any of them.
func TestRefusals(t *testing.T) {
	dir := testenv.ShortDir(t)
	ds, _ := newDrivers(t)
	serve := func(name string, info testplugin.CSINodeInfo) csi.Registration {
		r := registration(dir, name)
		testplugin.StartCSIDriver(t, r.Endpoint, info)
		return r
	}
	with := func(f func(*testplugin.CSINodeInfo)) testplugin.CSINodeInfo {
		i := facts
		i.Topology = map[string]string{"topology.hostpath.csi/node": "node-1"}
		f(&i)
		return i
	}
	down := registration(dir, "down.csi.example.com") // no socket at all
	refused := registration(dir, "refused.csi.example.com")
	testenv.WriteFile(t, refused.Endpoint, nil) // a file, not a socket
	for _, c := range []struct {
		what string
		r    csi.Registration
		want []string
	}{
		{"empty node id", serve("empty.csi.example.com", with(func(i *testplugin.CSINodeInfo) { i.NodeID = "" })),
			[]string{`CSI driver "empty.csi.example.com" at ` + dir + `/empty.csi.example.com.sock answered NodeGetInfo with an empty node id`}},
		{"node id too long", serve("long.csi.example.com", with(func(i *testplugin.CSINodeInfo) { i.NodeID = strings.Repeat("n", 257) })),
			[]string{"answered NodeGetInfo with a node id of 257 bytes; a CSINode allows at most 256"}},
		{"topology key", serve("key.csi.example.com", with(func(i *testplugin.CSINodeInfo) { i.Topology = map[string]string{"zone!": "a"} })),
			[]string{`accessible topology the node cannot have as labels: key "zone!": name part must consist of alphanumeric characters`}},
		{"topology value", serve("value.csi.example.com", with(func(i *testplugin.CSINodeInfo) { i.Topology = map[string]string{"zone": "a b"} })),
			[]string{`zone="a b": a valid label must be`}},
		{"endpoint down", down, []string{`CSI driver "down.csi.example.com" at ` + down.Endpoint + ` did not answer NodeGetInfo: Unavailable`,
			"no such file or directory"}},
		{"endpoint not a socket", refused, []string{"did not answer NodeGetInfo: Unavailable", "connection refused"}},
		{"version not offered", func() csi.Registration { r := registration(dir, "v.example.com"); r.Version = "1.2.0"; return r }(),
			[]string{`the handler chose CSI spec version "1.2.0", which the driver did not offer (it offered 1.0.0)`}},
		{"version 0.x", func() csi.Registration {
			r := registration(dir, "v.example.com")
			r.Version, r.Offered = "0.3.0", []string{"0.3.0"}
			return r
		}(), []string{`the handler chose "0.3.0", which is not a CSI spec 1.x version`}},
		{"no 1.x offered", func() csi.Registration {
			r := registration(dir, "v.example.com")
			r.Version, r.Offered = "", []string{"0.3.0"}
			return r
		}(), []string{"none of the versions offered (0.3.0) is a supported CSI spec version", "must be v1.x"}},
		{"name", registration(dir, "csi_driver"), []string{`CSI driver name "csi_driver" is not a domain name`}},
	} {
		t.Run(c.what, func(t *testing.T) {
			_, err := ds.Register(ctx(t), c.r)
			for _, w := range c.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Fatalf("got %v, want %q", err, w)
				}
			}
			if ds.Len() != 0 {
				t.Fatalf("refused, but recorded: %+v", ds.List())
			}
		})
	}
}

// A driver that accepts the connection but never answers is refused when
// the registration's time is up, and says so.
func TestSilentDriver(t *testing.T) {
	dir := testenv.ShortDir(t)
	ds, _ := newDrivers(t)
	r := registration(dir, "silent.csi.example.com")
	d := testplugin.StartCSIDriver(t, r.Endpoint, facts)
	d.Hang()
	c, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := ds.Register(c, r)
	if err == nil || !strings.Contains(err.Error(), r.Endpoint+" did not answer NodeGetInfo: no answer within the registration's time (context deadline exceeded)") {
		t.Fatalf("got %v", err)
	}
	if d.Calls() != 1 || ds.Len() != 0 {
		t.Fatalf("%d calls, %d drivers", d.Calls(), ds.Len())
	}
}

// The node id may be as long as a CSINode allows; the maximum volumes are
// kept as the kubelet keeps them (negative: none; beyond int32: truncated).
func TestLimits(t *testing.T) {
	dir := testenv.ShortDir(t)
	ds, _ := newDrivers(t)
	for _, c := range []struct {
		name       string
		nodeID     string
		max, wantM int64
	}{
		{"a.example.com", strings.Repeat("n", 256), 5, 5},
		{"b.example.com", "b", -3, 0},
		{"c.example.com", "c", math.MaxInt64, math.MaxInt32},
	} {
		r := registration(dir, c.name)
		testplugin.StartCSIDriver(t, r.Endpoint, testplugin.CSINodeInfo{NodeID: c.nodeID, MaxVolumes: c.max})
		d, err := ds.Register(ctx(t), r)
		if err != nil {
			t.Fatal(err)
		}
		if d.NodeID != c.nodeID || d.MaxVolumes != c.wantM || d.Topology != nil || d.Capabilities != nil {
			t.Errorf("%s: %+v", c.name, d)
		}
	}
}

// The kubelet's rule for one driver name announced by two registration
// sockets: the second is refused unless it brings a higher version, and
// then takes over; the first socket's going does not remove it.
func TestSameDriverTwice(t *testing.T) {
	dir := testenv.ShortDir(t)
	ds, _ := newDrivers(t)
	first := registration(dir, "twice.csi.example.com")
	testplugin.StartCSIDriver(t, first.Endpoint, facts)
	if _, err := ds.Register(ctx(t), first); err != nil {
		t.Fatal(err)
	}
	second := first
	second.SocketPath = filepath.Join(dir, "registry", "other-reg.sock")
	_, err := ds.Register(ctx(t), second)
	if err == nil || !strings.Contains(err.Error(), `CSI driver "twice.csi.example.com" is already registered, through `+first.SocketPath+
		`, with the same or a higher supported version (1.0.0); not registering it again at version 1.0.0`) {
		t.Fatalf("got %v", err)
	}
	// The same socket again (its registration redone) is no conflict.
	if _, err := ds.Register(ctx(t), first); err != nil {
		t.Fatal(err)
	}
	second.Offered, second.Version = []string{"1.0.0", "1.1.0"}, "1.1.0"
	if d, err := ds.Register(ctx(t), second); err != nil || d.SocketPath != second.SocketPath {
		t.Fatalf("a higher version did not take over: %+v, %v", d, err)
	}
	if ds.Deregister(first.Name, first.SocketPath) || ds.Len() != 1 {
		t.Fatal("the superseded socket's deregistration removed the driver")
	}
}

// Two drivers cannot give the node one label two values.
func TestTopologyCollision(t *testing.T) {
	dir := testenv.ShortDir(t)
	ds, _ := newDrivers(t)
	a, b := registration(dir, "a.example.com"), registration(dir, "b.example.com")
	testplugin.StartCSIDriver(t, a.Endpoint, testplugin.CSINodeInfo{NodeID: "n", Topology: map[string]string{"example.com/zone": "z1", "x": "1"}})
	testplugin.StartCSIDriver(t, b.Endpoint, testplugin.CSINodeInfo{NodeID: "n", Topology: map[string]string{"example.com/zone": "z2"}})
	if _, err := ds.Register(ctx(t), a); err != nil {
		t.Fatal(err)
	}
	_, err := ds.Register(ctx(t), b)
	if err == nil || !strings.Contains(err.Error(), `reported topology example.com/zone="z2", but CSI driver "a.example.com" has example.com/zone="z1"`) {
		t.Fatalf("got %v", err)
	}
	ds.Deregister(a.Name, a.SocketPath)
	if _, err := ds.Register(ctx(t), b); err != nil {
		t.Fatalf("after the other driver went: %v", err)
	}
}

// TestDriverNameAgreesWithKubernetes checks abi.ValidCSIDriverName, which
// the handler module and this package apply, against the rule the API
// server applies to a CSINode's drivers (ValidateCSIDriverName: at most 63
// characters, a DNS-1123 subdomain once lower-cased), on ASCII names.
func TestDriverNameAgreesWithKubernetes(t *testing.T) {
	kube := func(s string) bool {
		return s != "" && len(s) <= 63 && len(validation.IsDNS1123Subdomain(strings.ToLower(s))) == 0
	}
	names := []string{"", "a", "A", "hostpath.csi.k8s.io", "a-b.c", "-a", "a-", "a..b", ".a", "a.", "a_b", "a/b", "A.B.C",
		strings.Repeat("a", 63), strings.Repeat("a", 64), "a.-b", "a-.b", "0.0", "x\x00y"}
	rng := rand.New(rand.NewSource(1))
	const alphabet = "aZ09-._/ "
	for range 20000 {
		b := make([]byte, rng.Intn(12))
		for i := range b {
			b[i] = alphabet[rng.Intn(len(alphabet))]
		}
		names = append(names, string(b))
	}
	for _, s := range names {
		if ours := abi.ValidCSIDriverName(s) == nil; ours != kube(s) {
			t.Fatalf("%q: wasmlet says valid=%v, Kubernetes %v", s, ours, kube(s))
		}
	}
}
