package devicemanager_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"

	"github.com/wasmlet/wasmlet/host/devicemanager"
	"github.com/wasmlet/wasmlet/host/internal/testenv"
	"github.com/wasmlet/wasmlet/host/internal/testplugin"
)

var quiet = hclog.New(&hclog.LoggerOptions{Level: hclog.Error})

// BenchmarkAllocateRelease is one allocate and one release of a device of an
// external plugin (gRPC Allocate included), without and with the checkpoint
// (two fsyncs per round trip).
func BenchmarkAllocateRelease(b *testing.B) {
	for _, durable := range []bool{false, true} {
		b.Run(fmt.Sprintf("checkpoint=%v", durable), func(b *testing.B) {
			cfg := devicemanager.Config{Logger: quiet}
			dir := testenv.ShortDir(b)
			if durable {
				cfg.CheckpointPath = filepath.Join(dir, "checkpoint")
			}
			e := start(b, dir, cfg)
			e.gpus(8)
			ctx := context.Background()
			for b.Loop() {
				a, err := e.m.Allocate(ctx, req("p", "example.com/gpu", 1))
				if err != nil {
					b.Fatal(err)
				}
				if _, err := e.m.Release(ctx, a.Workload, ""); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// counting tells a benchmark when the manager applied a device update.
type counting struct{ applied chan int }

func (c counting) Devices(_ string, healthy, unhealthy, _ int) {
	select {
	case c.applied <- healthy:
	default:
	}
}
func (counting) Allocated(string, string, time.Duration) {}
func (counting) Released(string)                         {}

// BenchmarkListAndWatch10k is a ListAndWatch update of 10,000 devices, from
// the plugin sending it to the manager having applied it.
func BenchmarkListAndWatch10k(b *testing.B) {
	obs := counting{applied: make(chan int, 1)}
	e := start(b, "", devicemanager.Config{Logger: quiet, Observer: obs})
	devs := testplugin.Devices("dev", 10000)
	p := e.plugin("many.sock", "example.com/many", devs)
	e.resource("example.com/many", healthyCount(10000))
	for len(obs.applied) > 0 {
		<-obs.applied
	}
	healthy := 10000
	for b.Loop() {
		// Flip one device's health, so every update differs.
		next := make([]*pluginapi.Device, len(devs))
		copy(next, devs)
		if healthy == 10000 {
			next[0] = &pluginapi.Device{ID: devs[0].ID, Health: pluginapi.Unhealthy, Topology: devs[0].Topology}
			healthy = 9999
		} else {
			healthy = 10000
		}
		p.SetDevices(next)
		for got := <-obs.applied; got != healthy; got = <-obs.applied {
		}
	}
}

// BenchmarkDurableAllocations measures durable allocations from 1 and from
// 16 concurrent clients: one op is an allocation and its release, each
// acknowledged only once on disk (two durable commits), so pairs/s is
// 1e9/(ns/op). Group commit lets concurrent clients share an fsync.
func BenchmarkDurableAllocations(b *testing.B) {
	for _, clients := range []int{1, 16} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			dir := testenv.ShortDir(b)
			e := start(b, dir, devicemanager.Config{Logger: quiet, CheckpointPath: filepath.Join(dir, "checkpoint")})
			e.gpus(64)
			testenv.Clients(b, clients, "pairs/s", func(ctx context.Context, c int, i int64) error {
				a, err := e.m.Allocate(ctx, req(fmt.Sprintf("c%d-%d", c, i), "example.com/gpu", 1))
				if err != nil {
					return err
				}
				_, err = e.m.Release(ctx, a.Workload, "")
				return err
			})
		})
	}
}
