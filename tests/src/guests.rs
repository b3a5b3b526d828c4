//! The guest components of `tests/guests`; built by the CLI's crate
//! (`ringos::guests`, which `ringos probe blk --component` also uses).
pub use ringos::guests::*;
