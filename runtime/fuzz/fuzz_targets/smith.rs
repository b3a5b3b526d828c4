//! wasm-smith generates valid Wasm 2.0 modules, with or without exception
//! handling (no SIMD, threads, GC, tail calls, memory64, multi-memory,
//! extended-const, ...), without
//! imports or a start function. `Module::new` must accept them: `Invalid`
//! is a bug, `Unsupported` is printed once per reason (known gaps), a
//! Cranelift error is a translator bug. Accepted modules are instantiated.
#![no_main]

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use ringos_runtime::hosted::HOSTED;
use ringos_runtime::{Error, Module};

#[path = "common.rs"]
mod common;

fn config(u: &mut Unstructured<'_>) -> Result<wasm_smith::Config> {
    let mut c: wasm_smith::Config = u.arbitrary()?;
    // Wasm 2.0 minus SIMD: the post-2.0 proposals off, except exception
    // handling (exceptions_enabled and max_tags stay as drawn).
    c.simd_enabled = false;
    c.relaxed_simd_enabled = false;
    c.threads_enabled = false;
    c.shared_everything_threads_enabled = false;
    c.gc_enabled = false;
    c.tail_call_enabled = false;
    c.memory64_enabled = false;
    c.max_memories = c.max_memories.min(1);
    c.extended_const_enabled = false;
    c.wide_arithmetic_enabled = false;
    c.custom_page_sizes_enabled = false;
    c.custom_descriptors_enabled = false;
    c.compact_imports_enabled = false;
    c.acquire_release_atomics_enabled = false;
    c.multibyte_array_access_enabled = false;
    // Nothing to link and nothing that runs at instantiation.
    c.max_imports = 0;
    c.allow_start_export = false;
    // Multiple tables need reference types (as in 2.0).
    if !c.reference_types_enabled {
        c.max_tables = c.max_tables.min(1);
    }
    // Keep inputs quick and RSS bounded: tables are allocated eagerly.
    c.max_tables = c.max_tables.min(10);
    c.max_table_elements = c.max_table_elements.min(100_000);
    c.max_funcs = c.max_funcs.min(100);
    Ok(c)
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(cfg) = config(&mut u) else { return };
    let Ok(module) = wasm_smith::Module::new(cfg, &mut u) else {
        return;
    };
    let bytes = module.to_bytes();
    // Harness check: what we generate must be Wasm 2.0 (plus exceptions).
    let features = wasmparser::WasmFeatures::WASM2 | wasmparser::WasmFeatures::EXCEPTIONS;
    if let Err(e) = wasmparser::Validator::new_with_features(features).validate_all(&bytes) {
        panic!("harness bug: wasm-smith generated a module outside Wasm 2.0: {e}");
    }
    match Module::new(&HOSTED, &bytes) {
        Ok(m) => {
            assert!(
                common::instantiable(&m),
                "wasm-smith made imports or a start"
            );
            common::instantiate(&m);
        }
        Err(Error::Invalid(msg)) => {
            panic!("runtime rejected a valid wasm-smith module as invalid: {msg}")
        }
        Err(Error::Unsupported(msg)) => common::note_unsupported("smith", &msg),
        Err(Error::Resource(_)) => {}
        Err(e) => {
            common::check_compile_error(&e);
            panic!("unexpected error for a valid module: {e:?}");
        }
    }
});
