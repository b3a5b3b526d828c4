//! The Component Model canonical ABI: types, layout, lift/lower, handle
//! tables, stream/future/subtask/waitable-set state machines.
//! Knows nothing of x86 or virtio. (Filled in by the component issue.)
#![cfg_attr(not(test), no_std)]
