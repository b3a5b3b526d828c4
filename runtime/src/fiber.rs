//! Fibers: stacks of their own for code that must be able to block in the
//! middle of its frames (a synchronous callee that blocks under an async
//! caller, core code that blocks inside a callback-lifted task), so the
//! loop and the caller can go on meanwhile.
//!
//! A fiber is a stack from the platform (reserved with one inaccessible
//! guard page below it, then committed: mmap/mprotect when hosted, frames
//! from the kernel's allocator mapped W+NX in the kernel) and a saved
//! stack pointer. Switching is a few lines of asm (x86_64 SysV: push the
//! callee-saved registers, swap `rsp`, pop, `ret`); a new fiber starts in
//! `fiber_main`, which calls its body once. Fibers are asymmetric: the
//! code that starts or resumes one (its *resumer*) waits until it
//! suspends or finishes, and a suspension always goes back to the
//! fiber's latest resumer.
//!
//! Per stack, the store context says which entry a trap unwinds to and
//! where the stack ends: on every switch the runtime saves the resumer's
//! `jmpbuf`, `stack_limit`, `stack_top`, `store` and the platform's
//! current store and puts the fiber's in place (and back on the way
//! out). The first entry into Wasm on a fiber sets `stack_limit` to the
//! fiber's floor: `host_reserve` bytes above the guard page, room for the
//! host calls, libcalls and fault handling that run below the deepest
//! Wasm frame. So deep recursion on a fiber is `call stack exhausted`, a
//! trap within the fiber, never a fault; the guard page only catches host
//! code that would run past the reserve (then the process or VM ends with
//! a fault report instead of corrupting memory).
//!
//! Sizes: [`DEFAULT_STACK`] (1 MiB, of which [`DEFAULT_RESERVE`] = 256
//! KiB are for host code) per fiber, set with [`Store::set_fiber_stack`].
//! Hosted, a stack is address space until touched; in the kernel the
//! whole stack is mapped when it is made. Finished fibers' stacks are
//! pooled (up to [`POOL`]) and reused.
//!
//! A fiber whose work is abandoned (its task's component trapped, the
//! store dropped) is freed without running anything on it: its stack
//! goes back to the pool (or the platform) as it is. Its body (the boxed
//! closure, which owns the task's parts and a handle to the component
//! state) is dropped normally, since it lives on the heap, not on the
//! fiber. The Rust frames on the fiber own nothing but a few small
//! buffers of the blocked call (argument and result vectors, the
//! subtask's cells): those leak with an abandoned fiber. No frame on a
//! fiber owns the store, the component state or a lock.
//!
//! The control and status registers (MXCSR, the x87 control word) are not
//! switched: neither the runtime nor generated code changes them.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;

use crate::instance::Store;
use crate::platform::Platform;
use crate::trap::JmpBuf;
use crate::vmctx::StoreCtx;

/// Usable bytes of a fiber's stack unless [`Store::set_fiber_stack`] says.
pub const DEFAULT_STACK: usize = 1 << 20;
/// Bytes of a fiber's stack kept for host code below the deepest Wasm frame.
pub const DEFAULT_RESERVE: usize = 256 << 10;
/// Finished fibers' stacks kept for reuse; more go back to the platform.
pub const POOL: usize = 16;

/// What a fiber runs: gets the store, returns a value or a trap message.
/// It is called once; it is `FnMut` so that what it owns stays in its box
/// (on the heap) while it runs.
pub(crate) type Body = Box<dyn FnMut(&mut Store) -> Result<u32, String>>;

/// A fiber of a store (an index into its fiber table).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FiberId(u32);

/// What a start or resume came back with.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Resumed {
    /// The fiber suspended itself ([`Store::fiber_suspend`]).
    Suspended,
    /// Its body returned; the fiber is gone (its stack is pooled).
    Finished(Result<u32, String>),
}

/// The part of the store context that belongs to the stack running.
#[derive(Clone, Copy)]
struct Regs {
    stack_limit: usize,
    jmpbuf: *mut JmpBuf,
    stack_top: usize,
    store: *mut Store,
    /// The platform's current store context.
    current: *mut StoreCtx,
    /// [`Fibers::floor`].
    floor: usize,
}

/// A reservation holding a guard page and a stack above it.
struct StackMem {
    base: *mut u8,
    len: usize,
}

impl StackMem {
    fn top(&self) -> usize {
        self.base as usize + self.len
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FiberState {
    Running,
    Suspended,
    Done,
}

struct Fiber {
    stack: StackMem,
    /// Saved stack pointer while suspended (before the first run: the
    /// start frame).
    sp: usize,
    /// The fiber's context while it does not run.
    regs: Regs,
    /// The resumer's stack pointer and context while the fiber runs.
    resumer_sp: usize,
    resumer_regs: Regs,
    state: FiberState,
    body: Option<Body>,
    result: Option<Result<u32, String>>,
    /// The store the fiber runs for (its frames hold references to it).
    store: *mut Store,
}

/// A store's fibers and its pool of stacks.
pub(crate) struct Fibers {
    platform: &'static dyn Platform,
    slots: Vec<Option<Box<Fiber>>>,
    free_ids: Vec<u32>,
    pool: Vec<StackMem>,
    /// Fibers started or resumed and not yet back, innermost last: the
    /// last one is the stack that runs now (none: the thread's own).
    running: Vec<FiberId>,
    /// Lowest address Wasm may use on the stack running (0: the thread's
    /// own stack, where the store's stack budget decides).
    pub(crate) floor: usize,
    size: usize,
    reserve: usize,
    /// Stacks taken from the platform so far (for tests).
    made: usize,
}

/// Counts of a store's fibers (for tests and diagnostics).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FiberStats {
    /// Fibers that exist now (running or suspended).
    pub live: usize,
    /// Stacks in the pool.
    pub pooled: usize,
    /// Stacks ever taken from the platform.
    pub made: usize,
}

impl Fibers {
    pub(crate) fn new(platform: &'static dyn Platform) -> Fibers {
        Fibers {
            platform,
            slots: Vec::new(),
            free_ids: Vec::new(),
            pool: Vec::new(),
            running: Vec::new(),
            floor: 0,
            size: DEFAULT_STACK,
            reserve: DEFAULT_RESERVE,
            made: 0,
        }
    }

    fn page(&self) -> usize {
        self.platform.page_size()
    }

    fn take_stack(&mut self) -> Option<StackMem> {
        if let Some(s) = self.pool.pop() {
            return Some(s);
        }
        let page = self.page();
        let len = self.size.next_multiple_of(page) + page;
        let base = self.platform.reserve(len)?;
        // SAFETY: `page < len`: inside the reservation just made.
        let stack = unsafe { base.add(page) };
        if !self.platform.commit(stack, len - page) {
            self.platform.release(base, len);
            return None;
        }
        self.made += 1;
        Some(StackMem { base, len })
    }

    fn give_back(&mut self, s: StackMem) {
        let page = self.page();
        let len = self.size.next_multiple_of(page) + page;
        if self.pool.len() < POOL && s.len == len {
            self.pool.push(s);
        } else {
            self.platform.release(s.base, s.len);
        }
    }

    fn fiber(&mut self, id: FiberId) -> Option<*mut Fiber> {
        self.slots
            .get_mut(id.0 as usize)
            .and_then(Option::as_mut)
            .map(|f| &mut **f as *mut Fiber)
    }

    /// Frees a fiber that does not run (finished or abandoned).
    fn remove(&mut self, id: FiberId) {
        if let Some(f) = self.slots.get_mut(id.0 as usize).and_then(Option::take) {
            let Fiber { stack, body, .. } = *f;
            drop(body);
            self.give_back(stack);
            self.free_ids.push(id.0);
        }
    }

    /// Stack ranges `[sp, top)` holding Wasm frames of stacks that do not
    /// run now: suspended fibers and the resumers of running ones (for
    /// the exception collector's roots).
    pub(crate) fn idle_wasm_stacks(&self) -> Vec<(usize, usize)> {
        let mut v = Vec::new();
        for f in self.slots.iter().flatten() {
            let (sp, r) = match f.state {
                FiberState::Suspended => (f.sp, &f.regs),
                FiberState::Running => (f.resumer_sp, &f.resumer_regs),
                FiberState::Done => continue,
            };
            if !r.jmpbuf.is_null() && sp < r.stack_top {
                v.push((sp, r.stack_top));
            }
        }
        v
    }

    pub(crate) fn stats(&self) -> FiberStats {
        FiberStats {
            live: self.slots.iter().flatten().count(),
            pooled: self.pool.len(),
            made: self.made,
        }
    }
}

impl Drop for Fibers {
    fn drop(&mut self) {
        // Nothing on a fiber runs again: bodies are dropped, stacks freed.
        for f in core::mem::take(&mut self.slots).into_iter().flatten() {
            let Fiber { stack, body, .. } = *f;
            drop(body);
            self.platform.release(stack.base, stack.len);
        }
        for s in core::mem::take(&mut self.pool) {
            self.platform.release(s.base, s.len);
        }
    }
}

#[cfg(target_arch = "x86_64")]
core::arch::global_asm!(
    // ringos_fiber_switch(usize *save_sp, usize sp): pushes the SysV
    // callee-saved registers, stores rsp at *save_sp, switches to sp and
    // pops the registers saved there (by an earlier switch, or the start
    // frame of a new fiber), then returns on that stack.
    ".globl ringos_fiber_switch",
    "ringos_fiber_switch:",
    "push rbp",
    "push rbx",
    "push r12",
    "push r13",
    "push r14",
    "push r15",
    "mov [rdi], rsp",
    "mov rsp, rsi",
    "pop r15",
    "pop r14",
    "pop r13",
    "pop r12",
    "pop rbx",
    "pop rbp",
    "ret",
    // A new fiber's first switch returns here: r12 = the fiber, r13 = its
    // main function (which never returns); rsp is 16-byte aligned.
    ".globl ringos_fiber_start",
    "ringos_fiber_start:",
    "mov rdi, r12",
    "call r13",
    "ud2",
);

unsafe extern "C" {
    fn ringos_fiber_switch(save_sp: *mut usize, sp: usize);
    fn ringos_fiber_start();
}

/// Bytes of a new fiber's start frame (six registers and the return
/// address, with the stack 16-byte aligned after the `ret`).
const START_FRAME: usize = 72;

/// Lays out the start frame at the top of `stack`; returns its sp.
///
/// # Safety
/// `stack` must be a committed fiber stack that no fiber is using.
unsafe fn start_frame(stack: &StackMem, fiber: *mut Fiber) -> usize {
    let top = stack.top() & !15;
    let sp = top - START_FRAME;
    let words: [usize; 7] = [
        0,                                // r15
        0,                                // r14
        fiber_main as *const () as usize, // r13
        fiber as usize,                   // r12
        0,                                // rbx
        0,                                // rbp: ends frame-pointer walks
        ringos_fiber_start as *const () as usize,
    ];
    // SAFETY: [sp, top) lies inside the committed stack (guaranteed by
    // the caller; the stack is far larger than the frame).
    unsafe { core::ptr::copy_nonoverlapping(words.as_ptr(), sp as *mut usize, words.len()) };
    sp
}

/// A fiber's bottom frame: runs the body once, then goes back to the
/// resumer for good (the stack is reused or freed, never returned to).
extern "C" fn fiber_main(f: *mut Fiber) -> ! {
    // SAFETY: `f` is the fiber's boxed control block (stable address),
    // alive until its resumer frees it after this fiber's last switch.
    // The resumer waits in `ringos_fiber_switch` while this runs; the
    // body is called through a pointer so it stays in its box.
    unsafe {
        let store = (*f).store;
        let r = match (*f).body.as_mut() {
            Some(body) => {
                let body: *mut Body = body;
                (*body)(&mut *store)
            }
            None => Err(String::from("a fiber started without a body")),
        };
        (*f).result = Some(r);
        (*f).state = FiberState::Done;
        let mut dead = 0usize;
        ringos_fiber_switch(&mut dead, (*f).resumer_sp);
    }
    unreachable!("a finished fiber was resumed")
}

impl Store {
    /// Fiber stacks of `size` usable bytes, of which `host_reserve` stay
    /// for host code below the deepest Wasm frame. For fibers made from
    /// now on (pooled stacks of another size are freed as they come back).
    pub fn set_fiber_stack(&mut self, size: usize, host_reserve: usize) {
        let f = &mut self.fibers;
        f.size = size.max(2 * host_reserve).max(64 << 10);
        f.reserve = host_reserve;
        for s in core::mem::take(&mut f.pool) {
            f.platform.release(s.base, s.len);
        }
    }

    /// How many fibers exist, are pooled, were made.
    pub fn fiber_stats(&self) -> FiberStats {
        self.fibers.stats()
    }

    /// The fiber whose stack runs now, if any.
    pub(crate) fn current_fiber(&self) -> Option<FiberId> {
        self.fibers.running.last().copied()
    }

    fn save_regs(&self) -> Regs {
        Regs {
            stack_limit: self.ctx.stack_limit,
            jmpbuf: self.ctx.jmpbuf,
            stack_top: self.ctx.stack_top,
            store: self.ctx.store,
            current: core::ptr::null_mut(),
            floor: self.fibers.floor,
        }
    }

    /// Puts `r` in place; returns the platform's previous current store.
    fn load_regs(&mut self, r: &Regs) -> *mut StoreCtx {
        self.ctx.stack_limit = r.stack_limit;
        self.ctx.jmpbuf = r.jmpbuf;
        self.ctx.stack_top = r.stack_top;
        self.ctx.store = r.store;
        self.fibers.floor = r.floor;
        self.platform.swap_current(r.current)
    }

    /// Starts `body` on a new fiber and runs it until it suspends or
    /// finishes. If no stack could be had, the body comes back (not run).
    pub(crate) fn fiber_start(&mut self, body: Body) -> Result<Resumed, Body> {
        let Some(stack) = self.fibers.take_stack() else {
            return Err(body);
        };
        let floor = stack.base as usize + self.fibers.page() + self.fibers.reserve;
        let id = match self.fibers.free_ids.pop() {
            Some(i) => i,
            None => {
                self.fibers.slots.push(None);
                (self.fibers.slots.len() - 1) as u32
            }
        };
        let idle = Regs {
            stack_limit: 0,
            jmpbuf: core::ptr::null_mut(),
            stack_top: 0,
            store: core::ptr::null_mut(),
            current: core::ptr::null_mut(),
            floor,
        };
        let mut f = Box::new(Fiber {
            stack,
            sp: 0,
            regs: idle,
            resumer_sp: 0,
            resumer_regs: idle,
            state: FiberState::Suspended,
            body: Some(body),
            result: None,
            store: self,
        });
        let fp: *mut Fiber = &mut *f;
        // SAFETY: the stack was just taken (committed, unused); `fp` is
        // the fiber's boxed control block, stored below and kept until it
        // finishes or is abandoned.
        f.sp = unsafe { start_frame(&f.stack, fp) };
        self.fibers.slots[id as usize] = Some(f);
        Ok(self.switch_to(FiberId(id)))
    }

    /// Resumes a suspended fiber until it suspends again or finishes.
    pub(crate) fn fiber_resume(&mut self, id: FiberId) -> Resumed {
        let me: *mut Store = self;
        match self.fibers.fiber(id) {
            // SAFETY: a live control block.
            Some(f) if unsafe { (*f).state } == FiberState::Suspended => {
                // SAFETY: as above.
                if unsafe { (*f).store } != me {
                    self.fibers.remove(id);
                    return Resumed::Finished(Err(String::from(
                        "the store moved while a task was blocked on a fiber",
                    )));
                }
                self.switch_to(id)
            }
            _ => Resumed::Finished(Err(String::from("resumed a fiber that is not suspended"))),
        }
    }

    fn switch_to(&mut self, id: FiberId) -> Resumed {
        let Some(f) = self.fibers.fiber(id) else {
            return Resumed::Finished(Err(String::from("no such fiber")));
        };
        // SAFETY: `f` is a live, suspended fiber's control block (boxed:
        // stable while fibers are added). While it runs, this frame waits
        // in the switch and touches nothing; the fiber reaches the store
        // through its own pointer, the only user meanwhile.
        unsafe {
            let mut mine = self.save_regs();
            mine.current = self.load_regs(&(*f).regs);
            (*f).resumer_regs = mine;
            (*f).state = FiberState::Running;
            self.fibers.running.push(id);
            ringos_fiber_switch(&mut (*f).resumer_sp, (*f).sp);
            // Back: the fiber suspended (it saved its context) or finished.
            self.fibers.running.pop();
            let resumer = (*f).resumer_regs;
            let theirs = self.load_regs(&resumer);
            (*f).regs.current = theirs;
            if (*f).state == FiberState::Done {
                let r = (*f).result.take();
                self.fibers.remove(id);
                return Resumed::Finished(r.unwrap_or(Ok(0)));
            }
            Resumed::Suspended
        }
    }

    /// Suspends the fiber running now: back to its resumer, until a
    /// [`Store::fiber_resume`]. On the thread's own stack it does nothing
    /// (`false`).
    pub(crate) fn fiber_suspend(&mut self) -> bool {
        let Some(id) = self.current_fiber() else {
            return false;
        };
        let Some(f) = self.fibers.fiber(id) else {
            return false;
        };
        // SAFETY: `f` runs now (it is the innermost running fiber), so its
        // resumer waits in the switch for exactly this; the resumer puts
        // its own context back (and this fiber's is saved here first).
        unsafe {
            let regs = self.save_regs();
            (*f).regs = Regs {
                current: (*f).regs.current,
                ..regs
            };
            (*f).state = FiberState::Suspended;
            ringos_fiber_switch(&mut (*f).sp, (*f).resumer_sp);
        }
        true
    }

    /// Frees a suspended fiber without running anything on it.
    pub(crate) fn fiber_abandon(&mut self, id: FiberId) {
        if let Some(f) = self.fibers.fiber(id) {
            // SAFETY: a live control block.
            if unsafe { (*f).state } == FiberState::Suspended {
                self.fibers.remove(id);
            }
        }
    }
}

#[cfg(test)]
#[path = "fiber_tests.rs"]
mod tests;
