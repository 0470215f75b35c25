package abipb

// The naming rules of package abi held to Kubernetes' own code: abi must
// stay on the standard library, so it cannot call apimachinery, but a module
// that checks its names with abi must never be refused by the host (which
// parses quantities with apimachinery) nor by a cluster.

import (
	"regexp"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/api/validate/content"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/wasmlet/wasmlet/abi"
)

// k8sDriverName is Kubernetes' check of a DRA driver name:
// corevalidation.ValidateCSIDriverName, which resource validation reuses.
func k8sDriverName(s string) bool {
	return s != "" && len(s) <= 63 && len(validation.IsDNS1123Subdomain(strings.ToLower(s))) == 0
}

// k8sQualifiedName is validateQualifiedName of
// k8s.io/kubernetes/pkg/apis/resource/validation, for names with at most one
// "/" (it lets more through, which it calls a bug).
func k8sQualifiedName(s string) bool {
	cID := func(id string) bool { return len(id) <= 32 && len(content.IsCIdentifier(id)) == 0 }
	domain, id, ok := strings.Cut(s, "/")
	if !ok {
		return cID(domain)
	}
	return domain != "" && k8sDriverName(domain) && id != "" && cID(id)
}

// semverRe is Kubernetes' check of a version attribute, copied from
// k8s.io/kubernetes/pkg/apis/resource/validation (v1.37.2), which is not a
// dependency of wasmlet.
var semverRe = regexp.MustCompile(`^` +
	`(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)` +
	`(-(0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(\.(0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*)?` +
	`(\+[0-9a-zA-Z-]+(\.[0-9a-zA-Z-]+)*)?` +
	`$`)

func checkNameAgreement(t *testing.T, s string) {
	t.Helper()
	if got, want := abi.ValidDriverName(s) == nil, k8sDriverName(s); got != want {
		t.Errorf("driver name %q: abi says %v, Kubernetes %v", s, abi.ValidDriverName(s), want)
	}
	if got, want := abi.ValidCounterName(s) == nil, len(validation.IsDNS1123Label(s)) == 0; got != want {
		t.Errorf("counter name %q: abi says %v, Kubernetes (DNS label) %v", s, abi.ValidCounterName(s), want)
	}
	if strings.Count(s, "/") <= 1 {
		if got, want := abi.ValidQualifiedName(s) == nil, k8sQualifiedName(s); got != want {
			t.Errorf("qualified name %q: abi says %v, Kubernetes %v", s, abi.ValidQualifiedName(s), want)
		}
	} else if abi.ValidQualifiedName(s) == nil {
		t.Errorf("qualified name %q with two slashes accepted", s)
	}
	if got, want := abi.ValidVersion(s) == nil, semverRe.MatchString(s) && len(s) <= 64; got != want {
		t.Errorf("version %q: abi says %v, Kubernetes %v", s, abi.ValidVersion(s), want)
	}
	if abi.ValidQuantity(s) == nil {
		if _, err := resource.ParseQuantity(s); err != nil {
			t.Errorf("quantity %q: abi accepts it, apimachinery says %v", s, err)
		}
	}
}

var nameSeeds = []string{"", "gpu.example.com", "Gpu.Example.COM", "gpu_x.example.com", "model", "_m", "1m",
	"resource.kubernetes.io/pcieRoot", "a/b/c", "example.com/", "/x", "memory", "gpu-0", "-x",
	"1.2.3", "1.2.3-rc.1+build.5", "01.2.3", "1.2.3-01", "1.2.3-0a", "40Gi", "500m", "1.5", ".5", "1.", "1e3",
	"1e-3", "+1k", "-2Mi", "1e64", "1e-64", "1e65", "1.5e-2147483648", "1e99999999999", "7Ei", "1.5Ki",
	strings.Repeat("a", 32), strings.Repeat("a", 33), strings.Repeat("x", 63), strings.Repeat("x", 64)}

func TestNamesAgreeWithKubernetes(t *testing.T) {
	for _, s := range nameSeeds {
		checkNameAgreement(t, s)
	}
}

// FuzzNamesAgreeWithKubernetes: the naming rules of package abi and
// Kubernetes' agree on every string (quantities: what abi accepts, Kubernetes
// parses).
func FuzzNamesAgreeWithKubernetes(f *testing.F) {
	for _, s := range nameSeeds {
		f.Add(s)
	}
	f.Fuzz(checkNameAgreement)
}
