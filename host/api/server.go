package api

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	podresourcesv1 "k8s.io/kubelet/pkg/apis/podresources/v1"

	"github.com/wasmlet/wasmlet/host/api/adminpb"
)

// maxSocketPath is the longest path a unix socket can be bound at on Linux
// (sun_path holds 108 bytes, including the terminating NUL).
const maxSocketPath = 107

// shutdownGrace is how long calls in flight may take to finish once Serve's
// context is done.
const shutdownGrace = 5 * time.Second

// Serve serves the admin and pod resources v1 services over b on a unix
// socket at socketPath until ctx is done, then stops, letting calls in
// flight finish for a few seconds, and removes the socket. It returns nil
// after a clean shutdown, or why it could not serve: the socket's directory
// is unsafe or cannot be created, another process serves at socketPath, the
// path is too long.
func Serve(ctx context.Context, socketPath string, b Backend, log hclog.Logger) error {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	lis, err := listen(socketPath)
	if err != nil {
		return err
	}
	// The socket as created, to remove it on the way out only if no one
	// replaced it meanwhile.
	created, err := os.Lstat(socketPath)
	if err != nil {
		lis.Close()
		return fmt.Errorf("host API socket %s: %w", socketPath, err)
	}
	srv := grpc.NewServer()
	adminpb.RegisterAdminServer(srv, &admin{b: b, log: log})
	podresourcesv1.RegisterPodResourcesListerServer(srv, &podResources{b: b})

	done := make(chan error, 1)
	go func() { done <- srv.Serve(lis) }()
	log.Info("host API listening", "socket", socketPath)

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-done:
	}
	// New clients find no socket at once; those connected get a moment.
	if fi, err := os.Lstat(socketPath); err == nil && os.SameFile(fi, created) {
		if err := os.Remove(socketPath); err != nil {
			log.Warn("could not remove the host API socket", "socket", socketPath, "error", err)
		}
	}
	stopped := make(chan struct{})
	go func() { srv.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(shutdownGrace):
		log.Warn("host API calls still running at shutdown; cancelling them", "after", shutdownGrace)
		srv.Stop()
		<-stopped
	}
	if serveErr != nil && !errors.Is(serveErr, grpc.ErrServerStopped) {
		return fmt.Errorf("host API on %s: %w", socketPath, serveErr)
	}
	log.Info("host API stopped", "socket", socketPath)
	return nil
}

// listen makes the socket's directory safe, binds the socket under a
// temporary name, restricts it to its owner and renames it into place.
func listen(path string) (*net.UnixListener, error) {
	if path == "" {
		return nil, errors.New("host API socket: no path given")
	}
	if len(path) > maxSocketPath {
		return nil, fmt.Errorf("host API socket %s: the path is %d bytes long; unix sockets allow at most %d", path, len(path), maxSocketPath)
	}
	dir := filepath.Dir(path)
	if err := secureDir(dir); err != nil {
		return nil, fmt.Errorf("host API socket %s: %w", path, err)
	}
	if err := checkStale(path); err != nil {
		return nil, fmt.Errorf("host API socket %s: %w", path, err)
	}
	// A short temporary name in the same directory: the rename is atomic,
	// and a name no longer than the final one's directory plus a few bytes
	// keeps within the length limit.
	tmp := filepath.Join(dir, ".wasmlet-api-"+strconv.Itoa(os.Getpid()))
	if len(tmp) > maxSocketPath {
		tmp = filepath.Join(dir, ".w"+strconv.Itoa(os.Getpid()%1000))
	}
	if fi, err := os.Lstat(tmp); err == nil && fi.Mode().Type() == fs.ModeSocket {
		os.Remove(tmp) // left by a crashed process that had our pid
	}
	lis, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("host API socket %s: %w", path, err)
	}
	lis.SetUnlinkOnClose(false)
	fail := func(err error) (*net.UnixListener, error) {
		lis.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("host API socket %s: %w", path, err)
	}
	if err := os.Chmod(tmp, 0o600); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fail(err)
	}
	return lis, nil
}

// secureDir creates dir with mode 0700 if it is missing, and otherwise
// refuses it if someone other than its owner may write it, or if its owner
// is neither root nor this process's user: either could replace the socket.
func secureDir(dir string) error {
	fi, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("creating its directory: %w", err)
		}
		return nil
	}
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	if perm := fi.Mode().Perm(); perm&0o022 != 0 {
		return fmt.Errorf("directory %s is writable by group or others (mode %04o), who could replace the socket; "+
			"use a directory only its owner can write (such as /run/wasmlet, created with mode 0700 if missing), or chmod go-w %s",
			dir, perm, dir)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != 0 && int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("directory %s belongs to user %d, not to root or to this process's user (%d), and its owner could replace the socket",
			dir, st.Uid, os.Geteuid())
	}
	return nil
}

// checkStale accepts a missing path or a stale socket (one nobody listens
// on: a crashed host's), which the new socket replaces. A socket someone
// listens on, or a file that is not a socket, is an error.
func checkStale(path string) error {
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
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("another process is serving on %s (is another wasmlet running?)", path)
	}
	return nil
}
