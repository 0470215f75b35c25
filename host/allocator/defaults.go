package allocator

import (
	resourceapi "k8s.io/api/resource/v1"
)

// WithDefaults returns claim with the defaults the API server would have
// set (resource.k8s.io/v1): an allocation mode of ExactCount and a count of
// 1 for every request and subrequest that names neither, and the Equal
// operator for tolerations that name none. claim itself is not modified; it
// is returned as it is when it needs no default.
func WithDefaults(claim *resourceapi.ResourceClaim) *resourceapi.ResourceClaim {
	if !needsDefaults(claim) {
		return claim
	}
	c := claim.DeepCopy()
	for i := range c.Spec.Devices.Requests {
		r := &c.Spec.Devices.Requests[i]
		if e := r.Exactly; e != nil {
			defaultMode(&e.AllocationMode, &e.Count)
			defaultTolerations(e.Tolerations)
		}
		for j := range r.FirstAvailable {
			s := &r.FirstAvailable[j]
			defaultMode(&s.AllocationMode, &s.Count)
			defaultTolerations(s.Tolerations)
		}
	}
	return c
}

func needsDefaults(claim *resourceapi.ResourceClaim) bool {
	need := func(mode resourceapi.DeviceAllocationMode, count int64, tols []resourceapi.DeviceToleration) bool {
		if mode == "" || mode == resourceapi.DeviceAllocationModeExactCount && count == 0 {
			return true
		}
		for _, t := range tols {
			if t.Operator == "" {
				return true
			}
		}
		return false
	}
	for _, r := range claim.Spec.Devices.Requests {
		if e := r.Exactly; e != nil && need(e.AllocationMode, e.Count, e.Tolerations) {
			return true
		}
		for _, s := range r.FirstAvailable {
			if need(s.AllocationMode, s.Count, s.Tolerations) {
				return true
			}
		}
	}
	return false
}

func defaultMode(mode *resourceapi.DeviceAllocationMode, count *int64) {
	if *mode == "" {
		*mode = resourceapi.DeviceAllocationModeExactCount
	}
	if *mode == resourceapi.DeviceAllocationModeExactCount && *count == 0 {
		*count = 1
	}
}

func defaultTolerations(tols []resourceapi.DeviceToleration) {
	for i := range tols {
		if tols[i].Operator == "" {
			tols[i].Operator = resourceapi.DeviceTolerationOpEqual
		}
	}
}
