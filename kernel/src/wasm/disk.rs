//! `ringos:blk` on virtio-blk: the runtime's [`BlockDevice`] over the
//! reactor. A request's guest bytes are translated page by page to the
//! physical frames behind linear memory and posted as descriptors, so the
//! device reads and writes the component's memory itself (DESIGN 6). The
//! statistics count what moved by DMA and what the kernel copied (nothing
//! on this path; `-v` prints both).

use alloc::vec::Vec;
use core::cell::{Cell, RefCell};

use ringos_drivers::blk::{BlkError, Kind, Segments, SECTOR_SIZE};
use ringos_runtime::blk::{BlockDevice, BlockError, BlockOp};

use crate::io::reactor::{Event, Reactor};
use crate::mem;

#[derive(Clone, Copy, Default, Debug)]
pub struct DiskStats {
    pub requests: u64,
    /// Bytes the device moved straight to or from linear memory.
    pub dma_bytes: u64,
    /// Bytes the kernel copied on the way (through a buffer of its own).
    pub copied_bytes: u64,
}

pub struct VirtioDisk {
    reactor: RefCell<Reactor>,
    events: RefCell<Vec<Event>>,
    stats: Cell<DiskStats>,
    /// Recent page translations (virtual page -> frame). Linear memory
    /// stays mapped while the store lives and its virtual range is never
    /// handed out again, so an entry cannot go stale while it can be asked
    /// for. Components tend to reuse their buffers.
    pages: Cell<[(u64, u64); 4]>,
}

impl VirtioDisk {
    pub fn new(reactor: Reactor) -> Self {
        VirtioDisk {
            reactor: RefCell::new(reactor),
            events: RefCell::new(Vec::new()),
            stats: Cell::new(DiskStats::default()),
            pages: Cell::new([(u64::MAX, 0); 4]),
        }
    }

    pub fn stats(&self) -> DiskStats {
        self.stats.get()
    }

    /// The reactor, for kernel work outside the component's run.
    pub fn reactor(&self) -> core::cell::RefMut<'_, Reactor> {
        self.reactor.borrow_mut()
    }

    /// Waits for a device interrupt or `deadline` (the loop is idle).
    pub fn wait(&self, deadline: Option<u64>) {
        self.reactor.borrow_mut().idle_until(deadline);
    }

    /// Waits (at most a second) until no request is in flight, dropping
    /// their completions: before the memory they point into is freed.
    pub fn drain(&self) {
        let deadline = crate::time::now_ns() + 1_000_000_000;
        let mut r = self.reactor.borrow_mut();
        let mut events = self.events.borrow_mut();
        let left = r.blk.as_ref().map_or(0, |b| b.in_flight());
        if left > 0 {
            log::info!("ringos:blk: the component ended with {left} request(s) in flight; waiting for them");
        }
        while r.blk.as_ref().is_some_and(|b| b.in_flight() > 0) {
            if crate::time::now_ns() >= deadline {
                log::error!("virtio-blk: requests still in flight after 1 s; giving up on them");
                return;
            }
            r.poll(&mut events);
            events.clear();
            r.idle_until(Some(deadline));
        }
    }
}

impl VirtioDisk {
    /// The frame behind the page of `va` (cached, see `pages`).
    fn frame(&self, va: u64) -> Option<u64> {
        let page = va & !0xfff;
        let mut pages = self.pages.get();
        if let Some(&(_, pa)) = pages.iter().find(|p| p.0 == page) {
            return Some(pa);
        }
        let pa = mem::translate(page)?;
        pages.rotate_right(1);
        pages[0] = (page, pa);
        self.pages.set(pages);
        Some(pa)
    }

    /// Appends the physical pieces behind `[addr, addr + len)`, page by
    /// page, to `segs` (the request's own list in the driver's slot: under
    /// TCG every move of this few-hundred-byte list is a visible cost on
    /// the I/O path).
    fn segments(&self, segs: &mut Segments, addr: u64, len: usize) -> Result<(), BlkError> {
        let (mut va, end) = (addr, addr + len as u64);
        while va < end {
            let page_end = (va | 0xfff) + 1;
            let n = (page_end.min(end) - va) as usize;
            let pa = self.frame(va).ok_or(BlkError::Io)? | (va & 0xfff);
            if !segs.push(pa as *mut u8, n) {
                return Err(BlkError::Io);
            }
            va += n as u64;
        }
        Ok(())
    }
}

fn error(e: BlkError) -> BlockError {
    match e {
        BlkError::QueueFull => BlockError::Busy,
        BlkError::OutOfRange { .. } => BlockError::OutOfRange,
        BlkError::Unaligned { .. } => BlockError::Unaligned,
        BlkError::ReadOnly => BlockError::ReadOnly,
        _ => BlockError::Io,
    }
}

impl BlockDevice for VirtioDisk {
    fn capacity(&self) -> u64 {
        let r = self.reactor.borrow();
        r.blk
            .as_ref()
            .map_or(0, |b| b.capacity() * SECTOR_SIZE as u64)
    }

    fn read_only(&self) -> bool {
        let r = self.reactor.borrow();
        r.blk.as_ref().is_none_or(|b| b.readonly())
    }

    fn submit(&self, tag: u64, op: BlockOp) -> Result<(), BlockError> {
        let sector = |offset: u64| offset / SECTOR_SIZE as u64;
        let (kind, sector, addr, bytes) = match op {
            BlockOp::Read { offset, addr, len } => (Kind::Read, sector(offset), addr as u64, len),
            BlockOp::Write { offset, addr, len } => (Kind::Write, sector(offset), addr as u64, len),
            BlockOp::Flush => (Kind::Flush, 0, 0, 0),
        };
        let fill = |segs: &mut Segments| match kind {
            Kind::Flush => Ok(()),
            _ => self.segments(segs, addr, bytes),
        };
        // SAFETY: the pieces are the physical frames of guest memory the
        // runtime lent for this transfer (`device::Transfer`): mapped,
        // never freed while the store lives, untouched until completion.
        unsafe {
            self.reactor
                .borrow_mut()
                .submit_blk_with(tag, kind, sector, fill)
        }
        .map_err(error)?;
        let mut s = self.stats.get();
        s.requests += 1;
        s.dma_bytes += bytes as u64;
        self.stats.set(s);
        Ok(())
    }

    fn poll(&self, done: &mut Vec<(u64, Result<usize, BlockError>)>) {
        let mut events = self.events.borrow_mut();
        self.reactor.borrow_mut().poll(&mut events);
        for e in events.drain(..) {
            if let Event::Blk(c) = e {
                done.push((c.tag, c.result.map_err(error)));
            }
        }
    }
}
