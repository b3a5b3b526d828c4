//! Shared by the fuzz targets: compile, then instantiate what is safe to.

use std::collections::HashSet;
use std::sync::Mutex;

use ringos_runtime::hosted::HOSTED;
use ringos_runtime::{Error, Module, Store};

/// Modules whose instantiation could run guest code are only compiled: a
/// start function may loop forever (the runtime has no fuel yet), and
/// imports would need host stand-ins.
pub fn instantiable(m: &Module) -> bool {
    m.info.imports.is_empty() && m.info.start.is_none()
}

/// Instantiates `m` in a fresh store and drops both. Traps (e.g. an
/// out-of-bounds active segment) and resource errors are fine; exports are
/// never called.
pub fn instantiate(m: &std::rc::Rc<Module>) {
    let mut store = Store::new(&HOSTED);
    match store.instantiate(m, &[]) {
        Ok(_) | Err(Error::Trap(_)) | Err(Error::Resource(_)) => {}
        Err(e) => panic!("instantiating a module without imports failed: {e:?}"),
    }
}

/// Cranelift refusing our IR is a translator bug, except for its
/// implementation limits on huge functions.
pub fn check_compile_error(e: &Error) {
    if let Error::Compile(m) = e {
        if !(m.contains("ImplLimitExceeded") || m.contains("CodeTooLarge")) {
            panic!("Cranelift rejected the translated IR (translator bug): {m}");
        }
    }
}

/// Prints each distinct `Unsupported` reason once per process, so a run's
/// log shows which valid modules the runtime cannot take yet.
pub fn note_unsupported(target: &str, m: &str) {
    static SEEN: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    // Operators print with their immediates; key on the operator name.
    let key: String = m
        .chars()
        .take_while(|c| *c != '{' && *c != '(')
        .take(80)
        .collect();
    let mut seen = SEEN.lock().unwrap_or_else(|p| p.into_inner());
    let seen = seen.get_or_insert_with(HashSet::new);
    if seen.len() < 200 && seen.insert(key) {
        let short: String = m.chars().take(200).collect();
        eprintln!("[{target}] unsupported: {short}");
    }
}
