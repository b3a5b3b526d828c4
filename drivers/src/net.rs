//! virtio-net, non-blocking, on virtio-drivers' `VirtIONetRaw`: a pool of
//! receive buffers kept posted, and a pool of transmit buffers. Buffers are
//! boxed so their addresses stay fixed while the device owns them.

use crate::VirtioTransport;
use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;
use core::ptr::NonNull;
use virtio_drivers::device::net::VirtIONetRaw;
use virtio_drivers::Hal;

/// Descriptors per queue (and buffers per pool).
pub const QUEUE_SIZE: usize = 64;
/// A buffer: the 12-byte virtio-net header plus the largest frame we take.
pub const BUF_LEN: usize = 2048;
/// Largest Ethernet frame (without FCS) at MTU 1500.
pub const MAX_FRAME: usize = 1514;

type Buf = [u8; BUF_LEN];

pub struct NetDevice<H: Hal> {
    raw: VirtIONetRaw<H, VirtioTransport, QUEUE_SIZE>,
    /// Receive buffers, allocated once and never freed (the device may
    /// hold any of them at any time). A raw pointer rather than a Box: a
    /// received frame is read through it while the device is used to send
    /// the reply.
    rx: NonNull<Buf>,
    /// Receive buffer index posted under each rx token.
    rx_by_token: Box<[Option<usize>; QUEUE_SIZE]>,
    tx: Box<[Buf]>,
    tx_free: Vec<usize>,
    /// Transmit buffer index and length under each tx token.
    tx_by_token: Box<[Option<(usize, usize)>; QUEUE_SIZE]>,
}

// SAFETY: the buffers are owned by this struct; one CPU drives it.
unsafe impl<H: Hal> Send for NetDevice<H> {}

/// A received frame, still in its buffer; give it back with
/// [`NetDevice::recycle`].
#[derive(Debug)]
pub struct RxFrame {
    index: usize,
    start: usize,
    len: usize,
}

impl<H: Hal> NetDevice<H> {
    pub fn new(transport: VirtioTransport) -> Result<Self, virtio_drivers::Error> {
        let raw = VirtIONetRaw::new(transport)?;
        let mut dev = Self {
            raw,
            rx: NonNull::from(Box::leak(
                vec![[0u8; BUF_LEN]; QUEUE_SIZE].into_boxed_slice(),
            ))
            .cast(),
            rx_by_token: Box::new([None; QUEUE_SIZE]),
            tx: vec![[0u8; BUF_LEN]; QUEUE_SIZE].into_boxed_slice(),
            tx_free: (0..QUEUE_SIZE).rev().collect(),
            tx_by_token: Box::new([None; QUEUE_SIZE]),
        };
        for i in 0..QUEUE_SIZE {
            dev.post_rx(i)?;
        }
        Ok(dev)
    }

    pub fn mac(&self) -> [u8; 6] {
        self.raw.mac_address()
    }

    /// # Safety
    /// Nobody may hold a reference into buffer `index` (it goes to the device).
    unsafe fn rx_buf(&self, index: usize) -> &'static mut Buf {
        assert!(index < QUEUE_SIZE);
        // SAFETY: in bounds of the leaked pool; exclusivity per the caller.
        unsafe { &mut *self.rx.as_ptr().add(index) }
    }

    fn post_rx(&mut self, index: usize) -> Result<(), virtio_drivers::Error> {
        // SAFETY: the buffer is ours (never posted, or its frame recycled);
        // it stays put and is not touched until `receive` completes it.
        let token = unsafe { self.raw.receive_begin(self.rx_buf(index))? };
        self.rx_by_token[token as usize] = Some(index);
        Ok(())
    }

    /// The next received frame, if any (in used-ring order).
    pub fn receive(&mut self) -> Option<RxFrame> {
        let token = self.raw.poll_receive()?;
        let index = self.rx_by_token[token as usize].take()?;
        // SAFETY: the same buffer that was posted under this token.
        match unsafe { self.raw.receive_complete(token, self.rx_buf(index)) } {
            Ok((hdr, len)) => Some(RxFrame {
                index,
                start: hdr,
                len: len.min(BUF_LEN - hdr),
            }),
            Err(e) => {
                // A used length shorter than the header: drop it, repost.
                log::debug!("virtio-net: bad receive ({e}); dropped");
                let _ = self.post_rx(index);
                None
            }
        }
    }

    /// The bytes of a received frame. They stay valid until the frame is
    /// recycled, whatever else is done with the device meanwhile (sending a
    /// reply, say), which is why this is a raw slice.
    pub fn frame(&self, f: &RxFrame) -> *const [u8] {
        // SAFETY: the buffer was completed by the device and is not posted
        // again before `recycle`; in bounds (RxFrame is clamped to BUF_LEN).
        let buf = unsafe { self.rx_buf(f.index) };
        &buf[f.start..f.start + f.len] as *const [u8]
    }

    /// Gives a received frame's buffer back to the device.
    pub fn recycle(&mut self, f: RxFrame) {
        if let Err(e) = self.post_rx(f.index) {
            log::error!("virtio-net: cannot repost a receive buffer: {e}");
        }
    }

    /// Takes back transmit buffers the device is done with.
    pub fn reap_tx(&mut self) {
        while let Some(token) = self.raw.poll_transmit() {
            let Some((index, len)) = self.tx_by_token[token as usize].take() else {
                log::error!("virtio-net: transmit completion for unknown token {token}");
                return;
            };
            // SAFETY: the same buffer and length that were queued.
            let _ = unsafe { self.raw.transmit_complete(token, &self.tx[index][..len]) };
            self.tx_free.push(index);
        }
    }

    pub fn can_transmit(&mut self) -> bool {
        if self.tx_free.is_empty() {
            self.reap_tx();
        }
        !self.tx_free.is_empty()
    }

    /// Sends a frame of `len` bytes that `fill` writes. Returns false (and
    /// sends nothing) when no transmit buffer is free or `len` is too big.
    pub fn transmit<R>(&mut self, len: usize, fill: impl FnOnce(&mut [u8]) -> R) -> Option<R> {
        if !self.can_transmit() {
            return None;
        }
        let index = self.tx_free.pop()?;
        let hdr = match self.raw.fill_buffer_header(&mut self.tx[index]) {
            Ok(h) if h + len <= BUF_LEN => h,
            _ => {
                self.tx_free.push(index);
                return None;
            }
        };
        let r = fill(&mut self.tx[index][hdr..hdr + len]);
        // SAFETY: tx[index] is boxed and untouched until reap_tx completes it.
        match unsafe { self.raw.transmit_begin(&self.tx[index][..hdr + len]) } {
            Ok(token) => {
                self.tx_by_token[token as usize] = Some((index, hdr + len));
                Some(r)
            }
            Err(e) => {
                log::debug!("virtio-net: transmit failed: {e}");
                self.tx_free.push(index);
                None
            }
        }
    }

    pub fn has_rx(&self) -> bool {
        self.raw.poll_receive().is_some()
    }

    pub fn set_interrupts(&mut self, enabled: bool) {
        if enabled {
            self.raw.enable_interrupts()
        } else {
            self.raw.disable_interrupts()
        }
    }

    pub fn ack_interrupt(&mut self) {
        self.raw.ack_interrupt();
    }
}
