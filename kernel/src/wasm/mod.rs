//! The Wasm runtime on bare metal: [`platform`] implements the runtime's
//! `Platform` for the kernel (code and linear memory in the dynamic virtual
//! range, W^X, CPU exceptions in generated code turned into Wasm traps), and
//! [`spec`] runs the spec bundles of the image's payload (`test=wasm-spec`).

pub mod component;
pub mod disk;
pub mod platform;
pub mod spec;
pub mod watchdog;

pub use platform::KERNEL;

use crate::mem::{self, paging};

/// The Wasm stack and how much of it generated code may use (the rest is
/// for host calls, libcalls and compiling).
const STACK: u64 = 8 << 20;
pub(crate) const BUDGET: usize = 6 << 20;

/// Runs `f` on a fresh Wasm stack (with an unmapped guard page below it),
/// freed afterwards.
pub fn on_wasm_stack<R>(f: impl FnOnce() -> R) -> R {
    let guard = mem::reserve_va(STACK + paging::PAGE_4K).expect("virtual space for the Wasm stack");
    let bottom = guard + paging::PAGE_4K;
    assert!(
        mem::map_new_pages(bottom, STACK, paging::WRITABLE | paging::NO_EXECUTE),
        "no memory for the Wasm stack"
    );
    let r = on_stack(bottom + STACK, f);
    mem::unmap_pages(bottom, STACK);
    r
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
