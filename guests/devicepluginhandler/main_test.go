//go:build !wasip1

package main

import (
	"strings"
	"testing"

	"github.com/wasmlet/wasmlet/abi"
	"github.com/wasmlet/wasmlet/guests/internal/guesttest"
	"github.com/wasmlet/wasmlet/guests/sdk"
	"github.com/wasmlet/wasmlet/guests/sdk/handler"
)

func plugin(name string, versions ...string) *abi.Plugin {
	return &abi.Plugin{Type: PluginType, Name: name, Endpoint: "/var/lib/kubelet/device-plugins/gpu.sock",
		SupportedVersions: versions, SocketPath: "/var/lib/kubelet/plugins_registry/gpu.sock"}
}

func TestValidate(t *testing.T) {
	cases := []struct {
		name   string
		config map[string]string
		plugin *abi.Plugin
		want   string // "" accepts; otherwise a substring of the refusal
		code   abi.Code
	}{
		{"defaults accept v1beta1", nil, plugin("vendor.com/gpu", "v1beta1"), "", 0},
		{"one of several offered", nil, plugin("vendor.com/gpu", "v1alpha", "v1beta1"), "", 0},
		{"version not accepted", nil, plugin("vendor.com/gpu", "v1alpha"),
			`offered device plugin API versions v1alpha; this node accepts v1beta1`, abi.CodeInvalidArgument},
		{"no version offered", nil, plugin("vendor.com/gpu"), "offered device plugin API no versions", abi.CodeInvalidArgument},
		{"configured versions", map[string]string{"versions": "v1, v1beta1"}, plugin("vendor.com/gpu", "v1"), "", 0},
		{"configured versions refuse", map[string]string{"versions": "v1,v2"}, plugin("vendor.com/gpu", "v1beta1"),
			"this node accepts v1, v2", abi.CodeInvalidArgument},
		{"no domain", nil, plugin("gpu", "v1beta1"), `"gpu" is not of the form <domain>/<name>`, abi.CodeInvalidArgument},
		{"empty name", nil, plugin("", "v1beta1"), `is not of the form <domain>/<name>`, abi.CodeInvalidArgument},
		{"two slashes", nil, plugin("a.com/b/c", "v1beta1"), `is not of the form`, abi.CodeInvalidArgument},
		{"kubernetes.io", nil, plugin("kubernetes.io/gpu", "v1beta1"), "reserved for Kubernetes", abi.CodeInvalidArgument},
		{"sub.kubernetes.io", nil, plugin("x.kubernetes.io/gpu", "v1beta1"), "reserved for Kubernetes", abi.CodeInvalidArgument},
		{"upper-case domain", nil, plugin("Vendor.com/gpu", "v1beta1"), `label "Vendor"`, abi.CodeInvalidArgument},
		{"underscore domain", nil, plugin("ven_dor.com/gpu", "v1beta1"), `not a DNS subdomain`, abi.CodeInvalidArgument},
		{"empty label", nil, plugin("vendor..com/gpu", "v1beta1"), `not a DNS subdomain`, abi.CodeInvalidArgument},
		{"name too long", nil, plugin("vendor.com/"+strings.Repeat("g", 64), "v1beta1"), "1 to 63 characters", abi.CodeInvalidArgument},
		{"name of 63", nil, plugin("vendor.com/"+strings.Repeat("g", 63), "v1beta1"), "", 0},
		{"name ends badly", nil, plugin("vendor.com/gpu-", "v1beta1"), `name "gpu-"`, abi.CodeInvalidArgument},
		{"name with dots", nil, plugin("vendor.com/A_b.c-1", "v1beta1"), "", 0},
		{"allowed domain", map[string]string{"allowed_domains": "nvidia.com,amd.com"}, plugin("amd.com/gpu", "v1beta1"), "", 0},
		{"allowed subdomain", map[string]string{"allowed_domains": "nvidia.com"}, plugin("gpu.nvidia.com/a100", "v1beta1"), "", 0},
		{"not a subdomain, only a suffix", map[string]string{"allowed_domains": "nvidia.com"}, plugin("evilnvidia.com/gpu", "v1beta1"),
			`domain "evilnvidia.com" is not allowed on this node; allowed domains (and their subdomains): nvidia.com`, abi.CodeInvalidArgument},
		{"name pattern", map[string]string{"name_pattern": "gpu-*"}, plugin("vendor.com/gpu-a100", "v1beta1"), "", 0},
		{"name pattern refuses", map[string]string{"name_pattern": "gpu-*"}, plugin("vendor.com/nic", "v1beta1"),
			`resource name "nic" does not match the pattern "gpu-*"`, abi.CodeInvalidArgument},
		{"bad pattern is the operator's problem", map[string]string{"name_pattern": "["}, plugin("vendor.com/nic", "v1beta1"),
			`name_pattern "[" is not a valid pattern`, abi.CodeFailedPrecondition},
		{"empty versions", map[string]string{"versions": " , "}, plugin("vendor.com/gpu", "v1beta1"), "versions is empty", abi.CodeFailedPrecondition},
		{"wrong type", nil, &abi.Plugin{Type: "CSIPlugin", Name: "vendor.com/gpu", SupportedVersions: []string{"v1beta1"}},
			`has type "CSIPlugin"`, abi.CodeInvalidArgument},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := guesttest.CheckPolicy(t, loadPolicy, c.config, c.plugin, c.want, c.code)
			if c.code == abi.CodeInvalidArgument && !guesttest.Refused(err, c.code, `device plugin "`+c.plugin.Name+`"`) {
				t.Errorf("refusal does not name the plugin: %v", err)
			}
		})
	}
}

func TestRegister(t *testing.T) {
	sdk.SetTestConfig(map[string]string{"versions": "v1beta2,v1beta1"})
	p := plugin("vendor.com/gpu", "v1beta1", "v1beta2")
	r, err := handler.Register(loadPolicy(), p)
	if err != nil {
		t.Fatal(err)
	}
	if r.Action != abi.ActionDevicePlugin || r.ResourceName != "vendor.com/gpu" || r.Endpoint != p.Endpoint || r.Version != "v1beta2" {
		t.Fatalf("got %+v", r)
	}
	if r.Attributes["endpoint"] != p.Endpoint || r.Attributes["api_version"] != "v1beta2" ||
		r.Attributes["offered_versions"] != "v1beta1,v1beta2" || r.Attributes["registration_socket"] != p.SocketPath {
		t.Fatalf("attributes %v", r.Attributes)
	}

	// Without an endpoint the host uses the registration socket.
	p.Endpoint = ""
	if r, err = handler.Register(loadPolicy(), p); err != nil || r.Endpoint != "" || r.Attributes["endpoint"] != p.SocketPath {
		t.Fatalf("got %+v, %v", r, err)
	}

	// register applies the policy too: it may be called without validate.
	if _, err := handler.Register(loadPolicy(), plugin("gpu", "v1beta1")); err == nil {
		t.Fatal("register accepted an invalid resource name")
	}
}
