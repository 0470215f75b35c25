package module

import (
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"

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
		if fi, err := root.Stat(prefix); err != nil {
			out.close()
			return nil, fmt.Errorf("mount %s: %w", m, err)
		} else if !fi.IsDir() {
			out.close()
			return nil, fmt.Errorf("mount %s: %s is not a directory", m, m.Host)
		}
		if err := canOpenSafely(); err != nil {
			out.close()
			return nil, fmt.Errorf("mount %s: %w", m, err)
		}
		mfs := &mountFS{root: root, prefix: prefix, devices: m.Devices}
		mfs.AdaptFS = &sysfs.AdaptFS{FS: opener{mfs}}
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

// mountFS is one read-only mount as the module's WASI sees it. Files are
// read through wazero's adapter over the fs.FS opener, whose Open is
// mountFS.open; what that adapter does not do well is done here, on the
// root directly:
//
//   - opening never blocks and never opens what it refuses (see open):
//     only regular files and directories can be opened, and device nodes
//     (character or block) when the mount grants them (Mount.Devices) — a
//     module granted /dev to list it must not read a disk. A FIFO, whose
//     open would wait for a writer, or a socket, are refused;
//   - what is opened stays non-blocking, so a read that would wait (a
//     device with nothing to say, a pseudo-file like /proc/kmsg) fails
//     with EAGAIN instead of holding the call;
//   - stat and lstat do not open the file (the adapter opens it to stat it,
//     and opening some device nodes has side effects: a watchdog starts
//     counting, a serial line changes state);
//   - symbolic links can be read (pcisource, for one, learns a device's
//     driver that way), still confined to the root.
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

// opener is a mount as an fs.FS, for wazero's adapter: names are relative
// to the mount.
type opener struct{ m *mountFS }

func (o opener) Open(name string) (fs.File, error) { return o.m.open(name) }

// allowed refuses to open what is not a regular file, a directory, or a
// device node on a mount that grants them.
func (m *mountFS) allowed(name string, fi fs.FileInfo) error {
	switch t := fi.Mode().Type(); {
	case t == 0, t == fs.ModeDir:
		return nil
	case t&fs.ModeDevice != 0 && m.devices:
		return nil
	}
	return &fs.PathError{Op: "open", Path: name, Err: syscall.EACCES}
}
