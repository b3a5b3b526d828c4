//! The one error type of the crate: a [`Trap`] names the spec rule that was
//! broken. Messages reuse the wording the component-model conformance tests
//! (`assert_trap`) look for, so a runner can match on substrings.

use alloc::string::String;
use core::fmt;

/// A canonical-ABI trap. Every `trap_if` of `definitions.py` that this crate
/// implements maps to exactly one variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trap {
    /// A guest pointer is not a multiple of the alignment of what it points to
    /// (`trap_if(ptr != align_to(ptr, alignment(...)))`).
    UnalignedPointer {
        what: &'static str,
        ptr: u64,
        align: u32,
    },
    /// `load_string_from_range`: `ptr + byte_length > len(memory)`.
    StringOutOfBounds {
        ptr: u64,
        byte_len: u64,
        mem_len: u64,
    },
    /// `load_list_from_range`: `ptr + length * elem_size > len(memory)`.
    ListOutOfBounds {
        ptr: u64,
        byte_len: u64,
        mem_len: u64,
    },
    /// Spilled parameters/results or a stream/future buffer out of bounds
    /// (`lift_flat_values`, `lower_flat_values`, `BufferGuestImpl`).
    OutOfBounds {
        what: &'static str,
        ptr: u64,
        byte_len: u64,
        mem_len: u64,
    },
    /// The pointer returned by `realloc` does not leave room for the bytes
    /// asked for.
    ReallocOutOfBounds {
        ptr: u64,
        byte_len: u64,
        mem_len: u64,
    },
    /// The pointer returned by `realloc` is not aligned as asked.
    ReallocUnaligned { ptr: u64, align: u32 },
    /// `trap_if(byte_length > MAX_STRING_BYTE_LENGTH)`.
    StringTooLong { byte_len: u64 },
    /// `trap_if(length * elem_size > MAX_LIST_BYTE_LENGTH)`.
    ListTooLong { byte_len: u64 },
    /// A stream/future buffer longer than `Buffer.MAX_LENGTH`.
    BufferTooLong { len: u64 },
    /// `convert_i32_to_char`: `i >= 0x110000` or a surrogate `0xD800..=0xDFFF`.
    InvalidChar(u32),
    /// The bytes of a UTF-8 string do not decode.
    InvalidUtf8,
    /// The code units of a UTF-16 string do not decode (lone surrogate).
    InvalidUtf16,
    /// `load_variant` / `lift_flat_variant`: `case_index >= len(cases)`.
    InvalidDiscriminant { index: u32, cases: u32 },
    /// Lowering a string or list needs the `realloc` canonical option.
    MissingRealloc,
    /// Lifting or lowering needs the `memory` canonical option.
    MissingMemory,
    /// `Table.get`: index out of range or an empty slot.
    UnknownHandle(u32),
    /// A table slot holds something other than what the built-in expects.
    WrongHandleType { index: u32, expected: &'static str },
    /// `trap_if(h.rt is not t.rt)`.
    ResourceTypeMismatch { index: u32 },
    /// `trap_if(h.num_lends != 0)` when removing an owned handle.
    OwnedResourceBorrowed { index: u32 },
    /// `trap_if(not h.own)` in `lift_own`.
    NotAnOwnHandle { index: u32 },
    /// `Table.add`: `trap_if(i > Table.MAX_LENGTH)`.
    TableFull,
    /// `Task.return_`/exit: `trap_if(self.num_borrows > 0)`.
    BorrowsRemain { count: u32 },
    /// `unpack_callback_result`: `trap_if(code > CallbackCode.MAX)`.
    UnsupportedCallbackCode(u32),
    /// `backpressure.inc` overflow or `backpressure.dec` underflow.
    Backpressure,
    /// A value of this type cannot be lifted/lowered by this context.
    Unsupported(&'static str),
    /// A trap raised by guest code called from the ABI (e.g. inside `realloc`).
    Guest(String),
    /// Host-side misuse, not a guest trap: a [`crate::Value`] or core value
    /// that does not have the shape its type says (the spec `assert`s these).
    Mismatch(&'static str),
}

impl fmt::Display for Trap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trap::UnalignedPointer { what, ptr, align } => {
                write!(f, "unaligned pointer: {what} at {ptr:#x} is not {align}-byte aligned")
            }
            Trap::StringOutOfBounds { ptr, byte_len, mem_len } => write!(
                f,
                "string content out-of-bounds: [{ptr:#x}, +{byte_len}) exceeds memory of {mem_len} bytes"
            ),
            Trap::ListOutOfBounds { ptr, byte_len, mem_len } => write!(
                f,
                "list content out-of-bounds: [{ptr:#x}, +{byte_len}) exceeds memory of {mem_len} bytes"
            ),
            Trap::OutOfBounds { what, ptr, byte_len, mem_len } => write!(
                f,
                "{what} pointer/length out of bounds of memory: [{ptr:#x}, +{byte_len}) exceeds {mem_len} bytes"
            ),
            Trap::ReallocOutOfBounds { ptr, byte_len, mem_len } => write!(
                f,
                "realloc return: beyond end of memory ([{ptr:#x}, +{byte_len}) exceeds {mem_len} bytes)"
            ),
            Trap::ReallocUnaligned { ptr, align } => {
                write!(f, "realloc return: result not aligned ({ptr:#x} is not {align}-byte aligned)")
            }
            Trap::StringTooLong { byte_len } => write!(
                f,
                "string byte length {byte_len} exceeds MAX_STRING_BYTE_LENGTH ({})",
                crate::strings::MAX_STRING_BYTE_LENGTH
            ),
            Trap::ListTooLong { byte_len } => write!(
                f,
                "list byte length {byte_len} exceeds MAX_LIST_BYTE_LENGTH ({})",
                crate::lift::MAX_LIST_BYTE_LENGTH
            ),
            Trap::BufferTooLong { len } => {
                write!(f, "stream/future buffer length {len} exceeds Buffer.MAX_LENGTH")
            }
            Trap::InvalidChar(i) => write!(
                f,
                "invalid `char` bit pattern: {i:#x} is a surrogate or above 0x10FFFF"
            ),
            Trap::InvalidUtf8 => f.write_str("invalid utf-8 in string content"),
            Trap::InvalidUtf16 => f.write_str("invalid utf-16 in string content (unpaired surrogate)"),
            Trap::InvalidDiscriminant { index, cases } => write!(
                f,
                "invalid variant discriminant: case {index} of a type with {cases} cases"
            ),
            Trap::MissingRealloc => f.write_str("lowering needs the `realloc` canonical option"),
            Trap::MissingMemory => f.write_str("lifting/lowering needs the `memory` canonical option"),
            Trap::UnknownHandle(i) => write!(f, "unknown handle index {i}"),
            Trap::WrongHandleType { index, expected } => write!(
                f,
                "handle index {index} used with the wrong type, expected {expected}"
            ),
            Trap::ResourceTypeMismatch { index } => write!(
                f,
                "handle index {index} used with the wrong type, expected guest-defined resource but found a different guest-defined resource"
            ),
            Trap::OwnedResourceBorrowed { index } => write!(
                f,
                "cannot remove owned resource while borrowed (handle index {index} has outstanding lends)"
            ),
            Trap::NotAnOwnHandle { index } => {
                write!(f, "handle index {index} is a borrow where an `own` handle was expected")
            }
            Trap::TableFull => f.write_str("handle table full (Table.MAX_LENGTH = 2^28 - 1)"),
            Trap::BorrowsRemain { count } => write!(
                f,
                "borrow handles still remain at the end of the call ({count} outstanding)"
            ),
            Trap::UnsupportedCallbackCode(c) => write!(f, "unsupported callback code {c}"),
            Trap::Backpressure => f.write_str("backpressure counter overflow or underflow"),
            Trap::Unsupported(what) => write!(f, "unsupported in this context: {what}"),
            Trap::Guest(msg) => f.write_str(msg),
            Trap::Mismatch(what) => write!(f, "host value does not match its type: {what}"),
        }
    }
}

impl core::error::Error for Trap {}
