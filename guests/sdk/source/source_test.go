//go:build !wasip1

package source

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"unsafe"

	"github.com/wasmlet/wasmlet/abi"
	"github.com/wasmlet/wasmlet/guests/sdk/internal/guest"
)

// serve makes src the source for one test.
func serve(t *testing.T, src Source) {
	t.Helper()
	guest.Reset()
	Serve(src)
	t.Cleanup(func() { guest.Reset(); s = Source{} })
}

var devices = []abi.Device{
	{ID: "0000:00:1f.6", NUMANodes: []int64{0, 1}, Attributes: map[string]string{"vendor": "8086"},
		Edits: &abi.ContainerEdits{DeviceNodes: []abi.DeviceNode{{ContainerPath: "/dev/nic0", HostPath: "/dev/nic0", Permissions: "rw"}},
			Envs: map[string]string{"NIC": "0000:00:1f.6"}}},
	{ID: "gpu-1", Health: abi.Unhealthy},
}

func discoverDevices() ([]abi.Device, error) { return devices, nil }

// wantError checks err is the error reply want.
func wantError(t *testing.T, what string, err error, want abi.Error) {
	t.Helper()
	var e *abi.Error
	if !errors.As(err, &e) || *e != want {
		t.Errorf("%s: got %v, want the error reply %v", what, err, &want)
	}
}

func TestServeRequiresOneDiscover(t *testing.T) {
	all := func() (*abi.DiscoverResponse, error) { return nil, nil }
	for _, src := range []Source{{Resource: "example.com/x"}, {Discover: discoverDevices, DiscoverAll: all}} {
		func() {
			defer func() {
				if r := recover(); r == nil || !strings.Contains(r.(string), "set exactly one of Discover and DiscoverAll") {
					t.Fatalf("recovered %v", r)
				}
			}()
			Serve(src)
		}()
	}
}

func TestDescribe(t *testing.T) {
	alloc := func(*abi.AllocateRequest) (*abi.AllocateResponse, error) { return nil, nil }
	pref := func(*abi.PreferredAllocationRequest) ([]string, error) { return nil, nil }
	pre := func(*abi.PreStartRequest) error { return nil }
	prep := func(*abi.PrepareRequest) (*abi.PrepareResponse, error) { return nil, nil }
	unprep := func(*abi.UnprepareRequest) error { return nil }
	for _, c := range []struct {
		src Source
		ops []string
	}{
		{Source{}, []string{"discover"}},
		{Source{Allocate: alloc}, []string{"discover", "allocate"}},
		{Source{PreStart: pre, PreStartRequired: true, DiscoverIntervalMS: 1500}, []string{"discover", "prestart"}},
		{Source{Allocate: alloc, PreferredAllocation: pref, PreStart: pre}, []string{"discover", "allocate", "preferred_allocation", "prestart"}},
		{Source{Driver: "nic.example.com", Prepare: prep}, []string{"discover", "prepare"}},
		{Source{Prepare: prep, Unprepare: unprep}, []string{"discover", "prepare", "unprepare"}},
	} {
		c.src.Resource, c.src.Name, c.src.Version, c.src.Summary = "example.com/nic", "nic", "0.1.0", "NICs"
		c.src.Discover = discoverDevices
		serve(t, c.src)
		d, err := guest.Description()
		want := abi.Description{Kind: abi.KindDeviceSource, Name: "nic", Version: "0.1.0", Summary: "NICs",
			Resource: "example.com/nic", Driver: c.src.Driver, Operations: c.ops, PreStartRequired: c.src.PreStartRequired,
			DiscoverIntervalMS: c.src.DiscoverIntervalMS}
		if err != nil || !reflect.DeepEqual(d, want) {
			t.Errorf("describe = %+v, %v\nwant %+v", d, err, want)
		}
	}
}

func TestDiscover(t *testing.T) {
	fail := false
	serve(t, Source{Resource: "example.com/nic", Discover: func() ([]abi.Device, error) {
		if fail {
			return nil, errors.New("sysfs unreadable")
		}
		return devices, nil
	}})
	var got abi.DiscoverResponse
	if err := guest.CallMessage(discover, &abi.DiscoverRequest{}, &got); err != nil || !reflect.DeepEqual(got.Devices, devices) {
		t.Errorf("discover = %+v, %v\nwant %+v", got.Devices, err, devices)
	}
	fail = true
	wantError(t, "failed discover", guest.CallMessage(discover, &abi.DiscoverRequest{}, &got),
		abi.Error{Code: abi.CodeUnknown, Message: "sysfs unreadable"})
}

// TestDiscoverAll: a source that returns the whole discovery, shared
// counters included, answers discover with it as it is.
func TestDiscoverAll(t *testing.T) {
	want := abi.DiscoverResponse{
		SharedCounters: []abi.CounterSet{{Name: "gpu-0", Counters: map[string]string{"memory": "40Gi", "slices": "7"}}},
		Devices: []abi.Device{{ID: "gpu-0-1g-5gb-0",
			TypedAttributes:  map[string]abi.Attribute{"model": abi.StringAttribute("A100"), "index": abi.IntAttribute(0)},
			Capacity:         map[string]abi.Capacity{"memory": {Value: "5Gi"}},
			ConsumesCounters: []abi.CounterConsumption{{CounterSet: "gpu-0", Counters: map[string]string{"memory": "5Gi", "slices": "1"}}}}},
	}
	var fail, empty bool
	serve(t, Source{Resource: "gpu.example.com/gpu", DiscoverAll: func() (*abi.DiscoverResponse, error) {
		switch {
		case fail:
			return nil, errors.New("no GPUs")
		case empty:
			return nil, nil
		}
		return &want, nil
	}})
	var got abi.DiscoverResponse
	if err := guest.CallMessage(discover, &abi.DiscoverRequest{}, &got); err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("discover = %+v, %v\nwant %+v", got, err, want)
	}
	empty = true
	if err := guest.CallMessage(discover, &abi.DiscoverRequest{}, &got); err != nil || len(got.Devices)+len(got.SharedCounters) != 0 {
		t.Errorf("a nil discovery: %+v, %v; want an empty one", got, err)
	}
	fail = true
	wantError(t, "failed discover", guest.CallMessage(discover, &abi.DiscoverRequest{}, &got),
		abi.Error{Code: abi.CodeUnknown, Message: "no GPUs"})
}

func TestPrepareAndUnprepare(t *testing.T) {
	var seen abi.PrepareRequest
	var unprepared []abi.Claim
	serve(t, Source{Resource: "gpu.example.com/gpu", Discover: discoverDevices,
		Prepare: func(req *abi.PrepareRequest) (*abi.PrepareResponse, error) {
			seen = *req
			if len(req.Results) == 0 {
				return nil, nil
			}
			if req.Claim.Name == "refused" {
				return nil, &abi.Error{Code: abi.CodeInvalidArgument, Message: "bad config"}
			}
			resp := &abi.PrepareResponse{}
			for _, r := range req.Results {
				resp.Devices = append(resp.Devices, abi.PreparedDevice{Request: r.Request, DeviceID: r.DeviceID,
					CDIDeviceIDs: []string{"gpu.example.com/gpu=" + r.DeviceID},
					Edits:        &abi.ContainerEdits{Envs: map[string]string{"GPU": r.DeviceID}}})
			}
			return resp, nil
		},
		Unprepare: func(req *abi.UnprepareRequest) error {
			unprepared = append(unprepared, req.Claim)
			if req.Claim.UID == "" {
				return errors.New("which claim?")
			}
			return nil
		}})
	req := abi.PrepareRequest{Claim: abi.Claim{UID: "u1", Namespace: "ns", Name: "c"}, Workload: "ns/pod/ctr",
		Results: []abi.AllocatedDevice{{Request: "gpu", DeviceID: "gpu-0", ConsumedCapacity: map[string]string{"memory": "4Gi"}, ShareID: "s1"}},
		Configs: []abi.DeviceConfig{{Source: abi.ConfigFromClass, Parameters: []byte(`{"mode":"fast"}`)}}}
	var got abi.PrepareResponse
	if err := guest.CallMessage(prepare, &req, &got); err != nil || len(got.Devices) != 1 ||
		got.Devices[0].CDIDeviceIDs[0] != "gpu.example.com/gpu=gpu-0" || got.Devices[0].Edits.Envs["GPU"] != "gpu-0" {
		t.Errorf("prepare = %+v, %v", got, err)
	}
	if !reflect.DeepEqual(seen, req) {
		t.Errorf("Prepare saw %+v\nwant %+v", seen, req)
	}
	if err := guest.CallMessage(prepare, &abi.PrepareRequest{}, &got); err != nil || len(got.Devices) != 0 {
		t.Errorf("a nil response: %+v, %v; want an empty one", got, err)
	}
	wantError(t, "refused prepare", guest.CallMessage(prepare, &abi.PrepareRequest{Claim: abi.Claim{Name: "refused"},
		Results: req.Results}, &got), abi.Error{Code: abi.CodeInvalidArgument, Message: "bad config"})
	if err := guest.CallMessage(unprepare, &abi.UnprepareRequest{Claim: req.Claim}, &abi.UnprepareResponse{}); err != nil {
		t.Fatal(err)
	}
	wantError(t, "failed unprepare", guest.CallMessage(unprepare, &abi.UnprepareRequest{}, &abi.UnprepareResponse{}),
		abi.Error{Code: abi.CodeUnknown, Message: "which claim?"})
	if len(unprepared) != 2 || unprepared[0] != req.Claim {
		t.Errorf("Unprepare saw %+v", unprepared)
	}
}

func TestAllocate(t *testing.T) {
	var seen abi.AllocateRequest
	want := &abi.AllocateResponse{Envs: map[string]string{"NIC": "a,b"}, CDIDevices: []string{"example.com/nic=a"},
		Mounts: []abi.Mount{{ContainerPath: "/etc/nic", HostPath: "/etc/nic", ReadOnly: true}}}
	serve(t, Source{Resource: "example.com/nic", Discover: discoverDevices,
		Allocate: func(req *abi.AllocateRequest) (*abi.AllocateResponse, error) {
			seen = *req
			switch req.Workload {
			case "":
				return nil, nil
			case "ns/refused/c":
				return nil, &abi.Error{Code: abi.CodeInvalidArgument, Message: "no"}
			}
			return want, nil
		}})
	req := abi.AllocateRequest{DeviceIDs: []string{"a", "b"}, Workload: "ns/pod/c"}
	var got abi.AllocateResponse
	if err := guest.CallMessage(allocate, &req, &got); err != nil || !reflect.DeepEqual(&got, want) {
		t.Errorf("allocate = %+v, %v; want %+v", got, err, want)
	}
	if !reflect.DeepEqual(seen, req) {
		t.Errorf("Allocate saw %+v, want %+v", seen, req)
	}
	if err := guest.CallMessage(allocate, &abi.AllocateRequest{DeviceIDs: []string{"a"}}, &got); err != nil ||
		!reflect.DeepEqual(got, abi.AllocateResponse{}) {
		t.Errorf("a nil response: %+v, %v; want an empty one", got, err)
	}
	wantError(t, "refused allocate", guest.CallMessage(allocate, &abi.AllocateRequest{Workload: "ns/refused/c"}, &got),
		abi.Error{Code: abi.CodeInvalidArgument, Message: "no"})
}

func TestPreferredAllocation(t *testing.T) {
	serve(t, Source{Resource: "example.com/nic", Discover: discoverDevices,
		PreferredAllocation: func(req *abi.PreferredAllocationRequest) ([]string, error) {
			if int(req.Size) > len(req.Available) {
				return nil, &abi.Error{Code: abi.CodeInvalidArgument, Message: "too many"}
			}
			return append(req.MustInclude, req.Available[:int(req.Size)-len(req.MustInclude)]...), nil
		}})
	var got abi.PreferredAllocationResponse
	err := guest.CallMessage(preferredAllocation, &abi.PreferredAllocationRequest{
		Available: []string{"a", "b", "c"}, MustInclude: []string{"z"}, Size: 2}, &got)
	if err != nil || !reflect.DeepEqual(got.DeviceIDs, []string{"z", "a"}) {
		t.Errorf("preferred = %q, %v", got.DeviceIDs, err)
	}
	wantError(t, "refused preference", guest.CallMessage(preferredAllocation,
		&abi.PreferredAllocationRequest{Available: []string{"a"}, Size: 3}, &got),
		abi.Error{Code: abi.CodeInvalidArgument, Message: "too many"})
}

func TestPreStart(t *testing.T) {
	var seen []abi.PreStartRequest
	serve(t, Source{Resource: "example.com/nic", Discover: discoverDevices, PreStartRequired: true,
		PreStart: func(req *abi.PreStartRequest) error {
			seen = append(seen, *req)
			if len(req.DeviceIDs) == 0 {
				return errors.New("nothing to prepare")
			}
			return nil
		}})
	req := abi.PreStartRequest{DeviceIDs: []string{"a"}, Workload: "ns/pod/c"}
	if err := guest.CallMessage(prestart, &req, &abi.PreStartResponse{}); err != nil {
		t.Fatal(err)
	}
	wantError(t, "failed prestart", guest.CallMessage(prestart, &abi.PreStartRequest{}, &abi.PreStartResponse{}),
		abi.Error{Code: abi.CodeUnknown, Message: "nothing to prepare"})
	if len(seen) != 2 || !reflect.DeepEqual(seen[0], req) {
		t.Errorf("PreStart saw %+v", seen)
	}
}

// TestUndeclaredOperations: the exports exist in every source module, but
// one the source did not declare answers "unimplemented" (a host only calls
// what describe declares; ABI.md, "Operations").
func TestUndeclaredOperations(t *testing.T) {
	serve(t, Source{Resource: "example.com/nic", Discover: discoverDevices})
	for name, call := range map[string]func() error{
		"allocate": func() error {
			return guest.CallMessage(allocate, &abi.AllocateRequest{}, &abi.AllocateResponse{})
		},
		"preferred_allocation": func() error {
			return guest.CallMessage(preferredAllocation, &abi.PreferredAllocationRequest{}, &abi.PreferredAllocationResponse{})
		},
		"prestart": func() error {
			return guest.CallMessage(prestart, &abi.PreStartRequest{}, &abi.PreStartResponse{})
		},
		"prepare": func() error {
			return guest.CallMessage(prepare, &abi.PrepareRequest{}, &abi.PrepareResponse{})
		},
		"unprepare": func() error {
			return guest.CallMessage(unprepare, &abi.UnprepareRequest{}, &abi.UnprepareResponse{})
		},
	} {
		wantError(t, name, call(), *unimplemented)
	}
}

// TestMalformedRequests: a request that does not decode is refused as an
// invalid argument naming the message, and the source's code never runs.
func TestMalformedRequests(t *testing.T) {
	ran := false
	serve(t, Source{Resource: "example.com/nic",
		Discover:            func() ([]abi.Device, error) { ran = true; return nil, nil },
		Allocate:            func(*abi.AllocateRequest) (*abi.AllocateResponse, error) { ran = true; return nil, nil },
		PreferredAllocation: func(*abi.PreferredAllocationRequest) ([]string, error) { ran = true; return nil, nil },
		PreStart:            func(*abi.PreStartRequest) error { ran = true; return nil },
		Prepare:             func(*abi.PrepareRequest) (*abi.PrepareResponse, error) { ran = true; return nil, nil },
		Unprepare:           func(*abi.UnprepareRequest) error { ran = true; return nil },
	})
	for name, export := range map[string]func(unsafe.Pointer, int32) uint64{
		"DiscoverRequest": discover, "AllocateRequest": allocate,
		"PreferredAllocationRequest": preferredAllocation, "PreStartRequest": prestart,
		"PrepareRequest": prepare, "UnprepareRequest": unprepare,
	} {
		// Field 1 as a string that is not UTF-8: every request has one
		// (DiscoverRequest skips it as unknown, so give it garbage instead).
		in := []byte{0x0a, 0x01, 0xff}
		if name == "DiscoverRequest" {
			in = []byte{0x0b} // a group that never ends
		}
		reply, isErr, err := guest.Call(export, in)
		var e abi.Error
		if err != nil || !isErr || e.Unmarshal(reply) != nil || e.Code != abi.CodeInvalidArgument ||
			!strings.Contains(e.Message, name) {
			t.Errorf("%s: %v %v %+v", name, isErr, err, e)
		}
	}
	if ran {
		t.Error("the source ran on a request that did not decode")
	}
}
