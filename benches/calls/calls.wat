;; `ringos bench calls`: the cost of one call across a component boundary.
;; $Caller loops n times over an import that $Callee implements; the two
;; are separate component instances, so every call is lowered in the
;; caller, lifted in the callee (and the result back).
;;   run-noop(n):  sync func() -> ()
;;   run-len(n):   sync func(s: string) -> u32, a 16-byte string each time
;;   run-async(n): async func(s: string) -> u32, lowered async (the callee
;;                 returns at once: task.return, then EXIT)
(component
  (component $Callee
    (core module $M
      (import "" "task.return" (func $task.return (param i32)))
      (memory (export "mem") 1)
      ;; Every string lands at 1024: the callee only reads its length.
      (func (export "realloc") (param i32 i32 i32 i32) (result i32) (i32.const 1024))
      (func (export "noop"))
      (func (export "len") (param i32 i32) (result i32) (local.get 1))
      (func (export "async-len") (param i32 i32) (result i32)
        (call $task.return (local.get 1))
        (i32.const 0 (; EXIT ;)))
      (func (export "cb") (param i32 i32 i32) (result i32) unreachable))
    (core func $task.return (canon task.return (result u32)))
    (core instance $m (instantiate $M (with "" (instance
      (export "task.return" (func $task.return))))))
    (func (export "noop") (canon lift (core func $m "noop")))
    (func (export "len") (param "s" string) (result u32)
      (canon lift (core func $m "len")
        (memory (core memory $m "mem")) (realloc (core func $m "realloc"))))
    (func (export "async-len") async (param "s" string) (result u32)
      (canon lift (core func $m "async-len") async (callback (core func $m "cb"))
        (memory (core memory $m "mem")) (realloc (core func $m "realloc")))))

  (component $Caller
    (import "noop" (func $noop))
    (import "len" (func $len (param "s" string) (result u32)))
    (import "async-len" (func $async-len async (param "s" string) (result u32)))
    (core module $Mem
      (memory (export "mem") 1)
      (data (i32.const 16) "hello, component"))
    (core instance $mem (instantiate $Mem))
    (core func $noop' (canon lower (func $noop)))
    (core func $len' (canon lower (func $len) (memory (core memory $mem "mem"))))
    (core func $async-len' (canon lower (func $async-len) async (memory (core memory $mem "mem"))))
    (core module $L
      (import "" "mem" (memory 1))
      (import "" "noop" (func $noop))
      (import "" "len" (func $len (param i32 i32) (result i32)))
      (import "" "async-len" (func $async-len (param i32 i32 i32) (result i32)))
      (func (export "run-noop") (param $n i32) (result i32)
        (local $i i32)
        (block $done (loop $l
          (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
          (call $noop)
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br $l)))
        (local.get $n))
      (func (export "run-len") (param $n i32) (result i32)
        (local $i i32) (local $acc i32)
        (block $done (loop $l
          (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
          (local.set $acc (i32.add (local.get $acc)
            (call $len (i32.const 16) (i32.const 16))))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br $l)))
        (local.get $acc))
      (func (export "run-async") (param $n i32) (result i32)
        (local $i i32) (local $acc i32)
        (block $done (loop $l
          (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
          ;; The callee returns at once: RETURNED (2), result at 64.
          (if (i32.ne (call $async-len (i32.const 16) (i32.const 16) (i32.const 64))
                      (i32.const 2))
            (then unreachable))
          (local.set $acc (i32.add (local.get $acc) (i32.load (i32.const 64))))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br $l)))
        (local.get $acc)))
    (core instance $l (instantiate $L (with "" (instance
      (export "mem" (memory $mem "mem"))
      (export "noop" (func $noop'))
      (export "len" (func $len'))
      (export "async-len" (func $async-len'))))))
    (func (export "run-noop") (param "n" u32) (result u32) (canon lift (core func $l "run-noop")))
    (func (export "run-len") (param "n" u32) (result u32) (canon lift (core func $l "run-len")))
    (func (export "run-async") (param "n" u32) (result u32) (canon lift (core func $l "run-async"))))

  (instance $callee (instantiate $Callee))
  (instance $caller (instantiate $Caller
    (with "noop" (func $callee "noop"))
    (with "len" (func $callee "len"))
    (with "async-len" (func $callee "async-len"))))
  (export "run-noop" (func $caller "run-noop"))
  (export "run-len" (func $caller "run-len"))
  (export "run-async" (func $caller "run-async")))
