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
	for _, s := range []string{"example.com/gpu", "a/b", "kubernetes.io/x", "", "/", "0000:00:1f.6", "hostpath.csi.k8s.io", "x.y/" + strings.Repeat("z", 70)} {
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
