package module

// Benchmarks for the costs ABI.md and the README quote. Run them with
// `make bench`, which reports medians over several runs. Baselines run in the
// same invocation, so ratios hold even on a noisy machine:
//
//   - BenchmarkRoundTrip/*/wasmlet is a ~100-byte preferred_allocation
//     through Module.Call: instrumented for interruption, under a per-call
//     deadline (the only way wasmlet runs modules).
//   - BenchmarkRoundTrip/*/wasmlet-cancellable is the same under a context
//     that can be cancelled (a gRPC request's): the call also watches it.
//   - BenchmarkRoundTrip/*/raw-no-deadline is the same exchange done by hand
//     on a bare wazero runtime, uninstrumented: the floor, and what an
//     untrusted module must not get (it can be neither stopped nor preempted).
//   - BenchmarkRoundTrip/*/raw-context-timeout is the obvious way to add a
//     deadline: close-on-context-done and context.WithTimeout per call.
//
// "echo" is a hand-written module that copies the request into its reply
// (the ABI's cost alone); "go-sdk" is the Go counter module, whose guest work
// (decoding, choosing, encoding in Go compiled to Wasm) dominates.

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/wasmlet/wasmlet/abi"
	"github.com/wasmlet/wasmlet/guests/build"
)

// smallRequest is a ~100-byte request (PreferredAllocationRequest: five
// available devices, two to choose). The echo module's reply is the same
// ~100 bytes; the Go counter's is the two chosen ids.
var smallRequest = &abi.PreferredAllocationRequest{
	Available:   []string{"0000:3b:00.0", "0000:3b:00.1", "0000:5e:00.0", "0000:5e:00.1", "0000:86:00.0"},
	MustInclude: []string{"0000:5e:00.1"},
	Size:        2,
}

func BenchmarkLoad(b *testing.B) {
	path := build.Go(b, "guests/counter")
	ctx := context.Background()
	b.Run("cold-compile", func(b *testing.B) {
		for b.Loop() {
			m, err := Load(ctx, path, Options{MemoryLimit: 64 << 20})
			if err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			m.Close(ctx)
			b.StartTimer()
		}
	})
	b.Run("cached", func(b *testing.B) {
		cache, err := NewCache(b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		m, err := Load(ctx, path, Options{MemoryLimit: 64 << 20, Cache: cache}) // fill the cache
		if err != nil {
			b.Fatal(err)
		}
		m.Close(ctx)
		for b.Loop() {
			m, err := Load(ctx, path, Options{MemoryLimit: 64 << 20, Cache: cache})
			if err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			m.Close(ctx)
			b.StartTimer()
		}
	})
}

// BenchmarkInstantiate measures starting one more instance of a loaded
// module: instantiate, _initialize, version check.
func BenchmarkInstantiate(b *testing.B) {
	ctx := context.Background()
	m, err := Load(ctx, build.Go(b, "guests/counter"), Options{MemoryLimit: 64 << 20})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close(ctx)
	for b.Loop() {
		in, err := m.newInstance(ctx)
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		m.drop(in)
		in.close()
		b.StartTimer()
	}
}

func BenchmarkRoundTrip(b *testing.B) {
	ctx := context.Background()
	for _, guest := range []struct{ name, path string }{
		{"echo", build.Testdata(b, "guests/testmodules/wat/echo.wasm")},
		{"go-sdk", build.Go(b, "guests/counter")},
	} {
		// The same calls with a context that cannot be cancelled and with
		// one that can (which the module watches during the call).
		for _, cancellable := range []bool{false, true} {
			name := guest.name + "/wasmlet"
			if cancellable {
				name += "-cancellable"
			}
			b.Run(name, func(b *testing.B) {
				m, err := Load(ctx, guest.path, Options{MemoryLimit: 64 << 20, PoolSize: 1})
				if err != nil {
					b.Fatal(err)
				}
				defer m.Close(ctx)
				cctx := ctx
				if cancellable {
					var cancel context.CancelFunc
					cctx, cancel = context.WithCancel(ctx)
					defer cancel()
				}
				var resp abi.PreferredAllocationResponse
				b.ReportAllocs()
				for b.Loop() {
					if err := m.Call(cctx, abi.OpPreferredAllocation, smallRequest, &resp); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
		b.Run(guest.name+"/raw-no-deadline", func(b *testing.B) {
			r := newRaw(b, guest.path, false)
			b.ReportAllocs()
			for b.Loop() {
				r.call(b, ctx)
			}
		})
		b.Run(guest.name+"/raw-context-timeout", func(b *testing.B) {
			r := newRaw(b, guest.path, true)
			b.ReportAllocs()
			for b.Loop() {
				cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				r.call(b, cctx)
				cancel()
			}
		})
	}
}

// BenchmarkWatch is what watching the caller's context adds to a call:
// nothing for a context that cannot be cancelled, one context.AfterFunc
// registration and its removal for one that can.
func BenchmarkWatch(b *testing.B) {
	cctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	in := &instance{halted: make(chan struct{})}
	in.onCancel = func() { in.stop(haltCancelled) }
	for _, c := range []struct {
		name string
		ctx  context.Context
	}{{"background", context.Background()}, {"cancellable", cctx}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				in.unwatch(in.watch(c.ctx))
			}
		})
	}
}

// BenchmarkRoundTripParallel is BenchmarkRoundTrip/wasmlet from several
// goroutines over a pool of two instances.
func BenchmarkRoundTripParallel(b *testing.B) {
	ctx := context.Background()
	m, err := Load(ctx, build.Go(b, "guests/counter"), Options{MemoryLimit: 64 << 20, PoolSize: 2})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close(ctx)
	b.RunParallel(func(pb *testing.PB) {
		var resp abi.PreferredAllocationResponse
		for pb.Next() {
			if err := m.Call(ctx, abi.OpPreferredAllocation, smallRequest, &resp); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// raw drives the ABI by hand on a bare wazero runtime.
type raw struct {
	mod       api.Module
	alloc, op api.Function
	stack     []uint64
	buf       []byte
	ptr       uint32
}

func newRaw(b *testing.B, path string, interruptible bool) *raw {
	ctx := context.Background()
	bin, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().
		WithCloseOnContextDone(interruptible).WithMemoryLimitPages(1024))
	b.Cleanup(func() { rt.Close(ctx) })
	wasi_snapshot_preview1.MustInstantiate(ctx, rt)
	if err := hostImports(ctx, rt, newLogSink(Options{}.withDefaults(path)), nil); err != nil {
		b.Fatal(err)
	}
	mod, err := rt.InstantiateWithConfig(ctx, bin, wazero.NewModuleConfig().WithStartFunctions("_initialize"))
	if err != nil {
		b.Fatal(err)
	}
	r := &raw{mod: mod, alloc: mod.ExportedFunction(abi.ExportAlloc),
		op: mod.ExportedFunction(abi.OpPreferredAllocation.Export()), stack: make([]uint64, 2)}
	r.stack[0] = minRequestBuffer
	if err := r.alloc.CallWithStack(ctx, r.stack); err != nil {
		b.Fatal(err)
	}
	r.ptr = uint32(r.stack[0])
	return r
}

func (r *raw) call(b *testing.B, ctx context.Context) {
	r.buf = smallRequest.AppendTo(r.buf[:0])
	r.mod.Memory().Write(r.ptr, r.buf)
	r.stack[0], r.stack[1] = uint64(r.ptr), uint64(len(r.buf))
	if err := r.op.CallWithStack(ctx, r.stack); err != nil {
		b.Fatal(err)
	}
	ptr, n, _ := abi.UnpackResult(r.stack[0])
	body, _ := r.mod.Memory().Read(ptr, n)
	var resp abi.PreferredAllocationResponse
	if err := resp.Unmarshal(body); err != nil {
		b.Fatal(err)
	}
}
