//! `Waitable` and `WaitableSet`: the pending-event slot every subtask and
//! stream/future end has, and the sets `waitable-set.wait`/`poll` and a
//! callback's `WAIT` block on. Sets hold handle indices of the same
//! instance's table; [`super::Instance`] implements the operations that
//! touch both a waitable and its set.

use alloc::vec::Vec;

use crate::events::CopyResult;

/// The spec's `pending_event` closure, as data: what
/// [`super::Instance::get_pending_event`] computes the `EventTuple` from
/// when the event is delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PendingEvent {
    /// `stream_event`/`future_event` partially applied to `result`:
    /// `progress` is the buffer's when the copy ended; `reclaim` is set for
    /// a partial copy (`on_copy`), whose buffer is still in the shared
    /// state: delivery reclaims it and reads its progress then.
    Copy {
        result: CopyResult,
        progress: u32,
        reclaim: bool,
    },
    /// `subtask_event`: `(SUBTASK, i, subtask.state)`, delivering the
    /// resolution (`deliver_resolve`) if resolved.
    Subtask,
}

/// `Waitable`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Waitable {
    /// `pending_event`.
    pub pending_event: Option<PendingEvent>,
    /// `wset`: handle index of the set this waitable joined.
    pub wset: Option<u32>,
    /// `has_sync_waiter`: a synchronous built-in is blocked on it
    /// (`wait_for_pending_event`).
    pub has_sync_waiter: bool,
}

impl Waitable {
    /// `set_pending_event(e)`.
    pub fn set_pending_event(&mut self, e: PendingEvent) {
        self.pending_event = Some(e);
    }
    /// `has_pending_event()`.
    pub fn has_pending_event(&self) -> bool {
        self.pending_event.is_some()
    }
    /// `in_waitable_set()`.
    pub fn in_waitable_set(&self) -> bool {
        self.wset.is_some()
    }
}

/// `WaitableSet`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WaitableSet {
    /// `elems`: handle indices of the joined waitables, in join order
    /// (delivery order rotates, where the spec shuffles).
    pub elems: Vec<u32>,
    /// `num_waiting`: threads blocked in `wait_for_event_and`.
    pub num_waiting: u32,
}

impl WaitableSet {
    pub fn new() -> Self {
        Self::default()
    }
}
