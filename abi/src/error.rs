//! The one error type of the crate: a [`Trap`] names the spec rule that was
//! broken. Messages reuse the wording the component-model conformance tests
//! (`assert_trap`) look for, so a runner can match on substrings.

use alloc::string::String;
use core::fmt;

use crate::concurrency::EndKind;

/// A canonical-ABI trap. Every `trap_if` of `definitions.py` that this crate
/// implements maps to exactly one variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trap {
    /// A guest pointer is not a multiple of the alignment of what it points to
    /// (`trap_if(ptr != align_to(ptr, alignment(...)))`).
    UnalignedPointer {
        what: &'static str,
        ptr: u64,
        align: u32,
    },
    /// `load_string_from_range`: `ptr + byte_length > len(memory)`.
    StringOutOfBounds {
        ptr: u64,
        byte_len: u64,
        mem_len: u64,
    },
    /// `load_list_from_range`: `ptr + length * elem_size > len(memory)`.
    ListOutOfBounds {
        ptr: u64,
        byte_len: u64,
        mem_len: u64,
    },
    /// Spilled parameters/results or a stream/future buffer out of bounds
    /// (`lift_flat_values`, `lower_flat_values`, `BufferGuestImpl`).
    OutOfBounds {
        what: &'static str,
        ptr: u64,
        byte_len: u64,
        mem_len: u64,
    },
    /// The pointer returned by `realloc` does not leave room for the bytes
    /// asked for.
    ReallocOutOfBounds {
        ptr: u64,
        byte_len: u64,
        mem_len: u64,
    },
    /// The pointer returned by `realloc` is not aligned as asked.
    ReallocUnaligned { ptr: u64, align: u32 },
    /// `trap_if(byte_length > MAX_STRING_BYTE_LENGTH)`.
    StringTooLong { byte_len: u64 },
    /// `trap_if(length * elem_size > MAX_LIST_BYTE_LENGTH)`.
    ListTooLong { byte_len: u64 },
    /// A stream/future buffer longer than `Buffer.MAX_LENGTH`.
    BufferTooLong { len: u64 },
    /// `convert_i32_to_char`: `i >= 0x110000` or a surrogate `0xD800..=0xDFFF`.
    InvalidChar(u32),
    /// The bytes of a UTF-8 string do not decode.
    InvalidUtf8,
    /// The bytes of a UTF-8 string end inside a multi-byte sequence.
    IncompleteUtf8,
    /// The code units of a UTF-16 string do not decode (lone surrogate).
    InvalidUtf16,
    /// `load_variant` / `lift_flat_variant`: `case_index >= len(cases)`.
    InvalidDiscriminant { index: u32, cases: u32 },
    /// Lowering a string or list needs the `realloc` canonical option.
    MissingRealloc,
    /// Lifting or lowering needs the `memory` canonical option.
    MissingMemory,
    /// `Table.get`: index out of range or an empty slot.
    UnknownHandle(u32),
    /// A table slot holds something other than what the built-in expects.
    WrongHandleType { index: u32, expected: &'static str },
    /// `trap_if(h.rt is not t.rt)`.
    ResourceTypeMismatch { index: u32 },
    /// `trap_if(h.num_lends != 0)` when removing an owned handle.
    OwnedResourceBorrowed { index: u32 },
    /// `trap_if(not h.own)` in `lift_own`.
    NotAnOwnHandle { index: u32 },
    /// `Table.add`: `trap_if(i > Table.MAX_LENGTH)`.
    TableFull,
    /// `Task.return_`/exit: `trap_if(self.num_borrows > 0)`.
    BorrowsRemain { count: u32 },
    /// `unpack_callback_result`: `trap_if(code > CallbackCode.MAX)`.
    UnsupportedCallbackCode(u32),
    /// `backpressure.inc` overflow or `backpressure.dec` underflow.
    Backpressure,
    /// `trap_if(not inst.may_leave)` at the start of a built-in (or a
    /// lowered call made while `may_leave` is false, e.g. from `post-return`).
    MayNotLeave { builtin: &'static str },
    /// `Store.lift`: `trap_if(not inst.may_enter_from(caller))`, or the
    /// instance (or an ancestor) trapped before and is poisoned.
    CannotEnter,
    /// `WaitableSet.drop`: `trap_if(len(self.elems) > 0)`.
    WaitableSetNotEmpty { index: u32 },
    /// `WaitableSet.drop`: `trap_if(self.num_waiting > 0)`.
    WaitableSetHasWaiters { index: u32 },
    /// `canon_waitable_join`: `trap_if(w.has_sync_waiter)`.
    SyncWaiter { index: u32 },
    /// `stream_copy`, `future_copy`, `cancel_copy`, `canon_subtask_cancel`:
    /// `trap_if(e.in_waitable_set() and not async_)`.
    SyncInWaitableSet { builtin: &'static str },
    /// `Subtask.drop`: `trap_if(not self.resolve_delivered())`.
    SubtaskNotResolved { index: u32 },
    /// `canon_subtask_cancel`: `trap_if(subtask.resolve_delivered())`.
    SubtaskResolveDelivered { index: u32 },
    /// `canon_subtask_cancel`: `trap_if(subtask.cancellation_requested)`.
    SubtaskCancelRequested { index: u32 },
    /// `stream_copy`/`future_copy`: `trap_if(e.state != CopyState.IDLE)`
    /// while a copy is in progress (`COPYING`/`CANCELLING_COPY`).
    ConcurrentCopy { kind: EndKind },
    /// `stream_copy`/`future_copy`: `trap_if(e.state != CopyState.IDLE)`
    /// once the end is `DONE`.
    CopyEndDone { kind: EndKind },
    /// `lift_async_value`: `trap_if(e.state != CopyState.IDLE)`, end `DONE`.
    LiftDone { kind: EndKind },
    /// `lift_async_value`: `trap_if(e.state != CopyState.IDLE)`, copying.
    LiftBusy { kind: EndKind },
    /// `lift_async_value`: `trap_if(e.in_waitable_set())`.
    LiftInWaitableSet { kind: EndKind },
    /// `CopyEnd.drop`: `trap_if(self.copying())`.
    DropBusy { kind: EndKind },
    /// `WritableFutureEnd.drop`: `trap_if(self.state != CopyState.DONE)`.
    FutureDropBeforeWrite,
    /// `SharedStreamImpl`/`SharedFutureImpl` `read`/`write`: `trap_if(inst
    /// is self.pending_inst and not none_or_number_type(self.t))`.
    IntraComponentCopy { stream: bool },
    /// `cancel_copy`: `trap_if(e.state != CopyState.COPYING or
    /// e.has_sync_waiter)`.
    CancelNotCopying { kind: EndKind },
    /// `Task.return_`: `trap_if(self.state == Task.State.RESOLVED)`.
    TaskAlreadyResolved,
    /// `canon_task_return`: `trap_if(result_type != task.ft.result)`.
    TaskReturnType,
    /// `canon_task_return`: `trap_if(not LiftOptions.equal(opts, task.opts))`.
    TaskReturnOptions,
    /// `canon_task_return` / `canon_task_cancel`:
    /// `trap_if(not task.opts.async_)`.
    NotAsyncTask { builtin: &'static str },
    /// `Task.cancel`: `trap_if(self.state != Task.State.CANCEL_DELIVERED)`.
    TaskCancelNotDelivered,
    /// `Task.unregister_thread` (last thread): `trap_if(self.state !=
    /// Task.State.RESOLVED)`: the task exited without `task.return`.
    TaskNotResolved,
    /// A task of a non-`async` function type blocked before returning (the
    /// conformance tests' rule; see [`crate::concurrency::Task::check_may_block`]).
    CannotBlockSync,
    /// `canon_lift` of a non-`async` type: `trap_if(not candidates)`; or the
    /// runtime's loop found nothing ready.
    Deadlock,
    /// `context.get`/`context.set` index beyond the thread's storage.
    ContextSlot { index: u32 },
    /// A value of this type cannot be lifted/lowered by this context.
    Unsupported(&'static str),
    /// A trap raised by guest code called from the ABI (e.g. inside `realloc`).
    Guest(String),
    /// Host-side misuse, not a guest trap: a [`crate::Value`] or core value
    /// that does not have the shape its type says (the spec `assert`s these).
    Mismatch(&'static str),
}

impl fmt::Display for Trap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trap::UnalignedPointer { what, ptr, align } => {
                write!(f, "unaligned pointer: {what} at {ptr:#x} is not {align}-byte aligned")
            }
            Trap::StringOutOfBounds { ptr, byte_len, mem_len } => write!(
                f,
                "string content out-of-bounds (string pointer/length out of bounds of memory): [{ptr:#x}, +{byte_len}) exceeds memory of {mem_len} bytes"
            ),
            Trap::ListOutOfBounds { ptr, byte_len, mem_len } => write!(
                f,
                "list content out-of-bounds: [{ptr:#x}, +{byte_len}) exceeds memory of {mem_len} bytes"
            ),
            Trap::OutOfBounds { what, ptr, byte_len, mem_len } => write!(
                f,
                "{what} pointer/length out of bounds of memory: [{ptr:#x}, +{byte_len}) exceeds {mem_len} bytes"
            ),
            Trap::ReallocOutOfBounds { ptr, byte_len, mem_len } => write!(
                f,
                "realloc return: beyond end of memory (list content out-of-bounds): [{ptr:#x}, +{byte_len}) exceeds {mem_len} bytes"
            ),
            Trap::ReallocUnaligned { ptr, align } => {
                write!(f, "realloc return: result not aligned (unaligned pointer {ptr:#x}, not {align}-byte aligned)")
            }
            Trap::StringTooLong { byte_len } => write!(
                f,
                "string byte length {byte_len} exceeds MAX_STRING_BYTE_LENGTH ({})",
                crate::strings::MAX_STRING_BYTE_LENGTH
            ),
            Trap::ListTooLong { byte_len } => write!(
                f,
                "list byte length {byte_len} exceeds MAX_LIST_BYTE_LENGTH ({})",
                crate::lift::MAX_LIST_BYTE_LENGTH
            ),
            Trap::BufferTooLong { len } => {
                write!(f, "stream/future buffer length {len} exceeds Buffer.MAX_LENGTH")
            }
            Trap::InvalidChar(i) => write!(
                f,
                "invalid `char` bit pattern: {i:#x} is a surrogate or above 0x10FFFF"
            ),
            Trap::InvalidUtf8 => f.write_str("invalid utf-8 in string content"),
            Trap::IncompleteUtf8 => {
                f.write_str("invalid utf-8 in string content: incomplete utf-8 byte sequence")
            }
            Trap::InvalidUtf16 => f.write_str("invalid utf-16 in string content (unpaired surrogate)"),
            Trap::InvalidDiscriminant { index, cases } => write!(
                f,
                "invalid variant discriminant: case {index} of a type with {cases} cases"
            ),
            Trap::MissingRealloc => f.write_str("lowering needs the `realloc` canonical option"),
            Trap::MissingMemory => f.write_str("lifting/lowering needs the `memory` canonical option"),
            Trap::UnknownHandle(i) => write!(f, "unknown handle index {i}"),
            Trap::WrongHandleType { index, expected } => write!(
                f,
                "handle index {index} used with the wrong type, expected {expected}"
            ),
            Trap::ResourceTypeMismatch { index } => write!(
                f,
                "handle index {index} used with the wrong type, expected guest-defined resource but found a different guest-defined resource"
            ),
            Trap::OwnedResourceBorrowed { index } => write!(
                f,
                "cannot remove owned resource while borrowed (handle index {index} has outstanding lends)"
            ),
            Trap::NotAnOwnHandle { index } => {
                write!(f, "handle index {index} is a borrow where an `own` handle was expected")
            }
            Trap::TableFull => f.write_str("handle table full (Table.MAX_LENGTH = 2^28 - 1)"),
            Trap::BorrowsRemain { count } => write!(
                f,
                "borrow handles still remain at the end of the call ({count} outstanding)"
            ),
            Trap::UnsupportedCallbackCode(c) => write!(f, "unsupported callback code {c}"),
            Trap::Backpressure => f.write_str("backpressure counter overflow or underflow"),
            Trap::MayNotLeave { builtin } => write!(
                f,
                "cannot leave component instance: `{builtin}` called while may_leave is false"
            ),
            Trap::CannotEnter => f.write_str("cannot enter component instance"),
            Trap::WaitableSetNotEmpty { index } => write!(
                f,
                "cannot drop waitable set with waitables still joined to it (handle index {index})"
            ),
            Trap::WaitableSetHasWaiters { index } => write!(
                f,
                "cannot drop waitable set with waiters (handle index {index})"
            ),
            Trap::SyncWaiter { index } => write!(
                f,
                "waitable.join: waitable (handle index {index}) has a synchronous waiter"
            ),
            Trap::SyncInWaitableSet { builtin } => write!(
                f,
                "waitable cannot be used synchronously while added to a waitable set (`{builtin}`)"
            ),
            Trap::SubtaskNotResolved { index } => write!(
                f,
                "cannot drop a subtask which has not yet resolved (subtask.drop of handle index {index})"
            ),
            Trap::SubtaskResolveDelivered { index } => write!(
                f,
                "subtask.cancel: subtask (handle index {index}) already resolved and its resolution delivered"
            ),
            Trap::SubtaskCancelRequested { index } => write!(
                f,
                "subtask.cancel: cancellation of subtask (handle index {index}) already requested"
            ),
            Trap::ConcurrentCopy { kind } => write!(
                f,
                "cannot have concurrent operations active on a future/stream (`{}.{}`)",
                kind.noun(),
                kind.verb()
            ),
            Trap::CopyEndDone { kind } => f.write_str(kind.done_message()),
            Trap::LiftDone { kind } => f.write_str(kind.lift_done_message()),
            Trap::LiftBusy { kind } => write!(
                f,
                "cannot lift {} while a read is in progress",
                kind.noun()
            ),
            Trap::LiftInWaitableSet { kind } => {
                write!(f, "cannot lift {} while it's in a waitable set", kind.noun())
            }
            Trap::DropBusy { kind } => write!(
                f,
                "cannot remove busy {n}: cannot drop busy {n} end while a {v} is in progress (`{n}.drop-{e}`)",
                n = kind.noun(),
                v = kind.verb(),
                e = if kind.is_readable() { "readable" } else { "writable" }
            ),
            Trap::FutureDropBeforeWrite => {
                f.write_str("cannot drop future write end without first writing a value")
            }
            Trap::IntraComponentCopy { stream } => write!(
                f,
                "cannot read from and write to intra-component {} of a non-numeric element type",
                if *stream { "stream" } else { "future" }
            ),
            Trap::CancelNotCopying { kind } => write!(
                f,
                "`{}.cancel-{}`: no {} in progress (or it has a synchronous waiter)",
                kind.noun(),
                kind.verb(),
                kind.verb()
            ),
            Trap::TaskAlreadyResolved => {
                f.write_str("task.return called more than once or after the task was cancelled")
            }
            Trap::TaskReturnType => {
                f.write_str("task.return: result type does not match the lifted function's result")
            }
            Trap::TaskReturnOptions => f.write_str(
                "task.return: canonical options (string-encoding, memory) differ from the lifted function's",
            ),
            Trap::NotAsyncTask { builtin } => {
                write!(f, "`{builtin}` called from a task not lifted with the `async` option")
            }
            Trap::TaskCancelNotDelivered => {
                f.write_str("task.cancel called without a cancellation having been delivered")
            }
            Trap::TaskNotResolved => {
                f.write_str("task exited without calling task.return or task.cancel")
            }
            Trap::CannotBlockSync => f.write_str("cannot block a synchronous task before returning"),
            Trap::Deadlock => f.write_str("deadlock detected: event loop cannot make further progress"),
            Trap::ContextSlot { index } => {
                write!(f, "context.get/context.set: slot index {index} out of range")
            }
            Trap::Unsupported(what) => write!(f, "unsupported in this context: {what}"),
            Trap::Guest(msg) => f.write_str(msg),
            Trap::Mismatch(what) => write!(f, "host value does not match its type: {what}"),
        }
    }
}

impl core::error::Error for Trap {}
