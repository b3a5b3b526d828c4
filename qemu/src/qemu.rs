//! The QEMU command line for a ringos guest, and finding QEMU and its firmware.

use std::env;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ringos_proto::{cmdline, DEBUG_EXIT_PORT};

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
    /// A raw disk image file, attached as virtio-blk.
    pub disk: Option<PathBuf>,
    /// A NIC (virtio-net) and what it is plugged into.
    pub net: Option<Net>,
    /// A TCG plugin and its arguments (`-plugin PATH,ARG,...`).
    pub plugin: Option<OsString>,
    /// Runs QEMU, all its threads, on this one host CPU (see
    /// [`check_host_cpu`]).
    pub pin_cpu: Option<usize>,
    /// What the serial port receives (framed, `ringos_proto::input`).
    pub stdin: Stdin,
}

/// Where a component's `wasi:cli/stdin` comes from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Stdin {
    /// Nothing: it ends at once.
    #[default]
    Empty,
    /// This process's stdin, as it arrives, to its end.
    Inherit,
    /// These bytes, then the end.
    Bytes(Vec<u8>),
}

/// What the guest's NIC is plugged into.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Net {
    /// QEMU user networking (the guest is 10.0.2.15), with ports forwarded
    /// from 127.0.0.1.
    User { ports: Vec<PortForward> },
    /// Raw Ethernet frames, one per UDP datagram, between QEMU (`local`)
    /// and a host socket (`remote`): how tests inject any frame they like.
    Dgram {
        local: std::net::SocketAddr,
        remote: std::net::SocketAddr,
    },
}

/// Transport protocol of a forwarded port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Udp,
    Tcp,
}

impl Protocol {
    /// QEMU's name for it (also the CLI's).
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Udp => "udp",
            Protocol::Tcp => "tcp",
        }
    }
}

/// `HOST:GUEST/udp|tcp`: 127.0.0.1:HOST on the host reaches GUEST in the VM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortForward {
    pub protocol: Protocol,
    pub host: u16,
    pub guest: u16,
}

impl std::str::FromStr for PortForward {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let bad = || format!("{s:?}: expected HOST:GUEST/udp or HOST:GUEST/tcp, e.g. 5555:7/udp");
        let (ports, proto) = s.split_once('/').ok_or_else(bad)?;
        let protocol = match proto {
            "udp" => Protocol::Udp,
            "tcp" => Protocol::Tcp,
            _ => return Err(bad()),
        };
        let (h, g) = ports.split_once(':').ok_or_else(bad)?;
        // Port 0 would mean "any" to QEMU: not a forward anyone can reach.
        let port = |p: &str| p.parse::<u16>().ok().filter(|&p| p != 0).ok_or_else(bad);
        Ok(PortForward {
            protocol,
            host: port(h)?,
            guest: port(g)?,
        })
    }
}

impl fmt::Display for PortForward {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}/{}", self.host, self.guest, self.protocol.name())
    }
}

/// How the guest's reactor waits for I/O (`io=` on the kernel command line).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IoMode {
    /// Busy-poll the devices.
    Poll,
    /// Halt until an interrupt (the kernel's default).
    Irq,
}

impl IoMode {
    /// The kernel's name for the mode.
    pub fn name(self) -> &'static str {
        match self {
            IoMode::Poll => "poll",
            IoMode::Irq => "irq",
        }
    }

    /// The kernel command-line word that selects it: `io=poll` / `io=irq`.
    pub fn cmdline_word(self) -> String {
        format!("{}={}", cmdline::IO, self.name())
    }
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
            disk: None,
            net: None,
            plugin: None,
            pin_cpu: None,
            stdin: Stdin::Empty,
        }
    }
}

/// Whether this process may run on host CPU `cpu` (so QEMU, its child,
/// may be pinned to it): a clear error naming the CPUs it may use if not.
pub fn check_host_cpu(cpu: usize) -> std::result::Result<(), String> {
    let allowed = allowed_cpus()?;
    if allowed.contains(&cpu) {
        return Ok(());
    }
    let list: Vec<String> = allowed.iter().map(usize::to_string).collect();
    Err(format!(
        "host CPU {cpu} is not available to this process (it may use CPUs {})",
        list.join(",")
    ))
}

/// The host CPUs this process may run on.
pub fn allowed_cpus() -> std::result::Result<Vec<usize>, String> {
    // SAFETY: a zeroed cpu_set_t is an empty set; sched_getaffinity
    // writes at most its size into it.
    let set = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Err(format!(
                "cannot read this process's CPU affinity: {}",
                std::io::Error::last_os_error()
            ));
        }
        set
    };
    // SAFETY: CPU_ISSET reads the set in bounds (i < CPU_SETSIZE).
    Ok((0..libc::CPU_SETSIZE as usize)
        .filter(|&i| unsafe { libc::CPU_ISSET(i, &set) })
        .collect())
}

/// QEMU's arguments for `cfg`, without the binary; checks nothing on disk.
pub fn qemu_args(cfg: &VmConfig) -> Vec<OsString> {
    let mut a = Vec::new();
    match cfg.machine {
        // acpi=off: QEMU then lists the virtio-mmio devices (and their
        // interrupt lines) on the kernel command line.
        Machine::Microvm => words(&mut a, "-M microvm,acpi=off"),
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
    let bus = match cfg.machine {
        Machine::Microvm => "device",
        Machine::Q35 => "pci",
    };
    if let Some(disk) = &cfg.disk {
        // A path may hold commas, which QEMU's option syntax escapes as ",,".
        let file = disk.to_string_lossy().replace(',', ",,");
        a.push("-drive".into());
        a.push(format!("file={file},if=none,format=raw,id=disk0").into());
        words(&mut a, &format!("-device virtio-blk-{bus},drive=disk0"));
    }
    if let Some(net) = &cfg.net {
        let backend = match net {
            Net::User { ports } => {
                let mut b = String::from("user,id=net0");
                for p in ports {
                    b.push_str(&format!(
                        ",hostfwd={}:127.0.0.1:{}-:{}",
                        p.protocol.name(),
                        p.host,
                        p.guest
                    ));
                }
                b
            }
            Net::Dgram { local, remote } => format!(
                "dgram,id=net0,local.type=inet,local.host={},local.port={},remote.type=inet,remote.host={},remote.port={}",
                local.ip(),
                local.port(),
                remote.ip(),
                remote.port()
            ),
        };
        a.push("-netdev".into());
        a.push(backend.into());
        words(&mut a, &format!("-device virtio-net-{bus},netdev=net0"));
    }
    if let Some(p) = &cfg.plugin {
        a.push("-plugin".into());
        a.push(p.clone());
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
                "-M microvm,acpi=off -accel tcg -cpu max {COMMON} -global virtio-mmio.force-legacy=false \
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
    fn disk_is_virtio_blk_on_each_machine() {
        let mut cfg = VmConfig::new("/k/ringos-kernel");
        cfg.disk = Some("/d/disk,1.img".into());
        let a = args(&cfg);
        assert!(
            a.contains(
                "-global virtio-mmio.force-legacy=false \
                 -drive file=/d/disk,,1.img,if=none,format=raw,id=disk0 \
                 -device virtio-blk-device,drive=disk0 -kernel"
            ),
            "{a}"
        );
        cfg.machine = Machine::Q35;
        let a = args(&cfg);
        assert!(
            a.contains("-device virtio-blk-pci,drive=disk0 -kernel"),
            "{a}"
        );
        assert!(!a.contains("virtio-mmio"), "{a}");
        // A path with spaces stays one argument.
        cfg.disk = Some("/my disks/d.img".into());
        let a = qemu_args(&cfg);
        let i = a.iter().position(|x| x == "-drive").unwrap();
        assert_eq!(a[i + 1], "file=/my disks/d.img,if=none,format=raw,id=disk0");
    }

    #[test]
    fn user_net_forwards_ports_from_localhost() {
        let mut cfg = VmConfig::new("/k/ringos-kernel");
        cfg.net = Some(Net::User {
            ports: vec![
                "5555:7/udp".parse().unwrap(),
                "8080:80/tcp".parse().unwrap(),
            ],
        });
        let a = args(&cfg);
        assert!(
            a.contains(
                "-netdev user,id=net0,hostfwd=udp:127.0.0.1:5555-:7,hostfwd=tcp:127.0.0.1:8080-:80 \
                 -device virtio-net-device,netdev=net0 -kernel"
            ),
            "{a}"
        );
        cfg.machine = Machine::Q35;
        cfg.net = Some(Net::User { ports: vec![] });
        let a = args(&cfg);
        assert!(
            a.contains("-netdev user,id=net0 -device virtio-net-pci,netdev=net0 -kernel"),
            "{a}"
        );
    }

    #[test]
    fn dgram_net_and_disk_together() {
        let mut cfg = VmConfig::new("/k/ringos-kernel");
        cfg.disk = Some("/d.img".into());
        cfg.net = Some(Net::Dgram {
            local: "127.0.0.1:4000".parse().unwrap(),
            remote: "127.0.0.1:4001".parse().unwrap(),
        });
        let a = args(&cfg);
        assert!(
            a.contains(
                "-device virtio-blk-device,drive=disk0 -netdev dgram,id=net0,\
                 local.type=inet,local.host=127.0.0.1,local.port=4000,\
                 remote.type=inet,remote.host=127.0.0.1,remote.port=4001 \
                 -device virtio-net-device,netdev=net0"
            ),
            "{a}"
        );
    }

    #[test]
    fn port_forward_parsing() {
        let p: PortForward = "5555:7/udp".parse().unwrap();
        assert_eq!(
            p,
            PortForward {
                protocol: Protocol::Udp,
                host: 5555,
                guest: 7
            }
        );
        assert_eq!(p.to_string(), "5555:7/udp");
        let p: PortForward = "65535:80/tcp".parse().unwrap();
        assert_eq!((p.protocol, p.host, p.guest), (Protocol::Tcp, 65535, 80));
        for bad in [
            "",
            "5555",
            "5555:7",
            "5555/udp",
            ":7/udp",
            "5555:/udp",
            "5555:7/",
            "5555:7/sctp",
            "5555:7/UDP",
            "65536:7/udp",
            "0:7/udp",
            "5555:0/udp",
            "-1:7/udp",
            "a:7/udp",
            "5555:7:8/udp",
            " 5555:7/udp",
        ] {
            let e = bad.parse::<PortForward>().unwrap_err();
            assert!(e.contains("HOST:GUEST/udp"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn io_mode_words() {
        assert_eq!(IoMode::Poll.cmdline_word(), "io=poll");
        assert_eq!(IoMode::Irq.cmdline_word(), "io=irq");
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
