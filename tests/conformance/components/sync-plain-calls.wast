;; Synchronous calls between components on values without handles
;; (strings, lists, records): lifted from the caller's memory and lowered
;; into the callee's through its realloc, and back. Covers a string both
;; ways, a result spilled to the caller's out-pointer (a record of a
;; string and a u32), parameters spilled to the callee's memory (17 u32s,
;; one more than MAX_FLAT_PARAMS), post-return seeing the callee's result
;; pointer, and a string of invalid UTF-8 from the caller trapping (last:
;; a trap leaves the instances it was in poisoned).
(component
  (component $Callee
    (core module $M
      (memory (export "mem") 1)
      (global $next (mut i32) (i32.const 1024))
      (global $post (mut i32) (i32.const 0))
      (func $realloc (export "realloc") (param i32 i32 i32 i32) (result i32)
        (local $p i32)
        ;; Bump allocation, aligned as asked.
        (local.set $p (i32.and (i32.add (global.get $next) (i32.sub (local.get 2) (i32.const 1)))
          (i32.sub (i32.const 0) (local.get 2))))
        (global.set $next (i32.add (local.get $p) (local.get 3)))
        (local.get $p))
      ;; shout(s) -> record { text: s with its first byte made upper case, len: u32 }
      ;; at 16: the record (ptr, len, len).
      (func (export "shout") (param $p i32) (param $n i32) (result i32)
        (if (local.get $n) (then
          (i32.store8 (local.get $p) (i32.sub (i32.load8_u (local.get $p)) (i32.const 32)))))
        (i32.store (i32.const 16) (local.get $p))
        (i32.store (i32.const 20) (local.get $n))
        (i32.store (i32.const 24) (local.get $n))
        (i32.const 16))
      (func (export "shout-post") (param $r i32)
        (global.set $post (i32.add (global.get $post) (local.get $r))))
      (func (export "posts") (result i32) (global.get $post))
      ;; sum17: the 17 parameters are a tuple in memory at $p.
      (func (export "sum17") (param $p i32) (result i32)
        (local $i i32) (local $acc i32)
        (block $done (loop $l
          (br_if $done (i32.ge_u (local.get $i) (i32.const 17)))
          (local.set $acc (i32.add (local.get $acc)
            (i32.mul (i32.add (local.get $i) (i32.const 1))
              (i32.load (i32.add (local.get $p) (i32.shl (local.get $i) (i32.const 2)))))))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br $l)))
        (local.get $acc)))
    (core instance $m (instantiate $M))
    (type $shouted (record (field "text" string) (field "len" u32)))
    (export $shouted' "shouted" (type $shouted))
    (func (export "shout") (param "s" string) (result $shouted')
      (canon lift (core func $m "shout") (memory (core memory $m "mem"))
        (realloc (core func $m "realloc")) (post-return (core func $m "shout-post"))))
    (func (export "posts") (result u32) (canon lift (core func $m "posts")))
    (func (export "sum17")
      (param "a" u32) (param "b" u32) (param "c" u32) (param "d" u32) (param "e" u32)
      (param "f" u32) (param "g" u32) (param "h" u32) (param "i" u32) (param "j" u32)
      (param "k" u32) (param "l" u32) (param "m" u32) (param "n" u32) (param "o" u32)
      (param "p" u32) (param "q" u32) (result u32)
      (canon lift (core func $m "sum17") (memory (core memory $m "mem"))
        (realloc (core func $m "realloc")))))

  (component $Caller
    (type $shouted (record (field "text" string) (field "len" u32)))
    (import "shouted" (type $shouted' (eq $shouted)))
    (import "shout" (func $shout (param "s" string) (result $shouted')))
    (import "posts" (func $posts (result u32)))
    (import "sum17" (func $sum17
      (param "a" u32) (param "b" u32) (param "c" u32) (param "d" u32) (param "e" u32)
      (param "f" u32) (param "g" u32) (param "h" u32) (param "i" u32) (param "j" u32)
      (param "k" u32) (param "l" u32) (param "m" u32) (param "n" u32) (param "o" u32)
      (param "p" u32) (param "q" u32) (result u32)))
    (core module $Mem
      (memory (export "mem") 1)
      (global $next (mut i32) (i32.const 4096))
      (func (export "realloc") (param i32 i32 i32 i32) (result i32)
        (local $p i32)
        ;; Bump allocation, aligned as asked.
        (local.set $p (i32.and (i32.add (global.get $next) (i32.sub (local.get 2) (i32.const 1)))
          (i32.sub (i32.const 0) (local.get 2))))
        (global.set $next (i32.add (local.get $p) (local.get 3)))
        (local.get $p))
      (data (i32.const 100) "hello")
      (data (i32.const 200) "\ff\fe"))
    (core instance $mem (instantiate $Mem))
    (core func $shout' (canon lower (func $shout)
      (memory (core memory $mem "mem")) (realloc (core func $mem "realloc"))))
    (core func $posts' (canon lower (func $posts)))
    (core func $sum17' (canon lower (func $sum17) (memory (core memory $mem "mem"))))
    (core module $M
      (import "" "mem" (memory 1))
      (import "" "shout" (func $shout (param i32 i32 i32)))
      (import "" "posts" (func $posts (result i32)))
      (import "" "sum17" (func $sum17 (param i32) (result i32)))
      ;; The record lands at 32: (ptr, len) of the text, then len.
      (func (export "shout") (result i32)
        (call $shout (i32.const 100) (i32.const 5) (i32.const 32))
        ;; "Hello", 5 bytes, and len 5; the caller's own "hello" untouched.
        (if (i32.ne (i32.load (i32.const 36)) (i32.const 5)) (then unreachable))
        (if (i32.ne (i32.load (i32.const 40)) (i32.const 5)) (then unreachable))
        (if (i32.ne (i32.load8_u (i32.load (i32.const 32))) (i32.const 72 (; H ;))) (then unreachable))
        (if (i32.ne (i32.load8_u (i32.const 100)) (i32.const 104 (; h ;))) (then unreachable))
        (i32.load8_u (i32.add (i32.load (i32.const 32)) (i32.const 4))))
      (func (export "posts") (result i32) (call $posts))
      ;; 17 parameters spill: a tuple at 512 (1, 2, ..., 17); the callee
      ;; weighs the i-th by i: 1*1 + 2*2 + ... + 17*17 = 1785.
      (func (export "sum17") (result i32)
        (local $i i32)
        (block $done (loop $l
          (br_if $done (i32.ge_u (local.get $i) (i32.const 17)))
          (i32.store (i32.add (i32.const 512) (i32.shl (local.get $i) (i32.const 2)))
            (i32.add (local.get $i) (i32.const 1)))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br $l)))
        (call $sum17 (i32.const 512)))
      (func (export "bad-utf8") (call $shout (i32.const 200) (i32.const 2) (i32.const 32))))
    (core instance $m (instantiate $M (with "" (instance
      (export "mem" (memory $mem "mem"))
      (export "shout" (func $shout')) (export "posts" (func $posts'))
      (export "sum17" (func $sum17'))))))
    (func (export "shout") (result u32) (canon lift (core func $m "shout")))
    (func (export "posts") (result u32) (canon lift (core func $m "posts")))
    (func (export "sum17") (result u32) (canon lift (core func $m "sum17")))
    (func (export "bad-utf8") (canon lift (core func $m "bad-utf8"))))

  (instance $callee (instantiate $Callee))
  (instance $caller (instantiate $Caller
    (with "shouted" (type $callee "shouted"))
    (with "shout" (func $callee "shout")) (with "posts" (func $callee "posts"))
    (with "sum17" (func $callee "sum17"))))
  (func (export "shout") (alias export $caller "shout"))
  (func (export "posts") (alias export $caller "posts"))
  (func (export "sum17") (alias export $caller "sum17"))
  (func (export "bad-utf8") (alias export $caller "bad-utf8"))
)
;; The last byte of "Hello" is "o".
(assert_return (invoke "shout") (u32.const 111))
;; post-return got the record's pointer (16), once per call.
(assert_return (invoke "posts") (u32.const 16))
(assert_return (invoke "shout") (u32.const 111))
(assert_return (invoke "posts") (u32.const 32))
(assert_return (invoke "sum17") (u32.const 1785))
(assert_trap (invoke "bad-utf8") "invalid utf-8")
