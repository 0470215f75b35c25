//go:build !wasip1

package handler

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"unsafe"

	"github.com/wasmlet/wasmlet/abi"
	"github.com/wasmlet/wasmlet/guests/sdk/internal/guest"
)

// serve makes hd the handler for one test.
func serve(t *testing.T, hd Handler) {
	t.Helper()
	guest.Reset()
	Serve(hd)
	t.Cleanup(func() { guest.Reset(); h = Handler{} })
}

var plugin = abi.Plugin{Type: "CSIPlugin", Name: "csi.example.com", Endpoint: "/var/lib/kubelet/plugins/csi.sock",
	SupportedVersions: []string{"v1", "v1beta1"}}

func TestServeRequiresRegister(t *testing.T) {
	defer func() {
		if r := recover(); r == nil || !strings.Contains(r.(string), "Register is required") {
			t.Fatalf("recovered %v", r)
		}
	}()
	Serve(Handler{Type: "X"})
}

func TestDescribe(t *testing.T) {
	register := func(*abi.Plugin) (*abi.RegisterResponse, error) { return nil, nil }
	noop := func(*abi.Plugin) error { return nil }
	for _, c := range []struct {
		h   Handler
		ops []string
	}{
		{Handler{Register: register}, []string{"register"}},
		{Handler{Register: register, Validate: noop}, []string{"register", "validate"}},
		{Handler{Register: register, Validate: noop, Deregister: noop}, []string{"register", "validate", "deregister"}},
	} {
		c.h.Type, c.h.Name, c.h.Version, c.h.Summary = "CSIPlugin", "csi", "1.2.3", "a test"
		serve(t, c.h)
		d, err := guest.Description()
		want := abi.Description{Kind: abi.KindHandler, Name: "csi", Version: "1.2.3", Summary: "a test",
			PluginType: "CSIPlugin", Operations: c.ops}
		if err != nil || !reflect.DeepEqual(d, want) {
			t.Errorf("describe = %+v, %v\nwant %+v", d, err, want)
		}
	}
}

func TestValidate(t *testing.T) {
	var seen abi.Plugin
	serve(t, Handler{
		Register: func(*abi.Plugin) (*abi.RegisterResponse, error) { return nil, nil },
		Validate: func(p *abi.Plugin) error {
			seen = *p
			if p.Name == "bad" {
				return errors.New("bad plugin")
			}
			return nil
		},
	})
	if err := guest.CallMessage(validate, &abi.ValidateRequest{Plugin: plugin}, &abi.ValidateResponse{}); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(seen, plugin) {
		t.Errorf("Validate saw %+v, want %+v", seen, plugin)
	}
	err := guest.CallMessage(validate, &abi.ValidateRequest{Plugin: abi.Plugin{Name: "bad"}}, &abi.ValidateResponse{})
	var e *abi.Error
	if !errors.As(err, &e) || *e != (abi.Error{Code: abi.CodeUnknown, Message: "bad plugin"}) {
		t.Errorf("refused validate: %v", err)
	}
}

func TestValidateAbsentAcceptsAll(t *testing.T) {
	serve(t, Handler{Register: func(*abi.Plugin) (*abi.RegisterResponse, error) { return nil, nil }})
	if err := guest.CallMessage(validate, &abi.ValidateRequest{Plugin: plugin}, &abi.ValidateResponse{}); err != nil {
		t.Fatal(err)
	}
	if err := guest.CallMessage(deregister, &abi.DeregisterRequest{Plugin: plugin}, &abi.DeregisterResponse{}); err != nil {
		t.Fatal(err)
	}
}

func TestRegister(t *testing.T) {
	want := &abi.RegisterResponse{Action: abi.ActionDevicePlugin, ResourceName: "example.com/dev", Version: "v1",
		Attributes: map[string]string{"k": "v"}}
	serve(t, Handler{Register: func(p *abi.Plugin) (*abi.RegisterResponse, error) {
		switch p.Name {
		case "nil":
			return nil, nil
		case "refused":
			return nil, &abi.Error{Code: abi.CodeFailedPrecondition, Message: "not now"}
		}
		return want, nil
	}})
	var got abi.RegisterResponse
	if err := guest.CallMessage(register, &abi.RegisterRequest{Plugin: plugin}, &got); err != nil || !reflect.DeepEqual(&got, want) {
		t.Errorf("register = %+v, %v; want %+v", got, err, want)
	}
	got = abi.RegisterResponse{ResourceName: "stale"}
	if err := guest.CallMessage(register, &abi.RegisterRequest{Plugin: abi.Plugin{Name: "nil"}}, &got); err != nil ||
		!reflect.DeepEqual(got, abi.RegisterResponse{}) {
		t.Errorf("a nil response: %+v, %v; want an empty one", got, err)
	}
	err := guest.CallMessage(register, &abi.RegisterRequest{Plugin: abi.Plugin{Name: "refused"}}, &got)
	var e *abi.Error
	if !errors.As(err, &e) || *e != (abi.Error{Code: abi.CodeFailedPrecondition, Message: "not now"}) {
		t.Errorf("refused register: %v", err)
	}
}

func TestDeregister(t *testing.T) {
	var names []string
	serve(t, Handler{
		Register: func(*abi.Plugin) (*abi.RegisterResponse, error) { return nil, nil },
		Deregister: func(p *abi.Plugin) error {
			names = append(names, p.Name)
			if p.Name == "stuck" {
				return &abi.Error{Code: abi.CodeInternal, Message: "cannot let go"}
			}
			return nil
		},
	})
	if err := guest.CallMessage(deregister, &abi.DeregisterRequest{Plugin: plugin}, &abi.DeregisterResponse{}); err != nil {
		t.Fatal(err)
	}
	err := guest.CallMessage(deregister, &abi.DeregisterRequest{Plugin: abi.Plugin{Name: "stuck"}}, &abi.DeregisterResponse{})
	var e *abi.Error
	if !errors.As(err, &e) || e.Code != abi.CodeInternal {
		t.Errorf("failed deregister: %v", err)
	}
	if !reflect.DeepEqual(names, []string{plugin.Name, "stuck"}) {
		t.Errorf("Deregister saw %q", names)
	}
}

// TestMalformedRequests: a request that does not decode is refused as an
// invalid argument naming the message, and the handler's code never runs.
func TestMalformedRequests(t *testing.T) {
	ran := false
	serve(t, Handler{
		Register:   func(*abi.Plugin) (*abi.RegisterResponse, error) { ran = true; return nil, nil },
		Validate:   func(*abi.Plugin) error { ran = true; return nil },
		Deregister: func(*abi.Plugin) error { ran = true; return nil },
	})
	for name, export := range map[string]func(p unsafe.Pointer, n int32) uint64{
		"ValidateRequest": validate, "RegisterRequest": register, "DeregisterRequest": deregister,
	} {
		reply, isErr, err := guest.Call(export, []byte{0x0a, 0x05, 'x'}) // field 1, 5 bytes, 1 given
		var e abi.Error
		if err != nil || !isErr || e.Unmarshal(reply) != nil || e.Code != abi.CodeInvalidArgument ||
			!strings.Contains(e.Message, name) {
			t.Errorf("%s: %v %v %+v", name, isErr, err, e)
		}
	}
	if ran {
		t.Error("the handler ran on a request that did not decode")
	}
}

// testPolicy accepts plugins named "ok", with version v1.
type testPolicy struct{}

func (testPolicy) Check(p *abi.Plugin) (string, error) {
	if p.Name != "ok" {
		return "", &abi.Error{Code: abi.CodeInvalidArgument, Message: "not ok: " + p.Name}
	}
	return "v1", nil
}

func (testPolicy) Accept(p *abi.Plugin, version string) *abi.RegisterResponse {
	return &abi.RegisterResponse{Action: abi.ActionRecord, Version: version, Attributes: map[string]string{"name": p.Name}}
}

// TestServePolicy: the policy is loaded for every call; validate is Check,
// register is Check then Accept (it refuses what validate refuses), and
// deregister accepts.
func TestServePolicy(t *testing.T) {
	loads := 0
	guest.Reset()
	ServePolicy(Handler{Type: "X", Name: "p"}, func() testPolicy { loads++; return testPolicy{} })
	t.Cleanup(func() { guest.Reset(); h = Handler{} })

	d, err := guest.Description()
	if want := []string{"register", "validate", "deregister"}; err != nil || !reflect.DeepEqual(d.Operations, want) {
		t.Errorf("operations %q, %v; want %q", d.Operations, err, want)
	}
	ok, bad := abi.Plugin{Name: "ok"}, abi.Plugin{Name: "bad"}
	if err := guest.CallMessage(validate, &abi.ValidateRequest{Plugin: ok}, &abi.ValidateResponse{}); err != nil {
		t.Errorf("validate ok: %v", err)
	}
	var e *abi.Error
	if err := guest.CallMessage(validate, &abi.ValidateRequest{Plugin: bad}, &abi.ValidateResponse{}); !errors.As(err, &e) || e.Message != "not ok: bad" {
		t.Errorf("validate bad: %v", err)
	}
	var got abi.RegisterResponse
	want := abi.RegisterResponse{Action: abi.ActionRecord, Version: "v1", Attributes: map[string]string{"name": "ok"}}
	if err := guest.CallMessage(register, &abi.RegisterRequest{Plugin: ok}, &got); err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("register ok = %+v, %v; want %+v", got, err, want)
	}
	if err := guest.CallMessage(register, &abi.RegisterRequest{Plugin: bad}, &got); !errors.As(err, &e) || e.Code != abi.CodeInvalidArgument {
		t.Errorf("register bad: %v", err)
	}
	if err := guest.CallMessage(deregister, &abi.DeregisterRequest{Plugin: bad}, &abi.DeregisterResponse{}); err != nil {
		t.Errorf("deregister: %v", err)
	}
	if loads != 4 {
		t.Errorf("the policy was loaded %d times for 4 validate and register calls", loads)
	}
}
