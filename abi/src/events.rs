//! Codes and bit packings of the async ABI: event codes, callback codes,
//! subtask states, copy results/states and the packed words the built-ins
//! return (definitions.py: `EventCode`, `CallbackCode`,
//! `unpack_callback_result`, `Subtask.State`, `CopyResult`, `CopyState`,
//! `BLOCKED`, `canon_lower`'s async return, `stream_copy`'s
//! `packed_result`, `canon_{stream,future}_new`).

use crate::error::Trap;

/// `EventCode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum EventCode {
    None = 0,
    Subtask = 1,
    StreamRead = 2,
    StreamWrite = 3,
    FutureRead = 4,
    FutureWrite = 5,
    TaskCancelled = 6,
}

/// An `EventTuple`: `(code, p1, p2)`; `waitable-set.wait` returns `code` and
/// stores `p1`, `p2` as two u32 at the out-pointer (`unpack_event`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    pub code: EventCode,
    pub p1: u32,
    pub p2: u32,
}

impl Event {
    pub const NONE: Event = Event {
        code: EventCode::None,
        p1: 0,
        p2: 0,
    };
    pub const TASK_CANCELLED: Event = Event {
        code: EventCode::TaskCancelled,
        p1: 0,
        p2: 0,
    };
    /// The 8 bytes `unpack_event` stores at `ptr` (p1, p2 little-endian).
    pub fn payload_bytes(&self) -> [u8; 8] {
        let mut b = [0; 8];
        b[..4].copy_from_slice(&self.p1.to_le_bytes());
        b[4..].copy_from_slice(&self.p2.to_le_bytes());
        b
    }
}

/// `CallbackCode`: what an async-lifted callback asks for next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum CallbackCode {
    Exit = 0,
    Yield = 1,
    Wait = 2,
}

impl CallbackCode {
    /// `CallbackCode.MAX`.
    pub const MAX: u32 = 2;
}

/// `unpack_callback_result(packed)`: the low 4 bits are the code (trap if
/// above `MAX`), the rest the waitable-set index.
pub fn unpack_callback_result(packed: u32) -> Result<(CallbackCode, u32), Trap> {
    let code = match packed & 0xf {
        0 => CallbackCode::Exit,
        1 => CallbackCode::Yield,
        2 => CallbackCode::Wait,
        c => return Err(Trap::UnsupportedCallbackCode(c)),
    };
    Ok((code, packed >> 4))
}

/// The inverse of [`unpack_callback_result`]: `code | (waitable_set << 4)`.
pub fn pack_callback_result(code: CallbackCode, waitable_set: u32) -> u32 {
    debug_assert!(waitable_set <= crate::handles::MAX_LENGTH);
    code as u32 | (waitable_set << 4)
}

/// `Subtask.State`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum SubtaskState {
    Starting = 0,
    Started = 1,
    Returned = 2,
    CancelledBeforeStarted = 3,
    CancelledBeforeReturned = 4,
}

impl SubtaskState {
    /// `Subtask.resolved()`.
    pub fn resolved(self) -> bool {
        !matches!(self, SubtaskState::Starting | SubtaskState::Started)
    }
}

/// An async `canon lower` return value: `RETURNED` alone when the callee
/// finished synchronously, else `state | (subtask_index << 4)`.
pub fn pack_subtask_return(state: SubtaskState, subtask_index: u32) -> u32 {
    debug_assert!(subtask_index > 0 && subtask_index <= crate::handles::MAX_LENGTH);
    state as u32 | (subtask_index << 4)
}

/// Splits a value made by [`pack_subtask_return`].
pub fn unpack_subtask_return(packed: u32) -> (u32, u32) {
    (packed & 0xf, packed >> 4)
}

/// `CopyResult` of a stream/future copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum CopyResult {
    Completed = 0,
    Dropped = 1,
    Cancelled = 2,
}

/// `CopyState` of a stream/future end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CopyState {
    Idle = 1,
    Copying = 2,
    CancellingCopy = 3,
    Done = 4,
}

impl CopyState {
    /// `CopyEnd.copying()`.
    pub fn copying(self) -> bool {
        matches!(self, CopyState::Copying | CopyState::CancellingCopy)
    }
}

/// `BLOCKED`: what an async copy or cancel returns when it did not finish.
pub const BLOCKED: u32 = 0xffff_ffff;

/// `Buffer.MAX_LENGTH`: the most elements one stream read/write may ask for.
pub const BUFFER_MAX_LENGTH: u32 = (1 << 28) - 1;

/// `stream_event`'s payload: `result | (progress << 4)`.
pub fn pack_copy_result(result: CopyResult, progress: u32) -> u32 {
    debug_assert!(progress <= BUFFER_MAX_LENGTH);
    result as u32 | (progress << 4)
}

/// Splits a stream copy payload into `(result, progress)`.
pub fn unpack_copy_result(packed: u32) -> (u32, u32) {
    (packed & 0xf, packed >> 4)
}

/// `canon stream.new` / `future.new` result: `readable | (writable << 32)`.
pub fn pack_new_ends(readable: u32, writable: u32) -> u64 {
    u64::from(readable) | (u64::from(writable) << 32)
}

/// Event of a stream copy (`stream_event`): the end's state after it is
/// `DONE` when the other end dropped, else `IDLE`.
pub fn stream_event(
    code: EventCode,
    end: u32,
    result: CopyResult,
    progress: u32,
) -> (Event, CopyState) {
    let state = if result == CopyResult::Dropped {
        CopyState::Done
    } else {
        CopyState::Idle
    };
    (
        Event {
            code,
            p1: end,
            p2: pack_copy_result(result, progress),
        },
        state,
    )
}

/// Event of a future copy (`future_event`): payload is the bare result; the
/// end is `DONE` after `DROPPED` or `COMPLETED`, else `IDLE`.
pub fn future_event(code: EventCode, end: u32, result: CopyResult) -> (Event, CopyState) {
    let state = match result {
        CopyResult::Dropped | CopyResult::Completed => CopyState::Done,
        CopyResult::Cancelled => CopyState::Idle,
    };
    (
        Event {
            code,
            p1: end,
            p2: result as u32,
        },
        state,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callback_codes() {
        assert_eq!(unpack_callback_result(0), Ok((CallbackCode::Exit, 0)));
        assert_eq!(unpack_callback_result(1), Ok((CallbackCode::Yield, 0)));
        assert_eq!(
            unpack_callback_result(2 | (5 << 4)),
            Ok((CallbackCode::Wait, 5))
        );
        assert_eq!(
            unpack_callback_result(3),
            Err(Trap::UnsupportedCallbackCode(3))
        );
        assert_eq!(
            unpack_callback_result(0xf | 0x10),
            Err(Trap::UnsupportedCallbackCode(0xf))
        );
        assert!(alloc::format!("{}", Trap::UnsupportedCallbackCode(3))
            .contains("unsupported callback code"));
        assert_eq!(pack_callback_result(CallbackCode::Wait, 7), 0x72);
        assert_eq!(
            unpack_callback_result(pack_callback_result(
                CallbackCode::Wait,
                crate::handles::MAX_LENGTH
            )),
            Ok((CallbackCode::Wait, crate::handles::MAX_LENGTH))
        );
    }

    #[test]
    fn codes_match_the_spec() {
        assert_eq!(EventCode::None as u32, 0);
        assert_eq!(EventCode::Subtask as u32, 1);
        assert_eq!(EventCode::StreamRead as u32, 2);
        assert_eq!(EventCode::StreamWrite as u32, 3);
        assert_eq!(EventCode::FutureRead as u32, 4);
        assert_eq!(EventCode::FutureWrite as u32, 5);
        assert_eq!(EventCode::TaskCancelled as u32, 6);
        assert_eq!(SubtaskState::Returned as u32, 2);
        assert_eq!(SubtaskState::CancelledBeforeReturned as u32, 4);
        assert!(SubtaskState::CancelledBeforeStarted.resolved());
        assert!(!SubtaskState::Started.resolved());
        assert_eq!(CopyResult::Cancelled as u32, 2);
        assert!(CopyState::CancellingCopy.copying());
        assert!(!CopyState::Done.copying());
    }

    #[test]
    fn packings() {
        assert_eq!(pack_subtask_return(SubtaskState::Started, 3), 0x31);
        assert_eq!(unpack_subtask_return(0x31), (1, 3));
        assert_eq!(pack_copy_result(CopyResult::Completed, 5), 0x50);
        assert_eq!(pack_copy_result(CopyResult::Dropped, 0), 1);
        assert_eq!(unpack_copy_result(0x52), (2, 5));
        assert_ne!(
            pack_copy_result(CopyResult::Cancelled, BUFFER_MAX_LENGTH),
            BLOCKED
        );
        assert_eq!(pack_new_ends(2, 3), 0x3_0000_0002);
        let (e, s) = stream_event(EventCode::StreamRead, 4, CopyResult::Dropped, 9);
        assert_eq!(
            (e.code, e.p1, e.p2, s),
            (EventCode::StreamRead, 4, 0x91, CopyState::Done)
        );
        let (e, s) = future_event(EventCode::FutureWrite, 4, CopyResult::Cancelled);
        assert_eq!((e.p2, s), (2, CopyState::Idle));
        assert_eq!(
            Event {
                code: EventCode::Subtask,
                p1: 1,
                p2: 2
            }
            .payload_bytes(),
            [1, 0, 0, 0, 2, 0, 0, 0]
        );
    }
}
