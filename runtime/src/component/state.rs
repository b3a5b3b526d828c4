//! Per-store Component Model state: component instances (the canonical
//! ABI's `ComponentInstance`: handle table, flags, backpressure), resource
//! types, the shared state of streams and futures, and tasks.
//!
//! The state sits in an `Rc<RefCell<..>>` shared by the store's host
//! functions (lowered imports, built-ins). No borrow is held across a call
//! into Wasm; [`Shared::get`] turns an unexpected re-entry into a trap
//! instead of a panic.

use alloc::boxed::Box;
use alloc::format;
use alloc::rc::Rc;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::cell::{RefCell, RefMut};

use ringos_abi::buffers::GuestBuffer;
use ringos_abi::concurrency::{self as cc, Buffer, HostBuffer, Instance, SharedStore};
use ringos_abi::{ResourceType, Value};

use super::call::Opts;
use crate::{Error, FuncId, Store, Trap, TrapKind};

/// Index of a component instance in [`State::insts`].
pub type InstId = usize;
/// Index of a task in [`State::tasks`] (also its borrow-scope id).
pub type TaskId = usize;

/// Why a component-level operation trapped; the message names the rule
/// (and uses the wording the conformance tests look for).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trapped(pub String);

impl Trapped {
    pub fn new(msg: impl Into<String>) -> Trapped {
        Trapped(msg.into())
    }

    /// A failed core call: a host function's recorded message, or the core
    /// trap's own (in wasmtime's wording, which the tests use).
    pub fn from_core(store: &mut Store, e: Error) -> Trapped {
        let mut t = Self::from_core_inner(store, e);
        if store.take_grow_refused() {
            t.0.push_str(" (after memory.grow was refused: out of memory)");
        }
        t
    }

    fn from_core_inner(store: &mut Store, e: Error) -> Trapped {
        match e {
            Error::Trap(Trap(TrapKind::Host)) => match store.take_trap_message() {
                Some(m) => Trapped(m),
                None => Trapped(TrapKind::Host.message().into()),
            },
            Error::Trap(Trap(TrapKind::Unreachable)) => {
                Trapped("wasm trap: wasm `unreachable` instruction executed".into())
            }
            Error::Trap(t) => Trapped(format!("wasm trap: {t}")),
            e => Trapped(e.to_string()),
        }
    }
}

impl From<ringos_abi::Trap> for Trapped {
    fn from(t: ringos_abi::Trap) -> Trapped {
        Trapped(t.to_string())
    }
}

/// One side's buffer of a stream/future copy: guest memory of an
/// instance (with the options of the built-in that made it, shared: a
/// copy moves its buffer through the shared state by value, several
/// times), or values the host reads or writes.
pub enum RtBuffer {
    Guest {
        buf: GuestBuffer,
        inst: InstId,
        opts: Rc<Opts>,
    },
    Host(HostBuffer),
}

impl Buffer for RtBuffer {
    fn remain(&self) -> u32 {
        match self {
            RtBuffer::Guest { buf, .. } => buf.remain(),
            RtBuffer::Host(h) => h.remain(),
        }
    }
    fn is_zero_length(&self) -> bool {
        match self {
            RtBuffer::Guest { buf, .. } => buf.is_zero_length(),
            RtBuffer::Host(h) => h.is_zero_length(),
        }
    }
    fn progress(&self) -> u32 {
        match self {
            RtBuffer::Guest { buf, .. } => buf.progress,
            RtBuffer::Host(h) => h.progress(),
        }
    }
}

/// A resource type made by a component instance (or the host).
pub struct ResourceDef {
    /// The implementing instance (`rt.impl`); `None` for host resources.
    pub inst: Option<InstId>,
    /// The core destructor, called with the rep when an owning handle is
    /// dropped.
    pub dtor: Option<FuncId>,
}

/// How a call ended for its caller: it returned (with its result, if the
/// function has one), or it was cancelled before it returned
/// (`on_resolve(None)` in the spec).
#[derive(Debug)]
pub enum Resolution {
    Returned(Option<Value>),
    Cancelled,
}

/// Delivers a task's resolution to its caller.
pub type OnResolve = Box<dyn FnMut(&mut Store, &Shared, Resolution) -> Result<(), Trapped>>;

/// Who serves a call a subtask made, for `subtask.cancel` to reach
/// (`Subtask.callee` holds it packed, see [`Callee::pack`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Callee {
    /// It finished within the call (nothing to cancel).
    Done,
    /// A lifted function's task.
    Task(TaskId),
    /// An async host function's pending reply, by token.
    Host(u64),
}

impl Callee {
    const HOST: u64 = 1 << 63;

    pub fn pack(self) -> u64 {
        match self {
            Callee::Done => 0,
            Callee::Task(t) => t as u64 + 1,
            Callee::Host(token) => token | Self::HOST,
        }
    }

    pub fn unpack(v: u64) -> Callee {
        match v {
            0 => Callee::Done,
            v if v & Self::HOST != 0 => Callee::Host(v & !Self::HOST),
            v => Callee::Task((v - 1) as TaskId),
        }
    }
}
/// Produces a task's arguments once it starts.
pub type OnStart = Box<dyn FnMut(&mut Store, &Shared) -> Result<Vec<Value>, Trapped>>;

/// Where a parked task is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Its core code is on the stack.
    Running,
    /// Waiting for backpressure or the exclusive lock to let it start.
    ToStart,
    /// Its callback asked to run again (`YIELD`).
    Yield,
    /// Its callback waits for an event of waitable set `si` (`WAIT`).
    Wait(u32),
    /// A cancellation is delivered at its callback's `WAIT` (on set `si`)
    /// or `YIELD` (`None`): its next callback gets `TASK_CANCELLED`
    /// instead of an event.
    Cancelled(Option<u32>),
    /// The callback returned `EXIT`.
    Exited,
}

/// A call of a lifted function (`Task`) with what the runtime needs to
/// run it: its function, caller, and the closures to the caller.
pub struct RtTask {
    pub inst: InstId,
    /// The lifted function (its type; shared, not copied per call).
    pub func: Rc<super::call::Func>,
    pub opts: Opts,
    pub core: FuncId,
    pub caller: Option<InstId>,
    pub abi: cc::Task,
    pub step: Step,
    pub on_start: Option<OnStart>,
    pub on_resolve: Option<OnResolve>,
}

#[derive(Default)]
pub struct State {
    pub insts: Vec<Instance>,
    pub resources: Vec<ResourceDef>,
    pub shared: SharedStore<RtBuffer>,
    pub tasks: Vec<Option<RtTask>>,
    /// Free slots of `tasks` (a finished task's id is reused).
    pub free_tasks: Vec<TaskId>,
    /// A spare instance to stand in for one a lift/lower took out.
    pub spare: Option<Instance>,
    /// Tasks whose core code is on the stack, innermost last.
    pub current: Vec<TaskId>,
    /// Lift/lower in progress took the instance out of `insts`.
    pub checked_out: Vec<bool>,
    /// Resource types each instance implements, by instance.
    pub implemented: Vec<Vec<ResourceType>>,
    /// Host calls that return later (async host functions), by token:
    /// how to deliver their result.
    pub host_calls: alloc::collections::BTreeMap<u64, OnResolve>,
    /// Timers of the loop: (deadline in the waiter's ns, host-call token).
    pub timers: Vec<(u64, u64)>,
    /// The embedder's clock and idle wait (needed for timers).
    pub waiter: Option<Rc<dyn Waiter>>,
    /// Host-side stream/future ends, by token.
    pub host_ends: crate::token_map::TokenMap<super::host::HostEnd>,
    /// Device-backed stream ends, by token.
    pub(crate) device_ends: crate::token_map::TokenMap<super::device::DeviceEnd>,
    /// `u8`, the element type every device stream shares (made once).
    pub(crate) byte_type: Option<Rc<ringos_abi::ValType>>,
    /// The embedder's I/O, polled when no task can run. Shared so the loop
    /// can run the sources (which use the state) from a snapshot, a count
    /// rather than a vector moved out and back on every turn.
    pub io: Rc<Vec<Rc<dyn super::device::IoSource>>>,
    pub next_token: u64,
    /// The `enter_from` of every call whose frame is on the stack
    /// (callee, caller), outermost first.
    pub entered: Vec<(InstId, Option<InstId>)>,
    /// `entered`'s stand-in while a blocked stack's list is set aside.
    pub entered_spare: Vec<(InstId, Option<InstId>)>,
    /// Per instance: its core code can reach a point where it blocks (a
    /// synchronous call that may not resolve at once, a synchronous wait
    /// or copy), so its tasks run on fibers ([`super::sched`]).
    pub can_block: Vec<bool>,
    /// Tasks blocked on their fibers, in the order they blocked.
    pub(crate) blocked: Vec<super::sched::Blocked>,
    /// Tasks the loop ran since it last resumed a fiber.
    pub(crate) since_fiber: usize,
    /// Where the loop's next scan for a ready task starts (round robin).
    pub(crate) scan_from: usize,
}

impl State {
    pub fn new_instance(&mut self, parent: Option<InstId>) -> InstId {
        let id = self.insts.len();
        self.insts
            .push(Instance::new(id as u32, parent.map(|p| p as u32)));
        self.checked_out.push(false);
        self.implemented.push(Vec::new());
        self.can_block.push(false);
        id
    }

    pub fn new_resource(&mut self, inst: Option<InstId>, dtor: Option<FuncId>) -> ResourceType {
        self.resources.push(ResourceDef { inst, dtor });
        let rt = ResourceType(self.resources.len() as u32 - 1);
        if let Some(i) = inst {
            self.implemented[i].push(rt);
        }
        rt
    }

    pub fn resource(&self, rt: ResourceType) -> Result<&ResourceDef, Trapped> {
        self.resources
            .get(rt.0 as usize)
            .ok_or_else(|| Trapped::new("unknown resource type"))
    }

    /// Resource types `inst` implements (kept as they are made: every
    /// lift and lower asks).
    pub fn implements(&self, inst: InstId) -> Vec<ResourceType> {
        self.implemented[inst].clone()
    }

    /// The instance, unless a lift/lower in progress has it.
    pub fn inst(&mut self, i: InstId) -> Result<&mut Instance, Trapped> {
        if self.checked_out[i] {
            return Err(Trapped::new(
                "cannot leave component instance (its handle table is in use)",
            ));
        }
        Ok(&mut self.insts[i])
    }

    /// `may_enter_from` + `enter_from`: traps if an instance entered is
    /// running (or poisoned by a trap).
    pub fn enter(&mut self, callee: InstId, caller: Option<InstId>) -> Result<(), Trapped> {
        let (c, from) = (callee as u32, caller.map(|c| c as u32));
        if !cc::may_enter_from(&self.insts, c, from) || self.recursive(callee, caller) {
            return Err(Trapped::new("wasm trap: cannot enter component instance"));
        }
        cc::enter_from(&mut self.insts, c, from)?;
        self.entered.push((callee, caller));
        Ok(())
    }

    /// A call between an instance and its own ancestor or descendant (or
    /// itself) might re-enter: refused for now, as the conformance tests
    /// and wasmtime do (the spec's entering sets would allow it).
    fn recursive(&self, callee: InstId, caller: Option<InstId>) -> bool {
        let Some(caller) = caller else {
            return false;
        };
        let up = |mut i: InstId, target: InstId| loop {
            if i == target {
                return true;
            }
            match self.insts[i].parent {
                Some(p) => i = p as InstId,
                None => return false,
            }
        };
        up(caller, callee) || up(callee, caller)
    }

    pub fn may_enter(&self, callee: InstId, caller: Option<InstId>) -> bool {
        cc::may_enter_from(&self.insts, callee as u32, caller.map(|c| c as u32))
    }

    /// `leave_to`.
    pub fn leave(&mut self, callee: InstId, caller: Option<InstId>) {
        cc::leave_to(&mut self.insts, callee as u32, caller.map(|c| c as u32));
        if let Some(pos) = self.entered.iter().rposition(|e| *e == (callee, caller)) {
            self.entered.remove(pos);
        }
    }

    /// A thread blocks: the calls on its stack stop counting as being
    /// inside their instances (as a suspended thread's do in the spec)
    /// until [`State::resume_stack`].
    pub fn suspend_stack(&mut self) -> Vec<(InstId, Option<InstId>)> {
        // The list in use while blocked is the spare one: neither
        // allocates once warm.
        let spare = core::mem::take(&mut self.entered_spare);
        let saved = core::mem::replace(&mut self.entered, spare);
        for (callee, caller) in saved.iter().rev() {
            cc::leave_to(&mut self.insts, *callee as u32, caller.map(|c| c as u32));
        }
        saved
    }

    /// The blocked thread runs again: re-enter what it had entered.
    pub fn resume_stack(&mut self, saved: Vec<(InstId, Option<InstId>)>) -> Result<(), Trapped> {
        for (callee, caller) in &saved {
            let (c, from) = (*callee as u32, caller.map(|c| c as u32));
            if !cc::may_enter_from(&self.insts, c, from) {
                return Err(Trapped::new("wasm trap: cannot enter component instance"));
            }
            cc::enter_from(&mut self.insts, c, from)?;
        }
        let mut spare = core::mem::replace(&mut self.entered, saved);
        spare.clear();
        self.entered_spare = spare;
        Ok(())
    }

    pub fn task(&mut self, t: TaskId) -> Result<&mut RtTask, Trapped> {
        task_in(&mut self.tasks, t)
    }

    /// Whether the code running may block: a task of an async function
    /// type, or one that already returned (not a start function, not a
    /// synchronous task before it returned).
    pub fn check_may_block(&mut self) -> Result<(), Trapped> {
        match self.current.last().copied() {
            Some(t) => Ok(self.task(t)?.abi.check_may_block()?),
            None => Err(Trapped::new(
                "cannot block a synchronous task before returning",
            )),
        }
    }

    /// The task whose core code is running (what task built-ins act on).
    pub fn current_task(&mut self) -> Result<(TaskId, &mut RtTask), Trapped> {
        let t = *self
            .current
            .last()
            .ok_or_else(|| Trapped::new("built-in called outside a task"))?;
        Ok((t, self.task(t)?))
    }

    /// The current task, which built-in `builtin` of instance `inst` may
    /// act on: `inst` may leave, and the task is one of `inst`'s
    /// (`task.return`, `task.cancel`).
    pub fn current_task_of(
        &mut self,
        inst: InstId,
        builtin: &'static str,
    ) -> Result<(TaskId, &mut RtTask), Trapped> {
        self.inst(inst)?.check_may_leave(builtin)?;
        let (tid, t) = self.current_task()?;
        if t.inst != inst {
            return Err(Trapped::new(alloc::format!(
                "{builtin} called from another instance"
            )));
        }
        Ok((tid, t))
    }

    /// The id the next [`State::add_task`] returns.
    pub fn next_task_id(&self) -> TaskId {
        self.free_tasks.last().copied().unwrap_or(self.tasks.len())
    }

    /// A finished task: its slot is free again.
    pub fn remove_task(&mut self, t: TaskId) {
        if self.tasks.get(t).is_some_and(Option::is_some) {
            self.tasks[t] = None;
            self.free_tasks.push(t);
        }
    }

    pub fn add_task(&mut self, t: RtTask) -> TaskId {
        match self.free_tasks.pop() {
            Some(id) => {
                self.tasks[id] = Some(t);
                id
            }
            None => {
                self.tasks.push(Some(t));
                self.tasks.len() - 1
            }
        }
    }
}

/// Task `t` of `tasks` (for callers that hold other parts of the state).
pub(crate) fn task_in(tasks: &mut [Option<RtTask>], t: TaskId) -> Result<&mut RtTask, Trapped> {
    tasks
        .get_mut(t)
        .and_then(Option::as_mut)
        .ok_or_else(|| Trapped::new("no such task"))
}

/// The loop's clock and how it waits when nothing can run but a timer is
/// set (the hosted mode sleeps, the kernel halts until an interrupt).
pub trait Waiter {
    fn now_ns(&self) -> u64;
    /// Waits until `deadline_ns` or an interrupt (a device completion),
    /// whichever is first; with no deadline, until an interrupt.
    fn wait(&self, deadline_ns: Option<u64>);
}

/// The state shared by a component store and its host functions.
#[derive(Clone, Default)]
pub struct Shared(Rc<RefCell<State>>);

impl Shared {
    pub fn get(&self) -> Result<RefMut<'_, State>, Trapped> {
        self.0
            .try_borrow_mut()
            .map_err(|_| Trapped::new("re-entrant use of component state"))
    }
}
