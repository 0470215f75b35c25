package devicemanager

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/wasmlet/wasmlet/host/allocator"
	"github.com/wasmlet/wasmlet/host/device"
)

// The structured path: a resource whose provider names a driver is that
// driver's pool in the node's allocator (Config.Allocator), which decides
// what a count request gets, as one exact-count request on the driver's
// default class, in the same allocated state as claims (host/claim). The
// manager still keeps who holds what of its own (holder), for its views
// and its checkpoint.

// countOwner is the allocator's name of workload w's allocation of resource.
func countOwner(w, resource string) string { return "count:" + resource + ":" + w }

// structured reports whether r's devices are allocated by the allocator.
// Call with m.mu held.
func (m *Manager) structured(r *resource) bool { return r.driver != "" && m.cfg.Allocator != nil }

// setDriver makes r the pool of driver (or of none). Call with m.mu held.
func (m *Manager) setDriver(r *resource, driver string) {
	if r.driver == driver {
		return
	}
	if r.driver != "" && m.cfg.Allocator != nil {
		m.cfg.Allocator.RemovePool(r.driver)
	}
	r.driver, r.counters = driver, nil
	m.syncPool(r)
}

// syncPool tells the allocator r's devices. Call with m.mu held.
func (m *Manager) syncPool(r *resource) {
	if m.structured(r) {
		m.cfg.Allocator.SetPool(r.driver, r.name, r.devices, r.counters)
	}
}

// chooseStructured picks and reserves req.Count devices of r through the
// allocator: the provider's preferred allocation among the devices a count
// request could have, or else the NUMA-aware default, is what the
// allocator is asked to take first.
func (m *Manager) chooseStructured(ctx context.Context, req AllocateRequest, w string, r *resource, p Provider, driver string) ([]string, error) {
	a := m.cfg.Allocator
	avail := a.Available(ctx, driver)
	m.mu.Lock()
	free := make([]device.Device, 0, len(avail))
	for _, id := range avail {
		if i, ok := r.index[id]; ok {
			free = append(free, r.devices[i])
		}
	}
	capacity, healthy := len(r.devices), 0
	for _, d := range r.devices {
		if d.Healthy {
			healthy++
		}
	}
	m.mu.Unlock()
	var prefer []string
	if len(free) >= req.Count {
		var err error
		if prefer, err = m.pick(ctx, p, free, req, w); err != nil {
			return nil, err
		}
	}
	ids, err := a.AllocateCount(ctx, countOwner(w, req.Resource), driver, req.Count, prefer)
	var u *allocator.Unsatisfiable
	switch {
	case errors.As(err, &u):
		return nil, fmt.Errorf("%w: %d device(s) of %s requested, %d free (capacity %d, %d healthy; driver %s): %s",
			ErrUnavailable, req.Count, req.Resource, len(free), capacity, healthy, driver, strings.Join(u.Reasons, "; "))
	case err != nil:
		return nil, fmt.Errorf("allocate %s for %s: %w", req.Resource, w, err)
	}
	return ids, nil
}

// releaseStructured frees, in the allocator, what w held of r.
func (m *Manager) releaseStructured(w, resource string) {
	if m.cfg.Allocator != nil {
		m.cfg.Allocator.Release(countOwner(w, resource))
	}
}

// claimHolders adds to st's devices the claims that hold them: the
// allocator's owners that are not this manager's. Call with m.mu held.
func (m *Manager) claimHolders(r *resource, st *ResourceStatus) {
	if !m.structured(r) {
		return
	}
	holders := m.cfg.Allocator.Holders(r.driver)
	for i := range st.Devices {
		d := &st.Devices[i]
		var others []string
		for _, o := range holders[d.ID] {
			if !strings.HasPrefix(o, "count:") {
				others = append(others, o)
			}
		}
		if len(others) == 0 {
			continue
		}
		if d.AllocatedTo == "" {
			st.Allocated++
			if d.Healthy {
				st.Allocatable--
			}
			d.AllocatedTo = strings.Join(others, ",")
		} else {
			d.AllocatedTo += "," + strings.Join(others, ",")
		}
	}
}
