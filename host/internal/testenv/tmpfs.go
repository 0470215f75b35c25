package testenv

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// tmpfsEnv tells a test process that it is the child InTmpfs started: its
// value is the test's name.
const tmpfsEnv = "WASMLET_TESTENV_TMPFS"

// InTmpfs gives a test a real file system of its own, of size bytes (a
// tmpfs size such as "1m"), to fill, so that writes fail as they do on a
// full disk (ENOSPC) — no fake. The mount needs a mount namespace, and a
// test must not need root: so InTmpfs runs the test again, alone, in a
// child process in new user and mount namespaces (no other process sees
// the mount, and it goes with the child), and there mounts the tmpfs and
// returns its directory. In the parent it waits for the child, copies its
// output into the log, fails the test if the child failed, and returns ""
// — the test then returns:
//
//	dir := testenv.InTmpfs(t, "1m")
//	if dir == "" {
//		return // the test ran in a child process
//	}
//
// Where namespaces cannot be made (a kernel or a sandbox that forbids
// them), the test is skipped, saying why. Only top-level tests can use it.
func InTmpfs(t *testing.T, size string) string {
	t.Helper()
	if strings.Contains(t.Name(), "/") {
		t.Fatalf("InTmpfs: %s is a subtest; only a top-level test can be run again alone", t.Name())
	}
	if os.Getenv(tmpfsEnv) == t.Name() {
		dir := filepath.Join(t.TempDir(), "tmpfs")
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		// Nothing mounted here reaches the parent's namespace.
		syscall.Mount("", "/", "", syscall.MS_REC|syscall.MS_PRIVATE, "")
		if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, "mode=0700,size="+size); err != nil {
			t.Fatalf("mount a tmpfs of %s on %s in the child's mount namespace: %v", size, dir, err)
		}
		t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
		return dir
	}
	cmd := exec.Command(os.Args[0], "-test.run=^"+t.Name()+"$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), tmpfsEnv+"="+t.Name())
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:                 syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS,
		UidMappings:                []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
		GidMappings:                []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
		GidMappingsEnableSetgroups: false,
	}
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		t.Logf("in a child process with a tmpfs of %s:\n%s", size, out)
	case errors.As(err, &ee):
		t.Fatalf("in a child process with a tmpfs of %s: %v\n%s", size, err, out)
	case errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EUSERS):
		t.Skipf("skipped: a private tmpfs needs user and mount namespaces, which this system refuses: %v", err)
	default:
		t.Fatal(fmt.Errorf("start the test again in a child process: %w", err))
	}
	return ""
}

// Fill writes a file in dir until its file system is full, and returns its
// path: removing it frees the space.
func Fill(t testing.TB, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 64<<10)
	for {
		_, err := f.Write(chunk)
		if errors.Is(err, syscall.ENOSPC) {
			break
		}
		if err != nil {
			t.Fatalf("fill %s: %v", dir, err)
		}
	}
	// What is left is less than a chunk: fill it a byte at a time.
	for {
		if _, err := f.Write(chunk[:1]); err != nil {
			break
		}
	}
	return path
}
