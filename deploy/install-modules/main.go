// Command install-modules puts the WebAssembly modules bundled in the
// wasmlet image into the node's module directory. It is the DaemonSet's
// init container (deploy/daemonset.yaml): wasmlet refuses to start on a
// plugins.toml naming a module that is not in its module directory, and a
// new node's directory is empty.
//
//	install-modules SRC DST
//
// Every *.wasm file of SRC missing from DST is copied there atomically (a
// hidden temporary file in DST, synced, renamed into place, DST synced), so
// that a wasmlet watching DST never sees half a module. A module already in
// DST is left alone: the node's operator may have replaced it on purpose.
// The image has no shell, hence a program rather than cp -n.
package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/wasmlet/wasmlet/internal/atomicfile"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: install-modules SRC DST")
		os.Exit(2)
	}
	if err := run(os.Args[1], os.Args[2], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "install-modules:", err)
		os.Exit(1)
	}
}

func run(src, dst string, out io.Writer) error {
	entries, err := os.ReadDir(src)
	if err != nil {
		return fmt.Errorf("bundled modules: %w", err)
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return fmt.Errorf("module directory: %w", err)
	}
	var errs []error
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() || !strings.HasSuffix(name, ".wasm") || strings.HasPrefix(name, ".") {
			continue
		}
		target := filepath.Join(dst, name)
		if _, err := os.Lstat(target); err == nil {
			fmt.Fprintf(out, "kept %s (already on the node)\n", target)
			continue
		} else if !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
			continue
		}
		if err := install(filepath.Join(src, name), target); err != nil {
			errs = append(errs, err)
			continue
		}
		fmt.Fprintf(out, "installed %s\n", target)
	}
	return errors.Join(errs...)
}

// install copies src to dst atomically and durably (atomicfile).
func install(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := atomicfile.Copy(dst, in, 0o644, nil); err != nil {
		return fmt.Errorf("install %s: %w", dst, err)
	}
	return nil
}
