//! virtio-blk, non-blocking: read, write and flush are submitted with a
//! caller's tag and come back as completions in used-ring order.
//!
//! Written on virtio-drivers' `VirtQueue` rather than its `VirtIOBlk`,
//! whose flush only exists as a blocking call. Each request takes three
//! descriptors (header, data, status); no indirect tables, so the hot path
//! allocates nothing.

use crate::VirtioTransport;
use alloc::boxed::Box;
use alloc::vec::Vec;
use bitflags::bitflags;
use virtio_drivers::queue::VirtQueue;
use virtio_drivers::transport::{DeviceType, Transport};
use virtio_drivers::Hal;

pub const SECTOR_SIZE: usize = 512;
const QUEUE: u16 = 0;
const QUEUE_SIZE: usize = 64;
/// Requests in flight at once: three descriptors each.
pub const MAX_IN_FLIGHT: usize = QUEUE_SIZE / 3;

bitflags! {
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    struct Features: u64 {
        const RO = 1 << 5;
        const FLUSH = 1 << 9;
        const VERSION_1 = 1 << 32;
    }
}

const T_IN: u32 = 0;
const T_OUT: u32 = 1;
const T_FLUSH: u32 = 4;
const S_OK: u8 = 0;
const S_UNSUPP: u8 = 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlkError {
    /// `[sector, sector + sectors)` is not inside the device.
    OutOfRange {
        sector: u64,
        sectors: u64,
        capacity: u64,
    },
    /// The buffer is empty or not a whole number of sectors.
    Unaligned {
        len: usize,
    },
    ReadOnly,
    /// Every request slot is in flight; reap completions first.
    QueueFull,
    /// The device answered with an error status.
    Io,
    Unsupported,
    /// The transport or queue failed (a driver bug or a broken device).
    Virtio(virtio_drivers::Error),
}

impl core::fmt::Display for BlkError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::OutOfRange {
                sector,
                sectors,
                capacity,
            } => write!(
                f,
                "sectors {sector}..{} are past the end of the device ({capacity} sectors)",
                sector.saturating_add(*sectors)
            ),
            Self::Unaligned { len } => write!(
                f,
                "length {len} is not a non-zero multiple of {SECTOR_SIZE} bytes"
            ),
            Self::ReadOnly => f.write_str("the device is read-only"),
            Self::QueueFull => f.write_str("the request queue is full"),
            Self::Io => f.write_str("the device reported an I/O error"),
            Self::Unsupported => f.write_str("the device does not support this request"),
            Self::Virtio(e) => write!(f, "virtio: {e}"),
        }
    }
}

/// Pieces of one request's data at most: 64 KiB that starts inside a page
/// spans 17 pages.
pub const MAX_SEGMENTS: usize = 17;

/// A request's data as pieces, each contiguous for the device (e.g. the
/// physical pages behind a guest buffer, in order).
#[derive(Clone, Copy, Debug)]
pub struct Segments {
    parts: [(*mut u8, usize); MAX_SEGMENTS],
    count: usize,
}

impl Segments {
    pub fn new() -> Self {
        Segments {
            parts: [(core::ptr::null_mut(), 0); MAX_SEGMENTS],
            count: 0,
        }
    }

    /// Appends a piece (merged with the last one when they touch); false
    /// when full.
    pub fn push(&mut self, addr: *mut u8, len: usize) -> bool {
        if let Some(last) = self.count.checked_sub(1).map(|i| &mut self.parts[i]) {
            if last.0.wrapping_add(last.1) == addr {
                last.1 += len;
                return true;
            }
        }
        if self.count == MAX_SEGMENTS {
            return false;
        }
        self.parts[self.count] = (addr, len);
        self.count += 1;
        true
    }

    pub fn len(&self) -> usize {
        self.parts[..self.count].iter().map(|p| p.1).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for Segments {
    fn default() -> Self {
        Self::new()
    }
}

/// What to do. The data buffer is raw: it is DMA'd while in flight, so the
/// caller owns it (pinned, unaliased) until the completion comes back.
#[derive(Clone, Copy, Debug)]
pub enum Request {
    Read {
        sector: u64,
        buf: *mut u8,
        len: usize,
    },
    Write {
        sector: u64,
        buf: *const u8,
        len: usize,
    },
    /// A read scattered over `segs` (one descriptor each).
    ReadSegments {
        sector: u64,
        segs: Segments,
    },
    /// A write gathered from `segs`.
    WriteSegments {
        sector: u64,
        segs: Segments,
    },
    Flush,
}

/// Which way a request's data goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The device fills the pieces.
    Read,
    /// The device takes the pieces.
    Write,
    /// No data.
    Flush,
}

impl Kind {
    fn code(self) -> u32 {
        match self {
            Kind::Read => T_IN,
            Kind::Write => T_OUT,
            Kind::Flush => T_FLUSH,
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Completion {
    pub tag: u64,
    /// Bytes transferred (0 for a flush).
    pub result: Result<usize, BlkError>,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Header {
    kind: u32,
    reserved: u32,
    sector: u64,
}

/// Per-slot memory: what the device reads and writes (header, status),
/// and the request's data pieces, filled in place at submission and read
/// back in place at completion (a few hundred bytes never moved on the
/// I/O path). Boxed, so its address is stable while requests are in
/// flight.
#[derive(Clone, Copy, Default)]
struct SlotMem {
    header: Header,
    status: u8,
    segs: Segments,
}

#[derive(Clone, Copy)]
struct InFlight {
    tag: u64,
    slot: usize,
}

pub struct BlkDevice<H: Hal> {
    transport: VirtioTransport,
    queue: VirtQueue<H, QUEUE_SIZE>,
    capacity: u64,
    features: Features,
    mem: Box<[SlotMem; MAX_IN_FLIGHT]>,
    free_slots: Vec<usize>,
    /// Indexed by token (head descriptor).
    in_flight: Box<[Option<InFlight>; QUEUE_SIZE]>,
}

// SAFETY: the raw buffer pointers in the in-flight table are owned by the
// caller per `submit`'s contract; the device is used by one CPU at a time.
unsafe impl<H: Hal> Send for BlkDevice<H> {}

impl<H: Hal> BlkDevice<H> {
    pub fn new(mut transport: VirtioTransport) -> Result<Self, virtio_drivers::Error> {
        if transport.device_type() != DeviceType::Block {
            return Err(virtio_drivers::Error::InvalidParam);
        }
        let features = transport.begin_init(Features::RO | Features::FLUSH | Features::VERSION_1);
        // capacity: le64 at offset 0 of the config space, read as two u32
        // (virtio-mmio config space takes 32-bit accesses).
        let lo: u32 = transport.read_config_space(0)?;
        let hi: u32 = transport.read_config_space(4)?;
        let queue = VirtQueue::new(&mut transport, QUEUE, false, false)?;
        transport.finish_init();
        Ok(Self {
            transport,
            queue,
            capacity: (hi as u64) << 32 | lo as u64,
            features,
            mem: Box::new([SlotMem::default(); MAX_IN_FLIGHT]),
            free_slots: (0..MAX_IN_FLIGHT).rev().collect(),
            in_flight: Box::new([None; QUEUE_SIZE]),
        })
    }

    /// Size in sectors.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    pub fn readonly(&self) -> bool {
        self.features.contains(Features::RO)
    }

    pub fn in_flight(&self) -> usize {
        MAX_IN_FLIGHT - self.free_slots.len()
    }

    fn check(&self, sector: u64, len: usize) -> Result<(), BlkError> {
        if len == 0 || !len.is_multiple_of(SECTOR_SIZE) {
            return Err(BlkError::Unaligned { len });
        }
        let sectors = (len / SECTOR_SIZE) as u64;
        if sector
            .checked_add(sectors)
            .is_none_or(|end| end > self.capacity)
        {
            return Err(BlkError::OutOfRange {
                sector,
                sectors,
                capacity: self.capacity,
            });
        }
        Ok(())
    }

    /// Queues `request`; its completion carries `tag`. Never blocks.
    ///
    /// # Safety
    /// The buffer of a read or write must stay valid, unmoved and untouched
    /// by anyone else until [`poll`](Self::poll) returns its completion.
    pub unsafe fn submit(&mut self, tag: u64, request: &Request) -> Result<(), BlkError> {
        let (kind, sector) = match *request {
            Request::Read { sector, .. } | Request::ReadSegments { sector, .. } => {
                (Kind::Read, sector)
            }
            Request::Write { sector, .. } | Request::WriteSegments { sector, .. } => {
                (Kind::Write, sector)
            }
            Request::Flush => (Kind::Flush, 0),
        };
        let fill = |segs: &mut Segments| {
            match *request {
                Request::Read { buf, len, .. } => {
                    segs.push(buf, len);
                }
                Request::Write { buf, len, .. } => {
                    segs.push(buf as *mut u8, len);
                }
                Request::ReadSegments { segs: s, .. } | Request::WriteSegments { segs: s, .. } => {
                    *segs = s
                }
                Request::Flush => {}
            }
            Ok(())
        };
        // SAFETY: forwarded to the caller.
        unsafe { self.submit_with(tag, kind, sector, fill) }
    }

    /// Queues a request whose data pieces `fill` writes straight into the
    /// slot the request occupies (no list is built and then moved); its
    /// completion carries `tag`. Never blocks.
    ///
    /// # Safety
    /// As [`submit`](Self::submit), for the pieces `fill` gives.
    pub unsafe fn submit_with(
        &mut self,
        tag: u64,
        kind: Kind,
        sector: u64,
        fill: impl FnOnce(&mut Segments) -> Result<(), BlkError>,
    ) -> Result<(), BlkError> {
        if kind == Kind::Write && self.readonly() {
            return Err(BlkError::ReadOnly);
        }
        let slot = self.free_slots.pop().ok_or(BlkError::QueueFull)?;
        let m = &mut self.mem[slot];
        m.header = Header {
            kind: kind.code(),
            reserved: 0,
            sector,
        };
        m.status = 0xff;
        m.segs.count = 0;
        let checked = fill(&mut m.segs).and_then(|()| match kind {
            Kind::Flush => Ok(()),
            _ => self.check(sector, self.mem[slot].segs.len()),
        });
        if let Err(e) = checked {
            self.free_slots.push(slot);
            return Err(e);
        }
        // SAFETY: the slot memory is boxed and stays put while in flight; the
        // data buffer is the caller's per this function's contract.
        let added = unsafe { self.with_buffers(slot, |queue, ins, outs| queue.add(ins, outs)) };
        let token = match added {
            Ok(t) => t,
            Err(e) => {
                self.free_slots.push(slot);
                return Err(match e {
                    virtio_drivers::Error::QueueFull => BlkError::QueueFull,
                    e => BlkError::Virtio(e),
                });
            }
        };
        self.in_flight[token as usize] = Some(InFlight { tag, slot });
        if self.queue.should_notify() {
            self.transport.notify(QUEUE);
        }
        Ok(())
    }

    /// Calls `f` with the queue and the descriptors' slices of a request
    /// exactly as they are queued (pop_used needs the same ones back): the
    /// header, then the data pieces and the status byte, split into what
    /// the device reads and what it writes.
    ///
    /// # Safety
    /// As `submit`: the request's buffers are valid for their lengths.
    unsafe fn with_buffers<R>(
        &mut self,
        slot: usize,
        f: impl for<'a> FnOnce(
            &mut VirtQueue<H, QUEUE_SIZE>,
            &'a [&'a [u8]],
            &'a mut [&'a mut [u8]],
        ) -> R,
    ) -> R {
        let m = &mut self.mem[slot] as *mut SlotMem;
        // SAFETY: slot memory is boxed and only the device and this driver
        // touch it; the data pieces are the caller's (see submit).
        unsafe {
            let hdr = core::slice::from_raw_parts(
                (&raw const (*m).header).cast::<u8>(),
                core::mem::size_of::<Header>(),
            );
            let status = core::slice::from_raw_parts_mut(&raw mut (*m).status, 1);
            let segs = &(*m).segs;
            let write = (*m).header.kind == T_OUT;
            // Most requests have one piece (a page) or none (a flush): no
            // lists of MAX_SEGMENTS + 1 slices to fill for them, which
            // costs ~70 instructions per request and again per completion.
            match segs.count {
                0 => return f(&mut self.queue, &[hdr], &mut [status]),
                1 => {
                    let (p, n) = segs.parts[0];
                    let piece = core::slice::from_raw_parts_mut(p, n);
                    return if write {
                        f(&mut self.queue, &[hdr, piece], &mut [status])
                    } else {
                        f(&mut self.queue, &[hdr], &mut [piece, status])
                    };
                }
                _ => {}
            }
            let mut ins: [&[u8]; MAX_SEGMENTS + 1] = [&[]; MAX_SEGMENTS + 1];
            let mut outs: [&mut [u8]; MAX_SEGMENTS + 1] = Default::default();
            let pieces = segs.parts[..segs.count]
                .iter()
                .map(|&(p, n)| core::slice::from_raw_parts_mut(p, n));
            ins[0] = hdr;
            let (mut n_in, mut n_out) = (1, 0);
            for piece in pieces {
                if write {
                    ins[n_in] = piece;
                    n_in += 1;
                } else {
                    outs[n_out] = piece;
                    n_out += 1;
                }
            }
            outs[n_out] = status;
            n_out += 1;
            f(&mut self.queue, &ins[..n_in], &mut outs[..n_out])
        }
    }

    /// The next completion, in used-ring order, if the device has one.
    pub fn poll(&mut self) -> Option<Completion> {
        let token = self.queue.peek_used()?;
        let Some(f) = self.in_flight[token as usize].take() else {
            // A token we never queued: the device is broken. Stop here
            // rather than recycle descriptors we do not own.
            log::error!("virtio-blk: completion for unknown token {token}");
            return None;
        };
        // SAFETY: the same buffers that were queued under this token.
        let popped = unsafe {
            self.with_buffers(f.slot, |queue, ins, outs| queue.pop_used(token, ins, outs))
        };
        self.free_slots.push(f.slot);
        let result = match popped {
            Err(e) => Err(BlkError::Virtio(e)),
            Ok(_) => match self.mem[f.slot].status {
                S_OK => Ok(self.mem[f.slot].segs.len()),
                S_UNSUPP => Err(BlkError::Unsupported),
                _ => Err(BlkError::Io), // S_IOERR or a status the spec does not define
            },
        };
        Some(Completion { tag: f.tag, result })
    }

    /// Whether the device interrupts for completions (virtio's
    /// `VIRTQ_AVAIL_F_NO_INTERRUPT`, a hint: it may still). Off while the
    /// driver polls anyway; before the CPU halts, on, then a last look at
    /// the used ring ([`has_completion`](Self::has_completion)) after a
    /// full fence.
    pub fn set_interrupts(&mut self, enabled: bool) {
        self.queue.set_dev_notify(enabled);
    }

    /// Acknowledges the device's interrupt (virtio-mmio needs it to lower
    /// the line).
    pub fn ack_interrupt(&mut self) {
        self.transport.ack_interrupt();
    }

    /// True when a completion is waiting.
    pub fn has_completion(&self) -> bool {
        self.queue.can_pop()
    }
}
