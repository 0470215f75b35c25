package module

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/sys"

	"github.com/wasmlet/wasmlet/abi"
	"github.com/wasmlet/wasmlet/host/module/internal/interrupt"
)

// Operation indexes, so that an instance keeps its exports in an array.
const (
	opDescribe = iota
	opValidate
	opRegister
	opDeregister
	opDiscover
	opAllocate
	opPreferredAllocation
	opPreStart
	opPrepare
	opUnprepare
	numOps
)

var opNames = [numOps]abi.Op{abi.OpDescribe, abi.OpValidate, abi.OpRegister, abi.OpDeregister,
	abi.OpDiscover, abi.OpAllocate, abi.OpPreferredAllocation, abi.OpPreStart, abi.OpPrepare, abi.OpUnprepare}

func opIndex(op abi.Op) (int, bool) {
	for i, o := range opNames {
		if o == op {
			return i, true
		}
	}
	return 0, false
}

// minRequestBuffer is the smallest buffer the host asks a module for, so that
// most calls reuse the first one and cost a single guest call.
const minRequestBuffer = 1024

// instance is one instantiation of a module. It is used by one goroutine at a
// time (the pool hands it out), and thrown away after any fault.
//
// Deadlines: modules are instrumented at load (package interrupt) so that
// they count down a fuel global at every function entry and loop head, and
// when it runs out, briefly leave native code and trap if the interrupt
// global is set. Each instance owns one reusable timer whose function sets
// those globals. A call arms the timer and disarms it afterwards: no context,
// timer or goroutine is created per call. If the timer fires, the guest traps
// at its next loop head or call, and the instance is discarded.
//
// A guest may also be blocked in the host rather than running: WASI's
// poll_oneoff sleeps on the host's goroutine (Go's time.Sleep, C's
// nanosleep). The instance's sleep (its WASI nanosleep) waits on the halted
// channel as well as on its own timer, so whatever stops the instance — the
// deadline, the caller cancelling, the module being unloaded — ends the
// sleep at once, and with it the call.
type instance struct {
	m     *Module
	mod   api.Module
	mem   api.Memory
	alloc api.Function
	fns   [numOps]api.Function
	fuel  api.MutableGlobal
	intr  api.MutableGlobal
	depth api.Global // written by the guest alone
	timer *time.Timer
	// halt says why the instance was stopped (a haltReason; 0 while it may
	// run). It is set once, by whoever stops the instance first, and
	// halted is closed then. A stopped instance is never used again.
	halt     atomic.Int32
	halted   chan struct{}
	onCancel func() // stop(haltCancelled), made once: context.AfterFunc's argument
	// blocked names the host call the guest was blocked in when it was
	// stopped, if it was; written and read by the calling goroutine only.
	blocked string
	stack   []uint64

	bufPtr, bufCap uint32 // the request buffer last returned by wasmlet_alloc
	scratch        []byte // encoding buffer for requests

	stdout, stderr *streamWriter
	calls          uint64
}

// haltReason says why an instance was stopped.
type haltReason int32

const (
	haltDeadline  haltReason = iota + 1 // the call's deadline passed
	haltCancelled                       // the caller's context was done
	haltUnloading                       // Close gave up waiting for the call
)

// newInstance instantiates the module and runs _initialize, then checks the
// ABI version. It does not call describe. The instance is live (Close can
// stop it) from the moment it exists; if it fails it is dropped again. When
// ctx is done the initialisation is stopped.
func (m *Module) newInstance(ctx context.Context) (*instance, error) {
	in := &instance{m: m, stack: make([]uint64, 2), halted: make(chan struct{})}
	in.onCancel = func() { in.stop(haltCancelled) }
	in.timer = time.AfterFunc(time.Hour, func() { in.stop(haltDeadline) })
	in.timer.Stop()
	in.stdout = &streamWriter{sink: m.sink, level: hclog.Info, stream: "stdout"}
	in.stderr = &streamWriter{sink: m.sink, level: hclog.Warn, stream: "stderr"}

	cfg := wazero.NewModuleConfig().
		WithName("").
		WithStartFunctions().
		WithSysWalltime().WithSysNanotime().WithNanosleep(in.sleep).
		WithRandSource(rand.Reader).
		WithStdout(in.stdout).WithStderr(in.stderr).
		WithFSConfig(m.mounts.config).
		// Go guests size their heap from GOMEMLIMIT; without it the guest GC
		// lets the heap grow to the hard limit and dies there.
		WithEnv("GOMEMLIMIT", strconv.FormatUint(m.opts.MemoryLimit*3/4, 10))

	// No guest code runs during instantiation (there are no start functions),
	// so it needs no deadline; _initialize, below, does.
	mod, err := m.rt.InstantiateModule(context.Background(), m.cm, cfg)
	if err != nil {
		return nil, in.fault(ctx, abi.OpDescribe, err, m.opts.InitTimeout)
	}
	in.mod = mod
	in.mem = mod.Memory()
	fuel, ok1 := mod.ExportedGlobal(interrupt.ExportFuel).(api.MutableGlobal)
	intr, ok2 := mod.ExportedGlobal(interrupt.ExportInterrupt).(api.MutableGlobal)
	depth := mod.ExportedGlobal(interrupt.ExportDepth)
	if !ok1 || !ok2 || depth == nil {
		in.close()
		return nil, errors.New("the instrumented interrupt globals are missing")
	}
	in.fuel, in.intr, in.depth = fuel, intr, depth
	in.alloc = mod.ExportedFunction(abi.ExportAlloc)
	for i, op := range opNames {
		in.fns[i] = mod.ExportedFunction(op.Export())
	}
	if !m.adopt(in) {
		in.close()
		return nil, &CallError{Module: m.opts.Name, Op: abi.OpDescribe, Fault: FaultClosed, Err: errors.New("module is unloaded")}
	}
	fail := func(op abi.Op, err error) (*instance, error) {
		ce := in.fault(ctx, op, err, m.opts.InitTimeout)
		m.drop(in)
		in.close()
		return nil, ce
	}
	unwatch := in.watch(ctx)
	defer in.unwatch(unwatch)
	if init := mod.ExportedFunction(abi.ExportInitialize); init != nil {
		if _, err := in.invoke(init, m.opts.InitTimeout); err != nil {
			return fail(abi.Op("_initialize"), err)
		}
	}
	v, err := in.invoke(mod.ExportedFunction(abi.ExportABIVersion), m.opts.InitTimeout)
	if err != nil {
		return fail(abi.Op(abi.ExportABIVersion), err)
	}
	if int32(v) != abi.Version {
		m.drop(in)
		in.close()
		return nil, errABIVersion(int32(v))
	}
	return in, nil
}

type errABIVersion int32

func (v errABIVersion) Error() string {
	return fmt.Sprintf("declares ABI version %d; this host speaks version %d", int32(v), abi.Version)
}

// interrupt asks the guest to trap at its next function entry or loop head.
// It may be called from any goroutine while the guest runs.
func (in *instance) interrupt() {
	if in.intr != nil {
		in.intr.Set(1)
		in.fuel.Set(1)
	}
}

// stop stops the instance for reason r, unless it was stopped already: the
// guest traps at its next loop head or call, and a guest asleep in the host
// wakes. It may be called from any goroutine.
func (in *instance) stop(r haltReason) {
	if in.halt.CompareAndSwap(0, int32(r)) {
		in.interrupt()
		close(in.halted)
	}
}

func (in *instance) stopped() bool { return in.halt.Load() != 0 }

func (in *instance) arm(d time.Duration) { in.timer.Reset(d) }

// disarm stops the deadline timer. It returns false when the instance was
// stopped — by the timer, which fired or is firing, or by anything else —
// and must go.
func (in *instance) disarm() bool {
	if !in.timer.Stop() {
		in.stop(haltDeadline) // the timer's function may not have run yet
		return false
	}
	return !in.stopped()
}

// watch stops the instance when ctx is done, until unwatch. A context that
// can never be done (ctx.Done() == nil, as context.Background's) costs
// nothing; any other costs one registration with it.
func (in *instance) watch(ctx context.Context) (unwatch func() bool) {
	if ctx.Done() == nil {
		return nil
	}
	return context.AfterFunc(ctx, in.onCancel)
}

func (in *instance) unwatch(unwatch func() bool) {
	if unwatch != nil && !unwatch() {
		in.stop(haltCancelled) // the context's function may not have run yet
	}
}

// invoke calls a function under deadline d and returns its first result.
func (in *instance) invoke(fn api.Function, d time.Duration, params ...uint64) (uint64, error) {
	if in.stopped() {
		return 0, errStopped
	}
	in.stack = in.stack[:max(len(params), 1)]
	copy(in.stack, params)
	in.arm(d)
	err := fn.CallWithStack(context.Background(), in.stack)
	if !in.disarm() && err == nil {
		// The call returned just as it was stopped: the answer may be
		// good, the instance is not (its interrupt flag is set).
		err = errReturnedAsStopped
	}
	in.calls++
	return in.stack[0], err
}

var (
	errStopped           = errors.New("the instance was stopped before the call")
	errReturnedAsStopped = errors.New("the call returned as it was being stopped")
	// errWoken ends a call whose guest was asleep in the host when the
	// instance was stopped (sleep panics with it; wazero turns the panic
	// into the call's error).
	errWoken = errors.New("woken from a host call")
)

// pollOneoff is the WASI function that sleeps (sleep's only caller).
const pollOneoff = "poll_oneoff"

// sleep is the instance's WASI nanosleep, which poll_oneoff calls for its
// clock subscriptions (Go's time.Sleep, C's nanosleep and usleep). It
// sleeps ns nanoseconds, unless the instance is stopped first: then it ends
// the call at once. A guest can therefore not hold a call, or an instance,
// past its deadline, its caller's cancellation or an unload by sleeping.
//
// poll_oneoff's other subscriptions do not block: wazero answers fd_write
// at once, fd_read of a file at once (files are always ready), and fd_read
// of stdin at once (a module's stdin is empty and always ready).
func (in *instance) sleep(ns int64) {
	if ns > 0 && !in.stopped() {
		t := time.NewTimer(time.Duration(ns))
		select {
		case <-t.C:
		case <-in.halted:
			t.Stop()
		}
	}
	if in.stopped() {
		in.blocked = "a host call (" + pollOneoff + ", sleeping)"
		panic(errWoken)
	}
}

// request writes req into the module's request buffer, asking the module for
// a bigger one when needed, and returns its address.
func (in *instance) request(req []byte, d time.Duration) (uint32, error) {
	n := uint32(len(req))
	if in.bufPtr == 0 || n > in.bufCap {
		size := max(n, minRequestBuffer)
		ptr, err := in.invoke(in.alloc, d, uint64(size))
		if err != nil {
			return 0, err
		}
		if uint32(ptr) == 0 {
			return 0, &hostError{FaultMalformed, fmt.Errorf("%s(%d) returned 0", abi.ExportAlloc, size)}
		}
		in.bufPtr, in.bufCap = uint32(ptr), size
	}
	if n > 0 && !in.mem.Write(in.bufPtr, req) {
		return 0, &hostError{FaultMalformed, fmt.Errorf("%s returned address %d, but the request's %d bytes do not fit in the module's %s of memory",
			abi.ExportAlloc, in.bufPtr, n, formatBytes(uint64(in.mem.Size())))}
	}
	return in.bufPtr, nil
}

// hostError is a fault the host detected itself (the guest returned normally).
type hostError struct {
	fault Fault
	err   error
}

func (e *hostError) Error() string { return e.err.Error() }

// call runs operation op with the encoded request and decodes the reply into
// resp. An *abi.Error from the module is returned as is; anything else is a
// fault and the instance must be discarded.
func (in *instance) call(op int, req []byte, resp abi.Message, d time.Duration) error {
	fn := in.fns[op]
	if fn == nil {
		return &hostError{FaultBadRequest, fmt.Errorf("module does not export %s", opNames[op].Export())}
	}
	ptr, err := in.request(req, d)
	if err != nil {
		return err
	}
	r, err := in.invoke(fn, d, uint64(ptr), uint64(len(req)))
	if err != nil {
		return err
	}
	rptr, n, isErr := abi.UnpackResult(r)
	if n > in.m.opts.MaxReply {
		return &hostError{FaultOversized, fmt.Errorf("reply of %s exceeds the limit of %s",
			formatBytes(uint64(n)), formatBytes(uint64(in.m.opts.MaxReply)))}
	}
	body, ok := in.mem.Read(rptr, n)
	if !ok {
		return &hostError{FaultMalformed, fmt.Errorf("reply at [%d, %d) lies outside the module's %s of memory",
			rptr, uint64(rptr)+uint64(n), formatBytes(uint64(in.mem.Size())))}
	}
	if isErr {
		var e abi.Error
		if err := e.Unmarshal(body); err != nil {
			return &hostError{FaultMalformed, fmt.Errorf("error reply: %w", err)}
		}
		return &e
	}
	if err := resp.Unmarshal(body); err != nil {
		return &hostError{FaultMalformed, err}
	}
	return nil
}

// fault turns an error from a call into a CallError, naming the fault and
// saying what happened: the message says the guest "was interrupted" only
// when it was running and was stopped.
func (in *instance) fault(ctx context.Context, op abi.Op, err error, d time.Duration) *CallError {
	ce := &CallError{Module: in.m.opts.Name, Op: op, Err: err}
	var he *hostError
	var exit *sys.ExitError
	if errors.As(err, &he) {
		ce.Fault = he.fault
		return ce
	}
	if r := haltReason(in.halt.Load()); r != 0 {
		if r == haltCancelled && errors.Is(ctx.Err(), context.DeadlineExceeded) {
			r = haltDeadline // the caller's deadline, which is the call's
		}
		ce.Fault, ce.Err = in.stoppedFault(r, err, d, context.Cause(ctx))
		return ce
	}
	switch {
	case in.depth != nil && uint32(in.depth.Get()) > in.m.opts.maxCallDepth():
		ce.Fault = FaultTrap
		ce.Err = fmt.Errorf("call depth exceeded %d (runaway recursion?)", in.m.opts.maxCallDepth())
		return ce
	case errors.As(err, &exit):
		ce.Fault = FaultExit
		ce.Err = fmt.Errorf("module exited with code %d", exit.ExitCode())
	default:
		ce.Fault = FaultTrap
		ce.Err = errors.New(firstLine(err.Error()))
	}
	ce.Detail = in.stderr.lastWords()
	if in.outOfMemory(ce.Detail) {
		ce.Fault = FaultMemory
		ce.Err = fmt.Errorf("ran out of its %s memory limit (%v)", formatBytes(in.m.opts.MemoryLimit), ce.Err)
	}
	return ce
}

// stoppedFault says how a call that was stopped for reason r ended: with
// the guest running (interrupted), asleep in the host (woken), or neither
// (it returned as it was stopped, or never started).
func (in *instance) stoppedFault(r haltReason, err error, d time.Duration, cause error) (Fault, error) {
	blocked, late := in.blocked != "", errors.Is(err, errReturnedAsStopped)
	running := !blocked && !late && !errors.Is(err, errStopped)
	switch r {
	case haltDeadline:
		switch {
		case blocked:
			return FaultTimeout, fmt.Errorf("blocked in %s past its %s deadline; woken and stopped", in.blocked, d)
		case late:
			return FaultTimeout, fmt.Errorf("did not return within %s (it returned as the deadline passed)", d)
		}
		return FaultTimeout, fmt.Errorf("did not return within %s and was interrupted", d)
	case haltCancelled:
		if cause == nil {
			cause = context.Canceled
		}
		switch {
		case blocked:
			return FaultCancelled, fmt.Errorf("cancelled by the caller (%v) while blocked in %s; woken and stopped", cause, in.blocked)
		case running:
			return FaultCancelled, fmt.Errorf("cancelled by the caller (%v) and interrupted", cause)
		}
		return FaultCancelled, fmt.Errorf("cancelled by the caller (%v)", cause)
	}
	switch {
	case blocked:
		return FaultClosed, fmt.Errorf("blocked in %s when the module was unloaded; woken and stopped", in.blocked)
	case running:
		return FaultClosed, errors.New("interrupted because the module is being unloaded")
	}
	return FaultClosed, errors.New("stopped because the module is being unloaded")
}

// outOfMemory guesses whether a trap came from memory exhaustion: the Go
// runtime says so on stderr; other guests trap once memory.grow has failed at
// the limit.
func (in *instance) outOfMemory(detail string) bool {
	if strings.Contains(detail, "out of memory") {
		return true
	}
	if in.mem == nil {
		return false
	}
	return uint64(in.mem.Size())+wasmPage > uint64(in.m.opts.memoryPages())*wasmPage
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return strings.TrimSpace(s)
}

func (in *instance) close() {
	in.timer.Stop()
	if in.mod != nil {
		in.mod.Close(context.Background())
	}
}
