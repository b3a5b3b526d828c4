//! The Component Model canonical ABI: types, layout, lift/lower, handle
//! tables, and the codes of the async ABI. Knows nothing of x86 or virtio.
//!
//! The executable reference is the spec's
//! `design/mvp/canonical-abi/definitions.py` (WebAssembly/component-model
//! at 6d281648bd89caf885a7adcc412962dbd2425ab7); function names in the docs
//! refer to it.
//!
//! - [`types`]: value types and `despecialize`
//! - [`layout`]: `alignment`, `elem_size`, `flatten_type`, `flatten_functype`
//! - [`values`]: [`Value`], [`WasmString`], flat [`CoreVal`]s
//! - [`memory`]: the runtime's side: [`Memory`], [`Realloc`], [`Handles`], [`Cx`]
//! - [`lift`] / [`lower`]: `load`/`lift_flat` and `store`/`lower_flat`
//! - [`strings`]: string lifting and transcoding lowering
//! - [`handles`]: `Table` and resource handles
//! - [`events`]: event/callback/subtask/copy codes and packings
//! - [`buffers`]: validated guest buffers of stream/future copies
//! - [`concurrency`]: async state machines: streams/futures ([`SharedStream`],
//!   [`SharedFuture`]), waitables and sets, [`Subtask`], [`Task`], and the
//!   per-instance state and handle table ([`Instance`], [`Handle`])
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod buffers;
pub mod concurrency;
pub mod error;
pub mod events;
pub mod handles;
pub mod layout;
pub mod lift;
pub mod lower;
pub mod memory;
pub mod strings;
pub mod types;
pub mod values;

#[cfg(test)]
mod tests;

pub use concurrency::{
    EndKind, Handle, Instance, SharedFuture, SharedStore, SharedStream, Subtask, Task,
};
pub use error::Trap;
pub use layout::{CoreType, MAX_FLAT_ASYNC_PARAMS, MAX_FLAT_PARAMS, MAX_FLAT_RESULTS};
pub use memory::{Cx, Handles, Memory, NoHandles, Options, Realloc};
pub use types::{AddrType, FuncType, ResourceType, ValType};
pub use values::{CoreVal, CoreValueIter, StringEncoding, Value, WasmString};
