//! WASI 0.3 `wasi:cli` for components, over output sinks the embedder
//! gives (the hosted mode writes to the process's stdout/stderr; the
//! kernel to its console). Provides `types`, `stdin` (the embedder's
//! [`Input`], or empty), `stdout`, `stderr` and `environment`, as
//! instances to pass as imports.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::rc::Rc;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;

use ringos_abi::{ValType, Value};

use crate::component::{Exports, Func, FuncSig, HostCx, HostElem, HostReply, Item};
pub use crate::stdin::{take_into, Bytes, Input, Received, Stdin};

/// Where a component's output goes.
pub type Sink = Rc<RefCell<dyn FnMut(&[u8])>>;

/// What `wasi:cli` serves a component.
pub struct Cli {
    /// Where stdin comes from (give the store the same source with
    /// `add_io`); `None`: stdin is empty.
    pub stdin: Option<Rc<Stdin>>,
    pub stdout: Sink,
    pub stderr: Sink,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

/// The WASI version these interfaces are named with; imports of other
/// 0.3.x versions are matched by the instantiation.
pub const VERSION: &str = "0.3.2";

fn error_code() -> ValType {
    ValType::enum_(["io", "illegal-byte-sequence", "pipe"])
}

/// `result<_, error-code>`, a status future's element, made (and checked)
/// once per function rather than per call.
pub(crate) fn status_elem() -> HostElem {
    HostElem::new(Some(ValType::result(None, Some(error_code()))))
        .expect("no handles in the status")
}

/// `future<result<_, error-code>>`.
fn done_future() -> ValType {
    ValType::future(Some(ValType::result(None, Some(error_code()))))
}

/// `write-via-stream: func(data: stream<u8>) -> future<result<_, error-code>>`
/// writing to `sink`.
fn write_via_stream(sink: Sink) -> Item {
    let status = status_elem();
    let f = move |cx: &mut HostCx<'_>, args: &[Value]| -> Result<Option<Value>, String> {
        let Some(Value::Stream(s)) = args.first() else {
            return Err("write-via-stream: expected a stream".into());
        };
        let (fut, token) = cx.new_future(&status)?;
        let sink = sink.clone();
        cx.read_stream(
            *s,
            Box::new(move |chunk: &[Value]| {
                let bytes: Vec<u8> = chunk
                    .iter()
                    .map(|v| match v {
                        Value::U8(b) => *b,
                        _ => b'?',
                    })
                    .collect();
                (sink.borrow_mut())(&bytes);
            }),
            Box::new(move |st, store| {
                crate::component::host::write_future(st, store, token, Value::ok(None))
            }),
        )?;
        Ok(Some(Value::Future(fut)))
    };
    let s = FuncSig::new(
        &["data"],
        vec![ValType::stream(Some(ValType::U8))],
        Some(done_future()),
    );
    Item::Func(Func::host(s, Box::new(f)))
}

/// How `wasi:cli/exit` ends a run: a trap with this message prefix and the
/// status after it, which the runner turns into the exit status.
pub const EXIT_MARKER: &str = "wasi:cli/exit: status ";

/// The status a run ended with through `wasi:cli/exit`, if that is what
/// the error `e` is.
pub fn exit_status(e: &str) -> Option<u8> {
    let at = e.find(EXIT_MARKER)? + EXIT_MARKER.len();
    e[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

fn instance(items: Vec<(&str, Item)>) -> Item {
    Item::Instance(Rc::new(
        items.into_iter().map(|(n, i)| (n.to_string(), i)).collect(),
    ))
}

/// The `wasi:cli/*` instances, keyed by import name.
pub fn cli(cfg: Cli) -> Exports {
    let mut m: Exports = BTreeMap::new();
    let name = |i: &str| alloc::format!("wasi:cli/{i}@{VERSION}");
    m.insert(
        name("types"),
        instance(vec![("error-code", Item::Type(None))]),
    );
    let status = status_elem();
    let input = cfg.stdin;
    let stdin = move |cx: &mut HostCx<'_>, _: &[Value]| -> Result<Option<Value>, String> {
        match &input {
            Some(s) => s.read_via_stream(cx),
            None => crate::stdin::empty(cx, &status),
        }
        .map(Some)
    };
    let stdin_sig = FuncSig::new(
        &[],
        vec![],
        Some(ValType::Tuple(vec![
            ValType::stream(Some(ValType::U8)),
            done_future(),
        ])),
    );
    m.insert(
        name("stdin"),
        instance(vec![
            ("error-code", Item::Type(None)),
            (
                "read-via-stream",
                Item::Func(Func::host(stdin_sig, Box::new(stdin))),
            ),
        ]),
    );
    m.insert(
        name("stdout"),
        instance(vec![
            ("error-code", Item::Type(None)),
            ("write-via-stream", write_via_stream(cfg.stdout)),
        ]),
    );
    m.insert(
        name("stderr"),
        instance(vec![
            ("error-code", Item::Type(None)),
            ("write-via-stream", write_via_stream(cfg.stderr)),
        ]),
    );
    let exit = |_: &mut HostCx<'_>, a: &[Value]| -> Result<Option<Value>, String> {
        let code = match a.first() {
            Some(Value::Variant(0, _)) => 0,
            _ => 1,
        };
        Err(alloc::format!("{EXIT_MARKER}{code}"))
    };
    let exit_code = |_: &mut HostCx<'_>, a: &[Value]| -> Result<Option<Value>, String> {
        let code = match a.first() {
            Some(Value::U8(c)) => *c,
            _ => 1,
        };
        Err(alloc::format!("{EXIT_MARKER}{code}"))
    };
    m.insert(
        name("exit"),
        instance(vec![
            (
                "exit",
                Item::Func(Func::host(
                    FuncSig::new(&["status"], vec![ValType::result(None, None)], None),
                    Box::new(exit),
                )),
            ),
            (
                "exit-with-code",
                Item::Func(Func::host(
                    FuncSig::new(&["status-code"], vec![ValType::U8], None),
                    Box::new(exit_code),
                )),
            ),
        ]),
    );
    let (args, env) = (cfg.args, cfg.env);
    let get_args = move |_: &mut HostCx<'_>, _: &[Value]| -> Result<Option<Value>, String> {
        Ok(Some(Value::List(
            args.iter().map(|a| Value::string(a)).collect(),
        )))
    };
    let get_env = move |_: &mut HostCx<'_>, _: &[Value]| -> Result<Option<Value>, String> {
        Ok(Some(Value::List(
            env.iter()
                .map(|(k, v)| Value::tuple(vec![Value::string(k), Value::string(v)]))
                .collect(),
        )))
    };
    let cwd = |_: &mut HostCx<'_>, _: &[Value]| -> Result<Option<Value>, String> {
        Ok(Some(Value::none()))
    };
    m.insert(
        name("environment"),
        instance(vec![
            (
                "get-environment",
                Item::Func(Func::host(
                    FuncSig::new(
                        &[],
                        vec![],
                        Some(ValType::list(ValType::Tuple(vec![
                            ValType::String,
                            ValType::String,
                        ]))),
                    ),
                    Box::new(get_env),
                )),
            ),
            (
                "get-arguments",
                Item::Func(Func::host(
                    FuncSig::new(&[], vec![], Some(ValType::list(ValType::String))),
                    Box::new(get_args),
                )),
            ),
            (
                "get-initial-cwd",
                Item::Func(Func::host(
                    FuncSig::new(&[], vec![], Some(ValType::option(ValType::String))),
                    Box::new(cwd),
                )),
            ),
        ]),
    );
    m
}

/// The `run` function a `wasi:cli/run` export holds.
pub fn run_export(exports: &Exports) -> Option<Rc<Func>> {
    exports
        .iter()
        .find(|(k, _)| k.starts_with("wasi:cli/run@0.3"))
        .and_then(|(_, i)| match i {
            Item::Instance(inst) => match inst.get("run") {
                Some(Item::Func(f)) => Some(f.clone()),
                _ => None,
            },
            _ => None,
        })
}

/// What the platform gives `wasi:clocks` and `wasi:random`. The same
/// clock must be the store's [`crate::component::Waiter`] (the loop's
/// timers, which `wait-for` / `wait-until` use).
pub trait System {
    /// Monotonic time in ns (any origin).
    fn monotonic_ns(&self) -> u64;
    /// The monotonic clock's resolution in ns.
    fn resolution_ns(&self) -> u64 {
        1
    }
    /// Wall-clock time: seconds and nanoseconds since the Unix epoch.
    fn wall(&self) -> (i64, u32);
    /// Fills `buf` from a cryptographic source, or says why it cannot.
    fn random(&self, buf: &mut [u8]) -> Result<(), String>;
}

/// `list<u8>` of `n` random bytes, at most 64 KiB per call.
fn random_bytes(sys: &dyn System, n: u64) -> Result<Value, String> {
    let mut buf = vec![0u8; n.min(65536) as usize];
    sys.random(&mut buf)?;
    Ok(Value::List(buf.into_iter().map(Value::U8).collect()))
}

fn random_u64(sys: &dyn System) -> Result<Value, String> {
    let mut b = [0u8; 8];
    sys.random(&mut b)?;
    Ok(Value::U64(u64::from_le_bytes(b)))
}

fn host(sig: FuncSig, f: impl Fn(&[Value]) -> Result<Option<Value>, String> + 'static) -> Item {
    Item::Func(Func::host(
        sig,
        Box::new(move |_: &mut HostCx<'_>, a: &[Value]| f(a)),
    ))
}

/// A function of no parameters returning a `u64`, on core bits.
fn u64_getter(f: impl Fn() -> u64 + 'static) -> Item {
    Item::Func(Func::host_scalar(
        FuncSig::new(&[], vec![], Some(ValType::U64)),
        Box::new(move |_: &mut HostCx<'_>, _: &[u64]| Ok(Some(f()))),
    ))
}

fn u64_arg(args: &[Value]) -> u64 {
    match args.first() {
        Some(Value::U64(v)) => *v,
        _ => 0,
    }
}

/// `wasi:clocks/{types,monotonic-clock,system-clock}` and
/// `wasi:random/{random,insecure,insecure-seed}`, keyed by import name.
pub fn clocks_and_random(sys: Rc<dyn System>) -> Exports {
    let mut m: Exports = BTreeMap::new();
    let clocks = |i: &str| alloc::format!("wasi:clocks/{i}@{VERSION}");
    let random = |i: &str| alloc::format!("wasi:random/{i}@{VERSION}");
    m.insert(
        clocks("types"),
        instance(vec![("duration", Item::Type(None))]),
    );
    let (s1, s2, s3, s4) = (sys.clone(), sys.clone(), sys.clone(), sys.clone());
    // `wait-for` / `wait-until`: a timer on the loop; other tasks run
    // meanwhile, and a synchronous caller blocks on the loop.
    let wait = |async_sig: FuncSig, f: Rc<dyn System>, until: bool| {
        let w = move |cx: &mut HostCx<'_>, a: &[Value]| -> Result<HostReply, String> {
            let v = u64_arg(a);
            let now = f.monotonic_ns();
            let deadline = if until { v } else { now.saturating_add(v) };
            if deadline <= now {
                return Ok(HostReply::Ready(None));
            }
            cx.sleep_until(deadline)
        };
        Item::Func(Func::host_async(async_sig, Box::new(w)))
    };
    let async_sig = |name: &str| {
        let mut s = FuncSig::new(&[name], vec![ValType::U64], None);
        s.ty.async_ = true;
        s
    };
    m.insert(
        clocks("monotonic-clock"),
        instance(vec![
            ("duration", Item::Type(None)),
            ("mark", Item::Type(None)),
            // On core bits: `now` is on every timed path.
            ("now", u64_getter(move || s1.monotonic_ns())),
            ("get-resolution", u64_getter(move || s2.resolution_ns())),
            ("wait-until", wait(async_sig("when"), sys.clone(), true)),
            ("wait-for", wait(async_sig("how-long"), sys.clone(), false)),
        ]),
    );
    let instant = ValType::record([("seconds", ValType::S64), ("nanoseconds", ValType::U32)]);
    m.insert(
        clocks("system-clock"),
        instance(vec![
            ("duration", Item::Type(None)),
            ("instant", Item::Type(None)),
            (
                "now",
                host(FuncSig::new(&[], vec![], Some(instant)), move |_| {
                    let (s, ns) = s3.wall();
                    Ok(Some(Value::Record(vec![Value::S64(s), Value::U32(ns)])))
                }),
            ),
            ("get-resolution", u64_getter(move || s4.resolution_ns())),
        ]),
    );
    for secure in [true, false] {
        let (a, b) = (sys.clone(), sys.clone());
        let (bytes, word, name) = if secure {
            ("get-random-bytes", "get-random-u64", random("random"))
        } else {
            (
                "get-insecure-random-bytes",
                "get-insecure-random-u64",
                random("insecure"),
            )
        };
        m.insert(
            name,
            instance(vec![
                (
                    bytes,
                    host(
                        FuncSig::new(
                            &["max-len"],
                            vec![ValType::U64],
                            Some(ValType::list(ValType::U8)),
                        ),
                        move |args| random_bytes(&*a, u64_arg(args)).map(Some),
                    ),
                ),
                (
                    word,
                    host(FuncSig::new(&[], vec![], Some(ValType::U64)), move |_| {
                        random_u64(&*b).map(Some)
                    }),
                ),
            ]),
        );
    }
    let seed = sys.clone();
    m.insert(
        random("insecure-seed"),
        instance(vec![(
            "get-insecure-seed",
            host(
                FuncSig::new(
                    &[],
                    vec![],
                    Some(ValType::Tuple(vec![ValType::U64, ValType::U64])),
                ),
                move |_| {
                    let (a, b) = (random_u64(&*seed)?, random_u64(&*seed)?);
                    Ok(Some(Value::tuple(vec![a, b])))
                },
            ),
        )]),
    );
    m
}

/// Instantiates `providers` in order (each one's exports become imports of
/// the ones after, beside `imports`), then `app`, and returns `app`'s
/// `wasi:cli/run` function. Errors say which component and why.
pub fn instantiate_command(
    store: &mut crate::component::ComponentStore,
    platform: &'static dyn crate::Platform,
    mut imports: Exports,
    app: &[u8],
    providers: &[&[u8]],
) -> Result<Rc<Func>, String> {
    use crate::component::Component;
    for (i, p) in providers.iter().enumerate() {
        let c =
            Component::new(platform, p).map_err(|e| alloc::format!("provider {}: {e}", i + 1))?;
        let exports = store
            .instantiate(&c, &imports)
            .map_err(|e| alloc::format!("provider {}: {e}", i + 1))?;
        imports.extend(exports.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    let c =
        Component::new(platform, app).map_err(|e| alloc::format!("not a valid component: {e}"))?;
    let exports = store.instantiate(&c, &imports).map_err(|e| match e {
        // Its start code ran and trapped (or was interrupted).
        crate::Error::Trap(_) | crate::Error::Trapped(_) => {
            alloc::format!("instantiation trapped: {e}")
        }
        e => alloc::format!("cannot link: {e}"),
    })?;
    run_export(&exports)
        .ok_or_else(|| "the component exports no wasi:cli/run (not a command)".into())
}
