//! Bringing memory up, and the kernel-wide frame and MMIO services.
//!
//! Boot order: [`init`] puts the frame bitmap in the first usable region
//! that fits, builds the kernel's page tables (identity map of RAM, the
//! image W^X, the null page and the stack guard unmapped), switches CR3 away
//! from the early 4 GiB map, and hands a contiguous block to the heap.

use super::frames::{FrameBitmap, FRAME_SIZE};
use super::paging::{
    self, PageTables, NO_CACHE, NO_EXECUTE, PAGE_2M, PAGE_4K, WRITABLE, WRITE_THROUGH,
};
use crate::boot_info::{BootInfo, MemoryKind};
use core::sync::atomic::{AtomicU64, Ordering};
use spin::Mutex;

extern "C" {
    static __kernel_start: u8;
    static __text_start: u8;
    static __text_end: u8;
    static __rodata_end: u8;
    static __kernel_end: u8;
    static __stack_guard: u8;
}

fn sym(s: &u8) -> u64 {
    s as *const u8 as u64
}

struct Memory {
    frames: FrameBitmap<'static>,
    tables: PageTables,
}

static MEMORY: Mutex<Option<Memory>> = Mutex::new(None);

#[cfg(target_os = "none")]
#[global_allocator]
static HEAP: super::heap::KernelHeap = super::heap::KernelHeap::empty();

pub struct MemoryStats {
    pub usable_bytes: u64,
    pub regions: usize,
    pub heap_bytes: u64,
    pub free_frames: usize,
}

/// The early page tables map only the first 4 GiB: everything the kernel
/// touches before its own tables are live must be below this.
const EARLY_MAP_END: u64 = 4 << 30;

/// # Panics
/// When memory is too small to hold the kernel's own structures.
pub fn init(boot: &BootInfo) -> MemoryStats {
    // SAFETY: linker-script symbols; only their addresses are used.
    let (kstart, text_start, text_end, rodata_end, kend, guard) = unsafe {
        (
            sym(&__kernel_start),
            sym(&__text_start),
            sym(&__text_end),
            sym(&__rodata_end),
            sym(&__kernel_end),
            sym(&__stack_guard),
        )
    };
    let map = boot.memory_map();
    let usable = || map.iter().filter(|r| r.kind == MemoryKind::Usable);
    // The image's payload segment (if any) lies above the image; nothing
    // may be placed there.
    let payload = crate::payload::range()
        .filter(|&(s, l)| {
            map.iter()
                .any(|r| r.kind == MemoryKind::Usable && r.start <= s && s + l <= r.end())
        })
        .unwrap_or((kend, 0));
    let payload_end = (payload.0 + payload.1).next_multiple_of(FRAME_SIZE);
    let ram_end = map
        .iter()
        .filter(|r| r.kind.is_ram())
        .map(|r| r.end())
        .max()
        .unwrap_or(0);

    // The bitmap goes in the first usable region (above the image) it fits.
    let words = FrameBitmap::words_for(ram_end);
    let bitmap_bytes = (words as u64 * 8).next_multiple_of(FRAME_SIZE);
    let bitmap_at = usable()
        .map(|r| {
            (
                r.start
                    .max(kend)
                    .max(payload_end)
                    .max(1 << 20)
                    .next_multiple_of(FRAME_SIZE),
                r.end(),
            )
        })
        .find(|&(s, e)| s + bitmap_bytes <= e && s + bitmap_bytes <= EARLY_MAP_END)
        .map(|(s, _)| s)
        .expect("no usable memory for the frame bitmap");
    // SAFETY: the range is usable RAM (memory map), identity-mapped by the
    // early tables, outside the kernel image, and reserved below before any
    // frame is handed out.
    let bits = unsafe { core::slice::from_raw_parts_mut(bitmap_at as *mut u64, words) };
    let mut frames = FrameBitmap::new(bits);
    for r in usable() {
        // Below 1 MiB stays untouched (BIOS data, the loader's structures).
        frames.add_free(r.start.max(1 << 20), r.end());
    }
    frames.reserve(kstart, kend);
    frames.reserve(bitmap_at, bitmap_at + bitmap_bytes);
    if payload.1 > 0 {
        frames.reserve(payload.0, payload_end);
    }

    let mut alloc_zeroed = || {
        let f = frames_alloc_zeroed(&mut frames)?;
        Some(f)
    };
    let mut tables = PageTables::new(&mut alloc_zeroed).expect("no frame for the PML4");

    // RAM: 2 MiB pages, except the chunks holding page 0 or the image, which
    // get 4 KiB pages so permissions can differ page by page.
    let image_chunks = (kstart / PAGE_2M * PAGE_2M)..kend.next_multiple_of(PAGE_2M);
    let mut chunk = 0;
    while chunk < ram_end {
        let touches_ram = map
            .iter()
            .any(|r| r.kind.is_ram() && r.start < chunk + PAGE_2M && r.end() > chunk);
        if chunk == 0 || image_chunks.contains(&chunk) {
            for page in (chunk..chunk + PAGE_2M).step_by(PAGE_4K as usize) {
                let flags = if page == 0 || page == guard {
                    continue; // null pointers and stack overflow fault
                } else if (text_start..text_end).contains(&page) {
                    0 // read + execute
                } else if (kstart..rodata_end).contains(&page) {
                    NO_EXECUTE // note, rodata: read only
                } else {
                    WRITABLE | NO_EXECUTE
                };
                tables
                    .map_4k(page, page, flags, &mut alloc_zeroed)
                    .expect("mapping the kernel image");
            }
        } else if touches_ram {
            tables
                .map_2m(chunk, chunk, WRITABLE | NO_EXECUTE, &mut alloc_zeroed)
                .expect("mapping RAM");
        }
        chunk += PAGE_2M;
    }
    // SAFETY: the new tables map the image (text executable), the stack, the
    // bitmap and all RAM; the early map's other content (MMIO) is mapped
    // again on demand through `map_mmio` before use.
    unsafe { tables.activate() };

    // The heap: a quarter of usable memory, between 4 MiB and 1 GiB.
    let usable_bytes = boot.usable_bytes();
    let heap_bytes = (usable_bytes / 4)
        .clamp(4 << 20, 1 << 30)
        .next_multiple_of(FRAME_SIZE);
    let heap_at = frames
        .alloc((heap_bytes / FRAME_SIZE) as usize)
        .expect("no contiguous memory for the heap");
    #[cfg(target_os = "none")]
    // SAFETY: the frames were just taken from the allocator for good and are
    // identity-mapped writable; the heap is initialised once.
    unsafe {
        HEAP.heap
            .lock()
            .init(heap_at as *mut u8, heap_bytes as usize)
    };
    let _ = heap_at;

    let stats = MemoryStats {
        usable_bytes,
        regions: map.len(),
        heap_bytes,
        free_frames: frames.free_frames(),
    };
    *MEMORY.lock() = Some(Memory { frames, tables });
    stats
}

fn frames_alloc_zeroed(frames: &mut FrameBitmap) -> Option<u64> {
    let f = frames.alloc(1)?;
    // SAFETY: a frame just allocated, identity-mapped (it is RAM below the
    // early map's end or mapped by the kernel's RAM map).
    unsafe { core::ptr::write_bytes(f as *mut u8, 0, FRAME_SIZE as usize) };
    Some(f)
}

/// Allocates `count` contiguous zeroed frames (for DMA and page tables).
pub fn alloc_frames(count: usize) -> Option<u64> {
    let mut guard = MEMORY.lock();
    let m = guard.as_mut()?;
    let f = m.frames.alloc(count)?;
    // SAFETY: frames just allocated, identity-mapped RAM.
    unsafe { core::ptr::write_bytes(f as *mut u8, 0, count * FRAME_SIZE as usize) };
    Some(f)
}

/// Gives back frames from [`alloc_frames`].
pub fn free_frames(addr: u64, count: usize) {
    if let Some(m) = MEMORY.lock().as_mut() {
        m.frames.dealloc(addr, count);
    }
}

/// Maps device registers at `[pa, pa + len)` uncached (identity), so a driver
/// can reach them.
pub fn map_mmio(pa: u64, len: u64) -> Result<(), paging::MapError> {
    let mut guard = MEMORY.lock();
    let m = guard.as_mut().expect("memory not initialised");
    let Memory { frames, tables } = m;
    let mut alloc = || frames_alloc_zeroed(frames);
    let start = pa / PAGE_4K * PAGE_4K;
    for page in (start..pa + len).step_by(PAGE_4K as usize) {
        tables.map_4k(
            page,
            page,
            WRITABLE | NO_EXECUTE | NO_CACHE | WRITE_THROUGH,
            &mut alloc,
        )?;
    }
    // The pages were not present before, so no stale TLB entry exists
    // (x86 does not cache not-present translations).
    Ok(())
}

/// Virtual addresses from here up to [`DYNAMIC_VA_END`] are not RAM: the
/// kernel hands them out with [`reserve_va`] and maps 4 KiB pages there at
/// will (Wasm linear memories, JIT code, big stacks with guard pages).
pub const DYNAMIC_VA_BASE: u64 = 0x4000_0000_0000;
pub const DYNAMIC_VA_END: u64 = 0x7fff_0000_0000;

static NEXT_VA: AtomicU64 = AtomicU64::new(DYNAMIC_VA_BASE);

/// Reserves `len` bytes (rounded up to pages) of never-reused virtual space
/// in the dynamic range; nothing is mapped.
pub fn reserve_va(len: u64) -> Option<u64> {
    let len = len.checked_next_multiple_of(PAGE_4K)?;
    let va = NEXT_VA.fetch_add(len, Ordering::Relaxed);
    if va.checked_add(len)? > DYNAMIC_VA_END {
        return None;
    }
    Some(va)
}

/// True if `va` is in the dynamic range.
pub fn is_dynamic(va: u64) -> bool {
    (DYNAMIC_VA_BASE..DYNAMIC_VA_END).contains(&va)
}

/// Maps fresh zeroed frames at the page-aligned `[va, va + len)` of the
/// dynamic range with `flags`; on failure nothing stays mapped.
pub fn map_new_pages(va: u64, len: u64, flags: u64) -> bool {
    assert!(is_dynamic(va) && va.is_multiple_of(PAGE_4K));
    let mut guard = MEMORY.lock();
    let Some(m) = guard.as_mut() else {
        return false;
    };
    let Memory { frames, tables } = m;
    let mut page = va;
    while page < va + len {
        let ok = match frames_alloc_zeroed(frames) {
            Some(f) => {
                let mut alloc = || frames_alloc_zeroed(frames);
                let r = tables.map_4k(page, f, flags, &mut alloc);
                if r.is_err() {
                    frames.dealloc(f, 1);
                }
                r.is_ok()
            }
            None => false,
        };
        if !ok {
            unmap_range(frames, tables, va, page - va);
            return false;
        }
        page += PAGE_4K;
    }
    true
}

fn unmap_range(frames: &mut FrameBitmap, tables: &mut PageTables, va: u64, len: u64) {
    for page in (va..va + len).step_by(PAGE_4K as usize) {
        if let Some(pa) = tables.unmap_4k(page) {
            frames.dealloc(pa, 1);
        }
    }
}

/// Unmaps `[va, va + len)` of the dynamic range (TLB flushed) and frees the
/// frames behind it; pages not mapped are skipped.
pub fn unmap_pages(va: u64, len: u64) {
    assert!(is_dynamic(va));
    if let Some(m) = MEMORY.lock().as_mut() {
        let Memory { frames, tables } = m;
        unmap_range(frames, tables, va, len);
    }
}

/// Sets the flags of the mapped pages of `[va, va + len)` (dynamic range),
/// flushing each from the TLB; false if a page is not mapped.
pub fn protect_pages(va: u64, len: u64, flags: u64) -> bool {
    assert!(is_dynamic(va));
    let mut guard = MEMORY.lock();
    let Some(m) = guard.as_mut() else {
        return false;
    };
    (va..va + len)
        .step_by(PAGE_4K as usize)
        .all(|p| m.tables.protect_4k(p, flags))
}

/// True if `addr` is in the unmapped page below the boot stack.
pub fn is_stack_guard(addr: u64) -> bool {
    // SAFETY: a linker-script symbol; only its address is used.
    let guard = unsafe { sym(&__stack_guard) };
    (guard..guard + PAGE_4K).contains(&addr)
}

/// The physical address behind a kernel virtual address. Kernel memory is
/// identity-mapped, so this is the address itself.
pub fn virt_to_phys(va: u64) -> u64 {
    va
}

/// The physical address behind `va`: the address itself for identity-mapped
/// kernel memory, a page-table walk in the dynamic range (linear memory,
/// code); `None` where nothing is mapped.
pub fn translate(va: u64) -> Option<u64> {
    if !is_dynamic(va) {
        return Some(va);
    }
    MEMORY.lock().as_mut()?.tables.translate_4k(va)
}
