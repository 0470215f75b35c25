package node

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// LockFile is the file in the state directory that a running host holds an
// exclusive lock on (flock), so that a second `wasmlet run` on the same
// state refuses to start before it touches anything. It holds the pid of
// the host that holds it, for the message.
const LockFile = "wasmlet.lock"

// ErrLocked is the error of a start refused because another host holds the
// state directory.
var ErrLocked = errors.New("another wasmlet is running on this state directory")

// stateLock is the lock on a state directory, held until release.
type stateLock struct{ f *os.File }

// lockState takes the exclusive lock on dir's LockFile without waiting. The
// lock belongs to the open file, so it goes with the process however it
// ends; a stale lock file left by a host that crashed is simply taken.
func lockState(dir string) (*stateLock, error) {
	path := filepath.Join(dir, LockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("state directory: lock %s: %w", path, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		b := make([]byte, 32)
		n, _ := f.ReadAt(b, 0)
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			who := "another process"
			if pid, perr := strconv.Atoi(strings.TrimSpace(string(b[:n]))); perr == nil && pid > 0 {
				who = "process " + strconv.Itoa(pid)
			}
			return nil, fmt.Errorf("%w: %s holds the lock on %s; not starting, and nothing was changed (stop that one first, or give this one another host.state_dir)",
				ErrLocked, who, path)
		}
		return nil, fmt.Errorf("state directory: lock %s: %w", path, err)
	}
	// The pid is only for the message of a host refused: a full disk that
	// keeps it from being written does not stop this one.
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &stateLock{f: f}, nil
}

// release lets another host start on the state directory. The file stays
// (removing it would race with a host locking it).
func (l *stateLock) release() {
	if l == nil || l.f == nil {
		return
	}
	l.f.Close()
	l.f = nil
}
