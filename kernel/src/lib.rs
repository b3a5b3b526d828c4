//! ringos: the library OS under the WebAssembly runtime.
//!
//! `start::main` is where the boot stage hands over. The hardware parts
//! build only for the bare-metal target; the pure parts (boot info, the
//! frame bitmap, clock arithmetic) are unit-tested on the host.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod boot_info;
pub mod mem;
mod mem_builtins;
pub mod payload;
pub mod time;

#[cfg(target_os = "none")]
pub mod arch;
#[cfg(target_os = "none")]
pub mod console;
#[cfg(target_os = "none")]
pub mod count_marks;
#[cfg(target_os = "none")]
pub mod fault;
#[cfg(target_os = "none")]
pub mod interrupts;
#[cfg(target_os = "none")]
pub mod io;
#[cfg(target_os = "none")]
mod selftest;
#[cfg(target_os = "none")]
mod start;
#[cfg(target_os = "none")]
pub mod wasm;
#[cfg(target_os = "none")]
pub use start::{early_fail, main};
