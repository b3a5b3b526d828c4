//! QEMU tier: boot the real image on both machines and check, from the host,
//! the banner, the memory found, the timer and the fault reports.

use ringos_proto::{exit, marker, selftest};
use ringos_tests::{boot, console, line, line_time, vm, Outcome, MACHINES};
use std::time::Duration;

#[test]
fn banner_and_clean_exit_on_both_machines() {
    for m in MACHINES {
        let run = boot(m, "", 256);
        let out = console(&run);
        assert_eq!(run.outcome, Outcome::Guest(exit::SUCCESS), "{m}: {out}");
        let banner =
            line(&run, marker::BANNER).unwrap_or_else(|| panic!("{m}: no banner in {out}"));
        assert!(
            banner.starts_with(env!("CARGO_PKG_VERSION")),
            "{m}: banner {banner:?}"
        );
        assert!(
            run.guest_ready_ns().is_some(),
            "{m}: no ready line in {out}"
        );
        assert_eq!(line(&run, marker::EXIT), Some("0"), "{m}: {out}");
    }
}

/// `memory: <MiB> MiB usable` against `--mem`: all of it but the firmware's
/// few hundred KiB below 1 MiB (and on q35, a few pages for ACPI).
#[test]
fn memory_found_matches_mem() {
    for (m, mem) in [(MACHINES[0], 128), (MACHINES[0], 1024), (MACHINES[1], 512)] {
        let run = boot(m, "", mem);
        let out = console(&run);
        assert_eq!(run.outcome, Outcome::Guest(exit::SUCCESS), "{m}: {out}");
        let found: u64 = line(&run, marker::MEMORY)
            .and_then(|l| l.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{m}: no memory line in {out}"));
        assert!(
            found <= u64::from(mem) && found + 4 >= u64::from(mem),
            "{m} --mem {mem}: guest found {found} MiB\n{out}"
        );
    }
}

/// A 100 ms sleep on the LAPIC timer, measured by the guest's TSC clock and
/// by the host between the two console lines. Bounds are generous: the
/// machine is shared and TCG is slow, but a timer that does not wait, or
/// never fires, fails.
#[test]
fn sleep_100ms_on_the_lapic_timer() {
    for m in MACHINES {
        let run = boot(m, "test=sleep", 256);
        let out = console(&run);
        assert_eq!(run.outcome, Outcome::Guest(exit::SUCCESS), "{m}: {out}");
        let guest_ns: u64 = line(&run, marker::SLEEP_DONE)
            .and_then(|l| l.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{m}: no sleep result in {out}"));
        let host = line_time(&run, marker::SLEEP_DONE).unwrap()
            - line_time(&run, marker::SLEEP_START).unwrap();
        assert!(
            (100_000_000..150_000_000).contains(&guest_ns),
            "{m}: guest measured {guest_ns} ns\n{out}"
        );
        assert!(
            host >= Duration::from_millis(90) && host < Duration::from_secs(2),
            "{m}: host measured {host:?}\n{out}"
        );
    }
}

/// `pin_cpu` (`--pin`): every thread of the running QEMU
/// (vCPU, main loop, workers), read from the host's /proc while the guest
/// sleeps, may run on that one CPU only; a CPU this process may not use is
/// refused before QEMU starts, naming the ones it may.
#[test]
fn a_pinned_vm_runs_every_qemu_thread_on_its_cpu() {
    let cpu = *ringos::qemu::allowed_cpus().unwrap().last().unwrap();
    let mut cfg = vm(MACHINES[0], "test=sleep");
    cfg.pin_cpu = Some(cpu);
    let mut running = ringos::vm::spawn(&cfg, ringos::Console::Capture).expect("running QEMU");
    assert!(
        running
            .wait_for_line(marker::SLEEP_START, Duration::from_secs(30))
            .is_some(),
        "the guest did not start its sleep"
    );
    let tasks = format!("/proc/{}/task", running.pid());
    let mut threads = 0;
    for t in std::fs::read_dir(&tasks).unwrap() {
        let status = std::fs::read_to_string(t.unwrap().path().join("status")).unwrap();
        let allowed = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .unwrap()
            .trim()
            .to_string();
        assert_eq!(allowed, cpu.to_string(), "a QEMU thread's CPUs");
        threads += 1;
    }
    assert!(threads >= 2, "QEMU runs {threads} thread(s)");
    let run = running.finish().expect("waiting for QEMU");
    assert_eq!(
        run.outcome,
        Outcome::Guest(exit::SUCCESS),
        "{}",
        console(&run)
    );

    let far = 1 << 20;
    let why = ringos::qemu::check_host_cpu(far).unwrap_err();
    assert!(
        why.contains(&format!("host CPU {far} is not available")),
        "{why}"
    );
    assert!(why.contains(&cpu.to_string()), "{why}");
    cfg.pin_cpu = Some(far);
    match ringos::vm::spawn(&cfg, ringos::Console::Capture) {
        Err(ringos::Error::CannotStart(m)) => assert!(m.contains("not available"), "{m}"),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("QEMU started pinned to CPU {far}"),
    }
}

fn assert_fault(m: ringos::Machine, mode: &str, expect: &str, status: u8) {
    let run = boot(m, &format!("test={mode}"), 256);
    let out = console(&run);
    assert_eq!(run.outcome, Outcome::Guest(status), "{m} {mode}: {out}");
    assert!(
        out.contains(expect),
        "{m} {mode}: expected {expect:?} in\n{out}"
    );
    // "within a few seconds": boot and report take well under a second on TCG.
    assert!(
        run.wall < Duration::from_secs(10),
        "{m} {mode}: took {:?}",
        run.wall
    );
}

#[test]
fn page_fault_is_reported_on_both_machines() {
    for m in MACHINES {
        assert_fault(
            m,
            selftest::PAGE_FAULT,
            "EXCEPTION: Page Fault (#PF, vector 14) at RIP=0x",
            exit::CPU_EXCEPTION,
        );
    }
    assert_fault(MACHINES[0], selftest::PAGE_FAULT, "CR2=0x0000000000000000 (read of a not-present page, kernel mode): null pointer dereference", exit::CPU_EXCEPTION);
}

#[test]
fn invalid_opcode_is_reported() {
    for m in MACHINES {
        assert_fault(
            m,
            selftest::INVALID_OPCODE,
            "EXCEPTION: Invalid Opcode (#UD, vector 6)",
            exit::CPU_EXCEPTION,
        );
    }
}

#[test]
fn divide_error_is_reported() {
    for m in MACHINES {
        assert_fault(
            m,
            selftest::DIVIDE_ERROR,
            "EXCEPTION: Divide Error (#DE, vector 0)",
            exit::CPU_EXCEPTION,
        );
    }
}

#[test]
fn kernel_stack_overflow_hits_the_guard_page() {
    assert_fault(
        MACHINES[0],
        selftest::STACK_OVERFLOW,
        "kernel stack overflow (hit the guard page)",
        exit::CPU_EXCEPTION,
    );
}

#[test]
fn panic_reports_message_and_location() {
    assert_fault(
        MACHINES[0],
        selftest::PANIC,
        "PANIC: panic requested by test=panic at kernel/src/selftest.rs:",
        exit::PANIC,
    );
}

#[test]
fn unknown_test_mode_fails_cleanly() {
    let run = boot(MACHINES[0], "test=no-such-mode", 256);
    assert_eq!(
        run.outcome,
        Outcome::Guest(exit::FAILURE),
        "{}",
        console(&run)
    );
    assert!(console(&run).contains("unknown test mode \"no-such-mode\""));
}

#[test]
fn a_hung_guest_is_killed_at_the_timeout() {
    let mut cfg = ringos::VmConfig::new(ringos_tests::image());
    cfg.append = format!("test={}", selftest::HANG);
    cfg.timeout = Duration::from_secs(2);
    let run = ringos::run(&cfg, ringos::Console::Capture).expect("running QEMU");
    assert_eq!(run.outcome, Outcome::TimedOut, "{}", console(&run));
    assert!(
        run.wall >= Duration::from_secs(2) && run.wall < Duration::from_secs(10),
        "{:?}",
        run.wall
    );
}
