package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wasmlet/wasmlet/host/api"
	"github.com/wasmlet/wasmlet/host/api/adminpb"
	"github.com/wasmlet/wasmlet/internal/testkit"
)

// failing is a host whose Release fails with err (after waiting for block,
// if not nil), to check how the command reports each failure. The real
// host's answers are checked in TestClientCommands and host/node.
type failing struct {
	err   error
	block chan struct{}
}

func (f *failing) Status() *adminpb.StatusResponse    { return &adminpb.StatusResponse{} }
func (f *failing) Modules() []*adminpb.Module         { return nil }
func (f *failing) Plugins() []*adminpb.Plugin         { return nil }
func (f *failing) Resources() []*adminpb.Resource     { return nil }
func (f *failing) Allocations() []*adminpb.Allocation { return nil }
func (f *failing) CSIDrivers() []*adminpb.CSIDriver   { return nil }
func (f *failing) ReloadModule(context.Context, string) (*adminpb.Module, error) {
	return nil, f.err
}
func (f *failing) Allocate(context.Context, *adminpb.AllocateRequest) (*adminpb.Allocation, error) {
	return nil, f.err
}
func (f *failing) Claims() []*adminpb.Claim { return nil }
func (f *failing) ApplyClaim(context.Context, *adminpb.ApplyClaimRequest) (*adminpb.Claim, error) {
	return nil, f.err
}
func (f *failing) DeleteClaim(context.Context, string, string) (*adminpb.Claim, error) {
	return nil, f.err
}
func (f *failing) Release(ctx context.Context, _, _ string) ([]*adminpb.Allocation, error) {
	if f.block != nil {
		select {
		case <-f.block:
		case <-ctx.Done():
		}
	}
	return nil, f.err
}

// serveFailing serves f until the test ends and returns the admin socket.
func serveFailing(t *testing.T, f *failing) string {
	t.Helper()
	dir := testkit.ShortDir(t)
	sock := filepath.Join(dir, "a", "api.sock")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- api.Serve(ctx, api.Config{AdminSocket: sock, PodResourcesSocket: filepath.Join(dir, "p", "pr.sock"), Backend: f})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	testkit.Eventually(t, "the socket", func() bool { return listening(sock) })
	return sock
}

// TestFailuresAndExitCodes: each way a request can fail is told apart, in
// words and in the exit code: the host busy or giving up is not the
// command's --timeout, a malformed request is a usage error, what is not
// there is "not found".
func TestFailuresAndExitCodes(t *testing.T) {
	for _, c := range []struct {
		err  error
		code int
		want string
	}{
		{api.Fail(api.ReasonBusy, fmt.Errorf(`module "slow": allocate: busy: no instance free (pool of 1): %w`, context.DeadlineExceeded)),
			exitFailed, `the host is busy, nothing was changed: module "slow": allocate: busy: no instance free (pool of 1): context deadline exceeded (try again)`},
		{api.Fail(api.ReasonTimeout, fmt.Errorf("allocate: %w", context.DeadlineExceeded)), exitFailed, "the host gave up, nothing was changed: allocate: context deadline exceeded"},
		{api.Failf(api.ReasonNotDurable, "could not make the release durable: no space left on device"), exitFailed, "could not make the release durable: no space left on device (nothing was changed; try again later)"},
		{api.Failf(api.ReasonNotFound, "workload n/p/c holds no devices"), exitNotFound, "workload n/p/c holds no devices"},
		{api.Failf(api.ReasonInvalid, "resource is required"), exitUsage, "resource is required"},
		{errors.New("the plugin crashed"), exitFailed, "the plugin crashed"},
	} {
		sock := serveFailing(t, &failing{err: c.err})
		expect(t, c.code, []string{"--socket", sock, "release", "n/p/c"}, "stderr:wasmlet release: "+c.want)
	}

	// The command's own --timeout: the host has not answered yet. Long
	// enough that a loaded machine has dialled the host by then, so that
	// the deadline falls while the answer is awaited.
	f := &failing{err: errors.New("too late"), block: make(chan struct{})}
	sock := serveFailing(t, f)
	defer close(f.block)
	expect(t, exitFailed, []string{"--socket", sock, "--timeout", "2s", "release", "n/p/c"},
		"stderr:wasmlet release: the host at "+sock+" did not answer within 2s (--timeout); it may still complete the request")
}

// A claim file larger than the host takes is refused before it is read
// whole or sent, naming the file and the limit.
func TestClaimTooLarge(t *testing.T) {
	sock := serveFailing(t, &failing{err: errors.New("the host was called")})
	big := testkit.WriteFile(t, filepath.Join(t.TempDir(), "big.yaml"),
		"apiVersion: resource.k8s.io/v1\nkind: ResourceClaim\nmetadata:\n  name: big\n  annotations:\n    a: "+strings.Repeat("x", api.MaxClaimSize)+"\n")
	expect(t, exitUsage, []string{"--socket", sock, "claim", "apply", "-f", big},
		"stderr:wasmlet claim apply: "+big+" is larger than 1 MiB, the most a claim may be")
}

func listening(sock string) bool {
	c, err := net.Dial("unix", sock)
	if err == nil {
		c.Close()
	}
	return err == nil
}
