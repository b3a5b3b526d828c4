//! Epoch-style interruption of Wasm on bare metal: a deadline on the
//! LAPIC one-shot timer; when it passes, the timer interrupt sets the
//! store's interrupt flag and the Wasm running traps at its next loop
//! iteration (`TrapKind::Interrupted`). Nothing a component computes can
//! keep the kernel from ending the run.

use core::sync::atomic::{AtomicU64, Ordering};

use ringos_runtime::InterruptHandle;
use spin::Mutex;

use crate::time;

/// ns since boot at which to interrupt (0: no watchdog).
static DEADLINE: AtomicU64 = AtomicU64::new(0);
static HANDLE: Mutex<Option<InterruptHandle>> = Mutex::new(None);

/// Interrupts `h`'s store `after_ns` from now.
pub fn start(h: InterruptHandle, after_ns: u64) {
    let deadline = time::now_ns().saturating_add(after_ns).max(1);
    crate::interrupts::without(|| {
        *HANDLE.lock() = Some(h);
        DEADLINE.store(deadline, Ordering::SeqCst);
    });
    time::arm(deadline);
}

/// Arms the timer for the watchdog's deadline again (after something else
/// used the one-shot timer, e.g. a sleep; `time::arm` does nothing when
/// it is still armed for it).
pub fn rearm() {
    let deadline = DEADLINE.load(Ordering::SeqCst);
    if deadline != 0 {
        time::arm(deadline);
    }
}

/// The watchdog's deadline (kernel clock), while it runs.
pub fn deadline() -> Option<u64> {
    Some(DEADLINE.load(Ordering::SeqCst)).filter(|&d| d != 0)
}

/// Ends the watchdog (the run finished in time).
pub fn stop() {
    crate::interrupts::without(|| {
        DEADLINE.store(0, Ordering::SeqCst);
        *HANDLE.lock() = None;
    });
}

/// From the timer interrupt: past the deadline, interrupt; before it (the
/// one-shot timer reaches ~4 s at most), arm again.
pub(crate) fn on_timer() {
    let deadline = DEADLINE.load(Ordering::SeqCst);
    if deadline == 0 {
        return;
    }
    if time::now_ns() >= deadline {
        DEADLINE.store(0, Ordering::SeqCst);
        if let Some(h) = HANDLE.try_lock().and_then(|g| *g) {
            h.interrupt();
        }
    } else {
        time::arm(deadline);
    }
}
