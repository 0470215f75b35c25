//go:build !wasip1

package sdk

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/wasmlet/wasmlet/abi"
)

func TestConfig(t *testing.T) {
	long := strings.Repeat("0123456789", 30)
	SetTestConfig(map[string]string{"name": "nic", "long": long, "empty": "", "list": " a, b ,,c ,"})
	t.Cleanup(func() { SetTestConfig(nil) })

	if v, ok := Config("long"); !ok || v != long {
		t.Errorf("Config(long) = %.20q, %v", v, ok)
	}
	if v, ok := Config("empty"); !ok || v != "" {
		t.Errorf("Config(empty) = %q, %v; an empty value is set", v, ok)
	}
	if v, ok := Config("absent"); ok || v != "" {
		t.Errorf("Config(absent) = %q, %v", v, ok)
	}
	for _, c := range []struct{ key, def, want string }{
		{"name", "x", "nic"},
		{"absent", "x", "x"},
		{"empty", "x", ""}, // set, though empty: the default does not apply
	} {
		if got := ConfigOr(c.key, c.def); got != c.want {
			t.Errorf("ConfigOr(%q, %q) = %q, want %q", c.key, c.def, got, c.want)
		}
	}
	for _, c := range []struct {
		key, def string
		want     []string
	}{
		{"list", "", []string{"a", "b", "c"}},
		{"absent", "x, y", []string{"x", "y"}},
		{"absent", "", nil},
		{"empty", "x", nil},
	} {
		if got := ConfigList(c.key, c.def); !reflect.DeepEqual(got, c.want) {
			t.Errorf("ConfigList(%q, %q) = %q, want %q", c.key, c.def, got, c.want)
		}
	}
}

func TestEnvName(t *testing.T) {
	for in, want := range map[string]string{
		"example.com/nic": "EXAMPLE_COM_NIC",
		"Gpu-0":           "GPU_0",
		"a1_B2":           "A1_B2",
		"é":               "__", // two bytes, neither a letter here
		"":                "",
	} {
		if got := EnvName(in); got != want {
			t.Errorf("EnvName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestErrors(t *testing.T) {
	for _, c := range []struct {
		err  error
		want abi.Error
	}{
		{Refuse("no such device"), abi.Error{Code: abi.CodeInvalidArgument, Message: "no such device"}},
		{Fail(abi.CodeUnavailable, "try later"), abi.Error{Code: abi.CodeUnavailable, Message: "try later"}},
	} {
		var e *abi.Error
		if !errors.As(c.err, &e) || *e != c.want {
			t.Errorf("got %#v, want %#v", c.err, c.want)
		}
	}
}
