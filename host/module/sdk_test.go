package module

// The Go guest SDK (guests/sdk) through the real host, built for wasip1: what
// its native tests cannot see. Requests and replies cross at real 32-bit
// addresses in linear memory, configuration comes through config_get, log
// lines through the log import, and errors as error replies the host decodes.

import (
	"context"
	"reflect"
	"strings"
	"testing"

	"github.com/wasmlet/wasmlet/abi"
	"github.com/wasmlet/wasmlet/guests/build"
)

func TestSDKThroughTheHost(t *testing.T) {
	log, out := captureLogger()
	long := strings.Repeat("0123456789abcdef", 40) // longer than the SDK's first config buffer
	m := load(t, build.Go(t, "host/module/testdata/sdkprobe"), Options{Name: "probe", Logger: log,
		Config: map[string]string{"resource": "example.com/probed", "keys": "short,long,empty,absent",
			"short": "s", "long": long, "empty": ""}})
	ctx := context.Background()

	want := abi.Description{Kind: abi.KindDeviceSource, Name: "sdkprobe", Version: "0.0.1",
		Resource: "example.com/probed", Operations: []string{"discover", "allocate", "prestart"},
		PreStartRequired: true, DiscoverIntervalMS: 2500}
	if d := m.Description(); !reflect.DeepEqual(d, want) {
		t.Errorf("describe = %+v\nwant %+v", d, want)
	}

	devs, err := m.Discover(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantAttrs := map[string]string{"short": "s", "long": long, "empty": "", "absent": "<absent>"}
	if len(devs) != 1 || devs[0].ID != "probe" || !reflect.DeepEqual(devs[0].Attributes, wantAttrs) {
		t.Errorf("discover = %+v; want one device with the configuration %v", devs, wantAttrs)
	}

	resp, err := m.Allocate(ctx, &abi.AllocateRequest{DeviceIDs: []string{"probe", "x"}, Workload: "ns/pod/c"})
	if err != nil || !reflect.DeepEqual(resp.Envs, map[string]string{"DEVICES": "probe,x", "WORKLOAD": "ns/pod/c"}) {
		t.Errorf("allocate = %+v, %v", resp, err)
	}
	resp, err = m.Allocate(ctx, &abi.AllocateRequest{DeviceIDs: []string{"probe"}, Workload: "ns/nil/c"})
	if err != nil || !reflect.DeepEqual(resp, &abi.AllocateResponse{}) {
		t.Errorf("a nil response from Allocate reaches the host as %+v, %v; want an empty response", resp, err)
	}
	for pod, want := range map[string]abi.Error{
		"refuse": {Code: abi.CodeInvalidArgument, Message: "refused: ns/refuse/c"},
		"fail":   {Code: abi.CodeUnavailable, Message: "try later"},
		"plain":  {Code: abi.CodeUnknown, Message: "a plain error"},
	} {
		_, err := m.Allocate(ctx, &abi.AllocateRequest{DeviceIDs: []string{"probe"}, Workload: "ns/" + pod + "/c"})
		if e, ok := ModuleError(err); !ok || *e != want || IsFault(err) {
			t.Errorf("%s: got %v, want the module's error %v (not a fault)", pod, err, &want)
		}
	}

	// A request the SDK cannot decode (field 1, a device id, not UTF-8).
	err = m.Call(ctx, abi.OpAllocate, rawMessage{0x0a, 0x01, 0xff}, &abi.AllocateResponse{})
	if e, ok := ModuleError(err); !ok || e.Code != abi.CodeInvalidArgument || !strings.Contains(e.Message, "AllocateRequest") {
		t.Errorf("undecodable request: %v", err)
	}

	if err := m.PreStart(ctx, &abi.PreStartRequest{DeviceIDs: []string{"probe"}, Workload: "ns/pod/c"}); err != nil {
		t.Fatal(err)
	}
	for _, level := range []string{"debug", "info", "warn", "error"} {
		found := false
		for _, line := range strings.Split(out.String(), "\n") {
			if strings.Contains(line, "probe "+level+" line") {
				found = strings.Contains(line, "["+strings.ToUpper(level)+"]") && strings.Contains(line, "module=probe")
				break
			}
		}
		if !found {
			t.Errorf("sdk.%s line not in the log at its level, with the module's name:\n%s", level, out)
		}
	}
	if st := m.Status(); st.Faults != 0 {
		t.Errorf("the SDK faulted: %+v", st)
	}
}
