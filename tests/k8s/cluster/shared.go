package cluster

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"testing"
)

// StartShared starts a cluster for a whole test binary, from TestMain,
// where there is no test to own it: etcd and kube-apiserver take seconds to
// start, and a package's tests each want their own nodes, not their own
// control plane. stop stops it. A failure to start it, or to start it
// again after Stop, panics (the test binary fails).
//
// The tests sharing it run one after another, and keep to their own names
// (a Node, its ResourceSlices, claims by generated names); one that stops
// the API server starts it again before it ends.
func StartShared() (c *Cluster, stop func()) {
	tb := &mainTB{ctx: context.Background()}
	c = Start(tb)
	return c, tb.cleanup
}

// mainTB is the testing.TB of a cluster started from TestMain: cleanups
// run by stop, temporary directories of its own, and a fatal error a
// panic. The embedded TB is never set: it only carries testing.TB's
// unexported method; every method the cluster and upstream's test servers
// call is defined here.
type mainTB struct {
	testing.TB
	ctx      context.Context
	mu       sync.Mutex
	cleanups []func()
	failed   bool
}

func (t *mainTB) cleanup() {
	t.mu.Lock()
	fs := t.cleanups
	t.cleanups = nil
	t.mu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
}

func (t *mainTB) Cleanup(f func()) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.cleanups = append(t.cleanups, f)
}

func (t *mainTB) TempDir() string {
	d, err := os.MkdirTemp("", "cluster")
	if err != nil {
		panic(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func (t *mainTB) ArtifactDir() string { return t.TempDir() }
func (t *mainTB) Helper()             {}
func (t *mainTB) Name() string        { return "TestMain" }
func (t *mainTB) Attr(string, string) {}
func (t *mainTB) Log(...any)          {}
func (t *mainTB) Logf(string, ...any) {}
func (t *mainTB) Output() io.Writer   { return io.Discard }
func (t *mainTB) Context() context.Context {
	return t.ctx
}

func (t *mainTB) Error(args ...any) {
	t.Fail()
	fmt.Fprintln(os.Stderr, append([]any{"cluster:"}, args...)...)
}

func (t *mainTB) Errorf(format string, args ...any) {
	t.Fail()
	fmt.Fprintf(os.Stderr, "cluster: "+format+"\n", args...)
}

func (t *mainTB) Fail() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.failed = true
}

func (t *mainTB) Failed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.failed
}

func (t *mainTB) FailNow()                     { panic("cluster: failed") }
func (t *mainTB) Fatal(args ...any)            { panic(fmt.Sprint(append([]any{"cluster: "}, args...)...)) }
func (t *mainTB) Fatalf(f string, args ...any) { panic(fmt.Sprintf("cluster: "+f, args...)) }
func (t *mainTB) Skip(args ...any)             { t.Fatal(args...) }
func (t *mainTB) SkipNow()                     { t.FailNow() }
func (t *mainTB) Skipf(f string, args ...any)  { t.Fatalf(f, args...) }
func (t *mainTB) Skipped() bool                { return false }
func (t *mainTB) Setenv(k, v string)           { os.Setenv(k, v) }
func (t *mainTB) Chdir(dir string)             { os.Chdir(dir) }
