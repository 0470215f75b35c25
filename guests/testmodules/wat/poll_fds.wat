;; Polls, in discover, for a file and stdin to be readable and for an hour
;; to pass (one poll_oneoff, three subscriptions). It opens "file" in its
;; first mount (preopened as fd 3) and traps if it cannot. A poll that
;; waits on an fd subscription would hold the call: the host answers such
;; subscriptions at once (a file and an empty stdin are always readable),
;; so discover returns at once with no devices.
(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll_oneoff (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0x100) "\08\02\12\07\70\6f\6c\6c\66\64\73\2a\13\65\78\61\6d\70\6c\65\2e\63\6f\6d\2f\70\6f\6c\6c\66\64\73\32\08\64\69\73\63\6f\76\65\72")
  (data (i32.const 0x180) "file")
  (func (export "wasmlet_alloc") (param i32) (result i32)
    (if (result i32) (i32.gt_u (local.get 0) (i32.const 0xf000))
      (then (i32.const 0))
      (else (i32.const 0x1000))))
  (func (export "wasmlet_describe") (param i32 i32) (result i64)
    (i64.const 0x2a00000100))
  (func (export "wasmlet_abi_version") (result i32) (i32.const 1))
  (func (export "wasmlet_discover") (param i32 i32) (result i64)
    ;; path_open(3, 0, "file", 0 oflags, fd_read rights, 0, 0 fdflags, &fd at 0x1f0)
    (if (call $path_open (i32.const 3) (i32.const 0) (i32.const 0x180) (i32.const 4) (i32.const 0)
          (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 0x1f0))
      (then (unreachable)))
    ;; Subscriptions of 48 bytes from 0x2000: [0] clock 1 (monotonic), one
    ;; hour, relative; [1] fd_read (tag 1) of stdin (fd 0); [2] fd_read of
    ;; the file. Events at 0x3000, their count at 0x4000.
    (i32.store (i32.const 0x2010) (i32.const 1))
    (i64.store (i32.const 0x2018) (i64.const 3600000000000))
    (i32.store8 (i32.const 0x2038) (i32.const 1))
    (i32.store (i32.const 0x2040) (i32.const 0))
    (i32.store8 (i32.const 0x2068) (i32.const 1))
    (i32.store (i32.const 0x2070) (i32.load (i32.const 0x1f0)))
    (if (call $poll_oneoff (i32.const 0x2000) (i32.const 0x3000) (i32.const 3) (i32.const 0x4000))
      (then (unreachable)))
    (i64.const 0)))
