;; Sleeps in discover, for as long as WASI lets it: one poll_oneoff with a
;; relative clock subscription of 2^63-1 ns (292 years), straight from
;; WebAssembly (what C's nanosleep and Go's time.Sleep come down to).
(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll_oneoff (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0x100) "\08\02\12\05\73\6c\65\65\70\2a\11\65\78\61\6d\70\6c\65\2e\63\6f\6d\2f\73\6c\65\65\70\32\08\64\69\73\63\6f\76\65\72")
  (func (export "wasmlet_alloc") (param i32) (result i32)
    (if (result i32) (i32.gt_u (local.get 0) (i32.const 0xf000))
      (then (i32.const 0))
      (else (i32.const 0x1000))))
  (func (export "wasmlet_describe") (param i32 i32) (result i64)
    (i64.const 0x2600000100))
  (func (export "wasmlet_abi_version") (result i32) (i32.const 1))
  (func (export "wasmlet_discover") (param i32 i32) (result i64)
    ;; The subscription at 0x2000 (48 bytes): userdata 0, tag 0 (clock),
    ;; clock id 1 (monotonic) at +16, timeout at +24, precision at +32,
    ;; flags 0 (relative) at +40. Events at 0x3000, their count at 0x4000.
    (i32.store (i32.const 0x2010) (i32.const 1))
    (i64.store (i32.const 0x2018) (i64.const 0x7fffffffffffffff))
    (drop (call $poll_oneoff (i32.const 0x2000) (i32.const 0x3000) (i32.const 1) (i32.const 0x4000)))
    (i64.const 0)))
