//! Finding the machine's virtio devices (virtio-mmio slots on microvm, PCI
//! on q35) and routing their interrupts to the reactor's vector.

use super::hal::KernelHal;
use crate::arch::ioapic;
use crate::{interrupts, mem};
use core::sync::atomic::{AtomicBool, Ordering};
use ringos_drivers::blk::BlkDevice;
use ringos_drivers::bus::{mmio, pci};
use ringos_drivers::net::NetDevice;
use ringos_drivers::{DeviceType, Transport, VirtioTransport};

/// The vector every device interrupt arrives on; the reactor then looks at
/// every device (there are few).
pub const IO_VECTOR: u8 = interrupts::FIRST_IRQ_VECTOR + 1;

static IO_PENDING: AtomicBool = AtomicBool::new(false);

fn on_io_interrupt() {
    crate::count_marks::device_interrupt();
    IO_PENDING.store(true, Ordering::Release);
}

/// True if a device interrupt came in and was not taken yet.
pub fn io_pending() -> bool {
    IO_PENDING.load(Ordering::Acquire)
}

/// True (once) if a device interrupt came in since the last call.
pub fn take_io_pending() -> bool {
    IO_PENDING.swap(false, Ordering::AcqRel)
}

/// COM1's interrupt line (ISA IRQ 4, identity-mapped to GSI 4 on both
/// machines).
const COM1_GSI: u32 = 4;

/// Routes COM1's interrupt to the reactor's vector (for the host's stdin):
/// a received byte then ends the loop's halt. `false` if there is no I/O
/// APIC to route it through (the loop then looks on its timer).
pub fn route_serial_input() -> bool {
    if !ioapic::ready() {
        if mem::map_mmio(ioapic::DEFAULT_BASE, 4096).is_err() {
            return false;
        }
        ioapic::init(ioapic::DEFAULT_BASE);
    }
    interrupts::register(IO_VECTOR, on_io_interrupt);
    crate::interrupts::without(|| ioapic::route(COM1_GSI, IO_VECTOR, ioapic::Trigger::Edge));
    true
}

#[derive(Default)]
pub struct Devices {
    pub blk: Option<BlkDevice<KernelHal>>,
    pub net: Option<NetDevice<KernelHal>>,
    /// Whether device interrupts reach IO_VECTOR (else: poll only).
    pub interrupts: bool,
    pub transport: &'static str,
}

impl Devices {
    fn adopt(&mut self, transport: VirtioTransport, what: &str) {
        match transport.device_type() {
            DeviceType::Block if self.blk.is_none() => match BlkDevice::new(transport) {
                Ok(b) => {
                    log::info!(
                        "virtio-blk at {what}: {} sectors ({} MiB){}",
                        b.capacity(),
                        b.capacity() >> 11,
                        if b.readonly() { ", read-only" } else { "" }
                    );
                    self.blk = Some(b);
                }
                Err(e) => log::error!("virtio-blk at {what}: {e}"),
            },
            DeviceType::Network if self.net.is_none() => match NetDevice::new(transport) {
                Ok(n) => {
                    let m = n.mac();
                    log::info!(
                        "virtio-net at {what}: MAC {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                        m[0],
                        m[1],
                        m[2],
                        m[3],
                        m[4],
                        m[5]
                    );
                    self.net = Some(n);
                }
                Err(e) => log::error!("virtio-net at {what}: {e}"),
            },
            other => log::debug!("virtio {other:?} at {what}: not used"),
        }
    }
}

/// Looks for devices on both kinds of bus; what is not there is skipped.
pub fn discover(cmdline: &str) -> Devices {
    interrupts::register(IO_VECTOR, on_io_interrupt);
    let mut devs = Devices::default();
    discover_mmio(cmdline, &mut devs);
    if devs.blk.is_none() && devs.net.is_none() {
        discover_pci(&mut devs);
    }
    devs
}

fn discover_mmio(cmdline: &str, devs: &mut Devices) {
    let listed: alloc::vec::Vec<_> = mmio::slots_from_cmdline(cmdline).collect();
    let slots: alloc::vec::Vec<_> = if listed.is_empty() {
        mmio::microvm_slots().collect()
    } else {
        listed
    };
    let mut gsis = alloc::vec::Vec::new();
    for slot in &slots {
        if mem::map_mmio(slot.base, slot.size).is_err() {
            continue;
        }
        let virt = core::ptr::NonNull::new(slot.base as *mut u8).expect("slot at 0");
        // SAFETY: just mapped uncached for good; only this kernel drives it.
        match unsafe { mmio::open(slot, virt) } {
            Ok(Some(t)) => {
                devs.adopt(t, &alloc::format!("mmio {:#x}", slot.base));
                gsis.extend(slot.irq);
            }
            Ok(None) => {}
            Err(e) => log::debug!("virtio-mmio {:#x}: {e:?}", slot.base),
        }
    }
    if devs.blk.is_none() && devs.net.is_none() {
        return;
    }
    devs.transport = "virtio-mmio";
    // Interrupts only when the command line named the lines (acpi=off).
    if !gsis.is_empty() && mem::map_mmio(ioapic::DEFAULT_BASE, 4096).is_ok() {
        let lines = ioapic::init(ioapic::DEFAULT_BASE);
        for gsi in gsis.iter().copied().filter(|&g| g < lines) {
            ioapic::route(gsi, IO_VECTOR, ioapic::Trigger::Edge);
        }
        devs.interrupts = true;
    }
}

fn discover_pci(devs: &mut Devices) {
    // Bus 0 only: 32 devices x 8 functions x 4 KiB.
    let bus0 = 1 << 20;
    if mem::map_mmio(pci::Q35_ECAM_BASE, bus0).is_err() {
        return;
    }
    // SAFETY: q35's ECAM, just mapped (bus 0 is all that is read).
    let mut ecam = unsafe { pci::Ecam::new(pci::Q35_ECAM_BASE as *mut u8) };
    let id = ecam.read32(
        pci::DeviceFunction {
            bus: 0,
            device: 0,
            function: 0,
        },
        0,
    );
    if id == 0 || id == 0xffff_ffff {
        return; // no PCI here
    }
    let mut map = |pa: u64, len: u64| {
        if let Err(e) = mem::map_mmio(pa, len) {
            log::error!("cannot map BAR {pa:#x}+{len:#x}: {e:?}");
        }
    };
    // SAFETY: q35's ECAM; the kernel owns every device on it.
    let found = unsafe { pci::discover::<KernelHal>(ecam, &mut map) };
    let mut all_msix = true;
    let mut any = false;
    for dev in found {
        match dev {
            Ok(d) => {
                let what = alloc::format!("pci {}", d.function);
                let pci::PciVirtio {
                    function,
                    transport,
                    bars,
                    ..
                } = d;
                let before = (devs.blk.is_some(), devs.net.is_some());
                devs.adopt(transport, &what);
                if (devs.blk.is_some(), devs.net.is_some()) != before {
                    any = true;
                    // SAFETY: BARs assigned and mapped by discover(); the
                    // driver is initialised and idle.
                    all_msix &= unsafe { pci::route_msix(&mut ecam, function, &bars, IO_VECTOR) };
                }
            }
            Err(e) => log::error!("PCI virtio device: {e:?}"),
        }
    }
    if any {
        devs.transport = "virtio-pci";
        devs.interrupts = all_msix;
    }
}
