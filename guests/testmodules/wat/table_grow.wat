;; A device source whose discover grows its table by 2^28 elements. wazero
;; keeps tables in host memory, outside the memory limit: this one call
;; would take 2 GiB of it (2^31 elements: 16 GiB, and the host dies). The
;; host caps every table, so the grow fails (returns -1) and the module traps.
;; It serves example.com/wat-table-grow, a resource of its own, so that it can run next to
;; the other test modules on one host.
(module
  (memory (export "memory") 1)
  (table $t 0 funcref)
  (data (i32.const 0x100) "\08\02\12\03\77\61\74\2a\1a\65\78\61\6d\70\6c\65\2e\63\6f\6d\2f\77\61\74\2d\74\61\62\6c\65\2d\67\72\6f\77\32\08\64\69\73\63\6f\76\65\72")
  (func (export "wasmlet_alloc") (param i32) (result i32)
    (if (result i32) (i32.gt_u (local.get 0) (i32.const 0xf000))
      (then (i32.const 0))
      (else (i32.const 0x1000))))
  (func (export "wasmlet_describe") (param i32 i32) (result i64)
    (i64.const 0x2d00000100))
  (func (export "wasmlet_abi_version") (result i32) (i32.const 1))
  (func (export "wasmlet_discover") (param i32 i32) (result i64)
    (if (i32.eq (table.grow $t (ref.null func) (i32.const 0x10000000)) (i32.const -1))
      (then unreachable))
    (i64.const 0)))
