//! The I/O APIC: routes a device's interrupt line (GSI) to a LAPIC vector.

use core::sync::atomic::{AtomicU64, Ordering};

pub const DEFAULT_BASE: u64 = 0xfec0_0000;
const REG_VERSION: u32 = 0x01;
const fn redirection(gsi: u32) -> u32 {
    0x10 + 2 * gsi
}
const MASKED: u32 = 1 << 16;
const LEVEL: u32 = 1 << 15;
const ACTIVE_LOW: u32 = 1 << 13;

static BASE: AtomicU64 = AtomicU64::new(0);

#[derive(Clone, Copy, Debug)]
pub enum Trigger {
    /// ISA-style: edge, active high (virtio-mmio on microvm).
    Edge,
    /// PCI INTx style: level, active low.
    Level,
}

fn write(reg: u32, value: u32) {
    let base = BASE.load(Ordering::Relaxed) as *mut u32;
    // SAFETY: the IOAPIC page is mapped uncached (init); IOREGSEL at +0,
    // IOWIN at +0x10. Callers run with interrupts masked.
    unsafe {
        base.write_volatile(reg);
        base.add(4).write_volatile(value);
    }
}

fn read(reg: u32) -> u32 {
    let base = BASE.load(Ordering::Relaxed) as *mut u32;
    // SAFETY: as write.
    unsafe {
        base.write_volatile(reg);
        base.add(4).read_volatile()
    }
}

/// Whether [`init`] ran.
pub fn ready() -> bool {
    BASE.load(Ordering::Relaxed) != 0
}

/// Uses the IOAPIC at `base` (mapped uncached) and masks every line.
/// Returns the number of lines.
pub fn init(base: u64) -> u32 {
    BASE.store(base, Ordering::Relaxed);
    let lines = ((read(REG_VERSION) >> 16) & 0xff) + 1;
    for gsi in 0..lines {
        write(redirection(gsi), MASKED);
    }
    lines
}

/// Sends `gsi` to `vector` on LAPIC 0.
pub fn route(gsi: u32, vector: u8, trigger: Trigger) {
    let mode = match trigger {
        Trigger::Edge => 0,
        Trigger::Level => LEVEL | ACTIVE_LOW,
    };
    write(redirection(gsi) + 1, 0); // destination: APIC 0
    write(redirection(gsi), vector as u32 | mode);
}
