;; `ringos probe blk --component`: QD1 4 KiB random reads timed inside a
;; component, written against the canonical ABI directly (no language
;; runtime in between), so the figure is ringos's own cost: the
;; `ringos:blk/disk.read` call, a `stream.read` into a page of linear memory
;; that the device fills by DMA (the request is submitted inside the
;; built-in), and the wait for its completion event.
;;
;; Each read: t0 = now; read(offset, 4096) -> (stream, status future);
;; stream.read(stream, buf, 4096) -> BLOCKED; waitable-set.wait -> the
;; STREAM_READ event with 4096 bytes; t1 = now. Then the stream leaves the
;; set and is dropped, and the status future read (it resolved with the
;; completion) and checked. The first tenth warms up. The timed reads
;; come in blocks of 32, each paired with as many reads the kernel does
;; alone, back to back (`ringos:probe/baseline.read`, timed by the
;; kernel): after even blocks, before odd ones (C K  K C  C K ...). Each
;; side's reads then follow their own kind, as in a loop of either alone
;; (under TCG how the host schedules QEMU's threads depends on what the
;; vCPU did just before), and both sides sample the same milliseconds of
;; a noisy host, each block switch falling equally on both. At the end it sorts the latencies
;; and prints
;;   probe: reads=N p50_ns=.. p99_ns=.. min_ns=.. max_ns=..
;; then every latency, 32 to a line, so runs can be pooled:
;;   probe: lat_ns=a,b,..
;; The CLI replaces OPS below with the reads per run before parsing.
(component
  (import "ringos:blk/disk@0.1.0" (instance $disk
    (type $ec' (enum "no-device" "out-of-range" "unaligned" "read-only" "io"))
    (export "error-code" (type $ec (eq $ec')))
    (export "capacity" (func (result u64)))
    (export "read" (func (param "offset" u64) (param "len" u64)
      (result (tuple (stream u8) (future (result (error $ec)))))))))
  (import "ringos:probe/baseline@0.1.0" (instance $baseline
    (export "read" (func (param "count" u32)))))
  (import "wasi:clocks/monotonic-clock@0.3.2" (instance $clock
    (export "now" (func (result u64)))))
  (import "wasi:cli/stdout@0.3.2" (instance $stdout
    (type $ec' (enum "io" "illegal-byte-sequence" "pipe"))
    (export "error-code" (type $ec (eq $ec')))
    (export "write-via-stream" (func (param "data" (stream u8))
      (result (future (result (error $ec))))))))
  (alias export $disk "error-code" (type $disk-ec))

  (core module $Mem (memory (export "mem") 64))
  (core instance $mem (instantiate $Mem))

  (type $bytes (stream u8))
  (type $status (future (result (error $disk-ec))))
  (core func $capacity (canon lower (func $disk "capacity")))
  (core func $read (canon lower (func $disk "read") (memory (core memory $mem "mem"))))
  (core func $now (canon lower (func $clock "now")))
  (core func $baseline-read (canon lower (func $baseline "read")))
  (core func $write-via-stream (canon lower (func $stdout "write-via-stream")))
  (canon stream.new $bytes (core func $stream.new))
  (canon stream.read $bytes async (memory (core memory $mem "mem")) (core func $stream.read))
  (canon stream.write $bytes async (memory (core memory $mem "mem")) (core func $stream.write))
  (canon stream.drop-readable $bytes (core func $stream.drop-readable))
  (canon stream.drop-writable $bytes (core func $stream.drop-writable))
  (canon future.read $status async (memory (core memory $mem "mem")) (core func $future.read))
  (canon future.drop-readable $status (core func $future.drop-readable))
  (canon waitable-set.new (core func $ws.new))
  (canon waitable.join (core func $join))
  (canon waitable-set.wait (memory (core memory $mem "mem")) (core func $ws.wait))

  (core module $Probe
    (import "" "mem" (memory 64))
    (import "" "capacity" (func $capacity (result i64)))
    (import "" "read" (func $read (param i64 i64 i32)))
    (import "" "now" (func $now (result i64)))
    (import "" "baseline-read" (func $baseline-read (param i32)))
    (import "" "write-via-stream" (func $write-via-stream (param i32) (result i32)))
    (import "" "stream.new" (func $stream.new (result i64)))
    (import "" "stream.read" (func $stream.read (param i32 i32 i32) (result i32)))
    (import "" "stream.write" (func $stream.write (param i32 i32 i32) (result i32)))
    (import "" "stream.drop-readable" (func $stream.drop-readable (param i32)))
    (import "" "stream.drop-writable" (func $stream.drop-writable (param i32)))
    (import "" "future.read" (func $future.read (param i32 i32) (result i32)))
    (import "" "future.drop-readable" (func $future.drop-readable (param i32)))
    (import "" "ws.new" (func $ws.new (result i32)))
    (import "" "join" (func $join (param i32 i32)))
    (import "" "ws.wait" (func $ws.wait (param i32 i32) (result i32)))

    ;; Memory: 0 the read's results (stream, future); 16 an event; 24 the
    ;; status; 64 the output line; 4096 the read buffer (one page);
    ;; 65536 the latencies (u64 each).
    (global $ops i32 (i32.const OPS))
    (global $out (mut i32) (i32.const 64))

    ;; Waits on `ws` for an event of `code`; returns its payload.
    (func $wait (param $ws i32) (param $code i32) (result i32)
      (if (i32.ne (call $ws.wait (local.get $ws) (i32.const 16)) (local.get $code))
        (then unreachable))
      (i32.load (i32.const 20)))

    ;; Appends `s` (bytes at `ptr`, `len`) to the output line.
    (func $text (param $ptr i32) (param $len i32)
      (memory.copy (global.get $out) (local.get $ptr) (local.get $len))
      (global.set $out (i32.add (global.get $out) (local.get $len))))

    ;; Appends `v` in decimal.
    (func $num (param $v i64)
      (local $digits i32) (local $i i32)
      ;; Digits backwards at 3072, then copied in order.
      (local.set $i (i32.const 3072))
      (loop $l
        (local.set $i (i32.sub (local.get $i) (i32.const 1)))
        (i32.store8 (local.get $i)
          (i32.add (i32.const 48) (i32.wrap_i64 (i64.rem_u (local.get $v) (i64.const 10)))))
        (local.set $v (i64.div_u (local.get $v) (i64.const 10)))
        (br_if $l (i64.ne (local.get $v) (i64.const 0))))
      (call $text (local.get $i) (i32.sub (i32.const 3072) (local.get $i))))

    (func $lat (param $i i32) (result i64)
      (i64.load offset=65536 (i32.shl (local.get $i) (i32.const 3))))

    ;; Sorts latencies [0, n) (insertion sort: n is a few thousand).
    (func $sort (param $n i32)
      (local $i i32) (local $j i32) (local $v i64)
      (local.set $i (i32.const 1))
      (block $done (loop $outer
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (local.set $v (call $lat (local.get $i)))
        (local.set $j (local.get $i))
        (block $placed (loop $inner
          (br_if $placed (i32.eqz (local.get $j)))
          (br_if $placed (i64.le_u (call $lat (i32.sub (local.get $j) (i32.const 1))) (local.get $v)))
          (i64.store offset=65536 (i32.shl (local.get $j) (i32.const 3))
            (call $lat (i32.sub (local.get $j) (i32.const 1))))
          (local.set $j (i32.sub (local.get $j) (i32.const 1)))
          (br $inner)))
        (i64.store offset=65536 (i32.shl (local.get $j) (i32.const 3)) (local.get $v))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $outer))))

    ;; Writes the output line to stdout.
    (func $print
      (local $ends i64) (local $w i32) (local $ws i32) (local $at i32) (local $r i32)
      (local.set $ends (call $stream.new))
      (local.set $w (i32.wrap_i64 (i64.shr_u (local.get $ends) (i64.const 32))))
      (drop (call $write-via-stream (i32.wrap_i64 (local.get $ends))))
      (local.set $ws (call $ws.new))
      (call $join (local.get $w) (local.get $ws))
      (local.set $at (i32.const 64))
      (block $done (loop $l
        (br_if $done (i32.ge_u (local.get $at) (global.get $out)))
        (local.set $r (call $stream.write (local.get $w) (local.get $at)
          (i32.sub (global.get $out) (local.get $at))))
        (if (i32.eq (local.get $r) (i32.const -1))
          (then (local.set $r (call $wait (local.get $ws) (i32.const 3)))))
        ;; COMPLETED with progress in the high bits; anything else: stop.
        (br_if $done (i32.ne (i32.and (local.get $r) (i32.const 0xf)) (i32.const 0)))
        (local.set $at (i32.add (local.get $at) (i32.shr_u (local.get $r) (i32.const 4))))
        (br $l)))
      (call $join (local.get $w) (i32.const 0))
      (call $stream.drop-writable (local.get $w)))

    (func (export "run") (result i32)
      (local $blocks i64) (local $x i64) (local $i i32) (local $n i32) (local $warm i32)
      (local $ws i32) (local $s i32) (local $r i32) (local $t0 i64) (local $t1 i64)
      (local.set $blocks (i64.div_u (call $capacity) (i64.const 4096)))
      (if (i64.eqz (local.get $blocks)) (then (return (i32.const 1))))
      (local.set $warm (i32.div_u (global.get $ops) (i32.const 10)))
      (local.set $x (i64.const 0x9e3779b97f4a7c15))
      (local.set $ws (call $ws.new))
      (block $done (loop $l
        (br_if $done (i32.ge_u (local.get $i) (i32.add (global.get $ops) (local.get $warm))))
        ;; xorshift64: offsets spread over the disk.
        (local.set $x (i64.xor (local.get $x) (i64.shl (local.get $x) (i64.const 13))))
        (local.set $x (i64.xor (local.get $x) (i64.shr_u (local.get $x) (i64.const 7))))
        (local.set $x (i64.xor (local.get $x) (i64.shl (local.get $x) (i64.const 17))))
        ;; At the start of an odd block of timed reads: the kernel's block
        ;; of the pair goes first.
        (if (i32.ge_u (local.get $i) (local.get $warm)) (then
          (if (i32.and (i32.eqz (i32.and (local.get $n) (i32.const 31)))
                       (i32.and (i32.shr_u (local.get $n) (i32.const 5)) (i32.const 1)))
            (then (call $baseline-read
              (select (i32.const 32) (i32.sub (global.get $ops) (local.get $n))
                (i32.gt_u (i32.sub (global.get $ops) (local.get $n)) (i32.const 32))))))))
        (local.set $t0 (call $now))
        (call $read (i64.mul (i64.rem_u (local.get $x) (local.get $blocks)) (i64.const 4096))
          (i64.const 4096) (i32.const 0))
        (local.set $s (i32.load (i32.const 0)))
        (local.set $r (call $stream.read (local.get $s) (i32.const 4096) (i32.const 4096)))
        (if (i32.eq (local.get $r) (i32.const -1)) (then
          (call $join (local.get $s) (local.get $ws))
          (local.set $r (call $wait (local.get $ws) (i32.const 2)))))
        ;; The bytes are in memory: the read is over. Then leave the set.
        (local.set $t1 (call $now))
        (call $join (local.get $s) (i32.const 0))
        ;; 4096 bytes, COMPLETED.
        (if (i32.ne (local.get $r) (i32.const 0x10000)) (then (return (i32.const 1))))
        (call $stream.drop-readable (local.get $s))
        ;; The status: resolved with the completion (else waited for), `ok`.
        (local.set $r (call $future.read (i32.load (i32.const 4)) (i32.const 24)))
        (if (i32.eq (local.get $r) (i32.const -1)) (then
          (call $join (i32.load (i32.const 4)) (local.get $ws))
          (local.set $r (call $wait (local.get $ws) (i32.const 4)))
          (call $join (i32.load (i32.const 4)) (i32.const 0))))
        (if (i32.ne (local.get $r) (i32.const 0)) (then (return (i32.const 1))))
        (if (i32.ne (i32.load8_u (i32.const 24)) (i32.const 0)) (then (return (i32.const 1))))
        (call $future.drop-readable (i32.load (i32.const 4)))
        (if (i32.ge_u (local.get $i) (local.get $warm)) (then
          (i64.store offset=65536 (i32.shl (local.get $n) (i32.const 3))
            (i64.sub (local.get $t1) (local.get $t0)))
          ;; At the end of an even block (32 reads, or the last ones): the
          ;; kernel's follows, as many reads.
          (if (i32.eqz (i32.and (i32.shr_u (local.get $n) (i32.const 5)) (i32.const 1))) (then
            (if (i32.or (i32.eqz (i32.and (i32.add (local.get $n) (i32.const 1)) (i32.const 31)))
                        (i32.eq (i32.add (local.get $n) (i32.const 1)) (global.get $ops)))
              (then (call $baseline-read
                (i32.sub (i32.add (local.get $n) (i32.const 1))
                  (i32.and (local.get $n) (i32.const -32))))))))
          (local.set $n (i32.add (local.get $n) (i32.const 1)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $l)))
      (call $sort (local.get $n))
      (call $text (i32.const 1024) (i32.const 13)) ;; "probe: reads="
      (call $num (i64.extend_i32_u (local.get $n)))
      (call $text (i32.const 1040) (i32.const 8)) ;; " p50_ns="
      (call $num (call $lat (i32.div_u (i32.mul (local.get $n) (i32.const 50)) (i32.const 100))))
      (call $text (i32.const 1056) (i32.const 8)) ;; " p99_ns="
      (call $num (call $lat (i32.div_u (i32.mul (local.get $n) (i32.const 99)) (i32.const 100))))
      (call $text (i32.const 1072) (i32.const 8)) ;; " min_ns="
      (call $num (call $lat (i32.const 0)))
      (call $text (i32.const 1088) (i32.const 8)) ;; " max_ns="
      (call $num (call $lat (i32.sub (local.get $n) (i32.const 1))))
      (call $text (i32.const 1104) (i32.const 1)) ;; "\n"
      (call $print)
      (call $print_latencies (local.get $n))
      (i32.const 0))

    ;; Prints latencies [0, n), 32 to a `probe: lat_ns=` line (a line of
    ;; 32 u64s stays below the strings at 1024).
    (func $print_latencies (param $n i32)
      (local $i i32) (local $end i32)
      (block $done (loop $line
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (global.set $out (i32.const 64))
        (call $text (i32.const 1120) (i32.const 14)) ;; "probe: lat_ns="
        (local.set $end (i32.add (local.get $i) (i32.const 32)))
        (if (i32.gt_u (local.get $end) (local.get $n)) (then (local.set $end (local.get $n))))
        (call $num (call $lat (local.get $i)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (block $full (loop $l
          (br_if $full (i32.ge_u (local.get $i) (local.get $end)))
          (call $text (i32.const 1136) (i32.const 1)) ;; ","
          (call $num (call $lat (local.get $i)))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br $l)))
        (call $text (i32.const 1104) (i32.const 1)) ;; "\n"
        (call $print)
        (br $line))))
    (data (i32.const 1024) "probe: reads=")
    (data (i32.const 1040) " p50_ns=")
    (data (i32.const 1056) " p99_ns=")
    (data (i32.const 1072) " min_ns=")
    (data (i32.const 1088) " max_ns=")
    (data (i32.const 1104) "\n")
    (data (i32.const 1120) "probe: lat_ns=")
    (data (i32.const 1136) ","))

  (core instance $probe (instantiate $Probe (with "" (instance
    (export "mem" (memory $mem "mem"))
    (export "capacity" (func $capacity)) (export "read" (func $read))
    (export "now" (func $now)) (export "baseline-read" (func $baseline-read))
    (export "write-via-stream" (func $write-via-stream))
    (export "stream.new" (func $stream.new)) (export "stream.read" (func $stream.read))
    (export "stream.write" (func $stream.write))
    (export "stream.drop-readable" (func $stream.drop-readable))
    (export "stream.drop-writable" (func $stream.drop-writable))
    (export "future.read" (func $future.read))
    (export "future.drop-readable" (func $future.drop-readable))
    (export "ws.new" (func $ws.new)) (export "join" (func $join))
    (export "ws.wait" (func $ws.wait))))))
  (func $run async (result (result)) (canon lift (core func $probe "run")))
  (instance $i (export "run" (func $run)))
  (export "wasi:cli/run@0.3.2" (instance $i)))
