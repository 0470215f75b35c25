package api

import (
	"context"

	"github.com/wasmlet/wasmlet/host/api/adminpb"
)

// Backend is the running host, as the API sees it: every answer is in the
// API's own types (the messages of adminpb), which the host converts its
// parts' state into (host/node does), so that this package depends on none
// of them. Every method must be safe for concurrent use; the API does not
// modify what they return, but for Status's answer, which must be new on
// every call. Failures a client can act on are *Error values
// (Fail, Failf).
type Backend interface {
	// Status describes the host itself, in a new message that the API
	// completes with pid, uptime and counts.
	Status() *adminpb.StatusResponse
	// Modules lists every module name the host knows, in name order, each
	// in one of the Module* states.
	Modules() []*adminpb.Module
	// ReloadModule loads the named module again from its file. A refused
	// file is a ReasonModuleRefused error.
	ReloadModule(ctx context.Context, name string) (*adminpb.Module, error)
	// Plugins lists the plugin sockets, each in one of the Plugin* states.
	Plugins() []*adminpb.Plugin
	// Resources lists the extended resources, in name order, with every
	// device.
	Resources() []*adminpb.Resource
	// Allocations lists what containers hold.
	Allocations() []*adminpb.Allocation
	// Allocate and Release change what containers hold; each answers once
	// the change is durable. The API checks the request first.
	Allocate(ctx context.Context, req *adminpb.AllocateRequest) (*adminpb.Allocation, error)
	Release(ctx context.Context, workload, resource string) ([]*adminpb.Allocation, error)
	// CSIDrivers lists the registered CSI drivers, in name order, with
	// their node facts.
	CSIDrivers() []*adminpb.CSIDriver
	// Claims lists the applied ResourceClaims, by namespace and name, each
	// device with its health now.
	Claims() []*adminpb.Claim
	// ApplyClaim decodes, allocates and prepares a claim; DeleteClaim
	// undoes it. Each answers once the change is durable. The API checks
	// the request's sizes and names first; the backend decodes the claim.
	ApplyClaim(ctx context.Context, req *adminpb.ApplyClaimRequest) (*adminpb.Claim, error)
	DeleteClaim(ctx context.Context, namespace, name string) (*adminpb.Claim, error)
}

// Module states (adminpb.Module.State).
const (
	ModuleRunning     = "running"
	ModuleLoading     = "loading"
	ModuleQuarantined = "quarantined"
	ModuleConflict    = "conflict"
	ModuleFailing     = "failing"
	ModuleRefused     = "refused"
)

// Plugin states (adminpb.Plugin.State).
const (
	PluginRegistering   = "registering"
	PluginRegistered    = "registered"
	PluginFailing       = "failing"
	PluginWaiting       = "waiting"
	PluginDeregistering = "deregistering"
)
