package devicemanager_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
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
	p := e.gpus(4)
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
	if len(got) != 1 || fmt.Sprint(got[0].DeviceIDs) != fmt.Sprint(a.DeviceIDs) || got[0].Edits.Env["TEST_DEVICES"] == "" {
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

// TestNothingUndurableIsAcknowledged: while the checkpoint cannot be written,
// no Allocate succeeds — not even one repeating a request in progress, which
// used to be handed the unsaved allocation — and nothing unsaved is listed.
// A Release that could not be made durable is undone: the allocation is
// still listed, and a repeated Release fails again until the checkpoint can
// be written.
func TestNothingUndurableIsAcknowledged(t *testing.T) {
	dir := testenv.ShortDir(t)
	state := filepath.Join(dir, "state")
	ck := filepath.Join(state, "checkpoint")
	os.MkdirAll(state, 0o700)
	e := start(t, dir, devicemanager.Config{CheckpointPath: ck, GracePeriod: time.Hour})
	e.gpus(4)
	ctx := context.Background()
	held, err := e.m.Allocate(ctx, req("held", "example.com/gpu", 1))
	if err != nil {
		t.Fatal(err)
	}

	os.RemoveAll(state) // every write fails from here on
	var wg sync.WaitGroup
	var acknowledged, refused atomic.Int64
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 25 {
				_, err := e.m.Allocate(ctx, req("w", "example.com/gpu", 2))
				switch {
				case err == nil:
					acknowledged.Add(1)
				case errors.Is(err, devicemanager.ErrNotDurable):
					refused.Add(1)
				default:
					t.Error(err)
					return
				}
				for _, a := range e.m.Allocations() {
					if a.Workload != held.Workload {
						t.Errorf("an unsaved allocation is listed: %+v", a)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	if acknowledged.Load() != 0 || refused.Load() == 0 {
		t.Fatalf("with the checkpoint unwritable: %d allocations acknowledged, %d refused", acknowledged.Load(), refused.Load())
	}
	t.Logf("%d allocations refused while the checkpoint could not be written", refused.Load())

	for i := range 2 {
		if _, err := e.m.Release(ctx, held.Workload, ""); !errors.Is(err, devicemanager.ErrNotDurable) {
			t.Fatalf("release %d with the checkpoint unwritable: %v", i+1, err)
		}
		if got := e.m.Allocations(); len(got) != 1 || got[0].Workload != held.Workload {
			t.Fatalf("after release %d with the checkpoint unwritable: %+v", i+1, got)
		}
	}
	os.MkdirAll(state, 0o700)
	if _, err := e.m.Release(ctx, held.Workload, ""); err != nil {
		t.Fatal(err)
	}
	if st, err := checkpoint.Read(ck); err != nil || len(st.Allocations) != 0 {
		t.Fatalf("after the release: %v %v", st, err)
	}
	// And allocation works again, durably.
	if _, err := e.m.Allocate(ctx, req("w", "example.com/gpu", 2)); err != nil {
		t.Fatal(err)
	}
	if st, err := checkpoint.Read(ck); err != nil || len(st.Allocations) != 1 {
		t.Fatalf("after a new allocation: %v %v", st, err)
	}
}

// TestReleaseOnAFullDiskIsUndone: on a real file system that is full (a
// tmpfs, in a child process of its own), a release cannot be made durable;
// it fails, saying why, and is undone as a failed allocation is: the
// workload keeps its devices, listed and on disk, and they are not handed
// to anyone else. Once there is space, the release succeeds and another
// workload gets the devices.
func TestReleaseOnAFullDiskIsUndone(t *testing.T) {
	state := testenv.InTmpfs(t, "256k")
	if state == "" {
		return // the test ran in a child process
	}
	ck := filepath.Join(state, "checkpoint")
	e := start(t, "", devicemanager.Config{CheckpointPath: ck, GracePeriod: time.Hour})
	e.gpus(2)
	ctx := context.Background()
	held, err := e.m.Allocate(ctx, req("held", "example.com/gpu", 2))
	if err != nil {
		t.Fatal(err)
	}

	filler := testenv.Fill(t, state)
	_, err = e.m.Release(ctx, held.Workload, "")
	if !errors.Is(err, devicemanager.ErrNotDurable) || !strings.Contains(err.Error(), "no space left on device") ||
		!strings.Contains(err.Error(), "nothing was released") {
		t.Fatalf("release on a full disk: %v", err)
	}
	if got := e.m.Allocations(); len(got) != 1 || got[0].Workload != held.Workload || len(got[0].DeviceIDs) != 2 {
		t.Fatalf("after the failed release: allocations %+v", got)
	}
	r := e.resource("example.com/gpu", func(r devicemanager.ResourceStatus) bool { return r.Connected })
	if r.Allocated != 2 || r.Allocatable != 0 {
		t.Fatalf("after the failed release: %d allocated, %d allocatable", r.Allocated, r.Allocatable)
	}
	if _, err := e.m.Allocate(ctx, req("other", "example.com/gpu", 1)); !errors.Is(err, devicemanager.ErrUnavailable) {
		t.Fatalf("a device of the failed release was handed to another workload: %v", err)
	}
	if st, err := checkpoint.Read(ck); err != nil || len(st.Allocations) != 1 || st.Allocations[0].Workload != held.Workload {
		t.Fatalf("the checkpoint after the failed release: %v %v", st, err)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.Release(ctx, held.Workload, ""); err != nil {
		t.Fatalf("release once there is space: %v", err)
	}
	if _, err := e.m.Allocate(ctx, req("other", "example.com/gpu", 2)); err != nil {
		t.Fatalf("allocate after the release: %v", err)
	}
	if st, err := checkpoint.Read(ck); err != nil || len(st.Allocations) != 1 || st.Allocations[0].Pod != "other" {
		t.Fatalf("the checkpoint after the release: %v %v", st, err)
	}
}
