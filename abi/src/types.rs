//! Component value types (`ValType`) and their despecialisation
//! (`despecialize` in definitions.py).
//!
//! Specialised types (tuple, enum, option, result, map) are kept as written
//! so a runtime can print them; every other module works on
//! [`ValType::despecialize`], a borrowed view with only the fundamental
//! shapes (record, variant, list, ...), exactly as the spec does.

use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;

/// The address type of a linear memory (`MemInst.addrtype`): `i32` or
/// `i64` (memory64). Decides the size of pointers and lengths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AddrType {
    #[default]
    I32,
    I64,
}

impl AddrType {
    /// `ptr_size(ptr_type)`: 4 or 8.
    pub const fn ptr_size(self) -> u32 {
        match self {
            AddrType::I32 => 4,
            AddrType::I64 => 8,
        }
    }
    /// The flat core type of a pointer of this memory.
    pub const fn core_type(self) -> crate::layout::CoreType {
        match self {
            AddrType::I32 => crate::layout::CoreType::I32,
            AddrType::I64 => crate::layout::CoreType::I64,
        }
    }
}

/// Identity of a resource type (`ResourceType` in the spec is compared by
/// object identity; the runtime hands out ids).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceType(pub u32);

/// A record field (`FieldType`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Field {
    pub label: String,
    pub ty: ValType,
}

/// A variant case (`CaseType`); `ty == None` is a case without payload.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Case {
    pub label: String,
    pub ty: Option<ValType>,
}

/// An enum's labels. Shared: a clone is a reference count, and two types
/// made from one list compare by pointer (`Rc`'s own shortcut needs a
/// sized `T`), as the built-ins' element type checks do on every copy.
#[derive(Debug, Clone, Eq)]
pub struct Labels(pub Rc<[String]>);

// By content, as equality is (equal lists hash alike wherever they live).
impl core::hash::Hash for Labels {
    fn hash<H: core::hash::Hasher>(&self, h: &mut H) {
        self.0.hash(h)
    }
}

impl PartialEq for Labels {
    fn eq(&self, other: &Labels) -> bool {
        Rc::ptr_eq(&self.0, &other.0) || self.0 == other.0
    }
}

impl core::ops::Deref for Labels {
    type Target = [String];
    fn deref(&self) -> &[String] {
        &self.0
    }
}

impl FromIterator<String> for Labels {
    fn from_iter<I: IntoIterator<Item = String>>(it: I) -> Labels {
        Labels(it.into_iter().collect())
    }
}

/// A component value type (`ValType` subclasses in definitions.py).
/// Inner types are shared (`Rc`): types are cloned per stream/future end
/// and per copy, and a clone is then a reference count, not an
/// allocation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ValType {
    Bool,
    S8,
    U8,
    S16,
    U16,
    S32,
    U32,
    S64,
    U64,
    F32,
    F64,
    Char,
    String,
    ErrorContext,
    /// `list<T>`.
    List(Rc<ValType>),
    /// `list<T, N>` (fixed length, 🔧 in the spec).
    FixedList(Rc<ValType>, u32),
    Record(Vec<Field>),
    Tuple(Vec<ValType>),
    Variant(Vec<Case>),
    /// Labels shared, not copied, when the type is cloned (types are
    /// cloned per stream/future end).
    Enum(Labels),
    Option(Rc<ValType>),
    Result {
        ok: Option<Rc<ValType>>,
        err: Option<Rc<ValType>>,
    },
    /// `map<K, V>`; holds the entry type `tuple<K, V>` (build with
    /// [`ValType::map`]), which is what it despecialises to a list of.
    Map(Rc<ValType>),
    /// `flags`: 1..=32 labels.
    Flags(Vec<String>),
    Own(ResourceType),
    Borrow(ResourceType),
    Stream(Option<Rc<ValType>>),
    Future(Option<Rc<ValType>>),
}

/// The fields of a despecialised record: a real record, or a tuple whose
/// fields are labelled "0", "1", ...
#[derive(Debug, Clone, Copy)]
pub enum Fields<'a> {
    Record(&'a [Field]),
    Tuple(&'a [ValType]),
}

impl<'a> Fields<'a> {
    pub fn len(&self) -> usize {
        match self {
            Fields::Record(f) => f.len(),
            Fields::Tuple(t) => t.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The field types in order.
    pub fn types(&self) -> impl Iterator<Item = &'a ValType> + 'a {
        let (r, t): (&'a [Field], &'a [ValType]) = match *self {
            Fields::Record(f) => (f, &[]),
            Fields::Tuple(t) => (&[], t),
        };
        r.iter().map(|f| &f.ty).chain(t.iter())
    }
}

/// The cases of a despecialised variant, by the spec's rules:
/// `enum` -> cases without payload, `option<T>` -> `none | some(T)`,
/// `result<O, E>` -> `ok(O?) | error(E?)`.
#[derive(Debug, Clone, Copy)]
pub enum Cases<'a> {
    Variant(&'a [Case]),
    Enum(&'a [String]),
    Option(&'a ValType),
    Result(Option<&'a ValType>, Option<&'a ValType>),
}

impl<'a> Cases<'a> {
    pub fn len(&self) -> usize {
        match self {
            Cases::Variant(c) => c.len(),
            Cases::Enum(l) => l.len(),
            Cases::Option(_) | Cases::Result(..) => 2,
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The payload type of case `i` (`None` for no payload or `i` out of range).
    pub fn payload(&self, i: usize) -> Option<&'a ValType> {
        match *self {
            Cases::Variant(c) => c.get(i).and_then(|c| c.ty.as_ref()),
            Cases::Enum(_) => None,
            Cases::Option(t) => (i == 1).then_some(t),
            Cases::Result(ok, err) => match i {
                0 => ok,
                1 => err,
                _ => None,
            },
        }
    }
    /// The label of case `i`.
    pub fn label(&self, i: usize) -> Option<&'a str> {
        match *self {
            Cases::Variant(c) => c.get(i).map(|c| c.label.as_str()),
            Cases::Enum(l) => l.get(i).map(|l| l.as_str()),
            Cases::Option(_) => ["none", "some"].get(i).copied(),
            Cases::Result(..) => ["ok", "error"].get(i).copied(),
        }
    }
    /// Payload types of all cases, in order.
    pub fn payloads(&self) -> impl Iterator<Item = Option<&'a ValType>> + 'a {
        let this = *self;
        (0..this.len()).map(move |i| this.payload(i))
    }
}

/// A despecialised type: the shapes `load`/`store`/`flatten_type` match on.
#[derive(Debug, Clone, Copy)]
pub enum Despecialized<'a> {
    Bool,
    S8,
    U8,
    S16,
    U16,
    S32,
    U32,
    S64,
    U64,
    F32,
    F64,
    Char,
    String,
    ErrorContext,
    /// `ListType(t, l)`: element type and the fixed length, if any.
    List(&'a ValType, Option<u32>),
    Record(Fields<'a>),
    Variant(Cases<'a>),
    /// Number of flag labels.
    Flags(usize),
    Own(ResourceType),
    Borrow(ResourceType),
    Stream(Option<&'a Rc<ValType>>),
    Future(Option<&'a Rc<ValType>>),
}

impl ValType {
    pub fn list(t: ValType) -> ValType {
        ValType::List(Rc::new(t))
    }
    pub fn fixed_list(t: ValType, n: u32) -> ValType {
        ValType::FixedList(Rc::new(t), n)
    }
    pub fn option(t: ValType) -> ValType {
        ValType::Option(Rc::new(t))
    }
    pub fn result(ok: Option<ValType>, err: Option<ValType>) -> ValType {
        ValType::Result {
            ok: ok.map(Rc::new),
            err: err.map(Rc::new),
        }
    }
    pub fn map(k: ValType, v: ValType) -> ValType {
        ValType::Map(Rc::new(ValType::Tuple(alloc::vec![k, v])))
    }
    pub fn stream(t: Option<ValType>) -> ValType {
        ValType::Stream(t.map(Rc::new))
    }
    pub fn future(t: Option<ValType>) -> ValType {
        ValType::Future(t.map(Rc::new))
    }
    pub fn record<'a>(fields: impl IntoIterator<Item = (&'a str, ValType)>) -> ValType {
        ValType::Record(
            fields
                .into_iter()
                .map(|(l, ty)| Field {
                    label: l.into(),
                    ty,
                })
                .collect(),
        )
    }
    pub fn variant<'a>(cases: impl IntoIterator<Item = (&'a str, Option<ValType>)>) -> ValType {
        ValType::Variant(
            cases
                .into_iter()
                .map(|(l, ty)| Case {
                    label: l.into(),
                    ty,
                })
                .collect(),
        )
    }
    pub fn enum_<'a>(labels: impl IntoIterator<Item = &'a str>) -> ValType {
        ValType::Enum(labels.into_iter().map(String::from).collect())
    }
    pub fn flags<'a>(labels: impl IntoIterator<Item = &'a str>) -> ValType {
        ValType::Flags(labels.into_iter().map(String::from).collect())
    }

    /// `despecialize(t)`.
    pub fn despecialize(&self) -> Despecialized<'_> {
        use Despecialized as D;
        match self {
            ValType::Bool => D::Bool,
            ValType::S8 => D::S8,
            ValType::U8 => D::U8,
            ValType::S16 => D::S16,
            ValType::U16 => D::U16,
            ValType::S32 => D::S32,
            ValType::U32 => D::U32,
            ValType::S64 => D::S64,
            ValType::U64 => D::U64,
            ValType::F32 => D::F32,
            ValType::F64 => D::F64,
            ValType::Char => D::Char,
            ValType::String => D::String,
            ValType::ErrorContext => D::ErrorContext,
            ValType::List(t) => D::List(t, None),
            ValType::FixedList(t, n) => D::List(t, Some(*n)),
            ValType::Map(entry) => D::List(entry, None),
            ValType::Record(f) => D::Record(Fields::Record(f)),
            ValType::Tuple(ts) => D::Record(Fields::Tuple(ts)),
            ValType::Variant(c) => D::Variant(Cases::Variant(c)),
            ValType::Enum(l) => D::Variant(Cases::Enum(&l[..])),
            ValType::Option(t) => D::Variant(Cases::Option(t)),
            ValType::Result { ok, err } => D::Variant(Cases::Result(ok.as_deref(), err.as_deref())),
            ValType::Flags(l) => D::Flags(l.len()),
            ValType::Own(rt) => D::Own(*rt),
            ValType::Borrow(rt) => D::Borrow(*rt),
            ValType::Stream(t) => D::Stream(t.as_ref()),
            ValType::Future(t) => D::Future(t.as_ref()),
        }
    }

    /// `contains(t, p)`: whether `p` holds for `t` or any type nested in it
    /// (lists, record fields, variant payloads, stream/future elements).
    pub fn contains(&self, p: &mut impl FnMut(&ValType) -> bool) -> bool {
        if p(self) {
            return true;
        }
        match self.despecialize() {
            Despecialized::List(t, _) => t.contains(p),
            Despecialized::Stream(t) | Despecialized::Future(t) => t.is_some_and(|t| t.contains(p)),
            Despecialized::Record(f) => f.types().any(|t| t.contains(p)),
            Despecialized::Variant(c) => c.payloads().flatten().any(|t| t.contains(p)),
            _ => false,
        }
    }

    /// `contains_borrow(t)`.
    pub fn contains_borrow(&self) -> bool {
        self.contains(&mut |t| matches!(t, ValType::Borrow(_)))
    }

    /// `contains_async_value(t)`: a stream or future anywhere inside.
    pub fn contains_async_value(&self) -> bool {
        self.contains(&mut |t| matches!(t, ValType::Stream(_) | ValType::Future(_)))
    }

    /// Whether lifting or lowering a value of this type touches a handle
    /// table: an `own`/`borrow` handle, a stream or future end, or an
    /// error context anywhere inside. A stream/future copy of such
    /// elements moves handles between the two instances' tables.
    pub fn contains_handle(&self) -> bool {
        self.contains(&mut |t| {
            matches!(
                t,
                ValType::Own(_)
                    | ValType::Borrow(_)
                    | ValType::Stream(_)
                    | ValType::Future(_)
                    | ValType::ErrorContext
            )
        })
    }

    /// `none_or_number_type(t)` (used by the temporary intra-component copy
    /// restriction): integers and floats only.
    pub fn is_number(&self) -> bool {
        self.is_integer() || matches!(self, ValType::F32 | ValType::F64)
    }

    /// A signed or unsigned integer of any width.
    pub fn is_integer(&self) -> bool {
        matches!(
            self,
            ValType::U8
                | ValType::U16
                | ValType::U32
                | ValType::U64
                | ValType::S8
                | ValType::S16
                | ValType::S32
                | ValType::S64
        )
    }
}

/// A component function type (`FuncType`): parameter types and an optional
/// result (`result_type()` is `[]` or `[t]`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct FuncType {
    pub params: Vec<ValType>,
    pub result: Option<ValType>,
    /// `async` function type (affects only the scheduler, not flattening).
    pub async_: bool,
}

impl FuncType {
    pub fn param_types(&self) -> &[ValType] {
        &self.params
    }
    pub fn result_type(&self) -> &[ValType] {
        self.result.as_slice()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn despecialize_like_the_spec() {
        let t = ValType::Tuple(vec![ValType::U8, ValType::String]);
        let Despecialized::Record(f) = t.despecialize() else {
            panic!()
        };
        assert_eq!(
            f.types().cloned().collect::<Vec<_>>(),
            vec![ValType::U8, ValType::String]
        );

        let e = ValType::enum_(["a", "b", "c"]);
        let Despecialized::Variant(c) = e.despecialize() else {
            panic!()
        };
        assert_eq!(c.len(), 3);
        assert!(c.payloads().all(|p| p.is_none()));
        assert_eq!(c.label(2), Some("c"));

        let o = ValType::option(ValType::U32);
        let Despecialized::Variant(c) = o.despecialize() else {
            panic!()
        };
        assert_eq!((c.label(0), c.payload(0)), (Some("none"), None));
        assert_eq!(
            (c.label(1), c.payload(1)),
            (Some("some"), Some(&ValType::U32))
        );

        let r = ValType::result(None, Some(ValType::String));
        let Despecialized::Variant(c) = r.despecialize() else {
            panic!()
        };
        assert_eq!((c.label(0), c.payload(0)), (Some("ok"), None));
        assert_eq!(
            (c.label(1), c.payload(1)),
            (Some("error"), Some(&ValType::String))
        );

        let m = ValType::map(ValType::String, ValType::U8);
        let Despecialized::List(entry, None) = m.despecialize() else {
            panic!()
        };
        assert_eq!(entry, &ValType::Tuple(vec![ValType::String, ValType::U8]));
    }

    #[test]
    fn contains_predicates() {
        let t = ValType::list(ValType::option(ValType::Borrow(ResourceType(1))));
        assert!(t.contains_borrow());
        assert!(!t.contains_async_value());
        let s = ValType::record([("x", ValType::future(Some(ValType::stream(None))))]);
        assert!(s.contains_async_value());
        assert!(!s.contains_borrow());
        assert!(!ValType::String.contains_borrow());
    }
}
