//! `ringos_runtime::Platform` for the kernel.
//!
//! - Linear memory: a reservation is a range of the kernel's dynamic virtual
//!   space (`mem::reserve_va`, nothing mapped); `commit` maps fresh zeroed
//!   frames read-write, no-execute. Each memory reserves 4 GiB plus a
//!   4 GiB guard region (`guard_pages`) of which only `[0, size)` is
//!   mapped, so the generated code does no explicit bounds check: an
//!   out-of-bounds load/store page-faults inside the reservation.
//! - Code: frames mapped read-write, no-execute at a fresh virtual address
//!   while the runtime copies the code in, then remapped read + execute
//!   (never both), TLB flushed page by page.
//! - Traps: a #UD (Cranelift's trap instruction) or #DE at an address
//!   inside generated code, or a #PF at a load/store registered with the
//!   heap out-of-bounds trap code on an address inside a linear-memory
//!   reservation, while a store runs, is resumed at the runtime's unwind routine with that store's jump buffer
//!   (`fault::set_recover_hook`); any other exception is reported and ends
//!   the VM as before.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::ptr;
use core::sync::atomic::{AtomicPtr, Ordering};

use ringos_runtime::trap::{self, TrapKind};
use ringos_runtime::vmctx::StoreCtx;
use ringos_runtime::Platform;
use spin::Mutex;

use crate::arch::cpu;
use crate::arch::idt::TrapFrame;
use crate::mem::{self, paging};

pub struct Kernel;

/// The platform instance stores and modules are created with.
pub static KERNEL: Kernel = Kernel;

/// The store whose code runs now (one CPU).
static CURRENT: AtomicPtr<StoreCtx> = AtomicPtr::new(ptr::null_mut());

/// A linear-memory reservation: its length and the (address, length)
/// ranges committed in it.
type Reservation = (usize, Vec<(usize, usize)>);

/// Linear-memory reservations by base address.
static RESERVATIONS: Mutex<BTreeMap<usize, Reservation>> = Mutex::new(BTreeMap::new());

/// Freed virtual ranges by length, for reuse (the dynamic range is large
/// but not endless: a spec run creates thousands of 4 GiB reservations).
static FREE_VA: Mutex<BTreeMap<usize, Vec<usize>>> = Mutex::new(BTreeMap::new());

fn alloc_va(len: usize) -> Option<usize> {
    if let Some(va) = FREE_VA.lock().get_mut(&len).and_then(Vec::pop) {
        return Some(va);
    }
    mem::reserve_va(len as u64).map(|va| va as usize)
}

fn free_va(va: usize, len: usize) {
    FREE_VA.lock().entry(len).or_default().push(va);
}

fn pages(len: usize) -> usize {
    len.next_multiple_of(paging::PAGE_4K as usize)
}

impl Platform for Kernel {
    fn reserve(&self, len: usize) -> Option<*mut u8> {
        let len = pages(len);
        let va = alloc_va(len)?;
        RESERVATIONS.lock().insert(va, (len, Vec::new()));
        Some(va as *mut u8)
    }

    fn commit(&self, ptr: *mut u8, len: usize) -> bool {
        let (va, len) = (ptr as usize, pages(len));
        let mut res = RESERVATIONS.lock();
        let Some((&base, (rlen, committed))) = res.range_mut(..=va).next_back() else {
            return false;
        };
        if va + len > base + *rlen {
            return false;
        }
        if !mem::map_new_pages(va as u64, len as u64, paging::WRITABLE | paging::NO_EXECUTE) {
            return false;
        }
        committed.push((va, len));
        true
    }

    fn release(&self, ptr: *mut u8, len: usize) {
        let Some((rlen, committed)) = RESERVATIONS.lock().remove(&(ptr as usize)) else {
            return;
        };
        for (va, l) in committed {
            mem::unmap_pages(va as u64, l as u64);
        }
        free_va(ptr as usize, rlen.max(pages(len)));
    }

    fn alloc_code(&self, len: usize) -> Option<*mut u8> {
        let len = pages(len);
        let va = alloc_va(len)?;
        if !mem::map_new_pages(va as u64, len as u64, paging::WRITABLE | paging::NO_EXECUTE) {
            free_va(va, len);
            return None;
        }
        Some(va as *mut u8)
    }

    fn seal_code(&self, ptr: *mut u8, len: usize) -> bool {
        // Present, read-only, executable.
        mem::protect_pages(ptr as u64, pages(len) as u64, 0)
    }

    fn free_code(&self, ptr: *mut u8, len: usize) {
        mem::unmap_pages(ptr as u64, pages(len) as u64);
        free_va(ptr as usize, pages(len));
    }

    fn install_trap_handler(&self) {
        crate::fault::set_recover_hook(recover);
    }

    fn swap_current(&self, ctx: *mut StoreCtx) -> *mut StoreCtx {
        CURRENT.swap(ctx, Ordering::AcqRel)
    }

    fn guard_pages(&self) -> bool {
        true
    }
}

/// The fault hook: a fault in generated code of the running store resumes
/// at `ringos_wasm_unwind(jmpbuf, kind)`.
fn recover(frame: &mut TrapFrame) -> bool {
    let ctx = CURRENT.load(Ordering::Acquire);
    if ctx.is_null() {
        return false;
    }
    let pc = frame.rip as usize;
    let kind = match frame.vector {
        0 => trap::trap_for_pc(pc, TrapKind::IntegerDivideByZero),
        6 => trap::trap_for_pc(pc, TrapKind::Unreachable),
        14 => trap::memory_trap(pc, cpu::read_cr2() as usize),
        _ => return false,
    };
    let Some(kind) = kind else {
        return false;
    };
    // SAFETY: CURRENT is the running store's StoreCtx (swap_current).
    let jb = unsafe { (*ctx).jmpbuf };
    if jb.is_null() {
        return false;
    }
    frame.rip = trap::wasm_unwind_addr() as u64;
    frame.rdi = jb as u64;
    frame.rsi = kind as u8 as u64;
    true
}
