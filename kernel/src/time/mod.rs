//! Time: a monotonic clock from the TSC, and timer deadlines on the LAPIC.
#[cfg(target_os = "none")]
mod clock;
pub mod scale;
#[cfg(target_os = "none")]
pub use clock::*;
