//go:build !wasip1

package main

import (
	"math/rand"
	"strings"
	"testing"

	utilversion "k8s.io/apimachinery/pkg/util/version"

	"github.com/wasmlet/wasmlet/abi"
	"github.com/wasmlet/wasmlet/guests/internal/guesttest"
	"github.com/wasmlet/wasmlet/guests/sdk"
	"github.com/wasmlet/wasmlet/guests/sdk/handler"
)

const endpoint = "/var/lib/kubelet/plugins/hostpath.csi.k8s.io/csi.sock"

// driver is what node-driver-registrar announces: type CSIPlugin, the
// driver's name, its CSI socket and versions ["1.0.0"].
func driver(name string, versions ...string) *abi.Plugin {
	if versions == nil {
		versions = []string{"1.0.0"}
	}
	return &abi.Plugin{Type: PluginType, Name: name, Endpoint: endpoint, SupportedVersions: versions,
		SocketPath: "/var/lib/kubelet/plugins_registry/" + name + "-reg.sock"}
}

func withEndpoint(p *abi.Plugin, ep string) *abi.Plugin { p.Endpoint = ep; return p }

func TestValidate(t *testing.T) {
	cases := []struct {
		name    string
		config  map[string]string
		plugin  *abi.Plugin
		want    string // "" accepts; otherwise a substring of the refusal
		code    abi.Code
		version string // the version chosen, when accepted
	}{
		{"node-driver-registrar's announcement", nil, driver("hostpath.csi.k8s.io"), "", 0, "1.0.0"},
		{"the highest 1.x", nil, driver("hostpath.csi.k8s.io", "0.3.0", "1.2.0", "1.10.0", "2.0.0"), "", 0, "1.10.0"},
		{"a leading v", nil, driver("hostpath.csi.k8s.io", "v1.5.0"), "", 0, "v1.5.0"},
		{"0.x only", nil, driver("hostpath.csi.k8s.io", "0.3.0"),
			`offered CSI spec versions 0.3.0: the highest this node could use is 0.3.0, and it must be 1.x`, abi.CodeInvalidArgument, ""},
		{"2.x only", nil, driver("hostpath.csi.k8s.io", "2.0.0"),
			`offered versions 2.0.0, none of which is a CSI spec version this node supports (1.x)`, abi.CodeInvalidArgument, ""},
		{"no versions", nil, driver("hostpath.csi.k8s.io", []string{}...), "offered no CSI spec version", abi.CodeInvalidArgument, ""},
		{"not versions", nil, driver("hostpath.csi.k8s.io", "one", "1"), "none of which", abi.CodeInvalidArgument, ""},
		{"below min_version", map[string]string{"min_version": "1.5.0"}, driver("hostpath.csi.k8s.io", "1.0.0", "1.4.9"),
			"supports CSI spec versions up to 1.4.9; this node requires at least 1.5.0", abi.CodeInvalidArgument, ""},
		{"at min_version", map[string]string{"min_version": "1.5"}, driver("hostpath.csi.k8s.io", "1.5.0"), "", 0, "1.5.0"},
		{"bad min_version is the operator's", map[string]string{"min_version": "latest"}, driver("hostpath.csi.k8s.io"),
			`min_version "latest" is not a CSI spec 1.x version`, abi.CodeFailedPrecondition, ""},
		{"min_version 0.x is the operator's too", map[string]string{"min_version": "0.3.0"}, driver("hostpath.csi.k8s.io"),
			`min_version "0.3.0"`, abi.CodeFailedPrecondition, ""},
		{"name not a domain", nil, driver("hostpath_csi"), `label "hostpath_csi"`, abi.CodeInvalidArgument, ""},
		{"name too long", nil, driver(strings.Repeat("a", 64)), "must be 1 to 63 characters long (it is 64)", abi.CodeInvalidArgument, ""},
		{"empty name", nil, driver(""), "(it is 0)", abi.CodeInvalidArgument, ""},
		{"allowed driver", map[string]string{"allowed_drivers": "ebs.csi.aws.com, hostpath.csi.k8s.io"}, driver("hostpath.csi.k8s.io"), "", 0, "1.0.0"},
		{"allowed domain", map[string]string{"allowed_domains": "k8s.io"}, driver("hostpath.csi.k8s.io"), "", 0, "1.0.0"},
		{"the domain itself", map[string]string{"allowed_domains": "csi.k8s.io"}, driver("CSI.k8s.io"), "", 0, "1.0.0"},
		{"a suffix is not a domain", map[string]string{"allowed_domains": "k8s.io"}, driver("evilk8s.io"),
			`CSI driver "evilk8s.io" is not allowed on this node; allowed are domains (and names under them) k8s.io`, abi.CodeInvalidArgument, ""},
		{"neither", map[string]string{"allowed_drivers": "ebs.csi.aws.com", "allowed_domains": "example.com"}, driver("hostpath.csi.k8s.io"),
			"allowed are drivers ebs.csi.aws.com; domains (and names under them) example.com", abi.CodeInvalidArgument, ""},
		{"relative endpoint", nil, withEndpoint(driver("hostpath.csi.k8s.io"), "csi.sock"),
			`endpoint "csi.sock" is not an absolute path`, abi.CodeInvalidArgument, ""},
		{"no endpoint", nil, withEndpoint(driver("hostpath.csi.k8s.io"), ""), "names no endpoint", abi.CodeInvalidArgument, ""},
		{"endpoint escaping", nil, withEndpoint(driver("hostpath.csi.k8s.io"), "/var/lib/kubelet/plugins/../../../run/x.sock"),
			`is not a clean path (it should be "/var/run/x.sock")`, abi.CodeInvalidArgument, ""},
		{"endpoint outside", nil, withEndpoint(driver("hostpath.csi.k8s.io"), "/var/lib/kubelet/plugins-other/csi.sock"),
			"is outside the directories this node allows CSI sockets in: /var/lib/kubelet/plugins", abi.CodeInvalidArgument, ""},
		{"endpoint dirs configured", map[string]string{"endpoint_dirs": "/run/csi, /var/lib/kubelet/plugins/"},
			withEndpoint(driver("hostpath.csi.k8s.io"), "/run/csi/hostpath/csi.sock"), "", 0, "1.0.0"},
		{"endpoint dirs empty: any absolute path", map[string]string{"endpoint_dirs": ""},
			withEndpoint(driver("hostpath.csi.k8s.io"), "/tmp/csi.sock"), "", 0, "1.0.0"},
		{"wrong type", nil, &abi.Plugin{Type: "DevicePlugin", Name: "hostpath.csi.k8s.io", Endpoint: endpoint, SupportedVersions: []string{"1.0.0"}},
			`has type "DevicePlugin"`, abi.CodeInvalidArgument, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			version, err := guesttest.CheckPolicy(t, loadPolicy, c.config, c.plugin, c.want, c.code)
			if c.want == "" && version != c.version {
				t.Fatalf("chose version %q, want %q", version, c.version)
			}
			if c.code == abi.CodeInvalidArgument && !guesttest.Refused(err, c.code, c.plugin.Name) {
				t.Errorf("refusal does not name the driver: %v", err)
			}
		})
	}
}

func TestRegister(t *testing.T) {
	sdk.SetTestConfig(nil)
	p := driver("hostpath.csi.k8s.io", "1.0.0", "1.9.0")
	r, err := handler.Register(loadPolicy(), p)
	if err != nil {
		t.Fatal(err)
	}
	if r.Action != abi.ActionCSIDriver || r.Endpoint != endpoint || r.Version != "1.9.0" || r.ResourceName != "" {
		t.Fatalf("got %+v", r)
	}
	if a := r.Attributes; a["driver"] != p.Name || a["csi_version"] != "1.9.0" || a["offered_versions"] != "1.0.0,1.9.0" ||
		a["endpoint"] != endpoint || a["registration_socket"] != p.SocketPath {
		t.Fatalf("attributes %v", a)
	}
	// register applies the policy too: it may be called without validate.
	if _, err := handler.Register(loadPolicy(), driver("hostpath.csi.k8s.io", "0.3.0")); err == nil {
		t.Fatal("register accepted a CSI 0.x driver")
	}
}

// TestHighestVersionAgreesWithTheKubelet checks the version this handler
// picks against k8s.io/apimachinery's HighestSupportedVersion, which the
// kubelet's CSI plugin handler uses, on fixed and random lists.
func TestHighestVersionAgreesWithTheKubelet(t *testing.T) {
	lists := [][]string{
		{"1.0.0"}, {"0.3.0"}, {"2.0.0"}, {"1.0.0", "0.3.0"}, {"0.1.0", "1.2.0", "1.10.0"}, {"v1.5.0"}, {"1"},
		{" 1.2.3"}, {"01.2.0"}, {"1.02.0"}, {"1.2.x"}, {"1.2-rc.1", "1.2.0"}, {"1.0", "1.0.0"}, {"1.0.0", "1.0"},
		{"1.2.3.4"}, {"1..2"}, {"1.2."}, {"v"}, {""}, {"18446744073709551616.0"}, {"1.18446744073709551616"},
	}
	rng := rand.New(rand.NewSource(1))
	pieces := []string{"0", "1", "2", "10", "01", ".", "v", " ", "-rc", "x", "9"}
	for range 5000 {
		var l []string
		for range 1 + rng.Intn(3) {
			var b strings.Builder
			for range 1 + rng.Intn(6) {
				b.WriteString(pieces[rng.Intn(len(pieces))])
			}
			l = append(l, b.String())
		}
		lists = append(lists, l)
	}
	for _, l := range lists {
		got, problem := highestVersion(l)
		want, err := utilversion.HighestSupportedVersion(l)
		switch {
		case (problem == "") != (err == nil):
			t.Fatalf("%q: handler says %q (%s), kubelet says %v (%v)", l, got, problem, want, err)
		case err == nil:
			// The kubelet returns a parsed version; compare what it means.
			g := utilversion.MustParseGeneric(got)
			if !g.EqualTo(want) {
				t.Fatalf("%q: handler chose %s, kubelet %s", l, got, want)
			}
		}
	}
}
