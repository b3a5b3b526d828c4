//! `probe boot`: boots the idle kernel (empty command line: it prints
//! `ready: <ns> ns` and exits 0) several times per machine and times it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use super::{bench_path, check_outcome, failure, nanos, unix_time, vm_config, write_json, Table};
use crate::stats::Summary;
use crate::vm::{self, Console};
use crate::{qemu, Accel, Error, Machine, Result, VmConfig};

/// What to probe.
#[derive(Clone, Debug)]
pub struct ProbeBoot {
    pub image: PathBuf,
    pub machines: Vec<Machine>,
    /// Boots per machine.
    pub runs: u32,
    pub accel: Accel,
    pub mem_mib: u32,
    /// Per boot.
    pub timeout: Duration,
    /// Run QEMU on this one host CPU (`--pin`).
    pub pin_cpu: Option<usize>,
}

/// One boot's timings.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct BootSample {
    /// Host: QEMU spawn to the `ready:` line on the console.
    pub host_spawn_to_ready_ns: u64,
    /// Host: QEMU spawn to QEMU's exit (the whole boot-and-exit).
    pub host_spawn_to_exit_ns: u64,
    /// Guest: kernel entry to `ready:`, as the kernel measured it.
    pub guest_entry_to_ready_ns: u64,
}

/// Summaries of each metric, in milliseconds.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct BootSummary {
    pub host_spawn_to_ready_ms: Summary,
    pub host_spawn_to_exit_ms: Summary,
    pub guest_entry_to_ready_ms: Summary,
}

/// All boots of one machine.
#[derive(Clone, Debug, Serialize)]
pub struct MachineBoots {
    pub machine: Machine,
    pub samples: Vec<BootSample>,
    pub summary: BootSummary,
}

/// The whole probe, as written to `boot.json`.
#[derive(Clone, Debug, Serialize)]
pub struct BootReport {
    pub accel: Accel,
    pub mem_mib: u32,
    pub runs: u32,
    pub qemu_version: Option<String>,
    /// When the probe finished, seconds since the Unix epoch.
    pub unix_time: u64,
    pub machines: Vec<MachineBoots>,
}

/// Where `probe boot` writes its JSON.
pub fn json_path(root: &Path) -> PathBuf {
    bench_path(root, "boot.json")
}

/// Runs the probe, showing progress on stderr. The first failed boot ends it.
pub fn probe_boot(p: &ProbeBoot) -> Result<BootReport> {
    if p.runs == 0 {
        return Err(Error::Failed {
            message: "probe boot: runs must be at least 1".into(),
            exit_code: 2,
        });
    }
    let mut machines = Vec::new();
    for &machine in &p.machines {
        let cfg = vm_config(&p.image, machine, p.accel, p.mem_mib, p.timeout, p.pin_cpu);
        let mut samples = Vec::new();
        for i in 1..=p.runs {
            eprintln!("probe boot: {machine} run {i}/{}", p.runs);
            let sample = boot_once(&cfg).map_err(|e| {
                e.map_message(|m| format!("probe boot: {machine} run {i}/{} failed: {m}", p.runs))
            })?;
            samples.push(sample);
        }
        let summary = summarize(&samples).expect("runs >= 1");
        machines.push(MachineBoots {
            machine,
            samples,
            summary,
        });
    }
    Ok(BootReport {
        accel: p.accel,
        mem_mib: p.mem_mib,
        runs: p.runs,
        qemu_version: qemu::version(),
        unix_time: unix_time(),
        machines,
    })
}

/// Boots `cfg` once; anything but a clean exit after a `ready:` line fails.
pub fn boot_once(cfg: &VmConfig) -> Result<BootSample> {
    let run = vm::run(cfg, Console::Capture)?;
    check_outcome(&run, cfg.timeout)?;
    let (Some(ready), Some(guest)) = (run.ready_at, run.guest_ready_ns()) else {
        return Err(failure(
            &run,
            "the guest exited 0 without a `ready: <ns> ns` line",
            1,
        ));
    };
    Ok(BootSample {
        host_spawn_to_ready_ns: nanos(ready),
        host_spawn_to_exit_ns: nanos(run.wall),
        guest_entry_to_ready_ns: guest,
    })
}

fn summarize(samples: &[BootSample]) -> Option<BootSummary> {
    let ms = |f: fn(&BootSample) -> u64| {
        let v: Vec<f64> = samples.iter().map(|s| f(s) as f64 / 1e6).collect();
        Summary::of(&v)
    };
    Some(BootSummary {
        host_spawn_to_ready_ms: ms(|s| s.host_spawn_to_ready_ns)?,
        host_spawn_to_exit_ms: ms(|s| s.host_spawn_to_exit_ns)?,
        guest_entry_to_ready_ms: ms(|s| s.guest_entry_to_ready_ns)?,
    })
}

impl BootReport {
    /// The human-readable table for stdout.
    pub fn table(&self) -> String {
        let mut t = Table::new(&["machine", "metric", "median ms", "min ms", "max ms"], 2);
        for m in &self.machines {
            let rows = [
                ("host: spawn -> ready", &m.summary.host_spawn_to_ready_ms),
                ("host: spawn -> exit", &m.summary.host_spawn_to_exit_ms),
                ("guest: entry -> ready", &m.summary.guest_entry_to_ready_ms),
            ];
            for (metric, s) in rows {
                t.row(vec![
                    m.machine.to_string(),
                    metric.into(),
                    format!("{:.2}", s.median),
                    format!("{:.2}", s.min),
                    format!("{:.2}", s.max),
                ]);
            }
        }
        format!(
            "probe boot: {} runs per machine, accel {}, {} MiB\n{}",
            self.runs,
            self.accel,
            self.mem_mib,
            t.render()
        )
    }

    /// Writes the report as pretty JSON, creating parent directories.
    pub fn write_json(&self, path: &Path) -> Result<()> {
        write_json(path, self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> BootReport {
        let samples = vec![
            BootSample {
                host_spawn_to_ready_ns: 30_000_000,
                host_spawn_to_exit_ns: 40_000_000,
                guest_entry_to_ready_ns: 1_500_000,
            },
            BootSample {
                host_spawn_to_ready_ns: 20_000_000,
                host_spawn_to_exit_ns: 35_000_000,
                guest_entry_to_ready_ns: 2_500_000,
            },
        ];
        BootReport {
            accel: Accel::Tcg,
            mem_mib: 256,
            runs: 2,
            qemu_version: None,
            unix_time: 0,
            machines: vec![MachineBoots {
                machine: Machine::Microvm,
                summary: summarize(&samples).unwrap(),
                samples,
            }],
        }
    }

    #[test]
    fn table_in_ms() {
        let t = report().table();
        assert!(t.contains("accel tcg"), "{t}");
        let ready = t.lines().find(|l| l.contains("spawn -> ready")).unwrap();
        assert!(ready.starts_with("microvm  host"), "columns line up:\n{t}");
        let header = t.lines().nth(1).unwrap();
        assert_eq!(
            header.find("median ms"),
            Some(ready.find("25.00").unwrap() - 4)
        );
        assert!(ready.contains("25.00") && ready.contains("20.00") && ready.contains("30.00"));
        assert!(t.contains("2.00"), "{t}");
    }

    #[test]
    fn json_has_samples_and_summaries() {
        let v: serde_json::Value = serde_json::to_value(report()).unwrap();
        assert_eq!(v["accel"], "tcg");
        let m = &v["machines"][0];
        assert_eq!(m["machine"], "microvm");
        assert_eq!(m["samples"][1]["guest_entry_to_ready_ns"], 2_500_000);
        assert_eq!(m["summary"]["host_spawn_to_exit_ms"]["median"], 37.5);
    }
}
