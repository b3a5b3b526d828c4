;; Cancellation with the WASI 0.3.0 built-ins: a synchronous
;; `subtask.cancel` of an async call, `task.cancel` in the callee.
;;
;; $C.f waits on an empty set, $C.g waits the same way but returns a value
;; when told to cancel, $C.h starts only when $C's backpressure allows.
;; $D.run calls each async and cancels it:
;;   f: TASK_CANCELLED reaches f's callback, it calls task.cancel: the
;;      cancel returns CANCELLED_BEFORE_RETURNED, the result untouched;
;;   g: it returns 7 instead: RETURNED, the result written;
;;   h: never started (backpressure): CANCELLED_BEFORE_STARTED, and it
;;      never runs afterwards either.
(component
  (component $C
    (core module $Memory (memory (export "mem") 1))
    (core instance $memory (instantiate $Memory))
    (core module $CM
      (import "" "mem" (memory 1))
      (import "" "task.cancel" (func $task.cancel))
      (import "" "task.return" (func $task.return (param i32)))
      (import "" "waitable-set.new" (func $waitable-set.new (result i32)))
      (import "" "backpressure.inc" (func $backpressure.inc))
      (import "" "backpressure.dec" (func $backpressure.dec))
      (global $ws (mut i32) (i32.const 0))
      (global $h-ran (mut i32) (i32.const 0))
      (func $start (global.set $ws (call $waitable-set.new)))
      (start $start)

      ;; WAIT on the empty set: only a cancellation ends it.
      (func $wait (result i32)
        (i32.or (i32.const 2 (; WAIT ;)) (i32.shl (global.get $ws) (i32.const 4))))
      (func (export "f") (result i32) (call $wait))
      (func (export "g") (result i32) (call $wait))
      (func (export "h") (result i32)
        (global.set $h-ran (i32.const 1))
        (call $wait))

      (func $expect-cancelled (param $code i32) (param $index i32) (param $payload i32)
        (if (i32.ne (local.get $code) (i32.const 6 (; TASK_CANCELLED ;)))
          (then unreachable))
        (if (i32.or (local.get $index) (local.get $payload))
          (then unreachable)))
      (func (export "f_cb") (param i32 i32 i32) (result i32)
        (call $expect-cancelled (local.get 0) (local.get 1) (local.get 2))
        (call $task.cancel)
        (i32.const 0 (; EXIT ;)))
      (func (export "g_cb") (param i32 i32 i32) (result i32)
        (call $expect-cancelled (local.get 0) (local.get 1) (local.get 2))
        (call $task.return (i32.const 7))
        (i32.const 0 (; EXIT ;)))
      (func (export "h_cb") (param i32 i32 i32) (result i32) unreachable)

      (func (export "block") (call $backpressure.inc))
      (func (export "unblock") (call $backpressure.dec))
      (func (export "h-ran") (result i32) (global.get $h-ran))
    )
    (canon task.cancel (core func $task.cancel))
    (canon task.return (result u32) (core func $task.return))
    (canon waitable-set.new (core func $waitable-set.new))
    (canon backpressure.inc (core func $backpressure.inc))
    (canon backpressure.dec (core func $backpressure.dec))
    (core instance $cm (instantiate $CM (with "" (instance
      (export "mem" (memory $memory "mem"))
      (export "task.cancel" (func $task.cancel))
      (export "task.return" (func $task.return))
      (export "waitable-set.new" (func $waitable-set.new))
      (export "backpressure.inc" (func $backpressure.inc))
      (export "backpressure.dec" (func $backpressure.dec))
    ))))
    (func (export "f") async (result u32)
      (canon lift (core func $cm "f") async (callback (core func $cm "f_cb"))))
    (func (export "g") async (result u32)
      (canon lift (core func $cm "g") async (callback (core func $cm "g_cb"))))
    (func (export "h") async (result u32)
      (canon lift (core func $cm "h") async (callback (core func $cm "h_cb"))))
    (func (export "block") (canon lift (core func $cm "block")))
    (func (export "unblock") (canon lift (core func $cm "unblock")))
    (func (export "h-ran") (result u32) (canon lift (core func $cm "h-ran")))
  )

  (component $D
    (import "f" (func $f async (result u32)))
    (import "g" (func $g async (result u32)))
    (import "h" (func $h async (result u32)))
    (import "block" (func $block))
    (import "unblock" (func $unblock))
    (import "h-ran" (func $h-ran (result u32)))
    (core module $Memory (memory (export "mem") 1))
    (core instance $memory (instantiate $Memory))
    (core module $DM
      (import "" "mem" (memory 1))
      (import "" "subtask.cancel" (func $subtask.cancel (param i32) (result i32)))
      (import "" "subtask.drop" (func $subtask.drop (param i32)))
      (import "" "f" (func $f (param i32) (result i32)))
      (import "" "g" (func $g (param i32) (result i32)))
      (import "" "h" (func $h (param i32) (result i32)))
      (import "" "block" (func $block))
      (import "" "unblock" (func $unblock))
      (import "" "h-ran" (func $h-ran (result i32)))

      ;; Calls `call` (through `$which`), expects `state` back, cancels:
      ;; the cancel's result.
      (func $call-and-cancel (param $which i32) (param $state i32) (result i32)
        (local $ret i32) (local $subtask i32)
        (i32.store (i32.const 4) (i32.const 0xbad0bad0))
        (local.set $ret
          (if (result i32) (i32.eq (local.get $which) (i32.const 0))
            (then (call $f (i32.const 4)))
            (else (if (result i32) (i32.eq (local.get $which) (i32.const 1))
              (then (call $g (i32.const 4)))
              (else (call $h (i32.const 4)))))))
        (if (i32.ne (local.get $state) (i32.and (local.get $ret) (i32.const 0xf)))
          (then unreachable))
        (local.set $subtask (i32.shr_u (local.get $ret) (i32.const 4)))
        (local.set $ret (call $subtask.cancel (local.get $subtask)))
        (call $subtask.drop (local.get $subtask))
        (local.get $ret))

      (func (export "run") (result i32)
        ;; f: cancelled before it returned; its result untouched.
        (if (i32.ne (call $call-and-cancel (i32.const 0) (i32.const 1 (; STARTED ;)))
                    (i32.const 4 (; CANCELLED_BEFORE_RETURNED ;)))
          (then unreachable))
        (if (i32.ne (i32.load (i32.const 4)) (i32.const 0xbad0bad0))
          (then unreachable))
        ;; g: returned 7 instead.
        (if (i32.ne (call $call-and-cancel (i32.const 1) (i32.const 1 (; STARTED ;)))
                    (i32.const 2 (; RETURNED ;)))
          (then unreachable))
        (if (i32.ne (i32.load (i32.const 4)) (i32.const 7))
          (then unreachable))
        ;; h: waits to start under backpressure, cancelled before that.
        (call $block)
        (if (i32.ne (call $call-and-cancel (i32.const 2) (i32.const 0 (; STARTING ;)))
                    (i32.const 3 (; CANCELLED_BEFORE_STARTED ;)))
          (then unreachable))
        (call $unblock)
        (if (i32.ne (call $h-ran) (i32.const 0))
          (then unreachable))
        (i32.const 42))
    )
    (canon subtask.cancel (core func $subtask.cancel))
    (canon subtask.drop (core func $subtask.drop))
    (canon lower (func $f) async (memory (core memory $memory "mem")) (core func $f'))
    (canon lower (func $g) async (memory (core memory $memory "mem")) (core func $g'))
    (canon lower (func $h) async (memory (core memory $memory "mem")) (core func $h'))
    (canon lower (func $block) (core func $block'))
    (canon lower (func $unblock) (core func $unblock'))
    (canon lower (func $h-ran) (core func $h-ran'))
    (core instance $dm (instantiate $DM (with "" (instance
      (export "mem" (memory $memory "mem"))
      (export "subtask.cancel" (func $subtask.cancel))
      (export "subtask.drop" (func $subtask.drop))
      (export "f" (func $f')) (export "g" (func $g')) (export "h" (func $h'))
      (export "block" (func $block')) (export "unblock" (func $unblock'))
      (export "h-ran" (func $h-ran'))
    ))))
    (func (export "run") async (result u32) (canon lift (core func $dm "run")))
  )

  (instance $c (instantiate $C))
  (instance $d (instantiate $D
    (with "f" (func $c "f")) (with "g" (func $c "g")) (with "h" (func $c "h"))
    (with "block" (func $c "block")) (with "unblock" (func $c "unblock"))
    (with "h-ran" (func $c "h-ran"))))
  (func (export "run") (alias export $d "run"))
)
(assert_return (invoke "run") (u32.const 42))

;; task.cancel with no cancellation delivered traps, naming the rule.
(component
  (core module $M
    (import "" "task.cancel" (func $task.cancel))
    (func (export "f") (result i32)
      (call $task.cancel)
      (i32.const 0 (; EXIT ;)))
    (func (export "f_cb") (param i32 i32 i32) (result i32) unreachable))
  (canon task.cancel (core func $task.cancel))
  (core instance $m (instantiate $M (with "" (instance
    (export "task.cancel" (func $task.cancel))))))
  (func (export "f") async (result u32)
    (canon lift (core func $m "f") async (callback (core func $m "f_cb"))))
)
(assert_trap (invoke "f") "task.cancel called without a cancellation having been delivered")
