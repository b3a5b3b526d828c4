//! Spec-test scripts as compact "bundles", and the one executor that runs
//! them against a [`Store`] on any [`Platform`] (hosted by `ringos wast`, in
//! the guest by `test=wasm-spec`).
//!
//! The host parses `.wast` text (the `wast` crate is std-only) into
//! [`Command`]s and [`encode`]s them; [`run`] decodes and executes a bundle
//! one command at a time. Assertions count as passed or failed; module,
//! register and invoke commands count only when they fail.
//!
//! Encoding (little-endian): `MAGIC`, then commands, each
//! `tag: u8, line: u32, col: u32, fields...`; strings and byte strings are
//! `len: u32` + bytes, options a `0/1` byte, lists `count: u32` + items.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::rc::Rc;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use crate::module::{GlobalType, MemoryType, RefType, TableType, ValType};
use crate::platform::Platform;
use crate::{Error, Extern, InstanceId, Module, Store, Trap, TrapKind, Val};

/// First bytes of every bundle.
pub const MAGIC: [u8; 8] = *b"RNGWAST1";

/// An argument of an invocation.
#[derive(Clone, Debug, PartialEq)]
pub enum Arg {
    I32(i32),
    I64(i64),
    F32(u32),
    F64(u64),
    /// A null of the parameter's reference type.
    RefNull,
    /// `ref.extern n` (the runtime sees `n + 1`, so 0 stays null).
    RefExtern(u32),
    /// Anything else (v128, GC values): the invocation fails.
    Unsupported,
}

/// An expected result.
#[derive(Clone, Debug, PartialEq)]
pub enum Pattern {
    I32(i32),
    I64(i64),
    F32(u32),
    F64(u64),
    F32CanonicalNan,
    F32ArithmeticNan,
    F64CanonicalNan,
    F64ArithmeticNan,
    /// `ref.null` of an extern (`Some(true)`), a non-extern (`Some(false)`)
    /// or any (`None`) heap type.
    RefNull(Option<bool>),
    /// `ref.extern` with a given (or any non-null) value.
    RefExtern(Option<u32>),
    /// Any non-null funcref.
    RefFunc,
    Either(Vec<Pattern>),
    /// A result this runner cannot check (v128, component values): fails.
    Never(String),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Invoke {
    pub module: Option<String>,
    pub name: String,
    pub args: Vec<Arg>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Exec {
    Invoke(Invoke),
    /// Instantiate a module (assert_trap on instantiation / uninstantiable).
    Module(Vec<u8>),
    Get {
        module: Option<String>,
        global: String,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    Module {
        name: Option<String>,
        bytes: Vec<u8>,
    },
    /// `(module definition $name ...)`: validated and kept.
    Definition {
        name: String,
        bytes: Vec<u8>,
    },
    /// `(module instance $inst $def)`.
    Instance {
        instance: Option<String>,
        module: String,
    },
    Register {
        name: String,
        module: Option<String>,
    },
    Invoke(Invoke),
    AssertReturn {
        exec: Exec,
        results: Vec<Pattern>,
    },
    AssertTrap {
        exec: Exec,
        message: String,
    },
    AssertExhaustion {
        invoke: Invoke,
        message: String,
    },
    /// Bytes that must fail validation.
    AssertInvalid {
        bytes: Vec<u8>,
        message: String,
    },
    /// Bytes that must fail decoding.
    AssertMalformed {
        bytes: Vec<u8>,
        message: String,
    },
    AssertUnlinkable {
        bytes: Vec<u8>,
        message: String,
    },
    /// A Wasm exception escapes the invocation (an uncaught-exception trap
    /// here: exceptions do not cross the host boundary).
    AssertException {
        exec: Exec,
    },
    /// An assertion the host already decided passed (e.g. text that does
    /// not even encode for assert_malformed).
    Pass,
    /// A directive the host could not turn into a command: counts failed.
    Fail(String),
    /// A directive that needs a proposal the runtime's feature set leaves
    /// off (the string says which): counted as skipped, never as passed.
    Skip(String),
}

impl Command {
    /// Whether success counts as a passed assertion.
    pub fn is_assertion(&self) -> bool {
        !matches!(
            self,
            Command::Module { .. }
                | Command::Definition { .. }
                | Command::Instance { .. }
                | Command::Register { .. }
                | Command::Invoke(_)
        )
    }
}

/// A command and where it came from (1-based line and column).
#[derive(Clone, Debug, PartialEq)]
pub struct Located {
    pub line: u32,
    pub col: u32,
    pub cmd: Command,
}

// ---------------------------------------------------------------- encoding

struct W(Vec<u8>);

impl W {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.u32(b.len() as u32);
        self.0.extend_from_slice(b);
    }
    fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }
    fn opt_str(&mut self, s: &Option<String>) {
        match s {
            None => self.u8(0),
            Some(s) => {
                self.u8(1);
                self.str(s);
            }
        }
    }
    fn invoke(&mut self, i: &Invoke) {
        self.opt_str(&i.module);
        self.str(&i.name);
        self.u32(i.args.len() as u32);
        for a in &i.args {
            match *a {
                Arg::I32(v) => {
                    self.u8(0);
                    self.u32(v as u32)
                }
                Arg::I64(v) => {
                    self.u8(1);
                    self.u64(v as u64)
                }
                Arg::F32(v) => {
                    self.u8(2);
                    self.u32(v)
                }
                Arg::F64(v) => {
                    self.u8(3);
                    self.u64(v)
                }
                Arg::RefNull => self.u8(4),
                Arg::RefExtern(n) => {
                    self.u8(5);
                    self.u32(n)
                }
                Arg::Unsupported => self.u8(6),
            }
        }
    }
    fn exec(&mut self, e: &Exec) {
        match e {
            Exec::Invoke(i) => {
                self.u8(0);
                self.invoke(i)
            }
            Exec::Module(b) => {
                self.u8(1);
                self.bytes(b)
            }
            Exec::Get { module, global } => {
                self.u8(2);
                self.opt_str(module);
                self.str(global)
            }
        }
    }
    fn pattern(&mut self, p: &Pattern) {
        match p {
            Pattern::I32(v) => {
                self.u8(0);
                self.u32(*v as u32)
            }
            Pattern::I64(v) => {
                self.u8(1);
                self.u64(*v as u64)
            }
            Pattern::F32(v) => {
                self.u8(2);
                self.u32(*v)
            }
            Pattern::F64(v) => {
                self.u8(3);
                self.u64(*v)
            }
            Pattern::F32CanonicalNan => self.u8(4),
            Pattern::F32ArithmeticNan => self.u8(5),
            Pattern::F64CanonicalNan => self.u8(6),
            Pattern::F64ArithmeticNan => self.u8(7),
            Pattern::RefNull(e) => {
                self.u8(8);
                self.u8(match e {
                    None => 0,
                    Some(false) => 1,
                    Some(true) => 2,
                })
            }
            Pattern::RefExtern(n) => {
                self.u8(9);
                match n {
                    None => self.u8(0),
                    Some(n) => {
                        self.u8(1);
                        self.u32(*n)
                    }
                }
            }
            Pattern::RefFunc => self.u8(10),
            Pattern::Either(alts) => {
                self.u8(11);
                self.u32(alts.len() as u32);
                for a in alts {
                    self.pattern(a);
                }
            }
            Pattern::Never(why) => {
                self.u8(12);
                self.str(why)
            }
        }
    }
}

/// Serialises commands into a bundle.
pub fn encode(cmds: &[Located]) -> Vec<u8> {
    let mut w = W(MAGIC.to_vec());
    for c in cmds {
        let tag = match &c.cmd {
            Command::Module { .. } => 0,
            Command::Definition { .. } => 1,
            Command::Instance { .. } => 2,
            Command::Register { .. } => 3,
            Command::Invoke(_) => 4,
            Command::AssertReturn { .. } => 5,
            Command::AssertTrap { .. } => 6,
            Command::AssertExhaustion { .. } => 7,
            Command::AssertInvalid { .. } => 8,
            Command::AssertMalformed { .. } => 9,
            Command::AssertUnlinkable { .. } => 10,
            Command::Pass => 11,
            Command::Fail(_) => 12,
            Command::Skip(_) => 13,
            Command::AssertException { .. } => 14,
        };
        w.u8(tag);
        w.u32(c.line);
        w.u32(c.col);
        match &c.cmd {
            Command::Module { name, bytes } => {
                w.opt_str(name);
                w.bytes(bytes)
            }
            Command::Definition { name, bytes } => {
                w.str(name);
                w.bytes(bytes)
            }
            Command::Instance { instance, module } => {
                w.opt_str(instance);
                w.str(module)
            }
            Command::Register { name, module } => {
                w.str(name);
                w.opt_str(module)
            }
            Command::Invoke(i) => w.invoke(i),
            Command::AssertReturn { exec, results } => {
                w.exec(exec);
                w.u32(results.len() as u32);
                for p in results {
                    w.pattern(p);
                }
            }
            Command::AssertTrap { exec, message } => {
                w.exec(exec);
                w.str(message)
            }
            Command::AssertExhaustion { invoke, message } => {
                w.invoke(invoke);
                w.str(message)
            }
            Command::AssertInvalid { bytes, message }
            | Command::AssertMalformed { bytes, message }
            | Command::AssertUnlinkable { bytes, message } => {
                w.bytes(bytes);
                w.str(message)
            }
            Command::AssertException { exec } => w.exec(exec),
            Command::Pass => {}
            Command::Fail(m) | Command::Skip(m) => w.str(m),
        }
    }
    w.0
}

/// A malformed bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadBundle;

struct R<'a>(&'a [u8]);

type D<T> = Result<T, BadBundle>;

impl<'a> R<'a> {
    fn take(&mut self, n: usize) -> D<&'a [u8]> {
        if self.0.len() < n {
            return Err(BadBundle);
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u8(&mut self) -> D<u8> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> D<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn u64(&mut self) -> D<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
    fn bytes(&mut self) -> D<Vec<u8>> {
        let n = self.u32()? as usize;
        Ok(self.take(n)?.to_vec())
    }
    fn str(&mut self) -> D<String> {
        String::from_utf8(self.bytes()?).map_err(|_| BadBundle)
    }
    fn opt_str(&mut self) -> D<Option<String>> {
        Ok(match self.u8()? {
            0 => None,
            _ => Some(self.str()?),
        })
    }
    fn invoke(&mut self) -> D<Invoke> {
        let module = self.opt_str()?;
        let name = self.str()?;
        let n = self.u32()?;
        let mut args = Vec::new();
        for _ in 0..n {
            args.push(match self.u8()? {
                0 => Arg::I32(self.u32()? as i32),
                1 => Arg::I64(self.u64()? as i64),
                2 => Arg::F32(self.u32()?),
                3 => Arg::F64(self.u64()?),
                4 => Arg::RefNull,
                5 => Arg::RefExtern(self.u32()?),
                6 => Arg::Unsupported,
                _ => return Err(BadBundle),
            });
        }
        Ok(Invoke { module, name, args })
    }
    fn exec(&mut self) -> D<Exec> {
        Ok(match self.u8()? {
            0 => Exec::Invoke(self.invoke()?),
            1 => Exec::Module(self.bytes()?),
            2 => Exec::Get {
                module: self.opt_str()?,
                global: self.str()?,
            },
            _ => return Err(BadBundle),
        })
    }
    fn pattern(&mut self) -> D<Pattern> {
        Ok(match self.u8()? {
            0 => Pattern::I32(self.u32()? as i32),
            1 => Pattern::I64(self.u64()? as i64),
            2 => Pattern::F32(self.u32()?),
            3 => Pattern::F64(self.u64()?),
            4 => Pattern::F32CanonicalNan,
            5 => Pattern::F32ArithmeticNan,
            6 => Pattern::F64CanonicalNan,
            7 => Pattern::F64ArithmeticNan,
            8 => Pattern::RefNull(match self.u8()? {
                0 => None,
                1 => Some(false),
                _ => Some(true),
            }),
            9 => Pattern::RefExtern(match self.u8()? {
                0 => None,
                _ => Some(self.u32()?),
            }),
            10 => Pattern::RefFunc,
            11 => {
                let n = self.u32()?;
                let mut v = Vec::new();
                for _ in 0..n {
                    v.push(self.pattern()?);
                }
                Pattern::Either(v)
            }
            12 => Pattern::Never(self.str()?),
            _ => return Err(BadBundle),
        })
    }
    fn command(&mut self) -> D<Located> {
        let tag = self.u8()?;
        let line = self.u32()?;
        let col = self.u32()?;
        let cmd = match tag {
            0 => Command::Module {
                name: self.opt_str()?,
                bytes: self.bytes()?,
            },
            1 => Command::Definition {
                name: self.str()?,
                bytes: self.bytes()?,
            },
            2 => Command::Instance {
                instance: self.opt_str()?,
                module: self.str()?,
            },
            3 => Command::Register {
                name: self.str()?,
                module: self.opt_str()?,
            },
            4 => Command::Invoke(self.invoke()?),
            5 => {
                let exec = self.exec()?;
                let n = self.u32()?;
                let mut results = Vec::new();
                for _ in 0..n {
                    results.push(self.pattern()?);
                }
                Command::AssertReturn { exec, results }
            }
            6 => Command::AssertTrap {
                exec: self.exec()?,
                message: self.str()?,
            },
            7 => Command::AssertExhaustion {
                invoke: self.invoke()?,
                message: self.str()?,
            },
            8 => Command::AssertInvalid {
                bytes: self.bytes()?,
                message: self.str()?,
            },
            9 => Command::AssertMalformed {
                bytes: self.bytes()?,
                message: self.str()?,
            },
            10 => Command::AssertUnlinkable {
                bytes: self.bytes()?,
                message: self.str()?,
            },
            11 => Command::Pass,
            12 => Command::Fail(self.str()?),
            13 => Command::Skip(self.str()?),
            14 => Command::AssertException { exec: self.exec()? },
            _ => return Err(BadBundle),
        };
        Ok(Located { line, col, cmd })
    }
}

/// The commands of a bundle, decoded one at a time.
pub fn decode(bundle: &[u8]) -> D<impl Iterator<Item = D<Located>> + '_> {
    let mut r = R(bundle.strip_prefix(&MAGIC[..]).ok_or(BadBundle)?);
    let mut failed = false;
    Ok(core::iter::from_fn(move || {
        if r.0.is_empty() || failed {
            return None;
        }
        let c = r.command();
        failed = c.is_err();
        Some(c)
    }))
}

// ---------------------------------------------------------------- executor

/// Pass/fail counts of one bundle (or several).
#[derive(Default, Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tally {
    pub passed: u32,
    pub failed: u32,
    /// Directives that need a proposal off in the runtime's feature set.
    pub skipped: u32,
}

impl core::ops::AddAssign for Tally {
    fn add_assign(&mut self, o: Tally) {
        self.passed += o.passed;
        self.failed += o.failed;
        self.skipped += o.skipped;
    }
}

/// Runs every command of `bundle` in a fresh store on `platform`; Wasm may
/// use `stack_budget` bytes of the caller's stack. `on_failure(line, col,
/// why)` hears about each failure (and each skipped directive, its `why`
/// starting with `skipped: `).
pub fn run(
    platform: &'static dyn Platform,
    bundle: &[u8],
    stack_budget: usize,
    on_failure: &mut dyn FnMut(u32, u32, &str),
) -> Result<Tally, BadBundle> {
    let mut r = Runner::new(platform, stack_budget);
    let mut tally = Tally::default();
    for c in decode(bundle)? {
        let c = c?;
        let counted = c.cmd.is_assertion();
        if let Command::Skip(why) = &c.cmd {
            tally.skipped += 1;
            on_failure(c.line, c.col, &alloc::format!("skipped: {why}"));
            continue;
        }
        match r.command(c.cmd) {
            Ok(()) if counted => tally.passed += 1,
            Ok(()) => {}
            Err(why) => {
                tally.failed += 1;
                on_failure(c.line, c.col, &why);
            }
        }
    }
    Ok(tally)
}

enum Registered {
    Host(BTreeMap<&'static str, Extern>),
    Wasm(InstanceId),
}

struct Runner {
    platform: &'static dyn Platform,
    store: Store,
    current: Option<InstanceId>,
    named: BTreeMap<String, InstanceId>,
    definitions: BTreeMap<String, Vec<u8>>,
    registered: BTreeMap<String, Registered>,
}

type Res<T = ()> = Result<T, String>;

impl Runner {
    fn new(platform: &'static dyn Platform, stack_budget: usize) -> Runner {
        let mut store = Store::new(platform);
        store.set_stack_budget(stack_budget);
        let spectest = spectest(&mut store);
        let mut registered = BTreeMap::new();
        registered.insert("spectest".to_string(), Registered::Host(spectest));
        Runner {
            platform,
            store,
            current: None,
            named: BTreeMap::new(),
            definitions: BTreeMap::new(),
            registered,
        }
    }

    fn command(&mut self, c: Command) -> Res {
        match c {
            Command::Module { name, bytes } => {
                let id = self.instantiate(&bytes).map_err(|e| e.to_string())?;
                self.current = Some(id);
                if let Some(n) = name {
                    self.named.insert(n, id);
                }
                Ok(())
            }
            Command::Definition { name, bytes } => {
                Module::validate(&bytes).map_err(|e| e.to_string())?;
                self.definitions.insert(name, bytes);
                Ok(())
            }
            Command::Instance { instance, module } => {
                let bytes = self
                    .definitions
                    .get(&module)
                    .cloned()
                    .ok_or("unknown module definition")?;
                let id = self.instantiate(&bytes).map_err(|e| e.to_string())?;
                self.current = Some(id);
                if let Some(n) = instance {
                    self.named.insert(n, id);
                }
                Ok(())
            }
            Command::Register { name, module } => {
                let id = self.instance(module.as_deref())?;
                self.registered.insert(name, Registered::Wasm(id));
                Ok(())
            }
            Command::Invoke(i) => self.invoke(&i).map(drop).map_err(|e| e.to_string()),
            Command::AssertReturn { exec, results } => {
                let got = self.execute(exec).map_err(|e| e.to_string())?;
                if got.len() != results.len() {
                    return Err(format!("expected {} results, got {got:?}", results.len()));
                }
                for (g, want) in got.iter().zip(&results) {
                    if !matches_ret(*g, want)? {
                        return Err(format!("got {got:?}, expected {results:?}"));
                    }
                }
                Ok(())
            }
            Command::AssertTrap { exec, message } => match self.execute(exec) {
                Err(Error::Trap(t)) if trap_matches(t, &message) => Ok(()),
                Err(Error::Trap(t)) => Err(format!("trapped with `{t}`, expected `{message}`")),
                Err(e) => Err(format!("expected trap `{message}`, got error: {e}")),
                Ok(v) => Err(format!("expected trap `{message}`, got {v:?}")),
            },
            Command::AssertException { exec } => match self.execute(exec) {
                Err(Error::Trap(Trap(TrapKind::UncaughtException))) => Ok(()),
                Err(e) => Err(format!("expected an exception, got error: {e}")),
                Ok(v) => Err(format!("expected an exception, got {v:?}")),
            },
            Command::AssertExhaustion { invoke, message } => match self.invoke(&invoke) {
                Err(Error::Trap(Trap(TrapKind::StackExhausted))) => Ok(()),
                r => Err(format!("expected `{message}`, got {r:?}")),
            },
            Command::AssertInvalid { bytes, message } => match Module::validate(&bytes) {
                Err(Error::Invalid(_)) => Ok(()),
                r => Err(format!("expected invalid `{message}`, got {r:?}")),
            },
            Command::AssertMalformed { bytes, message } => match Module::validate(&bytes) {
                Err(Error::Invalid(_)) => Ok(()),
                r => Err(format!("expected malformed `{message}`, got {r:?}")),
            },
            Command::AssertUnlinkable { bytes, message } => match self.instantiate(&bytes) {
                Err(Error::Link(_)) => Ok(()),
                r => Err(format!("expected unlinkable `{message}`, got {r:?}")),
            },
            Command::Pass => Ok(()),
            Command::Fail(why) => Err(why),
            Command::Skip(_) => Ok(()),
        }
    }

    fn instance(&self, name: Option<&str>) -> Res<InstanceId> {
        match name {
            Some(n) => self
                .named
                .get(n)
                .copied()
                .ok_or_else(|| format!("unknown module ${n}")),
            None => self.current.ok_or_else(|| "no current module".into()),
        }
    }

    fn instantiate(&mut self, bytes: &[u8]) -> Result<InstanceId, Error> {
        let module: Rc<Module> = Module::new(self.platform, bytes)?;
        let mut imports = Vec::new();
        for imp in &module.info.imports {
            let ext = match self.registered.get(&imp.module) {
                Some(Registered::Host(m)) => m.get(imp.name.as_str()).copied(),
                Some(Registered::Wasm(id)) => {
                    let id = *id;
                    self.store.export(id, &imp.name)
                }
                None => None,
            };
            imports.push(ext.ok_or_else(|| {
                Error::Link(format!("unknown import {}::{}", imp.module, imp.name))
            })?);
        }
        self.store.instantiate(&module, &imports)
    }

    fn execute(&mut self, exec: Exec) -> Result<Vec<Val>, Error> {
        match exec {
            Exec::Invoke(i) => self.invoke(&i),
            Exec::Module(bytes) => self.instantiate(&bytes).map(|_| Vec::new()),
            Exec::Get { module, global } => {
                let id = self.instance(module.as_deref()).map_err(Error::Usage)?;
                match self.store.export(id, &global) {
                    Some(Extern::Global(g)) => Ok(alloc::vec![self.store.global_get(g)]),
                    _ => Err(Error::Usage(format!("no global `{global}`"))),
                }
            }
        }
    }

    fn invoke(&mut self, i: &Invoke) -> Result<Vec<Val>, Error> {
        let id = self.instance(i.module.as_deref()).map_err(Error::Usage)?;
        let Some(Extern::Func(f)) = self.store.export(id, &i.name) else {
            return Err(Error::Usage(format!("no function `{}`", i.name)));
        };
        let params = self.store.func_type(f).0.to_vec();
        let mut args = Vec::new();
        for (a, t) in i.args.iter().zip(params) {
            args.push(match *a {
                Arg::I32(v) => Val::I32(v),
                Arg::I64(v) => Val::I64(v),
                Arg::F32(v) => Val::F32(v),
                Arg::F64(v) => Val::F64(v),
                Arg::RefNull if is_func(t) => Val::FuncRef(0),
                Arg::RefNull => Val::ExternRef(0),
                Arg::RefExtern(n) => Val::ExternRef(n as u64 + 1),
                Arg::Unsupported => return Err(Error::Unsupported("argument kind".into())),
            });
        }
        self.store.call(f, &args)
    }
}

fn is_func(t: ValType) -> bool {
    matches!(t, ValType::Ref(r) if r.is_func_ref())
}

/// Whether trap `t` is the one the script's `message` names.
pub fn trap_matches(t: Trap, message: &str) -> bool {
    message.starts_with(t.0.message())
        || match t.0 {
            TrapKind::TableOutOfBounds => message.starts_with("undefined element"),
            TrapKind::IndirectCallNull => message.starts_with("uninitialized element"),
            _ => false,
        }
}

fn matches_ret(v: Val, want: &Pattern) -> Res<bool> {
    Ok(match (want, v) {
        (Pattern::I32(w), Val::I32(g)) => *w == g,
        (Pattern::I64(w), Val::I64(g)) => *w == g,
        (Pattern::F32(w), Val::F32(g)) => *w == g,
        (Pattern::F32CanonicalNan, Val::F32(g)) => g & 0x7fff_ffff == 0x7fc0_0000,
        (Pattern::F32ArithmeticNan, Val::F32(g)) => g & 0x7fc0_0000 == 0x7fc0_0000,
        (Pattern::F64(w), Val::F64(g)) => *w == g,
        (Pattern::F64CanonicalNan, Val::F64(g)) => {
            g & 0x7fff_ffff_ffff_ffff == 0x7ff8_0000_0000_0000
        }
        (Pattern::F64ArithmeticNan, Val::F64(g)) => {
            g & 0x7ff8_0000_0000_0000 == 0x7ff8_0000_0000_0000
        }
        (Pattern::RefNull(ext), Val::FuncRef(g)) => g == 0 && *ext != Some(true),
        (Pattern::RefNull(ext), Val::ExternRef(g)) => g == 0 && *ext != Some(false),
        (Pattern::RefExtern(None), Val::ExternRef(g)) => g != 0,
        (Pattern::RefExtern(Some(n)), Val::ExternRef(g)) => g == *n as u64 + 1,
        (Pattern::RefFunc, Val::FuncRef(g)) => g != 0,
        (Pattern::Either(alts), v) => {
            for a in alts {
                if matches_ret(v, a)? {
                    return Ok(true);
                }
            }
            false
        }
        (Pattern::Never(why), _) => return Err(why.clone()),
        _ => false,
    })
}

/// The `spectest` module of the reference interpreter.
fn spectest(store: &mut Store) -> BTreeMap<&'static str, Extern> {
    let mut m = BTreeMap::new();
    let prints: [(&str, &[ValType]); 7] = [
        ("print", &[]),
        ("print_i32", &[ValType::I32]),
        ("print_i64", &[ValType::I64]),
        ("print_f32", &[ValType::F32]),
        ("print_f64", &[ValType::F64]),
        ("print_i32_f32", &[ValType::I32, ValType::F32]),
        ("print_f64_f64", &[ValType::F64, ValType::F64]),
    ];
    for (name, params) in prints {
        let f = store.host_func(params, &[], Box::new(|_, _, _| Ok(())));
        m.insert(name, Extern::Func(f));
    }
    let global = |store: &mut Store, ty, v| {
        Extern::Global(store.global(
            GlobalType {
                content_type: ty,
                mutable: false,
                shared: false,
            },
            v,
        ))
    };
    m.insert("global_i32", global(store, ValType::I32, Val::I32(666)));
    m.insert("global_i64", global(store, ValType::I64, Val::I64(666)));
    // 666.6 as f32 and f64 bits (no float arithmetic: soft-float guests).
    m.insert(
        "global_f32",
        global(store, ValType::F32, Val::F32(0x4426_a666)),
    );
    m.insert(
        "global_f64",
        global(store, ValType::F64, Val::F64(0x4084_d4cc_cccc_cccd)),
    );
    let table = store
        .table(TableType {
            element_type: RefType::FUNCREF,
            table64: false,
            initial: 10,
            maximum: Some(20),
            shared: false,
        })
        .expect("spectest table");
    m.insert("table", Extern::Table(table));
    let memory = store
        .memory(MemoryType {
            memory64: false,
            shared: false,
            initial: 1,
            maximum: Some(2),
            page_size_log2: None,
        })
        .expect("spectest memory");
    m.insert("memory", Extern::Memory(memory));
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spectest_float_bits() {
        assert_eq!(666.6f32.to_bits(), 0x4426_a666);
        assert_eq!(666.6f64.to_bits(), 0x4084_d4cc_cccc_cccd);
    }

    #[test]
    fn bundle_round_trips_and_runs() {
        let wat = r#"(module (func (export "add") (param i32 i32) (result i32)
            (i32.add (local.get 0) (local.get 1)))
            (func (export "boom") unreachable))"#;
        let bytes = wat::parse_str(wat).unwrap();
        let at = |cmd| Located {
            line: 1,
            col: 1,
            cmd,
        };
        let inv = |name: &str, args| Invoke {
            module: None,
            name: name.into(),
            args,
        };
        let cmds = alloc::vec![
            at(Command::Module { name: None, bytes }),
            at(Command::AssertReturn {
                exec: Exec::Invoke(inv("add", alloc::vec![Arg::I32(2), Arg::I32(3)])),
                results: alloc::vec![Pattern::Either(alloc::vec![
                    Pattern::I32(4),
                    Pattern::I32(5)
                ])],
            }),
            at(Command::AssertTrap {
                exec: Exec::Invoke(inv("boom", alloc::vec![])),
                message: "unreachable".into(),
            }),
            at(Command::AssertReturn {
                exec: Exec::Invoke(inv("add", alloc::vec![Arg::I32(1), Arg::I32(1)])),
                results: alloc::vec![Pattern::I32(3)],
            }),
            at(Command::AssertMalformed {
                bytes: alloc::vec![0, 1, 2],
                message: "magic".into(),
            }),
            at(Command::Fail("nope".into())),
        ];
        let b = encode(&cmds);
        let back: Vec<Located> = decode(&b).unwrap().map(Result::unwrap).collect();
        assert_eq!(back, cmds);
        let mut fails = Vec::new();
        let t = run(&crate::hosted::HOSTED, &b, 1 << 20, &mut |l, _, w| {
            fails.push((l, w.to_string()))
        })
        .unwrap();
        assert_eq!(
            t,
            Tally {
                passed: 3,
                failed: 2,
                skipped: 0,
            }
        );
        assert_eq!(fails.len(), 2);
        assert!(decode(b"junk").is_err());
    }
}
