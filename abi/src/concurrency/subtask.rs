//! `Subtask`: the caller's side of an async call made through an async
//! `canon lower`, as held in the caller instance's table.

use alloc::vec::Vec;

use crate::error::Trap;
use crate::events::SubtaskState;
use crate::handles::{end_lend, AsResource, Table};
use crate::values::CoreVal;

use super::waitable::{PendingEvent, Waitable};

/// `Subtask`.
#[derive(Debug, Clone, PartialEq)]
pub struct Subtask {
    /// `state` (`Subtask.State` is [`SubtaskState`]).
    pub state: SubtaskState,
    /// `cancellation_requested`.
    pub cancellation_requested: bool,
    /// `lenders`: handle indices (in the caller's table) lent to the callee
    /// by `lift_borrow`; `None` once the resolution was delivered.
    pub lenders: Option<Vec<u32>>,
    /// `flat_results`: set by `resolve(RETURNED, ...)`.
    pub flat_results: Vec<CoreVal>,
    /// The `Waitable` part.
    pub w: Waitable,
    /// The runtime's own name for the callee (what `on_cancel` reaches).
    pub callee: u64,
}

impl Subtask {
    /// `Subtask()`: `STARTING`, no lenders, not cancelled.
    pub fn new(callee: u64) -> Self {
        Subtask {
            state: SubtaskState::Starting,
            cancellation_requested: false,
            lenders: Some(Vec::new()),
            flat_results: Vec::new(),
            w: Waitable::default(),
            callee,
        }
    }

    /// `resolved()`.
    pub fn resolved(&self) -> bool {
        self.state.resolved()
    }

    /// `resolve_delivered()`.
    pub fn resolve_delivered(&self) -> bool {
        self.lenders.is_none()
    }

    /// `add_lender(h)`, after `lift_borrow` raised `h.num_lends`
    /// ([`crate::handles::lift_borrow`]): remember the handle index.
    pub fn add_lender(&mut self, handle: u32) -> Result<(), Trap> {
        if self.resolved() {
            return Err(Trap::Mismatch("add_lender on a resolved subtask"));
        }
        self.lenders
            .as_mut()
            .ok_or(Trap::Mismatch("add_lender after deliver_resolve"))?
            .push(handle);
        Ok(())
    }

    /// `canon_lower`'s `on_start`: `STARTING` -> `STARTED`. The caller
    /// then lifts the arguments and, for an async lower whose subtask is in
    /// the table, sets the pending event ([`Subtask::on_progress`]).
    pub fn on_start(&mut self) -> Result<(), Trap> {
        if self.state != SubtaskState::Starting {
            return Err(Trap::Mismatch("on_start of a subtask not STARTING"));
        }
        self.state = SubtaskState::Started;
        Ok(())
    }

    /// `canon_lower`'s `on_resolve`: `None` (cancelled) resolves
    /// `CANCELLED_BEFORE_{STARTED,RETURNED}`, `Some(flat_results)` resolves
    /// `RETURNED` (only from `STARTED`).
    pub fn on_resolve(&mut self, flat_results: Option<Vec<CoreVal>>) -> Result<(), Trap> {
        let state = match (&flat_results, self.state) {
            (None, _) if !self.cancellation_requested => {
                return Err(Trap::Mismatch("subtask cancelled without a request"))
            }
            (None, SubtaskState::Starting) => SubtaskState::CancelledBeforeStarted,
            (None, SubtaskState::Started) => SubtaskState::CancelledBeforeReturned,
            (Some(_), SubtaskState::Started) => SubtaskState::Returned,
            _ => return Err(Trap::Mismatch("on_resolve of a subtask in the wrong state")),
        };
        self.resolve(state, flat_results.unwrap_or_default())
    }

    /// `resolve(state, flat_results)`.
    pub fn resolve(&mut self, state: SubtaskState, flat_results: Vec<CoreVal>) -> Result<(), Trap> {
        if self.resolved() || !state.resolved() {
            return Err(Trap::Mismatch("resolve of a resolved subtask"));
        }
        if state != SubtaskState::Returned && !flat_results.is_empty() {
            return Err(Trap::Mismatch("results of a cancelled subtask"));
        }
        self.state = state;
        self.flat_results = flat_results;
        Ok(())
    }

    /// `on_progress` of an async lower: `set_pending_event(subtask_event)`.
    pub fn on_progress(&mut self) {
        self.w.set_pending_event(PendingEvent::Subtask);
    }

    /// `deliver_resolve()`: every lender's `num_lends -= 1` (in the caller's
    /// `table`), then no more lenders.
    pub fn deliver_resolve<E: AsResource>(&mut self, table: &mut Table<E>) -> Result<(), Trap> {
        if !self.resolved() {
            return Err(Trap::Mismatch("deliver_resolve of an unresolved subtask"));
        }
        let lenders = self
            .lenders
            .take()
            .ok_or(Trap::Mismatch("deliver_resolve twice"))?;
        for h in lenders {
            end_lend(table, h)?;
        }
        Ok(())
    }

    /// `Subtask.drop`'s own rule: `trap_if(not self.resolve_delivered())`.
    pub fn check_drop(&self, index: u32) -> Result<(), Trap> {
        if !self.resolve_delivered() {
            return Err(Trap::SubtaskNotResolved { index });
        }
        Ok(())
    }
}
