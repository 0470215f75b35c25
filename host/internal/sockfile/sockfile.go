// Package sockfile is how the host treats the unix socket files it serves
// on and beside: whether the socket at a path is live (another process
// accepts connections on it) or stale (left by a process that is gone), and
// clearing a directory of its sockets at start, as the kubelet clears its
// device-plugin directory.
package sockfile

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"time"
)

// ErrLive is the error of CheckStale for a socket another process serves.
var ErrLive = errors.New("another process is serving")

// CheckStale accepts a missing path or a stale socket (one nobody accepts
// on: a crashed host's), which a new socket may replace. A socket someone
// accepts on (ErrLive), or a file that is not a socket, is an error naming
// the path.
func CheckStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("%s exists and is not a socket (%s); not replacing it", path, fi.Mode().Type())
	}
	if Live(path) {
		return fmt.Errorf("%w on %s", ErrLive, path)
	}
	return nil
}

// Live reports whether a process accepts connections on the socket at path.
func Live(path string) bool {
	c, err := net.DialTimeout("unix", path, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// Clear removes every socket in dir, as the kubelet's device manager does
// with its device-plugin directory when it starts (CleanupPluginDirectory in
// k8s.io/kubernetes/pkg/kubelet/cm/devicemanager): an entry is removed when
// it is a socket or a symbolic link to one (the link is removed);
// directories, regular files and anything it cannot stat are left alone.
// Device plugins that watch their socket take its removal as the sign to
// register again. Clear returns the names it removed, and every removal
// that failed, joined.
func Clear(dir string) (removed []string, err error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, e := range entries {
		path := filepath.Join(dir, e.Name())
		fi, err := os.Stat(path)
		if err != nil || fi.IsDir() || fi.Mode().Type() != fs.ModeSocket {
			continue
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, e.Name())
	}
	return removed, errors.Join(errs...)
}
