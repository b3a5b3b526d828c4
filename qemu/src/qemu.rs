//! The QEMU command line for a ringos guest, and finding QEMU and its firmware.

use std::env;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ringos_proto::DEBUG_EXIT_PORT;

use crate::{Error, Result};

/// Name of the QEMU binary looked up on `PATH`.
pub const QEMU_BINARY: &str = "qemu-system-x86_64";
/// Overrides the QEMU binary (a path, or a name looked up on `PATH`).
pub const QEMU_ENV: &str = "RINGOS_QEMU";
/// qboot, the minimal firmware q35 boots the PVH kernel with (SeaBIOS is slower).
pub const QBOOT_ROM: &str = "/usr/share/qemu/qboot.rom";
/// Default guest memory.
pub const DEFAULT_MEM_MIB: u32 = 256;
/// Default time a VM may run before it is killed.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// QEMU machine type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Machine {
    /// Minimal machine: no PCI, virtio-mmio devices; boots fastest.
    Microvm,
    /// PC with PCIe, booted through qboot.
    Q35,
}

impl Machine {
    /// QEMU's name for the machine (also the CLI's).
    pub fn name(self) -> &'static str {
        match self {
            Machine::Microvm => "microvm",
            Machine::Q35 => "q35",
        }
    }
}

impl fmt::Display for Machine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// How QEMU runs guest code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// Binary translation: works everywhere, slower.
    Tcg,
    /// Hardware virtualization: needs /dev/kvm.
    Kvm,
}

impl Accel {
    /// QEMU's name for the accelerator (also the CLI's).
    pub fn name(self) -> &'static str {
        match self {
            Accel::Tcg => "tcg",
            Accel::Kvm => "kvm",
        }
    }
}

impl fmt::Display for Accel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// One VM to boot.
#[derive(Clone, Debug)]
pub struct VmConfig {
    /// The guest image (a PVH ELF kernel).
    pub image: PathBuf,
    pub machine: Machine,
    pub accel: Accel,
    pub mem_mib: u32,
    /// Kernel command line (`key=value` words, see `ringos_proto::cmdline`).
    pub append: String,
    /// QEMU is killed if it is still running after this long.
    pub timeout: Duration,
    /// Print the QEMU command line to stderr before running it.
    pub verbose: bool,
}

impl VmConfig {
    /// A microvm/TCG VM with the defaults and an empty command line.
    pub fn new(image: impl Into<PathBuf>) -> Self {
        VmConfig {
            image: image.into(),
            machine: Machine::Microvm,
            accel: Accel::Tcg,
            mem_mib: DEFAULT_MEM_MIB,
            append: String::new(),
            timeout: DEFAULT_TIMEOUT,
            verbose: false,
        }
    }
}

/// QEMU's arguments for `cfg`, without the binary; checks nothing on disk.
pub fn qemu_args(cfg: &VmConfig) -> Vec<OsString> {
    let mut a = Vec::new();
    match cfg.machine {
        Machine::Microvm => words(&mut a, "-M microvm"),
        Machine::Q35 => words(&mut a, &format!("-M q35 -bios {QBOOT_ROM}")),
    }
    words(&mut a, &format!("-accel {}", cfg.accel));
    // `-cpu host` aborts on these machines under KVM, so KVM keeps QEMU's default model.
    if cfg.accel == Accel::Tcg {
        words(&mut a, "-cpu max");
    }
    words(&mut a, &format!("-m {}", cfg.mem_mib));
    words(
        &mut a,
        "-nodefaults -no-user-config -no-reboot -display none -serial stdio",
    );
    words(
        &mut a,
        &format!("-device isa-debug-exit,iobase={DEBUG_EXIT_PORT:#x},iosize=4"),
    );
    if cfg.machine == Machine::Microvm {
        // Modern virtio-mmio (version 2), which the drivers implement.
        words(&mut a, "-global virtio-mmio.force-legacy=false");
    }
    // The path and the command line may hold spaces: one argument each.
    a.push("-kernel".into());
    a.push(cfg.image.clone().into_os_string());
    a.push("-append".into());
    a.push(cfg.append.clone().into());
    a
}

/// Appends the space-separated words of `s` (which has no quoting) to `args`.
fn words(args: &mut Vec<OsString>, s: &str) {
    args.extend(s.split(' ').map(OsString::from));
}

/// The QEMU command for `cfg`, after checking that QEMU, qboot (for q35)
/// and the image exist. Stdio is left to the caller.
pub fn qemu_command(cfg: &VmConfig) -> Result<Command> {
    let qemu = find_qemu()?;
    if cfg.machine == Machine::Q35 && !Path::new(QBOOT_ROM).is_file() {
        return Err(Error::CannotStart(format!(
            "qboot.rom not found at {QBOOT_ROM}; install it with: apt-get install -y qemu-system-data"
        )));
    }
    if !cfg.image.is_file() {
        return Err(Error::CannotStart(format!(
            "guest image not found at {}",
            cfg.image.display()
        )));
    }
    let mut cmd = Command::new(qemu);
    cmd.args(qemu_args(cfg));
    Ok(cmd)
}

/// The QEMU binary: `$RINGOS_QEMU` if set, else `qemu-system-x86_64` on `PATH`.
pub fn find_qemu() -> Result<PathBuf> {
    let (name, from_env) = match env::var_os(QEMU_ENV) {
        Some(v) if !v.is_empty() => (v, true),
        _ => (QEMU_BINARY.into(), false),
    };
    if let Some(path) = lookup(&name) {
        return Ok(path);
    }
    Err(Error::CannotStart(if from_env {
        format!(
            "{} (from {QEMU_ENV}) not found or not executable",
            Path::new(&name).display()
        )
    } else {
        format!("{QEMU_BINARY} not found; install it with: apt-get install -y qemu-system-x86")
    }))
}

/// The first line of `qemu-system-x86_64 --version`, for benchmark records.
pub fn version() -> Option<String> {
    let out = Command::new(find_qemu().ok()?)
        .arg("--version")
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    Some(text.lines().next()?.trim().to_string())
}

/// Resolves `name` like a shell would: as a path if it has a `/`, else on `PATH`.
fn lookup(name: &OsStr) -> Option<PathBuf> {
    let is_exe = |p: &Path| {
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    let name = Path::new(name);
    if name.components().count() > 1 {
        return is_exe(name).then(|| name.to_path_buf());
    }
    env::split_paths(&env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| is_exe(p))
}

/// `cmd` as a shell-pasteable line, for `-v`.
pub fn command_line(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| shell_quote(&a.to_string_lossy()))
        .collect::<Vec<_>>()
        .join(" ")
}

fn shell_quote(s: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./,=:+@%".contains(c);
    if !s.is_empty() && s.chars().all(plain) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(cfg: &VmConfig) -> String {
        qemu_args(cfg)
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    const COMMON: &str = "-m 256 -nodefaults -no-user-config -no-reboot -display none \
        -serial stdio -device isa-debug-exit,iobase=0xf4,iosize=4";

    #[test]
    fn microvm_tcg() {
        let mut cfg = VmConfig::new("/k/ringos-kernel");
        cfg.append = "log=debug".into();
        assert_eq!(
            args(&cfg),
            format!(
                "-M microvm -accel tcg -cpu max {COMMON} -global virtio-mmio.force-legacy=false \
                 -kernel /k/ringos-kernel -append log=debug"
            )
        );
    }

    #[test]
    fn q35_tcg() {
        let mut cfg = VmConfig::new("/k/ringos-kernel");
        cfg.machine = Machine::Q35;
        assert_eq!(
            args(&cfg),
            format!(
                "-M q35 -bios /usr/share/qemu/qboot.rom -accel tcg -cpu max {COMMON} \
                 -kernel /k/ringos-kernel -append "
            )
        );
    }

    #[test]
    fn kvm_has_no_cpu_model() {
        for machine in [Machine::Microvm, Machine::Q35] {
            let mut cfg = VmConfig::new("/k/ringos-kernel");
            cfg.machine = machine;
            cfg.accel = Accel::Kvm;
            let a = args(&cfg);
            assert!(a.contains("-accel kvm"), "{a}");
            assert!(!a.contains("-cpu"), "{a}");
        }
    }

    #[test]
    fn path_and_cmdline_stay_single_arguments() {
        let mut cfg = VmConfig::new("/my dir/kernel");
        cfg.mem_mib = 512;
        cfg.append = "log=debug test=sleep".into();
        let a = qemu_args(&cfg);
        let n = a.len();
        assert_eq!(a[n - 3], "/my dir/kernel");
        assert_eq!(a[n - 1], "log=debug test=sleep");
        assert!(a.windows(2).any(|w| w[0] == "-m" && w[1] == "512"));
    }

    #[test]
    fn quoting_for_display() {
        let mut cmd = Command::new("qemu-system-x86_64");
        cmd.args(["-append", "", "-kernel", "/a b/k", "it's"]);
        assert_eq!(
            command_line(&cmd),
            r"qemu-system-x86_64 -append '' -kernel '/a b/k' 'it'\''s'"
        );
    }
}
