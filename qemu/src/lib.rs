//! Host side of ringos: builds the guest image, boots it under QEMU and maps
//! how the VM ended to an exit status. The numbers and console markers come
//! from `ringos_proto`, the contract shared with the kernel.

pub mod bench;
pub mod error;
pub mod guests;
pub mod hosted_run;
pub mod image;
pub mod kernel_image;
pub mod outcome;
pub mod probe;
pub mod qemu;
pub mod run;
pub mod stats;
pub mod vm;
pub mod wast;

pub use error::{Error, Result};
pub use outcome::Outcome;
pub use qemu::{qemu_command, Accel, IoMode, Machine, Net, PortForward, Protocol, Stdin, VmConfig};
pub use vm::{run, spawn, Console, RunningVm, VmRun};
