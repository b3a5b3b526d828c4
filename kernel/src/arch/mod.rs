//! x86_64 specifics: CPU control, descriptor tables, the interrupt entry
//! stubs, the LAPIC and the legacy devices.
pub mod cpu;
pub mod gdt;
pub mod idt;
pub mod ioapic;
pub mod lapic;
pub mod legacy;
pub mod port;
