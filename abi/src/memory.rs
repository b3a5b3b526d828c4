//! What the ABI needs from the runtime: linear memory ([`Memory`]), the
//! guest's `realloc` ([`Realloc`]), the instance's handle table
//! ([`Handles`]), bundled with the canonical options in a [`Cx`]
//! (`LiftLowerContext`).

use alloc::rc::Rc;

use crate::error::Trap;
use crate::types::{AddrType, ResourceType, ValType};
use crate::values::StringEncoding;

/// A linear memory. `bytes().len()` is the current memory size; it may grow
/// across a [`Realloc`] call, so the ABI re-reads it after each one.
pub trait Memory {
    fn bytes(&self) -> &[u8];
    fn bytes_mut(&mut self) -> &mut [u8];
}

impl Memory for alloc::vec::Vec<u8> {
    fn bytes(&self) -> &[u8] {
        self
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        self
    }
}

impl Memory for [u8] {
    fn bytes(&self) -> &[u8] {
        self
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        self
    }
}

/// The guest's `realloc(old_ptr, old_size, align, new_size) -> ptr`
/// (`LiftLowerContext.reallocate`). The memory is passed in so an
/// implementation may grow or inspect it. Whatever it returns is checked by
/// the caller (alignment and bounds), as the spec does.
pub trait Realloc {
    fn realloc(
        &mut self,
        memory: &mut dyn Memory,
        old_ptr: u64,
        old_size: u64,
        align: u32,
        new_size: u64,
    ) -> Result<u64, Trap>;
}

/// Handle-table operations that lifting and lowering perform
/// (`lift_own`, `lift_borrow`, `lower_own`, `lower_borrow`, `lift_stream`,
/// ...). [`crate::handles::ResourceTable`] implements the resource half;
/// the runtime implements the rest over its own instance state.
pub trait Handles {
    /// `lift_own`: remove handle `index` (own, not lent, of type `rt`);
    /// returns the rep.
    fn lift_own(&mut self, index: u32, rt: ResourceType) -> Result<u32, Trap>;
    /// `lift_borrow`: look up handle `index` of type `rt`, record it as
    /// lent for the current call (`add_lender`); returns the rep.
    fn lift_borrow(&mut self, index: u32, rt: ResourceType) -> Result<u32, Trap>;
    /// `lower_own`: add a new owning handle for `rep`; returns its index.
    fn lower_own(&mut self, rep: u32, rt: ResourceType) -> Result<u32, Trap>;
    /// `lower_borrow`: returns `rep` itself if this instance implements
    /// `rt`, else a new borrow handle counted in the task's borrow scope.
    fn lower_borrow(&mut self, rep: u32, rt: ResourceType) -> Result<u32, Trap>;
    /// `lift_stream`: take the readable stream end at `index`.
    fn lift_stream(&mut self, _index: u32, _elem: Option<&ValType>) -> Result<u32, Trap> {
        Err(Trap::Unsupported("stream values"))
    }
    /// `lower_stream`: add a readable end for the stream `v`.
    fn lower_stream(&mut self, _v: u32, _elem: Option<&Rc<ValType>>) -> Result<u32, Trap> {
        Err(Trap::Unsupported("stream values"))
    }
    fn lift_future(&mut self, _index: u32, _elem: Option<&ValType>) -> Result<u32, Trap> {
        Err(Trap::Unsupported("future values"))
    }
    fn lower_future(&mut self, _v: u32, _elem: Option<&Rc<ValType>>) -> Result<u32, Trap> {
        Err(Trap::Unsupported("future values"))
    }
    /// `lift_error_context`.
    fn lift_error_context(&mut self, _index: u32) -> Result<u32, Trap> {
        Err(Trap::Unsupported("error-context values"))
    }
    /// `lower_error_context`.
    fn lower_error_context(&mut self, _v: u32) -> Result<u32, Trap> {
        Err(Trap::Unsupported("error-context values"))
    }
}

/// A [`Handles`] for contexts where no handle may cross (e.g. `realloc`'s
/// own signature, or tests of plain data): every operation traps.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoHandles;

impl Handles for NoHandles {
    fn lift_own(&mut self, _: u32, _: ResourceType) -> Result<u32, Trap> {
        Err(Trap::Unsupported("resource handles"))
    }
    fn lift_borrow(&mut self, _: u32, _: ResourceType) -> Result<u32, Trap> {
        Err(Trap::Unsupported("resource handles"))
    }
    fn lower_own(&mut self, _: u32, _: ResourceType) -> Result<u32, Trap> {
        Err(Trap::Unsupported("resource handles"))
    }
    fn lower_borrow(&mut self, _: u32, _: ResourceType) -> Result<u32, Trap> {
        Err(Trap::Unsupported("resource handles"))
    }
}

/// The canonical options that lifting and lowering read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Options {
    pub string_encoding: StringEncoding,
    /// Address type of the `memory` option (i32 unless memory64).
    pub addr: AddrType,
}

/// `LiftLowerContext`: options, memory, realloc and handle table of one
/// lift or lower.
pub struct Cx<'a> {
    pub opts: Options,
    pub memory: Option<&'a mut dyn Memory>,
    pub realloc: Option<&'a mut dyn Realloc>,
    pub handles: &'a mut dyn Handles,
}

impl<'a> Cx<'a> {
    pub fn new(
        opts: Options,
        memory: Option<&'a mut dyn Memory>,
        realloc: Option<&'a mut dyn Realloc>,
        handles: &'a mut dyn Handles,
    ) -> Self {
        Cx {
            opts,
            memory,
            realloc,
            handles,
        }
    }

    pub fn addr(&self) -> AddrType {
        self.opts.addr
    }

    pub fn mem(&self) -> Result<&[u8], Trap> {
        self.memory
            .as_deref()
            .map(|m| m.bytes())
            .ok_or(Trap::MissingMemory)
    }

    pub fn mem_mut(&mut self) -> Result<&mut [u8], Trap> {
        self.memory
            .as_deref_mut()
            .map(|m| m.bytes_mut())
            .ok_or(Trap::MissingMemory)
    }

    pub fn mem_len(&self) -> Result<u64, Trap> {
        Ok(self.mem()?.len() as u64)
    }

    /// `cx.reallocate(...)` followed by the spec's checks of the result:
    /// aligned to `align` and `[ptr, ptr + new_size)` inside memory.
    pub fn reallocate(
        &mut self,
        old: u64,
        old_size: u64,
        align: u32,
        new_size: u64,
    ) -> Result<u64, Trap> {
        let realloc = self.realloc.as_deref_mut().ok_or(Trap::MissingRealloc)?;
        let memory = self.memory.as_deref_mut().ok_or(Trap::MissingMemory)?;
        let ptr = realloc.realloc(memory, old, old_size, align, new_size)?;
        self.check_realloc_result(ptr, align, new_size)?;
        Ok(ptr)
    }

    /// `cx.allocate(alignment, byte_length)` with the result checks.
    pub fn allocate(&mut self, align: u32, size: u64) -> Result<u64, Trap> {
        self.reallocate(0, 0, align, size)
    }

    fn check_realloc_result(&self, ptr: u64, align: u32, size: u64) -> Result<(), Trap> {
        if !crate::layout::is_aligned(ptr, align) {
            return Err(Trap::ReallocUnaligned { ptr, align });
        }
        self.check_realloc_bounds(ptr, size)
    }

    fn check_realloc_bounds(&self, ptr: u64, size: u64) -> Result<(), Trap> {
        let mem_len = self.mem_len()?;
        if ptr.checked_add(size).is_none_or(|end| end > mem_len) {
            return Err(Trap::ReallocOutOfBounds {
                ptr,
                byte_len: size,
                mem_len,
            });
        }
        Ok(())
    }

    /// Bounds check of an access made by the ABI itself (the spec asserts
    /// these after its earlier checks; we still refuse rather than panic).
    pub(crate) fn range(&self, ptr: u64, len: u64) -> Result<core::ops::Range<usize>, Trap> {
        let mem_len = self.mem_len()?;
        match ptr.checked_add(len) {
            Some(end) if end <= mem_len => Ok(ptr as usize..end as usize),
            _ => Err(Trap::OutOfBounds {
                what: "load/store",
                ptr,
                byte_len: len,
                mem_len,
            }),
        }
    }

    // Loads and stores by width: fixed-size copies compile to one move
    // each, where a variable-length one calls `memcpy`.
    pub(crate) fn load_int(&self, ptr: u64, nbytes: u32) -> Result<u64, Trap> {
        let r = self.range(ptr, u64::from(nbytes))?;
        let m = &self.mem()?[r];
        Ok(match *m {
            [a] => u64::from(a),
            [a, b] => u64::from(u16::from_le_bytes([a, b])),
            [a, b, c, d] => u64::from(u32::from_le_bytes([a, b, c, d])),
            [a, b, c, d, e, f, g, h] => u64::from_le_bytes([a, b, c, d, e, f, g, h]),
            _ => {
                let mut b = [0u8; 8];
                b[..m.len()].copy_from_slice(m);
                u64::from_le_bytes(b)
            }
        })
    }

    pub(crate) fn store_int(&mut self, v: u64, ptr: u64, nbytes: u32) -> Result<(), Trap> {
        let r = self.range(ptr, u64::from(nbytes))?;
        let m = &mut self.mem_mut()?[r];
        match m.len() {
            1 => m[0] = v as u8,
            2 => m.copy_from_slice(&(v as u16).to_le_bytes()),
            4 => m.copy_from_slice(&(v as u32).to_le_bytes()),
            8 => m.copy_from_slice(&v.to_le_bytes()),
            n => m.copy_from_slice(&v.to_le_bytes()[..n]),
        }
        Ok(())
    }

    /// Copy `bytes` to `[ptr, ptr + len)`.
    pub(crate) fn write(&mut self, ptr: u64, bytes: &[u8]) -> Result<(), Trap> {
        let r = self.range(ptr, bytes.len() as u64)?;
        self.mem_mut()?[r].copy_from_slice(bytes);
        Ok(())
    }

    pub(crate) fn load_ptr(&self, ptr: u64) -> Result<u64, Trap> {
        self.load_int(ptr, self.opts.addr.ptr_size())
    }

    pub(crate) fn store_ptr(&mut self, v: u64, ptr: u64) -> Result<(), Trap> {
        self.store_int(v, ptr, self.opts.addr.ptr_size())
    }
}
