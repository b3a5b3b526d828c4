//! Shared helpers of the integration tests (`tests/tests/`): build the real
//! guest image once, boot it in QEMU (TCG) and look at its console.

use ringos::{Console, Machine, VmConfig, VmRun};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

pub use ringos::Outcome;

/// The release guest image, built once per test binary.
pub fn image() -> PathBuf {
    static IMAGE: OnceLock<PathBuf> = OnceLock::new();
    IMAGE
        .get_or_init(|| ringos::kernel_image::build(false).expect("building the guest image"))
        .clone()
}

pub const MACHINES: [Machine; 2] = [Machine::Microvm, Machine::Q35];

/// Boots the real image on `machine` with `append` as the kernel command
/// line and `mem_mib` of RAM; fails the test if QEMU cannot run at all.
pub fn boot(machine: Machine, append: &str, mem_mib: u32) -> VmRun {
    let mut cfg = VmConfig::new(image());
    cfg.machine = machine;
    cfg.append = append.to_string();
    cfg.mem_mib = mem_mib;
    cfg.timeout = Duration::from_secs(60);
    ringos::run(&cfg, Console::Capture).expect("running QEMU")
}

/// The first console line starting with `prefix`, without the prefix.
pub fn line<'a>(run: &'a VmRun, prefix: &str) -> Option<&'a str> {
    run.lines.iter().find_map(|(_, l)| l.strip_prefix(prefix))
}

/// Host time at which the first line starting with `prefix` arrived.
pub fn line_time(run: &VmRun, prefix: &str) -> Option<Duration> {
    run.lines
        .iter()
        .find(|(_, l)| l.starts_with(prefix))
        .map(|(t, _)| *t)
}

/// The console, for assertion messages.
pub fn console(run: &VmRun) -> String {
    let mut s: String = run.lines.iter().map(|(_, l)| format!("{l}\n")).collect();
    if !run.stderr.is_empty() {
        s.push_str("--- qemu stderr ---\n");
        s.push_str(&run.stderr);
    }
    s
}
