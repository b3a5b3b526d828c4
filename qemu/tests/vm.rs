//! `vm::spawn` against `tests/fake-qemu` (no kernel, no QEMU): lines are
//! watched as they arrive, and `finish`/`kill` end the run. One test per
//! file process, since it sets `RINGOS_QEMU` for itself.

use std::time::{Duration, Instant};

use ringos::{vm, Console, Outcome, VmConfig};

const FAKE_QEMU: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fake-qemu");

#[test]
fn spawn_watch_and_finish() {
    std::env::set_var("RINGOS_QEMU", FAKE_QEMU);
    std::env::remove_var("FAKE_QEMU");

    // A guest that exits by itself: the EXIT line is seen, then finish.
    let cfg = VmConfig::new(FAKE_QEMU);
    let mut v = vm::spawn(&cfg, Console::Capture).unwrap();
    assert_eq!(
        v.wait_for_line("EXIT: ", Duration::from_secs(10))
            .as_deref(),
        Some("EXIT: 0")
    );
    assert_eq!(v.lines().len(), 2, "the ready line is kept too");
    // The console ended: no more lines, and no waiting for them.
    let t = Instant::now();
    assert_eq!(v.wait_for_line("", Duration::from_secs(10)), None);
    assert!(t.elapsed() < Duration::from_secs(5));
    let run = v.finish().unwrap();
    assert_eq!(run.outcome, Outcome::Guest(0));
    assert_eq!(run.guest_ready_ns(), Some(1234));
    assert_eq!(run.lines.len(), 2);

    // A hung guest: the line arrives, a missing one times out, kill ends it.
    let mut cfg = VmConfig::new(FAKE_QEMU);
    cfg.append = "hang".into();
    let mut v = vm::spawn(&cfg, Console::Capture).unwrap();
    assert_eq!(
        v.wait_for_line("hang", Duration::from_secs(10)).as_deref(),
        Some("hanging")
    );
    let t = Instant::now();
    assert_eq!(v.wait_for_line("never", Duration::from_millis(200)), None);
    assert!(t.elapsed() >= Duration::from_millis(200));
    let run = v.kill().unwrap();
    assert_eq!(run.outcome, Outcome::TimedOut);
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "killed, not waited for"
    );
    assert_eq!(run.tail(1).collect::<Vec<_>>(), ["hanging"]);

    // vm::run still works the same way on top of spawn.
    let run = vm::run(&VmConfig::new(FAKE_QEMU), Console::Capture).unwrap();
    assert!(run.outcome.is_success());
}
