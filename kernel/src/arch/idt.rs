//! The IDT and the assembly entry stubs for every vector the kernel uses.
//!
//! Each stub pushes an error code (0 where the CPU pushes none) and its
//! vector number, then jumps to `trap_common`, which saves the general
//! registers into a [`TrapFrame`] and calls `trap_dispatch`. Vectors:
//! 0..=31 CPU exceptions, 32..=47 the (masked) legacy PIC, 48..=63 device and
//! timer interrupts, 255 the LAPIC spurious vector.

use super::gdt;
use core::arch::global_asm;
use core::mem::size_of;

/// Saved state of the interrupted code; `trap_common` builds it on the stack.
#[repr(C)]
#[derive(Debug)]
pub struct TrapFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    pub vector: u64,
    pub error_code: u64,
    // Pushed by the CPU:
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

macro_rules! trap_stubs {
    ($($vec:literal $kind:ident),* $(,)?) => {
        global_asm!(concat!(
            ".section .text.trap_stubs, \"ax\"\n",
            $(
                ".balign 16\n",
                "trap_stub_", stringify!($vec), ":\n",
                trap_stubs!(@errcode $kind),
                "pushq $", stringify!($vec), "\n",
                "jmp trap_common\n",
            )*
            ".section .rodata.trap_stub_table, \"a\"\n",
            ".balign 8\n",
            ".global trap_stub_table\n",
            "trap_stub_table:\n",
            $( ".quad ", stringify!($vec), ", trap_stub_", stringify!($vec), "\n", )*
            ".global trap_stub_table_end\n",
            "trap_stub_table_end:\n",
        ), options(att_syntax));
    };
    (@errcode err) => { "" };
    (@errcode none) => { "pushq $0\n" };
}

// Exceptions that push an error code: 8, 10-14, 17, 21, 29, 30.
trap_stubs! {
    0 none, 1 none, 2 none, 3 none, 4 none, 5 none, 6 none, 7 none,
    8 err, 9 none, 10 err, 11 err, 12 err, 13 err, 14 err, 15 none,
    16 none, 17 err, 18 none, 19 none, 20 none, 21 err, 22 none, 23 none,
    24 none, 25 none, 26 none, 27 none, 28 none, 29 err, 30 err, 31 none,
    32 none, 33 none, 34 none, 35 none, 36 none, 37 none, 38 none, 39 none,
    40 none, 41 none, 42 none, 43 none, 44 none, 45 none, 46 none, 47 none,
    48 none, 49 none, 50 none, 51 none, 52 none, 53 none, 54 none, 55 none,
    56 none, 57 none, 58 none, 59 none, 60 none, 61 none, 62 none, 63 none,
    255 none,
}

global_asm!(
    r#"
    .section .text.trap_common, "ax"
trap_common:
    push %rax
    push %rbx
    push %rcx
    push %rdx
    push %rsi
    push %rdi
    push %rbp
    push %r8
    push %r9
    push %r10
    push %r11
    push %r12
    push %r13
    push %r14
    push %r15
    /* The CPU aligned the stack to 16 before its 5 pushes; with the 17
       pushes above the frame is 176 bytes, so %rsp is 16-aligned here. */
    mov %rsp, %rdi
    cld
    call trap_dispatch
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %r11
    pop %r10
    pop %r9
    pop %r8
    pop %rbp
    pop %rdi
    pop %rsi
    pop %rdx
    pop %rcx
    pop %rbx
    pop %rax
    add $16, %rsp       /* vector and error code */
    iretq
"#,
    options(att_syntax)
);

extern "C" {
    static trap_stub_table: [u64; 0];
    static trap_stub_table_end: [u64; 0];
}

#[repr(C)]
#[derive(Clone, Copy)]
struct Gate {
    offset_low: u16,
    selector: u16,
    ist: u8,
    type_attr: u8,
    offset_mid: u16,
    offset_high: u32,
    reserved: u32,
}

const MISSING: Gate = Gate {
    offset_low: 0,
    selector: 0,
    ist: 0,
    type_attr: 0,
    offset_mid: 0,
    offset_high: 0,
    reserved: 0,
};

static mut IDT: [Gate; 256] = [MISSING; 256];

fn ist_for(vector: u64) -> u8 {
    match vector {
        8 => gdt::IST_DOUBLE_FAULT,
        14 => gdt::IST_PAGE_FAULT,
        2 | 18 => gdt::IST_NMI_MCE,
        _ => 0,
    }
}

/// Fills the IDT from the stub table and loads it.
pub fn init() {
    // SAFETY: the table bounds are symbols emitted by `trap_stubs!` above,
    // around an array of (vector, address) pairs of u64.
    let table = unsafe {
        let start = core::ptr::addr_of!(trap_stub_table) as *const [u64; 2];
        let end = core::ptr::addr_of!(trap_stub_table_end) as *const [u64; 2];
        core::slice::from_raw_parts(start, end.offset_from(start) as usize)
    };
    // SAFETY: runs once on the boot CPU with interrupts masked.
    let idt = unsafe { &mut *core::ptr::addr_of_mut!(IDT) };
    for &[vector, addr] in table {
        idt[vector as usize] = Gate {
            offset_low: addr as u16,
            selector: gdt::KERNEL_CODE,
            ist: ist_for(vector),
            type_attr: 0x8e, // present, DPL 0, 64-bit interrupt gate
            offset_mid: (addr >> 16) as u16,
            offset_high: (addr >> 32) as u32,
            reserved: 0,
        };
    }
    #[repr(C, packed)]
    struct Pointer {
        limit: u16,
        base: u64,
    }
    let ptr = Pointer {
        limit: (size_of::<[Gate; 256]>() - 1) as u16,
        base: idt.as_ptr() as u64,
    };
    // SAFETY: the IDT is static and every present gate points at a stub.
    unsafe { core::arch::asm!("lidt [{}]", in(reg) &ptr, options(readonly, nostack)) };
}

/// Called by `trap_common` for every interrupt and exception.
#[no_mangle]
extern "C" fn trap_dispatch(frame: &mut TrapFrame) {
    crate::interrupts::dispatch(frame);
}
