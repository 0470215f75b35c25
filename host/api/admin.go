package api

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"
	"unicode"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/wasmlet/wasmlet/host/api/adminpb"
)

// admin implements adminpb.AdminServer over a Backend.
type admin struct {
	adminpb.UnimplementedAdminServer
	b   Backend
	log hclog.Logger
}

func (s *admin) Status(context.Context, *adminpb.StatusRequest) (*adminpb.StatusResponse, error) {
	out := s.b.Status()
	if out == nil {
		out = &adminpb.StatusResponse{}
	}
	out.Pid = int32(os.Getpid())
	if out.Started != nil {
		out.Uptime = durationpb.New(time.Since(out.Started.AsTime()).Truncate(time.Millisecond))
	}
	c := &adminpb.Counts{}
	out.Counts = c
	for _, m := range s.b.Modules() {
		c.Modules++
		switch m.State {
		case ModuleRunning:
			c.ModulesRunning++
		case ModuleLoading:
			c.ModulesLoading++
		case ModuleQuarantined:
			c.ModulesQuarantined++
		case ModuleConflict:
			c.ModulesConflicting++
		case ModuleFailing:
			c.ModulesFailing++
		case ModuleRefused:
			c.ModulesRefused++
		}
	}
	for _, p := range s.b.Plugins() {
		c.Plugins++
		switch p.State {
		case PluginRegistered:
			c.PluginsRegistered++
		case PluginWaiting:
			c.PluginsWaiting++
		case PluginFailing:
			c.PluginsFailing++
		}
	}
	for _, r := range s.b.Resources() {
		c.Resources++
		c.Devices += r.Capacity
		c.DevicesHealthy += r.Healthy
		c.DevicesAllocated += r.Allocated
		if r.Conflict != "" {
			c.ResourcesConflicting++
		}
	}
	c.Allocations = int32(len(s.b.Allocations()))
	c.Claims = int32(len(s.b.Claims()))
	c.CsiDrivers = int32(len(s.b.CSIDrivers()))
	return out, nil
}

func (s *admin) ListPlugins(context.Context, *adminpb.ListPluginsRequest) (*adminpb.ListPluginsResponse, error) {
	ps := s.b.Plugins()
	return &adminpb.ListPluginsResponse{Plugins: ps}, nil
}

func (s *admin) ListModules(context.Context, *adminpb.ListModulesRequest) (*adminpb.ListModulesResponse, error) {
	return &adminpb.ListModulesResponse{Modules: s.b.Modules()}, nil
}

func (s *admin) ReloadModule(ctx context.Context, req *adminpb.ReloadModuleRequest) (*adminpb.ReloadModuleResponse, error) {
	name := req.GetName()
	if name == "" {
		return nil, failf(ReasonInvalid, "a module name is required")
	}
	if !s.knowsModule(name) {
		return nil, failf(ReasonNotFound, "no module %q (known: %s)", name, s.moduleNames())
	}
	s.log.Info("module reload requested through the API", "module", name)
	m, err := s.b.ReloadModule(ctx, name)
	if err != nil {
		return nil, statusOf(ctx, err)
	}
	return &adminpb.ReloadModuleResponse{Module: m}, nil
}

func (s *admin) knowsModule(name string) bool {
	for _, m := range s.b.Modules() {
		if m.Name == name {
			return true
		}
	}
	return false
}

func (s *admin) moduleNames() string {
	var names []string
	for _, m := range s.b.Modules() {
		names = append(names, m.Name)
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

func (s *admin) ListResources(_ context.Context, req *adminpb.ListResourcesRequest) (*adminpb.ListResourcesResponse, error) {
	out := &adminpb.ListResourcesResponse{}
	var names []string
	for _, r := range s.b.Resources() {
		names = append(names, r.Name)
		if req.GetName() == "" || r.Name == req.GetName() {
			out.Resources = append(out.Resources, r)
		}
	}
	if req.GetName() != "" && len(out.Resources) == 0 {
		list := "none"
		if len(names) > 0 {
			list = strings.Join(names, ", ")
		}
		return nil, failf(ReasonNotFound, "no resource %q on this node (resources: %s)", req.GetName(), list)
	}
	return out, nil
}

func (s *admin) ListAllocations(_ context.Context, req *adminpb.ListAllocationsRequest) (*adminpb.ListAllocationsResponse, error) {
	out := &adminpb.ListAllocationsResponse{}
	for _, a := range s.b.Allocations() {
		if (req.GetWorkload() == "" || a.Workload == req.GetWorkload()) && (req.GetResource() == "" || a.Resource == req.GetResource()) {
			out.Allocations = append(out.Allocations, a)
		}
	}
	return out, nil
}

func (s *admin) ListCSIDrivers(context.Context, *adminpb.ListCSIDriversRequest) (*adminpb.ListCSIDriversResponse, error) {
	return &adminpb.ListCSIDriversResponse{Drivers: s.b.CSIDrivers()}, nil
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
		return nil, failf(ReasonInvalid, "invalid allocation request: %s", strings.Join(problems, "; "))
	}
	a, err := s.b.Allocate(ctx, req)
	if err != nil {
		return nil, statusOf(ctx, err)
	}
	return &adminpb.AllocateResponse{Allocation: a}, nil
}

func (s *admin) Release(ctx context.Context, req *adminpb.ReleaseRequest) (*adminpb.ReleaseResponse, error) {
	w := req.GetWorkload()
	if err := CheckWorkload(w); err != nil {
		return nil, failf(ReasonInvalid, "%v", err)
	}
	released, err := s.b.Release(ctx, w, req.GetResource())
	if err != nil {
		return nil, statusOf(ctx, err)
	}
	if len(released) == 0 {
		if req.GetResource() != "" {
			return nil, failf(ReasonNotFound, "workload %s holds no devices of %s", w, req.GetResource())
		}
		return nil, failf(ReasonNotFound, "workload %s holds no devices", w)
	}
	return &adminpb.ReleaseResponse{Released: released}, nil
}

// MaxClaimSize bounds the claim an ApplyClaim carries.
const MaxClaimSize = 1 << 20

func (s *admin) ApplyClaim(ctx context.Context, req *adminpb.ApplyClaimRequest) (*adminpb.ApplyClaimResponse, error) {
	var problems []string
	switch n := len(req.GetClaim()); {
	case n == 0:
		problems = append(problems, "a claim is required")
	case n > MaxClaimSize:
		problems = append(problems, fmt.Sprintf("the claim is %d bytes, at most %d are allowed", n, MaxClaimSize))
	}
	if req.GetPod() != "" || req.GetContainer() != "" || req.GetPodUid() != "" {
		for _, f := range []struct{ what, v string }{{"pod", req.GetPod()}, {"container", req.GetContainer()}} {
			if err := checkName(f.what, f.v, true); err != nil {
				problems = append(problems, err.Error()+" (pod and container go together)")
			}
		}
		if req.GetPodUid() != "" {
			if err := checkName("pod uid", req.GetPodUid(), true); err != nil {
				problems = append(problems, err.Error())
			}
		}
	}
	if len(problems) > 0 {
		return nil, failf(ReasonInvalid, "invalid claim request: %s", strings.Join(problems, "; "))
	}
	c, err := s.b.ApplyClaim(ctx, req)
	if err != nil {
		return nil, statusOf(ctx, err)
	}
	return &adminpb.ApplyClaimResponse{Claim: c}, nil
}

func (s *admin) ListClaims(_ context.Context, req *adminpb.ListClaimsRequest) (*adminpb.ListClaimsResponse, error) {
	out := &adminpb.ListClaimsResponse{}
	for _, c := range s.b.Claims() {
		if req.GetNamespace() == "" || c.Namespace == req.GetNamespace() {
			out.Claims = append(out.Claims, c)
		}
	}
	return out, nil
}

func claimKey(namespace, name string) (string, string, error) {
	if namespace == "" {
		namespace = "default"
	}
	if err := checkName("claim name", name, true); err != nil {
		return "", "", failf(ReasonInvalid, "%v", err)
	}
	if err := checkName("namespace", namespace, true); err != nil {
		return "", "", failf(ReasonInvalid, "%v", err)
	}
	return namespace, name, nil
}

func (s *admin) GetClaim(_ context.Context, req *adminpb.GetClaimRequest) (*adminpb.GetClaimResponse, error) {
	ns, name, err := claimKey(req.GetNamespace(), req.GetName())
	if err != nil {
		return nil, err
	}
	var names []string
	for _, c := range s.b.Claims() {
		if c.Namespace == ns && c.Name == name {
			return &adminpb.GetClaimResponse{Claim: c}, nil
		}
		names = append(names, c.Namespace+"/"+c.Name)
	}
	list := "none"
	if len(names) > 0 {
		list = strings.Join(names, ", ")
	}
	return nil, failf(ReasonNotFound, "no claim %s/%s on this node (claims: %s)", ns, name, list)
}

func (s *admin) DeleteClaim(ctx context.Context, req *adminpb.DeleteClaimRequest) (*adminpb.DeleteClaimResponse, error) {
	ns, name, err := claimKey(req.GetNamespace(), req.GetName())
	if err != nil {
		return nil, err
	}
	c, err := s.b.DeleteClaim(ctx, ns, name)
	if err != nil {
		return nil, statusOf(ctx, err)
	}
	return &adminpb.DeleteClaimResponse{Claim: c}, nil
}

// CheckWorkload checks that w is of the form namespace/pod/container, as
// allocations are recorded.
func CheckWorkload(w string) error {
	parts := strings.Split(w, "/")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return fmt.Errorf("workload %q is not of the form namespace/pod/container", w)
	}
	return nil
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
