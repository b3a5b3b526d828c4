//! Component-level behaviour that needs a host (host functions, host ends).

use alloc::boxed::Box;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec;

use super::*;
use crate::hosted::HOSTED;

fn instantiate(wat: &str, imports: Exports) -> (ComponentStore, Rc<Exports>) {
    let c = Component::new(&HOSTED, &wat::parse_str(wat).unwrap()).unwrap();
    let mut store = ComponentStore::new(&HOSTED);
    let exports = store.instantiate(&c, &imports).unwrap();
    (store, exports)
}

fn func(exports: &Exports, name: &str) -> Rc<Func> {
    match exports.get(name) {
        Some(Item::Func(f)) => f.clone(),
        _ => panic!("no function {name}"),
    }
}

/// A host end cannot take elements that hold handles: the host has no
/// table to move them into. Reading such a stream, or making such a
/// future, fails with a message (a trap of the caller), never a panic.
#[test]
fn host_ends_refuse_elements_that_hold_handles() {
    let s8 = ValType::stream(Some(ValType::U8));
    let consume = Func::host(
        FuncSig::new(&["s"], vec![ValType::stream(Some(s8.clone()))], None),
        Box::new(|cx: &mut HostCx<'_>, args: &[Value]| {
            let Some(Value::Stream(s)) = args.first() else {
                return Err(String::from("not a stream"));
            };
            cx.read_stream(*s, Box::new(|_| {}), Box::new(|_, _| Ok(())))?;
            Ok(None)
        }),
    );
    let probe = Func::host(
        FuncSig::new(&[], vec![], None),
        Box::new(move |cx: &mut HostCx<'_>, _: &[Value]| {
            let own = ValType::Own(ResourceType(0));
            if HostElem::new(Some(own)).is_ok() || HostElem::new(Some(s8.clone())).is_ok() {
                return Err(String::from("a host future of handles was made"));
            }
            cx.new_future(&HostElem::new(Some(ValType::U8))?)?;
            Ok(None)
        }),
    );
    let imports: Exports = [
        (String::from("consume"), Item::Func(consume)),
        (String::from("probe"), Item::Func(probe)),
    ]
    .into_iter()
    .collect();
    let (mut store, exports) = instantiate(
        r#"(component
          (type $S8 (stream u8))
          (type $SS (stream $S8))
          (import "consume" (func $consume (param "s" $SS)))
          (import "probe" (func $probe))
          (core module $Memory (memory (export "mem") 1))
          (core instance $memory (instantiate $Memory))
          (core module $Core
            (import "" "mem" (memory 1))
            (import "" "outer.new" (func $outer.new (result i64)))
            (import "" "outer.write" (func $outer.write (param i32 i32 i32) (result i32)))
            (import "" "inner.new" (func $inner.new (result i64)))
            (import "" "consume" (func $consume (param i32)))
            (import "" "probe" (func $probe))
            (func (export "run")
              (local $outer i64)
              (local.set $outer (call $outer.new))
              (i32.store (i32.const 8) (i32.wrap_i64 (call $inner.new)))
              (if (i32.ne (i32.const -1)
                          (call $outer.write (i32.wrap_i64 (i64.shr_u (local.get $outer) (i64.const 32)))
                                             (i32.const 8) (i32.const 1)))
                (then unreachable))
              (call $consume (i32.wrap_i64 (local.get $outer))))
            (func (export "probe") (call $probe)))
          (canon stream.new $SS (core func $outer.new))
          (canon stream.write $SS async (memory (core memory $memory "mem")) (core func $outer.write))
          (canon stream.new $S8 (core func $inner.new))
          (canon lower (func $consume) (core func $consume'))
          (canon lower (func $probe) (core func $probe'))
          (core instance $core (instantiate $Core (with "" (instance
            (export "mem" (memory $memory "mem"))
            (export "outer.new" (func $outer.new))
            (export "outer.write" (func $outer.write))
            (export "inner.new" (func $inner.new))
            (export "consume" (func $consume'))
            (export "probe" (func $probe'))))))
          (func (export "probe") (canon lift (core func $core "probe")))
          (func (export "run") (canon lift (core func $core "run"))))"#,
        imports,
    );
    store.call(&func(&exports, "probe"), &[]).unwrap();
    match store.call(&func(&exports, "run"), &[]) {
        Err(Error::Trapped(m)) => assert!(
            m.contains(
                "not supported: a host end of a stream or future whose elements hold handles"
            ),
            "{m}"
        ),
        r => panic!("expected a trap, got {:?}", r.map(|_| ())),
    }
}

/// A host function on integers gets its arguments' core bits and gives
/// its result's, whether a component calls it (from the caller's core
/// arguments) or the host does (from component values); a result the
/// host function does not give traps with the rule.
#[test]
fn host_functions_on_integers_take_and_give_core_bits() {
    let sub = Func::host_scalar(
        FuncSig::new(
            &["a", "b"],
            vec![ValType::U32, ValType::S8],
            Some(ValType::S64),
        ),
        Box::new(|_: &mut HostCx<'_>, a: &[u64]| {
            // `a` arrives zero-extended from 32 bits; `b` is an s8 as an
            // i32 (sign-extended within those 32 bits).
            let (a, b) = (a[0], a[1] as u32 as i32);
            Ok(Some((a as i64 - i64::from(b)) as u64))
        }),
    );
    let none = Func::host_scalar(
        FuncSig::new(&[], vec![], Some(ValType::U32)),
        Box::new(|_: &mut HostCx<'_>, _: &[u64]| Ok(None)),
    );
    let imports: Exports = [
        (String::from("sub"), Item::Func(sub.clone())),
        (String::from("none"), Item::Func(none)),
    ]
    .into_iter()
    .collect();
    let (mut store, exports) = instantiate(
        r#"(component
          (import "sub" (func $sub (param "a" u32) (param "b" s8) (result s64)))
          (import "none" (func $none (result u32)))
          (core module $Core
            (import "" "sub" (func $sub (param i32 i32) (result i64)))
            (import "" "none" (func $none (result i32)))
            (func (export "run") (param i32 i32) (result i64)
              (call $sub (local.get 0) (local.get 1)))
            (func (export "none") (result i32) (call $none)))
          (canon lower (func $sub) (core func $sub'))
          (canon lower (func $none) (core func $none'))
          (core instance $core (instantiate $Core (with "" (instance
            (export "sub" (func $sub')) (export "none" (func $none'))))))
          (func (export "run") (param "a" u32) (param "b" s8) (result s64)
            (canon lift (core func $core "run")))
          (func (export "none") (result u32) (canon lift (core func $core "none"))))"#,
        imports,
    );
    let r = store
        .call(
            &func(&exports, "run"),
            &[Value::U32(u32::MAX), Value::S8(-2)],
        )
        .unwrap();
    assert_eq!(r, Some(Value::S64(i64::from(u32::MAX) + 2)));
    // The host calling it directly: the same bits from component values.
    let r = store.call(&sub, &[Value::U32(7), Value::S8(-3)]).unwrap();
    assert_eq!(r, Some(Value::S64(10)));
    match store.call(&func(&exports, "none"), &[]) {
        Err(Error::Trapped(m)) => assert!(m.contains("wrong type"), "{m}"),
        r => panic!("expected a trap, got {r:?}"),
    }
}
