//! Calls across a component boundary: `canon lift` (a component function
//! made of a core function) and `canon lower` (a core function, the
//! adapter, that calls a component function), after definitions.py's
//! `canon_lift` / `canon_lower` for synchronous functions.
//!
//! Values cross as [`Value`]s: the caller's flat arguments are lifted with
//! the caller's options, lowered into the callee with the callee's, and
//! the result goes back the same way. The call is direct and in-process.

use alloc::boxed::Box;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;

use ringos_abi::handles::{self, BorrowScope, ScopeId, Table};
use ringos_abi::layout::{flatten_functype, Context, FlattenOpts};
use ringos_abi::lift::lift_flat_values;
use ringos_abi::lower::lower_flat_values;
use ringos_abi::{
    self as abi, CoreVal, CoreValueIter, Cx, Handles, Options, ResourceType, StringEncoding, Value,
    MAX_FLAT_PARAMS, MAX_FLAT_RESULTS,
};
use wasmparser::ValType as CoreValType;

use super::state::{Entry, InstId, Shared, Trapped};
use super::types::FuncSig;
use crate::instance::Val;
use crate::vmctx::MemoryDef;
use crate::{FuncId, MemoryId, Store, Trap, TrapKind};

/// A host function of the component world: gets the lifted arguments,
/// returns the result (or a trap message).
pub type HostComponentFn = dyn Fn(&mut Store, &[Value]) -> Result<Option<Value>, String>;

/// The canonical options of a lift or lower.
#[derive(Clone, Copy, Debug, Default)]
pub struct Opts {
    pub encoding: StringEncoding,
    pub memory: Option<MemoryId>,
    pub realloc: Option<FuncId>,
    pub post_return: Option<FuncId>,
    pub async_: bool,
    pub callback: Option<FuncId>,
}

/// A component function.
pub struct Func {
    pub sig: FuncSig,
    pub(crate) kind: FuncKind,
}

pub(crate) enum FuncKind {
    /// `canon lift` of a core function of instance `inst`.
    Lifted {
        core: FuncId,
        opts: Opts,
        inst: InstId,
    },
    Host(Box<HostComponentFn>),
}

impl Func {
    pub fn host(sig: FuncSig, f: Box<HostComponentFn>) -> Rc<Func> {
        Rc::new(Func {
            sig,
            kind: FuncKind::Host(f),
        })
    }
}

fn core_type(t: abi::CoreType) -> CoreValType {
    match t {
        abi::CoreType::I32 => CoreValType::I32,
        abi::CoreType::I64 => CoreValType::I64,
        abi::CoreType::F32 => CoreValType::F32,
        abi::CoreType::F64 => CoreValType::F64,
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

/// A linear memory seen through its `MemoryDef` (re-read on every access:
/// `realloc` may grow it).
struct GuestMemory(*mut MemoryDef);

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

/// The guest's `realloc`, run with the instance's `may_leave` cleared.
struct GuestRealloc {
    store: *mut Store,
    func: FuncId,
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

/// The handle operations of one lift or lower, on one instance's table.
struct CallHandles<'a> {
    table: &'a mut Table<Entry>,
    /// Resource types the instance implements (`cx.inst is t.impl`).
    implements: &'a [ResourceType],
    /// The callee task's borrow scope (lowering arguments).
    scope: BorrowScope,
    /// Handles lent by `lift_borrow` (released when the call resolves).
    lenders: Vec<u32>,
}

impl Handles for CallHandles<'_> {
    fn lift_own(&mut self, index: u32, rt: ResourceType) -> Result<u32, abi::Trap> {
        handles::lift_own(self.table, index, rt)
    }
    fn lift_borrow(&mut self, index: u32, rt: ResourceType) -> Result<u32, abi::Trap> {
        let rep = handles::lift_borrow(self.table, index, rt)?;
        self.lenders.push(index);
        Ok(rep)
    }
    fn lower_own(&mut self, rep: u32, rt: ResourceType) -> Result<u32, abi::Trap> {
        handles::lower_own(self.table, rep, rt)
    }
    fn lower_borrow(&mut self, rep: u32, rt: ResourceType) -> Result<u32, abi::Trap> {
        let implements = self.implements.contains(&rt);
        handles::lower_borrow(self.table, rep, rt, implements, &mut self.scope)
    }
}

/// What a lift or lower did to the handle table besides moving values.
#[derive(Default)]
pub(crate) struct HandleEffects {
    pub lenders: Vec<u32>,
    pub borrows: u32,
}

/// Runs `f` with a `Cx` over instance `inst`'s memory, realloc and handle
/// table (taken out of the state meanwhile, with `may_leave` cleared so
/// `realloc` cannot call out).
pub(crate) fn with_cx<R>(
    store: &mut Store,
    sh: &Shared,
    inst: InstId,
    opts: &Opts,
    scope: ScopeId,
    f: impl FnOnce(&mut Cx<'_>) -> Result<R, abi::Trap>,
) -> Result<(R, HandleEffects), Trapped> {
    let (mut table, implements) = {
        let mut st = sh.get()?;
        let implements: Vec<ResourceType> = st
            .resources
            .iter()
            .enumerate()
            .filter(|(_, r)| r.inst == Some(inst))
            .map(|(i, _)| ResourceType(i as u32))
            .collect();
        let t = st.take_table(inst)?;
        st.inst(inst).may_leave = false;
        (t, implements)
    };
    let mut mem = opts.memory.map(|m| GuestMemory(store.memory_def(m)));
    let store: *mut Store = store;
    let mut realloc = opts.realloc.map(|func| GuestRealloc { store, func });
    let mut hs = CallHandles {
        table: &mut table,
        implements: &implements,
        scope: BorrowScope::new(scope),
        lenders: Vec::new(),
    };
    let r = {
        let mut cx = Cx::new(
            Options {
                string_encoding: opts.encoding,
                addr: abi::AddrType::I32,
            },
            mem.as_mut().map(|m| m as &mut dyn abi::Memory),
            realloc.as_mut().map(|r| r as &mut dyn abi::Realloc),
            &mut hs,
        );
        f(&mut cx)
    };
    let effects = HandleEffects {
        lenders: core::mem::take(&mut hs.lenders),
        borrows: hs.scope.num_borrows,
    };
    let mut st = sh.get()?;
    st.put_table(inst, table);
    st.inst(inst).may_leave = true;
    Ok((r?, effects))
}

/// Calls `f` from `caller` (None: the host): `on_start` produces the
/// arguments once the callee is entered, `on_resolve` takes the result
/// before `post-return` runs (`canon_lift`, synchronous).
pub(crate) fn call(
    store: &mut Store,
    sh: &Shared,
    f: &Func,
    caller: Option<InstId>,
    on_start: &mut dyn FnMut(&mut Store) -> Result<Vec<Value>, Trapped>,
    on_resolve: &mut dyn FnMut(&mut Store, Option<Value>) -> Result<(), Trapped>,
) -> Result<(), Trapped> {
    let (core, opts, inst) = match &f.kind {
        FuncKind::Host(h) => {
            let args = on_start(store)?;
            let r = h(store, &args).map_err(Trapped)?;
            return on_resolve(store, r);
        }
        FuncKind::Lifted { core, opts, inst } => (*core, *opts, *inst),
    };
    if opts.async_ {
        return Err(Trapped::new(
            "not supported yet: calling an async-lifted function",
        ));
    }
    let scope = {
        let mut st = sh.get()?;
        st.enter(inst, caller)?;
        st.open_scope()
    };
    let ft = &f.sig.ty;
    let args = on_start(store)?;
    let (flat, eff) = with_cx(store, sh, inst, &opts, scope, |cx| {
        lower_flat_values(cx, MAX_FLAT_PARAMS, &args, ft.param_types(), None)
    })?;
    sh.get()?
        .scopes
        .entry(scope)
        .and_modify(|n| *n += eff.borrows);
    let core_args: Vec<Val> = flat.into_iter().map(from_core).collect();
    let core_results = store
        .call(core, &core_args)
        .map_err(|e| Trapped::from_core(store, e))?;
    let flat_results: Vec<CoreVal> = core_results.iter().map(to_core).collect();
    let (result, _) = with_cx(store, sh, inst, &opts, scope, |cx| {
        let mut vi = CoreValueIter::new(&flat_results);
        lift_flat_values(cx, MAX_FLAT_RESULTS, &mut vi, ft.result_type())
    })?;
    // `Task.return_`: borrows given to the callee must be dropped by now.
    sh.get()?.close_scope(scope)?;
    on_resolve(store, result.into_iter().next())?;
    if let Some(pr) = opts.post_return {
        sh.get()?.inst(inst).may_leave = false;
        store
            .call(pr, &core_results)
            .map_err(|e| Trapped::from_core(store, e))?;
        sh.get()?.inst(inst).may_leave = true;
    }
    sh.get()?.leave(inst, caller);
    Ok(())
}

/// Calls `f` from the host with host values.
pub(crate) fn call_from_host(
    store: &mut Store,
    sh: &Shared,
    f: &Func,
    args: &[Value],
) -> Result<Option<Value>, Trapped> {
    let mut args = Some(args.to_vec());
    let mut out = None;
    call(
        store,
        sh,
        f,
        None,
        &mut |_| Ok(args.take().unwrap_or_default()),
        &mut |_, r| {
            out = r;
            Ok(())
        },
    )?;
    Ok(out)
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
) -> Result<FuncId, Trapped> {
    if opts.async_ {
        return Err(Trapped::new(
            "not supported yet: canon lower async (component instantiation)",
        ));
    }
    let (params, results) = lowered_type(&sig, &opts);
    let sh = sh.clone();
    let f = move |store: &mut Store, args: &[Val]| -> Result<Vec<Val>, Trap> {
        lowered_call(store, &sh, &callee, &sig, &opts, inst, args).map_err(|t| {
            store.set_trap_message(t.0);
            Trap(TrapKind::Host)
        })
    };
    Ok(store.host_func(&params, &results, Box::new(f)))
}

fn lowered_call(
    store: &mut Store,
    sh: &Shared,
    callee: &Func,
    sig: &FuncSig,
    opts: &Opts,
    inst: InstId,
    args: &[Val],
) -> Result<Vec<Val>, Trapped> {
    if !sh.get()?.inst(inst).may_leave {
        return Err(Trapped::new("cannot leave component instance"));
    }
    let flat_args: Vec<CoreVal> = args.iter().map(to_core).collect();
    let vi = core::cell::RefCell::new(CoreValueIter::new(&flat_args));
    let mut lenders = Vec::new();
    let mut flat_results = Vec::new();
    let ft = &sig.ty;
    call(
        store,
        sh,
        callee,
        Some(inst),
        &mut |store| {
            let (vs, eff) = with_cx(store, sh, inst, opts, 0, |cx| {
                lift_flat_values(cx, MAX_FLAT_PARAMS, &mut *vi.borrow_mut(), ft.param_types())
            })?;
            lenders = eff.lenders;
            Ok(vs)
        },
        &mut |store, r| {
            let vs: Vec<Value> = r.into_iter().collect();
            let (flat, _) = with_cx(store, sh, inst, opts, 0, |cx| {
                let mut vi = vi.borrow_mut();
                lower_flat_values(cx, MAX_FLAT_RESULTS, &vs, ft.result_type(), Some(&mut *vi))
            })?;
            flat_results = flat;
            Ok(())
        },
    )?;
    // `Subtask.deliver_resolve`: the lent handles are the caller's again.
    let mut st = sh.get()?;
    for i in lenders {
        handles::end_lend(&mut st.inst(inst).table, i)?;
    }
    Ok(flat_results.into_iter().map(from_core).collect())
}
