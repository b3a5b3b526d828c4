//! Benchmarks: programs (not timed tests) run side by side with a peer
//! runtime, reported as a table (stdout) and JSON (`target/bench/<name>.json`)
//! with medians, p99 and ratios (DESIGN 11).
//!
//! - [`jit`]: the JIT's compile and run time against wasmtime (`bench jit`)
//!
//! The table, JSON and statistics helpers are shared with the probes:
//! [`crate::probe::Table`], [`crate::probe::write_json`],
//! [`crate::stats::Summary`].

pub mod calls;
pub mod jit;
