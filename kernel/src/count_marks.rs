//! Marks for counting guest instructions under TCG (`ringos probe blk
//! --component --count`): with `count-marks=1` on the command line, each
//! timed kernel-only read is bracketed by `xchg rcx, rcx` and each clock
//! read a component makes (`wasi:clocks/monotonic-clock.now`, which the
//! probe component takes before and after every read) carries `xchg rbx,
//! rbx`; `xchg rdx, rdx` follows each block submission (the device
//! notified) and `xchg rsi, rsi` each device interrupt, so the plugin can
//! tell the instructions a reader waits for (before the submission, after
//! the completion's interrupt) from those that overlap the device. All are
//! no-ops to the CPU; the plugin in
//! `benches/blk/insn_window.c` counts the instructions and translation
//! blocks executed between two marks of a kind. Instruction counts do not
//! move with the load on the host, unlike latencies under TCG.
//!
//! With `phases=1` the same places take the TSC instead (no plugin), and
//! [`report_phases`] prints the median of each phase of a timed read:
//! before the submission, the submission itself (QEMU handles the
//! notify), submission -> the device's interrupt (or, when none came for
//! it, the poll that took the completion from the ring: the block device
//! interrupts only while the CPU halts), then -> the reader has its data.
//! It also tells how the reads ended: how many were reaped by a poll (no
//! interrupt came), how long the vCPU ran from the notify to its first
//! halt, and the notify's median after a reaped read and after an
//! interrupted one. Under TCG, QEMU's main loop holds its global lock
//! while it completes a request, and a notify (which takes that lock)
//! that comes while it does waits for it: a poll that finds the completion
//! early can make the next read's notify slow.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use spin::Mutex;

static ON: AtomicBool = AtomicBool::new(false);

/// Turns the marks on (from the command line, at boot).
pub fn enable() {
    ON.store(true, Ordering::Relaxed);
}

/// A mark: a register exchanged with itself (`$insn`), when marks are on.
macro_rules! mark {
    ($(#[$doc:meta])* $name:ident, $insn:literal) => {
        $(#[$doc])*
        #[inline]
        pub fn $name() {
            if ON.load(Ordering::Relaxed) {
                // SAFETY: exchanges a register with itself; nothing changes.
                unsafe { core::arch::asm!($insn, options(nomem, nostack, preserves_flags)) };
            }
        }
    };
}

mark!(
    /// Before and after a timed kernel-only read.
    kernel_read_insn,
    "xchg rcx, rcx"
);
mark!(
    /// At a component's clock read.
    component_clock_insn,
    "xchg rbx, rbx"
);
mark!(
    /// After a block request went on the ring.
    block_submitted_insn,
    "xchg rdx, rdx"
);
mark!(
    /// In the device interrupt's handler.
    device_interrupt_insn,
    "xchg rsi, rsi"
);

/// Before and after a timed kernel-only read.
#[inline]
pub fn kernel_read() {
    phase_edge(KERNEL);
    kernel_read_insn();
}

/// At a component's clock read (the probe reads it before and after each
/// read).
#[inline]
pub fn component_clock() {
    phase_edge(COMPONENT);
    component_clock_insn();
}

/// Before a block request goes on the ring.
#[inline]
pub fn block_submitting() {
    phase_point(SUBMITTING);
}

/// After a block request went on the ring (the device notified).
#[inline]
pub fn block_submitted() {
    phase_point(SUBMITTED);
    block_submitted_insn();
}

/// In the device interrupt's handler.
#[inline]
pub fn device_interrupt() {
    if PHASES_ON.load(Ordering::Relaxed) {
        INTERRUPTED.store(true, Ordering::Relaxed);
    }
    phase_point(INTERRUPT);
    device_interrupt_insn();
}

/// A block completion taken from the used ring: where the device's phase
/// ends if no interrupt came since the submission began (a poll found it).
#[inline]
pub fn block_reaped() {
    if PHASES_ON.load(Ordering::Relaxed)
        && POINTS[INTERRUPT].load(Ordering::Relaxed) < POINTS[SUBMITTING].load(Ordering::Relaxed)
    {
        POINTS[INTERRUPT].store(crate::arch::cpu::rdtsc(), Ordering::Relaxed);
    }
}

/// Before the CPU halts for an interrupt: the first in a read ends the
/// part the vCPU ran after the notify.
#[inline]
pub fn halting() {
    if PHASES_ON.load(Ordering::Relaxed) && HALTED.load(Ordering::Relaxed) == 0 {
        HALTED.store(crate::arch::cpu::rdtsc(), Ordering::Relaxed);
    }
}

const KERNEL: usize = 0;
const COMPONENT: usize = 1;
/// The points of a window: its start, then these.
const START: usize = 0;
const SUBMITTING: usize = 1;
const SUBMITTED: usize = 2;
const INTERRUPT: usize = 3;
const PHASES: [&str; 4] = ["before_submit_ns", "submit_ns", "device_ns", "after_irq_ns"];
/// The phase that is the notify.
const NOTIFY: usize = 1;

/// A closed window (TSC ticks).
struct Window {
    phases: [u64; 4],
    /// An interrupt came (else a poll reaped the completion).
    interrupted: bool,
    /// The same for the window before it, on the same path.
    after_interrupted: bool,
    /// From the notify to the first halt, if the CPU halted.
    to_halt: Option<u64>,
}
/// Windows kept per path (the first ones; the probe times a few thousand).
const KEPT: usize = 1 << 14;

static PHASES_ON: AtomicBool = AtomicBool::new(false);
/// The TSC at each point of the window open. Atomics: the interrupt's
/// handler stores one, and takes no lock.
static POINTS: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];
/// Whether a device interrupt came in the window open, and the TSC at its
/// first halt (0: none yet).
static INTERRUPTED: AtomicBool = AtomicBool::new(false);
static HALTED: AtomicU64 = AtomicU64::new(0);
/// Per path: whether a window is open, and the phases (TSC ticks) of the
/// closed ones. Locked only outside interrupt handlers.
static WINDOWS: Mutex<[PathWindows; 2]> = Mutex::new([PathWindows::new(), PathWindows::new()]);

/// One path's windows: whether one is open, whether the last closed one
/// had an interrupt, and the closed ones.
struct PathWindows {
    open: bool,
    last_irq: bool,
    kept: Vec<Window>,
}

impl PathWindows {
    const fn new() -> Self {
        PathWindows {
            open: false,
            last_irq: true,
            kept: Vec::new(),
        }
    }
}

/// Turns phase timing on (from the command line, at boot).
pub fn enable_phases() {
    let mut w = WINDOWS.lock();
    for p in w.iter_mut() {
        // Room up front: nothing allocates on the timed path.
        p.kept.reserve_exact(KEPT);
    }
    PHASES_ON.store(true, Ordering::Relaxed);
}

#[inline]
fn phase_point(k: usize) {
    if PHASES_ON.load(Ordering::Relaxed) {
        POINTS[k].store(crate::arch::cpu::rdtsc(), Ordering::Relaxed);
    }
}

#[inline]
fn phase_edge(path: usize) {
    if !PHASES_ON.load(Ordering::Relaxed) {
        return;
    }
    let end = crate::arch::cpu::rdtsc();
    let mut w = WINDOWS.lock();
    let p = &mut w[path];
    p.open = !p.open;
    if p.open {
        INTERRUPTED.store(false, Ordering::Relaxed);
        HALTED.store(0, Ordering::Relaxed);
        POINTS[START].store(end, Ordering::Relaxed);
        return;
    }
    let interrupted = INTERRUPTED.load(Ordering::Relaxed);
    let after_interrupted = core::mem::replace(&mut p.last_irq, interrupted);
    let [start, submitting, submitted, irq] = POINTS.each_ref().map(|p| p.load(Ordering::Relaxed));
    // The interrupt (or reap) of this window's request, or a stale one.
    let ordered = start <= submitting && submitting <= submitted && submitted <= end;
    if !ordered || irq < submitting || irq > end || p.kept.len() >= KEPT {
        return;
    }
    // An interrupt during the notify (the device was done before the
    // vCPU went on): no device phase; the four still add up to the read.
    let irq = irq.max(submitted);
    let halted = HALTED.load(Ordering::Relaxed);
    p.kept.push(Window {
        phases: [
            submitting - start,
            submitted - submitting,
            irq - submitted,
            end - irq,
        ],
        interrupted,
        after_interrupted,
        // 0 (no halt) and a halt before the notify are none.
        to_halt: halted.checked_sub(submitted),
    });
}

/// The median of `f` over the windows it gives a value for (TSC ticks; 0
/// if none), and how many those were.
fn median(kept: &[Window], f: impl Fn(&Window) -> Option<u64>) -> (u64, usize) {
    let mut v: Vec<u64> = kept.iter().filter_map(f).collect();
    v.sort_unstable();
    (v.get(v.len() / 2).copied().unwrap_or(0), v.len())
}

/// Prints each path's phase medians (with `phases=1`), as
/// `probe-blk: phases path=kernel|component reads=N before_submit_ns=..
/// submit_ns=.. device_ns=.. after_irq_ns=..`.
pub fn report_phases() {
    if !PHASES_ON.load(Ordering::Relaxed) {
        return;
    }
    let Some(clock) = crate::time::clock() else {
        return;
    };
    let w = WINDOWS.lock();
    let ns = |t: u64| clock.tsc.ticks_to_ns(t);
    for (path, p) in ["kernel", "component"].iter().zip(w.iter()) {
        let kept = &p.kept;
        let mut line = alloc::format!(
            "{}phases path={path} reads={}",
            ringos_proto::probe::BLK_LINE,
            kept.len()
        );
        for (k, name) in PHASES.iter().enumerate() {
            let (m, _) = median(kept, |w| Some(w.phases[k]));
            line.push_str(&alloc::format!(" {name}={}", ns(m)));
        }
        let reaped = kept.iter().filter(|w| !w.interrupted).count();
        let (to_halt, _) = median(kept, |w| w.to_halt);
        let notify_if = |after_irq: bool| {
            median(kept, move |w| {
                (w.after_interrupted == after_irq).then_some(w.phases[NOTIFY])
            })
        };
        let (after_reap, n_after_reap) = notify_if(false);
        let (after_irq, _) = notify_if(true);
        line.push_str(&alloc::format!(
            " reaped={reaped} notify_to_halt_ns={} after_reaped={n_after_reap} \
             submit_after_reaped_ns={} submit_after_irq_ns={}",
            ns(to_halt),
            ns(after_reap),
            ns(after_irq)
        ));
        crate::println!("{line}");
    }
}
