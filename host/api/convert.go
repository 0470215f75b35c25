package api

import (
	"errors"
	"maps"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"

	"github.com/wasmlet/wasmlet/host/api/adminpb"
	"github.com/wasmlet/wasmlet/host/devicemanager"
	"github.com/wasmlet/wasmlet/host/module"
	"github.com/wasmlet/wasmlet/host/pluginmanager"
)

// Module states, as the admin API reports them.
const (
	ModuleRunning     = "running"
	ModuleQuarantined = "quarantined"
	ModuleRefused     = "refused"
)

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

func pluginPB(s pluginmanager.PluginStatus) *adminpb.Plugin {
	return &adminpb.Plugin{
		SocketPath: s.SocketPath, State: s.State, Type: s.Type, Name: s.Name, Endpoint: s.Endpoint,
		Versions: s.Versions, Handler: s.Handler, Action: s.Action, Resource: s.Resource,
		Attributes: maps.Clone(s.Attributes), Seen: ts(s.SeenAt), Registered: ts(s.Registered),
		Failures: int32(s.Failures), LastError: s.LastError, NextRetry: ts(s.NextRetry), WaitingFor: s.Waiting,
	}
}

func modulePB(info module.Info) *adminpb.Module {
	out := &adminpb.Module{Name: info.Name, State: ModuleRefused, Path: info.Path}
	if m := info.Module; m != nil {
		st := m.Status()
		d := st.Description
		out.State = ModuleRunning
		if st.Quarantined {
			out.State = ModuleQuarantined
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
	if info.Err != nil {
		out.RefusedPath, out.Refused, out.RefusedAt = info.Path, info.Err.Error(), ts(info.Failed)
		var le *module.LoadError
		if errors.As(info.Err, &le) {
			out.RefusedProblems = le.Problems
		} else {
			out.RefusedProblems = []string{info.Err.Error()}
		}
	}
	return out
}

func resourcePB(r devicemanager.ResourceStatus, grace time.Duration) *adminpb.Resource {
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
	out.Devices = make([]*adminpb.Device, len(r.Devices))
	for i, d := range r.Devices {
		out.Devices[i] = &adminpb.Device{Id: d.ID, Healthy: d.Healthy, NumaNodes: d.NUMANodes,
			Attributes: maps.Clone(d.Attributes), AllocatedTo: d.AllocatedTo}
	}
	return out
}

func allocationPB(a *devicemanager.Allocation) *adminpb.Allocation {
	return &adminpb.Allocation{
		Workload: a.Workload, Namespace: a.Namespace, Pod: a.Pod, PodUid: a.PodUID, Container: a.Container,
		Resource: a.Resource, DeviceIds: a.DeviceIDs, Response: containerResponsePB(a.Response), Allocated: ts(a.At),
	}
}

func containerResponsePB(r *pluginapi.ContainerAllocateResponse) *adminpb.ContainerResponse {
	if r == nil {
		return &adminpb.ContainerResponse{}
	}
	out := &adminpb.ContainerResponse{Envs: maps.Clone(r.Envs), Annotations: maps.Clone(r.Annotations)}
	for _, m := range r.Mounts {
		out.Mounts = append(out.Mounts, &adminpb.ContainerMount{ContainerPath: m.ContainerPath, HostPath: m.HostPath, ReadOnly: m.ReadOnly})
	}
	for _, d := range r.Devices {
		out.Devices = append(out.Devices, &adminpb.DeviceSpec{ContainerPath: d.ContainerPath, HostPath: d.HostPath, Permissions: d.Permissions})
	}
	for _, c := range r.CdiDevices {
		out.CdiDevices = append(out.CdiDevices, c.Name)
	}
	return out
}
