;; Functions that leave in every way a function can, for the instrumenter's
;; tests: each result must be the same before and after instrumentation, and
;; the call depth must come back to zero whichever way a call returns.
(module
  (memory (export "memory") 1)
  (type $sig (func (param i32) (result i32)))
  (table 2 funcref)
  (elem (i32.const 0) $fib $early)

  ;; Plain recursion.
  (func $fib (export "fib") (param i32) (result i32)
    (if (result i32) (i32.lt_u (local.get 0) (i32.const 2))
      (then (local.get 0))
      (else (i32.add (call $fib (i32.sub (local.get 0) (i32.const 1)))
                     (call $fib (i32.sub (local.get 0) (i32.const 2)))))))

  ;; return from nested blocks, br and br_table to the function's label,
  ;; and the fall-through end, chosen by the argument: 0 → 100, 1 → 101,
  ;; 2 → 112, 3 → 1102, more → 102.
  (func $early (export "early") (param i32) (result i32)
    (drop (call $fib (i32.const 3)))
    (block $a (result i32)
      (i32.add (i32.const 10)
        (block $b (result i32)
          (loop $l
            (if (i32.eq (local.get 0) (i32.const 0)) (then (return (i32.const 100))))
            (if (i32.eq (local.get 0) (i32.const 1)) (then (br 4 (i32.const 101))))
            (br_table $b $a 3 (i32.const 102) (i32.sub (local.get 0) (i32.const 2))))
          (unreachable)))
      (return))
    (i32.add (i32.const 1000)))

  ;; Several results, returned early or at the end.
  (func $pair (export "pair") (param i32) (result i32 i64)
    (drop (call $fib (i32.const 2)))
    (if (local.get 0) (then (return (i32.const 1) (i64.const 2))))
    (i32.const 3) (i64.const 4))
  (func (export "sum_pair") (param i32) (result i64) (local i64)
    (call $pair (local.get 0))
    (local.set 1)
    (i64.extend_i32_u)
    (i64.add (local.get 1)))

  ;; Through the table.
  (func (export "indirect") (param i32 i32) (result i32)
    (call_indirect (type $sig) (local.get 1) (local.get 0)))

  ;; Recursion to depth n.
  (func $deep (export "deep") (param i32) (result i32)
    (if (result i32) (i32.eqz (local.get 0))
      (then (i32.const 0))
      (else (i32.add (i32.const 1) (call $deep (i32.sub (local.get 0) (i32.const 1)))))))

  ;; A leaf that never returns.
  (func (export "spin")
    (loop $forever (br $forever))))
