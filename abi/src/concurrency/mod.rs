//! The pure state machines of the async ABI (definitions.py "Concurrency",
//! "Waitable State", "Subtask State", "Stream State", "Future State" and the
//! 🔀 built-ins), minus everything that runs Wasm or picks what runs next:
//! the runtime owns threads, the one event loop and calls into guests, and
//! asks these types what is allowed and what is ready.
//!
//! - [`shared`]: `SharedStreamImpl`/`SharedFutureImpl` ([`SharedStream`],
//!   [`SharedFuture`]), their arena [`SharedStore`], the [`Buffer`] and
//!   element-copy ([`CopyElems`]) traits, [`Notice`]s to a pending side
//! - [`waitable`]: `Waitable`, `WaitableSet`, the [`PendingEvent`] kinds
//! - [`subtask`]: the `Subtask` of an async call
//! - [`task`]: the `Task` state, borrows, `task.return`/`task.cancel`
//!   rules, context slots, cancellation requests
//! - [`instance`]: `ComponentInstance` ([`Instance`]): flags, backpressure,
//!   the one handle table ([`Handle`]) and the `canon` built-ins on it

pub mod instance;
pub mod shared;
pub mod subtask;
pub mod task;
pub mod waitable;

#[cfg(test)]
mod tests;

/// The runtime's id of a component instance.
pub type InstanceId = u32;

pub use instance::{
    enter_from, entering_set, leave_to, may_enter_from, self_and_ancestors, CopyCall, CopyEnd,
    ElemHandles, EndKind, Handle, Instance, InstanceHandles, SubtaskCancel,
};
pub use shared::{
    copy_guest_values, none_or_number_type, Buffer, Copied, CopyElems, CopyElemsIn, CopyStep,
    CountOnly, HostBuffer, Notice, SharedFuture, SharedStore, SharedStream, Side,
};
pub use subtask::Subtask;
pub use task::{CancelRequest, LiftOptions, Task, TaskState, CONTEXT_SLOTS};
pub use waitable::{PendingEvent, Waitable, WaitableSet};
