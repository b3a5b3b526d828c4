//! Exception objects' lifetimes and the host boundary (hosted platform).

use alloc::boxed::Box;
use alloc::vec;

use crate::hosted::HOSTED;
use crate::module::ValType;
use crate::{Error, Extern, FuncId, InstanceId, Module, Store, Trap, TrapKind, Val};

fn instance(store: &mut Store, wat: &str, imports: &[Extern]) -> InstanceId {
    let bytes = wat::parse_str(wat).expect("wat");
    let module = Module::new(&HOSTED, &bytes).expect("module");
    store.instantiate(&module, imports).expect("instance")
}

fn func(store: &mut Store, inst: InstanceId, name: &str) -> FuncId {
    match store.export(inst, name) {
        Some(Extern::Func(f)) => f,
        _ => panic!("no function {name}"),
    }
}

const LOOPS: &str = r#"(module
  (tag $e (param i32))
  (global $g (mut exnref) (ref.null exn))
  (func $throw (param i32) (throw $e (local.get 0)))
  (func (export "plain") (param $n i32)
    (loop $l
      (block $h (result i32)
        (try_table (catch $e $h) (call $throw (local.get $n)))
        (unreachable))
      (drop)
      (br_if $l (local.tee $n (i32.sub (local.get $n) (i32.const 1))))))
  (func (export "local") (param $n i32)
    (loop $l
      (block $h
        (try_table (catch_all $h) (throw $e (local.get $n))))
      (br_if $l (local.tee $n (i32.sub (local.get $n) (i32.const 1))))))
  (func (export "refs") (param $n i32)
    (loop $l
      (block $h (result i32 exnref)
        (try_table (catch_ref $e $h) (call $throw (local.get $n)))
        (unreachable))
      (drop)
      (drop)
      (br_if $l (local.tee $n (i32.sub (local.get $n) (i32.const 1))))))
  (func (export "stash") (param i32)
    (block $h (result exnref)
      (try_table (catch_all_ref $h) (call $throw (local.get 0)))
      (unreachable))
    (global.set $g))
  (func (export "unstash") (result i32)
    (block $h (result i32)
      (try_table (catch $e $h) (throw_ref (global.get $g)))
      (unreachable)))
  (func (export "uncaught") (call $throw (i32.const 1)))
  (func (export "take") (param exnref) (result i32) (ref.is_null (local.get 0)))
)"#;

#[test]
fn caught_exceptions_are_freed_and_referenced_ones_collected() {
    let mut store = Store::new(&HOSTED);
    let inst = instance(&mut store, LOOPS, &[]);
    let f = |s: &mut Store, n: &str| func(s, inst, n);
    let (plain, local, refs) = (
        f(&mut store, "plain"),
        f(&mut store, "local"),
        f(&mut store, "refs"),
    );
    assert_eq!(store.call(plain, &[Val::I32(20_000)]), Ok(vec![]));
    assert_eq!(store.live_exceptions(), 0);
    assert_eq!(store.call(local, &[Val::I32(20_000)]), Ok(vec![]));
    assert_eq!(store.live_exceptions(), 0);
    // catch_ref makes exnrefs: garbage the collector frees as it goes.
    assert_eq!(store.call(refs, &[Val::I32(20_000)]), Ok(vec![]));
    let live = store.live_exceptions();
    assert!(live <= 2 * super::FIRST_COLLECTION, "{live} live");
    // One kept in a global survives collections.
    let (stash, unstash) = (f(&mut store, "stash"), f(&mut store, "unstash"));
    assert_eq!(store.call(stash, &[Val::I32(99)]), Ok(vec![]));
    assert_eq!(store.call(refs, &[Val::I32(20_000)]), Ok(vec![]));
    assert_eq!(store.call(unstash, &[]), Ok(vec![Val::I32(99)]));
    assert!(store.live_exceptions() <= 2 * super::FIRST_COLLECTION + 1);
    // An uncaught one is freed by its trap.
    let before = store.live_exceptions();
    let uncaught = f(&mut store, "uncaught");
    assert_eq!(
        store.call(uncaught, &[]),
        Err(Error::Trap(Trap(TrapKind::UncaughtException)))
    );
    assert_eq!(store.live_exceptions(), before);
}

#[test]
fn the_host_passes_only_null_exnrefs() {
    let mut store = Store::new(&HOSTED);
    let inst = instance(&mut store, LOOPS, &[]);
    let take = func(&mut store, inst, "take");
    assert_eq!(
        store.call(take, &[Val::ExternRef(0)]),
        Ok(vec![Val::I32(1)])
    );
    assert!(matches!(
        store.call(take, &[Val::ExternRef(0x1000)]),
        Err(Error::Usage(_))
    ));
}

#[test]
fn an_exception_does_not_cross_a_host_function() {
    let mut store = Store::new(&HOSTED);
    let inner = instance(
        &mut store,
        r#"(module (tag $e) (func (export "throw") (throw $e)))"#,
        &[],
    );
    let throw = func(&mut store, inner, "throw");
    // The host calls the thrower: the exception ends that (inner) entry
    // with a trap, which the host passes on as its own.
    let host = store.host_func(
        &[],
        &[],
        Box::new(
            move |s: &mut Store, _: &[Val], _: &mut [Val]| match s.call(throw, &[]) {
                Err(Error::Trap(t)) => Err(t),
                _ => Ok(()),
            },
        ),
    );
    let outer = instance(
        &mut store,
        r#"(module (import "h" "h" (func $h))
          (func (export "f") (result i32)
            (block $h (try_table (catch_all $h) (call $h)) (return (i32.const 1)))
            (i32.const 2)))"#,
        &[Extern::Func(host)],
    );
    let f = func(&mut store, outer, "f");
    assert_eq!(
        store.call(f, &[]),
        Err(Error::Trap(Trap(TrapKind::UncaughtException)))
    );
    assert_eq!(store.live_exceptions(), 0);
}

#[test]
fn tags_link_by_identity() {
    let mut store = Store::new(&HOSTED);
    let lib = r#"(module (tag (export "t") (param i64))
        (func (export "throw") (param i64) (throw 0 (local.get 0))))"#;
    let (a, b) = (
        instance(&mut store, lib, &[]),
        instance(&mut store, lib, &[]),
    );
    let (Some(Extern::Tag(ta)), Some(Extern::Tag(tb))) =
        (store.export(a, "t"), store.export(b, "t"))
    else {
        panic!("tags")
    };
    assert_ne!(ta, tb);
    assert_eq!(store.tag_type(ta), &[ValType::I64]);
    let throw_b = Extern::Func(func(&mut store, b, "throw"));
    let user = r#"(module (import "a" "t" (tag $t (param i64)))
        (import "b" "throw" (func $throw (param i64)))
        (func (export "f") (result i64)
          (block $all
            (block $h (result i64)
              (try_table (catch $t $h) (catch_all $all) (call $throw (i64.const 5)))
              (return (i64.const -1)))
            (return))
          (i64.const 7)))"#;
    // With b's tag the catch matches; with a's it does not.
    let with_b = instance(&mut store, user, &[Extern::Tag(tb), throw_b]);
    let with_a = instance(&mut store, user, &[Extern::Tag(ta), throw_b]);
    let (fb, fa) = (func(&mut store, with_b, "f"), func(&mut store, with_a, "f"));
    assert_eq!(store.call(fb, &[]), Ok(vec![Val::I64(5)]));
    assert_eq!(store.call(fa, &[]), Ok(vec![Val::I64(7)]));
    // A tag of another type does not link.
    let bytes = wat::parse_str(r#"(module (import "a" "t" (tag (param i32))))"#).unwrap();
    let m = Module::new(&HOSTED, &bytes).unwrap();
    assert!(matches!(
        store.instantiate(&m, &[Extern::Tag(ta)]),
        Err(Error::Link(_))
    ));
}

#[test]
fn what_the_jit_does_not_take_is_refused_cleanly() {
    // The legacy exception instructions do not validate.
    let legacy =
        wat::parse_str(r#"(module (tag $e) (func try throw $e catch $e end))"#).expect("wat");
    assert!(matches!(
        Module::new(&HOSTED, &legacy),
        Err(Error::Invalid(_))
    ));
    // A v128 payload validates but is not supported (no SIMD).
    let simd = wat::parse_str(
        r#"(module (tag $e (param v128))
          (func (block $h (result v128) (try_table (catch $e $h)) (return)) (drop)))"#,
    )
    .expect("wat");
    assert!(matches!(
        Module::new(&HOSTED, &simd),
        Err(Error::Unsupported(_))
    ));
    // A throw_ref of a null traps, whether a try_table is around it or not.
    let mut store = Store::new(&HOSTED);
    let inst = instance(
        &mut store,
        r#"(module (func (export "a") (throw_ref (ref.null exn)))
          (func (export "b") (block $h (try_table (catch_all $h) (throw_ref (ref.null exn))))))"#,
        &[],
    );
    for name in ["a", "b"] {
        let f = func(&mut store, inst, name);
        assert_eq!(
            store.call(f, &[]),
            Err(Error::Trap(Trap(TrapKind::NullExnRef)))
        );
    }
}
