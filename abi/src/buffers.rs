//! Guest buffers of `stream.read`/`stream.write`/`future.read`/
//! `future.write` (`BufferGuestImpl`, `ReadableBufferGuestImpl`,
//! `WritableBufferGuestImpl`): validated once up front, then filled or
//! drained in steps that advance `ptr` and `progress`.

use alloc::vec::Vec;

use crate::error::Trap;
use crate::events::BUFFER_MAX_LENGTH;
use crate::layout::{alignment, elem_size, is_aligned};
use crate::lift::load_list_from_valid_range;
use crate::lower::store_list_into_valid_range;
use crate::memory::Cx;
use crate::types::ValType;
use crate::values::Value;

/// A `[ptr, ptr + length * elem_size)` range of guest memory for a copy of
/// `length` elements of type `t` (`None`: a payload-less stream, where only
/// counts move).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestBuffer {
    pub ptr: u64,
    pub length: u32,
    pub progress: u32,
    elem_size: u64,
}

impl GuestBuffer {
    /// `BufferGuestImpl.__init__`: traps if `length > Buffer.MAX_LENGTH`,
    /// or (for a typed, non-empty buffer) if `ptr` is misaligned or the range
    /// leaves memory.
    pub fn new(cx: &Cx<'_>, t: Option<&ValType>, ptr: u64, length: u64) -> Result<Self, Trap> {
        let pt = cx.addr();
        Self::with_layout(
            cx,
            t.map(|t| (alignment(t, pt), elem_size(t, pt))),
            ptr,
            length,
        )
    }

    /// [`GuestBuffer::new`] for an element type whose `(alignment,
    /// elem_size)` the caller worked out before (`None`: no payload).
    pub fn with_layout(
        cx: &Cx<'_>,
        layout: Option<(u32, u64)>,
        ptr: u64,
        length: u64,
    ) -> Result<Self, Trap> {
        Self::with_layout_in(|| cx.mem_len(), layout, ptr, length)
    }

    /// [`GuestBuffer::with_layout`] given the memory's length (asked for
    /// only when there are bytes to check) instead of a whole context.
    pub fn with_layout_in(
        mem_len: impl FnOnce() -> Result<u64, Trap>,
        layout: Option<(u32, u64)>,
        ptr: u64,
        length: u64,
    ) -> Result<Self, Trap> {
        if length > u64::from(BUFFER_MAX_LENGTH) {
            return Err(Trap::BufferTooLong { len: length });
        }
        let mut size = 0;
        if let Some((align, elem)) = layout {
            size = elem;
            if length > 0 {
                if !is_aligned(ptr, align) {
                    return Err(Trap::UnalignedPointer {
                        what: "stream/future buffer",
                        ptr,
                        align,
                    });
                }
                let byte_len = length * size;
                let mem_len = mem_len()?;
                if ptr.checked_add(byte_len).is_none_or(|e| e > mem_len) {
                    return Err(Trap::OutOfBounds {
                        what: "stream/future buffer",
                        ptr,
                        byte_len,
                        mem_len,
                    });
                }
            }
        }
        Ok(GuestBuffer {
            ptr,
            length: length as u32,
            progress: 0,
            elem_size: size,
        })
    }

    /// `remain()`.
    pub fn remain(&self) -> u32 {
        self.length - self.progress
    }

    /// `is_zero_length()`.
    pub fn is_zero_length(&self) -> bool {
        self.length == 0
    }

    /// The byte range of the next `n` elements (for a zero-copy device
    /// transfer), then [`GuestBuffer::advance`] by what was transferred.
    pub fn next_bytes(&self, n: u32) -> (u64, u64) {
        (self.ptr, u64::from(n) * self.elem_size)
    }

    /// Account for `n` elements moved.
    pub fn advance(&mut self, n: u32) {
        assert!(n <= self.remain(), "advance past the end of a guest buffer");
        self.ptr += u64::from(n) * self.elem_size;
        self.progress += n;
    }

    /// `ReadableBufferGuestImpl.read(n)`: lift `n` elements (unit values
    /// for a payload-less stream).
    pub fn read(
        &mut self,
        cx: &mut Cx<'_>,
        t: Option<&ValType>,
        n: u32,
    ) -> Result<Vec<Value>, Trap> {
        assert!(n <= self.remain(), "read past the end of a guest buffer");
        let vs = match t {
            Some(t) => load_list_from_valid_range(cx, self.ptr, u64::from(n), t)?,
            None => Vec::new(),
        };
        self.advance(n);
        Ok(vs)
    }

    /// `WritableBufferGuestImpl.write(vs)`: lower the elements.
    pub fn write(
        &mut self,
        cx: &mut Cx<'_>,
        t: Option<&ValType>,
        vs: &[Value],
    ) -> Result<(), Trap> {
        let n = u32::try_from(vs.len()).map_err(|_| Trap::BufferTooLong {
            len: vs.len() as u64,
        })?;
        assert!(n <= self.remain(), "write past the end of a guest buffer");
        if let Some(t) = t {
            store_list_into_valid_range(cx, vs, self.ptr, t)?;
        }
        self.advance(n);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{NoHandles, Options};
    use alloc::vec;

    #[test]
    fn buffer_checks_and_progress() {
        let mut mem = vec![0u8; 16];
        let mut h = NoHandles;
        let mut cx = Cx::new(Options::default(), Some(&mut mem), None, &mut h);
        let t = ValType::U32;
        assert!(matches!(
            GuestBuffer::new(&cx, Some(&t), 2, 1),
            Err(Trap::UnalignedPointer { align: 4, .. })
        ));
        assert!(matches!(
            GuestBuffer::new(&cx, Some(&t), 8, 3),
            Err(Trap::OutOfBounds { .. })
        ));
        assert_eq!(
            GuestBuffer::new(&cx, Some(&t), 0, 1 << 28),
            Err(Trap::BufferTooLong { len: 1 << 28 })
        );
        // zero-length and payload-less buffers are not range-checked
        assert!(GuestBuffer::new(&cx, Some(&t), 3, 0).is_ok());
        assert!(GuestBuffer::new(&cx, None, 1 << 40, 5).is_ok());

        let mut b = GuestBuffer::new(&cx, Some(&t), 4, 3).unwrap();
        b.write(&mut cx, Some(&t), &[Value::U32(1), Value::U32(2)])
            .unwrap();
        assert_eq!((b.ptr, b.progress, b.remain()), (12, 2, 1));
        let mut r = GuestBuffer::new(&cx, Some(&t), 4, 2).unwrap();
        assert_eq!(
            r.read(&mut cx, Some(&t), 2).unwrap(),
            vec![Value::U32(1), Value::U32(2)]
        );
        assert_eq!(r.next_bytes(0), (12, 0));
    }
}
