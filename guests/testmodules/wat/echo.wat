;; A device source whose preferred_allocation answers with the request's own
;; bytes: a PreferredAllocationRequest's "available" (field 1) has the wire
;; shape of a PreferredAllocationResponse's "device_ids" (field 1), so the
;; reply decodes as the available devices. It does no work of its own, which
;; makes it the benchmark of the ABI's round trip alone.
(module
  (memory (export "memory") 1)
  (data (i32.const 0x100) "\08\02\12\04\65\63\68\6f\2a\10\65\78\61\6d\70\6c\65\2e\63\6f\6d\2f\65\63\68\6f\32\08\64\69\73\63\6f\76\65\72\32\14\70\72\65\66\65\72\72\65\64\5f\61\6c\6c\6f\63\61\74\69\6f\6e\42\34\65\63\68\6f\65\73\20\70\72\65\66\65\72\72\65\64\5f\61\6c\6c\6f\63\61\74\69\6f\6e\20\72\65\71\75\65\73\74\73\3b\20\66\6f\72\20\62\65\6e\63\68\6d\61\72\6b\73")
  (func (export "wasmlet_abi_version") (result i32) (i32.const 1))
  ;; Requests go to 0x1000 (up to 28 KiB), replies are copied to 0x8000.
  (func (export "wasmlet_alloc") (param i32) (result i32)
    (if (result i32) (i32.gt_u (local.get 0) (i32.const 0x7000))
      (then (i32.const 0))
      (else (i32.const 0x1000))))
  (func (export "wasmlet_describe") (param i32 i32) (result i64)
    (i64.const 0x7000000100))
  (func (export "wasmlet_discover") (param i32 i32) (result i64)
    (i64.const 0))
  (func (export "wasmlet_preferred_allocation") (param $ptr i32) (param $len i32) (result i64)
    (memory.copy (i32.const 0x8000) (local.get $ptr) (local.get $len))
    (i64.or
      (i64.shl (i64.extend_i32_u (local.get $len)) (i64.const 32))
      (i64.const 0x8000))))
