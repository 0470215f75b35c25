package metrics

import (
	"testing"
	"time"

	"github.com/wasmlet/wasmlet/host/module"
)

// TestCancelledCallsAreNotFaults: a call its caller cancelled counts as a
// call with result "cancelled", not as one of the module's faults.
func TestCancelledCallsAreNotFaults(t *testing.T) {
	m := New()
	m.Call("mod", "allocate", time.Millisecond, module.FaultCancelled)
	m.Call("mod", "allocate", time.Millisecond, module.FaultTimeout)
	families, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]string{} // metric name -> the label values of each series
	for _, f := range families {
		for _, s := range f.GetMetric() {
			labels := ""
			for _, l := range s.GetLabel() {
				labels += l.GetName() + "=" + l.GetValue() + " "
			}
			got[f.GetName()] = append(got[f.GetName()], labels)
		}
	}
	if faults := got["wasmlet_module_faults_total"]; len(faults) != 1 || faults[0] != "fault=timeout module=mod " {
		t.Errorf("fault series %q, want only the timeout's", faults)
	}
	if calls := got["wasmlet_module_calls_total"]; len(calls) != 2 || calls[0] != "module=mod op=allocate result=cancelled " {
		t.Errorf("call series %q, want one with result cancelled and one with timeout", calls)
	}
}
