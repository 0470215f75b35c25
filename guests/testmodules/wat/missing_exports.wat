;; Has memory and a version, and nothing else the ABI requires.
(module
  (memory (export "memory") 1)
  (func (export "wasmlet_abi_version") (result i32) (i32.const 1)))
