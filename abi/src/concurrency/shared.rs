//! The state two ends of a stream or future share (`SharedStreamImpl`,
//! `SharedFutureImpl`), the buffers a copy moves elements between
//! (`Buffer`, `ReadableBuffer`, `WritableBuffer`) and the arena the runtime
//! keeps shared states in.
//!
//! The spec's callbacks `on_copy` / `on_copy_done` of the side whose copy
//! was left pending become a returned [`Notice`]: the caller applies it to
//! that side (an end in some instance's table, see
//! [`super::Instance::apply_notice`], or a host end the runtime backs with
//! a device).

use alloc::rc::Rc;
use alloc::vec::Vec;

use crate::buffers::GuestBuffer;
use crate::error::Trap;
use crate::events::CopyResult;
use crate::handles::Table;
use crate::types::ValType;
use crate::values::Value;

use super::InstanceId;

/// Who is on one side of a copy: an end in an instance's handle table
/// (`pending_inst` + the end the spec's closures capture), or a host-side
/// end identified by a runtime-chosen token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    Guest { inst: InstanceId, handle: u32 },
    Host(u64),
}

impl Side {
    pub fn inst(&self) -> Option<InstanceId> {
        match self {
            Side::Guest { inst, .. } => Some(*inst),
            Side::Host(_) => None,
        }
    }
}

/// `Buffer`: what the shared state needs to know of a buffer. The spec's
/// `read`/`write` are done by [`CopyElems`].
pub trait Buffer {
    /// `remain()`.
    fn remain(&self) -> u32;
    /// `is_zero_length()`.
    fn is_zero_length(&self) -> bool;
    /// `progress`: elements moved so far.
    fn progress(&self) -> u32;
}

impl Buffer for GuestBuffer {
    fn remain(&self) -> u32 {
        GuestBuffer::remain(self)
    }
    fn is_zero_length(&self) -> bool {
        GuestBuffer::is_zero_length(self)
    }
    fn progress(&self) -> u32 {
        self.progress
    }
}

/// `dst.write(src.read(n))`: moves `n` elements (`n <= src.remain()`,
/// `n <= dst.remain()`) and advances both buffers by exactly `n`. The
/// runtime implements it with the memories of the two instances involved
/// (see [`copy_guest_values`]), a device for host buffers, or a plain
/// count for a payload-less stream (`t` is `None`, see [`CountOnly`]).
pub trait CopyElems<B> {
    fn copy(&mut self, src: &mut B, dst: &mut B, n: u32) -> Result<(), Trap>;
}

/// [`CopyElems`] for elements that hold handles (`own` resources, stream
/// and future ends, error contexts): lifting from the writer's buffer
/// takes them out of the writer's table and lowering into the reader's
/// adds them to the reader's, so the copy needs both instances. One of
/// them runs the copy built-in and is borrowed by it while the shared
/// state moves elements: it is handed in as `caller` (see
/// [`super::Instance::copy_moving_handles`]); the other is the pending
/// side's, which the implementation finds itself.
pub trait CopyElemsIn<B> {
    /// `dst.write(src.read(n))`, as [`CopyElems::copy`].
    fn copy_in(
        &mut self,
        caller: &mut super::Instance,
        src: &mut B,
        dst: &mut B,
        n: u32,
    ) -> Result<(), Trap>;
}

/// A [`CopyElems`] made of a [`CopyElemsIn`] and the instance whose
/// built-in runs the copy.
pub(crate) struct InCaller<'a, B> {
    pub caller: &'a mut super::Instance,
    pub copier: &'a mut dyn CopyElemsIn<B>,
}

impl<B> CopyElems<B> for InCaller<'_, B> {
    fn copy(&mut self, src: &mut B, dst: &mut B, n: u32) -> Result<(), Trap> {
        self.copier.copy_in(self.caller, src, dst, n)
    }
}

/// A [`CopyElems`] that only advances [`GuestBuffer`]s: right for a
/// payload-less `stream`/`future` (elements are `()`).
#[derive(Debug, Default, Clone, Copy)]
pub struct CountOnly;

impl CopyElems<GuestBuffer> for CountOnly {
    fn copy(&mut self, src: &mut GuestBuffer, dst: &mut GuestBuffer, n: u32) -> Result<(), Trap> {
        check_n(src, dst, n)?;
        src.advance(n);
        dst.advance(n);
        Ok(())
    }
}

impl CopyElems<HostBuffer> for CountOnly {
    fn copy(&mut self, src: &mut HostBuffer, dst: &mut HostBuffer, n: u32) -> Result<(), Trap> {
        check_n(src, dst, n)?;
        let vs = src.read(n);
        dst.write(vs)
    }
}

fn check_n<B: Buffer>(src: &B, dst: &B, n: u32) -> Result<(), Trap> {
    if n > src.remain() || n > dst.remain() {
        return Err(Trap::Mismatch("copy of more elements than a buffer holds"));
    }
    Ok(())
}

/// `dst.write(src.read(n))` between two guest buffers through [`Value`]s:
/// lift from the writer's memory (`src_cx`), lower into the reader's
/// (`dst_cx`). The two contexts may be different instances' memories.
pub fn copy_guest_values(
    src_cx: &mut crate::memory::Cx<'_>,
    src: &mut GuestBuffer,
    dst_cx: &mut crate::memory::Cx<'_>,
    dst: &mut GuestBuffer,
    t: Option<&ValType>,
    n: u32,
) -> Result<(), Trap> {
    check_n(src, dst, n)?;
    match t {
        Some(_) => {
            let vs = src.read(src_cx, t, n)?;
            dst.write(dst_cx, t, &vs)
        }
        None => {
            src.advance(n);
            dst.advance(n);
            Ok(())
        }
    }
}

/// A host-side buffer of [`Value`]s (`Buffer` of a host end): readable
/// when made [`HostBuffer::readable`] (its values are the source), else
/// writable with room for `length` values.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HostBuffer {
    pub values: Vec<Value>,
    pub length: u32,
    pub progress: u32,
}

impl HostBuffer {
    /// A source of `values` (for the host writing into a stream).
    pub fn readable(values: Vec<Value>) -> Self {
        let length = values.len() as u32;
        HostBuffer {
            values,
            length,
            progress: 0,
        }
    }
    /// A destination for up to `length` values.
    pub fn writable(length: u32) -> Self {
        HostBuffer {
            values: Vec::new(),
            length,
            progress: 0,
        }
    }
    /// `read(n)`: the next `n` values.
    pub fn read(&mut self, n: u32) -> Vec<Value> {
        let start = self.progress as usize;
        let end = (start + n as usize).min(self.values.len());
        self.progress += n;
        self.values[start..end].to_vec()
    }
    /// `write(vs)`.
    pub fn write(&mut self, vs: Vec<Value>) -> Result<(), Trap> {
        let n = u32::try_from(vs.len()).map_err(|_| Trap::Mismatch("too many values"))?;
        if n > self.remain() {
            return Err(Trap::Mismatch("write past the end of a host buffer"));
        }
        self.values.extend(vs);
        self.progress += n;
        Ok(())
    }
}

impl Buffer for HostBuffer {
    fn remain(&self) -> u32 {
        self.length - self.progress
    }
    fn is_zero_length(&self) -> bool {
        self.length == 0
    }
    fn progress(&self) -> u32 {
        self.progress
    }
}

/// `none_or_number_type(t)`: element types an instance may copy to
/// itself (the spec's temporary restriction).
pub fn none_or_number_type(t: Option<&ValType>) -> bool {
    t.is_none_or(ValType::is_number)
}

/// What a copy's pending side is told (the spec's `pending_on_copy` and
/// `pending_on_copy_done` calls).
#[derive(Debug, Clone, PartialEq)]
pub enum Notice<B> {
    /// `pending_on_copy(reset_pending)`: elements moved into/out of the
    /// pending buffer, which stays in the shared state (more may move)
    /// until the side's event is delivered and reclaims it
    /// ([`SharedStream::reclaim`]).
    OnCopy { side: Side },
    /// `pending_on_copy_done(result)` after `reset_pending()`: the copy is
    /// over; the buffer is handed back (its `progress` is final).
    OnCopyDone {
        side: Side,
        result: CopyResult,
        buffer: B,
    },
}

impl<B> Notice<B> {
    pub fn side(&self) -> Side {
        match self {
            Notice::OnCopy { side } | Notice::OnCopyDone { side, .. } => *side,
        }
    }
}

/// What happened to the side that called `read`/`write`.
#[derive(Debug, Clone, PartialEq)]
pub enum Copied<B> {
    /// `on_copy_done(result)` was called at once: the copy is over; the
    /// buffer is handed back.
    Done { result: CopyResult, buffer: B },
    /// `set_pending(...)`: the buffer now waits in the shared state for the
    /// other side.
    Pending,
}

/// The result of a shared-state operation: the caller's outcome and at
/// most one [`Notice`] for the other (pending) side.
pub type CopyStep<B> = (Copied<B>, Option<Notice<B>>);

#[derive(Debug, Clone, PartialEq)]
struct PendingCopy<B> {
    side: Side,
    buffer: B,
}

/// `SharedStreamImpl`.
#[derive(Debug, Clone, PartialEq)]
pub struct SharedStream<B> {
    /// `t`: the element type (`None`: payload-less), shared with the
    /// ends.
    pub t: Option<Rc<ValType>>,
    /// `dropped`: one end was dropped.
    pub dropped: bool,
    pending: Option<PendingCopy<B>>,
    /// The pending buffer is in a transfer the host cannot stop (a device
    /// DMA into or out of it): a cancel waits for the transfer to end.
    host_busy: bool,
    cancel_requested: bool,
}

impl<B: Buffer> SharedStream<B> {
    pub fn new(t: Option<Rc<ValType>>) -> Self {
        SharedStream {
            t,
            dropped: false,
            pending: None,
            host_busy: false,
            cancel_requested: false,
        }
    }

    /// Marks the pending buffer as lent to a device transfer (see
    /// [`Self::end_host_transfer`]).
    pub fn begin_host_transfer(&mut self) {
        self.host_busy = true;
    }

    /// True while the pending buffer is lent to a device transfer.
    pub fn host_busy(&self) -> bool {
        self.host_busy
    }

    /// The device transfer into/out of the pending buffer is over (the
    /// caller advanced the buffer by what moved): the pending copy ends
    /// `COMPLETED`, or `CANCELLED` if a cancel came meanwhile.
    pub fn end_host_transfer(&mut self) -> Option<Notice<B>> {
        self.host_busy = false;
        let result = if core::mem::take(&mut self.cancel_requested) {
            CopyResult::Cancelled
        } else {
            CopyResult::Completed
        };
        self.reset_and_notify_pending(result)
    }

    /// The side whose copy is pending, if any (`pending_inst`, ...).
    pub fn pending_side(&self) -> Option<Side> {
        self.pending.as_ref().map(|p| p.side)
    }

    /// The pending buffer (e.g. for a zero-copy device transfer).
    pub fn pending_buffer_mut(&mut self) -> Option<&mut B> {
        self.pending.as_mut().map(|p| &mut p.buffer)
    }

    /// `reset_pending()` as the `reclaim_buffer` of a partial copy's event:
    /// takes the pending buffer back.
    pub fn reclaim(&mut self) -> Option<(Side, B)> {
        self.pending.take().map(|p| (p.side, p.buffer))
    }

    fn reset_and_notify_pending(&mut self, result: CopyResult) -> Option<Notice<B>> {
        self.pending.take().map(|p| Notice::OnCopyDone {
            side: p.side,
            result,
            buffer: p.buffer,
        })
    }

    /// `cancel()`: the pending copy ends `CANCELLED` (once the device is
    /// done with its buffer, if it is lent to one: the spec lets a cancel
    /// complete later, `BLOCKED`).
    pub fn cancel(&mut self) -> Option<Notice<B>> {
        if self.host_busy {
            self.cancel_requested = true;
            return None;
        }
        self.reset_and_notify_pending(CopyResult::Cancelled)
    }

    /// `drop()`: the first drop marks the stream dropped and ends a
    /// pending copy `DROPPED`. Returns the notice and whether this was the
    /// second end dropped (the shared state may then be freed).
    pub fn drop_end(&mut self) -> (Option<Notice<B>>, bool) {
        if self.dropped {
            return (None, true);
        }
        self.dropped = true;
        (self.reset_and_notify_pending(CopyResult::Dropped), false)
    }

    fn check_same_inst(&self, side: Side) -> Result<(), Trap> {
        let pending_inst = self.pending.as_ref().and_then(|p| p.side.inst());
        if side.inst().is_some()
            && side.inst() == pending_inst
            && !none_or_number_type(self.t.as_deref())
        {
            return Err(Trap::IntraComponentCopy { stream: true });
        }
        Ok(())
    }

    /// `read(inst, dst_buffer, on_copy, on_copy_done)`.
    pub fn read(
        &mut self,
        side: Side,
        mut dst: B,
        copier: &mut dyn CopyElems<B>,
    ) -> Result<CopyStep<B>, Trap> {
        if self.dropped {
            return Ok(done(CopyResult::Dropped, dst, None));
        }
        if self.pending.is_none() {
            self.pending = Some(PendingCopy { side, buffer: dst });
            return Ok((Copied::Pending, None));
        }
        self.check_same_inst(side)?;
        let p = self.pending.as_mut().expect("checked above");
        if p.buffer.remain() > 0 {
            let mut notice = None;
            if dst.remain() > 0 {
                let n = dst.remain().min(p.buffer.remain());
                copier.copy(&mut p.buffer, &mut dst, n)?;
                notice = Some(Notice::OnCopy { side: p.side });
            }
            Ok(done(CopyResult::Completed, dst, notice))
        } else {
            let notice = self.reset_and_notify_pending(CopyResult::Completed);
            self.pending = Some(PendingCopy { side, buffer: dst });
            Ok((Copied::Pending, notice))
        }
    }

    /// `write(inst, src_buffer, on_copy, on_copy_done)`.
    pub fn write(
        &mut self,
        side: Side,
        mut src: B,
        copier: &mut dyn CopyElems<B>,
    ) -> Result<CopyStep<B>, Trap> {
        if self.dropped {
            return Ok(done(CopyResult::Dropped, src, None));
        }
        if self.pending.is_none() {
            self.pending = Some(PendingCopy { side, buffer: src });
            return Ok((Copied::Pending, None));
        }
        self.check_same_inst(side)?;
        let p = self.pending.as_mut().expect("checked above");
        if p.buffer.remain() > 0 {
            let mut notice = None;
            if src.remain() > 0 {
                let n = src.remain().min(p.buffer.remain());
                copier.copy(&mut src, &mut p.buffer, n)?;
                notice = Some(Notice::OnCopy { side: p.side });
            }
            Ok(done(CopyResult::Completed, src, notice))
        } else if src.is_zero_length() && p.buffer.is_zero_length() {
            Ok(done(CopyResult::Completed, src, None))
        } else {
            let notice = self.reset_and_notify_pending(CopyResult::Completed);
            self.pending = Some(PendingCopy { side, buffer: src });
            Ok((Copied::Pending, notice))
        }
    }
}

fn done<B>(result: CopyResult, buffer: B, notice: Option<Notice<B>>) -> CopyStep<B> {
    (Copied::Done { result, buffer }, notice)
}

/// `SharedFutureImpl`.
#[derive(Debug, Clone, PartialEq)]
pub struct SharedFuture<B> {
    pub t: Option<Rc<ValType>>,
    pub dropped: bool,
    pending: Option<PendingCopy<B>>,
}

impl<B: Buffer> SharedFuture<B> {
    pub fn new(t: Option<Rc<ValType>>) -> Self {
        SharedFuture {
            t,
            dropped: false,
            pending: None,
        }
    }

    pub fn pending_side(&self) -> Option<Side> {
        self.pending.as_ref().map(|p| p.side)
    }

    fn reset_and_notify_pending(&mut self, result: CopyResult) -> Option<Notice<B>> {
        self.pending.take().map(|p| Notice::OnCopyDone {
            side: p.side,
            result,
            buffer: p.buffer,
        })
    }

    /// `cancel()`.
    pub fn cancel(&mut self) -> Option<Notice<B>> {
        self.reset_and_notify_pending(CopyResult::Cancelled)
    }

    /// `drop()`; see [`SharedStream::drop_end`]. (The spec asserts the
    /// pending buffer is a reader's; a reader dropping while the writer's
    /// value waits also ends that write `DROPPED`, as for streams.)
    pub fn drop_end(&mut self) -> (Option<Notice<B>>, bool) {
        if self.dropped {
            return (None, true);
        }
        self.dropped = true;
        (self.reset_and_notify_pending(CopyResult::Dropped), false)
    }

    fn check_same_inst(&self, side: Side) -> Result<(), Trap> {
        let pending_inst = self.pending.as_ref().and_then(|p| p.side.inst());
        if side.inst().is_some()
            && side.inst() == pending_inst
            && !none_or_number_type(self.t.as_deref())
        {
            return Err(Trap::IntraComponentCopy { stream: false });
        }
        Ok(())
    }

    /// `read(inst, dst_buffer, on_copy_done)`.
    pub fn read(
        &mut self,
        side: Side,
        mut dst: B,
        copier: &mut dyn CopyElems<B>,
    ) -> Result<CopyStep<B>, Trap> {
        if self.dropped || dst.remain() != 1 {
            return Err(Trap::Mismatch(
                "future read: dropped or buffer not of one element",
            ));
        }
        if self.pending.is_none() {
            self.pending = Some(PendingCopy { side, buffer: dst });
            return Ok((Copied::Pending, None));
        }
        self.check_same_inst(side)?;
        let p = self.pending.as_mut().expect("checked above");
        copier.copy(&mut p.buffer, &mut dst, 1)?;
        let notice = self.reset_and_notify_pending(CopyResult::Completed);
        Ok(done(CopyResult::Completed, dst, notice))
    }

    /// `write(inst, src_buffer, on_copy_done)`.
    pub fn write(
        &mut self,
        side: Side,
        mut src: B,
        copier: &mut dyn CopyElems<B>,
    ) -> Result<CopyStep<B>, Trap> {
        if src.remain() != 1 {
            return Err(Trap::Mismatch("future write: buffer not of one element"));
        }
        if self.dropped {
            return Ok(done(CopyResult::Dropped, src, None));
        }
        if self.pending.is_none() {
            self.pending = Some(PendingCopy { side, buffer: src });
            return Ok((Copied::Pending, None));
        }
        self.check_same_inst(side)?;
        let p = self.pending.as_mut().expect("checked above");
        copier.copy(&mut src, &mut p.buffer, 1)?;
        let notice = self.reset_and_notify_pending(CopyResult::Completed);
        Ok(done(CopyResult::Completed, src, notice))
    }
}

/// The store-wide arena of shared stream/future states; an end holds the
/// index of its shared state here (ends of one stream may live in two
/// instances' tables).
#[derive(Debug)]
pub struct SharedStore<B> {
    pub streams: Table<SharedStream<B>>,
    pub futures: Table<SharedFuture<B>>,
}

impl<B> Default for SharedStore<B> {
    fn default() -> Self {
        SharedStore {
            streams: Table::new(),
            futures: Table::new(),
        }
    }
}

impl<B: Buffer> SharedStore<B> {
    pub fn new() -> Self {
        Self::default()
    }
    /// A new `SharedStreamImpl(t)`; returns its index.
    pub fn new_stream(&mut self, t: Option<Rc<ValType>>) -> Result<u32, Trap> {
        self.streams.add(SharedStream::new(t))
    }
    /// A new `SharedFutureImpl(t)`; returns its index.
    pub fn new_future(&mut self, t: Option<Rc<ValType>>) -> Result<u32, Trap> {
        self.futures.add(SharedFuture::new(t))
    }
    pub fn stream(&mut self, i: u32) -> Result<&mut SharedStream<B>, Trap> {
        self.streams.get_mut(i)
    }
    pub fn future(&mut self, i: u32) -> Result<&mut SharedFuture<B>, Trap> {
        self.futures.get_mut(i)
    }
}
