package allocator

import (
	"strings"
	"testing"
	"time"

	resourceapi "k8s.io/api/resource/v1"
)

// TestDecodeStrictRefusesSlowQuantities: a 15-byte quantity would keep
// Kubernetes' parser busy for about a day; wherever it stands in a claim —
// a capacity request, a CEL selector's quantity() — it is refused at once,
// naming where. Numbers inside identifiers and ordinary quantities pass.
func TestDecodeStrictRefusesSlowQuantities(t *testing.T) {
	claim := func(request, selector string) string {
		return `apiVersion: resource.k8s.io/v1
kind: ResourceClaim
metadata: {name: x}
spec:
  devices:
    requests:
    - name: r
      exactly:
        deviceClassName: gpu.example.com
        selectors: [{cel: {expression: ` + selector + `}}]
        capacity: {requests: {memory: "` + request + `"}}
`
	}
	ok := `"device.attributes['gpu.example.com'].uuid == 'GPU-3e12345-1e5'"`
	for _, c := range []struct{ doc, wantPath string }{
		{claim("1.5e-2147483648", ok), "spec.devices.requests[0].exactly.capacity.requests.memory"},
		{claim("40Gi", `"device.capacity['gpu.example.com'].memory.compareTo(quantity('1E-3000000')) > 0"`),
			"spec.devices.requests[0].exactly.selectors[0].cel.expression"},
		{`{"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim", "metadata": {"name": "x", "labels": {"a": "2.e+99999"}}}`,
			"metadata.labels.a"},
	} {
		var v resourceapi.ResourceClaim
		start := time.Now()
		err := DecodeStrict([]byte(c.doc), &v)
		if err == nil || !strings.Contains(err.Error(), c.wantPath) || !strings.Contains(err.Error(), "exponent beyond") {
			t.Errorf("%s: got %v, want a refusal naming it", c.wantPath, err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("%s: refused after %v", c.wantPath, d)
		}
	}
	var v resourceapi.ResourceClaim
	if err := DecodeStrict([]byte(claim("1.5e3", ok)), &v); err != nil {
		t.Fatalf("an ordinary claim: %v", err)
	}
	q := v.Spec.Devices.Requests[0].Exactly.Capacity.Requests["memory"]
	if q.String() != "1500" {
		t.Errorf("memory request %s, want 1500", q.String())
	}
}
