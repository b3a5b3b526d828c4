//! The one host-owned loop that schedules every component task.
//!
//! Tasks are stackless: an async-lifted function runs until its core
//! function returns a callback code (`EXIT`, `YIELD`, `WAIT` on a
//! waitable set), then the loop calls its `callback` when the event it
//! waits for is there. Nothing inside a component schedules anything.
//! Where the caller must block (a synchronous lower of an async callee, a
//! synchronous `waitable-set.wait` or stream copy, the host waiting for an
//! export's result), [`block_until`] runs the loop on the current stack
//! until the condition holds; when no task can run and it still does not
//! hold, that is a deadlock and a trap.
//!
//! A task whose core code can block in the middle of its frames (an
//! instance whose code reaches a synchronous call that may not resolve at
//! once, or a synchronous wait or copy: [`State::can_block`]) runs each
//! core call (its start, each callback) on a fiber of its own, the
//! spec's `Thread` (but a sync-lifted call of the host's keeps the host's
//! stack: the host waits for all of it anyway). When code on a fiber
//! reaches [`block_until`], the fiber suspends back to whoever started or
//! last resumed it (its caller goes on, as the spec's `canon_lift` returns
//! to it when the callee's thread blocks) and the loop resumes it once its
//! condition holds and its instance may be entered (`Store.tick`), when no
//! task is ready or the ready ones had a round. Elsewhere (the host
//! waiting for an export, a task without a fiber) the loop still runs on
//! the blocked stack.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;

use ringos_abi::concurrency::CancelRequest;
use ringos_abi::events::{unpack_callback_result, CallbackCode, Event};
use ringos_abi::lift::lift_flat_values;
use ringos_abi::lower::lower_flat_values;
use ringos_abi::{CoreVal, CoreValueIter, MAX_FLAT_PARAMS, MAX_FLAT_RESULTS};

use super::call::{from_core, needs_of, to_core, with_lower_cx, with_table};
use super::device::{IoSource, IoTurn};
use super::host::HostCx;
use super::state::{Callee, InstId, Resolution, Shared, State, Step, TaskId, Trapped};
use crate::fiber::{Body, FiberId, Resumed};
use crate::instance::Val;
use crate::Store;

/// Runs a task's core function once it may start: takes its arguments,
/// lowers them into the callee, calls, and deals with the result (a sync
/// lift) or the callback code (an async lift).
pub(crate) fn start_task(store: &mut Store, sh: &Shared, tid: TaskId) -> Result<(), Trapped> {
    let (inst, opts, core, func, mut on_start, fiber) = {
        let mut st = sh.get()?;
        let t = st.task(tid)?;
        t.abi.start()?;
        t.step = Step::Running;
        let needs_excl = t.func.sig.ty.async_ && t.abi.needs_exclusive();
        let blocks = t.func.sig.ty.async_ || t.opts.async_;
        let r = (t.inst, t.opts, t.core, t.func.clone(), t.on_start.take());
        if needs_excl {
            st.inst(r.0)?.acquire_exclusive(tid as u32)?;
        }
        let fiber = blocks && st.can_block[r.0] && !host_waits(&mut st, tid)?;
        (r.0, r.1, r.2, r.3, r.4, fiber)
    };
    if fiber {
        return start_on_fiber(store, sh, tid, inst, opts, core, func, on_start);
    }
    run_task(store, sh, tid, inst, &opts, core, &func, on_start.as_mut())
}

/// Whether task `tid` is a sync-lifted call of the host's: the host waits
/// for all of it anyway, so a block in it may run the loop on its stack
/// (as the nested loop always did) instead of on a fiber.
fn host_waits(st: &mut State, tid: TaskId) -> Result<bool, Trapped> {
    let t = st.task(tid)?;
    Ok(t.caller.is_none() && !t.opts.async_)
}

/// [`start_task`] for a task that can block: the rest on a fiber.
/// Everything the task needs stays in the body's box (the heap), not on
/// the fiber's stack.
#[allow(clippy::too_many_arguments)]
#[cold]
#[inline(never)]
fn start_on_fiber(
    store: &mut Store,
    sh: &Shared,
    tid: TaskId,
    inst: InstId,
    opts: super::call::Opts,
    core: crate::FuncId,
    func: alloc::rc::Rc<super::call::Func>,
    mut on_start: Option<super::state::OnStart>,
) -> Result<(), Trapped> {
    let sh2 = sh.clone();
    let body: Body = Box::new(move |store| {
        run_task(
            store,
            &sh2,
            tid,
            inst,
            &opts,
            core,
            &func,
            on_start.as_mut(),
        )
        .map(|()| 0)
        .map_err(|t| t.0)
    });
    on_fiber(store, sh, body).map(drop)
}

/// [`start_task`] once the task has started: its arguments, the call,
/// the result or callback code.
#[allow(clippy::too_many_arguments)]
fn run_task(
    store: &mut Store,
    sh: &Shared,
    tid: TaskId,
    inst: InstId,
    opts: &super::call::Opts,
    core: crate::FuncId,
    func: &super::call::Func,
    on_start: Option<&mut super::state::OnStart>,
) -> Result<(), Trapped> {
    let args = match on_start {
        Some(f) => f(store, sh)?,
        None => Vec::new(),
    };
    let ft = &func.sig.ty;
    let lower = |cx: &mut ringos_abi::Cx<'_>| {
        lower_flat_values(cx, MAX_FLAT_PARAMS, &args, ft.param_types(), None)
    };
    let mut n = needs_of(ft.param_types());
    // Spilled parameters are stored in memory the callee's `realloc` gives.
    n.realloc |= ringos_abi::layout::flat_len(ft.param_types()) > MAX_FLAT_PARAMS;
    let flat = with_lower_cx(store, sh, inst, opts, Some(tid), n, lower)?;
    let core_args: Vec<Val> = flat.into_iter().map(from_core).collect();
    let results = run_core(store, sh, tid, core, &core_args)?;
    if !opts.async_ {
        // Synchronous lift: lift the result, `task.return_`, post-return.
        // At most MAX_FLAT_RESULTS (one) flat result: no allocation.
        let mut one = [CoreVal::I32(0); MAX_FLAT_RESULTS];
        let many: Vec<CoreVal>;
        let flat_results: &[CoreVal] = if results.len() <= one.len() {
            for (d, r) in one.iter_mut().zip(&results) {
                *d = to_core(r);
            }
            &one[..results.len()]
        } else {
            many = results.iter().map(to_core).collect();
            &many
        };
        let (result, _) = with_table(store, sh, inst, opts, None, |cx| {
            let mut vi = CoreValueIter::new(flat_results);
            lift_flat_values(cx, MAX_FLAT_RESULTS, &mut vi, ft.result_type())
        })?;
        resolve(store, sh, tid, result.into_iter().next())?;
        return post_return_and_finish(store, sh, tid, inst, opts, &results);
    }
    let packed = match results.first() {
        Some(Val::I32(p)) => *p as u32,
        _ => return Err(Trapped::new("async callee returned no callback code")),
    };
    callback_code(sh, tid, packed)
}

/// A synchronous lift's end, once its result went to the caller: the
/// `post-return` function (the instance may not leave meanwhile), then
/// the task exits.
fn post_return_and_finish(
    store: &mut Store,
    sh: &Shared,
    tid: TaskId,
    inst: InstId,
    opts: &super::call::Opts,
    results: &[Val],
) -> Result<(), Trapped> {
    if let Some(pr) = opts.post_return {
        sh.get()?.inst(inst)?.may_leave = false;
        run_core(store, sh, tid, pr, results)?;
        sh.get()?.inst(inst)?.may_leave = true;
    }
    finish(sh, tid)
}

/// A synchronous call, lowered in `caller`, of a synchronous lifted
/// function, from [`start_sync_task`] to [`SyncTask::end`]: the
/// steps of [`call`](super::call::call) and [`start_task`] for such a
/// call, where nothing can wait or block. In between, the caller lowers
/// the arguments into the callee and runs `core` as the task's
/// ([`as_task`]).
pub(crate) struct SyncTask {
    pub tid: TaskId,
    pub core: crate::FuncId,
    /// The callee's instance and options.
    pub inst: InstId,
    pub opts: super::call::Opts,
    caller: InstId,
}

/// The caller may leave, the callee may be entered, and a task for the
/// call starts.
pub(crate) fn start_sync_task(
    sh: &Shared,
    f: &alloc::rc::Rc<super::call::Func>,
    caller: InstId,
) -> Result<SyncTask, Trapped> {
    let super::call::FuncKind::Lifted { core, opts, inst } = f.kind else {
        unreachable!("checked when lowered")
    };
    let mut st = sh.get()?;
    st.inst(caller)?.check_may_leave("canon lower")?;
    st.enter(inst, Some(caller))?;
    let tid = st.next_task_id();
    let mut abi = ringos_abi::concurrency::Task::new(
        tid as u32,
        false,
        false,
        false,
        f.sig.ty.result.clone(),
        opts.lift_options(),
    );
    abi.start()?;
    let tid = st.add_task(super::state::RtTask {
        inst,
        func: f.clone(),
        opts,
        core,
        caller: Some(caller),
        abi,
        step: Step::Running,
        on_start: None,
        on_resolve: None,
    });
    Ok(SyncTask {
        tid,
        core,
        inst,
        opts,
        caller,
    })
}

impl SyncTask {
    /// `Task.return_`: the core function returned and its result was
    /// lifted; it goes to the caller next.
    pub(crate) fn returned(&self, sh: &Shared) -> Result<(), Trapped> {
        Ok(sh.get()?.task(self.tid)?.abi.return_()?)
    }

    /// The result is the caller's (`results`: the core function's, for
    /// post-return): post-return, exit, leave.
    pub(crate) fn end(
        self,
        store: &mut Store,
        sh: &Shared,
        results: &[Val],
    ) -> Result<(), Trapped> {
        post_return_and_finish(store, sh, self.tid, self.inst, &self.opts, results)?;
        sh.get()?.leave(self.inst, Some(self.caller));
        Ok(())
    }
}

/// A synchronous call, lowered in `caller`, of `f`, a synchronous lifted
/// function whose parameters and result are bools or integers; `slots`
/// holds the caller's core arguments (of core types `types`). Each value
/// is passed as a core value: lifting and lowering one of these types
/// only narrows it. The result, if any, as the caller's core value.
pub(crate) fn call_scalar_sync(
    store: &mut Store,
    sh: &Shared,
    f: &alloc::rc::Rc<super::call::Func>,
    caller: InstId,
    types: &[wasmparser::ValType],
    slots: &[u64],
) -> Result<Option<Val>, Trapped> {
    let ft = &f.sig.ty;
    let wrong = || Trapped::new("a lowered call's core arguments do not match its type");
    let n = ft.param_types().len();
    if n > MAX_FLAT_PARAMS || types.len() != n || slots.len() < n {
        return Err(wrong());
    }
    let mut args = [Val::I32(0); MAX_FLAT_PARAMS];
    for ((a, t), (&ct, &bits)) in args
        .iter_mut()
        .zip(ft.param_types())
        .zip(types.iter().zip(slots))
    {
        *a = super::call::pass_scalar(t, Val::from_raw(ct, bits)).ok_or_else(wrong)?;
    }
    let task = start_sync_task(sh, f, caller)?;
    // At most one result (the lowering checked it): no allocation.
    let result_type = ft.result_type().first();
    let mut out = [Val::I32(0)];
    let results = &mut out[..usize::from(result_type.is_some())];
    as_task(store, sh, task.tid, |store| {
        store.call_into(task.core, &args[..n], results)
    })?;
    let result =
        match (result_type, &*results) {
            (Some(t), &[v]) => Some(super::call::pass_scalar(t, v).ok_or_else(|| {
                Trapped::new("a lifted function returned a value of the wrong type")
            })?),
            _ => None,
        };
    task.returned(sh)?;
    task.end(store, sh, results)?;
    Ok(result)
}

/// Calls core code on behalf of task `tid` (the current task meanwhile).
fn run_core(
    store: &mut Store,
    sh: &Shared,
    tid: TaskId,
    f: crate::FuncId,
    args: &[Val],
) -> Result<Vec<Val>, Trapped> {
    as_task(store, sh, tid, |store| store.call(f, args))
}

/// Runs `call` (a core call) as task `tid`'s: the current task meanwhile.
pub(crate) fn as_task<R>(
    store: &mut Store,
    sh: &Shared,
    tid: TaskId,
    call: impl FnOnce(&mut Store) -> Result<R, crate::Error>,
) -> Result<R, Trapped> {
    sh.get()?.current.push(tid);
    let r = call(store);
    sh.get()?.current.pop();
    r.map_err(|e| Trapped::from_core(store, e))
}

/// `Task.return_` + `on_resolve`: the task's result goes to its caller.
pub(crate) fn resolve(
    store: &mut Store,
    sh: &Shared,
    tid: TaskId,
    result: Option<ringos_abi::Value>,
) -> Result<(), Trapped> {
    sh.get()?.task(tid)?.abi.return_()?;
    hand_over(store, sh, tid, Resolution::Returned(result))
}

/// Task `tid`'s resolution goes to its caller (`on_resolve`, once).
pub(crate) fn hand_over(
    store: &mut Store,
    sh: &Shared,
    tid: TaskId,
    r: Resolution,
) -> Result<(), Trapped> {
    let on_resolve = sh.get()?.task(tid)?.on_resolve.take();
    match on_resolve {
        Some(mut f) => f(store, sh, r),
        None => Ok(()),
    }
}

/// The task's last thread ends: it must have resolved.
fn finish(sh: &Shared, tid: TaskId) -> Result<(), Trapped> {
    let mut st = sh.get()?;
    let t = st.task(tid)?;
    t.abi.check_exit()?;
    t.step = Step::Exited;
    let inst = t.inst;
    if st.insts[inst].exclusive_thread == Some(tid as u32) {
        st.inst(inst)?.release_exclusive(tid as u32)?;
    }
    st.remove_task(tid);
    Ok(())
}

/// What an async-lifted core function or callback returned.
fn callback_code(sh: &Shared, tid: TaskId, packed: u32) -> Result<(), Trapped> {
    let (code, si) = unpack_callback_result(packed)?;
    let mut st = sh.get()?;
    let inst = st.task(tid)?.inst;
    if st.insts[inst].exclusive_thread == Some(tid as u32) {
        st.inst(inst)?.release_exclusive(tid as u32)?;
    }
    match code {
        CallbackCode::Exit => {
            drop(st);
            finish(sh, tid)
        }
        // Both suspend cancellably: a cancellation that waited for this
        // is delivered instead (`deliver_pending_cancel`).
        CallbackCode::Yield => {
            let t = st.task(tid)?;
            t.step = match t.abi.deliver_pending_cancel(true) {
                true => Step::Cancelled(None),
                false => Step::Yield,
            };
            Ok(())
        }
        CallbackCode::Wait => {
            st.inst(inst)?.wait_begin(si)?;
            let t = st.task(tid)?;
            t.step = match t.abi.deliver_pending_cancel(true) {
                true => Step::Cancelled(Some(si)),
                false => Step::Wait(si),
            };
            Ok(())
        }
    }
}

/// What a parked task would do next if it ran now.
enum Next {
    Start,
    Callback(Event),
}

/// Runs one ready task, if any: starts a task that waited to enter, or
/// calls a callback with its event.
pub(crate) fn run_one(store: &mut Store, sh: &Shared) -> Result<Ran, Trapped> {
    let picked = {
        let mut st = sh.get()?;
        if !st.blocked.is_empty() && st.since_fiber >= st.tasks.len() {
            // Blocked fibers go on when no task is ready, or once tasks
            // have had a round without them: tasks that yield are always
            // ready, and may wait for what a fiber does next.
            drop(st);
            if resume_blocked(store, sh)? {
                return Ok(Ran::Progress);
            }
            st = sh.get()?;
        }
        let mut picked = None;
        let n = st.tasks.len();
        let from = st.scan_from.min(n);
        for tid in (from..n).chain(0..from) {
            let Some(t) = st.tasks[tid].as_ref() else {
                continue;
            };
            let (inst, step) = (t.inst, t.step);
            let needs_excl = t.func.sig.ty.async_ && t.abi.needs_exclusive();
            if matches!(step, Step::Running | Step::Exited) || !st.may_enter(inst, None) {
                continue;
            }
            let i = &st.insts[inst];
            let free = i.exclusive_thread.is_none();
            let ready = match step {
                Step::ToStart => !i.has_backpressure(needs_excl),
                Step::Yield | Step::Cancelled(_) => free,
                Step::Wait(si) => free && i.set_has_pending_event(si).unwrap_or(true),
                _ => false,
            };
            if ready {
                picked = Some((tid, inst, step));
                break;
            }
        }
        let Some((tid, inst, step)) = picked else {
            let blocked = !st.blocked.is_empty();
            drop(st);
            return Ok(match blocked && resume_blocked(store, sh)? {
                true => Ran::Progress,
                false => Ran::Nothing,
            });
        };
        st.since_fiber += 1;
        st.scan_from = tid + 1;
        let next = match step {
            Step::ToStart => {
                st.inst(inst)?.stop_waiting_to_enter()?;
                Next::Start
            }
            Step::Yield => Next::Callback(Event::NONE),
            Step::Cancelled(None) => Next::Callback(Event::TASK_CANCELLED),
            Step::Wait(si) | Step::Cancelled(Some(si)) => {
                let cancelled = step != Step::Wait(si);
                let st = &mut *st;
                let i = st
                    .insts
                    .get_mut(inst)
                    .ok_or_else(|| Trapped::new("instance"))?;
                Next::Callback(i.wait_end(si, cancelled, &mut st.shared)?)
            }
            _ => unreachable!("only parked tasks are picked"),
        };
        st.enter(inst, None)?;
        (tid, inst, next)
    };
    let (tid, inst, next) = picked;
    let mut ran = Ran::Progress;
    match next {
        Next::Start => start_task(store, sh, tid)?,
        Next::Callback(ev) => {
            let packed = deliver_callback(store, sh, tid, inst, ev)?;
            if ev.code == ringos_abi::events::EventCode::None
                && packed.is_some_and(|p| p & 0xf == CallbackCode::Yield as u32)
            {
                ran = Ran::Yield;
            }
        }
    }
    sh.get()?.leave(inst, None);
    Ok(ran)
}

/// Calls the callback of parked task `tid` (of `inst`, entered) with `ev`:
/// takes the exclusive lock, runs it (on a fiber if its instance can
/// block); the packed code it returned, `None` if it suspended.
fn deliver_callback(
    store: &mut Store,
    sh: &Shared,
    tid: TaskId,
    inst: InstId,
    ev: Event,
) -> Result<Option<u32>, Trapped> {
    let (callback, fiber) = {
        let mut st = sh.get()?;
        let fiber = st.can_block[inst];
        st.inst(inst)?.acquire_exclusive(tid as u32)?;
        let t = st.task(tid)?;
        t.step = Step::Running;
        (t.opts.callback, fiber)
    };
    let cb = callback.ok_or_else(|| Trapped::new("task without a callback"))?;
    let args = [
        Val::I32(ev.code as i32),
        Val::I32(ev.p1 as i32),
        Val::I32(ev.p2 as i32),
    ];
    if fiber {
        let sh2 = sh.clone();
        let body: Body =
            Box::new(move |store| run_callback(store, &sh2, tid, cb, &args).map_err(|t| t.0));
        on_fiber(store, sh, body)
    } else {
        Ok(Some(run_callback(store, sh, tid, cb, &args)?))
    }
}

/// `subtask.on_cancel(caller)`: asks whoever serves a subtask's call to
/// stop (`Task.request_cancellation`). A task that has not started never
/// will: it resolves cancelled at once. A started callback task parked
/// cancellably (its callback returned `WAIT` or `YIELD`) whose instance
/// the caller may enter gets `TASK_CANCELLED` now; any other is told at
/// its next `WAIT` or `YIELD`. A task may still return normally. An async
/// host function's pending reply resolves cancelled if it is a loop timer
/// (`wasi:clocks` waits); others finish as they will.
pub(crate) fn request_cancellation(
    store: &mut Store,
    sh: &Shared,
    callee: Callee,
    caller: InstId,
) -> Result<(), Trapped> {
    let tid = match callee {
        Callee::Done => return Ok(()),
        Callee::Host(token) => {
            let timer = {
                let mut st = sh.get()?;
                let before = st.timers.len();
                st.timers.retain(|t| t.1 != token);
                st.timers.len() != before
            };
            if !timer {
                return Ok(());
            }
            return complete_host_call(store, sh, token, Resolution::Cancelled);
        }
        Callee::Task(tid) => tid,
    };
    let (decision, inst) = {
        let mut st = sh.get()?;
        let Some(t) = st.tasks.get(tid).and_then(Option::as_ref) else {
            return Ok(());
        };
        let (inst, step, needs_excl) = (t.inst, t.step, t.abi.needs_exclusive());
        let may_enter = st.may_enter(inst, Some(caller));
        // The callback loop's waits are the cancellable suspensions; a
        // task needing the exclusive lock that another thread holds
        // cannot be resumed now.
        let held_by_other = st.insts[inst]
            .exclusive_thread
            .is_some_and(|x| x != tid as u32);
        let candidate =
            matches!(step, Step::Wait(_) | Step::Yield) && !(needs_excl && held_by_other);
        let decision = st
            .task(tid)?
            .abi
            .request_cancellation(candidate, may_enter)?;
        (decision, inst)
    };
    match decision {
        CancelRequest::Pending => Ok(()),
        CancelRequest::ResumeImplicit => {
            // It waited to enter (backpressure): it never starts.
            {
                let mut st = sh.get()?;
                st.inst(inst)?.stop_waiting_to_enter()?;
                let t = st.task(tid)?;
                t.abi.cancel()?;
                t.step = Step::Exited;
            }
            hand_over(store, sh, tid, Resolution::Cancelled)?;
            sh.get()?.remove_task(tid);
            Ok(())
        }
        CancelRequest::ResumeCancellable => {
            let ev = {
                let mut st = sh.get()?;
                st.enter(inst, Some(caller))?;
                let step = st.task(tid)?.step;
                match step {
                    Step::Wait(si) => {
                        let st = &mut *st;
                        st.insts[inst].wait_end(si, true, &mut st.shared)?
                    }
                    _ => Event::TASK_CANCELLED,
                }
            };
            let r = deliver_callback(store, sh, tid, inst, ev);
            sh.get()?.leave(inst, Some(caller));
            r.map(drop)
        }
    }
}

/// Calls a task's callback; returns its packed code once dealt with.
fn run_callback(
    store: &mut Store,
    sh: &Shared,
    tid: TaskId,
    cb: crate::FuncId,
    args: &[Val],
) -> Result<u32, Trapped> {
    // One result, written in place: no allocation per event.
    let mut code = [Val::I32(0)];
    as_task(store, sh, tid, |store| store.call_into(cb, args, &mut code))?;
    let packed = match code {
        [Val::I32(p)] => p as u32,
        _ => return Err(Trapped::new("callback returned no code")),
    };
    callback_code(sh, tid, packed)?;
    Ok(packed)
}

/// A task blocked on its fiber: what the loop asks before resuming it.
#[derive(Clone, Copy)]
pub(crate) struct Blocked {
    tid: TaskId,
    /// The task's instance (entered from the host around the resume).
    inst: InstId,
    fiber: FiberId,
    /// The condition of its [`block_until`]; it lives in that frame, on
    /// the suspended fiber.
    cond: *mut dyn FnMut() -> bool,
}

/// The tasks and entered instances of the stack running (`current` and
/// `entered`): each stack has its own, so a switch takes the resumer's
/// out and a fiber starts with none.
type View = (Vec<TaskId>, Vec<(InstId, Option<InstId>)>);

fn take_view(sh: &Shared) -> Result<View, Trapped> {
    let mut st = sh.get()?;
    let st: &mut State = &mut st;
    Ok((
        core::mem::take(&mut st.current),
        core::mem::take(&mut st.entered),
    ))
}

fn put_view(sh: &Shared, v: View) -> Result<(), Trapped> {
    let mut st = sh.get()?;
    (st.current, st.entered) = v;
    Ok(())
}

/// What a fiber's start or resume means for its resumer: `None` if it
/// suspended (it blocks; the loop resumes it), else what it returned.
fn fiber_outcome(r: Resumed) -> Result<Option<u32>, Trapped> {
    match r {
        Resumed::Suspended => Ok(None),
        Resumed::Finished(Ok(v)) => Ok(Some(v)),
        Resumed::Finished(Err(m)) => Err(Trapped(m)),
    }
}

/// Runs `body` (a task's core call and what follows) on a fiber of its
/// own. Without memory for a stack it runs here instead (a block in it
/// then runs the loop on this stack, as without fibers).
fn on_fiber(store: &mut Store, sh: &Shared, body: Body) -> Result<Option<u32>, Trapped> {
    let mine = take_view(sh)?;
    let r = store.fiber_start(body);
    put_view(sh, mine)?;
    match r {
        Ok(r) => fiber_outcome(r),
        Err(mut body) => body(store).map(Some).map_err(Trapped),
    }
}

/// Resumes the first blocked fiber (in the order they blocked) whose
/// instance may be entered and whose condition holds (`Store.tick`:
/// entered from the host around it); `false` if none can go on.
fn resume_blocked(store: &mut Store, sh: &Shared) -> Result<bool, Trapped> {
    let mut i = 0;
    loop {
        let b = {
            let st = sh.get()?;
            let Some(&b) = st.blocked.get(i) else {
                return Ok(false);
            };
            i += 1;
            if !st.may_enter(b.inst, None) {
                continue;
            }
            b
        };
        // SAFETY: the fiber is suspended inside the `block_until` whose
        // frame holds `cond`; its entry leaves the list before the fiber
        // runs again or is freed.
        if !unsafe { (*b.cond)() } {
            continue;
        }
        {
            let mut st = sh.get()?;
            st.blocked.retain(|x| x.fiber != b.fiber);
            st.since_fiber = 0;
            st.enter(b.inst, None)?;
        }
        let mine = take_view(sh)?;
        let r = store.fiber_resume(b.fiber);
        put_view(sh, mine)?;
        // After a trap the instance stays entered (poisoned), as elsewhere.
        fiber_outcome(r)?;
        sh.get()?.leave(b.inst, None);
        return Ok(true);
    }
}

/// `thread.wait_until(cond)` on a fiber: the calls on it leave their
/// instances, the fiber suspends until the loop resumes it (with `cond`
/// true), then they enter again.
fn suspend_until(
    store: &mut Store,
    sh: &Shared,
    fiber: FiberId,
    cond: &mut dyn FnMut() -> bool,
) -> Result<(), Trapped> {
    let view = {
        let mut st = sh.get()?;
        let tid = *st
            .current
            .first()
            .ok_or_else(|| Trapped::new("a fiber blocked outside a task"))?;
        let inst = st.task(tid)?.inst;
        let current = core::mem::take(&mut st.current);
        let entered = st.suspend_stack();
        let cond: *mut (dyn FnMut() -> bool + '_) = cond;
        // SAFETY: only the lifetime is erased: the loop calls `cond` only
        // while this frame waits in `fiber_suspend` below (see `Blocked`).
        let cond = unsafe {
            core::mem::transmute::<
                *mut (dyn FnMut() -> bool + '_),
                *mut (dyn FnMut() -> bool + 'static),
            >(cond)
        };
        st.blocked.push(Blocked {
            tid,
            inst,
            fiber,
            cond,
        });
        (current, entered)
    };
    store.fiber_suspend();
    let mut st = sh.get()?;
    st.current = view.0;
    st.resume_stack(view.1)
}

/// A trap reached the host: the fibers still blocked are never resumed.
/// Their stacks are freed without running anything on them, and their
/// tasks end (releasing the exclusive lock they held).
pub(crate) fn abandon_blocked(store: &mut Store, sh: &Shared) {
    let blocked = match sh.get() {
        Ok(mut st) => core::mem::take(&mut st.blocked),
        Err(_) => return,
    };
    for b in blocked {
        store.fiber_abandon(b.fiber);
        if let Ok(mut st) = sh.get() {
            if st.insts[b.inst].exclusive_thread == Some(b.tid as u32) {
                st.insts[b.inst].exclusive_thread = None;
            }
            st.remove_task(b.tid);
        }
    }
}

/// Runs the loop on this stack until `cond` holds (on a fiber: suspends
/// the fiber until it does). `from_guest`: core code is blocked here (a
/// synchronous built-in or lower), so the current task must be allowed to
/// block.
pub(crate) fn block_until(
    store: &mut Store,
    sh: &Shared,
    from_guest: bool,
    cond: &mut dyn FnMut() -> bool,
) -> Result<(), Trapped> {
    if cond() {
        return Ok(());
    }
    if from_guest {
        sh.get()?.check_may_block()?;
    }
    // A device has often finished by the time the guest waits (the
    // completion sits in its ring, not yet taken): take what came in, and
    // the wait may be over before this stack is set aside or its fiber
    // switched out. Which ready task runs first is the loop's choice; an
    // event that arrived before the wait is one it may return with.
    let early = poll_io(store, sh)?;
    if early.progress && cond() {
        return Ok(());
    }
    if let Some(fiber) = store.current_fiber() {
        return suspend_until(store, sh, fiber, cond);
    }
    let saved = sh.get()?.suspend_stack();
    let mut idle_rounds = 0u32;
    // `cond` held not above; it is asked again only after something
    // happened that could change it.
    let mut changed = false;
    // The turn just taken, while nothing has run since: the first idle
    // round uses it instead of polling the devices again (the sooner the
    // loop halts, the sooner a device sharing the host's CPU runs).
    let mut fresh = (!early.progress).then_some(early);
    loop {
        if changed && cond() {
            return sh.get()?.resume_stack(saved);
        }
        changed = true;
        match run_one(store, sh)? {
            Ran::Nothing => {
                idle_rounds = 0;
                let io = match fresh.take() {
                    Some(io) => io,
                    None => poll_io(store, sh)?,
                };
                if io.progress || fire_timers(store, sh)? {
                    continue;
                }
                let (waiter, deadline) = {
                    let st = sh.get()?;
                    (st.waiter.clone(), st.timers.iter().map(|t| t.0).min())
                };
                match waiter {
                    Some(w) if io.in_flight || deadline.is_some() => {
                        w.wait(deadline);
                        // A deadline of the embedder's (a timeout) ends a
                        // wait as it ends a loop in Wasm.
                        if store.interrupted() {
                            let trap = crate::trap::Trap(crate::trap::TrapKind::Interrupted);
                            return Err(Trapped::from_core(store, trap.into()));
                        }
                        // Woken by a device or the clock: take what came
                        // in before looking for a task to run.
                        poll_io(store, sh)?;
                        fire_timers(store, sh)?;
                    }
                    _ => {
                        return Err(Trapped::new(
                            "wasm trap: deadlock detected: event loop cannot make further progress",
                        ))
                    }
                }
            }
            // Time passing (a timer set) or I/O is progress for a yielding
            // task.
            Ran::Yield => {
                fresh = None;
                let io = poll_io(store, sh)?;
                fire_timers(store, sh)?;
                let timer_set = !sh.get()?.timers.is_empty();
                if timer_set || io.progress || io.in_flight {
                    idle_rounds = 0;
                } else {
                    idle_rounds += 1;
                }
            }
            Ran::Progress => {
                fresh = None;
                idle_rounds = 0;
            }
        }
        // Only tasks that yield again and again can run while this stack
        // waits: they wait for something below it (a caller this stack
        // would have to return to first), or for nothing.
        if idle_rounds > LIVELOCK_ROUNDS {
            return Err(Trapped::new(
                "wasm trap: deadlock detected: only yielding tasks can run while a \
                 synchronous call blocks",
            ));
        }
    }
}

/// A guest copy was left waiting on device end `token`, or the guest
/// dropped its end: the I/O source serving it starts the transfer, or
/// finishes the end, now (see
/// [`IoSource::start_end`](super::device::IoSource::start_end)).
pub(crate) fn device_hook(store: &mut Store, sh: &Shared, token: u64) -> Result<(), Trapped> {
    for_each_io(store, sh, |s, cx| s.start_end(cx, token))
}

/// One turn of every I/O source of the embedder.
pub(crate) fn poll_io(store: &mut Store, sh: &Shared) -> Result<IoTurn, Trapped> {
    let mut turn = IoTurn::default();
    for_each_io(store, sh, |s, cx| {
        let t = s.poll(cx)?;
        turn.progress |= t.progress;
        turn.in_flight |= t.in_flight;
        Ok(())
    })?;
    Ok(turn)
}

/// Runs `f` on each I/O source until one fails, from a snapshot of the
/// list (the sources use the state while they run; one added meanwhile
/// runs from the next turn).
fn for_each_io(
    store: &mut Store,
    sh: &Shared,
    mut f: impl FnMut(&dyn IoSource, &mut HostCx<'_>) -> Result<(), String>,
) -> Result<(), Trapped> {
    let sources = sh.get()?.io.clone();
    sources
        .iter()
        .try_for_each(|s| f(&**s, &mut HostCx { store, sh }))
        .map_err(Trapped::new)
}

/// Completes a pending host call: its result goes to the caller.
pub(crate) fn complete_host_call(
    store: &mut Store,
    sh: &Shared,
    token: u64,
    r: Resolution,
) -> Result<(), Trapped> {
    let f = sh.get()?.host_calls.remove(&token);
    match f {
        Some(mut f) => f(store, sh, r),
        None => Err(Trapped::new("no such pending host call")),
    }
}

/// Fires the timers that are due; `false` if none was.
fn fire_timers(store: &mut Store, sh: &Shared) -> Result<bool, Trapped> {
    let due: Vec<u64> = {
        let mut st = sh.get()?;
        if st.timers.is_empty() {
            return Ok(false);
        }
        let Some(w) = st.waiter.clone() else {
            return Ok(false);
        };
        let now = w.now_ns();
        let due = st
            .timers
            .iter()
            .filter(|t| t.0 <= now)
            .map(|t| t.1)
            .collect();
        st.timers.retain(|t| t.0 > now);
        due
    };
    let fired = !due.is_empty();
    for token in due {
        complete_host_call(store, sh, token, Resolution::Returned(None))?;
    }
    Ok(fired)
}

/// Yield-only rounds after which a blocked stack gives up.
const LIVELOCK_ROUNDS: u32 = 10_000;

/// What [`run_one`] did.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ran {
    Nothing,
    /// A task yielded and asked to yield again.
    Yield,
    Progress,
}
