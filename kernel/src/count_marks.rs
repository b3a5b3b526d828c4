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

const KERNEL: usize = 0;
const COMPONENT: usize = 1;
/// The points of a window: its start, then these.
const START: usize = 0;
const SUBMITTING: usize = 1;
const SUBMITTED: usize = 2;
const INTERRUPT: usize = 3;
const PHASES: [&str; 4] = ["before_submit_ns", "submit_ns", "device_ns", "after_irq_ns"];
/// Windows kept per path (the first ones; the probe times a few thousand).
const KEPT: usize = 1 << 14;

static PHASES_ON: AtomicBool = AtomicBool::new(false);
/// The TSC at each point of the window open. Atomics: the interrupt's
/// handler stores one, and takes no lock.
static POINTS: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];
/// Per path: whether a window is open, and the phases (TSC ticks) of the
/// closed ones. Locked only outside interrupt handlers.
static WINDOWS: Mutex<[(bool, Vec<[u64; 4]>); 2]> =
    Mutex::new([(false, Vec::new()), (false, Vec::new())]);

/// Turns phase timing on (from the command line, at boot).
pub fn enable_phases() {
    let mut w = WINDOWS.lock();
    for (_, v) in w.iter_mut() {
        // Room up front: nothing allocates on the timed path.
        v.reserve_exact(KEPT);
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
    let (open, kept) = &mut w[path];
    *open = !*open;
    if *open {
        POINTS[START].store(end, Ordering::Relaxed);
        return;
    }
    let [start, submitting, submitted, irq] = POINTS.each_ref().map(|p| p.load(Ordering::Relaxed));
    // The interrupt (or reap) of this window's request, or a stale one.
    let ordered = start <= submitting && submitting <= submitted && submitted <= end;
    if !ordered || irq < submitting || irq > end || kept.len() >= KEPT {
        return;
    }
    // An interrupt during the notify (the device was done before the
    // vCPU went on): no device phase; the four still add up to the read.
    let irq = irq.max(submitted);
    kept.push([
        submitting - start,
        submitted - submitting,
        irq - submitted,
        end - irq,
    ]);
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
    for (path, (_, kept)) in ["kernel", "component"].iter().zip(w.iter()) {
        let mut line = alloc::format!(
            "{}phases path={path} reads={}",
            ringos_proto::probe::BLK_LINE,
            kept.len()
        );
        for (k, name) in PHASES.iter().enumerate() {
            let mut v: Vec<u64> = kept.iter().map(|p| p[k]).collect();
            v.sort_unstable();
            let median = v.get(v.len() / 2).map_or(0, |&t| clock.tsc.ticks_to_ns(t));
            line.push_str(&alloc::format!(" {name}={median}"));
        }
        crate::println!("{line}");
    }
}
