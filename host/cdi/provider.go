package cdi

import (
	"context"
	"slices"

	"github.com/wasmlet/wasmlet/host/device"
	"github.com/wasmlet/wasmlet/host/devicemanager"
)

// Source is a device source as Provider needs it (*devicesource.Source is
// one): a provider that knows its resource, and whose device sets carry
// their container edits.
type Source interface {
	devicemanager.Provider
	// Resource is the extended resource served.
	Resource() string
}

// Provider is a device source whose devices have a CDI spec: a
// devicemanager.Provider for the device manager or the bridge. See the
// package documentation.
type Provider struct {
	Source
	specs    *Specs
	resource string
}

// Wrap returns src with a spec in s. From now on src's device sets, and no
// earlier provider's, decide the spec of its resource.
func (s *Specs) Wrap(src Source) *Provider {
	p := &Provider{Source: src, specs: s, resource: src.Resource()}
	s.claim(p)
	return p
}

// Unwrap returns the source.
func (p *Provider) Unwrap() Source { return p.Source }

// Watch follows the source, and brings the spec in line with each device set
// before passing it on.
func (p *Provider) Watch(ctx context.Context, update func([]device.Device)) error {
	return p.Source.Watch(ctx, func(devs []device.Device) {
		p.specs.sync(p, devs)
		update(devs)
	})
}

// Allocate is the source's answer, with the qualified CDI names of the
// devices of ids that are in the spec on disk added.
func (p *Provider) Allocate(ctx context.Context, ids []string, workload string) (device.Edits, error) {
	edits, err := p.Source.Allocate(ctx, ids, workload)
	if err != nil {
		return device.Edits{}, err
	}
	for _, name := range p.specs.Names(p.resource, ids) {
		if !slices.Contains(edits.CDIDevices, name) {
			edits.CDIDevices = append(edits.CDIDevices, name)
		}
	}
	return edits, nil
}

// SharedCounters are the source's shared counters, when it has any
// (devicemanager.SharedCounters).
func (p *Provider) SharedCounters() []device.CounterSet {
	if sc, ok := p.Source.(devicemanager.SharedCounters); ok {
		return sc.SharedCounters()
	}
	return nil
}
