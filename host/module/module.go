package module

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/wasmlet/wasmlet/abi"
	"github.com/wasmlet/wasmlet/host/module/internal/interrupt"
	"github.com/wasmlet/wasmlet/host/module/wasmbin"
	"github.com/wasmlet/wasmlet/internal/atomicfile"
	"github.com/wasmlet/wasmlet/internal/regularfile"
)

// HostVersion is reported to modules in DescribeRequest.host_version.
var HostVersion = "dev"

// maxModuleFile bounds the size of a module file the host reads.
const maxModuleFile = 256 << 20

var wasmMagic = []byte("\x00asm")

// Module is a loaded, validated WebAssembly module and the pool of instances
// that serve its calls. It is safe for concurrent use.
type Module struct {
	opts   Options
	path   string
	digest string
	size   int64
	desc   abi.Description
	loaded time.Time
	timing LoadTiming

	rt      wazero.Runtime
	cm      wazero.CompiledModule
	mounts  *mounts
	sink    *logSink
	idle    chan *instance
	slots   chan struct{} // a token per instance up to PoolSize...
	extra   chan struct{} // ...and beyond, up to PoolMax
	exports []string

	waiting   atomic.Int32 // calls waiting for an instance
	startCost atomic.Int64 // how long starting an instance takes, in ns

	keepSurplus time.Duration // keepSurplus, or less in tests

	mu          sync.Mutex
	closed      bool
	stopping    bool // Close stops every instance: new ones are refused
	active      int
	drained     chan struct{}
	live        map[*instance]struct{}
	calls       uint64
	faults      uint64
	consecutive int
	lastFault   string
	lastFaultAt time.Time
	quarantine  string // reason; empty when not quarantined
	quarantined time.Time
	lastPut     time.Time   // when a call last gave back its instance while the pool was beyond its base
	shrinkTimer *time.Timer // set while instances beyond the base pool live
}

// LoadTiming says where the time of a load went. Compile includes checking
// and validating the original binary (skipped when the instrumented binary is
// in the cache).
type LoadTiming struct {
	Read, Compile, Instantiate time.Duration
}

// Load reads, compiles and validates the module at path and starts its first
// instance. A module that does not follow the ABI is refused with a
// *LoadError listing every problem found.
func Load(ctx context.Context, path string, opts Options) (*Module, error) {
	opts = opts.withDefaults(path)
	start := time.Now()
	bin, err := readModule(path)
	if err != nil {
		return nil, &LoadError{Module: opts.Name, Path: path, Problems: []string{err.Error()}}
	}
	sum := sha256.Sum256(bin)
	m := &Module{
		opts:        opts,
		path:        path,
		digest:      hex.EncodeToString(sum[:]),
		size:        int64(len(bin)),
		idle:        make(chan *instance, opts.PoolMax),
		slots:       make(chan struct{}, opts.PoolSize),
		extra:       make(chan struct{}, opts.PoolMax-opts.PoolSize),
		drained:     make(chan struct{}),
		live:        map[*instance]struct{}{},
		keepSurplus: keepSurplus,
		sink:        newLogSink(opts),
	}
	m.timing.Read = time.Since(start)
	if opts.SHA256 != "" && !strings.EqualFold(opts.SHA256, m.digest) {
		return nil, &LoadError{Module: opts.Name, Path: path, Problems: []string{
			fmt.Sprintf("file has SHA-256 %s, but the configuration pins %s", m.digest, opts.SHA256)}}
	}
	refuse := func(problems ...string) (*Module, error) {
		m.release(ctx)
		return nil, &LoadError{Module: opts.Name, Path: path, Problems: problems}
	}
	if m.mounts, err = openMounts(opts.Mounts); err != nil {
		return refuse(err.Error())
	}
	start = time.Now()
	cacheKey := m.digest + "-v" + strconv.Itoa(interrupt.Version) + "-depth" + strconv.FormatUint(uint64(opts.maxCallDepth()), 10)
	instrumented := opts.Cache.lookup(cacheKey)
	if instrumented == nil {
		if instrumented, err = m.instrument(ctx, bin); err != nil {
			return refuse(err.Error())
		}
	}
	if err := m.compile(ctx, instrumented); err != nil {
		return refuse(err.Error())
	}
	m.timing.Compile = time.Since(start)
	problems := append(checkExports(m.cm), checkImports(m.cm, m.provided())...)
	if len(problems) > 0 {
		return refuse(problems...)
	}
	opts.Cache.store(cacheKey, instrumented)
	for name := range m.cm.ExportedFunctions() {
		m.exports = append(m.exports, name)
	}
	sort.Strings(m.exports)
	start = time.Now()
	in, err := m.newInstance(ctx)
	if err != nil {
		return refuse(initProblem(err))
	}
	m.slots <- struct{}{}
	m.desc, err = in.describe(ctx)
	if err != nil {
		in.close()
		return refuse(initProblem(err))
	}
	if problems := checkDescription(&m.desc, m.cm.ExportedFunctions()); len(problems) > 0 {
		in.close()
		return refuse(problems...)
	}
	m.timing.Instantiate = time.Since(start)
	m.startCost.Store(int64(m.timing.Instantiate))
	m.loaded = time.Now()
	m.idle <- in
	opts.Observer.Instances(opts.Name, 1)
	opts.Logger.Debug("module loaded", "kind", m.desc.Kind.String(), "serves", m.Serves(),
		"compile", m.timing.Compile, "instantiate", m.timing.Instantiate)
	return m, nil
}

func initProblem(err error) string {
	var ce *CallError
	if errors.As(err, &ce) {
		msg := "starting an instance failed: " + string(ce.Op) + ": "
		if ce.Fault != "" {
			msg += string(ce.Fault) + ": "
		}
		msg += ce.Err.Error()
		if ce.Detail != "" {
			msg += " (module stderr: " + ce.Detail + ")"
		}
		return msg
	}
	return err.Error()
}

func readModule(path string) ([]byte, error) {
	bin, err := regularfile.Read(path, maxModuleFile)
	var refused *regularfile.RefusedError
	if errors.As(err, &refused) {
		return nil, errors.New(refused.Reason) // the LoadError names the path
	}
	if err != nil {
		return nil, err
	}
	if !bytes.HasPrefix(bin, wasmMagic) {
		head := bin[:min(len(bin), 4)]
		return nil, fmt.Errorf("not a WebAssembly module: the file starts with %q, not \"\\0asm\"", head)
	}
	return bin, nil
}

// instrument checks the module file bin and returns it instrumented
// (package interrupt). Its bytes are read in this order, each step trusting
// only what the previous ones checked: wasmbin.Parse checks every count and
// length against the bytes that remain (wazero's decoder sizes allocations
// from them unchecked); wazero validates the whole module; then the start
// section is refused and the code instrumented.
func (m *Module) instrument(ctx context.Context, bin []byte) ([]byte, error) {
	wm, err := wasmbin.Parse(bin)
	if err != nil {
		return nil, fmt.Errorf("is not a well-formed WebAssembly module: %w", err)
	}
	if err := m.validate(ctx, bin); err != nil {
		return nil, err
	}
	if wm.Start >= 0 {
		fn := fmt.Sprintf("function %d", wm.Start)
		if name := wm.FuncName(uint32(wm.Start)); name != "" {
			fn += fmt.Sprintf(" (%q)", name)
		}
		return nil, fmt.Errorf("modules are reactors; a start section is not allowed (this one runs %s when the module is instantiated)", fn)
	}
	if err := interrupt.CheckTables(wm, maxTableElements); err != nil {
		return nil, err
	}
	out, err := interrupt.Instrument(wm, interrupt.Limits{CallDepth: m.opts.maxCallDepth(), TableElements: maxTableElements})
	if err != nil {
		return nil, fmt.Errorf("cannot be instrumented for interruption: %w", err)
	}
	return out, nil
}

// validate has wazero decode and validate the original binary. Its
// interpreter does that without compiling to native code: ~0.1 s for a 2 MB
// Go guest, a tenth of a cold compile.
func (m *Module) validate(ctx context.Context, bin []byte) error {
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter().
		WithMemoryLimitPages(m.opts.memoryPages()).
		WithDebugInfoEnabled(false))
	defer rt.Close(ctx)
	if _, err := rt.CompileModule(ctx, bin); err != nil {
		return m.compileError(err)
	}
	return nil
}

func (m *Module) compileError(err error) error {
	if strings.Contains(err.Error(), "over limit") {
		return fmt.Errorf("needs more memory than its limit of %s allows: %w", formatBytes(m.opts.MemoryLimit), err)
	}
	return fmt.Errorf("does not compile: %w", err)
}

// compile sets up the module's own runtime (memory limit, interruption,
// compilation cache), the host modules, and compiles the binary. A cache
// that cannot be written (a full or read-only state directory: compiling
// itself does no I/O, so an error from the system is the cache's) is only a
// warning: the module is compiled again without it.
func (m *Module) compile(ctx context.Context, bin []byte) error {
	err := m.compileWith(ctx, bin, m.opts.Cache)
	var errno syscall.Errno
	if err == nil || m.opts.Cache == nil || !errors.As(err, &errno) {
		return err
	}
	m.opts.Logger.Warn("the compilation cache cannot be written; the module is loaded without it, and compiled again on every load until it can be",
		"cache", m.opts.Cache.dir, "error", err)
	m.rt.Close(ctx)
	m.rt, m.cm = nil, nil
	return m.compileWith(ctx, bin, nil)
}

func (m *Module) compileWith(ctx context.Context, bin []byte, cache *Cache) error {
	// Interruption comes from the instrumentation (package interrupt), not
	// from close-on-context-done, whose check at every loop head costs a Go
	// guest microseconds per call.
	cfg := wazero.NewRuntimeConfigCompiler().
		WithCloseOnContextDone(false).
		WithMemoryLimitPages(m.opts.memoryPages())
	if cache != nil {
		cfg = cfg.WithCompilationCache(cache.cache)
	}
	m.rt = wazero.NewRuntimeWithConfig(ctx, cfg)
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, m.rt); err != nil {
		return fmt.Errorf("WASI: %w", err)
	}
	if err := hostImports(ctx, m.rt, m.sink, copyMap(m.opts.Config)); err != nil {
		return fmt.Errorf("host imports: %w", err)
	}
	cctx := experimental.WithCompilationWorkers(ctx, runtime.GOMAXPROCS(0))
	cm, err := m.rt.CompileModule(cctx, bin)
	if err != nil {
		return m.compileError(err)
	}
	m.cm = cm
	return nil
}

// provided lists the functions the host offers to imports, by module.
func (m *Module) provided() map[string]map[string]api.FunctionDefinition {
	out := map[string]map[string]api.FunctionDefinition{}
	for _, name := range []string{wasi_snapshot_preview1.ModuleName, abi.ImportModule} {
		if mod := m.rt.Module(name); mod != nil {
			out[name] = mod.ExportedFunctionDefinitions()
		}
	}
	return out
}

func copyMap(in map[string]string) map[string]string {
	out := make(map[string]string, len(in))
	for k, v := range in {
		out[k] = v
	}
	return out
}

// describe asks the instance for its description, under the initialisation
// deadline; it is stopped if ctx is done first.
func (in *instance) describe(ctx context.Context) (abi.Description, error) {
	req := &abi.DescribeRequest{HostABIVersion: abi.Version, HostVersion: HostVersion, ModuleName: in.m.opts.Name}
	var d abi.Description
	in.scratch = req.AppendTo(in.scratch[:0])
	unwatch := in.watch(ctx)
	err := in.call(opDescribe, in.scratch, &d, in.m.opts.InitTimeout)
	in.unwatch(unwatch)
	if err != nil {
		var ae *abi.Error
		if errors.As(err, &ae) {
			return d, &CallError{Module: in.m.opts.Name, Op: abi.OpDescribe, Err: ae}
		}
		return d, in.fault(ctx, abi.OpDescribe, err, in.m.opts.InitTimeout)
	}
	if in.stopped() {
		return d, in.fault(ctx, abi.OpDescribe, errReturnedAsStopped, in.m.opts.InitTimeout)
	}
	return d, nil
}

// Name is the name the module is known by.
func (m *Module) Name() string { return m.opts.Name }

// Path is the file the module was loaded from.
func (m *Module) Path() string { return m.path }

// Digest is the hex SHA-256 of the module file as loaded.
func (m *Module) Digest() string { return m.digest }

// Description is what the module said about itself at load time.
func (m *Module) Description() abi.Description { return m.desc }

// Serves is the plugin type (handlers) or resource (device sources) the
// module serves.
func (m *Module) Serves() string {
	if m.desc.Kind == abi.KindHandler {
		return m.desc.PluginType
	}
	return m.desc.Resource
}

// Implements reports whether the module declared operation op.
func (m *Module) Implements(op abi.Op) bool { return m.desc.Implements(string(op)) }

// Options are the sandbox settings the module runs with, defaults filled in.
func (m *Module) Options() Options { return m.opts }

// Call runs operation op: it encodes req, calls the module in a free
// instance (starting one if the pool allows), and decodes the reply into
// resp. The error, if any, is a *CallError naming the module and operation.
//
// The call's deadline is the module's call timeout or ctx's deadline,
// whichever comes first; overrunning it is a timeout fault. When ctx is
// cancelled the call is stopped at once, whatever the guest is doing, and
// fails with FaultCancelled, which is not held against the module.
func (m *Module) Call(ctx context.Context, op abi.Op, req, resp abi.Message) error {
	idx, ok := opIndex(op)
	if !ok || (op != abi.OpDescribe && !m.Implements(op)) {
		return &CallError{Module: m.opts.Name, Op: op, Fault: FaultBadRequest,
			Err: fmt.Errorf("the module does not implement %q", op)}
	}
	if err := m.enter(op); err != nil {
		return err
	}
	defer m.exit()
	if err := ctx.Err(); err != nil {
		return &CallError{Module: m.opts.Name, Op: op, Fault: FaultCancelled,
			Err: fmt.Errorf("cancelled by the caller (%v) before it started", context.Cause(ctx))}
	}
	in, err := m.get(ctx, op)
	if err != nil {
		return err
	}
	start := monotonic()
	d := m.opts.CallTimeout
	if dl, ok := ctx.Deadline(); ok {
		if left := dl.Sub(epoch) - start; left < d {
			d = left
		}
	}
	in.scratch = req.AppendTo(in.scratch[:0])
	unwatch := in.watch(ctx)
	err = in.call(idx, in.scratch, resp, d)
	in.unwatch(unwatch)
	m.sink.flushDropped()
	var ae *abi.Error
	if err == nil || errors.As(err, &ae) {
		m.opts.Observer.Call(m.opts.Name, string(op), monotonic()-start, "")
		m.succeeded()
		// The answer stands; an instance stopped as it answered goes.
		m.put(in, in.stopped())
		if ae != nil {
			return &CallError{Module: m.opts.Name, Op: op, Err: ae}
		}
		return nil
	}
	ce := in.fault(ctx, op, err, d)
	m.opts.Observer.Call(m.opts.Name, string(op), monotonic()-start, ce.Fault)
	m.put(in, true)
	m.failed(ce)
	return ce
}

// enter admits a call unless the module is closed or quarantined.
func (m *Module) enter(op abi.Op) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case m.closed:
		return &CallError{Module: m.opts.Name, Op: op, Fault: FaultClosed, Err: errors.New("module is unloaded")}
	case m.quarantine != "":
		return &CallError{Module: m.opts.Name, Op: op, Fault: FaultQuarantined, Err: errors.New(m.quarantine)}
	}
	m.active++
	m.calls++
	return nil
}

func (m *Module) exit() {
	m.mu.Lock()
	m.active--
	if m.active == 0 && m.closed {
		close(m.drained)
	}
	m.mu.Unlock()
}

// get takes an idle instance; or starts one while the base pool
// (PoolSize) has room; or waits for one to come back. A call that has
// waited as long as starting an instance takes (every instance is busy
// with slow calls, not just with many) starts one beyond the base pool, up
// to PoolMax, so that a few slow calls cannot hold up all the others.
func (m *Module) get(ctx context.Context, op abi.Op) (*instance, error) {
	select {
	case in := <-m.idle:
		return in, nil
	default:
	}
	m.waiting.Add(1)
	defer m.waiting.Add(-1)
	grow := time.NewTimer(m.growAfter())
	defer grow.Stop()
	select {
	case in := <-m.idle:
		return in, nil
	case m.slots <- struct{}{}:
		return m.start(ctx, op)
	case <-grow.C:
	case <-ctx.Done():
		return nil, m.busy(ctx, op)
	}
	select {
	case in := <-m.idle:
		return in, nil
	case m.slots <- struct{}{}:
		return m.start(ctx, op)
	case m.extra <- struct{}{}:
		return m.start(ctx, op)
	case <-ctx.Done():
		return nil, m.busy(ctx, op)
	}
}

// minGrowAfter is the least a call waits before the pool grows: shorter
// waits are scheduling noise on a loaded machine, not slow calls.
const minGrowAfter = time.Millisecond

// growAfter is how long a call waits for a busy pool before it starts an
// instance beyond the base pool: as long as starting one takes. Waiting
// longer would be slower than starting one; starting one sooner would cost
// more than the wait.
func (m *Module) growAfter() time.Duration {
	return max(time.Duration(m.startCost.Load()), minGrowAfter)
}

// start starts an instance for op, in the slot just taken.
func (m *Module) start(ctx context.Context, op abi.Op) (*instance, error) {
	begin := monotonic()
	in, err := m.newInstance(ctx)
	if err != nil {
		m.mu.Lock()
		m.releaseSlots(1)
		m.mu.Unlock()
		ce, ok := err.(*CallError)
		if !ok {
			ce = &CallError{Module: m.opts.Name, Op: op, Err: err}
		}
		ce.Op = op
		if ce.Fault != FaultCancelled && ce.Fault != FaultClosed {
			ce.Fault = FaultInit
		}
		m.failed(ce)
		return nil, ce
	}
	// A running estimate: the pool grows by what starting costs now.
	m.startCost.Store((m.startCost.Load() + int64(monotonic()-begin)) / 2)
	m.mu.Lock()
	n := len(m.live)
	m.mu.Unlock()
	m.opts.Observer.Instances(m.opts.Name, n)
	return in, nil
}

// releaseSlots gives back n slots, those beyond the base pool first. Slots
// are given back with m.mu held, so that none of these receives blocks.
func (m *Module) releaseSlots(n int) {
	for range n {
		if len(m.extra) > 0 {
			<-m.extra
		} else {
			<-m.slots
		}
	}
}

func (m *Module) busy(ctx context.Context, op abi.Op) error {
	pool := fmt.Sprintf("pool of %d", m.opts.PoolSize)
	if m.opts.PoolMax > m.opts.PoolSize {
		pool += fmt.Sprintf(", up to %d", m.opts.PoolMax)
	}
	return &CallError{Module: m.opts.Name, Op: op, Fault: FaultBusy,
		Err: fmt.Errorf("no instance free (%s): %w", pool, ctx.Err())}
}

// adopt makes a new instance live, so that Close can stop it. It refuses
// once Close has started stopping the module's instances.
func (m *Module) adopt(in *instance) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stopping {
		return false
	}
	m.live[in] = struct{}{}
	return true
}

// drop forgets an instance that failed to start.
func (m *Module) drop(in *instance) {
	m.mu.Lock()
	delete(m.live, in)
	m.mu.Unlock()
}

// keepSurplus is how long instances beyond the base pool are kept once the
// calls that started them are over. A burst of calls that grew the pool is
// often followed by another (a node's plugins registering at once, a
// rollout's rounds), and starting an instance costs more than the calls it
// serves: milliseconds of CPU for a Go guest, which a burst on a small
// node pays in its latency. Memory is held meanwhile, at most what the
// burst took.
const keepSurplus = 10 * time.Second

// put returns an instance to the pool, or discards it if it is broken.
// Instances beyond the base pool go once the pool has been idle for
// keepSurplus (shrink).
func (m *Module) put(in *instance, broken bool) {
	m.mu.Lock()
	if broken || m.closed || m.quarantine != "" {
		delete(m.live, in)
		n := len(m.live)
		m.mu.Unlock()
		m.discard([]*instance{in}, n)
		return
	}
	m.idle <- in                       // never blocks: it holds every instance
	if len(m.live) > m.opts.PoolSize { // only shrink reads lastPut, and only then: no clock read on every call
		m.lastPut = time.Now()
		if m.shrinkTimer == nil {
			m.shrinkTimer = time.AfterFunc(m.keepSurplus, m.shrink)
		}
	}
	m.mu.Unlock()
}

// shrink closes the idle instances beyond the base pool once no call has
// ended for keepSurplus and none waits; until then it looks again later.
func (m *Module) shrink() {
	m.mu.Lock()
	m.shrinkTimer = nil
	if m.closed || len(m.live) <= m.opts.PoolSize {
		m.mu.Unlock()
		return
	}
	if wait := m.keepSurplus - time.Since(m.lastPut); wait > 0 || m.waiting.Load() > 0 {
		m.shrinkTimer = time.AfterFunc(max(wait, minGrowAfter), m.shrink)
		m.mu.Unlock()
		return
	}
	var gone []*instance
	for len(m.live) > m.opts.PoolSize {
		select {
		case idle := <-m.idle:
			delete(m.live, idle)
			gone = append(gone, idle)
			continue
		default:
		}
		break // the rest are busy: their put looks again
	}
	n := len(m.live)
	m.mu.Unlock()
	m.discard(gone, n)
}

// discard closes instances no longer live (n are left), then frees their
// slots: never more than PoolMax instances exist.
func (m *Module) discard(gone []*instance, n int) {
	if len(gone) == 0 {
		return
	}
	for _, in := range gone {
		in.close()
	}
	m.mu.Lock()
	m.releaseSlots(len(gone))
	m.mu.Unlock()
	m.opts.Observer.Instances(m.opts.Name, n)
}

func (m *Module) succeeded() {
	m.mu.Lock()
	m.consecutive = 0
	m.mu.Unlock()
}

// failed counts a fault and quarantines the module when they keep coming.
// A call the caller cancelled, or Close stopped, is not the module's fault:
// it is logged, not counted, and leaves the count of consecutive faults
// as it was.
func (m *Module) failed(ce *CallError) {
	if ce.Fault == FaultCancelled || ce.Fault == FaultClosed {
		m.opts.Logger.Info("module call stopped", "op", string(ce.Op), "fault", string(ce.Fault), "error", ce.Err)
		return
	}
	m.mu.Lock()
	m.faults++
	m.consecutive++
	m.lastFault, m.lastFaultAt = ce.Error(), time.Now()
	quarantine := m.quarantine == "" && m.consecutive >= m.opts.QuarantineAfter
	if quarantine {
		m.quarantine = fmt.Sprintf("quarantined after %d consecutive faults (last: %s); replace the module file or reload it to try again",
			m.consecutive, ce.Error())
		m.quarantined = time.Now()
	}
	m.mu.Unlock()
	m.opts.Logger.Warn("module fault", "op", string(ce.Op), "fault", string(ce.Fault), "error", ce.Err, "stderr", ce.Detail)
	if quarantine {
		m.opts.Logger.Error("module quarantined: calls are refused until the file is replaced or the module reloaded",
			"consecutive_faults", m.opts.QuarantineAfter)
		m.opts.Observer.Quarantined(m.opts.Name, true)
		m.drainIdle()
	}
	m.sink.flushDropped()
}

func (m *Module) drainIdle() {
	for {
		select {
		case in := <-m.idle:
			m.put(in, true)
		default:
			return
		}
	}
}

// Close unloads the module. Calls in flight may finish until ctx is done;
// then they are interrupted. New calls fail with FaultClosed.
func (m *Module) Close(ctx context.Context) error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	if m.active == 0 {
		close(m.drained)
	}
	m.mu.Unlock()
	select {
	case <-m.drained:
	case <-ctx.Done():
		m.mu.Lock()
		m.stopping = true
		for in := range m.live {
			in.stop(haltUnloading) // the guest traps at its next loop head or call, or wakes
		}
		m.mu.Unlock()
		<-m.drained
	}
	m.drainIdle()
	m.mu.Lock()
	if m.shrinkTimer != nil {
		m.shrinkTimer.Stop()
		m.shrinkTimer = nil
	}
	m.mu.Unlock()
	m.release(context.Background())
	m.opts.Observer.Instances(m.opts.Name, 0)
	return nil
}

// release frees the runtime and mounts.
func (m *Module) release(ctx context.Context) {
	if m.rt != nil {
		m.rt.Close(ctx)
	}
	if m.mounts != nil {
		m.mounts.close()
	}
}

// Status is a snapshot of a module's state, for the API and the CLI.
type Status struct {
	Name        string
	Path        string
	Digest      string
	Size        int64
	Description abi.Description
	Exports     []string
	Loaded      time.Time
	Timing      LoadTiming

	Instances, Idle, PoolSize int
	PoolMax                   int // instances at most, beyond PoolSize when calls wait
	Calls, Faults             uint64
	ConsecutiveFaults         int
	LastFault                 string
	LastFaultAt               time.Time
	Quarantined               bool
	QuarantineReason          string
	QuarantinedAt             time.Time

	MemoryLimit uint64
	CallTimeout time.Duration
	MaxReply    uint32
	Mounts      []Mount
}

// Status returns a snapshot of the module's state.
func (m *Module) Status() Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	return Status{
		Name: m.opts.Name, Path: m.path, Digest: m.digest, Size: m.size,
		Description: m.desc, Exports: append([]string(nil), m.exports...), Loaded: m.loaded, Timing: m.timing,
		Instances: len(m.live), Idle: len(m.idle), PoolSize: m.opts.PoolSize, PoolMax: m.opts.PoolMax,
		Calls: m.calls, Faults: m.faults, ConsecutiveFaults: m.consecutive,
		LastFault: m.lastFault, LastFaultAt: m.lastFaultAt,
		Quarantined: m.quarantine != "", QuarantineReason: m.quarantine, QuarantinedAt: m.quarantined,
		MemoryLimit: m.opts.MemoryLimit, CallTimeout: m.opts.CallTimeout, MaxReply: m.opts.MaxReply,
		Mounts: m.opts.Mounts,
	}
}

// epoch anchors monotonic: time.Since reads only the monotonic clock, once,
// where time.Now reads it and the wall clock. Clock reads are a visible part
// of a call's cost on virtual machines without a fast clock source.
var epoch = time.Now()

func monotonic() time.Duration { return time.Since(epoch) }

// Cache is an on-disk cache of compiled modules, shared by all modules of a
// host so that a restart or a reload does not compile again. It also keeps
// each module's instrumented binary, by the digest of the original file.
type Cache struct {
	cache wazero.CompilationCache
	dir   string
}

// NewCache opens (creating if needed) a compilation cache in dir.
func NewCache(dir string) (*Cache, error) {
	if err := os.MkdirAll(filepath.Join(dir, "instrumented"), 0o700); err != nil {
		return nil, fmt.Errorf("compilation cache: %w", err)
	}
	c, err := wazero.NewCompilationCacheWithDir(dir)
	if err != nil {
		return nil, fmt.Errorf("compilation cache %s: %w", dir, err)
	}
	return &Cache{cache: c, dir: dir}, nil
}

// lookup returns the instrumented binary kept under key, or nil (always for
// a nil Cache). An entry is written only once its original passed every
// check, so a hit skips them; the directory is private to wasmlet (0700).
func (c *Cache) lookup(key string) []byte {
	if c == nil {
		return nil
	}
	b, err := os.ReadFile(filepath.Join(c.dir, "instrumented", key+".wasm"))
	if err != nil || !bytes.HasPrefix(b, wasmMagic) {
		return nil
	}
	return b
}

// store keeps an instrumented binary under key (atomicfile: never seen half
// written); one that cannot be written is simply redone next time.
func (c *Cache) store(key string, b []byte) {
	if c == nil {
		return
	}
	path := filepath.Join(c.dir, "instrumented", key+".wasm")
	if _, err := os.Stat(path); err == nil {
		return
	}
	atomicfile.Write(path, b, 0o600)
}

// Close releases the cache (the files stay). A nil Cache has nothing to
// release.
func (c *Cache) Close(ctx context.Context) error {
	if c == nil {
		return nil
	}
	return c.cache.Close(ctx)
}
