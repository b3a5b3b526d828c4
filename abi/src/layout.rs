//! Alignment, size and flattening of component types ("Alignment",
//! "Element Size" and "Flattening" in definitions.py).

use alloc::vec::Vec;

use crate::types::{AddrType, Cases, Despecialized, Fields, FuncType, ValType};

/// `MAX_FLAT_PARAMS`.
pub const MAX_FLAT_PARAMS: usize = 16;
/// `MAX_FLAT_ASYNC_PARAMS`: params of an `async` lowered import.
pub const MAX_FLAT_ASYNC_PARAMS: usize = 4;
/// `MAX_FLAT_RESULTS`.
pub const MAX_FLAT_RESULTS: usize = 1;

/// A core WebAssembly value type as produced by flattening.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CoreType {
    I32,
    I64,
    F32,
    F64,
}

/// `align_to(ptr, alignment)`; `None` on overflow.
pub fn align_to(ptr: u64, alignment: u32) -> Option<u64> {
    let a = u64::from(alignment);
    debug_assert!(a.is_power_of_two());
    ptr.checked_add(a - 1).map(|p| p & !(a - 1))
}

pub(crate) fn align_up(s: u64, alignment: u32) -> u64 {
    align_to(s, alignment).expect("type size overflow")
}

/// Whether `ptr` is a multiple of `alignment`.
pub fn is_aligned(ptr: u64, alignment: u32) -> bool {
    ptr & (u64::from(alignment) - 1) == 0
}

/// `discriminant_type(cases)`, returned as its byte size (1, 2 or 4).
pub fn discriminant_size(n: usize) -> u32 {
    assert!(
        n > 0 && (n as u64) < (1 << 32),
        "variant must have 1..2^32 cases"
    );
    // ceil(log2(n) / 8)
    let bits = usize::BITS - (n - 1).leading_zeros(); // ceil(log2(n)), 0 for n == 1
    match bits.div_ceil(8) {
        0 | 1 => 1,
        2 => 2,
        _ => 4,
    }
}

/// `alignment_flags` / `elem_size_flags` (they agree): 1, 2 or 4.
pub fn flags_size(n: usize) -> u32 {
    assert!(n > 0 && n <= 32, "flags must have 1..=32 labels");
    if n <= 8 {
        1
    } else if n <= 16 {
        2
    } else {
        4
    }
}

/// `alignment(t, ptr_type)`.
pub fn alignment(t: &ValType, pt: AddrType) -> u32 {
    use Despecialized as D;
    match t.despecialize() {
        D::Bool | D::S8 | D::U8 => 1,
        D::S16 | D::U16 => 2,
        D::S32 | D::U32 | D::F32 | D::Char => 4,
        D::S64 | D::U64 | D::F64 => 8,
        D::String => pt.ptr_size(),
        D::ErrorContext => 4,
        D::List(t, l) => alignment_list(t, l, pt),
        D::Record(f) => alignment_record(f, pt),
        D::Variant(c) => alignment_variant(c, pt),
        D::Flags(n) => flags_size(n),
        D::Own(_) | D::Borrow(_) | D::Stream(_) | D::Future(_) => 4,
    }
}

fn alignment_list(t: &ValType, l: Option<u32>, pt: AddrType) -> u32 {
    match l {
        Some(_) => alignment(t, pt),
        None => pt.ptr_size(),
    }
}

pub(crate) fn alignment_record(f: Fields<'_>, pt: AddrType) -> u32 {
    f.types().map(|t| alignment(t, pt)).fold(1, u32::max)
}

pub(crate) fn alignment_variant(c: Cases<'_>, pt: AddrType) -> u32 {
    discriminant_size(c.len()).max(max_case_alignment(c, pt))
}

/// `max_case_alignment(cases, ptr_type)`.
pub fn max_case_alignment(c: Cases<'_>, pt: AddrType) -> u32 {
    // No payloads: nothing to look at.
    if let Cases::Enum(_) = c {
        return 1;
    }
    c.payloads()
        .flatten()
        .map(|t| alignment(t, pt))
        .fold(1, u32::max)
}

/// `elem_size(t, ptr_type)`.
pub fn elem_size(t: &ValType, pt: AddrType) -> u64 {
    use Despecialized as D;
    match t.despecialize() {
        D::Bool | D::S8 | D::U8 => 1,
        D::S16 | D::U16 => 2,
        D::S32 | D::U32 | D::F32 | D::Char => 4,
        D::S64 | D::U64 | D::F64 => 8,
        D::String => 2 * u64::from(pt.ptr_size()),
        D::ErrorContext => 4,
        D::List(t, Some(n)) => u64::from(n) * elem_size(t, pt),
        D::List(_, None) => 2 * u64::from(pt.ptr_size()),
        D::Record(f) => elem_size_record(f, pt),
        D::Variant(c) => elem_size_variant(c, pt),
        D::Flags(n) => u64::from(flags_size(n)),
        D::Own(_) | D::Borrow(_) | D::Stream(_) | D::Future(_) => 4,
    }
}

pub(crate) fn elem_size_record(f: Fields<'_>, pt: AddrType) -> u64 {
    let mut s = 0;
    for t in f.types() {
        s = align_up(s, alignment(t, pt));
        s += elem_size(t, pt);
    }
    // The spec asserts s > 0 (empty records are rejected by validation).
    align_up(s, alignment_record(f, pt))
}

fn elem_size_variant(c: Cases<'_>, pt: AddrType) -> u64 {
    if let Cases::Enum(l) = c {
        return u64::from(discriminant_size(l.len()));
    }
    let mut s = u64::from(discriminant_size(c.len()));
    s = align_up(s, max_case_alignment(c, pt));
    let cs = c
        .payloads()
        .flatten()
        .map(|t| elem_size(t, pt))
        .max()
        .unwrap_or(0);
    s += cs;
    align_up(s, alignment_variant(c, pt))
}

/// The byte offset of each field of a record (as `store_record` and
/// `load_record` walk them), for callers that store the same type often.
pub fn field_offsets(f: Fields<'_>, pt: AddrType) -> Vec<u64> {
    let mut s = 0;
    f.types()
        .map(|t| {
            s = align_up(s, alignment(t, pt));
            let at = s;
            s += elem_size(t, pt);
            at
        })
        .collect()
}

/// Byte offset of the payload of a variant (after the discriminant, aligned
/// to `max_case_alignment`).
pub fn variant_payload_offset(c: Cases<'_>, pt: AddrType) -> u64 {
    align_up(
        u64::from(discriminant_size(c.len())),
        max_case_alignment(c, pt),
    )
}

/// `flatten_type(t, opts)`.
pub fn flatten_type(t: &ValType, pt: AddrType) -> Vec<CoreType> {
    let mut out = Vec::new();
    flatten_into(t, pt, &mut out);
    out
}

/// `flatten_types(ts, opts)`.
pub fn flatten_types<'a>(ts: impl IntoIterator<Item = &'a ValType>, pt: AddrType) -> Vec<CoreType> {
    let mut out = Vec::new();
    for t in ts {
        flatten_into(t, pt, &mut out);
    }
    out
}

/// `len(flatten_types(ts))`, without building the list (calls ask this to
/// choose between flat values and memory).
pub fn flat_len<'a>(ts: impl IntoIterator<Item = &'a ValType>) -> usize {
    ts.into_iter().map(flat_len_of).sum()
}

fn flat_len_of(t: &ValType) -> usize {
    use Despecialized as D;
    match t.despecialize() {
        D::String | D::List(_, None) => 2,
        D::List(t, Some(n)) => (n as usize).saturating_mul(flat_len_of(t)),
        D::Record(f) => f.types().map(flat_len_of).sum(),
        // The discriminant, then the joined payloads: as long as the
        // longest case's.
        D::Variant(c) => 1 + c.payloads().flatten().map(flat_len_of).max().unwrap_or(0),
        _ => 1,
    }
}

fn flatten_into(t: &ValType, pt: AddrType, out: &mut Vec<CoreType>) {
    use CoreType::*;
    use Despecialized as D;
    match t.despecialize() {
        D::Bool | D::U8 | D::U16 | D::U32 | D::S8 | D::S16 | D::S32 | D::Char => out.push(I32),
        D::S64 | D::U64 => out.push(I64),
        D::F32 => out.push(F32),
        D::F64 => out.push(F64),
        D::String | D::List(_, None) => {
            out.push(pt.core_type());
            out.push(pt.core_type());
        }
        D::List(t, Some(n)) => {
            let elem = flatten_type(t, pt);
            for _ in 0..n {
                out.extend_from_slice(&elem);
            }
        }
        D::Record(f) => f.types().for_each(|t| flatten_into(t, pt, out)),
        D::Variant(c) => out.extend(flatten_variant(c, pt)),
        D::ErrorContext | D::Flags(_) | D::Own(_) | D::Borrow(_) | D::Stream(_) | D::Future(_) => {
            out.push(I32)
        }
    }
}

/// `flatten_variant(cases, opts)`: the discriminant (always `i32`) followed
/// by the element-wise [`join`] of all case payloads.
pub fn flatten_variant(c: Cases<'_>, pt: AddrType) -> Vec<CoreType> {
    let mut flat: Vec<CoreType> = Vec::new();
    for t in c.payloads().flatten() {
        for (i, ft) in flatten_type(t, pt).into_iter().enumerate() {
            if i < flat.len() {
                flat[i] = join(flat[i], ft);
            } else {
                flat.push(ft);
            }
        }
    }
    // flatten_type(discriminant_type(cases)) is ['i32'] for u8/u16/u32.
    flat.insert(0, CoreType::I32);
    flat
}

/// `join(a, b)`.
pub fn join(a: CoreType, b: CoreType) -> CoreType {
    use CoreType::*;
    if a == b {
        return a;
    }
    match (a, b) {
        (I32, F32) | (F32, I32) => I32,
        _ => I64,
    }
}

/// Whether the core signature is for `canon lift` or `canon lower`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    Lift,
    Lower,
}

/// The options `flatten_functype` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FlattenOpts {
    pub addr: AddrType,
    pub async_: bool,
    /// Whether a `callback` option is present (async lift only).
    pub callback: bool,
}

/// A core function type (`CoreFuncType`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CoreFuncType {
    pub params: Vec<CoreType>,
    pub results: Vec<CoreType>,
}

/// `flatten_functype(opts, ft, context)`.
pub fn flatten_functype(opts: FlattenOpts, ft: &FuncType, context: Context) -> CoreFuncType {
    let ptr = opts.addr.core_type();
    let mut params = flatten_types(ft.param_types(), opts.addr);
    let mut results = flatten_types(ft.result_type(), opts.addr);
    if !opts.async_ {
        if params.len() > MAX_FLAT_PARAMS {
            params = alloc::vec![ptr];
        }
        if results.len() > MAX_FLAT_RESULTS {
            match context {
                Context::Lift => results = alloc::vec![ptr],
                Context::Lower => {
                    params.push(ptr);
                    results.clear();
                }
            }
        }
    } else {
        match context {
            Context::Lift => {
                if params.len() > MAX_FLAT_PARAMS {
                    params = alloc::vec![ptr];
                }
                results = if opts.callback {
                    alloc::vec![CoreType::I32]
                } else {
                    Vec::new()
                };
            }
            Context::Lower => {
                if params.len() > MAX_FLAT_ASYNC_PARAMS {
                    params = alloc::vec![ptr];
                }
                if !results.is_empty() {
                    params.push(ptr);
                }
                results = alloc::vec![CoreType::I32];
            }
        }
    }
    CoreFuncType { params, results }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::ResourceType;
    use alloc::vec;
    use CoreType::*;

    const P32: AddrType = AddrType::I32;
    const P64: AddrType = AddrType::I64;

    fn size_align(t: &ValType) -> (u64, u32) {
        (elem_size(t, P32), alignment(t, P32))
    }

    #[test]
    fn primitive_sizes() {
        for (t, s) in [
            (ValType::Bool, 1),
            (ValType::S8, 1),
            (ValType::U16, 2),
            (ValType::U32, 4),
            (ValType::S64, 8),
            (ValType::F32, 4),
            (ValType::F64, 8),
            (ValType::Char, 4),
            (ValType::Own(ResourceType(0)), 4),
            (ValType::stream(None), 4),
            (ValType::ErrorContext, 4),
        ] {
            assert_eq!(size_align(&t), (s, s as u32), "{t:?}");
        }
        assert_eq!(size_align(&ValType::String), (8, 4));
        assert_eq!(size_align(&ValType::list(ValType::U64)), (8, 4));
        assert_eq!(
            (
                elem_size(&ValType::String, P64),
                alignment(&ValType::String, P64)
            ),
            (16, 8)
        );
    }

    #[test]
    fn flat_len_is_the_flattened_length() {
        let types = [
            ValType::U8,
            ValType::String,
            ValType::list(ValType::U64),
            ValType::Tuple(vec![ValType::String, ValType::U8, ValType::F64]),
            ValType::option(ValType::String),
            ValType::result(Some(ValType::U32), Some(ValType::String)),
            ValType::result(None, None),
            ValType::enum_(["a", "b"]),
            ValType::record([("x", ValType::U8), ("y", ValType::list(ValType::U8))]),
            ValType::FixedList(alloc::rc::Rc::new(ValType::U16), 3),
            ValType::future(Some(ValType::result(None, Some(ValType::enum_(["e"]))))),
            ValType::Flags(vec!["f".into()]),
        ];
        for t in &types {
            for pt in [P32, P64] {
                assert_eq!(flat_len([t]), flatten_types([t], pt).len(), "{t:?}");
            }
        }
        assert_eq!(flat_len(&types), flatten_types(&types, P32).len());
    }

    #[test]
    fn discriminants() {
        assert_eq!(discriminant_size(1), 1);
        assert_eq!(discriminant_size(2), 1);
        assert_eq!(discriminant_size(256), 1);
        assert_eq!(discriminant_size(257), 2);
        assert_eq!(discriminant_size(65536), 2);
        assert_eq!(discriminant_size(65537), 4);
    }

    #[test]
    fn flags() {
        let f = |n: usize| ValType::Flags((0..n).map(|i| alloc::format!("f{i}")).collect());
        assert_eq!(size_align(&f(1)), (1, 1));
        assert_eq!(size_align(&f(8)), (1, 1));
        assert_eq!(size_align(&f(9)), (2, 2));
        assert_eq!(size_align(&f(16)), (2, 2));
        assert_eq!(size_align(&f(17)), (4, 4));
        assert_eq!(size_align(&f(32)), (4, 4));
        assert_eq!(flatten_type(&f(32), P32), vec![I32]);
    }

    #[test]
    fn records_and_variants() {
        // record { a: u8, b: u32, c: u8 } -> 0, 4, 8; size 12 align 4
        let r = ValType::record([("a", ValType::U8), ("b", ValType::U32), ("c", ValType::U8)]);
        assert_eq!(size_align(&r), (12, 4));
        // tuple<u8, u64> -> size 16 align 8
        assert_eq!(
            size_align(&ValType::Tuple(vec![ValType::U8, ValType::U64])),
            (16, 8)
        );
        // option<u8>: disc 1 + payload 1 = 2
        assert_eq!(size_align(&ValType::option(ValType::U8)), (2, 1));
        // option<u64>: disc padded to 8 + 8 = 16
        assert_eq!(size_align(&ValType::option(ValType::U64)), (16, 8));
        // result<string, u8> (wasm32): 4 + 8 = 12 align 4
        assert_eq!(
            size_align(&ValType::result(Some(ValType::String), Some(ValType::U8))),
            (12, 4)
        );
        // result (no payloads): 1 byte
        assert_eq!(size_align(&ValType::result(None, None)), (1, 1));
        // enum with 300 labels: u16 discriminant
        let e = ValType::Enum((0..300).map(|i| alloc::format!("e{i}")).collect());
        assert_eq!(size_align(&e), (2, 2));
        // fixed list<u16, 3>
        assert_eq!(size_align(&ValType::fixed_list(ValType::U16, 3)), (6, 2));
        assert_eq!(
            flatten_type(&ValType::fixed_list(ValType::U16, 3), P32),
            vec![I32; 3]
        );
    }

    #[test]
    fn join_and_flatten_variants() {
        assert_eq!(join(I32, F32), I32);
        assert_eq!(join(F32, I32), I32);
        assert_eq!(join(F32, F32), F32);
        assert_eq!(join(I32, I64), I64);
        assert_eq!(join(F32, F64), I64);
        assert_eq!(join(F64, I32), I64);
        // the spec's example: variant { a(u32), b(f32), c(u64), d(f64) }
        let v = ValType::variant([
            ("a", Some(ValType::U32)),
            ("b", Some(ValType::F32)),
            ("c", Some(ValType::U64)),
            ("d", Some(ValType::F64)),
        ]);
        assert_eq!(flatten_type(&v, P32), vec![I32, I64]);
        let v = ValType::variant([("a", Some(ValType::F32)), ("b", Some(ValType::F32))]);
        assert_eq!(flatten_type(&v, P32), vec![I32, F32]);
        let v = ValType::variant([
            ("p", Some(ValType::Tuple(vec![ValType::F32, ValType::F32]))),
            ("q", Some(ValType::U32)),
            ("r", None),
        ]);
        assert_eq!(flatten_type(&v, P32), vec![I32, I32, F32]);
        assert_eq!(
            flatten_type(&ValType::option(ValType::String), P64),
            vec![I32, I64, I64]
        );
        assert_eq!(flatten_type(&ValType::enum_(["a", "b"]), P32), vec![I32]);
    }

    #[test]
    fn functype_flattening() {
        let many = FuncType {
            params: vec![ValType::U32; 17],
            result: Some(ValType::String),
            async_: false,
        };
        let sync = FlattenOpts::default();
        let f = flatten_functype(sync, &many, Context::Lift);
        assert_eq!((f.params, f.results), (vec![I32], vec![I32]));
        let f = flatten_functype(sync, &many, Context::Lower);
        assert_eq!((f.params, f.results), (vec![I32, I32], vec![]));

        let sixteen = FuncType {
            params: vec![ValType::U32; 16],
            result: Some(ValType::U64),
            async_: false,
        };
        let f = flatten_functype(sync, &sixteen, Context::Lower);
        assert_eq!((f.params.len(), f.results), (16, vec![I64]));

        let asy = FlattenOpts {
            async_: true,
            ..Default::default()
        };
        let five = FuncType {
            params: vec![ValType::U32; 5],
            result: Some(ValType::U8),
            async_: true,
        };
        let f = flatten_functype(asy, &five, Context::Lower);
        assert_eq!((f.params, f.results), (vec![I32, I32], vec![I32]));
        let four = FuncType {
            params: vec![ValType::U32; 4],
            result: None,
            async_: true,
        };
        let f = flatten_functype(asy, &four, Context::Lower);
        assert_eq!((f.params.len(), f.results), (4, vec![I32]));
        let f = flatten_functype(asy, &five, Context::Lift);
        assert_eq!((f.params.len(), f.results), (5, vec![]));
        let cb = FlattenOpts {
            async_: true,
            callback: true,
            addr: P64,
        };
        let f = flatten_functype(cb, &many, Context::Lift);
        assert_eq!((f.params, f.results), (vec![I64], vec![I32]));
    }
}
