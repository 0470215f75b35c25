//go:build wasip1

package guest

import "unsafe"

//go:wasmimport wasmlet log
func hostLog(level int32, ptr unsafe.Pointer, n int32)

//go:wasmimport wasmlet config_get
func hostConfigGet(kptr unsafe.Pointer, klen int32, bptr unsafe.Pointer, blen int32) int32
