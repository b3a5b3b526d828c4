//! Canonical built-ins that are core functions: `resource.new`,
//! `resource.drop`, `resource.rep` (definitions.py `canon_resource_*`).

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;

use ringos_abi::handles::{self, Dropped};
use ringos_abi::ResourceType;
use wasmparser::ValType as CoreValType;

use super::state::{InstId, Shared, Trapped};
use crate::instance::Val;
use crate::{FuncId, Store, Trap, TrapKind};

/// Registers a host function whose failures trap with their message.
pub(crate) fn builtin(
    store: &mut Store,
    params: &[CoreValType],
    results: &[CoreValType],
    f: impl Fn(&mut Store, &[Val]) -> Result<Vec<Val>, Trapped> + 'static,
) -> FuncId {
    store.host_func(
        params,
        results,
        Box::new(move |store, args| {
            f(store, args).map_err(|t| {
                store.set_trap_message(t.0);
                Trap(TrapKind::Host)
            })
        }),
    )
}

fn arg(args: &[Val], i: usize) -> u32 {
    match args.get(i) {
        Some(Val::I32(v)) => *v as u32,
        _ => 0,
    }
}

fn may_leave(sh: &Shared, inst: InstId) -> Result<(), Trapped> {
    if sh.get()?.inst(inst).may_leave {
        Ok(())
    } else {
        Err(Trapped::new("cannot leave component instance"))
    }
}

/// `canon resource.new rt`: `(rep: i32) -> i32`.
pub(crate) fn resource_new(
    store: &mut Store,
    sh: &Shared,
    inst: InstId,
    rt: ResourceType,
) -> FuncId {
    let sh = sh.clone();
    builtin(
        store,
        &[CoreValType::I32],
        &[CoreValType::I32],
        move |_, args| {
            may_leave(&sh, inst)?;
            let mut st = sh.get()?;
            let i = handles::resource_new(&mut st.inst(inst).table, rt, arg(args, 0))?;
            Ok(vec![Val::I32(i as i32)])
        },
    )
}

/// `canon resource.rep rt`: `(handle: i32) -> i32`.
pub(crate) fn resource_rep(
    store: &mut Store,
    sh: &Shared,
    inst: InstId,
    rt: ResourceType,
) -> FuncId {
    let sh = sh.clone();
    builtin(
        store,
        &[CoreValType::I32],
        &[CoreValType::I32],
        move |_, args| {
            may_leave(&sh, inst)?;
            let mut st = sh.get()?;
            let rep = handles::resource_rep(&st.inst(inst).table, rt, arg(args, 0))?;
            Ok(vec![Val::I32(rep as i32)])
        },
    )
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
    builtin(store, &[CoreValType::I32], &[], move |store, args| {
        may_leave(&sh, inst)?;
        let (dropped, dtor, owner) = {
            let mut st = sh.get()?;
            if st.inst(inst).table_out {
                return Err(Trapped::new("cannot leave component instance"));
            }
            let d = handles::resource_drop(&mut st.inst(inst).table, rt, arg(args, 0))?;
            let def = st.resource(rt)?;
            (d, def.dtor, def.inst)
        };
        match dropped {
            Dropped::Own { rep } => {
                if let Some(dtor) = dtor {
                    drop_own(store, &sh, inst, owner, dtor, rep)?;
                }
            }
            Dropped::Borrow { scope } => {
                let mut st = sh.get()?;
                if let Some(n) = scope.and_then(|s| st.scopes.get_mut(&s)) {
                    *n = n.saturating_sub(1);
                }
            }
        }
        Ok(Vec::new())
    })
}

/// Runs a destructor: directly in the implementing instance, or through
/// a synchronous lift into it from another instance.
fn drop_own(
    store: &mut Store,
    sh: &Shared,
    caller: InstId,
    owner: Option<InstId>,
    dtor: FuncId,
    rep: u32,
) -> Result<(), Trapped> {
    let crossing = owner.filter(|o| *o != caller);
    if let Some(o) = crossing {
        sh.get()?.enter(o, Some(caller))?;
    }
    store
        .call(dtor, &[Val::I32(rep as i32)])
        .map_err(|e| Trapped::from_core(store, e))?;
    if let Some(o) = crossing {
        sh.get()?.leave(o, Some(caller));
    }
    Ok(())
}
