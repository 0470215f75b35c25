package checkpoint

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wasmlet/wasmlet/internal/atomicfile"
)

const crashChildEnv = "WASMLET_CHECKPOINT_CRASH_CHILD"

// TestCrashAtAnyInstant runs a Committer in a child process that commits
// allocations and releases from four goroutines and prints each one it was
// acknowledged, kills the child with SIGKILL at a random moment, and checks
// that the checkpoint still reads and holds exactly what was acknowledged:
// every acknowledged allocation present, every acknowledged release absent.
// Twenty times, each child resuming from the file the previous one left.
//
// (SIGKILL keeps the page cache: this shows the file is never torn or lost
// through the rename; fsync against power loss is the kernel's side.)
func TestCrashAtAnyInstant(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 20 processes")
	}
	path := filepath.Join(t.TempDir(), "ck")
	// What was acknowledged, by workload: "add" (held), "rel" (released), or
	// "rel?" (a release was started but not acknowledged: either is fine).
	acked := make(map[string]string)
	var maxGen uint64
	for round := range 20 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+path, fmt.Sprintf("WASMLET_CHECKPOINT_ROUND=%d", round))
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		acks := make(chan string, 1024)
		go func() {
			defer close(acks)
			r := bufio.NewReader(out)
			for {
				line, err := r.ReadString('\n')
				if err != nil { // a line cut by the kill was never acknowledged
					return
				}
				acks <- strings.TrimSuffix(line, "\n")
			}
		}()
		// Let it commit for a while, then kill it mid-flight.
		var lines []string
		first := <-acks
		if first == "" {
			cmd.Wait()
			t.Fatalf("round %d: the child printed nothing", round)
		}
		lines = append(lines, first)
		time.Sleep(time.Duration(rand.IntN(40)) * time.Millisecond)
		if err := cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		for line := range acks {
			lines = append(lines, line)
		}
		cmd.Wait()

		for _, line := range lines {
			var op, w string
			var gen uint64
			if _, err := fmt.Sscan(line, &op, &w, &gen); err != nil {
				t.Fatalf("round %d: bad line %q from the child", round, line)
			}
			acked[w] = op
			maxGen = max(maxGen, gen)
		}
		st, err := Read(path)
		if err != nil {
			t.Fatalf("round %d, after %d acknowledgements: %v", round, len(lines), err)
		}
		if st.GetGeneration() < maxGen {
			t.Fatalf("round %d: the file is at generation %d, but generation %d was acknowledged", round, st.GetGeneration(), maxGen)
		}
		inFile := workloads(st)
		for w, op := range acked {
			if op == "add" && !inFile[w] {
				t.Fatalf("round %d: acknowledged allocation %s is missing", round, w)
			}
			if op == "rel" && inFile[w] {
				t.Fatalf("round %d: acknowledged release of %s is undone", round, w)
			}
		}
		if _, err := Verify(path); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		var temps int
		entries, _ := os.ReadDir(filepath.Dir(path))
		for _, e := range entries {
			if atomicfile.IsTemp(e.Name(), "ck") {
				temps++
			} else if e.Name() != "ck" {
				t.Fatalf("round %d: unexpected file %s", round, e.Name())
			}
		}
		if temps > 1 { // one killed write may leave one; the next child removes it
			t.Fatalf("round %d: %d temporary files left", round, temps)
		}
		t.Logf("round %d: killed after %d acknowledgements; file at generation %d with %d allocations, %d temporary file left",
			round, len(lines), st.GetGeneration(), len(st.GetAllocations()), temps)
	}
}

// TestCrashChild is the child of TestCrashAtAnyInstant; it does nothing in
// a normal run.
func TestCrashChild(t *testing.T) {
	path := os.Getenv(crashChildEnv)
	if path == "" {
		t.Skip("run by TestCrashAtAnyInstant")
	}
	s := &store{}
	st, err := Read(path)
	switch {
	case err == nil:
		s.allocs, s.gen = st.GetAllocations(), st.GetGeneration()
	case errors.Is(err, fs.ErrNotExist):
		// Ballast, so that writes take long enough to be killed midway.
		s.allocs = sampleState(300, 4, 8).GetAllocations()
	default:
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(2)
	}
	round := os.Getenv("WASMLET_CHECKPOINT_ROUND")
	c := NewCommitter(path, s.snapshot)
	var out sync.Mutex
	ack := func(op, w string, gen uint64) {
		out.Lock()
		defer out.Unlock()
		fmt.Fprintf(os.Stdout, "%s %s %d\n", op, w, gen) // unbuffered: one write per line
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				w := fmt.Sprintf("ns/r%s-g%d-%d/c", round, g, i)
				gen := s.add(w)
				if err := c.Sync(context.Background(), gen); err != nil {
					fmt.Fprintln(os.Stderr, "child:", err)
					os.Exit(2)
				}
				ack("add", w, gen)
				if i%3 == 0 {
					ack("rel?", w, 0)
					s.mu.Lock()
					s.allocs = slices.DeleteFunc(slices.Clone(s.allocs), func(a *Allocation) bool { return a.GetWorkload() == w })
					s.gen++
					gen := s.gen
					s.mu.Unlock()
					if err := c.Sync(context.Background(), gen); err != nil {
						fmt.Fprintln(os.Stderr, "child:", err)
						os.Exit(2)
					}
					ack("rel", w, gen)
				}
			}
		})
	}
	wg.Wait()
}
