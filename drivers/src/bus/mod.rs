//! Finding virtio devices: virtio-mmio slots (microvm) and PCI through ECAM
//! (q35).
pub mod mmio;
pub mod pci;
