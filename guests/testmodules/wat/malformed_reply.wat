;; Replies to discover with bytes that are not a DiscoverResponse (a field claiming 255 bytes, followed by 2).
;; It serves example.com/wat-malformed-reply, a resource of its own, so that it can run next to
;; the other test modules on one host.
(module
  (memory (export "memory") 1)
  (data (i32.const 0x100) "\08\02\12\03\77\61\74\2a\1f\65\78\61\6d\70\6c\65\2e\63\6f\6d\2f\77\61\74\2d\6d\61\6c\66\6f\72\6d\65\64\2d\72\65\70\6c\79\32\08\64\69\73\63\6f\76\65\72")
  (data (i32.const 0x200) "\0a\04\0a\02\77\30")
  (func (export "wasmlet_alloc") (param i32) (result i32)
    (if (result i32) (i32.gt_u (local.get 0) (i32.const 0xf000))
      (then (i32.const 0))
      (else (i32.const 0x1000))))
  (func (export "wasmlet_describe") (param i32 i32) (result i64)
    (i64.const 0x3200000100))
  (func (export "wasmlet_abi_version") (result i32) (i32.const 1))
  (data (i32.const 0x300) "\0a\ff\01\00")
  (func (export "wasmlet_discover") (param i32 i32) (result i64)
    (i64.const 0x400000300)))
