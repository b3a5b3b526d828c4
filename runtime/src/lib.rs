//! Wasm and component loading, the Cranelift JIT, instances, traps,
//! built-ins and the component task scheduler, generic over a Platform.
//!
//! Today: core Wasm 2.0 (no SIMD) plus exception handling (`exn`),
//! validated by wasmparser, translated to Cranelift IR and compiled to
//! relocation-free code reached through a vmctx; see [`Store`] for the
//! embedding API.
#![cfg_attr(not(any(test, feature = "hosted")), no_std)]

extern crate alloc;

pub mod blk;
pub mod compile;
pub mod component;
mod exn;
pub mod fiber;
#[cfg(any(test, feature = "hosted"))]
pub mod hosted;
pub mod instance;
mod libcalls;
pub mod module;
pub mod platform;
pub mod script;
mod stdin;
pub mod token_map;
mod translate;
pub mod trap;
pub mod vmctx;
pub mod wasi;

use alloc::string::{String, ToString};
use core::fmt;

pub use instance::{
    Extern, FuncId, GlobalId, InstanceId, InterruptHandle, MemoryId, Module, Store, TableId, TagId,
    Val,
};
pub use platform::Platform;
pub use trap::{Trap, TrapKind};

/// Why loading, linking or running failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// The binary is malformed or does not validate.
    Invalid(String),
    /// Valid Wasm this runtime does not implement yet.
    Unsupported(String),
    /// Cranelift rejected the generated IR (a translator bug).
    Compile(String),
    /// Imports do not match.
    Link(String),
    /// Out of memory, code memory or address space.
    Resource(String),
    /// Execution (including instantiation) trapped.
    Trap(Trap),
    /// A component-level trap; the message names the canonical ABI rule.
    Trapped(String),
    /// Wrong arguments from the embedder.
    Usage(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Invalid(m) => write!(f, "invalid module: {m}"),
            Error::Unsupported(m) => write!(f, "not supported yet: {m}"),
            Error::Compile(m) => write!(f, "compilation failed: {m}"),
            Error::Link(m) => write!(f, "unknown import / incompatible import type: {m}"),
            Error::Resource(m) => write!(f, "out of resources: {m}"),
            Error::Trap(t) => write!(f, "trap: {t}"),
            Error::Trapped(m) => write!(f, "trap: {m}"),
            Error::Usage(m) => write!(f, "{m}"),
        }
    }
}

impl From<Trap> for Error {
    fn from(t: Trap) -> Error {
        Error::Trap(t)
    }
}

pub(crate) fn module_err(e: wasmparser::BinaryReaderError) -> Error {
    Error::Invalid(e.to_string())
}

#[cfg(test)]
mod tests;
