package node

import (
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wasmlet/wasmlet/host/internal/testplugin"
	"github.com/wasmlet/wasmlet/host/module"
)

// TestFaultMatrixUnderLoad runs every kind of module fault as a device
// source on one node, while plugins keep registering and deregistering
// through a healthy handler module, and checks that each fault is reported
// under its module's name, counted in the metrics, and ends in quarantine;
// that the plugins never noticed; and that the node still answers.
func TestFaultMatrixUnderLoad(t *testing.T) {
	faults := []struct {
		name, fault string
		metric      string // the fault label counted in wasmlet_module_faults_total
		timeout     string
	}{
		{"f-panic", "panic", "trap", "10s"},
		{"f-loop", "loop", "timeout", "300ms"},
		{"f-sleep", "sleep", "timeout", "300ms"},
		{"f-memory", "memory", "memory", "10s"},
		{"f-stack", "stack", "trap", "10s"},
		{"f-exit", "exit", "exit", "10s"},
		{"f-oversized", "oversized", "oversized", "10s"},
	}
	extra := `
[handlers]
ExamplePlugin = "customhandler"

[modules.customhandler]
config = { type = "ExamplePlugin", versions = "v1" }

[modules.flood]
config = { fault = "logflood", resource = "example.com/flood" }
log_rate = 10
log_burst = 20
timeout = "30s" # 100,000 log lines take a second or so under -race
`
	modules := map[string]string{"customhandler": "guests/customhandler", "flood": "guests/testmodules/faulty",
		"slowinit": "guests/testmodules/faulty"}
	extra += `
[modules.slowinit]
config = { fault = "slowinit", delay_ms = "300", resource = "example.com/slowinit" }
`
	for _, f := range faults {
		modules[f.name] = "guests/testmodules/faulty"
		extra += fmt.Sprintf(`
[modules.%s]
config = { fault = %q, resource = "example.com/%s" }
timeout = %q
max_reply = "1MiB"
memory = "32MiB"
quarantine_after = 3
`, f.name, f.fault, f.name, f.timeout)
	}
	extra += "\n[sources]\n"
	for _, f := range faults {
		extra += fmt.Sprintf("%s = { discover_interval = \"50ms\" }\n", f.name)
	}
	h := start(t, modules, extra)

	// Plugins busy all along: register, check, deregister, again; at
	// least a few times, even if every module was quarantined before this
	// goroutine first ran (on a loaded machine it was, and none had
	// registered: the test failed for want of a plugin, not of the node).
	stop := make(chan struct{})
	var registered, refused atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				if i >= 5 {
					return
				}
			default:
			}
			p := testplugin.StartRegistrant(t, filepath.Join(h.dir, "reg", fmt.Sprintf("busy-%d.sock", i)),
				testplugin.Info{Type: "ExamplePlugin", Name: fmt.Sprintf("busy-%d", i), Versions: []string{"v1"}})
			select {
			case s := <-p.Statuses:
				if s.Registered {
					registered.Add(1)
				} else {
					refused.Add(1)
				}
			case <-time.After(10 * time.Second):
				refused.Add(1)
			}
			p.Stop()
		}
	}()

	// Every faulty module ends quarantined.
	for _, f := range faults {
		h.eventually(f.name+" quarantined", func() bool {
			m := h.n.Modules().Get(f.name)
			return m != nil && m.Status().Quarantined
		})
	}
	close(stop)
	wg.Wait()
	if refused.Load() > 0 || registered.Load() == 0 {
		t.Fatalf("plugins registered during the faults: %d, refused or timed out: %d", registered.Load(), refused.Load())
	}
	t.Logf("%d plugins registered and deregistered while the modules faulted", registered.Load())

	var want []string
	for _, f := range faults {
		want = append(want,
			fmt.Sprintf(`wasmlet_module_faults_total{fault=%q,module=%q}`, f.metric, f.name),
			fmt.Sprintf(`wasmlet_module_quarantined{module=%q} 1`, f.name),
			fmt.Sprintf(`wasmlet_module_quarantines_total{module=%q} 1`, f.name))
		st := h.n.Modules().Get(f.name).Status()
		if !strings.Contains(st.QuarantineReason, `module "`+f.name+`"`) || !strings.Contains(st.QuarantineReason, string(module.Fault(f.metric))) {
			t.Errorf("%s: quarantine reason %q does not name the module and the fault", f.name, st.QuarantineReason)
		}
		// Its resource lost its provider; the others did not.
		h.eventually(f.name+": no healthy devices once quarantined", func() bool {
			r, ok := h.resource("example.com/" + f.name)
			return !ok || r.Healthy == 0
		})
	}
	// The log flood's dropped lines are counted too.
	h.metricsHave(append(want, `wasmlet_module_log_lines_dropped_total{module="flood"}`)...)
	for _, ok := range []string{"example.com/flood", "example.com/slowinit"} {
		// Slow or chatty, but healthy.
		h.eventually(ok+": 2 healthy devices", func() bool { r, found := h.resource(ok); return found && r.Healthy == 2 })
	}
	if m := h.n.Modules().Get("customhandler"); m.Status().Faults != 0 {
		t.Errorf("the healthy handler faulted: %+v", m.Status())
	}
}
