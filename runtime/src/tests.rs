//! Translator tests on small hand-written modules (hosted platform).

use crate::hosted::HOSTED;
use crate::{Error, Extern, Module, Store, Trap, TrapKind, Val};

fn run(wat: &str, name: &str, args: &[Val]) -> Result<Vec<Val>, Error> {
    let bytes = wat::parse_str(wat).expect("wat");
    let module = Module::new(&HOSTED, &bytes)?;
    let mut store = Store::new(&HOSTED);
    let inst = store.instantiate(&module, &[])?;
    let Some(Extern::Func(f)) = store.export(inst, name) else {
        panic!("no export {name}")
    };
    store.call(f, args)
}

fn trap(wat: &str, args: &[Val]) -> TrapKind {
    match run(wat, "f", args) {
        Err(Error::Trap(Trap(k))) => k,
        r => panic!("expected a trap, got {r:?}"),
    }
}

#[test]
fn arithmetic_and_control() {
    let wat = r#"(module (func (export "fac") (param i64) (result i64)
        (if (result i64) (i64.eqz (local.get 0)) (then (i64.const 1))
          (else (i64.mul (local.get 0) (call 0 (i64.sub (local.get 0) (i64.const 1))))))))"#;
    assert_eq!(
        run(wat, "fac", &[Val::I64(20)]),
        Ok(vec![Val::I64(2432902008176640000)])
    );
}

#[test]
fn memory_data_and_grow() {
    let wat = r#"(module (memory 1 2) (data (i32.const 8) "\2a")
        (func (export "f") (result i32 i32) (i32.load8_u (i32.const 8)) (memory.grow (i32.const 1))))"#;
    assert_eq!(run(wat, "f", &[]), Ok(vec![Val::I32(42), Val::I32(1)]));
}

#[test]
fn floats_cross_as_bits() {
    let wat = r#"(module (func (export "f") (param f64 f64) (result f64) (f64.min (local.get 0) (local.get 1))))"#;
    let r = run(
        wat,
        "f",
        &[Val::F64((-0.0f64).to_bits()), Val::F64(0.0f64.to_bits())],
    );
    assert_eq!(r, Ok(vec![Val::F64((-0.0f64).to_bits())]));
}

#[test]
fn trap_kinds() {
    let f = |body: &str| {
        format!(
            r#"(module (memory 1) (table 2 funcref) (type $t (func))
        (func $g (param i32)) (elem (i32.const 1) $g)
        (func (export "f") (param i32) {body}))"#
        )
    };
    assert_eq!(
        trap(&f("unreachable"), &[Val::I32(0)]),
        TrapKind::Unreachable
    );
    assert_eq!(
        trap(
            &f("(drop (i32.div_u (i32.const 1) (local.get 0)))"),
            &[Val::I32(0)]
        ),
        TrapKind::IntegerDivideByZero
    );
    assert_eq!(
        trap(
            &f("(drop (i32.div_s (i32.const 0x80000000) (local.get 0)))"),
            &[Val::I32(-1)]
        ),
        TrapKind::IntegerOverflow
    );
    assert_eq!(
        trap(
            &f("(drop (i32.trunc_f32_s (f32.const nan)))"),
            &[Val::I32(0)]
        ),
        TrapKind::InvalidConversionToInteger
    );
    assert_eq!(
        trap(&f("(drop (i32.load (local.get 0)))"), &[Val::I32(65534)]),
        TrapKind::MemoryOutOfBounds
    );
    assert_eq!(
        trap(
            &f("(call_indirect (type $t) (local.get 0))"),
            &[Val::I32(5)]
        ),
        TrapKind::TableOutOfBounds
    );
    assert_eq!(
        trap(
            &f("(call_indirect (type $t) (local.get 0))"),
            &[Val::I32(1)]
        ),
        TrapKind::IndirectCallTypeMismatch
    );
    assert_eq!(
        trap(
            &f("(call_indirect (type $t) (local.get 0))"),
            &[Val::I32(0)]
        ),
        TrapKind::IndirectCallNull
    );
    assert_eq!(
        trap(&f("(call 1 (local.get 0))"), &[Val::I32(0)]),
        TrapKind::StackExhausted
    );
}

#[test]
fn guard_region_out_of_bounds() {
    // Hosted memories use guard regions: these traps come from SIGSEGV.
    assert!(crate::Platform::guard_pages(&HOSTED));
    let wat = r#"(module (memory 1 2)
        (func (export "f") (param i32) (result i32) (i32.load offset=0xffffffff (local.get 0)))
        (func (export "g") (param i32) (result i64)
          (drop (memory.grow (i32.const 1))) (i64.store (local.get 0) (i64.const 7))
          (i64.load (local.get 0))))"#;
    assert_eq!(trap(wat, &[Val::I32(-1)]), TrapKind::MemoryOutOfBounds);
    assert_eq!(trap(wat, &[Val::I32(0)]), TrapKind::MemoryOutOfBounds);
    assert_eq!(
        run(wat, "g", &[Val::I32(131072 - 8)]),
        Ok(vec![Val::I64(7)])
    );
    assert!(matches!(
        run(wat, "g", &[Val::I32(131072 - 4)]),
        Err(Error::Trap(Trap(TrapKind::MemoryOutOfBounds)))
    ));
}

#[test]
fn memory_trap_needs_a_reservation_and_a_registered_pc() {
    let wat = r#"(module (memory (export "m") 1) (func (export "f") (param i32) (result i32)
        (i32.load (local.get 0))))"#;
    let bytes = wat::parse_str(wat).expect("wat");
    let module = Module::new(&HOSTED, &bytes).expect("module");
    let mut store = Store::new(&HOSTED);
    let inst = store.instantiate(&module, &[]).expect("instance");
    let Some(Extern::Memory(mem)) = store.export(inst, "m") else {
        panic!("no memory")
    };
    let base = store.memory_data(mem).as_ptr() as usize;
    let code = module.code.code.addr(module.code.funcs[0]);
    let load = crate::trap::registered_traps(code)
        .into_iter()
        .find(|t| t.1 == TrapKind::MemoryOutOfBounds && t.0 >= code)
        .expect("a registered load")
        .0;
    let guard = base + (5 << 30);
    assert_eq!(
        crate::trap::memory_trap(load, guard),
        Some(TrapKind::MemoryOutOfBounds)
    );
    // Outside any reservation, or not at a registered load/store: not ours.
    assert_eq!(crate::trap::memory_trap(load, 0x1000), None);
    assert_eq!(crate::trap::memory_trap(code, guard), None);
}

/// An endless inner loop under an outer one (the shape a fuzzed guest's
/// allocator spun in): the inner header's check must not be merged with
/// the outer one's (a plain load of the flag was, and the inner loop then
/// never looked at it).
#[test]
fn an_endless_inner_loop_is_interrupted() {
    let wat = r#"(module
        (memory 1)
        (func (export "spin") (param $p i32)
          (loop $outer
            (local.set $p (i32.load (local.get $p)))
            (loop $inner
              ;; a list walk that never ends (mem[0] = 0), no stores in it
              (local.set $p (i32.load (local.get $p)))
              (br_if $inner (i32.eqz (local.get $p))))
            (br $outer))))"#;
    let bytes = wat::parse_str(wat).expect("wat");
    let module = Module::new(&HOSTED, &bytes).unwrap();
    let mut store = Store::new(&HOSTED);
    let inst = store.instantiate(&module, &[]).unwrap();
    let Some(Extern::Func(spin)) = store.export(inst, "spin") else {
        panic!("export")
    };
    let h = store.interrupt_handle();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = done.clone();
    let t = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(50));
        h.interrupt();
        // A loop that ignores the flag would hang the test run: fail it.
        std::thread::sleep(std::time::Duration::from_secs(10));
        if !seen.load(std::sync::atomic::Ordering::SeqCst) {
            eprintln!("an_endless_inner_loop_is_interrupted: the inner loop ignored the interrupt");
            std::process::exit(1);
        }
    });
    assert_eq!(
        store.call(spin, &[Val::I32(0)]),
        Err(Error::Trap(Trap(TrapKind::Interrupted)))
    );
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    drop(t);
}

#[test]
fn an_endless_loop_is_interrupted_and_the_store_keeps_working() {
    let wat = r#"(module
        (func (export "spin") (loop $l (br $l)))
        (func (export "one") (result i32) (i32.const 1)))"#;
    let bytes = wat::parse_str(wat).expect("wat");
    let module = Module::new(&HOSTED, &bytes).unwrap();
    let mut store = Store::new(&HOSTED);
    let inst = store.instantiate(&module, &[]).unwrap();
    let (Some(Extern::Func(spin)), Some(Extern::Func(one))) =
        (store.export(inst, "spin"), store.export(inst, "one"))
    else {
        panic!("exports")
    };
    let h = store.interrupt_handle();
    let t = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(50));
        h.interrupt();
    });
    assert_eq!(
        store.call(spin, &[]),
        Err(Error::Trap(Trap(TrapKind::Interrupted)))
    );
    t.join().unwrap();
    // Still interrupted until reset; code without loops still runs.
    assert_eq!(store.call(one, &[]), Ok(vec![Val::I32(1)]));
    assert_eq!(
        store.call(spin, &[]),
        Err(Error::Trap(Trap(TrapKind::Interrupted)))
    );
    store.interrupt_handle().reset();
    assert_eq!(store.call(one, &[]), Ok(vec![Val::I32(1)]));
}
