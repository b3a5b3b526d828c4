//! Device drivers: bus discovery (virtio-mmio, PCI), virtio-blk, virtio-net,
//! serial. Knows nothing of Wasm. (Filled in by the devices issue.)
#![cfg_attr(not(test), no_std)]
