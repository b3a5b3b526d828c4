//! Raw bytes -> a component: validate, instantiate with ringos's WASI
//! (`wasi:cli`, clocks, random), and call every exported function whose
//! parameters have a plain default value. Traps and link errors are fine;
//! a panic is a runtime bug, and so is a hang: a watchdog interrupts any
//! input running longer than a second (an endless loop must trap).
#![no_main]

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use ringos_runtime::component::{self, Component, ComponentStore, Exports, Item, ValType, Value};
use ringos_runtime::hosted::HOSTED;
use ringos_runtime::wasi::{self, Cli, System};
use ringos_runtime::InterruptHandle;

/// The store running now and since when (cleared before it is dropped).
static RUNNING: Mutex<Option<(InterruptHandle, Instant)>> = Mutex::new(None);

fn watchdog() {
    static START: Once = Once::new();
    START.call_once(|| {
        std::thread::spawn(|| loop {
            std::thread::sleep(Duration::from_millis(100));
            let r = RUNNING.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((h, since)) = r.as_ref() {
                if since.elapsed() > Duration::from_secs(1) {
                    h.interrupt();
                }
            }
        });
    });
}

/// A clock that stands still and a fixed "random" source (no waiter is
/// set, so `wait-for` traps rather than sleeps).
struct Fake;

impl System for Fake {
    fn monotonic_ns(&self) -> u64 {
        0
    }
    fn wall(&self) -> (i64, u32) {
        (0, 0)
    }
    fn random(&self, buf: &mut [u8]) -> Result<(), String> {
        buf.fill(7);
        Ok(())
    }
}

fn default_value(t: &ValType) -> Option<Value> {
    Some(match t {
        ValType::Bool => Value::Bool(false),
        ValType::S8 => Value::S8(0),
        ValType::U8 => Value::U8(0),
        ValType::S16 => Value::S16(0),
        ValType::U16 => Value::U16(0),
        ValType::S32 => Value::S32(0),
        ValType::U32 => Value::U32(0),
        ValType::S64 => Value::S64(0),
        ValType::U64 => Value::U64(0),
        ValType::F32 => Value::F32(0.0),
        ValType::F64 => Value::F64(0.0),
        ValType::Char => Value::Char('a'),
        ValType::String => Value::string("fuzz"),
        ValType::List(_) | ValType::Map(_) => Value::List(Vec::new()),
        ValType::Record(fs) => {
            Value::Record(fs.iter().map(|f| default_value(&f.ty)).collect::<Option<_>>()?)
        }
        ValType::Tuple(ts) => Value::Record(ts.iter().map(default_value).collect::<Option<_>>()?),
        ValType::Variant(cs) => {
            let c = cs.first()?;
            let payload = match &c.ty {
                Some(t) => Some(Box::new(default_value(t)?)),
                None => None,
            };
            Value::Variant(0, payload)
        }
        ValType::Enum(_) => Value::enum_case(0),
        ValType::Option(_) => Value::none(),
        ValType::Result { ok, .. } => {
            let payload = match ok.as_deref() {
                Some(t) => Some(Box::new(default_value(t)?)),
                None => None,
            };
            Value::Variant(0, payload)
        }
        ValType::Flags(_) => Value::Flags(0),
        _ => return None,
    })
}

fn funcs(e: &Exports, out: &mut Vec<Rc<component::Func>>, depth: u32) {
    for item in e.values() {
        match item {
            Item::Func(f) => out.push(f.clone()),
            Item::Instance(i) if depth < 4 => funcs(i, out, depth + 1),
            _ => {}
        }
    }
}

fuzz_target!(|bytes: &[u8]| {
    if !component::is_component(bytes) {
        return;
    }
    let Ok(c) = Component::new(&HOSTED, bytes) else {
        return;
    };
    watchdog();
    let mut store = ComponentStore::new(&HOSTED);
    *RUNNING.lock().unwrap() = Some((store.core.interrupt_handle(), Instant::now()));
    let sink: wasi::Sink = Rc::new(RefCell::new(|_: &[u8]| {}));
    let mut imports = wasi::cli(Cli {
        stdin: None,
        stdout: sink.clone(),
        stderr: sink,
        args: Vec::new(),
        env: Vec::new(),
    });
    imports.extend(wasi::clocks_and_random(Rc::new(Fake)));
    if let Ok(exports) = store.instantiate(&c, &imports) {
        let mut fs = Vec::new();
        funcs(&exports, &mut fs, 0);
        for f in fs.iter().take(16) {
            let args: Option<Vec<Value>> = f.sig.ty.params.iter().map(default_value).collect();
            if let Some(args) = args {
                let _ = store.call(f, &args);
            }
        }
    }
    // The handle points into the store: clear it before the store goes.
    *RUNNING.lock().unwrap() = None;
    drop(store);
});
