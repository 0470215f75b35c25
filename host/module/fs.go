package module

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/tetratelabs/wazero"
)

// mounts holds the open roots behind a module's read-only mounts.
type mounts struct {
	config wazero.FSConfig
	roots  []*os.Root
}

// openMounts opens every mount with os.Root, so that a module cannot leave a
// mount through "..", an absolute symbolic link or a relative one: paths are
// resolved by the kernel relative to the root directory and refused when they
// would escape it. The file systems are read-only.
func openMounts(ms []Mount) (*mounts, error) {
	out := &mounts{config: wazero.NewFSConfig()}
	for _, m := range ms {
		if err := m.Validate(); err != nil {
			out.close()
			return nil, err
		}
		rootDir := m.Root
		if rootDir == "" {
			rootDir = m.Host
		}
		root, err := os.OpenRoot(rootDir)
		if err != nil {
			out.close()
			return nil, fmt.Errorf("mount %s: %w", m, err)
		}
		out.roots = append(out.roots, root)
		fsys := root.FS()
		if rel, _ := filepath.Rel(rootDir, m.Host); rel != "." {
			if fsys, err = fs.Sub(fsys, filepath.ToSlash(rel)); err != nil {
				out.close()
				return nil, fmt.Errorf("mount %s: %w", m, err)
			}
			if _, err := fs.Stat(fsys, "."); err != nil {
				out.close()
				return nil, fmt.Errorf("mount %s: %w", m, err)
			}
		}
		out.config = out.config.WithFSMount(fsys, m.Guest)
	}
	return out, nil
}

func (m *mounts) close() {
	for _, r := range m.roots {
		r.Close()
	}
	m.roots = nil
}
