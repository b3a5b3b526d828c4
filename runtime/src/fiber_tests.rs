//! The fiber primitive on the hosted platform: switching, the store
//! context per stack, traps and stack exhaustion on a fiber, reuse.

use alloc::rc::Rc;
use core::cell::Cell;

use super::{Body, Resumed};
use crate::hosted::HOSTED;
use crate::{Error, Extern, FuncId, Module, Store, Trap, TrapKind, Val};

fn ok(r: Result<Resumed, Body>) -> Resumed {
    r.unwrap_or_else(|_| panic!("no memory for a fiber stack"))
}

fn body(f: impl FnMut(&mut Store) -> Result<u32, String> + 'static) -> Body {
    Box::new(f)
}

/// A store with `wat` instantiated; its exports by name. The module may
/// import `host.suspend` (suspends the fiber running) and `host.count`
/// (counts its calls in the returned cell).
fn setup(wat: &str) -> (Store, impl Fn(&mut Store, &str) -> FuncId, Rc<Cell<u32>>) {
    let bytes = wat::parse_str(wat).expect("wat");
    let module = Module::new(&HOSTED, &bytes).expect("module");
    let mut store = Store::new(&HOSTED);
    let count = Rc::new(Cell::new(0));
    let c = count.clone();
    let mut imports = Vec::new();
    for imp in &module.info.imports {
        let f = match imp.name.as_str() {
            "suspend" => store.host_func(
                &[],
                &[],
                Box::new(|store, _, _| {
                    assert!(store.fiber_suspend(), "suspend outside a fiber");
                    Ok(())
                }),
            ),
            "count" => {
                let c = c.clone();
                store.host_func(
                    &[],
                    &[],
                    Box::new(move |_, _, _| {
                        c.set(c.get() + 1);
                        Ok(())
                    }),
                )
            }
            n => panic!("unknown import {n}"),
        };
        imports.push(Extern::Func(f));
    }
    let inst = store.instantiate(&module, &imports).expect("instance");
    let get = move |store: &mut Store, name: &str| match store.export(inst, name) {
        Some(Extern::Func(f)) => f,
        _ => panic!("no export {name}"),
    };
    (store, get, count)
}

#[test]
fn a_body_runs_to_its_end() {
    let mut store = Store::new(&HOSTED);
    let r = store.fiber_start(body(|_| Ok(7)));
    assert!(matches!(r, Ok(Resumed::Finished(Ok(7)))));
    assert_eq!(store.fiber_stats().live, 0);
    assert_eq!(store.fiber_stats().pooled, 1);
}

#[test]
fn suspend_and_resume_keep_the_fiber_frames() {
    let mut store = Store::new(&HOSTED);
    let seen = Rc::new(Cell::new(0));
    let s = seen.clone();
    let r = store.fiber_start(body(move |store| {
        // A local on the fiber's stack survives the suspensions.
        let mut local = [1u64; 64];
        for i in 0..3 {
            s.set(i + 1);
            assert!(store.fiber_suspend());
            local[i as usize] += 1;
        }
        Ok(local.iter().sum::<u64>() as u32)
    }));
    assert_eq!(ok(r), Resumed::Suspended);
    let id = store.fibers.running.last().copied();
    assert_eq!(id, None, "back on the thread's stack");
    assert_eq!(seen.get(), 1);
    let id = super::FiberId(0);
    assert_eq!(store.fiber_resume(id), Resumed::Suspended);
    assert_eq!(seen.get(), 2);
    assert_eq!(store.fiber_resume(id), Resumed::Suspended);
    assert_eq!(seen.get(), 3);
    assert_eq!(store.fiber_resume(id), Resumed::Finished(Ok(67)));
    assert_eq!(store.fiber_stats().live, 0);
    // A fiber that is gone cannot be resumed.
    assert!(matches!(store.fiber_resume(id), Resumed::Finished(Err(_))));
}

#[test]
fn suspend_on_the_thread_stack_is_refused() {
    let mut store = Store::new(&HOSTED);
    assert!(!store.fiber_suspend());
}

/// Wasm on a fiber that suspends inside a host call, while Wasm on the
/// thread's stack started it from a host call of its own and goes on:
/// each stack keeps its own entry (jump buffer, store pointer, limits).
#[test]
fn wasm_on_a_fiber_and_on_the_thread_stack_interleave() {
    let wat = r#"(module
        (import "host" "suspend" (func $suspend))
        (import "host" "count" (func $count))
        (import "host" "start" (func $start))
        (func (export "on_fiber") (result i32)
          (call $count) (call $suspend) (call $count) (i32.const 5))
        (func (export "outer") (result i32)
          (call $start) (call $count) (i32.const 9)))"#;
    let bytes = wat::parse_str(wat).expect("wat");
    let module = Module::new(&HOSTED, &bytes).expect("module");
    let mut store = Store::new(&HOSTED);
    let count = Rc::new(Cell::new(0u32));
    let started = Rc::new(Cell::new(None::<FuncId>));
    let out = Rc::new(Cell::new(None::<Result<Vec<Val>, Error>>));
    let c = count.clone();
    let suspend = store.host_func(
        &[],
        &[],
        Box::new(|store, _, _| {
            assert!(store.fiber_suspend());
            Ok(())
        }),
    );
    let counter = store.host_func(
        &[],
        &[],
        Box::new(move |_, _, _| {
            c.set(c.get() + 1);
            Ok(())
        }),
    );
    let (st, o) = (started.clone(), out.clone());
    let start = store.host_func(
        &[],
        &[],
        Box::new(move |store, _, _| {
            let f = st.get().expect("export known");
            let o = o.clone();
            let r = store.fiber_start(body(move |store| {
                let r = store.call(f, &[]);
                let ok = r.is_ok();
                o.set(Some(r));
                Ok(u32::from(ok))
            }));
            assert_eq!(ok(r), Resumed::Suspended);
            Ok(())
        }),
    );
    let inst = store
        .instantiate(
            &module,
            &[
                Extern::Func(suspend),
                Extern::Func(counter),
                Extern::Func(start),
            ],
        )
        .expect("instance");
    let (Some(Extern::Func(on_fiber)), Some(Extern::Func(outer))) =
        (store.export(inst, "on_fiber"), store.export(inst, "outer"))
    else {
        panic!("exports")
    };
    started.set(Some(on_fiber));
    assert_eq!(store.call(outer, &[]), Ok(vec![Val::I32(9)]));
    assert_eq!(
        count.get(),
        2,
        "one count on the fiber, one after the start"
    );
    // Resumed from outside any Wasm: the fiber's entry returns normally.
    assert_eq!(
        store.fiber_resume(super::FiberId(0)),
        Resumed::Finished(Ok(1))
    );
    assert_eq!(count.get(), 3);
    assert_eq!(out.take(), Some(Ok(vec![Val::I32(5)])));
    // And the thread's stack still works as before.
    assert_eq!(store.call(outer, &[]), Ok(vec![Val::I32(9)]));
}

#[test]
fn a_trap_on_a_fiber_ends_its_call_and_the_host_goes_on() {
    let (mut store, get, count) = setup(
        r#"(module (import "host" "count" (func $count))
            (func (export "boom") (call $count) unreachable)
            (func (export "ok") (result i32) (i32.const 3)))"#,
    );
    let (boom, fine) = (get(&mut store, "boom"), get(&mut store, "ok"));
    let r = store.fiber_start(body(move |store| match store.call(boom, &[]) {
        Err(Error::Trap(Trap(k))) => Err(k.message().into()),
        other => Err(format!("expected a trap, got {other:?}")),
    }));
    assert_eq!(
        ok(r),
        Resumed::Finished(Err(TrapKind::Unreachable.message().into()))
    );
    assert_eq!(count.get(), 1);
    assert_eq!(store.call(fine, &[]), Ok(vec![Val::I32(3)]));
    assert_eq!(store.ctx.jmpbuf, core::ptr::null_mut());
}

#[test]
fn a_memory_fault_on_a_fiber_is_a_trap() {
    // A load past the end of memory faults (SIGSEGV, the guard region):
    // the handler resumes at the fiber's own entry.
    let (mut store, get, _) = setup(
        r#"(module (memory 1)
            (func (export "oob") (param i32) (result i32) (i32.load (local.get 0))))"#,
    );
    let oob = get(&mut store, "oob");
    for _ in 0..3 {
        let r = store.fiber_start(body(move |store| {
            match store.call(oob, &[Val::I32(0x7fff_0000)]) {
                Err(Error::Trap(Trap(TrapKind::MemoryOutOfBounds))) => Ok(1),
                other => Err(format!("expected an out-of-bounds trap, got {other:?}")),
            }
        }));
        assert_eq!(ok(r), Resumed::Finished(Ok(1)));
    }
    assert_eq!(store.call(oob, &[Val::I32(0)]), Ok(vec![Val::I32(0)]));
}

#[test]
fn deep_recursion_on_a_fiber_is_stack_exhaustion() {
    let (mut store, get, _) = setup(
        r#"(module (func $r (export "r") (param i64) (result i64)
            (i64.add (local.get 0) (call $r (i64.add (local.get 0) (i64.const 1))))))"#,
    );
    let r = get(&mut store, "r");
    for _ in 0..3 {
        let res = store.fiber_start(body(move |store| match store.call(r, &[Val::I64(0)]) {
            Err(Error::Trap(Trap(TrapKind::StackExhausted))) => Ok(1),
            other => Err(format!("expected stack exhaustion, got {other:?}")),
        }));
        assert_eq!(ok(res), Resumed::Finished(Ok(1)));
    }
    // The same on the thread's stack, after.
    assert_eq!(
        store.call(r, &[Val::I64(0)]),
        Err(Error::Trap(Trap(TrapKind::StackExhausted)))
    );
}

#[test]
fn a_thousand_fibers_reuse_one_stack() {
    let (mut store, get, count) = setup(
        r#"(module (import "host" "suspend" (func $suspend)) (import "host" "count" (func $count))
            (func (export "f") (call $count) (call $suspend) (call $count)))"#,
    );
    let f = get(&mut store, "f");
    for _ in 0..1000 {
        let r = store.fiber_start(body(move |store| {
            store.call(f, &[]).map(|_| 0).map_err(|e| e.to_string())
        }));
        assert_eq!(ok(r), Resumed::Suspended);
        let id = super::FiberId(0);
        assert_eq!(store.fiber_resume(id), Resumed::Finished(Ok(0)));
    }
    assert_eq!(count.get(), 2000);
    let s = store.fiber_stats();
    assert_eq!((s.live, s.pooled, s.made), (0, 1, 1));
}

#[test]
fn abandoned_fibers_are_freed_without_running() {
    let (mut store, get, count) = setup(
        r#"(module (import "host" "suspend" (func $suspend)) (import "host" "count" (func $count))
            (func (export "f") (call $suspend) (call $count)))"#,
    );
    let f = get(&mut store, "f");
    let dropped = Rc::new(Cell::new(0));
    for i in 0..20 {
        struct Noisy(Rc<Cell<u32>>);
        impl Drop for Noisy {
            fn drop(&mut self) {
                self.0.set(self.0.get() + 1);
            }
        }
        let n = Noisy(dropped.clone());
        let r = store.fiber_start(body(move |store| {
            let _ = &n;
            store.call(f, &[]).map(|_| 0).map_err(|e| e.to_string())
        }));
        assert_eq!(ok(r), Resumed::Suspended);
        assert_eq!(store.fiber_stats().live, i + 1);
    }
    for i in 0..20 {
        store.fiber_abandon(super::FiberId(i));
    }
    assert_eq!(count.get(), 0, "nothing after the suspension ran");
    assert_eq!(dropped.get(), 20, "the bodies were dropped");
    let s = store.fiber_stats();
    assert_eq!((s.live, s.pooled, s.made), (0, super::POOL, 20));
    // Suspended fibers left when the store goes are freed with it.
    let r = store.fiber_start(body(move |store| {
        store.call(f, &[]).map(|_| 0).map_err(|e| e.to_string())
    }));
    assert_eq!(ok(r), Resumed::Suspended);
    drop(store);
    assert_eq!(count.get(), 0);
}

/// An exception a suspended fiber holds (an exnref in a Wasm local) is a
/// root for collections that run on another stack meanwhile.
#[test]
fn an_exnref_on_a_suspended_fiber_survives_collections_elsewhere() {
    let (mut store, get, _) = setup(
        r#"(module (import "host" "suspend" (func $suspend))
          (tag $e (param i32))
          (func $throw (param i32) (throw $e (local.get 0)))
          (func (export "hold") (result i32)
            (local $x exnref)
            (local.set $x
              (block $h (result exnref)
                (try_table (catch_all_ref $h) (call $throw (i32.const 42)))
                (unreachable)))
            (call $suspend)
            (block $h (result i32)
              (try_table (catch $e $h) (throw_ref (local.get $x)))
              (unreachable)))
          (func (export "refs") (param $n i32)
            (loop $l
              (block $h (result i32 exnref)
                (try_table (catch_ref $e $h) (call $throw (local.get $n)))
                (unreachable))
              (drop)
              (drop)
              (br_if $l (local.tee $n (i32.sub (local.get $n) (i32.const 1)))))))"#,
    );
    let (hold, refs) = (get(&mut store, "hold"), get(&mut store, "refs"));
    let r = store.fiber_start(body(move |store| match store.call(hold, &[]) {
        Ok(v) if v == vec![Val::I32(42)] => Ok(42),
        other => Err(format!("{other:?}")),
    }));
    assert_eq!(ok(r), Resumed::Suspended);
    // Enough garbage exceptions on the thread's stack to collect often.
    assert_eq!(store.call(refs, &[Val::I32(10_000)]), Ok(vec![]));
    assert!(store.live_exceptions() < 5_000, "collections ran");
    assert_eq!(
        store.fiber_resume(super::FiberId(0)),
        Resumed::Finished(Ok(42))
    );
}
