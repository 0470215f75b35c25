// Package syncbuf is a buffer that goroutines may write to while a test
// reads it: the place tests collect a log (of a module, of a node) or a
// terminal's output as it is written.
package syncbuf

import (
	"bytes"
	"strings"
	"sync"
)

// Buffer collects what is written to it, safely from any goroutine. The
// zero value is ready to use.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// Count is the number of times sub was written.
func (b *Buffer) Count(sub string) int {
	return strings.Count(b.String(), sub)
}

// String is everything written.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
