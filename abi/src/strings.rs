//! Strings: lifting (`load_string_from_range`) and lowering with
//! transcoding (`store_string_into_range` and the `store_*` helpers of
//! definitions.py), including the exact sequence of `realloc` calls.

use alloc::string::String;
use alloc::vec::Vec;

use crate::error::Trap;
use crate::layout::is_aligned;
use crate::memory::Cx;
use crate::types::AddrType;
use crate::values::{StringEncoding, WasmString};

/// `MAX_STRING_BYTE_LENGTH`.
pub const MAX_STRING_BYTE_LENGTH: u64 = (1 << 28) - 1;
/// `REALLOC_I32_MAX`: the largest size ever passed to `realloc`.
pub const REALLOC_I32_MAX: u64 = (1 << 32) - 1;

/// `utf16_tag(ptr_type)`: the top bit of a pointer-sized length marks a
/// `latin1+utf16` string as UTF-16.
pub const fn utf16_tag(addr: AddrType) -> u64 {
    1 << (addr.ptr_size() * 8 - 1)
}

/// `load_string_from_range(cx, ptr, tagged_code_units)`.
pub fn load_string_from_range(
    cx: &Cx<'_>,
    ptr: u64,
    tagged_code_units: u64,
) -> Result<WasmString, Trap> {
    #[derive(Clone, Copy)]
    enum Dec {
        Utf8,
        Utf16,
        Latin1,
    }
    let tag = utf16_tag(cx.addr());
    let (alignment, byte_length, dec) = match cx.opts.string_encoding {
        StringEncoding::Utf8 => (1, Some(tagged_code_units), Dec::Utf8),
        StringEncoding::Utf16 => (2, tagged_code_units.checked_mul(2), Dec::Utf16),
        StringEncoding::CompactUtf16 => {
            if tagged_code_units & tag != 0 {
                (2, (tagged_code_units ^ tag).checked_mul(2), Dec::Utf16)
            } else {
                (2, Some(tagged_code_units), Dec::Latin1)
            }
        }
    };
    let byte_length = byte_length.unwrap_or(u64::MAX);
    if byte_length > MAX_STRING_BYTE_LENGTH {
        return Err(Trap::StringTooLong {
            byte_len: byte_length,
        });
    }
    if !is_aligned(ptr, alignment) {
        return Err(Trap::UnalignedPointer {
            what: "string",
            ptr,
            align: alignment,
        });
    }
    let mem = cx.mem()?;
    let mem_len = mem.len() as u64;
    let end = ptr.checked_add(byte_length);
    if end.is_none_or(|e| e > mem_len) {
        return Err(Trap::StringOutOfBounds {
            ptr,
            byte_len: byte_length,
            mem_len,
        });
    }
    let bytes = &mem[ptr as usize..(ptr + byte_length) as usize];
    let s = match dec {
        Dec::Utf8 => String::from(core::str::from_utf8(bytes).map_err(|e| {
            if e.error_len().is_none() {
                Trap::IncompleteUtf8
            } else {
                Trap::InvalidUtf8
            }
        })?),
        Dec::Utf16 => decode_utf16le(bytes)?,
        Dec::Latin1 => bytes.iter().map(|&b| char::from(b)).collect(),
    };
    Ok(WasmString::with_source(
        s,
        cx.opts.string_encoding,
        tagged_code_units,
    ))
}

fn decode_utf16le(bytes: &[u8]) -> Result<String, Trap> {
    let units = bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]));
    char::decode_utf16(units)
        .collect::<Result<String, _>>()
        .map_err(|_| Trap::InvalidUtf16)
}

fn encode_utf16le(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

fn encode_latin1(s: &str) -> Result<Vec<u8>, Trap> {
    s.chars()
        .map(|c| {
            u8::try_from(u32::from(c))
                .map_err(|_| Trap::Mismatch("latin-1 string with a char above U+00FF"))
        })
        .collect()
}

fn check_realloc_size(n: u64) -> Result<u64, Trap> {
    if n > REALLOC_I32_MAX {
        return Err(Trap::StringTooLong { byte_len: n });
    }
    Ok(n)
}

/// The source's "simple" encoding: latin1+utf16 split by its tag.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Simple {
    Utf8,
    Utf16,
    Latin1,
}

/// `store_string_into_range(cx, v)`: allocate in the guest with `realloc`,
/// transcode, and return `(ptr, tagged_code_units)`.
pub fn store_string_into_range(cx: &mut Cx<'_>, v: &WasmString) -> Result<(u64, u64), Trap> {
    // The tag is that of the *destination* memory's pointer type, as in the
    // spec (`utf16_tag(cx.opts.memory.ptr_type())`).
    let tag = utf16_tag(cx.addr());
    let src = v.as_str();
    let src_tagged = v.tagged_code_units();
    let (simple, units) = match v.encoding() {
        StringEncoding::CompactUtf16 if src_tagged & tag != 0 => (Simple::Utf16, src_tagged ^ tag),
        StringEncoding::CompactUtf16 => (Simple::Latin1, src_tagged),
        StringEncoding::Utf8 => (Simple::Utf8, src_tagged),
        StringEncoding::Utf16 => (Simple::Utf16, src_tagged),
    };
    use StringEncoding as E;
    match cx.opts.string_encoding {
        E::Utf8 => match simple {
            Simple::Utf8 => store_string_copy(cx, src, units, 1, 1, Enc::Utf8),
            Simple::Utf16 => store_utf16_to_utf8(cx, src, units),
            Simple::Latin1 => store_latin1_to_utf8(cx, src, units),
        },
        E::Utf16 => match simple {
            Simple::Utf8 => store_utf8_to_utf16(cx, src, units),
            Simple::Utf16 | Simple::Latin1 => store_string_copy(cx, src, units, 2, 2, Enc::Utf16),
        },
        E::CompactUtf16 => match v.encoding() {
            E::Utf8 | E::Utf16 => store_string_to_latin1_or_utf16(cx, src, units),
            E::CompactUtf16 => match simple {
                Simple::Latin1 => store_string_copy(cx, src, units, 1, 2, Enc::Latin1),
                _ => store_probably_utf16_to_latin1_or_utf16(cx, src, units),
            },
        },
    }
}

#[derive(Clone, Copy)]
enum Enc {
    Utf8,
    Utf16,
    Latin1,
}

/// `store_string_copy`: same code units on both sides, one `realloc`.
fn store_string_copy(
    cx: &mut Cx<'_>,
    src: &str,
    src_code_units: u64,
    dst_code_unit_size: u64,
    dst_alignment: u32,
    dst_encoding: Enc,
) -> Result<(u64, u64), Trap> {
    let dst_byte_length = check_realloc_size(dst_code_unit_size * src_code_units)?;
    let ptr = cx.allocate(dst_alignment, dst_byte_length)?;
    let encoded = match dst_encoding {
        Enc::Utf8 => src.as_bytes().to_vec(),
        Enc::Utf16 => encode_utf16le(src),
        Enc::Latin1 => encode_latin1(src)?,
    };
    if encoded.len() as u64 != dst_byte_length {
        return Err(Trap::Mismatch(
            "string code-unit count does not match its contents",
        ));
    }
    cx.write(ptr, &encoded)?;
    Ok((ptr, src_code_units))
}

/// `store_utf16_to_utf8`.
fn store_utf16_to_utf8(
    cx: &mut Cx<'_>,
    src: &str,
    src_code_units: u64,
) -> Result<(u64, u64), Trap> {
    let worst_case_size = src_code_units * 3;
    store_string_to_utf8(cx, src, src_code_units, worst_case_size)
}

/// `store_latin1_to_utf8`.
fn store_latin1_to_utf8(
    cx: &mut Cx<'_>,
    src: &str,
    src_code_units: u64,
) -> Result<(u64, u64), Trap> {
    let worst_case_size = src_code_units * 2;
    store_string_to_utf8(cx, src, src_code_units, worst_case_size)
}

/// `store_string_to_utf8`: optimistic ASCII copy into `src_code_units`
/// bytes; on the first non-ASCII code point grow to the worst case, finish,
/// and shrink to fit.
fn store_string_to_utf8(
    cx: &mut Cx<'_>,
    src: &str,
    src_code_units: u64,
    worst_case_size: u64,
) -> Result<(u64, u64), Trap> {
    check_realloc_size(src_code_units)?;
    let mut ptr = cx.allocate(1, src_code_units)?;
    // Leading ASCII code points are their own UTF-8 bytes.
    let ascii = src.bytes().take_while(u8::is_ascii).count();
    if ascii as u64 > src_code_units {
        return Err(Trap::Mismatch(
            "string code-unit count does not match its contents",
        ));
    }
    cx.write(ptr, &src.as_bytes()[..ascii])?;
    if ascii == src.len() {
        return Ok((ptr, src_code_units));
    }
    let i = ascii as u64;
    check_realloc_size(worst_case_size)?;
    ptr = cx.reallocate(ptr, src_code_units, 1, worst_case_size)?;
    let encoded = src.as_bytes();
    let len = encoded.len() as u64;
    if len > worst_case_size {
        return Err(Trap::Mismatch(
            "string code-unit count does not match its contents",
        ));
    }
    cx.write(ptr + i, &encoded[ascii..])?;
    if worst_case_size > len {
        ptr = cx.reallocate(ptr, worst_case_size, 1, len)?;
    }
    Ok((ptr, len))
}

/// `store_utf8_to_utf16`: allocate the worst case (2 bytes per UTF-8 byte)
/// and shrink to fit.
fn store_utf8_to_utf16(
    cx: &mut Cx<'_>,
    src: &str,
    src_code_units: u64,
) -> Result<(u64, u64), Trap> {
    let worst_case_size = check_realloc_size(2 * src_code_units)?;
    let mut ptr = cx.allocate(2, worst_case_size)?;
    let encoded = encode_utf16le(src);
    let len = encoded.len() as u64;
    if len > worst_case_size {
        return Err(Trap::Mismatch(
            "string code-unit count does not match its contents",
        ));
    }
    cx.write(ptr, &encoded)?;
    if len < worst_case_size {
        ptr = cx.reallocate(ptr, worst_case_size, 2, len)?;
    }
    Ok((ptr, len / 2))
}

/// `store_string_to_latin1_or_utf16`: optimistic latin-1 into
/// `src_code_units` bytes; on the first code point >= U+0100 grow to
/// UTF-16 worst case, inflate what was written in place, finish, shrink.
fn store_string_to_latin1_or_utf16(
    cx: &mut Cx<'_>,
    src: &str,
    src_code_units: u64,
) -> Result<(u64, u64), Trap> {
    check_realloc_size(src_code_units)?;
    let mut ptr = cx.allocate(2, src_code_units)?;
    let latin1: Vec<u8> = src
        .chars()
        .map_while(|c| u8::try_from(u32::from(c)).ok())
        .collect();
    let dst_byte_length = latin1.len() as u64;
    if dst_byte_length > src_code_units {
        return Err(Trap::Mismatch(
            "string code-unit count does not match its contents",
        ));
    }
    cx.write(ptr, &latin1)?;
    if latin1.len() < src.chars().count() {
        let worst_case_size = check_realloc_size(2 * src_code_units)?;
        ptr = cx.reallocate(ptr, src_code_units, 2, worst_case_size)?;
        // Inflate the latin-1 prefix in place, back to front.
        let r = cx.range(ptr, 2 * dst_byte_length)?;
        let m = &mut cx.mem_mut()?[r];
        for j in (0..dst_byte_length as usize).rev() {
            m[2 * j] = m[j];
            m[2 * j + 1] = 0;
        }
        let encoded = encode_utf16le(src);
        let len = encoded.len() as u64;
        if len > worst_case_size {
            return Err(Trap::Mismatch(
                "string code-unit count does not match its contents",
            ));
        }
        let from = 2 * dst_byte_length as usize;
        cx.write(ptr + from as u64, &encoded[from..])?;
        if worst_case_size > len {
            ptr = cx.reallocate(ptr, worst_case_size, 2, len)?;
        }
        return Ok((ptr, (len / 2) | utf16_tag(cx.addr())));
    }
    if dst_byte_length < src_code_units {
        ptr = cx.reallocate(ptr, src_code_units, 2, dst_byte_length)?;
    }
    Ok((ptr, dst_byte_length))
}

/// `store_probably_utf16_to_latin1_or_utf16`: copy as UTF-16; if every code
/// point fits latin-1, deflate in place and shrink.
fn store_probably_utf16_to_latin1_or_utf16(
    cx: &mut Cx<'_>,
    src: &str,
    src_code_units: u64,
) -> Result<(u64, u64), Trap> {
    let src_byte_length = check_realloc_size(2 * src_code_units)?;
    let mut ptr = cx.allocate(2, src_byte_length)?;
    let encoded = encode_utf16le(src);
    let len = encoded.len() as u64;
    if len > src_byte_length {
        return Err(Trap::Mismatch(
            "string code-unit count does not match its contents",
        ));
    }
    cx.write(ptr, &encoded)?;
    if src.chars().any(|c| u32::from(c) >= 1 << 8) {
        return Ok((ptr, (len / 2) | utf16_tag(cx.addr())));
    }
    let latin1_size = len / 2;
    let r = cx.range(ptr, len)?;
    let m = &mut cx.mem_mut()?[r];
    for i in 0..latin1_size as usize {
        m[i] = m[2 * i];
    }
    ptr = cx.reallocate(ptr, src_byte_length, 1, latin1_size)?;
    Ok((ptr, latin1_size))
}
