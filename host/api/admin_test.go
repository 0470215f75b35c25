package api_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/wasmlet/wasmlet/host/api"
	"github.com/wasmlet/wasmlet/host/api/adminpb"
	"github.com/wasmlet/wasmlet/host/internal/testenv"
	"github.com/wasmlet/wasmlet/internal/testkit"
)

// client serves b and returns a client of its admin socket.
func client(t *testing.T, b api.Backend) *api.Client {
	t.Helper()
	dir := testenv.ShortDir(t)
	sock := filepath.Join(dir, "a", "api.sock")
	if err := serve(t, sock, filepath.Join(dir, "p", "pr.sock"), b); err != nil {
		t.Fatal(err)
	}
	return testkit.DialAPI(t, sock)
}

// TestStatusCounts: every module and plugin is counted once, in its state:
// a quarantined module is not running, a plugin waiting for a handler is
// not failing.
func TestStatusCounts(t *testing.T) {
	f := &fake{status: &adminpb.StatusResponse{Version: "v"}}
	for state, n := range map[string]int{api.ModuleRunning: 3, api.ModuleLoading: 1, api.ModuleQuarantined: 2,
		api.ModuleConflict: 1, api.ModuleFailing: 2, api.ModuleRefused: 1} {
		for i := range n {
			f.modules = append(f.modules, &adminpb.Module{Name: fmt.Sprintf("%s-%d", state, i), State: state})
		}
	}
	for state, n := range map[string]int{api.PluginRegistered: 4, api.PluginWaiting: 2, api.PluginFailing: 1,
		api.PluginRegistering: 1} {
		for range n {
			f.plugins = append(f.plugins, &adminpb.Plugin{State: state})
		}
	}
	f.resources = []*adminpb.Resource{{Name: "a", Capacity: 4, Healthy: 3, Allocated: 1},
		{Name: "b", Capacity: 2, Healthy: 2, Conflict: "a device plugin was refused"}}
	f.allocations = []*adminpb.Allocation{{Workload: "n/p/c"}}
	f.csiDrivers = []*adminpb.CSIDriver{{Name: "a.csi.example.com"}, {Name: "b.csi.example.com"}}
	st, err := client(t, f).Status(context.Background(), &adminpb.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	c := st.Counts
	got := fmt.Sprintf("modules %d: %d running, %d loading, %d quarantined, %d conflicting, %d failing, %d refused; "+
		"plugins %d: %d registered, %d waiting, %d failing; resources %d (%d conflicting), devices %d/%d/%d, allocations %d, CSI drivers %d",
		c.Modules, c.ModulesRunning, c.ModulesLoading, c.ModulesQuarantined, c.ModulesConflicting, c.ModulesFailing, c.ModulesRefused,
		c.Plugins, c.PluginsRegistered, c.PluginsWaiting, c.PluginsFailing, c.Resources, c.ResourcesConflicting, c.Devices, c.DevicesHealthy,
		c.DevicesAllocated, c.Allocations, c.CsiDrivers)
	want := "modules 10: 3 running, 1 loading, 2 quarantined, 1 conflicting, 2 failing, 1 refused; " +
		"plugins 8: 4 registered, 2 waiting, 1 failing; resources 2 (1 conflicting), devices 6/5/1, allocations 1, CSI drivers 2"
	if got != want {
		t.Fatalf("counts\n got %s\nwant %s", got, want)
	}
	if st.Version != "v" || st.Pid == 0 {
		t.Fatalf("status %v", st)
	}
	drivers, err := client(t, f).ListCSIDrivers(context.Background(), &adminpb.ListCSIDriversRequest{})
	if err != nil || len(drivers.Drivers) != 2 || drivers.Drivers[1].Name != "b.csi.example.com" {
		t.Fatalf("ListCSIDrivers: %v, %v", drivers, err)
	}
}

// TestErrorsCarryReasons: each failure reaches the client with its code
// and its reason; a deadline the host hit is TIMEOUT, told apart from the
// client's own; a module with no free instance is BUSY, although its error
// wraps the host's deadline.
func TestErrorsCarryReasons(t *testing.T) {
	f := &fake{}
	c := client(t, f)
	ctx := context.Background()
	alloc := func(ctx context.Context) error {
		_, err := c.Allocate(ctx, &adminpb.AllocateRequest{Namespace: "n", Pod: "p", Container: "c", Resource: "x.io/y", Count: 1})
		return err
	}
	for _, tc := range []struct {
		err    error
		code   codes.Code
		reason api.Reason
	}{
		{api.Failf(api.ReasonNotFound, "no resource"), codes.NotFound, api.ReasonNotFound},
		{api.Failf(api.ReasonConflict, "holds 2"), codes.AlreadyExists, api.ReasonConflict},
		{api.Failf(api.ReasonNotEnoughDevices, "2 free"), codes.ResourceExhausted, api.ReasonNotEnoughDevices},
		{api.Failf(api.ReasonProviderUnavailable, "gone"), codes.Unavailable, api.ReasonProviderUnavailable},
		{api.Failf(api.ReasonNotDurable, "disk full"), codes.Unavailable, api.ReasonNotDurable},
		{api.Fail(api.ReasonBusy, fmt.Errorf("no instance free: %w", context.DeadlineExceeded)), codes.Unavailable, api.ReasonBusy},
		{fmt.Errorf("provider call: %w", context.DeadlineExceeded), codes.DeadlineExceeded, api.ReasonTimeout},
		{errors.New("the plugin crashed"), codes.Unknown, api.ReasonFailed},
	} {
		f.mu.Lock()
		f.err = tc.err
		f.mu.Unlock()
		err := alloc(ctx)
		if status.Code(err) != tc.code || api.ReasonOf(err) != tc.reason || status.Convert(err).Message() != tc.err.Error() {
			t.Errorf("%v: got %v (reason %q), want %v %s", tc.err, err, api.ReasonOf(err), tc.code, tc.reason)
		}
	}

	// The client's own deadline: the answer is the client's, with no
	// reason, whatever the backend was doing.
	f.mu.Lock()
	f.err, f.block = nil, make(chan struct{})
	f.mu.Unlock()
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	err := alloc(short)
	if status.Code(err) != codes.DeadlineExceeded || api.ReasonOf(err) != "" {
		t.Errorf("the client's deadline: %v (reason %q)", err, api.ReasonOf(err))
	}
	f.mu.Lock()
	close(f.block)
	f.block = nil
	f.mu.Unlock()

	// The API's own checks.
	_, err = c.Release(ctx, &adminpb.ReleaseRequest{Workload: "nope"})
	if status.Code(err) != codes.InvalidArgument || api.ReasonOf(err) != api.ReasonInvalid ||
		!strings.Contains(err.Error(), `workload "nope" is not of the form namespace/pod/container`) {
		t.Errorf("release nope: %v", err)
	}
	if len(f.released) != 0 {
		t.Errorf("a malformed workload reached the backend: %v", f.released)
	}
	for _, tc := range []struct {
		req  *adminpb.ApplyClaimRequest
		want string
	}{
		{&adminpb.ApplyClaimRequest{}, "invalid claim request: a claim is required"},
		{&adminpb.ApplyClaimRequest{Claim: make([]byte, api.MaxClaimSize+1)},
			fmt.Sprintf("invalid claim request: the claim is %d bytes, at most %d are allowed", api.MaxClaimSize+1, api.MaxClaimSize)},
		{&adminpb.ApplyClaimRequest{Claim: []byte("{}"), Pod: "train"}, "(pod and container go together)"},
	} {
		_, err = c.ApplyClaim(ctx, tc.req)
		if status.Code(err) != codes.InvalidArgument || api.ReasonOf(err) != api.ReasonInvalid || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("apply claim: %v, want InvalidArgument saying %q", err, tc.want)
		}
	}
	_, err = c.ReloadModule(ctx, &adminpb.ReloadModuleRequest{Name: "m"})
	if status.Code(err) != codes.NotFound || api.ReasonOf(err) != api.ReasonNotFound || !strings.Contains(err.Error(), "known: none") {
		t.Errorf("reload of an unknown module: %v", err)
	}
}

func TestCheckWorkload(t *testing.T) {
	for w, ok := range map[string]bool{"a/b/c": true, "nope": false, "a/b": false, "a//c": false, "a/b/c/d": false, "": false} {
		if err := api.CheckWorkload(w); (err == nil) != ok {
			t.Errorf("%q: %v", w, err)
		}
	}
}
