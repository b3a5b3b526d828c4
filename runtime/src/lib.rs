//! Wasm and component loading, the Cranelift JIT, instances, traps,
//! built-ins and the component task scheduler, generic over a Platform.
//! (Filled in by the JIT and component issues.)
#![cfg_attr(not(test), no_std)]
