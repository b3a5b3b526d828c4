//! What the boot stage hands the kernel: the physical memory map and the
//! kernel command line, copied out of the loader's structures so the kernel
//! never has to keep the loader's memory reserved.

pub const MAX_REGIONS: usize = 128;
pub const MAX_CMDLINE: usize = 4096;

/// Kinds of physical memory, numbered as E820 numbers them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryKind {
    Usable,
    Reserved,
    AcpiReclaimable,
    AcpiNvs,
    Unusable,
    Other(u32),
}

impl MemoryKind {
    pub const fn from_e820(kind: u32) -> Self {
        match kind {
            1 => Self::Usable,
            2 => Self::Reserved,
            3 => Self::AcpiReclaimable,
            4 => Self::AcpiNvs,
            5 => Self::Unusable,
            n => Self::Other(n),
        }
    }

    /// RAM (as opposed to MMIO holes): the kernel maps it write-back.
    pub const fn is_ram(self) -> bool {
        matches!(self, Self::Usable | Self::AcpiReclaimable | Self::AcpiNvs)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryRegion {
    pub start: u64,
    pub len: u64,
    pub kind: MemoryKind,
}

impl MemoryRegion {
    pub const fn end(&self) -> u64 {
        self.start.saturating_add(self.len)
    }
}

pub struct BootInfo {
    regions: [MemoryRegion; MAX_REGIONS],
    n_regions: usize,
    cmdline: [u8; MAX_CMDLINE],
    cmdline_len: usize,
    /// Physical address of the ACPI RSDP, 0 if the loader gave none.
    pub rsdp: u64,
    /// Where the loader's start-info structure was (address, length).
    pub start_info: (u64, u64),
}

impl BootInfo {
    pub const EMPTY: Self = Self {
        regions: [MemoryRegion {
            start: 0,
            len: 0,
            kind: MemoryKind::Reserved,
        }; MAX_REGIONS],
        n_regions: 0,
        cmdline: [0; MAX_CMDLINE],
        cmdline_len: 0,
        rsdp: 0,
        start_info: (0, 0),
    };

    /// Adds a region; past [`MAX_REGIONS`] the rest are dropped (and the
    /// kernel simply uses less memory).
    pub fn push_region(&mut self, region: MemoryRegion) {
        if self.n_regions < MAX_REGIONS && region.len > 0 {
            self.regions[self.n_regions] = region;
            self.n_regions += 1;
        }
    }

    /// Stores the command line, cut to [`MAX_CMDLINE`] bytes and to its
    /// longest valid UTF-8 prefix.
    pub fn set_cmdline(&mut self, bytes: &[u8]) {
        let bytes = &bytes[..bytes.len().min(MAX_CMDLINE)];
        let valid = match core::str::from_utf8(bytes) {
            Ok(s) => s.len(),
            Err(e) => e.valid_up_to(),
        };
        self.cmdline[..valid].copy_from_slice(&bytes[..valid]);
        self.cmdline_len = valid;
    }

    pub fn memory_map(&self) -> &[MemoryRegion] {
        &self.regions[..self.n_regions]
    }

    pub fn cmdline(&self) -> &str {
        // Only valid UTF-8 is ever stored (set_cmdline).
        core::str::from_utf8(&self.cmdline[..self.cmdline_len]).unwrap_or("")
    }

    /// Total bytes of usable RAM.
    pub fn usable_bytes(&self) -> u64 {
        self.memory_map()
            .iter()
            .filter(|r| r.kind == MemoryKind::Usable)
            .map(|r| r.len)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmdline_keeps_valid_utf8_prefix() {
        let mut b = BootInfo::EMPTY;
        b.set_cmdline(b"log=debug \xff tail");
        assert_eq!(b.cmdline(), "log=debug ");
    }

    #[test]
    fn usable_bytes_counts_only_usable() {
        let mut b = BootInfo::EMPTY;
        b.push_region(MemoryRegion {
            start: 0,
            len: 0x9fc00,
            kind: MemoryKind::Usable,
        });
        b.push_region(MemoryRegion {
            start: 0xf0000,
            len: 0x10000,
            kind: MemoryKind::Reserved,
        });
        b.push_region(MemoryRegion {
            start: 1 << 20,
            len: 255 << 20,
            kind: MemoryKind::Usable,
        });
        assert_eq!(b.usable_bytes(), 0x9fc00 + (255 << 20));
        assert_eq!(b.memory_map().len(), 3);
    }
}
