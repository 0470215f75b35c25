package claim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/wasmlet/wasmlet/host/allocator"
	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// MaxSize bounds a claim's encoding.
const MaxSize = 1 << 20

// DefaultNamespace is the namespace of a claim that names none.
const DefaultNamespace = "default"

// ErrInvalid: the claim is not a valid ResourceClaim.
var ErrInvalid = errors.New("invalid claim")

// Decode parses a resource.k8s.io/v1 ResourceClaim from YAML or JSON, as
// users write it for a cluster, strictly (an unknown field is an error,
// with its path), and checks it as the API server would check what the
// node can honour: a name, requests with unique names, each with exactly
// one of exactly and firstAvailable, a device class, a known allocation
// mode and a count within bounds, CEL selectors, constraints that name
// existing requests, opaque configuration with a driver and JSON
// parameters. Unset fields get the API's defaults when allocated
// (allocator.WithDefaults). A claim without a namespace is in
// DefaultNamespace. Status is ignored. Every error wraps ErrInvalid.
func Decode(data []byte) (*resourceapi.ResourceClaim, error) {
	if len(data) > MaxSize {
		return nil, fmt.Errorf("%w: %d bytes, more than the %d a claim may have", ErrInvalid, len(data), MaxSize)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, fmt.Errorf("%w: empty", ErrInvalid)
	}
	var c resourceapi.ResourceClaim
	if err := allocator.DecodeStrict(data, &c); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if err := Validate(&c); err != nil {
		return nil, err
	}
	if c.Namespace == "" {
		c.Namespace = DefaultNamespace
	}
	c.Status = resourceapi.ResourceClaimStatus{}
	return &c, nil
}

// Validate checks c as Decode does.
func Validate(c *resourceapi.ResourceClaim) error {
	var errs []string
	bad := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	if c.APIVersion != resourceapi.SchemeGroupVersion.String() || c.Kind != "ResourceClaim" {
		bad("apiVersion and kind must be %s and ResourceClaim (got %q and %q)", resourceapi.SchemeGroupVersion, c.APIVersion, c.Kind)
	}
	if c.Name == "" && c.GenerateName != "" {
		bad("metadata.generateName is not supported: name the claim")
	}
	for _, msg := range validation.IsDNS1123Subdomain(c.Name) {
		bad("metadata.name %q: %s", c.Name, msg)
	}
	if c.Namespace != "" {
		for _, msg := range validation.IsDNS1123Label(c.Namespace) {
			bad("metadata.namespace %q: %s", c.Namespace, msg)
		}
	}
	d := c.Spec.Devices
	if len(d.Requests) == 0 {
		bad("spec.devices.requests: at least one request is required")
	}
	if len(d.Requests) > resourceapi.DeviceRequestsMaxSize {
		bad("spec.devices.requests: %d requests, at most %d", len(d.Requests), resourceapi.DeviceRequestsMaxSize)
	}
	names := map[string]bool{}
	for i, r := range d.Requests {
		at := fmt.Sprintf("spec.devices.requests[%d]", i)
		checkName(bad, at+".name", r.Name)
		if names[r.Name] {
			bad("%s.name: %q is used twice", at, r.Name)
		}
		names[r.Name] = true
		switch {
		case r.Exactly != nil && len(r.FirstAvailable) > 0:
			bad("%s: exactly and firstAvailable are exclusive", at)
		case r.Exactly != nil:
			e := r.Exactly
			checkRequest(bad, at+".exactly", e.DeviceClassName, e.Selectors, e.AllocationMode, e.Count)
		case len(r.FirstAvailable) > 0:
			if len(r.FirstAvailable) > resourceapi.FirstAvailableDeviceRequestMaxSize {
				bad("%s.firstAvailable: %d subrequests, at most %d", at, len(r.FirstAvailable), resourceapi.FirstAvailableDeviceRequestMaxSize)
			}
			sub := map[string]bool{}
			for j, s := range r.FirstAvailable {
				sat := fmt.Sprintf("%s.firstAvailable[%d]", at, j)
				checkName(bad, sat+".name", s.Name)
				if sub[s.Name] {
					bad("%s.name: %q is used twice", sat, s.Name)
				}
				sub[s.Name] = true
				names[r.Name+"/"+s.Name] = true
				checkRequest(bad, sat, s.DeviceClassName, s.Selectors, s.AllocationMode, s.Count)
			}
		default:
			bad("%s: one of exactly and firstAvailable is required", at)
		}
	}
	for i, c := range d.Constraints {
		at := fmt.Sprintf("spec.devices.constraints[%d]", i)
		if (c.MatchAttribute == nil) == (c.DistinctAttribute == nil) {
			bad("%s: exactly one of matchAttribute and distinctAttribute is required", at)
		}
		for _, a := range []*resourceapi.FullyQualifiedName{c.MatchAttribute, c.DistinctAttribute} {
			if a != nil {
				if dom, id, ok := strings.Cut(string(*a), "/"); !ok || len(validation.IsDNS1123Subdomain(dom)) > 0 || !cIdentifier(id) {
					bad("%s: attribute %q is not a fully qualified name (domain/identifier)", at, *a)
				}
			}
		}
		for _, n := range c.Requests {
			if !names[n] {
				bad("%s.requests: no request %q", at, n)
			}
		}
	}
	for i, cfg := range d.Config {
		at := fmt.Sprintf("spec.devices.config[%d]", i)
		for _, n := range cfg.Requests {
			if !names[n] {
				bad("%s.requests: no request %q", at, n)
			}
		}
		o := cfg.Opaque
		if o == nil {
			bad("%s: opaque is required (the only kind of configuration)", at)
			continue
		}
		for _, msg := range validation.IsDNS1123Subdomain(o.Driver) {
			bad("%s.opaque.driver %q: %s", at, o.Driver, msg)
		}
		if len(o.Parameters.Raw) == 0 || !json.Valid(o.Parameters.Raw) {
			bad("%s.opaque.parameters: must be a JSON object", at)
		} else if len(o.Parameters.Raw) > resourceapi.OpaqueParametersMaxLength {
			bad("%s.opaque.parameters: %d bytes, at most %d", at, len(o.Parameters.Raw), resourceapi.OpaqueParametersMaxLength)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %s", ErrInvalid, strings.Join(errs, "; "))
	}
	return nil
}

func checkName(bad func(string, ...any), at, name string) {
	for _, msg := range validation.IsDNS1123Label(name) {
		bad("%s %q: %s", at, name, msg)
	}
}

func checkRequest(bad func(string, ...any), at, class string, selectors []resourceapi.DeviceSelector,
	mode resourceapi.DeviceAllocationMode, count int64) {
	if class == "" {
		bad("%s.deviceClassName: required", at)
	} else {
		for _, msg := range validation.IsDNS1123Subdomain(class) {
			bad("%s.deviceClassName %q: %s", at, class, msg)
		}
	}
	if len(selectors) > resourceapi.DeviceSelectorsMaxSize {
		bad("%s.selectors: %d, at most %d", at, len(selectors), resourceapi.DeviceSelectorsMaxSize)
	}
	for i, s := range selectors {
		if s.CEL == nil || strings.TrimSpace(s.CEL.Expression) == "" {
			bad("%s.selectors[%d].cel.expression: required", at, i)
		} else if len(s.CEL.Expression) > resourceapi.CELSelectorExpressionMaxLength {
			bad("%s.selectors[%d].cel.expression: %d characters, at most %d", at, i, len(s.CEL.Expression), resourceapi.CELSelectorExpressionMaxLength)
		}
	}
	switch mode {
	case "", resourceapi.DeviceAllocationModeExactCount:
		if count < 0 || count > resourceapi.AllocationResultsMaxSize {
			bad("%s.count: %d, must be 1 to %d", at, count, resourceapi.AllocationResultsMaxSize)
		}
	case resourceapi.DeviceAllocationModeAll:
		if count != 0 {
			bad("%s.count: must not be set with allocationMode All", at)
		}
	default:
		bad("%s.allocationMode %q: must be ExactCount or All", at, mode)
	}
}

// cIdentifier reports whether s is a C identifier of at most 32
// characters, as the identifier of a qualified name must be.
func cIdentifier(s string) bool {
	if s == "" || len(s) > resourceapi.DeviceMaxIDLength {
		return false
	}
	for i, r := range s {
		if !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || i > 0 && r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}
