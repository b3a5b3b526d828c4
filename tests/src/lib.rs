//! Shared helpers of the integration tests (`tests/tests/`): build the real
//! guest image once, boot it in QEMU (TCG) and look at its console.

pub mod guests;

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

/// A VM config for the real image on `machine`, with a 60 s timeout.
pub fn vm(machine: Machine, append: &str) -> VmConfig {
    let mut cfg = VmConfig::new(image());
    cfg.machine = machine;
    cfg.append = append.to_string();
    cfg.timeout = Duration::from_secs(60);
    cfg
}

pub fn run(cfg: &VmConfig) -> VmRun {
    ringos::run(cfg, Console::Capture).expect("running QEMU")
}

/// A zero-filled raw disk image in a fresh temporary directory; removed
/// when dropped.
pub struct TempDisk {
    pub path: PathBuf,
}

impl TempDisk {
    pub fn new(name: &str, bytes: u64) -> Self {
        let dir = std::env::temp_dir().join(format!("ringos-test-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("disk.img");
        let f = std::fs::File::create(&path).unwrap();
        f.set_len(bytes).unwrap();
        TempDisk { path }
    }

    pub fn bytes(&self) -> Vec<u8> {
        std::fs::read(&self.path).unwrap()
    }
}

impl Drop for TempDisk {
    fn drop(&mut self) {
        if let Some(dir) = self.path.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A free UDP port on 127.0.0.1 (bound and released; good enough here).
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The `key=value` words of a line, as numbers where they parse.
pub fn field(line: &str, key: &str) -> Option<u64> {
    line.split_whitespace()
        .filter_map(|w| w.split_once('='))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.parse().ok())
}
