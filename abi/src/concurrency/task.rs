//! `Task`: the callee's side of one call into a lifted function, minus
//! its threads and scheduling (which the runtime owns).

use crate::error::Trap;
use crate::handles::BorrowScope;
use crate::types::ValType;
use crate::values::StringEncoding;

/// `Task.State`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskState {
    Initial = 1,
    Started = 2,
    PendingCancel = 3,
    CancelDelivered = 4,
    Resolved = 5,
}

/// `LiftOptions` as `task.return` compares them (`LiftOptions.equal`):
/// the string encoding and the identity of the memory (a runtime-chosen
/// id; `None`: no `memory` option).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LiftOptions {
    pub string_encoding: StringEncoding,
    pub memory: Option<u32>,
}

/// Number of `context.get`/`context.set` slots (`Thread.storage`, 2 in the
/// spec; validation bounds the index).
pub const CONTEXT_SLOTS: usize = 2;

/// What `Task.request_cancellation` decided (the runtime resumes the
/// thread it picks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelRequest {
    /// `INITIAL`: now `CANCEL_DELIVERED`; resume the implicit thread with
    /// `Cancelled.TRUE` (it then calls [`Task::cancel`]).
    ResumeImplicit,
    /// `STARTED` with a cancellable thread and the instance enterable: now
    /// `CANCEL_DELIVERED`; enter, resume one cancellable thread cancelled,
    /// leave.
    ResumeCancellable,
    /// Otherwise: now `PENDING_CANCEL`, delivered at the next cancellable
    /// suspension ([`Task::deliver_pending_cancel`]).
    Pending,
}

/// `Task` (one per call of a lifted function), with the context slots of
/// its implicit thread.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    /// `state`.
    pub state: TaskState,
    /// `num_borrows` (the borrow scope `lower_borrow` counts in).
    pub borrows: BorrowScope,
    /// `ft.async_`: the lifted function type is `async`.
    pub ft_async: bool,
    /// `opts.async_`.
    pub opts_async: bool,
    /// `opts.callback is not None`.
    pub callback: bool,
    /// `ft.result`: the result type `task.return` must name.
    pub result: Option<ValType>,
    /// The lift options `task.return` must use.
    pub lift_opts: LiftOptions,
    /// `Thread.storage` of the implicit thread (`context.get`/`set`).
    pub context: [u64; CONTEXT_SLOTS],
}

impl Task {
    /// `Task(ft, opts, inst, ...)` in state `INITIAL`. `scope` names the
    /// borrow scope (handles.rs's [`BorrowScope::id`]).
    pub fn new(
        scope: u32,
        ft_async: bool,
        opts_async: bool,
        callback: bool,
        result: Option<ValType>,
        lift_opts: LiftOptions,
    ) -> Self {
        Task {
            state: TaskState::Initial,
            borrows: BorrowScope::new(scope),
            ft_async,
            opts_async,
            callback,
            result,
            lift_opts,
            context: [0; CONTEXT_SLOTS],
        }
    }

    /// `needs_exclusive()`: a sync-lifted or callback-lifted function runs
    /// with the instance's exclusive lock (`not opts.async_ or
    /// opts.callback`; only asked of `async` function types).
    pub fn needs_exclusive(&self) -> bool {
        !self.opts_async || self.callback
    }

    /// `start()`: `INITIAL` -> `STARTED` (the runtime then calls
    /// `on_start` for the arguments).
    pub fn start(&mut self) -> Result<(), Trap> {
        if self.state != TaskState::Initial {
            return Err(Trap::Mismatch("start of a task not INITIAL"));
        }
        self.state = TaskState::Started;
        Ok(())
    }

    /// `return_(result)`'s rules: not yet resolved, no borrows left. Then
    /// `RESOLVED` (the runtime calls `on_resolve(result)`).
    pub fn return_(&mut self) -> Result<(), Trap> {
        if self.state == TaskState::Resolved {
            return Err(Trap::TaskAlreadyResolved);
        }
        self.borrows.check_released()?;
        self.state = TaskState::Resolved;
        Ok(())
    }

    /// `canon_task_return`'s rules (after the instance's `may_leave`):
    /// an async-lifted task, the same result type and lift options; then
    /// [`Task::return_`]. The runtime lifts the flat values between the
    /// checks and the state change by calling this first with the lifted
    /// result in hand.
    pub fn check_task_return(
        &self,
        result_type: Option<&ValType>,
        opts: &LiftOptions,
    ) -> Result<(), Trap> {
        if !self.opts_async {
            return Err(Trap::NotAsyncTask {
                builtin: "task.return",
            });
        }
        if result_type != self.result.as_ref() {
            return Err(Trap::TaskReturnType);
        }
        if *opts != self.lift_opts {
            return Err(Trap::TaskReturnOptions);
        }
        Ok(())
    }

    /// `canon_task_cancel` (after `may_leave`): async-lifted only, then
    /// `cancel()`: only after a cancellation was delivered, no borrows
    /// left; `RESOLVED` (the runtime calls `on_resolve(None)`).
    pub fn canon_task_cancel(&mut self) -> Result<(), Trap> {
        if !self.opts_async {
            return Err(Trap::NotAsyncTask {
                builtin: "task.cancel",
            });
        }
        self.cancel()
    }

    /// `cancel()`.
    pub fn cancel(&mut self) -> Result<(), Trap> {
        if self.state != TaskState::CancelDelivered {
            return Err(Trap::TaskCancelNotDelivered);
        }
        self.borrows.check_released()?;
        self.state = TaskState::Resolved;
        Ok(())
    }

    /// `request_cancellation(caller)`'s state change.
    /// `has_cancellable_candidate`: some thread of the task is suspended
    /// cancellably (and, for a task needing the exclusive lock that another
    /// thread holds, not counting the implicit thread);
    /// `may_enter`: `inst.may_enter_from(caller)`.
    pub fn request_cancellation(
        &mut self,
        has_cancellable_candidate: bool,
        may_enter: bool,
    ) -> Result<CancelRequest, Trap> {
        match self.state {
            TaskState::Initial => {
                self.state = TaskState::CancelDelivered;
                Ok(CancelRequest::ResumeImplicit)
            }
            TaskState::Started if has_cancellable_candidate && may_enter => {
                self.state = TaskState::CancelDelivered;
                Ok(CancelRequest::ResumeCancellable)
            }
            TaskState::Started => {
                self.state = TaskState::PendingCancel;
                Ok(CancelRequest::Pending)
            }
            _ => Err(Trap::Mismatch(
                "request_cancellation of a task not INITIAL/STARTED",
            )),
        }
    }

    /// `deliver_pending_cancel(cancellable)`: at a cancellable suspension
    /// point, a pending cancellation is delivered (`CANCEL_DELIVERED`) and
    /// the built-in returns cancelled / `TASK_CANCELLED`.
    pub fn deliver_pending_cancel(&mut self, cancellable: bool) -> bool {
        if cancellable && self.state == TaskState::PendingCancel {
            self.state = TaskState::CancelDelivered;
            return true;
        }
        false
    }

    /// `unregister_thread` of the last thread: `trap_if(self.state !=
    /// RESOLVED)` (the spec asserts `num_borrows == 0` after).
    pub fn check_exit(&self) -> Result<(), Trap> {
        if self.state != TaskState::Resolved {
            return Err(Trap::TaskNotResolved);
        }
        self.borrows.check_released()
    }

    /// The conformance tests' rule that a task of a non-`async` function
    /// type may not block (wait on a set, call an async import that does not
    /// finish at once, `yield`...) before it returned.
    pub fn check_may_block(&self) -> Result<(), Trap> {
        if !self.ft_async && self.state != TaskState::Resolved {
            return Err(Trap::CannotBlockSync);
        }
        Ok(())
    }

    /// `canon_context_get(t, i)`.
    pub fn context_get(&self, i: u32) -> Result<u64, Trap> {
        self.context
            .get(i as usize)
            .copied()
            .ok_or(Trap::ContextSlot { index: i })
    }

    /// `canon_context_set(t, i, v)`.
    pub fn context_set(&mut self, i: u32, v: u64) -> Result<(), Trap> {
        let slot = self
            .context
            .get_mut(i as usize)
            .ok_or(Trap::ContextSlot { index: i })?;
        *slot = v;
        Ok(())
    }
}
