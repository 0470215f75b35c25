//go:build !wasip1

package guest

// Outside WebAssembly (module code under `go test` on the host), the host
// imports are simulated: log lines go to standard error and configuration
// comes from SetTestConfig.

import (
	"os"
	"unsafe"
)

var testConfig map[string]string

// SetTestConfig sets the configuration Config returns outside WebAssembly.
func SetTestConfig(c map[string]string) { testConfig = c }

func hostLog(level int32, ptr unsafe.Pointer, n int32) {
	os.Stderr.WriteString(unsafe.String((*byte)(ptr), n) + "\n")
}

func hostConfigGet(kptr unsafe.Pointer, klen int32, bptr unsafe.Pointer, blen int32) int32 {
	v, ok := testConfig[unsafe.String((*byte)(kptr), klen)]
	if !ok {
		return -1
	}
	if int(blen) >= len(v) && len(v) > 0 {
		copy(unsafe.Slice((*byte)(bptr), blen), v)
	}
	return int32(len(v))
}
