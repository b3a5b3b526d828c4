//! The `ringos` binary: help texts and argument errors, then exit-status
//! mapping end to end against `tests/fake-qemu`, a shell stand-in for QEMU
//! (so none of this needs the kernel or QEMU).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use ringos_proto::exit;

const FAKE_QEMU: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fake-qemu");

/// `ringos` with none of its environment overrides inherited.
fn ringos() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ringos"));
    for v in ["RINGOS_QEMU", "RINGOS_ROOT", "RINGOS_KERNEL", "FAKE_QEMU"] {
        c.env_remove(v);
    }
    c
}

/// `ringos` booting the fake QEMU; the "image" only has to exist.
fn fake() -> Command {
    let mut c = ringos();
    c.env("RINGOS_QEMU", FAKE_QEMU)
        .env("RINGOS_KERNEL", FAKE_QEMU);
    c
}

fn run(c: &mut Command, args: &[&str]) -> Output {
    c.args(args).output().expect("running ringos")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn help(args: &[&str]) -> String {
    let out = run(&mut ringos(), args);
    assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    text(&out.stdout)
}

#[test]
fn top_level_help_and_version() {
    let h = help(&["--help"]);
    for s in ["boot", "probe", "RINGOS_QEMU"] {
        assert!(h.contains(s), "missing {s:?} in\n{h}");
    }
    let v = help(&["--version"]);
    assert!(v.contains(env!("CARGO_PKG_VERSION")), "{v}");
}

#[test]
fn boot_help_lists_options_and_self_tests() {
    let h = help(&["boot", "--help"]);
    for s in [
        "--machine",
        "microvm",
        "q35",
        "--accel",
        "kvm",
        "--mem",
        "--timeout",
        "--append",
        "--verbose",
        "test=<mode>",
        "124",
    ] {
        assert!(h.contains(s), "missing {s:?} in\n{h}");
    }
    for mode in ringos_proto::selftest::ALL {
        assert!(h.contains(mode), "missing self-test {mode:?} in\n{h}");
    }
}

#[test]
fn probe_boot_help_lists_options() {
    let h = help(&["probe", "boot", "--help"]);
    for s in [
        "--runs",
        "--machine",
        "both",
        "--accel",
        "--mem",
        "boot.json",
    ] {
        assert!(h.contains(s), "missing {s:?} in\n{h}");
    }
}

#[test]
fn boot_help_lists_device_options() {
    let h = help(&["boot", "--help"]);
    for s in [
        "--disk",
        "--net",
        "user",
        "--port",
        "HOST:GUEST/udp|tcp",
        "--poll",
        "--irq",
    ] {
        assert!(h.contains(s), "missing {s:?} in\n{h}");
    }
}

#[test]
fn probe_blk_and_net_help() {
    let h = help(&["probe", "blk", "--help"]);
    for s in [
        "--disk",
        "--ops",
        "2000",
        "--qd",
        "16",
        "--write",
        "OVERWRITES",
        "--poll",
        "--irq",
        "--machine",
        "both",
        "blk.json",
        "64 MiB",
        "--rounds",
    ] {
        assert!(h.contains(s), "missing {s:?} in\n{h}");
    }
    let h = help(&["probe", "net", "--help"]);
    for s in [
        "--count",
        "1000",
        "--size",
        "64",
        "--poll",
        "--irq",
        "net.json",
        "ringos:quit",
    ] {
        assert!(h.contains(s), "missing {s:?} in\n{h}");
    }
}

#[test]
fn missing_disk_is_a_clear_error() {
    for args in [
        &["boot", "--disk", "/no/such.img"][..],
        &["probe", "blk", "--disk", "/no/such.img"],
    ] {
        let out = run(&mut fake(), args);
        assert_eq!(out.status.code(), Some(2));
        let e = text(&out.stderr);
        assert!(e.contains("/no/such.img does not exist"), "{e}");
    }
}

#[test]
fn boot_passes_devices_and_io_mode_to_qemu() {
    let disk = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    let out = run(
        &mut fake(),
        &[
            "boot",
            "-v",
            "--disk",
            disk,
            "--port",
            "5555:7/udp",
            "--poll",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let e = text(&out.stderr);
    assert!(
        e.contains(&format!("-drive file={disk},if=none,format=raw,id=disk0")),
        "{e}"
    );
    assert!(
        e.contains("-netdev user,id=net0,hostfwd=udp:127.0.0.1:5555-:7"),
        "{e}"
    );
    assert!(e.contains("-append 'log=debug io=poll'"), "{e}");
    let out = run(
        &mut fake(),
        &["boot", "--net", "none", "--port", "5555:7/udp"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--port"));
}

#[test]
fn probe_blk_with_a_temporary_disk() {
    let root = probe_root("probe-blk-ok");
    let out = run(
        fake().env("RINGOS_ROOT", &root),
        &[
            "probe",
            "blk",
            "--machine",
            "microvm",
            "--ops",
            "500",
            "--write",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let e = text(&out.stderr);
    assert!(e.contains("temporary 64 MiB sparse image"), "{e}");
    assert!(e.contains("probe=blk ops=500 qd=16 write=1"), "{e}");
    let table = text(&out.stdout);
    let row = table.lines().find(|l| l.starts_with("microvm")).unwrap();
    for cell in ["41.00", "210.00", "20000"] {
        assert!(row.contains(cell), "{cell} missing in\n{table}");
    }
    assert!(table.contains("host wall time:"), "{table}");
    let json = std::fs::read_to_string(root.join("target/bench/blk.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["machines"][0]["result"]["verify"]["mismatches"], 0);
    // The temporary image is gone; only the JSON is left.
    let left: Vec<_> = std::fs::read_dir(root.join("target/bench"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["blk.json"]);
}

#[test]
fn probe_blk_fails_on_mismatches() {
    let root = probe_root("probe-blk-fail");
    let out = run(
        fake()
            .env("RINGOS_ROOT", &root)
            .env("FAKE_QEMU", "probe=blk write=1 mismatch"),
        &["probe", "blk", "--machine", "q35", "--write"],
    );
    assert_eq!(out.status.code(), Some(1));
    let e = text(&out.stderr);
    assert!(
        e.contains("probe blk: q35 failed: 2 of 500 written blocks read back wrong"),
        "{e}"
    );
    assert!(e.contains("last console lines:"), "{e}");
    assert!(!root.join("target/bench/blk.json").exists());
}

#[test]
fn bad_machine_is_rejected_by_clap() {
    for args in [
        &["boot", "--machine", "foo"][..],
        &["probe", "boot", "--machine", "foo"],
    ] {
        let out = run(&mut ringos(), args);
        assert!(!out.status.success());
        let e = text(&out.stderr);
        assert!(e.contains("invalid value 'foo'"), "{e}");
        assert!(e.contains("microvm"), "{e}");
    }
}

/// `--pin CPU`: QEMU runs on that host CPU only (the fake QEMU prints its
/// own allowed list); a CPU this process may not use, or not a number, is
/// refused before anything runs, and `run --hosted` has no QEMU to pin.
#[test]
fn pin_runs_qemu_on_one_host_cpu() {
    let cpu = ringos::qemu::allowed_cpus()
        .unwrap()
        .last()
        .unwrap()
        .to_string();
    let out = run(
        fake().env("FAKE_QEMU", "show-cpus"),
        &["boot", "--pin", &cpu],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains(&format!("cpus: {cpu}\n")),
        "{}",
        text(&out.stdout)
    );
    for (args, why) in [
        (
            &["boot", "--pin", "100000"][..],
            "host CPU 100000 is not available",
        ),
        (&["probe", "blk", "--pin", "x"], "`x` is not a CPU number"),
        (&["run", "app.wasm", "--pin", "100000"], "not available"),
    ] {
        let out = run(&mut fake(), args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let e = text(&out.stderr);
        assert!(e.contains(why) && e.contains("--pin"), "{args:?}: {e}");
    }
    let app = concat!(env!("CARGO_MANIFEST_DIR"), "/../benches/blk/probe.wat");
    let out = run(&mut ringos(), &["run", "--hosted", "--pin", &cpu, app]);
    assert!(!out.status.success());
    let e = text(&out.stderr);
    assert!(
        e.contains("--hosted runs the component in this process"),
        "{e}"
    );
}

#[test]
fn guest_success_streams_the_console() {
    let out = run(&mut fake(), &["boot"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let console = text(&out.stdout);
    assert_eq!(console, "ready: 1234 ns\nEXIT: 0\n");
}

#[test]
fn guest_status_becomes_the_exit_status() {
    let out = run(&mut fake(), &["boot", "--append", "exit=102"]);
    assert_eq!(out.status.code(), Some(102));
    let e = text(&out.stderr);
    assert!(
        e.contains("ringos: guest exited with status 102 (CPU exception)"),
        "{e}"
    );
}

#[test]
fn qemu_error_is_not_mistaken_for_guest_success() {
    let out = run(&mut fake(), &["boot", "--append", "qemu-error"]);
    assert_eq!(out.status.code(), Some(exit::host::CANNOT_START));
    let e = text(&out.stderr);
    assert!(
        e.contains("ringos: QEMU failed to start: qemu-system-x86_64: -foo: invalid option"),
        "{e}"
    );
}

#[test]
fn reset_without_status() {
    let out = run(&mut fake(), &["boot", "--append", "reset"]);
    assert_eq!(out.status.code(), Some(exit::host::NO_GUEST_STATUS));
    assert!(text(&out.stderr).contains("without a guest exit status"));
}

#[test]
fn hung_guest_is_killed_at_the_timeout() {
    let t = Instant::now();
    let out = run(
        &mut fake(),
        &["boot", "--append", "hang", "--timeout", "0.5"],
    );
    assert_eq!(out.status.code(), Some(exit::host::TIMEOUT));
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    let e = text(&out.stderr);
    assert!(
        e.contains("ringos: timed out after 0.5 s; QEMU killed"),
        "{e}"
    );
}

#[test]
fn verbose_prints_the_command_and_asks_for_debug_logs() {
    let out = run(&mut fake(), &["boot", "-v", "--append", "exit=3"]);
    assert_eq!(out.status.code(), Some(3));
    let e = text(&out.stderr);
    assert!(
        e.contains("-M microvm,acpi=off -accel tcg -cpu max -m 256"),
        "{e}"
    );
    assert!(e.contains("-append 'log=debug exit=3'"), "{e}");
}

#[test]
fn missing_qemu_says_how_to_install_it() {
    let out = run(
        ringos()
            .env("RINGOS_KERNEL", FAKE_QEMU)
            .env("PATH", env!("CARGO_TARGET_TMPDIR")),
        &["boot"],
    );
    assert_eq!(out.status.code(), Some(exit::host::CANNOT_START));
    let e = text(&out.stderr);
    assert!(
        e.contains(
            "qemu-system-x86_64 not found; install it with: apt-get install -y qemu-system-x86"
        ),
        "{e}"
    );
}

fn probe_root(name: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&root);
    root
}

#[test]
fn probe_boot_prints_a_table_and_writes_json() {
    let root = probe_root("probe-ok");
    let out = run(
        fake().env("RINGOS_ROOT", &root),
        &["probe", "boot", "--runs", "3", "--machine", "microvm"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    assert!(table.contains("accel tcg"), "{table}");
    assert_eq!(
        table.lines().filter(|l| l.starts_with("microvm")).count(),
        3
    );
    assert!(text(&out.stderr).contains("probe boot: microvm run 3/3"));
    let json = std::fs::read_to_string(root.join("target/bench/boot.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let samples = &v["machines"][0]["samples"];
    assert_eq!(samples.as_array().unwrap().len(), 3);
    assert_eq!(samples[0]["guest_entry_to_ready_ns"], 1234);
}

#[test]
fn probe_boot_stops_at_the_first_failed_boot() {
    let root = probe_root("probe-fail");
    let out = run(
        fake()
            .env("RINGOS_ROOT", &root)
            .env("FAKE_QEMU", "exit=102"),
        &["probe", "boot", "--runs", "3", "--machine", "microvm"],
    );
    assert_eq!(out.status.code(), Some(102));
    let e = text(&out.stderr);
    assert!(
        e.contains("probe boot: microvm run 1/3 failed: guest exited with status 102"),
        "{e}"
    );
    assert!(!root.join("target/bench/boot.json").exists());
}
