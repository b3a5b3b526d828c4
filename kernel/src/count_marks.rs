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

use core::sync::atomic::{AtomicBool, Ordering};

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
    kernel_read,
    "xchg rcx, rcx"
);
mark!(
    /// At a component's clock read.
    component_clock,
    "xchg rbx, rbx"
);
mark!(
    /// After a block request went on the ring.
    block_submitted,
    "xchg rdx, rdx"
);
mark!(
    /// In the device interrupt's handler.
    device_interrupt,
    "xchg rsi, rsi"
);
