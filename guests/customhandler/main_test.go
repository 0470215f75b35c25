//go:build !wasip1

package main

import (
	"testing"
	"time"

	"github.com/wasmlet/wasmlet/abi"
	"github.com/wasmlet/wasmlet/guests/internal/guesttest"
	"github.com/wasmlet/wasmlet/guests/sdk"
	"github.com/wasmlet/wasmlet/guests/sdk/handler"
)

func TestValidate(t *testing.T) {
	p := func(typ, name string, versions ...string) *abi.Plugin {
		return &abi.Plugin{Type: typ, Name: name, Endpoint: "/run/example.sock", SupportedVersions: versions,
			SocketPath: "/var/lib/kubelet/plugins_registry/example.sock"}
	}
	cases := []struct {
		name   string
		config map[string]string
		plugin *abi.Plugin
		want   string
		code   abi.Code
	}{
		{"defaults", nil, p("ExamplePlugin", "anything", "v1"), "", 0},
		{"type left out by the host", nil, p("", "anything", "v1"), "", 0},
		{"other type", nil, p("CSIPlugin", "x", "v1"), `ExamplePlugin plugin "x" has type "CSIPlugin"; this handler serves ExamplePlugin`, abi.CodeInvalidArgument},
		{"configured type", map[string]string{"type": "Widget"}, p("Widget", "x", "v1"), "", 0},
		{"configured type refuses the default", map[string]string{"type": "Widget"}, p("ExamplePlugin", "x", "v1"), "this handler serves Widget", abi.CodeInvalidArgument},
		{"version refused", nil, p("ExamplePlugin", "x", "v2", "v3"), `offered versions v2, v3; this node accepts v1`, abi.CodeInvalidArgument},
		{"no version", nil, p("ExamplePlugin", "x"), `offered no versions`, abi.CodeInvalidArgument},
		{"configured versions", map[string]string{"versions": "v3,v2"}, p("ExamplePlugin", "x", "v2"), "", 0},
		{"empty name", nil, p("ExamplePlugin", "", "v1"), "reported an empty name", abi.CodeInvalidArgument},
		{"pattern", map[string]string{"name_pattern": "acme-*"}, p("ExamplePlugin", "acme-1", "v1"), "", 0},
		{"pattern refuses", map[string]string{"name_pattern": "acme-*"}, p("ExamplePlugin", "other", "v1"),
			`the name does not match the pattern "acme-*"`, abi.CodeInvalidArgument},
		{"bad pattern", map[string]string{"name_pattern": "[a-"}, p("ExamplePlugin", "x", "v1"), "not a valid pattern", abi.CodeFailedPrecondition},
		{"no versions configured", map[string]string{"versions": ""}, p("ExamplePlugin", "x", "v1"), "versions is empty", abi.CodeFailedPrecondition},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			guesttest.CheckPolicy(t, loadPolicy, c.config, c.plugin, c.want, c.code)
		})
	}
}

func TestRegister(t *testing.T) {
	sdk.SetTestConfig(map[string]string{"versions": "v2,v1", "type": "Widget"})
	when := time.Date(2026, 3, 1, 12, 0, 0, 0, time.FixedZone("x", 3600))
	p := &abi.Plugin{Type: "Widget", Name: "w", SupportedVersions: []string{"v1", "v2"}, SocketPath: "/reg/w.sock"}
	pol := loadPolicy()
	pol.now = func() int64 { return when.UnixNano() }
	r, err := handler.Register(pol, p)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"type": "Widget", "endpoint": "/reg/w.sock", "version": "v2", "offered_versions": "v1,v2",
		"registration_socket": "/reg/w.sock", "registered_at": "2026-03-01T11:00:00Z"}
	if r.Action != abi.ActionRecord || r.Version != "v2" || r.Endpoint != "" || len(r.Attributes) != len(want) {
		t.Fatalf("got %+v", r)
	}
	for k, v := range want {
		if r.Attributes[k] != v {
			t.Errorf("attribute %s = %q, want %q", k, r.Attributes[k], v)
		}
	}
	p.Name = ""
	if _, err := handler.Register(pol, p); err == nil {
		t.Fatal("register accepted a plugin validate refuses")
	}
}

func TestRFC3339(t *testing.T) {
	for _, tm := range []time.Time{
		time.Unix(0, 0), time.Unix(-1, 0), time.Unix(951782400, 0), // 2000-02-29
		time.Date(1900, 3, 1, 0, 0, 0, 0, time.UTC), time.Date(2100, 12, 31, 23, 59, 59, 999999999, time.UTC),
		time.Date(1969, 12, 31, 23, 59, 59, 500, time.UTC), time.Date(2204, 2, 29, 1, 2, 3, 0, time.UTC), time.Now(),
	} {
		if got, want := rfc3339(tm.UnixNano()), tm.UTC().Format(time.RFC3339); got != want {
			t.Errorf("%v: got %s, want %s", tm, got, want)
		}
	}
	for secs := int64(-5e9); secs < 5e9; secs += 86400*13 + 3607 {
		tm := time.Unix(secs, 0)
		if got, want := rfc3339(tm.UnixNano()), tm.UTC().Format(time.RFC3339); got != want {
			t.Fatalf("%d: got %s, want %s", secs, got, want)
		}
	}
}
