//! Memory: physical frames, the kernel's page tables and the heap.
pub mod frames;
#[cfg(target_os = "none")]
mod heap;
#[cfg(target_os = "none")]
pub mod paging;
#[cfg(target_os = "none")]
mod setup;
#[cfg(target_os = "none")]
pub use setup::*;
