//! CPU identification and control registers.

use core::arch::x86_64::{__cpuid, __cpuid_count, CpuidResult};

pub fn cpuid(leaf: u32) -> CpuidResult {
    __cpuid(leaf)
}

pub fn cpuid_count(leaf: u32, sub: u32) -> CpuidResult {
    __cpuid_count(leaf, sub)
}

#[inline]
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC has no side effects; CR4.TSD is left clear.
    unsafe { core::arch::x86_64::_rdtsc() }
}

pub fn read_cr2() -> u64 {
    let v: u64;
    // SAFETY: reading CR2 has no side effects.
    unsafe {
        core::arch::asm!("mov {}, cr2", out(reg) v, options(nomem, nostack, preserves_flags))
    };
    v
}

pub fn read_cr3() -> u64 {
    let v: u64;
    // SAFETY: reading CR3 has no side effects.
    unsafe {
        core::arch::asm!("mov {}, cr3", out(reg) v, options(nomem, nostack, preserves_flags))
    };
    v
}

/// # Safety
/// `pml4` must be the physical address of a page table hierarchy that maps
/// the running code, its stack and everything it is about to touch.
pub unsafe fn write_cr3(pml4: u64) {
    // SAFETY: forwarded to the caller.
    unsafe { core::arch::asm!("mov cr3, {}", in(reg) pml4, options(nostack, preserves_flags)) };
}

/// # Safety
/// The MSR must exist and the value must be valid for it.
pub unsafe fn wrmsr(msr: u32, value: u64) {
    // SAFETY: forwarded to the caller.
    unsafe {
        core::arch::asm!("wrmsr", in("ecx") msr, in("eax") value as u32, in("edx") (value >> 32) as u32,
            options(nostack, preserves_flags))
    };
}

/// # Safety
/// The MSR must exist (else #GP).
pub unsafe fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: forwarded to the caller.
    unsafe {
        core::arch::asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags))
    };
    ((hi as u64) << 32) | lo as u64
}

/// Lets generated code use SSE: CR0.EM=0, CR0.MP=1, CR4.OSFXSR|OSXMMEXCPT.
/// The kernel itself is built soft-float and never touches xmm registers, so
/// interrupts need not save them.
pub fn enable_sse() {
    // SAFETY: only the FPU/SSE control bits change; the kernel does not use
    // x87 or SSE state itself.
    unsafe {
        core::arch::asm!(
            "mov {t}, cr0",
            "and {t}, ~(1 << 2)",      // EM
            "or {t}, (1 << 1)",        // MP
            "mov cr0, {t}",
            "mov {t}, cr4",
            "or {t}, (3 << 9)",        // OSFXSR | OSXMMEXCPT
            "mov cr4, {t}",
            t = out(reg) _,
            options(nostack)
        );
    }
}

pub fn interrupts_enable() {
    // SAFETY: the IDT and every handler are installed before this is called.
    unsafe { core::arch::asm!("sti", options(nomem, nostack)) };
}

pub fn interrupts_disable() {
    // SAFETY: masking interrupts is always allowed in ring 0.
    unsafe { core::arch::asm!("cli", options(nomem, nostack)) };
}

/// Enables interrupts and halts until the next one, with no window between
/// the two (STI takes effect after the next instruction), then masks them
/// again so the caller re-checks its condition without a race.
pub fn wait_for_interrupt() {
    // SAFETY: as interrupts_enable.
    unsafe { core::arch::asm!("sti", "hlt", "cli", options(nomem, nostack)) };
}

pub fn halt_forever() -> ! {
    loop {
        // SAFETY: stops the CPU until an interrupt; with them masked, for good.
        unsafe { core::arch::asm!("cli", "hlt", options(nomem, nostack)) };
    }
}

/// The CPU's brand string (CPUID 0x80000002..4), or its vendor.
pub fn brand(buf: &mut [u8; 48]) -> &str {
    if cpuid(0x8000_0000).eax >= 0x8000_0004 {
        for (i, leaf) in (0x8000_0002u32..=0x8000_0004).enumerate() {
            let r = cpuid(leaf);
            for (j, reg) in [r.eax, r.ebx, r.ecx, r.edx].iter().enumerate() {
                buf[i * 16 + j * 4..i * 16 + j * 4 + 4].copy_from_slice(&reg.to_le_bytes());
            }
        }
    } else {
        let r = cpuid(0);
        for (j, reg) in [r.ebx, r.edx, r.ecx].iter().enumerate() {
            buf[j * 4..j * 4 + 4].copy_from_slice(&reg.to_le_bytes());
        }
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(48);
    core::str::from_utf8(&buf[..end]).unwrap_or("?").trim()
}

/// `Some(signature)` under a hypervisor that says so in CPUID 0x40000000.
pub fn hypervisor_signature() -> Option<[u8; 12]> {
    if cpuid(1).ecx & (1 << 31) == 0 {
        return None;
    }
    let r = cpuid(0x4000_0000);
    let mut sig = [0u8; 12];
    sig[0..4].copy_from_slice(&r.ebx.to_le_bytes());
    sig[4..8].copy_from_slice(&r.ecx.to_le_bytes());
    sig[8..12].copy_from_slice(&r.edx.to_le_bytes());
    Some(sig)
}

/// Whether the CPU has RDRAND (CPUID.01H:ECX bit 30).
pub fn has_rdrand() -> bool {
    cpuid(1).ecx & (1 << 30) != 0
}

/// A hardware random number, retrying RDRAND's transient failures a few
/// times (`None` if it keeps failing). Call only if [`has_rdrand`].
pub fn rdrand64() -> Option<u64> {
    // RDRAND only writes `v`; the target feature makes the call unsafe
    // for callers, who check the CPU has it.
    #[target_feature(enable = "rdrand")]
    fn step(v: &mut u64) -> bool {
        core::arch::x86_64::_rdrand64_step(v) == 1
    }
    let mut v = 0;
    // SAFETY: callers check `has_rdrand` first (the target feature).
    (0..10).any(|_| unsafe { step(&mut v) }).then_some(v)
}
