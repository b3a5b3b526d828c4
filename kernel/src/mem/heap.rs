//! The kernel heap: `linked_list_allocator` for everything, with a free
//! list per small size class in front of it. The component runtime makes
//! many short-lived small allocations per call (values, closures, vectors);
//! a first-fit list walk for each is slow, and slower as the heap
//! fragments. Small blocks freed go to their class's list (never back to
//! the big heap), so after warm-up a small allocation is a pop and a free
//! is a push.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr;

use linked_list_allocator::LockedHeap;
use spin::Mutex;

/// Block sizes of the classes; every block is 16-byte aligned.
const SIZES: [usize; 6] = [16, 32, 64, 128, 256, 512];
const ALIGN: usize = 16;

pub struct KernelHeap {
    pub heap: LockedHeap,
    /// Heads of the free lists (the first word of a free block links the
    /// next; 0 ends the list).
    free: Mutex<[usize; SIZES.len()]>,
}

impl KernelHeap {
    pub const fn empty() -> Self {
        KernelHeap {
            heap: LockedHeap::empty(),
            free: Mutex::new([0; SIZES.len()]),
        }
    }
}

fn class(l: &Layout) -> Option<usize> {
    if l.align() > ALIGN {
        return None;
    }
    SIZES.iter().position(|&s| l.size() <= s)
}

// SAFETY: a class block is at least as large and as aligned as any layout
// mapped to its class, and is only ever handed out once (popped under the
// lock); other layouts go to the linked-list heap unchanged.
unsafe impl GlobalAlloc for KernelHeap {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let Some(c) = class(&l) else {
            // SAFETY: forwarded.
            return unsafe { self.heap.alloc(l) };
        };
        {
            let mut free = self.free.lock();
            let head = free[c];
            if head != 0 {
                // SAFETY: a free block of this class: its first word is the
                // link written by dealloc.
                free[c] = unsafe { ptr::read(head as *const usize) };
                return head as *mut u8;
            }
        }
        // SAFETY: a valid non-zero size, power-of-two alignment.
        unsafe {
            self.heap
                .alloc(Layout::from_size_align_unchecked(SIZES[c], ALIGN))
        }
    }

    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        let Some(c) = class(&l) else {
            // SAFETY: forwarded (allocated by the heap with `l`).
            return unsafe { self.heap.dealloc(p, l) };
        };
        let mut free = self.free.lock();
        // SAFETY: `p` is a class block no longer in use; its first word
        // becomes the link.
        unsafe { ptr::write(p as *mut usize, free[c]) };
        free[c] = p as usize;
    }
}
