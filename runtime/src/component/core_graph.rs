//! Instantiating a component that only composes core modules and core
//! instances (no canonical functions, no nested components, no imports)
//! with the core runtime: every core instance is really created, so start
//! functions run and active segments are applied.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use wasmparser::{ComponentAlias, ExternalKind, Instance, Parser, Payload};

use super::NOT_YET;
use crate::{Extern, InstanceId, Module, Platform, Store};

/// A core instance of the component: a real one or a bag of exports.
enum CoreInstance {
    Real(InstanceId),
    Bag(BTreeMap<String, Extern>),
}

/// The core index spaces of the component being instantiated.
#[derive(Default)]
struct Spaces {
    funcs: Vec<Extern>,
    tables: Vec<Extern>,
    memories: Vec<Extern>,
    globals: Vec<Extern>,
}

impl Spaces {
    fn space(&mut self, kind: ExternalKind) -> Result<&mut Vec<Extern>, String> {
        Ok(match kind {
            ExternalKind::Func => &mut self.funcs,
            ExternalKind::Table => &mut self.tables,
            ExternalKind::Memory => &mut self.memories,
            ExternalKind::Global => &mut self.globals,
            k => return Err(format!("{NOT_YET} (core {k:?} items)")),
        })
    }
}

fn unsupported(what: &str) -> Result<(), String> {
    Err(format!("{NOT_YET} ({what})"))
}

/// Instantiates the core-instance graph of the component `bytes` (already
/// validated) in a fresh store. `Err` starting with [`NOT_YET`] means the
/// component is not of the supported shape; any other `Err` is a real
/// instantiation failure (link error, trap).
pub fn instantiate(platform: &'static dyn Platform, bytes: &[u8]) -> Result<(), String> {
    let mut store = Store::new(platform);
    let mut modules: Vec<&[u8]> = Vec::new();
    let mut instances: Vec<CoreInstance> = Vec::new();
    let mut spaces = Spaces::default();
    let mut depth = 0u32;
    for p in Parser::new(0).parse_all(bytes) {
        let p = p.map_err(|e| e.to_string())?;
        match p {
            Payload::Version { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            _ if depth != 1 => {}
            Payload::ModuleSection {
                unchecked_range, ..
            } => {
                let (start, end) = (unchecked_range.start as usize, unchecked_range.end as usize);
                modules.push(bytes.get(start..end).ok_or("module out of range")?);
            }
            Payload::InstanceSection(s) => {
                for i in s {
                    let inst = match i.map_err(|e| e.to_string())? {
                        Instance::Instantiate { module_index, args } => {
                            let code = modules
                                .get(module_index as usize)
                                .ok_or("core module index out of range")?;
                            let module = Module::new(platform, code).map_err(|e| e.to_string())?;
                            let mut imports = Vec::new();
                            for imp in &module.info.imports {
                                let arg = args
                                    .iter()
                                    .find(|a| a.name == imp.module)
                                    .ok_or_else(|| format!("no argument `{}`", imp.module))?;
                                let from = instances
                                    .get(arg.index as usize)
                                    .ok_or("core instance index out of range")?;
                                imports.push(lookup(&mut store, from, &imp.name)?);
                            }
                            let id = store
                                .instantiate(&module, &imports)
                                .map_err(|e| e.to_string())?;
                            CoreInstance::Real(id)
                        }
                        Instance::FromExports(exports) => {
                            let mut bag = BTreeMap::new();
                            for e in exports.iter() {
                                let item = spaces
                                    .space(e.kind)?
                                    .get(e.index as usize)
                                    .copied()
                                    .ok_or("core item index out of range")?;
                                bag.insert(e.name.to_string(), item);
                            }
                            CoreInstance::Bag(bag)
                        }
                    };
                    instances.push(inst);
                }
            }
            Payload::ComponentAliasSection(s) => {
                for a in s {
                    match a.map_err(|e| e.to_string())? {
                        ComponentAlias::CoreInstanceExport {
                            kind,
                            instance_index,
                            name,
                        } => {
                            let from = instances
                                .get(instance_index as usize)
                                .ok_or("core instance index out of range")?;
                            let item = lookup(&mut store, from, name)?;
                            spaces.space(kind)?.push(item);
                        }
                        _ => return unsupported("component-level aliases"),
                    }
                }
            }
            Payload::ComponentCanonicalSection(_) => return unsupported("canonical functions"),
            Payload::ComponentSection { .. } => return unsupported("nested components"),
            Payload::ComponentImportSection(s) if s.count() > 0 => {
                return unsupported("imports to link");
            }
            Payload::ComponentStartSection { .. } => {
                return unsupported("a component start function");
            }
            Payload::ComponentInstanceSection(s) if s.count() > 0 => {
                return unsupported("component instances");
            }
            _ => {}
        }
    }
    Ok(())
}

fn lookup(store: &mut Store, from: &CoreInstance, name: &str) -> Result<Extern, String> {
    match from {
        CoreInstance::Real(id) => store.export(*id, name),
        CoreInstance::Bag(b) => b.get(name).copied(),
    }
    .ok_or_else(|| format!("core instance has no export `{name}`"))
}
