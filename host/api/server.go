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
	podresourcesv1alpha1 "k8s.io/kubelet/pkg/apis/podresources/v1alpha1"

	"github.com/wasmlet/wasmlet/host/api/adminpb"
	"github.com/wasmlet/wasmlet/host/internal/sockfile"
)

// maxSocketPath is the longest path a unix socket can be bound at on Linux
// (sun_path holds 108 bytes, including the terminating NUL).
const maxSocketPath = 107

// shutdownGrace is how long calls in flight may take to finish once Serve's
// context is done.
const shutdownGrace = 5 * time.Second

// Config says where the API is served.
type Config struct {
	// AdminSocket serves the admin service: mode 0600, in a directory of
	// mode 0700.
	AdminSocket string
	// PodResourcesSocket serves the kubelet's pod resources v1 and
	// v1alpha1 services, which only read: mode 0660, in a directory of
	// mode 0750 at most, so that a monitoring agent in the directory's
	// group can be let in without getting the admin service.
	PodResourcesSocket string
	Backend            Backend
	Logger             hclog.Logger
}

// socketKind is what a socket serves, and the modes it needs.
type socketKind struct {
	what     string      // in messages: "admin API socket"
	key      string      // its plugins.toml key
	dirPerm  fs.FileMode // the widest mode its directory may have
	sockPerm fs.FileMode // the socket's mode
}

var (
	adminSocket        = socketKind{"admin API socket", "host.api_socket", 0o700, 0o600}
	podResourcesSocket = socketKind{"pod resources socket", "host.pod_resources_socket", 0o750, 0o660}
)

// Serve serves the admin service and the pod resources services, each on
// its own unix socket, until ctx is done, then stops, letting calls in
// flight finish for a few seconds, and removes the sockets. It returns nil
// after a clean shutdown, or why it could not serve: a socket's directory
// is unsafe or cannot be created, another process serves at a socket's
// path, a path is too long.
func Serve(ctx context.Context, cfg Config) error {
	log := cfg.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	adm := grpc.NewServer()
	adminpb.RegisterAdminServer(adm, &admin{b: cfg.Backend, log: log})
	pr := grpc.NewServer()
	podresourcesv1.RegisterPodResourcesListerServer(pr, &podResources{b: cfg.Backend})
	podresourcesv1alpha1.RegisterPodResourcesListerServer(pr, &podResourcesV1alpha1{b: cfg.Backend})

	var servers []*served
	stop := func() {
		for _, s := range servers {
			s.stop(log)
		}
	}
	for _, s := range []*served{
		{kind: adminSocket, path: cfg.AdminSocket, srv: adm},
		{kind: podResourcesSocket, path: cfg.PodResourcesSocket, srv: pr},
	} {
		if err := s.listen(log); err != nil {
			stop()
			return err
		}
		servers = append(servers, s)
	}
	failed := make(chan error, len(servers))
	for _, s := range servers {
		go func() {
			if err := s.srv.Serve(s.lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
				failed <- fmt.Errorf("%s %s: %w", s.kind.what, s.path, err)
			}
		}()
		log.Info(s.kind.what+" listening", "socket", s.path)
	}
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-failed:
	}
	stop()
	if serveErr != nil {
		return serveErr
	}
	log.Info("host API stopped")
	return nil
}

// served is one socket and its server.
type served struct {
	kind socketKind
	path string
	srv  *grpc.Server
	lis  *net.UnixListener
	// created is the socket as created, to remove it on the way out only
	// if no one replaced it meanwhile.
	created fs.FileInfo
}

func (s *served) listen(log hclog.Logger) error {
	lis, err := listen(s.kind, s.path, log)
	if err != nil {
		return err
	}
	created, err := os.Lstat(s.path)
	if err != nil {
		lis.Close()
		return fmt.Errorf("%s %s: %w", s.kind.what, s.path, err)
	}
	s.lis, s.created = lis, created
	return nil
}

// stop removes the socket, so that new clients find none at once, then
// gives the calls in flight a moment.
func (s *served) stop(log hclog.Logger) {
	if fi, err := os.Lstat(s.path); err == nil && os.SameFile(fi, s.created) {
		if err := os.Remove(s.path); err != nil {
			log.Warn("could not remove the "+s.kind.what, "socket", s.path, "error", err)
		}
	}
	stopped := make(chan struct{})
	go func() { s.srv.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(shutdownGrace):
		log.Warn("calls still running at shutdown; cancelling them", "socket", s.path, "after", shutdownGrace)
		s.srv.Stop()
		<-stopped
	}
	s.lis.Close()
}

// listen makes the socket's directory safe, binds the socket under a
// temporary name, restricts it and renames it into place.
func listen(k socketKind, path string, log hclog.Logger) (*net.UnixListener, error) {
	if path == "" {
		return nil, fmt.Errorf("%s: no path given (%s)", k.what, k.key)
	}
	if len(path) > maxSocketPath {
		return nil, fmt.Errorf("%s %s: the path is %d bytes long; unix sockets allow at most %d", k.what, path, len(path), maxSocketPath)
	}
	dir := filepath.Dir(path)
	if err := secureDir(k, dir, log); err != nil {
		return nil, fmt.Errorf("%s %s: %w", k.what, path, err)
	}
	if err := sockfile.CheckStale(path); err != nil {
		if errors.Is(err, sockfile.ErrLive) {
			err = fmt.Errorf("%w (is another wasmlet running?)", err)
		}
		return nil, fmt.Errorf("%s %s: %w", k.what, path, err)
	}
	// A short temporary name in the same directory: the rename is atomic,
	// and a name no longer than the final one's directory plus a few bytes
	// keeps within the length limit.
	tmp := filepath.Join(dir, tmpPrefix+strconv.Itoa(os.Getpid()))
	if len(tmp) > maxSocketPath {
		tmp = filepath.Join(dir, ".w"+strconv.Itoa(os.Getpid()%1000))
	}
	if fi, err := os.Lstat(tmp); err == nil && fi.Mode().Type() == fs.ModeSocket {
		os.Remove(tmp) // left by a crashed process that had our pid
	}
	lis, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", k.what, path, err)
	}
	lis.SetUnlinkOnClose(false)
	fail := func(err error) (*net.UnixListener, error) {
		lis.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("%s %s: %w", k.what, path, err)
	}
	if err := os.Chmod(tmp, k.sockPerm); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fail(err)
	}
	return lis, nil
}

const tmpPrefix = ".wasmlet-api-"

// secureDir creates dir with mode k.dirPerm if it is missing. An existing
// directory must belong to root or to this process's user (its owner could
// replace the socket), and allow no more than k.dirPerm: a wider one is
// tightened when it is wasmlet's own — it belongs to this process's user
// and holds nothing but sockets — and refused otherwise, with what to do.
func secureDir(k socketKind, dir string, log hclog.Logger) error {
	fi, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, k.dirPerm); err != nil {
			return fmt.Errorf("creating its directory: %w", err)
		}
		// MkdirAll's mode is masked by the umask: say it exactly.
		if err := os.Chmod(dir, k.dirPerm); err != nil {
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
	st, _ := fi.Sys().(*syscall.Stat_t)
	if st != nil && st.Uid != 0 && int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("directory %s belongs to user %d, not to root or to this process's user (%d), and its owner could replace the socket",
			dir, st.Uid, os.Geteuid())
	}
	perm := fi.Mode().Perm()
	if perm&^k.dirPerm == 0 {
		return nil
	}
	why := "belongs to another user"
	if st == nil || int(st.Uid) == os.Geteuid() {
		other := notSocket(dir)
		if other == "" {
			if err := os.Chmod(dir, perm&k.dirPerm); err != nil {
				return fmt.Errorf("directory %s has mode %04o, wider than %04o, and cannot be tightened: %w", dir, perm, k.dirPerm, err)
			}
			log.Warn("tightened the mode of the "+k.what+"'s directory", "dir", dir, "was", fmt.Sprintf("%04o", perm),
				"now", fmt.Sprintf("%04o", perm&k.dirPerm))
			return nil
		}
		why = "holds other files (" + other + ")"
	}
	return fmt.Errorf("directory %s has mode %04o, wider than the %04o this socket needs (%s), and %s, so wasmlet leaves it alone: "+
		"give %s a directory of its own (created with mode %04o when missing), or run chmod %04o %s",
		dir, perm, k.dirPerm, whoCouldReach(perm&^k.dirPerm), why, k.key, k.dirPerm, perm&k.dirPerm, dir)
}

// whoCouldReach says what the extra permission bits allow.
func whoCouldReach(extra fs.FileMode) string {
	if extra&0o022 != 0 {
		return "group or others could replace the socket"
	}
	return "group or others could reach the socket"
}

// notSocket names an entry of dir that is not a socket, or returns "".
func notSocket(dir string) string {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err.Error()
	}
	for _, e := range ents {
		if e.Type() != fs.ModeSocket {
			return e.Name()
		}
	}
	return ""
}
