//! QEMU tier: the Wasm JIT inside the guest. Spec scripts are turned into
//! bundles on the host, embedded in a copy of the kernel image (no kernel
//! rebuild) and run with `test=wasm-spec`; the guest's per-file counts must
//! equal the hosted run's of the same files (same executor, same
//! translator), with nothing failed.

use ringos::wast::{self, GuestConfig, GuestRun, Tally};
use ringos::Machine;
use ringos_proto::exit;
use ringos_tests::{console, Outcome};
use std::path::{Path, PathBuf};
use std::time::Duration;

const SPEC: &[&str] = &[
    "i32",
    "i64",
    "f32",
    "f64",
    "conversions",
    "memory",
    "memory_grow",
    "memory_trap",
    "call_indirect",
    "br_table",
    "traps",
    "bulk",
    "ref_func",
    "table_grow",
    "stack",
    "skip-stack-guard-page",
];

fn spec_file(name: &str) -> PathBuf {
    let root = ringos::kernel_image::root();
    root.join("../shared/conformance/core")
        .join(format!("{name}.wast"))
}

fn guest(files: &[PathBuf], machine: Machine) -> GuestRun {
    // The guest image must exist before embedding (built once, shared).
    let _ = ringos_tests::image();
    let cfg = GuestConfig {
        machine,
        mem_mib: 512,
        timeout: Duration::from_secs(600),
        verbose: false,
    };
    wast::run_guest_files(files, &cfg).expect("running the guest")
}

#[test]
fn guest_spec_counts_equal_hosted() {
    let files: Vec<PathBuf> = SPEC.iter().map(|n| spec_file(n)).collect();
    for f in &files {
        assert!(f.is_file(), "missing {}", f.display());
    }
    let r = guest(&files, Machine::Microvm);
    let out = console(&r.vm);
    assert!(r.host_errors.is_empty(), "{:?}", r.host_errors);
    assert_eq!(r.vm.outcome, Outcome::Guest(exit::SUCCESS), "{out}");
    assert_eq!(r.files.len(), files.len(), "{out}");
    let mut total = Tally::default();
    for (f, (name, got)) in files.iter().zip(&r.files) {
        assert_eq!(name, &f.display().to_string());
        let (hosted, _) = wast::run_hosted(f, false, &[]).expect("hosted run");
        assert_eq!(hosted.failed, 0, "{name} fails hosted");
        assert_eq!(*got, hosted, "{name}: guest vs hosted\n{out}");
        assert!(got.passed > 0, "{name}");
        total += *got;
    }
    assert_eq!(r.total, Some(total), "{out}");
}

const TRAPS: &str = r#"
(module
  (memory 1)
  (func (export "boom") unreachable)
  (func (export "div") (param i32) (result i32) (i32.div_u (i32.const 1) (local.get 0)))
  (func (export "load") (param i32) (result i32) (i32.load (local.get 0)))
  (func (export "add") (param i32 i32) (result i32) (i32.add (local.get 0) (local.get 1))))
(assert_trap (invoke "boom") "unreachable")
(assert_return (invoke "add" (i32.const 1) (i32.const 2)) (i32.const 3))
(assert_trap (invoke "boom") "integer overflow")
(assert_trap (invoke "div" (i32.const 0)) "integer divide by zero")
(assert_return (invoke "div" (i32.const 1)) (i32.const 1))
(assert_trap (invoke "load" (i32.const 65536)) "out of bounds memory access")
(assert_return (invoke "load" (i32.const 0)) (i32.const 0))
(assert_return (invoke "add" (i32.const 2) (i32.const 2)) (i32.const 4))
"#;

/// A trap in generated code (#UD, #DE) is that assertion's trap, and the
/// kernel goes on with the next assertions; a wrong expectation is one
/// reported failure, not the end of the VM.
#[test]
fn guest_trap_is_reported_and_the_kernel_keeps_going() {
    let dir = std::env::temp_dir().join(format!("ringos-guest-wasm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("traps.wast");
    std::fs::write(&file, TRAPS).unwrap();
    for m in [Machine::Microvm, Machine::Q35] {
        let r = guest(std::slice::from_ref(&file), m);
        let out = console(&r.vm);
        assert_eq!(r.vm.outcome, Outcome::Guest(exit::FAILURE), "{m}: {out}");
        let want = Tally {
            passed: 7,
            failed: 1,
            skipped: 0,
        };
        assert_eq!(
            r.files,
            vec![(file.display().to_string(), want)],
            "{m}: {out}"
        );
        assert_eq!(wast::run_hosted(&file, false, &[]).unwrap().0, want);
        let detail = format!(
            "{}:10:2: trapped with `unreachable`, expected `integer overflow`",
            file.display()
        );
        assert!(
            r.vm.lines.iter().any(|(_, l)| l.trim() == detail),
            "{m}: no {detail:?} in\n{out}"
        );
        assert!(!out.contains("EXCEPTION"), "{m}: {out}");
    }
    let _ = std::fs::remove_dir_all(Path::new(&dir));
}
