package devicesource_test

import (
	"strings"
	"testing"

	"github.com/wasmlet/wasmlet/abi"
	"github.com/wasmlet/wasmlet/host/devicesource"
)

// TestRequestPolicyArithmetic: a capacity's request policy passes the
// rules Kubernetes' API validation applies to a ResourceSlice's, or the
// device is refused naming the rule — the upstream allocator trusts them
// (it divides by the step).
func TestRequestPolicyArithmetic(t *testing.T) {
	policy := func(p abi.CapacityRequestPolicy) *abi.DiscoverResponse {
		return &abi.DiscoverResponse{Devices: []abi.Device{{ID: "d", AllowMultipleAllocations: true,
			Capacity: map[string]abi.Capacity{"memory": {Value: "40Gi", RequestPolicy: &p}}}}}
	}
	for _, c := range []struct {
		p    abi.CapacityRequestPolicy
		want string // "" for accepted
	}{
		{abi.CapacityRequestPolicy{Default: "4Gi", ValidValues: []string{"4Gi", "8Gi", "40Gi"}}, ""},
		{abi.CapacityRequestPolicy{Default: "4Gi", ValidValues: []string{"8Gi", "4Gi"}}, "valid_values must ascend, each larger than the one before: 4Gi follows 8Gi"},
		{abi.CapacityRequestPolicy{Default: "4Gi", ValidValues: []string{"4Gi", "4096Mi"}}, "valid_values must ascend, each larger than the one before: 4Gi follows 4Gi"}, // 4096Mi is 4Gi
		{abi.CapacityRequestPolicy{Default: "4Gi", ValidValues: []string{"4Gi", "41Gi"}}, "valid value 41Gi is larger than the capacity, 40Gi"},
		{abi.CapacityRequestPolicy{Default: "2Gi", ValidValues: []string{"4Gi", "8Gi"}}, "default 2Gi is not one of valid_values"},
		{abi.CapacityRequestPolicy{Default: "4Gi", Min: "1Gi"}, ""},
		{abi.CapacityRequestPolicy{Default: "4Gi", Min: "41Gi"}, "min 41Gi is larger than the capacity, 40Gi"},
		{abi.CapacityRequestPolicy{Default: "4Gi", Min: "-1"}, "min -1 is negative"},
		{abi.CapacityRequestPolicy{Default: "512Mi", Min: "1Gi"}, "default 512Mi is less than min, 1Gi"},
		{abi.CapacityRequestPolicy{Default: "9Gi", Min: "8Gi", Max: "2Gi"}, "min 8Gi is larger than max, 2Gi"},
		{abi.CapacityRequestPolicy{Default: "4Gi", Min: "1Gi", Max: "41Gi"}, "max 41Gi is larger than the capacity, 40Gi"},
		{abi.CapacityRequestPolicy{Default: "8Gi", Min: "1Gi", Max: "4Gi"}, "default 8Gi is more than max, 4Gi"},
		{abi.CapacityRequestPolicy{Default: "4Gi", Min: "1Gi", Step: "0"}, "step 0 is not positive"},
		{abi.CapacityRequestPolicy{Default: "4Gi", Min: "1Gi", Step: "-1Gi"}, "step -1Gi is not positive"},
		{abi.CapacityRequestPolicy{Default: "4Gi", Min: "1Gi", Step: "40Gi"}, "one step above min, 41Gi, is larger than the capacity, 40Gi"},
		{abi.CapacityRequestPolicy{Default: "4Gi", Min: "1Gi", Step: "2Gi"}, "4Gi is not min (1Gi) plus a multiple of step (2Gi)"},
		{abi.CapacityRequestPolicy{Default: "3Gi", Min: "1Gi", Max: "10Gi", Step: "2Gi"}, "10Gi is not min (1Gi) plus a multiple of step (2Gi)"},
		{abi.CapacityRequestPolicy{Default: "3Gi", Min: "1Gi", Max: "39Gi", Step: "2Gi"}, ""},
		// Fractional: counted in thousandths, as Kubernetes does.
		{abi.CapacityRequestPolicy{Default: "1.5", Min: "0.5", Step: "0.5"}, ""},
		{abi.CapacityRequestPolicy{Default: "1.25", Min: "0.5", Step: "0.5"}, "1250m is not min (500m) plus a multiple of step (500m)"},
		{abi.CapacityRequestPolicy{Default: "1", Min: "0", Step: "0.0005"}, "500u cannot be counted in thousandths"},
	} {
		err := devicesource.CheckDiscovery(policy(c.p))
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%+v: %v", c.p, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), `device "d": capacity "memory": request policy: `+c.want)):
			t.Errorf("%+v: got %v, want %q", c.p, err, c.want)
		}
	}
}
