//! Interrupt dispatch: CPU exceptions go to [`crate::fault`], device and
//! timer vectors to the handler registered for them.

use crate::arch::idt::TrapFrame;
use crate::arch::{gdt, idt, lapic};
use spin::Mutex;

/// First and last vector for device and timer interrupts.
pub const FIRST_IRQ_VECTOR: u8 = 48;
pub const LAST_IRQ_VECTOR: u8 = 63;

type Handler = fn();

static HANDLERS: Mutex<[Option<Handler>; 16]> = Mutex::new([None; 16]);

pub fn init() {
    gdt::init();
    idt::init();
}

/// Installs `handler` for `vector` (in FIRST_IRQ_VECTOR..=LAST_IRQ_VECTOR).
/// Handlers run with interrupts masked and must be short.
pub fn register(vector: u8, handler: Handler) {
    assert!((FIRST_IRQ_VECTOR..=LAST_IRQ_VECTOR).contains(&vector));
    without(|| HANDLERS.lock()[(vector - FIRST_IRQ_VECTOR) as usize] = Some(handler));
}

pub(crate) fn dispatch(frame: &mut TrapFrame) {
    let vector = frame.vector as u8;
    match vector {
        0..=31 => crate::fault::exception(frame),
        // Spurious: from the masked PIC, or the LAPIC's own; no EOI.
        32..=47 | lapic::SPURIOUS_VECTOR => {}
        FIRST_IRQ_VECTOR..=LAST_IRQ_VECTOR => {
            let handler = HANDLERS.lock()[(vector - FIRST_IRQ_VECTOR) as usize];
            if let Some(h) = handler {
                h();
            }
            lapic::eoi();
        }
        _ => log::warn!("unexpected interrupt vector {vector}"),
    }
}

/// Runs `f` with interrupts masked, restoring the previous state after.
pub fn without<R>(f: impl FnOnce() -> R) -> R {
    let flags: u64;
    // SAFETY: reads RFLAGS through the stack.
    unsafe {
        core::arch::asm!("pushfq", "pop {}", out(reg) flags, options(nomem, preserves_flags))
    };
    let was_on = flags & (1 << 9) != 0;
    crate::arch::cpu::interrupts_disable();
    let r = f();
    if was_on {
        crate::arch::cpu::interrupts_enable();
    }
    r
}
