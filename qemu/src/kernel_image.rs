//! Building and locating the guest image (`boot` + `kernel` for x86_64-unknown-none).

use std::env;
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::{Error, Result};

/// The guest's Rust target.
pub const TARGET: &str = "x86_64-unknown-none";
/// The package whose binary is the guest image.
pub const PACKAGE: &str = "ringos-boot";
/// The guest image's file name.
pub const IMAGE_NAME: &str = "ringos-kernel";
/// Overrides the workspace root.
pub const ROOT_ENV: &str = "RINGOS_ROOT";
/// Uses this prebuilt image instead of running cargo.
pub const KERNEL_ENV: &str = "RINGOS_KERNEL";

/// The workspace root: `$RINGOS_ROOT`, else the parent of this crate.
pub fn root() -> PathBuf {
    match env::var_os(ROOT_ENV) {
        Some(r) if !r.is_empty() => PathBuf::from(r),
        _ => Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("the crate lives in the workspace")
            .to_path_buf(),
    }
}

/// Cargo's target directory: `$CARGO_TARGET_DIR` (relative to the current
/// directory, as cargo reads it), else `<root>/target`.
pub fn target_dir(root: &Path) -> PathBuf {
    match env::var_os("CARGO_TARGET_DIR") {
        Some(d) if !d.is_empty() => env::current_dir()
            .map(|cwd| cwd.join(&d))
            .unwrap_or_else(|_| d.into()),
        _ => root.join("target"),
    }
}

/// The cargo profile the guest image is built with (Cargo.toml).
pub const PROFILE: &str = "guest";

/// Where the guest build puts the image.
pub fn image_path(root: &Path) -> PathBuf {
    target_dir(root).join(TARGET).join(PROFILE).join(IMAGE_NAME)
}

/// Builds the guest image if needed (cargo decides) and returns its path,
/// or returns `$RINGOS_KERNEL` without building. Cargo's output goes to
/// stderr when `verbose`, else it is shown only if the build fails.
pub fn build(verbose: bool) -> Result<PathBuf> {
    if let Some(k) = env::var_os(KERNEL_ENV).filter(|k| !k.is_empty()) {
        return Ok(k.into());
    }
    let root = root();
    let target_dir = target_dir(&root);
    eprintln!("ringos: building the kernel image (profile {PROFILE})...");
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(&root)
        .args([
            "build",
            "--profile",
            PROFILE,
            "-p",
            PACKAGE,
            "--target",
            TARGET,
        ])
        .arg("--target-dir")
        .arg(&target_dir)
        // Host RUSTFLAGS would replace the guest's link flags from
        // .cargo/config.toml (cargo uses only the first rustflags source).
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .stdin(Stdio::null());
    let spawn_err = |e: io::Error| {
        Error::CannotStart(format!("cannot run {}: {e}", Path::new(&cargo).display()))
    };
    let (ok, errors) = if verbose {
        // stdout stays the guest console's, so cargo's goes to stderr too.
        let status = cmd
            .stdout(io::stderr())
            .stderr(Stdio::inherit())
            .status()
            .map_err(spawn_err)?;
        (status.success(), String::new())
    } else {
        if io::stderr().is_terminal() {
            cmd.arg("--color=always");
        }
        let out = cmd.output().map_err(spawn_err)?;
        if !out.status.success() {
            let mut e = io::stderr().lock();
            let _ = e.write_all(&out.stdout);
            let _ = e.write_all(&out.stderr);
        }
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    if !ok {
        return Err(Error::CannotStart(if target_missing(&errors) {
            format!("the {TARGET} target is not installed; run: rustup target add {TARGET}")
        } else {
            "building the kernel image failed (cargo's output is above)".into()
        }));
    }
    let image = image_path(&root);
    if !image.is_file() {
        return Err(Error::CannotStart(format!(
            "cargo built {PACKAGE} but {} is missing",
            image.display()
        )));
    }
    Ok(image)
}

/// Whether cargo failed because the rustup target is not installed.
fn target_missing(cargo_stderr: &str) -> bool {
    cargo_stderr.contains("can't find crate for `core`")
        || (cargo_stderr.contains(TARGET) && cargo_stderr.contains("not installed"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_missing_target() {
        let e = "error[E0463]: can't find crate for `core`\n  = note: the \
                 `x86_64-unknown-none` target may not be installed";
        assert!(target_missing(e));
        assert!(!target_missing("error[E0308]: mismatched types"));
    }

    #[test]
    fn image_lives_under_the_target_triple() {
        let p = image_path(Path::new("/r"));
        assert!(
            p.ends_with("x86_64-unknown-none/guest/ringos-kernel"),
            "{p:?}"
        );
    }
}
