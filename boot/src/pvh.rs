//! PVH boot protocol: the ELF note, the 32-bit entry and `hvm_start_info`.

use core::arch::global_asm;
use ringos_kernel::boot_info::{BootInfo, MemoryKind, MemoryRegion, MAX_CMDLINE, MAX_REGIONS};

/// `hvm_start_info.magic` (xen/include/public/arch-x86/hvm/start_info.h).
const HVM_START_MAGIC: u32 = 0x336e_c578;

/// Xen's `hvm_start_info`, as the loader leaves it in guest memory.
#[repr(C)]
struct HvmStartInfo {
    magic: u32,
    version: u32,
    flags: u32,
    nr_modules: u32,
    modlist_paddr: u64,
    cmdline_paddr: u64,
    rsdp_paddr: u64,
    // version >= 1:
    memmap_paddr: u64,
    memmap_entries: u32,
    reserved: u32,
}

/// `hvm_memmap_table_entry`; types follow the E820 numbering.
#[repr(C)]
struct HvmMemmapEntry {
    addr: u64,
    size: u64,
    kind: u32,
    reserved: u32,
}

global_asm!(
    r#"
    .section .note.pvh, "a", @note
    .balign 4
    .long 4             /* namesz: "Xen\0" */
    .long 8             /* descsz: a 64-bit address */
    .long 18            /* XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .balign 4
    .quad pvh_start32
    .balign 4

    .section .bss.boot_page_tables, "aw", @nobits
    .balign 4096
boot_pml4: .skip 4096
boot_pdpt: .skip 4096
boot_pd:   .skip 4096 * 4      /* 4 x 512 x 2 MiB = 4 GiB */

    .section .rodata.boot_gdt, "a"
    .balign 16
boot_gdt:
    .quad 0
    .quad 0x00af9a000000ffff   /* 0x08: 64-bit code */
    .quad 0x00cf92000000ffff   /* 0x10: data */
boot_gdt_end:
boot_gdt_ptr:
    .word boot_gdt_end - boot_gdt - 1
    .quad boot_gdt

    .section .boot.text, "ax"
    .code32
    .global pvh_start32
pvh_start32:
    cli
    cld
    mov %ebx, %esi                      /* keep hvm_start_info */

    /* Zero .bss (it holds the page tables and the stack). */
    mov $__bss_start, %edi
    mov $__bss_end, %ecx
    sub %edi, %ecx
    xor %eax, %eax
    rep stosb

    /* PML4[0] -> PDPT; PDPT[0..4] -> the four page directories. */
    mov $boot_pdpt, %eax
    or $0x3, %eax                       /* present | writable */
    mov %eax, boot_pml4
    mov $boot_pd, %eax
    or $0x3, %eax
    mov $boot_pdpt, %edi
    mov $4, %ecx
1:  mov %eax, (%edi)
    add $4096, %eax
    add $8, %edi
    loop 1b

    /* 2048 2 MiB pages: physical 0 .. 4 GiB, identity. */
    mov $boot_pd, %edi
    xor %ecx, %ecx                      /* page index */
2:  mov %ecx, %eax
    shl $21, %eax                       /* low 32 bits of the address */
    or $0x83, %eax                      /* present | writable | huge */
    mov %eax, (%edi,%ecx,8)
    mov %ecx, %eax
    shr $11, %eax                       /* high bits: index >> 11 */
    mov %eax, 4(%edi,%ecx,8)
    inc %ecx
    cmp $2048, %ecx
    jne 2b

    /* CR4.PAE, CR3, EFER.LME|NXE, then CR0.PG|WP|PE: long mode. */
    mov %cr4, %eax
    or $0x20, %eax
    mov %eax, %cr4
    mov $boot_pml4, %eax
    mov %eax, %cr3
    mov $0xc0000080, %ecx
    rdmsr
    or $0x900, %eax
    wrmsr
    mov %cr0, %eax
    or $0x80010001, %eax
    mov %eax, %cr0

    lgdt boot_gdt_ptr
    ljmp $0x08, $pvh_start64

    .code64
pvh_start64:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    xor %ax, %ax
    mov %ax, %fs
    mov %ax, %gs
    lea __stack_top(%rip), %rsp
    xor %ebp, %ebp
    mov %esi, %edi                      /* arg 0: hvm_start_info (zero-extended) */
    call pvh_rust_entry
3:  hlt
    jmp 3b
"#,
    options(att_syntax)
);

/// Stage where the BootInfo is built; it lives in .bss because the kernel
/// keeps a `&'static BootInfo`.
static mut BOOT_INFO: BootInfo = BootInfo::EMPTY;

/// Called by `pvh_start64` on the boot stack, identity-mapped, interrupts off.
#[no_mangle]
extern "C" fn pvh_rust_entry(start_info_paddr: u64) -> ! {
    // SAFETY: runs once, single-threaded, before anything else reads BOOT_INFO.
    let info = unsafe { &mut *core::ptr::addr_of_mut!(BOOT_INFO) };
    // SAFETY: the loader passed the physical address of hvm_start_info in
    // %ebx; the first 4 GiB are identity-mapped, so it is readable as is.
    // The magic is checked before any other field is trusted.
    let start = unsafe { &*(start_info_paddr as *const HvmStartInfo) };
    if start.magic != HVM_START_MAGIC {
        ringos_kernel::early_fail("not booted by a PVH loader (bad hvm_start_info magic)");
    }
    if start.version >= 1 && start.memmap_paddr != 0 {
        let n = (start.memmap_entries as usize).min(MAX_REGIONS);
        for i in 0..n {
            // SAFETY: the loader's table has memmap_entries entries at
            // memmap_paddr (identity-mapped); we read at most MAX_REGIONS.
            let e = unsafe { &*(start.memmap_paddr as *const HvmMemmapEntry).add(i) };
            info.push_region(MemoryRegion {
                start: e.addr,
                len: e.size,
                kind: MemoryKind::from_e820(e.kind),
            });
        }
    }
    if start.cmdline_paddr != 0 {
        let mut len = 0;
        // SAFETY: a NUL-terminated string at cmdline_paddr; we stop at
        // MAX_CMDLINE bytes whatever the loader put there.
        while len < MAX_CMDLINE && unsafe { *((start.cmdline_paddr as *const u8).add(len)) } != 0 {
            len += 1;
        }
        // SAFETY: `len` bytes were just read from that address.
        let bytes = unsafe { core::slice::from_raw_parts(start.cmdline_paddr as *const u8, len) };
        info.set_cmdline(bytes);
    }
    info.rsdp = start.rsdp_paddr;
    info.start_info = (
        start_info_paddr,
        core::mem::size_of::<HvmStartInfo>() as u64,
    );
    ringos_kernel::main(info)
}
