package module

// Hostile modules that hold a call in the host rather than in their own
// code: they sleep in WASI's poll_oneoff (Go's time.Sleep, or poll_oneoff
// called straight from WebAssembly), or open what would block (a FIFO, a
// socket, a device). Each must fail within its call deadline and a second,
// as a timeout that counts towards quarantine, without pinning the pool;
// the caller cancelling, or an unload, must end them at once; and opening
// must be refused, or not wait, rather than block.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/wasmlet/wasmlet/abi"
	"github.com/wasmlet/wasmlet/guests/build"
	"github.com/wasmlet/wasmlet/internal/testkit"
)

// slack is what a stopped call may take beyond its deadline, measured from
// when it has an instance (the Observer's duration); starting an instance
// is bounded by the initialisation deadline. hang is how long a test waits
// before it calls a call stuck: starting a Go guest takes a while under the
// race detector on a busy machine.
const (
	slack = time.Second
	hang  = 20 * time.Second
)

// asleep is the faulty module's last word before it sleeps in op.
func asleep(op string) string { return "faulty: asleep in " + op }

// callWithin runs call and fails the test unless it returns within d.
func callWithin(t *testing.T, d time.Duration, what string, call func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- call() }()
	return within(t, done, d, what)
}

// within is the error that comes on done, failing the test, which names
// what, if none comes within d.
func within(t *testing.T, done <-chan error, d time.Duration, what string) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		t.Fatalf("%s did not return within %s", what, d)
		return nil
	}
}

// discoverAdmitted starts m.Discover(ctx) and returns once the module has
// admitted it as its calls-th call; the call's error comes on the channel.
func discoverAdmitted(t *testing.T, ctx context.Context, m *Module, calls uint64) <-chan error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		_, err := m.Discover(ctx)
		done <- err
	}()
	testkit.Eventually(t, fmt.Sprintf("call %d to be admitted", calls), func() bool { return m.Status().Calls == calls })
	return done
}

func wantFault(t *testing.T, err error, fault Fault, msg string) {
	t.Helper()
	var ce *CallError
	if !errors.As(err, &ce) || ce.Fault != fault || !strings.Contains(err.Error(), msg) {
		t.Fatalf("got %v\nwant a %s fault saying %q", err, fault, msg)
	}
}

// TestSleepingGuestTimesOut: a guest asleep in poll_oneoff is woken at its
// call deadline, the call fails as a timeout that says where the guest was,
// and such calls quarantine the module like any other fault.
func TestSleepingGuestTimesOut(t *testing.T) {
	const timeout = 300 * time.Millisecond
	for _, c := range []struct {
		name, path string
		config     map[string]string
	}{
		{"go time.Sleep", build.Go(t, "guests/testmodules/faulty"), map[string]string{"fault": "sleep"}},
		{"wasm poll_oneoff", wat(t, "sleep"), nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			obs := &countingObserver{}
			m := load(t, c.path, Options{CallTimeout: timeout, QuarantineAfter: 3, Config: c.config, Observer: obs})
			for i := 1; i <= 3; i++ {
				start := time.Now()
				err := callWithin(t, hang, "a sleeping call", func() error {
					_, err := m.Discover(context.Background())
					return err
				})
				wantFault(t, err, FaultTimeout, "discover: timeout: blocked in a host call (poll_oneoff, sleeping) past its 300ms deadline; woken and stopped")
				if el := time.Since(start); el < timeout {
					t.Errorf("call %d failed after %v, before its deadline", i, el)
				}
				if st := m.Status(); st.Faults != uint64(i) || st.Instances != 0 {
					t.Fatalf("after call %d: %d faults, %d instances", i, st.Faults, st.Instances)
				}
			}
			if l := time.Duration(obs.longest.Load()); l > timeout+slack {
				t.Errorf("a call took %v, more than its deadline and %v", l, slack)
			}
			_, err := m.Discover(context.Background())
			wantFault(t, err, FaultQuarantined, "quarantined after 3 consecutive faults")
		})
	}
}

// TestSleepingGuestDoesNotPinThePool: both instances asleep in allocate; a
// discover waits for one, and gets it when their deadline stops them.
func TestSleepingGuestDoesNotPinThePool(t *testing.T) {
	const timeout = 500 * time.Millisecond
	log, out := captureLogger()
	obs := &countingObserver{}
	// PoolMax 2: the pool cannot grow around the sleepers (that is
	// TestPoolGrowsBehindSlowCallsUpToPoolMax); their deadline must free it.
	m := load(t, build.Go(t, "guests/testmodules/faulty"), Options{Logger: log, Observer: obs, PoolSize: 2, PoolMax: 2, CallTimeout: timeout,
		Config: map[string]string{"fault": "sleep", "on": "allocate"}})
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = m.Allocate(context.Background(), &abi.AllocateRequest{DeviceIDs: []string{"f0"}})
		}()
	}
	testkit.Eventually(t, "both instances to be asleep", func() bool { return strings.Count(out.String(), asleep("allocate")) == 2 })
	err := callWithin(t, hang, "discover while every instance sleeps", func() error {
		devs, err := m.Discover(context.Background())
		if err == nil && len(devs) != 2 {
			t.Errorf("discovered %v", devs)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	for _, err := range errs {
		wantFault(t, err, FaultTimeout, "past its 500ms deadline")
	}
	if l := time.Duration(obs.longest.Load()); l > timeout+slack {
		t.Errorf("a call took %v, more than its deadline and %v", l, slack)
	}
}

// TestCancelStopsASleepingCall: the caller cancelling wakes the guest at
// once, long before the deadline; it is not held against the module.
func TestCancelStopsASleepingCall(t *testing.T) {
	log, out := captureLogger()
	m := load(t, build.Go(t, "guests/testmodules/faulty"), Options{Logger: log, CallTimeout: time.Minute, QuarantineAfter: 1,
		Config: map[string]string{"fault": "sleep", "on": "allocate"}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := m.Allocate(ctx, &abi.AllocateRequest{DeviceIDs: []string{"f0"}})
		done <- err
	}()
	testkit.Eventually(t, "the guest to fall asleep", func() bool { return strings.Contains(out.String(), asleep("allocate")) })
	cancel()
	wantFault(t, within(t, done, slack, "the sleeping call its caller cancelled"), FaultCancelled,
		"allocate: cancelled: cancelled by the caller (context canceled) while blocked in a host call (poll_oneoff, sleeping); woken and stopped")
	if st := m.Status(); st.Faults != 0 || st.Quarantined || st.Instances != 0 {
		t.Fatalf("after the cancellation: %d faults, quarantined %v, %d instances", st.Faults, st.Quarantined, st.Instances)
	}
	if _, err := m.Discover(context.Background()); err != nil {
		t.Fatalf("the module does not serve after a cancelled call: %v", err)
	}
}

// TestCancelInterruptsARunningCall: the same for a guest in a loop.
func TestCancelInterruptsARunningCall(t *testing.T) {
	m := load(t, wat(t, "loop"), Options{CallTimeout: time.Minute})
	ctx, cancel := context.WithCancel(context.Background())
	done := discoverAdmitted(t, ctx, m, 1)
	cancel()
	wantFault(t, within(t, done, slack, "the call its caller cancelled"), FaultCancelled, "cancelled by the caller (context canceled)")
	// A context already done never reaches the module.
	_, err := m.Discover(ctx)
	wantFault(t, err, FaultCancelled, "cancelled by the caller (context canceled) before it started")
	if st := m.Status(); st.Faults != 0 {
		t.Fatalf("cancelled calls counted as %d faults", st.Faults)
	}
}

// TestCancelWhileWaitingForAnInstance: a caller queued behind a sleeping
// call gives up when its context is cancelled.
func TestCancelWhileWaitingForAnInstance(t *testing.T) {
	log, out := captureLogger()
	m := load(t, build.Go(t, "guests/testmodules/faulty"), Options{Logger: log, PoolSize: 1, PoolMax: 1, CallTimeout: time.Minute,
		Config: map[string]string{"fault": "sleep", "on": "allocate"}})
	sleeperCtx, stopSleeper := context.WithCancel(context.Background())
	defer stopSleeper()
	slept := make(chan error, 1)
	go func() {
		_, err := m.Allocate(sleeperCtx, &abi.AllocateRequest{DeviceIDs: []string{"f0"}})
		slept <- err
	}()
	testkit.Eventually(t, "the guest to fall asleep", func() bool { return strings.Contains(out.String(), asleep("allocate")) })
	ctx, cancel := context.WithCancel(context.Background())
	done := discoverAdmitted(t, ctx, m, 2)
	cancel()
	wantFault(t, within(t, done, slack, "a caller waiting for an instance, cancelled,"), FaultBusy, "no instance free (pool of 1): context canceled")
	stopSleeper()
	wantFault(t, <-slept, FaultCancelled, "while blocked in a host call")
}

// TestUnloadWakesASleepingCall: Close waits for calls in flight until its
// context is done, then stops them, asleep or not.
func TestUnloadWakesASleepingCall(t *testing.T) {
	log, out := captureLogger()
	m, err := Load(context.Background(), build.Go(t, "guests/testmodules/faulty"), Options{Logger: log, MemoryLimit: 32 << 20,
		Cache: testCache(t), CallTimeout: time.Minute, Config: map[string]string{"fault": "sleep"}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := m.Discover(context.Background())
		done <- err
	}()
	testkit.Eventually(t, "the guest to fall asleep", func() bool { return strings.Contains(out.String(), asleep("discover")) })
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	callWithin(t, slack, "Close", func() error { return m.Close(ctx) })
	wantFault(t, <-done, FaultClosed, "blocked in a host call (poll_oneoff, sleeping) when the module was unloaded; woken and stopped")
}

// TestSleepingInitialisationIsBounded: _initialize sleeping (a Go init
// calling time.Sleep) is bounded by the initialisation deadline, and
// stopped sooner when Load's context is cancelled.
func TestSleepingInitialisationIsBounded(t *testing.T) {
	faulty := build.Go(t, "guests/testmodules/faulty")
	config := map[string]string{"fault": "slowinit", "delay_ms": "1000000000"}
	err := callWithin(t, hang, "Load", func() error {
		_, err := Load(context.Background(), faulty, Options{MemoryLimit: 32 << 20, Cache: testCache(t),
			InitTimeout: 300 * time.Millisecond, Config: config})
		return err
	})
	if err == nil || !strings.Contains(err.Error(), "_initialize: timeout: blocked in a host call (poll_oneoff, sleeping) past its 300ms deadline") {
		t.Fatalf("got %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	err = callWithin(t, hang, "Load", func() error {
		_, err := Load(ctx, faulty, Options{MemoryLimit: 32 << 20, Cache: testCache(t), Config: config})
		return err
	})
	if err == nil || !strings.Contains(err.Error(), "_initialize: cancelled: cancelled by the caller (context canceled)") {
		t.Fatalf("got %v", err)
	}
}

// TestPollingFdsDoesNotBlock: poll_oneoff on a file and on stdin, next to
// an hour-long clock, answers at once.
func TestPollingFdsDoesNotBlock(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "file"), []byte("data"), 0o644)
	m := load(t, wat(t, "poll_fds"), Options{CallTimeout: 10 * time.Second, Mounts: []Mount{{Host: dir, Guest: "/data"}}})
	err := callWithin(t, hang, "discover polling a file and stdin", func() error {
		_, err := m.Discover(context.Background())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestOpeningNeverBlocks: a module that opens a FIFO (whose open waits for
// a writer), a socket, or a device without the grant in its mount is
// refused at once; a granted device is opened non-blocking, so that a read
// with nothing to read fails instead of waiting.
func TestOpeningNeverBlocks(t *testing.T) {
	// Short: a unix socket's path must fit in 108 bytes.
	dir, err := os.MkdirTemp("", "w")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(dir, "file"), []byte("a file"), 0o644))
	must(syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o644))
	l, err := net.Listen("unix", filepath.Join(dir, "sock"))
	must(err)
	defer l.Close()
	must(os.Symlink("fifo", filepath.Join(dir, "fifo-link")))
	must(os.Symlink("file", filepath.Join(dir, "file-link")))
	must(os.Symlink("file-link", filepath.Join(dir, "link-link")))

	escapeModule := build.Go(t, "guests/testmodules/escape")
	try := func(t *testing.T, mounts []Mount, config map[string]string) map[string]string {
		t.Helper()
		m := load(t, escapeModule, Options{Mounts: mounts, Config: config})
		var attrs map[string]string
		err := callWithin(t, hang, config["attempt"]+" "+config["path"], func() error {
			devs, err := m.Discover(context.Background())
			if err == nil {
				attrs = devs[0].Attributes
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return attrs
	}
	refused := func(t *testing.T, a map[string]string) {
		t.Helper()
		if a["ok"] != "false" || !strings.Contains(strings.ToLower(a["error"]), "permission denied") {
			t.Fatalf("got %v, want permission denied", a)
		}
	}
	mount := []Mount{{Host: dir, Guest: "/data"}}
	granted := []Mount{{Host: dir, Guest: "/data", Devices: true}}
	for _, name := range []string{"fifo", "fifo-link", "sock"} {
		t.Run("open "+name+" is refused", func(t *testing.T) {
			refused(t, try(t, mount, map[string]string{"attempt": "read", "path": "/data/" + name}))
		})
		t.Run("open "+name+" is refused with devices granted", func(t *testing.T) {
			refused(t, try(t, granted, map[string]string{"attempt": "read", "path": "/data/" + name}))
		})
	}
	t.Run("a FIFO can be stat'ed and listed", func(t *testing.T) {
		// (WASI preview 1 has no file type for a FIFO: the guest sees
		// "unknown", which Go shows as a plain file.)
		if a := try(t, mount, map[string]string{"attempt": "stat", "path": "/data/fifo"}); a["ok"] != "true" {
			t.Fatalf("stat: %v", a)
		}
		if a := try(t, mount, map[string]string{"attempt": "list", "path": "/data"}); a["got"] != "fifo,fifo-link,file,file-link,link-link,sock" {
			t.Fatalf("list: %v", a)
		}
	})
	t.Run("regular files and links to them open", func(t *testing.T) {
		for _, name := range []string{"file", "file-link", "link-link"} {
			if a := try(t, mount, map[string]string{"attempt": "read", "path": "/data/" + name}); a["ok"] != "true" || a["got"] != "a file" {
				t.Fatalf("%s: %v", name, a)
			}
		}
	})
	t.Run("a device without the grant is refused", func(t *testing.T) {
		refused(t, try(t, []Mount{{Host: "/dev", Guest: "/dev"}}, map[string]string{"attempt": "read", "path": "/dev/ptmx"}))
	})
	t.Run("a granted device does not block a read", func(t *testing.T) {
		// A new pseudo-terminal's master has nothing to read until its
		// slave writes: a blocking read waits for ever.
		if _, err := os.Stat("/dev/ptmx"); err != nil {
			t.Skip(err)
		}
		a := try(t, []Mount{{Host: "/dev", Guest: "/dev", Devices: true}}, map[string]string{"attempt": "read", "path": "/dev/ptmx"})
		if a["ok"] != "false" || !strings.Contains(a["error"], "Try again") {
			t.Fatalf("got %v, want EAGAIN", a)
		}
	})
}
