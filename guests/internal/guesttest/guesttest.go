//go:build !wasip1

// Package guesttest holds what the native tests of this repository's Go
// guests (guests/*/main_test.go) share: they check a module's logic under
// `go test` on the host, with sdk.SetTestConfig, and most of what they check
// is how the module refuses.
package guesttest

import (
	"errors"
	"strings"
	"testing"

	"github.com/wasmlet/wasmlet/abi"
	"github.com/wasmlet/wasmlet/guests/sdk"
	"github.com/wasmlet/wasmlet/guests/sdk/handler"
)

// Refused reports whether err is an error reply (an *abi.Error) with code
// whose message contains want.
func Refused(err error, code abi.Code, want string) bool {
	var e *abi.Error
	return errors.As(err, &e) && e.Code == code && strings.Contains(e.Message, want)
}

// CheckPolicy runs a handler's policy, as load returns it under config, on
// p, and fails t unless it accepts p (want "") or refuses it with code and
// a message containing want. It returns what Check returned.
func CheckPolicy[P handler.Policy](t testing.TB, load func() P, config map[string]string, p *abi.Plugin,
	want string, code abi.Code) (version string, err error) {
	t.Helper()
	sdk.SetTestConfig(config)
	version, err = load().Check(p)
	if want == "" {
		if err != nil {
			t.Fatalf("refused: %v", err)
		}
	} else if !Refused(err, code, want) {
		t.Fatalf("got %v, want code %d and %q", err, code, want)
	}
	return version, err
}

// Configure runs load, a module's configuration loader, under config, and
// fails t if it refuses it.
func Configure[C any](t testing.TB, load func() (C, error), config map[string]string) C {
	t.Helper()
	sdk.SetTestConfig(config)
	cfg, err := load()
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// ConfigError runs load, a module's configuration loader, under config,
// and returns its error.
func ConfigError[C any](load func() (C, error), config map[string]string) error {
	sdk.SetTestConfig(config)
	_, err := load()
	return err
}
