//! Components on bare metal: the guest components of `tests/guests` are
//! embedded in the kernel image and booted under QEMU (`ringos run`); the
//! host checks what the component wrote to `wasi:cli/stdout`, kept apart
//! from the kernel's own lines, and the exit status.

use std::time::Duration;

use ringos::run::{boot_component, image_with, VmOutput};
use ringos::Machine;
use ringos_tests::guests;

/// Boots the component `bytes` alone on `machine`.
fn boot_bytes(bytes: &[u8], machine: Machine, timeout: Duration) -> VmOutput {
    ringos_tests::boot_component(
        bytes,
        &[],
        &[],
        None,
        machine,
        timeout,
        ringos::Stdin::Empty,
    )
}

/// Runs the component `bytes` hosted.
fn hosted(bytes: Vec<u8>, timeout: Option<Duration>) -> Result<ringos::hosted_run::Output, String> {
    ringos_tests::hosted(bytes, &[], &[], None, timeout)
}

fn boot(app: &str, with: &[&str], machine: Machine) -> VmOutput {
    let bytes = guests::component_bytes(app);
    let deps: Vec<Vec<u8>> = with.iter().map(|d| guests::component_bytes(d)).collect();
    let image = image_with(&bytes, &deps, false).expect("kernel image with the component");
    let cfg = ringos_tests::component_config(&image, machine, Duration::from_secs(120));
    let out = boot_component(&image, &cfg, None).expect("booting");
    let _ = std::fs::remove_file(&image);
    out
}

fn check(out: &VmOutput, want_stdout: &str) {
    let run = out.run.as_ref().expect("a finished VM");
    let console: Vec<&str> = run.lines.iter().map(|(_, l)| l.as_str()).collect();
    assert!(
        run.outcome.is_success(),
        "outcome {:?}; component lines {:?}; console:\n{}",
        run.outcome,
        out.component,
        console.join("\n")
    );
    assert_eq!(out.stdout, want_stdout, "console:\n{}", console.join("\n"));
    assert!(out.stderr.is_empty(), "stderr: {}", out.stderr);
    assert!(out.component.is_empty(), "{:?}", out.component);
    // The kernel's lines are still there, apart from the app's.
    assert!(console.iter().any(|l| l.starts_with("ready: ")));
}

#[test]
fn hello_on_microvm() {
    check(&boot("hello", &[], Machine::Microvm), guests::HELLO_OUTPUT);
}

#[test]
fn hello_on_q35() {
    check(&boot("hello", &[], Machine::Q35), guests::HELLO_OUTPUT);
}

#[test]
fn consumer_with_provider_on_microvm() {
    check(
        &boot("consumer", &["provider"], Machine::Microvm),
        guests::CONSUMER_OUTPUT,
    );
}

#[test]
fn a_component_that_cannot_link_fails_with_a_reason() {
    // The consumer without its provider: the import is missing.
    let out = boot("consumer", &[], Machine::Microvm);
    let run = out.run.as_ref().unwrap();
    assert!(!run.outcome.is_success());
    assert_eq!(run.outcome.exit_code(), 1);
    assert!(
        out.component
            .iter()
            .any(|l| l.contains("missing import `ringos:demo/bytes@0.1.0`")),
        "{:?}",
        out.component
    );
    assert!(out.stdout.is_empty());
}

/// A command whose `run` never returns (an endless loop).
const SPIN: &str = r#"(component
  (core module $M
    (func (export "run") (result i32) (loop $l (br $l)) (i32.const 0)))
  (core instance $m (instantiate $M))
  (func $run async (result (result)) (canon lift (core func $m "run")))
  (instance $i (export "run" (func $run)))
  (export "wasi:cli/run@0.3.2" (instance $i)))"#;

#[test]
fn a_runaway_component_is_interrupted_before_the_timeout() {
    interrupted_in_the_vm(SPIN);
}

/// Boots `wat` with an 8 s VM timeout: the guest must interrupt it (2 s
/// before QEMU would be killed), exit 1, and say so.
fn interrupted_in_the_vm(wat: &str) {
    let bytes = wat::parse_str(wat).unwrap();
    let out = boot_bytes(&bytes, Machine::Microvm, Duration::from_secs(8));
    let run = out.run.unwrap();
    assert_eq!(
        run.outcome.exit_code(),
        1,
        "{:?} {:?}",
        run.outcome,
        out.component
    );
    assert!(
        out.component.iter().any(|l| l.contains("interrupted")),
        "{:?}",
        out.component
    );
}

/// `run` waits 50 ms (a loop timer on the one-shot LAPIC timer the
/// watchdog uses too), then loops forever.
const SLEEP_THEN_SPIN: &str = r#"(component
  (import "wasi:clocks/monotonic-clock@0.3.2" (instance $c
    (export "wait-for" (func async (param "how-long" u64)))))
  (canon lower (func $c "wait-for") (core func $wait))
  (core module $M
    (import "" "wait" (func $wait (param i64)))
    (func (export "run") (result i32)
      (call $wait (i64.const 50000000))
      (loop $l (br $l))
      (i32.const 0)))
  (core instance $m (instantiate $M (with "" (instance (export "wait" (func $wait))))))
  (func $run async (result (result)) (canon lift (core func $m "run")))
  (instance $i (export "run" (func $run)))
  (export "wasi:cli/run@0.3.2" (instance $i)))"#;

#[test]
fn the_timeout_still_interrupts_after_a_wait_used_the_timer() {
    // The wait's deadline took the one-shot timer from the watchdog; the
    // watchdog must get it back, or the loop runs until QEMU is killed.
    interrupted_in_the_vm(SLEEP_THEN_SPIN);
}

#[test]
fn a_wait_longer_than_the_timeout_is_interrupted() {
    // An hour-long wait-for: the guest's watchdog ends it at the timeout
    // (2 s before QEMU would be killed) with the trap's reason.
    interrupted_in_the_vm(&SLEEP_THEN_SPIN.replace("50000000", "3600000000000"));
}

#[test]
fn a_runaway_component_is_interrupted_hosted() {
    let bytes = wat::parse_str(SPIN).unwrap();
    let r = hosted(bytes, Some(Duration::from_millis(200)));
    let e = r.expect_err("the run must be interrupted");
    assert!(e.contains("interrupted"), "{e}");
}

/// A component whose core start function never returns: it runs at
/// instantiation, before `run`.
const START_SPIN: &str = r#"(component
  (core module $M
    (func $spin (loop $l (br $l)))
    (start $spin)
    (func (export "run") (result i32) (i32.const 0)))
  (core instance $m (instantiate $M))
  (func $run async (result (result)) (canon lift (core func $m "run")))
  (instance $i (export "run" (func $run)))
  (export "wasi:cli/run@0.3.2" (instance $i)))"#;

#[test]
fn the_pre_boot_check_runs_none_of_the_components_code() {
    // It links on the host without running the start function: done at
    // once, not spinning (a channel so a regression fails, not hangs).
    let bytes = wat::parse_str(START_SPIN).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(ringos::run::check(&bytes, &[]));
    });
    let r = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the check ran the component's start function");
    assert_eq!(r, Ok(()));
}

#[test]
fn an_endless_start_function_is_interrupted_in_the_vm_and_hosted() {
    let bytes = wat::parse_str(START_SPIN).unwrap();
    let out = boot_bytes(&bytes, Machine::Microvm, Duration::from_secs(8));
    let run = out.run.unwrap();
    assert_eq!(
        run.outcome.exit_code(),
        1,
        "{:?} {:?}",
        run.outcome,
        out.component
    );
    assert!(
        out.component
            .iter()
            .any(|l| l.contains("instantiation trapped") && l.contains("interrupted")),
        "{:?}",
        out.component
    );
    let e = hosted(bytes, Some(Duration::from_millis(200))).expect_err("interrupted");
    assert!(
        e.contains("instantiation trapped") && e.contains("interrupted"),
        "{e}"
    );
}

#[test]
fn an_image_written_once_boots_later() {
    let app = guests::component_bytes("hello");
    let out = ringos::kernel_image::target_dir(&ringos::kernel_image::root())
        .join("run")
        .join(format!("image-test-{}.elf", std::process::id()));
    let args = vec!["a".to_string(), "b c".to_string()];
    let env = vec![("K".to_string(), "V".to_string())];
    let image = ringos::run::write_image(&app, &[], &args, &env, false, &out).unwrap();
    // A plain PVH ELF with the payload descriptor patched.
    let elf = std::fs::read(&image).unwrap();
    assert_eq!(&elf[..4], b"\x7fELF");
    assert!(ringos::image::descriptor(&elf).unwrap().len > 0);
    let mut cfg =
        ringos_tests::component_config(&image, Machine::Microvm, Duration::from_secs(120));
    cfg.args = args;
    cfg.env = env;
    let o = boot_component(&image, &cfg, None).unwrap();
    let _ = std::fs::remove_file(&image);
    check(&o, guests::HELLO_OUTPUT);
}

#[test]
fn bad_components_are_refused_before_a_vm_starts() {
    let not_wasm = b"hello".to_vec();
    let core_module = wat::parse_str("(module)").unwrap();
    let unlinked = guests::component_bytes("consumer");
    let cases = [
        (not_wasm, "not a valid component"),
        (core_module, "not a component"),
        (unlinked, "missing import `ringos:demo/bytes@0.1.0`"),
    ];
    for (bytes, why) in cases {
        let e = ringos::run::check(&bytes, &[]).expect_err("refused");
        assert!(e.contains(why), "{e}");
    }
    ringos::run::check(&guests::component_bytes("hello"), &[]).unwrap();
}

#[test]
fn components_are_read_as_binary_or_text() {
    let dir = std::env::temp_dir().join(format!("ringos-read-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let text = dir.join("exit7.wat");
    std::fs::write(&text, EXIT7).unwrap();
    let binary = dir.join("exit7.wasm");
    std::fs::write(&binary, wat::parse_str(EXIT7).unwrap()).unwrap();
    let from_text = ringos::run::read(&text).unwrap();
    assert_eq!(from_text, wat::parse_str(EXIT7).unwrap());
    assert_eq!(ringos::run::read(&binary).unwrap(), from_text);
    ringos::run::check(&from_text, &[]).unwrap();
    // Broken text is a refused component (status 1), with where it broke.
    let broken = dir.join("broken.wat");
    std::fs::write(
        &broken,
        "(component\n  (core module $m (func (result i32))\n",
    )
    .unwrap();
    let e = ringos::run::read(&broken).expect_err("refused");
    assert_eq!(e.exit_code(), 1);
    let msg = e.to_string();
    assert!(
        msg.contains("broken.wat") && msg.contains("not a valid text component"),
        "{msg}"
    );
    assert!(msg.contains(":3:"), "says where: {msg}");
    // Text that is no WAT at all (a README) is named as not WebAssembly;
    // comments before the first `(` are still WAT.
    let readme = dir.join("README.md");
    std::fs::write(&readme, "# my app\n\nBuild it with cargo.\n").unwrap();
    let e = ringos::run::read(&readme).expect_err("refused");
    assert_eq!(e.exit_code(), 1);
    let msg = e.to_string();
    assert!(
        msg.contains("README.md: not WebAssembly") && msg.contains("\\0asm"),
        "{msg}"
    );
    let commented = dir.join("commented.wat");
    std::fs::write(&commented, format!(";; exits 7\n(; block ;)\n{EXIT7}")).unwrap();
    assert_eq!(ringos::run::read(&commented).unwrap(), from_text);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `run` returns ok iff two `wasi:random` u64s differ and a 50 ms
/// `wasi:clocks` `wait-for` lasts at least 50 ms by the monotonic clock.
const CLOCKS_AND_RANDOM: &str = r#"(component
  (import "wasi:random/random@0.3.2" (instance $r
    (export "get-random-u64" (func (result u64)))))
  (import "wasi:clocks/monotonic-clock@0.3.2" (instance $c
    (export "now" (func (result u64)))
    (export "wait-for" (func async (param "how-long" u64)))))
  (core func $rand (canon lower (func $r "get-random-u64")))
  (core func $now (canon lower (func $c "now")))
  (core func $wait (canon lower (func $c "wait-for")))
  (core module $M
    (import "" "rand" (func $rand (result i64)))
    (import "" "now" (func $now (result i64)))
    (import "" "wait" (func $wait (param i64)))
    (func (export "run") (result i32)
      (local $t0 i64)
      (if (i64.eq (call $rand) (call $rand)) (then (return (i32.const 1))))
      (local.set $t0 (call $now))
      (call $wait (i64.const 50000000))
      (if (i64.lt_u (i64.sub (call $now) (local.get $t0)) (i64.const 50000000))
        (then (return (i32.const 1))))
      (i32.const 0)))
  (core instance $m (instantiate $M (with "" (instance
    (export "rand" (func $rand)) (export "now" (func $now)) (export "wait" (func $wait))))))
  (func $run async (result (result)) (canon lift (core func $m "run")))
  (instance $i (export "run" (func $run)))
  (export "wasi:cli/run@0.3.2" (instance $i)))"#;

#[test]
fn clocks_and_random_on_both_machines_and_hosted() {
    let bytes = wat::parse_str(CLOCKS_AND_RANDOM).unwrap();
    for machine in [Machine::Microvm, Machine::Q35] {
        let out = boot_bytes(&bytes, machine, Duration::from_secs(120));
        check(&out, "");
        // No device is attached: the 50 ms wait still halts the CPU
        // (spinning through it would take thousands of loop turns).
        let (turns, halts, io) = loop_stats(&out);
        assert_eq!(io, "irq", "{machine}");
        assert!(
            halts >= 1 && turns < 1000,
            "{machine}: {turns} turns, {halts} halts"
        );
    }
    assert!(hosted(bytes, None).unwrap().ok);
}

/// The kernel's `loop: N turns, M halts (io=MODE)` line.
fn loop_stats(out: &VmOutput) -> (u64, u64, String) {
    let run = out.run.as_ref().expect("a finished VM");
    let line = run
        .lines
        .iter()
        .find_map(|(_, l)| l.split_once("loop: ").map(|(_, rest)| rest.to_owned()))
        .unwrap_or_else(|| panic!("no loop line in {:?}", run.lines));
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        [turns, "turns,", halts, "halts", io] => (
            turns.parse().unwrap(),
            halts.parse().unwrap(),
            io.trim_start_matches("(io=")
                .trim_end_matches(')')
                .to_owned(),
        ),
        _ => panic!("unexpected loop line: {line}"),
    }
}

/// `run` calls `wasi:cli/exit` `exit-with-code(7)`.
const EXIT7: &str = r#"(component
  (import "wasi:cli/exit@0.3.2" (instance $e
    (export "exit-with-code" (func (param "status-code" u8)))))
  (core func $exit (canon lower (func $e "exit-with-code")))
  (core module $M
    (import "" "exit" (func $exit (param i32)))
    (func (export "run") (result i32) (call $exit (i32.const 7)) (i32.const 0)))
  (core instance $m (instantiate $M (with "" (instance (export "exit" (func $exit))))))
  (func $run async (result (result)) (canon lift (core func $m "run")))
  (instance $i (export "run" (func $run)))
  (export "wasi:cli/run@0.3.2" (instance $i)))"#;

#[test]
fn the_exit_status_is_the_components() {
    let bytes = wat::parse_str(EXIT7).unwrap();
    let o = boot_bytes(&bytes, Machine::Microvm, Duration::from_secs(120));
    let run = o.run.unwrap();
    assert_eq!(
        run.outcome.exit_code(),
        7,
        "{:?} {:?}",
        run.outcome,
        o.component
    );
    assert!(o.component.is_empty(), "{:?}", o.component);
    assert_eq!(hosted(bytes, None).unwrap().status, 7);
}

/// `run` starts two 50 ms `wait-for`s lowered async: both must come back
/// STARTED (the host call does not block the caller: they are timers on
/// the loop), then both resolve as SUBTASK events with RETURNED.
const TWO_TIMERS: &str = r#"(component
  (import "wasi:clocks/monotonic-clock@0.3.2" (instance $c
    (export "wait-for" (func async (param "how-long" u64)))))
  (core module $Mem (memory (export "mem") 1))
  (core instance $mem (instantiate $Mem))
  (canon lower (func $c "wait-for") async (core func $wait))
  (canon waitable-set.new (core func $ws.new))
  (canon waitable.join (core func $join))
  (canon waitable-set.wait (memory (core memory $mem "mem")) (core func $ws.wait))
  (canon subtask.drop (core func $drop))
  (core module $M
    (import "" "mem" (memory 1))
    (import "" "wait" (func $wait (param i64) (result i32)))
    (import "" "ws.new" (func $ws.new (result i32)))
    (import "" "join" (func $join (param i32 i32)))
    (import "" "ws.wait" (func $ws.wait (param i32 i32) (result i32)))
    (import "" "drop" (func $drop (param i32)))
    (func (export "run") (result i32)
      (local $a i32) (local $b i32) (local $ws i32) (local $n i32)
      (local.set $a (call $wait (i64.const 50000000)))
      (local.set $b (call $wait (i64.const 50000000)))
      (if (i32.ne (i32.and (local.get $a) (i32.const 0xf)) (i32.const 1))
        (then (return (i32.const 1))))
      (if (i32.ne (i32.and (local.get $b) (i32.const 0xf)) (i32.const 1))
        (then (return (i32.const 1))))
      (local.set $ws (call $ws.new))
      (call $join (i32.shr_u (local.get $a) (i32.const 4)) (local.get $ws))
      (call $join (i32.shr_u (local.get $b) (i32.const 4)) (local.get $ws))
      (block $done (loop $l
        (if (i32.ne (call $ws.wait (local.get $ws) (i32.const 0)) (i32.const 1))
          (then (return (i32.const 1))))
        (if (i32.ne (i32.load offset=4 (i32.const 0)) (i32.const 2))
          (then (return (i32.const 1))))
        (call $drop (i32.load (i32.const 0)))
        (local.set $n (i32.add (local.get $n) (i32.const 1)))
        (br_if $l (i32.lt_u (local.get $n) (i32.const 2)))))
      (i32.const 0)))
  (core instance $m (instantiate $M (with "" (instance
    (export "mem" (memory $mem "mem"))
    (export "wait" (func $wait)) (export "ws.new" (func $ws.new))
    (export "join" (func $join)) (export "ws.wait" (func $ws.wait))
    (export "drop" (func $drop))))))
  (func $run async (result (result)) (canon lift (core func $m "run")))
  (instance $i (export "run" (func $run)))
  (export "wasi:cli/run@0.3.2" (instance $i)))"#;

/// `bytes` runs as a VM on microvm and hosted, printing nothing and
/// exiting 0 in both.
fn succeeds_in_the_vm_and_hosted(bytes: Vec<u8>, vm: Duration, hosted_timeout: Option<Duration>) {
    check(&boot_bytes(&bytes, Machine::Microvm, vm), "");
    let h = hosted(bytes, hosted_timeout).unwrap();
    assert!(h.ok, "status {}", h.status);
}

#[test]
fn async_waits_are_timers_on_the_loop() {
    let bytes = wat::parse_str(TWO_TIMERS).unwrap();
    succeeds_in_the_vm_and_hosted(bytes, Duration::from_secs(120), None);
}

/// `run` starts an hour-long `wait-for` (a loop timer) and cancels it:
/// the cancel returns CANCELLED_BEFORE_RETURNED at once, and the run ends
/// without waiting (it would time out if the timer stayed).
const CANCELLED_TIMER: &str = r#"(component
  (import "wasi:clocks/monotonic-clock@0.3.2" (instance $c
    (export "wait-for" (func async (param "how-long" u64)))))
  (canon lower (func $c "wait-for") async (core func $wait))
  (canon subtask.cancel (core func $cancel))
  (canon subtask.drop (core func $drop))
  (core module $M
    (import "" "wait" (func $wait (param i64) (result i32)))
    (import "" "cancel" (func $cancel (param i32) (result i32)))
    (import "" "drop" (func $drop (param i32)))
    (func (export "run") (result i32)
      (local $r i32)
      (local.set $r (call $wait (i64.const 3600000000000)))
      (if (i32.ne (i32.and (local.get $r) (i32.const 0xf)) (i32.const 1 (; STARTED ;)))
        (then (return (i32.const 1))))
      (if (i32.ne (call $cancel (i32.shr_u (local.get $r) (i32.const 4)))
                  (i32.const 4 (; CANCELLED_BEFORE_RETURNED ;)))
        (then (return (i32.const 1))))
      (call $drop (i32.shr_u (local.get $r) (i32.const 4)))
      (i32.const 0)))
  (core instance $m (instantiate $M (with "" (instance
    (export "wait" (func $wait)) (export "cancel" (func $cancel))
    (export "drop" (func $drop))))))
  (func $run async (result (result)) (canon lift (core func $m "run")))
  (instance $i (export "run" (func $run)))
  (export "wasi:cli/run@0.3.2" (instance $i)))"#;

#[test]
fn a_cancelled_wait_for_ends_at_once_in_the_vm_and_hosted() {
    let bytes = wat::parse_str(CANCELLED_TIMER).unwrap();
    succeeds_in_the_vm_and_hosted(
        bytes,
        Duration::from_secs(60),
        Some(Duration::from_secs(30)),
    );
}

/// `run` grows its memory 16 MiB at a time until the guest's RAM runs
/// out, then traps: a clear error, and the kernel stays in charge.
const OOM: &str = r#"(component
  (core module $M
    (memory 1)
    (func (export "run") (result i32)
      (loop $l
        (br_if $l (i32.ne (memory.grow (i32.const 256)) (i32.const -1))))
      unreachable))
  (core instance $m (instantiate $M))
  (func $run async (result (result)) (canon lift (core func $m "run")))
  (instance $i (export "run" (func $run)))
  (export "wasi:cli/run@0.3.2" (instance $i)))"#;

#[test]
fn running_out_of_guest_memory_is_a_clear_error() {
    let bytes = wat::parse_str(OOM).unwrap();
    let o = boot_bytes(&bytes, Machine::Microvm, Duration::from_secs(120));
    let run = o.run.unwrap();
    let console: Vec<&str> = run.lines.iter().map(|(_, l)| l.as_str()).collect();
    assert_eq!(
        run.outcome.exit_code(),
        1,
        "{:?}\n{}",
        run.outcome,
        console.join("\n")
    );
    assert!(
        o.component
            .iter()
            .any(|l| l.contains("unreachable") && l.contains("out of memory")),
        "{:?}",
        o.component
    );
}

/// `tests/conformance/components/fibers.wast`'s component `$Fibers`
/// (synchronous callees that block under async callers, each on a fiber)
/// inside a command: `run` calls `$Fibers`' `run(which, n)` (or, with
/// `which` = 3, `start-then-trap`) and exits with 0 iff it returned `n`.
fn fibers_command(which: u32, n: u32) -> Vec<u8> {
    let script = include_str!("../conformance/components/fibers.wast");
    let start = script
        .find("(component definition $Fibers")
        .expect("$Fibers");
    let end = start
        + script[start..]
            .find("\n;; end of $Fibers")
            .expect("its end");
    let fibers =
        script[start..end].replacen("(component definition $Fibers", "(component $Fibers", 1);
    let call = if which == 3 {
        "(call $stt)".to_string()
    } else {
        format!("(call $frun (i32.const {which}) (i32.const {n}))")
    };
    let text = format!(
        r#"(component
  {fibers}
  (component $Cmd
    (import "run" (func $frun-f async (param "which" u32) (param "n" u32) (result u32)))
    (import "start-then-trap" (func $stt-f async (result u32)))
    (core func $frun (canon lower (func $frun-f)))
    (core func $stt (canon lower (func $stt-f)))
    (core module $M
      (import "" "run" (func $frun (param i32 i32) (result i32)))
      (import "" "stt" (func $stt (result i32)))
      (func (export "run") (result i32)
        (if (result i32) (i32.eq {call} (i32.const {n}))
          (then (i32.const 0)) (else (i32.const 1)))))
    (core instance $m (instantiate $M (with "" (instance
      (export "run" (func $frun)) (export "stt" (func $stt))))))
    (func (export "run") async (result (result)) (canon lift (core func $m "run"))))
  (instance $f (instantiate $Fibers))
  (instance $c (instantiate $Cmd
    (with "run" (func $f "run")) (with "start-then-trap" (func $f "start-then-trap"))))
  (instance $i (export "run" (func $c "run")))
  (export "wasi:cli/run@0.3.2" (instance $i)))"#
    );
    wat::parse_str(text).expect("the fibers command")
}

#[test]
fn a_sync_callee_blocks_under_an_async_caller_in_the_vm_and_hosted() {
    // 1000 rounds: each callee blocks on its fiber, the caller goes on
    // (STARTED), waits on its own fiber; the stacks are reused.
    let bytes = fibers_command(0, 1000);
    succeeds_in_the_vm_and_hosted(bytes, Duration::from_secs(120), None);
}

/// A trap on a fiber in the VM: the component fails with the trap's
/// message (exit status 1), the kernel reports no CPU exception.
fn fiber_trap_in_the_vm(which: u32, message: &str) {
    let o = boot_bytes(
        &fibers_command(which, 1),
        Machine::Microvm,
        Duration::from_secs(120),
    );
    let run = o.run.as_ref().unwrap();
    let console: Vec<&str> = run.lines.iter().map(|(_, l)| l.as_str()).collect();
    assert_eq!(
        run.outcome.exit_code(),
        1,
        "{:?} {:?}\n{}",
        run.outcome,
        o.component,
        console.join("\n")
    );
    assert!(
        o.component.iter().any(|l| l.contains(message)),
        "{:?}\n{}",
        o.component,
        console.join("\n")
    );
    assert!(
        !console.iter().any(|l| l.contains("EXCEPTION")),
        "{}",
        console.join("\n")
    );
}

#[test]
fn stack_exhaustion_on_a_fiber_in_the_vm_is_a_trap() {
    fiber_trap_in_the_vm(1, "call stack exhausted");
}

#[test]
fn a_trap_on_a_fiber_in_the_vm_ends_the_component_cleanly() {
    fiber_trap_in_the_vm(2, "unreachable");
}

#[test]
fn a_blocked_fiber_is_abandoned_when_its_caller_traps_in_the_vm() {
    fiber_trap_in_the_vm(3, "unreachable");
}

/// The bytes `output_exactly` writes: every byte value, a CRLF, a line,
/// more than the kernel buffers without a newline, and a last piece
/// without one; on stderr a literal `\c` (the no-newline escape) and a
/// byte that is not UTF-8.
fn output_bytes() -> (Vec<u8>, Vec<u8>) {
    let mut out: Vec<u8> = (0..=255u8).collect();
    out.extend_from_slice(b"\r\nline two\n");
    out.extend(std::iter::repeat_n(
        b'x',
        ringos_proto::output::MAX_LINE + 900,
    ));
    out.extend_from_slice("\nno newline at the end \u{1f980}".as_bytes());
    (out, b"err \\c \\\\ \xff\\c".to_vec())
}

/// A component writing `output_bytes` to stdout and stderr, each through
/// one `write-via-stream`.
fn output_exactly() -> Vec<u8> {
    let (out, err) = output_bytes();
    let data = |b: &[u8]| -> String { b.iter().map(|b| format!("\\{b:02x}")).collect() };
    let wat = format!(
        r#"(component
  (import "wasi:cli/stdout@0.3.2" (instance $stdout
    (type $ec' (enum "io" "illegal-byte-sequence" "pipe"))
    (export "error-code" (type $ec (eq $ec')))
    (export "write-via-stream" (func (param "data" (stream u8))
      (result (future (result (error $ec))))))))
  (import "wasi:cli/stderr@0.3.2" (instance $stderr
    (type $ec' (enum "io" "illegal-byte-sequence" "pipe"))
    (export "error-code" (type $ec (eq $ec')))
    (export "write-via-stream" (func (param "data" (stream u8))
      (result (future (result (error $ec))))))))
  (core module $Mem (memory (export "mem") 1))
  (core instance $mem (instantiate $Mem))
  (type $bytes (stream u8))
  (core func $out (canon lower (func $stdout "write-via-stream")))
  (core func $err (canon lower (func $stderr "write-via-stream")))
  (canon stream.new $bytes (core func $stream.new))
  (canon stream.write $bytes async (memory (core memory $mem "mem")) (core func $stream.write))
  (canon stream.drop-writable $bytes (core func $stream.drop-writable))
  (canon waitable-set.new (core func $ws.new))
  (canon waitable.join (core func $join))
  (canon waitable-set.wait (memory (core memory $mem "mem")) (core func $ws.wait))
  (core module $M
    (import "" "mem" (memory 1))
    (import "" "out" (func $out (param i32) (result i32)))
    (import "" "err" (func $err (param i32) (result i32)))
    (import "" "stream.new" (func $stream.new (result i64)))
    (import "" "stream.write" (func $stream.write (param i32 i32 i32) (result i32)))
    (import "" "stream.drop-writable" (func $stream.drop-writable (param i32)))
    (import "" "ws.new" (func $ws.new (result i32)))
    (import "" "join" (func $join (param i32 i32)))
    (import "" "ws.wait" (func $ws.wait (param i32 i32) (result i32)))
    ;; Writes [at, end) to stdout (to = 0) or stderr; 0 if all went.
    (func $write (param $to i32) (param $at i32) (param $end i32) (result i32)
      (local $ends i64) (local $w i32) (local $ws i32) (local $r i32)
      (local.set $ends (call $stream.new))
      (local.set $w (i32.wrap_i64 (i64.shr_u (local.get $ends) (i64.const 32))))
      (if (local.get $to)
        (then (drop (call $err (i32.wrap_i64 (local.get $ends)))))
        (else (drop (call $out (i32.wrap_i64 (local.get $ends))))))
      (local.set $ws (call $ws.new))
      (call $join (local.get $w) (local.get $ws))
      (block $done (loop $l
        (br_if $done (i32.ge_u (local.get $at) (local.get $end)))
        (local.set $r (call $stream.write (local.get $w) (local.get $at)
          (i32.sub (local.get $end) (local.get $at))))
        (if (i32.eq (local.get $r) (i32.const -1))
          (then
            (if (i32.ne (call $ws.wait (local.get $ws) (i32.const 0)) (i32.const 3))
              (then unreachable))
            (local.set $r (i32.load (i32.const 4)))))
        (if (i32.ne (i32.and (local.get $r) (i32.const 0xf)) (i32.const 0))
          (then (return (i32.const 1))))
        (local.set $at (i32.add (local.get $at) (i32.shr_u (local.get $r) (i32.const 4))))
        (br $l)))
      (call $join (local.get $w) (i32.const 0))
      (call $stream.drop-writable (local.get $w))
      (i32.const 0))
    (func (export "run") (result i32)
      (i32.or (call $write (i32.const 0) (i32.const 1024) (i32.const {out_end}))
              (call $write (i32.const 1) (i32.const {out_end}) (i32.const {err_end}))))
    (data (i32.const 1024) "{out_data}" "{err_data}"))
  (core instance $m (instantiate $M (with "" (instance
    (export "mem" (memory $mem "mem"))
    (export "out" (func $out)) (export "err" (func $err))
    (export "stream.new" (func $stream.new)) (export "stream.write" (func $stream.write))
    (export "stream.drop-writable" (func $stream.drop-writable))
    (export "ws.new" (func $ws.new)) (export "join" (func $join))
    (export "ws.wait" (func $ws.wait))))))
  (func $run async (result (result)) (canon lift (core func $m "run")))
  (instance $i (export "run" (func $run)))
  (export "wasi:cli/run@0.3.2" (instance $i)))"#,
        out_end = 1024 + out.len(),
        err_end = 1024 + out.len() + err.len(),
        out_data = data(&out),
        err_data = data(&err),
    );
    wat::parse_str(wat).unwrap()
}

#[test]
fn output_reaches_the_host_byte_for_byte_in_the_vm_and_hosted() {
    let (want_out, want_err) = output_bytes();
    let bytes = output_exactly();
    let o = boot_bytes(&bytes, Machine::Microvm, Duration::from_secs(120));
    let run = o.run.as_ref().expect("a finished VM");
    assert!(
        run.outcome.is_success(),
        "{:?} {:?}",
        run.outcome,
        o.component
    );
    same_bytes(&o.stdout_bytes, &want_out, "stdout in the VM");
    same_bytes(&o.stderr_bytes, &want_err, "stderr in the VM");
    // The console carried it as lines of printable text only: nothing the
    // component writes reaches the terminal raw or looks like a kernel line.
    let app: Vec<&str> = run
        .lines
        .iter()
        .filter_map(|(_, l)| l.strip_prefix(ringos_proto::marker::STDOUT))
        .collect();
    assert!(app.len() >= 5, "{app:?}");
    assert!(app
        .iter()
        .all(|l| l.chars().all(|c| c == '\t' || !c.is_control())));
    let h = hosted(bytes, None).unwrap();
    assert!(h.ok);
    same_bytes(&h.stdout, &want_out, "stdout hosted");
    same_bytes(&h.stderr, &want_err, "stderr hosted");
}

/// Asserts `got == want`, saying where they part rather than printing
/// kilobytes.
fn same_bytes(got: &[u8], want: &[u8], what: &str) {
    let at = got.iter().zip(want).position(|(g, w)| g != w);
    assert!(
        got == want,
        "{what}: {} bytes, want {}; first difference at {:?}: got {:?}, want {:?}",
        got.len(),
        want.len(),
        at,
        at.map(|i| &got[i..got.len().min(i + 16)]),
        at.map(|i| &want[i..want.len().min(i + 16)]),
    );
}

/// `demo cat`'s input: every byte value (the framing's escape among
/// them, alone and in runs) over several FIFO fills and reads.
fn cat_input() -> Vec<u8> {
    let mut b: Vec<u8> = (0..=255u8).cycle().take(20_000).collect();
    b.extend_from_slice(&[0xff, 0xff, 0xff, 0x00, 0xff]);
    b
}

#[test]
fn stdin_reaches_the_component_byte_for_byte_and_ends() {
    let demo = guests::component_bytes("demo");
    let args = ["demo", "cat"];
    let cat = |stdin: Vec<u8>, machine: Machine, disk: Option<&std::path::Path>| {
        let o = ringos_tests::boot_component(
            &demo,
            &args,
            &[],
            disk,
            machine,
            Duration::from_secs(120),
            ringos::Stdin::Bytes(stdin),
        );
        let run = o.run.as_ref().expect("a finished VM");
        assert!(
            run.outcome.is_success(),
            "{machine:?}: {:?} {:?}",
            run.outcome,
            o.component
        );
        o.stdout_bytes
    };
    let input = cat_input();
    // Polled (no device interrupts without a disk)...
    same_bytes(
        &cat(input.clone(), Machine::Microvm, None),
        &input,
        "microvm",
    );
    // ...and halting between COM1's interrupts (a disk makes the loop
    // interrupt-driven), on the other machine.
    let disk = ringos_tests::TempDisk::new("stdin-irq", 1 << 20);
    let short = b"over the interrupt\n\xff\x00".to_vec();
    same_bytes(
        &cat(short.clone(), Machine::Q35, Some(&disk.path)),
        &short,
        "q35",
    );
    // The end of input alone: nothing, and a clean exit.
    same_bytes(&cat(Vec::new(), Machine::Microvm, None), b"", "empty");
    let h =
        ringos_tests::hosted_with_stdin(demo.clone(), &args, &[], None, None, Some(input.clone()))
            .unwrap();
    assert!(h.ok, "{}", String::from_utf8_lossy(&h.stderr));
    same_bytes(&h.stdout, &input, "hosted");
    // Without the host's stdin it is empty, as before.
    let o = ringos_tests::boot_component(
        &demo,
        &args,
        &[],
        None,
        Machine::Microvm,
        Duration::from_secs(120),
        ringos::Stdin::Empty,
    );
    assert!(o.run.as_ref().unwrap().outcome.is_success());
    same_bytes(&o.stdout_bytes, b"", "no stdin");
}

/// Reads stdin, which has nothing yet: the read blocks; a synchronous
/// `stream.cancel-read` then ends it `CANCELLED` with nothing read, and
/// the run goes on to return ok.
const CANCEL_STDIN_READ: &str = r#"(component
  (import "wasi:cli/stdin@0.3.2" (instance $stdin
    (type $ec' (enum "io" "illegal-byte-sequence" "pipe"))
    (export "error-code" (type $ec (eq $ec')))
    (export "read-via-stream" (func
      (result (tuple (stream u8) (future (result (error $ec)))))))))
  (core module $Mem (memory (export "mem") 1))
  (core instance $mem (instantiate $Mem))
  (type $bytes (stream u8))
  (core func $read-via-stream (canon lower (func $stdin "read-via-stream")
    (memory (core memory $mem "mem"))))
  (canon stream.read $bytes async (memory (core memory $mem "mem")) (core func $stream.read))
  (canon stream.cancel-read $bytes (core func $stream.cancel-read))
  (canon stream.drop-readable $bytes (core func $stream.drop-readable))
  (core module $M
    (import "" "mem" (memory 1))
    (import "" "read-via-stream" (func $read-via-stream (param i32)))
    (import "" "stream.read" (func $stream.read (param i32 i32 i32) (result i32)))
    (import "" "stream.cancel-read" (func $stream.cancel-read (param i32) (result i32)))
    (import "" "stream.drop-readable" (func $stream.drop-readable (param i32)))
    (func (export "run") (result i32)
      (local $s i32)
      (call $read-via-stream (i32.const 0))
      (local.set $s (i32.load (i32.const 0)))
      ;; BLOCKED: no input yet.
      (if (i32.ne (call $stream.read (local.get $s) (i32.const 64) (i32.const 16)) (i32.const -1))
        (then (return (i32.const 1))))
      ;; CANCELLED (2), nothing read.
      (if (i32.ne (call $stream.cancel-read (local.get $s)) (i32.const 2))
        (then (return (i32.const 1))))
      (call $stream.drop-readable (local.get $s))
      (i32.const 0)))
  (core instance $m (instantiate $M (with "" (instance
    (export "mem" (memory $mem "mem")) (export "read-via-stream" (func $read-via-stream))
    (export "stream.read" (func $stream.read)) (export "stream.cancel-read" (func $stream.cancel-read))
    (export "stream.drop-readable" (func $stream.drop-readable))))))
  (func $run async (result (result)) (canon lift (core func $m "run")))
  (instance $i (export "run" (func $run)))
  (export "wasi:cli/run@0.3.2" (instance $i)))"#;

/// Input that never comes.
struct NoInputYet;

impl ringos_runtime::wasi::Input for NoInputYet {
    fn read(&self, _: &mut [u8]) -> ringos_runtime::wasi::Received {
        ringos_runtime::wasi::Received::Nothing
    }
}

#[test]
fn a_read_of_stdin_waiting_for_input_cancels_at_once() {
    let bytes = wat::parse_str(CANCEL_STDIN_READ).unwrap();
    let out = std::thread::Builder::new()
        .stack_size(32 << 20)
        .spawn(move || {
            ringos::hosted_run::run_with_disk(
                &bytes,
                &[],
                &[],
                &[],
                ringos::hosted_run::Echo::Capture,
                Some(Duration::from_secs(20)),
                None,
                Some(Box::new(NoInputYet)),
            )
        })
        .unwrap()
        .join()
        .unwrap()
        .expect("runs");
    assert!(out.ok, "{}", String::from_utf8_lossy(&out.stderr));
}
