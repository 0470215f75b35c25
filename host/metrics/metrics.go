// Package metrics exposes what wasmlet does as Prometheus metrics, and serves
// them with /healthz and /readyz over HTTP.
//
// It implements the observer interfaces of the packages that do the work
// (module.Observer, pluginmanager.Observer, devicemanager.Observer, and
// csi.Config's Observe), so those packages do not depend on Prometheus. Every metric is prefixed wasmlet_;
// labels are bounded by the node's modules, plugin types and resources.
package metrics

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/wasmlet/wasmlet/host/module"
)

// Metrics holds every wasmlet metric, in its own registry.
type Metrics struct {
	reg *prometheus.Registry

	registrations   *prometheus.CounterVec
	regLatency      *prometheus.HistogramVec
	deregistrations *prometheus.CounterVec
	reconcile       prometheus.Histogram
	csiDrivers      prometheus.Gauge

	calls        *prometheus.CounterVec
	callDuration *prometheus.HistogramVec
	faults       *prometheus.CounterVec
	traps        *prometheus.CounterVec
	timeouts     *prometheus.CounterVec
	quarantines  *prometheus.CounterVec
	quarantined  *prometheus.GaugeVec
	instances    *prometheus.GaugeVec
	logsDropped  *prometheus.CounterVec
	moduleLoads  *prometheus.CounterVec
	editsRefused *prometheus.CounterVec

	devices          *prometheus.GaugeVec
	devicesAllocated *prometheus.GaugeVec
	allocations      *prometheus.CounterVec
	allocDuration    *prometheus.HistogramVec
	releases         *prometheus.CounterVec

	notReady atomic.Pointer[func() string]

	claimsApplied *prometheus.CounterVec
	claimDuration prometheus.Histogram
	claimDevices  *prometheus.GaugeVec
}

// New creates the metrics, with Go runtime and process collectors.
func New() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	f := func(c prometheus.Collector) { m.reg.MustRegister(c) }
	f(collectors.NewGoCollector())
	f(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	fast := []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
	m.registrations = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wasmlet_plugin_registrations_total",
		Help: "Plugin register operations, by plugin type and outcome (ok, getinfo, no-handler, refused, handler-fault, notify)."}, []string{"type", "outcome"})
	m.regLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "wasmlet_plugin_registration_latency_seconds",
		Help: "Time from a plugin socket appearing to the plugin being told it is registered.", Buckets: fast}, []string{"type"})
	m.deregistrations = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wasmlet_plugin_deregistrations_total",
		Help: "Plugins deregistered, by plugin type."}, []string{"type"})
	m.reconcile = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "wasmlet_reconcile_duration_seconds",
		Help: "Duration of a reconciler pass (scheduling operations, not running them).", Buckets: fast})
	m.csiDrivers = prometheus.NewGauge(prometheus.GaugeOpts{Name: "wasmlet_csi_drivers",
		Help: "CSI drivers registered on the node, with their node facts (wasmlet csi)."})

	micro := []float64{1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 1e-3, 1e-2, 0.1, 1, 10}
	m.calls = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wasmlet_module_calls_total",
		Help: "Calls into Wasm modules, by module, operation and result (ok, or the fault)."}, []string{"module", "op", "result"})
	m.callDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "wasmlet_module_call_duration_seconds",
		Help: "Duration of calls into Wasm modules.", Buckets: micro}, []string{"module", "op"})
	m.faults = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wasmlet_module_faults_total",
		Help: "Module faults (trap, timeout, memory, exit, malformed, oversized, init, busy...), by module and fault; calls their caller cancelled are not counted."}, []string{"module", "fault"})
	m.traps = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wasmlet_module_traps_total",
		Help: "Module calls that trapped (including Go panics and stack overflows)."}, []string{"module"})
	m.timeouts = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wasmlet_module_timeouts_total",
		Help: "Module calls interrupted at their deadline."}, []string{"module"})
	m.quarantines = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wasmlet_module_quarantines_total",
		Help: "Times a module was quarantined after repeated faults."}, []string{"module"})
	m.quarantined = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "wasmlet_module_quarantined",
		Help: "1 while a module is quarantined."}, []string{"module"})
	m.instances = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "wasmlet_module_instances",
		Help: "Live instances of each module."}, []string{"module"})
	m.logsDropped = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wasmlet_module_log_lines_dropped_total",
		Help: "Module log lines dropped by the rate limit."}, []string{"module"})
	m.moduleLoads = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wasmlet_module_loads_total",
		Help: "Module files loaded, replaced, unloaded or refused."}, []string{"event"})
	m.editsRefused = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wasmlet_module_edits_refused_total",
		Help: "Container edits a device source asked for outside its grant, by module and kind (device_node, mount, env, annotation, cdi_device): each refuses a discovered device (counted when first refused) or an allocation."}, []string{"module", "kind"})

	m.devices = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "wasmlet_devices",
		Help: "Devices of each resource, by health."}, []string{"resource", "health"})
	m.devicesAllocated = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "wasmlet_devices_allocated",
		Help: "Devices of each resource held by workloads."}, []string{"resource"})
	m.allocations = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wasmlet_allocations_total",
		Help: "Allocation requests, by resource and outcome (ok, unavailable, unknown-resource, invalid, error)."}, []string{"resource", "outcome"})
	m.allocDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "wasmlet_allocation_duration_seconds",
		Help: "Duration of allocations, durable on disk included.", Buckets: fast}, []string{"resource"})
	m.releases = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wasmlet_releases_total",
		Help: "Allocations released, by resource."}, []string{"resource"})

	m.claimsApplied = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wasmlet_claims_applied_total",
		Help: "ResourceClaims applied, by outcome (ok, unsatisfiable, invalid, error)."}, []string{"outcome"})
	m.claimDuration = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "wasmlet_claim_apply_duration_seconds",
		Help: "Duration of successful claim applies: allocation, prepare, CDI spec, durable on disk.", Buckets: fast})
	m.claimDevices = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "wasmlet_claim_devices",
		Help: "Devices held by ResourceClaims, by driver and device class."}, []string{"driver", "class"})

	for _, c := range []prometheus.Collector{m.claimsApplied, m.claimDuration, m.claimDevices, m.registrations, m.regLatency, m.deregistrations, m.reconcile, m.csiDrivers,
		m.calls, m.callDuration, m.faults, m.traps, m.timeouts, m.quarantines, m.quarantined, m.instances,
		m.logsDropped, m.moduleLoads, m.editsRefused, m.devices, m.devicesAllocated, m.allocations, m.allocDuration, m.releases} {
		f(c)
	}
	return m
}

// Registry is the Prometheus registry holding the metrics.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// SetReadiness makes notReady the judge of /readyz: it says why the node is
// not ready, or "" when it is. Until it is set, the node is starting.
func (m *Metrics) SetReadiness(notReady func() string) { m.notReady.Store(&notReady) }

// why is /readyz's answer: "" when ready.
func (m *Metrics) why() string {
	f := m.notReady.Load()
	if f == nil {
		return "still starting"
	}
	return (*f)()
}

// ---- module.Observer ----------------------------------------------------------

func (m *Metrics) Call(mod, op string, d time.Duration, fault module.Fault) {
	result := "ok"
	if fault != "" {
		result = string(fault)
	}
	// A call its caller cancelled is not the module's fault: it is counted
	// in calls_total only.
	if fault != "" && fault != module.FaultCancelled {
		m.faults.WithLabelValues(mod, string(fault)).Inc()
		switch fault {
		case module.FaultTrap:
			m.traps.WithLabelValues(mod).Inc()
		case module.FaultTimeout:
			m.timeouts.WithLabelValues(mod).Inc()
		}
	}
	m.calls.WithLabelValues(mod, op, result).Inc()
	m.callDuration.WithLabelValues(mod, op).Observe(d.Seconds())
}

func (m *Metrics) Instances(mod string, n int) { m.instances.WithLabelValues(mod).Set(float64(n)) }

func (m *Metrics) Quarantined(mod string, q bool) {
	if q {
		m.quarantines.WithLabelValues(mod).Inc()
		m.quarantined.WithLabelValues(mod).Set(1)
	} else {
		m.quarantined.WithLabelValues(mod).Set(0)
	}
}

func (m *Metrics) LogsDropped(mod string, n int) { m.logsDropped.WithLabelValues(mod).Add(float64(n)) }

// EditsRefused counts a container edit a device source may not hand out.
func (m *Metrics) EditsRefused(mod, kind string) { m.editsRefused.WithLabelValues(mod, kind).Inc() }

// ModuleEvent counts module registry events, and clears a replaced or
// unloaded module's quarantine.
func (m *Metrics) ModuleEvent(ev module.Event) {
	m.moduleLoads.WithLabelValues(string(ev.Kind)).Inc()
	switch ev.Kind {
	case module.Loaded, module.Replaced:
		m.quarantined.WithLabelValues(ev.Name).Set(0)
	case module.Unloaded:
		m.quarantined.DeleteLabelValues(ev.Name)
		m.instances.DeleteLabelValues(ev.Name)
	}
}

// ---- pluginmanager.Observer -----------------------------------------------------

func (m *Metrics) Registered(pluginType, outcome string, latency time.Duration) {
	m.registrations.WithLabelValues(pluginType, outcome).Inc()
	if outcome == "ok" {
		m.regLatency.WithLabelValues(pluginType).Observe(latency.Seconds())
	}
}

func (m *Metrics) Deregistered(pluginType string) {
	m.deregistrations.WithLabelValues(pluginType).Inc()
}

func (m *Metrics) Reconciled(d time.Duration) { m.reconcile.Observe(d.Seconds()) }

// CSIDrivers sets the number of registered CSI drivers (csi.Config.Observe).
func (m *Metrics) CSIDrivers(n int) { m.csiDrivers.Set(float64(n)) }

// ---- devicemanager.Observer -----------------------------------------------------

func (m *Metrics) Devices(resource string, healthy, unhealthy, allocated int) {
	m.devices.WithLabelValues(resource, "healthy").Set(float64(healthy))
	m.devices.WithLabelValues(resource, "unhealthy").Set(float64(unhealthy))
	m.devicesAllocated.WithLabelValues(resource).Set(float64(allocated))
}

func (m *Metrics) Allocated(resource, outcome string, d time.Duration) {
	m.allocations.WithLabelValues(resource, outcome).Inc()
	if outcome == "ok" {
		m.allocDuration.WithLabelValues(resource).Observe(d.Seconds())
	}
}

func (m *Metrics) Released(resource string) { m.releases.WithLabelValues(resource).Inc() }

// ---- claim.Observer ----------------------------------------------------------

func (m *Metrics) ClaimApplied(outcome string, d time.Duration) {
	m.claimsApplied.WithLabelValues(outcome).Inc()
	if outcome == "ok" {
		m.claimDuration.Observe(d.Seconds())
	}
}

func (m *Metrics) ClaimDevices(driver, class string, n int) {
	m.claimDevices.WithLabelValues(driver, class).Set(float64(n))
}

// ---- HTTP ---------------------------------------------------------------------

// Handler serves /metrics, /healthz (the process answers) and /readyz (the
// node is ready, as SetReadiness judges: 503 with the reason when not).
func (m *Metrics) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if why := m.why(); why != "" {
			http.Error(w, "not ready: "+why, http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok\n"))
	})
	return mux
}

// Serve serves Handler on lis until ctx is done. The caller listens, so
// that it can report an address in use before anything else starts.
func (m *Metrics) Serve(ctx context.Context, lis net.Listener) error {
	srv := &http.Server{Handler: m.Handler(), ReadHeaderTimeout: 5 * time.Second}
	served := make(chan struct{})
	defer close(served)
	go func() {
		select {
		case <-ctx.Done():
		case <-served: // Serve failed: nothing to shut down
			return
		}
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	if err := srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
