;; A device source whose discover answers with the request's own bytes, so a
;; test can make the host decode any reply it likes. A request starting with
;; the byte 0xee is answered with the error bit set. For the host's reply
;; fuzzing (host/module FuzzModuleReply); not a real source.
(module
  (memory (export "memory") 1)
  (data (i32.const 0x100) "\08\02\12\03\77\61\74\2a\0f\65\78\61\6d\70\6c\65\2e\63\6f\6d\2f\77\61\74\32\08\64\69\73\63\6f\76\65\72")
  (func (export "wasmlet_abi_version") (result i32) (i32.const 1))
  (func (export "wasmlet_alloc") (param i32) (result i32)
    (if (result i32) (i32.gt_u (local.get 0) (i32.const 0x7000))
      (then (i32.const 0))
      (else (i32.const 0x1000))))
  (func (export "wasmlet_describe") (param i32 i32) (result i64)
    (i64.const 0x2200000100))
  (func (export "wasmlet_discover") (param $ptr i32) (param $len i32) (result i64)
    (local $r i64)
    (memory.copy (i32.const 0x8000) (local.get $ptr) (local.get $len))
    (local.set $r
      (i64.or
        (i64.shl (i64.extend_i32_u (local.get $len)) (i64.const 32))
        (i64.const 0x8000)))
    (if (result i64)
      (i32.and
        (i32.gt_u (local.get $len) (i32.const 0))
        (i32.eq (i32.load8_u (local.get $ptr)) (i32.const 0xee)))
      (then (i64.or (local.get $r) (i64.const 0x8000000000000000)))
      (else (local.get $r)))))
