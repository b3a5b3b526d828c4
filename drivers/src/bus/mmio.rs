//! virtio-mmio: QEMU's microvm lists its devices on the kernel command line
//! as `virtio_mmio.device=<size>@<base>:<irq>` (with `acpi=off`); without
//! that list the standard slots are probed and run without interrupts.

use super::super::VirtioTransport;
use core::ptr::NonNull;
use virtio_drivers::transport::mmio::{MmioError, MmioTransport, VirtIOHeader};
use virtio_drivers::transport::DeviceTypeError;

/// Where microvm puts its virtio-mmio transports, and how many there are.
pub const MICROVM_BASE: u64 = 0xfeb0_0000;
pub const MICROVM_SLOT_SIZE: u64 = 0x200;
pub const MICROVM_SLOTS: u64 = 24;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmioSlot {
    pub base: u64,
    pub size: u64,
    /// The GSI, when the command line says.
    pub irq: Option<u32>,
}

/// Parses one `virtio_mmio.device=` value: `512@0xfeb00e00:12` (size may
/// carry a K suffix, the irq is decimal).
pub fn parse_slot(value: &str) -> Option<MmioSlot> {
    let (size, rest) = value.split_once('@')?;
    let (base, irq) = match rest.split_once(':') {
        Some((b, i)) => (b, Some(i.parse().ok()?)),
        None => (rest, None),
    };
    let size = match size.strip_suffix(['K', 'k']) {
        Some(k) => parse_u64(k)? * 1024,
        None => parse_u64(size)?,
    };
    Some(MmioSlot {
        base: parse_u64(base)?,
        size,
        irq,
    })
}

fn parse_u64(s: &str) -> Option<u64> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

/// The slots named on a command line.
pub fn slots_from_cmdline(cmdline: &str) -> impl Iterator<Item = MmioSlot> + '_ {
    cmdline
        .split_ascii_whitespace()
        .filter_map(|w| w.strip_prefix("virtio_mmio.device="))
        .filter_map(parse_slot)
}

/// microvm's fixed slots, for when the command line lists none.
pub fn microvm_slots() -> impl Iterator<Item = MmioSlot> {
    (0..MICROVM_SLOTS).map(|i| MmioSlot {
        base: MICROVM_BASE + i * MICROVM_SLOT_SIZE,
        size: MICROVM_SLOT_SIZE,
        irq: None,
    })
}

/// Opens the transport at `slot` (mapped at `virt`); `Ok(None)` for an empty
/// slot.
///
/// # Safety
/// `virt` must map `slot.size` bytes of the slot's registers, uncached, for
/// the rest of the kernel's life, and nothing else may use them.
pub unsafe fn open(
    slot: &MmioSlot,
    virt: NonNull<u8>,
) -> Result<Option<VirtioTransport>, MmioError> {
    // SAFETY: forwarded to the caller.
    match unsafe { MmioTransport::new(virt.cast::<VirtIOHeader>(), slot.size as usize) } {
        Ok(t) => Ok(Some(t.into())),
        Err(MmioError::InvalidDeviceID(DeviceTypeError::InvalidDeviceType(0))) => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_qemu_microvm_lines() {
        let line = "log=debug virtio_mmio.device=512@0xfeb00e00:12 virtio_mmio.device=1K@0xfeb00c00:11 x=y";
        let slots: Vec<_> = slots_from_cmdline(line).collect();
        assert_eq!(
            slots,
            [
                MmioSlot {
                    base: 0xfeb0_0e00,
                    size: 512,
                    irq: Some(12)
                },
                MmioSlot {
                    base: 0xfeb0_0c00,
                    size: 1024,
                    irq: Some(11)
                },
            ]
        );
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "512", "@0x1", "512@zz:1", "512@0x10:x", "x@0x10"] {
            assert_eq!(parse_slot(bad), None, "{bad}");
        }
        assert_eq!(
            parse_slot("4096@4096"),
            Some(MmioSlot {
                base: 4096,
                size: 4096,
                irq: None
            })
        );
        assert_eq!(microvm_slots().count(), 24);
    }
}
