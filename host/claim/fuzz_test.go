package claim_test

import (
	"errors"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/wasmlet/wasmlet/host/claim"
)

// FuzzDecode: whatever the bytes, Decode returns a claim or an error that
// wraps ErrInvalid, never panics; a claim it returns passes Validate, and
// decodes again, from its own encoding, to a claim that passes too.
func FuzzDecode(f *testing.F) {
	for _, seed := range []string{
		claimOf("c", whole, 1),
		claimOf("c", half, 2),
		`{"apiVersion":"resource.k8s.io/v1","kind":"ResourceClaim","metadata":{"name":"x"},"spec":{"devices":{"requests":[{"name":"a","firstAvailable":[{"name":"b","deviceClassName":"gpu.example.com","allocationMode":"All"}]}],"constraints":[{"matchAttribute":"gpu.example.com/uuid"}],"config":[{"opaque":{"driver":"gpu.example.com","parameters":{"k":1}}}]}}}`,
		"apiVersion: resource.k8s.io/v1\nkind: ResourceClaim\nmetadata: {name: a}\nspec: {devices: {requests: [{name: r, exactly: {deviceClassName: c, capacity: {requests: {memory: 4Gi}}}}]}}\n",
		"kind: ResourceClaim\n", "- 1\n- 2\n", "{", "",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := claim.Decode(data)
		if err != nil {
			if !errors.Is(err, claim.ErrInvalid) {
				t.Fatalf("an error that is not ErrInvalid: %v", err)
			}
			return
		}
		if err := claim.Validate(c); err != nil {
			t.Fatalf("decoded a claim that does not validate: %v", err)
		}
		again, err := yaml.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := claim.Decode(again); err != nil {
			t.Fatalf("its own encoding does not decode: %v\n%s", err, again)
		}
	})
}

// Decode refuses what a cluster's API server would, saying where.
func TestDecodeRefusals(t *testing.T) {
	for _, c := range []struct{ text, want string }{
		{"apiVersion: v1\nkind: Pod\nmetadata: {name: a}\n", "apiVersion and kind must be resource.k8s.io/v1 and ResourceClaim"},
		{"apiVersion: resource.k8s.io/v1\nkind: ResourceClaim\nmetadata: {name: a}\nspec: {devices: {requests: [{name: r}]}}\n",
			"spec.devices.requests[0]: one of exactly and firstAvailable is required"},
		{"apiVersion: resource.k8s.io/v1\nkind: ResourceClaim\nmetadata: {name: a}\nspec: {devices: {requests: [{name: r, exactly: {deviceClassName: c, count: 2, allocationMode: All}}]}}\n",
			"spec.devices.requests[0].exactly.count: must not be set with allocationMode All"},
		{"apiVersion: resource.k8s.io/v1\nkind: ResourceClaim\nmetadata: {name: a}\nspec: {devices: {requests: [{name: r, exactly: {deviceClassName: c}}], constraints: [{matchAttribute: model, requests: [x]}]}}\n",
			`attribute "model" is not a fully qualified name`},
		{"apiVersion: resource.k8s.io/v1\nkind: ResourceClaim\nmetadata: {name: a}\nspec: {devices: {requests: [{name: r, exactly: {deviceClassName: c}}], constraints: [{matchAttribute: x.io/model, requests: [x]}]}}\n",
			`spec.devices.constraints[0].requests: no request "x"`},
		{"apiVersion: resource.k8s.io/v1\nkind: ResourceClaim\nmetadata: {name: a}\nspec: {devices: {requests: [{name: r, exactly: {deviceClassName: c, selector: []}}]}}\n",
			`unknown field "spec.devices.requests[0].exactly.selector"`},
		{"apiVersion: resource.k8s.io/v1\nkind: ResourceClaim\nmetadata: {name: A_b}\nspec: {devices: {requests: [{name: r, exactly: {deviceClassName: c}}]}}\n",
			`metadata.name "A_b"`},
	} {
		_, err := claim.Decode([]byte(c.text))
		if err == nil || !errors.Is(err, claim.ErrInvalid) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s\ngot %v\nwant %s", c.text, err, c.want)
		}
	}
}
