package registration

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
	mockdriver "k8s.io/kubernetes/test/e2e/storage/drivers/csi-test/driver"
	"k8s.io/kubernetes/test/e2e/storage/drivers/csi-test/mock/service"

	"github.com/wasmlet/wasmlet/host/api/adminpb"
	"github.com/wasmlet/wasmlet/host/csi"
	"github.com/wasmlet/wasmlet/host/pluginmanager"
	"github.com/wasmlet/wasmlet/internal/testkit"
)

// The CSI driver in these tests is Kubernetes' own mock CSI driver
// (k8s.io/kubernetes/test/e2e/storage/drivers/csi-test/mock/service, the
// in-memory driver the storage e2e tests deploy; csi-test/v5 keeps only
// gomock stubs), served on a unix socket by its own gRPC wrapper. Its node
// id is its name, and it reports the attach limit and topology it is
// configured with.

// csiDriver is a running mock CSI driver.
type csiDriver struct {
	endpoint string
	drv      *mockdriver.CSIDriver
}

// startCSIDriver serves the mock driver named name on endpoint.
func startCSIDriver(tb testing.TB, endpoint string, cfg service.Config) *csiDriver {
	tb.Helper()
	if err := os.MkdirAll(filepath.Dir(endpoint), 0o755); err != nil {
		tb.Fatal(err)
	}
	lis, err := net.Listen("unix", endpoint)
	if err != nil {
		tb.Fatal(err)
	}
	svc := service.New(cfg)
	drv := mockdriver.NewCSIDriver(&mockdriver.CSIDriverServers{Identity: svc, Node: svc, Controller: svc})
	// A pass-through interceptor: the default one logs every call as JSON.
	pass := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		return h(ctx, req)
	}
	if err := drv.Start(lis, pass); err != nil {
		tb.Fatal(err)
	}
	d := &csiDriver{endpoint: endpoint, drv: drv}
	tb.Cleanup(d.stop)
	return d
}

func (d *csiDriver) stop() {
	if d.drv != nil {
		d.drv.Stop()
		os.Remove(d.endpoint)
		d.drv = nil
	}
}

// registrar does what node-driver-registrar does for a CSI driver: it asks
// the driver its name (GetPluginInfo), serves the plugin registration API
// on <registry>/<name>-reg.sock, answers GetInfo with type CSIPlugin, the
// driver's name, its CSI endpoint and versions ["1.0.0"] (or those given),
// and records every NotifyRegistrationStatus.
type registrar struct {
	registerapi.UnimplementedRegistrationServer
	name     string
	endpoint string
	versions []string
	socket   string
	srv      *grpc.Server
	statuses chan *registerapi.RegistrationStatus
	once     sync.Once
}

func startRegistrar(tb testing.TB, registry, endpoint string, versions ...string) *registrar {
	tb.Helper()
	conn, err := grpc.NewClient("unix://"+endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	info, err := csipb.NewIdentityClient(conn).GetPluginInfo(ctx, &csipb.GetPluginInfoRequest{})
	if err != nil {
		tb.Fatalf("GetPluginInfo at %s: %v", endpoint, err)
	}
	if versions == nil {
		versions = []string{"1.0.0"}
	}
	r := &registrar{name: info.GetName(), endpoint: endpoint, versions: versions,
		socket: filepath.Join(registry, info.GetName()+"-reg.sock"), statuses: make(chan *registerapi.RegistrationStatus, 16)}
	lis, err := net.Listen("unix", r.socket)
	if err != nil {
		tb.Fatal(err)
	}
	r.srv = grpc.NewServer()
	registerapi.RegisterRegistrationServer(r.srv, r)
	go r.srv.Serve(lis)
	tb.Cleanup(r.stop)
	return r
}

func (r *registrar) GetInfo(context.Context, *registerapi.InfoRequest) (*registerapi.PluginInfo, error) {
	return &registerapi.PluginInfo{Type: registerapi.CSIPlugin, Name: r.name, Endpoint: r.endpoint, SupportedVersions: r.versions}, nil
}

func (r *registrar) NotifyRegistrationStatus(_ context.Context, s *registerapi.RegistrationStatus) (*registerapi.RegistrationStatusResponse, error) {
	r.statuses <- s
	return &registerapi.RegistrationStatusResponse{}, nil
}

// status is the next NotifyRegistrationStatus the registrar gets.
func (r *registrar) status(tb testing.TB) *registerapi.RegistrationStatus {
	tb.Helper()
	select {
	case s := <-r.statuses:
		return s
	case <-time.After(30 * time.Second):
		tb.Fatalf("registrar %s was not told its status", r.socket)
		return nil
	}
}

// stop stops serving and removes the registration socket, as
// node-driver-registrar does when its pod goes.
func (r *registrar) stop() {
	r.once.Do(func() {
		r.srv.Stop()
		os.Remove(r.socket)
	})
}

// startCSIWasmlet runs a node on the repository's plugins.toml, whose
// csihandler allows CSI sockets only under /var/lib/kubelet/plugins; the
// tests' sockets are in a temporary directory, so that one setting is
// opened up.
func startCSIWasmlet(tb testing.TB) *wasmlet {
	tb.Helper()
	toml := bundledConfig(tb)
	const bundled = `endpoint_dirs = "/var/lib/kubelet/plugins"`
	if strings.Count(toml, bundled) != 1 {
		tb.Fatalf("plugins.toml no longer configures csihandler with %s", bundled)
	}
	return startWasmlet(tb, strings.Replace(toml, bundled, `endpoint_dirs = ""`, 1), bundledModules, nil)
}

// drivers is what the node knows of its CSI drivers.
func (w *wasmlet) drivers() []csi.Driver { return w.Node.CSI().List() }

// TestCSIDriverLifecycle runs a real CSI driver and its registrar against
// a node started from the repository's plugins.toml: the driver registers
// and its node facts are recorded; restarted (its sockets recreated) it
// registers again, with its new facts; its registrar's socket removed, it
// is forgotten.
func TestCSIDriverLifecycle(t *testing.T) {
	w := startCSIWasmlet(t)
	dir := testkit.ShortDir(t)
	endpoint := filepath.Join(dir, "plugins", "mock", "csi.sock")
	cfg := service.Config{DriverName: "io.kubernetes.storage.mock", AttachLimit: 3, EnableTopology: true, NodeExpansionRequired: true}
	drv := startCSIDriver(t, endpoint, cfg)
	reg := startRegistrar(t, w.registry, endpoint)
	if s := reg.status(t); !s.PluginRegistered {
		t.Fatalf("not registered: %q", s.Error)
	}
	want := csi.Driver{Name: "io.kubernetes.storage.mock", Version: "1.0.0", Endpoint: endpoint, SocketPath: reg.socket,
		NodeID: "io.kubernetes.storage.mock", MaxVolumes: 3, Topology: map[string]string{service.TopologyKey: service.TopologyValue},
		Capabilities: []string{"STAGE_UNSTAGE_VOLUME", "GET_VOLUME_STATS", "EXPAND_VOLUME"}}
	checkDrivers(t, w, want)
	p, ok := w.plugin("io.kubernetes.storage.mock-reg")
	if !ok || p.State != pluginmanager.StateRegistered || p.Handler != "csihandler" || p.Action != "csi-driver" {
		t.Fatalf("plugin %+v", p)
	}
	// What the admin API and the wasmlet command show.
	sock := w.Node.Config().Host.APISocket
	c := testkit.DialAPI(t, sock)
	listed, err := c.ListCSIDrivers(context.Background(), &adminpb.ListCSIDriversRequest{})
	if err != nil || len(listed.Drivers) != 1 || listed.Drivers[0].NodeId != want.NodeID || listed.Drivers[0].MaxVolumes != 3 {
		t.Fatalf("ListCSIDrivers: %v, %v", listed, err)
	}
	cli := wasmletCommand(t)
	out := run(t, cli, "--socket", sock, "csi")
	for _, w := range []string{"DRIVER                      VERSION  NODE ID                     MAX VOLUMES  TOPOLOGY",
		"io.kubernetes.storage.mock  1.0.0    io.kubernetes.storage.mock  3            io.kubernetes.storage.mock/node=some-mock-node  STAGE_UNSTAGE_VOLUME,GET_VOLUME_STATS,EXPAND_VOLUME",
		endpoint} {
		if !strings.Contains(out, w) {
			t.Fatalf("wasmlet csi: no %q in\n%s", w, out)
		}
	}
	var asJSON struct {
		Drivers []struct {
			Name               string            `json:"name"`
			Version            string            `json:"version"`
			Endpoint           string            `json:"endpoint"`
			RegistrationSocket string            `json:"registration_socket"`
			NodeID             string            `json:"node_id"`
			MaxVolumes         string            `json:"max_volumes"` // protojson: an int64 is a string
			Topology           map[string]string `json:"topology"`
			Capabilities       []string          `json:"capabilities"`
			Registered         time.Time         `json:"registered"`
		} `json:"drivers"`
	}
	if err := json.Unmarshal([]byte(run(t, cli, "--socket", sock, "csi", "-o", "json")), &asJSON); err != nil {
		t.Fatal(err)
	}
	if d := asJSON.Drivers; len(d) != 1 || d[0].Name != want.Name || d[0].Version != "1.0.0" || d[0].Endpoint != endpoint ||
		d[0].RegistrationSocket != reg.socket || d[0].NodeID != want.NodeID || d[0].MaxVolumes != "3" ||
		!reflect.DeepEqual(d[0].Topology, want.Topology) || !reflect.DeepEqual(d[0].Capabilities, want.Capabilities) ||
		!d[0].Registered.Equal(w.drivers()[0].Registered) {
		t.Fatalf("wasmlet csi -o json: %+v", asJSON)
	}
	if out := run(t, cli, "--socket", sock, "status"); !strings.Contains(out, "CSI drivers: 1") {
		t.Fatalf("wasmlet status:\n%s", out)
	}

	// The driver's pod restarts: both sockets go and come back, the driver
	// with another attach limit.
	first := w.drivers()[0].Registered
	reg.stop()
	drv.stop()
	testkit.Eventually(t, "the driver to be forgotten", func() bool { return len(w.drivers()) == 0 })
	cfg.AttachLimit = 5
	startCSIDriver(t, endpoint, cfg)
	reg = startRegistrar(t, w.registry, endpoint)
	if s := reg.status(t); !s.PluginRegistered {
		t.Fatalf("not registered again: %q", s.Error)
	}
	want.MaxVolumes = 5
	checkDrivers(t, w, want)
	if !w.drivers()[0].Registered.After(first) {
		t.Fatal("the restarted driver's registration is the old one")
	}

	// Its registrar goes: the driver and its facts are forgotten.
	reg.stop()
	testkit.Eventually(t, "the driver to be forgotten", func() bool { return len(w.drivers()) == 0 })
	testkit.Eventually(t, "the plugin to be forgotten", func() bool { _, ok := w.plugin("io.kubernetes.storage.mock-reg"); return !ok })
}

// TestCSIDriverRefused: a registrar whose driver does not answer is told
// why, and registers on a retry once the driver is up; a driver offering
// only CSI 0.3.0 is refused, as the kubelet refuses it.
func TestCSIDriverRefused(t *testing.T) {
	w := startCSIWasmlet(t)
	dir := testkit.ShortDir(t)
	endpoint := filepath.Join(dir, "plugins", "mock", "csi.sock")
	cfg := service.Config{DriverName: "io.kubernetes.storage.mock"}
	drv := startCSIDriver(t, endpoint, cfg)
	reg := startRegistrar(t, w.registry, endpoint, "0.3.0")
	s := reg.status(t)
	if s.PluginRegistered || !strings.Contains(s.Error, `CSI driver "io.kubernetes.storage.mock" at endpoint "`+endpoint+
		`": offered CSI spec versions 0.3.0: the highest this node could use is 0.3.0, and it must be 1.x`) {
		t.Fatalf("0.3.0 told %+v", s)
	}
	reg.stop()

	// The driver went (crashed: its socket is gone) after its registrar
	// asked its name.
	reg = startRegistrar(t, w.registry, endpoint)
	drv.stop()
	s = reg.status(t)
	if s.PluginRegistered || !strings.Contains(s.Error, `CSI driver "io.kubernetes.storage.mock" at `+endpoint+
		` did not answer NodeGetInfo: Unavailable`) {
		t.Fatalf("a driver that is down: told %+v", s)
	}
	if len(w.drivers()) != 0 {
		t.Fatalf("refused, but recorded: %+v", w.drivers())
	}
	startCSIDriver(t, endpoint, cfg)
	for !s.PluginRegistered {
		s = reg.status(t) // refused until a retry finds it up
	}
	if d := w.drivers(); len(d) != 1 || d[0].NodeID != "io.kubernetes.storage.mock" {
		t.Fatalf("drivers %+v", d)
	}
}

// checkDrivers checks the node knows exactly want (its time aside).
func checkDrivers(tb testing.TB, w *wasmlet, want csi.Driver) {
	tb.Helper()
	got := w.drivers()
	if len(got) != 1 {
		tb.Fatalf("drivers %+v", got)
	}
	want.Registered = got[0].Registered
	if !reflect.DeepEqual(got[0], want) {
		tb.Fatalf("driver %+v\nwant %+v", got[0], want)
	}
}

var (
	cliOnce sync.Once
	cliPath string
	cliErr  error
)

// wasmletCommand builds the wasmlet command, once.
func wasmletCommand(tb testing.TB) string {
	tb.Helper()
	cliOnce.Do(func() {
		cliPath = filepath.Join(binDir, "wasmlet")
		out, err := exec.Command("go", "build", "-o", cliPath, "github.com/wasmlet/wasmlet/cmd/wasmlet").CombinedOutput()
		if err != nil {
			cliErr = fmt.Errorf("building the wasmlet command: %v\n%s", err, out)
		}
	})
	if cliErr != nil {
		tb.Fatal(cliErr)
	}
	return cliPath
}

// run runs the wasmlet command and returns its standard output.
func run(tb testing.TB, cli string, args ...string) string {
	tb.Helper()
	cmd := exec.Command(cli, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		tb.Fatalf("wasmlet %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}
