package wasmhandler

import (
	"testing"

	"github.com/wasmlet/wasmlet/abi"
	"github.com/wasmlet/wasmlet/host/pluginmanager"
)

func TestDevicePluginResolution(t *testing.T) {
	p := pluginmanager.Plugin{SocketPath: "/r/sub/gpu-reg.sock", Name: "example.com/gpu", Endpoint: "gpu.sock", Versions: []string{"v1beta1", "v1"}}
	for _, c := range []struct {
		what string
		p    pluginmanager.Plugin
		d    abi.RegisterResponse
		want DevicePlugin
	}{
		{"the plugin's relative endpoint is beside its registration socket", p, abi.RegisterResponse{},
			DevicePlugin{Resource: "example.com/gpu", Endpoint: "/r/sub/gpu.sock", Version: "v1beta1"}},
		{"the handler's decision wins", p, abi.RegisterResponse{ResourceName: "example.com/other", Endpoint: "/run/x.sock", Version: "v1"},
			DevicePlugin{Resource: "example.com/other", Endpoint: "/run/x.sock", Version: "v1"}},
		{"no endpoint at all is the registration socket", pluginmanager.Plugin{SocketPath: "/r/a.sock", Name: "example.com/a"}, abi.RegisterResponse{},
			DevicePlugin{Resource: "example.com/a", Endpoint: "/r/a.sock"}},
	} {
		c.want.PluginName, c.want.SocketPath = c.p.Name, c.p.SocketPath
		if got := devicePlugin(c.p, &c.d); got != c.want {
			t.Errorf("%s: %+v, want %+v", c.what, got, c.want)
		}
	}
}
