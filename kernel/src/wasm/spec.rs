//! `test=wasm-spec`: runs every spec bundle of the image's payload on the
//! kernel platform and prints `wasm-spec: <file>: N passed, N failed` per
//! file and `wasm-spec: total: ...` last. Wasm runs on a dedicated stack
//! with an unmapped guard page below it.

use ringos_proto::{marker, payload};
use ringos_runtime::script::{self, Tally};

use crate::println;

/// Failure details printed per file, at most.
const MAX_REPORTED: u32 = 40;

/// Runs the bundles; true if there was at least one and nothing failed.
pub fn run() -> bool {
    let mut total = Tally::default();
    let mut files = 0;
    for e in crate::payload::entries().filter(|e| e.kind == payload::SPEC_BUNDLE) {
        files += 1;
        let Some((name, bundle)) = payload::split_spec_bundle(e.bytes) else {
            println!("{}?: malformed entry", marker::WASM_SPEC);
            total.failed += 1;
            continue;
        };
        let mut reported = 0;
        let mut on_failure = |line: u32, col: u32, why: &str| {
            if reported < MAX_REPORTED {
                println!("  {name}:{line}:{col}: {why}");
            }
            reported += 1;
        };
        let r = super::on_wasm_stack(|| {
            script::run(&super::KERNEL, bundle, super::BUDGET, &mut on_failure)
        });
        let t = r.unwrap_or_else(|_| {
            println!("  {name}: malformed bundle");
            Tally {
                passed: 0,
                failed: 1,
                skipped: 0,
            }
        });
        println!(
            "{}{name}: {} passed, {} failed",
            marker::WASM_SPEC,
            t.passed,
            t.failed
        );
        total += t;
    }
    println!(
        "{}{}: {} passed, {} failed",
        marker::WASM_SPEC,
        marker::WASM_SPEC_TOTAL,
        total.passed,
        total.failed
    );
    if files == 0 {
        println!("wasm-spec: the image carries no spec bundle");
    }
    files > 0 && total.failed == 0
}
