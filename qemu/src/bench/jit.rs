//! `bench jit`: compile time and run time of the ringos JIT next to
//! wasmtime (same Cranelift 0.135) on CPU-bound guest programs built from
//! `benches/jit/` (Rust, `#![no_std]`, `wasm32-unknown-unknown`, no imports,
//! one export `run: [] -> [i64]` returning a checksum).
//!
//! ringos is measured in this process; wasmtime is a separate binary (never
//! built by the test command: `--install-peer` builds it on demand), measured
//! by wall time (and CPU time) minus that of the same command on a trivial
//! module.

use std::env;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use ringos_runtime::hosted::HOSTED;
use ringos_runtime::{Extern, Module, Store, Val};
use serde::Serialize;

use crate::probe::{self, Table};
use crate::stats::Summary;
use crate::{kernel_image, Error, Result};

/// The guest programs: crates of `benches/jit/`, in table order.
pub const PROGRAMS: [&str; 4] = ["sha256", "fib", "mandelbrot", "sieve"];
/// The export each program runs.
pub const EXPORT: &str = "run";
/// Default runs per program and runtime.
pub const DEFAULT_RUNS: u32 = 5;
/// The peer: wasmtime with the same Cranelift (0.135) as ringos.
pub const WASMTIME_VERSION: &str = "48.0.8";
/// Overrides where the wasmtime binary is.
pub const WASMTIME_ENV: &str = "RINGOS_WASMTIME";

/// A module whose only item is the export `run: [] -> [i64]` returning 0:
/// the baseline that cancels wasmtime's process start-up.
pub const EMPTY_MODULE: &[u8] = &[
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
    0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7e, // type: [] -> [i64]
    0x03, 0x02, 0x01, 0x00, // func 0: type 0
    0x07, 0x07, 0x01, 0x03, b'r', b'u', b'n', 0x00, 0x00, // export "run"
    0x0a, 0x06, 0x01, 0x04, 0x00, 0x42, 0x00, 0x0b, // code: i64.const 0
];

/// How each figure is taken (printed with the table and kept in the JSON).
#[derive(Clone, Debug, Serialize)]
pub struct Method {
    pub ringos_compile: &'static str,
    pub ringos_run: &'static str,
    pub wasmtime_compile: &'static str,
    pub wasmtime_run: &'static str,
    pub cpu_time: &'static str,
    pub percentiles: &'static str,
}

pub const METHOD: Method = Method {
    ringos_compile: "in this process: wall time of ringos_runtime::Module::new on the \
                     program's bytes (validate + translate + Cranelift compile, one thread); \
                     a fresh Module every run",
    ringos_run: "in this process: wall time of Store::call on the `run` export only, on a \
                 fresh instance every run (instantiation not included)",
    wasmtime_compile: "wall time of `wasmtime compile -C cache=n -C parallel-compilation=n \
                       -o X.cwasm X.wasm` minus the median wall time of the same command on a \
                       trivial module (one empty function), which cancels process start-up \
                       and engine setup; one compile thread like ringos",
    wasmtime_run: "wall time of `wasmtime run -C cache=n --allow-precompiled --invoke run \
                   X.cwasm` (precompiled: no compilation) minus the median wall time of the \
                   same on the trivial module's .cwasm, which cancels start-up, loading and \
                   instantiation (wasmtime's CLI has no per-call timer: --profile only \
                   writes sampling profiles)",
    cpu_time: "the same spans on the CPU clock: ringos this thread's \
               (CLOCK_THREAD_CPUTIME_ID), wasmtime the child's user + system time from \
               wait4 (all its threads), minus the trivial module's median; less sensitive \
               than wall time to other load on a shared machine",
    percentiles: "p99 is nearest-rank: with fewer than 100 runs it is the slowest run (max)",
};

/// `--help` text of `bench jit`.
pub const LONG_ABOUT: &str = "Builds the guest programs of benches/jit/ (Rust, no_std, \
    wasm32-unknown-unknown, no imports: sha256 of a 1 MiB buffer, recursive fib, mandelbrot \
    in f64, a sieve of Eratosthenes), then runs each N times with the ringos JIT in this \
    process and with wasmtime, side by side.\n\n\
    ringos compile: wall time of Module::new (validate + translate + compile, one thread). \
    ringos run: wall time of the `run` call only, after instantiation.\n\
    wasmtime compile: wall time of `wasmtime compile -C cache=n -C parallel-compilation=n` \
    minus that of the same command on a trivial module (cancels process start-up). \
    wasmtime run: wall time of `wasmtime run --allow-precompiled --invoke run` on the \
    precompiled .cwasm minus that on the trivial module's .cwasm.\n\
    A second table shows the same spans on the CPU clock (ringos: this thread's; wasmtime: \
    the child's user + system time), steadier than wall time on a shared machine.\n\n\
    Both runtimes must return the same checksum from `run` (a mismatch fails the bench). \
    Prints medians and p99 (nearest rank: with fewer than 100 runs p99 is the max) and the \
    ratios ringos/wasmtime of the medians; writes every sample to target/bench/jit.json.\n\n\
    wasmtime is looked up at target/peers/wasmtime/bin/wasmtime (or $RINGOS_WASMTIME). If \
    it is missing, only ringos is measured, unless --install-peer builds wasmtime-cli \
    48.0.8 there with `cargo install` (about 15 minutes on 2 cores).";

/// What `bench jit` was asked to do.
#[derive(Clone, Debug)]
pub struct BenchJit {
    pub runs: u32,
    pub install_peer: bool,
    /// Only this program (one of [`PROGRAMS`]).
    pub only: Option<String>,
}

/// `benches/jit/Cargo.toml`: the guests' own workspace.
pub fn guests_manifest(root: &Path) -> PathBuf {
    root.join("benches").join("jit").join("Cargo.toml")
}

/// `<target>/bench-guests`: the guests' target directory.
pub fn guests_target_dir(root: &Path) -> PathBuf {
    kernel_image::target_dir(root).join("bench-guests")
}

/// Where the release build puts program `name`.
pub fn guest_wasm(root: &Path, name: &str) -> PathBuf {
    guests_target_dir(root)
        .join("wasm32-unknown-unknown")
        .join("release")
        .join(format!("{name}.wasm"))
}

/// `<root>/target/peers/wasmtime`: the `cargo install --root` of the peer.
pub fn peer_root(root: &Path) -> PathBuf {
    root.join("target").join("peers").join("wasmtime")
}

/// The wasmtime binary: `$RINGOS_WASMTIME`, else under [`peer_root`].
pub fn wasmtime_path(root: &Path) -> PathBuf {
    match env::var_os(WASMTIME_ENV) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => peer_root(root).join("bin").join("wasmtime"),
    }
}

fn cargo() -> std::ffi::OsString {
    env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// Runs cargo with `args` in `root`, its output streamed to stderr (stdout
/// is the table's).
fn run_cargo(root: &Path, args: &[&std::ffi::OsStr], what: &str) -> Result<()> {
    let cargo = cargo();
    let status = Command::new(&cargo)
        .current_dir(root)
        .args(args)
        // Host flags (say -C target-cpu=native) are not meant for these builds.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .stdin(Stdio::null())
        .stdout(io::stderr())
        .stderr(Stdio::inherit())
        .status()
        .map_err(|e| {
            Error::CannotStart(format!("cannot run {}: {e}", Path::new(&cargo).display()))
        })?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::CannotStart(format!(
            "{what} failed (cargo's output is above)"
        )))
    }
}

/// Builds the guest programs (release, wasm32-unknown-unknown).
pub fn build_guests(root: &Path) -> Result<()> {
    eprintln!(
        "bench jit: building the guest programs (benches/jit, release, wasm32-unknown-unknown)..."
    );
    let manifest = guests_manifest(root);
    let target_dir = guests_target_dir(root);
    run_cargo(
        root,
        &[
            "build".as_ref(),
            "--release".as_ref(),
            "--target".as_ref(),
            "wasm32-unknown-unknown".as_ref(),
            "--manifest-path".as_ref(),
            manifest.as_os_str(),
            "--target-dir".as_ref(),
            target_dir.as_os_str(),
        ],
        "building the guest programs (is the target installed? rustup target add \
         wasm32-unknown-unknown)",
    )
}

/// `cargo install wasmtime-cli --version WASMTIME_VERSION --locked --root
/// <peer_root>`, streaming cargo's output.
pub fn install_wasmtime(root: &Path) -> Result<()> {
    let dir = peer_root(root);
    eprintln!(
        "bench jit: installing wasmtime-cli {WASMTIME_VERSION} into {} with cargo install \
         (builds from source: ~15 min on 2 cores); cargo's output follows",
        dir.display()
    );
    let start = Instant::now();
    run_cargo(
        root,
        &[
            "install".as_ref(),
            "wasmtime-cli".as_ref(),
            "--version".as_ref(),
            WASMTIME_VERSION.as_ref(),
            "--locked".as_ref(),
            "--root".as_ref(),
            dir.as_os_str(),
        ],
        "installing wasmtime-cli",
    )?;
    eprintln!(
        "bench jit: wasmtime installed in {:.0} s",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// One run of a program on one runtime, in milliseconds.
#[derive(Clone, Copy, Debug)]
struct Sample {
    compile: Time,
    run: Time,
    checksum: i64,
}

/// Wall and CPU (user + system) time of one measurement, in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Time {
    wall: f64,
    cpu: f64,
}

/// This thread's CPU time in milliseconds.
fn thread_cpu_ms() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 * 1e3 + ts.tv_nsec as f64 / 1e6
}

/// Times `f` on this thread.
fn time<R>(f: impl FnOnce() -> R) -> (Time, R) {
    let (t, c) = (Instant::now(), thread_cpu_ms());
    let r = f();
    let cpu = thread_cpu_ms() - c;
    let wall = t.elapsed().as_secs_f64() * 1e3;
    (Time { wall, cpu }, r)
}

fn failed(message: impl Into<String>) -> Error {
    Error::Failed {
        message: message.into(),
        exit_code: 1,
    }
}

/// The checksum `run` returned, if it returned one integer.
fn checksum(results: &[Val]) -> Option<i64> {
    match results {
        [Val::I64(v)] => Some(*v),
        [Val::I32(v)] => Some(i64::from(*v)),
        _ => None,
    }
}

/// Compiles, instantiates and runs `bytes` once with the ringos JIT.
fn ringos_once(name: &str, bytes: &[u8]) -> Result<Sample> {
    let err = |e: ringos_runtime::Error| failed(format!("{name}: ringos: {e}"));
    let (compile, module) = time(|| Module::new(&HOSTED, bytes));
    let module = module.map_err(err)?;
    let mut store = Store::new(&HOSTED);
    let inst = store.instantiate(&module, &[]).map_err(err)?;
    let Some(Extern::Func(f)) = store.export(inst, EXPORT) else {
        return Err(failed(format!(
            "{name}: the module has no function export `{EXPORT}`"
        )));
    };
    let (run, results) = time(|| store.call(f, &[]));
    let results = results.map_err(err)?;
    let checksum = checksum(&results).ok_or_else(|| {
        failed(format!(
            "{name}: `{EXPORT}` returned {results:?}, not one integer"
        ))
    })?;
    Ok(Sample {
        compile,
        run,
        checksum,
    })
}

/// The wasmtime binary and the trivial module's files.
struct Wasmtime {
    path: PathBuf,
    version: String,
    empty_wasm: PathBuf,
    empty_cwasm: PathBuf,
    scratch: PathBuf,
}

/// Runs `cmd` to its end: its wall time, its CPU time (user + system of
/// the child, from `wait4`) and its stdout; an error if it failed.
fn timed(cmd: &mut Command, what: &str) -> Result<(Time, String)> {
    let t = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::CannotStart(format!("{what}: {e}")))?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: all-zero is a valid rusage.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // The pipes are read after the child ends: wasmtime prints a line or two
    // (far below a pipe's buffer).
    loop {
        // SAFETY: `pid` is our child, not yet reaped; the pointers are valid.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        if r == pid {
            break;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(Error::Io(format!("{what}: wait4: {e}")));
        }
    }
    let wall = t.elapsed().as_secs_f64() * 1e3;
    let tv = |t: libc::timeval| t.tv_sec as f64 * 1e3 + t.tv_usec as f64 / 1e3;
    let cpu = tv(ru.ru_utime) + tv(ru.ru_stime);
    let read = |p: Option<&mut dyn io::Read>| {
        let mut s = String::new();
        if let Some(p) = p {
            let _ = p.read_to_string(&mut s);
        }
        s
    };
    let stdout = read(child.stdout.as_mut().map(|p| p as &mut dyn io::Read));
    let stderr = read(child.stderr.as_mut().map(|p| p as &mut dyn io::Read));
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        return Err(failed(format!(
            "{what} failed (wait status {status:#x}):\n{}",
            stderr.trim_end()
        )));
    }
    Ok((Time { wall, cpu }, stdout))
}

/// The value `wasmtime run --invoke` printed: its last non-empty line.
fn parse_invoke_output(stdout: &str) -> Option<i64> {
    stdout
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())?
        .parse()
        .ok()
}

impl Wasmtime {
    fn new(path: PathBuf, scratch: &Path) -> Result<Wasmtime> {
        let (_, v) = timed(
            Command::new(&path).arg("--version"),
            &format!("{} --version", path.display()),
        )?;
        fs::create_dir_all(scratch)
            .map_err(|e| Error::Io(format!("creating {}: {e}", scratch.display())))?;
        let empty_wasm = scratch.join("empty.wasm");
        fs::write(&empty_wasm, EMPTY_MODULE)
            .map_err(|e| Error::Io(format!("writing {}: {e}", empty_wasm.display())))?;
        let w = Wasmtime {
            path,
            version: v.trim().to_string(),
            empty_cwasm: scratch.join("empty.cwasm"),
            empty_wasm,
            scratch: scratch.to_path_buf(),
        };
        w.compile(&w.empty_wasm, &w.empty_cwasm)?;
        Ok(w)
    }

    fn cwasm(&self, name: &str) -> PathBuf {
        self.scratch.join(format!("{name}.cwasm"))
    }

    /// `wasmtime compile` of `wasm` to `out`.
    fn compile(&self, wasm: &Path, out: &Path) -> Result<Time> {
        let mut cmd = Command::new(&self.path);
        cmd.args([
            "compile",
            "-C",
            "cache=n",
            "-C",
            "parallel-compilation=n",
            "-o",
        ])
        .arg(out)
        .arg(wasm);
        Ok(timed(&mut cmd, &format!("wasmtime compile {}", wasm.display()))?.0)
    }

    /// `wasmtime run --invoke run` of a .cwasm, and the result.
    fn run(&self, cwasm: &Path) -> Result<(Time, i64)> {
        let mut cmd = Command::new(&self.path);
        cmd.args([
            "run",
            "-C",
            "cache=n",
            "--allow-precompiled",
            "--invoke",
            EXPORT,
        ])
        .arg(cwasm);
        let what = format!("wasmtime run --invoke {EXPORT} {}", cwasm.display());
        let (t, stdout) = timed(&mut cmd, &what)?;
        let v = parse_invoke_output(&stdout)
            .ok_or_else(|| failed(format!("{what} printed no integer: {stdout:?}")))?;
        Ok((t, v))
    }
}

/// Samples of one figure (ms) and their summary.
#[derive(Clone, Debug, Serialize)]
pub struct Timing {
    pub ms: Summary,
    pub samples_ms: Vec<f64>,
}

impl Timing {
    fn of(samples: Vec<f64>) -> Timing {
        Timing {
            ms: Summary::of(&samples).expect("runs >= 1"),
            samples_ms: samples,
        }
    }
}

/// One runtime's figures for one program; for wasmtime the net figures
/// (wall or CPU time minus the median of the trivial module's).
#[derive(Clone, Debug, Serialize)]
pub struct Figures {
    pub compile_wall: Timing,
    pub run_wall: Timing,
    pub compile_cpu: Timing,
    pub run_cpu: Timing,
}

/// wasmtime's raw process times (ms), program and trivial-module baseline.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PeerRaw {
    pub compile_wall: Vec<f64>,
    pub compile_baseline_wall: Vec<f64>,
    pub run_wall: Vec<f64>,
    pub run_baseline_wall: Vec<f64>,
    pub compile_cpu: Vec<f64>,
    pub compile_baseline_cpu: Vec<f64>,
    pub run_cpu: Vec<f64>,
    pub run_baseline_cpu: Vec<f64>,
}

/// max - min of each trivial-module baseline (ms): the resolution of the
/// net figures; a net median not above it gets no ratio.
#[derive(Clone, Debug, Serialize)]
pub struct Spread {
    pub compile_wall: f64,
    pub run_wall: f64,
    pub compile_cpu: f64,
    pub run_cpu: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct WasmtimeReport {
    pub net: Figures,
    pub baseline_spread: Spread,
    pub raw: PeerRaw,
    pub checksum: i64,
}

/// ringos median / wasmtime median of each figure; `None` where wasmtime's
/// is not above its baseline's spread (too small to measure this way).
#[derive(Clone, Debug, Serialize)]
pub struct Ratios {
    pub compile_wall: Option<f64>,
    pub run_wall: Option<f64>,
    pub compile_cpu: Option<f64>,
    pub run_cpu: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ProgramReport {
    pub name: String,
    pub wasm: PathBuf,
    pub wasm_bytes: usize,
    pub checksum: i64,
    pub ringos: Figures,
    pub wasmtime: Option<WasmtimeReport>,
    pub ratios: Option<Ratios>,
    /// `false` if the runtimes (or two runs) disagreed on the checksum.
    pub checksums_match: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct PeerInfo {
    pub path: PathBuf,
    pub version: String,
}

/// Everything `bench jit` measured (written to `target/bench/jit.json`).
#[derive(Clone, Debug, Serialize)]
pub struct JitReport {
    pub unix_time: u64,
    pub runs: u32,
    /// `/proc/loadavg` before measuring: the machine is shared.
    pub loadavg: String,
    pub cpus: usize,
    pub method: Method,
    pub wasmtime: Option<PeerInfo>,
    /// Why wasmtime was not measured, if it was not.
    pub wasmtime_missing: Option<String>,
    pub programs: Vec<ProgramReport>,
}

fn net(wall: &[f64], baseline: &[f64]) -> Vec<f64> {
    let base = crate::stats::median(baseline).unwrap_or(0.0);
    wall.iter().map(|w| w - base).collect()
}

/// ringos' median over wasmtime's, unless wasmtime's net median is not
/// above `resolution` (the spread of its baseline: start-up noise).
fn ratio(ours: &Timing, theirs: &Timing, resolution: f64) -> Option<f64> {
    let t = theirs.ms.median;
    (t > resolution.max(0.0)).then(|| ours.ms.median / t)
}

/// max - min of a baseline's samples.
fn spread(samples: &[f64]) -> f64 {
    Summary::of(samples).map_or(0.0, |s| s.max - s.min)
}

fn measure(
    name: &str,
    wasm: &Path,
    runs: u32,
    wasmtime: Option<&Wasmtime>,
) -> Result<ProgramReport> {
    let bytes =
        fs::read(wasm).map_err(|e| Error::Io(format!("reading {}: {e}", wasm.display())))?;
    let mut ours = Vec::new();
    let mut raw = PeerRaw::default();
    let mut their_sums = Vec::new();
    for i in 1..=runs {
        let s = ringos_once(name, &bytes)?;
        let mut line = format!(
            "bench jit: {name} {i}/{runs}: ringos compile {:.3} ms, run {:.1} ms",
            s.compile.wall, s.run.wall
        );
        ours.push(s);
        if let Some(w) = wasmtime {
            // Interleaved so that drift hits program and baseline alike.
            let cb = w.compile(&w.empty_wasm, &w.empty_cwasm)?;
            let cwasm = w.cwasm(name);
            let c = w.compile(wasm, &cwasm)?;
            let (rb, _) = w.run(&w.empty_cwasm)?;
            let (r, sum) = w.run(&cwasm)?;
            their_sums.push(sum);
            line.push_str(&format!(
                "; wasmtime compile {:.1} ms (trivial {:.1}), run {:.1} ms (trivial {:.1})",
                c.wall, cb.wall, r.wall, rb.wall
            ));
            for (v, t) in [
                (&mut raw.compile_wall, c.wall),
                (&mut raw.compile_baseline_wall, cb.wall),
                (&mut raw.run_wall, r.wall),
                (&mut raw.run_baseline_wall, rb.wall),
                (&mut raw.compile_cpu, c.cpu),
                (&mut raw.compile_baseline_cpu, cb.cpu),
                (&mut raw.run_cpu, r.cpu),
                (&mut raw.run_baseline_cpu, rb.cpu),
            ] {
                v.push(t);
            }
        }
        eprintln!("{line}");
    }
    let col = |f: fn(&Sample) -> f64| Timing::of(ours.iter().map(f).collect());
    let ringos = Figures {
        compile_wall: col(|s| s.compile.wall),
        run_wall: col(|s| s.run.wall),
        compile_cpu: col(|s| s.compile.cpu),
        run_cpu: col(|s| s.run.cpu),
    };
    let checksum = ours[0].checksum;
    let mut checksums_match = ours.iter().all(|s| s.checksum == checksum);
    let wasmtime = wasmtime.map(|_| {
        checksums_match &= their_sums.iter().all(|s| *s == checksum);
        let n = |a: &[f64], b: &[f64]| Timing::of(net(a, b));
        WasmtimeReport {
            net: Figures {
                compile_wall: n(&raw.compile_wall, &raw.compile_baseline_wall),
                run_wall: n(&raw.run_wall, &raw.run_baseline_wall),
                compile_cpu: n(&raw.compile_cpu, &raw.compile_baseline_cpu),
                run_cpu: n(&raw.run_cpu, &raw.run_baseline_cpu),
            },
            baseline_spread: Spread {
                compile_wall: spread(&raw.compile_baseline_wall),
                run_wall: spread(&raw.run_baseline_wall),
                compile_cpu: spread(&raw.compile_baseline_cpu),
                run_cpu: spread(&raw.run_baseline_cpu),
            },
            raw,
            checksum: their_sums[0],
        }
    });
    let ratios = wasmtime.as_ref().map(|w| Ratios {
        compile_wall: ratio(
            &ringos.compile_wall,
            &w.net.compile_wall,
            w.baseline_spread.compile_wall,
        ),
        run_wall: ratio(
            &ringos.run_wall,
            &w.net.run_wall,
            w.baseline_spread.run_wall,
        ),
        compile_cpu: ratio(
            &ringos.compile_cpu,
            &w.net.compile_cpu,
            w.baseline_spread.compile_cpu,
        ),
        run_cpu: ratio(&ringos.run_cpu, &w.net.run_cpu, w.baseline_spread.run_cpu),
    });
    Ok(ProgramReport {
        name: name.to_string(),
        wasm: wasm.to_path_buf(),
        wasm_bytes: bytes.len(),
        checksum,
        ringos,
        wasmtime,
        ratios,
        checksums_match,
    })
}

/// Finds wasmtime (installing it first with `install`); `Err(why)` if it
/// is missing.
pub(crate) fn find_wasmtime(
    root: &Path,
    install: bool,
) -> Result<std::result::Result<PathBuf, String>> {
    let path = wasmtime_path(root);
    if path.is_file() {
        return Ok(Ok(path));
    }
    let from_env = env::var_os(WASMTIME_ENV).is_some_and(|p| !p.is_empty());
    if install && !from_env {
        install_wasmtime(root)?;
        if path.is_file() {
            return Ok(Ok(path));
        }
    }
    Ok(Err(if from_env {
        format!(
            "wasmtime missing: ${WASMTIME_ENV} is {}, which does not exist",
            path.display()
        )
    } else {
        format!(
            "wasmtime missing: {} does not exist; rerun with --install-peer to build \
             wasmtime-cli {WASMTIME_VERSION} there (~15 min on 2 cores), or set \
             ${WASMTIME_ENV}",
            path.display()
        )
    }))
}

/// Runs `bench jit`: builds the guests, measures, prints the table and
/// writes `target/bench/jit.json`. Fails (after the report) if a checksum
/// disagrees.
pub fn bench_jit(cfg: &BenchJit) -> Result<i32> {
    let root = kernel_image::root();
    if cfg!(debug_assertions) {
        eprintln!(
            "bench jit: warning: this is a debug build of ringos (the runtime unoptimized, the \
             Cranelift verifier on): its figures are not representative; use `cargo ringos \
             bench jit` (release)"
        );
    }
    let names: Vec<&str> = match &cfg.only {
        Some(n) if PROGRAMS.contains(&n.as_str()) => vec![n.as_str()],
        Some(n) => {
            return Err(failed(format!(
                "no program `{n}`; there are: {}",
                PROGRAMS.join(", ")
            )))
        }
        None => PROGRAMS.to_vec(),
    };
    let wasmtime = match find_wasmtime(&root, cfg.install_peer)? {
        Ok(path) => Ok(Wasmtime::new(path, &probe::bench_path(&root, "jit"))?),
        Err(why) => {
            eprintln!("bench jit: {why}; measuring ringos only");
            Err(why)
        }
    };
    build_guests(&root)?;
    if let Ok(w) = &wasmtime {
        eprintln!("bench jit: peer {} ({})", w.version, w.path.display());
    }
    let loadavg = fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ");
    let mut programs = Vec::new();
    for name in names {
        let wasm = guest_wasm(&root, name);
        programs.push(measure(name, &wasm, cfg.runs, wasmtime.as_ref().ok())?);
    }
    let report = JitReport {
        unix_time: probe::unix_time(),
        runs: cfg.runs,
        loadavg,
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        method: METHOD,
        wasmtime: wasmtime.as_ref().ok().map(|w| PeerInfo {
            path: w.path.clone(),
            version: w.version.clone(),
        }),
        wasmtime_missing: wasmtime.err(),
        programs,
    };
    print!("{}", report.text());
    let path = probe::bench_path(&root, "jit.json");
    probe::write_json(&path, &report)?;
    eprintln!("bench jit: results written to {}", path.display());
    let bad: Vec<String> = report
        .programs
        .iter()
        .filter(|p| !p.checksums_match)
        .map(|p| p.name.clone())
        .collect();
    if bad.is_empty() {
        Ok(0)
    } else {
        Err(failed(format!(
            "checksum mismatch (the runtimes or runs disagree) for: {}",
            bad.join(", ")
        )))
    }
}

fn med_p99(s: &Summary, decimals: usize) -> String {
    format!("{:.*} / {:.*}", decimals, s.median, decimals, s.p99)
}

/// A ratio cell: `-` without wasmtime, `n/r` (not resolved) where
/// wasmtime's figure is within its start-up noise.
fn opt_ratio(r: Option<f64>, peer: bool) -> String {
    match (r, peer) {
        (Some(r), _) => format!("{r:.2}x"),
        (None, true) => "n/r".into(),
        (None, false) => "-".into(),
    }
}

/// Which clock a table shows.
#[derive(Clone, Copy)]
enum Clock {
    Wall,
    Cpu,
}

impl Clock {
    fn compile(self, f: &Figures) -> &Summary {
        match self {
            Clock::Wall => &f.compile_wall.ms,
            Clock::Cpu => &f.compile_cpu.ms,
        }
    }

    fn run(self, f: &Figures) -> &Summary {
        match self {
            Clock::Wall => &f.run_wall.ms,
            Clock::Cpu => &f.run_cpu.ms,
        }
    }

    fn ratios(self, r: &Ratios) -> (Option<f64>, Option<f64>) {
        match self {
            Clock::Wall => (r.compile_wall, r.run_wall),
            Clock::Cpu => (r.compile_cpu, r.run_cpu),
        }
    }
}

impl JitReport {
    fn table(&self, clock: Clock) -> String {
        let mut t = Table::new(
            &[
                "program",
                "ringos compile ms",
                "wasmtime compile ms",
                "ratio",
                "ringos run ms",
                "wasmtime run ms",
                "ratio",
                "checksum",
            ],
            1,
        );
        for p in &self.programs {
            let w = p.wasmtime.as_ref();
            let sum = match (p.checksums_match, w) {
                (false, Some(w)) => format!("MISMATCH {:#x} vs {:#x}", p.checksum, w.checksum),
                (false, None) => format!("MISMATCH between runs ({:#x})", p.checksum),
                (true, Some(_)) => format!("{:#x} (same)", p.checksum),
                (true, None) => format!("{:#x}", p.checksum),
            };
            let (rc, rr) = p.ratios.as_ref().map_or((None, None), |r| clock.ratios(r));
            let theirs = |f: fn(Clock, &Figures) -> &Summary, d| {
                w.map_or_else(|| "-".into(), |w| med_p99(f(clock, &w.net), d))
            };
            t.row(vec![
                p.name.clone(),
                med_p99(clock.compile(&p.ringos), 3),
                theirs(Clock::compile, 3),
                opt_ratio(rc, w.is_some()),
                med_p99(clock.run(&p.ringos), 1),
                theirs(Clock::run, 1),
                opt_ratio(rr, w.is_some()),
                sum,
            ]);
        }
        t.render()
    }

    /// The tables (wall time, then CPU time) and how each figure was taken.
    pub fn text(&self) -> String {
        let mut out = format!(
            "bench jit: {} runs per program and runtime; cells are median / p99 ms; \
             ratio = ringos median / wasmtime median (below 1: ringos faster)\n\
             host: {} CPUs, load average {} before measuring\n",
            self.runs, self.cpus, self.loadavg
        );
        match (&self.wasmtime, &self.wasmtime_missing) {
            (Some(w), _) => out.push_str(&format!("peer: {} ({})\n", w.version, w.path.display())),
            (None, Some(why)) => out.push_str(&format!("peer: {why}\n")),
            (None, None) => {}
        }
        out.push_str("\nwall time\n");
        out.push_str(&self.table(Clock::Wall));
        out.push_str("\nCPU time (user + system)\n");
        out.push_str(&self.table(Clock::Cpu));
        out.push('\n');
        let unresolved = self.programs.iter().any(|p| {
            p.ratios.as_ref().is_some_and(|r| {
                [r.compile_wall, r.run_wall, r.compile_cpu, r.run_cpu]
                    .iter()
                    .any(Option::is_none)
            })
        });
        if unresolved {
            out.push_str(
                "n/r: not resolved: wasmtime's net median is not above the spread (max - min) \
                 of its trivial-module baseline, i.e. within process start-up noise; such a \
                 wasmtime cell (even negative) means \"about as fast as an empty module\", \
                 not a measurement\n",
            );
        }
        let m = &self.method;
        for (what, how) in [
            ("ringos compile", m.ringos_compile),
            ("ringos run", m.ringos_run),
            ("wasmtime compile", m.wasmtime_compile),
            ("wasmtime run", m.wasmtime_run),
            ("CPU time", m.cpu_time),
            ("p99", m.percentiles),
        ] {
            out.push_str(&format!("{what}: {how}\n"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_module_runs_and_returns_zero() {
        let s = ringos_once("empty", EMPTY_MODULE).unwrap();
        assert_eq!(s.checksum, 0);
        assert!(s.compile.wall >= 0.0 && s.run.cpu >= 0.0);
    }

    #[test]
    fn invoke_output() {
        assert_eq!(parse_invoke_output("42\n"), Some(42));
        assert_eq!(parse_invoke_output("-7\n\n"), Some(-7));
        assert_eq!(parse_invoke_output("warning: x\n123\n"), Some(123));
        assert_eq!(parse_invoke_output(""), None);
        assert_eq!(parse_invoke_output("nope\n"), None);
    }

    #[test]
    fn net_subtracts_the_baseline_median() {
        assert_eq!(net(&[10.0, 12.0], &[3.0, 1.0, 2.0]), [8.0, 10.0]);
        let (a, b) = (Timing::of(vec![4.0]), Timing::of(vec![1.0, 2.0, 3.0]));
        assert_eq!(ratio(&a, &b, 0.0), Some(2.0));
        assert_eq!(ratio(&a, &b, 1.5), Some(2.0));
        assert_eq!(ratio(&a, &b, 2.0), None);
        assert_eq!(ratio(&a, &Timing::of(vec![0.0]), 0.0), None);
        assert_eq!(spread(&[3.0, 1.0, 2.5]), 2.0);
        assert_eq!(opt_ratio(None, true), "n/r");
        assert_eq!(opt_ratio(None, false), "-");
        assert_eq!(opt_ratio(Some(1.234), true), "1.23x");
    }

    #[test]
    fn child_times() {
        let (t, out) = timed(Command::new("sh").args(["-c", "echo 5"]), "sh").unwrap();
        assert_eq!(parse_invoke_output(&out), Some(5));
        assert!(t.wall > 0.0 && t.cpu >= 0.0);
        assert!(timed(&mut Command::new("false"), "false").is_err());
    }

    #[test]
    fn paths() {
        let r = Path::new("/r");
        assert_eq!(guests_manifest(r), Path::new("/r/benches/jit/Cargo.toml"));
        assert_eq!(
            peer_root(r).join("bin/wasmtime"),
            Path::new("/r/target/peers/wasmtime/bin/wasmtime")
        );
    }
}
