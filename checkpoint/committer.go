package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"sync"
	"time"

	"github.com/wasmlet/wasmlet/internal/atomicfile"
)

// A Committer makes a changing state durable with group commit: whoever
// changed the state calls [Committer.Sync] with the generation of its change,
// and one background goroutine takes a snapshot, writes it once with [Write]
// and releases every caller whose generation the snapshot covers. Sixteen
// concurrent callers share one write and one fsync instead of making sixteen.
//
// The protocol, for a caller holding its state under its own lock:
//
//	mu.Lock()
//	mutate the state; gen++; g := gen
//	mu.Unlock()
//	if err := c.Sync(ctx, g); err != nil { // not durable: do not acknowledge }
//
// with a snapshot function that, under the same lock, returns a copy of the
// state and gen. A Committer assumes it is the only writer of its path.
type Committer struct {
	path     string
	snapshot func() (*State, uint64)

	kick chan struct{} // a Sync is waiting; buffered, one is enough
	stop chan struct{} // closed by Close
	done chan struct{} // closed when run returns

	mu      sync.Mutex
	waiters []waiter // Syncs not yet released
	durable uint64   // highest generation known to be on disk
	closed  bool
	lastErr error // of the last write, nil if it succeeded

	// checked is set, by run only, once the file at path was found readable
	// or absent, so that it may be replaced.
	checked bool
}

type waiter struct {
	gen  uint64
	done chan error // buffered: run never blocks on a caller that gave up
}

// NewCommitter returns a Committer that writes the checkpoint at path, and
// starts its goroutine; [Committer.Close] stops it.
//
// snapshot is called from that goroutine, once per write and once at Close.
// It must return a consistent copy of the state and the generation the copy
// reflects, taken under the lock that guards the state's mutations; the
// caller must not hold that lock while it calls Sync or Close. The Committer owns the returned
// State: it sets its Generation and WrittenUnixNano fields and encodes it
// without locking, so nothing may modify it afterwards. Copying 10,000
// allocations on every write is not needed: treat each stored *Allocation
// (and *Resource...) as immutable — replace it, never modify it — and a
// snapshot is a new State holding new slices of the same pointers.
//
// Before its first write the Committer reads the existing file, and refuses
// to replace one it cannot read (every Sync returns the [*CorruptError] until
// an operator moves the file aside); it also removes temporary files
// (.NAME.*.tmp) that an earlier process left when it crashed mid-write.
func NewCommitter(path string, snapshot func() (*State, uint64)) *Committer {
	c := &Committer{
		path:     path,
		snapshot: snapshot,
		kick:     make(chan struct{}, 1),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	go c.run()
	return c
}

// Sync blocks until a snapshot with a generation of at least gen is durable
// on disk, and returns nil; or returns the error of the write that should
// have made it durable (a later Sync tries again); or ctx.Err() if ctx ends
// first — the write carries on, and gen may or may not become durable. After
// Close it returns [ErrClosed] unless gen was already durable. Sync(ctx, 0)
// returns nil at once.
//
// gen must be a generation the state has reached when Sync is called:
// asking for a later one is an error, not a wait.
func (c *Committer) Sync(ctx context.Context, gen uint64) error {
	c.mu.Lock()
	if gen <= c.durable {
		c.mu.Unlock()
		return nil
	}
	if c.closed {
		c.mu.Unlock()
		return ErrClosed
	}
	if err := ctx.Err(); err != nil {
		c.mu.Unlock()
		return err
	}
	w := waiter{gen: gen, done: make(chan error, 1)}
	c.waiters = append(c.waiters, w)
	c.mu.Unlock()

	select {
	case c.kick <- struct{}{}:
	default: // a write is already due; it will take this waiter too
	}
	select {
	case err := <-w.done:
		return err
	case <-ctx.Done():
		// w stays queued; its buffered channel lets run release it later.
		return ctx.Err()
	}
}

// Close completes the Syncs already waiting, then writes the state one last
// time if it changed since the last write (changes nobody waited for, such
// as device health), stops the goroutine, and returns the error of the last
// write if that write failed. Like Sync, it must not be called with the lock
// snapshot takes. Close may be called more than once.
func (c *Committer) Close() error {
	c.mu.Lock()
	already := c.closed
	c.closed = true
	c.mu.Unlock()
	if !already {
		close(c.stop)
	}
	<-c.done
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastErr
}

func (c *Committer) run() {
	defer close(c.done)
	for {
		select {
		case <-c.kick:
			c.commit()
		case <-c.stop:
			// No Sync can queue any more: this takes the last of them.
			c.commit()
			c.flush()
			return
		}
	}
}

// commit releases the Syncs queued so far with one write.
func (c *Committer) commit() {
	c.mu.Lock()
	batch := c.waiters
	c.waiters = nil
	c.mu.Unlock()
	if len(batch) == 0 {
		return
	}

	// Every waiter in batch queued before this snapshot is taken, so the
	// snapshot reflects its generation.
	gen, err := c.write(false)

	c.mu.Lock()
	c.lastErr = err
	if err == nil {
		c.durable = max(c.durable, gen)
		// Syncs that queued during the write and that it covers need no
		// write of their own. After a failure they get one: they did not
		// see this write's error.
		kept := c.waiters[:0]
		for _, w := range c.waiters {
			if w.gen <= gen {
				w.done <- nil
			} else {
				kept = append(kept, w)
			}
		}
		clear(c.waiters[len(kept):])
		c.waiters = kept
	}
	c.mu.Unlock()

	for _, w := range batch {
		switch {
		case err != nil:
			w.done <- err
		case w.gen <= gen:
			w.done <- nil
		default:
			w.done <- fmt.Errorf("checkpoint: Sync(%d) asked for a generation the state has not reached: the snapshot taken after the call is at generation %d", w.gen, gen)
		}
	}
}

// flush writes the state if it changed since the last successful write.
func (c *Committer) flush() {
	gen, err := c.write(true)
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen <= c.durable && err == nil {
		return // nothing was written
	}
	c.lastErr = err
	if err == nil {
		c.durable = max(c.durable, gen)
	}
}

// write takes a snapshot and writes it, and returns its generation. With
// onlyIfChanged, a snapshot at a generation already durable is not written.
func (c *Committer) write(onlyIfChanged bool) (uint64, error) {
	if !c.checked {
		if _, err := Read(c.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return 0, fmt.Errorf("checkpoint: refusing to replace %s, which cannot be read: %w", c.path, err)
		}
		atomicfile.RemoveStale(c.path)
		c.checked = true
	}
	st, gen := c.snapshot()
	if onlyIfChanged {
		c.mu.Lock()
		unchanged := gen <= c.durable
		c.mu.Unlock()
		if unchanged {
			return gen, nil
		}
	}
	if st == nil {
		return gen, fmt.Errorf("checkpoint: write %s: the snapshot function returned a nil State", c.path)
	}
	st.Generation = gen
	st.WrittenUnixNano = time.Now().UnixNano()
	return gen, Write(c.path, st)
}
