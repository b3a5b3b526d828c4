//! PCI on q35: configuration space through ECAM, BAR assignment (qboot
//! leaves every BAR at 0), bus mastering, and MSI-X routed to one LAPIC
//! vector (virtio-drivers sets up no MSI-X, so the virtio queue vectors are
//! programmed here too).

use super::super::VirtioTransport;
pub use virtio_drivers::transport::pci::bus::DeviceFunction;
use virtio_drivers::transport::pci::bus::{
    BarInfo, Command, ConfigurationAccess, MemoryBarType, PciRoot,
};
use virtio_drivers::transport::pci::{virtio_device_type, PciTransport};
use virtio_drivers::transport::DeviceType;
use virtio_drivers::Hal;

/// Where qboot puts q35's ECAM (PCIEXBAR) and how much it covers (bus 0..255).
pub const Q35_ECAM_BASE: u64 = 0xb000_0000;
pub const ECAM_SIZE: u64 = 256 << 20;
/// Where BARs are placed: above ECAM, below the IOAPIC at 0xfec00000.
pub const BAR_WINDOW: (u64, u64) = (0xc000_0000, 0xfe00_0000);

const CAP_ID_VENDOR: u8 = 0x09;
const CAP_ID_MSIX: u8 = 0x11;
const VIRTIO_PCI_CAP_COMMON_CFG: u8 = 1;
const COMMON_MSIX_CONFIG: usize = 0x10;
const COMMON_NUM_QUEUES: usize = 0x12;
const COMMON_QUEUE_SELECT: usize = 0x16;
const COMMON_QUEUE_MSIX_VECTOR: usize = 0x1a;
const VIRTIO_MSI_NO_VECTOR: u16 = 0xffff;

/// Configuration space through ECAM at a virtual address.
#[derive(Clone, Copy)]
pub struct Ecam {
    base: *mut u8,
}

// SAFETY: the ECAM window is plain MMIO; accesses are volatile and the
// kernel serialises users.
unsafe impl Send for Ecam {}

impl Ecam {
    /// # Safety
    /// `base` must map [`ECAM_SIZE`] bytes of ECAM, uncached, for good.
    pub unsafe fn new(base: *mut u8) -> Self {
        Self { base }
    }

    fn addr(&self, df: DeviceFunction, offset: u16) -> *mut u32 {
        let off = ((df.bus as usize) << 20)
            | ((df.device as usize) << 15)
            | ((df.function as usize) << 12);
        self.base
            .wrapping_add(off + (offset as usize & 0xffc))
            .cast()
    }

    pub fn read32(&self, df: DeviceFunction, offset: u16) -> u32 {
        // SAFETY: within the ECAM window (bus/device/function and offset
        // are range-limited by their types and the mask), aligned.
        unsafe { self.addr(df, offset).read_volatile() }
    }

    pub fn write32(&mut self, df: DeviceFunction, offset: u16, value: u32) {
        // SAFETY: as read32.
        unsafe { self.addr(df, offset).write_volatile(value) }
    }

    /// Finds the capabilities with id `id`, as offsets in config space.
    fn capabilities(&self, df: DeviceFunction, id: u8) -> impl Iterator<Item = u16> + '_ {
        let status = (self.read32(df, 0x04) >> 16) as u16;
        let mut next = if status & (1 << 4) != 0 {
            (self.read32(df, 0x34) & 0xfc) as u16
        } else {
            0
        };
        let mut budget = 48; // a malformed list must not loop forever
        core::iter::from_fn(move || {
            while next != 0 && budget > 0 {
                budget -= 1;
                let here = next;
                let header = self.read32(df, here);
                next = ((header >> 8) & 0xfc) as u16;
                if header as u8 == id {
                    return Some(here);
                }
            }
            None
        })
    }
}

impl ConfigurationAccess for Ecam {
    fn read_word(&self, df: DeviceFunction, register_offset: u8) -> u32 {
        self.read32(df, register_offset as u16)
    }

    fn write_word(&mut self, df: DeviceFunction, register_offset: u8, data: u32) {
        self.write32(df, register_offset as u16, data)
    }

    unsafe fn unsafe_clone(&self) -> Self {
        *self
    }
}

/// A virtio device found on the bus, its BARs assigned and bus mastering on.
pub struct PciVirtio {
    pub function: DeviceFunction,
    pub device_type: DeviceType,
    pub transport: VirtioTransport,
    /// Physical (address, size) of every memory BAR, for mapping.
    pub bars: [(u64, u64); 6],
}

#[derive(Debug)]
pub enum PciError {
    /// The BAR window is full.
    OutOfBarSpace,
    Transport(virtio_drivers::transport::pci::VirtioPciError),
    Bar(virtio_drivers::transport::pci::bus::PciError),
}

/// Places every memory BAR of `df` in the window, naturally aligned.
/// `map` is called for each so the kernel can map it before use.
fn assign_bars(
    root: &mut PciRoot<Ecam>,
    df: DeviceFunction,
    next: &mut u64,
    map: &mut dyn FnMut(u64, u64),
) -> Result<[(u64, u64); 6], PciError> {
    let mut out = [(0, 0); 6];
    let bars = root.bars(df).map_err(PciError::Bar)?;
    for (i, bar) in bars.iter().enumerate() {
        let Some(BarInfo::Memory {
            address_type, size, ..
        }) = bar
        else {
            continue;
        };
        if *size == 0 || *address_type == MemoryBarType::Below1MiB {
            continue;
        }
        let addr = next.next_multiple_of(*size);
        if addr + size > BAR_WINDOW.1
            || (*address_type == MemoryBarType::Width32 && addr + size > 1 << 32)
        {
            return Err(PciError::OutOfBarSpace);
        }
        match address_type {
            MemoryBarType::Width32 => root.set_bar_32(df, i as u8, addr as u32),
            _ => root.set_bar_64(df, i as u8, addr),
        }
        *next = addr + size;
        map(addr, *size);
        out[i] = (addr, *size);
    }
    Ok(out)
}

/// Enumerates bus 0, assigns BARs and opens a transport for every virtio
/// device. `map(phys, len)` must map device memory uncached (identity).
///
/// # Safety
/// `ecam` must be q35's ECAM, and nothing else may drive these devices.
pub unsafe fn discover<H: Hal>(
    ecam: Ecam,
    map: &mut dyn FnMut(u64, u64),
) -> alloc::vec::Vec<Result<PciVirtio, PciError>> {
    let mut root = PciRoot::new(ecam);
    let mut next = BAR_WINDOW.0;
    let mut found = alloc::vec::Vec::new();
    for (df, info) in root.enumerate_bus(0) {
        let Some(device_type) = virtio_device_type(&info) else {
            continue;
        };
        let result = (|| {
            let bars = assign_bars(&mut root, df, &mut next, map)?;
            root.set_command(df, Command::MEMORY_SPACE | Command::BUS_MASTER);
            let transport =
                PciTransport::new::<H, _>(&mut root, df).map_err(PciError::Transport)?;
            Ok(PciVirtio {
                function: df,
                device_type,
                transport: transport.into(),
                bars,
            })
        })();
        found.push(result);
    }
    found
}

/// Routes every queue of a (fully initialised) virtio device to MSI-X
/// table entry 0, which sends `vector` to LAPIC 0. Returns false when the
/// device has no MSI-X (then it must be polled).
///
/// # Safety
/// The device's BARs must be assigned and mapped (identity) as
/// [`discover`] does, and the driver must not be using `queue_select` now.
pub unsafe fn route_msix(
    ecam: &mut Ecam,
    df: DeviceFunction,
    bars: &[(u64, u64); 6],
    vector: u8,
) -> bool {
    let Some(msix) = ecam.capabilities(df, CAP_ID_MSIX).next() else {
        return false;
    };
    let table = ecam.read32(df, msix + 4);
    let (table_bar, table_offset) = ((table & 7) as usize, (table & !7) as u64);
    let Some(&(bar_addr, bar_size)) = bars.get(table_bar) else {
        return false;
    };
    if bar_addr == 0 || table_offset + 16 > bar_size {
        return false;
    }
    // Entry 0: message address (LAPIC 0, fixed delivery), data = vector.
    let entry = (bar_addr + table_offset) as *mut u32;
    // SAFETY: the MSI-X table lies in a BAR assigned and mapped by discover().
    unsafe {
        entry.write_volatile(0xfee0_0000);
        entry.add(1).write_volatile(0);
        entry.add(2).write_volatile(vector as u32);
        entry.add(3).write_volatile(0); // unmasked
    }
    // Enable MSI-X (bit 15 of message control), function mask (bit 14) off.
    let control = ecam.read32(df, msix);
    ecam.write32(df, msix, (control | (1 << 31)) & !(1 << 30));

    // Point the virtio queues at entry 0 through the common configuration.
    let Some(common) = ecam.capabilities(df, CAP_ID_VENDOR).find_map(|cap| {
        let w0 = ecam.read32(df, cap);
        let cfg_type = (w0 >> 24) as u8;
        (cfg_type == VIRTIO_PCI_CAP_COMMON_CFG).then(|| {
            let bar = (ecam.read32(df, cap + 4) & 0xff) as usize;
            let offset = ecam.read32(df, cap + 8) as u64;
            (bar, offset)
        })
    }) else {
        return false;
    };
    let Some(&(bar_addr, _)) = bars.get(common.0) else {
        return false;
    };
    let base = (bar_addr + common.1) as *mut u8;
    // SAFETY: the common configuration structure lies in a mapped BAR; the
    // offsets are those of virtio_pci_common_cfg (virtio 1.x, 4.1.4.3).
    unsafe {
        let reg16 = |off: usize| base.add(off).cast::<u16>();
        reg16(COMMON_MSIX_CONFIG).write_volatile(VIRTIO_MSI_NO_VECTOR);
        let queues = reg16(COMMON_NUM_QUEUES).read_volatile();
        for q in 0..queues {
            reg16(COMMON_QUEUE_SELECT).write_volatile(q);
            reg16(COMMON_QUEUE_MSIX_VECTOR).write_volatile(0);
        }
    }
    true
}
