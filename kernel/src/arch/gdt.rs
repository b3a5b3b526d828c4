//! The kernel's GDT and TSS. Long mode ignores segmentation; the TSS matters
//! for its interrupt stacks (IST): faults that may come from a broken stack
//! (#DF, #PF on the stack guard page, NMI, #MC) switch to a known-good one.

use core::mem::size_of;
use core::ptr::addr_of;

pub const KERNEL_CODE: u16 = 0x08;
pub const KERNEL_DATA: u16 = 0x10;
const TSS_SELECTOR: u16 = 0x18;

/// IST slots (1-based, as the IDT encodes them).
pub const IST_DOUBLE_FAULT: u8 = 1;
pub const IST_PAGE_FAULT: u8 = 2;
pub const IST_NMI_MCE: u8 = 3;

const IST_STACK_SIZE: usize = 16 * 1024;

#[repr(C, packed(4))]
struct TaskStateSegment {
    reserved0: u32,
    rsp: [u64; 3],
    reserved1: u64,
    ist: [u64; 7],
    reserved2: u64,
    reserved3: u16,
    iomap_base: u16,
}

#[repr(C, align(16))]
struct IstStacks([[u8; IST_STACK_SIZE]; 3]);

static mut IST_STACKS: IstStacks = IstStacks([[0; IST_STACK_SIZE]; 3]);

static mut TSS: TaskStateSegment = TaskStateSegment {
    reserved0: 0,
    rsp: [0; 3],
    reserved1: 0,
    ist: [0; 7],
    reserved2: 0,
    reserved3: 0,
    iomap_base: size_of::<TaskStateSegment>() as u16,
};

static mut GDT: [u64; 5] = [
    0,
    0x00af_9a00_0000_ffff, // 64-bit code, DPL 0
    0x00cf_9200_0000_ffff, // data
    0,                     // TSS, low half (filled in at init)
    0,                     // TSS, high half
];

#[repr(C, packed)]
struct DescriptorPointer {
    limit: u16,
    base: u64,
}

/// Loads the GDT, reloads every segment register and the task register.
pub fn init() {
    // SAFETY: runs once on the boot CPU before interrupts are enabled; the
    // statics are only written here.
    unsafe {
        let stacks = &raw mut IST_STACKS;
        let tss = &raw mut TSS;
        for i in 0..3 {
            let top = (*stacks).0[i].as_ptr() as u64 + IST_STACK_SIZE as u64;
            (*tss).ist[i] = top & !0xf;
        }
        let base = tss as u64;
        let limit = (size_of::<TaskStateSegment>() - 1) as u64;
        let gdt = &raw mut GDT;
        // 64-bit available TSS (type 9), present.
        (*gdt)[3] = (limit & 0xffff)
            | ((base & 0xff_ffff) << 16)
            | (0x89 << 40)
            | (((limit >> 16) & 0xf) << 48)
            | (((base >> 24) & 0xff) << 56);
        (*gdt)[4] = base >> 32;

        let ptr = DescriptorPointer {
            limit: (size_of::<[u64; 5]>() - 1) as u16,
            base: addr_of!(GDT) as u64,
        };
        core::arch::asm!(
            "lgdt [{ptr}]",
            // Reload CS with a far return.
            "push {code}",
            "lea {tmp}, [rip + 2f]",
            "push {tmp}",
            "retfq",
            "2:",
            "mov ds, {data:x}",
            "mov es, {data:x}",
            "mov ss, {data:x}",
            "ltr {tss:x}",
            ptr = in(reg) &ptr,
            code = const KERNEL_CODE as u64,
            data = in(reg) KERNEL_DATA as u64,
            tss = in(reg) TSS_SELECTOR as u64,
            tmp = out(reg) _,
        );
    }
}
