//! Lowering: writing component values into linear memory (`store`) and
//! into flat core values (`lower_flat`, `lower_flat_values`).
//!
//! NaNs: the spec lets a non-deterministic implementation scramble NaN
//! payloads (`maybe_scramble_nan32/64`); this crate follows the
//! `DETERMINISTIC_PROFILE`, so every NaN is lowered as the canonical NaN.

use alloc::vec::Vec;

use crate::error::Trap;
use crate::layout::{
    align_up, alignment, alignment_record, discriminant_size, elem_size, elem_size_record,
    flags_size, flat_len, flatten_type, flatten_variant, max_case_alignment, CoreType,
};
use crate::lift::{check_tuple_ptr, CANONICAL_FLOAT32_NAN, CANONICAL_FLOAT64_NAN};
use crate::memory::Cx;
use crate::strings::{store_string_into_range, REALLOC_I32_MAX};
use crate::types::{Cases, Despecialized as D, Fields, ValType};
use crate::values::{CoreVal, FlatSource, Value};

/// `maybe_scramble_nan32` under `DETERMINISTIC_PROFILE`.
pub fn maybe_scramble_nan32(f: f32) -> f32 {
    if f.is_nan() {
        f32::from_bits(CANONICAL_FLOAT32_NAN)
    } else {
        f
    }
}

/// `maybe_scramble_nan64` under `DETERMINISTIC_PROFILE`.
pub fn maybe_scramble_nan64(f: f64) -> f64 {
    if f.is_nan() {
        f64::from_bits(CANONICAL_FLOAT64_NAN)
    } else {
        f
    }
}

/// `encode_float_as_i32`.
pub fn encode_float_as_i32(f: f32) -> u32 {
    maybe_scramble_nan32(f).to_bits()
}

/// `encode_float_as_i64`.
pub fn encode_float_as_i64(f: f64) -> u64 {
    maybe_scramble_nan64(f).to_bits()
}

fn mismatch(t: &'static str) -> Trap {
    Trap::Mismatch(t)
}

/// `store(cx, v, t, ptr)`.
pub fn store(cx: &mut Cx<'_>, v: &Value, t: &ValType, ptr: u64) -> Result<(), Trap> {
    let pt = cx.addr();
    match (t.despecialize(), v) {
        (D::Bool, Value::Bool(b)) => cx.store_int(u64::from(*b), ptr, 1),
        (D::U8, Value::U8(i)) => cx.store_int(u64::from(*i), ptr, 1),
        (D::U16, Value::U16(i)) => cx.store_int(u64::from(*i), ptr, 2),
        (D::U32, Value::U32(i)) => cx.store_int(u64::from(*i), ptr, 4),
        (D::U64, Value::U64(i)) => cx.store_int(*i, ptr, 8),
        (D::S8, Value::S8(i)) => cx.store_int(*i as u8 as u64, ptr, 1),
        (D::S16, Value::S16(i)) => cx.store_int(*i as u16 as u64, ptr, 2),
        (D::S32, Value::S32(i)) => cx.store_int(*i as u32 as u64, ptr, 4),
        (D::S64, Value::S64(i)) => cx.store_int(*i as u64, ptr, 8),
        (D::F32, Value::F32(f)) => cx.store_int(u64::from(encode_float_as_i32(*f)), ptr, 4),
        (D::F64, Value::F64(f)) => cx.store_int(encode_float_as_i64(*f), ptr, 8),
        (D::Char, Value::Char(c)) => cx.store_int(u64::from(u32::from(*c)), ptr, 4),
        (D::String, Value::String(s)) => {
            let (begin, tagged) = store_string_into_range(cx, s)?;
            cx.store_ptr(begin, ptr)?;
            cx.store_ptr(tagged, ptr + u64::from(pt.ptr_size()))
        }
        (D::ErrorContext, Value::ErrorContext(e)) => {
            let i = cx.handles.lower_error_context(*e)?;
            cx.store_int(u64::from(i), ptr, 4)
        }
        (D::List(t, Some(n)), Value::List(vs)) => {
            if vs.len() as u64 != u64::from(n) {
                return Err(mismatch("fixed-length list of the wrong length"));
            }
            store_list_into_valid_range(cx, vs, ptr, t)
        }
        (D::List(t, None), Value::List(vs)) => {
            let (begin, length) = store_list_into_range(cx, vs, t)?;
            cx.store_ptr(begin, ptr)?;
            cx.store_ptr(length, ptr + u64::from(pt.ptr_size()))
        }
        (D::Record(f), Value::Record(vs)) => store_record(cx, vs, ptr, f),
        (D::Variant(c), Value::Variant(i, payload)) => {
            store_variant(cx, *i, payload.as_deref(), ptr, c)
        }
        (D::Flags(n), Value::Flags(bits)) => {
            let size = flags_size(n);
            cx.store_int(u64::from(pack_flags(*bits, n)), ptr, size)
        }
        (D::Own(rt), Value::Own(rep)) => {
            let i = cx.handles.lower_own(*rep, rt)?;
            cx.store_int(u64::from(i), ptr, 4)
        }
        (D::Borrow(rt), Value::Borrow(rep)) => {
            let i = cx.handles.lower_borrow(*rep, rt)?;
            cx.store_int(u64::from(i), ptr, 4)
        }
        (D::Stream(e), Value::Stream(s)) => {
            let i = cx.handles.lower_stream(*s, e)?;
            cx.store_int(u64::from(i), ptr, 4)
        }
        (D::Future(e), Value::Future(s)) => {
            let i = cx.handles.lower_future(*s, e)?;
            cx.store_int(u64::from(i), ptr, 4)
        }
        _ => Err(mismatch("value does not match the type being stored")),
    }
}

/// `pack_flags_into_int`: only the bits of declared labels are kept.
pub fn pack_flags(bits: u32, n: usize) -> u32 {
    crate::lift::unpack_flags_from_int(u64::from(bits), n)
}

/// `store_list_into_range`: `realloc` room for the elements, check the
/// result, store them; returns `(ptr, length)`.
pub fn store_list_into_range(
    cx: &mut Cx<'_>,
    vs: &[Value],
    t: &ValType,
) -> Result<(u64, u64), Trap> {
    let pt = cx.addr();
    let byte_length = (vs.len() as u64)
        .checked_mul(elem_size(t, pt))
        .filter(|&n| n <= REALLOC_I32_MAX)
        .ok_or(Trap::ListTooLong { byte_len: u64::MAX })?;
    let ptr = cx.allocate(alignment(t, pt), byte_length)?;
    store_list_into_valid_range(cx, vs, ptr, t)?;
    Ok((ptr, vs.len() as u64))
}

/// `store_list_into_valid_range`.
pub fn store_list_into_valid_range(
    cx: &mut Cx<'_>,
    vs: &[Value],
    ptr: u64,
    t: &ValType,
) -> Result<(), Trap> {
    let size = elem_size(t, cx.addr());
    for (i, v) in vs.iter().enumerate() {
        store(cx, v, t, ptr + i as u64 * size)?;
    }
    Ok(())
}

/// The spilled half of `lower_flat_values`: results of types `ts`, whose
/// tuple has `layout` ([`crate::lift::tuple_layout`], computed once per
/// signature), stored at the caller's out-pointer `ptr`.
pub fn store_results(
    cx: &mut Cx<'_>,
    vs: &[Value],
    ts: &[ValType],
    layout: (u32, u64),
    ptr: u64,
) -> Result<(), Trap> {
    crate::lift::check_ptr(cx, ptr, layout, "result out-param")?;
    store_record(cx, vs, ptr, Fields::Tuple(ts))
}

/// `store_results` of one record (or tuple) whose field offsets were
/// worked out beforehand ([`crate::layout::field_offsets`]).
pub fn store_record_results(
    cx: &mut Cx<'_>,
    v: &Value,
    f: Fields<'_>,
    offsets: &[u64],
    layout: (u32, u64),
    ptr: u64,
) -> Result<(), Trap> {
    crate::lift::check_ptr(cx, ptr, layout, "result out-param")?;
    let Value::Record(vs) = v else {
        return Err(mismatch("value does not match the type being stored"));
    };
    if vs.len() != f.len() || offsets.len() != f.len() {
        return Err(mismatch("record with the wrong number of fields"));
    }
    for ((t, v), off) in f.types().zip(vs).zip(offsets) {
        store(cx, v, t, ptr + off)?;
    }
    Ok(())
}

fn store_record(cx: &mut Cx<'_>, vs: &[Value], mut ptr: u64, f: Fields<'_>) -> Result<(), Trap> {
    if vs.len() != f.len() {
        return Err(mismatch("record with the wrong number of fields"));
    }
    let pt = cx.addr();
    for (t, v) in f.types().zip(vs) {
        ptr = align_up(ptr, alignment(t, pt));
        store(cx, v, t, ptr)?;
        ptr += elem_size(t, pt);
    }
    Ok(())
}

fn check_case<'a>(
    c: Cases<'a>,
    i: u32,
    payload: Option<&Value>,
) -> Result<Option<&'a ValType>, Trap> {
    if i as usize >= c.len() {
        return Err(mismatch("variant case index out of range"));
    }
    let t = c.payload(i as usize);
    if t.is_some() != payload.is_some() {
        return Err(mismatch("variant payload presence does not match the case"));
    }
    Ok(t)
}

fn store_variant(
    cx: &mut Cx<'_>,
    i: u32,
    payload: Option<&Value>,
    mut ptr: u64,
    c: Cases<'_>,
) -> Result<(), Trap> {
    let t = check_case(c, i, payload)?;
    let disc_size = discriminant_size(c.len());
    cx.store_int(u64::from(i), ptr, disc_size)?;
    ptr += u64::from(disc_size);
    ptr = align_up(ptr, max_case_alignment(c, cx.addr()));
    if let (Some(t), Some(v)) = (t, payload) {
        store(cx, v, t, ptr)?;
    }
    Ok(())
}

/// `lower_flat(cx, v, t)`: appends the flat values of `v` to `out`.
pub fn lower_flat(
    cx: &mut Cx<'_>,
    v: &Value,
    t: &ValType,
    out: &mut Vec<CoreVal>,
) -> Result<(), Trap> {
    let pt = cx.addr();
    let x = match (t.despecialize(), v) {
        (D::Bool, Value::Bool(b)) => CoreVal::I32(u32::from(*b)),
        (D::U8, Value::U8(i)) => CoreVal::I32(u32::from(*i)),
        (D::U16, Value::U16(i)) => CoreVal::I32(u32::from(*i)),
        (D::U32, Value::U32(i)) => CoreVal::I32(*i),
        (D::U64, Value::U64(i)) => CoreVal::I64(*i),
        // lower_flat_signed: two's complement in the core width.
        (D::S8, Value::S8(i)) => CoreVal::I32(i32::from(*i) as u32),
        (D::S16, Value::S16(i)) => CoreVal::I32(i32::from(*i) as u32),
        (D::S32, Value::S32(i)) => CoreVal::I32(*i as u32),
        (D::S64, Value::S64(i)) => CoreVal::I64(*i as u64),
        (D::F32, Value::F32(f)) => CoreVal::F32(maybe_scramble_nan32(*f)),
        (D::F64, Value::F64(f)) => CoreVal::F64(maybe_scramble_nan64(*f)),
        (D::Char, Value::Char(c)) => CoreVal::I32(u32::from(*c)),
        (D::String, Value::String(s)) => {
            let (ptr, packed_length) = store_string_into_range(cx, s)?;
            out.push(CoreVal::ptr(pt, ptr));
            CoreVal::ptr(pt, packed_length)
        }
        (D::ErrorContext, Value::ErrorContext(e)) => {
            CoreVal::I32(cx.handles.lower_error_context(*e)?)
        }
        (D::List(t, Some(n)), Value::List(vs)) => {
            if vs.len() as u64 != u64::from(n) {
                return Err(mismatch("fixed-length list of the wrong length"));
            }
            for v in vs {
                lower_flat(cx, v, t, out)?;
            }
            return Ok(());
        }
        (D::List(t, None), Value::List(vs)) => {
            let (ptr, length) = store_list_into_range(cx, vs, t)?;
            out.push(CoreVal::ptr(pt, ptr));
            CoreVal::ptr(pt, length)
        }
        (D::Record(f), Value::Record(vs)) => {
            if vs.len() != f.len() {
                return Err(mismatch("record with the wrong number of fields"));
            }
            for (t, v) in f.types().zip(vs) {
                lower_flat(cx, v, t, out)?;
            }
            return Ok(());
        }
        (D::Variant(c), Value::Variant(i, payload)) => {
            return lower_flat_variant(cx, *i, payload.as_deref(), c, out);
        }
        (D::Flags(n), Value::Flags(bits)) => CoreVal::I32(pack_flags(*bits, n)),
        (D::Own(rt), Value::Own(rep)) => CoreVal::I32(cx.handles.lower_own(*rep, rt)?),
        (D::Borrow(rt), Value::Borrow(rep)) => CoreVal::I32(cx.handles.lower_borrow(*rep, rt)?),
        (D::Stream(e), Value::Stream(s)) => CoreVal::I32(cx.handles.lower_stream(*s, e)?),
        (D::Future(e), Value::Future(s)) => CoreVal::I32(cx.handles.lower_future(*s, e)?),
        _ => return Err(mismatch("value does not match the type being lowered")),
    };
    out.push(x);
    Ok(())
}

/// `lower_flat_variant`: discriminant, payload coerced to the joined slot
/// types, then zeros for the unused slots.
fn lower_flat_variant(
    cx: &mut Cx<'_>,
    i: u32,
    payload: Option<&Value>,
    c: Cases<'_>,
    out: &mut Vec<CoreVal>,
) -> Result<(), Trap> {
    use CoreType as T;
    let t = check_case(c, i, payload)?;
    let flat_types = flatten_variant(c, cx.addr());
    out.push(CoreVal::I32(i));
    let mut n = 0;
    if let (Some(t), Some(v)) = (t, payload) {
        let mut vals = Vec::new();
        lower_flat(cx, v, t, &mut vals)?;
        let have = flatten_type(t, cx.addr());
        debug_assert_eq!(have.len(), vals.len());
        for (fv, want) in vals.into_iter().zip(&flat_types[1..]) {
            out.push(match (fv, want) {
                (CoreVal::F32(f), T::I32) => CoreVal::I32(encode_float_as_i32(f)),
                (CoreVal::I32(x), T::I64) => CoreVal::I64(u64::from(x)),
                (CoreVal::F32(f), T::I64) => CoreVal::I64(u64::from(encode_float_as_i32(f))),
                (CoreVal::F64(f), T::I64) => CoreVal::I64(encode_float_as_i64(f)),
                (fv, &want) if fv.ty() == want => fv,
                _ => {
                    return Err(mismatch(
                        "variant payload does not fit its joined flat type",
                    ))
                }
            });
            n += 1;
        }
    }
    for &t in &flat_types[1 + n..] {
        out.push(CoreVal::zero(t));
    }
    Ok(())
}

/// `lower_flat_values(cx, max_flat, vs, ts, out_param)`: flat if at most
/// `max_flat` core values; otherwise the tuple is stored in memory, either
/// at a fresh `realloc` allocation (returned as the one flat value) or,
/// given `out_param`, at the pointer read from it (nothing returned).
pub fn lower_flat_values(
    cx: &mut Cx<'_>,
    max_flat: usize,
    vs: &[Value],
    ts: &[ValType],
    out_param: Option<&mut dyn FlatSource>,
) -> Result<Vec<CoreVal>, Trap> {
    let pt = cx.addr();
    if vs.len() != ts.len() {
        return Err(mismatch("wrong number of values"));
    }
    let n = flat_len(ts);
    if n > max_flat {
        let tuple = Fields::Tuple(ts);
        let (ptr, flat_vals) = match out_param {
            None => {
                let ptr = cx.allocate(alignment_record(tuple, pt), elem_size_record(tuple, pt))?;
                (ptr, alloc::vec![CoreVal::ptr(pt, ptr)])
            }
            Some(out) => (out.next_ptr(pt)?, Vec::new()),
        };
        check_tuple_ptr(cx, ptr, tuple, "result out-param")?;
        store_record(cx, vs, ptr, tuple)?;
        Ok(flat_vals)
    } else {
        let mut flat = Vec::with_capacity(n);
        for (v, t) in vs.iter().zip(ts) {
            lower_flat(cx, v, t, &mut flat)?;
        }
        Ok(flat)
    }
}
