//! The Component Model: validation, instantiation of component graphs
//! (nested components, core and component instances, aliases, imports and
//! exports), `canon lift` / `canon lower` and the resource built-ins, and
//! the embedding API ([`ComponentStore`]).
//!
//! - [`types`]: validator types -> canonical ABI types
//! - `instantiate`: the walk over a component's sections
//! - `call`: lift/lower adapters and calls across components
//! - `builtins`: `resource.new/drop/rep`
//! - `state`: instances' handle tables and flags, resource types

mod builtins;
mod call;
pub mod device;
#[cfg(test)]
mod fiber_tests;
pub mod host;
mod instantiate;
mod sched;
mod state;
pub mod types;

#[cfg(test)]
mod tests;

pub use call::{
    Ends, Func, HostAsyncFn, HostComponentFn, HostEndsFn, HostReply, HostScalarFn, Opts,
};
pub use host::{HostCx, HostElem};
pub use ringos_abi::{ResourceType, ValType, Value};
pub use state::Trapped;
pub use state::Waiter;
pub use types::FuncSig;

use alloc::collections::BTreeMap;
use alloc::rc::Rc;
use alloc::string::{String, ToString};
use core::cell::RefCell;
use core::ops::Range;

use wasmparser::types::Types;
use wasmparser::{
    ComponentExternalKind, Encoding, Parser, Payload, ValidPayload, Validator, WasmFeatures,
};

use crate::{Error, Module, Platform, Store};
use state::Shared;
use types::ResMap;

/// The features components are validated with: the WASI 0.3.0 baseline
/// (wasmparser's defaults: component model and its async ABI on; stackful
/// async, more async built-ins, threading and error-context off).
pub fn features() -> WasmFeatures {
    WasmFeatures::default() | WasmFeatures::COMPONENT_MODEL | WasmFeatures::CM_ASYNC
}

/// Whether `bytes` start with a component (not a core module) header.
pub fn is_component(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && bytes[..4] == *b"\0asm" && bytes[6..8] == [1, 0]
}

/// Validates a component (or module) binary with [`features`].
pub fn validate(bytes: &[u8]) -> Result<(), String> {
    validate_with(bytes, features())
}

/// Whether `bytes` fail to validate with [`features`] because they use a
/// later proposal (threads, fixed-length lists, stackful async, more async
/// built-ins, ...): with every feature on they validate, or validation
/// gets past the point where the WASI 0.3.0 one stopped (and stops later,
/// at something newer still, e.g. a binary-format change of the proposal
/// made after wasmparser's release).
pub fn needs_later_proposal(bytes: &[u8]) -> bool {
    let Err(base) = validate_err(bytes, features()) else {
        return false;
    };
    match validate_err(bytes, WasmFeatures::all()) {
        Ok(()) => true,
        Err(all) => all.offset() > base.offset(),
    }
}

fn validate_with(bytes: &[u8], features: WasmFeatures) -> Result<(), String> {
    validate_err(bytes, features).map_err(|e| e.to_string())
}

fn validate_err(bytes: &[u8], features: WasmFeatures) -> Result<(), wasmparser::BinaryReaderError> {
    Validator::new_with_features(features)
        .validate_all(bytes)
        .map(drop)
}

/// A validated component: its bytes, the validator's types of it and of
/// every nested component (by start offset), and its compiled core
/// modules (compiled on first instantiation, once).
pub struct Component {
    platform: &'static dyn Platform,
    bytes: Rc<[u8]>,
    types: BTreeMap<usize, Rc<Types>>,
    modules: RefCell<BTreeMap<usize, Rc<Module>>>,
    /// Every enum's labels, once (see [`types::Resolver`]).
    enum_labels: types::Labels,
}

impl Component {
    /// Validates `bytes` (a component binary).
    pub fn new(platform: &'static dyn Platform, bytes: &[u8]) -> Result<Rc<Component>, Error> {
        if !is_component(bytes) {
            return Err(Error::Invalid("not a component (a core module?)".into()));
        }
        let mut v = Validator::new_with_features(features());
        let mut starts = alloc::vec::Vec::new();
        let mut types = BTreeMap::new();
        for p in Parser::new(0).parse_all(bytes) {
            let p = p.map_err(|e| Error::Invalid(e.to_string()))?;
            if let Payload::Version {
                encoding, range, ..
            } = &p
            {
                starts.push((*encoding, range.start as usize));
            }
            match v.payload(&p).map_err(|e| Error::Invalid(e.to_string()))? {
                ValidPayload::Func(f, body) => {
                    f.into_validator(Default::default())
                        .validate(&body)
                        .map_err(|e| Error::Invalid(e.to_string()))?;
                }
                ValidPayload::End(t) => {
                    if let Some((Encoding::Component, start)) = starts.pop() {
                        types.insert(start, Rc::new(t));
                    }
                }
                _ => {}
            }
        }
        Ok(Rc::new(Component {
            platform,
            bytes: bytes.into(),
            types,
            modules: RefCell::new(BTreeMap::new()),
            enum_labels: types::Labels::default(),
        }))
    }

    /// The core module at `start..end`, compiled once.
    fn module(&self, start: usize, end: usize) -> Result<Rc<Module>, Error> {
        if let Some(m) = self.modules.borrow().get(&start) {
            return Ok(m.clone());
        }
        let code = self
            .bytes
            .get(start..end)
            .ok_or_else(|| Error::Invalid("module out of range".into()))?;
        let m = Module::new_with(
            self.platform,
            code,
            crate::module::component_module_features(),
        )?;
        self.modules.borrow_mut().insert(start, m.clone());
        Ok(m)
    }

    /// The top-level definition, to instantiate.
    pub fn def(self: &Rc<Self>) -> Rc<ComponentDef> {
        Rc::new(ComponentDef {
            comp: self.clone(),
            range: 0..self.bytes.len(),
            outer: None,
            res: ResMap::new(),
        })
    }
}

/// A component definition in an index space: the bytes to walk plus what
/// its outer aliases and types may refer to.
pub struct ComponentDef {
    comp: Rc<Component>,
    range: Range<usize>,
    outer: Option<Rc<instantiate::Scope>>,
    res: ResMap,
}

/// What a component imports or exports.
#[derive(Clone)]
pub enum Item {
    Func(Rc<Func>),
    Instance(Rc<Exports>),
    /// A type; `Some` for resource types.
    Type(Option<ResourceType>),
    Module(Rc<Module>),
    Component(Rc<ComponentDef>),
}

impl Item {
    pub fn kind(&self) -> ComponentExternalKind {
        match self {
            Item::Func(_) => ComponentExternalKind::Func,
            Item::Instance(_) => ComponentExternalKind::Instance,
            Item::Type(_) => ComponentExternalKind::Type,
            Item::Module(_) => ComponentExternalKind::Module,
            Item::Component(_) => ComponentExternalKind::Component,
        }
    }
}

/// An instance's exports (or the imports given to an instantiation).
pub type Exports = BTreeMap<String, Item>;

/// Owns core instances and component state; the embedding API.
pub struct ComponentStore {
    /// Boxed: tasks blocked on fibers hold references to it, so it stays
    /// where it is when the `ComponentStore` moves.
    pub core: alloc::boxed::Box<Store>,
    sh: Shared,
}

impl ComponentStore {
    pub fn new(platform: &'static dyn Platform) -> ComponentStore {
        ComponentStore {
            core: alloc::boxed::Box::new(Store::new(platform)),
            sh: Shared::default(),
        }
    }

    /// Instantiates `c` with `imports` (by import name).
    pub fn instantiate(
        &mut self,
        c: &Rc<Component>,
        imports: &Exports,
    ) -> Result<Rc<Exports>, Error> {
        instantiate::instantiate(&mut self.core, &self.sh, &c.def(), imports, None, true)
    }

    /// Calls a component function from the host.
    pub fn call(&mut self, f: &Rc<Func>, args: &[Value]) -> Result<Option<Value>, Error> {
        if args.len() != f.sig.ty.params.len() {
            return Err(Error::Usage(alloc::format!(
                "expected {} arguments, got {}",
                f.sig.ty.params.len(),
                args.len()
            )));
        }
        call::call_from_host(&mut self.core, &self.sh, f, args).map_err(|t| Error::Trapped(t.0))
    }

    /// The clock and idle wait the loop's timers use (async host
    /// functions such as `wasi:clocks` `wait-for`).
    pub fn set_waiter(&mut self, w: Rc<dyn Waiter>) {
        if let Ok(mut st) = self.sh.get() {
            st.waiter = Some(w);
        }
    }

    /// Adds a source of I/O completions the loop polls (a device).
    pub fn add_io(&mut self, io: Rc<dyn device::IoSource>) {
        if let Ok(mut st) = self.sh.get() {
            Rc::make_mut(&mut st.io).push(io);
        }
    }

    /// A new resource type owned by the host (no destructor).
    pub fn host_resource(&mut self) -> Result<ResourceType, Error> {
        Ok(self
            .sh
            .get()
            .map_err(|t| Error::Trapped(t.0))?
            .new_resource(None, None))
    }
}
