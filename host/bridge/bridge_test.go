package bridge_test

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"

	"github.com/wasmlet/wasmlet/guests/build"
	"github.com/wasmlet/wasmlet/host/bridge"
	"github.com/wasmlet/wasmlet/host/devicesource"
	"github.com/wasmlet/wasmlet/host/internal/testenv"
	"github.com/wasmlet/wasmlet/host/module"
	"github.com/wasmlet/wasmlet/host/pluginmanager/registration"
	"github.com/wasmlet/wasmlet/host/watcher"
)

const counter = "example.com/counter"

func cdiNames(r *pluginapi.ContainerAllocateResponse) []string {
	var out []string
	for _, d := range r.CdiDevices {
		out = append(out, d.Name)
	}
	return out
}

// TestServeCounter: the counter module, bridged, is an ordinary device
// plugin to the kubelet: registration, options, devices with topology,
// Allocate with several containers, preferred allocation, pre-start, CDI
// names and specs.
func TestServeCounter(t *testing.T) {
	e := newEnv(t, envConfig{})
	k := startKubelet(t, e.kubeletDir)
	e.counter("4")

	r := k.ExpectRegister()
	if r.Req.ResourceName != counter || r.Req.Version != "v1beta1" || r.Req.Endpoint != "wasmlet-counter.sock" ||
		!r.Req.Options.GetGetPreferredAllocationAvailable() || r.Req.Options.GetPreStartRequired() {
		t.Fatalf("registration %v", r.Req)
	}
	devs := k.WaitDevices(counter, healthy(4))
	for i, d := range devs {
		if d.ID != "dev-"+string(rune('0'+i)) || len(d.Topology.GetNodes()) != 1 || d.Topology.Nodes[0].ID != int64(i%2) {
			t.Errorf("device %d: %v", i, d)
		}
	}

	ctx := context.Background()
	c := client(t, filepath.Join(e.kubeletDir, "wasmlet-counter.sock"))
	opts, err := c.GetDevicePluginOptions(ctx, &pluginapi.Empty{})
	if err != nil || !opts.GetPreferredAllocationAvailable || opts.PreStartRequired {
		t.Fatalf("options %v %v", opts, err)
	}
	resp, err := c.Allocate(ctx, &pluginapi.AllocateRequest{ContainerRequests: []*pluginapi.ContainerAllocateRequest{
		{DevicesIds: []string{"dev-0", "dev-1"}}, {DevicesIds: []string{"dev-3"}}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.ContainerResponses) != 2 {
		t.Fatalf("%d container responses", len(resp.ContainerResponses))
	}
	first, second := resp.ContainerResponses[0], resp.ContainerResponses[1]
	if first.Envs["COUNTER_DEVICES"] != "dev-0,dev-1" || first.Annotations[counter] != "dev-0,dev-1" ||
		!reflect.DeepEqual(cdiNames(first), []string{"example.com/counter=dev-0", "example.com/counter=dev-1"}) {
		t.Errorf("first container: %v", first)
	}
	if second.Envs["COUNTER_DEVICES"] != "dev-3" || !reflect.DeepEqual(cdiNames(second), []string{"example.com/counter=dev-3"}) {
		t.Errorf("second container: %v", second)
	}
	pref, err := c.GetPreferredAllocation(ctx, &pluginapi.PreferredAllocationRequest{ContainerRequests: []*pluginapi.ContainerPreferredAllocationRequest{
		{AvailableDeviceIDs: []string{"dev-0", "dev-1", "dev-2", "dev-3"}, MustIncludeDeviceIDs: []string{"dev-3"}, AllocationSize: 2}}})
	if err != nil || !reflect.DeepEqual(pref.ContainerResponses[0].DeviceIDs, []string{"dev-3", "dev-0"}) {
		t.Fatalf("preferred %v %v", pref, err)
	}
	if _, err := c.PreStartContainer(ctx, &pluginapi.PreStartContainerRequest{DevicesIds: []string{"dev-0"}}); err != nil {
		t.Fatal(err)
	}

	// What the bridge refuses, and what the module refuses.
	_, err = c.Allocate(ctx, &pluginapi.AllocateRequest{ContainerRequests: []*pluginapi.ContainerAllocateRequest{{DevicesIds: []string{"dev-9"}}}})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), `device "dev-9" is not among the 4 devices`) {
		t.Errorf("unknown device: %v", err)
	}
	_, err = c.GetPreferredAllocation(ctx, &pluginapi.PreferredAllocationRequest{ContainerRequests: []*pluginapi.ContainerPreferredAllocationRequest{
		{AvailableDeviceIDs: []string{"dev-0"}, AllocationSize: 2}}})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), `module "counter": preferred_allocation`) ||
		!strings.Contains(err.Error(), "exceeds the 1 available") {
		t.Errorf("module refusal: %v", err)
	}

	// The CDI spec validates, with one device per counter device.
	cache := testenv.CDISpecs(t, e.cdiDir)
	if got := cache.ListDevices(); len(got) != 4 || got[0] != "example.com/counter=dev-0" {
		t.Fatalf("CDI devices %v", got)
	}
	if env := cache.GetDevice("example.com/counter=dev-2").ContainerEdits.Env; !reflect.DeepEqual(env, []string{"COUNTER_2=dev-2"}) {
		t.Errorf("CDI edits %v", env)
	}

	// The kubelet may open its stream before the bridge has its answer to
	// Register: wait for both.
	st := e.waitStatus(counter, "registered, one stream", func(st bridge.Status) bool {
		return st.Streams == 1 && st.State == bridge.StateRegistered
	})
	if st.State != bridge.StateRegistered || st.Registrations != 1 || st.Devices != 4 || st.Healthy != 4 ||
		st.Provider != "module:counter" || st.Socket != filepath.Join(e.kubeletDir, "wasmlet-counter.sock") || !st.KubeletPresent {
		t.Errorf("status %+v", st)
	}
}

// TestStreamsFollowDiscovery: every open stream gets every change the
// source discovers, and the CDI spec follows the edits.
func TestStreamsFollowDiscovery(t *testing.T) {
	e := newEnv(t, envConfig{})
	data := t.TempDir()
	put(t, data, "a", "numa=0\nenv.DIR_A=1\n")
	k := e.startDir(data)

	// Two more streams, as a kubelet that reconnects would have.
	c := client(t, filepath.Join(e.kubeletDir, "wasmlet-dir.sock"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var streams []pluginapi.DevicePlugin_ListAndWatchClient
	for range 2 {
		s, err := c.ListAndWatch(ctx, &pluginapi.Empty{})
		if err != nil {
			t.Fatal(err)
		}
		if r, err := s.Recv(); err != nil || len(r.Devices) != 1 {
			t.Fatalf("%v %v", r, err)
		}
		streams = append(streams, s)
	}
	e.waitStatus("example.com/dir", "three streams", func(st bridge.Status) bool { return st.Streams == 3 })

	put(t, data, "b", "numa=1\nenv.DIR_B=1\n")
	for i, s := range streams {
		r, err := s.Recv()
		if err != nil || len(r.Devices) != 2 || r.Devices[1].ID != "b" || r.Devices[1].Topology.Nodes[0].ID != 1 {
			t.Fatalf("stream %d: %v %v", i, r, err)
		}
	}
	k.WaitDevices("example.com/dir", healthy(2))
	put(t, data, "a", "unhealthy\nnuma=0\nenv.DIR_A=1\n")
	for i, s := range streams {
		r, err := s.Recv()
		if err != nil || len(r.Devices) != 2 || r.Devices[0].Health != pluginapi.Unhealthy {
			t.Fatalf("stream %d: %v %v", i, r, err)
		}
	}

	// An edit alone changes the CDI spec; the kubelet is not bothered: the
	// next set it receives is the one of the next real change, b unhealthy.
	put(t, data, "b", "numa=1\nenv.DIR_B=2\n")
	eventually(t, "CDI spec rewritten", func() bool {
		d := testenv.CDISpecs(t, e.cdiDir).GetDevice("example.com/dir=b")
		return d != nil && slices.Contains(d.ContainerEdits.Env, "DIR_B=2")
	})
	put(t, data, "b", "unhealthy\nnuma=1\nenv.DIR_B=2\n")
	r, err := streams[0].Recv()
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Devices) != 2 || r.Devices[1].ID != "b" || r.Devices[1].Health != pluginapi.Unhealthy {
		t.Fatalf("the kubelet was sent %v after an edit that changed no device, before b became unhealthy", r.Devices)
	}
}

// TestFailingSourceGoesUnhealthyAndComesBack: a source whose discovery
// keeps failing reports its devices unhealthy, and the kubelet sees them
// so; the source keeps trying, and when it succeeds again the kubelet sees
// them healthy, on the same socket and stream, without a new registration.
func TestFailingSourceGoesUnhealthyAndComesBack(t *testing.T) {
	e := newEnv(t, envConfig{failFast: true})
	data := t.TempDir()
	put(t, data, "a", "env.A=1\n")
	k := e.startDir(data)

	put(t, data, "fail", "bus error")
	k.WaitDevices("example.com/dir", func(d []*pluginapi.Device) bool {
		return len(d) == 1 && d[0].Health == pluginapi.Unhealthy
	})
	e.waitStatus("example.com/dir", "unhealthy", func(st bridge.Status) bool { return st.Healthy == 0 })
	if st := e.ctrl.Source("dir").Status(); st.State != devicesource.StateFailing || !strings.Contains(st.LastError, "bus error") {
		t.Errorf("source status %+v", st)
	}
	os.Remove(filepath.Join(data, "fail"))
	k.WaitDevices("example.com/dir", healthy(1))
	if st := e.status("example.com/dir"); st.Registrations != 1 || st.Streams != 1 || st.SocketsCreated != 1 {
		t.Errorf("status %+v", st)
	}
	if len(k.Registers) != 0 {
		t.Error("registered again for a source that came back")
	}
}

// TestKubeletRestart: a kubelet that restarts deletes the bridge's socket and
// creates kubelet.sock again; the bridge makes its socket again and
// registers on that event (there is no resync within a test), keeping its
// devices. Repeated five times.
func TestKubeletRestart(t *testing.T) {
	e := newEnv(t, envConfig{})
	k := e.startCounter(4)
	// The kubelet has the registration; wait until the bridge has the reply
	// too. (Restarted in between, the kubelet takes the reply with it: the
	// bridge counts that attempt as failed and registers with the new
	// kubelet, which is right, but then the counts below are one short.)
	e.waitStatus(counter, "first registration acknowledged", func(st bridge.Status) bool { return st.Registrations >= 1 })
	var worst time.Duration
	for i := range 5 {
		k.Restart()
		r := k.ExpectRegister()
		took := r.At.Sub(k.Created())
		worst = max(worst, took)
		t.Logf("restart %d: registered again %v after kubelet.sock was created", i+1, took.Round(time.Microsecond))
		k.WaitDevices(counter, healthy(4))
		// At least one more: a restart whose events arrive late, after the
		// bridge already registered with the new kubelet, is answered with a
		// second, harmless registration (the kubelet replaces the first).
		e.waitStatus(counter, "registration acknowledged", func(st bridge.Status) bool { return st.Registrations >= i+2 })
	}
	t.Logf("worst re-registration after a kubelet restart: %v", worst.Round(time.Microsecond))
	st := e.waitStatus(counter, "six registrations", func(st bridge.Status) bool { return st.Registrations >= 6 })
	if st.SocketsCreated < 6 || st.State != bridge.StateRegistered {
		t.Errorf("status %+v", st)
	}
}

// TestKubeletRefuses: a refusal is logged with its reason, shown, and
// retried with a backoff; once the kubelet accepts, the source registers.
func TestKubeletRefuses(t *testing.T) {
	k := newKubelet(t, "")
	e := newEnv(t, envConfig{backoff: 50 * time.Millisecond})
	k.dir = e.kubeletDir
	k.Refuse("example.com/counter is not allowed on this node")
	k.Start()
	e.counter("2")
	st := e.waitStatus(counter, "refused", func(st bridge.Status) bool { return st.State == bridge.StateRefused && st.Attempts >= 2 })
	if !strings.Contains(st.LastError, "example.com/counter is not allowed on this node") || st.NextAttempt.IsZero() {
		t.Fatalf("status %+v", st)
	}
	// Backoff 50ms doubling to 400ms: each attempt waits at least its
	// backoff after the refusal before it (a lower bound, which a loaded
	// machine cannot break; the attempts are not thousands a second).
	var at []time.Time
	eventually(t, "six refused attempts", func() bool { at = k.Refused(); return len(at) >= 6 })
	for i, min := range []time.Duration{50, 100, 200, 400, 400} {
		if gap := at[i+1].Sub(at[i]); gap < min*time.Millisecond {
			t.Errorf("attempt %d came %v after the refusal of attempt %d, want at least %dms", i+2, gap, i+1, min)
		}
	}
	k.Refuse("")
	k.ExpectRegister()
	st = e.waitStatus(counter, "registered", func(st bridge.Status) bool { return st.State == bridge.StateRegistered })
	if st.LastError != "" || st.Attempts != 0 || st.Registrations != 1 {
		t.Errorf("status %+v", st)
	}
	k.WaitDevices(counter, healthy(2))
}

// TestKubeletDisappearsMidStream: the streams end with the kubelet; the
// bridge keeps serving and registers when kubelet.sock is back.
func TestKubeletDisappearsMidStream(t *testing.T) {
	e := newEnv(t, envConfig{})
	k := e.startCounter(3)
	e.waitStatus(counter, "stream", func(st bridge.Status) bool { return st.Streams == 1 })

	k.Stop()
	e.waitStatus(counter, "stream ended, waiting", func(st bridge.Status) bool {
		return st.Streams == 0 && st.State == bridge.StateWaitingForKubelet && !st.KubeletPresent
	})
	// Still serving: anyone may still list the devices.
	c := client(t, filepath.Join(e.kubeletDir, "wasmlet-counter.sock"))
	s, err := c.ListAndWatch(context.Background(), &pluginapi.Empty{})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := s.Recv(); err != nil || len(r.Devices) != 3 {
		t.Fatalf("%v %v", r, err)
	}

	k.Start()
	r := k.ExpectRegister() // on the event: there is no resync within a test
	t.Logf("registered %v after the kubelet came back", r.At.Sub(k.Created()))
	k.WaitDevices(counter, healthy(3))
}

// TestKubeletAbsentAtStart: with no kubelet.sock, the bridge serves its
// socket and waits, without trying; the kubelet that appears gets the
// registration on its event (there is no resync within a test).
func TestKubeletAbsentAtStart(t *testing.T) {
	e := newEnv(t, envConfig{})
	e.counter("2")
	e.waitStatus(counter, "waiting", func(st bridge.Status) bool {
		return st.State == bridge.StateWaitingForKubelet && st.Devices == 2
	})
	if st := e.status(counter); st.Attempts != 0 || st.State != bridge.StateWaitingForKubelet || st.KubeletPresent {
		t.Fatalf("status %+v", st)
	}
	if _, err := os.Stat(filepath.Join(e.kubeletDir, "wasmlet-counter.sock")); err != nil {
		t.Fatal(err)
	}
	k := startKubelet(t, e.kubeletDir)
	r := k.ExpectRegister()
	t.Logf("registered %v after kubelet.sock appeared", r.At.Sub(k.Created()))
	k.WaitDevices(counter, healthy(2))
}

// TestPluginRegistry: in plugin-registry mode the bridge answers the
// kubelet's plugin watcher on a registration socket, records its verdict,
// and offers itself again after a refusal.
func TestPluginRegistry(t *testing.T) {
	e := newEnv(t, envConfig{mode: bridge.PluginRegistry, backoff: 50 * time.Millisecond})
	e.counter("2")
	regSock := filepath.Join(e.registryDir, "wasmlet-counter-reg.sock")
	dpSock := filepath.Join(e.kubeletDir, "wasmlet-counter.sock")
	e.waitStatus(counter, "waiting for the plugin watcher", func(st bridge.Status) bool {
		return st.State == bridge.StateWaitingForKubelet && st.RegistrationSocket == regSock
	})
	identity := func() watcher.Identity {
		fi, err := os.Lstat(regSock)
		if err != nil {
			return watcher.Identity{}
		}
		return watcher.IdentityOf(fi)
	}
	first := identity()

	// The plugin watcher, as the kubelet runs it.
	conn, err := registration.Dial(regSock)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx := context.Background()
	info, err := conn.GetInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Type != registerapi.DevicePlugin || info.Name != counter || info.Endpoint != dpSock ||
		!reflect.DeepEqual(info.Versions, []string{"v1beta1"}) {
		t.Fatalf("GetInfo %+v", info)
	}
	s, err := client(t, info.Endpoint).ListAndWatch(ctx, &pluginapi.Empty{})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := s.Recv(); err != nil || len(r.Devices) != 2 {
		t.Fatalf("%v %v", r, err)
	}
	if err := conn.Notify(ctx, false, "device plugin API version v1beta1 is not supported"); err != nil {
		t.Fatal(err)
	}
	st := e.waitStatus(counter, "refused", func(st bridge.Status) bool { return st.State == bridge.StateRefused })
	if st.LastError != "device plugin API version v1beta1 is not supported" {
		t.Fatalf("status %+v", st)
	}
	// After the backoff the registration socket is made anew, which makes
	// the plugin watcher try again.
	eventually(t, "registration socket recreated", func() bool { id := identity(); return id != first && id != watcher.Identity{} })
	conn2, err := registration.Dial(regSock)
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close()
	if err := conn2.Notify(ctx, true, ""); err != nil {
		t.Fatal(err)
	}
	st = e.waitStatus(counter, "registered", func(st bridge.Status) bool { return st.State == bridge.StateRegistered })
	if st.Registrations != 1 || st.LastError != "" {
		t.Fatalf("status %+v", st)
	}

	// A kubelet restart deletes the device plugin socket: it is made again,
	// and so is the registration socket, for the new kubelet to find.
	second := identity()
	os.Remove(dpSock)
	eventually(t, "both sockets recreated", func() bool {
		_, err := os.Stat(dpSock)
		id := identity()
		return err == nil && id != second && id != watcher.Identity{}
	})
}

// TestSourceGone: when its module goes, its devices stay with the kubelet,
// unhealthy, on the same socket and stream, and its CDI spec stays, for
// the grace period, as a lost device plugin's do (a container holding its
// CDI names may restart meanwhile); a source of the module back within it
// takes them over without a new registration. At its end the kubelet is
// sent an empty device set, the stream ends, and the socket and the CDI
// spec are removed.
func TestSourceGone(t *testing.T) {
	e := newEnv(t, envConfig{})
	k := e.startCounter(2)
	spec := filepath.Join(e.cdiDir, "wasmlet-example.com_counter.yaml")
	sock := filepath.Join(e.kubeletDir, "wasmlet-counter.sock")
	exists := func(path string) bool { _, err := os.Stat(path); return err == nil }
	if !exists(spec) {
		t.Fatal("no CDI spec")
	}
	unhealthy := func(d []*pluginapi.Device) bool {
		return len(d) == 2 && d[0].Health == pluginapi.Unhealthy && d[1].Health == pluginapi.Unhealthy
	}

	e.reg.Unload("counter")
	k.WaitDevices(counter, unhealthy)
	st := e.waitStatus(counter, "the grace period", func(st bridge.Status) bool { return !st.GraceDeadline.IsZero() })
	if st.Provider != "" || st.Streams != 1 || !st.GraceDeadline.Equal(e.clock.Now().Add(time.Minute)) || !strings.Contains(st.LastError, "went away") {
		t.Fatalf("status in the grace period %+v", st)
	}
	e.clock.Step(time.Minute - time.Nanosecond)
	if !exists(sock) || !exists(spec) || k.Streams(counter) != 1 {
		t.Fatal("the socket, the stream or the CDI spec went within the grace period")
	}
	// Back within the grace period: the same socket and stream.
	e.counter("2")
	k.WaitDevices(counter, healthy(2))
	if st := e.status(counter); st.Registrations != 1 || st.SocketsCreated != 1 || !st.GraceDeadline.IsZero() || st.LastError != "" {
		t.Fatalf("status after the source came back %+v", st)
	}
	if len(k.Registers) != 0 {
		t.Error("registered again for a source back within the grace period")
	}

	e.reg.Unload("counter")
	k.WaitDevices(counter, unhealthy)
	e.waitStatus(counter, "the grace period", func(st bridge.Status) bool { return !st.GraceDeadline.IsZero() })
	e.clock.Step(time.Minute)
	k.WaitDevices(counter, func(d []*pluginapi.Device) bool { return d != nil && len(d) == 0 })
	eventually(t, "stream ended", func() bool { return k.Streams(counter) == 0 })
	eventually(t, "socket and spec removed", func() bool { return !exists(sock) && !exists(spec) })
	if st := e.br.Status(); len(st) != 0 {
		t.Fatalf("status %+v", st)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, c := range []struct {
		cfg  bridge.Config
		want string
	}{
		{bridge.Config{KubeletDir: "dp"}, `kubelet directory "dp": must be an absolute path`},
		{bridge.Config{KubeletDir: "/dp", Registration: "magic"}, `registration "magic": expected "kubelet-socket" or "plugin-registry"`},
		{bridge.Config{KubeletDir: "/dp", Registration: bridge.PluginRegistry}, `plugin registry directory "": must be an absolute path`},
	} {
		if _, err := bridge.New(c.cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.cfg, err, c.want)
		}
	}
}

// TestRefusedEditsNeverReachTheKubelet: a bridged module that asks for the
// host's /, the docker socket, /dev/sda, /dev/mem and LD_PRELOAD, with
// nothing granted: the device whose discovered edits need them is not
// offered to the kubelet nor written in the CDI spec, and its Allocate
// answers PermissionDenied, naming the edits, instead of handing them out.
func TestRefusedEditsNeverReachTheKubelet(t *testing.T) {
	e := newEnv(t, envConfig{})
	k := startKubelet(t, e.kubeletDir)
	e.mods.Configure("greedy", module.Options{Config: map[string]string{"discover": "hostile", "allocate": "hostile"}})
	e.mods.Install("greedy", build.Go(t, "guests/testmodules/greedy"))
	k.ExpectRegister()
	devs := k.WaitDevices("example.com/greedy", healthy(1))
	if devs[0].ID != "plain-0" {
		t.Fatalf("the kubelet was offered %v", devs)
	}
	if c := testenv.CDISpecs(t, e.cdiDir); c.GetDevice("example.com/greedy=greedy-0") != nil || c.GetDevice("example.com/greedy=plain-0") == nil {
		t.Fatalf("CDI devices %v", c.ListDevices())
	}
	c := client(t, filepath.Join(e.kubeletDir, "wasmlet-greedy.sock"))
	resp, err := c.Allocate(context.Background(), &pluginapi.AllocateRequest{ContainerRequests: []*pluginapi.ContainerAllocateRequest{
		{DevicesIds: []string{"plain-0"}}}})
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "environment variable LD_PRELOAD") ||
		!strings.Contains(err.Error(), "mount of host / at /host (read-write)") {
		t.Fatalf("Allocate answered %v, %v; want PermissionDenied naming the edits", resp, err)
	}
}
