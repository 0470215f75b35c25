package metrics_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wasmlet/wasmlet/host/internal/testenv"
	"github.com/wasmlet/wasmlet/host/metrics"
	"github.com/wasmlet/wasmlet/host/module"
)

// served is a Metrics being served on a loopback port.
type served struct {
	base   string             // URL
	cancel context.CancelFunc // ends Serve
	done   chan struct{}      // closed when Serve has returned err
	err    error
}

// serve serves m on a new loopback port until the test ends.
func serve(t *testing.T, m *metrics.Metrics) *served {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &served{base: "http://" + lis.Addr().String(), cancel: cancel, done: make(chan struct{})}
	go func() {
		s.err = m.Serve(ctx, lis)
		close(s.done)
	}()
	t.Cleanup(func() {
		cancel()
		<-s.done
	})
	return s
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

// scrape reads /metrics and returns every sample by its series, written
// as the text exposition writes it: name{label="value",...}.
func scrape(t *testing.T, base string) map[string]float64 {
	t.Helper()
	code, body := get(t, base+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: status %d: %s", code, body)
	}
	samples := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			t.Fatalf("/metrics: line %q is not a sample", line)
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("/metrics: line %q: %v", line, err)
		}
		samples[line[:i]] = v
	}
	return samples
}

func expect(t *testing.T, samples map[string]float64, want map[string]float64) {
	t.Helper()
	for series, v := range want {
		got, ok := samples[series]
		switch {
		case !ok && v >= 0:
			t.Errorf("%s is missing", series)
		case ok && v < 0:
			t.Errorf("%s = %v, want no such series", series, got)
		case ok && got != v:
			t.Errorf("%s = %v, want %v", series, got, v)
		}
	}
}

const absent = -1 // in expect: the series must not exist

// Driving each observer method shows up in /metrics, served over HTTP, with
// the labels and values the README names.
func TestObserversShowInScrape(t *testing.T) {
	m := metrics.New()
	base := serve(t, m).base

	// module.Observer
	m.Call("pci", "discover", 3*time.Millisecond, "")
	m.Call("pci", "discover", time.Millisecond, "")
	m.Call("pci", "allocate", 2*time.Second, module.FaultTimeout)
	m.Call("faulty", "discover", time.Microsecond, module.FaultTrap)
	m.Call("faulty", "discover", time.Microsecond, module.FaultMalformed)
	m.Instances("pci", 2)
	m.Instances("faulty", 1)
	m.Quarantined("faulty", true)
	m.LogsDropped("faulty", 7)
	m.ModuleEvent(module.Event{Kind: module.Loaded, Name: "pci"})
	m.ModuleEvent(module.Event{Kind: module.Refused, Name: "broken"})
	// pluginmanager.Observer
	m.Registered("DevicePlugin", "ok", 2*time.Millisecond)
	m.Registered("DevicePlugin", "refused", time.Second)
	m.Deregistered("DevicePlugin")
	m.Reconciled(300 * time.Microsecond)
	// csi.Config.Observe
	m.CSIDrivers(2)
	// devicemanager.Observer
	m.Devices("example.com/pci", 3, 1, 2)
	m.Allocated("example.com/pci", "ok", 4*time.Millisecond)
	m.Allocated("example.com/pci", "unavailable", time.Millisecond)
	m.Released("example.com/pci")

	expect(t, scrape(t, base), map[string]float64{
		`wasmlet_module_calls_total{module="pci",op="discover",result="ok"}`:                 2,
		`wasmlet_module_calls_total{module="pci",op="allocate",result="timeout"}`:            1,
		`wasmlet_module_calls_total{module="faulty",op="discover",result="trap"}`:            1,
		`wasmlet_module_call_duration_seconds_count{module="pci",op="discover"}`:             2,
		`wasmlet_module_call_duration_seconds_sum{module="pci",op="discover"}`:               0.004,
		`wasmlet_module_call_duration_seconds_bucket{module="pci",op="discover",le="0.001"}`: 1,
		`wasmlet_module_call_duration_seconds_bucket{module="pci",op="discover",le="0.01"}`:  2,
		`wasmlet_module_faults_total{fault="timeout",module="pci"}`:                          1,
		`wasmlet_module_faults_total{fault="trap",module="faulty"}`:                          1,
		`wasmlet_module_faults_total{fault="malformed",module="faulty"}`:                     1,
		`wasmlet_module_traps_total{module="faulty"}`:                                        1,
		`wasmlet_module_traps_total{module="pci"}`:                                           absent,
		`wasmlet_module_timeouts_total{module="pci"}`:                                        1,
		`wasmlet_module_quarantines_total{module="faulty"}`:                                  1,
		`wasmlet_module_quarantined{module="faulty"}`:                                        1,
		`wasmlet_module_quarantined{module="pci"}`:                                           0,
		`wasmlet_module_instances{module="pci"}`:                                             2,
		`wasmlet_module_log_lines_dropped_total{module="faulty"}`:                            7,
		`wasmlet_module_loads_total{event="loaded"}`:                                         1,
		`wasmlet_module_loads_total{event="refused"}`:                                        1,
		`wasmlet_plugin_registrations_total{outcome="ok",type="DevicePlugin"}`:               1,
		`wasmlet_plugin_registrations_total{outcome="refused",type="DevicePlugin"}`:          1,
		// Only registrations that succeeded have a latency.
		`wasmlet_plugin_registration_latency_seconds_count{type="DevicePlugin"}`:              1,
		`wasmlet_plugin_registration_latency_seconds_bucket{type="DevicePlugin",le="0.001"}`:  0,
		`wasmlet_plugin_registration_latency_seconds_bucket{type="DevicePlugin",le="0.0025"}`: 1,
		`wasmlet_plugin_deregistrations_total{type="DevicePlugin"}`:                           1,
		`wasmlet_reconcile_duration_seconds_count`:                                            1,
		`wasmlet_csi_drivers`: 2,
		`wasmlet_reconcile_duration_seconds_bucket{le="0.0005"}`:                      1,
		`wasmlet_devices{health="healthy",resource="example.com/pci"}`:                3,
		`wasmlet_devices{health="unhealthy",resource="example.com/pci"}`:              1,
		`wasmlet_devices_allocated{resource="example.com/pci"}`:                       2,
		`wasmlet_allocations_total{outcome="ok",resource="example.com/pci"}`:          1,
		`wasmlet_allocations_total{outcome="unavailable",resource="example.com/pci"}`: 1,
		`wasmlet_allocation_duration_seconds_count{resource="example.com/pci"}`:       1,
		`wasmlet_allocation_duration_seconds_sum{resource="example.com/pci"}`:         0.004,
		`wasmlet_releases_total{resource="example.com/pci"}`:                          1,
	})

	// A replaced module is no longer quarantined; an unloaded one has no
	// series left for its state.
	m.ModuleEvent(module.Event{Kind: module.Replaced, Name: "faulty"})
	expect(t, scrape(t, base), map[string]float64{
		`wasmlet_module_quarantined{module="faulty"}`:       0,
		`wasmlet_module_quarantines_total{module="faulty"}`: 1,
		`wasmlet_module_loads_total{event="replaced"}`:      1,
	})
	m.Quarantined("faulty", true)
	m.ModuleEvent(module.Event{Kind: module.Unloaded, Name: "faulty"})
	expect(t, scrape(t, base), map[string]float64{
		`wasmlet_module_quarantined{module="faulty"}`:       absent,
		`wasmlet_module_instances{module="faulty"}`:         absent,
		`wasmlet_module_quarantines_total{module="faulty"}`: 2,
		`wasmlet_module_instances{module="pci"}`:            2,
	})
}

// TestCancelledCallsAreNotFaults: a call its caller cancelled counts as a
// call with result "cancelled", not as one of the module's faults.
func TestCancelledCallsAreNotFaults(t *testing.T) {
	m := metrics.New()
	base := serve(t, m).base
	m.Call("mod", "allocate", time.Millisecond, module.FaultCancelled)
	m.Call("mod", "allocate", time.Millisecond, module.FaultTimeout)
	expect(t, scrape(t, base), map[string]float64{
		`wasmlet_module_calls_total{module="mod",op="allocate",result="cancelled"}`: 1,
		`wasmlet_module_calls_total{module="mod",op="allocate",result="timeout"}`:   1,
		`wasmlet_module_faults_total{fault="timeout",module="mod"}`:                 1,
		`wasmlet_module_faults_total{fault="cancelled",module="mod"}`:               absent,
		`wasmlet_module_timeouts_total{module="mod"}`:                               1,
	})
}

// The registry also carries the Go runtime and process collectors.
func TestRuntimeCollectors(t *testing.T) {
	base := serve(t, metrics.New()).base
	samples := scrape(t, base)
	for _, s := range []string{"go_goroutines", "process_start_time_seconds"} {
		if _, ok := samples[s]; !ok {
			t.Errorf("%s is missing", s)
		}
	}
}

func TestHealthAndReadiness(t *testing.T) {
	m := metrics.New()
	base := serve(t, m).base
	if code, body := get(t, base+"/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Fatalf("/healthz: %d %q", code, body)
	}
	if code, body := get(t, base+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "still starting") {
		t.Fatalf("/readyz before ready: %d %q", code, body)
	}
	why := ""
	m.SetReadiness(func() string { return why })
	if code, body := get(t, base+"/readyz"); code != http.StatusOK || body != "ok\n" {
		t.Fatalf("/readyz when ready: %d %q", code, body)
	}
	why = "kubelet.sock is missing"
	if code, body := get(t, base+"/readyz"); code != http.StatusServiceUnavailable || body != "not ready: kubelet.sock is missing\n" {
		t.Fatalf("/readyz when not ready: %d %q", code, body)
	}
	// /healthz says only that the process answers.
	if code, _ := get(t, base+"/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz when not ready: %d", code)
	}
}

// Serve returns nil once its context is done, and stops serving.
func TestServeStopsWithContext(t *testing.T) {
	s := serve(t, metrics.New())
	get(t, s.base+"/healthz")
	s.cancel()
	<-s.done
	if s.err != nil {
		t.Fatalf("Serve returned %v after its context was done, want nil", s.err)
	}
	if resp, err := http.Get(s.base + "/healthz"); err == nil {
		resp.Body.Close()
		t.Fatal("still serving after Serve returned")
	}
}

// Serve reports a listener it cannot serve, and leaves nothing running.
func TestServeClosedListener(t *testing.T) {
	before := runtime.NumGoroutine()
	for range 20 {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lis.Close()
		err = metrics.New().Serve(context.Background(), lis)
		if err == nil || !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Serve on a closed listener: %v, want net.ErrClosed", err)
		}
	}
	testenv.Eventually(t, "the goroutines of failed Serves to end", func() bool {
		return runtime.NumGoroutine() <= before
	})
}
