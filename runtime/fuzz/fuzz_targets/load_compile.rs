//! Raw bytes -> `Module::new` (validate + translate + compile), then, for
//! modules without imports or a start function, instantiate in a fresh
//! store. Any panic, or a fault outside generated code, is a runtime bug;
//! so is rejecting as `Invalid` a module wasmparser's Wasm 2.0 validator
//! accepts, or Cranelift rejecting the translated IR.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringos_runtime::hosted::HOSTED;
use ringos_runtime::{Error, Module};

#[path = "common.rs"]
mod common;

fuzz_target!(|bytes: &[u8]| {
    match Module::new(&HOSTED, bytes) {
        Ok(m) => {
            if common::instantiable(&m) {
                common::instantiate(&m);
            }
        }
        Err(Error::Invalid(msg)) => {
            let wasm2 = wasmparser::WasmFeatures::WASM2;
            if wasmparser::Validator::new_with_features(wasm2)
                .validate_all(bytes)
                .is_ok()
            {
                panic!("runtime rejected a valid Wasm 2.0 module as invalid: {msg}");
            }
        }
        Err(Error::Unsupported(msg)) => common::note_unsupported("load_compile", &msg),
        Err(e) => common::check_compile_error(&e),
    }
});
