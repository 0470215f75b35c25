;; A device source whose table starts with 2^27 elements: 1 GiB of host
;; memory per instance (wazero keeps tables outside the memory limit). The
;; host refuses it at load.
(module
  (memory (export "memory") 1)
  (table 0x8000000 funcref)
  (data (i32.const 0x100) "\08\02\12\03\77\61\74\2a\0f\65\78\61\6d\70\6c\65\2e\63\6f\6d\2f\77\61\74\32\08\64\69\73\63\6f\76\65\72")
  (func (export "wasmlet_alloc") (param i32) (result i32)
    (if (result i32) (i32.gt_u (local.get 0) (i32.const 0xf000))
      (then (i32.const 0))
      (else (i32.const 0x1000))))
  (func (export "wasmlet_describe") (param i32 i32) (result i64)
    (i64.const 0x2200000100))
  (func (export "wasmlet_abi_version") (result i32) (i32.const 1))
  (func (export "wasmlet_discover") (param i32 i32) (result i64)
    (i64.const 0)))
