//! Component Model directives of `ringos wast`: components are validated
//! (component model and WASI 0.3.0 async features on) and, where that
//! needs no code to run, instantiated structurally; anything that needs a
//! real component instantiation or a call into a component fails with
//! [`NOT_YET`].

use std::collections::{HashMap, HashSet};

use ringos_runtime::component::{self, Plan, NOT_YET};
use ringos_runtime::hosted::HOSTED;
use ringos_runtime::script::Command;
use wast::token::Id;
use wast::{QuoteWat, WastDirective, WastExecute, Wat};

/// Which names (and whether the current instance) are components.
#[derive(Default)]
pub struct Components {
    /// Instances that are components, by name.
    names: HashSet<String>,
    /// Component definitions, by name.
    defs: HashMap<String, Vec<u8>>,
    /// Whether the most recent instance is a component.
    current: bool,
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

/// `Pass` or `Fail(why)` for instantiating `bytes` structurally.
fn instantiate(bytes: &[u8]) -> Command {
    match component::plan(bytes) {
        Ok(Plan::Structural) => Command::Pass,
        // Try the core runtime on a component of core instances only.
        Ok(Plan::NeedsInstantiation(why)) => {
            match component::instantiate_core_graph(&HOSTED, bytes) {
                Ok(()) => Command::Pass,
                Err(e) if e.starts_with(NOT_YET) => Command::Fail(why),
                Err(e) => Command::Fail(format!("component instantiation: {e}")),
            }
        }
        Err(e) => invalid(bytes, &e),
    }
}

/// A component directive that is not an assertion counts only when it
/// fails, as a core `module` does: success is nothing to run or count.
fn unless_passed(cmd: Command) -> Option<Command> {
    match cmd {
        Command::Pass => None,
        other => Some(other),
    }
}

/// The failure for a component that does not validate.
fn invalid(bytes: &[u8], e: &str) -> Command {
    if component::needs_later_proposal(bytes) {
        Command::Fail(format!(
            "unsupported: uses a proposal off in WASI 0.3.0: {e}"
        ))
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

impl Components {
    fn targets(&self, module: Option<Id<'_>>) -> bool {
        match module {
            Some(m) => self.names.contains(m.name()),
            None => self.current,
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

    /// The command for `d` if it concerns a component (`None`: nothing to
    /// run); `d` back otherwise.
    pub fn directive<'a>(
        &mut self,
        d: WastDirective<'a>,
    ) -> Result<Option<Command>, Box<WastDirective<'a>>> {
        let not_yet = || Ok(Some(Command::Fail(NOT_YET.into())));
        match d {
            WastDirective::Module(mut q) if is_component(&q) => {
                self.current = true;
                if let Some(n) = name(&q) {
                    self.names.insert(n);
                }
                Ok(unless_passed(match q.encode() {
                    Ok(bytes) => instantiate(&bytes),
                    Err(e) => Command::Fail(e.to_string()),
                }))
            }
            WastDirective::Module(q) => {
                // A core module: it becomes current and may shadow a name.
                self.current = false;
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
                let cmd = match component::validate(&bytes) {
                    Ok(()) => Command::Pass,
                    Err(e) => invalid(&bytes, &e),
                };
                self.defs.insert(name(&q).unwrap_or_default(), bytes);
                Ok(unless_passed(cmd))
            }
            WastDirective::ModuleInstance {
                instance,
                module,
                span,
            } => {
                let def = module.map(|m| m.name().to_string()).unwrap_or_default();
                match self.defs.get(&def) {
                    Some(bytes) => {
                        self.current = true;
                        if let Some(i) = instance {
                            self.names.insert(i.name().to_string());
                        }
                        Ok(unless_passed(instantiate(bytes)))
                    }
                    None => {
                        self.current = false;
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
            // Nothing links against a registered component yet (a component
            // that imports one fails as needing real instantiation).
            WastDirective::Register { module, .. } if self.targets(module) => Ok(None),
            WastDirective::Invoke(i) if self.targets(i.module) => not_yet(),
            WastDirective::AssertReturn { exec, .. } if self.exec_targets(&exec) => not_yet(),
            WastDirective::AssertTrap { exec, .. } if self.exec_targets(&exec) => not_yet(),
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
                module: Wat::Component(_),
                ..
            } => not_yet(),
            d => Err(Box::new(d)),
        }
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
            r#"(component (core module $M (func (export "f"))) (core instance (instantiate $M)))
               (assert_invalid (component (core instance (instantiate 0))) "unknown module")
               (assert_malformed (component quote "(core") "unexpected end")
               (component (core module $T (func $s unreachable) (start $s))
                 (core instance (instantiate $T)))
               (assert_return (invoke "f"))"#,
        )
        .unwrap();
        let t = super::super::run_hosted(&f, false).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        // Passed: the two rejections (the valid component is not an
        // assertion). Failed: the trapping start and the invoke.
        assert_eq!((t.passed, t.failed), (2, 2));
    }
}
