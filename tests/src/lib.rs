//! Shared helpers of the integration tests (`tests/tests/`): build the real
//! guest image once, boot it in QEMU (TCG) and look at its console.

pub mod guests;

use ringos::run::{RunConfig, VmOutput};
use ringos::{Console, Machine, VmConfig, VmRun};
use std::path::{Path, PathBuf};
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

/// What `ringos run` uses to boot `image` (a kernel with a component):
/// 256 MiB, TCG, no devices, `timeout`.
pub fn component_config(image: &Path, machine: Machine, timeout: Duration) -> RunConfig {
    RunConfig {
        app: image.to_path_buf(),
        with: Vec::new(),
        args: Vec::new(),
        env: Vec::new(),
        machine,
        mem_mib: 256,
        timeout,
        verbose: false,
        hosted: false,
        disk: None,
        net: None,
        accel: ringos::Accel::Tcg,
        pin_cpu: None,
        stdin: ringos::Stdin::Empty,
    }
}

/// Boots component `app` with `args` (`argv[0]` first), `env`, `disk` and
/// `stdin` on `machine`, as `ringos run` would; the image is removed
/// after.
pub fn boot_component(
    app: &[u8],
    args: &[&str],
    env: &[(&str, &str)],
    disk: Option<&Path>,
    machine: Machine,
    timeout: Duration,
    stdin: ringos::Stdin,
) -> VmOutput {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let image = ringos::kernel_image::target_dir(&ringos::kernel_image::root())
        .join("run")
        .join(format!("test-{}-{n}.elf", std::process::id()));
    let mut cfg = component_config(&image, machine, timeout);
    cfg.args = args.iter().map(|a| a.to_string()).collect();
    cfg.env = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    cfg.disk = disk.map(Path::to_path_buf);
    cfg.stdin = stdin;
    ringos::run::write_image(app, &[], &cfg.args, &cfg.env, false, &image)
        .expect("kernel image with the component");
    let out = ringos::run::boot_component(&image, &cfg, None).expect("booting");
    let _ = std::fs::remove_file(&image);
    out
}

/// Runs component `app` in this process (on a thread with room for Wasm)
/// with `args`, `env`, `ringos:blk` on `disk` and an interrupt after
/// `timeout`.
pub fn hosted(
    app: Vec<u8>,
    args: &[&str],
    env: &[(&str, &str)],
    disk: Option<&Path>,
    timeout: Option<Duration>,
) -> Result<ringos::hosted_run::Output, String> {
    hosted_with_stdin(app, args, env, disk, timeout, None)
}

/// [`hosted`] with `stdin` (these bytes, then the end) for the component.
pub fn hosted_with_stdin(
    app: Vec<u8>,
    args: &[&str],
    env: &[(&str, &str)],
    disk: Option<&Path>,
    timeout: Option<Duration>,
    stdin: Option<Vec<u8>>,
) -> Result<ringos::hosted_run::Output, String> {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let disk = disk.map(Path::to_path_buf);
    std::thread::Builder::new()
        .stack_size(32 << 20)
        .spawn(move || {
            ringos::hosted_run::run_with_disk(
                &app,
                &[],
                &args,
                &env,
                ringos::hosted_run::Echo::Capture,
                timeout,
                disk.as_deref(),
                stdin.map(|b| {
                    Box::new(ringos_runtime::wasi::Bytes::new(&b))
                        as Box<dyn ringos_runtime::wasi::Input>
                }),
            )
        })
        .unwrap()
        .join()
        .unwrap()
}
