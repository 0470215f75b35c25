package devicemanager

import (
	"time"

	"github.com/wasmlet/wasmlet/checkpoint"
	"github.com/wasmlet/wasmlet/host/device/deviceplugin"
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
			if a.releasing {
				continue // what the release will make durable
			}
			if a.record == nil {
				a.record = allocationRecord(a)
			}
			st.Allocations = append(st.Allocations, a.record)
		}
	}
	for _, r := range m.resources {
		rec := &checkpoint.Resource{Name: r.name, LastSeenUnixNano: r.lastUpdate.UnixNano(),
			PreStartRequired: r.opts.PreStartRequired, PreferredAllocation: r.opts.PreferredAllocation,
			Driver: r.driver, SharedCounters: counterSetRecords(r.counters)}
		if r.provider != nil {
			rec.Provider = r.provider.Name()
		}
		if r.records == nil && len(r.devices) > 0 {
			r.records = make([]*checkpoint.Device, len(r.devices))
			for i, d := range r.devices {
				r.records[i] = deviceRecord(d)
			}
		}
		rec.Devices = r.records
		st.Resources = append(st.Resources, rec)
	}
	for _, p := range m.cfg.Parts {
		p.Snapshot(st)
	}
	return st, m.gen
}

// allocationRecord is a in the checkpoint's form: its edits as the
// kubelet's ContainerAllocateResponse, which the kubelet's own checkpoint
// stores too.
func allocationRecord(a *Allocation) *checkpoint.Allocation {
	return &checkpoint.Allocation{Workload: a.Workload, Namespace: a.Namespace, Pod: a.Pod, PodUid: a.PodUID,
		Container: a.Container, Resource: a.Resource, DeviceIds: a.DeviceIDs, AllocatedUnixNano: a.At.UnixNano(),
		Response: deviceplugin.Response(a.Edits)}
}

func allocationFromRecord(rec *checkpoint.Allocation) *Allocation {
	a := &Allocation{Workload: rec.Workload, Namespace: rec.Namespace, Pod: rec.Pod, PodUID: rec.PodUid,
		Container: rec.Container, Resource: rec.Resource, DeviceIDs: rec.DeviceIds,
		At: time.Unix(0, rec.AllocatedUnixNano), Edits: deviceplugin.Edits(rec.Response), record: rec}
	if a.Workload == "" {
		a.Workload = WorkloadKey(a.Namespace, a.Pod, a.Container)
	}
	return a
}

// restore rebuilds the manager from a checkpoint: allocations as they were,
// resources with their last known devices, all unhealthy and without a
// provider until one registers (the grace period starts when Run does).
func (m *Manager) restore(st *checkpoint.State) {
	now := time.Now()
	m.restored = make(map[string]string, len(st.Resources))
	for _, rec := range st.Resources {
		m.restored[rec.Name] = rec.Provider
		r := m.get(rec.Name)
		r.opts = ProviderOptions{PreStartRequired: rec.PreStartRequired, PreferredAllocation: rec.PreferredAllocation,
			Driver: rec.Driver}
		r.driver, r.counters = rec.Driver, counterSetsFromRecords(rec.SharedCounters)
		r.connected, r.disconnectedAt = false, now
		r.lastErr = "restored from the checkpoint; waiting for " + rec.Provider + " to register again"
		for _, d := range rec.Devices {
			r.index[d.Id] = len(r.devices)
			dev := deviceFromRecord(d)
			dev.Healthy = false
			r.devices = append(r.devices, dev)
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
		if m.structured(r) {
			m.cfg.Allocator.HoldDevices(countOwner(a.Workload, a.Resource), r.driver, a.DeviceIDs)
		}
		if r.disconnectedAt.IsZero() {
			r.disconnectedAt = now
		}
	}
	for _, r := range m.resources {
		m.syncPool(r) // its devices, unhealthy until its provider is back, and what holds them
	}
	m.gen = st.Generation
	m.log.Info("restored from the checkpoint", "allocations", len(st.Allocations), "resources", len(st.Resources))
}
