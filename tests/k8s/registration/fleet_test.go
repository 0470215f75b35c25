package registration

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// pluginBinary is exampleplugin and stubBinary stubplugin, built once by
// TestMain into binDir, which goes when TestMain ends.
var pluginBinary, stubBinary, binDir string

// Upstream example plugins, one per process, shared by every test and
// benchmark of the package (started on first use, stopped by TestMain).
const fleetSize = 50

var (
	fleetOnce   sync.Once
	sharedFleet *fleet
	fleetErr    error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "k8sreg")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	pluginBinary = filepath.Join(dir, "exampleplugin")
	stubBinary = filepath.Join(dir, "stubplugin")
	for _, bin := range []string{pluginBinary, stubBinary} {
		// Built with the test binary's own flags, so that it reuses the
		// packages the test binary was compiled from: only the link is new.
		args := []string{"build", "-o", bin}
		if raceEnabled {
			args = append(args, "-race")
		}
		cmd := exec.Command("go", append(args, "./"+filepath.Base(bin))...)
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "building %s: %v\n%s", filepath.Base(bin), err, out)
			os.Exit(1)
		}
	}
	code := m.Run()
	if sharedFleet != nil {
		sharedFleet.close()
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// plugins returns the shared fleet of example plugin processes, none of
// them serving.
func plugins(tb testing.TB) *fleet {
	tb.Helper()
	fleetOnce.Do(func() { sharedFleet, fleetErr = startFleet(fleetSize) })
	if fleetErr != nil {
		tb.Fatal(fleetErr)
	}
	return sharedFleet
}

// fleet is a set of exampleplugin processes.
type fleet struct {
	procs []*proc
}

// proc is one exampleplugin process, driven through its standard input.
type proc struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	events chan event
	stderr *bytes.Buffer
}

// event is a line exampleplugin printed.
type event struct {
	kind   string // serving, status, stopped, error
	name   string
	status status
	text   string
}

// status is what a plugin was told by NotifyRegistrationStatus.
type status struct {
	name       string
	registered bool
	after      time.Duration // since the plugin's socket was created
	reason     string
}

func startFleet(n int) (*fleet, error) {
	f := &fleet{}
	for range n {
		p, err := startProc()
		if err != nil {
			f.close()
			return nil, err
		}
		f.procs = append(f.procs, p)
	}
	return f, nil
}

func startProc() (*proc, error) {
	cmd := exec.Command(pluginBinary)
	p := &proc{cmd: cmd, events: make(chan event, 16), stderr: &bytes.Buffer{}}
	cmd.Stderr = p.stderr
	var err error
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting exampleplugin: %w", err)
	}
	go func() {
		defer close(p.events)
		in := bufio.NewScanner(stdout)
		for in.Scan() {
			p.events <- parseEvent(in.Text())
		}
	}()
	return p, nil
}

func parseEvent(line string) event {
	f := strings.SplitN(line, " ", 5)
	e := event{kind: f[0], text: line}
	if len(f) > 1 {
		e.name = f[1]
	}
	if e.kind == "status" && len(f) == 5 {
		ns, _ := strconv.ParseInt(f[3], 10, 64)
		reason, _ := strconv.Unquote(f[4])
		e.status = status{name: f[1], registered: f[2] == "true", after: time.Duration(ns), reason: reason}
	}
	return e
}

func (p *proc) send(tb testing.TB, line string) {
	tb.Helper()
	if _, err := io.WriteString(p.stdin, line+"\n"); err != nil {
		tb.Fatalf("exampleplugin %q: %v (stderr: %s)", line, err, p.stderr)
	}
}

// next waits for the process's next line.
func (p *proc) next(tb testing.TB, what string, timeout time.Duration) event {
	tb.Helper()
	select {
	case e, ok := <-p.events:
		if !ok {
			tb.Fatalf("exampleplugin exited while waiting for %s (stderr: %s)", what, p.stderr)
		}
		if e.kind == "error" {
			tb.Fatalf("exampleplugin: %s", e.text)
		}
		return e
	case <-time.After(timeout):
		tb.Fatalf("exampleplugin: no %s within %v", what, timeout)
	}
	panic("unreachable")
}

// serve has processes first, first+1, ... each serve one example plugin,
// names[i] on dir/names[i].sock, all at once, and waits until every socket
// exists.
func (f *fleet) serve(tb testing.TB, dir string, first int, names []string) {
	tb.Helper()
	if first+len(names) > len(f.procs) {
		tb.Fatalf("%d plugins asked of a fleet of %d", first+len(names), len(f.procs))
	}
	for i, name := range names {
		f.procs[first+i].send(tb, "serve "+name+" "+filepath.Join(dir, name+".sock"))
	}
	for i, name := range names {
		f.next(tb, first+i, "serving", name)
	}
}

// status waits for the next registration status the plugin name, served
// by process i, hears.
func (f *fleet) status(tb testing.TB, i int, name string) status {
	tb.Helper()
	return f.next(tb, i, "status", name).status
}

// next waits for process i to say kind about the plugin name, skipping what
// it says about plugins it served before.
func (f *fleet) next(tb testing.TB, i int, kind, name string) event {
	tb.Helper()
	for {
		e := f.procs[i].next(tb, kind+" "+name, time.Minute)
		if e.kind == kind && e.name == name {
			return e
		}
		if e.name == name {
			tb.Fatalf("exampleplugin: %s, expected %s", e.text, kind)
		}
	}
}

// heard reports whether process i has heard anything it has not yet said.
func (f *fleet) heard(i int) (event, bool) {
	select {
	case e := <-f.procs[i].events:
		return e, true
	default:
		return event{}, false
	}
}

// stop stops every plugin the first n processes serve; their sockets are
// removed. Statuses heard meanwhile are dropped.
func (f *fleet) stop(tb testing.TB, n int) {
	tb.Helper()
	for _, p := range f.procs[:n] {
		p.send(tb, "stop")
	}
	for _, p := range f.procs[:n] {
		for e := p.next(tb, "stopped", time.Minute); e.kind != "stopped"; e = p.next(tb, "stopped", time.Minute) {
		}
	}
}

func (f *fleet) close() {
	for _, p := range f.procs {
		p.stdin.Close()
	}
	for _, p := range f.procs {
		p.cmd.Wait()
	}
}
