package module

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/wasmlet/wasmlet/abi"
)

// hostImports instantiates the "wasmlet" host module in r: the log and
// config_get functions of ABI.md, bound to one module's sink and config.
func hostImports(ctx context.Context, r wazero.Runtime, sink *logSink, config map[string]string) error {
	b := r.NewHostModuleBuilder(abi.ImportModule)
	b.NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(func(_ context.Context, m api.Module, stack []uint64) {
			level := abi.LogLevel(int32(stack[0]))
			ptr, n := uint32(stack[1]), uint32(stack[2])
			truncated := false
			if n > maxLogLine {
				n, truncated = maxLogLine, true
			}
			msg, ok := m.Memory().Read(ptr, n)
			if !ok {
				panic(fmt.Errorf("%s.%s: message at [%d, %d) lies outside memory", abi.ImportModule, abi.ImportLog, ptr, uint64(ptr)+uint64(n)))
			}
			line := string(msg)
			if truncated {
				line += " …(truncated)"
			}
			sink.line(hclogLevel(level), line)
		}), []api.ValueType{api.ValueTypeI32, api.ValueTypeI32, api.ValueTypeI32}, nil).
		WithParameterNames("level", "ptr", "len").
		Export(abi.ImportLog)
	b.NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(func(_ context.Context, m api.Module, stack []uint64) {
			kptr, klen := uint32(stack[0]), uint32(stack[1])
			bptr, blen := uint32(stack[2]), uint32(stack[3])
			key, ok := m.Memory().Read(kptr, klen)
			if !ok {
				panic(fmt.Errorf("%s.%s: key at [%d, %d) lies outside memory", abi.ImportModule, abi.ImportConfigGet, kptr, uint64(kptr)+uint64(klen)))
			}
			val, found := config[string(key)]
			if !found {
				stack[0] = api.EncodeI32(abi.ConfigAbsent)
				return
			}
			if uint32(len(val)) <= blen && len(val) > 0 {
				if !m.Memory().WriteString(bptr, val) {
					panic(fmt.Errorf("%s.%s: buffer at [%d, %d) lies outside memory", abi.ImportModule, abi.ImportConfigGet, bptr, uint64(bptr)+uint64(blen)))
				}
			}
			stack[0] = api.EncodeI32(int32(len(val)))
		}), []api.ValueType{api.ValueTypeI32, api.ValueTypeI32, api.ValueTypeI32, api.ValueTypeI32}, []api.ValueType{api.ValueTypeI32}).
		WithParameterNames("key_ptr", "key_len", "buf_ptr", "buf_len").
		Export(abi.ImportConfigGet)
	_, err := b.Instantiate(ctx)
	return err
}

func hclogLevel(l abi.LogLevel) hclog.Level {
	switch {
	case l <= abi.LogTrace:
		return hclog.Trace
	case l == abi.LogDebug:
		return hclog.Debug
	case l == abi.LogInfo:
		return hclog.Info
	case l == abi.LogWarn:
		return hclog.Warn
	}
	return hclog.Error
}

// logSink forwards a module's log lines to its logger through a token bucket,
// so that a module cannot flood the host's log. It is shared by all instances
// of a module.
type logSink struct {
	log      hclog.Logger
	module   string
	observer Observer
	rate     float64
	burst    float64

	mu      sync.Mutex
	tokens  float64
	last    time.Time
	dropped int
	// pending is set while dropped lines wait to be reported, so that the
	// end of a call can report them without taking the lock when there are
	// none.
	pending atomic.Bool
}

func newLogSink(o Options) *logSink {
	return &logSink{log: o.Logger, module: o.Name, observer: o.Observer,
		rate: float64(o.LogRate), burst: float64(o.LogBurst), tokens: float64(o.LogBurst)}
}

func (s *logSink) line(level hclog.Level, msg string) {
	if level < s.log.GetLevel() {
		return // below the configured level: costs nothing, counts nothing
	}
	s.mu.Lock()
	now := time.Now()
	if !s.last.IsZero() {
		s.tokens += now.Sub(s.last).Seconds() * s.rate
		if s.tokens > s.burst {
			s.tokens = s.burst
		}
	}
	s.last = now
	if s.tokens < 1 {
		s.dropped++
		s.pending.Store(true)
		s.mu.Unlock()
		return
	}
	s.tokens--
	s.mu.Unlock()
	s.flushDropped() // the lines dropped before this one are reported first
	s.log.Log(level, msg)
}

// flushDropped reports lines dropped since the last line got through. Calls
// end with it, so that a module that floods its log and then goes quiet has
// its dropped lines counted at once, not when its next line gets through.
func (s *logSink) flushDropped() {
	if !s.pending.Load() {
		return
	}
	s.mu.Lock()
	dropped := s.dropped
	s.dropped = 0
	s.pending.Store(false)
	s.mu.Unlock()
	if dropped > 0 {
		s.observer.LogsDropped(s.module, dropped)
		s.log.Warn("module log rate limit: lines dropped", "dropped", dropped)
	}
}

// streamWriter turns an instance's stdout or stderr into log lines, and keeps
// the last few lines so that a fault can say what the module printed (a Go
// panic message, typically).
type streamWriter struct {
	sink    *logSink
	level   hclog.Level
	stream  string
	partial []byte
	tail    []string // last lines, oldest first
	// headline is the first line that announced a crash ("panic: ...",
	// "fatal error: ..."): the line that says what went wrong, where the
	// lines after it are a stack trace.
	headline string
}

const tailLines = 4

func (w *streamWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			room := maxLogLine - len(w.partial)
			if room > len(p) {
				room = len(p)
			}
			w.partial = append(w.partial, p[:room]...)
			if len(w.partial) >= maxLogLine {
				w.emit()
			}
			break
		}
		if len(w.partial)+i > maxLogLine {
			i = maxLogLine - len(w.partial)
		}
		w.partial = append(w.partial, p[:i]...)
		w.emit()
		p = p[i:]
		if len(p) > 0 && p[0] == '\n' {
			p = p[1:]
		}
	}
	return n, nil
}

func (w *streamWriter) emit() {
	line := string(bytes.TrimRight(w.partial, "\r"))
	w.partial = w.partial[:0]
	if line == "" {
		return
	}
	if w.headline == "" && isHeadline(line) {
		w.headline = line
	}
	if len(w.tail) == tailLines {
		copy(w.tail, w.tail[1:])
		w.tail = w.tail[:tailLines-1]
	}
	w.tail = append(w.tail, line)
	w.sink.line(w.level, w.stream+": "+line)
}

func isHeadline(line string) bool {
	for _, p := range []string{"panic:", "fatal error:", "runtime: out of memory", "Assertion failed", "abort"} {
		if strings.HasPrefix(line, p) {
			return true
		}
	}
	return false
}

// lastWords returns the most telling recent stderr output: the line that
// announced a crash, or else the last line written.
func (w *streamWriter) lastWords() string {
	if len(w.partial) > 0 {
		w.emit()
	}
	if w.headline != "" {
		return w.headline
	}
	if len(w.tail) > 0 {
		return w.tail[len(w.tail)-1]
	}
	return ""
}

func formatBytes(n uint64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return strconv.FormatUint(n>>30, 10) + " GiB"
	case n >= 1<<20 && n%(1<<20) == 0:
		return strconv.FormatUint(n>>20, 10) + " MiB"
	case n >= 1<<10 && n%(1<<10) == 0:
		return strconv.FormatUint(n>>10, 10) + " KiB"
	}
	return strconv.FormatUint(n, 10) + " B"
}
