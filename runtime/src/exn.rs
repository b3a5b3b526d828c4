//! Wasm exceptions at run time: the objects exnrefs point to, their
//! store-wide heap (freed when a plain `catch` takes them, else by a
//! conservative collector), and the unwinder.
//!
//! Throwing is zero-cost for code that does not throw: a call inside a
//! `try_table` is a Cranelift `try_call` whose handler block the code
//! region's landing table records by return address. `throw` with no
//! `try_table` around it in its own function calls [`Libcall::Throw`]
//! (`ringos_wasm_throw`), which walks the frame-pointer chain from its
//! caller: the first return address with a landing resumes there with
//! SP and FP restored and the exception in rax (Wasm functions use the
//! `tail` convention, whose `try_call`s clobber every register on the
//! exceptional edge, so nothing else needs restoring). A return address
//! outside generated code is the entry trampoline's caller: the exception
//! is uncaught, and the entry traps.
//!
//! [`Libcall::Throw`]: crate::vmctx::Libcall::Throw

use alloc::alloc::{alloc, dealloc, Layout};
use alloc::vec::Vec;

use crate::instance::InstanceData;
use crate::trap::{self, FrameAction, TrapKind};
use crate::vmctx::{ExnHeader, VmCtx};

/// At most this many exception objects live in a store at once.
const MAX_LIVE: usize = 1 << 20;
/// At most this many bytes of them.
const MAX_BYTES: usize = 256 << 20;
/// Live objects before the first collection.
const FIRST_COLLECTION: usize = 1024;
/// The collector scans at most this much stack (a longer distance to the
/// outermost entry means another stack: no scan, no collection).
const MAX_SCAN: usize = 64 << 20;

/// The live exception objects of a store.
pub(crate) struct ExnHeap {
    live: Vec<*mut ExnHeader>,
    bytes: usize,
    /// The live count that triggers the next collection.
    next_collection: usize,
}

fn layout(len: usize) -> Option<Layout> {
    let size = len
        .checked_mul(8)?
        .checked_add(core::mem::size_of::<ExnHeader>())?;
    Layout::from_size_align(size, 8).ok()
}

impl ExnHeap {
    pub(crate) fn new() -> ExnHeap {
        ExnHeap {
            live: Vec::new(),
            bytes: 0,
            next_collection: FIRST_COLLECTION,
        }
    }

    /// How many objects are live (for tests).
    pub(crate) fn len(&self) -> usize {
        self.live.len()
    }

    pub(crate) fn wants_collection(&self) -> bool {
        self.live.len() >= self.next_collection
    }

    /// A new object of tag identity `tag` with `len` zeroed payload slots;
    /// `None` past the limits or without memory.
    pub(crate) fn alloc(&mut self, tag: u64, len: usize) -> Option<*mut ExnHeader> {
        let l = layout(len)?;
        if self.live.len() >= MAX_LIVE || self.bytes + l.size() > MAX_BYTES {
            return None;
        }
        self.live.try_reserve(1).ok()?;
        // SAFETY: the layout has a nonzero size (the header).
        let p = unsafe { alloc(l) } as *mut ExnHeader;
        if p.is_null() {
            return None;
        }
        // SAFETY: `p` is a fresh allocation of header + `len` slots.
        unsafe {
            p.write(ExnHeader {
                tag,
                referenced: 0,
                slot: self.live.len() as u32,
                len: len as u64,
            });
            core::ptr::write_bytes((p as *mut u8).add(l.size() - len * 8), 0, len * 8);
        }
        self.live.push(p);
        self.bytes += l.size();
        Some(p)
    }

    /// Frees `e`, one of the live objects.
    pub(crate) fn free(&mut self, e: *mut ExnHeader) {
        // SAFETY: `e` is live: its header is readable.
        let (slot, len) = unsafe { ((*e).slot as usize, (*e).len as usize) };
        debug_assert_eq!(self.live.get(slot).copied(), Some(e));
        if self.live.get(slot).copied() != Some(e) {
            return;
        }
        self.live.swap_remove(slot);
        if let Some(&moved) = self.live.get(slot) {
            // SAFETY: a live object.
            unsafe { (*moved).slot = slot as u32 };
        }
        let l = layout(len).expect("allocated with this layout");
        self.bytes -= l.size();
        // SAFETY: allocated by `alloc` with the same layout, now unlisted.
        unsafe { dealloc(e as *mut u8, l) };
    }

    /// Frees every object with an exnref ever taken that no word of
    /// `roots` (nor of a kept object's payload) points to. Conservative:
    /// any word equal to an object's address keeps it. Objects never
    /// referenced are in flight (their catch frees them) and stay.
    pub(crate) fn collect(&mut self, roots: &mut dyn Iterator<Item = u64>) {
        let n = self.live.len();
        let (mut by_addr, mut marked, mut work) = (Vec::new(), Vec::new(), Vec::new());
        if by_addr.try_reserve_exact(n).is_err()
            || marked.try_reserve_exact(n).is_err()
            || work.try_reserve_exact(n).is_err()
        {
            // No memory to collect with: the next allocations may fail
            // (a trap), but nothing panics.
            return;
        }
        by_addr.extend(self.live.iter().enumerate().map(|(i, p)| (*p as usize, i)));
        by_addr.sort_unstable();
        marked.resize(n, false);
        let mark = |w: u64, marked: &mut [bool], work: &mut Vec<usize>| {
            if let Ok(j) = by_addr.binary_search_by_key(&(w as usize), |e| e.0) {
                let i = by_addr[j].1;
                if !marked[i] {
                    marked[i] = true;
                    work.push(i);
                }
            }
        };
        for (i, p) in self.live.iter().enumerate() {
            // SAFETY: live objects are readable.
            if unsafe { (**p).referenced } == 0 {
                marked[i] = true;
                work.push(i);
            }
        }
        for w in roots {
            mark(w, &mut marked, &mut work);
        }
        while let Some(i) = work.pop() {
            let p = self.live[i];
            // SAFETY: a live object: `len` payload slots follow the header.
            let payload = unsafe {
                core::slice::from_raw_parts(
                    (p as *const u8).add(core::mem::size_of::<ExnHeader>()) as *const u64,
                    (*p).len as usize,
                )
            };
            for w in payload {
                mark(*w, &mut marked, &mut work);
            }
        }
        // Each object is pushed at most once: `work` never reallocates.
        work.clear();
        work.extend(
            self.live
                .iter()
                .zip(&marked)
                .filter(|(_, m)| !**m)
                .map(|(p, _)| *p as usize),
        );
        for p in work {
            self.free(p as *mut ExnHeader);
        }
        self.next_collection = (self.live.len() * 2).max(FIRST_COLLECTION);
    }
}

impl Drop for ExnHeap {
    fn drop(&mut self) {
        while let Some(&p) = self.live.last() {
            self.free(p);
        }
    }
}

#[cfg(target_arch = "x86_64")]
core::arch::global_asm!(
    // ! ringos_wasm_throw(vmctx, exn): the Throw libcall. The caller is a
    // Wasm function: rbp is its frame pointer, [rsp] the return address
    // into it. Hands both to `throw_impl`, which never returns.
    ".globl ringos_wasm_throw",
    "ringos_wasm_throw:",
    "mov rdx, rbp",
    "mov rcx, [rsp]",
    "sub rsp, 8",
    "call {throw}",
    "ud2",
    // exn ringos_wasm_exn_new(vmctx, u32 tag): the ExnNew libcall. Spills
    // the callee-saved registers (they may hold the caller's exnrefs) so
    // the collector's stack scan, from the rsp passed, sees them.
    ".globl ringos_wasm_exn_new",
    "ringos_wasm_exn_new:",
    "push rbx",
    "push rbp",
    "push r12",
    "push r13",
    "push r14",
    "push r15",
    "mov rdx, rsp",
    "sub rsp, 8",
    "call {new}",
    "add rsp, 8",
    "pop r15",
    "pop r14",
    "pop r13",
    "pop r12",
    "pop rbp",
    "pop rbx",
    "ret",
    // ! ringos_wasm_resume(pc, sp, fp, exn): continues at a landing.
    ".globl ringos_wasm_resume",
    "ringos_wasm_resume:",
    "mov rsp, rsi",
    "mov rbp, rdx",
    "mov rax, rcx",
    "jmp rdi",
    throw = sym throw_impl,
    new = sym exn_new_impl,
);

// Only the addresses of the first two are taken (generated code calls
// them with a vmctx and an exception pointer).
unsafe extern "C" {
    fn ringos_wasm_throw(vmctx: usize, exn: usize) -> !;
    fn ringos_wasm_exn_new(vmctx: usize, tag: u32) -> usize;
    fn ringos_wasm_resume(pc: usize, sp: usize, fp: usize, exn: *mut ExnHeader) -> !;
}

/// The `Throw` libcall's address.
pub(crate) fn throw_addr() -> usize {
    ringos_wasm_throw as *const () as usize
}

/// The `ExnNew` libcall's address.
pub(crate) fn exn_new_addr() -> usize {
    ringos_wasm_exn_new as *const () as usize
}

/// The instance and store of a libcall's vmctx.
///
/// # Safety
/// `vmctx` must be the vmctx of a live instance whose store is running
/// Wasm (inside `Store::enter`).
unsafe fn parts<'a>(vmctx: *mut VmCtx) -> (&'a InstanceData, &'a mut crate::Store) {
    // SAFETY: guaranteed by the caller: `enter` published the store, and
    // its frame does not touch it until the Wasm returns.
    unsafe {
        (
            &*((*vmctx).instance as *const InstanceData),
            &mut *(*(*vmctx).store).store,
        )
    }
}

/// Ends the current entry with `kind`.
///
/// # Safety
/// Called from a libcall entered from Wasm; nothing on the frames
/// skipped needs dropping.
unsafe fn raise(vmctx: *mut VmCtx, kind: TrapKind) -> ! {
    // SAFETY: the store context is live and its jump buffer belongs to
    // the innermost entry, which this libcall runs inside.
    unsafe { trap::raise((*(*vmctx).store).jmpbuf, kind) }
}

unsafe extern "C" fn exn_new_impl(vmctx: *mut VmCtx, tag: u32, sp: usize) -> *mut ExnHeader {
    // SAFETY: called (through the asm entry) by generated code.
    let (inst, store) = unsafe { parts(vmctx) };
    let id = inst.tags[tag as usize];
    let len = inst.module.info.tag_type(tag).params.len();
    if store.exns.wants_collection() {
        // SAFETY: the store context is live.
        let top = unsafe { (*(*vmctx).store).stack_top };
        if sp < top && top - sp <= MAX_SCAN {
            // The stack running, and the Wasm frames of every stack that
            // waits: suspended fibers, the resumers of running ones.
            let mut stacks = store.fibers.idle_wasm_stacks();
            stacks.retain(|&(lo, hi)| hi - lo <= MAX_SCAN);
            stacks.push((sp, top));
            let words = stacks
                .into_iter()
                .flat_map(|(lo, hi)| (lo..hi).step_by(8))
                .map(|a| {
                    // SAFETY: each range is a stack between its innermost
                    // frame (this call, or where a stack switched away) and
                    // its outermost entry: mapped and readable.
                    unsafe { core::ptr::read_volatile(a as *const u64) }
                });
            store.collect_exns(words);
        }
    }
    match store.exns.alloc(id, len) {
        Some(p) => p,
        // SAFETY: entered from Wasm; this frame owns nothing to drop.
        None => unsafe { raise(vmctx, TrapKind::ExceptionLimit) },
    }
}

unsafe extern "C" fn throw_impl(
    vmctx: *mut VmCtx,
    exn: *mut ExnHeader,
    mut fp: usize,
    mut pc: usize,
) -> ! {
    // SAFETY: the store context is live; its jump buffer is the innermost
    // entry's, whose caller's stack pointer bounds the Wasm frames.
    let bound = unsafe { (*(*(*vmctx).store).jmpbuf).sp() };
    loop {
        match trap::landing_for(pc) {
            FrameAction::NotWasm => break,
            FrameAction::Land {
                pc: handler,
                frame_offset,
            } => {
                // SAFETY: `fp` is the frame pointer of the generated
                // function that made the call returning to `pc`; the
                // landing expects exactly that frame, its SP at the call,
                // and the exception in rax. The frames below are dead and
                // own nothing.
                unsafe { ringos_wasm_resume(handler, fp - frame_offset, fp, exn) }
            }
            FrameAction::PassOn => {}
        }
        if fp == 0 || !fp.is_multiple_of(16) || fp.saturating_add(16) > bound {
            break;
        }
        // SAFETY: `fp` is a Wasm frame (or the entry trampoline's) below
        // the entry: [fp] is the caller's FP, [fp + 8] the return address.
        let (next_fp, next_pc) = unsafe {
            (
                core::ptr::read(fp as *const usize),
                core::ptr::read((fp + 8) as *const usize),
            )
        };
        if next_fp <= fp {
            break;
        }
        fp = next_fp;
        pc = next_pc;
    }
    // SAFETY: as in `exn_new_impl`.
    let (_, store) = unsafe { parts(vmctx) };
    // SAFETY: `exn` is live (Wasm holds it).
    if unsafe { (*exn).referenced } == 0 {
        store.exns.free(exn);
    }
    // SAFETY: entered from Wasm; this frame owns nothing to drop.
    unsafe { raise(vmctx, TrapKind::UncaughtException) }
}

/// The `ExnCaught` libcall: a `catch`/`catch_all` without `_ref` took
/// `exn`; it is garbage unless an exnref to it was ever taken.
pub(crate) unsafe extern "C" fn exn_caught(vmctx: *mut VmCtx, exn: *mut ExnHeader) {
    // SAFETY: called by generated code with its vmctx and a live object.
    let (_, store) = unsafe { parts(vmctx) };
    // SAFETY: `exn` is live.
    if unsafe { (*exn).referenced } == 0 {
        store.exns.free(exn);
    }
}

#[cfg(test)]
#[path = "exn_tests.rs"]
mod tests;
