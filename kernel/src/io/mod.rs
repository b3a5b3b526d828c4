//! I/O: the devices, the completion-queue reactor that drives them, the
//! network stack, and the I/O probes and self-tests.
pub mod devices;
pub mod hal;
pub mod net;
pub mod probe;
pub mod reactor;
