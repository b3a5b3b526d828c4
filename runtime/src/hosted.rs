//! The hosted platform: a Linux process. Memory from mmap (linear memories
//! are PROT_NONE reservations with guard regions, committed by mprotect),
//! W^X code via mprotect, and traps from SIGILL/SIGFPE/SIGSEGV/SIGBUS: a
//! fault in generated code (for SIGSEGV/SIGBUS: at a registered load/store,
//! on an address in a linear-memory reservation) resumes at
//! `ringos_wasm_unwind` with the current jump buffer; any other fault goes
//! to the previous handler.

use core::ptr;
use std::cell::Cell;
use std::sync::Once;

use crate::platform::Platform;
use crate::trap::{self, TrapKind};
use crate::vmctx::StoreCtx;

pub struct Hosted;

/// The platform instance embedders pass to `Store::new`/`Module::new`.
pub static HOSTED: Hosted = Hosted;

thread_local! {
    static CURRENT: Cell<*mut StoreCtx> = const { Cell::new(ptr::null_mut()) };
}

const SIGNALS: [libc::c_int; 4] = [libc::SIGILL, libc::SIGFPE, libc::SIGSEGV, libc::SIGBUS];

struct Previous(std::cell::UnsafeCell<[libc::sigaction; 4]>);
// SAFETY: written once under `INSTALL`, read only by signal handlers after.
unsafe impl Sync for Previous {}
static PREVIOUS: Previous = Previous(std::cell::UnsafeCell::new(
    // SAFETY: sigaction is plain data; all-zero is SIG_DFL.
    unsafe { core::mem::zeroed() },
));
static INSTALL: Once = Once::new();

fn mmap(len: usize, prot: libc::c_int) -> Option<*mut u8> {
    // SAFETY: an anonymous private mapping has no preconditions.
    let p = unsafe {
        libc::mmap(
            ptr::null_mut(),
            len,
            prot,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    (p != libc::MAP_FAILED).then_some(p as *mut u8)
}

fn protect(ptr: *mut u8, len: usize, prot: libc::c_int) -> bool {
    // SAFETY: callers pass ranges of their own mappings.
    unsafe { libc::mprotect(ptr as *mut libc::c_void, len, prot) == 0 }
}

impl Platform for Hosted {
    fn reserve(&self, len: usize) -> Option<*mut u8> {
        mmap(len, libc::PROT_NONE)
    }

    fn commit(&self, ptr: *mut u8, len: usize) -> bool {
        // Fresh anonymous pages are zero; memory never shrinks.
        protect(ptr, len, libc::PROT_READ | libc::PROT_WRITE)
    }

    fn release(&self, ptr: *mut u8, len: usize) {
        // SAFETY: `ptr`/`len` is a reservation made by `reserve`.
        unsafe { libc::munmap(ptr as *mut libc::c_void, len) };
    }

    fn alloc_code(&self, len: usize) -> Option<*mut u8> {
        mmap(len, libc::PROT_READ | libc::PROT_WRITE)
    }

    fn seal_code(&self, ptr: *mut u8, len: usize) -> bool {
        protect(ptr, len, libc::PROT_READ | libc::PROT_EXEC)
    }

    fn free_code(&self, ptr: *mut u8, len: usize) {
        // SAFETY: `ptr`/`len` came from `alloc_code`.
        unsafe { libc::munmap(ptr as *mut libc::c_void, len) };
    }

    fn install_trap_handler(&self) {
        INSTALL.call_once(|| {
            for (i, sig) in SIGNALS.iter().enumerate() {
                // SAFETY: installing a SA_SIGINFO handler; the previous
                // action is kept for faults outside generated code.
                unsafe {
                    let mut sa: libc::sigaction = core::mem::zeroed();
                    sa.sa_sigaction = handler as *const () as usize;
                    sa.sa_flags = libc::SA_SIGINFO | libc::SA_NODEFER | libc::SA_ONSTACK;
                    libc::sigemptyset(&mut sa.sa_mask);
                    let prev = &mut (*PREVIOUS.0.get())[i];
                    libc::sigaction(*sig, &sa, prev);
                }
            }
        });
    }

    fn swap_current(&self, ctx: *mut StoreCtx) -> *mut StoreCtx {
        CURRENT.with(|c| c.replace(ctx))
    }

    fn guard_pages(&self) -> bool {
        true
    }
}

unsafe extern "C" fn handler(sig: libc::c_int, info: *mut libc::siginfo_t, uc: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid ucontext to SA_SIGINFO handlers.
    let uc = unsafe { &mut *(uc as *mut libc::ucontext_t) };
    let gregs = &mut uc.uc_mcontext.gregs;
    let pc = gregs[libc::REG_RIP as usize] as usize;
    let ctx = CURRENT.with(|c| c.get());
    if !ctx.is_null() {
        let kind = match sig {
            libc::SIGSEGV | libc::SIGBUS => {
                // SAFETY: the kernel fills si_addr for these signals.
                let addr = unsafe { (*info).si_addr() } as usize;
                trap::memory_trap(pc, addr)
            }
            libc::SIGFPE => trap::trap_for_pc(pc, TrapKind::IntegerDivideByZero),
            _ => trap::trap_for_pc(pc, TrapKind::Unreachable),
        };
        if let Some(kind) = kind {
            // SAFETY: `ctx` is the running store's StoreCtx.
            let jb = unsafe { (*ctx).jmpbuf };
            if !jb.is_null() {
                gregs[libc::REG_RIP as usize] = trap::wasm_unwind_addr() as i64;
                gregs[libc::REG_RDI as usize] = jb as i64;
                gregs[libc::REG_RSI as usize] = kind as u8 as i64;
                return;
            }
        }
    }
    // Not ours: hand it to the previous handler, or die by the default.
    let i = SIGNALS.iter().position(|s| *s == sig).unwrap_or(0);
    // SAFETY: PREVIOUS was filled before this handler was installed.
    let prev = unsafe { &(*PREVIOUS.0.get())[i] };
    if prev.sa_sigaction == libc::SIG_DFL || prev.sa_sigaction == libc::SIG_IGN {
        // SAFETY: restoring the default action; the fault re-executes.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    } else if prev.sa_flags & libc::SA_SIGINFO != 0 {
        let f: unsafe extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
            // SAFETY: an SA_SIGINFO handler has this signature.
            unsafe { core::mem::transmute(prev.sa_sigaction) };
        // SAFETY: forwarding the same arguments.
        unsafe { f(sig, info, uc as *mut _ as *mut libc::c_void) };
    } else {
        let f: unsafe extern "C" fn(libc::c_int) =
            // SAFETY: a plain handler has this signature.
            unsafe { core::mem::transmute(prev.sa_sigaction) };
        // SAFETY: forwarding the signal number.
        unsafe { f(sig) };
    }
}
