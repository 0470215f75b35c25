package docs

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestReadmeNamesEveryPackage: README.md's table of packages ("How it
// works") links every package of the host, the checkpoint, the command and
// the repository's internal helpers, so that a package added without a
// place in the picture fails here. Left out: helpers internal to the host
// or to a package (…/internal/…), and protoc's generated packages (…pb).
func TestReadmeNamesEveryPackage(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "list", "-f", "{{.Dir}}", "./host/...", "./checkpoint/...", "./internal/...", "./cmd/...")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		t.Fatal(err)
	}
	var missing []string
	for dir := range strings.FieldsSeq(string(out)) {
		rel, err := filepath.Rel(abs, dir)
		if err != nil {
			t.Fatal(err)
		}
		rel = filepath.ToSlash(rel)
		parts := strings.Split(rel, "/")
		if slices.Contains(parts[1:], "internal") || strings.HasSuffix(rel, "pb") {
			continue
		}
		if !strings.Contains(string(readme), "]("+rel+")") {
			missing = append(missing, rel)
		}
	}
	if len(missing) > 0 {
		t.Errorf("README.md links no [..](path) for these packages; give each its place in the table under \"How it works\": %s", strings.Join(missing, ", "))
	}
}
