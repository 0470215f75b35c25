package devicemanager_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wasmlet/wasmlet/checkpoint"
	"github.com/wasmlet/wasmlet/host/devicemanager"
	"github.com/wasmlet/wasmlet/host/internal/testenv"
	"github.com/wasmlet/wasmlet/host/internal/testplugin"
)

func TestRestartRestoresAllocations(t *testing.T) {
	dir := testenv.ShortDir(t)
	ck := filepath.Join(dir, "state", "checkpoint")
	os.MkdirAll(filepath.Dir(ck), 0o700)
	cfg := devicemanager.Config{CheckpointPath: ck, GracePeriod: time.Hour}
	e := start(t, dir, cfg)
	p := e.plugin("gpu.sock", "example.com/gpu", testplugin.Devices("gpu", 4))
	e.resource("example.com/gpu", healthyCount(4))
	ctx := context.Background()
	a, err := e.m.Allocate(ctx, req("a", "example.com/gpu", 2))
	if err != nil {
		t.Fatal(err)
	}
	b, err := e.m.Allocate(ctx, req("b", "example.com/gpu", 1))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.Release(ctx, b.Workload, ""); err != nil {
		t.Fatal(err)
	}
	// The file on disk already has what was acknowledged.
	st, err := checkpoint.Read(ck)
	if err != nil || len(st.Allocations) != 1 || st.Allocations[0].Workload != a.Workload {
		t.Fatalf("checkpoint %v %v", st, err)
	}
	e.stop()
	p.Stop()

	// Restart: the allocation is there, the devices are known but unhealthy
	// until the plugin comes back.
	e2 := start(t, dir, cfg)
	got := e2.m.Allocations()
	if len(got) != 1 || fmt.Sprint(got[0].DeviceIDs) != fmt.Sprint(a.DeviceIDs) || got[0].Response.Envs["TEST_DEVICES"] == "" {
		t.Fatalf("restored %+v", got)
	}
	r := e2.resource("example.com/gpu", func(r devicemanager.ResourceStatus) bool { return r.Capacity == 4 })
	if r.Connected || r.Healthy != 0 || r.Allocated != 2 || !strings.Contains(r.LastError, "restored from the checkpoint") {
		t.Fatalf("restored resource %+v", r)
	}
	if _, err := e2.m.Allocate(ctx, req("c", "example.com/gpu", 1)); !errors.Is(err, devicemanager.ErrUnavailable) {
		t.Fatalf("allocated from a resource with no provider: %v", err)
	}
	e2.plugin("gpu.sock", "example.com/gpu", testplugin.Devices("gpu", 4))
	e2.resource("example.com/gpu", healthyCount(4))
	// The restored allocation is never handed out twice.
	c, err := e2.m.Allocate(ctx, req("c", "example.com/gpu", 2))
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range c.DeviceIDs {
		for _, held := range a.DeviceIDs {
			if id == held {
				t.Fatalf("device %s given again after a restart", id)
			}
		}
	}
}

func TestCorruptCheckpointRefusesToStart(t *testing.T) {
	dir := testenv.ShortDir(t)
	ck := filepath.Join(dir, "checkpoint")
	os.WriteFile(ck, []byte("WLTCKPT\ngarbage"), 0o600)
	_, err := devicemanager.New(devicemanager.Config{CheckpointPath: ck})
	var ce *checkpoint.CorruptError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), ck) {
		t.Fatalf("got %v", err)
	}
	if b, _ := os.ReadFile(ck); string(b) != "WLTCKPT\ngarbage" {
		t.Fatal("the bad checkpoint was modified")
	}
}
