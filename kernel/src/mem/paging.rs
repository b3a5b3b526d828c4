//! The kernel's own 4-level page tables. Physical memory is identity-mapped
//! (virtual == physical), so a table's physical address is also where the
//! kernel reads and writes it.

pub const PRESENT: u64 = 1 << 0;
pub const WRITABLE: u64 = 1 << 1;
pub const WRITE_THROUGH: u64 = 1 << 3;
pub const NO_CACHE: u64 = 1 << 4;
pub const HUGE: u64 = 1 << 7;
pub const NO_EXECUTE: u64 = 1 << 63;
const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

pub const PAGE_4K: u64 = 4096;
pub const PAGE_2M: u64 = 2 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapError {
    /// No frame for a page table.
    OutOfFrames,
    /// A 2 MiB page already covers this 4 KiB page.
    InsideHugePage,
}

pub struct PageTables {
    pml4: u64,
}

/// # Safety
/// `pa` must be the identity-mapped physical address of a page table the
/// caller owns exclusively for the returned lifetime.
unsafe fn table<'a>(pa: u64) -> &'a mut [u64; 512] {
    // SAFETY: forwarded to the caller.
    unsafe { &mut *(pa as *mut [u64; 512]) }
}

impl PageTables {
    /// An empty hierarchy; `alloc_zeroed` supplies zeroed 4 KiB frames.
    pub fn new(alloc_zeroed: &mut dyn FnMut() -> Option<u64>) -> Result<Self, MapError> {
        Ok(Self {
            pml4: alloc_zeroed().ok_or(MapError::OutOfFrames)?,
        })
    }

    /// Physical address of the PML4, for CR3.
    pub fn root(&self) -> u64 {
        self.pml4
    }

    /// The entry for `va` at `level` (4 = PML4 ... 1 = page table), creating
    /// intermediate tables on the way.
    fn entry(
        &mut self,
        va: u64,
        level: u32,
        alloc_zeroed: &mut dyn FnMut() -> Option<u64>,
    ) -> Result<&mut u64, MapError> {
        let mut table_pa = self.pml4;
        for l in (level + 1..=4).rev() {
            let index = ((va >> (12 + 9 * (l - 1))) & 0x1ff) as usize;
            // SAFETY: table_pa is a table of this hierarchy (the root or an
            // entry's target), identity-mapped, owned through &mut self.
            let e = unsafe { &mut table(table_pa)[index] };
            if *e & PRESENT == 0 {
                let new = alloc_zeroed().ok_or(MapError::OutOfFrames)?;
                *e = new | PRESENT | WRITABLE;
            } else if *e & HUGE != 0 {
                return Err(MapError::InsideHugePage);
            }
            table_pa = *e & ADDR_MASK;
        }
        let index = ((va >> (12 + 9 * (level - 1))) & 0x1ff) as usize;
        // SAFETY: as above, for the table at `level`.
        Ok(unsafe { &mut table(table_pa)[index] })
    }

    pub fn map_4k(
        &mut self,
        va: u64,
        pa: u64,
        flags: u64,
        alloc_zeroed: &mut dyn FnMut() -> Option<u64>,
    ) -> Result<(), MapError> {
        *self.entry(va, 1, alloc_zeroed)? = (pa & ADDR_MASK) | flags | PRESENT;
        Ok(())
    }

    pub fn map_2m(
        &mut self,
        va: u64,
        pa: u64,
        flags: u64,
        alloc_zeroed: &mut dyn FnMut() -> Option<u64>,
    ) -> Result<(), MapError> {
        *self.entry(va, 2, alloc_zeroed)? = (pa & ADDR_MASK) | flags | PRESENT | HUGE;
        Ok(())
    }

    /// The existing level-1 entry for `va`, without creating tables; `None`
    /// if a table on the way is missing or a huge page covers `va`.
    fn lookup_4k(&mut self, va: u64) -> Option<&mut u64> {
        let mut table_pa = self.pml4;
        for l in (2..=4).rev() {
            let index = ((va >> (12 + 9 * (l - 1))) & 0x1ff) as usize;
            // SAFETY: a table of this hierarchy, owned through &mut self.
            let e = unsafe { table(table_pa)[index] };
            if e & PRESENT == 0 || e & HUGE != 0 {
                return None;
            }
            table_pa = e & ADDR_MASK;
        }
        // SAFETY: as above, for the page table.
        Some(unsafe { &mut table(table_pa)[((va >> 12) & 0x1ff) as usize] })
    }

    /// The physical address `va` maps to through a 4 KiB page, if any.
    pub fn translate_4k(&mut self, va: u64) -> Option<u64> {
        let e = *self.lookup_4k(va)?;
        (e & PRESENT != 0).then_some((e & ADDR_MASK) | (va & 0xfff))
    }

    /// Removes the 4 KiB mapping of `va` and flushes it from the TLB;
    /// returns the physical address it mapped.
    pub fn unmap_4k(&mut self, va: u64) -> Option<u64> {
        let e = self.lookup_4k(va)?;
        if *e & PRESENT == 0 {
            return None;
        }
        let pa = *e & ADDR_MASK;
        *e = 0;
        invlpg(va);
        Some(pa)
    }

    /// Changes the flags of the present 4 KiB mapping of `va` (keeping its
    /// frame) and flushes it from the TLB; false if `va` is not mapped.
    pub fn protect_4k(&mut self, va: u64, flags: u64) -> bool {
        let Some(e) = self.lookup_4k(va) else {
            return false;
        };
        if *e & PRESENT == 0 {
            return false;
        }
        *e = (*e & ADDR_MASK) | flags | PRESENT;
        invlpg(va);
        true
    }

    /// Makes this hierarchy the active one.
    ///
    /// # Safety
    /// It must map the running code, the stack and all memory in use.
    pub unsafe fn activate(&self) {
        // SAFETY: forwarded to the caller.
        unsafe { crate::arch::cpu::write_cr3(self.pml4) };
    }
}

/// Drops the TLB entry of the page holding `va` (after an unmap or a
/// permission change; new mappings of not-present pages need none).
pub fn invlpg(va: u64) {
    // SAFETY: invalidating a TLB entry has no memory effects.
    unsafe { core::arch::asm!("invlpg [{}]", in(reg) va, options(nostack, preserves_flags)) };
}
