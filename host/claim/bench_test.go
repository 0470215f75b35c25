package claim_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/wasmlet/wasmlet/host/claim"
	"github.com/wasmlet/wasmlet/host/internal/testenv"
)

// claimJSON is a claim as `wasmlet claim apply` sends it: JSON.
const claimJSON = `{"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim", "metadata": {"name": "c%d-%d"},
  "spec": {"devices": {"requests": [{"name": "gpu", "exactly": {"deviceClassName": "gpu.example.com",
  "selectors": [{"cel": {"expression": "device.attributes[\"gpu.example.com\"].type == \"half\""}}]}}]}}}`

// BenchmarkDurableClaims measures durable claim applies from 1 and from 16
// concurrent clients: one op is a claim applied (decoded, allocated by the
// upstream allocator, prepared, its CDI spec written) and deleted, each
// acknowledged only once on disk (two durable commits), so pairs/s is
// 1e9/(ns/op). Group commit lets concurrent clients share an fsync. The
// node has 12 GPUs, each whole or in two halves (36 devices); each client
// holds one half at a time.
func BenchmarkDurableClaims(b *testing.B) {
	for _, clients := range []int{1, 16} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			n := start(b, testenv.ShortDir(b), newGPUSource(12))
			testenv.Clients(b, clients, "pairs/s", func(ctx context.Context, c int, i int64) error {
				rc, err := claim.Decode(fmt.Appendf(nil, claimJSON, c, i))
				if err != nil {
					return err
				}
				if _, err := n.claims.Apply(ctx, rc, claim.Workload{}); err != nil {
					return err
				}
				_, err = n.claims.Delete(ctx, rc.Namespace, rc.Name)
				return err
			})
		})
	}
}
