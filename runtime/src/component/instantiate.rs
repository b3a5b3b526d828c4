//! Instantiating a component: one walk over its sections in order,
//! filling the component's index spaces with runtime items (definitions
//! in the binary format's order: each section may refer only to what came
//! before). Nested components are walked the same way when instantiated,
//! with their own index spaces, their own resource map and a snapshot of
//! the enclosing scopes for outer aliases.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::rc::Rc;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use ringos_abi::{ResourceType, StringEncoding};
use wasmparser::component_types::ComponentEntityType;
use wasmparser::types::Types;
use wasmparser::{
    CanonicalFunction, CanonicalOption, ComponentAlias, ComponentExternalKind, ComponentInstance,
    ComponentOuterAliasKind, ComponentType, ComponentTypeRef, ExternalKind, Instance, Parser,
    Payload,
};

use super::builtins;
use super::call::{self, Func, FuncKind, Opts};
use super::state::{InstId, Shared, Trapped};
use super::types::{bind, resource_of, ResMap, Resolver};
use super::{Component, ComponentDef, Exports, Item};
use crate::{Error, Extern, InstanceId, Module, Store};

/// A core instance: a real one, or a bag of exports (`FromExports`).
enum CoreInstance {
    Real(InstanceId),
    Bag(BTreeMap<String, Extern>),
}

/// The index spaces an outer alias may reach, as they were when a nested
/// component was defined.
pub struct Scope {
    parent: Option<Rc<Scope>>,
    modules: Vec<Rc<Module>>,
    components: Vec<Rc<ComponentDef>>,
    types: Vec<Option<ResourceType>>,
}

struct Walk<'a> {
    store: &'a mut Store,
    sh: &'a Shared,
    comp: &'a Rc<Component>,
    types: &'a Types,
    inst: InstId,
    outer: Option<Rc<Scope>>,
    res: ResMap,
    modules: Vec<Rc<Module>>,
    core_instances: Vec<CoreInstance>,
    core_funcs: Vec<Extern>,
    core_tables: Vec<Extern>,
    core_memories: Vec<Extern>,
    core_globals: Vec<Extern>,
    core_tags: Vec<Extern>,
    types_idx: Vec<Option<ResourceType>>,
    funcs: Vec<Rc<Func>>,
    components: Vec<Rc<ComponentDef>>,
    instances: Vec<Rc<Exports>>,
    exports: Exports,
}

fn unsupported(what: &str) -> Error {
    Error::Unsupported(format!("component instantiation: {what}"))
}

fn trapped(t: Trapped) -> Error {
    Error::Trapped(t.0)
}

fn get<T: Clone>(v: &[T], i: u32, what: &str) -> Result<T, Error> {
    v.get(i as usize)
        .cloned()
        .ok_or_else(|| Error::Invalid(format!("{what} index {i} out of range")))
}

/// Instantiates the component `def` with `args` (by import name) as an
/// instance whose parent is `parent`.
pub(crate) fn instantiate(
    store: &mut Store,
    sh: &Shared,
    def: &ComponentDef,
    args: &Exports,
    parent: Option<InstId>,
    top_level: bool,
) -> Result<Rc<Exports>, Error> {
    let comp = &def.comp;
    let types = comp
        .types
        .get(&def.range.start)
        .ok_or_else(|| Error::Invalid("component types missing".into()))?
        .clone();
    let inst = sh.get().map_err(trapped)?.new_instance(parent);
    let mut w = Walk {
        store,
        sh,
        comp,
        types: &types,
        inst,
        outer: def.outer.clone(),
        res: def.res.clone(),
        modules: Vec::new(),
        core_instances: Vec::new(),
        core_funcs: Vec::new(),
        core_tables: Vec::new(),
        core_memories: Vec::new(),
        core_globals: Vec::new(),
        core_tags: Vec::new(),
        types_idx: Vec::new(),
        funcs: Vec::new(),
        components: Vec::new(),
        instances: Vec::new(),
        exports: BTreeMap::new(),
    };
    let bytes = &comp.bytes[def.range.clone()];
    let mut depth = 0u32;
    for p in Parser::new(def.range.start as u64).parse_all(bytes) {
        let p = p.map_err(|e| Error::Invalid(e.to_string()))?;
        match p {
            Payload::Version { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ModuleSection {
                unchecked_range, ..
            } if depth == 1 => {
                // The module's own payloads follow at depth 2; skip them.
                let m = w
                    .comp
                    .module(unchecked_range.start as usize, unchecked_range.end as usize)?;
                w.modules.push(m);
            }
            Payload::ComponentSection {
                unchecked_range, ..
            } if depth == 1 => {
                let scope = w.scope();
                w.components.push(Rc::new(ComponentDef {
                    comp: w.comp.clone(),
                    range: unchecked_range.start as usize..unchecked_range.end as usize,
                    outer: Some(scope),
                    res: w.res.clone(),
                }));
            }
            _ if depth != 1 => {}
            p => w.payload(p, args, top_level)?,
        }
    }
    Ok(Rc::new(w.exports))
}

impl Walk<'_> {
    fn scope(&self) -> Rc<Scope> {
        Rc::new(Scope {
            parent: self.outer.clone(),
            modules: self.modules.clone(),
            components: self.components.clone(),
            types: self.types_idx.clone(),
        })
    }

    fn resolver(&self) -> Resolver<'_> {
        Resolver {
            types: self.types.as_ref(),
            res: &self.res,
            labels: &self.comp.enum_labels,
        }
    }

    fn core_space(&mut self, kind: ExternalKind) -> Result<&mut Vec<Extern>, Error> {
        Ok(match kind {
            ExternalKind::Func | ExternalKind::FuncExact => &mut self.core_funcs,
            ExternalKind::Table => &mut self.core_tables,
            ExternalKind::Memory => &mut self.core_memories,
            ExternalKind::Global => &mut self.core_globals,
            ExternalKind::Tag => &mut self.core_tags,
        })
    }

    fn core_func(&self, i: u32) -> Result<crate::FuncId, Error> {
        match get(&self.core_funcs, i, "core func")? {
            Extern::Func(f) => Ok(f),
            _ => Err(Error::Invalid("not a core function".into())),
        }
    }

    /// Binds a new type index to a runtime resource type (if it is one).
    fn push_type(&mut self, rt: Option<ResourceType>) {
        let idx = self.types_idx.len() as u32;
        if let Some(rt) = rt {
            if let Some(id) = resource_of(self.types.as_ref().component_any_type_at(idx)) {
                self.res.insert(id, rt);
            }
        }
        self.types_idx.push(rt);
    }

    /// Adds an item to the index space of its kind.
    fn push_item(&mut self, item: Item) -> Result<(), Error> {
        match item {
            Item::Func(f) => self.funcs.push(f),
            Item::Instance(i) => {
                let idx = self.instances.len() as u32;
                let ty = self.types.as_ref().component_instance_at(idx);
                bind(
                    self.types.as_ref(),
                    &ComponentEntityType::Instance(ty),
                    &Item::Instance(i.clone()),
                    &mut self.res,
                );
                self.instances.push(i)
            }
            Item::Type(rt) => self.push_type(rt),
            Item::Module(m) => self.modules.push(m),
            Item::Component(c) => self.components.push(c),
        }
        Ok(())
    }

    fn item(&self, kind: ComponentExternalKind, i: u32) -> Result<Item, Error> {
        Ok(match kind {
            ComponentExternalKind::Func => Item::Func(get(&self.funcs, i, "func")?),
            ComponentExternalKind::Instance => Item::Instance(get(&self.instances, i, "instance")?),
            ComponentExternalKind::Type => Item::Type(get(&self.types_idx, i, "type")?),
            ComponentExternalKind::Module => Item::Module(get(&self.modules, i, "module")?),
            ComponentExternalKind::Component => {
                Item::Component(get(&self.components, i, "component")?)
            }
            ComponentExternalKind::Value => return Err(unsupported("component values")),
        })
    }

    fn opts(&self, options: &[CanonicalOption]) -> Result<Opts, Error> {
        let mut o = Opts::default();
        for opt in options {
            match *opt {
                CanonicalOption::UTF8 => o.encoding = StringEncoding::Utf8,
                CanonicalOption::UTF16 => o.encoding = StringEncoding::Utf16,
                CanonicalOption::CompactUTF16 => o.encoding = StringEncoding::CompactUtf16,
                CanonicalOption::Memory(i) => match get(&self.core_memories, i, "memory")? {
                    Extern::Memory(m) => o.memory = Some(m),
                    _ => return Err(Error::Invalid("not a memory".into())),
                },
                CanonicalOption::Realloc(i) => o.realloc = Some(self.core_func(i)?),
                CanonicalOption::PostReturn(i) => o.post_return = Some(self.core_func(i)?),
                CanonicalOption::Async => o.async_ = true,
                CanonicalOption::Callback(i) => o.callback = Some(self.core_func(i)?),
                CanonicalOption::CoreType(_) | CanonicalOption::Gc => {
                    return Err(unsupported("GC canonical options"))
                }
            }
        }
        Ok(o)
    }

    fn payload(&mut self, p: Payload<'_>, args: &Exports, top_level: bool) -> Result<(), Error> {
        match p {
            Payload::InstanceSection(s) => {
                for i in s {
                    let i = i.map_err(|e| Error::Invalid(e.to_string()))?;
                    let inst = self.core_instance(i)?;
                    self.core_instances.push(inst);
                }
            }
            Payload::CoreTypeSection(_) => {}
            Payload::ComponentTypeSection(s) => {
                for t in s {
                    match t.map_err(|e| Error::Invalid(e.to_string()))? {
                        ComponentType::Resource { dtor, .. } => {
                            let dtor = dtor.map(|d| self.core_func(d)).transpose()?;
                            let rt = self
                                .sh
                                .get()
                                .map_err(trapped)?
                                .new_resource(Some(self.inst), dtor);
                            self.push_type(Some(rt));
                        }
                        _ => self.push_type(None),
                    }
                }
            }
            Payload::ComponentImportSection(s) => {
                for imp in s {
                    let imp = imp.map_err(|e| Error::Invalid(e.to_string()))?;
                    let name = imp.name.name;
                    let item = lookup_import(args, name)
                        .ok_or_else(|| Error::Link(format!("missing import `{name}`")))?;
                    self.check_import(name, &imp.ty, &item, top_level)?;
                    if let Some(ci) = self.types.as_ref().component_item_for_import(name) {
                        bind(self.types.as_ref(), &ci.ty, &item, &mut self.res);
                    }
                    self.push_item(item)?;
                }
            }
            Payload::ComponentAliasSection(s) => {
                for a in s {
                    match a.map_err(|e| Error::Invalid(e.to_string()))? {
                        ComponentAlias::InstanceExport {
                            kind,
                            instance_index,
                            name,
                        } => {
                            let inst = get(&self.instances, instance_index, "instance")?;
                            let item = inst.get(name).cloned().ok_or_else(|| {
                                Error::Link(format!("instance has no export `{name}`"))
                            })?;
                            if item.kind() != kind {
                                return Err(Error::Link(format!(
                                    "export `{name}` is not a {kind:?}"
                                )));
                            }
                            self.push_item(item)?;
                        }
                        ComponentAlias::CoreInstanceExport {
                            kind,
                            instance_index,
                            name,
                        } => {
                            let item = {
                                let from = self
                                    .core_instances
                                    .get(instance_index as usize)
                                    .ok_or_else(|| Error::Invalid("core instance index".into()))?;
                                lookup(self.store, from, name)?
                            };
                            self.core_space(kind)?.push(item);
                        }
                        ComponentAlias::Outer {
                            kind,
                            count: 0,
                            index,
                        } => {
                            // Count 0: this component's own index space.
                            match kind {
                                ComponentOuterAliasKind::CoreModule => {
                                    self.modules.push(get(&self.modules, index, "module")?)
                                }
                                ComponentOuterAliasKind::Component => {
                                    let c = get(&self.components, index, "component")?;
                                    self.components.push(c)
                                }
                                ComponentOuterAliasKind::Type => {
                                    let rt = get(&self.types_idx, index, "type")?;
                                    self.push_type(rt);
                                }
                                ComponentOuterAliasKind::CoreType => {}
                            }
                        }
                        ComponentAlias::Outer { kind, count, index } => {
                            let mut scope = self.outer.clone();
                            for _ in 1..count {
                                scope = scope.and_then(|s| s.parent.clone());
                            }
                            let scope =
                                scope.ok_or_else(|| Error::Invalid("outer alias".into()))?;
                            match kind {
                                ComponentOuterAliasKind::CoreModule => {
                                    self.modules.push(get(&scope.modules, index, "module")?)
                                }
                                ComponentOuterAliasKind::Component => self.components.push(get(
                                    &scope.components,
                                    index,
                                    "component",
                                )?),
                                ComponentOuterAliasKind::Type => {
                                    let rt = scope.types.get(index as usize).copied().flatten();
                                    self.push_type(rt);
                                }
                                ComponentOuterAliasKind::CoreType => {}
                            }
                        }
                    }
                }
            }
            Payload::ComponentInstanceSection(s) => {
                for i in s {
                    let exports = match i.map_err(|e| Error::Invalid(e.to_string()))? {
                        ComponentInstance::Instantiate {
                            component_index,
                            args: a,
                        } => {
                            let def = get(&self.components, component_index, "component")?;
                            let mut child_args = BTreeMap::new();
                            for arg in a.iter() {
                                child_args
                                    .insert(arg.name.to_string(), self.item(arg.kind, arg.index)?);
                            }
                            instantiate(
                                self.store,
                                self.sh,
                                &def,
                                &child_args,
                                Some(self.inst),
                                false,
                            )?
                        }
                        ComponentInstance::FromExports(es) => {
                            let mut m = BTreeMap::new();
                            for e in es.iter() {
                                m.insert(e.name.name.to_string(), self.item(e.kind, e.index)?);
                            }
                            Rc::new(m)
                        }
                    };
                    self.push_item(Item::Instance(exports))?;
                }
            }
            Payload::ComponentCanonicalSection(s) => {
                for c in s {
                    let c = c.map_err(|e| Error::Invalid(e.to_string()))?;
                    self.canonical(c)?;
                }
            }
            Payload::ComponentExportSection(s) => {
                for e in s {
                    let e = e.map_err(|e| Error::Invalid(e.to_string()))?;
                    let item = self.item(e.kind, e.index)?;
                    self.exports.insert(e.name.name.to_string(), item.clone());
                    self.push_item(item)?;
                }
            }
            Payload::ComponentStartSection { .. } => {
                return Err(unsupported("component start functions (values)"))
            }
            Payload::CustomSection(_) | Payload::Version { .. } | Payload::End(_) => {}
            other => {
                return Err(Error::Invalid(format!(
                    "unexpected section in a component: {:?}",
                    payload_name(&other)
                )))
            }
        }
        Ok(())
    }

    /// Top-level imports come from the embedder: check kinds and function
    /// types (nested ones were checked by validation).
    fn check_import(
        &self,
        name: &str,
        ty: &ComponentTypeRef,
        item: &Item,
        top_level: bool,
    ) -> Result<(), Error> {
        if item.kind() != ty.kind() {
            return Err(Error::Link(format!(
                "import `{name}`: expected a {:?}, got a {:?}",
                ty.kind(),
                item.kind()
            )));
        }
        if let (true, ComponentTypeRef::Func(_), Item::Func(f)) = (top_level, ty, item) {
            if let Some(ComponentEntityType::Func(id)) = self
                .types
                .as_ref()
                .component_item_for_import(name)
                .map(|i| i.ty)
            {
                let want = self.resolver().func(id);
                if want.ty != f.sig.ty {
                    return Err(Error::Link(format!(
                        "import `{name}`: function type mismatch: expected {:?}, got {:?}",
                        want.ty, f.sig.ty
                    )));
                }
            }
        }
        Ok(())
    }

    fn core_instance(&mut self, i: Instance<'_>) -> Result<CoreInstance, Error> {
        Ok(match i {
            Instance::Instantiate { module_index, args } => {
                let module = get(&self.modules, module_index, "module")?;
                let mut imports = Vec::new();
                for imp in &module.info.imports {
                    let arg = args.iter().find(|a| a.name == imp.module).ok_or_else(|| {
                        Error::Link(format!("no argument `{}` for the core module", imp.module))
                    })?;
                    let from = self
                        .core_instances
                        .get(arg.index as usize)
                        .ok_or_else(|| Error::Invalid("core instance index".into()))?;
                    imports.push(lookup(self.store, from, &imp.name)?);
                }
                match self.store.instantiate(&module, &imports) {
                    Ok(id) => CoreInstance::Real(id),
                    Err(e @ Error::Trap(_)) => {
                        return Err(Error::Trapped(Trapped::from_core(self.store, e).0))
                    }
                    Err(e) => return Err(e),
                }
            }
            Instance::FromExports(exports) => {
                let mut bag = BTreeMap::new();
                for e in exports.iter() {
                    let item = get(self.core_space(e.kind)?, e.index, "core item")?;
                    bag.insert(e.name.to_string(), item);
                }
                CoreInstance::Bag(bag)
            }
        })
    }

    fn canonical(&mut self, c: CanonicalFunction) -> Result<(), Error> {
        let inst = self.inst;
        let resource = |w: &Self, i: u32| -> Result<ResourceType, Error> {
            get(&w.types_idx, i, "type")?
                .ok_or_else(|| Error::Invalid("not a resource type".into()))
        };
        match c {
            CanonicalFunction::Lift {
                core_func_index,
                options,
                ..
            } => {
                let idx = self.funcs.len() as u32;
                let ty = self.types.as_ref().component_function_at(idx);
                let sig = self.resolver().func(ty);
                let opts = self.opts(&options)?;
                let core = self.core_func(core_func_index)?;
                self.funcs.push(Rc::new(Func {
                    sig,
                    kind: FuncKind::Lifted { core, opts, inst },
                }));
            }
            CanonicalFunction::Lower {
                func_index,
                options,
            } => {
                let callee = get(&self.funcs, func_index, "func")?;
                let ty = self.types.as_ref().component_function_at(func_index);
                let sig = self.resolver().func(ty);
                let opts = self.opts(&options)?;
                if !opts.async_ && sync_call_may_block(&callee) {
                    self.sh.get().map_err(trapped)?.can_block[inst] = true;
                }
                let f = call::lower(self.store, self.sh, callee, sig, opts, inst);
                self.core_funcs.push(Extern::Func(f));
            }
            CanonicalFunction::ResourceNew { resource: r } => {
                let rt = resource(self, r)?;
                let f = builtins::resource_new(self.store, self.sh, inst, rt);
                self.core_funcs.push(Extern::Func(f));
            }
            CanonicalFunction::ResourceDrop { resource: r } => {
                let rt = resource(self, r)?;
                let f = builtins::resource_drop(self.store, self.sh, inst, rt);
                self.core_funcs.push(Extern::Func(f));
            }
            CanonicalFunction::ResourceRep { resource: r } => {
                let rt = resource(self, r)?;
                let f = builtins::resource_rep(self.store, self.sh, inst, rt);
                self.core_funcs.push(Extern::Func(f));
            }
            other => {
                let f = self.builtin(other)?;
                self.core_funcs.push(Extern::Func(f));
            }
        }
        Ok(())
    }
}

impl Walk<'_> {
    /// The core function of an async built-in.
    fn builtin(&mut self, c: CanonicalFunction) -> Result<crate::FuncId, Error> {
        use ringos_abi::concurrency::EndKind::*;
        if builtin_may_block(&c) {
            self.sh.get().map_err(trapped)?.can_block[self.inst] = true;
        }
        let (st, sh, inst) = (&mut *self.store, self.sh, self.inst);
        let r = Resolver {
            types: self.types.as_ref(),
            res: &self.res,
            labels: &self.comp.enum_labels,
        };
        let memory_opts =
            |w: &Self, m: u32| -> Result<Opts, Error> { w.opts(&[CanonicalOption::Memory(m)]) };
        Ok(match c {
            CanonicalFunction::BackpressureInc => builtins::backpressure(st, sh, inst, true),
            CanonicalFunction::BackpressureDec => builtins::backpressure(st, sh, inst, false),
            CanonicalFunction::TaskReturn { result, options } => {
                let result = result.map(|t| r.reader_val(t));
                let opts = self.opts(&options)?;
                builtins::task_return(self.store, sh, inst, result, opts)
            }
            CanonicalFunction::ContextGet { slot, .. } => {
                builtins::context(st, sh, inst, slot, false)
            }
            CanonicalFunction::ContextSet { slot, .. } => {
                builtins::context(st, sh, inst, slot, true)
            }
            CanonicalFunction::ThreadYield => builtins::thread_yield(st, sh, inst),
            CanonicalFunction::TaskCancel => builtins::task_cancel(st, sh, inst),
            CanonicalFunction::SubtaskDrop => builtins::subtask_drop(st, sh, inst),
            CanonicalFunction::SubtaskCancel { async_: false } => {
                builtins::subtask_cancel(st, sh, inst)
            }
            CanonicalFunction::WaitableSetNew => builtins::waitable_set_new(st, sh, inst),
            CanonicalFunction::WaitableSetDrop => builtins::waitable_set_drop(st, sh, inst),
            CanonicalFunction::WaitableJoin => builtins::waitable_join(st, sh, inst),
            CanonicalFunction::WaitableSetWait { memory } => {
                let opts = memory_opts(self, memory)?;
                builtins::waitable_set_wait(self.store, sh, inst, opts)
            }
            CanonicalFunction::WaitableSetPoll { memory } => {
                let opts = memory_opts(self, memory)?;
                builtins::waitable_set_poll(self.store, sh, inst, opts)
            }
            CanonicalFunction::StreamNew { ty } => {
                builtins::end_new(st, sh, inst, r.elem_type(ty), true)
            }
            CanonicalFunction::FutureNew { ty } => {
                builtins::end_new(st, sh, inst, r.elem_type(ty), false)
            }
            CanonicalFunction::StreamRead { ty, options } => {
                let (t, opts) = (r.elem_type(ty), self.opts(&options)?);
                builtins::copy(self.store, sh, inst, ReadableStream, t, opts)
            }
            CanonicalFunction::StreamWrite { ty, options } => {
                let (t, opts) = (r.elem_type(ty), self.opts(&options)?);
                builtins::copy(self.store, sh, inst, WritableStream, t, opts)
            }
            CanonicalFunction::FutureRead { ty, options } => {
                let (t, opts) = (r.elem_type(ty), self.opts(&options)?);
                builtins::copy(self.store, sh, inst, ReadableFuture, t, opts)
            }
            CanonicalFunction::FutureWrite { ty, options } => {
                let (t, opts) = (r.elem_type(ty), self.opts(&options)?);
                builtins::copy(self.store, sh, inst, WritableFuture, t, opts)
            }
            CanonicalFunction::StreamCancelRead { ty, async_ } => {
                builtins::cancel(st, sh, inst, ReadableStream, r.elem_type(ty), async_)
            }
            CanonicalFunction::StreamCancelWrite { ty, async_ } => {
                builtins::cancel(st, sh, inst, WritableStream, r.elem_type(ty), async_)
            }
            CanonicalFunction::FutureCancelRead { ty, async_ } => {
                builtins::cancel(st, sh, inst, ReadableFuture, r.elem_type(ty), async_)
            }
            CanonicalFunction::FutureCancelWrite { ty, async_ } => {
                builtins::cancel(st, sh, inst, WritableFuture, r.elem_type(ty), async_)
            }
            CanonicalFunction::StreamDropReadable { ty } => {
                builtins::drop_end(st, sh, inst, ReadableStream, r.elem_type(ty))
            }
            CanonicalFunction::StreamDropWritable { ty } => {
                builtins::drop_end(st, sh, inst, WritableStream, r.elem_type(ty))
            }
            CanonicalFunction::FutureDropReadable { ty } => {
                builtins::drop_end(st, sh, inst, ReadableFuture, r.elem_type(ty))
            }
            CanonicalFunction::FutureDropWritable { ty } => {
                builtins::drop_end(st, sh, inst, WritableFuture, r.elem_type(ty))
            }
            other => {
                let name = format!("{other:?}");
                let name = name.split([' ', '{', '(']).next().unwrap_or("").to_string();
                return Err(unsupported(&format!("canon {name}")));
            }
        })
    }
}

/// Whether a synchronous call of `f` can block its caller (it may not
/// resolve before it returns): an async-typed or async-lifted function,
/// or an async host function.
fn sync_call_may_block(f: &Func) -> bool {
    match &f.kind {
        FuncKind::Host(_) | FuncKind::HostScalar(_) | FuncKind::HostEnds(_) => false,
        FuncKind::HostAsync(_) => true,
        FuncKind::Lifted { opts, .. } => f.sig.ty.async_ || opts.async_,
    }
}

/// Whether core code calling the built-in `c` can block in it: a
/// synchronous wait or copy. (A synchronous cancel blocks only while a
/// device still owns the copy's buffer, briefly: it does not put the
/// instance's tasks on fibers, and runs the loop where it is if it does
/// block. wit-bindgen's guests import the synchronous cancels.)
fn builtin_may_block(c: &CanonicalFunction) -> bool {
    let sync =
        |options: &[CanonicalOption]| !options.iter().any(|o| matches!(o, CanonicalOption::Async));
    match c {
        CanonicalFunction::WaitableSetWait { .. } => true,
        CanonicalFunction::StreamRead { options, .. }
        | CanonicalFunction::StreamWrite { options, .. }
        | CanonicalFunction::FutureRead { options, .. }
        | CanonicalFunction::FutureWrite { options, .. } => sync(options),
        _ => false,
    }
}

/// An import by its exact name, else by the same interface at another
/// patch version (`wasi:cli/stdout@0.3.2` for `@0.3.0`).
fn lookup_import(args: &Exports, name: &str) -> Option<Item> {
    if let Some(i) = args.get(name) {
        return Some(i.clone());
    }
    let (base, ver) = name.split_once('@')?;
    let minor = |v: &str| v.rsplit_once('.').map(|(mm, _)| mm.to_string());
    args.iter()
        .find(|(k, _)| {
            k.split_once('@')
                .is_some_and(|(b, v)| b == base && minor(v) == minor(ver))
        })
        .map(|(_, i)| i.clone())
}

fn payload_name(p: &Payload<'_>) -> String {
    let s = format!("{p:?}");
    s.split([' ', '{', '(']).next().unwrap_or("").to_string()
}

fn lookup(store: &mut Store, from: &CoreInstance, name: &str) -> Result<Extern, Error> {
    match from {
        CoreInstance::Real(id) => store.export(*id, name),
        CoreInstance::Bag(b) => b.get(name).copied(),
    }
    .ok_or_else(|| Error::Link(format!("core instance has no export `{name}`")))
}
