//! The local APIC (xAPIC, MMIO at the base from IA32_APIC_BASE): end of
//! interrupt, the spurious vector, and the one-shot timer.

use super::cpu;
use core::sync::atomic::{AtomicU64, Ordering};

const IA32_APIC_BASE: u32 = 0x1b;
const REG_TPR: usize = 0x80;
const REG_EOI: usize = 0xb0;
const REG_SVR: usize = 0xf0;
const REG_LVT_TIMER: usize = 0x320;
const REG_TIMER_INIT: usize = 0x380;
const REG_TIMER_CURRENT: usize = 0x390;
const REG_TIMER_DIVIDE: usize = 0x3e0;

pub const SPURIOUS_VECTOR: u8 = 0xff;
const LVT_MASKED: u32 = 1 << 16;

static BASE: AtomicU64 = AtomicU64::new(0);

/// Physical base of the LAPIC registers (to map them before [`init`]).
pub fn phys_base() -> u64 {
    // SAFETY: IA32_APIC_BASE exists on every x86_64 CPU.
    unsafe { cpu::rdmsr(IA32_APIC_BASE) & 0xf_ffff_f000 }
}

fn reg(offset: usize) -> *mut u32 {
    (BASE.load(Ordering::Relaxed) as usize + offset) as *mut u32
}

fn write(offset: usize, value: u32) {
    // SAFETY: BASE is the mapped (uncached) LAPIC page; offsets are registers.
    unsafe { reg(offset).write_volatile(value) }
}

fn read(offset: usize) -> u32 {
    // SAFETY: as write.
    unsafe { reg(offset).read_volatile() }
}

/// Enables the LAPIC (the page at [`phys_base`] must be mapped uncached).
pub fn init() {
    // SAFETY: sets the global enable bit (11), keeping the base.
    unsafe { cpu::wrmsr(IA32_APIC_BASE, cpu::rdmsr(IA32_APIC_BASE) | (1 << 11)) };
    BASE.store(phys_base(), Ordering::Relaxed);
    write(REG_TPR, 0);
    write(REG_SVR, 0x100 | SPURIOUS_VECTOR as u32);
    write(REG_TIMER_DIVIDE, 0b1011); // divide by 1
    write(REG_LVT_TIMER, LVT_MASKED);
}

pub fn eoi() {
    write(REG_EOI, 0);
}

/// Starts the timer counting down from `ticks`, firing `vector` once at 0.
pub fn timer_oneshot(vector: u8, ticks: u32) {
    write(REG_LVT_TIMER, vector as u32);
    write(REG_TIMER_INIT, ticks);
}

/// Starts the timer counting down with its interrupt masked (calibration).
pub fn timer_start_masked(ticks: u32) {
    write(REG_LVT_TIMER, LVT_MASKED);
    write(REG_TIMER_INIT, ticks);
}

pub fn timer_current() -> u32 {
    read(REG_TIMER_CURRENT)
}

pub fn timer_stop() {
    write(REG_TIMER_INIT, 0);
}
