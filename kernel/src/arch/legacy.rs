//! Legacy PC devices: the 8259 PIC (masked, the LAPIC does the work), the
//! PIT (the reference clock for calibration), and the exits of a VM.

use super::port::{inb, outb, outl};

/// Remaps the two 8259s to vectors 32..47 (off the exception range) and masks
/// every line; microvm and q35 both have them, real work goes via the APICs.
pub fn pic_disable() {
    // SAFETY: the standard 8259 init sequence on its fixed ports.
    unsafe {
        outb(0x20, 0x11);
        outb(0xa0, 0x11);
        outb(0x21, 32);
        outb(0xa1, 40);
        outb(0x21, 4);
        outb(0xa1, 2);
        outb(0x21, 1);
        outb(0xa1, 1);
        outb(0x21, 0xff);
        outb(0xa1, 0xff);
    }
}

pub const PIT_HZ: u64 = 1_193_182;

/// Starts PIT channel 0 in mode 2 (rate generator) counting down from 65536.
pub fn pit_start() {
    // SAFETY: channel 0, lobyte/hibyte, mode 2, binary; reload 0 = 65536.
    // Its IRQ 0 is masked at the PIC.
    unsafe {
        outb(0x43, 0x34);
        outb(0x40, 0);
        outb(0x40, 0);
    }
}

/// Latches and reads channel 0's current count. (Port 0x61 does not exist on
/// microvm, so the count itself is the only reference.)
pub fn pit_read() -> u16 {
    // SAFETY: latch command for channel 0, then two reads of the latch.
    unsafe {
        outb(0x43, 0x00);
        let lo = inb(0x40) as u16;
        let hi = inb(0x40) as u16;
        (hi << 8) | lo
    }
}

/// Ends the VM with `status` through QEMU's isa-debug-exit; where that device
/// is absent, asks the i8042 for a reset, then halts.
pub fn vm_exit(status: u8) -> ! {
    // SAFETY: writes to the debug-exit port end QEMU; 0xfe to port 0x64
    // pulses the reset line. Neither returns when the device exists.
    unsafe {
        outl(ringos_proto::DEBUG_EXIT_PORT, status as u32);
        outb(0x64, 0xfe);
    }
    super::cpu::halt_forever()
}
