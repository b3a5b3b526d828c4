//! The guest's entry point, read top to bottom:
//!
//! 1. `pvh_start32` (32-bit protected mode, paging off) is where a PVH loader
//!    (QEMU `-kernel`, Firecracker, Cloud Hypervisor) jumps, with `%ebx` =
//!    physical address of `hvm_start_info`. The ELF note below tells it so.
//! 2. It zeroes `.bss`, builds early page tables that identity-map the first
//!    4 GiB with 2 MiB pages, enables PAE + long mode + NX, and far-jumps to
//!    64-bit code.
//! 3. `pvh_start64` sets up the boot stack and calls `pvh::pvh_rust_entry`,
//!    which turns `hvm_start_info` into a [`BootInfo`](ringos_kernel::boot_info::BootInfo) and hands over to the
//!    kernel. The kernel then replaces these page tables with its own.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod pvh;

/// On the host this binary is an empty stub, so the workspace builds there.
#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("ringos-kernel is the guest image; build it with `ringos boot` (target x86_64-unknown-none)");
    std::process::exit(2);
}
