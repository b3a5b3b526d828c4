//! Real guest components, built from source: the crates in `tests/guests`
//! (a cargo workspace of its own) are compiled for `wasm32-unknown-unknown`
//! and each core module is turned into a component with `wit-component`
//! (the component-type sections wit-bindgen embeds say what to import and
//! export; no adapter is needed, there is no WASI 0.1 to adapt).
//!
//! - `hello`: a WASI 0.3 command (`wasip3` crate) printing `Hello, WASI!`.
//! - `provider`: exports `ringos:demo/bytes@0.1.0` (`tests/guests/wit`).
//! - `consumer`: imports `ringos:demo/bytes@0.1.0`, exports `wasi:cli/run`
//!   and prints [`CONSUMER_OUTPUT`] when linked to `provider`.
//! - `demo`: what `./ringos.sh` boots (output, a timer, random bytes, the
//!   disk through `ringos:blk`), with `disk-check` and `probe N` modes.

use std::collections::HashMap;
use std::env;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};

/// The guest crates, i.e. the names [`component`] accepts.
pub const NAMES: [&str; 4] = ["hello", "consumer", "provider", "demo"];

const TARGET: &str = "wasm32-unknown-unknown";

/// What `hello` writes to stdout.
pub const HELLO_OUTPUT: &str = "Hello, WASI!\n";

/// What `consumer` writes to stdout when its import is `provider`'s export.
pub const CONSUMER_OUTPUT: &str = "sum=5050 len=100\ntransform=IBM count=3\n";

/// The interface `provider` exports and `consumer` imports.
pub const DEMO_INTERFACE: &str = "ringos:demo/bytes@0.1.0";

/// `tests/guests`, the guest workspace.
pub fn workspace() -> PathBuf {
    crate::kernel_image::root().join("tests").join("guests")
}

/// The guests' target directory: `<target>/guests`.
pub fn target_dir() -> PathBuf {
    crate::kernel_image::target_dir(&crate::kernel_image::root()).join("guests")
}

/// The component built from the guest crate `name` (one of [`NAMES`]):
/// `<target>/guests/components/<name>.wasm`. The first call in a process
/// runs cargo on the guest workspace (cargo skips what is up to date);
/// each component is encoded once per process. Panics with the reason if
/// anything fails (no cargo, no wasm32 target, a compile error).
pub fn component(name: &str) -> PathBuf {
    try_component(name).unwrap_or_else(|e| panic!("{e}"))
}

/// [`component`], saying why it failed instead of panicking.
pub fn try_component(name: &str) -> Result<PathBuf, String> {
    if !NAMES.contains(&name) {
        return Err(format!("no guest component {name:?} (there are {NAMES:?})"));
    }
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    BUILT.get_or_init(build_guests).clone()?;
    static ENCODED: Mutex<Option<HashMap<String, PathBuf>>> = Mutex::new(None);
    let mut encoded = ENCODED.lock().unwrap_or_else(|p| p.into_inner());
    let encoded = encoded.get_or_insert_with(HashMap::new);
    if let Some(path) = encoded.get(name) {
        return Ok(path.clone());
    }
    let path = componentize(name)?;
    encoded.insert(name.to_string(), path.clone());
    Ok(path)
}

/// The component's bytes (see [`component`]).
pub fn component_bytes(name: &str) -> Vec<u8> {
    let path = component(name);
    fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// `cargo build --release --target wasm32-unknown-unknown` in tests/guests.
fn build_guests() -> Result<(), String> {
    let dir = workspace();
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("ringos: building the guest components (tests/guests)...");
    let out = Command::new(&cargo)
        .current_dir(&dir)
        .args(["build", "--release", "--target", TARGET])
        .arg("--target-dir")
        .arg(target_dir())
        // The host's flags (and target) are not the guests'.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_TARGET_DIR")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            format!(
                "cannot run {} to build the guest components: {e} (install Rust with rustup)",
                Path::new(&cargo).display()
            )
        })?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    {
        let mut e = io::stderr().lock();
        let _ = e.write_all(&out.stdout);
        let _ = e.write_all(&out.stderr);
    }
    if stderr.contains("may not be installed")
        || stderr.contains("can't find crate for `core`")
        || stderr.contains("can't find crate for `std`")
    {
        Err(format!(
            "the {TARGET} target is not installed; run: rustup target add {TARGET}"
        ))
    } else {
        Err(format!(
            "building the guest components in {} failed (cargo's output is above)",
            dir.display()
        ))
    }
}

/// Encodes `<target>/guests/wasm32-unknown-unknown/release/<name>.wasm` as a
/// component; written to a temporary file and renamed, so another test
/// process never sees half a file.
fn componentize(name: &str) -> Result<PathBuf, String> {
    let target = target_dir();
    let core_path = target
        .join(TARGET)
        .join("release")
        .join(format!("{name}.wasm"));
    let core = fs::read(&core_path).map_err(|e| {
        format!(
            "cargo built the guests but {} is unreadable: {e}",
            core_path.display()
        )
    })?;
    let bytes = wit_component::ComponentEncoder::default()
        .validate(true)
        .module(&core)
        .and_then(|enc| enc.encode())
        .map_err(|e| format!("componentizing {}: {e:#}", core_path.display()))?;
    let dir = target.join("components");
    fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let path = dir.join(format!("{name}.wasm"));
    let tmp = dir.join(format!(".{name}.wasm.{}", std::process::id()));
    fs::write(&tmp, &bytes)
        .and_then(|()| fs::rename(&tmp, &path))
        .map_err(|e| format!("writing {}: {e}", path.display()))?;
    Ok(path)
}
