package module

import (
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/tetratelabs/wazero"
	experimentalsys "github.com/tetratelabs/wazero/experimental/sys"
	"github.com/tetratelabs/wazero/experimental/sysfs"
	wazerosys "github.com/tetratelabs/wazero/sys"
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
		prefix, _ := filepath.Rel(rootDir, m.Host)
		prefix = filepath.ToSlash(prefix)
		fsys := root.FS()
		if prefix != "." {
			if fsys, err = fs.Sub(fsys, prefix); err != nil {
				out.close()
				return nil, fmt.Errorf("mount %s: %w", m, err)
			}
		}
		if fi, err := root.Stat(prefix); err != nil {
			out.close()
			return nil, fmt.Errorf("mount %s: %w", m, err)
		} else if !fi.IsDir() {
			out.close()
			return nil, fmt.Errorf("mount %s: %s is not a directory", m, m.Host)
		}
		mfs := &mountFS{AdaptFS: &sysfs.AdaptFS{FS: fsys}, root: root, prefix: prefix, devices: m.Devices}
		out.config = out.config.(sysfs.FSConfig).WithSysFSMount(&sysfs.ReadFS{FS: mfs}, m.Guest)
	}
	return out, nil
}

func (m *mounts) close() {
	for _, r := range m.roots {
		r.Close()
	}
	m.roots = nil
}

// mountFS is one read-only mount as the module's WASI sees it. Reads go
// through wazero's adapter over os.Root's file system; what that adapter
// does not do well is done here, on the root directly:
//
//   - stat and lstat do not open the file (the adapter opens it to stat it,
//     and opening some device nodes has side effects: a watchdog starts
//     counting, a serial line changes state);
//   - symbolic links can be read (pcisource, for one, learns a device's
//     driver that way), still confined to the root;
//   - device nodes (character or block) cannot be opened unless the mount
//     grants it (Mount.Devices): a module granted /dev to list it must not
//     read a disk.
type mountFS struct {
	*sysfs.AdaptFS
	root    *os.Root
	prefix  string // the mount's directory within the root, "." for the root itself
	devices bool
}

// rel is the root-relative name of a path within the mount.
func (m *mountFS) rel(p string) string {
	p = strings.TrimPrefix(path.Clean("/"+p), "/")
	if p == "" {
		return m.prefix
	}
	if m.prefix == "." {
		return p
	}
	return m.prefix + "/" + p
}

func (m *mountFS) Stat(p string) (wazerosys.Stat_t, experimentalsys.Errno) {
	fi, err := m.root.Stat(m.rel(p))
	if err != nil {
		return wazerosys.Stat_t{}, experimentalsys.UnwrapOSError(err)
	}
	return wazerosys.NewStat_t(fi), 0
}

func (m *mountFS) Lstat(p string) (wazerosys.Stat_t, experimentalsys.Errno) {
	fi, err := m.root.Lstat(m.rel(p))
	if err != nil {
		return wazerosys.Stat_t{}, experimentalsys.UnwrapOSError(err)
	}
	return wazerosys.NewStat_t(fi), 0
}

func (m *mountFS) Readlink(p string) (string, experimentalsys.Errno) {
	target, err := m.root.Readlink(m.rel(p))
	if err != nil {
		return "", experimentalsys.UnwrapOSError(err)
	}
	return target, 0
}

func (m *mountFS) OpenFile(p string, flag experimentalsys.Oflag, perm fs.FileMode) (experimentalsys.File, experimentalsys.Errno) {
	if !m.devices {
		if fi, err := m.root.Stat(m.rel(p)); err == nil && fi.Mode()&fs.ModeDevice != 0 {
			return nil, experimentalsys.EACCES
		}
	}
	return m.AdaptFS.OpenFile(p, flag, perm)
}
