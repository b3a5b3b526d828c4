//! `ringos`: builds, boots and measures the ringos unikernel under QEMU.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use ringos::probe::{self, ProbeBoot};
use ringos::qemu::DEFAULT_MEM_MIB;
use ringos::{kernel_image, vm, Accel, Console, Error, Machine, VmConfig};
use ringos_proto::{cmdline, exit, selftest};

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

// Planned: run, image, wast, bench (and probe blk, probe net below).
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
    /// Measure the kernel
    #[command(subcommand)]
    Probe(Probe),
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
}

#[derive(Args)]
struct BootArgs {
    /// QEMU machine type
    #[arg(long, value_enum, default_value_t = Machine::Microvm)]
    machine: Machine,
    #[command(flatten)]
    vm: VmArgs,
    /// Kernel command line words (key=value), e.g. `test=sleep`
    #[arg(long, value_name = "CMDLINE", default_value = "")]
    append: String,
    /// Print the QEMU command line and boot with log=debug (--append can override it)
    #[arg(short, long)]
    verbose: bool,
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

/// `-v` asks for `log=debug` first so that a `log=` in `--append` wins.
fn kernel_cmdline(verbose: bool, append: &str) -> String {
    let mut words = Vec::new();
    if verbose {
        words.push(format!("{}=debug", cmdline::LOG));
    }
    if !append.trim().is_empty() {
        words.push(append.trim().to_string());
    }
    words.join(" ")
}

fn boot(a: BootArgs) -> Result<i32, Error> {
    let image = kernel_image::build(a.verbose)?;
    let cfg = VmConfig {
        image,
        machine: a.machine,
        accel: a.vm.accel,
        mem_mib: a.vm.mem,
        append: kernel_cmdline(a.verbose, &a.append),
        timeout: a.vm.timeout,
        verbose: a.verbose,
    };
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
    })?;
    print!("{}", report.table());
    let path = probe::json_path(&kernel_image::root());
    report.write_json(&path)?;
    eprintln!("probe boot: samples written to {}", path.display());
    Ok(0)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Boot(a) => boot(a),
        Command::Probe(Probe::Boot(a)) => probe_boot(a),
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
        assert_eq!(kernel_cmdline(false, ""), "");
        assert_eq!(kernel_cmdline(true, ""), "log=debug");
        let line = kernel_cmdline(true, "log=warn test=sleep");
        assert_eq!(cmdline::get(&line, cmdline::LOG), Some("warn"));
        assert_eq!(cmdline::get(&line, cmdline::TEST), Some("sleep"));
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
