//! `ringos`: builds, boots and measures the ringos unikernel under QEMU.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand, ValueEnum};
use ringos::probe::blk::{ProbeBlk, TempDisk, BLOCK_BYTES, TEMP_DISK_BYTES};
use ringos::probe::net::{ProbeNet, MAX_SIZE, MIN_SIZE};
use ringos::probe::{self, ProbeBoot};
use ringos::qemu::DEFAULT_MEM_MIB;
use ringos::{
    kernel_image, vm, Accel, Console, Error, IoMode, Machine, Net, PortForward, VmConfig,
};
use ringos_proto::{cmdline, exit, selftest};

use ringos::bench::{calls, jit};
use ringos::wast;

#[derive(Parser)]
#[command(
    name = "ringos",
    version,
    about = "Build, boot and measure the ringos unikernel under QEMU",
    after_help = environment_help()
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Planned: run, image.
#[derive(Subcommand)]
enum Command {
    /// Boot the kernel and stream its serial console; exit with the guest's status
    #[command(
        long_about = "Builds the kernel image (cargo rebuilds only what changed), boots it \
                      under QEMU with the serial console on stdout, and exits with the \
                      status the guest wrote to the debug-exit port.",
        after_help = boot_help()
    )]
    Boot(BootArgs),
    /// Run a WASI 0.3 command component as a VM (or --hosted in this process)
    #[command(
        long_about = "Embeds the component (and any --with providers, whose exports it may \
                      import) in a copy of the kernel image, boots it, calls its \
                      wasi:cli/run, and writes what it wrote to wasi:cli/stdout and stderr \
                      to this process's stdout and stderr. Kernel logs are shown with -v. \
                      Exits with the component's status: 0 when run returned ok, 1 for \
                      err or a trap, or the code it gave wasi:cli/exit. A component still \
                      running 2 s before --timeout is interrupted (a trap, exit 1). \
                      Devices (--disk, --net, --port) are attached as for `ringos boot`. \
                      The component may import wasi:cli, wasi:clocks, wasi:random (0.3.x) \
                      and ringos:blk/disk@0.1.0 (wit/blk.wit: the --disk image as streams \
                      the device fills by DMA); any other import is refused before the VM \
                      starts. Example: ringos run app.wasm --disk disk.img -- arg1 arg2"
    )]
    Run(RunArgs),
    /// Write a bootable image: the kernel with a component (and its arguments, environment)
    #[command(
        long_about = "Checks the component (valid, a command, every import provided by \
                      ringos or a --with provider), then writes one PVH ELF file: the kernel \
                      plus the components, arguments and environment, without recompiling \
                      the kernel. Boot it with `ringos boot APP.elf` or plain \
                      `qemu-system-x86_64 -M microvm,acpi=off -kernel APP.elf -serial stdio \
                      -nodefaults -display none -device isa-debug-exit,iobase=0xf4,iosize=4`."
    )]
    Image(ImageArgs),
    /// Measure the kernel
    #[command(subcommand)]
    Probe(Probe),
    /// Run spec-format .wast scripts in the hosted runtime (JIT on the host)
    #[command(
        long_about = "Runs each script's modules and assertions with the ringos runtime in \
                      this process. Prints `FILE: N passed, N failed` per file and the \
                      totals last; exits 1 if any assertion or command failed."
    )]
    Wast(WastArgs),
    /// Benchmarks side by side with a peer: a table on stdout, JSON under target/bench/
    #[command(subcommand)]
    Bench(Bench),
}

#[derive(Subcommand)]
enum Bench {
    /// JIT compile and run time of four CPU-bound guest programs, ringos vs wasmtime
    #[command(long_about = jit::LONG_ABOUT)]
    Jit(BenchJitArgs),
    /// ns per call across a component boundary (sync, string, async), ringos vs wasmtime
    Calls(BenchCallsArgs),
}

#[derive(Args)]
struct BenchCallsArgs {
    /// Runs per call kind and runtime
    #[arg(long, value_name = "N", default_value_t = calls::DEFAULT_RUNS,
          value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,
    /// Calls per run
    #[arg(long, value_name = "N", default_value_t = calls::DEFAULT_CALLS,
          value_parser = clap::value_parser!(u32).range(1..))]
    calls: u32,
    /// If wasmtime is missing, build it first with `cargo install wasmtime-cli` (~15 min)
    #[arg(long)]
    install_peer: bool,
}

#[derive(Args)]
struct BenchJitArgs {
    /// Runs per program and runtime
    #[arg(long, value_name = "N", default_value_t = jit::DEFAULT_RUNS,
          value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,
    /// If wasmtime is missing, build it first with `cargo install wasmtime-cli` (~15 min)
    #[arg(long)]
    install_peer: bool,
    /// Only this program
    #[arg(long, value_name = "NAME",
          value_parser = clap::builder::PossibleValuesParser::new(jit::PROGRAMS))]
    only: Option<String>,
}

#[derive(Args)]
struct WastArgs {
    /// Script files
    #[arg(required = true, value_name = "FILE")]
    files: Vec<std::path::PathBuf>,
    /// Print why each failure failed
    #[arg(short, long)]
    verbose: bool,
    /// Failures to expect: a file of `dir/file.wast:line` entries; they are
    /// reported but not counted, and an entry that passes is an error (the
    /// list may only shrink)
    #[arg(long, value_name = "FILE", conflicts_with = "guest")]
    known_failures: Option<std::path::PathBuf>,
    /// Run the scripts inside the guest (JIT in the kernel): the bundles are
    /// embedded in a copy of the kernel image, booted with test=wasm-spec
    #[arg(long)]
    guest: bool,
    /// QEMU machine type (with --guest)
    #[arg(long, value_enum, default_value_t = Machine::Microvm, requires = "guest")]
    machine: Machine,
    /// Guest memory in MiB (with --guest)
    #[arg(long, value_name = "MiB", default_value_t = 512, requires = "guest",
          value_parser = clap::value_parser!(u32).range(1..))]
    mem: u32,
    /// Kill QEMU after this many seconds (with --guest)
    #[arg(long, value_name = "SECONDS", default_value = "600", value_parser = parse_seconds,
          requires = "guest")]
    timeout: Duration,
}

#[derive(Subcommand)]
enum Probe {
    /// Time N boots per machine: host spawn to `ready:`, spawn to exit, and the guest's own clock
    #[command(
        long_about = "Builds the kernel image once, then boots it N times per machine \
                            with an empty command line (the kernel prints `ready: <ns> ns` \
                            and exits 0). Prints median/min/max in ms on stdout and writes \
                            every sample to target/bench/boot.json. The first failed boot \
                            stops the probe with that boot's exit status."
    )]
    Boot(ProbeBootArgs),
    /// Block I/O through virtio-blk: QD1 4 KiB random-read latency, IOPS at a queue depth
    #[command(
        long_about = "Boots the kernel with `probe=blk` and a raw disk image attached as \
                      virtio-blk, once per machine. The kernel times --ops random 4 KiB \
                      reads one at a time (QD1 latency percentiles), then --ops more with \
                      --qd in flight (IOPS); with --write it first writes --ops patterned \
                      blocks, flushes and reads them back. Prints a table, the host wall \
                      time, and writes target/bench/blk.json. Without --disk a temporary \
                      64 MiB sparse image is created under target/bench/ and deleted after. \
                      Exits non-zero if the guest fails, reports `done ok=0`, or a written \
                      block reads back wrong."
    )]
    Blk(ProbeBlkArgs),
    /// UDP echo round trips through virtio-net and QEMU user networking
    #[command(
        long_about = "Boots the kernel with `service=udp-echo port=7` and --net user \
                      forwarding a free UDP port on 127.0.0.1 to guest port 7, once per \
                      machine. After the `service: ready` line, sends 20 warm-up datagrams, \
                      then --count datagrams of --size bytes one at a time, each numbered \
                      and timed until its echo (1 s without one counts as lost; late \
                      replies are ignored). Then sends `ringos:quit` and reads the guest's \
                      `net-stats:` line. Prints RTT p50/p99/max, losses and guest drops, \
                      and writes target/bench/net.json."
    )]
    Net(ProbeNetArgs),
}

/// Options every VM takes.
#[derive(Args)]
struct VmArgs {
    /// Accelerator: tcg works everywhere, kvm needs /dev/kvm
    #[arg(long, value_enum, default_value_t = Accel::Tcg)]
    accel: Accel,
    /// Guest memory in MiB
    #[arg(long, value_name = "MiB", default_value_t = DEFAULT_MEM_MIB,
          value_parser = clap::value_parser!(u32).range(1..))]
    mem: u32,
    /// Kill QEMU after this many seconds (exit status 124)
    #[arg(long, value_name = "SECONDS", default_value = "60", value_parser = parse_seconds)]
    timeout: Duration,
    /// Run QEMU, all its threads, on this one host CPU. Its vCPU, main loop and I/O
    /// workers then hand each request to each other on one CPU; on a virtualized host a
    /// wake-up across CPUs can cost tens of µs, which then dominates I/O latency (and its
    /// noise)
    #[arg(long, value_name = "CPU", value_parser = host_cpu)]
    pin: Option<usize>,
}

/// How the guest's I/O reactor waits (`io=` on the kernel command line).
#[derive(Args)]
struct IoArgs {
    /// Reactor busy-polls the devices (kernel command line io=poll)
    #[arg(long, conflicts_with = "irq")]
    poll: bool,
    /// Reactor halts until a device interrupt (io=irq, the kernel's default)
    #[arg(long)]
    irq: bool,
}

impl IoArgs {
    fn mode(&self) -> Option<IoMode> {
        match (self.poll, self.irq) {
            (true, _) => Some(IoMode::Poll),
            (_, true) => Some(IoMode::Irq),
            _ => None,
        }
    }
}

#[derive(Args)]
struct DiskArg {
    /// Raw disk image attached as virtio-blk (the file must exist)
    #[arg(long, value_name = "FILE", value_parser = existing_file)]
    disk: Option<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum NetKind {
    /// QEMU user networking: the guest is 10.0.2.15, ports forwarded with --port
    User,
    /// No NIC
    None,
}

/// The guest's devices.
#[derive(Args)]
struct DeviceArgs {
    #[command(flatten)]
    disk: DiskArg,
    /// Attach a virtio-net NIC to this network [default: none; user with --port]
    #[arg(long, value_enum)]
    net: Option<NetKind>,
    /// Forward 127.0.0.1:HOST on the host to port GUEST in the VM, e.g. 5555:7/udp
    /// (repeatable; implies --net user)
    #[arg(long = "port", value_name = "HOST:GUEST/udp|tcp")]
    ports: Vec<PortForward>,
    #[command(flatten)]
    io: IoArgs,
}

impl DeviceArgs {
    fn net(&self) -> Result<Option<Net>, Error> {
        match (self.net, self.ports.is_empty()) {
            (Some(NetKind::None), false) => Err(Error::Failed {
                message: "--port needs a network: leave out --net none (--port implies --net user)"
                    .into(),
                exit_code: 2,
            }),
            (Some(NetKind::None), true) | (None, true) => Ok(None),
            _ => Ok(Some(Net::User {
                ports: self.ports.clone(),
            })),
        }
    }
}

#[derive(Args)]
struct BootArgs {
    /// An image made by `ringos image` (default: the plain kernel, built if needed)
    #[arg(value_name = "APP.elf")]
    image: Option<std::path::PathBuf>,
    /// QEMU machine type
    #[arg(long, value_enum, default_value_t = Machine::Microvm)]
    machine: Machine,
    #[command(flatten)]
    vm: VmArgs,
    #[command(flatten)]
    devices: DeviceArgs,
    /// Kernel command line words (key=value), e.g. `test=sleep`
    #[arg(long, value_name = "CMDLINE", default_value = "")]
    append: String,
    /// Print the QEMU command line and boot with log=debug (--append can override it)
    #[arg(short, long)]
    verbose: bool,
    /// An app image's wasi:cli/stdin is empty, not this process's stdin
    #[arg(long)]
    no_stdin: bool,
}

#[derive(Args)]
struct RunArgs {
    /// The component (a WASI 0.3 command: exports wasi:cli/run), binary or text (.wat)
    #[arg(value_name = "APP.wasm")]
    app: std::path::PathBuf,
    /// A component to instantiate first; its exports can satisfy the app's imports (repeatable)
    #[arg(long, value_name = "PROVIDER.wasm")]
    with: Vec<std::path::PathBuf>,
    /// QEMU machine type
    #[arg(long, value_enum, default_value_t = Machine::Microvm)]
    machine: Machine,
    #[command(flatten)]
    vm: VmArgs,
    /// Run in this process (hosted JIT) instead of a VM; --disk then serves ringos:blk from the file
    #[arg(long, conflicts_with_all = ["net", "ports"])]
    hosted: bool,
    #[command(flatten)]
    devices: DeviceArgs,
    /// Show kernel logs (with the start's and the run's times) and the QEMU command line; with --hosted, the times
    #[arg(short, long)]
    verbose: bool,
    /// The component's wasi:cli/stdin is empty, not this process's stdin
    #[arg(long)]
    no_stdin: bool,
    /// An environment variable for the component (repeatable)
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse_env)]
    env: Vec<(String, String)>,
    /// Arguments for the component (wasi:cli/environment get-arguments)
    #[arg(last = true, value_name = "ARGS")]
    args: Vec<String>,
}

#[derive(Args)]
struct ImageArgs {
    /// The component (a WASI 0.3 command: exports wasi:cli/run), binary or text (.wat)
    #[arg(value_name = "APP.wasm")]
    app: std::path::PathBuf,
    /// Where to write the image (a PVH ELF: `ringos boot FILE` or `qemu -kernel FILE`)
    #[arg(short, long, value_name = "APP.elf")]
    output: std::path::PathBuf,
    /// A component to instantiate first; its exports can satisfy the app's imports (repeatable)
    #[arg(long, value_name = "PROVIDER.wasm")]
    with: Vec<std::path::PathBuf>,
    /// An environment variable for the component (repeatable)
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse_env)]
    env: Vec<(String, String)>,
    /// Arguments for the component
    #[arg(last = true, value_name = "ARGS")]
    args: Vec<String>,
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))
}

#[derive(Args)]
struct ProbeBootArgs {
    /// Boots per machine
    #[arg(long, value_name = "N", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,
    /// Machine(s) to probe
    #[arg(long, value_enum, default_value_t = Machines::Both)]
    machine: Machines,
    #[command(flatten)]
    vm: VmArgs,
}

#[derive(Args)]
struct ProbeBlkArgs {
    #[command(flatten)]
    disk: DiskArg,
    /// Machine(s) to probe
    #[arg(long, value_enum, default_value_t = Machines::Both)]
    machine: Machines,
    /// Reads per measurement (and blocks written with --write)
    #[arg(long, value_name = "N", default_value_t = 2000,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    ops: u32,
    /// Reads in flight for the IOPS measurement (the kernel caps it at its queue's limit)
    #[arg(long, value_name = "N", default_value_t = 16,
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    qd: u32,
    /// First write OPS patterned 4 KiB blocks, flush and verify them. OVERWRITES the
    /// first OPS x 4 KiB of the disk
    #[arg(long)]
    write: bool,
    /// Also time the same reads inside components: benches/blk/probe.wat (the canonical
    /// ABI directly) and the demo guest's `probe N` (Rust, wit-bindgen; built from
    /// tests/guests). Each read a ringos:blk stream the device fills by DMA; shows the
    /// p50s and their ratios to kernel-only reads of the same boot, as many, paired
    /// block by block with the component's (wit/probe.wit)
    #[arg(long)]
    component: bool,
    /// With --component (TCG only): also count the guest instructions and translation
    /// blocks per read, kernel-only and inside benches/blk/probe.wat, with a TCG plugin
    /// (benches/blk/insn_window.c, built with cc on first use); unlike latencies, the
    /// counts do not move with the host's load
    #[arg(long, requires = "component")]
    count: bool,
    /// With --component: also split each read into phases (TSC marks in the kernel,
    /// medians): before the submission, the submission (QEMU handles the notify), the
    /// device until its interrupt (or the poll that found its completion), and from
    /// then until the reader has its data; kernel-only and inside
    /// benches/blk/probe.wat, side by side
    #[arg(long, requires = "component")]
    phases: bool,
    /// With --component: run each component this many times per boot, OPS / N reads
    /// each (pooled)
    #[arg(long, value_name = "N", default_value_t = 6, requires = "component",
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    rounds: u32,
    #[command(flatten)]
    io: IoArgs,
    #[command(flatten)]
    vm: VmArgs,
}

#[derive(Args)]
struct ProbeNetArgs {
    /// Machine(s) to probe
    #[arg(long, value_enum, default_value_t = Machines::Both)]
    machine: Machines,
    /// Measured datagrams per machine (after 20 warm-up ones)
    #[arg(long, value_name = "N", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(1..))]
    count: u32,
    /// UDP payload bytes (8..=1472; the first 8 are the sequence number)
    #[arg(long, value_name = "BYTES", default_value_t = 64,
          value_parser = clap::value_parser!(u16).range(MIN_SIZE as i64..=MAX_SIZE as i64))]
    size: u16,
    #[command(flatten)]
    io: IoArgs,
    #[command(flatten)]
    vm: VmArgs,
}

#[derive(Clone, Copy, ValueEnum)]
enum Machines {
    /// Only microvm
    Microvm,
    /// Only q35
    Q35,
    /// microvm, then q35
    Both,
}

impl Machines {
    fn list(self) -> Vec<Machine> {
        match self {
            Machines::Microvm => vec![Machine::Microvm],
            Machines::Q35 => vec![Machine::Q35],
            Machines::Both => vec![Machine::Microvm, Machine::Q35],
        }
    }
}

fn parse_seconds(s: &str) -> Result<Duration, String> {
    match s.parse::<f64>().map(Duration::try_from_secs_f64) {
        Ok(Ok(d)) if !d.is_zero() => Ok(d),
        _ => Err(format!("`{s}` is not a positive number of seconds")),
    }
}

/// A `--pin` value: a host CPU this process may run on.
fn host_cpu(s: &str) -> Result<usize, String> {
    let cpu = s
        .parse()
        .map_err(|_| format!("`{s}` is not a CPU number"))?;
    ringos::qemu::check_host_cpu(cpu)?;
    Ok(cpu)
}

/// A `--disk` value: something that exists and is not a directory.
fn existing_file(s: &str) -> Result<PathBuf, String> {
    let p = PathBuf::from(s);
    if p.is_dir() {
        Err(format!("{s} is a directory, not a raw disk image"))
    } else if p.exists() {
        Ok(p)
    } else {
        Err(format!(
            "{s} does not exist (make an empty raw image with: truncate -s 64M {s})"
        ))
    }
}

fn environment_help() -> String {
    let vars = [
        (
            ringos::qemu::QEMU_ENV,
            "QEMU binary (default: qemu-system-x86_64 on PATH)",
        ),
        (
            kernel_image::ROOT_ENV,
            "workspace root (default: where ringos was built from)",
        ),
        (
            kernel_image::KERNEL_ENV,
            "prebuilt guest image to boot instead of building one",
        ),
        ("CARGO_TARGET_DIR", "where the guest image is built"),
    ];
    let mut h = String::from("Environment:");
    for (name, what) in vars {
        h.push_str(&format!("\n  {name:<16}  {what}"));
    }
    h
}

fn boot_help() -> String {
    let statuses = [
        exit::SUCCESS,
        exit::FAILURE,
        exit::PANIC,
        exit::CPU_EXCEPTION,
        exit::OUT_OF_MEMORY,
    ]
    .map(|v| format!("{v} {}", exit::describe(v)))
    .join(", ");
    format!(
        "Self-test modes (select one with --append {}=<mode>):\n  {}\n\n\
         Exit status:\n  \
         the guest's: {statuses}, ...\n  \
         {}  timed out; QEMU was killed\n  \
         {}  QEMU, qboot or the toolchain is missing, or QEMU failed to start\n  \
         {}  QEMU stopped without a guest status (triple fault or reset)",
        cmdline::TEST,
        selftest::ALL.join(", "),
        exit::host::TIMEOUT,
        exit::host::CANNOT_START,
        exit::host::NO_GUEST_STATUS,
    )
}

/// `-v` asks for `log=debug` (and `--poll`/`--irq` for `io=`) first, so
/// that a `log=` (or `io=`) in `--append` wins.
fn kernel_cmdline(verbose: bool, io: Option<IoMode>, append: &str) -> String {
    let mut words = Vec::new();
    if verbose {
        words.push(format!("{}=debug", cmdline::LOG));
    }
    words.extend(io.map(IoMode::cmdline_word));
    if !append.trim().is_empty() {
        words.push(append.trim().to_string());
    }
    words.join(" ")
}

/// The component's arguments as WASI gives them: its file name first, as
/// a shell would.
fn argv(app: &std::path::Path, args: Vec<String>) -> Vec<String> {
    let name = app.file_name().unwrap_or(app.as_os_str());
    std::iter::once(name.to_string_lossy().into_owned())
        .chain(args)
        .collect()
}

fn image_cmd(a: ImageArgs) -> Result<i32, Error> {
    let read = ringos::run::read;
    let app = read(&a.app)?;
    let with: Vec<Vec<u8>> = a.with.iter().map(|p| read(p)).collect::<Result<_, _>>()?;
    if let Err(why) = ringos::run::check(&app, &with) {
        eprintln!("ringos: {}: {why}", a.app.display());
        return Ok(1);
    }
    let args = argv(&a.app, a.args);
    let out = ringos::run::write_image(&app, &with, &args, &a.env, false, &a.output)?;
    eprintln!("ringos: wrote {}", out.display());
    Ok(0)
}

fn boot(a: BootArgs) -> Result<i32, Error> {
    // Argument errors first, before a kernel build.
    a.devices.net()?;
    let image = match &a.image {
        Some(p) => {
            let elf = std::fs::read(p)
                .map_err(|e| Error::CannotStart(format!("{}: {e}", p.display())))?;
            ringos::image::descriptor(&elf).map_err(|e| {
                Error::CannotStart(format!("{}: not a ringos image: {e}", p.display()))
            })?;
            p.clone()
        }
        None => kernel_image::build(a.verbose)?,
    };
    let app = a.image.is_some();
    let cfg = VmConfig {
        image,
        machine: a.machine,
        accel: a.vm.accel,
        mem_mib: a.vm.mem,
        append: kernel_cmdline(a.verbose, a.devices.io.mode(), &a.append),
        timeout: a.vm.timeout,
        verbose: a.verbose,
        disk: a.devices.disk.disk.clone(),
        net: a.devices.net()?,
        plugin: None,
        pin_cpu: a.vm.pin,
        stdin: ringos::Stdin::Empty,
    };
    if app {
        // An app image: its output on ours, kernel lines with -v (as `run`).
        let rc = ringos::run::RunConfig {
            app: cfg.image.clone(),
            with: Vec::new(),
            args: Vec::new(),
            env: Vec::new(),
            machine: cfg.machine,
            mem_mib: cfg.mem_mib,
            timeout: cfg.timeout,
            verbose: a.verbose,
            hosted: false,
            disk: cfg.disk.clone(),
            net: cfg.net.clone(),
            accel: cfg.accel,
            pin_cpu: cfg.pin_cpu,
            stdin: stdin_of(a.no_stdin),
        };
        return ringos::run::boot_image(&cfg.image, &rc);
    }
    let run = vm::run(&cfg, Console::Stream)?;
    if let Some(msg) = run.outcome.message(cfg.timeout) {
        eprintln!("ringos: {msg}");
    }
    Ok(run.outcome.exit_code())
}

fn probe_boot(a: ProbeBootArgs) -> Result<i32, Error> {
    let image = kernel_image::build(false)?;
    let report = probe::probe_boot(&ProbeBoot {
        image,
        machines: a.machine.list(),
        runs: a.runs,
        accel: a.vm.accel,
        mem_mib: a.vm.mem,
        timeout: a.vm.timeout,
        pin_cpu: a.vm.pin,
    })?;
    print!("{}", report.table());
    let path = probe::json_path(&kernel_image::root());
    report.write_json(&path)?;
    eprintln!("probe boot: samples written to {}", path.display());
    Ok(0)
}

fn probe_blk(a: ProbeBlkArgs) -> Result<i32, Error> {
    let image = kernel_image::build(false)?;
    let root = kernel_image::root();
    let temp;
    let disk = match a.disk.disk {
        Some(d) => {
            if a.write {
                eprintln!(
                    "probe blk: --write overwrites the first {} KiB of {}",
                    u64::from(a.ops) * BLOCK_BYTES / 1024,
                    d.display()
                );
            }
            d
        }
        None => {
            temp = TempDisk::create(&probe::bench_dir(&root), TEMP_DISK_BYTES)?;
            eprintln!(
                "probe blk: no --disk given: using a temporary {} MiB sparse image, {} \
                 (deleted after)",
                TEMP_DISK_BYTES >> 20,
                temp.path().display()
            );
            temp.path().to_path_buf()
        }
    };
    let wit_bindgen = if a.component {
        let path = ringos::guests::try_component("demo").map_err(Error::CannotStart)?;
        Some(std::fs::read(&path).map_err(|e| Error::Io(format!("{}: {e}", path.display())))?)
    } else {
        None
    };
    let start = Instant::now();
    let report = probe::blk::probe_blk(&ProbeBlk {
        component: a.component,
        count: a.count,
        phases: a.phases,
        rounds: a.rounds,
        wit_bindgen,
        pin_cpu: a.vm.pin,
        image,
        disk,
        machines: a.machine.list(),
        ops: a.ops,
        qd: a.qd,
        write: a.write,
        io: a.io.mode(),
        accel: a.vm.accel,
        mem_mib: a.vm.mem,
        timeout: a.vm.timeout,
    })?;
    print!("{}", report.table());
    println!("host wall time: {:.2} s", start.elapsed().as_secs_f64());
    let path = probe::bench_path(&root, "blk.json");
    probe::write_json(&path, &report)?;
    eprintln!("probe blk: results written to {}", path.display());
    Ok(0)
}

fn probe_net(a: ProbeNetArgs) -> Result<i32, Error> {
    let image = kernel_image::build(false)?;
    let start = Instant::now();
    let report = probe::net::probe_net(&ProbeNet {
        image,
        machines: a.machine.list(),
        count: a.count,
        size: usize::from(a.size),
        io: a.io.mode(),
        accel: a.vm.accel,
        mem_mib: a.vm.mem,
        timeout: a.vm.timeout,
        pin_cpu: a.vm.pin,
    })?;
    print!("{}", report.table());
    println!("host wall time: {:.2} s", start.elapsed().as_secs_f64());
    let path = probe::bench_path(&kernel_image::root(), "net.json");
    probe::write_json(&path, &report)?;
    eprintln!("probe net: results written to {}", path.display());
    Ok(0)
}

/// The component's stdin: ours unless `--no-stdin`.
fn stdin_of(no_stdin: bool) -> ringos::Stdin {
    match no_stdin {
        true => ringos::Stdin::Empty,
        false => ringos::Stdin::Inherit,
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Boot(a) => boot(a),
        Command::Image(a) => image_cmd(a),
        Command::Run(a) => a.devices.net().and_then(|net| {
            let args = argv(&a.app, a.args);
            ringos::run::run(&ringos::run::RunConfig {
                disk: a.devices.disk.disk.clone(),
                net,
                accel: a.vm.accel,
                app: a.app,
                with: a.with,
                args,
                env: a.env,
                machine: a.machine,
                mem_mib: a.vm.mem,
                timeout: a.vm.timeout,
                verbose: a.verbose,
                hosted: a.hosted,
                pin_cpu: a.vm.pin,
                stdin: stdin_of(a.no_stdin),
            })
        }),
        Command::Probe(Probe::Boot(a)) => probe_boot(a),
        Command::Probe(Probe::Blk(a)) => probe_blk(a),
        Command::Probe(Probe::Net(a)) => probe_net(a),
        Command::Wast(a) if a.guest => wast::run_guest(
            &a.files,
            &wast::GuestConfig {
                machine: a.machine,
                mem_mib: a.mem,
                timeout: a.timeout,
                verbose: a.verbose,
            },
        ),
        Command::Wast(a) => match a.known_failures.as_deref().map(wast::Known::load) {
            Some(Err(e)) => Err(ringos::error::Error::Io(e)),
            Some(Ok(k)) => Ok(wast::run(&a.files, a.verbose, &k)),
            None => Ok(wast::run(&a.files, a.verbose, &wast::Known::default())),
        },
        Command::Bench(Bench::Calls(a)) => calls::bench_calls(&calls::BenchCalls {
            runs: a.runs,
            calls: a.calls,
            install_peer: a.install_peer,
        }),
        Command::Bench(Bench::Jit(a)) => jit::bench_jit(&jit::BenchJit {
            runs: a.runs,
            install_peer: a.install_peer,
            only: a.only,
        }),
    };
    let code = result.unwrap_or_else(|e| {
        eprintln!("ringos: {e}");
        e.exit_code()
    });
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn append_overrides_verbose_log_level() {
        assert_eq!(kernel_cmdline(false, None, ""), "");
        assert_eq!(kernel_cmdline(true, None, ""), "log=debug");
        let line = kernel_cmdline(true, None, "log=warn test=sleep");
        assert_eq!(cmdline::get(&line, cmdline::LOG), Some("warn"));
        assert_eq!(cmdline::get(&line, cmdline::TEST), Some("sleep"));
    }

    #[test]
    fn io_mode_goes_before_append() {
        assert_eq!(kernel_cmdline(false, Some(IoMode::Poll), ""), "io=poll");
        assert_eq!(
            kernel_cmdline(true, Some(IoMode::Irq), "test=blk"),
            "log=debug io=irq test=blk"
        );
        let line = kernel_cmdline(false, Some(IoMode::Irq), "io=poll");
        assert_eq!(cmdline::get(&line, cmdline::IO), Some("poll"));
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("ringos").chain(args.iter().copied()))
    }

    fn boot_args(args: &[&str]) -> BootArgs {
        match parse(&[&["boot"], args].concat()).unwrap().command {
            Command::Boot(b) => b,
            _ => unreachable!(),
        }
    }

    #[test]
    fn boot_devices() {
        let b = boot_args(&[]);
        assert!(b.devices.disk.disk.is_none());
        assert_eq!(b.devices.net().unwrap(), None);
        assert_eq!(b.devices.io.mode(), None);

        let b = boot_args(&["--net", "user"]);
        assert_eq!(b.devices.net().unwrap(), Some(Net::User { ports: vec![] }));
        let b = boot_args(&["--net", "none"]);
        assert_eq!(b.devices.net().unwrap(), None);

        let b = boot_args(&["--port", "5555:7/udp", "--port", "8080:80/tcp", "--poll"]);
        let Some(Net::User { ports }) = b.devices.net().unwrap() else {
            panic!("--port implies --net user");
        };
        assert_eq!(ports.len(), 2);
        assert_eq!(ports[1].to_string(), "8080:80/tcp");
        assert_eq!(b.devices.io.mode(), Some(IoMode::Poll));
        let b = boot_args(&["--irq"]);
        assert_eq!(b.devices.io.mode(), Some(IoMode::Irq));

        let e = boot_args(&["--net", "none", "--port", "1:2/udp"])
            .devices
            .net()
            .unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("--port"), "{e}");

        // The manifest exists; a disk must exist and not be a directory.
        let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
        let b = boot_args(&["--disk", manifest]);
        assert_eq!(
            b.devices.disk.disk.as_deref(),
            Some(std::path::Path::new(manifest))
        );
    }

    #[test]
    fn bad_device_args() {
        for args in [
            &["boot", "--poll", "--irq"][..],
            &["boot", "--port", "5555:7"],
            &["boot", "--port", "5555:7/icmp"],
            &["boot", "--net", "tap"],
            &["boot", "--disk", "/no/such/disk.img"],
            &["boot", "--disk", env!("CARGO_MANIFEST_DIR")],
            &["probe", "blk", "--ops", "0"],
            &["probe", "blk", "--qd", "0"],
            &["probe", "blk", "--poll", "--irq"],
            &["probe", "blk", "--disk", "/no/such/disk.img"],
            &["probe", "net", "--size", "7"],
            &["probe", "net", "--size", "1473"],
            &["probe", "net", "--count", "0"],
            &["probe", "net", "--disk", "x"],
        ] {
            assert!(parse(args).is_err(), "{args:?} parsed");
        }
        let Err(e) = parse(&["boot", "--disk", "/no/such/disk.img"]) else {
            panic!("a missing disk parsed");
        };
        let e = e.to_string();
        assert!(e.contains("/no/such/disk.img does not exist"), "{e}");
    }

    #[test]
    fn probe_defaults() {
        let Command::Probe(Probe::Blk(b)) = parse(&["probe", "blk"]).unwrap().command else {
            unreachable!()
        };
        assert_eq!(
            (b.ops, b.qd, b.write, b.disk.disk.is_none()),
            (2000, 16, false, true)
        );
        assert!(matches!(b.machine, Machines::Both));
        let Command::Probe(Probe::Net(n)) = parse(&["probe", "net", "--poll", "--machine", "q35"])
            .unwrap()
            .command
        else {
            unreachable!()
        };
        assert_eq!((n.count, n.size), (1000, 64));
        assert_eq!(n.io.mode(), Some(IoMode::Poll));
        assert_eq!(n.machine.list(), [Machine::Q35]);
    }

    #[test]
    fn seconds() {
        assert_eq!(parse_seconds("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_seconds("0.5"), Ok(Duration::from_millis(500)));
        assert!(parse_seconds("0").is_err());
        assert!(parse_seconds("soon").is_err());
        assert!(parse_seconds("-1").is_err());
        assert!(parse_seconds("1e300").is_err());
    }
}
