package module

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// maxLinks bounds the symbolic links open follows at the end of a path, as
// os.Root bounds those on the way.
const maxLinks = 8

// open opens name, a path within the mount, for reading. It never blocks,
// and never opens what it refuses:
//
//  1. the path is resolved within the root to an O_PATH descriptor, which
//     opens nothing (no FIFO waits for a writer, no device driver runs);
//  2. that descriptor is fstat'ed and what allowed refuses is refused;
//  3. what is allowed is reopened through /proc/self/fd — the same inode,
//     with no second lookup of the path, so nothing can be swapped in
//     between the check and the open — with O_NONBLOCK, and left
//     non-blocking so that no read can wait either.
func (m *mountFS) open(name string) (fs.File, error) {
	p, fi, err := m.resolve(m.rel(name))
	if err != nil {
		return nil, err
	}
	defer p.Close()
	if err := m.allowed(name, fi); err != nil {
		return nil, err
	}
	fd, err := unix.Open("/proc/self/fd/"+strconv.Itoa(int(p.Fd())), unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOCTTY|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	// os.NewFile registers a non-blocking descriptor with Go's poller, whose
	// reads then wait for data: hand it a blocking one, and make it
	// non-blocking behind its back, so that reads fail with EAGAIN instead.
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	f := os.NewFile(uintptr(fd), name)
	if err := unix.SetNonblock(fd, true); err != nil {
		f.Close()
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	return f, nil
}

// resolve opens rel, a path relative to the root, as an O_PATH descriptor,
// and stats it. os.Root follows symbolic links on the way, within the root,
// but not a last one (with O_PATH|O_NOFOLLOW the kernel opens the link
// itself): resolve follows those, within the root too.
func (m *mountFS) resolve(rel string) (*os.File, fs.FileInfo, error) {
	for links := 0; ; links++ {
		p, err := m.root.OpenFile(rel, unix.O_PATH, 0)
		if err != nil {
			return nil, nil, err
		}
		fi, err := p.Stat()
		if err != nil {
			p.Close()
			return nil, nil, err
		}
		if fi.Mode().Type() != fs.ModeSymlink {
			return p, fi, nil
		}
		p.Close()
		if links == maxLinks {
			return nil, nil, &fs.PathError{Op: "open", Path: rel, Err: unix.ELOOP}
		}
		target, err := m.root.Readlink(rel)
		if err != nil {
			return nil, nil, err
		}
		// Not cleaned: os.Root resolves "..", and links on the way, as the
		// kernel does. An absolute target makes os.Root refuse it, as it
		// refuses absolute links on the way.
		if path.IsAbs(target) {
			rel = target
		} else if i := strings.LastIndexByte(rel, '/'); i >= 0 {
			rel = rel[:i+1] + target
		} else {
			rel = target
		}
	}
}

// canOpenSafely checks that open can reopen descriptors through /proc.
func canOpenSafely() error {
	if _, err := os.Stat("/proc/self/fd"); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("files in mounts are opened through /proc/self/fd, and /proc is not mounted: %w", err)
		}
		return err
	}
	return nil
}
