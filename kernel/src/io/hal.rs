//! The kernel's side of virtio-drivers' `Hal`: DMA memory from the frame
//! allocator, device registers mapped uncached, and buffer addresses
//! translated for the device (kernel memory is identity-mapped).

use crate::mem;
use core::ptr::NonNull;
use ringos_drivers::{BufferDirection, Hal, PhysAddr};

pub struct KernelHal;

// SAFETY: dma_alloc returns zeroed, page-aligned, physically contiguous,
// identity-mapped frames (or paddr 0 on failure); share returns the physical
// address of kernel memory, which is identity-mapped and physically
// contiguous (statics and the single heap block).
unsafe impl Hal for KernelHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        match mem::alloc_frames(pages) {
            Some(pa) => (
                pa,
                NonNull::new(pa as *mut u8).expect("frame 0 is never allocated"),
            ),
            None => (0, NonNull::dangling()),
        }
    }

    unsafe fn dma_dealloc(paddr: PhysAddr, _vaddr: NonNull<u8>, pages: usize) -> i32 {
        mem::free_frames(paddr, pages);
        0
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, size: usize) -> NonNull<u8> {
        if let Err(e) = mem::map_mmio(paddr, size as u64) {
            panic!("cannot map device registers at {paddr:#x}: {e:?}");
        }
        NonNull::new(paddr as *mut u8).expect("device registers at address 0")
    }

    unsafe fn share(buffer: NonNull<[u8]>, _direction: BufferDirection) -> PhysAddr {
        mem::virt_to_phys(buffer.as_ptr() as *const u8 as u64)
    }

    unsafe fn unshare(_paddr: PhysAddr, _buffer: NonNull<[u8]>, _direction: BufferDirection) {}
}

/// A buffer of whole frames for device I/O: physically contiguous,
/// identity-mapped, freed on drop.
pub struct DmaBuf {
    addr: u64,
    pages: usize,
}

impl DmaBuf {
    pub fn new(bytes: usize) -> Option<Self> {
        let pages = bytes.div_ceil(4096).max(1);
        Some(Self {
            addr: mem::alloc_frames(pages)?,
            pages,
        })
    }

    pub fn len(&self) -> usize {
        self.pages * 4096
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    pub fn as_ptr(&self) -> *mut u8 {
        self.addr as *mut u8
    }

    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: frames owned by this buffer, identity-mapped; a device
        // writes them only while a request is in flight, and callers do not
        // read a buffer with a request in flight.
        unsafe { core::slice::from_raw_parts(self.as_ptr(), self.len()) }
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as as_slice, exclusively borrowed.
        unsafe { core::slice::from_raw_parts_mut(self.as_ptr(), self.len()) }
    }
}

impl Drop for DmaBuf {
    fn drop(&mut self) {
        mem::free_frames(self.addr, self.pages);
    }
}
