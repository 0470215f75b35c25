package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/wasmlet/wasmlet/internal/syncbuf"
	"github.com/wasmlet/wasmlet/internal/testkit"
)

// wasmlet is the command under test, built once by TestMain.
var wasmlet string

func TestMain(m *testing.M) { testkit.MainWithWasmlet(m, &wasmlet) }

// result is what one run of the command did.
type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\n--- stdout:\n%s--- stderr:\n%s", r.code, r.stdout, r.stderr)
}

// run runs wasmlet with args, without the caller's $WASMLET_SOCKET.
func run(t testing.TB, args ...string) result {
	t.Helper()
	return runWith(t, nil, args...)
}

// runWith runs wasmlet with args and the extra environment variables env.
func runWith(t testing.TB, env []string, args ...string) result {
	t.Helper()
	cmd := exec.Command(wasmlet, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.Env = append(append(os.Environ(), socketEnv+"="), env...)
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return r
}

// expect runs wasmlet and checks its exit code and that stdout and stderr
// contain the given strings: a string prefixed "stderr:" is looked for on
// stderr, and one prefixed "row:" is a table row, the words of a line of
// stdout (columns are separated by any number of spaces).
func expect(t testing.TB, code int, args []string, contains ...string) result {
	t.Helper()
	r := run(t, args...)
	if r.code != code {
		t.Fatalf("wasmlet %s: %v\nwant exit %d", strings.Join(args, " "), r, code)
	}
	for _, s := range contains {
		if cells, ok := strings.CutPrefix(s, "row:"); ok {
			if !hasRow(r.stdout, strings.Fields(cells)) {
				t.Fatalf("wasmlet %s: no row %q in\n%v", strings.Join(args, " "), cells, r)
			}
			continue
		}
		where, what := r.stdout, s
		if rest, ok := strings.CutPrefix(s, "stderr:"); ok {
			where, what = r.stderr, rest
		}
		if !strings.Contains(where, what) {
			t.Fatalf("wasmlet %s: no %q in\n%v", strings.Join(args, " "), s, r)
		}
	}
	return r
}

// hasRow reports whether a line of out starts with the given words.
func hasRow(out string, cells []string) bool {
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= len(cells) && strings.Join(f[:len(cells)], " ") == strings.Join(cells, " ") {
			return true
		}
	}
	return false
}

func decode(t testing.TB, r result, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(r.stdout), v); err != nil {
		t.Fatalf("output is not JSON (%v):\n%v", err, r)
	}
}

func TestUsage(t *testing.T) {
	r := expect(t, exitOK, []string{"--help"}, "Usage:", "module inspect FILE.wasm", "Exit status:",
		"3  cannot reach the host", "4  not found")
	if r.stderr != "" {
		t.Fatalf("help wrote to stderr: %v", r)
	}
	expect(t, exitOK, []string{"help"}, "Client commands")
	expect(t, exitUsage, nil, "stderr:Usage:")
	expect(t, exitUsage, []string{"frobnicate"}, `stderr:wasmlet: unknown command "frobnicate"`)
	expect(t, exitUsage, []string{"module"}, "stderr:wasmlet module needs a subcommand:", "stderr:module inspect FILE.wasm")
	expect(t, exitUsage, []string{"module", "explode"}, `stderr:needs a subcommand, not "explode"`)
	expect(t, exitUsage, []string{"--bogus", "status"}, "stderr:flag provided but not defined: -bogus")
	expect(t, exitUsage, []string{"status", "extra"}, `stderr:wasmlet status: takes no arguments; got "extra"`)
	expect(t, exitUsage, []string{"allocate", "example.com/gpu"}, "stderr:needs 2 argument(s), RESOURCE COUNT; got 1")
	expect(t, exitUsage, []string{"allocate", "--pod", "p", "example.com/gpu", "2"}, "stderr:--container is required")
	expect(t, exitUsage, []string{"allocate", "--pod", "p", "--container", "c", "example.com/gpu", "two"},
		`stderr:COUNT must be a whole number of devices, at least 1; got "two"`)
	expect(t, exitUsage, []string{"status", "-o", "yaml"}, `stderr:-o "yaml": the output format is table or json`)
	expect(t, exitOK, []string{"allocate", "--help"}, "Usage: wasmlet allocate [flags] RESOURCE COUNT",
		"--pod-uid", "Examples:", "Exit status:")
	expect(t, exitOK, []string{"help", "module", "inspect"}, "Usage: wasmlet module inspect")
	expect(t, exitOK, []string{"--version"}, "wasmlet ")
}

// TestHelpEverywhere: every command and every group of commands prints its
// help on stdout and exits 0, however help is asked for.
func TestHelpEverywhere(t *testing.T) {
	groups := map[string]bool{}
	for _, cmd := range commands() {
		words := strings.Fields(cmd.name)
		for _, h := range []string{"--help", "-h"} {
			r := expect(t, exitOK, append(append([]string{}, words...), h), "Usage: wasmlet "+cmd.name, "Exit status:")
			if r.stderr != "" {
				t.Errorf("wasmlet %s %s wrote to stderr: %v", cmd.name, h, r)
			}
		}
		expect(t, exitOK, append([]string{"help"}, words...), "Usage: wasmlet "+cmd.name)
		if cmd.alias != "" {
			expect(t, exitOK, []string{cmd.alias, "--help"}, "Usage: wasmlet "+cmd.name)
		}
		if len(words) == 2 {
			groups[words[0]] = true
		}
	}
	if len(groups) != 4 {
		t.Errorf("groups %v, want config, module, checkpoint and claim", groups)
	}
	for g := range groups {
		var subs []string
		for _, cmd := range subcommands(commands(), g) {
			subs = append(subs, "wasmlet "+cmd.name)
		}
		for _, args := range [][]string{{g, "--help"}, {g, "-h"}, {"help", g}} {
			r := expect(t, exitOK, args, append([]string{"Usage: wasmlet " + g + " SUBCOMMAND", "Exit status:"}, subs...)...)
			if r.stderr != "" {
				t.Errorf("wasmlet %v wrote to stderr: %v", args, r)
			}
		}
		// Without a subcommand it is still a usage error.
		expect(t, exitUsage, []string{g}, "stderr:wasmlet "+g+" needs a subcommand")
	}
}

// TestProgressOnATerminal draws the spinner into a buffer as it would on a
// terminal: redrawn in place, then replaced by the outcome line.
func TestProgressOnATerminal(t *testing.T) {
	var buf syncbuf.Buffer
	p := &progress{w: &buf, tty: true, what: "compiling x.wasm", start: time.Now(), stop: make(chan struct{})}
	p.wg.Add(1)
	go p.spin()
	for deadline := time.Now().Add(10 * time.Second); strings.Count(buf.String(), "\r\033[K") < 2; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the spinner drew %q in 10 s", buf.String())
		}
	}
	p.done("accepted")
	out := buf.String()
	if !strings.HasPrefix(out, "\r\033[K⠋ compiling x.wasm… ") || strings.Count(out, "\r\033[K") < 3 ||
		!strings.Contains(out, "\r\033[Kcompiling x.wasm: accepted in ") || !strings.HasSuffix(out, "\n") {
		t.Fatalf("terminal output %q", out)
	}
}
