package allocator

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	resourceapi "k8s.io/api/resource/v1"
	apiresource "k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/dynamic-resource-allocation/cel"
	"k8s.io/dynamic-resource-allocation/resourceclaim"
	"k8s.io/dynamic-resource-allocation/structured"

	"github.com/wasmlet/wasmlet/host/device/resourceslice"
)

// diagnose says why claim could not be allocated, once the upstream
// allocator found no solution. It looks at every request (every subrequest
// of a firstAvailable list) alone: the devices the class's selectors leave,
// then the request's, then those that are healthy (or tolerated),
// not allocated, with the capacity asked for and the counters they consume
// still free. A request with too few is the reason. When every request has
// enough alone, it looks at the constraints on what is left; when they can
// be met too, the requests compete for the same devices or counters. Call
// with a.mu held.
func (a *Allocator) diagnose(ctx context.Context, claim *resourceapi.ResourceClaim) []string {
	d := a.newDiagnosis(ctx)
	var reasons []string
	tallies := map[string]*tally{} // by request name, of the first subrequest that can be met
	for _, r := range claim.Spec.Devices.Requests {
		if r.Exactly != nil {
			t := d.tally(requestView{name: r.Name, class: r.Exactly.DeviceClassName, selectors: r.Exactly.Selectors,
				mode: r.Exactly.AllocationMode, count: r.Exactly.Count, tolerations: r.Exactly.Tolerations,
				capacity: r.Exactly.Capacity})
			if why := t.shortfall(); why != "" {
				reasons = append(reasons, why)
			} else {
				tallies[r.Name] = t
			}
			continue
		}
		var whys []string
		for _, s := range r.FirstAvailable {
			t := d.tally(requestView{name: r.Name + "/" + s.Name, class: s.DeviceClassName, selectors: s.Selectors,
				mode: s.AllocationMode, count: s.Count, tolerations: s.Tolerations, capacity: s.Capacity})
			why := t.shortfall()
			if why == "" {
				tallies[r.Name] = t
				tallies[r.Name+"/"+s.Name] = t
				break
			}
			whys = append(whys, why)
		}
		if tallies[r.Name] == nil {
			reasons = append(reasons, fmt.Sprintf("request %s: none of its %d alternatives (firstAvailable) can be met: %s",
				r.Name, len(r.FirstAvailable), strings.Join(whys, "; ")))
		}
	}
	if len(reasons) > 0 {
		return reasons
	}
	for i, c := range claim.Spec.Devices.Constraints {
		if why := d.constraint(i, c, claim, tallies); why != "" {
			reasons = append(reasons, why)
		}
	}
	if len(reasons) > 0 {
		return reasons
	}
	return []string{"each request and constraint can be met alone, but not all at once: together they need more of " +
		"the same devices, capacity or shared counters than are free"}
}

// diagnosis is what diagnose knows of the pools and what is allocated.
type diagnosis struct {
	a        *Allocator
	ctx      context.Context
	devices  []diagDevice
	consumed structured.ConsumedCapacityCollection
}

type diagDevice struct {
	driver    string
	dev       *resourceapi.Device
	id        structured.DeviceID
	allocated bool // outright
	counters  bool // its counters are free
}

func (a *Allocator) newDiagnosis(ctx context.Context) *diagnosis {
	st := a.state()
	d := &diagnosis{a: a, ctx: ctx, consumed: st.AggregatedCapacity}
	for _, driver := range slices.Sorted(maps.Keys(a.pools)) {
		p := a.pools[driver]
		free := freeCounters(p, st)
		for i := range p.devices {
			dev := &p.devices[i]
			id := structured.MakeDeviceID(driver, a.node.Name, dev.Name)
			allocated := st.AllocatedDevices.Has(id)
			shared := false
			for s := range st.AllocatedSharedDeviceIDs {
				if s.GetDeviceID() == id {
					shared = true
					break
				}
			}
			d.devices = append(d.devices, diagDevice{driver: driver, dev: dev, id: id, allocated: allocated,
				counters: allocated || shared || countersFit(dev, free)})
		}
	}
	return d
}

// freeCounters is what is left of p's shared counters with the devices of st
// allocated.
func freeCounters(p *pool, st structured.AllocatedState) map[string]map[string]apiresource.Quantity {
	free := map[string]map[string]apiresource.Quantity{}
	for _, s := range p.slices {
		for _, set := range s.Spec.SharedCounters {
			free[set.Name] = map[string]apiresource.Quantity{}
			for n, c := range set.Counters {
				free[set.Name][n] = c.Value.DeepCopy()
			}
		}
	}
	used := map[string]bool{} // devices of p allocated, outright or shared
	for id := range st.AllocatedDevices {
		if id.Driver.String() == p.driver {
			used[id.Device.String()] = true
		}
	}
	for s := range st.AllocatedSharedDeviceIDs {
		if s.Driver.String() == p.driver {
			used[s.Device.String()] = true
		}
	}
	for i := range p.devices {
		dev := &p.devices[i]
		if !used[dev.Name] {
			continue
		}
		for _, c := range dev.ConsumesCounters {
			for n, v := range c.Counters {
				if q, ok := free[c.CounterSet][n]; ok {
					q.Sub(v.Value)
					free[c.CounterSet][n] = q
				}
			}
		}
	}
	return free
}

func countersFit(dev *resourceapi.Device, free map[string]map[string]apiresource.Quantity) bool {
	for _, c := range dev.ConsumesCounters {
		for n, v := range c.Counters {
			if q, ok := free[c.CounterSet][n]; !ok || q.Cmp(v.Value) < 0 {
				return false
			}
		}
	}
	return true
}

// requestView is a request or a subrequest, as diagnose looks at it.
type requestView struct {
	name, class string
	selectors   []resourceapi.DeviceSelector
	mode        resourceapi.DeviceAllocationMode
	count       int64
	tolerations []resourceapi.DeviceToleration
	capacity    *resourceapi.CapacityRequirements
}

// tally counts what leaves a request without devices.
type tally struct {
	req       requestView
	total     int
	steps     []string // "class X's selector `...` leaves N"
	selected  int      // devices every selector matches
	unhealthy int
	allocated int
	capacity  int
	counters  int
	failed    string // a selector that cannot be evaluated
	free      []*diagDevice
}

func (d *diagnosis) tally(r requestView) *tally {
	t := &tally{req: r, total: len(d.devices)}
	class, _ := classLister{d.a}.Get(r.class)
	left := make([]*diagDevice, 0, len(d.devices))
	for i := range d.devices {
		left = append(left, &d.devices[i])
	}
	filter := func(what string, sel resourceapi.DeviceSelector) {
		if sel.CEL == nil || t.failed != "" {
			return
		}
		expr := d.a.cel.GetOrCompile(sel.CEL.Expression)
		if expr.Error != nil {
			t.failed = fmt.Sprintf("%s `%s` does not compile: %v", what, sel.CEL.Expression, expr.Error)
			return
		}
		kept := left[:0]
		for _, dev := range left {
			ok, _, err := expr.DeviceMatches(d.ctx, cel.Device{Driver: dev.driver,
				AllowMultipleAllocations: dev.dev.AllowMultipleAllocations, Attributes: dev.dev.Attributes, Capacity: dev.dev.Capacity})
			if err != nil {
				t.failed = fmt.Sprintf("%s `%s` fails on device %s: %v", what, sel.CEL.Expression, dev.id, cel.EnhanceRuntimeError(err))
				return
			}
			if ok {
				kept = append(kept, dev)
			}
		}
		left = kept
		t.steps = append(t.steps, fmt.Sprintf("%s `%s` leaves %d", what, sel.CEL.Expression, len(left)))
	}
	if class != nil {
		for i, sel := range class.Spec.Selectors {
			filter(fmt.Sprintf("class %s's selector #%d", class.Name, i), sel)
		}
	}
	for i, sel := range r.selectors {
		filter(fmt.Sprintf("selector #%d", i), sel)
	}
	t.selected = len(left)
	for _, dev := range left {
		switch {
		case tainted(dev.dev, r.tolerations):
			t.unhealthy++
		case dev.allocated:
			t.allocated++
		case !d.capacityFits(dev, r.capacity):
			t.capacity++
		case !dev.counters:
			t.counters++
		default:
			t.free = append(t.free, dev)
		}
	}
	return t
}

func tainted(dev *resourceapi.Device, tolerations []resourceapi.DeviceToleration) bool {
	for _, taint := range dev.Taints {
		if taint.Effect != resourceapi.DeviceTaintEffectNoSchedule && taint.Effect != resourceapi.DeviceTaintEffectNoExecute {
			continue
		}
		tolerated := false
		for _, tol := range tolerations {
			if resourceclaim.ToleratesTaint(tol, taint) {
				tolerated = true
				break
			}
		}
		if !tolerated {
			return true
		}
	}
	return false
}

// capacityFits reports whether dev has what req asks of its capacities
// left: all of it, for a device that allows one allocation; what others
// have not consumed, for one that allows several.
func (d *diagnosis) capacityFits(dev *diagDevice, req *resourceapi.CapacityRequirements) bool {
	multi := dev.dev.AllowMultipleAllocations != nil && *dev.dev.AllowMultipleAllocations
	for name, c := range dev.dev.Capacity {
		var want *apiresource.Quantity
		if req != nil {
			if q, ok := req.Requests[name]; ok {
				want = &q
			}
		}
		if want == nil && multi && c.RequestPolicy != nil && c.RequestPolicy.Default != nil {
			want = c.RequestPolicy.Default
		}
		if want == nil {
			continue
		}
		left := c.Value.DeepCopy()
		if multi {
			if used := d.consumed[dev.id][name]; used != nil {
				left.Sub(*used)
			}
		}
		if left.Cmp(*want) < 0 {
			return false
		}
	}
	if req != nil {
		for name := range req.Requests {
			if _, ok := dev.dev.Capacity[name]; !ok {
				return false
			}
		}
	}
	return true
}

// need is how many free devices the request needs: its count, or, for
// allocationMode All, every device its selectors match.
func (t *tally) need() int {
	if t.req.mode == resourceapi.DeviceAllocationModeAll {
		return t.selected
	}
	return int(max(t.req.count, 1))
}

// shortfall says why the request cannot be met alone, or "".
func (t *tally) shortfall() string {
	if t.failed != "" {
		return fmt.Sprintf("request %s: %s", t.req.name, t.failed)
	}
	need := t.need()
	if len(t.free) >= need && t.selected > 0 {
		return ""
	}
	var b strings.Builder
	if t.req.mode == resourceapi.DeviceAllocationModeAll {
		fmt.Fprintf(&b, "request %s: allocationMode All needs every device it selects, ", t.req.name)
		if t.selected == 0 {
			b.WriteString("and it selects none")
		} else {
			fmt.Fprintf(&b, "%d, and only %d of them are available", t.selected, len(t.free))
		}
	} else {
		fmt.Fprintf(&b, "request %s: needs %d device(s), %d available", t.req.name, need, len(t.free))
	}
	fmt.Fprintf(&b, " (of the node's %d devices", t.total)
	for _, s := range t.steps {
		b.WriteString(", " + s)
	}
	for _, c := range []struct {
		n    int
		what string
	}{{t.unhealthy, "unhealthy (tainted " + resourceslice.UnhealthyTaint + ")"}, {t.allocated, "allocated"},
		{t.capacity, "short of the capacity asked for" + t.capacityAsked()}, {t.counters, "short of shared counters (their device's other partitions are allocated)"}} {
		if c.n > 0 {
			fmt.Fprintf(&b, "; %d %s", c.n, c.what)
		}
	}
	b.WriteString(")")
	return b.String()
}

func (t *tally) capacityAsked() string {
	if t.req.capacity == nil || len(t.req.capacity.Requests) == 0 {
		return ""
	}
	var parts []string
	for _, n := range slices.Sorted(maps.Keys(t.req.capacity.Requests)) {
		q := t.req.capacity.Requests[n]
		parts = append(parts, fmt.Sprintf("%s %s", n, q.String()))
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

// constraint says why constraint number i cannot be met by the devices
// each request could have alone, or "".
func (d *diagnosis) constraint(i int, c resourceapi.DeviceConstraint, claim *resourceapi.ResourceClaim, tallies map[string]*tally) string {
	names := c.Requests
	if len(names) == 0 {
		for _, r := range claim.Spec.Devices.Requests {
			names = append(names, r.Name)
		}
	}
	var ts []*tally
	for _, n := range names {
		if t := tallies[n]; t != nil {
			ts = append(ts, t)
		}
	}
	switch {
	case c.MatchAttribute != nil:
		attr := string(*c.MatchAttribute)
		values := map[string]map[*tally]int{}
		var order []string
		for _, t := range ts {
			for _, dev := range t.free {
				v, ok := attribute(dev, attr)
				if !ok {
					continue
				}
				if values[v] == nil {
					values[v] = map[*tally]int{}
					order = append(order, v)
				}
				values[v][t]++
			}
		}
		var seen []string
		for _, v := range order {
			ok := true
			var parts []string
			for _, t := range ts {
				if values[v][t] < t.need() {
					ok = false
				}
				parts = append(parts, fmt.Sprintf("%s %d/%d", t.req.name, values[v][t], t.need()))
			}
			if ok {
				return ""
			}
			if len(seen) < 6 {
				seen = append(seen, fmt.Sprintf("%s: %s", v, strings.Join(parts, ", ")))
			}
		}
		if len(order) == 0 {
			return fmt.Sprintf("constraint #%d (matchAttribute %s over %s): none of the available devices has that attribute",
				i, attr, strings.Join(names, ", "))
		}
		return fmt.Sprintf("constraint #%d (matchAttribute %s over %s): no one value of it has enough available devices for every request (%s)",
			i, attr, strings.Join(names, ", "), strings.Join(seen, "; "))
	case c.DistinctAttribute != nil:
		attr := string(*c.DistinctAttribute)
		distinct := map[string]bool{}
		need := 0
		for _, t := range ts {
			need += t.need()
			for _, dev := range t.free {
				if v, ok := attribute(dev, attr); ok {
					distinct[v] = true
				}
			}
		}
		if len(distinct) < need {
			return fmt.Sprintf("constraint #%d (distinctAttribute %s over %s): %d device(s) with distinct values are needed, the available devices have %d",
				i, attr, strings.Join(names, ", "), need, len(distinct))
		}
	}
	return ""
}

// attribute is dev's value of the fully qualified attribute name, as text
// with its type.
func attribute(dev *diagDevice, name string) (string, bool) {
	domain, id, ok := strings.Cut(name, "/")
	if !ok {
		return "", false
	}
	a, found := dev.dev.Attributes[resourceapi.QualifiedName(name)]
	if !found && domain == dev.driver {
		a, found = dev.dev.Attributes[resourceapi.QualifiedName(id)]
	}
	if !found {
		return "", false
	}
	switch {
	case a.IntValue != nil:
		return fmt.Sprint(*a.IntValue), true
	case a.BoolValue != nil:
		return fmt.Sprint(*a.BoolValue), true
	case a.StringValue != nil:
		return *a.StringValue, true
	case a.VersionValue != nil:
		return *a.VersionValue, true
	}
	return "", false
}
