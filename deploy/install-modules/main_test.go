package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestInstallsMissingKeepsPresent(t *testing.T) {
	src, dst := t.TempDir(), filepath.Join(t.TempDir(), "modules")
	os.WriteFile(filepath.Join(src, "a.wasm"), []byte("new a"), 0o644)
	os.WriteFile(filepath.Join(src, "b.wasm"), []byte("new b"), 0o644)
	os.WriteFile(filepath.Join(src, "README"), []byte("not a module"), 0o644)
	os.MkdirAll(dst, 0o755)
	os.WriteFile(filepath.Join(dst, "b.wasm"), []byte("operator's b"), 0o644)
	var out strings.Builder
	if err := run(src, dst, &out); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"a.wasm": "new a", "b.wasm": "operator's b"} {
		if b, _ := os.ReadFile(filepath.Join(dst, name)); string(b) != want {
			t.Errorf("%s: %q, want %q", name, b, want)
		}
	}
	entries, _ := os.ReadDir(dst)
	if len(entries) != 2 {
		t.Errorf("module directory holds %v", entries)
	}
	if !strings.Contains(out.String(), "installed "+filepath.Join(dst, "a.wasm")) || !strings.Contains(out.String(), "kept ") {
		t.Errorf("output %q", out.String())
	}
	if err := run(filepath.Join(src, "nope"), dst, &out); err == nil || !strings.Contains(err.Error(), "bundled modules") {
		t.Errorf("missing source: %v", err)
	}
}
