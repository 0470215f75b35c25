package e2e

import (
	"context"
	"flag"
	"fmt"
	"maps"
	"math/rand"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/wasmlet/wasmlet/host/api/adminpb"
)

var kills = flag.Int("kills", 25, "how many times the crash test kills wasmlet")

// ledger is what clients were told. An operation whose answer was lost in a
// crash is "unsure": after the restart it may or may not have happened.
// Allocations are by workload, claims by "claim:namespace/name".
type ledger struct {
	mu       sync.Mutex
	driver   string              // the counter source's driver, for claims
	held     map[string][]string // workload or claim -> devices, acknowledged and not released
	released map[string]bool     // workloads whose release was acknowledged
	unsure   map[string]bool     // workloads with an operation in flight at the crash
	acks     int
}

// TestCrashKeepsEveryAcknowledgement runs the real wasmlet binary, drives
// concurrent allocations, releases, ResourceClaims and their deletions
// through its API, kills it with SIGKILL at random moments (25 times by
// default, -kills N for more), restarts it, and checks that every
// acknowledged allocation and claim is there with the same devices, every
// acknowledged release and deletion stays done, and no device is held twice,
// by allocations and claims together.
func TestCrashKeepsEveryAcknowledgement(t *testing.T) {
	h := newHost(t, map[string]string{"counter": "guests/counter"}, `
[modules.counter]
config = { resource = "example.com/counter", count = "48" }
`)
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	l := &ledger{held: map[string][]string{}, released: map[string]bool{}, unsure: map[string]bool{}}
	next := 0
	for k := 0; k < *kills; k++ {
		h.start()
		c := h.client()
		h.eventually("48 healthy counters", func() bool {
			r, err := c.ListResources(context.Background(), &adminpb.ListResourcesRequest{Name: "example.com/counter"})
			if err == nil && len(r.Resources) == 1 {
				l.driver = r.Resources[0].Driver
			}
			return err == nil && len(r.Resources) == 1 && r.Resources[0].Healthy == 48
		})
		check(t, c, l, k)

		// Load: 8 clients allocating and releasing, until the kill. The
		// allocations that survived are shared out among them to release,
		// so that the devices do not run out after a few rounds.
		ctx, stopLoad := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		owned := make([][]string, 8)
		l.mu.Lock()
		for i, w := range slices.Sorted(maps.Keys(l.held)) {
			owned[i%8] = append(owned[i%8], w)
		}
		l.mu.Unlock()
		for w := 0; w < 8; w++ {
			wg.Add(1)
			base := next + w*100000
			go func(seed int64, mine []string) {
				defer wg.Done()
				load(ctx, c, l, rand.New(rand.NewSource(seed)), base, mine)
			}(rng.Int63(), owned[w])
		}
		next += 8 * 100000
		// Kill at a random moment once the load is under way.
		l.mu.Lock()
		acks := l.acks
		l.mu.Unlock()
		h.eventually("an operation acknowledged under load", func() bool {
			l.mu.Lock()
			defer l.mu.Unlock()
			return l.acks > acks
		})
		time.Sleep(time.Duration(rng.Intn(400)) * time.Millisecond)
		h.kill()
		stopLoad()
		wg.Wait()
	}
	h.start()
	check(t, h.client(), l, *kills)
	claims := 0
	for w := range l.held {
		if strings.HasPrefix(w, "claim:") {
			claims++
		}
	}
	if claims == 0 {
		t.Error("no claim held at the end: the claim traffic did not get through")
	}
	t.Logf("%d kills; %d acknowledged operations checked; %d allocations and %d claims held at the end", *kills, l.acks, len(l.held)-claims, claims)
}

// load allocates and releases until ctx is done, recording every answer;
// mine are allocations it may release.
func load(ctx context.Context, c adminpb.AdminClient, l *ledger, rng *rand.Rand, base int, mine []string) {
	for i := 0; ctx.Err() == nil; i++ {
		if len(mine) > 0 && rng.Intn(3) == 0 {
			j := rng.Intn(len(mine))
			w := mine[j]
			mine = append(mine[:j], mine[j+1:]...)
			l.mu.Lock()
			l.unsure[w] = true
			l.mu.Unlock()
			var err error
			if name, ok := strings.CutPrefix(w, "claim:crash/"); ok {
				_, err = c.DeleteClaim(ctx, &adminpb.DeleteClaimRequest{Namespace: "crash", Name: name})
			} else {
				_, err = c.Release(ctx, &adminpb.ReleaseRequest{Workload: w})
			}
			l.mu.Lock()
			if err == nil {
				delete(l.held, w)
				delete(l.unsure, w)
				l.released[w] = true
				l.acks++
			}
			l.mu.Unlock()
			continue
		}
		pod := fmt.Sprintf("p%d", base+i)
		w := "crash/" + pod + "/main"
		asClaim := rng.Intn(2) == 0
		if asClaim {
			w = "claim:crash/" + pod
		}
		l.mu.Lock()
		l.unsure[w] = true
		driver := l.driver
		l.mu.Unlock()
		var ids []string
		var err error
		if asClaim {
			var resp *adminpb.ApplyClaimResponse
			resp, err = c.ApplyClaim(ctx, &adminpb.ApplyClaimRequest{Claim: []byte(fmt.Sprintf(`{"apiVersion": "resource.k8s.io/v1",
				"kind": "ResourceClaim", "metadata": {"name": %q, "namespace": "crash"}, "spec": {"devices": {"requests": [
				{"name": "counters", "exactly": {"deviceClassName": %q, "count": %d}}]}}}`, pod, driver, 1+rng.Intn(3)))})
			if err == nil {
				for _, d := range resp.Claim.Devices {
					ids = append(ids, d.Device)
				}
			}
		} else {
			var resp *adminpb.AllocateResponse
			resp, err = c.Allocate(ctx, &adminpb.AllocateRequest{Namespace: "crash", Pod: pod, Container: "main",
				Resource: "example.com/counter", Count: int32(1 + rng.Intn(3))})
			if err == nil {
				ids = resp.Allocation.DeviceIds
			}
		}
		l.mu.Lock()
		if err == nil {
			l.held[w] = ids
			delete(l.unsure, w)
			l.acks++
			mine = append(mine, w)
		} else if s, ok := status.FromError(err); ok && s.Code() == codes.ResourceExhausted {
			delete(l.unsure, w) // refused: certainly not allocated
		}
		l.mu.Unlock()
	}
}

// check compares what wasmlet has after a restart with what clients were
// told, then settles the unsure operations from what it has.
func check(t *testing.T, c adminpb.AdminClient, l *ledger, round int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := c.ListAllocations(ctx, &adminpb.ListAllocationsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	claims, err := c.ListClaims(ctx, &adminpb.ListClaimsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	have := map[string][]string{}
	owner := map[string]string{}
	hold := func(who string, ids []string) {
		have[who] = ids
		for _, id := range ids {
			if o, ok := owner[id]; ok {
				t.Fatalf("after kill %d: device %s held by both %s and %s", round, id, o, who)
			}
			owner[id] = who
		}
	}
	for _, a := range r.Allocations {
		hold(a.Workload, a.DeviceIds)
	}
	for _, cl := range claims.Claims {
		var ids []string
		for _, d := range cl.Devices {
			ids = append(ids, d.Device)
		}
		hold("claim:"+cl.Namespace+"/"+cl.Name, ids)
	}
	for w, ids := range l.held {
		if l.unsure[w] {
			continue
		}
		got, ok := have[w]
		if !ok {
			t.Fatalf("after kill %d: acknowledged allocation or claim %s (%v) is lost", round, w, ids)
		}
		if strings.Join(sorted(got), ",") != strings.Join(sorted(ids), ",") {
			t.Fatalf("after kill %d: %s holds %v, was acknowledged %v", round, w, got, ids)
		}
	}
	for w := range l.released {
		if _, ok := have[w]; ok && !l.unsure[w] {
			t.Fatalf("after kill %d: acknowledged release or deletion of %s undone", round, w)
		}
	}
	for w := range have {
		if _, known := l.held[w]; !known && !l.unsure[w] && !l.released[w] {
			t.Fatalf("after kill %d: %s holds devices no one asked for", round, w)
		}
	}
	// Operations lost in the crash are now settled by what survived.
	for w := range l.unsure {
		if ids, ok := have[w]; ok {
			l.held[w] = ids
		} else {
			delete(l.held, w)
		}
		delete(l.unsure, w)
	}
}

func sorted(s []string) []string {
	out := append([]string(nil), s...)
	sort.Strings(out)
	return out
}
