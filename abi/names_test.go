package abi

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestValidResourceName(t *testing.T) {
	for _, ok := range []string{"example.com/nic", "vendor.io/gpu-1", "a.b/C_d.e", "nvidia.com/gpu"} {
		if err := ValidResourceName(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for bad, want := range map[string]string{
		"nic":                                    `"nic" is not of the form <domain>/<name>`,
		"/nic":                                   "is not of the form",
		"example.com/":                           "is not of the form",
		"a/b/c":                                  "is not of the form",
		"kubernetes.io/x":                        `domain "kubernetes.io" is reserved for Kubernetes`,
		"foo.kubernetes.io/x":                    "reserved for Kubernetes",
		"0kubernetes.io/0":                       `domain "0kubernetes.io" is reserved`, // the kubelet's rule: contains "kubernetes.io/"
		"Example.com/x":                          `label "Example" must be 1 to 63 characters of [a-z0-9-]`,
		"ex_ample.com/x":                         "is not a DNS subdomain",
		"example..com/x":                         `label ""`,
		"example.com/-x":                         `name "-x" must be 1 to 63 characters`,
		"example.com/" + strings.Repeat("x", 64): "must be 1 to 63 characters",
		"example.com/a\x00b":                     `name "a\x00b"`,
	} {
		err := ValidResourceName(bad)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: got %v, want %q", bad, err, want)
		}
	}
}

func TestValidDeviceID(t *testing.T) {
	for _, ok := range []string{"0000:00:1f.6", "gpu-0", "a", strings.Repeat("x", 63)} {
		if err := ValidDeviceID(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for bad, want := range map[string]string{
		"":                      "must be 1 to 63 bytes long (it is 0)",
		strings.Repeat("x", 64): "(it is 64)",
		"a/b":                   `device id "a/b" contains '/'`,
		"a'b":                   `contains '\''`,
		"a\nb":                  `device id "a\x0ab" contains '\x0a'`,
	} {
		err := ValidDeviceID(bad)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: got %v, want %q", bad, err, want)
		}
	}
}

func TestValidCSIDriverName(t *testing.T) {
	for _, ok := range []string{"hostpath.csi.k8s.io", "io.kubernetes.storage.mock", "ebs.csi.aws.com", "A", "Csi-Driver.Example.COM",
		strings.Repeat("x", 63)} {
		if err := ValidCSIDriverName(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for bad, want := range map[string]string{
		"":                      `CSI driver name "" must be 1 to 63 characters long (it is 0)`,
		strings.Repeat("x", 64): "(it is 64)",
		"csi_driver.example":    `label "csi_driver" must be`,
		"-csi.example":          `label "-csi"`,
		"csi-.example":          `label "csi-"`,
		"csi..example":          `label ""`,
		".csi":                  `label ""`,
		"csi.":                  `label ""`,
		"example.com/csi":       `label "com/csi"`,
		"csi\x00x":              `is not a domain name`,
	} {
		err := ValidCSIDriverName(bad)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: got %v, want %q", bad, err, want)
		}
	}
}

func TestQuoteMatchesStrconvForPrintableASCII(t *testing.T) {
	for _, s := range []string{"", "abc", `a"b`, `a\b`, "example.com/gpu"} {
		if quote(s) != strconv.Quote(s) {
			t.Errorf("quote(%q) = %s, strconv.Quote = %s", s, quote(s), strconv.Quote(s))
		}
	}
}

// FuzzNames checks the naming rules never panic and accept only names of the
// documented shape.
func FuzzNames(f *testing.F) {
	for _, s := range []string{"example.com/gpu", "a/b", "kubernetes.io/x", "", "/", "0000:00:1f.6", "hostpath.csi.k8s.io", "x.y/" + strings.Repeat("z", 70),
		"gpu.example.com/model", "40Gi", "1e-3", "1.2.3-rc.1+b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if ValidResourceName(s) == nil {
			domain, local, ok := strings.Cut(s, "/")
			if !ok || domain == "" || local == "" || len(local) > 63 || strings.Contains(local, "/") ||
				strings.HasSuffix(domain, "kubernetes.io") || len(domain) > 253 {
				t.Fatalf("resource name %q accepted", s)
			}
		}
		if ValidCSIDriverName(s) == nil && (len(s) == 0 || len(s) > 63 || strings.ContainsAny(s, "/_ \x00") ||
			strings.HasPrefix(s, ".") || strings.HasSuffix(s, ".") || strings.Contains(s, "..")) {
			t.Fatalf("CSI driver name %q accepted", s)
		}
		if ValidDeviceID(s) == nil && (len(s) == 0 || len(s) > 63 || strings.ContainsAny(s, "/ \x00")) {
			t.Fatalf("device id %q accepted", s)
		}
		if ValidQualifiedName(s) == nil {
			domain, id, qualified := strings.Cut(s, "/")
			if !qualified {
				id = domain
			}
			if id == "" || len(id) > 32 || strings.ContainsAny(id, "/-. \x00") || id[0] >= '0' && id[0] <= '9' ||
				qualified && (domain == "" || len(domain) > 63) {
				t.Fatalf("qualified name %q accepted", s)
			}
		}
		if d := DefaultDriver(s); ValidResourceName(s) == nil && len(d) <= 63 && ValidDriverName(d) != nil {
			t.Fatalf("DefaultDriver(%q) = %q: %v", s, d, ValidDriverName(d))
		}
		if ValidCounterName(s) == nil && (s == "" || len(s) > 63 || strings.Trim(s, "abcdefghijklmnopqrstuvwxyz0123456789-") != "") {
			t.Fatalf("counter name %q accepted", s)
		}
		if ValidQuantity(s) == nil && (s == "" || strings.Trim(s, "+-.0123456789eEmkMGTPi") != "") {
			t.Fatalf("quantity %q accepted", s)
		}
		if ValidVersion(s) == nil && (len(s) > 64 || strings.Count(s, ".") < 2 || strings.Trim(s, ".-+0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") != "") {
			t.Fatalf("version %q accepted", s)
		}
	})
}

// TestImports keeps the package small for guests: what doc.go promises.
func TestImports(t *testing.T) {
	allowed := map[string]bool{"errors": true, "unicode/utf8": true, "unsafe": true}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range file.Imports {
			if path, _ := strconv.Unquote(imp.Path.Value); !allowed[path] {
				t.Errorf("%s imports %s; package abi may import only errors, unicode/utf8 and unsafe (see doc.go)", f, path)
			}
		}
	}
}

func TestValidDriverName(t *testing.T) {
	for _, ok := range []string{"gpu.example.com", "a", "Gpu.Example.com", "x-1.y", strings.Repeat("x", 63)} {
		if err := ValidDriverName(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for bad, want := range map[string]string{
		"":                      `driver name "" must be 1 to 63 characters long (it is 0)`,
		strings.Repeat("x", 64): "(it is 64)",
		"gpu_x.example.com":     `label "gpu_x" must be`,
		"-gpu.example":          `label "-gpu"`,
		"gpu..example":          `label ""`,
		"example.com/gpu":       `label "com/gpu"`,
	} {
		err := ValidDriverName(bad)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: got %v, want %q", bad, err, want)
		}
	}
}

func TestDefaultDriver(t *testing.T) {
	for resource, want := range map[string]string{
		"example.com/nic":          "nic.example.com",
		"example.com/Gpu.Shared_1": "gpu-shared-1.example.com",
		"vendor.io/x":              "x.vendor.io",
		"nonsense":                 "",
	} {
		if got := DefaultDriver(resource); got != want {
			t.Errorf("DefaultDriver(%q) = %q, want %q", resource, got, want)
		}
	}
	// Every valid resource name whose default is short enough gives a valid
	// driver name.
	for _, r := range []string{"example.com/nic", "a.b/C_d.e", "x/y", "a-b.c/d-e"} {
		if err := ValidDriverName(DefaultDriver(r)); err != nil {
			t.Errorf("DefaultDriver(%q): %v", r, err)
		}
	}
	d := Description{Resource: "example.com/gpu"}
	if DriverOf(&d) != "gpu.example.com" {
		t.Errorf("DriverOf without a driver = %q", DriverOf(&d))
	}
	d.Driver = "gpus.example.org"
	if DriverOf(&d) != "gpus.example.org" {
		t.Errorf("DriverOf with a driver = %q", DriverOf(&d))
	}
}

func TestValidQualifiedName(t *testing.T) {
	for _, ok := range []string{"model", "_x", "pcieRoot", "resource.kubernetes.io/pcieRoot", "gpu.example.com/memory",
		strings.Repeat("a", 32), strings.Repeat("d", 63) + "/" + strings.Repeat("a", 32)} {
		if err := ValidQualifiedName(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for bad, want := range map[string]string{
		"":                             `qualified name "": "" must be a C identifier of 1 to 32 characters`,
		"1x":                           `"1x" must be a C identifier`,
		"a-b":                          "must be a C identifier",
		"a.b":                          "must be a C identifier",
		strings.Repeat("a", 33):        "of 1 to 32 characters",
		"/x":                           "the domain before \"/\" is empty",
		"example.com/":                 `"" must be a C identifier`,
		"ex_ample.com/x":               `domain "ex_ample.com" is not a domain name`,
		"a/b/c":                        `"b/c" must be a C identifier`,
		strings.Repeat("d", 64) + "/x": "must be 1 to 63 characters long",
	} {
		err := ValidQualifiedName(bad)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: got %v, want %q", bad, err, want)
		}
	}
}

func TestValidCounterName(t *testing.T) {
	for _, ok := range []string{"memory", "gpu-0", "a", "0"} {
		if err := ValidCounterName(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "Memory", "gpu_0", "-a", "a.b", strings.Repeat("x", 64)} {
		if err := ValidCounterName(bad); err == nil || !strings.Contains(err.Error(), "must be a DNS label") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

func TestValidQuantity(t *testing.T) {
	for _, ok := range []string{"0", "1", "40Gi", "500m", "1.5", "-2", "+3k", ".5", "1.", "1e3", "1E-3", "2e+9", "1e64",
		"1e-64", "1e-0064", "7Ei", "10M", "00012", strings.Repeat("9", 62) + "Ki"} {
		if err := ValidQuantity(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for bad, want := range map[string]string{
		"":                      `quantity "" has no number`,
		"Gi":                    "has no number",
		"-":                     "has no number",
		".":                     "has no number",
		"1gi":                   `has suffix "gi"`,
		"1 Gi":                  `has suffix " Gi"`,
		"1KB":                   `has suffix "KB"`,
		"1e":                    `has suffix "e"`,
		"1e+":                   `has suffix "e+"`,
		"1e65":                  `has suffix "e65"`,
		"1.5e-2147483648":       "has suffix",
		strings.Repeat("9", 65): "is longer than 64 bytes",
		"1..2":                  "has suffix",
		"1Mi2":                  "has suffix",
	} {
		err := ValidQuantity(bad)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: got %v, want %q", bad, err, want)
		}
	}
}

func TestValidVersion(t *testing.T) {
	for _, ok := range []string{"0.0.0", "1.2.3", "10.20.30", "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-0.3.7", "1.0.0-x.7.z.92",
		"1.0.0+20130313144700", "1.0.0-beta+exp.sha.5114f85", "1.0.0-a-b--c", "1.0.0-0a", "1.0.0+001"} {
		if err := ValidVersion(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "1", "1.2", "v1.2.3", "01.2.3", "1.02.3", "1.2.03", "1.2.3-", "1.2.3+", "1.2.3-01",
		"1.2.3-a..b", "1.2.3-a_b", "1.2.3.4", "1.2.3 ", "1.2.3-" + strings.Repeat("a", 60)} {
		if err := ValidVersion(bad); err == nil || !strings.Contains(err.Error(), "is not a semantic version") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}
