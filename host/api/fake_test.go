package api_test

import (
	"context"
	"sync"

	"google.golang.org/protobuf/proto"

	"github.com/wasmlet/wasmlet/host/api"
	"github.com/wasmlet/wasmlet/host/api/adminpb"
)

// fake is a Backend that answers what it is given, to test the API alone
// (host/node tests it over the node's real parts).
type fake struct {
	mu          sync.Mutex
	status      *adminpb.StatusResponse
	modules     []*adminpb.Module
	plugins     []*adminpb.Plugin
	resources   []*adminpb.Resource
	allocations []*adminpb.Allocation
	csiDrivers  []*adminpb.CSIDriver
	claims      []*adminpb.Claim
	// err is what Allocate, Release and ReloadModule fail with; block, when
	// not nil, is waited on first (or the call's context).
	err   error
	block chan struct{}
	// released records the Release calls.
	released []string
}

var _ api.Backend = (*fake)(nil)

func (f *fake) Status() *adminpb.StatusResponse {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.status == nil {
		return &adminpb.StatusResponse{}
	}
	return proto.Clone(f.status).(*adminpb.StatusResponse)
}

func (f *fake) Modules() []*adminpb.Module     { f.mu.Lock(); defer f.mu.Unlock(); return f.modules }
func (f *fake) Plugins() []*adminpb.Plugin     { f.mu.Lock(); defer f.mu.Unlock(); return f.plugins }
func (f *fake) Resources() []*adminpb.Resource { f.mu.Lock(); defer f.mu.Unlock(); return f.resources }
func (f *fake) Allocations() []*adminpb.Allocation {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.allocations
}

func (f *fake) CSIDrivers() []*adminpb.CSIDriver {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.csiDrivers
}

func (f *fake) fail(ctx context.Context) error {
	f.mu.Lock()
	err, block := f.err, f.block
	f.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return err
}

func (f *fake) ReloadModule(ctx context.Context, name string) (*adminpb.Module, error) {
	if err := f.fail(ctx); err != nil {
		return nil, err
	}
	return &adminpb.Module{Name: name, State: api.ModuleRunning}, nil
}

func (f *fake) Allocate(ctx context.Context, req *adminpb.AllocateRequest) (*adminpb.Allocation, error) {
	if err := f.fail(ctx); err != nil {
		return nil, err
	}
	return &adminpb.Allocation{Workload: req.Namespace + "/" + req.Pod + "/" + req.Container, Resource: req.Resource}, nil
}

func (f *fake) Release(ctx context.Context, workload, resource string) ([]*adminpb.Allocation, error) {
	f.mu.Lock()
	f.released = append(f.released, workload)
	f.mu.Unlock()
	if err := f.fail(ctx); err != nil {
		return nil, err
	}
	return []*adminpb.Allocation{{Workload: workload, Resource: resource}}, nil
}

func (f *fake) Claims() []*adminpb.Claim { f.mu.Lock(); defer f.mu.Unlock(); return f.claims }

func (f *fake) ApplyClaim(ctx context.Context, req *adminpb.ApplyClaimRequest) (*adminpb.Claim, error) {
	if err := f.fail(ctx); err != nil {
		return nil, err
	}
	return &adminpb.Claim{Namespace: "default", Name: string(req.Claim), Pod: req.Pod, Container: req.Container}, nil
}

func (f *fake) DeleteClaim(ctx context.Context, namespace, name string) (*adminpb.Claim, error) {
	if err := f.fail(ctx); err != nil {
		return nil, err
	}
	return &adminpb.Claim{Namespace: namespace, Name: name}, nil
}
