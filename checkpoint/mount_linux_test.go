package checkpoint

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
)

// inPrivateMount mounts a tmpfs of the given size on a new directory, calls
// prepare to fill it, remounts it read-only if readOnly, then calls check.
// The mount is made in a private mount namespace of one OS thread, so no
// other thread, process or test sees it, and it disappears with the thread.
// It needs CAP_SYS_ADMIN; without it the test fails, since it cannot show
// what it is meant to.
func inPrivateMount(t *testing.T, size string, readOnly bool, prepare func(dir string) error, check func(dir string, errorf func(string, ...any))) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	setup := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Never unlocked: when this goroutine returns, its thread exits and
		// takes the namespace and the mount with it.
		runtime.LockOSThread()
		if err := syscall.Unshare(syscall.CLONE_NEWNS); err != nil {
			setup <- fmt.Errorf("unshare the mount namespace: %w", err)
			return
		}
		if err := syscall.Mount("", "/", "", syscall.MS_REC|syscall.MS_PRIVATE, ""); err != nil {
			setup <- fmt.Errorf("make mounts private: %w", err)
			return
		}
		if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, "mode=0755,size="+size); err != nil {
			setup <- fmt.Errorf("mount a tmpfs on %s: %w", dir, err)
			return
		}
		if err := prepare(dir); err != nil {
			setup <- fmt.Errorf("prepare %s: %w", dir, err)
			return
		}
		if readOnly {
			if err := syscall.Mount("", dir, "", syscall.MS_REMOUNT|syscall.MS_RDONLY|syscall.MS_NOSUID|syscall.MS_NODEV, ""); err != nil {
				setup <- fmt.Errorf("remount %s read-only: %w", dir, err)
				return
			}
		}
		setup <- nil
		check(dir, t.Errorf)
	}()
	if err := <-setup; err != nil {
		t.Fatalf("cannot set up a private tmpfs (this test needs CAP_SYS_ADMIN when run as root): %v", err)
	}
	<-done
}
