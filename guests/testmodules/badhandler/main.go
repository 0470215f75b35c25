// Command badhandler is a handler module that misbehaves by plugin name, for
// the tests of the host's Wasm handler adapter
// (host/pluginmanager/wasmhandler):
//
//	a plugin named "panic"  validate panics: a trap, a module fault
//	any other plugin        register answers with action 7, which no host
//	                        carries out
//
// deregister accepts. Configuration: type, the plugin type served (default
// "BadPlugin").
package main

import (
	"github.com/wasmlet/wasmlet/abi"
	"github.com/wasmlet/wasmlet/guests/sdk"
	"github.com/wasmlet/wasmlet/guests/sdk/handler"
)

func init() {
	handler.Serve(handler.Handler{
		Type:    sdk.ConfigOr("type", "BadPlugin"),
		Name:    "badhandler",
		Summary: "misbehaves on purpose, for tests",
		Validate: func(p *abi.Plugin) error {
			if p.Name == "panic" {
				panic("badhandler: asked to panic")
			}
			return nil
		},
		Register: func(p *abi.Plugin) (*abi.RegisterResponse, error) {
			return &abi.RegisterResponse{Action: 7}, nil
		},
		Deregister: func(p *abi.Plugin) error { return nil },
	})
}

func main() {}
