//! Device drivers: bus discovery (virtio-mmio, PCI), virtio-blk, virtio-net,
//! and the checks an incoming Ethernet frame must pass.
//!
//! Drivers get everything hardware-specific through the `virtio_drivers::Hal`
//! type parameter (DMA memory, address translation, MMIO mapping), in the
//! style of virtio-drivers itself: no global state here. Every operation is
//! non-blocking: submit returns at once, completions are polled in used-ring
//! order. Knows nothing of Wasm.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod blk;
pub mod bus;
pub mod frame_check;
pub mod net;

pub use virtio_drivers::transport::{DeviceType, SomeTransport, Transport};
pub use virtio_drivers::{BufferDirection, Hal, PhysAddr, PAGE_SIZE};

/// The transport every driver here runs over: virtio-mmio or PCI.
pub type VirtioTransport = SomeTransport<'static>;
