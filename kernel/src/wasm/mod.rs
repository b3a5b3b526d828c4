//! The Wasm runtime on bare metal: [`platform`] implements the runtime's
//! `Platform` for the kernel (code and linear memory in the dynamic virtual
//! range, W^X, CPU exceptions in generated code turned into Wasm traps), and
//! [`spec`] runs the spec bundles of the image's payload (`test=wasm-spec`).

pub mod platform;
pub mod spec;

pub use platform::KERNEL;
