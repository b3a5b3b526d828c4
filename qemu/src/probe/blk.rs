//! `probe blk`: boots with `probe=blk` and a virtio-blk disk; the kernel
//! measures QD1 4 KiB random-read latency, IOPS at a queue depth and (with
//! `write=1`) write + flush + read-back verification, and prints
//! `probe-blk: ` lines that this module parses.

use std::fs::{self, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ringos_proto::{cmdline, probe};
use serde::Serialize;

use super::{check_outcome, failure, nanos, unix_time, us, vm_config, Fields, Table};
use crate::vm::{self, Console};
use crate::{qemu, Accel, Error, IoMode, Machine, Result};

/// Size of the temporary disk when none is given.
pub const TEMP_DISK_BYTES: u64 = 64 << 20;
/// Bytes per probe operation (and per written block with `write`).
pub const BLOCK_BYTES: u64 = 4096;

/// What to probe.
#[derive(Clone, Debug)]
pub struct ProbeBlk {
    pub image: PathBuf,
    pub disk: PathBuf,
    pub machines: Vec<Machine>,
    pub ops: u32,
    pub qd: u32,
    /// Overwrite the disk's first `ops` blocks and verify them.
    pub write: bool,
    /// `None`: the kernel's default.
    pub io: Option<IoMode>,
    pub accel: Accel,
    pub mem_mib: u32,
    pub timeout: Duration,
    /// Also time the reads inside a component: the probe component
    /// ([`component_source`]), and, if given, this one's `probe N` mode
    /// (the `demo` guest, whose reads go through wit-bindgen's runtime).
    pub component: bool,
    /// With `component`: count guest instructions per read too (a TCG
    /// plugin, [`insn_plugin`]).
    pub count: bool,
    /// With `component`: time the phases of each read too (TSC marks in
    /// the kernel, [`Phases`]).
    pub phases: bool,
    pub wit_bindgen: Option<Vec<u8>>,
    /// Run QEMU on this one host CPU (`--pin`).
    pub pin_cpu: Option<usize>,
    /// With `component`: runs of each component per boot, each between two
    /// slices of the kernel-only reads, `ops / rounds` reads each
    /// (`--rounds`; see [`cmdline::BLK_ROUNDS`]).
    pub rounds: u32,
}

/// What the component's probe prints on stdout after each run: this
/// summary...
pub const COMPONENT_LINE: &str = "probe: reads=";
/// ...then every latency it took, a few to a line (`a,b,..`), so that the
/// runs of a boot are pooled.
pub const LATENCIES_LINE: &str = "probe: lat_ns=";

/// The probe component (`benches/blk/probe.wat`) in text, timing `ops`
/// reads after `ops / 10` warm-up ones.
pub fn component_source(ops: u32) -> String {
    include_str!("../../../benches/blk/probe.wat")
        .replace("(i32.const OPS)", &format!("(i32.const {ops})"))
}

/// QD1 4 KiB random reads timed inside a component: from the call of
/// `ringos:blk/disk.read` to the `stream.read` the device completed.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct ComponentLatency {
    pub reads: u64,
    pub p50_ns: u64,
    pub p99_ns: u64,
    pub min_ns: u64,
    pub max_ns: u64,
    /// The kernel-only reads of the same boot, the reference of the
    /// ratio: as many as the component's, each block of 32 of its reads
    /// paired with a block of them (`ringos:probe/baseline`).
    pub same_boot_kernel: Option<Baseline>,
    /// With `--count`: guest instructions per read in this boot.
    pub insns: Option<InsnCounts>,
    /// With `--phases`: where a read's time goes, in this boot.
    pub phases: Option<Phases>,
}

/// Where a timed read's time goes (medians of TSC marks in the kernel),
/// kernel-only and in the component, in one boot.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Phases {
    pub kernel: PhaseSplit,
    pub component: PhaseSplit,
}

/// One path's phase medians.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct PhaseSplit {
    /// Reads whose every point was marked in order.
    pub reads: u64,
    /// From the start (the component's clock read) to the submission.
    pub before_submit_ns: u64,
    /// The submission: the descriptors and the notify QEMU handles.
    pub submit_ns: u64,
    /// From the notify to the device's interrupt, or to the poll that took
    /// the completion when no interrupt came (the block device interrupts
    /// only while the CPU halts).
    pub device_ns: u64,
    /// From the interrupt (or the reap) to the reader having its data.
    pub after_irq_ns: u64,
    /// Reads no interrupt ended: a poll took the completion from the ring.
    pub reaped: u64,
    /// From the notify to the CPU's first halt, in reads that halted: how
    /// long the vCPU ran on while the device worked.
    pub notify_to_halt_ns: u64,
    /// Reads that followed a reaped one, and the notify's median in them
    /// and in those after an interrupted one. Under TCG a notify waits for
    /// QEMU's global lock, which its main loop holds while it completes a
    /// request: after a reap it may still be doing so.
    pub after_reaped: u64,
    pub submit_after_reaped_ns: u64,
    pub submit_after_irq_ns: u64,
}

/// The kernel's phase lines, after [`probe::BLK_LINE`].
const PHASES_KEY: &str = "phases ";

impl Phases {
    /// Parses the kernel's `phases path=kernel|component reads=N
    /// before_submit_ns=.. submit_ns=.. device_ns=.. after_irq_ns=..
    /// reaped=N notify_to_halt_ns=.. after_reaped=N
    /// submit_after_reaped_ns=.. submit_after_irq_ns=..` lines (after the `probe-blk: ` prefix).
    pub fn parse<'a>(lines: impl Iterator<Item = &'a str>) -> Result<Phases, String> {
        let [kernel, component] = per_path(lines, PHASES_KEY, "path", |path, f| {
            let split = PhaseSplit {
                reads: f.get("reads")?,
                before_submit_ns: f.get("before_submit_ns")?,
                submit_ns: f.get("submit_ns")?,
                device_ns: f.get("device_ns")?,
                after_irq_ns: f.get("after_irq_ns")?,
                reaped: f.get("reaped")?,
                notify_to_halt_ns: f.get("notify_to_halt_ns")?,
                after_reaped: f.get("after_reaped")?,
                submit_after_reaped_ns: f.get("submit_after_reaped_ns")?,
                submit_after_irq_ns: f.get("submit_after_irq_ns")?,
            };
            if split.reads == 0 {
                return Err(format!("no {path} read had all its phases marked"));
            }
            Ok(split)
        })
        .map_err(|e| {
            e.unwrap_or_else(|| "the kernel printed no phases for one of the paths".into())
        })?;
        Ok(Phases { kernel, component })
    }
}

/// Parses the lines starting with `prefix` whose `key` names a path
/// (`kernel`, then `component`) with `f`: one of each, or an error
/// (`None`: a path had no line).
fn per_path<'a, T>(
    lines: impl Iterator<Item = &'a str>,
    prefix: &str,
    key: &str,
    f: impl Fn(&str, &Fields) -> Result<T, String>,
) -> Result<[T; 2], Option<String>> {
    let mut paths: [Option<T>; 2] = [None, None];
    for line in lines {
        let Some(rest) = line.strip_prefix(prefix) else {
            continue;
        };
        let fields = Fields::new(rest);
        let path: String = fields.get(key).map_err(Some)?;
        let slot = match path.as_str() {
            "kernel" => 0,
            "component" => 1,
            p => return Err(Some(format!("unknown {key} {p:?}"))),
        };
        paths[slot] = Some(f(&path, &fields).map_err(Some)?);
    }
    match paths {
        [Some(k), Some(c)] => Ok([k, c]),
        _ => Err(None),
    }
}

/// Guest instructions and translation blocks executed per timed read, as
/// the TCG plugin counted them in one boot: kernel-only reads (from before
/// the submission to after the completion was reaped) and the component's
/// (from clock read to clock read: `disk.read`, `stream.read`, the wait).
/// The part a reader waits for is the instructions before the device was
/// notified plus those after the completion's interrupt; the rest
/// overlaps the device.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct InsnCounts {
    pub kernel: PerRead,
    pub component: PerRead,
}

/// One kind of read's counts, per read.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct PerRead {
    pub reads: u64,
    pub insns: f64,
    pub before_submit_insns: f64,
    pub after_interrupt_insns: f64,
    pub tbs: f64,
}

impl PerRead {
    /// The instructions a reader waits for.
    pub fn waited(&self) -> f64 {
        self.before_submit_insns + self.after_interrupt_insns
    }
}

impl InsnCounts {
    /// Parses the plugin's `insn-window kind=K windows=N insns=N tbs=N
    /// before_submit=N after_wake=N` lines (kinds `kernel` and
    /// `component`).
    pub fn parse(text: &str) -> Result<InsnCounts, String> {
        let [kernel, component] = per_path(text.lines(), "insn-window ", "kind", |kind, f| {
            let (n, insns, tbs): (u64, u64, u64) =
                (f.get("windows")?, f.get("insns")?, f.get("tbs")?);
            let (before, after): (u64, u64) = (f.get("before_submit")?, f.get("after_wake")?);
            if n == 0 {
                return Err(format!("no {kind} window was marked (is count-marks on?)"));
            }
            let per = |x: u64| x as f64 / n as f64;
            Ok(PerRead {
                reads: n,
                insns: per(insns),
                before_submit_insns: per(before),
                after_interrupt_insns: per(after),
                tbs: per(tbs),
            })
        })
        .map_err(|e| e.unwrap_or_else(|| "the plugin's counts are missing a window kind".into()))?;
        Ok(InsnCounts { kernel, component })
    }

    /// Instructions per component read over per kernel-only read.
    pub fn ratio(&self) -> f64 {
        self.component.insns / self.kernel.insns.max(1.0)
    }
}

/// The instruction-counting TCG plugin, built from
/// `benches/blk/insn_window.c` with `cc` when missing or older than its
/// source.
pub fn insn_plugin(root: &Path) -> Result<PathBuf> {
    let src = root.join("benches").join("blk").join("insn_window.c");
    let out = super::bench_dir(root).join("insn_window.so");
    let modified = |p: &Path| fs::metadata(p).and_then(|m| m.modified()).ok();
    if modified(&out).is_some_and(|o| modified(&src).is_some_and(|s| o >= s)) {
        return Ok(out);
    }
    fs::create_dir_all(super::bench_dir(root)).map_err(|e| bad_disk(&out, e))?;
    eprintln!(
        "probe blk: building the TCG plugin {} with cc",
        out.display()
    );
    let status = std::process::Command::new("cc")
        .args(["-shared", "-fPIC", "-O2", "-Wall", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .map_err(|e| {
            Error::CannotStart(format!(
                "--count builds a TCG plugin with cc: {e} (apt-get install -y gcc)"
            ))
        })?;
    if !status.success() {
        return Err(Error::CannotStart(format!(
            "building {} failed (cc's output is above)",
            src.display()
        )));
    }
    Ok(out)
}

/// Kernel-only QD1 4 KiB random reads in the component's boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Baseline {
    pub reads: u64,
    pub p50_ns: u64,
    pub p99_ns: u64,
    pub max_ns: u64,
    /// One right after each of the component's reads (the probe
    /// component asks for them), rather than in slices around its runs.
    pub paired: bool,
}

/// The kernel's baseline line, after [`BLK_LINE`].
const BASELINE_KEY: &str = "baseline-qd1-read-4k";

impl Baseline {
    /// Parses `baseline-qd1-read-4k ops=N ok=1 p50_ns=.. p99_ns=.. max_ns=..`
    /// (after the `probe-blk: ` prefix); `ok=0` (a read failed) is an error.
    pub fn parse(line: &str) -> Result<Baseline, String> {
        let f = Fields::new(line.strip_prefix(BASELINE_KEY).unwrap_or(line));
        if f.get::<u64>("ok")? != 1 {
            return Err("a kernel-only baseline read failed".into());
        }
        Ok(Baseline {
            reads: f.get("ops")?,
            p50_ns: f.get("p50_ns")?,
            p99_ns: f.get("p99_ns")?,
            max_ns: f.get("max_ns")?,
            paired: false,
        })
    }
}

impl ComponentLatency {
    /// Parses `probe: reads=N p50_ns=.. p99_ns=.. min_ns=.. max_ns=..`.
    pub fn parse(line: &str) -> Result<ComponentLatency, String> {
        let f = Fields::new(line.strip_prefix("probe:").unwrap_or(line));
        Ok(ComponentLatency {
            reads: f.get("reads")?,
            p50_ns: f.get("p50_ns")?,
            p99_ns: f.get("p99_ns")?,
            min_ns: f.get("min_ns")?,
            max_ns: f.get("max_ns")?,
            same_boot_kernel: None,
            insns: None,
            phases: None,
        })
    }

    /// Pools what `runs` runs of the probe printed (its stdout lines): each
    /// run's summary ([`COMPONENT_LINE`]) and the latencies it lists
    /// ([`LATENCIES_LINE`]). The percentiles are of all the latencies,
    /// nearest-rank, as the kernel takes its baseline's.
    pub fn pool<'a>(
        lines: impl IntoIterator<Item = &'a str>,
        runs: u32,
    ) -> Result<ComponentLatency, String> {
        let (mut summaries, mut reads) = (0u32, 0u64);
        let mut lat = Vec::new();
        for l in lines {
            if l.starts_with(COMPONENT_LINE) {
                summaries += 1;
                reads += ComponentLatency::parse(l)?.reads;
            } else if let Some(list) = l.strip_prefix(LATENCIES_LINE) {
                for v in list.split(',') {
                    lat.push(
                        v.trim().parse::<u64>().map_err(|_| {
                            format!("a latency that is not a number: {v:?} in {l:?}")
                        })?,
                    );
                }
            }
        }
        if summaries != runs {
            return Err(format!(
                "{summaries} of its {runs} run(s) printed a `{COMPONENT_LINE}` line"
            ));
        }
        if lat.is_empty() || lat.len() as u64 != reads {
            return Err(format!(
                "its runs counted {reads} reads but listed {} latencies",
                lat.len()
            ));
        }
        let ns: Vec<f64> = lat.iter().map(|&v| v as f64).collect();
        let at = |p: f64| crate::stats::percentile(&ns, p).map_or(0, |v| v as u64);
        Ok(ComponentLatency {
            reads,
            p50_ns: at(50.0),
            p99_ns: at(99.0),
            min_ns: lat.iter().copied().min().unwrap_or(0),
            max_ns: lat.iter().copied().max().unwrap_or(0),
            same_boot_kernel: None,
            insns: None,
            phases: None,
        })
    }

    /// `p50 / kernel p50`: against the same boot's kernel-only reads when
    /// there are some, else against `separate` (the kernel-only probe's
    /// own boot).
    pub fn ratio(&self, separate: Option<&Latency>) -> Option<f64> {
        let k = match self.same_boot_kernel {
            Some(b) => b.p50_ns,
            None => separate?.p50_ns,
        };
        (k > 0).then(|| self.p50_ns as f64 / k as f64)
    }
}

impl ProbeBlk {
    /// The component runs per boot and the reads each times: `rounds`
    /// (at most one per read) runs of `ops / rounds`.
    pub fn runs(&self) -> (u32, u32) {
        let rounds = self.rounds.clamp(1, self.ops.max(1));
        (rounds, self.ops / rounds)
    }

    /// The kernel command line: `probe=blk ops=N qd=N [write=1] [io=..]`.
    pub fn cmdline(&self) -> String {
        let mut w = vec![
            format!("{}={}", cmdline::PROBE, probe::BLK),
            format!("{}={}", cmdline::OPS, self.ops),
            format!("{}={}", cmdline::QD, self.qd),
        ];
        if self.write {
            w.push(format!("{}=1", cmdline::WRITE));
        }
        w.extend(self.io.map(IoMode::cmdline_word));
        w.join(" ")
    }
}

/// `probe-blk: verify blocks=N mismatches=N`
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Verify {
    pub blocks: u64,
    pub mismatches: u64,
}

/// `probe-blk: qd1-read-4k ops=N p50_ns=.. p90_ns=.. p99_ns=.. p999_ns=.. max_ns=..`
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Latency {
    pub ops: u64,
    pub p50_ns: u64,
    pub p90_ns: u64,
    pub p99_ns: u64,
    pub p999_ns: u64,
    pub max_ns: u64,
}

/// `probe-blk: qd<N>-read-4k ops=N ns=.. iops=.. max_in_flight=N`
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Throughput {
    /// The queue depth the kernel used (it clamps the one asked for).
    pub qd: u64,
    pub ops: u64,
    pub ns: u64,
    pub iops: u64,
    pub max_in_flight: u64,
}

/// One `probe-blk: ` line, after the marker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlkLine {
    /// `capacity_sectors=N ops=N qd=N io=irq|poll`
    Start {
        capacity_sectors: u64,
        ops: u64,
        qd: u64,
        io: String,
    },
    Verify(Verify),
    Latency(Latency),
    Throughput(Throughput),
    /// `done ok=0|1`
    Done {
        ok: bool,
    },
    /// `error=<what>` (no disk, disk too small)
    Error(String),
}

/// Parses the text after [`probe::BLK_LINE`].
pub fn parse_blk_line(text: &str) -> Result<BlkLine, String> {
    if let Some(e) = text.trim().strip_prefix("error=") {
        return Ok(BlkLine::Error(e.to_string()));
    }
    let f = Fields::new(text);
    let throughput_qd = f
        .kind()
        .and_then(|k| k.strip_prefix("qd")?.strip_suffix("-read-4k")?.parse().ok());
    Ok(match f.kind() {
        None => BlkLine::Start {
            capacity_sectors: f.get("capacity_sectors")?,
            ops: f.get("ops")?,
            qd: f.get("qd")?,
            io: f.str("io")?.to_string(),
        },
        Some("verify") => BlkLine::Verify(Verify {
            blocks: f.get("blocks")?,
            mismatches: f.get("mismatches")?,
        }),
        // With qd=1 both measurements are `qd1-read-4k`: the keys tell them apart.
        Some("qd1-read-4k") if f.has("p50_ns") => BlkLine::Latency(Latency {
            ops: f.get("ops")?,
            p50_ns: f.get("p50_ns")?,
            p90_ns: f.get("p90_ns")?,
            p99_ns: f.get("p99_ns")?,
            p999_ns: f.get("p999_ns")?,
            max_ns: f.get("max_ns")?,
        }),
        Some(_) if throughput_qd.is_some() => BlkLine::Throughput(Throughput {
            qd: throughput_qd.unwrap_or_default(),
            ops: f.get("ops")?,
            ns: f.get("ns")?,
            iops: f.get("iops")?,
            max_in_flight: f.get("max_in_flight")?,
        }),
        Some("done") => BlkLine::Done {
            ok: match f.str("ok")? {
                "1" => true,
                "0" => false,
                v => return Err(format!("`ok={v}` is not 0 or 1")),
            },
        },
        Some(k) => return Err(format!("unknown line kind `{k}`")),
    })
}

/// Everything the kernel reported.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct BlkResult {
    pub capacity_sectors: Option<u64>,
    /// The reactor mode the kernel ran with.
    pub io: Option<String>,
    pub verify: Option<Verify>,
    pub qd1_read_4k: Option<Latency>,
    pub qdn_read_4k: Option<Throughput>,
    /// From `done ok=`.
    pub ok: Option<bool>,
    pub error: Option<String>,
}

impl BlkResult {
    /// Collects the `probe-blk: ` lines among `lines`; a malformed one is an error.
    pub fn parse<'a>(lines: impl IntoIterator<Item = &'a str>) -> Result<BlkResult, String> {
        let mut r = BlkResult::default();
        for l in lines {
            let Some(text) = l.strip_prefix(probe::BLK_LINE) else {
                continue;
            };
            match parse_blk_line(text).map_err(|e| format!("bad line `{l}`: {e}"))? {
                BlkLine::Start {
                    capacity_sectors,
                    io,
                    ..
                } => {
                    r.capacity_sectors = Some(capacity_sectors);
                    r.io = Some(io);
                }
                BlkLine::Verify(v) => r.verify = Some(v),
                BlkLine::Latency(v) => r.qd1_read_4k = Some(v),
                BlkLine::Throughput(v) => r.qdn_read_4k = Some(v),
                BlkLine::Done { ok } => r.ok = Some(ok),
                BlkLine::Error(e) => r.error = Some(e),
            }
        }
        Ok(r)
    }

    /// Why the probe failed, if it did (`write`: a verify line is expected).
    pub fn problem(&self, write: bool) -> Option<String> {
        Some(if let Some(e) = &self.error {
            format!("the kernel reported: {e}")
        } else if self.ok.is_none() {
            "the kernel printed no `probe-blk: done` line".into()
        } else if let Some(v) = self.verify.filter(|v| v.mismatches > 0) {
            format!(
                "{} of {} written blocks read back wrong",
                v.mismatches, v.blocks
            )
        } else if write && self.verify.is_none() {
            "the kernel printed no `probe-blk: verify` line".into()
        } else if self.ok == Some(false) {
            "the kernel reported `done ok=0` (an I/O request failed)".into()
        } else if self.qd1_read_4k.is_none() || self.qdn_read_4k.is_none() {
            "the kernel printed no latency or no throughput line".into()
        } else {
            return None;
        })
    }
}

/// One machine's run.
#[derive(Clone, Debug, Serialize)]
pub struct BlkMachine {
    pub machine: Machine,
    /// Host: QEMU spawn to exit.
    pub host_wall_ns: u64,
    pub result: BlkResult,
    /// With `--component`: the same reads timed inside the probe
    /// component (canonical ABI directly) ...
    pub component: Option<ComponentLatency>,
    /// ... and inside the demo guest (Rust, wit-bindgen's async runtime).
    pub wit_bindgen: Option<ComponentLatency>,
}

/// The whole probe, as written to `blk.json`.
#[derive(Clone, Debug, Serialize)]
pub struct BlkReport {
    pub accel: Accel,
    pub mem_mib: u32,
    pub ops: u32,
    pub qd: u32,
    pub write: bool,
    pub disk: PathBuf,
    pub disk_bytes: u64,
    pub cmdline: String,
    pub qemu_version: Option<String>,
    /// The host CPU QEMU ran on (`--pin`), if pinned.
    pub pin_cpu: Option<usize>,
    /// With `--component`: each component's runs per boot (the reads of
    /// each run: `ops / rounds`).
    pub rounds: u32,
    pub unix_time: u64,
    pub machines: Vec<BlkMachine>,
}

/// Runs the probe on each machine, showing progress on stderr. The first
/// failure ends it.
pub fn probe_blk(p: &ProbeBlk) -> Result<BlkReport> {
    let disk_bytes = fs::metadata(&p.disk)
        .map_err(|e| bad_disk(&p.disk, e))?
        .len();
    let append = p.cmdline();
    let mut machines = Vec::new();
    for &machine in &p.machines {
        let mut cfg = vm_config(&p.image, machine, p.accel, p.mem_mib, p.timeout, p.pin_cpu);
        cfg.disk = Some(p.disk.clone());
        cfg.append = append.clone();
        eprintln!("probe blk: {machine}: {append}");
        let run = vm::run(&cfg, Console::Capture)?;
        let fail = |why: String, code: i32| {
            failure(&run, format!("probe blk: {machine} failed: {why}"), code)
        };
        let result =
            BlkResult::parse(run.lines.iter().map(|(_, l)| l.as_str())).map_err(|e| fail(e, 1))?;
        // A parsed reason beats the bare exit status.
        if let Some(why) = result.problem(p.write) {
            let code = match run.outcome.exit_code() {
                0 => 1,
                c => c,
            };
            return Err(fail(why, code));
        }
        check_outcome(&run, cfg.timeout).map_err(|e| fail(e.to_string(), e.exit_code()))?;
        let (_, per_run) = p.runs();
        let component = if p.component {
            let app = wast_to_binary(&component_source(per_run))?;
            Some(component_probe(p, machine, &app, &[], "probe.wat")?)
        } else {
            None
        };
        let wit_bindgen = match &p.wit_bindgen {
            Some(app) => {
                let args = ["demo.wasm".to_string(), "probe".into(), per_run.to_string()];
                Some(component_probe(p, machine, app, &args, "demo.wasm probe")?)
            }
            None => None,
        };
        machines.push(BlkMachine {
            machine,
            host_wall_ns: nanos(run.wall),
            result,
            component,
            wit_bindgen,
        });
    }
    Ok(BlkReport {
        accel: p.accel,
        mem_mib: p.mem_mib,
        ops: p.ops,
        qd: p.qd,
        write: p.write,
        disk: p.disk.clone(),
        disk_bytes,
        cmdline: append,
        qemu_version: qemu::version(),
        pin_cpu: p.pin_cpu,
        rounds: p.runs().0,
        unix_time: unix_time(),
        machines,
    })
}

/// A component in text, encoded.
fn wast_to_binary(text: &str) -> Result<Vec<u8>> {
    crate::run::from_text(text).map_err(|e| Error::Failed {
        message: format!("probe blk: the probe component: {e}"),
        exit_code: 1,
    })
}

/// Boots `app` with `args` on the same disk and machine; parses its
/// `probe: reads=` line.
fn component_probe(
    p: &ProbeBlk,
    machine: Machine,
    app: &[u8],
    args: &[String],
    what: &str,
) -> Result<ComponentLatency> {
    let image = crate::kernel_image::target_dir(&crate::kernel_image::root())
        .join("bench")
        .join(format!("probe-blk-component-{}.elf", std::process::id()));
    crate::run::write_image(app, &[], args, &[], false, &image)?;
    let mut cfg = vm_config(&image, machine, p.accel, p.mem_mib, p.timeout, p.pin_cpu);
    cfg.disk = Some(p.disk.clone());
    // The kernel-only reads of this same boot, as many as the component's:
    // both probe components ask for a block of them beside each block of
    // their own (`ringos:probe/baseline`).
    let (rounds, per_run) = p.runs();
    cfg.append = format!("{}={rounds}", cmdline::BLK_ROUNDS);
    if let Some(io) = p.io {
        cfg.append = format!("{} {}", cfg.append, io.cmdline_word());
    }
    // Instructions are counted for the canonical-ABI probe only: it reads
    // the clock exactly twice per read (the demo reads it elsewhere too).
    let counts = (p.count && args.is_empty()).then(|| image.with_extension("insns"));
    if let Some(out) = &counts {
        let plugin = insn_plugin(&crate::kernel_image::root())?;
        let mut arg = plugin.into_os_string();
        arg.push(",outfile=");
        arg.push(out);
        // Where the instructions go, block by block (the plugin's header).
        if let Some(profile) = std::env::var_os("RINGOS_INSN_PROFILE") {
            arg.push(",profile=");
            arg.push(profile);
        }
        cfg.plugin = Some(arg);
        cfg.append = format!("{} {}=1", cfg.append, cmdline::COUNT_MARKS);
    }
    // Phases, too, for the probe that reads the clock only around reads.
    let phases = p.phases && args.is_empty();
    if phases {
        cfg.append = format!("{} {}=1", cfg.append, cmdline::PHASES);
    }
    eprintln!(
        "probe blk: {machine}: the same reads inside a component ({what}, {rounds} run(s) of {per_run})"
    );
    let run = vm::run(&cfg, Console::Capture);
    let _ = fs::remove_file(&image);
    let run = run?;
    let insns = counts.map(|out| {
        let text = fs::read_to_string(&out);
        let _ = fs::remove_file(&out);
        text.map_err(|e| format!("the TCG plugin wrote no counts ({e})"))
            .and_then(|t| InsnCounts::parse(&t))
    });
    let stdout = run
        .lines
        .iter()
        .filter_map(|(_, l)| l.strip_prefix(ringos_proto::marker::STDOUT));
    let fail = |why: String| {
        failure(
            &run,
            format!("probe blk: {machine}: the component probe failed: {why}"),
            1,
        )
    };
    let mut latency = ComponentLatency::pool(stdout, rounds).map_err(fail)?;
    let baseline = run.lines.iter().find_map(|(_, l)| {
        let text = l.strip_prefix(probe::BLK_LINE)?;
        text.starts_with(BASELINE_KEY).then_some(text)
    });
    let mut baseline = match baseline {
        Some(l) => Baseline::parse(l).map_err(fail)?,
        None => return Err(fail("the kernel printed no same-boot baseline".into())),
    };
    baseline.paired = true;
    if baseline.reads != latency.reads {
        return Err(fail(format!(
            "{} kernel-only reads paired with {} of the component's",
            baseline.reads, latency.reads
        )));
    }
    latency.same_boot_kernel = Some(baseline);
    latency.insns = insns.transpose().map_err(fail)?;
    if phases {
        let lines = run
            .lines
            .iter()
            .filter_map(|(_, l)| l.strip_prefix(probe::BLK_LINE));
        latency.phases = Some(Phases::parse(lines).map_err(fail)?);
    }
    Ok(latency)
}

fn bad_disk(path: &Path, e: io::Error) -> Error {
    Error::Failed {
        message: format!("disk image {}: {e}", path.display()),
        exit_code: 2,
    }
}

impl BlkReport {
    /// With `--phases`: each machine's phase medians, kernel-only and in
    /// the component, and what the component adds to each.
    fn phase_table(&self) -> String {
        let with: Vec<_> = self
            .machines
            .iter()
            .filter_map(|m| Some((m.machine, m.component?.phases?)))
            .collect();
        if with.is_empty() {
            return String::new();
        }
        let mut t = Table::new(
            &[
                "machine",
                "path",
                "reads",
                "before submit µs",
                "submit (notify) µs",
                "device µs",
                "after irq/reap µs",
            ],
            2,
        );
        for (machine, p) in &with {
            let us_of = |s: &PhaseSplit| {
                [s.before_submit_ns, s.submit_ns, s.device_ns, s.after_irq_ns].map(|n| us(n as f64))
            };
            for (path, s) in [("kernel-only", &p.kernel), ("component", &p.component)] {
                let mut row = vec![machine.to_string(), path.into(), s.reads.to_string()];
                row.extend(us_of(s));
                t.row(row);
            }
            let d = |a: u64, b: u64| format!("{:+.2}", (a as f64 - b as f64) / 1e3);
            let (k, c) = (&p.kernel, &p.component);
            t.row(vec![
                machine.to_string(),
                "component - kernel".into(),
                String::new(),
                d(c.before_submit_ns, k.before_submit_ns),
                d(c.submit_ns, k.submit_ns),
                d(c.device_ns, k.device_ns),
                d(c.after_irq_ns, k.after_irq_ns),
            ]);
        }
        let mut ends = Table::new(
            &[
                "machine",
                "path",
                "reaped (no irq)",
                "notify -> halt µs",
                "after a reap: reads",
                "their notify µs",
                "notify after an irq µs",
            ],
            2,
        );
        for (machine, p) in with {
            for (path, s) in [("kernel-only", &p.kernel), ("component", &p.component)] {
                let pct =
                    |n: u64| format!("{n} ({:.1}%)", 100.0 * n as f64 / s.reads.max(1) as f64);
                ends.row(vec![
                    machine.to_string(),
                    path.into(),
                    pct(s.reaped),
                    us(s.notify_to_halt_ns as f64),
                    pct(s.after_reaped),
                    us(s.submit_after_reaped_ns as f64),
                    us(s.submit_after_irq_ns as f64),
                ]);
            }
        }
        format!(
            "\nwhere a read's time goes (medians of TSC marks; the component's reads run \
             from clock read to clock read):\n{}\n\
             how reads end (a read whose completion a poll took before the CPU halted, \
             with no interrupt, is often followed by a slow notify: under TCG the notify \
             takes QEMU's global lock, which its main loop may still hold while it \
             completes the request):\n{}",
            t.render(),
            ends.render()
        )
    }

    /// The human-readable table for stdout.
    pub fn table(&self) -> String {
        let qd = self
            .machines
            .iter()
            .find_map(|m| m.result.qdn_read_4k.map(|t| t.qd))
            .unwrap_or(u64::from(self.qd));
        let iops = format!("QD{qd} IOPS");
        let mut header = vec![
            "machine",
            "accel",
            "io",
            "p50 µs",
            "p90 µs",
            "p99 µs",
            "p99.9 µs",
            "max µs",
            &iops,
        ];
        if self.write {
            header.push("mismatches");
        }
        let component = self.machines.iter().any(|m| m.component.is_some());
        if component {
            header.extend(["component p50 µs", "p99 µs", "kernel p50 µs", "p50 ratio"]);
        }
        let counts = self
            .machines
            .iter()
            .any(|m| m.component.is_some_and(|c| c.insns.is_some()));
        if counts {
            header.extend([
                "kernel insns/read",
                "component insns/read",
                "insns ratio",
                "waited-for insns: kernel / component (before submit + after wake)",
            ]);
        }
        let wit_bindgen = self.machines.iter().any(|m| m.wit_bindgen.is_some());
        if wit_bindgen {
            header.extend(["wit-bindgen p50 µs", "kernel p50 µs", "ratio"]);
        }
        header.push("host wall s");
        let mut t = Table::new(&header, 3);
        for m in &self.machines {
            let r = &m.result;
            let lat = |f: fn(&Latency) -> u64| {
                r.qd1_read_4k
                    .as_ref()
                    .map_or("-".into(), |l| us(f(l) as f64))
            };
            let mut row = vec![
                m.machine.to_string(),
                self.accel.to_string(),
                r.io.clone().unwrap_or_else(|| "?".into()),
                lat(|l| l.p50_ns),
                lat(|l| l.p90_ns),
                lat(|l| l.p99_ns),
                lat(|l| l.p999_ns),
                lat(|l| l.max_ns),
                r.qdn_read_4k.map_or("-".into(), |t| t.iops.to_string()),
            ];
            if self.write {
                row.push(r.verify.map_or("-".into(), |v| v.mismatches.to_string()));
            }
            let kernel = |c: Option<ComponentLatency>| {
                c.and_then(|c| c.same_boot_kernel)
                    .map_or("-".into(), |b| us(b.p50_ns as f64))
            };
            if component {
                let c = m.component;
                row.push(c.map_or("-".into(), |c| us(c.p50_ns as f64)));
                row.push(c.map_or("-".into(), |c| us(c.p99_ns as f64)));
                row.push(kernel(c));
                row.push(ratio(c, r.qd1_read_4k.as_ref()));
            }
            if counts {
                let n = m.component.and_then(|c| c.insns);
                row.push(n.map_or("-".into(), |n| format!("{:.0}", n.kernel.insns)));
                row.push(n.map_or("-".into(), |n| format!("{:.0}", n.component.insns)));
                row.push(n.map_or("-".into(), |n| format!("{:.2}x", n.ratio())));
                row.push(n.map_or("-".into(), |n| {
                    let (k, c) = (n.kernel, n.component);
                    format!(
                        "{:.0} ({:.0} + {:.0}) / {:.0} ({:.0} + {:.0})",
                        k.waited(),
                        k.before_submit_insns,
                        k.after_interrupt_insns,
                        c.waited(),
                        c.before_submit_insns,
                        c.after_interrupt_insns
                    )
                }));
            }
            if wit_bindgen {
                let c = m.wit_bindgen;
                row.push(c.map_or("-".into(), |c| us(c.p50_ns as f64)));
                row.push(kernel(c));
                row.push(ratio(c, r.qd1_read_4k.as_ref()));
            }
            row.push(format!("{:.2}", m.host_wall_ns as f64 / 1e9));
            t.row(row);
        }
        let capped = if qd == u64::from(self.qd) {
            String::new()
        } else {
            format!(" (--qd {} capped by the kernel)", self.qd)
        };
        let pinned = match self.pin_cpu {
            Some(cpu) => format!(", QEMU on host CPU {cpu}"),
            None => String::new(),
        };
        format!(
            "probe blk: {} ops, QD1 4 KiB random-read latency and QD{qd} IOPS{capped}{}, \
             {} MiB disk{pinned}\n{}{}",
            self.ops,
            if self.write {
                ", after write + verify"
            } else {
                ""
            },
            self.disk_bytes >> 20,
            t.render(),
            self.phase_table()
        )
    }
}

/// [`ComponentLatency::ratio`] as `1.23x`.
fn ratio(c: Option<ComponentLatency>, separate: Option<&Latency>) -> String {
    c.and_then(|c| c.ratio(separate))
        .map_or("-".into(), |r| format!("{r:.2}x"))
}

/// A sparse raw image created for one probe and deleted when dropped.
#[derive(Debug)]
pub struct TempDisk {
    path: PathBuf,
}

impl TempDisk {
    /// Creates `dir/probe-blk-<pid>.img` of `bytes` (sparse). Never reuses
    /// an existing file, so a `--write` probe cannot overwrite one.
    pub fn create(dir: &Path, bytes: u64) -> Result<TempDisk> {
        let path = dir.join(format!("probe-blk-{}.img", std::process::id()));
        let io_err = |e: io::Error| Error::Io(format!("creating {}: {e}", path.display()));
        fs::create_dir_all(dir).map_err(io_err)?;
        let f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io_err)?;
        let disk = TempDisk { path };
        f.set_len(bytes)
            .map_err(|e| Error::Io(format!("sizing {}: {e}", disk.path.display())))?;
        Ok(disk)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDisk {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUTPUT: &str = "\
ringos 0.1.0
ready: 11000000 ns
probe-blk: capacity_sectors=16384 ops=2000 qd=16 io=irq
probe-blk: verify blocks=2000 mismatches=0
probe-blk: qd1-read-4k ops=2000 p50_ns=41000 p90_ns=52000 p99_ns=90000 p999_ns=150000 max_ns=210000
probe-blk: qd16-read-4k ops=2000 ns=100000000 iops=20000 max_in_flight=16
probe-blk: done ok=1
EXIT: 0";

    #[test]
    fn parses_a_whole_run() {
        let r = BlkResult::parse(OUTPUT.lines()).unwrap();
        assert_eq!(r.capacity_sectors, Some(16384));
        assert_eq!(r.io.as_deref(), Some("irq"));
        assert_eq!(
            r.verify,
            Some(Verify {
                blocks: 2000,
                mismatches: 0
            })
        );
        assert_eq!(
            r.qd1_read_4k,
            Some(Latency {
                ops: 2000,
                p50_ns: 41000,
                p90_ns: 52000,
                p99_ns: 90000,
                p999_ns: 150000,
                max_ns: 210000
            })
        );
        let t = r.qdn_read_4k.unwrap();
        assert_eq!((t.qd, t.iops, t.max_in_flight), (16, 20000, 16));
        assert_eq!(r.ok, Some(true));
        assert_eq!(r.problem(true), None);
        assert_eq!(r.problem(false), None);
    }

    #[test]
    fn qd1_latency_and_throughput_are_told_apart() {
        let lat = parse_blk_line("qd1-read-4k ops=5 p50_ns=1 p90_ns=2 p99_ns=3 p999_ns=4 max_ns=5");
        assert!(matches!(lat, Ok(BlkLine::Latency(_))), "{lat:?}");
        let tp = parse_blk_line("qd1-read-4k ops=5 ns=10 iops=7 max_in_flight=1");
        assert!(
            matches!(
                tp,
                Ok(BlkLine::Throughput(Throughput { qd: 1, iops: 7, .. }))
            ),
            "{tp:?}"
        );
    }

    #[test]
    fn kernel_errors_and_failures() {
        assert_eq!(
            parse_blk_line("error=no block device"),
            Ok(BlkLine::Error("no block device".into()))
        );
        let r = BlkResult::parse(["probe-blk: error=no block device"]).unwrap();
        assert_eq!(
            r.problem(false).unwrap(),
            "the kernel reported: no block device"
        );

        let bad = OUTPUT
            .replace("mismatches=0", "mismatches=3")
            .replace("ok=1", "ok=0");
        let r = BlkResult::parse(bad.lines()).unwrap();
        assert_eq!(
            r.problem(true).unwrap(),
            "3 of 2000 written blocks read back wrong"
        );

        let r = BlkResult::parse(OUTPUT.replace("ok=1", "ok=0").lines()).unwrap();
        assert!(r.problem(false).unwrap().contains("ok=0"));

        let cut: Vec<&str> = OUTPUT.lines().take(4).collect();
        let r = BlkResult::parse(cut).unwrap();
        assert!(r.problem(false).unwrap().contains("no `probe-blk: done`"));

        let no_verify: Vec<&str> = OUTPUT.lines().filter(|l| !l.contains("verify")).collect();
        let r = BlkResult::parse(no_verify).unwrap();
        assert_eq!(r.problem(false), None);
        assert!(r.problem(true).unwrap().contains("verify"));
    }

    #[test]
    fn malformed_lines_are_errors() {
        for bad in [
            "capacity_sectors=x ops=1 qd=1 io=irq",
            "capacity_sectors=1 ops=1 io=irq",
            "verify blocks=10",
            "verify blocks=10 mismatches=-1",
            "qd1-read-4k ops=5 p50_ns=1 p90_ns=2 p99_ns=3 p999_ns=4",
            "qd16-read-4k ops=5 ns=10 iops=many max_in_flight=16",
            "qdX-read-4k ops=5 ns=10 iops=7 max_in_flight=1",
            "done ok=2",
            "done",
            "bogus a=1",
            "",
        ] {
            assert!(parse_blk_line(bad).is_err(), "{bad:?} parsed");
        }
        let e = BlkResult::parse(["probe-blk: verify blocks=1"]).unwrap_err();
        assert!(
            e.contains("probe-blk: verify blocks=1") && e.contains("mismatches"),
            "{e}"
        );
        // Other lines, including ones that merely mention the marker, are skipped.
        let r = BlkResult::parse(["log: probe-blk: x", "probe-blk:nospace"]).unwrap();
        assert_eq!(r, BlkResult::default());
    }

    #[test]
    fn cmdline_words() {
        let mut p = ProbeBlk {
            image: "/k".into(),
            disk: "/d".into(),
            machines: vec![Machine::Microvm],
            ops: 500,
            qd: 8,
            write: false,
            io: None,
            accel: Accel::Tcg,
            mem_mib: 256,
            timeout: Duration::from_secs(60),
            component: false,
            count: false,
            phases: false,
            wit_bindgen: None,
            pin_cpu: None,
            rounds: 6,
        };
        assert_eq!(p.cmdline(), "probe=blk ops=500 qd=8");
        p.write = true;
        p.io = Some(IoMode::Poll);
        assert_eq!(p.cmdline(), "probe=blk ops=500 qd=8 write=1 io=poll");
        // Runs of the component: at most one per read, whole reads each.
        assert_eq!(p.runs(), (6, 83));
        p.ops = 4;
        assert_eq!(p.runs(), (4, 1));
        p.rounds = 0;
        assert_eq!(p.runs(), (1, 4));
    }

    #[test]
    fn runs_of_the_component_are_pooled() {
        let runs = [
            "probe: reads=3 p50_ns=20 p99_ns=30 min_ns=10 max_ns=30",
            "probe: lat_ns=10,20,30",
            "stray line",
            "probe: reads=2 p50_ns=50 p99_ns=60 min_ns=40 max_ns=60",
            "probe: lat_ns=40",
            "probe: lat_ns=60",
        ];
        let c = ComponentLatency::pool(runs, 2).unwrap();
        // Of all five: nearest rank, as the kernel's baseline.
        assert_eq!(
            (c.reads, c.p50_ns, c.p99_ns, c.min_ns, c.max_ns),
            (5, 30, 60, 10, 60)
        );
        // A run missing, latencies missing or unreadable: errors.
        assert!(ComponentLatency::pool(runs, 3)
            .unwrap_err()
            .contains("2 of its 3 run(s)"));
        assert!(ComponentLatency::pool(runs[..5].iter().copied(), 2)
            .unwrap_err()
            .contains("counted 5 reads but listed 4"));
        let bad = [
            "probe: reads=1 p50_ns=1 p99_ns=1 min_ns=1 max_ns=1",
            "probe: lat_ns=x",
        ];
        assert!(ComponentLatency::pool(bad, 1)
            .unwrap_err()
            .contains("not a number"));
    }

    #[test]
    fn table_and_json() {
        let result = BlkResult::parse(OUTPUT.lines()).unwrap();
        let report = BlkReport {
            accel: Accel::Tcg,
            mem_mib: 256,
            ops: 2000,
            qd: 16,
            write: true,
            disk: "/d.img".into(),
            disk_bytes: 64 << 20,
            cmdline: "probe=blk ops=2000 qd=16 write=1".into(),
            qemu_version: None,
            pin_cpu: Some(1),
            rounds: 6,
            unix_time: 0,
            machines: vec![BlkMachine {
                machine: Machine::Q35,
                host_wall_ns: 1_500_000_000,
                result,
                component: Some(
                    ComponentLatency::parse(
                        "probe: reads=900 p50_ns=61500 p99_ns=99000 min_ns=50000 max_ns=400000",
                    )
                    .unwrap(),
                ),
                wit_bindgen: None,
            }],
        };
        let t = report.table();
        let row = t.lines().find(|l| l.starts_with("q35")).unwrap();
        for cell in [
            "tcg", "irq", "41.00", "52.00", "90.00", "150.00", "210.00", "20000", "1.50", "61.50",
            "99.00", "1.50x",
        ] {
            assert!(row.contains(cell), "{cell} missing in\n{t}");
        }
        assert!(t.contains("QD16 IOPS") && t.contains("mismatches"), "{t}");
        assert!(t.contains("MiB disk, QEMU on host CPU 1\n"), "{t}");
        let v = serde_json::to_value(&report).unwrap();
        assert_eq!(v["pin_cpu"], 1);
        assert_eq!(v["machines"][0]["machine"], "q35");
        assert_eq!(v["machines"][0]["result"]["qd1_read_4k"]["p99_ns"], 90000);
        assert_eq!(v["machines"][0]["result"]["verify"]["mismatches"], 0);
        assert_eq!(v["machines"][0]["component"]["p50_ns"], 61500);
        assert!(ComponentLatency::parse("probe: reads=1 p50_ns=x").is_err());
    }

    #[test]
    fn the_ratio_is_against_the_same_boot_when_there_is_one() {
        let mut c = ComponentLatency::parse(
            "probe: reads=900 p50_ns=60000 p99_ns=99000 min_ns=50000 max_ns=400000",
        )
        .unwrap();
        let separate = BlkResult::parse(OUTPUT.lines()).unwrap().qd1_read_4k;
        // No baseline: against the kernel-only probe's boot (41 µs).
        assert_eq!(ratio(Some(c), separate.as_ref()), "1.46x");
        let b = Baseline::parse(
            "baseline-qd1-read-4k ops=2000 ok=1 p50_ns=50000 p99_ns=70000 max_ns=90000",
        )
        .unwrap();
        assert_eq!(
            (b.reads, b.p50_ns, b.p99_ns, b.max_ns),
            (2000, 50000, 70000, 90000)
        );
        c.same_boot_kernel = Some(b);
        assert_eq!(ratio(Some(c), separate.as_ref()), "1.20x");
        // A failed kernel read makes no baseline.
        assert!(
            Baseline::parse("baseline-qd1-read-4k ops=2 ok=0 p50_ns=1 p99_ns=1 max_ns=1").is_err()
        );
        assert!(Baseline::parse("baseline-qd1-read-4k ops=2 ok=1").is_err());
    }

    #[test]
    fn instruction_counts_parse_per_read() {
        let n = InsnCounts::parse(
            "insn-window kind=kernel windows=1000 insns=1250000 tbs=200000 before_submit=300000 after_wake=400000\n\
             insn-window kind=component windows=1100 insns=5500000 tbs=880000 before_submit=1100000 after_wake=2200000\n",
        )
        .unwrap();
        assert_eq!(n.kernel.waited(), 700.0);
        assert_eq!(n.component.waited(), 3000.0);
        assert_eq!((n.kernel.reads, n.component.reads), (1000, 1100));
        assert_eq!(n.kernel.insns, 1250.0);
        assert_eq!(n.component.insns, 5000.0);
        assert_eq!(n.component.tbs, 800.0);
        assert_eq!(n.kernel.before_submit_insns, 300.0);
        assert_eq!(n.component.after_interrupt_insns, 2000.0);
        assert_eq!(format!("{:.2}", n.ratio()), "4.00");
        for bad in [
            "",
            "insn-window kind=kernel windows=1 insns=1 tbs=1 before_submit=0 after_wake=0",
            "insn-window kind=kernel windows=0 insns=0 tbs=0 before_submit=0 after_wake=0\n\
             insn-window kind=component windows=1 insns=1 tbs=1 before_submit=0 after_wake=0",
            "insn-window kind=other windows=1 insns=1 tbs=1 before_submit=0 after_wake=0",
            // Without the phases (an older plugin).
            "insn-window kind=kernel windows=1 insns=1 tbs=1\n\
             insn-window kind=component windows=1 insns=1 tbs=1",
        ] {
            assert!(InsnCounts::parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    /// A report of one microvm boot whose component probe had `phases`.
    fn report_with_phases(phases: Phases) -> BlkReport {
        let mut component = ComponentLatency::parse(
            "probe: reads=1100 p50_ns=70000 p99_ns=99000 min_ns=50000 max_ns=400000",
        )
        .unwrap();
        component.phases = Some(phases);
        BlkReport {
            accel: Accel::Tcg,
            mem_mib: 256,
            ops: 1000,
            qd: 16,
            write: false,
            disk: "/d.img".into(),
            disk_bytes: 64 << 20,
            cmdline: String::new(),
            qemu_version: None,
            pin_cpu: None,
            rounds: 1,
            unix_time: 0,
            machines: vec![BlkMachine {
                machine: Machine::Microvm,
                host_wall_ns: 1,
                result: BlkResult::default(),
                component: Some(component),
                wit_bindgen: None,
            }],
        }
    }

    #[test]
    fn phases_parse_per_path() {
        let lines = [
            "baseline-qd1-read-4k ops=2 ok=1 p50_ns=1 p99_ns=1 max_ns=1",
            "phases path=kernel reads=1000 before_submit_ns=40 submit_ns=4500 device_ns=58000 after_irq_ns=1800 \
             reaped=10 notify_to_halt_ns=140 after_reaped=10 submit_after_reaped_ns=24000 submit_after_irq_ns=1200",
            "phases path=component reads=1100 before_submit_ns=2500 submit_ns=5500 device_ns=63000 after_irq_ns=4300 \
             reaped=220 notify_to_halt_ns=1400 after_reaped=219 submit_after_reaped_ns=23000 submit_after_irq_ns=1100",
        ];
        let p = Phases::parse(lines.into_iter()).unwrap();
        assert_eq!((p.kernel.reads, p.component.reads), (1000, 1100));
        assert_eq!(p.kernel.before_submit_ns, 40);
        assert_eq!(p.component.device_ns, 63000);
        assert_eq!(p.component.after_irq_ns, 4300);
        assert_eq!((p.kernel.reaped, p.component.reaped), (10, 220));
        assert_eq!(p.component.notify_to_halt_ns, 1400);
        assert_eq!(p.component.after_reaped, 219);
        assert_eq!(p.kernel.submit_after_reaped_ns, 24000);
        assert_eq!(p.kernel.submit_after_irq_ns, 1200);
        let table = BlkReport {
            machines: vec![],
            ..report_with_phases(p)
        }
        .phase_table();
        assert!(table.is_empty(), "no machine, no table: {table}");
        let table = report_with_phases(p).phase_table();
        for s in [
            "kernel-only",
            "component - kernel",
            "+2.46",
            "+2.50",
            "58.00",
            "220 (20.0%)",
            "1.40",
            "24.00",
        ] {
            assert!(table.contains(s), "missing {s:?} in\n{table}");
        }
        for bad in [
            &lines[..2],
            &["phases path=kernel reads=0 before_submit_ns=0 submit_ns=0 device_ns=0 after_irq_ns=0", lines[2]][..],
            &["phases path=other reads=1 before_submit_ns=0 submit_ns=0 device_ns=0 after_irq_ns=0", lines[2]][..],
            &["phases path=kernel reads=1", lines[2]][..],
            // The lines of a kernel before the reads' ends were counted.
            &["phases path=kernel reads=1000 before_submit_ns=40 submit_ns=4500 device_ns=58000 after_irq_ns=1800", lines[2]][..],
        ] {
            assert!(Phases::parse(bad.iter().copied()).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn temp_disk_is_sparse_fresh_and_removed() {
        let dir = std::env::temp_dir().join(format!("ringos-tempdisk-{}", std::process::id()));
        let d = TempDisk::create(&dir, 1 << 20).unwrap();
        let path = d.path().to_path_buf();
        assert_eq!(fs::metadata(&path).unwrap().len(), 1 << 20);
        // A second one with the same name is refused, not reused.
        assert!(TempDisk::create(&dir, 1 << 20).is_err());
        assert!(path.exists(), "the failed create must not remove the first");
        drop(d);
        assert!(!path.exists());
        let _ = fs::remove_dir(&dir);
    }
}
