//! The clocks: calibration, `now_ns`, the one-shot LAPIC timer.
//!
//! The TSC's frequency comes from KVM's pvclock when the hypervisor offers
//! it, else it is measured against PIT channel 0 over a short window; the
//! LAPIC timer is measured in the same window.

use super::scale::Scale;
use crate::arch::{cpu, lapic, legacy};
use core::sync::atomic::{AtomicU64, Ordering};
use spin::Once;

/// Vector of the LAPIC timer interrupt.
pub const TIMER_VECTOR: u8 = crate::interrupts::FIRST_IRQ_VECTOR;

/// How long the PIT calibration window lasts.
const CALIBRATION_NS: u64 = 5_000_000;

pub struct Clock {
    pub tsc: Scale,
    pub lapic: Scale,
    /// TSC value that is time 0 (the kernel's entry).
    pub tsc_origin: u64,
    pub source: &'static str,
}

static CLOCK: Once<Clock> = Once::new();
static TIMER_FIRES: AtomicU64 = AtomicU64::new(0);
/// The deadline the one-shot timer is armed for (0: none pending).
static ARMED: AtomicU64 = AtomicU64::new(0);

/// Nanoseconds since the kernel's entry; 0 before [`init`].
pub fn now_ns() -> u64 {
    match CLOCK.get() {
        Some(c) => c.tsc.ticks_to_ns(cpu::rdtsc().wrapping_sub(c.tsc_origin)),
        None => 0,
    }
}

pub fn clock() -> Option<&'static Clock> {
    CLOCK.get()
}

/// Calibrates the clocks and installs the timer interrupt. `tsc_origin` is
/// the TSC read at the kernel's entry.
pub fn init(tsc_origin: u64) -> &'static Clock {
    let (tsc, lapic, source) = match pvclock_tsc() {
        Some(tsc) => {
            let (_, lapic) = measure_against_pit();
            (tsc, lapic, "kvm-pvclock")
        }
        None => {
            let (tsc, lapic) = measure_against_pit();
            (tsc, lapic, "pit")
        }
    };
    crate::interrupts::register(TIMER_VECTOR, on_timer);
    CLOCK.call_once(|| Clock {
        tsc,
        lapic,
        tsc_origin,
        source,
    })
}

/// Counts TSC and LAPIC ticks over CALIBRATION_NS of PIT time.
///
/// Every sample reads the three counters back to back in one place, so the
/// time the (emulated) CPU spends between samples - under TCG, translating
/// code it meets for the first time - lands in all three alike.
fn measure_against_pit() -> (Scale, Scale) {
    let want = legacy::PIT_HZ * CALIBRATION_NS / 1_000_000_000;
    legacy::pit_start();
    lapic::timer_start_masked(u32::MAX);
    let sample = || (legacy::pit_read(), cpu::rdtsc(), lapic::timer_current());
    // Start on a PIT edge (this also warms up the loop).
    let mut first = sample();
    let mut spins = 0u64;
    loop {
        let s = sample();
        if s.0 != first.0 {
            first = s;
            break;
        }
        spins += 1;
        if spins > 10_000_000 {
            // A PIT that never counts: a nominal frequency rather than a
            // hang (the clock will be wrong, and the log says so).
            log::error!("PIT does not count; assuming 1 GHz clocks");
            lapic::timer_stop();
            return (Scale::from_hz(1_000_000_000), Scale::from_hz(1_000_000_000));
        }
    }
    let (mut last_pit, mut elapsed) = (first.0, 0u64);
    let mut s = first;
    while elapsed < want {
        s = sample();
        elapsed += last_pit.wrapping_sub(s.0) as u64;
        last_pit = s.0;
    }
    lapic::timer_stop();
    (
        Scale::measured(s.1 - first.1, elapsed, legacy::PIT_HZ),
        Scale::measured(first.2.wrapping_sub(s.2) as u64, elapsed, legacy::PIT_HZ),
    )
}

/// The TSC frequency from KVM's pvclock (MSR_KVM_SYSTEM_TIME_NEW).
fn pvclock_tsc() -> Option<Scale> {
    const KVM_FEATURE_CLOCKSOURCE2: u32 = 1 << 3;
    const MSR_KVM_SYSTEM_TIME_NEW: u32 = 0x4b56_4d01;
    if cpu::hypervisor_signature()? != *b"KVMKVMKVM\0\0\0" {
        return None;
    }
    if cpu::cpuid(0x4000_0001).eax & KVM_FEATURE_CLOCKSOURCE2 == 0 {
        return None;
    }
    #[repr(C, align(64))]
    struct PvclockTimeInfo {
        version: u32,
        pad0: u32,
        tsc_timestamp: u64,
        system_time: u64,
        tsc_to_system_mul: u32,
        tsc_shift: i8,
        flags: u8,
        pad: [u8; 2],
    }
    static mut INFO: PvclockTimeInfo = PvclockTimeInfo {
        version: 0,
        pad0: 0,
        tsc_timestamp: 0,
        system_time: 0,
        tsc_to_system_mul: 0,
        tsc_shift: 0,
        flags: 0,
        pad: [0; 2],
    };
    let info = core::ptr::addr_of_mut!(INFO);
    // SAFETY: KVM advertised the MSR; INFO is identity-mapped static memory
    // the hypervisor fills in; we turn it off again right after reading.
    unsafe {
        cpu::wrmsr(MSR_KVM_SYSTEM_TIME_NEW, info as u64 | 1);
        let (mut mul, mut shift);
        loop {
            let v = core::ptr::read_volatile(&raw const (*info).version);
            mul = core::ptr::read_volatile(&raw const (*info).tsc_to_system_mul);
            shift = core::ptr::read_volatile(&raw const (*info).tsc_shift);
            if v & 1 == 0 && v == core::ptr::read_volatile(&raw const (*info).version) {
                break;
            }
        }
        cpu::wrmsr(MSR_KVM_SYSTEM_TIME_NEW, 0);
        (mul != 0).then(|| Scale::from_pvclock(mul, shift))
    }
}

fn on_timer() {
    TIMER_FIRES.fetch_add(1, Ordering::Relaxed);
    // The one-shot timer is spent (the watchdog may arm it again).
    ARMED.store(0, Ordering::Relaxed);
    crate::wasm::watchdog::on_timer();
}

/// Number of LAPIC timer interrupts taken so far.
pub fn timer_fires() -> u64 {
    TIMER_FIRES.load(Ordering::Relaxed)
}

/// Arms the one-shot LAPIC timer to fire at `deadline_ns` (or as soon as it
/// can when that is past). Nothing to do when it is armed for just that
/// already: the loop asks before every halt, and reprogramming the LAPIC
/// is a device exit (a QEMU timer update) on each device read's path.
pub fn arm(deadline_ns: u64) {
    let Some(c) = CLOCK.get() else { return };
    // 0 stands for "none pending"; a deadline at 0 is as past as 1.
    let deadline_ns = deadline_ns.max(1);
    // Masked, so a timer interrupt arming in between cannot leave `ARMED`
    // naming another deadline than the LAPIC's.
    crate::interrupts::without(|| {
        if ARMED.swap(deadline_ns, Ordering::Relaxed) == deadline_ns {
            return;
        }
        let delta = deadline_ns.saturating_sub(now_ns());
        let ticks = c.lapic.ns_to_ticks(delta).clamp(1, u32::MAX as u64) as u32;
        lapic::timer_oneshot(TIMER_VECTOR, ticks);
    });
}

/// Sleeps (halted, not spinning) until `ns` have passed.
pub fn sleep_ns(ns: u64) {
    let deadline = now_ns().saturating_add(ns);
    crate::interrupts::without(|| {
        while now_ns() < deadline {
            arm(deadline);
            cpu::wait_for_interrupt();
        }
        lapic::timer_stop();
        ARMED.store(0, Ordering::Relaxed);
    });
}
