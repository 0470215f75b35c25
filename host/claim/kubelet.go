package claim

import (
	"context"
	"fmt"
	"sort"
	"time"

	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Claims the cluster allocated, prepared for the kubelet.
//
// A source served to a cluster as a DRA driver (host/dradriver) is asked by
// the kubelet to prepare claims that the cluster's scheduler allocated. The
// store prepares them as it prepares its own (the driver's prepare, a CDI
// spec per claim and driver, the same merge of edits) and records them in
// the same checkpoint, durably before it answers, so that the kubelet's
// NodeUnprepareResources works after wasmlet restarted and a repeated
// NodePrepareResources gets the same answer without asking the module
// again. Such a claim is one record per driver (the kubelet asks each
// driver for its own devices), keyed by the claim's UID; the node's
// allocator never holds its devices, and wasmlet's own claim commands do not
// list it.

// kubeletKey is the store's key of driver's share of the claim uid: never a
// namespace/name, which cannot hold a colon.
func kubeletKey(driver string, uid types.UID) string {
	return "kubelet:" + driver + "/" + string(uid)
}

// PrepareForKubelet prepares driver's devices of rc, a claim the cluster
// allocated (rc.Status.Allocation), with drv, and returns it once it is
// durable. A claim of that UID already prepared by driver is returned as it
// was, without calling drv again. A device of driver that another claim
// prepared here holds without a share ID is refused: the cluster should
// never allocate it twice, and the driver is the last line of defence.
func (s *Store) PrepareForKubelet(ctx context.Context, rc *resourceapi.ResourceClaim, driver string, drv Driver) (*Claim, error) {
	if rc.Status.Allocation == nil {
		return nil, fmt.Errorf("claim %s/%s: %w: it is not allocated", rc.Namespace, rc.Name, ErrInvalid)
	}
	if rc.UID == "" {
		return nil, fmt.Errorf("claim %s/%s: %w: it has no UID", rc.Namespace, rc.Name, ErrInvalid)
	}
	key := kubeletKey(driver, rc.UID)
	done, existing, err := s.reserve(ctx, key)
	if err != nil {
		return nil, err
	}
	if existing != nil {
		return existing, nil
	}
	defer done()

	c := &Claim{Object: rc.DeepCopy(), Workload: consumer(rc), At: time.Now(), KubeletDriver: driver, pending: true}
	if err := s.heldElsewhere(c); err != nil {
		return nil, err
	}
	lookup := func(string) Driver { return drv }
	if err := s.prepare(ctx, c, []string{driver}, lookup); err != nil {
		return nil, err
	}
	c.record = record(c)
	if err := s.durably(ctx, func() { s.claims[key] = c }); err != nil {
		s.undo(func() { delete(s.claims, key) })
		s.unprepare(c, []string{driver}, lookup)
		return nil, fmt.Errorf("%w: claim %s prepared for the kubelet: %v", ErrNotDurable, c.Key(), err)
	}
	s.mu.Lock()
	c.pending = false
	s.mu.Unlock()
	s.log.Info("claim prepared for the kubelet", "claim", c.Key(), "uid", rc.UID, "driver", driver,
		"devices", len(c.Prepared))
	return c, nil
}

// heldElsewhere refuses c if one of its devices is held, without a share
// ID, by another claim the same driver prepared for the kubelet.
func (s *Store) heldElsewhere(c *Claim) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range c.Object.Status.Allocation.Devices.Results {
		if r.Driver != c.KubeletDriver || r.ShareID != nil {
			continue
		}
		for _, other := range s.claims {
			if other.KubeletDriver != c.KubeletDriver || other.Object.UID == c.Object.UID {
				continue
			}
			for _, o := range other.Object.Status.Allocation.Devices.Results {
				if o.Driver == r.Driver && o.Pool == r.Pool && o.Device == r.Device && o.ShareID == nil {
					return fmt.Errorf("claim %s: %w: device %s of driver %s is already prepared for claim %s (uid %s)",
						c.Key(), ErrConflict, r.Device, r.Driver, other.Key(), other.Object.UID)
				}
			}
		}
	}
	return nil
}

// consumer is the pod a claim is reserved for, when there is exactly one.
func consumer(rc *resourceapi.ResourceClaim) Workload {
	var pods []resourceapi.ResourceClaimConsumerReference
	for _, r := range rc.Status.ReservedFor {
		if r.Resource == "pods" && r.APIGroup == "" {
			pods = append(pods, r)
		}
	}
	if len(pods) != 1 {
		return Workload{}
	}
	return Workload{Pod: pods[0].Name, PodUID: string(pods[0].UID)}
}

// UnprepareForKubelet undoes PrepareForKubelet for driver's share of the
// claim uid: drv unprepares it (a failure is logged, and does not keep the
// record), its CDI spec goes, and the record is removed, durably; when that
// cannot be made durable the record stays, and the error says so (the
// kubelet asks again). A claim that is not prepared is not an error: the
// kubelet may ask twice.
func (s *Store) UnprepareForKubelet(ctx context.Context, driver string, uid types.UID, drv Driver) error {
	key := kubeletKey(driver, uid)
	existing, release, err := s.take(ctx, key)
	if err != nil || existing == nil {
		return err
	}
	defer release()
	if err := s.remove(ctx, key, existing, []string{driver}, func(string) Driver { return drv }); err != nil {
		return fmt.Errorf("%w: unprepare of claim %s for the kubelet: %v; its record stays until an unprepare is durable",
			ErrNotDurable, existing.Key(), err)
	}
	s.log.Info("claim unprepared for the kubelet", "claim", existing.Key(), "uid", uid, "driver", driver)
	return nil
}

// KubeletClaims lists the claims driver prepared for the kubelet, by
// namespace and name.
func (s *Store) KubeletClaims(driver string) []*Claim {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*Claim
	for _, c := range s.claims {
		if !c.pending && c.KubeletDriver == driver {
			out = append(out, c)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key() < out[j].Key() })
	return out
}
