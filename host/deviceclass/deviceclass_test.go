package deviceclass_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/wasmlet/wasmlet/host/allocator"
	"github.com/wasmlet/wasmlet/host/deviceclass"
)

const gpu = `apiVersion: resource.k8s.io/v1
kind: DeviceClass
metadata:
  name: gpu.example.com
spec:
  selectors:
  - cel:
      expression: device.driver == "gpu.example.com"
`

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) { os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644) }
	write("gpu.yaml", gpu+"---\n# a comment only\n---\n"+strings.ReplaceAll(gpu, "name: gpu.example.com", "name: mig.example.com"))
	write("README.md", "not a class")
	got, err := deviceclass.Load(dir, allocator.NewCELCache())
	if err != nil || len(got) != 2 || got[0].Name != "gpu.example.com" || got[1].Name != "mig.example.com" {
		t.Fatalf("%v %v", got, err)
	}
	write("bad.yaml", strings.ReplaceAll(gpu, `device.driver == "gpu.example.com"`, `device.driver ==`)+"---\nkind: DeviceClass\nfoo: 1\n")
	write("dup.json", `{"apiVersion":"resource.k8s.io/v1","kind":"DeviceClass","metadata":{"name":"gpu.example.com"}}`)
	_, err = deviceclass.Load(dir, allocator.NewCELCache())
	for _, want := range []string{
		filepath.Join(dir, "bad.yaml") + `: document 1: device class "gpu.example.com": spec.selectors[0].cel.expression: compilation failed`,
		filepath.Join(dir, "bad.yaml") + `: document 2: unknown field "foo"`,
		filepath.Join(dir, "gpu.yaml") + `: device class "gpu.example.com" is defined in ` + filepath.Join(dir, "dup.json") + ` too`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("the errors\n%v\ndo not say\n%s", err, want)
		}
	}
	if got, err := deviceclass.Load(filepath.Join(dir, "none"), allocator.NewCELCache()); got != nil || err != nil {
		t.Errorf("no directory: %v %v", got, err)
	}
}

// A named pipe or an oversized file among the class files is an error that
// names it, and never blocks the node's start: opening a pipe for reading
// waits for a writer.
func TestLoadRefusesWhatIsNotAClassFile(t *testing.T) {
	dir := t.TempDir()
	if err := syscall.Mkfifo(filepath.Join(dir, "pipe.yaml"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "big.yaml"), make([]byte, deviceclass.MaxFileSize+1), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := deviceclass.Load(dir, allocator.NewCELCache())
	for _, want := range []string{
		filepath.Join(dir, "pipe.yaml") + ": it is a named pipe, not a regular file",
		filepath.Join(dir, "big.yaml") + fmt.Sprintf(": it is %d bytes, more than the limit of %d", deviceclass.MaxFileSize+1, deviceclass.MaxFileSize),
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("the errors\n%v\ndo not say\n%s", err, want)
		}
	}
}
