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

// bigState is a node with 10,000 allocations, each with a realistic
// response, and 20 resources of 8 devices.
func bigState() *State { return sampleState(10_000, 20, 8) }

func BenchmarkWrite10k(b *testing.B) {
	st := bigState()
	path := filepath.Join(b.TempDir(), "ck")
	data := mustEncode(b, st)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if err := Write(path, st); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRead10k(b *testing.B) {
	st := bigState()
	path := filepath.Join(b.TempDir(), "ck")
	if err := Write(path, st); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(mustEncode(b, st))))
	b.ReportAllocs()
	for b.Loop() {
		got, err := Read(path)
		if err != nil {
			b.Fatal(err)
		}
		if len(got.Allocations) != 10_000 {
			b.Fatal("short read")
		}
	}
}

// BenchmarkEncode10k and BenchmarkDecode10k are the CPU part of the two
// above, without the file system.
func BenchmarkEncode10k(b *testing.B) {
	st := bigState()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Encode(st); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecode10k(b *testing.B) {
	data := mustEncode(b, bigState())
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(data); err != nil {
			b.Fatal(err)
		}
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
