package node

import (
	"context"
	"runtime"
	"time"

	"github.com/wasmlet/wasmlet/host/module"
)

// moduleChange is a module file that appeared, changed or went; or, with
// barrier set, a request to say when every change before it was applied.
type moduleChange struct {
	path    string
	removed bool
	barrier chan struct{}

	seq uint64 // order of arrival, for barriers
}

// loadWorkers is how many module files load at once. Loading is mostly
// compiling, so one per core; at least two, so that one slow file does not
// hold up every other even on one core.
func loadWorkers() int { return max(2, runtime.GOMAXPROCS(0)) }

// loadModules applies module file changes as they come, several at once, so
// that a file that is slow to load (a big module compiling, an _initialize
// that takes its init_timeout) holds up only itself. Changes to one file
// apply in the order they came: a change waits for the one before it to
// finish. A barrier is closed once every change that came before it was
// applied. When ctx is done, loads in flight finish; nothing new starts.
func (n *Node) loadModules(ctx context.Context) error {
	type finished struct {
		name string
		seq  uint64
	}
	var (
		workers  = loadWorkers()
		running  int
		seq      uint64
		perName  = map[string][]moduleChange{} // head: running or ready; the rest wait for it
		ready    []moduleChange                // heads not yet started
		pending  = map[uint64]bool{}           // changes not yet applied
		barriers []moduleChange
		done     = make(chan finished)
	)
	start := func() {
		for running < workers && len(ready) > 0 {
			ch := ready[0]
			ready = ready[1:]
			running++
			go func() {
				n.load(ctx, ch)
				done <- finished{module.NameFromPath(ch.path), ch.seq}
			}()
		}
	}
	release := func() {
		kept := barriers[:0]
		for _, b := range barriers {
			applied := true
			for s := range pending {
				if s < b.seq {
					applied = false
					break
				}
			}
			if applied {
				close(b.barrier)
			} else {
				kept = append(kept, b)
			}
		}
		barriers = kept
	}
	for {
		select {
		case <-ctx.Done():
			for ; running > 0; running-- {
				<-done
			}
			return nil
		case ch := <-n.loads:
			seq++
			ch.seq = seq
			if ch.barrier != nil {
				barriers = append(barriers, ch)
				release()
				continue
			}
			pending[seq] = true
			name := module.NameFromPath(ch.path)
			q := perName[name]
			perName[name] = append(q, ch)
			if len(q) == 0 {
				ready = append(ready, ch)
			}
		case f := <-done:
			running--
			delete(pending, f.seq)
			if q := perName[f.name][1:]; len(q) > 0 {
				perName[f.name] = q
				ready = append(ready, q[0])
			} else {
				delete(perName, f.name)
			}
			release()
		}
		start()
	}
}

func (n *Node) load(ctx context.Context, ch moduleChange) {
	switch {
	case ch.removed:
		n.modules.Unload(module.NameFromPath(ch.path))
	default:
		start := time.Now()
		n.log.Debug("loading module", "path", ch.path)
		n.modules.Load(ctx, ch.path) // the registry logs and reports refusals
		n.log.Debug("module load finished", "path", ch.path, "took", time.Since(start))
	}
}
