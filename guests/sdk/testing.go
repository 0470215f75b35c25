//go:build !wasip1

package sdk

import "github.com/wasmlet/wasmlet/guests/sdk/internal/guest"

// SetTestConfig sets the configuration Config returns when module code runs
// natively, under `go test` on the host, so that a module's logic can be
// unit-tested without WebAssembly. It does not exist in wasip1 builds.
func SetTestConfig(c map[string]string) { guest.SetTestConfig(c) }
