//! The guest components of `tests/guests`, built from source and
//! componentized (`ringos_tests::guests`): each must be a valid component
//! under ringos's baseline features and import/export exactly what the
//! runtime will be asked to provide. (Running them comes with the runtime.)

use ringos_tests::guests::{self, DEMO_INTERFACE};
use wasmparser::{CanonicalFunction, CanonicalOption, Parser, Payload, Validator, WasmFeatures};

/// ringos's component baseline (`ringos_runtime::component::features`).
fn features() -> WasmFeatures {
    WasmFeatures::default() | WasmFeatures::COMPONENT_MODEL | WasmFeatures::CM_ASYNC
}

/// The outer component's imports, exports and canonical functions.
#[derive(Debug, Default)]
struct Summary {
    imports: Vec<String>,
    exports: Vec<String>,
    /// `canon lift ... async (callback ...)` functions.
    async_callback_lifts: usize,
    /// `canon lower ... async` functions.
    async_lowers: usize,
    /// The other canonical built-ins by name (`StreamNew`, `TaskReturn`, ...).
    builtins: Vec<String>,
}

impl Summary {
    fn has_builtin(&self, name: &str) -> bool {
        self.builtins.iter().any(|b| b == name)
    }
}

/// Validates `name`'s component and summarizes its outer level.
fn load(name: &str) -> Summary {
    let bytes = guests::component_bytes(name);
    assert_eq!(
        &bytes[4..8],
        &[0x0d, 0, 1, 0],
        "{name}: not a component binary"
    );
    Validator::new_with_features(features())
        .validate_all(&bytes)
        .unwrap_or_else(|e| panic!("{name}: invalid component: {e}"));

    let mut s = Summary::default();
    // Nested modules/components report their own payloads up to their End.
    let mut depth = 0u32;
    for payload in Parser::new(0).parse_all(&bytes) {
        match payload.expect("validated") {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(r) if depth == 0 => {
                for i in r {
                    s.imports
                        .push(i.expect("validated").name.full_name().into());
                }
            }
            Payload::ComponentExportSection(r) if depth == 0 => {
                for e in r {
                    s.exports
                        .push(e.expect("validated").name.full_name().into());
                }
            }
            Payload::ComponentCanonicalSection(r) if depth == 0 => {
                for f in r {
                    match f.expect("validated") {
                        CanonicalFunction::Lift { options, .. } => {
                            let is_async = options.contains(&CanonicalOption::Async);
                            let callback = options
                                .iter()
                                .any(|o| matches!(o, CanonicalOption::Callback(_)));
                            if is_async && callback {
                                s.async_callback_lifts += 1;
                            }
                        }
                        CanonicalFunction::Lower { options, .. } => {
                            if options.contains(&CanonicalOption::Async) {
                                s.async_lowers += 1;
                            }
                        }
                        other => {
                            let name = format!("{other:?}");
                            let end = name.find([' ', '{', '(']).unwrap_or(name.len());
                            s.builtins.push(name[..end].to_string());
                        }
                    }
                }
            }
            _ => {}
        }
    }
    eprintln!("{name}: imports {:?}", s.imports);
    eprintln!("{name}: exports {:?}", s.exports);
    eprintln!(
        "{name}: {} async lifts with callback, {} async lowers, built-ins {:?}",
        s.async_callback_lifts, s.async_lowers, s.builtins
    );
    s
}

fn is_wasi_cli_p3(name: &str) -> bool {
    name.strip_prefix("wasi:cli/")
        .and_then(|n| n.split_once("@0.3."))
        .is_some()
}

fn assert_run_export(name: &str, s: &Summary) {
    assert_eq!(s.exports.len(), 1, "{name} exports {:?}", s.exports);
    assert!(
        s.exports[0].starts_with("wasi:cli/run@0.3."),
        "{name} exports {:?}, not wasi:cli/run 0.3",
        s.exports
    );
}

fn assert_no_older_wasi(name: &str, s: &Summary) {
    for i in &s.imports {
        assert!(
            !i.contains("@0.2.") && !i.contains("wasi_snapshot_preview1"),
            "{name} imports WASI before 0.3: {i}"
        );
    }
}

#[test]
fn hello_is_a_wasi_p3_command_on_stdout_only() {
    let s = load("hello");
    assert_run_export("hello", &s);
    assert_no_older_wasi("hello", &s);
    assert!(
        s.imports.iter().all(|i| is_wasi_cli_p3(i)),
        "hello imports more than wasi:cli 0.3: {:?}",
        s.imports
    );
    // stdout, types for its error-code, and stdin: the wasip3 crate makes
    // every stream<u8> with the `stream.new` of `stdin.read-via-stream` (the
    // first stream<u8> in its world), so the type comes from stdin's
    // instance and is passed to stdout's `write-via-stream` (stream types
    // are structural). No stdin function is called.
    let mut short: Vec<&str> = s
        .imports
        .iter()
        .map(|i| i.split('@').next().unwrap())
        .collect();
    short.sort();
    assert_eq!(
        short,
        ["wasi:cli/stdin", "wasi:cli/stdout", "wasi:cli/types"]
    );
    // `run` is `async func`: lifted async with a callback (the WASI 0.3
    // shape the runtime must drive), returning through task.return, and
    // writing stdout through a stream<u8>.
    assert_eq!(s.async_callback_lifts, 1);
    for b in [
        "TaskReturn",
        "StreamNew",
        "StreamWrite",
        "FutureRead",
        "WaitableSetNew",
    ] {
        assert!(s.has_builtin(b), "hello does not use {b}");
    }
}

#[test]
fn provider_exports_the_demo_interface_and_imports_nothing() {
    let s = load("provider");
    assert_eq!(s.exports, [DEMO_INTERFACE]);
    assert_eq!(s.imports, Vec::<String>::new());
    // sum and transform, both `async func`.
    assert_eq!(s.async_callback_lifts, 2);
    for b in [
        "TaskReturn",
        "StreamNew",
        "StreamRead",
        "StreamWrite",
        "FutureNew",
        "FutureRead",
        "FutureWrite",
    ] {
        assert!(s.has_builtin(b), "provider does not use {b}");
    }
}

#[test]
fn consumer_imports_the_demo_interface_and_is_a_command() {
    let s = load("consumer");
    assert_run_export("consumer", &s);
    assert_no_older_wasi("consumer", &s);
    assert!(
        s.imports.iter().any(|i| i == DEMO_INTERFACE),
        "consumer does not import {DEMO_INTERFACE}: {:?}",
        s.imports
    );
    let other: Vec<&String> = s.imports.iter().filter(|i| *i != DEMO_INTERFACE).collect();
    assert!(
        other.iter().all(|i| is_wasi_cli_p3(i)),
        "consumer imports more than wasi:cli 0.3 and the demo: {other:?}"
    );
    assert_eq!(s.async_callback_lifts, 1);
    // sum and transform called with the async ABI (subtasks).
    assert!(
        s.async_lowers >= 2,
        "consumer has {} async lowers",
        s.async_lowers
    );
    for b in [
        "StreamNew",
        "StreamWrite",
        "StreamRead",
        "FutureNew",
        "FutureWrite",
        "FutureRead",
    ] {
        assert!(s.has_builtin(b), "consumer does not use {b}");
    }
}

#[test]
fn components_land_in_target_guests() {
    for name in guests::NAMES {
        let path = guests::component(name);
        assert!(path.is_file(), "{}", path.display());
        assert!(
            path.starts_with(guests::target_dir().join("components")),
            "{}",
            path.display()
        );
        // Cached: the same path again, no second build.
        assert_eq!(guests::component(name), path);
    }
}

/// Runs `app` hosted, with `providers` instantiated first.
fn run_hosted(app: &str, providers: &[&str]) -> ringos::hosted_run::Output {
    let deps: Vec<Vec<u8>> = providers
        .iter()
        .map(|p| guests::component_bytes(p))
        .collect();
    let bytes = guests::component_bytes(app);
    // Wasm gets its own thread with room for the runtime's stack budget.
    std::thread::Builder::new()
        .stack_size(32 << 20)
        .spawn(move || {
            ringos::hosted_run::run(&bytes, &deps, &[], ringos::hosted_run::Echo::Capture)
        })
        .unwrap()
        .join()
        .unwrap()
        .unwrap_or_else(|e| panic!("{app}: {e}"))
}

#[test]
fn hello_prints_through_wasi_cli_stdout() {
    let out = run_hosted("hello", &[]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), guests::HELLO_OUTPUT);
    assert!(out.stderr.is_empty());
    assert!(out.ok, "run returned an error");
}

#[test]
fn consumer_composed_with_provider_streams_and_futures() {
    let out = run_hosted("consumer", &["provider"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        guests::CONSUMER_OUTPUT
    );
    assert!(out.ok, "run returned an error");
}
