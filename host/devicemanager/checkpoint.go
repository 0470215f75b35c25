package devicemanager

import (
	"time"

	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"

	"github.com/wasmlet/wasmlet/checkpoint"
)

// snapshot is the checkpoint's view of the manager: every allocation, and
// every resource with its last known devices. The records of allocations are
// built once, when the allocation is made, and shared (they never change), so
// a snapshot of ten thousand allocations costs a slice, not ten thousand
// conversions.
func (m *Manager) snapshot() (*checkpoint.State, uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := &checkpoint.State{Generation: m.gen}
	for _, byRes := range m.allocs {
		for _, a := range byRes {
			if a.record == nil {
				a.record = allocationRecord(a)
			}
			st.Allocations = append(st.Allocations, a.record)
		}
	}
	for _, r := range m.resources {
		rec := &checkpoint.Resource{Name: r.name, LastSeenUnixNano: r.lastUpdate.UnixNano(),
			PreStartRequired: r.opts.PreStartRequired, PreferredAllocation: r.opts.PreferredAllocation}
		if r.provider != nil {
			rec.Provider = r.provider.Name()
		}
		for _, d := range r.devices {
			rec.Devices = append(rec.Devices, &checkpoint.Device{Id: d.ID, Healthy: d.Healthy,
				NumaNodes: d.NUMANodes, Attributes: d.Attributes})
		}
		st.Resources = append(st.Resources, rec)
	}
	return st, m.gen
}

func allocationRecord(a *Allocation) *checkpoint.Allocation {
	rec := &checkpoint.Allocation{Workload: a.Workload, Namespace: a.Namespace, Pod: a.Pod, PodUid: a.PodUID,
		Container: a.Container, Resource: a.Resource, DeviceIds: a.DeviceIDs, AllocatedUnixNano: a.At.UnixNano()}
	if r := a.Response; r != nil {
		rec.Response = &checkpoint.ContainerResponse{Envs: r.Envs, Annotations: r.Annotations}
		for _, mt := range r.Mounts {
			rec.Response.Mounts = append(rec.Response.Mounts, &checkpoint.Mount{ContainerPath: mt.ContainerPath, HostPath: mt.HostPath, ReadOnly: mt.ReadOnly})
		}
		for _, d := range r.Devices {
			rec.Response.Devices = append(rec.Response.Devices, &checkpoint.DeviceSpec{ContainerPath: d.ContainerPath, HostPath: d.HostPath, Permissions: d.Permissions})
		}
		for _, c := range r.CdiDevices {
			rec.Response.CdiDevices = append(rec.Response.CdiDevices, c.Name)
		}
	}
	return rec
}

func allocationFromRecord(rec *checkpoint.Allocation) *Allocation {
	a := &Allocation{Workload: rec.Workload, Namespace: rec.Namespace, Pod: rec.Pod, PodUID: rec.PodUid,
		Container: rec.Container, Resource: rec.Resource, DeviceIDs: rec.DeviceIds,
		At: time.Unix(0, rec.AllocatedUnixNano), Response: &pluginapi.ContainerAllocateResponse{}, record: rec}
	if a.Workload == "" {
		a.Workload = WorkloadKey(a.Namespace, a.Pod, a.Container)
	}
	if r := rec.Response; r != nil {
		a.Response.Envs, a.Response.Annotations = r.Envs, r.Annotations
		for _, mt := range r.Mounts {
			a.Response.Mounts = append(a.Response.Mounts, &pluginapi.Mount{ContainerPath: mt.ContainerPath, HostPath: mt.HostPath, ReadOnly: mt.ReadOnly})
		}
		for _, d := range r.Devices {
			a.Response.Devices = append(a.Response.Devices, &pluginapi.DeviceSpec{ContainerPath: d.ContainerPath, HostPath: d.HostPath, Permissions: d.Permissions})
		}
		for _, c := range r.CdiDevices {
			a.Response.CdiDevices = append(a.Response.CdiDevices, &pluginapi.CDIDevice{Name: c})
		}
	}
	return a
}

// restore rebuilds the manager from a checkpoint: allocations as they were,
// resources with their last known devices, all unhealthy and without a
// provider until one registers (the grace period starts when Run does).
func (m *Manager) restore(st *checkpoint.State) {
	now := time.Now()
	for _, rec := range st.Resources {
		r := m.get(rec.Name)
		r.opts = ProviderOptions{PreStartRequired: rec.PreStartRequired, PreferredAllocation: rec.PreferredAllocation}
		r.connected, r.disconnectedAt = false, now
		r.lastErr = "restored from the checkpoint; waiting for " + rec.Provider + " to register again"
		for _, d := range rec.Devices {
			r.index[d.Id] = len(r.devices)
			r.devices = append(r.devices, Device{ID: d.Id, Healthy: false, NUMANodes: d.NumaNodes, Attributes: d.Attributes})
		}
	}
	for _, rec := range st.Allocations {
		a := allocationFromRecord(rec)
		if m.allocs[a.Workload] == nil {
			m.allocs[a.Workload] = map[string]*Allocation{}
		}
		m.allocs[a.Workload][a.Resource] = a
		r := m.get(a.Resource)
		for _, id := range a.DeviceIDs {
			r.holder[id] = a.Workload
		}
		if r.disconnectedAt.IsZero() {
			r.disconnectedAt = now
		}
	}
	m.gen = st.Generation
	m.log.Info("restored from the checkpoint", "allocations", len(st.Allocations), "resources", len(st.Resources))
}
