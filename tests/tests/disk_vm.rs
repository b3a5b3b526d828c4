//! `ringos:blk` end to end: the `demo` guest (tests/guests/demo) writes and
//! reads a real disk image file through virtio-blk in a VM; the host then
//! checks the file's bytes, and the kernel's count of bytes it copied on
//! the way (0: the device moved them straight to and from the
//! component's memory).

use std::path::Path;
use std::time::Duration;

use ringos::run::VmOutput;
use ringos::Machine;
use ringos_tests::{guests, hosted, TempDisk};

const DISK_BYTES: u64 = 8 << 20;

/// Byte `i` of the pattern `demo disk-check` writes at offset `i`.
fn pattern(i: u64) -> u8 {
    ((i / 512).wrapping_mul(31) ^ (i % 512).wrapping_mul(7) ^ 0x5a) as u8
}

/// A fresh sparse disk image of [`DISK_BYTES`], removed on drop.
fn disk(name: &str) -> TempDisk {
    TempDisk::new(name, DISK_BYTES)
}

/// Boots `demo` with `args` (after its name), `env` and `disk`.
fn boot_demo(
    machine: Machine,
    args: &[&str],
    env: &[(&str, &str)],
    disk: Option<&Path>,
) -> VmOutput {
    let argv: Vec<&str> = std::iter::once("demo.wasm")
        .chain(args.iter().copied())
        .collect();
    let app = guests::component_bytes("demo");
    ringos_tests::boot_component(
        &app,
        &argv,
        env,
        disk,
        machine,
        Duration::from_secs(120),
        ringos::Stdin::Empty,
    )
}

fn console(out: &VmOutput) -> Vec<String> {
    let run = out.run.as_ref().expect("a finished VM");
    run.lines.iter().map(|(_, l)| l.clone()).collect()
}

fn assert_success(out: &VmOutput) {
    let run = out.run.as_ref().expect("a finished VM");
    assert!(
        run.outcome.is_success(),
        "outcome {:?}; component lines {:?}; stdout:\n{}\nconsole:\n{}",
        run.outcome,
        out.component,
        out.stdout,
        console(out).join("\n")
    );
}

/// The kernel's `ringos:blk: N requests, M bytes moved by DMA ..., C bytes
/// copied by the kernel` line: (requests, DMA bytes, copied bytes).
fn blk_counts(out: &VmOutput) -> (u64, u64, u64) {
    let lines = console(out);
    let line = lines
        .iter()
        .find(|l| l.contains("ringos:blk: ") && l.contains("bytes copied"))
        .unwrap_or_else(|| panic!("no ringos:blk count line in:\n{}", lines.join("\n")));
    let nums: Vec<u64> = line
        .split("ringos:blk: ")
        .nth(1)
        .unwrap()
        .split(|c: char| !c.is_ascii_digit())
        .filter(|w| !w.is_empty())
        .map(|w| w.parse().unwrap())
        .collect();
    (nums[0], nums[1], nums[2])
}

#[test]
fn demo_writes_and_reads_the_disk_by_dma_and_waits_50_ms() {
    let disk = disk("demo");
    let out = boot_demo(Machine::Microvm, &[], &[], Some(&disk.path));
    assert_success(&out);
    // The timer: 50 ms asked, and the component measured it with its own
    // monotonic clock; it may not come back early.
    let timer = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("timer: asked for 50 ms, woke after "))
        .unwrap_or_else(|| panic!("no timer line in {:?}", out.stdout));
    let waits: Vec<f64> = timer
        .split("; again: ")
        .map(|w| w.trim_end_matches(" ms").parse().unwrap())
        .collect();
    assert_eq!(waits.len(), 2, "{timer}");
    assert!(
        waits.iter().all(|&ms| ms >= 50.0),
        "woke after {waits:?} ms"
    );
    assert!(
        out.stdout.contains("read it back") && out.stdout.contains("identical"),
        "{}",
        out.stdout
    );
    // What the component wrote is in the file, from the host's side.
    let text = b"ringos:blk -- written by the demo component, by DMA from its memory\n";
    let bytes = disk.bytes();
    assert_eq!(&bytes[..text.len()], text);
    assert!(bytes[text.len()..4096].iter().all(|b| *b == 0));
    // Write 4 KiB + flush + read 4 KiB, all by DMA, nothing copied.
    assert_eq!(blk_counts(&out), (3, 8192, 0));
}

#[test]
fn disk_check_on_both_machines_leaves_the_pattern_in_the_file() {
    for machine in [Machine::Microvm, Machine::Q35] {
        let disk = disk(&format!("disk-check-{machine}"));
        let out = boot_demo(machine, &["disk-check"], &[], Some(&disk.path));
        assert_success(&out);
        assert!(
            out.stdout.contains("disk-check: passed"),
            "{machine}: {}",
            out.stdout
        );
        assert!(!out.stdout.contains("FAILED"), "{}", out.stdout);
        let bytes = disk.bytes();
        let big = (1u64 << 20)..(1u64 << 20) + 200 * 1024;
        let last = DISK_BYTES - 512..DISK_BYTES;
        for r in [big, last] {
            for i in r.clone() {
                assert_eq!(
                    bytes[i as usize],
                    pattern(i),
                    "{machine}: byte {i} of {r:?}"
                );
            }
        }
        // Untouched around the writes: the failed requests wrote nothing.
        assert!(bytes[..1 << 20].iter().all(|b| *b == 0), "{machine}");
        let (requests, dma, copied) = blk_counts(&out);
        assert_eq!(copied, 0, "{machine}");
        // 200 KiB in 64 KiB requests (4) + the last block, twice (write,
        // read), and a flush.
        assert_eq!(dma, 2 * (200 * 1024 + 512), "{machine}");
        assert_eq!(requests, 2 * 5 + 1, "{machine}");
    }
}

#[test]
fn without_a_disk_the_demo_says_how_to_give_one() {
    let out = boot_demo(Machine::Microvm, &[], &[], None);
    assert_success(&out);
    assert!(
        out.stdout
            .contains("disk: none (give the VM one: ringos run demo.wasm --disk FILE)"),
        "{}",
        out.stdout
    );
    assert_eq!(blk_counts(&out), (0, 0, 0));
}

#[test]
fn arguments_and_environment_round_trip() {
    let out = boot_demo(
        Machine::Microvm,
        &["args", "one", "two words", "ünïcödé"],
        &[("GREETING", "hello world"), ("EMPTY", ""), ("EQ", "a=b")],
        None,
    );
    assert_success(&out);
    let want = "arg: one\narg: two words\narg: ünïcödé\n\
                env: GREETING=hello world\nenv: EMPTY=\nenv: EQ=a=b\n";
    assert_eq!(out.stdout, want);
    // The same in this process.
    let hosted = hosted(
        guests::component_bytes("demo"),
        &["demo.wasm", "args", "one", "two words", "ünïcödé"],
        &[("GREETING", "hello world"), ("EMPTY", ""), ("EQ", "a=b")],
        None,
        None,
    )
    .unwrap();
    assert_eq!(String::from_utf8_lossy(&hosted.stdout), want);
}

#[test]
fn disk_check_hosted_on_a_file() {
    let disk = disk("hosted-disk-check");
    let out = hosted(
        guests::component_bytes("demo"),
        &["demo.wasm", "disk-check"],
        &[],
        Some(&disk.path),
        None,
    )
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.ok, "{stdout}");
    assert!(stdout.contains("disk-check: passed"), "{stdout}");
    let bytes = disk.bytes();
    for i in (1u64 << 20)..(1u64 << 20) + 200 * 1024 {
        assert_eq!(bytes[i as usize], pattern(i), "byte {i}");
    }
}

/// The `ringos:blk` import of the WAT components below (its `read` only),
/// put where they say `DISK_READ_IMPORT`.
const DISK_READ_IMPORT: &str = r#"(import "ringos:blk/disk@0.1.0" (instance $disk
    (type $ec' (enum "no-device" "out-of-range" "unaligned" "read-only" "io"))
    (export "error-code" (type $ec (eq $ec')))
    (export "read" (func (param "offset" u64) (param "len" u64)
      (result (tuple (stream u8) (future (result (error $ec)))))))))"#;

/// One of the WAT components below, encoded.
fn disk_component(text: &str) -> Vec<u8> {
    wat::parse_str(text.replace("DISK_READ_IMPORT", DISK_READ_IMPORT)).unwrap()
}

/// A zero-length `stream.read` on a disk stream reports readiness
/// (COMPLETED, progress 0) instead of waiting forever; the next read gets
/// the bytes. `run` exits with the number of the check that failed.
const ZERO_LENGTH_READ: &str = r#"(component
  DISK_READ_IMPORT
  (import "wasi:cli/exit@0.3.2" (instance $e
    (export "exit-with-code" (func (param "status-code" u8)))))
  (core module $Mem (memory (export "mem") 1))
  (core instance $mem (instantiate $Mem))
  (type $st (stream u8))
  (core func $read (canon lower (func $disk "read") (memory (core memory $mem "mem"))))
  (core func $exit (canon lower (func $e "exit-with-code")))
  (canon stream.read $st async (memory (core memory $mem "mem")) (core func $sread))
  (canon waitable-set.new (core func $ws.new))
  (canon waitable.join (core func $join))
  (canon waitable-set.wait (memory (core memory $mem "mem")) (core func $ws.wait))
  (core module $M
    (import "" "mem" (memory 1))
    (import "" "read" (func $read (param i64 i64 i32)))
    (import "" "sread" (func $sread (param i32 i32 i32) (result i32)))
    (import "" "ws.new" (func $ws.new (result i32)))
    (import "" "join" (func $join (param i32 i32)))
    (import "" "ws.wait" (func $ws.wait (param i32 i32) (result i32)))
    (import "" "exit" (func $exit (param i32)))
    ;; A read of `n` bytes to 4096: its packed result, waiting if BLOCKED.
    (func $copy (param $s i32) (param $ws i32) (param $n i32) (result i32)
      (local $r i32)
      (local.set $r (call $sread (local.get $s) (i32.const 4096) (local.get $n)))
      (if (i32.eq (local.get $r) (i32.const -1)) (then
        (if (i32.ne (call $ws.wait (local.get $ws) (i32.const 16)) (i32.const 2))
          (then (call $exit (i32.const 2))))
        (local.set $r (i32.load offset=4 (i32.const 16)))))
      (local.get $r))
    (func (export "run") (result i32)
      (local $s i32) (local $ws i32) (local $i i32)
      (call $read (i64.const 0) (i64.const 1024) (i32.const 0))
      (local.set $s (i32.load (i32.const 0)))
      (local.set $ws (call $ws.new))
      (call $join (local.get $s) (local.get $ws))
      (if (i32.ne (call $copy (local.get $s) (local.get $ws) (i32.const 0)) (i32.const 0))
        (then (call $exit (i32.const 3))))
      (if (i32.ne (call $copy (local.get $s) (local.get $ws) (i32.const 1024)) (i32.const 0x4000))
        (then (call $exit (i32.const 4))))
      (block $done (loop $l
        (br_if $done (i32.eq (local.get $i) (i32.const 1024)))
        (if (i32.ne (i32.load8_u offset=4096 (local.get $i)) (i32.rem_u (local.get $i) (i32.const 251)))
          (then (call $exit (i32.const 5))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $l)))
      (i32.const 0)))
  (core instance $m (instantiate $M (with "" (instance
    (export "mem" (memory $mem "mem"))
    (export "read" (func $read)) (export "sread" (func $sread))
    (export "ws.new" (func $ws.new)) (export "join" (func $join))
    (export "ws.wait" (func $ws.wait)) (export "exit" (func $exit))))))
  (func $run async (result (result)) (canon lift (core func $m "run")))
  (instance $i (export "run" (func $run)))
  (export "wasi:cli/run@0.3.2" (instance $i)))"#;

#[test]
fn a_zero_length_read_reports_readiness() {
    let disk = disk("zero-length");
    let bytes: Vec<u8> = (0..DISK_BYTES).map(|i| (i % 251) as u8).collect();
    std::fs::write(&disk.path, bytes).unwrap();
    let app = disk_component(ZERO_LENGTH_READ);
    let out = hosted(app, &[], &[], Some(&disk.path), None).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.status, 0, "{}", String::from_utf8_lossy(&out.stderr));
}

/// `run` starts 64 KiB disk reads into its memory until one is left in
/// flight, and returns at once. A read the device finished before
/// `stream.read` returned (it polls once after submitting; under TCG a
/// request often completes inside its notify) is not in flight: the next
/// one is started, up to 64. Exits 2 if every read completed at once.
/// With the read in flight it also asks for kernel-only baseline reads
/// (`ringos:probe/baseline`), which the kernel must refuse: they would take
/// the component's completion for their own.
const EXIT_WITH_READ_IN_FLIGHT: &str = r#"(component
  DISK_READ_IMPORT
  (import "ringos:probe/baseline@0.1.0" (instance $baseline
    (export "read" (func (param "count" u32)))))
  (core module $Mem (memory (export "mem") 2))
  (core instance $mem (instantiate $Mem))
  (type $st (stream u8))
  (core func $read (canon lower (func $disk "read") (memory (core memory $mem "mem"))))
  (core func $baseline-read (canon lower (func $baseline "read")))
  (canon stream.read $st async (memory (core memory $mem "mem")) (core func $sread))
  (core module $M
    (import "" "mem" (memory 2))
    (import "" "read" (func $read (param i64 i64 i32)))
    (import "" "sread" (func $sread (param i32 i32 i32) (result i32)))
    (import "" "baseline-read" (func $baseline-read (param i32)))
    (func (export "run") (result i32)
      (local $k i64) (local $r i32)
      (loop $l
        (call $read (i64.mul (local.get $k) (i64.const 65536)) (i64.const 65536) (i32.const 0))
        (local.set $r (call $sread (i32.load (i32.const 0)) (i32.const 65536) (i32.const 65536)))
        (if (i32.eq (local.get $r) (i32.const -1)) (then
          (call $baseline-read (i32.const 3))
          (return (i32.const 0))))
        ;; Anything but all 64 KiB, COMPLETED, is a failure.
        (if (i32.ne (local.get $r) (i32.const 0x100000)) (then (return (i32.const 1))))
        (local.set $k (i64.add (local.get $k) (i64.const 1)))
        (br_if $l (i64.lt_u (local.get $k) (i64.const 64))))
      (i32.const 2)))
  (core instance $m (instantiate $M (with "" (instance
    (export "mem" (memory $mem "mem"))
    (export "read" (func $read)) (export "sread" (func $sread))
    (export "baseline-read" (func $baseline-read))))))
  (func $run async (result (result)) (canon lift (core func $m "run")))
  (instance $i (export "run" (func $run)))
  (export "wasi:cli/run@0.3.2" (instance $i)))"#;

#[test]
fn a_component_ending_with_a_read_in_flight_is_waited_for() {
    let disk = disk("in-flight");
    let app = disk_component(EXIT_WITH_READ_IN_FLIGHT);
    let out = ringos_tests::boot_component(
        &app,
        &[],
        &[],
        Some(&disk.path),
        Machine::Microvm,
        Duration::from_secs(120),
        ringos::Stdin::Empty,
    );
    assert_success(&out);
    let lines = console(&out);
    let has = |needle: &str| {
        assert!(
            lines.iter().any(|l| l.contains(needle)),
            "no {needle:?} in:\n{}",
            lines.join("\n")
        )
    };
    // The kernel waited for the read before freeing the memory it targets.
    has("ended with 1 request(s) in flight; waiting for them");
    // The baseline reads asked for meanwhile were refused, and said so;
    // the component's read still landed (below).
    has("baseline reads asked for with 1 request(s)");
    has("baseline-qd1-read-4k ops=0 ok=0");
    // Every read started moved its 64 KiB by DMA (the last one after the
    // component ended), and the kernel copied none of it.
    let (requests, dma, copied) = blk_counts(&out);
    assert!((1..=64).contains(&requests), "{requests} requests");
    assert_eq!((dma, copied), (requests * 65536, 0));
}

/// The probe component of `ringos probe blk --component`
/// (benches/blk/probe.wat), on a file in this process: it reads, checks
/// every status, and prints a line the probe parses, then every latency
/// (what the probe pools over runs: the same reads, the same extremes).
#[test]
fn the_probe_component_reads_and_reports() {
    let disk = disk("probe");
    let app = wat::parse_str(ringos::probe::blk::component_source(200)).unwrap();
    let out = hosted(app, &[], &[], Some(&disk.path), None).unwrap_or_else(|e| panic!("{e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status, 0, "{stdout}");
    let line = stdout
        .lines()
        .find(|l| l.starts_with("probe: reads="))
        .unwrap();
    let l = ringos::probe::blk::ComponentLatency::parse(line).unwrap();
    assert_eq!(l.reads, 200);
    assert!(
        l.min_ns <= l.p50_ns && l.p50_ns <= l.p99_ns && l.p99_ns <= l.max_ns,
        "{line}"
    );
    let pooled = ringos::probe::blk::ComponentLatency::pool(stdout.lines(), 1)
        .unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(
        (pooled.reads, pooled.min_ns, pooled.max_ns),
        (200, l.min_ns, l.max_ns),
        "{stdout}"
    );
    assert!(pooled.min_ns <= pooled.p50_ns && pooled.p50_ns <= pooled.p99_ns);
}

/// A component asking `ringos:probe/baseline` for more reads in one call
/// than the kernel may do inside it traps, naming the limit.
#[test]
fn too_many_baseline_reads_in_one_call_trap() {
    let disk = disk("baseline-limit");
    let app = wat::parse_str(
        r#"(component
  (import "ringos:probe/baseline@0.1.0" (instance $baseline
    (export "read" (func (param "count" u32)))))
  (core func $baseline-read (canon lower (func $baseline "read")))
  (core module $M
    (import "" "baseline-read" (func $baseline-read (param i32)))
    (func (export "run") (result i32)
      (call $baseline-read (i32.const 4096))
      (call $baseline-read (i32.const -1))
      (i32.const 0)))
  (core instance $m (instantiate $M (with "" (instance
    (export "baseline-read" (func $baseline-read))))))
  (func $run async (result (result)) (canon lift (core func $m "run")))
  (instance $i (export "run" (func $run)))
  (export "wasi:cli/run@0.3.2" (instance $i)))"#,
    )
    .unwrap();
    let err = hosted(app, &[], &[], Some(&disk.path), None).expect_err("a trap");
    assert!(
        err.contains("4294967295 reads asked for in one call; at most 4096"),
        "{err}"
    );
}

/// `run` calls `read` with the result out-pointer `RETPTR`.
const READ_TO: &str = r#"(component
  DISK_READ_IMPORT
  (core module $Mem (memory (export "mem") 1))
  (core instance $mem (instantiate $Mem))
  (core func $read (canon lower (func $disk "read") (memory (core memory $mem "mem"))))
  (core module $M
    (import "" "read" (func $read (param i64 i64 i32)))
    (func (export "run") (result i32)
      (call $read (i64.const 0) (i64.const 512) (i32.const RETPTR))
      (i32.const 0)))
  (core instance $m (instantiate $M (with "" (instance (export "read" (func $read))))))
  (func $run async (result (result)) (canon lift (core func $m "run")))
  (instance $i (export "run" (func $run)))
  (export "wasi:cli/run@0.3.2" (instance $i)))"#;

#[test]
fn a_read_whose_results_cannot_be_stored_traps_clearly() {
    let disk = disk("bad-retptr");
    std::fs::write(&disk.path, vec![0u8; DISK_BYTES as usize]).unwrap();
    // Misaligned, past the end of the 64 KiB memory, and straddling it.
    for (retptr, why) in [
        ("2", "unaligned"),
        ("0x10000", "out of bounds"),
        ("0xfffc", "out of bounds"),
        ("-4", "out of bounds"),
    ] {
        let app = disk_component(&READ_TO.replace("RETPTR", retptr));
        let err = hosted(app, &[], &[], Some(&disk.path), None)
            .expect_err("a trap")
            .to_lowercase();
        assert!(
            err.contains("trap") && err.contains(why),
            "retptr {retptr}: {err}"
        );
        assert!(err.contains("result out-param"), "retptr {retptr}: {err}");
    }
    // In bounds it works (the same component, a good pointer).
    let app = disk_component(&READ_TO.replace("RETPTR", "8"));
    let out = hosted(app, &[], &[], Some(&disk.path), None).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.status, 0, "{}", String::from_utf8_lossy(&out.stderr));
}

/// `ringos probe blk --component --phases --rounds 2`: a real boot with a
/// real disk file; the component runs twice, each run between slices of
/// the kernel-only reads, and its reads are pooled; the kernel marks the
/// phases of both paths' reads and the probe reports them, each read
/// counted, adding up to no more than the slowest read (the phases are
/// medians of parts of reads).
#[test]
fn the_probe_splits_reads_into_phases() {
    use ringos::probe::blk::{probe_blk, ProbeBlk};
    let disk = disk("phases");
    let p = ProbeBlk {
        phases: true,
        ..component_probe(&disk, 200)
    };
    let report = probe_blk(&p).unwrap_or_else(|e| panic!("{e}"));
    let c = report.machines[0].component.expect("the component's reads");
    let phases = c.phases.expect("phases");
    // The component's two runs of 100 reads, each after 10 warm-up ones,
    // pooled; a kernel-only read right after each of the 200.
    assert_eq!(c.reads, 200, "{c:?}");
    let kernel = c.same_boot_kernel.expect("same-boot kernel-only reads");
    assert_eq!((kernel.reads, kernel.paired), (200, true), "{c:?}");
    assert!(
        c.min_ns <= c.p50_ns && c.p50_ns <= c.p99_ns && c.p99_ns <= c.max_ns,
        "{c:?}"
    );
    assert_eq!(phases.kernel.reads, 200, "{phases:?}");
    assert_eq!(phases.component.reads, 220, "{phases:?}");
    for s in [phases.kernel, phases.component] {
        assert!(s.submit_ns > 0 && s.after_irq_ns > 0, "{phases:?}");
        let sum = s.before_submit_ns + s.submit_ns + s.device_ns + s.after_irq_ns;
        assert!(
            sum <= c.max_ns.max(c.same_boot_kernel.unwrap().max_ns),
            "{phases:?} {c:?}"
        );
        // How the reads ended: each reaped by a poll or ended by an
        // interrupt after a halt, whose distance from the notify is
        // within a read.
        assert!(
            s.reaped <= s.reads && s.after_reaped <= s.reads,
            "{phases:?}"
        );
        if s.reaped < s.reads {
            assert!(s.notify_to_halt_ns > 0, "{phases:?}");
            assert!(s.submit_after_irq_ns > 0, "{phases:?}");
        }
        assert!(
            s.notify_to_halt_ns <= c.max_ns.max(kernel.max_ns),
            "{phases:?}"
        );
    }
    // The component's own work happens before the submission.
    assert!(
        phases.component.before_submit_ns > phases.kernel.before_submit_ns,
        "{phases:?}"
    );
    assert!(report.table().contains("component - kernel"));
    assert!(report.table().contains("how reads end"));
}

/// `ringos probe blk --component` on the demo (wit-bindgen) in a real VM
/// on a real disk file: its reads are paired block by block with as many
/// kernel-only ones (`ringos:probe/baseline`), over two runs, pooled.
#[test]
fn the_demo_probe_pairs_its_reads_with_the_kernels() {
    use ringos::probe::blk::{probe_blk, ProbeBlk};
    let disk = disk("demo-probe");
    let p = ProbeBlk {
        wit_bindgen: Some(guests::component_bytes("demo")),
        ..component_probe(&disk, 100)
    };
    let report = probe_blk(&p).unwrap_or_else(|e| panic!("{e}"));
    let c = report.machines[0].wit_bindgen.expect("the demo's reads");
    assert_eq!(c.reads, 100, "{c:?}");
    let kernel = c.same_boot_kernel.expect("same-boot kernel-only reads");
    assert_eq!((kernel.reads, kernel.paired), (100, true), "{c:?}");
    assert!(c.min_ns <= c.p50_ns && c.p50_ns <= c.max_ns, "{c:?}");
}

/// `ringos probe blk --component` of `ops` reads in two runs on microvm
/// and `disk` (probe.wat only, no phases).
fn component_probe(disk: &TempDisk, ops: u32) -> ringos::probe::blk::ProbeBlk {
    ringos::probe::blk::ProbeBlk {
        image: ringos::kernel_image::build(false).expect("kernel image"),
        disk: disk.path.clone(),
        machines: vec![Machine::Microvm],
        ops,
        qd: 4,
        write: false,
        io: None,
        accel: ringos::Accel::Tcg,
        mem_mib: 256,
        timeout: Duration::from_secs(120),
        component: true,
        count: false,
        phases: false,
        wit_bindgen: None,
        pin_cpu: None,
        rounds: 2,
    }
}
