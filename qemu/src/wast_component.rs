//! Component Model directives of `ringos wast`: components are validated
//! (component model and WASI 0.3.0 async features on), instantiated in
//! one component store per script, and their exports invoked with
//! component values (`assert_return`, `assert_trap`, `invoke`,
//! `assert_unlinkable`, `register`). Each directive is run as it is read;
//! the result goes into the bundle as a passed or failed command.

use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use ringos_runtime::component::{self, Component, ComponentStore, Exports, Item, ValType, Value};
use ringos_runtime::hosted::HOSTED;
use ringos_runtime::script::Command;
use ringos_runtime::Error;
use wast::component::WastVal;
use wast::token::Id;
use wast::{QuoteWat, WastArg, WastDirective, WastExecute, WastInvoke, WastRet, Wat};

/// The component side of one script.
#[derive(Default)]
pub struct Components {
    store: Option<ComponentStore>,
    /// Component instances by name (or why there is none).
    instances: HashMap<String, Target>,
    /// Names that are components (a core module of that name shadows it).
    names: HashSet<String>,
    /// The most recent instance, if it is a component's.
    current: Option<Target>,
    /// Component definitions, by name (or why there is none).
    defs: HashMap<String, Result<Rc<Component>, Command>>,
    /// What `register` made importable, by name.
    registry: Exports,
}

/// A component instance, or the command every directive on it becomes
/// (a skip for a component that needs a later proposal, else a failure).
type Target = Result<Rc<Exports>, Command>;

/// What a directive on a broken target counts as.
fn broken(c: &Command) -> Command {
    match c {
        Command::Skip(why) => Command::Skip(why.clone()),
        Command::Fail(why) => Command::Fail(format!("no instance: {why}")),
        _ => Command::Fail("no instance".into()),
    }
}

fn is_component(q: &QuoteWat<'_>) -> bool {
    matches!(
        q,
        QuoteWat::Wat(Wat::Component(_)) | QuoteWat::QuoteComponent(..)
    )
}

fn name(q: &QuoteWat<'_>) -> Option<String> {
    q.name().map(|i| i.name().to_string())
}

/// The failure for a component that does not validate.
fn invalid(bytes: &[u8], e: &str) -> Command {
    if component::needs_later_proposal(bytes) {
        Command::Skip(format!("uses a proposal off in WASI 0.3.0: {e}"))
    } else {
        Command::Fail(format!("invalid component: {e}"))
    }
}

/// `Pass` if `q` does not encode or validate as a component.
fn rejected(q: &mut QuoteWat<'_>, what: &str, message: &str) -> Command {
    match q.encode() {
        Err(_) => Command::Pass,
        Ok(bytes) => match component::validate(&bytes) {
            Err(_) => Command::Pass,
            Ok(()) => Command::Fail(format!("expected {what} `{message}`, component validated")),
        },
    }
}

/// A directive that is not an assertion counts only when it fails, as a
/// core `module` does.
fn unless_passed(cmd: Command) -> Option<Command> {
    match cmd {
        Command::Pass => None,
        other => Some(other),
    }
}

/// Whether a trap's message is the one a test expects (the tests use
/// wasmtime's wording, sometimes with a `wasm trap: ` prefix).
fn trap_matches(got: &str, want: &str) -> bool {
    let want = want.strip_prefix("wasm trap: ").unwrap_or(want);
    got.contains(want)
}

fn error_message(e: &Error) -> String {
    match e {
        Error::Trapped(m) => m.clone(),
        Error::Trap(t) => t.to_string(),
        e => e.to_string(),
    }
}

impl Components {
    fn store(&mut self) -> &mut ComponentStore {
        self.store
            .get_or_insert_with(|| ComponentStore::new(&HOSTED))
    }

    fn targets(&self, module: Option<Id<'_>>) -> bool {
        match module {
            Some(m) => self.names.contains(m.name()),
            None => self.current.is_some(),
        }
    }

    fn exec_targets(&self, exec: &WastExecute<'_>) -> bool {
        match exec {
            WastExecute::Invoke(i) => self.targets(i.module),
            WastExecute::Wat(Wat::Component(_)) => true,
            WastExecute::Wat(Wat::Module(_)) => false,
            WastExecute::Get { module, .. } => self.targets(*module),
        }
    }

    /// Validates and instantiates `bytes`.
    fn instantiate(&mut self, bytes: &[u8]) -> Result<Rc<Exports>, Command> {
        let c = match Component::new(&HOSTED, bytes) {
            Ok(c) => c,
            Err(Error::Invalid(e)) => return Err(invalid(bytes, &e)),
            Err(e) => return Err(Command::Fail(e.to_string())),
        };
        let imports = self.registry.clone();
        self.store()
            .instantiate(&c, &imports)
            .map_err(|e| Command::Fail(format!("component instantiation: {e}")))
    }

    fn set_current(&mut self, name: Option<String>, t: Target) {
        if let Some(n) = name {
            self.names.insert(n.clone());
            self.instances.insert(n, t.clone());
        }
        self.current = Some(t);
    }

    fn instance(&self, module: Option<Id<'_>>) -> Target {
        match module {
            Some(m) => self.instances.get(m.name()).cloned(),
            None => self.current.clone(),
        }
        .unwrap_or_else(|| Err(Command::Fail("no component instance".into())))
    }

    /// Runs an invoke; `Err` is what the directive counts as when the call
    /// cannot even be made.
    fn invoke(&mut self, i: &WastInvoke<'_>) -> Result<Result<Option<Value>, Error>, Command> {
        let inst = self.instance(i.module).map_err(|c| broken(&c))?;
        let fail = |m: String| Command::Fail(m);
        let f = match inst.get(i.name) {
            Some(Item::Func(f)) => f.clone(),
            _ => return Err(fail(format!("no exported function `{}`", i.name))),
        };
        let ty = &f.sig.ty;
        if i.args.len() != ty.params.len() {
            return Err(fail(format!(
                "`{}` takes {} arguments, {} given",
                i.name,
                ty.params.len(),
                i.args.len()
            )));
        }
        let mut args = Vec::new();
        for (a, t) in i.args.iter().zip(&ty.params) {
            match a {
                WastArg::Component(v) => args.push(to_value(v, t).map_err(fail)?),
                _ => return Err(fail("core argument to a component function".into())),
            }
        }
        Ok(self.store().call(&f, &args))
    }

    fn assert_return(&mut self, exec: WastExecute<'_>, results: &[WastRet<'_>]) -> Command {
        let WastExecute::Invoke(i) = exec else {
            return Command::Fail("assert_return of a component instantiation".into());
        };
        let result_ty = match self.instance(i.module) {
            Err(c) => return broken(&c),
            Ok(inst) => match inst.get(i.name) {
                Some(Item::Func(f)) => f.sig.ty.result.clone(),
                _ => return Command::Fail(format!("no exported function `{}`", i.name)),
            },
        };
        let got = match self.invoke(&i) {
            Err(c) => return c,
            Ok(Err(e)) => return Command::Fail(format!("call failed: {e}")),
            Ok(Ok(v)) => v,
        };
        let want = match (results, &result_ty) {
            ([], _) => None,
            ([WastRet::Component(w)], Some(t)) => match to_value(w, t) {
                Ok(v) => Some(v),
                Err(e) => return Command::Fail(e),
            },
            _ => return Command::Fail("results do not match the function's type".into()),
        };
        match (&got, &want) {
            (None, None) => Command::Pass,
            (Some(g), Some(w)) if value_eq(g, w) => Command::Pass,
            _ => Command::Fail(format!("expected {want:?}, got {got:?}")),
        }
    }

    fn assert_trap(&mut self, exec: WastExecute<'_>, message: &str) -> Command {
        let r = match exec {
            WastExecute::Invoke(i) => match self.invoke(&i) {
                Err(c) => return c,
                Ok(r) => r.map(drop),
            },
            WastExecute::Wat(mut w) => {
                let bytes = match w.encode() {
                    Ok(b) => b,
                    Err(e) => return Command::Fail(e.to_string()),
                };
                match Component::new(&HOSTED, &bytes) {
                    Err(e) => Err(e),
                    Ok(c) => {
                        let imports = self.registry.clone();
                        self.store().instantiate(&c, &imports).map(drop)
                    }
                }
            }
            WastExecute::Get { .. } => return Command::Fail("get on a component".into()),
        };
        match r {
            Ok(()) => Command::Fail(format!("expected trap `{message}`, returned")),
            Err(e @ (Error::Trapped(_) | Error::Trap(_))) => {
                let got = error_message(&e);
                if trap_matches(&got, message) {
                    Command::Pass
                } else {
                    Command::Fail(format!("expected trap `{message}`, got `{got}`"))
                }
            }
            Err(e) => Command::Fail(format!("expected trap `{message}`, got {e}")),
        }
    }

    /// The command for `d` if it concerns a component (`None`: nothing to
    /// count); `d` back otherwise.
    pub fn directive<'a>(
        &mut self,
        d: WastDirective<'a>,
    ) -> Result<Option<Command>, Box<WastDirective<'a>>> {
        match d {
            WastDirective::Module(mut q) if is_component(&q) => {
                let n = name(&q);
                let bytes = match q.encode() {
                    Ok(b) => b,
                    Err(e) => return Ok(Some(Command::Fail(e.to_string()))),
                };
                let t = self.instantiate(&bytes);
                let cmd = match &t {
                    Ok(_) => Command::Pass,
                    Err(c) => c.clone(),
                };
                self.set_current(n, t);
                Ok(unless_passed(cmd))
            }
            WastDirective::Module(q) => {
                // A core module: it becomes current and may shadow a name.
                self.current = None;
                if let Some(n) = name(&q) {
                    self.names.remove(&n);
                }
                Err(Box::new(WastDirective::Module(q)))
            }
            WastDirective::ModuleDefinition(mut q) if is_component(&q) => {
                let bytes = match q.encode() {
                    Ok(b) => b,
                    Err(e) => return Ok(Some(Command::Fail(e.to_string()))),
                };
                let def = match Component::new(&HOSTED, &bytes) {
                    Ok(c) => Ok(c),
                    Err(Error::Invalid(e)) => Err(invalid(&bytes, &e)),
                    Err(e) => Err(Command::Fail(e.to_string())),
                };
                let cmd = match &def {
                    Ok(_) => Command::Pass,
                    Err(c) => c.clone(),
                };
                self.defs.insert(name(&q).unwrap_or_default(), def);
                Ok(unless_passed(cmd))
            }
            WastDirective::ModuleInstance {
                instance,
                module,
                span,
            } => {
                let def = module.map(|m| m.name().to_string()).unwrap_or_default();
                match self.defs.get(&def).cloned() {
                    Some(c) => {
                        let t = match c {
                            Ok(c) => {
                                let imports = self.registry.clone();
                                self.store().instantiate(&c, &imports).map_err(|e| {
                                    Command::Fail(format!("component instantiation: {e}"))
                                })
                            }
                            Err(c) => Err(broken(&c)),
                        };
                        let cmd = match &t {
                            Ok(_) => Command::Pass,
                            Err(c) => c.clone(),
                        };
                        self.set_current(instance.map(|i| i.name().to_string()), t);
                        Ok(unless_passed(cmd))
                    }
                    None => {
                        self.current = None;
                        if let Some(i) = instance {
                            self.names.remove(i.name());
                        }
                        Err(Box::new(WastDirective::ModuleInstance {
                            instance,
                            module,
                            span,
                        }))
                    }
                }
            }
            WastDirective::Register { module, name, .. } if self.targets(module) => {
                match self.instance(module) {
                    Ok(e) => {
                        self.registry.insert(name.to_string(), Item::Instance(e));
                        Ok(None)
                    }
                    Err(c) => Ok(Some(broken(&c))),
                }
            }
            WastDirective::Invoke(i) if self.targets(i.module) => Ok(Some(match self.invoke(&i) {
                Ok(Ok(_)) => return Ok(None),
                Ok(Err(e)) => Command::Fail(format!("invoke failed: {e}")),
                Err(c) => c,
            })),
            WastDirective::AssertReturn { exec, results, .. } if self.exec_targets(&exec) => {
                Ok(Some(self.assert_return(exec, &results)))
            }
            WastDirective::AssertTrap { exec, message, .. } if self.exec_targets(&exec) => {
                Ok(Some(self.assert_trap(exec, message)))
            }
            WastDirective::AssertInvalid {
                mut module,
                message,
                ..
            } if is_component(&module) => Ok(Some(rejected(&mut module, "invalid", message))),
            WastDirective::AssertMalformed {
                mut module,
                message,
                ..
            } if is_component(&module) => Ok(Some(rejected(&mut module, "malformed", message))),
            WastDirective::AssertUnlinkable {
                module: Wat::Component(c),
                message,
                ..
            } => {
                let mut w = Wat::Component(c);
                let bytes = match w.encode() {
                    Ok(b) => b,
                    Err(e) => return Ok(Some(Command::Fail(e.to_string()))),
                };
                Ok(Some(match self.instantiate(&bytes) {
                    Ok(_) => Command::Fail(format!("expected unlinkable `{message}`, linked")),
                    Err(Command::Fail(why)) if why.starts_with("component instantiation") => {
                        Command::Pass
                    }
                    Err(c) => c,
                }))
            }
            d => Err(Box::new(d)),
        }
    }
}

/// A script value as a component value of type `t`.
fn to_value(v: &WastVal<'_>, t: &ValType) -> Result<Value, String> {
    let mismatch = || format!("value {v:?} does not fit type {t:?}");
    Ok(match (v, t) {
        (WastVal::Bool(b), ValType::Bool) => Value::Bool(*b),
        (WastVal::U8(x), ValType::U8) => Value::U8(*x),
        (WastVal::S8(x), ValType::S8) => Value::S8(*x),
        (WastVal::U16(x), ValType::U16) => Value::U16(*x),
        (WastVal::S16(x), ValType::S16) => Value::S16(*x),
        (WastVal::U32(x), ValType::U32) => Value::U32(*x),
        (WastVal::S32(x), ValType::S32) => Value::S32(*x),
        (WastVal::U64(x), ValType::U64) => Value::U64(*x),
        (WastVal::S64(x), ValType::S64) => Value::S64(*x),
        (WastVal::F32(x), ValType::F32) => Value::F32(f32::from_bits(x.bits)),
        (WastVal::F64(x), ValType::F64) => Value::F64(f64::from_bits(x.bits)),
        (WastVal::Char(c), ValType::Char) => Value::Char(*c),
        (WastVal::String(s), ValType::String) => Value::string(s),
        (WastVal::List(vs), ValType::List(e)) => Value::List(
            vs.iter()
                .map(|v| to_value(v, e))
                .collect::<Result<_, _>>()?,
        ),
        (WastVal::List(vs), ValType::FixedList(e, n)) if vs.len() == *n as usize => Value::List(
            vs.iter()
                .map(|v| to_value(v, e))
                .collect::<Result<_, _>>()?,
        ),
        (WastVal::Map(es), ValType::Map(entry)) => {
            let ValType::Tuple(kv) = &**entry else {
                return Err(mismatch());
            };
            let mut out = Vec::new();
            for (k, v) in es {
                out.push(Value::Record(vec![
                    to_value(k, &kv[0])?,
                    to_value(v, &kv[1])?,
                ]));
            }
            Value::List(out)
        }
        (WastVal::Record(fs), ValType::Record(ft)) if fs.len() == ft.len() => {
            let mut out = Vec::new();
            for f in ft {
                let (_, v) = fs
                    .iter()
                    .find(|(n, _)| *n == f.label)
                    .ok_or_else(mismatch)?;
                out.push(to_value(v, &f.ty)?);
            }
            Value::Record(out)
        }
        (WastVal::Tuple(vs), ValType::Tuple(ts)) if vs.len() == ts.len() => Value::Record(
            vs.iter()
                .zip(ts)
                .map(|(v, t)| to_value(v, t))
                .collect::<Result<_, _>>()?,
        ),
        (WastVal::Variant(n, p), ValType::Variant(cases)) => {
            let i = cases
                .iter()
                .position(|c| c.label == *n)
                .ok_or_else(mismatch)?;
            let payload = match (p, &cases[i].ty) {
                (None, None) => None,
                (Some(p), Some(t)) => Some(Box::new(to_value(p, t)?)),
                _ => return Err(mismatch()),
            };
            Value::Variant(i as u32, payload)
        }
        (WastVal::Enum(n), ValType::Enum(labels)) => {
            Value::enum_case(labels.iter().position(|l| l == n).ok_or_else(mismatch)? as u32)
        }
        (WastVal::Option(None), ValType::Option(_)) => Value::none(),
        (WastVal::Option(Some(v)), ValType::Option(t)) => Value::some(to_value(v, t)?),
        (WastVal::Result(r), ValType::Result { ok, err }) => {
            let (case, v, t) = match r {
                Ok(v) => (0, v, ok),
                Err(v) => (1, v, err),
            };
            let payload = match (v, t) {
                (None, None) => None,
                (Some(v), Some(t)) => Some(Box::new(to_value(v, t)?)),
                _ => return Err(mismatch()),
            };
            Value::Variant(case, payload)
        }
        (WastVal::Flags(names), ValType::Flags(labels)) => {
            let mut bits = 0u32;
            for n in names {
                bits |= 1 << labels.iter().position(|l| l == n).ok_or_else(mismatch)?;
            }
            Value::Flags(bits)
        }
        _ => return Err(mismatch()),
    })
}

/// Equality of lifted values: strings by content, floats by bits (any NaN
/// equals any NaN: lifting canonicalises them).
fn value_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::F32(x), Value::F32(y)) => x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()),
        (Value::F64(x), Value::F64(y)) => x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()),
        (Value::String(x), Value::String(y)) => x.as_str() == y.as_str(),
        (Value::List(x), Value::List(y)) | (Value::Record(x), Value::Record(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| value_eq(a, b))
        }
        (Value::Variant(i, x), Value::Variant(j, y)) => {
            i == j
                && match (x, y) {
                    (None, None) => true,
                    (Some(x), Some(y)) => value_eq(x, y),
                    _ => false,
                }
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn component_directives_count() {
        let dir = std::env::temp_dir().join(format!("ringos-wast-cm-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("c.wast");
        std::fs::write(
            &f,
            r#"(component
                 (core module $M (func (export "f") (param i32) (result i32)
                   local.get 0 i32.const 1 i32.add))
                 (core instance $m (instantiate $M))
                 (func (export "inc") (param "x" u32) (result u32)
                   (canon lift (core func $m "f"))))
               (assert_return (invoke "inc" (u32.const 41)) (u32.const 42))
               (assert_return (invoke "inc" (u32.const 1)) (u32.const 3))
               (assert_invalid (component (core instance (instantiate 0))) "unknown module")
               (assert_malformed (component quote "(core") "unexpected end")
               (component (core module $T (func $s unreachable) (start $s))
                 (core instance (instantiate $T)))"#,
        )
        .unwrap();
        let (t, _) = super::super::run_hosted(&f, false, &[]).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        // Passed: the good assert_return and the two rejections. Failed:
        // the wrong result and the trapping start.
        assert_eq!((t.passed, t.failed), (3, 2));
    }
}
