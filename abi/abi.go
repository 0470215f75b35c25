package abi

// Version is the ABI major version this package implements. A module reports
// the version it was built for from its wasmlet_abi_version export.
const Version = 1

// Names of the exports every module must have.
const (
	ExportMemory     = "memory"
	ExportInitialize = "_initialize" // optional: run once, before anything else
	ExportABIVersion = "wasmlet_abi_version"
	ExportAlloc      = "wasmlet_alloc"
	ExportDescribe   = "wasmlet_describe"
)

// ExportPrefix prefixes every operation export: operation "discover" is
// exported as "wasmlet_discover".
const ExportPrefix = "wasmlet_"

// Op names an operation a module may implement.
type Op string

const (
	OpDescribe            Op = "describe"
	OpValidate            Op = "validate"
	OpRegister            Op = "register"
	OpDeregister          Op = "deregister"
	OpDiscover            Op = "discover"
	OpAllocate            Op = "allocate"
	OpPreferredAllocation Op = "preferred_allocation"
	OpPreStart            Op = "prestart"
	OpPrepare             Op = "prepare"
	OpUnprepare           Op = "unprepare"
)

// Export is the name of the export that implements op.
func (op Op) Export() string { return ExportPrefix + string(op) }

// OpsFor lists the operations a module of kind k may implement, and which of
// them it must.
func OpsFor(k Kind) (optional []Op, required []Op) {
	switch k {
	case KindHandler:
		return []Op{OpValidate, OpRegister, OpDeregister}, []Op{OpRegister}
	case KindDeviceSource:
		return []Op{OpDiscover, OpAllocate, OpPreferredAllocation, OpPreStart, OpPrepare, OpUnprepare}, []Op{OpDiscover}
	}
	return nil, nil
}

// Host imports, all in the module named ImportModule.
const (
	ImportModule    = "wasmlet"
	ImportLog       = "log"        // (level i32, ptr i32, len i32)
	ImportConfigGet = "config_get" // (key_ptr i32, key_len i32, buf_ptr i32, buf_len i32) -> i32
)

// LogLevel is the level argument of the log import.
type LogLevel int32

const (
	LogTrace LogLevel = 1
	LogDebug LogLevel = 2
	LogInfo  LogLevel = 3
	LogWarn  LogLevel = 4
	LogError LogLevel = 5
)

// ConfigAbsent is what config_get returns for a key that is not set.
const ConfigAbsent = -1

// errorBit marks a result whose bytes are an Error message.
const errorBit = 1 << 63

// MaxLen is the largest length a result can carry.
const MaxLen = 1<<31 - 1

// PackResult builds the i64 an operation returns: the reply's address in
// bits 0–31, its length in bits 32–62, and bit 63 set when the reply is an
// Error message.
func PackResult(ptr, length uint32, isError bool) uint64 {
	r := uint64(ptr) | uint64(length&MaxLen)<<32
	if isError {
		r |= errorBit
	}
	return r
}

// UnpackResult is the inverse of PackResult.
func UnpackResult(r uint64) (ptr, length uint32, isError bool) {
	return uint32(r), uint32(r>>32) & MaxLen, r&errorBit != 0
}
