package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	resourceapi "k8s.io/api/resource/v1"
	apiresource "k8s.io/apimachinery/pkg/api/resource"

	"github.com/wasmlet/wasmlet/abi"
	"github.com/wasmlet/wasmlet/host/api"
	"github.com/wasmlet/wasmlet/host/api/adminpb"
	"github.com/wasmlet/wasmlet/host/bridge"
	"github.com/wasmlet/wasmlet/host/cdi"
	"github.com/wasmlet/wasmlet/host/claim"
	"github.com/wasmlet/wasmlet/host/csi"
	"github.com/wasmlet/wasmlet/host/device"
	"github.com/wasmlet/wasmlet/host/devicemanager"
	"github.com/wasmlet/wasmlet/host/devicesource"
	"github.com/wasmlet/wasmlet/host/dradriver"
	"github.com/wasmlet/wasmlet/host/module"
	"github.com/wasmlet/wasmlet/host/pluginmanager"
)

// parts are the pieces of a running host that the host API is served from.
// A nil part serves nothing: its lists are empty, and calls that need it
// fail with api.ReasonNotRunning.
type parts struct {
	// status describes the host; nil reports an empty status.
	status  func() *adminpb.StatusResponse
	grace   time.Duration // the devices' grace period, for their deadlines
	modules *module.Registry
	sources *devicesource.Controller
	plugins *pluginmanager.Manager
	devices *devicemanager.Manager
	// kubelet is the device plugin registration service: the device
	// plugins refused a resource a device source owns.
	kubelet *devicemanager.Server
	claims  *claim.Store
	csi     *csi.Drivers
}

// backend is the host API's view of the node (api.Backend): it asks the
// parts and converts what they say into the API's own types, so that the
// API depends on none of them.
type backend struct{ p parts }

var _ api.Backend = backend{}

func (b backend) Status() *adminpb.StatusResponse {
	if b.p.status == nil {
		return &adminpb.StatusResponse{}
	}
	return b.p.status()
}

func (b backend) Modules() []*adminpb.Module {
	if b.p.modules == nil {
		return nil
	}
	var conflicts map[string]string
	if b.p.sources != nil {
		conflicts = b.p.sources.Conflicts()
	}
	plugins := map[string]string{} // module -> the device plugin refused its resource
	for _, c := range b.pluginConflicts() {
		plugins[c.Module] = c.String()
	}
	infos := b.p.modules.List()
	out := make([]*adminpb.Module, len(infos))
	for i, info := range infos {
		n := moduleNotes{conflict: b.conflict(info, conflicts), plugin: plugins[info.Name]}
		if b.p.sources != nil {
			if src := b.p.sources.Source(info.Name); src != nil {
				st := src.Status()
				n.source = &st
			}
		}
		out[i] = moduleView(info, n)
	}
	return out
}

func (b backend) pluginConflicts() []devicemanager.Conflict {
	if b.p.kubelet == nil {
		return nil
	}
	return b.p.kubelet.Conflicts()
}

// conflict says why a running module is not used, or "": it serves a
// resource or handles a plugin type another module serves already.
func (b backend) conflict(info module.Info, sources map[string]string) string {
	m := info.Module
	if m == nil {
		return ""
	}
	d := m.Description()
	switch d.Kind {
	case abi.KindDeviceSource:
		if other := sources[info.Name]; other != "" {
			return fmt.Sprintf("%s is served by %s; %s takes over when %s goes", d.Resource, other, info.Name, other)
		}
	case abi.KindHandler:
		if h := b.p.modules.Handler(d.PluginType); h != nil && h.Name() != info.Name {
			return fmt.Sprintf("plugin type %s is handled by %s", d.PluginType, h.Name())
		}
	}
	return ""
}

func (b backend) ReloadModule(ctx context.Context, name string) (*adminpb.Module, error) {
	if b.p.modules == nil {
		return nil, api.Failf(api.ReasonNotRunning, "the module registry is not running")
	}
	if _, err := b.p.modules.Reload(ctx, name); err != nil {
		var le *module.LoadError
		if errors.As(err, &le) {
			return nil, api.Fail(api.ReasonModuleRefused, err)
		}
		return nil, err
	}
	for _, m := range b.Modules() {
		if m.Name == name {
			return m, nil
		}
	}
	return nil, api.Failf(api.ReasonNotFound, "module %q went while it was reloaded", name)
}

func (b backend) Plugins() []*adminpb.Plugin {
	if b.p.plugins == nil {
		return nil
	}
	return views(b.p.plugins.Plugins(), pluginView)
}

func (b backend) Resources() []*adminpb.Resource {
	if b.p.devices == nil {
		return nil
	}
	conflicts := map[string]string{}
	for _, c := range b.pluginConflicts() {
		conflicts[c.Resource] = c.String()
	}
	return views(b.p.devices.Resources(), func(r devicemanager.ResourceStatus) *adminpb.Resource {
		v := resourceView(r, b.p.grace)
		v.Conflict = conflicts[r.Name]
		return v
	})
}

func (b backend) Allocations() []*adminpb.Allocation {
	if b.p.devices == nil {
		return nil
	}
	return views(b.p.devices.Allocations(), allocationView)
}

func (b backend) Allocate(ctx context.Context, req *adminpb.AllocateRequest) (*adminpb.Allocation, error) {
	if b.p.devices == nil {
		return nil, api.Failf(api.ReasonNotRunning, "the device manager is not running")
	}
	a, err := b.p.devices.Allocate(ctx, devicemanager.AllocateRequest{
		Namespace: req.GetNamespace(), Pod: req.GetPod(), PodUID: req.GetPodUid(), Container: req.GetContainer(),
		Resource: req.GetResource(), Count: int(req.GetCount()),
	})
	if err != nil {
		return nil, b.deviceError(req.GetResource(), err)
	}
	return allocationView(a), nil
}

func (b backend) Release(ctx context.Context, workload, resource string) ([]*adminpb.Allocation, error) {
	if b.p.devices == nil {
		return nil, api.Failf(api.ReasonNotRunning, "the device manager is not running")
	}
	released, err := b.p.devices.Release(ctx, workload, resource)
	if err != nil {
		return nil, b.deviceError(resource, err)
	}
	return views(released, allocationView), nil
}

func (b backend) CSIDrivers() []*adminpb.CSIDriver {
	if b.p.csi == nil {
		return nil
	}
	return views(b.p.csi.List(), csiDriverView)
}

func csiDriverView(d csi.Driver) *adminpb.CSIDriver {
	return &adminpb.CSIDriver{Name: d.Name, Version: d.Version, Endpoint: d.Endpoint, RegistrationSocket: d.SocketPath,
		NodeId: d.NodeID, MaxVolumes: d.MaxVolumes, Topology: d.Topology, Capabilities: d.Capabilities, Registered: ts(d.Registered)}
}

// reasons map a subsystem's errors to the API's reasons, in order.
type reasons []struct {
	err    error
	reason api.Reason
}

// classify returns err classified by the first of rs it wraps, or nil.
func (rs reasons) classify(err error) error {
	for _, r := range rs {
		if errors.Is(err, r.err) {
			return api.Fail(r.reason, err)
		}
	}
	return nil
}

// deviceReasons classify the device manager's own errors.
var deviceReasons = reasons{
	{devicemanager.ErrUnknownResource, api.ReasonNotFound},
	{devicemanager.ErrInvalid, api.ReasonInvalid},
	{devicemanager.ErrConflict, api.ReasonConflict},
	{devicemanager.ErrNotDurable, api.ReasonNotDurable},
}

// deviceError classifies a device manager error for the API.
func (b backend) deviceError(resource string, err error) error {
	var ce *module.CallError
	if errors.As(err, &ce) && ce.Fault == module.FaultBusy {
		// Before the context errors: a busy module's error wraps the
		// deadline it waited until, which was the host's, not the client's.
		return api.Fail(api.ReasonBusy, err)
	}
	if f := deviceReasons.classify(err); f != nil {
		return f
	}
	switch {
	case errors.Is(err, devicemanager.ErrUnavailable):
		// Not enough devices, unless the provider is gone: then it is
		// worth retrying once it is back.
		for _, r := range b.p.devices.Resources() {
			if r.Name == resource && !r.Connected {
				return api.Fail(api.ReasonProviderUnavailable, err)
			}
		}
		return api.Fail(api.ReasonNotEnoughDevices, err)
	case errors.Is(err, context.DeadlineExceeded):
		return api.Fail(api.ReasonTimeout, err)
	}
	return api.Fail(api.ReasonFailed, err)
}

// views converts each of in with view.
func views[T, V any](in []T, view func(T) V) []V {
	out := make([]V, len(in))
	for i, v := range in {
		out[i] = view(v)
	}
	return out
}

// ts is t as a Timestamp, or nil for the zero time.
func ts(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

// dur is d as a Duration, or nil for 0.
func dur(d time.Duration) *durationpb.Duration {
	if d == 0 {
		return nil
	}
	return durationpb.New(d)
}

// pluginStates maps the plugin manager's states to the API's.
var pluginStates = map[string]string{
	pluginmanager.StateRegistering: api.PluginRegistering,
	pluginmanager.StateRegistered:  api.PluginRegistered,
	pluginmanager.StateFailing:     api.PluginFailing,
	pluginmanager.StateWaiting:     api.PluginWaiting,
	pluginmanager.StateLeaving:     api.PluginDeregistering,
}

func pluginView(s pluginmanager.PluginStatus) *adminpb.Plugin {
	state, ok := pluginStates[s.State]
	if !ok {
		state = s.State
	}
	return &adminpb.Plugin{
		SocketPath: s.SocketPath, State: state, Type: s.Type, Name: s.Name, Endpoint: s.Endpoint,
		Versions: s.Versions, Handler: s.Handler, Action: s.Action, Resource: s.Resource,
		Attributes: maps.Clone(s.Attributes), Seen: ts(s.SeenAt), Registered: ts(s.Registered),
		Failures: int32(s.Failures), LastError: s.LastError, NextRetry: ts(s.NextRetry), WaitingFor: s.Waiting,
	}
}

// moduleNotes are what the host knows of a module besides the module
// itself.
type moduleNotes struct {
	conflict string               // why it runs unused, or ""
	source   *devicesource.Status // its device source, if it serves one
	plugin   string               // a device plugin refused its resource, or ""
}

// moduleView is one module name as the API shows it. Its state is, first
// that applies: refused (nothing runs), loading (nothing runs yet),
// quarantined, conflict (it runs, unused), failing (its device source's
// discovery fails), running.
func moduleView(info module.Info, notes moduleNotes) *adminpb.Module {
	out := &adminpb.Module{Name: info.Name, State: api.ModuleRefused, Path: info.Path,
		LoadingPath: info.Loading, LoadingSince: ts(info.LoadingSince)}
	if info.Module == nil && info.Loading != "" {
		out.State = api.ModuleLoading
	}
	if m := info.Module; m != nil {
		st := m.Status()
		d := st.Description
		switch {
		case st.Quarantined:
			out.State = api.ModuleQuarantined
		case notes.conflict != "":
			out.State, out.Conflict = api.ModuleConflict, notes.conflict
		case notes.source != nil && notes.source.State == devicesource.StateFailing:
			out.State = api.ModuleFailing
		default:
			out.State = api.ModuleRunning
		}
		out.Path, out.Sha256, out.Size = st.Path, st.Digest, st.Size
		out.Kind, out.Serves, out.Version, out.Summary = d.Kind.String(), m.Serves(), d.Version, d.Summary
		out.Operations, out.PrestartRequired, out.Exports = d.Operations, d.PreStartRequired, st.Exports
		out.Limits = &adminpb.Limits{MemoryBytes: st.MemoryLimit, CallTimeout: dur(st.CallTimeout),
			MaxReplyBytes: st.MaxReply, PoolSize: int32(st.PoolSize), PoolMax: int32(st.PoolMax)}
		for _, mt := range st.Mounts {
			out.Mounts = append(out.Mounts, &adminpb.Mount{Host: mt.Host, Guest: mt.Guest, Root: mt.Root})
		}
		out.Instances, out.Idle = int32(st.Instances), int32(st.Idle)
		out.Calls, out.Faults, out.ConsecutiveFaults = st.Calls, st.Faults, int32(st.ConsecutiveFaults)
		out.LastFault, out.LastFaultAt = st.LastFault, ts(st.LastFaultAt)
		out.Quarantined, out.QuarantineReason, out.QuarantinedAt = st.Quarantined, st.QuarantineReason, ts(st.QuarantinedAt)
		out.Loaded, out.CompileTime, out.InstantiateTime = ts(st.Loaded), dur(st.Timing.Compile), dur(st.Timing.Instantiate)
	}
	if src := notes.source; src != nil {
		out.DiscoveryState, out.DiscoveryFailures = src.State, int32(src.ConsecutiveFailures)
		out.NextDiscovery = ts(src.NextDiscovery)
		if src.State == devicesource.StateFailing {
			out.DiscoveryError = src.LastError
		}
		if src.State == devicesource.StateStopped {
			out.DiscoveryError = src.Ended
		}
	}
	out.PluginConflict = notes.plugin
	if info.Err != nil {
		out.RefusedPath, out.Refused, out.RefusedAt = info.Path, info.Err.Error(), ts(info.Failed)
		out.RefusedProblems = module.Problems(info.Err)
	}
	return out
}

func resourceView(r devicemanager.ResourceStatus, grace time.Duration) *adminpb.Resource {
	out := &adminpb.Resource{
		Name: r.Name, Provider: r.Provider, Connected: r.Connected, DisconnectedAt: ts(r.DisconnectedAt),
		PrestartRequired: r.Options.PreStartRequired, PreferredAllocation: r.Options.PreferredAllocation,
		Capacity: int32(r.Capacity), Healthy: int32(r.Healthy), Allocated: int32(r.Allocated),
		Allocatable: int32(r.Allocatable), LastUpdate: ts(r.LastUpdate), LastError: r.LastError,
		ProviderSwitches: int32(r.ProviderSwitches),
	}
	if !r.Connected && !r.DisconnectedAt.IsZero() && grace > 0 {
		out.GraceDeadline = ts(r.DisconnectedAt.Add(grace))
	}
	out.Driver = r.Options.Driver
	out.SharedCounters = counterSetViews(r.SharedCounters)
	out.Devices = make([]*adminpb.Device, len(r.Devices))
	for i, d := range r.Devices {
		v := &adminpb.Device{Id: d.ID, Healthy: d.Healthy, NumaNodes: d.NUMANodes,
			Attributes: attributeValues(d.Attributes), AllocatedTo: d.AllocatedTo, Shared: d.AllowMultipleAllocations}
		for k, a := range d.Attributes {
			if v.AttributeTypes == nil {
				v.AttributeTypes = map[string]string{}
			}
			v.AttributeTypes[k] = a.Type()
		}
		for k, c := range d.Capacity {
			if v.Capacity == nil {
				v.Capacity = map[string]string{}
			}
			v.Capacity[k] = c.Value.String()
		}
		for _, c := range d.ConsumesCounters {
			v.ConsumesCounters = append(v.ConsumesCounters, counters(c.CounterSet, c.Counters))
		}
		out.Devices[i] = v
	}
	return out
}

func counterSetViews(sets []device.CounterSet) []string {
	var out []string
	for _, s := range sets {
		out = append(out, counters(s.Name, s.Counters))
	}
	return out
}

// counters is "set: name=quantity, ...", names sorted.
func counters(set string, m map[string]apiresource.Quantity) string {
	parts := make([]string, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		q := m[k]
		parts = append(parts, k+"="+q.String())
	}
	return set + ": " + strings.Join(parts, ", ")
}

func (b backend) Claims() []*adminpb.Claim {
	if b.p.claims == nil {
		return nil
	}
	return views(b.p.claims.List(), b.claimView)
}

func (b backend) ApplyClaim(ctx context.Context, req *adminpb.ApplyClaimRequest) (*adminpb.Claim, error) {
	if b.p.claims == nil {
		return nil, api.Failf(api.ReasonNotRunning, "the claim store is not running")
	}
	rc, err := claim.Decode(req.GetClaim())
	if err != nil {
		return nil, api.Fail(api.ReasonInvalid, err)
	}
	c, err := b.p.claims.Apply(ctx, rc, claim.Workload{Pod: req.GetPod(), PodUID: req.GetPodUid(), Container: req.GetContainer()})
	if err != nil {
		return nil, claimError(err)
	}
	return b.claimView(c), nil
}

func (b backend) DeleteClaim(ctx context.Context, namespace, name string) (*adminpb.Claim, error) {
	if b.p.claims == nil {
		return nil, api.Failf(api.ReasonNotRunning, "the claim store is not running")
	}
	c, err := b.p.claims.Delete(ctx, namespace, name)
	if err != nil {
		return nil, claimError(err)
	}
	return b.claimView(c), nil
}

// claimReasons classify the claim store's errors; another error is
// returned as it is.
var claimReasons = reasons{
	{claim.ErrInvalid, api.ReasonInvalid},
	{claim.ErrUnsatisfiable, api.ReasonNotEnoughDevices},
	{claim.ErrConflict, api.ReasonConflict},
	{claim.ErrNotFound, api.ReasonNotFound},
	{claim.ErrNotDurable, api.ReasonNotDurable},
}

func claimError(err error) error {
	if f := claimReasons.classify(err); f != nil {
		return f
	}
	return err
}

func (b backend) claimView(c *claim.Claim) *adminpb.Claim {
	o := c.Object.DeepCopy()
	o.APIVersion, o.Kind = resourceapi.SchemeGroupVersion.String(), "ResourceClaim"
	raw, _ := json.Marshal(o)
	out := &adminpb.Claim{Namespace: o.Namespace, Name: o.Name, Uid: string(o.UID), Pod: c.Workload.Pod,
		PodUid: c.Workload.PodUID, Container: c.Workload.Container, Response: containerResponseView(c.Edits),
		Allocated: ts(c.At), Object: string(raw)}
	for _, d := range b.p.claims.Devices(c) {
		v := &adminpb.ClaimDevice{Request: d.Request, Driver: d.Driver, Pool: d.Pool, Device: d.Device,
			DeviceClass: d.Class, Health: d.Health, CdiDevices: d.CDIDevices, ConsumedCapacity: device.QuantityStrings(d.ConsumedCapacity)}
		if d.ShareID != nil {
			v.ShareId = string(*d.ShareID)
		}
		out.Devices = append(out.Devices, v)
	}
	return out
}

func allocationView(a *devicemanager.Allocation) *adminpb.Allocation {
	return &adminpb.Allocation{
		Workload: a.Workload, Namespace: a.Namespace, Pod: a.Pod, PodUid: a.PodUID, Container: a.Container,
		Resource: a.Resource, DeviceIds: a.DeviceIDs, Response: containerResponseView(a.Edits), Allocated: ts(a.At),
	}
}

func containerResponseView(e device.Edits) *adminpb.ContainerResponse {
	out := &adminpb.ContainerResponse{Envs: maps.Clone(e.Env), Annotations: maps.Clone(e.Annotations),
		CdiDevices: slices.Clone(e.CDIDevices)}
	for _, m := range e.Mounts {
		out.Mounts = append(out.Mounts, &adminpb.ContainerMount{ContainerPath: m.ContainerPath, HostPath: m.HostPath, ReadOnly: m.ReadOnly})
	}
	for _, n := range e.DeviceNodes {
		out.Devices = append(out.Devices, &adminpb.DeviceSpec{ContainerPath: n.ContainerPath, HostPath: n.HostPath, Permissions: n.Permissions})
	}
	return out
}

// bridgedView and cdiView are the bridge's and the CDI specs' status.
func bridgedView(b bridge.Status) *adminpb.BridgedSource {
	return &adminpb.BridgedSource{Resource: b.Resource, Provider: b.Provider,
		Socket: b.Socket, RegistrationSocket: b.RegistrationSocket, Mode: b.Mode, State: string(b.State),
		LastError: b.LastError, Registrations: int32(b.Registrations), RegisteredAt: ts(b.RegisteredAt),
		NextAttempt: ts(b.NextAttempt), KubeletPresent: b.KubeletPresent, Streams: int32(b.Streams),
		Devices: int32(b.Devices), Healthy: int32(b.Healthy), GraceDeadline: ts(b.GraceDeadline)}
}

func draView(d dradriver.Status) *adminpb.DRADriver {
	return &adminpb.DRADriver{Driver: d.Driver, Resource: d.Resource, Provider: d.Provider, Pool: d.Pool,
		RegistrationSocket: d.RegistrationSocket, Socket: d.Socket, State: string(d.State),
		Registrations: int32(d.Registrations), RegisteredAt: ts(d.RegisteredAt), Starts: int32(d.Starts),
		Slices: string(d.Slices), SlicesError: d.SlicesError, SlicesSince: ts(d.SlicesSince), Generation: d.Generation,
		LastError: d.LastError, Devices: int32(d.Devices), Healthy: int32(d.Healthy), Prepared: int32(d.Prepared),
		LeftOut: int32(d.LeftOut), LeftOutReason: d.LeftOutReason}
}

func cdiView(sp cdi.Status) *adminpb.CDISpec {
	return &adminpb.CDISpec{Resource: sp.Resource, Provider: sp.Provider,
		Path: sp.Path, Devices: sp.Devices, Skipped: sp.Skipped, Error: sp.Error, WrittenAt: ts(sp.WrittenAt),
		RemoveAt: ts(sp.RemoveAt)}
}

// attributeValues are a device's attributes as text.
func attributeValues(attrs map[string]device.Attribute) map[string]string {
	if len(attrs) == 0 {
		return nil
	}
	out := make(map[string]string, len(attrs))
	for k, a := range attrs {
		out[k] = a.Value()
	}
	return out
}
