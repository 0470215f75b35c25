;; A handler for ExamplePlugin that sleeps in register, for as long as WASI
;; lets it: poll_oneoff with a relative clock subscription of 2^63-1 ns.
(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll_oneoff (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0x100) "\08\01\12\0e\73\6c\65\65\70\5f\72\65\67\69\73\74\65\72\22\0d\45\78\61\6d\70\6c\65\50\6c\75\67\69\6e\32\08\72\65\67\69\73\74\65\72")
  (func (export "wasmlet_alloc") (param i32) (result i32)
    (if (result i32) (i32.gt_u (local.get 0) (i32.const 0xf000))
      (then (i32.const 0))
      (else (i32.const 0x1000))))
  (func (export "wasmlet_describe") (param i32 i32) (result i64)
    (i64.const 0x2b00000100))
  (func (export "wasmlet_abi_version") (result i32) (i32.const 1))
  (func (export "wasmlet_register") (param i32 i32) (result i64)
    ;; The subscription at 0x2000: clock 1 (monotonic) at +16, timeout at
    ;; +24, relative. Events at 0x3000, their count at 0x4000.
    (i32.store (i32.const 0x2010) (i32.const 1))
    (i64.store (i32.const 0x2018) (i64.const 0x7fffffffffffffff))
    (drop (call $poll_oneoff (i32.const 0x2000) (i32.const 0x3000) (i32.const 1) (i32.const 0x4000)))
    (i64.const 0)))
