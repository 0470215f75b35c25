package dra

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	resourceapi "k8s.io/api/resource/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/client-go/tools/record"
	"k8s.io/dynamic-resource-allocation/cel"
	"k8s.io/dynamic-resource-allocation/structured"
	"k8s.io/klog/v2"
	drahealthv1 "k8s.io/kubelet/pkg/apis/dra-health/v1"
	drapb "k8s.io/kubelet/pkg/apis/dra/v1"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
	draplugin "k8s.io/kubernetes/pkg/kubelet/cm/dra/plugin"
	kubeletconfig "k8s.io/kubernetes/pkg/kubelet/config"
	"k8s.io/kubernetes/pkg/kubelet/pluginmanager"

	"github.com/wasmlet/wasmlet/guests/testmodules/filesource/filefmt"
	"github.com/wasmlet/wasmlet/host/dradriver"
	"github.com/wasmlet/wasmlet/internal/testkit"
	"github.com/wasmlet/wasmlet/tests/k8s/cluster"
	"github.com/wasmlet/wasmlet/tests/k8s/internal/wasmletnode"
)

const (
	fileDriver = "file.example.com"
	gpuDriver  = "gpu.example.com"
)

// shared is the package's cluster: one etcd and kube-apiserver for all its
// tests and benchmarks (they take seconds to start), each test on a node of
// its own.
var shared *cluster.Cluster

func TestMain(m *testing.M) {
	quietKlog()
	c, stop := cluster.StartShared()
	shared = c
	code := m.Run()
	stop()
	os.Exit(code)
}

// nodes numbers the nodes of the tests.
var nodes atomic.Int32

// env is one node of a real cluster: the API server and etcd (package
// cluster, shared by the package's tests), the Node object the kubelet
// would register (a new one for each env), and the kubelet's directories,
// where a wasmlet and the kubelet's own plugin manager meet.
type env struct {
	c        *cluster.Cluster
	nodeName string
	dir      string // short: sockets go under it
	data     string // filesource's /data
	plugins  string // the kubelet's plugin directory
	registry string // the kubelet's plugin registry
	cdi      string
	node     *corev1.Node
	// maxDevices is [dra] max_devices of the wasmlets, unless 0;
	// wipeDelay the kubelet's wait before it deletes the slices of a
	// driver gone (30 s unless set).
	maxDevices int
	wipeDelay  time.Duration
}

func newEnv(tb testing.TB) *env {
	tb.Helper()
	c := shared
	e := &env{c: c, nodeName: fmt.Sprintf("node-%d", nodes.Add(1)), dir: testkit.ShortDir(tb)}
	// An API server that a test stopped is started again for the next.
	tb.Cleanup(c.Start)
	e.data = filepath.Join(e.dir, "data")
	e.plugins = filepath.Join(e.dir, "kubelet", "plugins")
	e.registry = filepath.Join(e.dir, "kubelet", "plugins_registry")
	e.cdi = filepath.Join(e.dir, "cdi")
	for _, d := range []string{e.data, e.plugins, e.registry, e.cdi} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			tb.Fatal(err)
		}
	}
	node, err := c.Client.CoreV1().Nodes().Create(context.Background(),
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: e.nodeName}}, metav1.CreateOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	e.node = node
	return e
}

var klogOnce sync.Once

// quietKlog keeps the kubelet's and the API server's klog lines out of the
// test output (they log every registration and request).
func quietKlog() {
	klogOnce.Do(func() {
		fs := flag.NewFlagSet("klog", flag.PanicOnError)
		klog.InitFlags(fs)
		fs.Set("logtostderr", "false")
		fs.Set("alsologtostderr", "false")
		fs.Set("stderrthreshold", "FATAL")
		klog.SetOutput(discard{})
	})
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// setDevices rewrites filesource's file (renamed into place: the source
// never reads half of it).
func (e *env) setDevices(tb testing.TB, counters []filefmt.CounterSet, devs ...filefmt.Device) {
	tb.Helper()
	b, err := json.Marshal(filefmt.File{Counters: counters, Devices: devs})
	if err != nil {
		tb.Fatal(err)
	}
	tmp := filepath.Join(e.dir, "devices.json.tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		tb.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(e.data, "devices.json")); err != nil {
		tb.Fatal(err)
	}
}

// wasmlet is a whole wasmlet node, as `wasmlet run` runs it.
type wasmlet struct{ *wasmletnode.Wasmlet }

// modules are the modules a wasmlet of the tests loads, with their guests.
var modules = map[string]string{
	"filesource": "guests/testmodules/filesource",
	"gpusim":     "guests/gpusim",
}

// config is the plugins.toml of the tests' wasmlet: the named modules
// (filesource, gpusim) served as DRA drivers to the kubelet of e, with the
// cluster's kubeconfig.
func (e *env) config(names []string) string {
	toml := fmt.Sprintf(`
[host]
state_dir = "state"
registry_dir = "wasmlet-registry"
device_plugin_dir = "device-plugins"
module_dir = "modules"
api_socket = "api.sock"
pod_resources_socket = "pod-resources.sock"
metrics_address = ""
node_name = %q
backoff_initial = "50ms"
backoff_max = "2s"

[bridge]
cdi_dir = %q

[dra]
kubeconfig = %q
plugin_dir = %q
registry_dir = %q
`, e.nodeName, e.cdi, e.c.Kubeconfig(), e.plugins, e.registry)
	for _, name := range names {
		switch name {
		case "filesource":
			toml += fmt.Sprintf("\n[modules.filesource]\nmounts = [{ host = %q, guest = \"/data\" }]\n", e.data)
		case "gpusim":
			toml += "\n[modules.gpusim]\nconfig = { gpus = \"2\", partitions = \"1g.5gb\" }\n"
		}
		toml += fmt.Sprintf("\n[sources.%s]\nbridge = \"dra\"\n", name)
	}
	if e.maxDevices > 0 {
		toml = strings.Replace(toml, "[dra]\n", fmt.Sprintf("[dra]\nmax_devices = %d\n", e.maxDevices), 1)
	}
	return toml
}

// startWasmlet runs a wasmlet from e.config, in a state directory of e's,
// kept across restarts; it stops when the test ends.
func (e *env) startWasmlet(tb testing.TB, names ...string) *wasmlet {
	tb.Helper()
	if len(names) == 0 {
		names = []string{"filesource", "gpusim"}
	}
	guests := map[string]string{}
	for _, name := range names {
		guests[name] = modules[name]
	}
	return &wasmlet{wasmletnode.Start(tb, wasmletnode.Options{
		Dir: filepath.Join(e.dir, "wasmlet"), TOML: e.config(names), ModuleDir: "modules", Modules: guests})}
}

// stop stops w, failing the test if it stopped on an error.
func (w *wasmlet) stop(tb testing.TB) {
	tb.Helper()
	if err := w.Stop(); err != nil {
		tb.Fatalf("wasmlet stopped with an error: %v", err)
	}
}

// driver is the status of driver name, or a zero Status.
func (w *wasmlet) driver(name string) dradriver.Status {
	for _, st := range w.Node.DRA().Status() {
		if st.Driver == name {
			return st
		}
	}
	return dradriver.Status{}
}

// kubelet is the kubelet's own plugin manager (what the kubelet runs on
// /var/lib/kubelet/plugins_registry) with the kubelet's own DRA plugin
// manager as the DRAPlugin handler: the code that registers DRA drivers,
// calls their NodePrepareResources and NodeUnprepareResources, watches
// their device health and deletes the node's ResourceSlices when it starts.
type kubelet struct {
	dra    *draplugin.DRAPluginManager
	health *healthRecorder
	cancel context.CancelFunc
	done   chan struct{}
}

func (e *env) startKubelet(tb testing.TB) *kubelet {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	k := &kubelet{health: &healthRecorder{devices: map[string]string{}}, cancel: cancel, done: make(chan struct{})}
	getNode := func(ctx context.Context) (*corev1.Node, error) {
		return e.c.Client.CoreV1().Nodes().Get(ctx, e.nodeName, metav1.GetOptions{})
	}
	wipe := e.wipeDelay
	if wipe == 0 {
		wipe = 30 * time.Second
	}
	k.dra = draplugin.NewDRAPluginManager(ctx, e.c.Client, getNode, k.health, wipe)
	pm := pluginmanager.NewPluginManager(e.registry, &record.FakeRecorder{})
	pm.AddHandler(registerapi.DRAPlugin, k.dra)
	stop := make(chan struct{})
	go func() {
		defer close(k.done)
		pm.Run(ctx, kubeletconfig.NewSourcesReady(func(sets.Set[string]) bool { return true }), stop)
	}()
	var once sync.Once
	k.cancel = func() {
		once.Do(func() {
			close(stop)
			cancel()
			<-k.done
			k.dra.Stop()
		})
	}
	tb.Cleanup(k.cancel)
	return k
}

// plugin is the kubelet's client of driver, once it registered.
func (k *kubelet) plugin(driver string) *draplugin.DRAPlugin {
	p, err := k.dra.GetPlugin(driver)
	if err != nil {
		return nil
	}
	return p
}

// healthRecorder is the kubelet's DRA manager's side of the health
// streams: the latest health of each device, by "driver/pool/device".
type healthRecorder struct {
	mu      sync.Mutex
	devices map[string]string
}

func (h *healthRecorder) HandleWatchResourcesStream(ctx context.Context, stream drahealthv1.DRAResourceHealth_NodeWatchResourcesClient, driver string) error {
	for {
		resp, err := stream.Recv()
		if err != nil {
			return err
		}
		h.mu.Lock()
		for _, d := range resp.Devices {
			h.devices[driver+"/"+d.Device.PoolName+"/"+d.Device.DeviceName] = d.Health.String()
		}
		h.mu.Unlock()
	}
}

func (h *healthRecorder) of(key string) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.devices[key]
}

// slices lists driver's ResourceSlices on the node.
func (e *env) slices(tb testing.TB, driver string) []resourceapi.ResourceSlice {
	tb.Helper()
	list, err := e.c.Client.ResourceV1().ResourceSlices().List(context.Background(), metav1.ListOptions{
		FieldSelector: e.selector(driver)})
	if err != nil {
		tb.Fatal(err)
	}
	return list.Items
}

// selector selects driver's slices on the node.
func (e *env) selector(driver string) string {
	return fields.Set{resourceapi.ResourceSliceSelectorDriver: driver, resourceapi.ResourceSliceSelectorNodeName: e.nodeName}.String()
}

// devices are the devices of driver's slices at the pool's highest
// generation, by name.
func devicesOf(slices []resourceapi.ResourceSlice) (map[string]resourceapi.Device, []resourceapi.CounterSet) {
	var gen int64
	for _, s := range slices {
		gen = max(gen, s.Spec.Pool.Generation)
	}
	devs := map[string]resourceapi.Device{}
	var counters []resourceapi.CounterSet
	for _, s := range slices {
		if s.Spec.Pool.Generation != gen {
			continue
		}
		for _, d := range s.Spec.Devices {
			devs[d.Name] = d
		}
		counters = append(counters, s.Spec.SharedCounters...)
	}
	return devs, counters
}

// allocate allocates claim on the node as the kube-scheduler does: the
// upstream structured allocator over the ResourceSlices and DeviceClasses
// in the API server; the allocation and the pod it is reserved for are
// written to the claim's status.
func (e *env) allocate(tb testing.TB, claim *resourceapi.ResourceClaim, pod string) *resourceapi.ResourceClaim {
	tb.Helper()
	ctx := context.Background()
	list, err := e.c.Client.ResourceV1().ResourceSlices().List(ctx, metav1.ListOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	slices := make([]*resourceapi.ResourceSlice, len(list.Items))
	for i := range list.Items {
		slices[i] = &list.Items[i]
	}
	features := structured.Features{PrioritizedList: true, PartitionableDevices: true, ConsumableCapacity: true,
		DeviceTaints: true}
	alloc, err := structured.NewAllocator(ctx, features, structured.AllocatedState{
		AllocatedDevices:         sets.New[structured.DeviceID](),
		AllocatedSharedDeviceIDs: sets.New[structured.SharedDeviceID](),
		AggregatedCapacity:       structured.NewConsumedCapacityCollection(),
	}, classLister{e}, slices, cel.NewCache(10, cel.Features{EnableConsumableCapacity: true}))
	if err != nil {
		tb.Fatal(err)
	}
	results, err := alloc.Allocate(ctx, e.node, []*resourceapi.ResourceClaim{claim})
	if err != nil || len(results) != 1 {
		tb.Fatalf("allocating claim %s: %v (%d results)", claim.Name, err, len(results))
	}
	claim = claim.DeepCopy()
	claim.Status.Allocation = &results[0]
	claim.Status.ReservedFor = []resourceapi.ResourceClaimConsumerReference{{Resource: "pods", Name: pod, UID: types.UID(pod + "-uid")}}
	out, err := e.c.Client.ResourceV1().ResourceClaims(claim.Namespace).UpdateStatus(ctx, claim, metav1.UpdateOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// allocatedClaim creates a claim in namespace default asking for one
// device of driver's DeviceClass (created unless there), selected by the
// CEL expression cel unless it is "", in a request named request, and
// allocates it on the node for pod.
func (e *env) allocatedClaim(tb testing.TB, driver, request, cel, pod string) *resourceapi.ResourceClaim {
	tb.Helper()
	e.deviceClass(tb, driver)
	exactly := &resourceapi.ExactDeviceRequest{DeviceClassName: driver}
	if cel != "" {
		exactly.Selectors = []resourceapi.DeviceSelector{{CEL: &resourceapi.CELDeviceSelector{Expression: cel}}}
	}
	claim, err := e.c.Client.ResourceV1().ResourceClaims("default").Create(context.Background(), &resourceapi.ResourceClaim{
		ObjectMeta: metav1.ObjectMeta{GenerateName: pod + "-", Namespace: "default"},
		Spec: resourceapi.ResourceClaimSpec{Devices: resourceapi.DeviceClaim{Requests: []resourceapi.DeviceRequest{{
			Name: request, Exactly: exactly}}}},
	}, metav1.CreateOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	return e.allocate(tb, claim, pod)
}

// ref is claim as the kubelet names it to a driver.
func ref(claim *resourceapi.ResourceClaim) *drapb.Claim {
	return &drapb.Claim{Namespace: claim.Namespace, Name: claim.Name, Uid: string(claim.UID)}
}

// startGPUs starts the kubelet and a wasmlet serving gpusim, and waits
// until the kubelet registered gpu.example.com and its slices are
// published.
func (e *env) startGPUs(tb testing.TB) (*kubelet, *wasmlet) {
	tb.Helper()
	k := e.startKubelet(tb)
	w := e.startWasmlet(tb, "gpusim")
	testkit.Eventually(tb, "the kubelet to register gpu.example.com", func() bool { return k.plugin(gpuDriver) != nil })
	testkit.Eventually(tb, "gpusim's slices", func() bool { return w.driver(gpuDriver).Slices == dradriver.SlicesPublished })
	return k, w
}

// startFileGPU starts the kubelet and a wasmlet whose filesource serves
// one GPU, gpu-0, and waits until the kubelet registered file.example.com.
func (e *env) startFileGPU(tb testing.TB) (*kubelet, *wasmlet) {
	tb.Helper()
	e.setDevices(tb, gpu0Counters, gpu("gpu-0", 0, "40Gi"))
	k := e.startKubelet(tb)
	w := e.startWasmlet(tb, "filesource")
	testkit.Eventually(tb, "the kubelet to register file.example.com", func() bool { return k.plugin(fileDriver) != nil })
	return k, w
}

type classLister struct{ e *env }

func (l classLister) List() ([]*resourceapi.DeviceClass, error) {
	list, err := l.e.c.Client.ResourceV1().DeviceClasses().List(context.Background(), metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	out := make([]*resourceapi.DeviceClass, len(list.Items))
	for i := range list.Items {
		out[i] = &list.Items[i]
	}
	return out, nil
}

func (l classLister) Get(name string) (*resourceapi.DeviceClass, error) {
	return l.e.c.Client.ResourceV1().DeviceClasses().Get(context.Background(), name, metav1.GetOptions{})
}

// deviceClass creates the DeviceClass of driver, as deploy/ has one per
// example driver, unless an earlier test did.
func (e *env) deviceClass(tb testing.TB, driver string) {
	tb.Helper()
	_, err := e.c.Client.ResourceV1().DeviceClasses().Create(context.Background(), &resourceapi.DeviceClass{
		ObjectMeta: metav1.ObjectMeta{Name: driver},
		Spec: resourceapi.DeviceClassSpec{Selectors: []resourceapi.DeviceSelector{{
			CEL: &resourceapi.CELDeviceSelector{Expression: fmt.Sprintf("device.driver == %q", driver)}}}},
	}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		tb.Fatal(err)
	}
}

// removeRegistry removes the kubelet's plugin registry, as a kubelet that
// starts anew may find it gone: renamed away, then removed, since wasmlet
// serves its socket again as soon as it sees it go, which a RemoveAll in
// place would race with.
func (e *env) removeRegistry(tb testing.TB) {
	tb.Helper()
	if err := os.Rename(e.registry, e.registry+".old"); err != nil {
		tb.Fatal(err)
	}
	if err := os.RemoveAll(e.registry + ".old"); err != nil {
		tb.Fatal(err)
	}
}
