//! Canonical built-ins, each a core function bound to the instance that
//! defines it (definitions.py `canon_*`): resources, tasks, subtasks,
//! waitable sets, streams and futures. Rules and their traps come from
//! `ringos_abi::concurrency`; this module moves values and blocks.

use alloc::boxed::Box;
use alloc::rc::Rc;
use alloc::vec;
use alloc::vec::Vec;

use ringos_abi::buffers::GuestBuffer;
use ringos_abi::concurrency::{
    CopyCall, CopyElems, CopyElemsIn, ElemHandles, EndKind, Instance, Notice, Side,
};
use ringos_abi::events::{Event, BLOCKED};
use ringos_abi::handles::Dropped;
use ringos_abi::layout::{alignment, elem_size, flatten_types};
use ringos_abi::lift::lift_flat_values;
use ringos_abi::{
    self as abi, CoreVal, CoreValueIter, Cx, NoHandles, ResourceType, ValType, Value,
    MAX_FLAT_PARAMS,
};
use wasmparser::ValType as CoreValType;

use super::call::{guest_cx, to_core, with_table, Opts};
use super::device::device_end_serving;
use super::sched;
use super::state::{Callee, InstId, Resolution, RtBuffer, Shared, State, Trapped};
use crate::instance::Val;
use crate::{FuncId, Store, Trap, TrapKind};

const I32: CoreValType = CoreValType::I32;

/// Registers a built-in: a host function on raw slots (every built-in's
/// core values are integers; see [`crate::instance::RawHostFn`]) whose
/// failures trap with their message.
pub(crate) fn builtin(
    store: &mut Store,
    params: &[CoreValType],
    results: &[CoreValType],
    f: impl Fn(&mut Store, &[u64]) -> Result<Option<u64>, Trapped> + 'static,
) -> FuncId {
    let n_results = results.len();
    store.host_func_raw(
        params,
        results,
        Box::new(move |store, slots| {
            let why = match (n_results, f(store, slots)) {
                (0, Ok(None)) => return Ok(()),
                (1, Ok(Some(v))) => {
                    slots[0] = v;
                    return Ok(());
                }
                (_, Err(t)) => t.0,
                (n, Ok(r)) => alloc::format!(
                    "internal error: a built-in gave {} result(s) where its core type has {n}",
                    usize::from(r.is_some()),
                ),
            };
            store.set_trap_message(why);
            Err(Trap(TrapKind::Host))
        }),
    )
}

/// Puts a lowered call's one result, if any, in `out`; a failure becomes
/// a trap with its message.
pub(crate) fn set_result(
    store: &mut Store,
    out: &mut [Val],
    r: Result<Option<Val>, Trapped>,
) -> Result<(), Trap> {
    let why = match (out, r) {
        ([], Ok(None)) => return Ok(()),
        ([o], Ok(Some(v))) => {
            *o = v;
            return Ok(());
        }
        (_, Err(t)) => t.0,
        (out, Ok(r)) => alloc::format!(
            "internal error: a call gave {} result(s) where its core type has {}",
            usize::from(r.is_some()),
            out.len()
        ),
    };
    store.set_trap_message(why);
    Err(Trap(TrapKind::Host))
}

/// Argument `i` as an i32 (the low half of its slot).
fn arg(args: &[u64], i: usize) -> u32 {
    args.get(i).map_or(0, |v| *v as u32)
}

fn i32v(v: u32) -> Option<u64> {
    Some(u64::from(v))
}

/// A Cx over `opts`' memory only (no realloc, no handles): for event
/// payloads and buffer checks.
fn with_memory<R>(
    store: &mut Store,
    opts: &Opts,
    f: impl FnOnce(&mut Cx<'_>) -> Result<R, abi::Trap>,
) -> Result<R, Trapped> {
    Ok(guest_cx(store, opts, false, &mut NoHandles, f)?)
}

// ---- resources -----------------------------------------------------------

/// `canon resource.new rt`: `(rep: i32) -> i32`.
pub(crate) fn resource_new(
    store: &mut Store,
    sh: &Shared,
    inst: InstId,
    rt: ResourceType,
) -> FuncId {
    let sh = sh.clone();
    builtin(store, &[I32], &[I32], move |_, args| {
        let mut st = sh.get()?;
        let i = st.inst(inst)?;
        i.check_may_leave("resource.new")?;
        Ok(i32v(i.canon_resource_new(rt, arg(args, 0))?))
    })
}

/// `canon resource.rep rt`: `(handle: i32) -> i32`.
pub(crate) fn resource_rep(
    store: &mut Store,
    sh: &Shared,
    inst: InstId,
    rt: ResourceType,
) -> FuncId {
    let sh = sh.clone();
    builtin(store, &[I32], &[I32], move |_, args| {
        let mut st = sh.get()?;
        Ok(i32v(st.inst(inst)?.canon_resource_rep(rt, arg(args, 0))?))
    })
}

/// `canon resource.drop rt`: `(handle: i32)`; runs the destructor of an
/// owned resource in its implementing instance.
pub(crate) fn resource_drop(
    store: &mut Store,
    sh: &Shared,
    inst: InstId,
    rt: ResourceType,
) -> FuncId {
    let sh = sh.clone();
    builtin(store, &[I32], &[], move |store, args| {
        let (dropped, dtor, owner) = {
            let mut st = sh.get()?;
            let i = st.inst(inst)?;
            i.check_may_leave("resource.drop")?;
            let d = i.canon_resource_drop(rt, arg(args, 0))?;
            let def = st.resource(rt)?;
            (d, def.dtor, def.inst)
        };
        match dropped {
            Dropped::Own { rep } => {
                if let Some(dtor) = dtor {
                    let crossing = owner.filter(|o| *o != inst);
                    if let Some(o) = crossing {
                        sh.get()?.enter(o, Some(inst))?;
                    }
                    store
                        .call(dtor, &[Val::I32(rep as i32)])
                        .map_err(|e| Trapped::from_core(store, e))?;
                    if let Some(o) = crossing {
                        sh.get()?.leave(o, Some(inst));
                    }
                }
            }
            Dropped::Borrow { scope } => {
                let mut st = sh.get()?;
                if let Some(t) = scope.and_then(|s| st.tasks.get_mut(s as usize)) {
                    if let Some(t) = t.as_mut() {
                        t.abi.borrows.release()?;
                    }
                }
            }
        }
        Ok(None)
    })
}

// ---- tasks -----------------------------------------------------------------

/// `canon backpressure.inc` / `.dec`.
pub(crate) fn backpressure(store: &mut Store, sh: &Shared, inst: InstId, inc: bool) -> FuncId {
    let sh = sh.clone();
    builtin(store, &[], &[], move |_, _| {
        let mut st = sh.get()?;
        let i = st.inst(inst)?;
        if inc {
            i.canon_backpressure_inc()?;
        } else {
            i.canon_backpressure_dec()?;
        }
        Ok(None)
    })
}

/// Whether lifting a value of type `t` as flat parameters reads memory.
fn needs_memory(t: Option<&ValType>) -> bool {
    t.is_some_and(|t| {
        flatten_types([t], abi::AddrType::I32).len() > MAX_FLAT_PARAMS
            || t.clone()
                .contains(&mut |t| matches!(t, ValType::String | ValType::List(_)))
    })
}

/// `canon task.return (result t) opts`: the flat result as parameters.
pub(crate) fn task_return(
    store: &mut Store,
    sh: &Shared,
    inst: InstId,
    result: Option<ValType>,
    opts: Opts,
) -> FuncId {
    let ts: Vec<ValType> = result.iter().cloned().collect();
    let mut flat = flatten_types(&ts, abi::AddrType::I32);
    if flat.len() > MAX_FLAT_PARAMS {
        flat = vec![abi::CoreType::I32];
    }
    let params: Vec<CoreValType> = flat.iter().map(|t| super::call::core_type(*t)).collect();
    let sh = sh.clone();
    let types = params.clone();
    builtin(store, &params, &[], move |store, args| {
        let tid = {
            let mut st = sh.get()?;
            let (tid, t) = st.current_task_of(inst, "task.return")?;
            // Options matter only where the result goes through memory.
            let lo = if needs_memory(result.as_ref()) {
                opts.lift_options()
            } else {
                t.abi.lift_opts
            };
            t.abi.check_task_return(result.as_ref(), &lo)?;
            tid
        };
        let flat: Vec<CoreVal> = args
            .iter()
            .zip(&types)
            .map(|(a, t)| to_core(&Val::from_raw(*t, *a)))
            .collect();
        let (vs, _) = with_table(store, &sh, inst, &opts, None, |cx| {
            let mut vi = CoreValueIter::new(&flat);
            lift_flat_values(cx, MAX_FLAT_PARAMS, &mut vi, &ts)
        })?;
        sched::resolve(store, &sh, tid, vs.into_iter().next())?;
        Ok(None)
    })
}

/// `canon task.cancel`: only after a cancellation was delivered to the
/// current task (`TASK_CANCELLED`); it resolves cancelled, and its
/// caller's subtask says so (`CANCELLED_BEFORE_RETURNED`).
pub(crate) fn task_cancel(store: &mut Store, sh: &Shared, inst: InstId) -> FuncId {
    let sh = sh.clone();
    builtin(store, &[], &[], move |store, _| {
        let tid = {
            let mut st = sh.get()?;
            let (tid, t) = st.current_task_of(inst, "task.cancel")?;
            t.abi.canon_task_cancel()?;
            tid
        };
        sched::hand_over(store, &sh, tid, Resolution::Cancelled)?;
        Ok(None)
    })
}

/// `canon context.get i32 slot` / `context.set`.
pub(crate) fn context(
    store: &mut Store,
    sh: &Shared,
    inst: InstId,
    slot: u32,
    set: bool,
) -> FuncId {
    let sh = sh.clone();
    let (params, results): (&[CoreValType], &[CoreValType]) =
        if set { (&[I32], &[]) } else { (&[], &[I32]) };
    builtin(store, params, results, move |_, args| {
        let mut st = sh.get()?;
        let (_, t) = st.current_task()?;
        if t.inst != inst {
            return Err(Trapped::new("context slot of another instance's task"));
        }
        if set {
            t.abi.context_set(slot, u64::from(arg(args, 0)))?;
            Ok(None)
        } else {
            Ok(i32v(t.abi.context_get(slot)? as u32))
        }
    })
}

/// `canon thread.yield`: lets another ready task run; `-> cancelled`.
pub(crate) fn thread_yield(store: &mut Store, sh: &Shared, inst: InstId) -> FuncId {
    let sh = sh.clone();
    builtin(store, &[], &[I32], move |store, _| {
        sh.get()?.inst(inst)?.check_may_leave("thread.yield")?;
        sched::run_one(store, &sh)?;
        Ok(i32v(0))
    })
}

// ---- subtasks and waitables -----------------------------------------------

/// `canon subtask.drop`.
pub(crate) fn subtask_drop(store: &mut Store, sh: &Shared, inst: InstId) -> FuncId {
    let sh = sh.clone();
    builtin(store, &[I32], &[], move |_, args| {
        sh.get()?.inst(inst)?.canon_subtask_drop(arg(args, 0))?;
        Ok(None)
    })
}

/// `canon subtask.cancel` (synchronous; `async` is off in WASI 0.3.0):
/// asks the callee to stop (`on_cancel`), then returns the subtask's
/// state once it resolved, waiting for that if need be.
pub(crate) fn subtask_cancel(store: &mut Store, sh: &Shared, inst: InstId) -> FuncId {
    let sh = sh.clone();
    builtin(store, &[I32], &[I32], move |store, args| {
        let i = arg(args, 0);
        let callee = {
            let mut st = sh.get()?;
            st.inst(inst)?;
            let State { insts, shared, .. } = &mut *st;
            match insts[inst].canon_subtask_cancel(i, false, shared)? {
                ringos_abi::concurrency::SubtaskCancel::Done(s) => return Ok(i32v(s as u32)),
                ringos_abi::concurrency::SubtaskCancel::CallOnCancel { callee } => {
                    Callee::unpack(callee)
                }
            }
        };
        sched::request_cancellation(store, &sh, callee, inst)?;
        let done = |sh: &Shared| -> Result<Option<u32>, Trapped> {
            let mut st = sh.get()?;
            let State { insts, shared, .. } = &mut *st;
            Ok(insts[inst]
                .subtask_cancel_finish(i, shared)?
                .map(|s| s as u32))
        };
        if let Some(s) = done(&sh)? {
            return Ok(i32v(s));
        }
        // The callee may take a while.
        wait_for_pending_event(store, &sh, inst, i)?;
        match done(&sh)? {
            Some(s) => Ok(i32v(s)),
            None => Err(Trapped::new("subtask.cancel: the subtask did not resolve")),
        }
    })
}

/// `canon waitable-set.new`.
pub(crate) fn waitable_set_new(store: &mut Store, sh: &Shared, inst: InstId) -> FuncId {
    let sh = sh.clone();
    builtin(store, &[], &[I32], move |_, _| {
        Ok(i32v(sh.get()?.inst(inst)?.canon_waitable_set_new()?))
    })
}

/// `canon waitable-set.drop`.
pub(crate) fn waitable_set_drop(store: &mut Store, sh: &Shared, inst: InstId) -> FuncId {
    let sh = sh.clone();
    builtin(store, &[I32], &[], move |_, args| {
        sh.get()?
            .inst(inst)?
            .canon_waitable_set_drop(arg(args, 0))?;
        Ok(None)
    })
}

/// `canon waitable.join`.
pub(crate) fn waitable_join(store: &mut Store, sh: &Shared, inst: InstId) -> FuncId {
    let sh = sh.clone();
    builtin(store, &[I32, I32], &[], move |_, args| {
        sh.get()?
            .inst(inst)?
            .canon_waitable_join(arg(args, 0), arg(args, 1))?;
        Ok(None)
    })
}

/// The bytes of `opts`' memory (a trap without one).
fn memory_of<'s>(store: &'s mut Store, opts: &Opts) -> Result<&'s mut [u8], abi::Trap> {
    let m = opts.memory.ok_or(abi::Trap::MissingMemory)?;
    let mut mem = super::call::GuestMemory(store.memory_def(m));
    let bytes: *mut [u8] = abi::Memory::bytes_mut(&mut mem);
    // SAFETY: the definition lives as long as the store, which this
    // borrows; nothing else touches the memory while the built-in runs.
    Ok(unsafe { &mut *bytes })
}

/// `unpack_event`: stores `p1`, `p2` at `ptr`, returns the code.
fn unpack_event(
    store: &mut Store,
    opts: &Opts,
    ptr: u32,
    ev: Event,
) -> Result<Option<u64>, Trapped> {
    let mem = memory_of(store, opts)?;
    // `store(p1)` then `store(p2)`: each traps when out of bounds.
    for (at, v) in [(u64::from(ptr), ev.p1), (u64::from(ptr) + 4, ev.p2)] {
        let Some(dst) = usize::try_from(at).ok().and_then(|a| mem.get_mut(a..a + 4)) else {
            return Err(abi::Trap::OutOfBounds {
                what: "event payload",
                ptr: at,
                byte_len: 4,
                mem_len: mem.len() as u64,
            }
            .into());
        };
        dst.copy_from_slice(&v.to_le_bytes());
    }
    Ok(i32v(ev.code as u32))
}

/// `canon waitable-set.wait (memory m)`: `(si, ptr) -> event code`.
pub(crate) fn waitable_set_wait(
    store: &mut Store,
    sh: &Shared,
    inst: InstId,
    opts: Opts,
) -> FuncId {
    let sh = sh.clone();
    builtin(store, &[I32, I32], &[I32], move |store, args| {
        let si = arg(args, 0);
        sh.get()?.inst(inst)?.canon_waitable_set_wait(si)?;
        let r = sched::block_until(store, &sh, true, &mut || {
            sh.get()
                .ok()
                .and_then(|mut st| st.inst(inst).ok()?.set_has_pending_event(si).ok())
                .unwrap_or(true)
        });
        let ev = {
            let mut st = sh.get()?;
            let State { insts, shared, .. } = &mut *st;
            let cancelled = r.is_err();
            let ev = insts[inst].wait_end(si, cancelled, shared);
            r?;
            ev?
        };
        unpack_event(store, &opts, arg(args, 1), ev)
    })
}

/// `canon waitable-set.poll (memory m)`: `(si, ptr) -> event code`.
pub(crate) fn waitable_set_poll(
    store: &mut Store,
    sh: &Shared,
    inst: InstId,
    opts: Opts,
) -> FuncId {
    let sh = sh.clone();
    builtin(store, &[I32, I32], &[I32], move |store, args| {
        let ev = {
            let mut st = sh.get()?;
            let (tid, _) = st.current_task()?;
            let State {
                insts,
                shared,
                tasks,
                ..
            } = &mut *st;
            let task = tasks[tid].as_mut().ok_or_else(|| Trapped::new("no task"))?;
            insts[inst].canon_waitable_set_poll(arg(args, 0), &mut task.abi, false, shared)?
        };
        unpack_event(store, &opts, arg(args, 1), ev)
    })
}

// ---- streams and futures ----------------------------------------------------

/// Moves elements between two buffers of a copy: guest memory through
/// values (lifted with the writer's options, lowered with the reader's,
/// whose `realloc` may run), or host values.
pub(crate) struct Copier<'a> {
    pub store: *mut Store,
    pub t: Option<&'a ValType>,
}

impl CopyElems<RtBuffer> for Copier<'_> {
    fn copy(&mut self, src: &mut RtBuffer, dst: &mut RtBuffer, n: u32) -> Result<(), abi::Trap> {
        // SAFETY: the built-in that made this copier holds the store and
        // does not use it while the copy runs.
        let store = unsafe { &mut *self.store };
        let t = self.t;
        let vals: Vec<Value> = match src {
            RtBuffer::Guest { buf, opts, .. } => match t {
                None => {
                    buf.advance(n);
                    Vec::new()
                }
                Some(_) => with_memory(store, opts, |cx| buf.read(cx, t, n))
                    .map_err(|e| abi::Trap::Guest(e.0))?,
            },
            RtBuffer::Host(h) => h.read(n),
        };
        match dst {
            RtBuffer::Guest { buf, opts, .. } => {
                if t.is_none() {
                    buf.advance(n);
                    return Ok(());
                }
                guest_cx(store, opts, true, &mut NoHandles, |cx| {
                    buf.write(cx, t, &vals)
                })
            }
            RtBuffer::Host(h) => {
                if t.is_none() {
                    h.write(vec![Value::Bool(false); n as usize])
                } else {
                    h.write(vals)
                }
            }
        }
    }
}

/// Moves elements that hold handles (`own` resources, stream and future
/// ends, error contexts) between two guest buffers, at the rendezvous and
/// only the `n` elements that move: lifted from the writer's memory with
/// the writer's table (`lift_own` takes each handle out, with its traps),
/// lowered into the reader's memory and table (new handles there). One of
/// the two instances runs the built-in (`caller`); the other is the
/// pending side's, split off the instances before the copy started.
pub(crate) struct HandleCopier<'a> {
    pub store: *mut Store,
    pub t: &'a ValType,
    /// The pending side's instance, if it is another guest's.
    pub other: Option<&'a mut Instance>,
}

/// A host end never meets elements that hold handles ([`super::host`]
/// refuses to make one), but if it did, this is the trap.
const HOST_HANDLES: abi::Trap =
    abi::Trap::Unsupported("stream or future elements that hold handles on a host end");

impl CopyElemsIn<RtBuffer> for HandleCopier<'_> {
    fn copy_in(
        &mut self,
        caller: &mut Instance,
        src: &mut RtBuffer,
        dst: &mut RtBuffer,
        n: u32,
    ) -> Result<(), abi::Trap> {
        let (
            RtBuffer::Guest {
                buf: from,
                inst: wi,
                opts: wopts,
            },
            RtBuffer::Guest {
                buf: to,
                inst: ri,
                opts: ropts,
            },
        ) = (src, dst)
        else {
            return Err(HOST_HANDLES);
        };
        let me = caller.id as InstId;
        let other = self.other.as_deref_mut();
        let other_is = |i: InstId| move |o: &&mut Instance| o.id as InstId == i;
        let lost = abi::Trap::Unsupported(
            "a copy whose other side's handle table is in use (a lift or lower has it)",
        );
        let (writer, reader) = if *wi == me {
            (caller, other.filter(other_is(*ri)).ok_or(lost)?)
        } else if *ri == me {
            (other.filter(other_is(*wi)).ok_or(lost)?, caller)
        } else {
            return Err(abi::Trap::Mismatch("a copy that is not the caller's"));
        };
        // SAFETY: the built-in that made this copier holds the store and
        // does not use it while the copy runs.
        let store = unsafe { &mut *self.store };
        let t = Some(self.t);
        let vals = guest_cx(
            store,
            wopts,
            false,
            &mut ElemHandles { inst: writer },
            |cx| from.read(cx, t, n),
        )?;
        // The reader's `realloc` (strings, lists) may not call out.
        let prev = core::mem::replace(&mut reader.may_leave, false);
        let r = {
            let mut hs = ElemHandles { inst: &mut *reader };
            guest_cx(store, ropts, true, &mut hs, |cx| to.write(cx, t, &vals))
        };
        reader.may_leave = prev;
        r
    }
}

/// Delivers a notice to the other side of a copy.
pub(crate) fn deliver(
    st: &mut State,
    store: *mut Store,
    notice: Option<Notice<RtBuffer>>,
) -> Result<(), Trapped> {
    let Some(n) = notice else {
        return Ok(());
    };
    match n.side() {
        Side::Guest { inst, .. } => {
            let i = st
                .insts
                .get_mut(inst as usize)
                .ok_or_else(|| Trapped::new("notice for an unknown instance"))?;
            i.apply_notice(n)?;
        }
        Side::Host(token) => super::host::notice(st, store, token, n)?,
    }
    Ok(())
}

/// The payload of a copy or cancel, blocking for a synchronous one.
fn finish_copy(
    store: &mut Store,
    sh: &Shared,
    inst: InstId,
    i: u32,
    async_: bool,
    call: CopyCall<RtBuffer>,
) -> Result<Option<u64>, Trapped> {
    let sp: *mut Store = store;
    if call.notice.is_some() {
        deliver(&mut *sh.get()?, sp, call.notice)?;
    }
    if let Some(p) = call.payload {
        return Ok(i32v(p));
    }
    // The copy waits: if a device serves the other end, start it now.
    let device = device_end_serving(&*sh.get()?, inst, i);
    if let Some(token) = device {
        sched::device_hook(store, sh, token)?;
        // The device may be done already (under TCG a request often
        // completes inside its notify): its completion is taken now, and
        // the copy is over within the call, as `stream_copy` returns an
        // event already pending instead of `BLOCKED`. A kernel-only read
        // polls once before it halts, too.
        sched::poll_io(store, sh)?;
    }
    if async_ {
        let mut st = sh.get()?;
        let State { insts, shared, .. } = &mut *st;
        if device.is_some() && insts[inst].has_pending_event(i)? {
            return Ok(i32v(insts[inst].get_pending_event(i, shared)?.p2));
        }
        return Ok(i32v(BLOCKED));
    }
    wait_for_pending_event(store, sh, inst, i)?;
    let mut st = sh.get()?;
    let State { insts, shared, .. } = &mut *st;
    Ok(i32v(insts[inst].get_pending_event(i, shared)?.p2))
}

/// `wait_for_pending_event()` of `inst`'s waitable `i` for a synchronous
/// built-in: the loop runs until `i` has an event (the waitable is marked
/// as having a sync waiter meanwhile).
fn wait_for_pending_event(
    store: &mut Store,
    sh: &Shared,
    inst: InstId,
    i: u32,
) -> Result<(), Trapped> {
    sh.get()?.inst(inst)?.begin_sync_wait(i)?;
    let r = sched::block_until(store, sh, true, &mut || {
        sh.get()
            .ok()
            .and_then(|mut st| st.inst(inst).ok()?.has_pending_event(i).ok())
            .unwrap_or(true)
    });
    sh.get()?.inst(inst)?.end_sync_wait(i)?;
    r
}

/// `canon stream.new` / `future.new`: `() -> i64` (both ends).
pub(crate) fn end_new(
    store: &mut Store,
    sh: &Shared,
    inst: InstId,
    t: Option<ValType>,
    stream: bool,
) -> FuncId {
    let sh = sh.clone();
    // Shared by every end made here (an end holds its type).
    let t = t.map(Rc::new);
    builtin(store, &[], &[CoreValType::I64], move |_, _| {
        let mut st = sh.get()?;
        let State { insts, shared, .. } = &mut *st;
        let packed = if stream {
            insts[inst].canon_stream_new(shared, t.as_ref())?
        } else {
            insts[inst].canon_future_new(shared, t.as_ref())?
        };
        Ok(Some(packed))
    })
}

/// `canon {stream,future}.{read,write} opts`: `(end, ptr[, n]) -> packed`.
pub(crate) fn copy(
    store: &mut Store,
    sh: &Shared,
    inst: InstId,
    kind: EndKind,
    t: Option<ValType>,
    opts: Opts,
) -> FuncId {
    let sh = sh.clone();
    let params: &[CoreValType] = if kind.is_stream() {
        &[I32, I32, I32]
    } else {
        &[I32, I32]
    };
    // The element's layout, once rather than per copy.
    let layout = t.as_ref().map(|t| {
        (
            alignment(t, abi::AddrType::I32),
            elem_size(t, abi::AddrType::I32),
        )
    });
    // Elements that hold handles take the other path, decided here once:
    // plain values (`stream<u8>`) never meet the handle machinery.
    if let Some(t) = t.as_ref().filter(|t| t.contains_handle()) {
        return copy_moving_handles(store, &sh, inst, kind, t.clone(), opts, params, layout);
    }
    let opts = Rc::new(opts);
    builtin(store, params, &[I32], move |store, args| {
        let (i, ptr) = (arg(args, 0), arg(args, 1));
        let n = if kind.is_stream() { arg(args, 2) } else { 1 };
        let store_ptr: *mut Store = store;
        let call = {
            let mut st = sh.get()?;
            st.inst(inst)?;
            let State { insts, shared, .. } = &mut *st;
            let t = t.as_ref();
            let mut copier = Copier {
                store: store_ptr,
                t,
            };
            // SAFETY: the store stays alive; nothing else uses it while
            // the buffer is checked.
            let s = unsafe { &mut *store_ptr };
            let make = || {
                let mem_len = || memory_of(s, &opts).map(|m| m.len() as u64);
                GuestBuffer::with_layout_in(mem_len, layout, u64::from(ptr), u64::from(n)).map(
                    |buf| RtBuffer::Guest {
                        buf,
                        inst,
                        opts: opts.clone(),
                    },
                )
            };
            insts[inst].copy(shared, kind, t, i, opts.async_, make, &mut copier)?
        };
        finish_copy(store, &sh, inst, i, opts.async_, call)
    })
}

/// [`copy`] of elements that hold handles: they move between the two
/// instances' tables ([`HandleCopier`]), so the pending side's instance
/// is split off the caller's for the copy.
#[allow(clippy::too_many_arguments)]
fn copy_moving_handles(
    store: &mut Store,
    sh: &Shared,
    inst: InstId,
    kind: EndKind,
    t: ValType,
    opts: Opts,
    params: &'static [CoreValType],
    layout: Option<(u32, u64)>,
) -> FuncId {
    let sh = sh.clone();
    let opts = Rc::new(opts);
    builtin(store, params, &[I32], move |store, args| {
        let (i, ptr) = (arg(args, 0), arg(args, 1));
        let n = if kind.is_stream() { arg(args, 2) } else { 1 };
        let store_ptr: *mut Store = store;
        let call = {
            let mut st = sh.get()?;
            st.inst(inst)?;
            let State {
                insts,
                shared,
                checked_out,
                ..
            } = &mut *st;
            // The other side, if a guest's copy waits (a copy within one
            // instance traps before any element moves).
            let other = insts[inst]
                .copy_end(i)
                .ok()
                .and_then(|e| match e.kind.is_stream() {
                    true => shared.stream(e.shared).ok()?.pending_side(),
                    false => shared.future(e.shared).ok()?.pending_side(),
                })
                .and_then(|s| s.inst())
                .map(|o| o as InstId)
                .filter(|&o| o != inst && o < insts.len() && !checked_out[o]);
            let (me, other) = pair(insts, inst, other);
            let mut copier = HandleCopier {
                store: store_ptr,
                t: &t,
                other,
            };
            // SAFETY: the store stays alive; nothing else uses it while
            // the buffer is checked.
            let s = unsafe { &mut *store_ptr };
            let make = || {
                with_memory(s, &opts, |cx| {
                    GuestBuffer::with_layout(cx, layout, u64::from(ptr), u64::from(n))
                })
                .map_err(|e| abi::Trap::Guest(e.0))
                .map(|buf| RtBuffer::Guest {
                    buf,
                    inst,
                    opts: opts.clone(),
                })
            };
            me.copy_moving_handles(shared, kind, Some(&t), i, opts.async_, make, &mut copier)?
        };
        finish_copy(store, &sh, inst, i, opts.async_, call)
    })
}

/// Instance `a`, and `b` too if it is another one.
fn pair(
    insts: &mut [Instance],
    a: InstId,
    b: Option<InstId>,
) -> (&mut Instance, Option<&mut Instance>) {
    match b {
        Some(b) if b > a => {
            let (l, r) = insts.split_at_mut(b);
            (&mut l[a], Some(&mut r[0]))
        }
        Some(b) if b < a => {
            let (l, r) = insts.split_at_mut(a);
            (&mut r[0], Some(&mut l[b]))
        }
        _ => (&mut insts[a], None),
    }
}

/// `canon {stream,future}.cancel-{read,write}`: `(end) -> packed`.
pub(crate) fn cancel(
    store: &mut Store,
    sh: &Shared,
    inst: InstId,
    kind: EndKind,
    t: Option<ValType>,
    async_: bool,
) -> FuncId {
    let sh = sh.clone();
    builtin(store, &[I32], &[I32], move |store, args| {
        let i = arg(args, 0);
        let call = {
            let mut st = sh.get()?;
            st.inst(inst)?;
            let State { insts, shared, .. } = &mut *st;
            insts[inst].cancel_copy(shared, kind, t.as_ref(), i, async_)?
        };
        finish_copy(store, &sh, inst, i, async_, call)
    })
}

/// `canon {stream,future}.drop-{readable,writable}`: `(end)`.
pub(crate) fn drop_end(
    store: &mut Store,
    sh: &Shared,
    inst: InstId,
    kind: EndKind,
    t: Option<ValType>,
) -> FuncId {
    let sh = sh.clone();
    builtin(store, &[I32], &[], move |store, args| {
        let i = arg(args, 0);
        let device = {
            let mut st = sh.get()?;
            st.inst(inst)?;
            // A device end on the other side finishes when this one goes.
            let device = kind
                .is_stream()
                .then(|| device_end_serving(&st, inst, i))
                .flatten();
            let notice = {
                let State { insts, shared, .. } = &mut *st;
                insts[inst].drop_end(shared, kind, t.as_ref(), i)?
            };
            deliver(&mut st, store, notice)?;
            device
        };
        if let Some(token) = device {
            sched::device_hook(store, &sh, token)?;
        }
        Ok(None)
    })
}
