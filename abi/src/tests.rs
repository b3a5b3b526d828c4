//! Cross-module tests: lift/lower/strings against a byte-vector memory and a
//! bump `realloc` that records its calls. Cases mirror the spec's examples
//! and the conformance files under component-model/test/values.
#![allow(clippy::ptr_arg)] // `Vec<u8>` is the test `Memory`

use alloc::boxed::Box;
use alloc::string::ToString;
use alloc::vec;
use alloc::vec::Vec;

use crate::layout::CoreType;
use crate::lift::{lift_flat, lift_flat_values, load};
use crate::lower::{lower_flat, lower_flat_values, store};
use crate::memory::{Cx, Memory, NoHandles, Options, Realloc};
use crate::strings::{load_string_from_range, store_string_into_range, utf16_tag};
use crate::types::{AddrType, ResourceType, ValType};
use crate::values::{CoreVal, CoreValueIter, StringEncoding, Value, WasmString};
use crate::Trap;

/// A bump allocator: fresh blocks from `next`; shrinking keeps the block,
/// growing moves it (copying the old bytes) like a real allocator.
#[derive(Default)]
struct Bump {
    next: u64,
    calls: Vec<(u64, u64, u32, u64)>,
    /// Return this instead of a real block (to test the result checks).
    force: Option<u64>,
}

impl Realloc for Bump {
    fn realloc(
        &mut self,
        mem: &mut dyn Memory,
        old: u64,
        old_size: u64,
        align: u32,
        new_size: u64,
    ) -> Result<u64, Trap> {
        self.calls.push((old, old_size, align, new_size));
        if let Some(p) = self.force {
            return Ok(p);
        }
        if old != 0 && new_size <= old_size {
            return Ok(old);
        }
        let a = u64::from(align);
        let p = self.next.div_ceil(a) * a;
        self.next = p + new_size.max(1);
        if old != 0 {
            let m = mem.bytes_mut();
            m.copy_within(old as usize..(old + old_size) as usize, p as usize);
        }
        Ok(p)
    }
}

fn opts(enc: StringEncoding) -> Options {
    Options {
        string_encoding: enc,
        addr: AddrType::I32,
    }
}

fn with_cx<R>(mem: &mut Vec<u8>, ra: &mut Bump, o: Options, f: impl FnOnce(&mut Cx<'_>) -> R) -> R {
    let mut h = NoHandles;
    let mut cx = Cx::new(o, Some(mem), Some(ra), &mut h);
    f(&mut cx)
}

fn lift1(mem: &mut Vec<u8>, o: Options, t: &ValType, flat: &[CoreVal]) -> Result<Value, Trap> {
    let mut ra = Bump::default();
    with_cx(mem, &mut ra, o, |cx| {
        let mut vi = CoreValueIter::new(flat);
        let v = lift_flat(cx, &mut vi, t)?;
        assert!(vi.done(), "all flat values consumed");
        Ok(v)
    })
}

fn lower1(
    mem: &mut Vec<u8>,
    ra: &mut Bump,
    o: Options,
    t: &ValType,
    v: &Value,
) -> Result<Vec<CoreVal>, Trap> {
    with_cx(mem, ra, o, |cx| {
        let mut out = Vec::new();
        lower_flat(cx, v, t, &mut out)?;
        Ok(out)
    })
}

const UTF8: StringEncoding = StringEncoding::Utf8;
const UTF16: StringEncoding = StringEncoding::Utf16;
const COMPACT: StringEncoding = StringEncoding::CompactUtf16;

fn msg(t: Trap) -> alloc::string::String {
    t.to_string()
}

#[test]
fn bool_nonzero_is_true() {
    let mut mem = vec![0u8, 1, 2, 255];
    let o = opts(UTF8);
    for (i, want) in [(0u64, false), (1, true), (2, true), (3, true)] {
        let mut ra = Bump::default();
        let v = with_cx(&mut mem, &mut ra, o, |cx| load(cx, i, &ValType::Bool)).unwrap();
        assert_eq!(v, Value::Bool(want));
    }
    assert_eq!(
        lift1(&mut mem, o, &ValType::Bool, &[CoreVal::I32(2)]),
        Ok(Value::Bool(true))
    );
    assert_eq!(
        lift1(&mut mem, o, &ValType::Bool, &[CoreVal::I32(0)]),
        Ok(Value::Bool(false))
    );
}

#[test]
fn char_validity() {
    let mut mem = vec![0u8; 8];
    let o = opts(UTF8);
    for bad in [0xD800u32, 0xDFFF, 0x110000, u32::MAX] {
        let e = lift1(&mut mem, o, &ValType::Char, &[CoreVal::I32(bad)]).unwrap_err();
        assert_eq!(e, Trap::InvalidChar(bad));
        assert!(msg(e).contains("invalid `char` bit pattern"));
    }
    for good in [0u32, 0xD7FF, 0xE000, 0x10FFFF] {
        let v = lift1(&mut mem, o, &ValType::Char, &[CoreVal::I32(good)]).unwrap();
        assert_eq!(v, Value::Char(char::from_u32(good).unwrap()));
    }
    // in memory, too
    mem[4..8].copy_from_slice(&0xD800u32.to_le_bytes());
    let mut ra = Bump::default();
    let e = with_cx(&mut mem, &mut ra, o, |cx| load(cx, 4, &ValType::Char));
    assert_eq!(e, Err(Trap::InvalidChar(0xD800)));
}

#[test]
fn integers_wrap_to_width() {
    let mut mem = vec![];
    let o = opts(UTF8);
    let l = |mem: &mut Vec<u8>, t: ValType, v: CoreVal| lift1(mem, o, &t, &[v]).unwrap();
    assert_eq!(
        l(&mut mem, ValType::U8, CoreVal::I32(0x1ff)),
        Value::U8(0xff)
    );
    assert_eq!(l(&mut mem, ValType::S8, CoreVal::I32(0xff)), Value::S8(-1));
    assert_eq!(
        l(&mut mem, ValType::S8, CoreVal::I32(0x180)),
        Value::S8(-128)
    );
    assert_eq!(
        l(&mut mem, ValType::U16, CoreVal::I32(0x12345)),
        Value::U16(0x2345)
    );
    assert_eq!(
        l(&mut mem, ValType::S16, CoreVal::I32(0x8000)),
        Value::S16(-32768)
    );
    assert_eq!(
        l(&mut mem, ValType::S32, CoreVal::I32(u32::MAX)),
        Value::S32(-1)
    );
    assert_eq!(
        l(&mut mem, ValType::S64, CoreVal::I64(u64::MAX)),
        Value::S64(-1)
    );
    assert_eq!(
        l(&mut mem, ValType::U64, CoreVal::I64(u64::MAX)),
        Value::U64(u64::MAX)
    );
    let mut ra = Bump::default();
    assert_eq!(
        lower1(&mut mem, &mut ra, o, &ValType::S8, &Value::S8(-1)),
        Ok(vec![CoreVal::I32(u32::MAX)])
    );
    assert_eq!(
        lower1(&mut mem, &mut ra, o, &ValType::S64, &Value::S64(-2)),
        Ok(vec![CoreVal::I64(u64::MAX - 1)])
    );
    // a core value of the wrong type is a host error, not a guest trap
    assert!(matches!(
        lift1(&mut mem, o, &ValType::U32, &[CoreVal::I64(1)]),
        Err(Trap::Mismatch(_))
    ));
}

#[test]
fn nans_are_canonicalised() {
    let mut mem = vec![0u8; 16];
    let o = opts(UTF8);
    let nan32 = f32::from_bits(0x7fc0_1234);
    let v = lift1(&mut mem, o, &ValType::F32, &[CoreVal::F32(nan32)]).unwrap();
    let Value::F32(f) = v else { panic!() };
    assert_eq!(f.to_bits(), 0x7fc0_0000);
    let nan64 = f64::from_bits(0xfff0_0000_0000_0001);
    let Value::F64(f) = lift1(&mut mem, o, &ValType::F64, &[CoreVal::F64(nan64)]).unwrap() else {
        panic!()
    };
    assert_eq!(f.to_bits(), 0x7ff8_0000_0000_0000);
    // lowering (deterministic profile) and storing
    let mut ra = Bump::default();
    let out = lower1(&mut mem, &mut ra, o, &ValType::F32, &Value::F32(nan32)).unwrap();
    assert!(out[0].bits_eq(&CoreVal::F32(f32::from_bits(0x7fc0_0000))));
    with_cx(&mut mem, &mut ra, o, |cx| {
        store(cx, &Value::F64(nan64), &ValType::F64, 8)
    })
    .unwrap();
    assert_eq!(
        u64::from_le_bytes(mem[8..16].try_into().unwrap()),
        0x7ff8_0000_0000_0000
    );
    // loading a NaN from memory
    mem[0..4].copy_from_slice(&0xffc0_0001u32.to_le_bytes());
    let Value::F32(f) = with_cx(&mut mem, &mut ra, o, |cx| load(cx, 0, &ValType::F32)).unwrap()
    else {
        panic!()
    };
    assert_eq!(f.to_bits(), 0x7fc0_0000);
    // non-NaN values keep their bits (negative zero)
    let Value::F32(f) = lift1(&mut mem, o, &ValType::F32, &[CoreVal::F32(-0.0)]).unwrap() else {
        panic!()
    };
    assert_eq!(f.to_bits(), 0x8000_0000);
}

fn flat_mix() -> ValType {
    // variants.wast "flat-mix": variant { a(u32), b(f32), c(u64), d(f64) }
    ValType::variant([
        ("a", Some(ValType::U32)),
        ("b", Some(ValType::F32)),
        ("c", Some(ValType::U64)),
        ("d", Some(ValType::F64)),
    ])
}

#[test]
fn variant_join_roundtrip() {
    let mut mem = vec![];
    let o = opts(UTF8);
    let t = flat_mix();
    let mut ra = Bump::default();
    let cases = [
        (
            Value::Variant(0, Some(Box::new(Value::U32(42)))),
            vec![CoreVal::I32(0), CoreVal::I64(42)],
        ),
        (
            Value::Variant(1, Some(Box::new(Value::F32(5.0)))),
            vec![CoreVal::I32(1), CoreVal::I64(u64::from(5.0f32.to_bits()))],
        ),
        (
            Value::Variant(2, Some(Box::new(Value::U64(u64::MAX)))),
            vec![CoreVal::I32(2), CoreVal::I64(u64::MAX)],
        ),
        (
            Value::Variant(3, Some(Box::new(Value::F64(9.0)))),
            vec![CoreVal::I32(3), CoreVal::I64(9.0f64.to_bits())],
        ),
    ];
    for (v, flat) in cases {
        let out = lower1(&mut mem, &mut ra, o, &t, &v).unwrap();
        assert_eq!(out, flat);
        assert_eq!(lift1(&mut mem, o, &t, &out), Ok(v));
    }
    // an i64 slot read as u32 wraps
    let v = lift1(
        &mut mem,
        o,
        &t,
        &[CoreVal::I32(0), CoreVal::I64(0x1_0000_0007)],
    )
    .unwrap();
    assert_eq!(v, Value::Variant(0, Some(Box::new(Value::U32(7)))));
    // an f32 carried in an i32 slot (join(i32, f32) = i32): "flat-pad"
    let pad = ValType::variant([
        ("p", Some(ValType::Tuple(vec![ValType::F32, ValType::F32]))),
        ("q", Some(ValType::U32)),
        ("r", None),
    ]);
    let v = Value::Variant(
        0,
        Some(Box::new(Value::tuple(vec![
            Value::F32(2.0),
            Value::F32(3.0),
        ]))),
    );
    let out = lower1(&mut mem, &mut ra, o, &pad, &v).unwrap();
    assert_eq!(
        out,
        vec![
            CoreVal::I32(0),
            CoreVal::I32(2.0f32.to_bits()),
            CoreVal::F32(3.0)
        ]
    );
    assert_eq!(lift1(&mut mem, o, &pad, &out), Ok(v));
    // a case without payload pads with zeros
    let out = lower1(&mut mem, &mut ra, o, &pad, &Value::Variant(2, None)).unwrap();
    assert_eq!(
        out,
        vec![CoreVal::I32(2), CoreVal::I32(0), CoreVal::F32(0.0)]
    );
    // NaN carried in an i32 slot is canonicalised on lift
    let v = lift1(
        &mut mem,
        o,
        &pad,
        &[
            CoreVal::I32(0),
            CoreVal::I32(0x7f80_0001),
            CoreVal::F32(1.0),
        ],
    )
    .unwrap();
    let Value::Variant(0, Some(p)) = v else {
        panic!()
    };
    let Value::Record(fs) = *p else { panic!() };
    let Value::F32(f) = fs[0] else { panic!() };
    assert_eq!(f.to_bits(), 0x7fc0_0000);
}

#[test]
fn discriminant_out_of_range() {
    // variants.wast: bad-variant-param / bad-enum-param
    let mut mem = vec![1u8, 0, 0, 0, 0, 0, 0, 0, 2, 0];
    let o = opts(UTF8);
    let v32 = ValType::variant([("x", Some(ValType::U32))]);
    let e = lift1(&mut mem, o, &v32, &[CoreVal::I32(1), CoreVal::I32(0)]).unwrap_err();
    assert_eq!(e, Trap::InvalidDiscriminant { index: 1, cases: 1 });
    assert!(msg(e).contains("invalid variant discriminant"));
    let e2 = ValType::enum_(["a", "b"]);
    assert_eq!(
        lift1(&mut mem, o, &e2, &[CoreVal::I32(2)]),
        Err(Trap::InvalidDiscriminant { index: 2, cases: 2 })
    );
    assert_eq!(
        lift1(&mut mem, o, &e2, &[CoreVal::I32(1)]),
        Ok(Value::enum_case(1))
    );
    let mut ra = Bump::default();
    // in memory: the discriminant byte at 8 is 2
    let r = with_cx(&mut mem, &mut ra, o, |cx| {
        load(cx, 8, &ValType::option(ValType::U8))
    });
    assert_eq!(r, Err(Trap::InvalidDiscriminant { index: 2, cases: 2 }));
    let r = with_cx(&mut mem, &mut ra, o, |cx| {
        load(cx, 0, &ValType::option(ValType::U8))
    });
    assert_eq!(r, Ok(Value::some(Value::U8(0))));
}

#[test]
fn flags_keep_only_declared_bits() {
    let mut mem = vec![0xffu8, 0xff];
    let o = opts(UTF8);
    let f3 = ValType::flags(["a", "b", "c"]);
    assert_eq!(
        lift1(&mut mem, o, &f3, &[CoreVal::I32(0xff)]),
        Ok(Value::Flags(0b111))
    );
    let f10 = ValType::Flags((0..10).map(|i| alloc::format!("f{i}")).collect());
    let mut ra = Bump::default();
    let v = with_cx(&mut mem, &mut ra, o, |cx| load(cx, 0, &f10)).unwrap();
    assert_eq!(v, Value::Flags(0x3ff));
    with_cx(&mut mem, &mut ra, o, |cx| {
        store(cx, &Value::Flags(0b10_0010_0010 | 0xf000), &f10, 0)
    })
    .unwrap();
    assert_eq!(mem, vec![0x22, 0x02]);
}

#[test]
fn string_lift_traps() {
    let o8 = opts(UTF8);
    let mut mem = b"hi\xff\xfe....".to_vec();
    assert_eq!(
        lift1(
            &mut mem,
            o8,
            &ValType::String,
            &[CoreVal::I32(0), CoreVal::I32(2)]
        ),
        Ok(Value::string("hi"))
    );
    // strings.wast: invalid utf-8
    let e = lift1(
        &mut mem,
        o8,
        &ValType::String,
        &[CoreVal::I32(0), CoreVal::I32(3)],
    )
    .unwrap_err();
    assert_eq!(e, Trap::InvalidUtf8);
    assert!(msg(e).contains("invalid utf-8"));
    // incomplete sequence
    let mut m2 = b"\xe2\x98".to_vec();
    assert_eq!(
        lift1(
            &mut m2,
            o8,
            &ValType::String,
            &[CoreVal::I32(0), CoreVal::I32(2)]
        ),
        Err(Trap::IncompleteUtf8)
    );
    // surrogate encoded in utf-8 is invalid
    let mut m3 = b"\xed\xa0\x80".to_vec();
    assert_eq!(
        lift1(
            &mut m3,
            o8,
            &ValType::String,
            &[CoreVal::I32(0), CoreVal::I32(3)]
        ),
        Err(Trap::InvalidUtf8)
    );
    // out of bounds: pointer and length
    let e = lift1(
        &mut mem,
        o8,
        &ValType::String,
        &[CoreVal::I32(7), CoreVal::I32(2)],
    )
    .unwrap_err();
    assert!(
        msg(e.clone()).contains("string content out-of-bounds"),
        "{e}"
    );
    let e = lift1(
        &mut mem,
        o8,
        &ValType::String,
        &[CoreVal::I32(u32::MAX), CoreVal::I32(2)],
    )
    .unwrap_err();
    assert!(matches!(e, Trap::StringOutOfBounds { .. }));
    // too long
    let e = lift1(
        &mut mem,
        o8,
        &ValType::String,
        &[CoreVal::I32(0), CoreVal::I32(1 << 28)],
    )
    .unwrap_err();
    assert_eq!(e, Trap::StringTooLong { byte_len: 1 << 28 });
    // utf16: misaligned pointer, lone surrogate, ok
    let o16 = opts(UTF16);
    let e = lift1(
        &mut mem,
        o16,
        &ValType::String,
        &[CoreVal::I32(1), CoreVal::I32(1)],
    )
    .unwrap_err();
    assert!(msg(e).contains("unaligned pointer"));
    let mut m16: Vec<u8> = [0x68u16, 0xD800, 0x69]
        .iter()
        .flat_map(|u| u.to_le_bytes())
        .collect();
    assert_eq!(
        lift1(
            &mut m16,
            o16,
            &ValType::String,
            &[CoreVal::I32(0), CoreVal::I32(3)]
        ),
        Err(Trap::InvalidUtf16)
    );
    let v = lift1(
        &mut m16,
        o16,
        &ValType::String,
        &[CoreVal::I32(0), CoreVal::I32(1)],
    )
    .unwrap();
    assert_eq!(
        v,
        Value::String(WasmString::with_source("h".into(), UTF16, 1))
    );
    // utf16 length counts code units: 2^27 units = 2^28 bytes is too long
    let e = lift1(
        &mut m16,
        o16,
        &ValType::String,
        &[CoreVal::I32(0), CoreVal::I32(1 << 27)],
    )
    .unwrap_err();
    assert_eq!(e, Trap::StringTooLong { byte_len: 1 << 28 });
    // latin1+utf16: alignment 2 even for latin-1
    let oc = opts(COMPACT);
    let e = lift1(
        &mut mem,
        oc,
        &ValType::String,
        &[CoreVal::I32(1), CoreVal::I32(1)],
    )
    .unwrap_err();
    assert!(matches!(e, Trap::UnalignedPointer { align: 2, .. }));
    let mut ml = b"\xe9t\xe9".to_vec();
    ml.push(0);
    let v = lift1(
        &mut ml,
        oc,
        &ValType::String,
        &[CoreVal::I32(0), CoreVal::I32(3)],
    )
    .unwrap();
    assert_eq!(
        v,
        Value::String(WasmString::with_source("été".into(), COMPACT, 3))
    );
    let tag = utf16_tag(AddrType::I32) as u32;
    let v = lift1(
        &mut m16,
        oc,
        &ValType::String,
        &[CoreVal::I32(0), CoreVal::I32(1 | tag)],
    )
    .unwrap();
    assert_eq!(
        v,
        Value::String(WasmString::with_source(
            "h".into(),
            COMPACT,
            u64::from(1 | tag)
        ))
    );
}

fn lower_str(
    dst: StringEncoding,
    src: &WasmString,
    mem_size: usize,
) -> (Vec<u8>, Bump, Result<(u64, u64), Trap>) {
    let mut mem = vec![0u8; mem_size];
    let mut ra = Bump {
        next: 16,
        ..Default::default()
    };
    let r = with_cx(&mut mem, &mut ra, opts(dst), |cx| {
        store_string_into_range(cx, src)
    });
    (mem, ra, r)
}

fn utf16le(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

fn read_back(mem: &mut Vec<u8>, enc: StringEncoding, ptr: u64, units: u64) -> WasmString {
    let mut ra = Bump::default();
    with_cx(mem, &mut ra, opts(enc), |cx| {
        load_string_from_range(cx, ptr, units)
    })
    .unwrap()
}

#[test]
fn transcode_utf8_to_utf8_and_utf16() {
    let s = WasmString::new("héllo");
    let (mut mem, ra, r) = lower_str(UTF8, &s, 256);
    let (p, n) = r.unwrap();
    assert_eq!(ra.calls, vec![(0, 0, 1, 6)]);
    assert_eq!(n, 6);
    assert_eq!(read_back(&mut mem, UTF8, p, n).as_str(), "héllo");

    // utf8 -> utf16: worst case 2 * 6 bytes, shrink to 10
    let (mut mem, ra, r) = lower_str(UTF16, &s, 256);
    let (p, n) = r.unwrap();
    assert_eq!(ra.calls, vec![(0, 0, 2, 12), (16, 12, 2, 10)]);
    assert_eq!((p, n), (16, 5));
    assert_eq!(&mem[16..26], &utf16le("héllo")[..]);
    assert_eq!(read_back(&mut mem, UTF16, p, n).as_str(), "héllo");

    // no shrink when the worst case was exact
    let (_, ra, r) = lower_str(UTF16, &WasmString::new("abc"), 256);
    assert_eq!(ra.calls, vec![(0, 0, 2, 6)]);
    assert_eq!(r.unwrap().1, 3);
}

#[test]
fn transcode_utf16_to_utf8() {
    // all ASCII: one allocation of src_code_units bytes
    let s = WasmString::with_source("abc".into(), UTF16, 3);
    let (_, ra, r) = lower_str(UTF8, &s, 256);
    assert_eq!(ra.calls, vec![(0, 0, 1, 3)]);
    assert_eq!(r.unwrap(), (16, 3));
    // non-ASCII: grow to 3 * units, then shrink to the encoded length
    let s = WasmString::with_source("h☃i".into(), UTF16, 3);
    let (mut mem, ra, r) = lower_str(UTF8, &s, 256);
    let (p, n) = r.unwrap();
    assert_eq!(ra.calls, vec![(0, 0, 1, 3), (16, 3, 1, 9), (19, 9, 1, 5)]);
    assert_eq!(n, 5);
    assert_eq!(&mem[p as usize..(p + n) as usize], "h☃i".as_bytes());
    assert_eq!(read_back(&mut mem, UTF8, p, n).as_str(), "h☃i");
    // latin-1 source (compact without tag): worst case 2 * units
    let s = WasmString::with_source("é".into(), COMPACT, 1);
    let (_, ra, r) = lower_str(UTF8, &s, 256);
    assert_eq!(ra.calls, vec![(0, 0, 1, 1), (16, 1, 1, 2)]);
    assert_eq!(r.unwrap().1, 2);
}

#[test]
fn transcode_to_compact() {
    let tag = utf16_tag(AddrType::I32);
    // utf8 source that fits latin-1: allocate src bytes, shrink to latin-1 length
    let s = WasmString::new("héllo");
    let (mut mem, ra, r) = lower_str(COMPACT, &s, 256);
    let (p, n) = r.unwrap();
    assert_eq!(ra.calls, vec![(0, 0, 2, 6), (16, 6, 2, 5)]);
    assert_eq!(n, 5);
    assert_eq!(&mem[16..21], b"h\xe9llo");
    assert_eq!(read_back(&mut mem, COMPACT, p, n).as_str(), "héllo");
    // utf8 source beyond latin-1: inflate in place to utf16, tag the length
    let s = WasmString::new("é☃");
    let (mut mem, ra, r) = lower_str(COMPACT, &s, 256);
    let (p, n) = r.unwrap();
    assert_eq!(ra.calls, vec![(0, 0, 2, 5), (16, 5, 2, 10), (22, 10, 2, 4)]);
    assert_eq!(n, 2 | tag);
    assert_eq!(&mem[p as usize..p as usize + 4], &utf16le("é☃")[..]);
    assert_eq!(read_back(&mut mem, COMPACT, p, n).as_str(), "é☃");
    // utf16 source (plain): same function, src_code_units = 2
    let s = WasmString::with_source("é☃".into(), UTF16, 2);
    let (_, ra, r) = lower_str(COMPACT, &s, 256);
    assert_eq!(ra.calls, vec![(0, 0, 2, 2), (16, 2, 2, 4)]);
    assert_eq!(r.unwrap().1, 2 | tag);
    // compact latin-1 -> compact: plain copy
    let s = WasmString::with_source("été".into(), COMPACT, 3);
    let (_, ra, r) = lower_str(COMPACT, &s, 256);
    assert_eq!(ra.calls, vec![(0, 0, 2, 3)]);
    assert_eq!(r.unwrap().1, 3);
    // compact utf16 that is all latin-1 -> deflate and shrink with align 1
    let s = WasmString::with_source("ab".into(), COMPACT, 2 | tag);
    let (mut mem, ra, r) = lower_str(COMPACT, &s, 256);
    let (p, n) = r.unwrap();
    assert_eq!(ra.calls, vec![(0, 0, 2, 4), (16, 4, 1, 2)]);
    assert_eq!(n, 2);
    assert_eq!(read_back(&mut mem, COMPACT, p, n).as_str(), "ab");
    // compact utf16 that needs utf16 stays
    let s = WasmString::with_source("a☃".into(), COMPACT, 2 | tag);
    let (_, ra, r) = lower_str(COMPACT, &s, 256);
    assert_eq!(ra.calls, vec![(0, 0, 2, 4)]);
    assert_eq!(r.unwrap().1, 2 | tag);
    // latin-1 / utf16 -> utf16: copy (2 bytes per unit)
    let s = WasmString::with_source("é".into(), COMPACT, 1);
    let (mem, ra, r) = lower_str(UTF16, &s, 256);
    assert_eq!(ra.calls, vec![(0, 0, 2, 2)]);
    assert_eq!(r.unwrap(), (16, 1));
    assert_eq!(&mem[16..18], &[0xe9, 0]);
}

#[test]
fn realloc_results_are_checked() {
    let s = WasmString::new("abcd");
    let mut mem = vec![0u8; 32];
    let mut ra = Bump {
        force: Some(30),
        ..Default::default()
    };
    let e = with_cx(&mut mem, &mut ra, opts(UTF8), |cx| {
        store_string_into_range(cx, &s)
    })
    .unwrap_err();
    assert_eq!(
        e,
        Trap::ReallocOutOfBounds {
            ptr: 30,
            byte_len: 4,
            mem_len: 32
        }
    );
    assert!(msg(e).contains("realloc return: beyond end of memory"));
    let mut ra = Bump {
        force: Some(3),
        ..Default::default()
    };
    let e = with_cx(&mut mem, &mut ra, opts(UTF16), |cx| {
        store_string_into_range(cx, &s)
    })
    .unwrap_err();
    assert_eq!(e, Trap::ReallocUnaligned { ptr: 3, align: 2 });
    assert!(msg(e).contains("realloc return: result not aligned"));
    // list: aligned to the element
    let mut ra = Bump {
        force: Some(2),
        ..Default::default()
    };
    let t = ValType::list(ValType::U32);
    let e = lower1(
        &mut mem,
        &mut ra,
        opts(UTF8),
        &t,
        &Value::List(vec![Value::U32(1)]),
    )
    .unwrap_err();
    assert_eq!(e, Trap::ReallocUnaligned { ptr: 2, align: 4 });
    // without realloc
    let mut h = NoHandles;
    let mut cx = Cx::new(opts(UTF8), Some(&mut mem), None, &mut h);
    assert_eq!(
        store_string_into_range(&mut cx, &s),
        Err(Trap::MissingRealloc)
    );
}

#[test]
fn list_lift_traps() {
    let o = opts(UTF8);
    let t = ValType::list(ValType::U32);
    let mut mem = vec![0u8; 16];
    mem[4..8].copy_from_slice(&7u32.to_le_bytes());
    assert_eq!(
        lift1(&mut mem, o, &t, &[CoreVal::I32(4), CoreVal::I32(2)]),
        Ok(Value::List(vec![Value::U32(7), Value::U32(0)]))
    );
    let e = lift1(&mut mem, o, &t, &[CoreVal::I32(2), CoreVal::I32(1)]).unwrap_err();
    assert!(msg(e).contains("unaligned pointer"));
    let e = lift1(&mut mem, o, &t, &[CoreVal::I32(12), CoreVal::I32(2)]).unwrap_err();
    assert!(msg(e.clone()).contains("list content out-of-bounds"), "{e}");
    let e = lift1(&mut mem, o, &t, &[CoreVal::I32(0), CoreVal::I32(1 << 26)]).unwrap_err();
    assert_eq!(e, Trap::ListTooLong { byte_len: 1 << 28 });
    // an empty list may point at the very end, but not past it (the spec
    // checks `ptr + 0 > len(memory)`)
    assert_eq!(
        lift1(&mut mem, o, &t, &[CoreVal::I32(16), CoreVal::I32(0)]),
        Ok(Value::List(vec![]))
    );
    assert!(matches!(
        lift1(&mut mem, o, &t, &[CoreVal::I32(1024), CoreVal::I32(0)]),
        Err(Trap::ListOutOfBounds { .. })
    ));
}

#[test]
fn store_load_roundtrip_nested() {
    let t = ValType::record([
        ("a", ValType::U8),
        (
            "b",
            ValType::list(ValType::Tuple(vec![
                ValType::String,
                ValType::option(ValType::S16),
            ])),
        ),
        ("c", ValType::result(Some(ValType::F64), None)),
        ("d", ValType::fixed_list(ValType::Char, 2)),
        ("e", ValType::flags(["x", "y"])),
    ]);
    let v = Value::Record(vec![
        Value::U8(9),
        Value::List(vec![
            Value::tuple(vec![Value::string("one"), Value::some(Value::S16(-5))]),
            Value::tuple(vec![Value::string("twö"), Value::none()]),
        ]),
        Value::ok(Some(Value::F64(1.5))),
        Value::List(vec![Value::Char('x'), Value::Char('☃')]),
        Value::Flags(2),
    ]);
    let mut mem = vec![0u8; 512];
    let mut ra = Bump {
        next: 64,
        ..Default::default()
    };
    let o = opts(UTF8);
    with_cx(&mut mem, &mut ra, o, |cx| store(cx, &v, &t, 0)).unwrap();
    let back = with_cx(&mut mem, &mut ra, o, |cx| load(cx, 0, &t)).unwrap();
    assert_eq!(back, v);
    // and through flat values
    let flat = lower1(&mut mem, &mut ra, o, &t, &v).unwrap();
    let tys: Vec<CoreType> = flat.iter().map(|c| c.ty()).collect();
    assert_eq!(tys, crate::layout::flatten_type(&t, AddrType::I32));
    assert_eq!(lift1(&mut mem, o, &t, &flat), Ok(v));
}

#[test]
fn spilled_params_and_results() {
    let o = opts(UTF8);
    let ts = vec![ValType::U32; 17];
    let vs: Vec<Value> = (0..17).map(Value::U32).collect();
    let mut mem = vec![0u8; 256];
    let mut ra = Bump {
        next: 8,
        ..Default::default()
    };
    // lower with allocation: one pointer
    let flat = with_cx(&mut mem, &mut ra, o, |cx| {
        lower_flat_values(cx, 16, &vs, &ts, None)
    })
    .unwrap();
    assert_eq!(flat, vec![CoreVal::I32(8)]);
    assert_eq!(ra.calls, vec![(0, 0, 4, 68)]);
    let back = with_cx(&mut mem, &mut ra, o, |cx| {
        lift_flat_values(cx, 16, &mut CoreValueIter::new(&flat), &ts)
    });
    assert_eq!(back, Ok(vs.clone()));
    // lift traps: misaligned, out of bounds (alignment.wast / "unaligned pointer")
    let e = with_cx(&mut mem, &mut ra, o, |cx| {
        lift_flat_values(cx, 16, &mut CoreValueIter::new(&[CoreVal::I32(2)]), &ts)
    })
    .unwrap_err();
    assert!(msg(e).contains("unaligned pointer"));
    let e = with_cx(&mut mem, &mut ra, o, |cx| {
        lift_flat_values(cx, 16, &mut CoreValueIter::new(&[CoreVal::I32(192)]), &ts)
    })
    .unwrap_err();
    assert!(matches!(e, Trap::OutOfBounds { .. }));
    // lower into a caller-provided out-param
    let rt = [ValType::String];
    let rv = [Value::string("ok")];
    let out = [CoreVal::I32(100)];
    let mut op = CoreValueIter::new(&out);
    let flat = with_cx(&mut mem, &mut ra, o, |cx| {
        lower_flat_values(cx, 1, &rv, &rt, Some(&mut op))
    })
    .unwrap();
    assert!(flat.is_empty());
    let ptr = u32::from_le_bytes(mem[100..104].try_into().unwrap()) as usize;
    assert_eq!(u32::from_le_bytes(mem[104..108].try_into().unwrap()), 2);
    assert_eq!(&mem[ptr..ptr + 2], b"ok");
    let bad = [CoreVal::I32(101)];
    let e = with_cx(&mut mem, &mut ra, o, |cx| {
        lower_flat_values(cx, 1, &rv, &rt, Some(&mut CoreValueIter::new(&bad)))
    })
    .unwrap_err();
    assert!(matches!(
        e,
        Trap::UnalignedPointer {
            ptr: 101,
            align: 4,
            ..
        }
    ));
}

#[test]
fn memory64_strings_and_lists() {
    let o = Options {
        string_encoding: COMPACT,
        addr: AddrType::I64,
    };
    let tag = utf16_tag(AddrType::I64);
    assert_eq!(tag, 1 << 63);
    let mut mem: Vec<u8> = utf16le("☃");
    let v = lift1(
        &mut mem,
        o,
        &ValType::String,
        &[CoreVal::I64(0), CoreVal::I64(1 | tag)],
    )
    .unwrap();
    assert_eq!(
        v,
        Value::String(WasmString::with_source("☃".into(), COMPACT, 1 | tag))
    );
    // i32 pointers for an i64 memory are a host mismatch
    assert!(matches!(
        lift1(
            &mut mem,
            o,
            &ValType::String,
            &[CoreVal::I32(0), CoreVal::I32(1)]
        ),
        Err(Trap::Mismatch(_))
    ));
    // a string in memory64 is 16 bytes, pointer-aligned
    assert_eq!(
        crate::layout::elem_size(&ValType::String, AddrType::I64),
        16
    );
    let mut big = vec![0u8; 128];
    let mut ra = Bump {
        next: 32,
        ..Default::default()
    };
    let s = Value::String(WasmString::new("hé"));
    with_cx(&mut big, &mut ra, o, |cx| {
        store(cx, &s, &ValType::String, 0)
    })
    .unwrap();
    // stored as latin-1 (tagless) from a utf8 source
    assert_eq!(u64::from_le_bytes(big[8..16].try_into().unwrap()), 2);
    let back = with_cx(&mut big, &mut ra, o, |cx| load(cx, 0, &ValType::String)).unwrap();
    let Value::String(b) = back else { panic!() };
    assert_eq!(b.as_str(), "hé");
}

#[test]
fn resources_through_lift_and_lower() {
    use crate::handles::ResourceTable;
    let r = ResourceType(3);
    let mut table = ResourceTable::default();
    let mut mem = vec![0u8; 16];
    let mut ra = Bump::default();
    let o = opts(UTF8);
    let own = ValType::Own(r);
    let borrow = ValType::Borrow(r);
    let (i, lent, own_back) = {
        let mut cx = Cx::new(o, Some(&mut mem), Some(&mut ra), &mut table);
        let mut out = Vec::new();
        lower_flat(&mut cx, &Value::Own(77), &own, &mut out).unwrap();
        let CoreVal::I32(i) = out[0] else { panic!() };
        let lent = lift_flat(&mut cx, &mut CoreValueIter::new(&out), &borrow).unwrap();
        let own_back = lift_flat(&mut cx, &mut CoreValueIter::new(&out), &own);
        (i, lent, own_back)
    };
    assert_eq!(i, 1);
    assert_eq!(lent, Value::Borrow(77));
    assert_eq!(own_back, Err(Trap::OwnedResourceBorrowed { index: 1 }));
    table.end_call().unwrap();
    let mut cx = Cx::new(o, Some(&mut mem), Some(&mut ra), &mut table);
    assert_eq!(
        lift_flat(&mut cx, &mut CoreValueIter::new(&[CoreVal::I32(1)]), &own),
        Ok(Value::Own(77))
    );
    assert_eq!(
        lift_flat(&mut cx, &mut CoreValueIter::new(&[CoreVal::I32(1)]), &own),
        Err(Trap::UnknownHandle(1))
    );
    assert_eq!(
        lift_flat(
            &mut cx,
            &mut CoreValueIter::new(&[CoreVal::I32(0)]),
            &ValType::stream(None)
        ),
        Err(Trap::Unsupported("stream values"))
    );
}
