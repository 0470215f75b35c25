// Command badhandler is a handler module that misbehaves by plugin name, for
// the tests of the host's Wasm handler adapter
// (host/pluginmanager/wasmhandler) and of the plugin manager under a slow
// handler (tests/k8s/registration):
//
//	a plugin named "panic"   validate panics: a trap, a module fault
//	a plugin named "hold-*"  register does not return until the file named
//	                         by the configuration key release exists (it
//	                         sleeps and looks again every millisecond), or
//	                         until the host ends the call at its deadline;
//	                         then the plugin is recorded
//	a plugin named "ok-*"    register records the plugin at once
//	a plugin named "csi-*"   register answers ACTION_CSI_DRIVER with the
//	                         endpoint /run/elsewhere.sock, not the plugin's
//	any other plugin         register answers with action 7, which no host
//	                         carries out
//
// deregister accepts. Configuration: type, the plugin type served (default
// "BadPlugin"); release, the file that lets "hold-*" plugins go (give the
// module a mount that holds it).
package main

import (
	"os"
	"strings"
	"time"

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
			switch {
			case strings.HasPrefix(p.Name, "hold-"):
				release := sdk.ConfigOr("release", "")
				for _, err := os.Stat(release); err != nil; _, err = os.Stat(release) {
					time.Sleep(time.Millisecond)
				}
				return &abi.RegisterResponse{Action: abi.ActionRecord}, nil
			case strings.HasPrefix(p.Name, "ok-"):
				return &abi.RegisterResponse{Action: abi.ActionRecord}, nil
			case strings.HasPrefix(p.Name, "csi-"):
				return &abi.RegisterResponse{Action: abi.ActionCSIDriver, Endpoint: "/run/elsewhere.sock", Version: "1.0.0"}, nil
			}
			return &abi.RegisterResponse{Action: 7}, nil
		},
		Deregister: func(p *abi.Plugin) error { return nil },
	})
}

func main() {}
