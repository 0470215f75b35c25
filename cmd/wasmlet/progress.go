package main

import (
	"fmt"
	"io"
	"sync"
	"time"
)

// progress shows that a long operation is running. On a terminal it draws
// a spinner with the elapsed time, redrawn in place; elsewhere (a log, a
// pipe) it writes a single line when the operation ends.
type progress struct {
	w     io.Writer
	tty   bool
	what  string
	start time.Time
	stop  chan struct{}
	wg    sync.WaitGroup
}

var spinner = []string{"⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"}

// startProgress starts showing that what ("compiling x.wasm") is running.
func startProgress(w io.Writer, what string) *progress {
	p := &progress{w: w, tty: isTerminal(w), what: what, start: time.Now(), stop: make(chan struct{})}
	if p.tty {
		p.wg.Add(1)
		go p.spin()
	}
	return p
}

func (p *progress) spin() {
	defer p.wg.Done()
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for i := 0; ; i++ {
		fmt.Fprintf(p.w, "\r\033[K%s %s… %s", spinner[i%len(spinner)], p.what, seconds(time.Since(p.start).Truncate(100*time.Millisecond)))
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
	}
}

// done stops the spinner and writes the outcome with the elapsed time:
// "compiling x.wasm: done in 0.93s".
func (p *progress) done(outcome string) {
	elapsed := time.Since(p.start)
	if p.tty {
		close(p.stop)
		p.wg.Wait()
		fmt.Fprint(p.w, "\r\033[K")
	}
	fmt.Fprintf(p.w, "%s: %s in %s\n", p.what, outcome, seconds(elapsed))
}
