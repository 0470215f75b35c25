package module

import (
	"context"
	"reflect"
	"strings"
	"testing"

	"github.com/wasmlet/wasmlet/abi"
	"github.com/wasmlet/wasmlet/guests/build"
)

// rawMessage is a request given as bytes.
type rawMessage []byte

func (r rawMessage) AppendTo(b []byte) []byte { return append(b, r...) }
func (r rawMessage) Unmarshal([]byte) error   { return nil }

// FuzzModuleReply makes a module (mirror.wat) answer with arbitrary bytes,
// with and without the error bit, and checks the host's handling of replies:
// no panic, every failure a *CallError naming module and operation, a
// malformed reply a fault, and a reply that decodes equal to what a decode
// of the same bytes outside the module call gives.
func FuzzModuleReply(f *testing.F) {
	m, err := Load(context.Background(), build.Testdata(f, "guests/testmodules/wat/mirror.wasm"),
		Options{MemoryLimit: 1 << 20, PoolSize: 1, QuarantineAfter: 1 << 30})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { m.Close(context.Background()) })
	f.Add([]byte{})
	f.Add((&abi.DiscoverResponse{Devices: []abi.Device{{ID: "a", NUMANodes: []int64{1}}}}).AppendTo(nil))
	f.Add(append([]byte{0xee}, (&abi.Error{Code: abi.CodeUnavailable, Message: "x"}).AppendTo(nil)[1:]...))
	f.Add([]byte{0x0a, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, reply []byte) {
		if len(reply) > 0x7000 {
			return
		}
		var got abi.DiscoverResponse
		err := m.Call(context.Background(), abi.OpDiscover, rawMessage(reply), &got)
		if err == nil {
			var want abi.DiscoverResponse
			if derr := want.Unmarshal(reply); derr != nil {
				t.Fatalf("host accepted a reply that does not decode: %v", derr)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("the host decoded %+v, the bytes say %+v", got, want)
			}
			return
		}
		if !strings.HasPrefix(err.Error(), `module "mirror": discover: `) {
			t.Fatalf("error does not name module and operation: %v", err)
		}
		if _, isModuleErr := ModuleError(err); !isModuleErr && !IsFault(err) {
			t.Fatalf("error is neither the module's nor a fault: %v", err)
		}
	})
}

// FuzzHandlerInputs sends arbitrary plugin registrations (names, endpoints,
// versions, types) to the real DevicePlugin, CSI and custom handler modules:
// they may refuse, but never fault.
func FuzzHandlerInputs(f *testing.F) {
	ctx := context.Background()
	var mods []*Module
	for _, g := range []string{"guests/devicepluginhandler", "guests/csihandler", "guests/customhandler"} {
		m, err := Load(ctx, build.Go(f, g), Options{MemoryLimit: 64 << 20, Cache: testCache(f), QuarantineAfter: 1 << 30})
		if err != nil {
			f.Fatal(err)
		}
		f.Cleanup(func() { m.Close(ctx) })
		mods = append(mods, m)
	}
	f.Add("DevicePlugin", "example.com/gpu", "gpu.sock", "v1beta1", "/r/gpu.sock")
	f.Add("ExamplePlugin", "example-one", "", "v1,v2", "")
	f.Add("CSIPlugin", "hostpath.csi.k8s.io", "/var/lib/kubelet/plugins/hostpath/csi.sock", "1.0.0", "/r/hostpath-reg.sock")
	f.Add("CSIPlugin", "a.b", "/var/lib/kubelet/plugins/../x", " v01.2,1.99999999999999999999.0", "")
	f.Add("DevicePlugin", "kubernetes.io/x", "../../etc/passwd", "", "/r/x")
	f.Add("", "\x00\xff", "/\x00", ",,,", "")
	f.Fuzz(func(t *testing.T, typ, name, endpoint, versions, socket string) {
		p := &abi.Plugin{Type: typ, Name: name, Endpoint: endpoint, SupportedVersions: strings.Split(versions, ","), SocketPath: socket}
		for _, m := range mods {
			if err := m.Validate(ctx, p); IsFault(err) {
				t.Fatalf("%s validate %+v: %v", m.Name(), p, err)
			}
			if _, err := m.Register(ctx, p); IsFault(err) {
				t.Fatalf("%s register %+v: %v", m.Name(), p, err)
			}
		}
	})
}
