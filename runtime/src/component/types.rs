//! Component types as the validator resolved them, converted to the
//! canonical ABI's types ([`ringos_abi::ValType`]).
//!
//! The validator names resource types by static [`ResourceId`]s; each
//! component instance maps the ones it can see to the runtime resource
//! types it was given or created (`ResMap`).

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::rc::Rc;
use alloc::string::String;
use alloc::string::ToString;
use alloc::vec::Vec;
use core::cell::RefCell;

use ringos_abi as abi;
use wasmparser::component_types::{
    ComponentAnyTypeId, ComponentDefinedType, ComponentEntityType, ComponentFuncTypeId,
    ComponentValType, ResourceId,
};
use wasmparser::types::TypesRef;
use wasmparser::PrimitiveValType;

/// Static resource ids -> runtime resource types, per component instance.
pub(crate) type ResMap = BTreeMap<ResourceId, abi::ResourceType>;

/// Resolves static resource ids; an id not bound yet gets `fallback`'s
/// answer (a fresh runtime type, so a mismatch shows as a type error
/// rather than a panic).
pub(crate) struct Resolver<'a> {
    pub types: TypesRef<'a>,
    pub res: &'a ResMap,
    pub labels: &'a Labels,
}

/// Enum label lists, each kept once per component: equal enum types then
/// share their labels, and the built-ins' element type checks (an end's
/// type against the built-in's, on every copy) end at a pointer compare.
/// Ordered by content: a component with very many enum types still loads
/// in n log n.
#[derive(Default)]
pub(crate) struct Labels(RefCell<BTreeSet<Rc<[String]>>>);

impl Labels {
    fn get<'s>(&self, labels: impl Iterator<Item = &'s str>) -> abi::types::Labels {
        let labels: Vec<String> = labels.map(String::from).collect();
        let mut known = self.0.borrow_mut();
        if let Some(l) = known.get(labels.as_slice()) {
            return abi::types::Labels(l.clone());
        }
        let l: Rc<[String]> = labels.into();
        known.insert(l.clone());
        abi::types::Labels(l)
    }
}

impl Resolver<'_> {
    fn resource(&self, id: ResourceId) -> abi::ResourceType {
        self.res
            .get(&id)
            .copied()
            .unwrap_or(abi::ResourceType(u32::MAX))
    }

    pub fn val(&self, t: ComponentValType) -> abi::ValType {
        match t {
            ComponentValType::Primitive(p) => primitive(p),
            ComponentValType::Type(id) => self.defined(&self.types[id]),
        }
    }

    fn opt(&self, t: Option<ComponentValType>) -> Option<abi::ValType> {
        t.map(|t| self.val(t))
    }

    fn defined(&self, t: &ComponentDefinedType) -> abi::ValType {
        use abi::types::{Case, Field};
        use abi::ValType as V;
        match t {
            ComponentDefinedType::Primitive(p) => primitive(*p),
            ComponentDefinedType::Record(r) => V::Record(
                r.fields
                    .iter()
                    .map(|(n, t)| Field {
                        label: n.to_string(),
                        ty: self.val(*t),
                    })
                    .collect(),
            ),
            ComponentDefinedType::Variant(v) => V::Variant(
                v.cases
                    .iter()
                    .map(|(n, c)| Case {
                        label: n.to_string(),
                        ty: self.opt(c.ty),
                    })
                    .collect(),
            ),
            ComponentDefinedType::List { element, .. } => V::List(Rc::new(self.val(*element))),
            ComponentDefinedType::Map { key, value, .. } => {
                V::map(self.val(*key), self.val(*value))
            }
            ComponentDefinedType::FixedLengthList {
                element, length, ..
            } => V::FixedList(Rc::new(self.val(*element)), *length),
            ComponentDefinedType::Tuple(t) => {
                V::Tuple(t.types.iter().map(|t| self.val(*t)).collect())
            }
            ComponentDefinedType::Flags(f) => V::Flags(f.iter().map(|n| n.to_string()).collect()),
            ComponentDefinedType::Enum(e) => V::Enum(self.labels.get(e.iter().map(|n| n.as_str()))),
            ComponentDefinedType::Option { ty, .. } => V::Option(Rc::new(self.val(*ty))),
            ComponentDefinedType::Result { ok, err, .. } => V::Result {
                ok: self.opt(*ok).map(Rc::new),
                err: self.opt(*err).map(Rc::new),
            },
            ComponentDefinedType::Own(r) => V::Own(self.resource(r.resource())),
            ComponentDefinedType::Borrow(r) => V::Borrow(self.resource(r.resource())),
            ComponentDefinedType::Future { ty, .. } => V::Future(self.opt(*ty).map(Rc::new)),
            ComponentDefinedType::Stream { ty, .. } => V::Stream(self.opt(*ty).map(Rc::new)),
        }
    }

    /// A value type as the binary writes it (a primitive or a type
    /// index of this component).
    pub fn reader_val(&self, t: wasmparser::ComponentValType) -> abi::ValType {
        match t {
            wasmparser::ComponentValType::Primitive(p) => primitive(p),
            wasmparser::ComponentValType::Type(i) => {
                self.defined(&self.types[self.types.component_defined_type_at(i)])
            }
        }
    }

    /// The element type of the `stream<T>` / `future<T>` at type index `i`.
    pub fn elem_type(&self, i: u32) -> Option<abi::ValType> {
        match self.defined(&self.types[self.types.component_defined_type_at(i)]) {
            abi::ValType::Stream(t) | abi::ValType::Future(t) => t.map(Rc::unwrap_or_clone),
            _ => None,
        }
    }

    /// A component function type with labelled parameters.
    pub fn func(&self, id: ComponentFuncTypeId) -> FuncSig {
        let f = &self.types[id];
        FuncSig {
            names: f.params.iter().map(|(n, _)| n.to_string()).collect(),
            ty: abi::FuncType {
                params: f.params.iter().map(|(_, t)| self.val(*t)).collect(),
                result: self.opt(f.result),
                async_: f.async_,
            },
        }
    }
}

/// A component function's type plus its parameter names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FuncSig {
    pub names: Vec<alloc::string::String>,
    pub ty: abi::FuncType,
}

impl FuncSig {
    /// A synchronous function's signature (what host imports declare).
    pub fn new(names: &[&str], params: Vec<abi::ValType>, result: Option<abi::ValType>) -> FuncSig {
        FuncSig {
            names: names.iter().map(|n| String::from(*n)).collect(),
            ty: abi::FuncType {
                params,
                result,
                async_: false,
            },
        }
    }
}

fn primitive(p: PrimitiveValType) -> abi::ValType {
    use abi::ValType as V;
    match p {
        PrimitiveValType::Bool => V::Bool,
        PrimitiveValType::S8 => V::S8,
        PrimitiveValType::U8 => V::U8,
        PrimitiveValType::S16 => V::S16,
        PrimitiveValType::U16 => V::U16,
        PrimitiveValType::S32 => V::S32,
        PrimitiveValType::U32 => V::U32,
        PrimitiveValType::S64 => V::S64,
        PrimitiveValType::U64 => V::U64,
        PrimitiveValType::F32 => V::F32,
        PrimitiveValType::F64 => V::F64,
        PrimitiveValType::Char => V::Char,
        PrimitiveValType::String => V::String,
        PrimitiveValType::ErrorContext => V::ErrorContext,
    }
}

/// The resource id behind a type, if it is a resource.
pub(crate) fn resource_of(t: ComponentAnyTypeId) -> Option<ResourceId> {
    match t {
        ComponentAnyTypeId::Resource(r) => Some(r.resource()),
        _ => None,
    }
}

/// Binds the static resource ids an entity of type `ty` mentions to the
/// runtime types of the item `item` that fills it (an import's argument,
/// an instance the parent sees).
pub(crate) fn bind(
    types: TypesRef<'_>,
    ty: &ComponentEntityType,
    item: &super::Item,
    res: &mut ResMap,
) {
    match (ty, item) {
        (
            ComponentEntityType::Type {
                referenced,
                created,
            },
            super::Item::Type(Some(rt)),
        ) => {
            for t in [referenced, created] {
                if let Some(id) = resource_of(*t) {
                    res.insert(id, *rt);
                }
            }
        }
        (ComponentEntityType::Instance(id), super::Item::Instance(inst)) => {
            for (name, export) in types[*id].exports.iter() {
                if let Some(item) = inst.get(name.as_str()) {
                    bind(types, &export.ty, item, res);
                }
            }
        }
        _ => {}
    }
}
