package checkpoint

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The benchmarks use real files in a temporary directory and real fsyncs:
//
//	go test ./checkpoint -run '^$' -bench . -count 5

// BenchmarkCheckpoint encodes, decodes, writes (with its fsyncs) and reads
// states of 10 to 10,000 allocations (and 20 resources of 8 devices), so
// that the CPU cost of the payload can be set against the durable write:
//
//	go test ./checkpoint -run '^$' -bench BenchmarkCheckpoint -count 6 | benchstat -col /op -
//
// The payload was encoded by a hand-written protowire codec until its
// savings were measured against protobuf-go's here, on this 2-core machine
// with a ~0.6 ms fsync: at 200 allocations it saved 0.26 ms of 0.70 ms to
// encode and 0.47 ms of a 1.58 ms durable write; see the package
// documentation for why that was not worth 750 lines.
func BenchmarkCheckpoint(b *testing.B) {
	for _, allocs := range []int{10, 200, 1_000, 10_000} {
		st := sampleState(allocs, 20, 8)
		data := mustEncode(b, st)
		name := fmt.Sprintf("allocs=%d", allocs)
		run := func(op string, f func(b *testing.B)) {
			b.Run(name+"/op="+op, func(b *testing.B) {
				b.SetBytes(int64(len(data)))
				b.ReportAllocs()
				f(b)
			})
		}
		run("encode", func(b *testing.B) {
			for b.Loop() {
				if _, err := Encode(st); err != nil {
					b.Fatal(err)
				}
			}
		})
		run("decode", func(b *testing.B) {
			for b.Loop() {
				if _, err := Decode(data); err != nil {
					b.Fatal(err)
				}
			}
		})
		run("write", func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "ck")
			for b.Loop() {
				if err := Write(path, st); err != nil {
					b.Fatal(err)
				}
			}
		})
		run("read", func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "ck")
			if err := Write(path, st); err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				got, err := Read(path)
				if err != nil {
					b.Fatal(err)
				}
				if len(got.Allocations) != allocs {
					b.Fatal("short read")
				}
			}
		})
	}
}

// BenchmarkDurableCommits measures durable commits per second through a
// real Committer: each client, in a loop, allocates a device to a new
// workload or releases the one it holds, and waits for Sync. The node holds
// 200 other allocations and 20 resources of 8 devices. One op is one
// acknowledged commit; commits/write shows how many commits share a write.
func BenchmarkDurableCommits(b *testing.B) {
	for _, clients := range []int{1, 16} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			base := sampleState(200, 20, 8)
			s := &store{allocs: base.GetAllocations()}
			resources := base.GetResources()
			snapshot := func() (*State, uint64) {
				st, gen := s.snapshot()
				st.Resources = resources // immutable here, shared
				return st, gen
			}
			c := NewCommitter(filepath.Join(b.TempDir(), "ck"), snapshot)
			defer c.Close()
			if err := c.Sync(context.Background(), s.add("ns/warm-up/c")); err != nil {
				b.Fatal(err)
			}

			var next atomic.Int64
			var wg sync.WaitGroup
			writes := s.snapshotCount()
			b.ResetTimer()
			start := time.Now()
			for i := range clients {
				wg.Go(func() {
					held := ""
					for n := next.Add(1); n <= int64(b.N); n = next.Add(1) {
						var gen uint64
						if held == "" {
							held = fmt.Sprintf("ns/pod-%d-%d/c", i, n)
							gen = s.add(held)
						} else {
							gen = s.remove(held)
							held = ""
						}
						if err := c.Sync(context.Background(), gen); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			writes = s.snapshotCount() - writes
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "commits/s")
			b.ReportMetric(float64(b.N)/float64(max(writes, 1)), "commits/write")
		})
	}
}

// remove releases workload's allocation and returns the new generation.
func (s *store) remove(workload string) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.allocs = slices.DeleteFunc(slices.Clone(s.allocs), func(a *Allocation) bool { return a.GetWorkload() == workload })
	s.gen++
	return s.gen
}
