;; Synchronous callees that block under async callers, on fibers.
;;
;; $Inner.blocking-call(x) is callback-lifted: it yields three times, then
;; returns x + 1 (from x = 0x1000000 on it yields forever). $Middle's
;; functions are `async`-typed and lifted synchronously: their core code
;; makes a synchronous call of blocking-call, which blocks, so they need a
;; stack of their own (`plain` returns its result; `deep` then recurses
;; until the stack runs out; `boom` then traps). $Outer's core code calls
;; them through async lowers: each must come back STARTED (the callee
;; blocked, the caller goes on), then it waits for the subtask with a
;; synchronous waitable-set.wait (blocking itself: when another component
;; calls it, `nested`, its `run` is on a fiber too; the host's own
;; sync-lifted calls need none, the host waits for all of them anyway).
;; The runtime's unit tests (runtime/src/component/
;; fiber_tests.rs) and the VM tests (tests/tests/components_vm.rs) use
;; $Fibers too, up to `;; end of $Fibers`.
(component definition $Fibers
  (component $Inner
    (core module $M
      (import "" "task.return" (func $task.return (param i32)))
      (import "" "context.set" (func $context.set (param i32)))
      (import "" "context.get" (func $context.get (result i32)))
      ;; context: x << 4 | yields so far
      (func (export "blocking-call") (param i32) (result i32)
        (call $context.set (i32.shl (local.get 0) (i32.const 4)))
        (i32.const 1 (; YIELD ;)))
      (func (export "cb") (param i32 i32 i32) (result i32)
        (local $c i32)
        (local.set $c (call $context.get))
        (if (i32.and
              (i32.eq (i32.and (local.get $c) (i32.const 0xf)) (i32.const 3))
              (i32.lt_u (local.get $c) (i32.const 0x10000000)))
          (then
            (call $task.return (i32.add (i32.shr_u (local.get $c) (i32.const 4)) (i32.const 1)))
            (return (i32.const 0 (; EXIT ;)))))
        (if (i32.lt_u (i32.and (local.get $c) (i32.const 0xf)) (i32.const 3))
          (then (call $context.set (i32.add (local.get $c) (i32.const 1)))))
        (i32.const 1 (; YIELD ;))))
    (canon task.return (result u32) (core func $task.return))
    (canon context.set i32 0 (core func $context.set))
    (canon context.get i32 0 (core func $context.get))
    (core instance $m (instantiate $M (with "" (instance
      (export "task.return" (func $task.return))
      (export "context.set" (func $context.set))
      (export "context.get" (func $context.get))))))
    (func (export "blocking-call") async (param "x" u32) (result u32)
      (canon lift (core func $m "blocking-call") async (callback (core func $m "cb")))))

  (component $Middle
    (import "blocking-call" (func $bc async (param "x" u32) (result u32)))
    (core func $bc' (canon lower (func $bc)))
    (core module $M
      (import "" "bc" (func $bc (param i32) (result i32)))
      (func $rec (param i64) (result i64)
        (i64.add (local.get 0) (call $rec (i64.add (local.get 0) (i64.const 1)))))
      (func (export "plain") (param i32) (result i32) (call $bc (local.get 0)))
      (func (export "deep") (param i32) (result i32)
        (drop (call $bc (local.get 0)))
        (i32.wrap_i64 (call $rec (i64.const 0))))
      (func (export "boom") (param i32) (result i32)
        (drop (call $bc (local.get 0)))
        unreachable))
    (core instance $m (instantiate $M (with "" (instance (export "bc" (func $bc'))))))
    (func (export "plain") async (param "x" u32) (result u32) (canon lift (core func $m "plain")))
    (func (export "deep") async (param "x" u32) (result u32) (canon lift (core func $m "deep")))
    (func (export "boom") async (param "x" u32) (result u32) (canon lift (core func $m "boom"))))

  (instance $inner (instantiate $Inner))
  (instance $middle (instantiate $Middle (with "blocking-call" (func $inner "blocking-call"))))

  (component $Outer
    (import "plain" (func $plain-f async (param "x" u32) (result u32)))
    (import "deep" (func $deep-f async (param "x" u32) (result u32)))
    (import "boom" (func $boom-f async (param "x" u32) (result u32)))
    (core module $Mem (memory (export "mem") 1))
    (core instance $mem (instantiate $Mem))
    (canon lower (func $plain-f) async (memory (core memory $mem "mem")) (core func $plain))
    (canon lower (func $deep-f) async (memory (core memory $mem "mem")) (core func $deep))
    (canon lower (func $boom-f) async (memory (core memory $mem "mem")) (core func $boom))
    (canon lower (func $plain-f) (core func $plain-sync))
    (canon waitable-set.new (core func $ws.new))
    (canon waitable.join (core func $join))
    (canon waitable-set.wait (memory (core memory $mem "mem")) (core func $ws.wait))
    (canon subtask.drop (core func $drop))
    (canon task.return (result u32) (core func $task.return))
    (core module $Outer
      (import "" "mem" (memory 1))
      (import "" "plain" (func $plain (param i32 i32) (result i32)))
      (import "" "deep" (func $deep (param i32 i32) (result i32)))
      (import "" "boom" (func $boom (param i32 i32) (result i32)))
      (import "" "plain-sync" (func $plain-sync (param i32) (result i32)))
      (import "" "ws.new" (func $ws.new (result i32)))
      (import "" "join" (func $join (param i32 i32)))
      (import "" "ws.wait" (func $ws.wait (param i32 i32) (result i32)))
      (import "" "drop" (func $drop (param i32)))
      (import "" "task.return" (func $task.return (param i32)))
      ;; Calls middle's function `which` (0 plain, 1 deep, 2 boom) with x = i,
      ;; result at 16: it must come back STARTED.
      (func $start (param $which i32) (param $i i32) (result i32)
        (local $r i32)
        (local.set $r
          (if (result i32) (i32.eqz (local.get $which))
            (then (call $plain (local.get $i) (i32.const 16)))
            (else (if (result i32) (i32.eq (local.get $which) (i32.const 1))
              (then (call $deep (local.get $i) (i32.const 16)))
              (else (call $boom (local.get $i) (i32.const 16)))))))
        (if (i32.ne (i32.and (local.get $r) (i32.const 0xf)) (i32.const 1 (; STARTED ;)))
          (then unreachable))
        (i32.shr_u (local.get $r) (i32.const 4)))
      ;; n rounds of: start, wait for the subtask (RETURNED), check i + 1.
      (func (export "run") (param $which i32) (param $n i32) (result i32)
        (local $i i32) (local $ws i32) (local $sub i32)
        (local.set $ws (call $ws.new))
        (block $done (loop $l
          (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
          (local.set $sub (call $start (local.get $which) (local.get $i)))
          (call $join (local.get $sub) (local.get $ws))
          (if (i32.ne (call $ws.wait (local.get $ws) (i32.const 0)) (i32.const 1 (; SUBTASK ;)))
            (then unreachable))
          (if (i32.ne (i32.load (i32.const 0)) (local.get $sub)) (then unreachable))
          (if (i32.ne (i32.load offset=4 (i32.const 0)) (i32.const 2 (; RETURNED ;)))
            (then unreachable))
          (if (i32.ne (i32.load (i32.const 16)) (i32.add (local.get $i) (i32.const 1)))
            (then unreachable))
          (call $drop (local.get $sub))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br $l)))
        (local.get $i))
      ;; Starts a call that blocks for good, then traps.
      (func (export "start-then-trap") (result i32)
        (drop (call $start (i32.const 0) (i32.const 0x1000000)))
        unreachable)
      ;; Callback-lifted: returns 7, then blocks for good in a synchronous call.
      (func (export "return-then-block") (result i32)
        (call $task.return (i32.const 7))
        (drop (call $plain-sync (i32.const 0x1000000)))
        (i32.const 0 (; EXIT ;)))
      (func (export "cb") (param i32 i32 i32) (result i32) unreachable))
    (core instance $o (instantiate $Outer (with "" (instance
      (export "mem" (memory $mem "mem"))
      (export "plain" (func $plain)) (export "deep" (func $deep)) (export "boom" (func $boom))
      (export "plain-sync" (func $plain-sync))
      (export "ws.new" (func $ws.new)) (export "join" (func $join))
      (export "ws.wait" (func $ws.wait)) (export "drop" (func $drop))
      (export "task.return" (func $task.return))))))
    (func (export "run") async (param "which" u32) (param "n" u32) (result u32)
      (canon lift (core func $o "run")))
    (func (export "start-then-trap") async (result u32)
      (canon lift (core func $o "start-then-trap")))
    (func (export "return-then-block") async (result u32)
      (canon lift (core func $o "return-then-block") async (callback (core func $o "cb")))))
  (instance $outer (instantiate $Outer
    (with "plain" (func $middle "plain"))
    (with "deep" (func $middle "deep"))
    (with "boom" (func $middle "boom"))))

  ;; `nested`: $Outer.run called synchronously by another component.
  (component $Wrap
    (import "run" (func $run-f async (param "which" u32) (param "n" u32) (result u32)))
    (core func $run (canon lower (func $run-f)))
    (core module $M
      (import "" "run" (func $run (param i32 i32) (result i32)))
      (func (export "nested") (param i32 i32) (result i32)
        (call $run (local.get 0) (local.get 1))))
    (core instance $m (instantiate $M (with "" (instance (export "run" (func $run))))))
    (func (export "nested") async (param "which" u32) (param "n" u32) (result u32)
      (canon lift (core func $m "nested"))))
  (instance $wrap (instantiate $Wrap (with "run" (func $outer "run"))))

  (export "run" (func $outer "run"))
  (export "nested" (func $wrap "nested"))
  (export "start-then-trap" (func $outer "start-then-trap"))
  (export "return-then-block" (func $outer "return-then-block")))
;; end of $Fibers

(component instance $a $Fibers)
(assert_return (invoke $a "run" (u32.const 0) (u32.const 1000)) (u32.const 1000))
(assert_return (invoke $a "run" (u32.const 0) (u32.const 1)) (u32.const 1))
(assert_return (invoke $a "nested" (u32.const 0) (u32.const 1000)) (u32.const 1000))
;; A trap on the callee's fiber ends the call (with `nested`, `run` is
;; blocked on its own fiber meanwhile: abandoned); a trap poisons the
;; instance, so each case has its own.
(component instance $b $Fibers)
(assert_trap (invoke $b "run" (u32.const 2) (u32.const 1)) "unreachable")
(component instance $b2 $Fibers)
(assert_trap (invoke $b2 "nested" (u32.const 2) (u32.const 1)) "unreachable")
(component instance $c $Fibers)
(assert_trap (invoke $c "run" (u32.const 1) (u32.const 1)) "call stack exhausted")
(component instance $c2 $Fibers)
(assert_trap (invoke $c2 "nested" (u32.const 1) (u32.const 1)) "call stack exhausted")
;; The caller traps while the callee is blocked on its fiber for good.
(component instance $d $Fibers)
(assert_trap (invoke $d "start-then-trap") "unreachable")
;; The store goes on.
(component instance $e $Fibers)
(assert_return (invoke $e "run" (u32.const 0) (u32.const 3)) (u32.const 3))
;; Resolved, then blocked for good (holding its instance): last.
(assert_return (invoke $e "return-then-block") (u32.const 7))

;; Fairness: a fiber whose condition holds runs even while another task
;; yields again and again (here the yielding task waits for what the
;; fiber does next).
(component definition $Fair
  (component $Flag
    (core module $M
      (import "" "task.return" (func $task.return))
      (import "" "context.set" (func $context.set (param i32)))
      (import "" "context.get" (func $context.get (result i32)))
      (global $flag (mut i32) (i32.const 0))
      ;; yields until the flag is set
      (func (export "spin") (result i32) (i32.const 1 (; YIELD ;)))
      (func (export "spin-cb") (param i32 i32 i32) (result i32)
        (if (global.get $flag) (then (call $task.return) (return (i32.const 0))))
        (i32.const 1))
      ;; yields three times
      (func (export "bc") (result i32) (call $context.set (i32.const 0)) (i32.const 1))
      (func (export "bc-cb") (param i32 i32 i32) (result i32)
        (if (i32.eq (call $context.get) (i32.const 3))
          (then (call $task.return) (return (i32.const 0))))
        (call $context.set (i32.add (call $context.get) (i32.const 1)))
        (i32.const 1))
      (func (export "set") (global.set $flag (i32.const 1))))
    (canon task.return (core func $task.return))
    (canon context.set i32 0 (core func $context.set))
    (canon context.get i32 0 (core func $context.get))
    (core instance $m (instantiate $M (with "" (instance
      (export "task.return" (func $task.return))
      (export "context.set" (func $context.set))
      (export "context.get" (func $context.get))))))
    (func (export "spin") async
      (canon lift (core func $m "spin") async (callback (core func $m "spin-cb"))))
    (func (export "bc") async
      (canon lift (core func $m "bc") async (callback (core func $m "bc-cb"))))
    (func (export "set") (canon lift (core func $m "set"))))
  (component $Mid
    (import "bc" (func $bc-f async))
    (import "set" (func $set-f))
    (core func $bc (canon lower (func $bc-f)))
    (core func $set (canon lower (func $set-f)))
    (core module $M
      (import "" "bc" (func $bc))
      (import "" "set" (func $set))
      ;; blocks, then sets the flag the spinner waits for
      (func (export "f") (result i32) (call $bc) (call $set) (i32.const 5)))
    (core instance $m (instantiate $M (with "" (instance
      (export "bc" (func $bc)) (export "set" (func $set))))))
    (func (export "f") async (result u32) (canon lift (core func $m "f"))))
  (component $Out
    (import "spin" (func $spin-f async))
    (import "f" (func $f-f async (result u32)))
    (core module $Mem (memory (export "mem") 1))
    (core instance $mem (instantiate $Mem))
    (canon lower (func $spin-f) async (core func $spin))
    (canon lower (func $f-f) async (memory (core memory $mem "mem")) (core func $f))
    (canon waitable-set.new (core func $ws.new))
    (canon waitable.join (core func $join))
    (canon waitable-set.wait (memory (core memory $mem "mem")) (core func $ws.wait))
    (canon subtask.drop (core func $drop))
    (core module $M
      (import "" "mem" (memory 1))
      (import "" "spin" (func $spin (result i32)))
      (import "" "f" (func $f (param i32) (result i32)))
      (import "" "ws.new" (func $ws.new (result i32)))
      (import "" "join" (func $join (param i32 i32)))
      (import "" "ws.wait" (func $ws.wait (param i32 i32) (result i32)))
      (import "" "drop" (func $drop (param i32)))
      (func (export "run") (result i32)
        (local $ws i32) (local $r i32) (local $n i32)
        (local.set $ws (call $ws.new))
        (local.set $r (call $f (i32.const 16)))
        (if (i32.ne (i32.and (local.get $r) (i32.const 0xf)) (i32.const 1)) (then unreachable))
        (call $join (i32.shr_u (local.get $r) (i32.const 4)) (local.get $ws))
        (local.set $r (call $spin))
        (if (i32.ne (i32.and (local.get $r) (i32.const 0xf)) (i32.const 1)) (then unreachable))
        (call $join (i32.shr_u (local.get $r) (i32.const 4)) (local.get $ws))
        ;; both subtasks return
        (loop $l
          (if (i32.ne (call $ws.wait (local.get $ws) (i32.const 0)) (i32.const 1)) (then unreachable))
          (if (i32.ne (i32.load offset=4 (i32.const 0)) (i32.const 2)) (then unreachable))
          (call $drop (i32.load (i32.const 0)))
          (local.set $n (i32.add (local.get $n) (i32.const 1)))
          (br_if $l (i32.lt_u (local.get $n) (i32.const 2))))
        (i32.load (i32.const 16))))
    (core instance $m (instantiate $M (with "" (instance
      (export "mem" (memory $mem "mem"))
      (export "spin" (func $spin)) (export "f" (func $f))
      (export "ws.new" (func $ws.new)) (export "join" (func $join))
      (export "ws.wait" (func $ws.wait)) (export "drop" (func $drop))))))
    (func (export "run") async (result u32) (canon lift (core func $m "run"))))
  (instance $flag (instantiate $Flag))
  (instance $mid (instantiate $Mid
    (with "bc" (func $flag "bc")) (with "set" (func $flag "set"))))
  (instance $out (instantiate $Out
    (with "spin" (func $flag "spin")) (with "f" (func $mid "f"))))
  (export "run" (func $out "run")))
(component instance $fair $Fair)
(assert_return (invoke $fair "run") (u32.const 5))
