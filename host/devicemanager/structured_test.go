package devicemanager

import (
	"testing"

	apiresource "k8s.io/apimachinery/pkg/api/resource"

	"github.com/wasmlet/wasmlet/checkpoint"
	"github.com/wasmlet/wasmlet/host/device"
)

// A structured device survives the checkpoint exactly: typed attributes,
// capacities with their policy, counter consumption, sharing; and a
// version-3 record from before typed attributes still restores its
// attributes, as strings.
func TestStructuredDeviceRecord(t *testing.T) {
	q := apiresource.MustParse
	one := q("1Gi")
	d := device.Device{ID: "gpu-0-mig-1", Healthy: true, NUMANodes: []int64{1},
		Attributes: map[string]device.Attribute{"model": device.StringAttribute("A100"), "index": device.IntAttribute(0),
			"mig": device.BoolAttribute(true), "driverVersion": device.VersionAttribute("1.2.3")},
		Capacity: map[string]device.Capacity{"memory": {Value: q("40Gi"), Policy: &device.CapacityPolicy{Default: &one,
			ValidValues: []apiresource.Quantity{q("1Gi"), q("2Gi")}}}, "compute": {Value: q("7")}},
		ConsumesCounters:         []device.CounterConsumption{{CounterSet: "gpu-0", Counters: map[string]apiresource.Quantity{"memory": q("5Gi")}}},
		AllowMultipleAllocations: true}
	b, err := checkpoint.Encode(&checkpoint.State{Resources: []*checkpoint.Resource{{Name: "r", Devices: []*checkpoint.Device{deviceRecord(d)}}}})
	if err != nil {
		t.Fatal(err)
	}
	st, err := checkpoint.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	got := deviceFromRecord(st.Resources[0].Devices[0])
	if !got.Equal(d) {
		t.Fatalf("restored %+v\nwant %+v", got, d)
	}
	if v := st.Resources[0].Devices[0].Attributes["index"]; v != "0" {
		t.Errorf("the text form of an int attribute is %q", v)
	}
	old := deviceFromRecord(&checkpoint.Device{Id: "x", Attributes: map[string]string{"vendor": "0x8086"}})
	if a := old.Attributes["vendor"]; a.String == nil || *a.String != "0x8086" {
		t.Errorf("an old record's attribute became %+v", a)
	}
}
