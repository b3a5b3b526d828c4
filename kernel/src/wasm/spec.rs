//! `test=wasm-spec`: runs every spec bundle of the image's payload on the
//! kernel platform and prints `wasm-spec: <file>: N passed, N failed` per
//! file and `wasm-spec: total: ...` last. Wasm runs on a dedicated stack
//! with an unmapped guard page below it.

use ringos_proto::{marker, payload};
use ringos_runtime::script::{self, Tally};

use crate::mem::{self, paging};
use crate::println;

/// The Wasm stack and how much of it generated code may use (the rest is
/// for host calls, libcalls and compiling).
const STACK: u64 = 8 << 20;
const BUDGET: usize = 6 << 20;
/// Failure details printed per file, at most.
const MAX_REPORTED: u32 = 40;

/// Runs the bundles; true if there was at least one and nothing failed.
pub fn run() -> bool {
    let guard = mem::reserve_va(STACK + paging::PAGE_4K).expect("virtual space for the Wasm stack");
    let bottom = guard + paging::PAGE_4K;
    assert!(
        mem::map_new_pages(bottom, STACK, paging::WRITABLE | paging::NO_EXECUTE),
        "no memory for the Wasm stack"
    );
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
        let r = on_stack(bottom + STACK, || {
            script::run(&super::KERNEL, bundle, BUDGET, &mut on_failure)
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
    mem::unmap_pages(bottom, STACK);
    files > 0 && total.failed == 0
}

/// Runs `f` with the stack pointer at `top` (16-byte aligned, mapped below).
fn on_stack<F: FnOnce() -> R, R>(top: u64, f: F) -> R {
    struct Call<F, R> {
        f: Option<F>,
        r: Option<R>,
    }
    extern "C" fn tramp<F: FnOnce() -> R, R>(call: *mut u8) {
        // SAFETY: `call` is the `Call` on the caller's stack, alive for
        // the whole call.
        let call = unsafe { &mut *(call as *mut Call<F, R>) };
        if let Some(f) = call.f.take() {
            call.r = Some(f());
        }
    }
    let mut call = Call {
        f: Some(f),
        r: None,
    };
    assert!(top.is_multiple_of(16));
    // SAFETY: `top` is the top of a mapped stack nothing else uses; the old
    // stack pointer is kept in callee-saved r12 and restored after; the
    // callee follows the C ABI (clobbers declared).
    unsafe {
        core::arch::asm!(
            "mov r12, rsp",
            "mov rsp, {top}",
            "call {f}",
            "mov rsp, r12",
            top = in(reg) top,
            f = in(reg) tramp::<F, R> as extern "C" fn(*mut u8),
            in("rdi") &mut call as *mut Call<F, R> as *mut u8,
            out("r12") _,
            clobber_abi("C"),
        );
    }
    call.r.expect("the call on the Wasm stack returned")
}
