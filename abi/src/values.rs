//! Component-level values ([`Value`]), strings that remember their source
//! encoding ([`WasmString`], the spec's `String = (str, encoding,
//! tagged_code_units)`) and flat core values ([`CoreVal`], [`CoreValueIter`]).

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;

use crate::error::Trap;
use crate::layout::CoreType;

/// The `string-encoding` canonical option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum StringEncoding {
    #[default]
    Utf8,
    Utf16,
    /// `latin1+utf16`: latin-1 unless the length has the [`utf16_tag`] bit.
    ///
    /// [`utf16_tag`]: crate::strings::utf16_tag
    CompactUtf16,
}

/// A lifted string: its code points plus the encoding and the (tagged) code
/// unit count it had in the source memory. The transcoding paths and their
/// `realloc` sizes depend on those, exactly as in `store_string_into_range`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WasmString {
    pub(crate) s: String,
    pub(crate) encoding: StringEncoding,
    pub(crate) tagged_code_units: u64,
}

impl WasmString {
    /// A host string, as if it came from a UTF-8 component.
    pub fn new(s: impl Into<String>) -> Self {
        let s = s.into();
        let n = s.len() as u64;
        WasmString {
            s,
            encoding: StringEncoding::Utf8,
            tagged_code_units: n,
        }
    }
    /// A string with an explicit source encoding and tagged code-unit count
    /// (as `load_string_from_range` returns). The caller keeps them
    /// consistent with `s`.
    pub fn with_source(s: String, encoding: StringEncoding, tagged_code_units: u64) -> Self {
        WasmString {
            s,
            encoding,
            tagged_code_units,
        }
    }
    pub fn as_str(&self) -> &str {
        &self.s
    }
    pub fn encoding(&self) -> StringEncoding {
        self.encoding
    }
    pub fn tagged_code_units(&self) -> u64 {
        self.tagged_code_units
    }
    pub fn into_string(self) -> String {
        self.s
    }
}

impl From<&str> for WasmString {
    fn from(s: &str) -> Self {
        WasmString::new(s)
    }
}

/// A component value. Specialised types use their despecialised shape:
/// tuples are `Record`, enums/options/results are `Variant` (option: case 0
/// `none`, 1 `some`; result: 0 `ok`, 1 `error`), maps are lists of 2-tuples.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Bool(bool),
    S8(i8),
    U8(u8),
    S16(i16),
    U16(u16),
    S32(i32),
    U32(u32),
    S64(i64),
    U64(u64),
    F32(f32),
    F64(f64),
    Char(char),
    String(WasmString),
    /// `list<T>` and `list<T, N>`.
    List(Vec<Value>),
    /// Record / tuple fields in declaration order.
    Record(Vec<Value>),
    /// Case index and payload.
    Variant(u32, Option<Box<Value>>),
    /// Bit `i` is label `i` (`pack_flags_into_int`).
    Flags(u32),
    /// The resource `rep` (what `lift_own` returns).
    Own(u32),
    /// The resource `rep` (what `lift_borrow` returns).
    Borrow(u32),
    /// An opaque runtime id of a readable stream (the spec's `ReadableStream`).
    Stream(u32),
    /// An opaque runtime id of a readable future.
    Future(u32),
    /// An opaque runtime id of an error context.
    ErrorContext(u32),
}

impl Value {
    pub fn string(s: &str) -> Value {
        Value::String(WasmString::new(s))
    }
    pub fn none() -> Value {
        Value::Variant(0, None)
    }
    pub fn some(v: Value) -> Value {
        Value::Variant(1, Some(Box::new(v)))
    }
    pub fn ok(v: Option<Value>) -> Value {
        Value::Variant(0, v.map(Box::new))
    }
    pub fn err(v: Option<Value>) -> Value {
        Value::Variant(1, v.map(Box::new))
    }
    pub fn enum_case(i: u32) -> Value {
        Value::Variant(i, None)
    }
    pub fn tuple(vs: Vec<Value>) -> Value {
        Value::Record(vs)
    }
}

/// A flat core WebAssembly value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CoreVal {
    I32(u32),
    I64(u64),
    F32(f32),
    F64(f64),
}

impl CoreVal {
    pub fn ty(&self) -> CoreType {
        match self {
            CoreVal::I32(_) => CoreType::I32,
            CoreVal::I64(_) => CoreType::I64,
            CoreVal::F32(_) => CoreType::F32,
            CoreVal::F64(_) => CoreType::F64,
        }
    }
    /// The zero of a core type (padding of `lower_flat_variant`).
    pub fn zero(t: CoreType) -> CoreVal {
        match t {
            CoreType::I32 => CoreVal::I32(0),
            CoreType::I64 => CoreVal::I64(0),
            CoreType::F32 => CoreVal::F32(0.0),
            CoreType::F64 => CoreVal::F64(0.0),
        }
    }
    /// A pointer/length of the given address type.
    pub fn ptr(addr: crate::types::AddrType, v: u64) -> CoreVal {
        match addr {
            crate::types::AddrType::I32 => CoreVal::I32(v as u32),
            crate::types::AddrType::I64 => CoreVal::I64(v),
        }
    }
    /// Bit-exact equality (NaN payloads compared as bits).
    pub fn bits_eq(&self, other: &CoreVal) -> bool {
        match (self, other) {
            (CoreVal::F32(a), CoreVal::F32(b)) => a.to_bits() == b.to_bits(),
            (CoreVal::F64(a), CoreVal::F64(b)) => a.to_bits() == b.to_bits(),
            _ => self == other,
        }
    }
}

/// A source of flat values, asked for by core type (`vi.next(t)`).
pub trait FlatSource {
    fn next(&mut self, want: CoreType) -> Result<CoreVal, Trap>;

    fn next_i32(&mut self) -> Result<u32, Trap> {
        match self.next(CoreType::I32)? {
            CoreVal::I32(v) => Ok(v),
            _ => Err(Trap::Mismatch("expected an i32 core value")),
        }
    }
    fn next_i64(&mut self) -> Result<u64, Trap> {
        match self.next(CoreType::I64)? {
            CoreVal::I64(v) => Ok(v),
            _ => Err(Trap::Mismatch("expected an i64 core value")),
        }
    }
    /// A pointer or length of the memory's address type, widened to u64.
    fn next_ptr(&mut self, addr: crate::types::AddrType) -> Result<u64, Trap> {
        match addr {
            crate::types::AddrType::I32 => self.next_i32().map(u64::from),
            crate::types::AddrType::I64 => self.next_i64(),
        }
    }
}

/// `CoreValueIter`: walks a slice of flat values, checking each is of the
/// type asked for.
#[derive(Debug, Clone)]
pub struct CoreValueIter<'a> {
    values: &'a [CoreVal],
    i: usize,
}

impl<'a> CoreValueIter<'a> {
    pub fn new(values: &'a [CoreVal]) -> Self {
        CoreValueIter { values, i: 0 }
    }
    /// `done()`: every value consumed.
    pub fn done(&self) -> bool {
        self.i == self.values.len()
    }
}

impl FlatSource for CoreValueIter<'_> {
    fn next(&mut self, want: CoreType) -> Result<CoreVal, Trap> {
        let v = *self
            .values
            .get(self.i)
            .ok_or(Trap::Mismatch("too few core values"))?;
        if v.ty() != want {
            return Err(Trap::Mismatch("core value of the wrong type"));
        }
        self.i += 1;
        Ok(v)
    }
}
