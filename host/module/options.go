package module

import (
	"fmt"
	"path"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/wasmlet/wasmlet/host/internal/defaults"
)

// Defaults for the sandbox limits. Every limit always has a value: a module
// never runs without a memory limit or a call timeout.
const (
	DefaultMemoryLimit     = 64 << 20
	DefaultCallTimeout     = 2 * time.Second
	DefaultInitTimeout     = 10 * time.Second
	DefaultMaxReply        = 4 << 20
	DefaultPoolSize        = 2
	DefaultPoolMax         = 8
	DefaultQuarantineAfter = 5
	DefaultLogRate         = 50  // lines per second, per module
	DefaultLogBurst        = 200 // lines
	maxLogLine             = 4096
	wasmPage               = 65536
)

// Options are a module's sandbox: what it may use and how long it may take.
type Options struct {
	// Name identifies the module in logs, errors and metrics. Defaults to the
	// file name without ".wasm".
	Name string
	// MemoryLimit caps the module's linear memory, per instance, in bytes
	// (rounded up to 64 KiB pages).
	MemoryLimit uint64
	// CallTimeout bounds every operation; a call that overruns is interrupted
	// and its instance discarded.
	CallTimeout time.Duration
	// InitTimeout bounds instantiation: _initialize, abi version, describe.
	InitTimeout time.Duration
	// MaxReply is the largest reply the host accepts, in bytes.
	MaxReply uint32
	// PoolSize is how many instances the module keeps to serve calls.
	PoolSize int
	// PoolMax is the most instances the module runs at once: when every
	// instance has been busy for as long as starting one takes, a call
	// starts one more, up to PoolMax. Instances beyond PoolSize go once no
	// call has ended for 10 s (a burst is often followed by another, and
	// starting one costs milliseconds). Defaults to the larger of PoolSize and
	// DefaultPoolMax; never less than PoolSize.
	PoolMax int
	// QuarantineAfter is how many consecutive faults quarantine the module.
	QuarantineAfter int
	// Mounts are the read-only directories the module may read.
	Mounts []Mount
	// Config is the key/value configuration the module reads with config_get.
	Config map[string]string
	// SHA256, when set, pins the module file: a file whose hex SHA-256
	// differs is refused.
	SHA256 string
	// LogRate and LogBurst limit the log lines a module may emit (through the
	// log import and its stdout/stderr together).
	LogRate, LogBurst int

	// Logger receives the module's log lines and the host's lines about it.
	Logger hclog.Logger
	// Cache, when set, keeps compiled code across loads and restarts.
	Cache *Cache
	// Observer, when set, is told about calls, faults and instances.
	Observer Observer

	// callDepth overrides MaxCallDepth, for tests that measure guests.
	callDepth uint32
}

// MaxCallDepth bounds a guest's call stack: a call that would take the
// depth past it traps ("call depth exceeded"). A call adds its function's
// weight (1 for a small function, one more per 64 parameters, locals and
// code bytes; see package interrupt), so the limit bounds the native stack
// wazero gives the guest: a runaway recursion faults with a few MB of it,
// where wazero's own ceiling lets it take ~250 MB. The repository's Go and C
// guests need at most 1,024; the tests run them at a sixteenth of the limit.
const MaxCallDepth = 1 << 15

// maxTableElements bounds the elements of a module's tables, all together:
// wazero keeps them in host memory (8 bytes each), outside the memory limit,
// and a table without a maximum could grow to 2³² elements (32 GB, the
// host's death). 2²⁰ elements are 8 MiB per instance; a Go guest's one
// table holds ~6,000.
const maxTableElements = 1 << 20

func (o Options) maxCallDepth() uint32 {
	if o.callDepth != 0 {
		return o.callDepth
	}
	return MaxCallDepth
}

// Mount grants a module read-only access to a host directory.
type Mount struct {
	// Host is the directory on the host.
	Host string
	// Guest is where the module sees it (absolute, e.g. "/sys/bus/pci/devices").
	Guest string
	// Root, when set, is an ancestor of Host within which symbolic links may
	// resolve (sysfs, for example, links /sys/bus/pci/devices/* into
	// /sys/devices). By default links may not leave Host. Paths are resolved
	// with os.Root, so neither ".." nor a link escapes it.
	Root string
	// Devices lets the module open the device nodes in the mount. Without
	// it a module may list and stat them, never open them: a module given
	// /dev to find devices must not read a disk.
	Devices bool
}

func (m Mount) String() string { return m.Host + ":" + m.Guest + " (read-only)" }

// Validate checks that the mount is well formed.
func (m Mount) Validate() error {
	if !filepath.IsAbs(m.Host) {
		return fmt.Errorf("mount host path %q must be absolute", m.Host)
	}
	if !path.IsAbs(m.Guest) {
		return fmt.Errorf("mount guest path %q must be absolute", m.Guest)
	}
	if m.Root != "" {
		rel, err := filepath.Rel(m.Root, m.Host)
		if err != nil || rel == ".." || len(rel) > 2 && rel[:3] == "../" || filepath.IsAbs(rel) {
			return fmt.Errorf("mount root %q must contain the host path %q", m.Root, m.Host)
		}
	}
	return nil
}

// withDefaults fills in every unset limit.
func (o Options) withDefaults(file string) Options {
	if o.Name == "" {
		o.Name = NameFromPath(file)
	}
	if o.MemoryLimit == 0 {
		o.MemoryLimit = DefaultMemoryLimit
	}
	defaults.Positive(&o.CallTimeout, DefaultCallTimeout)
	defaults.Positive(&o.InitTimeout, DefaultInitTimeout)
	if o.MaxReply == 0 {
		o.MaxReply = DefaultMaxReply
	}
	defaults.Positive(&o.PoolSize, DefaultPoolSize)
	defaults.Positive(&o.PoolMax, max(o.PoolSize, DefaultPoolMax))
	o.PoolMax = max(o.PoolMax, o.PoolSize)
	defaults.Positive(&o.QuarantineAfter, DefaultQuarantineAfter)
	defaults.Positive(&o.LogRate, DefaultLogRate)
	defaults.Positive(&o.LogBurst, DefaultLogBurst)
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	o.Logger = o.Logger.With("module", o.Name)
	if o.Observer == nil {
		o.Observer = nopObserver{}
	}
	return o
}

func (o Options) memoryPages() uint32 {
	p := (o.MemoryLimit + wasmPage - 1) / wasmPage
	if p > 65536 {
		p = 65536
	}
	return uint32(p)
}

// NameFromPath is the name a module file is known by: its base name without
// the ".wasm" extension.
func NameFromPath(file string) string {
	base := filepath.Base(file)
	if ext := filepath.Ext(base); ext == ".wasm" {
		base = base[:len(base)-len(ext)]
	}
	return base
}

// Observer is told what modules do. Implementations must be fast and safe for
// concurrent use; the metrics package provides one.
type Observer interface {
	// Call reports one finished operation. fault is "" when the module
	// answered (even with an error of its own).
	Call(module string, op string, d time.Duration, fault Fault)
	// Instances reports the number of live instances of a module.
	Instances(module string, n int)
	// Quarantined reports that a module was quarantined (true) or released.
	Quarantined(module string, q bool)
	// LogsDropped reports log lines dropped by the rate limit.
	LogsDropped(module string, n int)
}

type nopObserver struct{}

func (nopObserver) Call(string, string, time.Duration, Fault) {}
func (nopObserver) Instances(string, int)                     {}
func (nopObserver) Quarantined(string, bool)                  {}
func (nopObserver) LogsDropped(string, int)                   {}
