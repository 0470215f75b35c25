package claim

import (
	"time"

	resourceapi "k8s.io/api/resource/v1"

	"github.com/wasmlet/wasmlet/checkpoint"
	"github.com/wasmlet/wasmlet/host/device"
	"github.com/wasmlet/wasmlet/host/device/deviceplugin"
)

// The store is a part of the device manager's checkpoint
// (devicemanager.Part): its claims are records of the State, the
// ResourceClaim with its allocation in the API server's protobuf
// encoding.

var _ interface {
	Restore(*checkpoint.State)
	Snapshot(*checkpoint.State)
} = (*Store)(nil)

func record(c *Claim) *checkpoint.Claim {
	raw, err := c.Object.Marshal()
	if err != nil {
		panic("claim: a ResourceClaim does not encode: " + err.Error()) // generated code; cannot happen
	}
	rec := &checkpoint.Claim{Namespace: c.Object.Namespace, Name: c.Object.Name, Uid: string(c.Object.UID),
		Pod: c.Workload.Pod, PodUid: c.Workload.PodUID, Container: c.Workload.Container, ResourceClaim: raw,
		AllocatedUnixNano: c.At.UnixNano(), CdiDevices: c.Edits.CDIDevices, KubeletDriver: c.KubeletDriver}
	for _, p := range c.Prepared {
		rec.Prepared = append(rec.Prepared, &checkpoint.PreparedDevice{Request: p.Request, Driver: p.Driver,
			Device: p.Device, Edits: deviceplugin.Response(p.Edits)})
	}
	return rec
}

func fromRecord(rec *checkpoint.Claim) (*Claim, error) {
	var rc resourceapi.ResourceClaim
	if err := rc.Unmarshal(rec.ResourceClaim); err != nil {
		return nil, err
	}
	c := &Claim{Object: &rc, Workload: Workload{Pod: rec.Pod, PodUID: rec.PodUid, Container: rec.Container},
		At: time.Unix(0, rec.AllocatedUnixNano), KubeletDriver: rec.KubeletDriver, record: rec}
	var devs []device.Device
	for _, p := range rec.Prepared {
		pd := PreparedDevice{Prepared: device.Prepared{Request: p.Request, Device: p.Device, Edits: deviceplugin.Edits(p.Edits)}, Driver: p.Driver}
		c.Prepared = append(c.Prepared, pd)
		devs = append(devs, device.Device{ID: p.Driver + "/" + p.Device, Edits: pd.Edits})
	}
	c.Edits, _ = device.Merge(devs) // it merged when it was applied
	return c, nil
}

// Restore loads the claims of st, and holds their devices in the allocator
// (not those of claims prepared for the kubelet: the cluster allocated
// them). A record that does not decode is left out, and logged.
func (s *Store) Restore(st *checkpoint.State) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, rec := range st.Claims {
		c, err := fromRecord(rec)
		if err != nil || c.Object.Status.Allocation == nil {
			s.log.Error("claim in the checkpoint left out: it does not decode", "claim", rec.Namespace+"/"+rec.Name, "error", err)
			continue
		}
		s.claims[c.storeKey()] = c
		if c.KubeletDriver == "" {
			s.cfg.Allocator.Hold(owner(c.Key()), c.Object.Status.Allocation)
		}
	}
	s.count()
	s.log.Info("claims restored from the checkpoint", "claims", len(s.claims))
}

// Snapshot adds every claim, durable or being made so, to st.
func (s *Store) Snapshot(st *checkpoint.State) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.claims {
		st.Claims = append(st.Claims, c.record)
	}
}

// Resume writes again the CDI specs of the claims restored, which the CDI
// spec keeper otherwise removes as stale, from what was prepared.
func (s *Store) Resume() {
	if s.cfg.Specs == nil {
		return
	}
	s.mu.Lock()
	all := make([]*Claim, 0, len(s.claims))
	for _, c := range s.claims {
		all = append(all, c)
	}
	s.mu.Unlock()
	for _, c := range all {
		byDriver := map[string][]device.Prepared{}
		for _, p := range c.Prepared {
			byDriver[p.Driver] = append(byDriver[p.Driver], device.Prepared{Request: p.Request, Device: p.Device, Edits: withoutClaimCDI(p.Edits, c)})
		}
		for d, devs := range byDriver {
			if _, err := s.cfg.Specs.WriteClaim(string(c.Object.UID), c.Key(), d, devs); err != nil {
				s.log.Error("cannot write a restored claim's CDI spec again", "claim", c.Key(), "driver", d, "error", err)
			}
		}
	}
}

// withoutClaimCDI is e without the CDI names of c's own specs (they are
// written from the rest).
func withoutClaimCDI(e device.Edits, c *Claim) device.Edits {
	e = e.Clone()
	prefix := string(c.Object.UID) + "-"
	kept := e.CDIDevices[:0]
	for _, n := range e.CDIDevices {
		if !hasClaimPrefix(n, prefix) {
			kept = append(kept, n)
		}
	}
	e.CDIDevices = kept
	return e
}

func hasClaimPrefix(name, prefix string) bool {
	for i := 0; i < len(name); i++ {
		if name[i] == '=' {
			return len(name) > i+len(prefix) && name[i+1:i+1+len(prefix)] == prefix
		}
	}
	return false
}
