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

use alloc::string::String;
use alloc::vec::Vec;

use ringos_abi::events::{unpack_callback_result, CallbackCode, Event};
use ringos_abi::lift::lift_flat_values;
use ringos_abi::lower::lower_flat_values;
use ringos_abi::{CoreVal, CoreValueIter, MAX_FLAT_PARAMS, MAX_FLAT_RESULTS};

use super::call::{from_core, needs_of, to_core, with_lower_cx, with_table};
use super::device::{IoSource, IoTurn};
use super::host::HostCx;
use super::state::{Shared, Step, TaskId, Trapped};
use crate::instance::Val;
use crate::Store;

/// Runs a task's core function once it may start: takes its arguments,
/// lowers them into the callee, calls, and deals with the result (a sync
/// lift) or the callback code (an async lift).
pub(crate) fn start_task(store: &mut Store, sh: &Shared, tid: TaskId) -> Result<(), Trapped> {
    let (inst, opts, core, func, mut on_start) = {
        let mut st = sh.get()?;
        let t = st.task(tid)?;
        t.abi.start()?;
        t.step = Step::Running;
        let needs_excl = t.func.sig.ty.async_ && t.abi.needs_exclusive();
        let r = (t.inst, t.opts, t.core, t.func.clone(), t.on_start.take());
        if needs_excl {
            st.inst(r.0)?.acquire_exclusive(tid as u32)?;
        }
        r
    };
    let args = match on_start.as_mut() {
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
    let flat = with_lower_cx(store, sh, inst, &opts, Some(tid), n, lower)?;
    let core_args: Vec<Val> = flat.into_iter().map(from_core).collect();
    let results = run_core(store, sh, tid, core, &core_args)?;
    if !opts.async_ {
        // Synchronous lift: lift the result, `task.return_`, post-return.
        let flat_results: Vec<CoreVal> = results.iter().map(to_core).collect();
        let (result, _) = with_table(store, sh, inst, &opts, None, |cx| {
            let mut vi = CoreValueIter::new(&flat_results);
            lift_flat_values(cx, MAX_FLAT_RESULTS, &mut vi, ft.result_type())
        })?;
        resolve(store, sh, tid, result.into_iter().next())?;
        if let Some(pr) = opts.post_return {
            sh.get()?.inst(inst)?.may_leave = false;
            run_core(store, sh, tid, pr, &results)?;
            sh.get()?.inst(inst)?.may_leave = true;
        }
        return finish(sh, tid);
    }
    let packed = match results.first() {
        Some(Val::I32(p)) => *p as u32,
        _ => return Err(Trapped::new("async callee returned no callback code")),
    };
    callback_code(sh, tid, packed)
}

/// Calls core code on behalf of task `tid` (the current task meanwhile).
fn run_core(
    store: &mut Store,
    sh: &Shared,
    tid: TaskId,
    f: crate::FuncId,
    args: &[Val],
) -> Result<Vec<Val>, Trapped> {
    sh.get()?.current.push(tid);
    let r = store.call(f, args);
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
    let mut on_resolve = {
        let mut st = sh.get()?;
        let t = st.task(tid)?;
        t.abi.return_()?;
        t.on_resolve.take()
    };
    if let Some(f) = on_resolve.as_mut() {
        f(store, sh, result)?;
    }
    Ok(())
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
        CallbackCode::Yield => {
            st.task(tid)?.step = Step::Yield;
            Ok(())
        }
        CallbackCode::Wait => {
            st.inst(inst)?.wait_begin(si)?;
            st.task(tid)?.step = Step::Wait(si);
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
        let mut picked = None;
        for tid in 0..st.tasks.len() {
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
                Step::Yield => free,
                Step::Wait(si) => free && i.set_has_pending_event(si).unwrap_or(true),
                _ => false,
            };
            if ready {
                picked = Some((tid, inst, step));
                break;
            }
        }
        let Some((tid, inst, step)) = picked else {
            return Ok(Ran::Nothing);
        };
        let next = match step {
            Step::ToStart => {
                st.inst(inst)?.stop_waiting_to_enter()?;
                Next::Start
            }
            Step::Yield => Next::Callback(Event::NONE),
            Step::Wait(si) => {
                let st = &mut *st;
                let i = st
                    .insts
                    .get_mut(inst)
                    .ok_or_else(|| Trapped::new("instance"))?;
                Next::Callback(i.wait_end(si, false, &mut st.shared)?)
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
            let callback = {
                let mut st = sh.get()?;
                st.inst(inst)?.acquire_exclusive(tid as u32)?;
                let t = st.task(tid)?;
                t.step = Step::Running;
                t.opts.callback
            };
            let cb = callback.ok_or_else(|| Trapped::new("task without a callback"))?;
            let args = [
                Val::I32(ev.code as i32),
                Val::I32(ev.p1 as i32),
                Val::I32(ev.p2 as i32),
            ];
            let r = run_core(store, sh, tid, cb, &args)?;
            let packed = match r.first() {
                Some(Val::I32(p)) => *p as u32,
                _ => return Err(Trapped::new("callback returned no code")),
            };
            if ev.code == ringos_abi::events::EventCode::None
                && packed & 0xf == CallbackCode::Yield as u32
            {
                ran = Ran::Yield;
            }
            callback_code(sh, tid, packed)?;
        }
    }
    sh.get()?.leave(inst, None);
    Ok(ran)
}

/// Runs the loop on this stack until `cond` holds. `from_guest`: core code
/// is blocked here (a synchronous built-in or lower), so the current task
/// must be allowed to block.
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
    let saved = sh.get()?.suspend_stack();
    let mut idle_rounds = 0u32;
    // `cond` held not above; it is asked again only after something
    // happened that could change it.
    let mut changed = false;
    loop {
        if changed && cond() {
            return sh.get()?.resume_stack(saved);
        }
        changed = true;
        match run_one(store, sh)? {
            Ran::Nothing => {
                idle_rounds = 0;
                let io = poll_io(store, sh)?;
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
                let io = poll_io(store, sh)?;
                fire_timers(store, sh)?;
                let timer_set = !sh.get()?.timers.is_empty();
                if timer_set || io.progress || io.in_flight {
                    idle_rounds = 0;
                } else {
                    idle_rounds += 1;
                }
            }
            Ran::Progress => idle_rounds = 0,
        }
        // Only tasks that yield again and again can run while this stack
        // waits: they wait for something below it (a caller this stack
        // would have to return to first).
        if idle_rounds > LIVELOCK_ROUNDS {
            return Err(Trapped::new(
                "wasm trap: deadlock detected: only yielding tasks can run while a \
                 synchronous call blocks (suspending a blocked synchronous callee is not \
                 supported yet)",
            ));
        }
    }
}

/// A copy of `inst`'s end `i` was left waiting, or the end was dropped
/// (`shared` is its shared state): if a device serves the other end, its
/// I/O source starts the transfer, or finishes the end, now (see
/// [`IoSource::start_end`](super::device::IoSource::start_end)).
pub(crate) fn device_hook(store: &mut Store, sh: &Shared, shared: u32) -> Result<(), Trapped> {
    let token = match super::device::device_end_of(&*sh.get()?, shared) {
        Some(t) => t,
        None => return Ok(()),
    };
    for_each_io(store, sh, |s, cx| s.start_end(cx, token))
}

/// One turn of every I/O source of the embedder.
fn poll_io(store: &mut Store, sh: &Shared) -> Result<IoTurn, Trapped> {
    let mut turn = IoTurn::default();
    for_each_io(store, sh, |s, cx| {
        let t = s.poll(cx)?;
        turn.progress |= t.progress;
        turn.in_flight |= t.in_flight;
        Ok(())
    })?;
    Ok(turn)
}

/// Runs `f` on each I/O source until one fails. The sources are taken out
/// of the state while they run (they use it) and put back after.
fn for_each_io(
    store: &mut Store,
    sh: &Shared,
    mut f: impl FnMut(&dyn IoSource, &mut HostCx<'_>) -> Result<(), String>,
) -> Result<(), Trapped> {
    let sources = core::mem::take(&mut sh.get()?.io);
    let result = sources
        .iter()
        .try_for_each(|s| f(&**s, &mut HostCx { store, sh }))
        .map_err(Trapped::new);
    let mut st = sh.get()?;
    let added = core::mem::replace(&mut st.io, sources);
    st.io.extend(added);
    result
}

/// Completes a pending host call: its result goes to the caller.
pub(crate) fn complete_host_call(
    store: &mut Store,
    sh: &Shared,
    token: u64,
    result: Option<ringos_abi::Value>,
) -> Result<(), Trapped> {
    let f = sh.get()?.host_calls.remove(&token);
    match f {
        Some(mut f) => f(store, sh, result),
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
        complete_host_call(store, sh, token, None)?;
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
