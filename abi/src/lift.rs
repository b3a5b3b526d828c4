//! Lifting: reading component values out of linear memory (`load`) and out
//! of flat core values (`lift_flat`, `lift_flat_values`).

use alloc::boxed::Box;
use alloc::vec::Vec;

use crate::error::Trap;
use crate::layout::{
    align_up, alignment, alignment_record, discriminant_size, elem_size, elem_size_record,
    flags_size, flat_len, flatten_variant, is_aligned, max_case_alignment, CoreType,
};
use crate::memory::Cx;
use crate::strings::load_string_from_range;
use crate::types::{Cases, Despecialized as D, Fields, ValType};
use crate::values::{CoreVal, FlatSource, Value};

/// `MAX_LIST_BYTE_LENGTH`.
pub const MAX_LIST_BYTE_LENGTH: u64 = (1 << 28) - 1;

/// `CANONICAL_FLOAT32_NAN`.
pub const CANONICAL_FLOAT32_NAN: u32 = 0x7fc0_0000;
/// `CANONICAL_FLOAT64_NAN`.
pub const CANONICAL_FLOAT64_NAN: u64 = 0x7ff8_0000_0000_0000;

/// `canonicalize_nan32`: every NaN becomes the canonical NaN.
pub fn canonicalize_nan32(f: f32) -> f32 {
    if f.is_nan() {
        f32::from_bits(CANONICAL_FLOAT32_NAN)
    } else {
        f
    }
}

/// `canonicalize_nan64`.
pub fn canonicalize_nan64(f: f64) -> f64 {
    if f.is_nan() {
        f64::from_bits(CANONICAL_FLOAT64_NAN)
    } else {
        f
    }
}

/// `decode_i32_as_float`.
pub fn decode_i32_as_float(i: u32) -> f32 {
    canonicalize_nan32(f32::from_bits(i))
}

/// `decode_i64_as_float`.
pub fn decode_i64_as_float(i: u64) -> f64 {
    canonicalize_nan64(f64::from_bits(i))
}

/// `convert_i32_to_char`: traps on surrogates and values above U+10FFFF.
pub fn convert_i32_to_char(i: u32) -> Result<char, Trap> {
    char::from_u32(i).ok_or(Trap::InvalidChar(i))
}

/// `convert_int_to_bool`: any non-zero value is `true` (no trap).
pub fn convert_int_to_bool(i: u64) -> bool {
    i != 0
}

/// `unpack_flags_from_int`: only the low `n` bits are kept.
pub fn unpack_flags_from_int(i: u64, n: usize) -> u32 {
    let mask = if n >= 32 { u32::MAX } else { (1u32 << n) - 1 };
    (i as u32) & mask
}

/// `load(cx, ptr, t)`. The caller has checked alignment and bounds of
/// `[ptr, ptr + elem_size(t))` (the spec asserts it); this still refuses
/// an out-of-bounds access instead of panicking.
pub fn load(cx: &mut Cx<'_>, ptr: u64, t: &ValType) -> Result<Value, Trap> {
    let pt = cx.addr();
    Ok(match t.despecialize() {
        D::Bool => Value::Bool(convert_int_to_bool(cx.load_int(ptr, 1)?)),
        D::U8 => Value::U8(cx.load_int(ptr, 1)? as u8),
        D::U16 => Value::U16(cx.load_int(ptr, 2)? as u16),
        D::U32 => Value::U32(cx.load_int(ptr, 4)? as u32),
        D::U64 => Value::U64(cx.load_int(ptr, 8)?),
        D::S8 => Value::S8(cx.load_int(ptr, 1)? as u8 as i8),
        D::S16 => Value::S16(cx.load_int(ptr, 2)? as u16 as i16),
        D::S32 => Value::S32(cx.load_int(ptr, 4)? as u32 as i32),
        D::S64 => Value::S64(cx.load_int(ptr, 8)? as i64),
        D::F32 => Value::F32(decode_i32_as_float(cx.load_int(ptr, 4)? as u32)),
        D::F64 => Value::F64(decode_i64_as_float(cx.load_int(ptr, 8)?)),
        D::Char => Value::Char(convert_i32_to_char(cx.load_int(ptr, 4)? as u32)?),
        D::String => {
            let begin = cx.load_ptr(ptr)?;
            let tagged = cx.load_ptr(ptr + u64::from(pt.ptr_size()))?;
            Value::String(load_string_from_range(cx, begin, tagged)?)
        }
        D::ErrorContext => {
            Value::ErrorContext(cx.handles.lift_error_context(cx.load_int(ptr, 4)? as u32)?)
        }
        D::List(t, Some(n)) => Value::List(load_list_from_valid_range(cx, ptr, u64::from(n), t)?),
        D::List(t, None) => {
            let begin = cx.load_ptr(ptr)?;
            let length = cx.load_ptr(ptr + u64::from(pt.ptr_size()))?;
            Value::List(load_list_from_range(cx, begin, length, t)?)
        }
        D::Record(f) => load_record(cx, ptr, f)?,
        D::Variant(c) => load_variant(cx, ptr, c)?,
        D::Flags(n) => Value::Flags(unpack_flags_from_int(cx.load_int(ptr, flags_size(n))?, n)),
        D::Own(rt) => Value::Own(cx.handles.lift_own(cx.load_int(ptr, 4)? as u32, rt)?),
        D::Borrow(rt) => Value::Borrow(cx.handles.lift_borrow(cx.load_int(ptr, 4)? as u32, rt)?),
        D::Stream(e) => Value::Stream(
            cx.handles
                .lift_stream(cx.load_int(ptr, 4)? as u32, e.map(|t| &**t))?,
        ),
        D::Future(e) => Value::Future(
            cx.handles
                .lift_future(cx.load_int(ptr, 4)? as u32, e.map(|t| &**t))?,
        ),
    })
}

/// `load_list_from_range`: checks MAX_LIST_BYTE_LENGTH, alignment and
/// bounds, then loads `length` elements.
pub fn load_list_from_range(
    cx: &mut Cx<'_>,
    ptr: u64,
    length: u64,
    t: &ValType,
) -> Result<Vec<Value>, Trap> {
    let pt = cx.addr();
    let byte_len = length.saturating_mul(elem_size(t, pt));
    if byte_len > MAX_LIST_BYTE_LENGTH {
        return Err(Trap::ListTooLong { byte_len });
    }
    let align = alignment(t, pt);
    if !is_aligned(ptr, align) {
        return Err(Trap::UnalignedPointer {
            what: "list",
            ptr,
            align,
        });
    }
    let mem_len = cx.mem_len()?;
    if ptr.checked_add(byte_len).is_none_or(|e| e > mem_len) {
        return Err(Trap::ListOutOfBounds {
            ptr,
            byte_len,
            mem_len,
        });
    }
    load_list_from_valid_range(cx, ptr, length, t)
}

/// `load_list_from_valid_range`.
pub fn load_list_from_valid_range(
    cx: &mut Cx<'_>,
    ptr: u64,
    length: u64,
    t: &ValType,
) -> Result<Vec<Value>, Trap> {
    let size = elem_size(t, cx.addr());
    let mut a = Vec::with_capacity(length.min(1 << 16) as usize);
    for i in 0..length {
        a.push(load(cx, ptr + i * size, t)?);
    }
    Ok(a)
}

fn load_record(cx: &mut Cx<'_>, mut ptr: u64, f: Fields<'_>) -> Result<Value, Trap> {
    let pt = cx.addr();
    let mut vs = Vec::with_capacity(f.len());
    for t in f.types() {
        ptr = align_up(ptr, alignment(t, pt));
        vs.push(load(cx, ptr, t)?);
        ptr += elem_size(t, pt);
    }
    Ok(Value::Record(vs))
}

fn load_variant(cx: &mut Cx<'_>, mut ptr: u64, c: Cases<'_>) -> Result<Value, Trap> {
    let pt = cx.addr();
    let disc_size = discriminant_size(c.len());
    let case_index = cx.load_int(ptr, disc_size)?;
    ptr += u64::from(disc_size);
    if case_index >= c.len() as u64 {
        return Err(Trap::InvalidDiscriminant {
            index: case_index as u32,
            cases: c.len() as u32,
        });
    }
    ptr = align_up(ptr, max_case_alignment(c, pt));
    let payload = match c.payload(case_index as usize) {
        None => None,
        Some(t) => Some(Box::new(load(cx, ptr, t)?)),
    };
    Ok(Value::Variant(case_index as u32, payload))
}

/// `lift_flat(cx, vi, t)`.
pub fn lift_flat(cx: &mut Cx<'_>, vi: &mut dyn FlatSource, t: &ValType) -> Result<Value, Trap> {
    let pt = cx.addr();
    Ok(match t.despecialize() {
        D::Bool => Value::Bool(convert_int_to_bool(u64::from(vi.next_i32()?))),
        // lift_flat_unsigned / lift_flat_signed: keep the low t_width bits.
        D::U8 => Value::U8(vi.next_i32()? as u8),
        D::U16 => Value::U16(vi.next_i32()? as u16),
        D::U32 => Value::U32(vi.next_i32()?),
        D::U64 => Value::U64(vi.next_i64()?),
        D::S8 => Value::S8(vi.next_i32()? as u8 as i8),
        D::S16 => Value::S16(vi.next_i32()? as u16 as i16),
        D::S32 => Value::S32(vi.next_i32()? as i32),
        D::S64 => Value::S64(vi.next_i64()? as i64),
        D::F32 => match vi.next(CoreType::F32)? {
            CoreVal::F32(f) => Value::F32(canonicalize_nan32(f)),
            _ => return Err(Trap::Mismatch("expected an f32 core value")),
        },
        D::F64 => match vi.next(CoreType::F64)? {
            CoreVal::F64(f) => Value::F64(canonicalize_nan64(f)),
            _ => return Err(Trap::Mismatch("expected an f64 core value")),
        },
        D::Char => Value::Char(convert_i32_to_char(vi.next_i32()?)?),
        D::String => {
            let ptr = vi.next_ptr(pt)?;
            let packed_length = vi.next_ptr(pt)?;
            Value::String(load_string_from_range(cx, ptr, packed_length)?)
        }
        D::ErrorContext => Value::ErrorContext(cx.handles.lift_error_context(vi.next_i32()?)?),
        D::List(t, Some(n)) => {
            let mut a = Vec::with_capacity(n as usize);
            for _ in 0..n {
                a.push(lift_flat(cx, vi, t)?);
            }
            Value::List(a)
        }
        D::List(t, None) => {
            let ptr = vi.next_ptr(pt)?;
            let length = vi.next_ptr(pt)?;
            Value::List(load_list_from_range(cx, ptr, length, t)?)
        }
        D::Record(f) => {
            let mut vs = Vec::with_capacity(f.len());
            for t in f.types() {
                vs.push(lift_flat(cx, vi, t)?);
            }
            Value::Record(vs)
        }
        D::Variant(c) => lift_flat_variant(cx, vi, c)?,
        D::Flags(n) => Value::Flags(unpack_flags_from_int(u64::from(vi.next_i32()?), n)),
        D::Own(rt) => Value::Own(cx.handles.lift_own(vi.next_i32()?, rt)?),
        D::Borrow(rt) => Value::Borrow(cx.handles.lift_borrow(vi.next_i32()?, rt)?),
        D::Stream(e) => Value::Stream(cx.handles.lift_stream(vi.next_i32()?, e.map(|t| &**t))?),
        D::Future(e) => Value::Future(cx.handles.lift_future(vi.next_i32()?, e.map(|t| &**t))?),
    })
}

/// `CoerceValueIter` of `lift_flat_variant`: reads the joined slot type
/// (`have`) and converts to the case's own type (`want`).
struct CoerceValueIter<'v, 't> {
    vi: &'v mut dyn FlatSource,
    flat_types: core::slice::Iter<'t, CoreType>,
}

impl FlatSource for CoerceValueIter<'_, '_> {
    fn next(&mut self, want: CoreType) -> Result<CoreVal, Trap> {
        use CoreType::*;
        let have = *self
            .flat_types
            .next()
            .ok_or(Trap::Mismatch("variant payload wider than its flattening"))?;
        let x = self.vi.next(have)?;
        Ok(match (x, want) {
            (CoreVal::I32(x), F32) => CoreVal::F32(decode_i32_as_float(x)),
            (CoreVal::I64(x), I32) => CoreVal::I32(x as u32),
            (CoreVal::I64(x), F32) => CoreVal::F32(decode_i32_as_float(x as u32)),
            (CoreVal::I64(x), F64) => CoreVal::F64(decode_i64_as_float(x)),
            (x, want) if x.ty() == want => x,
            _ => {
                return Err(Trap::Mismatch(
                    "variant payload does not fit its joined flat type",
                ))
            }
        })
    }
}

/// `lift_flat_variant`.
fn lift_flat_variant(
    cx: &mut Cx<'_>,
    vi: &mut dyn FlatSource,
    c: Cases<'_>,
) -> Result<Value, Trap> {
    let flat_types = flatten_variant(c, cx.addr());
    let case_index = vi.next_i32()?;
    if case_index as usize >= c.len() {
        return Err(Trap::InvalidDiscriminant {
            index: case_index,
            cases: c.len() as u32,
        });
    }
    let mut rest = flat_types[1..].iter();
    let payload = match c.payload(case_index as usize) {
        None => None,
        Some(t) => {
            let mut co = CoerceValueIter {
                vi: &mut *vi,
                flat_types: rest.clone(),
            };
            let v = lift_flat(cx, &mut co, t)?;
            rest = co.flat_types;
            Some(Box::new(v))
        }
    };
    for &have in rest {
        vi.next(have)?;
    }
    Ok(Value::Variant(case_index, payload))
}

/// `lift_flat_values(cx, max_flat, vi, ts)`: flat if at most `max_flat`
/// core values, else one pointer to a tuple in memory.
pub fn lift_flat_values(
    cx: &mut Cx<'_>,
    max_flat: usize,
    vi: &mut dyn FlatSource,
    ts: &[ValType],
) -> Result<Vec<Value>, Trap> {
    let pt = cx.addr();
    if flat_len(ts) > max_flat {
        let ptr = vi.next_ptr(pt)?;
        let tuple = Fields::Tuple(ts);
        check_tuple_ptr(cx, ptr, tuple, "spilled values")?;
        match load_record(cx, ptr, tuple)? {
            Value::Record(vs) => Ok(vs),
            _ => unreachable!("a tuple loads as a record"),
        }
    } else {
        ts.iter().map(|t| lift_flat(cx, vi, t)).collect()
    }
}

/// The alignment and bounds checks of a spilled tuple pointer.
pub(crate) fn check_tuple_ptr(
    cx: &Cx<'_>,
    ptr: u64,
    tuple: Fields<'_>,
    what: &'static str,
) -> Result<(), Trap> {
    let pt = cx.addr();
    check_ptr(cx, ptr, tuple_layout(tuple, pt), what)
}

/// The alignment and size of a tuple of `fields` (for [`check_ptr`]).
pub fn tuple_layout(fields: Fields<'_>, pt: crate::types::AddrType) -> (u32, u64) {
    (alignment_record(fields, pt), elem_size_record(fields, pt))
}

/// The alignment and bounds checks of a pointer to a value of the given
/// `(alignment, size)`.
pub fn check_ptr(
    cx: &Cx<'_>,
    ptr: u64,
    layout: (u32, u64),
    what: &'static str,
) -> Result<(), Trap> {
    check_ptr_in(cx.mem_len()?, ptr, layout, what)
}

/// [`check_ptr`] against a memory of `mem_len` bytes (for callers that
/// hold the memory without a [`Cx`]).
pub fn check_ptr_in(
    mem_len: u64,
    ptr: u64,
    (align, size): (u32, u64),
    what: &'static str,
) -> Result<(), Trap> {
    if !is_aligned(ptr, align) {
        return Err(Trap::UnalignedPointer { what, ptr, align });
    }
    if ptr.checked_add(size).is_none_or(|e| e > mem_len) {
        return Err(Trap::OutOfBounds {
            what,
            ptr,
            byte_len: size,
            mem_len,
        });
    }
    Ok(())
}
