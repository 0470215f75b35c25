package api

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
	"unicode"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/wasmlet/wasmlet/host/api/adminpb"
	"github.com/wasmlet/wasmlet/host/devicemanager"
	"github.com/wasmlet/wasmlet/host/module"
	"github.com/wasmlet/wasmlet/host/pluginmanager"
)

// admin implements adminpb.AdminServer over a Backend.
type admin struct {
	adminpb.UnimplementedAdminServer
	b   Backend
	log hclog.Logger
}

func (s *admin) Status(context.Context, *adminpb.StatusRequest) (*adminpb.StatusResponse, error) {
	st := s.b.Status()
	out := &adminpb.StatusResponse{
		Version: st.Version, Started: ts(st.Started), ConfigFile: st.ConfigFile,
		Directories: &adminpb.Directories{State: st.StateDir, PluginRegistry: st.RegistryDir,
			DevicePlugins: st.DevicePluginDir, Modules: st.ModuleDir, Checkpoint: st.Checkpoint},
		ApiSocket: st.APISocket, MetricsAddress: st.MetricsAddress, Ready: st.Ready, NotReady: st.NotReady,
		GracePeriod: dur(st.GracePeriod), Pid: int32(os.Getpid()), Counts: &adminpb.Counts{},
	}
	if !st.Started.IsZero() {
		out.Uptime = dur(time.Since(st.Started).Truncate(time.Millisecond))
	}
	c := out.Counts
	for _, info := range s.b.Modules() {
		if info.Err != nil {
			c.ModulesRefused++
		}
		if info.Module != nil {
			c.Modules++
			if info.Module.Status().Quarantined {
				c.ModulesQuarantined++
			}
		}
	}
	for _, p := range s.b.Plugins() {
		c.Plugins++
		switch p.State {
		case pluginmanager.StateRegistered:
			c.PluginsRegistered++
		case pluginmanager.StateFailing, pluginmanager.StateWaiting:
			c.PluginsFailing++
		}
	}
	for _, r := range s.b.Resources() {
		c.Resources++
		c.Devices += int32(r.Capacity)
		c.DevicesHealthy += int32(r.Healthy)
		c.DevicesAllocated += int32(r.Allocated)
	}
	c.Allocations = int32(len(s.b.Allocations()))
	for _, b := range st.Bridged {
		out.Bridged = append(out.Bridged, &adminpb.BridgedSource{Resource: b.Resource, Provider: b.Provider,
			Socket: b.Socket, RegistrationSocket: b.RegistrationSocket, Mode: b.Mode, State: string(b.State),
			LastError: b.LastError, Registrations: int32(b.Registrations), RegisteredAt: ts(b.RegisteredAt),
			NextAttempt: ts(b.NextAttempt), KubeletPresent: b.KubeletPresent, Streams: int32(b.Streams),
			Devices: int32(b.Devices), Healthy: int32(b.Healthy)})
	}
	for _, sp := range st.CDISpecs {
		out.CdiSpecs = append(out.CdiSpecs, &adminpb.CDISpec{Resource: sp.Resource, Provider: sp.Provider,
			Path: sp.Path, Devices: sp.Devices, Skipped: sp.Skipped, Error: sp.Error, WrittenAt: ts(sp.WrittenAt)})
	}
	return out, nil
}

func (s *admin) ListPlugins(context.Context, *adminpb.ListPluginsRequest) (*adminpb.ListPluginsResponse, error) {
	ps := s.b.Plugins()
	out := &adminpb.ListPluginsResponse{Plugins: make([]*adminpb.Plugin, len(ps))}
	for i, p := range ps {
		out.Plugins[i] = pluginPB(p)
	}
	return out, nil
}

func (s *admin) ListModules(context.Context, *adminpb.ListModulesRequest) (*adminpb.ListModulesResponse, error) {
	infos := s.b.Modules()
	out := &adminpb.ListModulesResponse{Modules: make([]*adminpb.Module, len(infos))}
	for i, info := range infos {
		out.Modules[i] = modulePB(info)
	}
	return out, nil
}

func (s *admin) ReloadModule(ctx context.Context, req *adminpb.ReloadModuleRequest) (*adminpb.ReloadModuleResponse, error) {
	name := req.GetName()
	if name == "" {
		return nil, status.Error(codes.InvalidArgument, "a module name is required")
	}
	if !s.knowsModule(name) {
		return nil, status.Errorf(codes.NotFound, "no module %q (known: %s)", name, s.moduleNames())
	}
	s.log.Info("module reload requested through the API", "module", name)
	m, err := s.b.ReloadModule(ctx, name)
	if err != nil {
		var le *module.LoadError
		if errors.As(err, &le) {
			return nil, status.Error(codes.FailedPrecondition, err.Error())
		}
		return nil, status.Errorf(codes.Unknown, "reload %s: %v", name, err)
	}
	info := module.Info{Name: name, Path: m.Path(), Module: m}
	return &adminpb.ReloadModuleResponse{Module: modulePB(info)}, nil
}

func (s *admin) knowsModule(name string) bool {
	for _, info := range s.b.Modules() {
		if info.Name == name {
			return true
		}
	}
	return false
}

func (s *admin) moduleNames() string {
	var names []string
	for _, info := range s.b.Modules() {
		names = append(names, info.Name)
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

func (s *admin) ListResources(_ context.Context, req *adminpb.ListResourcesRequest) (*adminpb.ListResourcesResponse, error) {
	grace := s.b.Status().GracePeriod
	out := &adminpb.ListResourcesResponse{}
	var names []string
	for _, r := range s.b.Resources() {
		names = append(names, r.Name)
		if req.GetName() == "" || r.Name == req.GetName() {
			out.Resources = append(out.Resources, resourcePB(r, grace))
		}
	}
	if req.GetName() != "" && len(out.Resources) == 0 {
		return nil, notFoundResource(req.GetName(), names)
	}
	return out, nil
}

func notFoundResource(name string, known []string) error {
	list := "none"
	if len(known) > 0 {
		list = strings.Join(known, ", ")
	}
	return status.Errorf(codes.NotFound, "no resource %q on this node (resources: %s)", name, list)
}

func (s *admin) ListAllocations(_ context.Context, req *adminpb.ListAllocationsRequest) (*adminpb.ListAllocationsResponse, error) {
	out := &adminpb.ListAllocationsResponse{}
	for _, a := range s.b.Allocations() {
		if (req.GetWorkload() == "" || a.Workload == req.GetWorkload()) && (req.GetResource() == "" || a.Resource == req.GetResource()) {
			out.Allocations = append(out.Allocations, allocationPB(a))
		}
	}
	return out, nil
}

func (s *admin) Allocate(ctx context.Context, req *adminpb.AllocateRequest) (*adminpb.AllocateResponse, error) {
	var problems []string
	for _, f := range []struct{ what, v string }{
		{"namespace", req.GetNamespace()}, {"pod", req.GetPod()}, {"container", req.GetContainer()}, {"resource", req.GetResource()},
	} {
		if err := checkName(f.what, f.v, f.what != "resource"); err != nil {
			problems = append(problems, err.Error())
		}
	}
	if req.GetPodUid() != "" {
		if err := checkName("pod uid", req.GetPodUid(), true); err != nil {
			problems = append(problems, err.Error())
		}
	}
	if req.GetCount() < 1 {
		problems = append(problems, fmt.Sprintf("count must be at least 1, not %d", req.GetCount()))
	}
	if len(problems) > 0 {
		return nil, status.Error(codes.InvalidArgument, "invalid allocation request: "+strings.Join(problems, "; "))
	}
	a, err := s.b.Allocate(ctx, devicemanager.AllocateRequest{
		Namespace: req.GetNamespace(), Pod: req.GetPod(), PodUID: req.GetPodUid(), Container: req.GetContainer(),
		Resource: req.GetResource(), Count: int(req.GetCount()),
	})
	if err != nil {
		return nil, s.deviceError(req.GetResource(), err)
	}
	return &adminpb.AllocateResponse{Allocation: allocationPB(a)}, nil
}

func (s *admin) Release(ctx context.Context, req *adminpb.ReleaseRequest) (*adminpb.ReleaseResponse, error) {
	w := req.GetWorkload()
	parts := strings.Split(w, "/")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return nil, status.Errorf(codes.InvalidArgument, "workload %q is not of the form namespace/pod/container", w)
	}
	released, err := s.b.Release(ctx, w, req.GetResource())
	if err != nil {
		return nil, s.deviceError(req.GetResource(), err)
	}
	if len(released) == 0 {
		if req.GetResource() != "" {
			return nil, status.Errorf(codes.NotFound, "workload %s holds no devices of %s", w, req.GetResource())
		}
		return nil, status.Errorf(codes.NotFound, "workload %s holds no devices", w)
	}
	out := &adminpb.ReleaseResponse{Released: make([]*adminpb.Allocation, len(released))}
	for i, a := range released {
		out.Released[i] = allocationPB(a)
	}
	return out, nil
}

// deviceError maps a device manager error to a gRPC status.
func (s *admin) deviceError(resource string, err error) error {
	var code codes.Code
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return status.FromContextError(err).Err()
	case errors.Is(err, devicemanager.ErrUnknownResource):
		code = codes.NotFound
	case errors.Is(err, devicemanager.ErrInvalid):
		code = codes.InvalidArgument
	case errors.Is(err, devicemanager.ErrConflict):
		code = codes.AlreadyExists
	case errors.Is(err, devicemanager.ErrNotDurable):
		code = codes.Unavailable
	case errors.Is(err, devicemanager.ErrUnavailable):
		// Not enough devices, unless the provider is gone: then it is
		// worth retrying once it is back.
		code = codes.ResourceExhausted
		if errors.Is(err, errNoDevices) {
			code = codes.Unavailable
		}
		for _, r := range s.b.Resources() {
			if r.Name == resource && !r.Connected {
				code = codes.Unavailable
			}
		}
	default:
		code = codes.Unknown
	}
	return status.Error(code, err.Error())
}

// checkName refuses what cannot be part of a workload key or a log line:
// empty names, control characters, and, for the parts of the key, "/".
func checkName(what, v string, keyPart bool) error {
	switch {
	case v == "":
		return fmt.Errorf("%s is required", what)
	case len(v) > 253:
		return fmt.Errorf("%s is %d bytes long; at most 253 are allowed", what, len(v))
	case keyPart && strings.Contains(v, "/"):
		return fmt.Errorf("%s %q contains \"/\"", what, v)
	}
	for _, r := range v {
		if unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return fmt.Errorf("%s %q contains a space or an unprintable character", what, v)
		}
	}
	return nil
}
