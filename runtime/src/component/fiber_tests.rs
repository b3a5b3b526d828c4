//! Tasks on fibers, hosted: the component of
//! `tests/conformance/components/fibers.wast` (a synchronous callee that
//! blocks under an async caller), with the store's fiber counts checked
//! after each run.

use alloc::rc::Rc;
use alloc::string::String;

use super::{Component, ComponentStore, Exports, Func, Item, Value};
use crate::hosted::HOSTED;
use crate::Error;

const SCRIPT: &str = include_str!("../../../tests/conformance/components/fibers.wast");

/// The script's component definition `$Fibers`, as a component.
fn component_text() -> String {
    let start = SCRIPT
        .find("(component definition $Fibers")
        .expect("$Fibers");
    let end = start
        + SCRIPT[start..]
            .find("\n;; end of $Fibers")
            .expect("its end");
    SCRIPT[start..end].replacen("(component definition $Fibers", "(component", 1)
}

fn instantiate(store: &mut ComponentStore) -> Rc<Exports> {
    let bytes = wat::parse_str(component_text()).expect("$Fibers");
    let c = Component::new(&HOSTED, &bytes).expect("a valid component");
    store.instantiate(&c, &Exports::new()).expect("instance")
}

fn func(e: &Exports, name: &str) -> Rc<Func> {
    match e.get(name) {
        Some(Item::Func(f)) => f.clone(),
        _ => panic!("no export {name}"),
    }
}

/// `$Outer.run(which, n)`: called by the host (on its stack) or, with
/// `nested`, by another component (on a fiber).
fn call_run(
    store: &mut ComponentStore,
    e: &Exports,
    nested: bool,
    which: u32,
    n: u32,
) -> Result<Option<Value>, Error> {
    let name = if nested { "nested" } else { "run" };
    store.call(&func(e, name), &[Value::U32(which), Value::U32(n)])
}

fn run(
    store: &mut ComponentStore,
    e: &Exports,
    which: u32,
    n: u32,
) -> Result<Option<Value>, Error> {
    call_run(store, e, false, which, n)
}

fn trap_message(r: Result<Option<Value>, Error>) -> String {
    match r {
        Err(Error::Trapped(m)) => m,
        r => panic!("expected a trap, got {r:?}"),
    }
}

/// Nothing blocked is left and every stack went back to the pool.
fn all_back(store: &ComponentStore) {
    let s = store.core.fiber_stats();
    assert_eq!(s.live, 0, "{s:?}");
    assert_eq!(s.pooled, s.made, "{s:?}");
}

#[test]
fn a_sync_callee_blocks_under_an_async_caller_a_thousand_times() {
    let mut store = ComponentStore::new(&HOSTED);
    let e = instantiate(&mut store);
    assert_eq!(run(&mut store, &e, 0, 1000), Ok(Some(Value::U32(1000))));
    all_back(&store);
    // The callee on a fiber (`run` on the host's stack), one stack
    // reused every round.
    let made = store.core.fiber_stats().made;
    assert_eq!(made, 1, "{:?}", store.core.fiber_stats());
    // Called by another component, `run` is on a fiber too.
    let r = call_run(&mut store, &e, true, 0, 1000);
    assert_eq!(r, Ok(Some(Value::U32(1000))));
    all_back(&store);
    assert_eq!(
        store.core.fiber_stats().made,
        2,
        "{:?}",
        store.core.fiber_stats()
    );
    assert_eq!(run(&mut store, &e, 0, 5), Ok(Some(Value::U32(5))));
}

#[test]
fn a_trap_on_a_fiber_is_a_clean_error_and_the_host_goes_on() {
    let mut store = ComponentStore::new(&HOSTED);
    for nested in [false, true] {
        let e = instantiate(&mut store);
        let m = trap_message(call_run(&mut store, &e, nested, 2, 1));
        assert!(m.contains("unreachable"), "{m}");
        // Nested, `run` was blocked on its fiber waiting for the callee:
        // abandoned.
        all_back(&store);
    }
    // The same store runs a new instance.
    let e = instantiate(&mut store);
    assert_eq!(run(&mut store, &e, 0, 3), Ok(Some(Value::U32(3))));
    all_back(&store);
}

#[test]
fn deep_recursion_on_a_fiber_is_stack_exhaustion() {
    let mut store = ComponentStore::new(&HOSTED);
    for nested in [false, true, false, true] {
        let e = instantiate(&mut store);
        let m = trap_message(call_run(&mut store, &e, nested, 1, 1));
        assert!(m.contains("call stack exhausted"), "{m}");
        all_back(&store);
    }
    let e = instantiate(&mut store);
    assert_eq!(run(&mut store, &e, 0, 2), Ok(Some(Value::U32(2))));
}

#[test]
fn a_blocked_fiber_is_abandoned_when_its_caller_traps() {
    let mut store = ComponentStore::new(&HOSTED);
    let e = instantiate(&mut store);
    let m = trap_message(store.call(&func(&e, "start-then-trap"), &[]));
    assert!(m.contains("unreachable"), "{m}");
    all_back(&store);
    let e = instantiate(&mut store);
    assert_eq!(run(&mut store, &e, 0, 3), Ok(Some(Value::U32(3))));
    all_back(&store);
}

#[test]
fn fibers_still_blocked_go_with_the_store() {
    let mut store = ComponentStore::new(&HOSTED);
    let e = instantiate(&mut store);
    // The task resolved, then blocked in a synchronous call (as did the
    // callee it calls): both fibers wait, the host has its result.
    let r = store.call(&func(&e, "return-then-block"), &[]);
    assert_eq!(r, Ok(Some(Value::U32(7))));
    assert_eq!(store.core.fiber_stats().live, 2);
    // Moving the store keeps the blocked frames' references valid.
    let moved = store;
    drop(moved);
}
