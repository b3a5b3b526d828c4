//! Wasm traps: the kinds, their Cranelift trap codes, the map from code
//! addresses to trap kinds, and the setjmp/longjmp-style entry that turns a
//! trap into an `Err(Trap)`. The platform's fault handler (signals when
//! hosted, #UD/#PF in the kernel) calls [`trap_for_pc`] and, on a hit,
//! resumes at `ringos_wasm_unwind` with the current [`JmpBuf`].

use alloc::vec::Vec;
use core::cell::UnsafeCell;
use core::fmt;
use core::sync::atomic::{AtomicBool, Ordering};
use cranelift_codegen::ir::TrapCode;

/// Why Wasm execution stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum TrapKind {
    Unreachable = 1,
    IntegerDivideByZero,
    IntegerOverflow,
    InvalidConversionToInteger,
    MemoryOutOfBounds,
    TableOutOfBounds,
    IndirectCallTypeMismatch,
    IndirectCallNull,
    StackExhausted,
    /// A host function failed.
    Host,
    /// The embedder interrupted the Wasm (a timeout).
    Interrupted,
    /// A Wasm exception reached the entry (no `try_table` caught it).
    UncaughtException,
    /// `throw_ref` of a null exnref.
    NullExnRef,
    /// The store has as many live exception objects as it allows (or the
    /// platform had no memory for another).
    ExceptionLimit,
}

impl TrapKind {
    const ALL: [TrapKind; 14] = [
        TrapKind::Unreachable,
        TrapKind::IntegerDivideByZero,
        TrapKind::IntegerOverflow,
        TrapKind::InvalidConversionToInteger,
        TrapKind::MemoryOutOfBounds,
        TrapKind::TableOutOfBounds,
        TrapKind::IndirectCallTypeMismatch,
        TrapKind::IndirectCallNull,
        TrapKind::StackExhausted,
        TrapKind::Host,
        TrapKind::Interrupted,
        TrapKind::UncaughtException,
        TrapKind::NullExnRef,
        TrapKind::ExceptionLimit,
    ];

    pub fn from_u32(v: u32) -> Option<TrapKind> {
        Self::ALL.into_iter().find(|k| *k as u32 == v)
    }

    /// The Cranelift trap code generated code uses for this kind.
    pub fn code(self) -> TrapCode {
        match self {
            TrapKind::IntegerDivideByZero => TrapCode::INTEGER_DIVISION_BY_ZERO,
            TrapKind::IntegerOverflow => TrapCode::INTEGER_OVERFLOW,
            TrapKind::InvalidConversionToInteger => TrapCode::BAD_CONVERSION_TO_INTEGER,
            TrapKind::MemoryOutOfBounds => TrapCode::HEAP_OUT_OF_BOUNDS,
            TrapKind::StackExhausted => TrapCode::STACK_OVERFLOW,
            k => TrapCode::unwrap_user(k as u8),
        }
    }

    pub fn from_code(code: TrapCode) -> TrapKind {
        Self::ALL
            .into_iter()
            .find(|k| k.code() == code)
            .unwrap_or(TrapKind::Unreachable)
    }

    /// The message the spec test suite uses.
    pub fn message(self) -> &'static str {
        match self {
            TrapKind::Unreachable => "unreachable",
            TrapKind::IntegerDivideByZero => "integer divide by zero",
            TrapKind::IntegerOverflow => "integer overflow",
            TrapKind::InvalidConversionToInteger => "invalid conversion to integer",
            TrapKind::MemoryOutOfBounds => "out of bounds memory access",
            TrapKind::TableOutOfBounds => "out of bounds table access",
            TrapKind::IndirectCallTypeMismatch => "indirect call type mismatch",
            TrapKind::IndirectCallNull => "uninitialized element",
            TrapKind::StackExhausted => "call stack exhausted",
            TrapKind::Host => "host function failed",
            TrapKind::Interrupted => "interrupted (the embedder's deadline passed)",
            TrapKind::UncaughtException => "uncaught exception",
            TrapKind::NullExnRef => "null exception reference",
            TrapKind::ExceptionLimit => "too many live exceptions",
        }
    }
}

/// A trap that ended a call into Wasm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trap(pub TrapKind);

impl fmt::Display for Trap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.message())
    }
}

/// Callee-saved registers, stack pointer and resume address of an entry.
#[repr(C)]
#[derive(Default)]
pub struct JmpBuf {
    regs: [usize; 8],
}

impl JmpBuf {
    /// The stack pointer of the entry's caller: every frame of the Wasm
    /// it runs lies below.
    pub(crate) fn sp(&self) -> usize {
        self.regs[6]
    }
}

#[cfg(target_arch = "x86_64")]
core::arch::global_asm!(
    // u32 ringos_wasm_enter(JmpBuf *buf, fn tramp, usize vmctx, usize code, u64 *slots)
    // Saves rbx rbp r12-r15, the caller's rsp and return address, then calls
    // tramp(vmctx, code, slots). Returns 0, or the trap kind on unwind.
    ".globl ringos_wasm_enter",
    "ringos_wasm_enter:",
    "mov [rdi], rbx",
    "mov [rdi + 8], rbp",
    "mov [rdi + 16], r12",
    "mov [rdi + 24], r13",
    "mov [rdi + 32], r14",
    "mov [rdi + 40], r15",
    "lea rax, [rsp + 8]",
    "mov [rdi + 48], rax",
    "mov rax, [rsp]",
    "mov [rdi + 56], rax",
    "mov rax, rsi",
    "mov rdi, rdx",
    "mov rsi, rcx",
    "mov rdx, r8",
    "sub rsp, 8",
    "call rax",
    "add rsp, 8",
    "xor eax, eax",
    "ret",
    // ! ringos_wasm_unwind(JmpBuf *buf, u32 kind): return `kind` from the enter.
    ".globl ringos_wasm_unwind",
    "ringos_wasm_unwind:",
    "mov rbx, [rdi]",
    "mov rbp, [rdi + 8]",
    "mov r12, [rdi + 16]",
    "mov r13, [rdi + 24]",
    "mov r14, [rdi + 32]",
    "mov r15, [rdi + 40]",
    "mov rsp, [rdi + 48]",
    "mov eax, esi",
    "jmp qword ptr [rdi + 56]",
);

unsafe extern "C" {
    fn ringos_wasm_enter(
        buf: *mut JmpBuf,
        tramp: usize,
        vmctx: usize,
        code: usize,
        slots: *mut u64,
    ) -> u32;
    fn ringos_wasm_unwind(buf: *mut JmpBuf, kind: u32) -> !;
}

/// Calls the array-call trampoline `tramp(vmctx, code, slots)` and returns
/// the trap that ended it, if any.
///
/// # Safety
/// `tramp` must be a trampoline matching the signature of `code`, `slots`
/// must hold enough slots, and `jmpbuf` must be published (StoreCtx, the
/// platform's current pointer) so traps can find it.
pub unsafe fn enter(
    jmpbuf: *mut JmpBuf,
    tramp: usize,
    vmctx: usize,
    code: usize,
    slots: *mut u64,
) -> Result<(), Trap> {
    // SAFETY: the caller guarantees the arguments; the asm preserves the
    // SysV callee-saved registers on both the return and the unwind path.
    let r = unsafe { ringos_wasm_enter(jmpbuf, tramp, vmctx, code, slots) };
    match TrapKind::from_u32(r) {
        None => Ok(()),
        Some(k) => Err(Trap(k)),
    }
}

/// Address a fault handler resumes at, with `rdi = jmpbuf`, `rsi = kind`.
pub fn wasm_unwind_addr() -> usize {
    ringos_wasm_unwind as *const () as usize
}

/// Unwinds to the entry that owns `jmpbuf`.
///
/// # Safety
/// `jmpbuf` must belong to an active `enter` on this stack, and no frame
/// between here and it may own values needing drop.
pub unsafe fn raise(jmpbuf: *mut JmpBuf, kind: TrapKind) -> ! {
    // SAFETY: guaranteed by the caller.
    unsafe { ringos_wasm_unwind(jmpbuf, kind as u32) }
}

/// Whether this thread is inside `SpinLock::with` (so a fault handler on
/// it must not wait for the lock). Hosted: per thread; guest: one CPU.
#[cfg(any(test, feature = "hosted"))]
mod holding {
    use std::cell::Cell;
    pub(super) const THREADS: bool = true;
    std::thread_local! {
        static HOLDING: Cell<bool> = const { Cell::new(false) };
    }
    pub(super) fn set(v: bool) {
        HOLDING.with(|h| h.set(v));
    }
    pub(super) fn get() -> bool {
        HOLDING.with(|h| h.get())
    }
}

#[cfg(not(any(test, feature = "hosted")))]
mod holding {
    use core::sync::atomic::{AtomicBool, Ordering};
    pub(super) const THREADS: bool = false;
    static HOLDING: AtomicBool = AtomicBool::new(false);
    pub(super) fn set(v: bool) {
        HOLDING.store(v, Ordering::Relaxed);
    }
    pub(super) fn get() -> bool {
        HOLDING.load(Ordering::Relaxed)
    }
}

/// A minimal spin lock so fault handlers can read the code map (no_std).
pub(crate) struct SpinLock<T> {
    locked: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: access to `value` is serialized by `locked`.
unsafe impl<T: Send> Sync for SpinLock<T> {}

impl<T> SpinLock<T> {
    pub(crate) const fn new(value: T) -> Self {
        SpinLock {
            locked: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        while self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            core::hint::spin_loop();
        }
        holding::set(true);
        // SAFETY: we hold the lock.
        let r = f(unsafe { &mut *self.value.get() });
        holding::set(false);
        self.locked.store(false, Ordering::Release);
        r
    }

    /// For fault handlers. With threads (hosted), another thread may hold
    /// the lock for as long as the scheduler likes, so wait for it, unless
    /// the faulting thread is the holder (then waiting would deadlock). On
    /// the guest's one CPU a held lock can only belong to the interrupted
    /// code itself: a bounded number of attempts, then give up.
    pub(crate) fn with_in_handler<R>(&self, f: impl FnOnce(&mut T) -> R) -> Option<R> {
        if holding::get() {
            return None;
        }
        let mut f = Some(f);
        let mut attempts = 0u32;
        loop {
            if let Some(r) = self.try_with(|v| (f.take().expect("called once"))(v)) {
                return Some(r);
            }
            attempts += 1;
            if !holding::THREADS && attempts >= 1 << 16 {
                return None;
            }
            core::hint::spin_loop();
        }
    }

    /// For fault handlers: never spins (the faulting thread may hold it).
    pub(crate) fn try_with<R>(&self, f: impl FnOnce(&mut T) -> R) -> Option<R> {
        if self
            .locked
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return None;
        }
        // SAFETY: we hold the lock.
        let r = f(unsafe { &mut *self.value.get() });
        self.locked.store(false, Ordering::Release);
        Some(r)
    }
}

/// A call inside a `try_table`: where an exception unwinding through
/// it resumes (offsets from the start of the code region).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Landing {
    /// The call's return address.
    pub(crate) ret: u32,
    /// The handler block (it receives the exception in rax).
    pub(crate) handler: u32,
    /// FP minus SP at the call: the SP to restore.
    pub(crate) frame_offset: u32,
}

struct CodeRange {
    start: usize,
    end: usize,
    /// Sorted by offset.
    traps: Vec<(u32, TrapKind)>,
    /// Sorted by return address.
    landings: Vec<Landing>,
}

static CODE_MAP: SpinLock<Vec<CodeRange>> = SpinLock::new(Vec::new());

pub(crate) fn register_code(
    start: usize,
    len: usize,
    mut traps: Vec<(u32, TrapKind)>,
    mut landings: Vec<Landing>,
) {
    traps.sort_unstable_by_key(|t| t.0);
    landings.sort_unstable_by_key(|l| l.ret);
    CODE_MAP.with(|m| {
        m.push(CodeRange {
            start,
            end: start + len,
            traps,
            landings,
        })
    });
}

/// What the frame whose call returns to `pc` does with an exception.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FrameAction {
    /// `pc` is not in generated code: the walk left the Wasm frames.
    NotWasm,
    /// Generated code without a handler there: on to the caller.
    PassOn,
    /// Resume at `pc` with `sp = fp - frame_offset`.
    Land { pc: usize, frame_offset: usize },
}

/// The landing for return address `pc` (for the exception unwinder; not
/// for fault handlers, it takes the lock normally).
pub(crate) fn landing_for(pc: usize) -> FrameAction {
    CODE_MAP.with(|m| {
        let Some(r) = m.iter().find(|r| r.start <= pc && pc < r.end) else {
            return FrameAction::NotWasm;
        };
        let off = (pc - r.start) as u32;
        match r.landings.binary_search_by_key(&off, |l| l.ret) {
            Ok(i) => FrameAction::Land {
                pc: r.start + r.landings[i].handler as usize,
                frame_offset: r.landings[i].frame_offset as usize,
            },
            Err(_) => FrameAction::PassOn,
        }
    })
}

pub(crate) fn unregister_code(start: usize) {
    CODE_MAP.with(|m| m.retain(|r| r.start != start));
}

/// Linear-memory reservations `(base, len)`, for [`memory_trap`].
static MEMORIES: SpinLock<Vec<(usize, usize)>> = SpinLock::new(Vec::new());

pub(crate) fn register_memory(base: usize, len: usize) {
    MEMORIES.with(|m| m.push((base, len)));
}

pub(crate) fn unregister_memory(base: usize) {
    MEMORIES.with(|m| m.retain(|r| r.0 != base));
}

/// What a memory fault (SIGSEGV/SIGBUS, #PF) at `pc` touching `addr`
/// means: `Some(MemoryOutOfBounds)` only if `pc` is a load or store of
/// generated code registered with the heap out-of-bounds trap code and
/// `addr` is inside a linear-memory reservation (a guard page or the
/// uncommitted tail); `None` (not a Wasm trap) otherwise.
pub fn memory_trap(pc: usize, addr: usize) -> Option<TrapKind> {
    let in_memory = MEMORIES
        .with_in_handler(|m| m.iter().any(|&(b, l)| b <= addr && addr - b < l))
        .unwrap_or(false);
    if !in_memory {
        return None;
    }
    CODE_MAP
        .with_in_handler(|m| {
            let r = m.iter().find(|r| r.start <= pc && pc < r.end)?;
            let off = (pc - r.start) as u32;
            let i = r.traps.binary_search_by_key(&off, |t| t.0).ok()?;
            (r.traps[i].1 == TrapKind::MemoryOutOfBounds).then_some(TrapKind::MemoryOutOfBounds)
        })
        .flatten()
}

/// The trap sites (absolute address, kind) of the code range holding `pc`.
#[cfg(test)]
pub(crate) fn registered_traps(pc: usize) -> Vec<(usize, TrapKind)> {
    CODE_MAP.with(|m| {
        m.iter()
            .filter(|r| r.start <= pc && pc < r.end)
            .flat_map(|r| r.traps.iter().map(|t| (r.start + t.0 as usize, t.1)))
            .collect()
    })
}

/// What a fault at `pc` means: `None` if `pc` is not in generated code;
/// otherwise the trap recorded there, or `fallback` (a fault on a plain
/// load/store, e.g. a guard page) for other addresses in generated code.
pub fn trap_for_pc(pc: usize, fallback: TrapKind) -> Option<TrapKind> {
    CODE_MAP
        .with_in_handler(|m| {
            let r = m.iter().find(|r| r.start <= pc && pc < r.end)?;
            let off = (pc - r.start) as u32;
            Some(match r.traps.binary_search_by_key(&off, |t| t.0) {
                Ok(i) => r.traps[i].1,
                Err(_) => fallback,
            })
        })
        .flatten()
}
