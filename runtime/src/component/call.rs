//! Calls across a component boundary: `canon lift` (a component function
//! made of a core function) and `canon lower` (the core function, an
//! adapter, that calls a component function), after definitions.py's
//! `canon_lift` / `canon_lower`, synchronous and async (with `callback`).
//!
//! Values cross as [`Value`]s: the caller's flat arguments are lifted with
//! the caller's options, lowered into the callee with the callee's, and
//! the result goes back the same way. The call is direct and in-process;
//! an async callee that does not finish at once leaves a task that the
//! one loop ([`super::sched`]) drives.

use alloc::boxed::Box;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::RefCell;

use ringos_abi::concurrency::{
    self as cc, EndKind, Instance, InstanceHandles, LiftOptions, Subtask,
};
use ringos_abi::events::{pack_subtask_return, SubtaskState};
use ringos_abi::handles::BorrowScope;
use ringos_abi::layout::{flatten_functype, Context, FlattenOpts};
use ringos_abi::lift::lift_flat_values;
use ringos_abi::lower::lower_flat_values;
use ringos_abi::values::FlatSource;
use ringos_abi::{
    self as abi, CoreType, CoreVal, Cx, Handles, NoHandles, Options, StringEncoding, ValType,
    Value, MAX_FLAT_ASYNC_PARAMS, MAX_FLAT_PARAMS, MAX_FLAT_RESULTS,
};
use wasmparser::ValType as CoreValType;

use super::host::HostCx;
use super::sched;
use super::state::{
    Callee, InstId, OnResolve, OnStart, Resolution, RtTask, Shared, State, Step, TaskId, Trapped,
};
use super::types::FuncSig;
use crate::instance::Val;
use crate::vmctx::MemoryDef;
use crate::{FuncId, MemoryId, Store, Trap};

/// A host function of the component world: gets the lifted arguments,
/// returns the result (or a trap message).
pub type HostComponentFn = dyn Fn(&mut HostCx<'_>, &[Value]) -> Result<Option<Value>, String>;

/// The canonical options of a lift, lower or built-in.
#[derive(Clone, Copy, Debug, Default)]
pub struct Opts {
    pub encoding: StringEncoding,
    pub memory: Option<MemoryId>,
    pub realloc: Option<FuncId>,
    pub post_return: Option<FuncId>,
    pub async_: bool,
    pub callback: Option<FuncId>,
}

impl Opts {
    /// The options `task.return` must repeat (`LiftOptions`).
    pub fn lift_options(&self) -> LiftOptions {
        LiftOptions {
            string_encoding: self.encoding,
            memory: self.memory.map(|m| m.index() as u32),
        }
    }
}

/// A component function.
pub struct Func {
    pub sig: FuncSig,
    pub(crate) kind: FuncKind,
}

/// What an async host function answers: its result now, or later (the
/// host completes the call with [`HostCx::complete`] or a timer does).
pub enum HostReply {
    Ready(Option<Value>),
    Pending(u64),
}

/// An async host function (an `async func` the host implements).
pub type HostAsyncFn = dyn Fn(&mut HostCx<'_>, &[Value]) -> Result<HostReply, String>;

/// The stream and future ends a host function returns as its result, a
/// record or tuple of ends only (`ringos:blk`'s `read`): their shared
/// indices in field order. A synchronous lowered call puts them straight
/// into the caller's table; no [`Value`] is built on that path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ends {
    shared: [u32; Ends::MAX],
    len: u8,
}

impl Ends {
    /// Fields a result of ends may have.
    pub const MAX: usize = 4;

    /// The ends of `shared`, in field order (at most [`Ends::MAX`]).
    pub fn new(shared: &[u32]) -> Ends {
        let mut e = Ends {
            shared: [0; Ends::MAX],
            len: shared.len().min(Ends::MAX) as u8,
        };
        e.shared[..e.len as usize].copy_from_slice(&shared[..e.len as usize]);
        e
    }

    pub fn as_slice(&self) -> &[u32] {
        &self.shared[..self.len as usize]
    }

    /// The same ends as a component value of the record or tuple type `t`
    /// (for callers other than a synchronous lowered call).
    fn into_value(self, t: &ValType) -> Result<Value, Trapped> {
        let wrong = || Trapped::new("a host function returned ends of the wrong type");
        let fields = fields_of(t).ok_or_else(wrong)?;
        if fields.len() != self.as_slice().len() {
            return Err(wrong());
        }
        let vs = fields
            .types()
            .zip(self.as_slice())
            .map(|(t, &i)| match t {
                ValType::Stream(_) => Ok(Value::Stream(i)),
                ValType::Future(_) => Ok(Value::Future(i)),
                _ => Err(wrong()),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(match t {
            ValType::Record(_) => Value::Record(vs),
            _ => Value::tuple(vs),
        })
    }
}

/// A host function whose result is a record or tuple of ends ([`Ends`])
/// and whose parameters are bools and integers, given as their core
/// values' bits (an `i32` in the low half, zero-extended): a lowered call
/// passes them straight from the caller's arguments.
pub type HostEndsFn = dyn Fn(&mut HostCx<'_>, &[u64]) -> Result<Ends, String>;

/// A host function on bools and integers only (at most one result), on
/// their core values' bits as [`HostEndsFn`] takes them: a lowered call
/// goes straight from the caller's arguments to its result slot
/// (`wasi:clocks` `now`, `ringos:blk` `capacity`).
pub type HostScalarFn = dyn Fn(&mut HostCx<'_>, &[u64]) -> Result<Option<u64>, String>;

/// The component value of type `t` (a bool or an integer) whose core
/// value has `bits`.
fn value_of_bits(t: &ValType, bits: u64) -> Option<Value> {
    let core = match t {
        ValType::U64 | ValType::S64 => Val::I64(bits as i64),
        _ => Val::I32(bits as u32 as i32),
    };
    lift_scalar(t, core)
}

/// Calls `f` on component values; its result as the value of `sig`'s
/// result type.
fn call_scalar(
    f: &HostScalarFn,
    sig: &FuncSig,
    cx: &mut HostCx<'_>,
    vs: &[Value],
) -> Result<Option<Value>, String> {
    let r = f(cx, &bits_of(vs)?)?;
    match (sig.ty.result_type().first(), r) {
        (None, None) => Ok(None),
        (Some(t), Some(b)) => value_of_bits(t, b)
            .map(Some)
            .ok_or_else(|| "a host function on integers has a result of another type".into()),
        _ => Err("a host function returned a value of the wrong type".into()),
    }
}

/// The core value bits of a bool or an integer (as [`HostEndsFn`] takes
/// them); `None` for any other value.
fn scalar_bits(v: &Value) -> Option<u64> {
    Some(match *v {
        Value::Bool(b) => u64::from(b),
        Value::U8(i) => u64::from(i),
        Value::U16(i) => u64::from(i),
        Value::U32(i) => u64::from(i),
        Value::U64(i) => i,
        Value::S8(i) => u64::from(i32::from(i) as u32),
        Value::S16(i) => u64::from(i32::from(i) as u32),
        Value::S32(i) => u64::from(i as u32),
        Value::S64(i) => i as u64,
        _ => return None,
    })
}

/// The bits of each of `vs` ([`scalar_bits`]), for a host function on
/// core bits called with component values.
fn bits_of(vs: &[Value]) -> Result<Vec<u64>, String> {
    vs.iter()
        .map(scalar_bits)
        .collect::<Option<Vec<u64>>>()
        .ok_or_else(|| "a host function on core bits takes only bools and integers".into())
}

/// Calls host function `f` on component values.
fn call_ends(f: &HostEndsFn, cx: &mut HostCx<'_>, vs: &[Value]) -> Result<Ends, String> {
    f(cx, &bits_of(vs)?)
}

pub(crate) enum FuncKind {
    /// `canon lift` of a core function of instance `inst`.
    Lifted {
        core: FuncId,
        opts: Opts,
        inst: InstId,
    },
    Host(Box<HostComponentFn>),
    HostScalar(Box<HostScalarFn>),
    HostEnds(Box<HostEndsFn>),
    HostAsync(Box<HostAsyncFn>),
}

/// A synchronous host function, as [`host_call`] calls it.
#[derive(Clone, Copy)]
enum SyncHost<'a> {
    Value(&'a HostComponentFn),
    Scalar(&'a HostScalarFn),
    Ends(&'a HostEndsFn),
}

impl FuncKind {
    fn sync_host(&self) -> Option<SyncHost<'_>> {
        match self {
            FuncKind::Host(h) => Some(SyncHost::Value(h)),
            FuncKind::HostScalar(h) => Some(SyncHost::Scalar(h)),
            FuncKind::HostEnds(h) => Some(SyncHost::Ends(h)),
            _ => None,
        }
    }
}

impl Func {
    pub fn host(sig: FuncSig, f: Box<HostComponentFn>) -> Rc<Func> {
        Rc::new(Func {
            sig,
            kind: FuncKind::Host(f),
        })
    }

    /// A host function whose parameters and result (at most one) are
    /// bools and integers, on their core bits ([`HostScalarFn`]).
    pub fn host_scalar(sig: FuncSig, f: Box<HostScalarFn>) -> Rc<Func> {
        Rc::new(Func {
            sig,
            kind: FuncKind::HostScalar(f),
        })
    }

    /// A host function whose result type is a record or tuple of stream
    /// and future ends, returned as [`Ends`].
    pub fn host_ends(sig: FuncSig, f: Box<HostEndsFn>) -> Rc<Func> {
        Rc::new(Func {
            sig,
            kind: FuncKind::HostEnds(f),
        })
    }

    /// A host function that may finish later: a caller that lowered it
    /// async gets a subtask, a synchronous caller blocks on the loop.
    pub fn host_async(sig: FuncSig, f: Box<HostAsyncFn>) -> Rc<Func> {
        Rc::new(Func {
            sig,
            kind: FuncKind::HostAsync(f),
        })
    }
}

pub(crate) fn core_type(t: CoreType) -> CoreValType {
    match t {
        CoreType::I32 => CoreValType::I32,
        CoreType::I64 => CoreValType::I64,
        CoreType::F32 => CoreValType::F32,
        CoreType::F64 => CoreValType::F64,
    }
}

pub(crate) fn to_core(v: &Val) -> CoreVal {
    match *v {
        Val::I32(x) => CoreVal::I32(x as u32),
        Val::I64(x) => CoreVal::I64(x as u64),
        Val::F32(b) => CoreVal::F32(f32::from_bits(b)),
        Val::F64(b) => CoreVal::F64(f64::from_bits(b)),
        Val::FuncRef(x) => CoreVal::I64(x as u64),
        Val::ExternRef(x) => CoreVal::I64(x),
    }
}

pub(crate) fn from_core(v: CoreVal) -> Val {
    match v {
        CoreVal::I32(x) => Val::I32(x as i32),
        CoreVal::I64(x) => Val::I64(x as i64),
        CoreVal::F32(f) => Val::F32(f.to_bits()),
        CoreVal::F64(f) => Val::F64(f.to_bits()),
    }
}

/// Flat arguments a lowered call consumes in two steps (the parameters at
/// the start, the result pointer when it resolves).
#[derive(Default)]
pub(crate) struct FlatArgs {
    vals: Vec<CoreVal>,
    pos: usize,
}

impl FlatSource for FlatArgs {
    fn next(&mut self, want: CoreType) -> Result<CoreVal, abi::Trap> {
        let v = *self
            .vals
            .get(self.pos)
            .ok_or(abi::Trap::Mismatch("too few flat values"))?;
        if v.ty() != want {
            return Err(abi::Trap::Mismatch("flat value of the wrong type"));
        }
        self.pos += 1;
        Ok(v)
    }
}

/// A linear memory seen through its `MemoryDef` (re-read on every access:
/// `realloc` may grow it).
pub(crate) struct GuestMemory(pub *mut MemoryDef);

impl abi::Memory for GuestMemory {
    fn bytes(&self) -> &[u8] {
        // SAFETY: the def belongs to a live memory of the store; `len`
        // bytes from `base` are committed. No Wasm runs while the slice
        // is borrowed (the ABI re-reads after each realloc).
        unsafe { core::slice::from_raw_parts((*self.0).base, (*self.0).len as usize) }
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as above; `&mut self` makes this the only view.
        unsafe { core::slice::from_raw_parts_mut((*self.0).base, (*self.0).len as usize) }
    }
}

/// The guest's `realloc` (the instance's `may_leave` is cleared around
/// it by [`with_cx`]).
pub(crate) struct GuestRealloc {
    pub store: *mut Store,
    pub func: FuncId,
}

impl abi::Realloc for GuestRealloc {
    fn realloc(
        &mut self,
        _memory: &mut dyn abi::Memory,
        old_ptr: u64,
        old_size: u64,
        align: u32,
        new_size: u64,
    ) -> Result<u64, abi::Trap> {
        // SAFETY: the store outlives the lift/lower that made this, and
        // that caller does not touch the store while the Cx is alive.
        let store = unsafe { &mut *self.store };
        let args = [
            Val::I32(old_ptr as i32),
            Val::I32(old_size as i32),
            Val::I32(align as i32),
            Val::I32(new_size as i32),
        ];
        match store.call(self.func, &args) {
            Ok(r) => match r.first() {
                Some(Val::I32(p)) => Ok(*p as u32 as u64),
                _ => Err(abi::Trap::Guest("realloc returned no i32".into())),
            },
            Err(e) => Err(abi::Trap::Guest(Trapped::from_core(store, e).0)),
        }
    }
}

/// Runs `f` with a `Cx` over `opts`' memory, its `realloc` if `realloc`,
/// and `handles`: the one place a lift/lower context is put together.
pub(crate) fn guest_cx<R>(
    store: &mut Store,
    opts: &Opts,
    realloc: bool,
    handles: &mut dyn Handles,
    f: impl FnOnce(&mut Cx<'_>) -> R,
) -> R {
    let mut mem = opts.memory.map(|m| GuestMemory(store.memory_def(m)));
    let store: *mut Store = store;
    let mut re = opts
        .realloc
        .filter(|_| realloc)
        .map(|func| GuestRealloc { store, func });
    let mut cx = Cx::new(
        Options {
            string_encoding: opts.encoding,
            addr: abi::AddrType::I32,
        },
        mem.as_mut().map(|m| m as &mut dyn abi::Memory),
        re.as_mut().map(|r| r as &mut dyn abi::Realloc),
        handles,
    );
    f(&mut cx)
}

/// Runs `f` with a `Cx` over instance `inst`'s memory, realloc and handle
/// table. The instance is taken out of the state meanwhile (built-ins
/// that would reach it trap) with `may_leave` cleared, so `realloc` cannot
/// call out. `scope` is the task whose borrow count `lower_borrow` raises.
/// Returns `f`'s result and the handles `lift_borrow` lent.
pub(crate) fn with_cx<R>(
    store: &mut Store,
    sh: &Shared,
    inst: InstId,
    opts: &Opts,
    scope: Option<TaskId>,
    f: impl FnOnce(&mut Cx<'_>) -> Result<R, abi::Trap>,
) -> Result<(R, Vec<u32>), Trapped> {
    let (mut instance, implements, mut bscope) = {
        let mut st = sh.get()?;
        let (id, parent, may_enter) = {
            let cur = st.inst(inst)?;
            (cur.id, cur.parent, cur.may_enter)
        };
        let mut placeholder = st.spare.take().unwrap_or_else(|| Instance::new(id, parent));
        placeholder.id = id;
        placeholder.parent = parent;
        placeholder.may_enter = may_enter;
        placeholder.may_leave = false;
        let implements = st.implements(inst);
        let bscope: Option<BorrowScope> = match scope {
            Some(t) => Some(st.task(t)?.abi.borrows),
            None => None,
        };
        st.checked_out[inst] = true;
        let instance = core::mem::replace(&mut st.insts[inst], placeholder);
        (instance, implements, bscope)
    };
    let prev_leave = instance.may_leave;
    instance.may_leave = false;
    let (r, lenders) = {
        let mut hs = InstanceHandles::new(&mut instance, &implements);
        hs.scope = bscope.as_mut();
        let r = guest_cx(store, opts, true, &mut hs, f);
        (r, core::mem::take(&mut hs.lenders))
    };
    instance.may_leave = prev_leave;
    let mut st = sh.get()?;
    let placeholder = core::mem::replace(&mut st.insts[inst], instance);
    st.spare = Some(placeholder);
    st.checked_out[inst] = false;
    if let (Some(t), Some(b)) = (scope, bscope) {
        st.task(t)?.abi.borrows = b;
    }
    Ok((r?, lenders))
}

/// [`with_cx`] for a lift or lower that cannot run guest code (no
/// `realloc`: every lift, and lowers of types without strings or lists):
/// the instance's table is used where it is, under the state's borrow,
/// instead of being checked out.
pub(crate) fn with_table<R>(
    store: &mut Store,
    sh: &Shared,
    inst: InstId,
    opts: &Opts,
    scope: Option<TaskId>,
    f: impl FnOnce(&mut Cx<'_>) -> Result<R, abi::Trap>,
) -> Result<(R, Vec<u32>), Trapped> {
    let mut st = sh.get()?;
    st.inst(inst)?;
    let State {
        insts,
        implemented,
        tasks,
        ..
    } = &mut *st;
    let bscope = match scope {
        Some(t) => Some(&mut super::state::task_in(tasks, t)?.abi.borrows),
        None => None,
    };
    let mut hs = InstanceHandles::new(&mut insts[inst], &implemented[inst]);
    hs.scope = bscope;
    let r = guest_cx(store, opts, false, &mut hs, f);
    let lenders = core::mem::take(&mut hs.lenders);
    Ok((r?, lenders))
}

/// Calls `f` from `caller` (`None`: the host), `Store.lift`'s
/// `func_inst`: `on_start` produces the arguments once the callee starts,
/// `on_resolve` takes the result. A synchronous callee has finished when
/// this returns; an async one may have left a task for the loop.
pub(crate) fn call(
    store: &mut Store,
    sh: &Shared,
    f: &Rc<Func>,
    caller: Option<InstId>,
    mut on_start: OnStart,
    mut on_resolve: OnResolve,
) -> Result<Callee, Trapped> {
    let (core, opts, inst) = match &f.kind {
        FuncKind::Host(h) => {
            let args = on_start(store, sh)?;
            let r = h(&mut HostCx { store, sh }, &args).map_err(Trapped)?;
            on_resolve(store, sh, Resolution::Returned(r))?;
            return Ok(Callee::Done);
        }
        FuncKind::HostScalar(h) => {
            let args = on_start(store, sh)?;
            let r = call_scalar(h, &f.sig, &mut HostCx { store, sh }, &args).map_err(Trapped)?;
            on_resolve(store, sh, Resolution::Returned(r))?;
            return Ok(Callee::Done);
        }
        FuncKind::HostEnds(h) => {
            let args = on_start(store, sh)?;
            let ends = call_ends(h, &mut HostCx { store, sh }, &args).map_err(Trapped)?;
            let t = f.sig.ty.result_type().first();
            let r = t.map(|t| ends.into_value(t)).transpose()?;
            on_resolve(store, sh, Resolution::Returned(r))?;
            return Ok(Callee::Done);
        }
        FuncKind::HostAsync(h) => {
            let args = on_start(store, sh)?;
            return match h(&mut HostCx { store, sh }, &args).map_err(Trapped)? {
                HostReply::Ready(r) => {
                    on_resolve(store, sh, Resolution::Returned(r))?;
                    Ok(Callee::Done)
                }
                HostReply::Pending(token) => {
                    sh.get()?.host_calls.insert(token, on_resolve);
                    Ok(Callee::Host(token))
                }
            };
        }
        FuncKind::Lifted { core, opts, inst } => (*core, *opts, *inst),
    };
    if opts.async_ && opts.callback.is_none() {
        return Err(Trapped::new(
            "not supported: async lift without a callback (stackful async is off in WASI 0.3.0)",
        ));
    }
    let ft = &f.sig.ty;
    let tid = {
        let mut st = sh.get()?;
        st.enter(inst, caller)?;
        let tid = st.next_task_id();
        let abi_task = cc::Task::new(
            tid as u32,
            ft.async_,
            opts.async_,
            opts.callback.is_some(),
            ft.result.clone(),
            opts.lift_options(),
        );
        st.add_task(RtTask {
            inst,
            func: f.clone(),
            opts,
            core,
            caller,
            abi: abi_task,
            step: Step::ToStart,
            on_start: Some(on_start),
            on_resolve: Some(on_resolve),
        })
    };
    // `enter_implicit_thread`: an async call waits while the instance has
    // backpressure (or another task holds its exclusive lock).
    let wait = {
        let mut st = sh.get()?;
        let needs_excl = st.task(tid)?.abi.needs_exclusive();
        let i = st.inst(inst)?;
        let wait = ft.async_ && i.must_wait_to_enter(needs_excl);
        if wait {
            i.start_waiting_to_enter();
        }
        wait
    };
    if !wait {
        sched::start_task(store, sh, tid)?;
    }
    sh.get()?.leave(inst, caller);
    Ok(Callee::Task(tid))
}

/// Calls `f` from the host with host values and drives the loop until its
/// task resolves.
pub(crate) fn call_from_host(
    store: &mut Store,
    sh: &Shared,
    f: &Rc<Func>,
    args: &[Value],
) -> Result<Option<Value>, Trapped> {
    let args = args.to_vec();
    // A trap may have left calls "entered" (their instances poisoned);
    // they are not on the stack any more.
    sh.get()?.entered.clear();
    let out: Rc<RefCell<Option<Option<Value>>>> = Rc::new(RefCell::new(None));
    let out2 = out.clone();
    let r = call(
        store,
        sh,
        f,
        None,
        Box::new(move |_, _| Ok(args.clone())),
        Box::new(move |_, _, r| match r {
            Resolution::Returned(r) => {
                *out2.borrow_mut() = Some(r);
                Ok(())
            }
            Resolution::Cancelled => Err(Trapped::new("a call from the host was cancelled")),
        }),
    )
    .and_then(|_| sched::block_until(store, sh, false, &mut || out.borrow().is_some()));
    if r.is_err() {
        sched::abandon_blocked(store, sh);
    }
    r?;
    let r = out.borrow_mut().take();
    Ok(r.flatten())
}

/// The core signature of `canon lower` of `sig` with `opts`.
pub(crate) fn lowered_type(sig: &FuncSig, opts: &Opts) -> (Vec<CoreValType>, Vec<CoreValType>) {
    let ft = flatten_functype(
        FlattenOpts {
            addr: abi::AddrType::I32,
            async_: opts.async_,
            callback: false,
        },
        &sig.ty,
        Context::Lower,
    );
    (
        ft.params.into_iter().map(core_type).collect(),
        ft.results.into_iter().map(core_type).collect(),
    )
}

/// `canon lower`: the core function instance `inst` imports to call
/// `callee`; `sig` is the function's type as the caller sees it.
pub(crate) fn lower(
    store: &mut Store,
    sh: &Shared,
    callee: Rc<Func>,
    sig: FuncSig,
    opts: Opts,
    inst: InstId,
) -> FuncId {
    let (params, results) = lowered_type(&sig, &opts);
    let sh = sh.clone();
    let lay = HostLayout::new(&sig);
    let sig = Rc::new(sig);
    // A synchronous call of a synchronous host function whose core values
    // are all integers (most WASI and ringos:blk calls): straight from the
    // stub's slots to `host_call` and back.
    let integers = |ts: &[CoreValType]| {
        ts.iter()
            .all(|t| matches!(t, CoreValType::I32 | CoreValType::I64))
    };
    // The same for a host function returning ends stored at the
    // out-pointer (`ringos:blk`'s `read`): no component value at all.
    if !opts.async_
        && matches!(callee.kind, FuncKind::HostEnds(_))
        && matches!(lay.results, ResultShape::SpilledEnds(..))
        && lay.scalar_params
        && integers(&params)
    {
        let n = sig.ty.param_types().len();
        let f = move |store: &mut Store, slots: &mut [u64]| -> Result<(), Trap> {
            let r = ends_call(store, &sh, &callee, &lay, &opts, inst, slots, n);
            set_raw_result(store, slots, 0, r.map(|()| None))
        };
        return store.host_func_raw(&params, &results, Box::new(f));
    }
    // And for one on integers only: core bits in, core bits out.
    if !opts.async_
        && matches!(callee.kind, FuncKind::HostScalar(_))
        && matches!(lay.results, ResultShape::None | ResultShape::Scalar)
        && lay.scalar_params
        && integers(&params)
        && integers(&results)
    {
        let n = sig.ty.param_types().len();
        let result = results.first().copied();
        let f = move |store: &mut Store, slots: &mut [u64]| -> Result<(), Trap> {
            let FuncKind::HostScalar(h) = &callee.kind else {
                unreachable!("checked when lowered")
            };
            let r = sh
                .get()
                .and_then(|mut st| Ok(st.inst(inst)?.check_may_leave("canon lower")?))
                .and_then(|()| {
                    let args = slots
                        .get(..n)
                        .ok_or_else(|| Trapped::new("too few arguments"))?;
                    h(&mut HostCx { store, sh: &sh }, args).map_err(Trapped)
                })
                .and_then(|bits| match (bits, result) {
                    (Some(b), Some(t)) => Ok(Some(Val::from_raw(t, b))),
                    (None, None) => Ok(None),
                    _ => Err(Trapped::new(
                        "a host function returned a value of the wrong type",
                    )),
                });
            set_raw_result(store, slots, usize::from(result.is_some()), r)
        };
        return store.host_func_raw(&params, &results, Box::new(f));
    }
    if !opts.async_
        && callee.kind.sync_host().is_some()
        && lay.scalar_params
        && integers(&params)
        && integers(&results)
    {
        let types = params.clone();
        let f = move |store: &mut Store, slots: &mut [u64]| -> Result<(), Trap> {
            let Some(h) = callee.kind.sync_host() else {
                unreachable!("checked when lowered")
            };
            let mut args = [Val::I32(0); MAX_FLAT_PARAMS + 1];
            for ((a, t), s) in args.iter_mut().zip(&types).zip(slots.iter()) {
                *a = Val::from_raw(*t, *s);
            }
            let args = &args[..types.len().min(args.len())];
            let r = sh
                .get()
                .and_then(|mut st| Ok(st.inst(inst)?.check_may_leave("canon lower")?))
                .and_then(|()| host_call(store, &sh, h, &sig, &lay, &opts, inst, args));
            set_raw_result(store, slots, usize::from(!results_empty(&lay)), r)
        };
        return store.host_func_raw(&params, &results, Box::new(f));
    }
    // A synchronous call of another component's synchronous export on
    // values without handles: no subtask (a synchronous call's is never
    // seen: no borrows to end, nothing to cancel) and no closures. On
    // bools and integers only, not even component values: core values
    // straight through.
    let sync_lifted = matches!(&callee.kind, FuncKind::Lifted { opts: o, .. } if !o.async_);
    if !opts.async_
        && sync_lifted
        && !callee.sig.ty.async_
        && !lay.param_handles
        && !lay.result_needs.handles
    {
        if matches!(lay.results, ResultShape::None | ResultShape::Scalar)
            && lay.scalar_params
            && integers(&params)
            && integers(&results)
        {
            let types = params.clone();
            let n_results = results.len();
            let f = move |store: &mut Store, slots: &mut [u64]| -> Result<(), Trap> {
                let r = sched::call_scalar_sync(store, &sh, &callee, inst, &types, slots);
                set_raw_result(store, slots, n_results, r)
            };
            return store.host_func_raw(&params, &results, Box::new(f));
        }
        let f = move |store: &mut Store, args: &[Val], out: &mut [Val]| -> Result<(), Trap> {
            let r = plain_sync_call(store, &sh, &callee, &sig, &opts, inst, args);
            super::builtins::set_result(store, out, r)
        };
        return store.host_func(&params, &results, Box::new(f));
    }
    let f = move |store: &mut Store, args: &[Val], out: &mut [Val]| -> Result<(), Trap> {
        let r = lowered_call(store, &sh, &callee, &sig, &lay, &opts, inst, args);
        super::builtins::set_result(store, out, r)
    };
    store.host_func(&params, &results, Box::new(f))
}

/// Puts a raw lowered call's one result, if any, in the stub's first
/// slot (`n_results`: how many its core type has, at most one); a
/// failure, or a result where none is expected, becomes a trap with its
/// message.
fn set_raw_result(
    store: &mut Store,
    slots: &mut [u64],
    n_results: usize,
    r: Result<Option<Val>, Trapped>,
) -> Result<(), Trap> {
    let mut out = [Val::I32(0)];
    let n = n_results.min(1);
    super::builtins::set_result(store, &mut out[..n], r)?;
    if let (1, Some(s)) = (n, slots.first_mut()) {
        *s = out[0].to_raw();
    }
    Ok(())
}

/// The caller's subtask while it is not (yet) in the caller's table.
struct SubCell {
    local: Option<Subtask>,
    index: Option<u32>,
}

/// Runs `f` on the subtask, wherever it is.
fn with_subtask<R>(
    sh: &Shared,
    cell: &RefCell<SubCell>,
    inst: InstId,
    f: impl FnOnce(&mut Subtask, bool) -> Result<R, abi::Trap>,
) -> Result<R, Trapped> {
    let mut c = cell.borrow_mut();
    match c.index {
        Some(i) => {
            let mut st = sh.get()?;
            Ok(f(st.inst(inst)?.subtask_mut(i)?, true)?)
        }
        None => {
            let s = c
                .local
                .as_mut()
                .ok_or_else(|| Trapped::new("subtask missing"))?;
            Ok(f(s, false)?)
        }
    }
}

/// What a value of type `t` needs beyond its flat values and memory.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Needs {
    /// Handles (own, borrow, stream, future, error-context): the
    /// instance's table.
    pub handles: bool,
    /// Strings or lists: `realloc` when lowered.
    pub realloc: bool,
}

fn needs(t: &ValType) -> Needs {
    match t {
        ValType::Own(_)
        | ValType::Borrow(_)
        | ValType::Stream(_)
        | ValType::Future(_)
        | ValType::ErrorContext => Needs {
            handles: true,
            realloc: false,
        },
        ValType::String => Needs {
            handles: false,
            realloc: true,
        },
        ValType::List(e) | ValType::FixedList(e, _) | ValType::Map(e) => Needs {
            realloc: true,
            ..needs(e)
        },
        ValType::Option(e) => needs(e),
        ValType::Record(fs) => needs_of(fs.iter().map(|f| &f.ty)),
        ValType::Tuple(ts) => needs_of(ts),
        ValType::Variant(cs) => needs_of(cs.iter().filter_map(|c| c.ty.as_ref())),
        ValType::Result { ok, err } => needs_of(ok.iter().chain(err.iter()).map(|b| &**b)),
        _ => Needs::default(),
    }
}

/// What values of types `ts` need together.
pub(crate) fn needs_of<'a>(ts: impl IntoIterator<Item = &'a ValType>) -> Needs {
    ts.into_iter().fold(Needs::default(), |a, t| {
        let b = needs(t);
        Needs {
            handles: a.handles | b.handles,
            realloc: a.realloc | b.realloc,
        }
    })
}

/// Runs the lower `f` with the least context a value that needs `n` asks
/// for: the instance checked out with its `realloc` for strings and lists
/// ([`with_cx`]), its table in place for handles ([`with_table`]), the
/// memory alone otherwise. `scope`: as for [`with_cx`]. (Lowers lend no
/// handles: only `lift_borrow` does.)
pub(crate) fn with_lower_cx<R>(
    store: &mut Store,
    sh: &Shared,
    inst: InstId,
    opts: &Opts,
    scope: Option<TaskId>,
    n: Needs,
    f: impl FnOnce(&mut Cx<'_>) -> Result<R, abi::Trap>,
) -> Result<R, Trapped> {
    Ok(if n.realloc {
        with_cx(store, sh, inst, opts, scope, f)?.0
    } else if n.handles {
        with_table(store, sh, inst, opts, scope, f)?.0
    } else {
        guest_cx(store, opts, false, &mut NoHandles, f)?
    })
}

/// `lift_flat` of a bool or integer straight from its core value: no
/// context, no memory (most host calls take only these).
fn lift_scalar(t: &ValType, v: Val) -> Option<Value> {
    Some(match (t, v) {
        (ValType::Bool, Val::I32(i)) => Value::Bool(i != 0),
        (ValType::U8, Val::I32(i)) => Value::U8(i as u8),
        (ValType::U16, Val::I32(i)) => Value::U16(i as u16),
        (ValType::U32, Val::I32(i)) => Value::U32(i as u32),
        (ValType::U64, Val::I64(i)) => Value::U64(i as u64),
        (ValType::S8, Val::I32(i)) => Value::S8(i as i8),
        (ValType::S16, Val::I32(i)) => Value::S16(i as i16),
        (ValType::S32, Val::I32(i)) => Value::S32(i),
        (ValType::S64, Val::I64(i)) => Value::S64(i),
        _ => return None,
    })
}

/// `lower_flat` of a bool or integer of type `t`; `None` for any other
/// type, or a value not of type `t` (the generic path reports that).
fn lower_scalar(t: &ValType, v: &Value) -> Option<Val> {
    Some(match (t, v) {
        (ValType::Bool, Value::Bool(b)) => Val::I32(i32::from(*b)),
        (ValType::U8, Value::U8(i)) => Val::I32(i32::from(*i)),
        (ValType::U16, Value::U16(i)) => Val::I32(i32::from(*i)),
        (ValType::U32, Value::U32(i)) => Val::I32(*i as i32),
        (ValType::U64, Value::U64(i)) => Val::I64(*i as i64),
        (ValType::S8, Value::S8(i)) => Val::I32(i32::from(*i)),
        (ValType::S16, Value::S16(i)) => Val::I32(i32::from(*i)),
        (ValType::S32, Value::S32(i)) => Val::I32(*i),
        (ValType::S64, Value::S64(i)) => Val::I64(*i),
        _ => return None,
    })
}

/// A bool or integer of type `t` as lowering it in one instance and
/// lifting it in another leaves its core value `v` (narrowed to its
/// width, a bool to 0 or 1); `None` for any other type.
pub(crate) fn pass_scalar(t: &ValType, v: Val) -> Option<Val> {
    lower_scalar(t, &lift_scalar(t, v)?)
}

/// What a lowered host call's signature needs, worked out once when the
/// import is lowered rather than on every call.
pub(crate) struct HostLayout {
    /// Every parameter is a bool or an integer (and they fit in flat
    /// values): lifted straight from the core arguments.
    scalar_params: bool,
    /// Some parameter holds a handle (lifting needs the table).
    param_handles: bool,
    results: ResultShape,
    /// What lowering the result needs.
    result_needs: Needs,
}

enum ResultShape {
    None,
    /// One bool or integer.
    Scalar,
    /// Flat values (generic lowering).
    Flat,
    /// Stored at the caller's out-pointer (the last core argument): the
    /// result tuple's alignment and size, and when the result is a record
    /// or tuple, the offset of each of its fields.
    Spilled((u32, u64), Option<Vec<u64>>),
    /// [`ResultShape::Spilled`] for a record or tuple of stream and future
    /// ends only (as `ringos:blk`'s `read`): each field's offset and end,
    /// lowered straight into the instance's table ([`store_ends`]).
    SpilledEnds((u32, u64), Vec<(u64, EndKind, Option<Rc<ValType>>)>),
}

/// Whether the lowered call has no core result.
fn results_empty(lay: &HostLayout) -> bool {
    matches!(
        lay.results,
        ResultShape::None | ResultShape::Spilled(..) | ResultShape::SpilledEnds(..)
    )
}

/// The fields of a record or tuple type.
fn fields_of(t: &ValType) -> Option<ringos_abi::types::Fields<'_>> {
    use ringos_abi::types::Fields;
    match t {
        ValType::Record(f) => Some(Fields::Record(f)),
        ValType::Tuple(ts) => Some(Fields::Tuple(ts)),
        _ => None,
    }
}

impl HostLayout {
    pub(crate) fn new(sig: &FuncSig) -> HostLayout {
        let params = sig.ty.param_types();
        let results = sig.ty.result_type();
        let scalar_params = params.len() <= MAX_FLAT_PARAMS && params.iter().all(is_scalar);
        let shape = match results {
            [] => ResultShape::None,
            [t] if is_scalar(t) => ResultShape::Scalar,
            ts if ringos_abi::layout::flat_len(ts) <= MAX_FLAT_RESULTS => ResultShape::Flat,
            ts => {
                let pt = abi::AddrType::I32;
                let layout =
                    ringos_abi::lift::tuple_layout(ringos_abi::types::Fields::Tuple(ts), pt);
                let fields = match ts {
                    [t] => fields_of(t),
                    _ => None,
                };
                let offsets = fields.map(|f| ringos_abi::layout::field_offsets(f, pt));
                let ends = fields.zip(offsets.as_ref()).and_then(|(f, offsets)| {
                    f.types()
                        .zip(offsets)
                        .map(|(t, &off)| match t {
                            ValType::Stream(e) => Some((off, EndKind::ReadableStream, e.clone())),
                            ValType::Future(e) => Some((off, EndKind::ReadableFuture, e.clone())),
                            _ => None,
                        })
                        .collect()
                });
                match ends {
                    Some(ends) => ResultShape::SpilledEnds(layout, ends),
                    None => ResultShape::Spilled(layout, offsets),
                }
            }
        };
        HostLayout {
            scalar_params,
            param_handles: needs_of(params).handles,
            results: shape,
            result_needs: needs_of(results),
        }
    }
}

/// Stores a result made of stream and future ends only (their shared
/// indices) at `ptr`: each end becomes a readable end in `inst`'s table,
/// its index the field (`store` of each, as the generic path does it,
/// without the walk over the type).
#[allow(clippy::too_many_arguments)]
fn store_ends(
    store: &mut Store,
    sh: &Shared,
    inst: InstId,
    opts: &Opts,
    ends: &[(u64, EndKind, Option<Rc<ValType>>)],
    shared: &[u32],
    layout: (u32, u64),
    ptr: u64,
) -> Result<(), Trapped> {
    if shared.len() != ends.len() {
        return Err(Trapped::new(
            "a host function returned a value of the wrong type",
        ));
    }
    let mem = opts
        .memory
        .ok_or_else(|| Trapped::new("results stored without a memory"))?;
    let mut guest = GuestMemory(store.memory_def(mem));
    let bytes = abi::Memory::bytes_mut(&mut guest);
    ringos_abi::lift::check_ptr_in(bytes.len() as u64, ptr, layout, "result out-param")?;
    // In bounds of memory, so of `usize`.
    let at = ptr as usize;
    let mut st = sh.get()?;
    let i = st.inst(inst)?;
    for ((off, kind, t), &s) in ends.iter().zip(shared) {
        let handle = i.lower_async_value(*kind, s, t.as_ref())?;
        let field = at + *off as usize;
        bytes[field..field + 4].copy_from_slice(&handle.to_le_bytes());
    }
    Ok(())
}

/// A synchronous lowered call of a host function returning ends (see
/// [`lower`]): `slots` holds the `n` parameters' core bits, then the
/// out-pointer the ends are stored at.
#[allow(clippy::too_many_arguments)]
fn ends_call(
    store: &mut Store,
    sh: &Shared,
    callee: &Func,
    lay: &HostLayout,
    opts: &Opts,
    inst: InstId,
    slots: &[u64],
    n: usize,
) -> Result<(), Trapped> {
    let (FuncKind::HostEnds(h), ResultShape::SpilledEnds(layout, ends)) =
        (&callee.kind, &lay.results)
    else {
        unreachable!("checked when lowered")
    };
    let (Some(args), Some(&ptr)) = (slots.get(..n), slots.get(n)) else {
        return Err(Trapped::new("a lowered call with too few core arguments"));
    };
    sh.get()?.inst(inst)?.check_may_leave("canon lower")?;
    let e = h(&mut HostCx { store, sh }, args).map_err(Trapped)?;
    let ptr = u64::from(ptr as u32);
    store_ends(store, sh, inst, opts, ends, e.as_slice(), *layout, ptr)
}

/// Whether `t` is a bool or an integer (see [`lift_scalar`]).
fn is_scalar(t: &ValType) -> bool {
    matches!(t, ValType::Bool) || t.is_integer()
}

/// A synchronous call of a synchronous host function: no task, no
/// subtask, nothing that can block; the instance is checked out (for its
/// handle table, and so `realloc` cannot call out) only where the types
/// need it.
#[allow(clippy::too_many_arguments)]
fn host_call(
    store: &mut Store,
    sh: &Shared,
    h: SyncHost<'_>,
    sig: &FuncSig,
    lay: &HostLayout,
    opts: &Opts,
    inst: InstId,
    args: &[Val],
) -> Result<Option<Val>, Trapped> {
    let params = sig.ty.param_types();
    let results = sig.ty.result_type();
    let call = |cx: &mut HostCx<'_>, vs: &[Value]| match h {
        SyncHost::Value(f) => f(cx, vs).map(Reply::Value),
        SyncHost::Scalar(f) => call_scalar(f, sig, cx, vs).map(Reply::Value),
        SyncHost::Ends(f) => call_ends(f, cx, vs).map(Reply::Ends),
    };
    let (reply, lenders) = if lay.scalar_params {
        let v = |i: usize| {
            args.get(i)
                .and_then(|a| lift_scalar(&params[i], *a))
                .ok_or_else(|| Trapped::new("a core argument of the wrong type"))
        };
        let mut cx = HostCx { store, sh };
        // Up to three arguments stay on the stack.
        let r = match params.len() {
            0 => call(&mut cx, &[]),
            1 => call(&mut cx, &[v(0)?]),
            2 => call(&mut cx, &[v(0)?, v(1)?]),
            3 => call(&mut cx, &[v(0)?, v(1)?, v(2)?]),
            n => call(&mut cx, &(0..n).map(v).collect::<Result<Vec<_>, _>>()?),
        };
        (r.map_err(Trapped)?, Vec::new())
    } else {
        let mut flat = FlatArgs {
            vals: args.iter().map(to_core).collect(),
            pos: 0,
        };
        let lift = |cx: &mut Cx<'_>| lift_flat_values(cx, MAX_FLAT_PARAMS, &mut flat, params);
        let (vs, lenders) = if lay.param_handles {
            with_table(store, sh, inst, opts, None, lift)?
        } else {
            let vs = guest_cx(store, opts, false, &mut NoHandles, lift)?;
            (vs, Vec::new())
        };
        let r = call(&mut HostCx { store, sh }, &vs).map_err(Trapped)?;
        (r, lenders)
    };
    let r = match (&lay.results, reply) {
        // Ends straight into the table: no `Value` on this path.
        (ResultShape::SpilledEnds(layout, ends), Reply::Ends(e)) => {
            store_ends(
                store,
                sh,
                inst,
                opts,
                ends,
                e.as_slice(),
                *layout,
                out_ptr(args)?,
            )?;
            end_lends(sh, inst, lenders)?;
            return Ok(None);
        }
        (_, Reply::Value(r)) => r,
        (_, Reply::Ends(e)) => {
            let t = results
                .first()
                .ok_or_else(|| Trapped::new("ends without a result type"))?;
            Some(e.into_value(t)?)
        }
    };
    let out = match (&lay.results, &r) {
        (ResultShape::None, None) => None,
        (ResultShape::Scalar, Some(v)) => {
            Some(lower_scalar(&results[0], v).ok_or_else(|| {
                Trapped::new("a host function returned a value of the wrong type")
            })?)
        }
        (ResultShape::SpilledEnds(layout, ends), Some(v)) => {
            let shared = ends_of(v, ends.len())?;
            store_ends(
                store,
                sh,
                inst,
                opts,
                ends,
                shared.as_slice(),
                *layout,
                out_ptr(args)?,
            )?;
            None
        }
        (ResultShape::Spilled(layout, offsets), Some(v)) => {
            let ptr = out_ptr(args)?;
            let lower = |cx: &mut Cx<'_>| match (offsets, fields_of(&results[0])) {
                (Some(offsets), Some(f)) => {
                    ringos_abi::lower::store_record_results(cx, v, f, offsets, *layout, ptr)
                }
                _ => ringos_abi::lower::store_results(
                    cx,
                    core::slice::from_ref(v),
                    results,
                    *layout,
                    ptr,
                ),
            };
            with_lower_cx(store, sh, inst, opts, None, lay.result_needs, lower)?;
            None
        }
        (ResultShape::Flat, Some(_)) => {
            let lower = |cx: &mut Cx<'_>| {
                lower_flat_values(cx, MAX_FLAT_RESULTS, r.as_slice(), results, None)
            };
            let out = with_lower_cx(store, sh, inst, opts, None, lay.result_needs, lower)?;
            // MAX_FLAT_RESULTS: one at most.
            out.into_iter().next().map(from_core)
        }
        _ => {
            return Err(Trapped::new(
                "a host function returned the wrong number of values",
            ))
        }
    };
    end_lends(sh, inst, lenders)?;
    Ok(out)
}

/// What a synchronous host function gave back.
enum Reply {
    Value(Option<Value>),
    Ends(Ends),
}

/// The shared indices of a result value that is a record or tuple of `n`
/// stream and future ends (checked against the type by [`store_ends`]).
fn ends_of(v: &Value, n: usize) -> Result<Ends, Trapped> {
    let wrong = || Trapped::new("a host function returned a value of the wrong type");
    let Value::Record(vs) = v else {
        return Err(wrong());
    };
    if vs.len() != n || n > Ends::MAX {
        return Err(wrong());
    }
    let mut shared = [0u32; Ends::MAX];
    for (s, v) in shared.iter_mut().zip(vs) {
        *s = match v {
            Value::Stream(i) | Value::Future(i) => *i,
            _ => return Err(wrong()),
        };
    }
    Ok(Ends::new(&shared[..n]))
}

/// The caller's result out-pointer: the last core argument.
fn out_ptr(args: &[Val]) -> Result<u64, Trapped> {
    match args.last() {
        Some(Val::I32(ptr)) => Ok(u64::from(*ptr as u32)),
        _ => Err(Trapped::new("no result out-pointer")),
    }
}

/// The call is over: the borrowed handles its arguments lent are free.
fn end_lends(sh: &Shared, inst: InstId, lenders: Vec<u32>) -> Result<(), Trapped> {
    if !lenders.is_empty() {
        let mut st = sh.get()?;
        let i = st.inst(inst)?;
        for l in lenders {
            ringos_abi::handles::end_lend(&mut i.handles, l)?;
        }
    }
    Ok(())
}

/// A synchronous call, lowered in `inst` with `opts`, of `callee`, another
/// component's synchronous lifted function whose parameters and result
/// hold no handles: the steps of [`lowered_call`], [`call`] and
/// [`sched::start_task`] for it in order (lift the arguments in the
/// caller, lower them into the callee, call, lift the result, return it
/// into the caller, post-return), without a subtask (a synchronous call's
/// has nothing to do: no borrows to end, nothing to cancel).
fn plain_sync_call(
    store: &mut Store,
    sh: &Shared,
    callee: &Rc<Func>,
    sig: &FuncSig,
    opts: &Opts,
    inst: InstId,
    args: &[Val],
) -> Result<Option<Val>, Trapped> {
    let task = sched::start_sync_task(sh, callee, inst)?;
    let (tid, callee_inst, callee_opts) = (task.tid, task.inst, task.opts);
    let mut flat = FlatArgs {
        vals: args.iter().map(to_core).collect(),
        pos: 0,
    };
    let params = guest_cx(store, opts, false, &mut NoHandles, |cx| {
        lift_flat_values(cx, MAX_FLAT_PARAMS, &mut flat, sig.ty.param_types())
    })?;
    let ft = &callee.sig.ty;
    let mut n = needs_of(ft.param_types());
    // Spilled parameters are stored in memory the callee's `realloc` gives.
    n.realloc |= ringos_abi::layout::flat_len(ft.param_types()) > MAX_FLAT_PARAMS;
    let lower =
        |cx: &mut Cx<'_>| lower_flat_values(cx, MAX_FLAT_PARAMS, &params, ft.param_types(), None);
    let flat_params = with_lower_cx(store, sh, callee_inst, &callee_opts, Some(tid), n, lower)?;
    drop(params);
    // At most MAX_FLAT_PARAMS core arguments (more are spilled) and
    // MAX_FLAT_RESULTS (one) core result: no allocation for either.
    let mut core_args = [Val::I32(0); MAX_FLAT_PARAMS];
    if flat_params.len() > core_args.len() {
        return Err(Trapped::new("more core arguments than the flat maximum"));
    }
    for (a, v) in core_args.iter_mut().zip(&flat_params) {
        *a = from_core(*v);
    }
    let core_args = &core_args[..flat_params.len()];
    let mut out = [Val::I32(0)];
    let n_results = usize::from(ringos_abi::layout::flat_len(ft.result_type()) > 0);
    let results = &mut out[..n_results];
    sched::as_task(store, sh, tid, |store| {
        store.call_into(task.core, core_args, results)
    })?;
    let flat_results = results.first().map(|v| [to_core(v)]);
    let result = guest_cx(store, &callee_opts, false, &mut NoHandles, |cx| {
        let mut vi = ringos_abi::CoreValueIter::new(flat_results.as_ref().map_or(&[], |r| &r[..]));
        lift_flat_values(cx, MAX_FLAT_RESULTS, &mut vi, ft.result_type())
    })?;
    task.returned(sh)?;
    // The result goes into the caller (its `realloc` for strings and
    // lists; the out-pointer, a spilled result's, is the last argument).
    let rt = sig.ty.result_type();
    let lower =
        |cx: &mut Cx<'_>| lower_flat_values(cx, MAX_FLAT_RESULTS, &result, rt, Some(&mut flat));
    let out = with_lower_cx(store, sh, inst, opts, None, needs_of(rt), lower)?;
    task.end(store, sh, results)?;
    // At most one flat result (MAX_FLAT_RESULTS); more are spilled.
    Ok(out.first().copied().map(from_core))
}

/// A lowered call in general (async, or with handles, or of a host
/// function the raw paths of [`lower`] do not take): the spec's subtask,
/// with `on_start` / `on_resolve` closures the callee's task runs.
#[allow(clippy::too_many_arguments)]
fn lowered_call(
    store: &mut Store,
    sh: &Shared,
    callee: &Rc<Func>,
    sig: &Rc<FuncSig>,
    lay: &HostLayout,
    opts: &Opts,
    inst: InstId,
    args: &[Val],
) -> Result<Option<Val>, Trapped> {
    sh.get()?.inst(inst)?.check_may_leave("canon lower")?;
    if let (false, Some(h)) = (opts.async_, callee.kind.sync_host()) {
        return host_call(store, sh, h, sig, lay, opts, inst, args);
    }
    if !opts.async_ && callee.sig.ty.async_ {
        // A synchronous call of an async function may block: only a task
        // that may block can make it (not a start function, not a
        // non-async task before it returned).
        sh.get()?.check_may_block()?;
    }
    let (max_params, max_results) = if opts.async_ {
        (MAX_FLAT_ASYNC_PARAMS, 0)
    } else {
        (MAX_FLAT_PARAMS, MAX_FLAT_RESULTS)
    };
    let flat = Rc::new(RefCell::new(FlatArgs {
        vals: args.iter().map(to_core).collect(),
        pos: 0,
    }));
    let cell = Rc::new(RefCell::new(SubCell {
        local: Some(Subtask::new(0)),
        index: None,
    }));
    let flat_results: Rc<RefCell<Vec<CoreVal>>> = Rc::default();
    let on_start: OnStart = {
        let (flat, cell, sig, opts) = (flat.clone(), cell.clone(), sig.clone(), *opts);
        Box::new(move |store, sh| {
            with_subtask(sh, &cell, inst, |s, in_table| {
                s.on_start()?;
                if in_table {
                    s.on_progress();
                }
                Ok(())
            })?;
            let (vs, lenders) = with_table(store, sh, inst, &opts, None, |cx| {
                lift_flat_values(
                    cx,
                    max_params,
                    &mut *flat.borrow_mut(),
                    sig.ty.param_types(),
                )
            })?;
            with_subtask(sh, &cell, inst, |s, _| {
                for h in lenders {
                    s.add_lender(h)?;
                }
                Ok(())
            })?;
            Ok(vs)
        })
    };
    let on_resolve: OnResolve = {
        let (flat, cell, sig, opts, out) = (
            flat.clone(),
            cell.clone(),
            sig.clone(),
            *opts,
            flat_results.clone(),
        );
        Box::new(move |store, sh, resolution| {
            let results = match resolution {
                Resolution::Returned(result) => {
                    let vs: Vec<Value> = result.into_iter().collect();
                    let lower = |cx: &mut Cx<'_>| {
                        let mut flat = flat.borrow_mut();
                        let rt = sig.ty.result_type();
                        lower_flat_values(cx, max_results, &vs, rt, Some(&mut *flat))
                    };
                    let n = needs_of(sig.ty.result_type());
                    let results = with_lower_cx(store, sh, inst, &opts, None, n, lower)?;
                    out.borrow_mut().clone_from(&results);
                    Some(results)
                }
                // `on_resolve(None)`: cancelled before it returned.
                Resolution::Cancelled => None,
            };
            with_subtask(sh, &cell, inst, |s, in_table| {
                s.on_resolve(results)?;
                if in_table {
                    s.on_progress();
                }
                Ok(())
            })
        })
    };
    let served_by = call(store, sh, callee, Some(inst), on_start, on_resolve)?;
    // What `subtask.cancel` reaches (`Subtask.on_cancel`).
    with_subtask(sh, &cell, inst, |s, _| {
        s.callee = served_by.pack();
        Ok(())
    })?;
    let resolved = || -> bool {
        let c = cell.borrow();
        match (&c.local, c.index) {
            (Some(s), _) => s.resolved(),
            _ => false,
        }
    };
    // `Subtask.deliver_resolve` of a subtask that never went in the table.
    let deliver = || -> Result<(), Trapped> {
        let mut s = cell
            .borrow_mut()
            .local
            .take()
            .ok_or_else(|| Trapped::new("subtask missing"))?;
        Ok(sh.get()?.inst(inst)?.deliver_resolve(&mut s)?)
    };
    if !opts.async_ {
        if !resolved() {
            sched::block_until(store, sh, true, &mut || resolved())?;
        }
        deliver()?;
        let r = flat_results.borrow();
        // At most one flat result (MAX_FLAT_RESULTS); more are spilled.
        return Ok(r.first().copied().map(from_core));
    }
    if resolved() {
        deliver()?;
        return Ok(Some(Val::I32(SubtaskState::Returned as i32)));
    }
    let mut c = cell.borrow_mut();
    let s = c
        .local
        .take()
        .ok_or_else(|| Trapped::new("subtask missing"))?;
    let state = s.state;
    let i = sh.get()?.inst(inst)?.add_subtask(s)?;
    c.index = Some(i);
    Ok(Some(Val::I32(pack_subtask_return(state, i) as i32)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ends_become_the_value_of_their_result_type() {
        let tuple = ValType::Tuple(vec![
            ValType::stream(Some(ValType::U8)),
            ValType::future(None),
        ]);
        assert_eq!(
            Ends::new(&[3, 7]).into_value(&tuple),
            Ok(Value::tuple(vec![Value::Stream(3), Value::Future(7)]))
        );
        assert!(Ends::new(&[3]).into_value(&tuple).is_err(), "too few");
        assert!(Ends::new(&[3, 7]).into_value(&ValType::U32).is_err());
        let not_ends = ValType::Tuple(vec![ValType::U32, ValType::future(None)]);
        assert!(Ends::new(&[3, 7]).into_value(&not_ends).is_err());
        assert_eq!(
            ends_of(&Value::tuple(vec![Value::Stream(3), Value::Future(7)]), 2),
            Ok(Ends::new(&[3, 7]))
        );
        assert!(ends_of(&Value::tuple(vec![Value::U32(3)]), 1).is_err());
    }

    /// A host function returning ends gets the same bits whether the call
    /// came from a caller's core arguments (an `i32` zero-extended) or
    /// from component values.
    #[test]
    fn scalar_bits_are_the_core_values_bits() {
        let raw_i32 = |v: i32| Val::I32(v).to_raw();
        assert_eq!(scalar_bits(&Value::S8(-1)), Some(raw_i32(-1)));
        assert_eq!(scalar_bits(&Value::S16(-2)), Some(raw_i32(-2)));
        assert_eq!(scalar_bits(&Value::S32(i32::MIN)), Some(raw_i32(i32::MIN)));
        assert_eq!(scalar_bits(&Value::U32(u32::MAX)), Some(raw_i32(-1)));
        assert_eq!(scalar_bits(&Value::Bool(true)), Some(1));
        assert_eq!(scalar_bits(&Value::U8(200)), Some(200));
        assert_eq!(scalar_bits(&Value::S64(-1)), Some(Val::I64(-1).to_raw()));
        assert_eq!(scalar_bits(&Value::U64(u64::MAX)), Some(u64::MAX));
        assert_eq!(scalar_bits(&Value::String("x".into())), None);
        assert_eq!(scalar_bits(&Value::Stream(3)), None);
    }
}
