//! Probes: boot the kernel in a measuring mode, parse what it prints, and
//! report a table (stdout) and JSON (`target/bench/<name>.json`).
//!
//! - [`boot`]: boot time (`probe boot`)
//! - [`blk`]: virtio-blk latency and IOPS (`probe blk`)
//! - [`net`]: UDP echo round trips through virtio-net (`probe net`)
//!
//! What they share lives here: the `key=value` line parser, the table
//! formatter, the JSON writer and the failure report with the console tail.

pub mod blk;
pub mod boot;
pub mod net;

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::{Accel, Error, Machine, Result, VmConfig, VmRun};

pub use boot::{
    boot_once, json_path, probe_boot, BootReport, BootSample, BootSummary, MachineBoots, ProbeBoot,
};

/// The VM a probe boots on `machine`: the image, accelerator, memory,
/// timeout and host CPU (`--pin`) it was given; devices and command line
/// are the probe's own.
pub fn vm_config(
    image: &Path,
    machine: Machine,
    accel: Accel,
    mem_mib: u32,
    timeout: Duration,
    pin_cpu: Option<usize>,
) -> VmConfig {
    let mut cfg = VmConfig::new(image);
    cfg.machine = machine;
    cfg.accel = accel;
    cfg.mem_mib = mem_mib;
    cfg.timeout = timeout;
    cfg.pin_cpu = pin_cpu;
    cfg
}

/// `<root>/target/bench`: where probes write their JSON (and scratch files).
pub fn bench_dir(root: &Path) -> PathBuf {
    root.join("target").join("bench")
}

/// `<root>/target/bench/<file>`.
pub fn bench_path(root: &Path, file: &str) -> PathBuf {
    bench_dir(root).join(file)
}

/// Writes `value` as pretty JSON, creating parent directories.
pub fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let io_err = |e: std::io::Error| Error::Io(format!("writing {}: {e}", path.display()));
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(io_err)?;
    }
    let mut json = serde_json::to_string_pretty(value).expect("the report serializes");
    json.push('\n');
    fs::write(path, json).map_err(io_err)
}

/// Seconds since the Unix epoch, for reports.
pub fn unix_time() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A duration in whole nanoseconds (saturating).
pub fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Nanoseconds as microseconds with 2 decimals, for tables.
pub fn us(ns: f64) -> String {
    format!("{:.2}", ns / 1e3)
}

/// A probe failure with the last console lines of `run` appended.
pub fn failure(run: &VmRun, why: impl Into<String>, exit_code: i32) -> Error {
    let mut message = why.into();
    let tail: Vec<&str> = run.tail(10).collect();
    if !tail.is_empty() {
        message.push_str("\nlast console lines:");
        for l in tail {
            let _ = write!(message, "\n  {l}");
        }
    }
    Error::Failed { message, exit_code }
}

/// The failure for a VM that did not end with guest status 0, if it did not.
pub fn check_outcome(run: &VmRun, timeout: Duration) -> Result<()> {
    match run.outcome.message(timeout) {
        Some(why) => Err(failure(run, why, run.outcome.exit_code())),
        None => Ok(()),
    }
}

/// The words of a console line (after its marker): bare words and
/// `key=value` pairs, split like the kernel command line.
#[derive(Clone, Debug)]
pub struct Fields<'a> {
    words: Vec<(&'a str, &'a str)>,
}

impl<'a> Fields<'a> {
    pub fn new(text: &'a str) -> Self {
        Fields {
            words: ringos_proto::cmdline::words(text).collect(),
        }
    }

    /// The first word (the line's kind, such as `verify`), if it is bare.
    pub fn kind(&self) -> Option<&'a str> {
        match self.words.first() {
            Some(&(k, "")) => Some(k),
            _ => None,
        }
    }

    /// Whether the line has `key=...`.
    pub fn has(&self, key: &str) -> bool {
        self.words.iter().any(|(k, v)| *k == key && !v.is_empty())
    }

    /// The raw value of `key` (the last one if repeated).
    pub fn str(&self, key: &str) -> Result<&'a str, String> {
        self.words
            .iter()
            .rev()
            .find(|(k, v)| *k == key && !v.is_empty())
            .map(|(_, v)| *v)
            .ok_or_else(|| format!("no `{key}=`"))
    }

    /// The value of `key`, parsed.
    pub fn get<T: FromStr>(&self, key: &str) -> Result<T, String> {
        let v = self.str(key)?;
        v.parse()
            .map_err(|_| format!("`{key}={v}` is not a valid {}", type_name::<T>()))
    }

    /// Every `key=value` pair, in order.
    pub fn pairs(&self) -> impl Iterator<Item = (&'a str, &'a str)> + '_ {
        self.words.iter().copied().filter(|(_, v)| !v.is_empty())
    }
}

fn type_name<T>() -> &'static str {
    let n = std::any::type_name::<T>();
    match n {
        "u8" | "u16" | "u32" | "u64" | "usize" => "number",
        _ => n.rsplit("::").next().unwrap_or(n),
    }
}

/// A plain text table: `left` leading columns left-aligned, the rest
/// right-aligned, two spaces between columns, widths from the contents.
#[derive(Clone, Debug)]
pub struct Table {
    left: usize,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with this header row.
    pub fn new(header: &[&str], left: usize) -> Self {
        Table {
            left,
            rows: vec![header.iter().map(|s| s.to_string()).collect()],
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table, one line per row, each ending in a newline.
    pub fn render(&self) -> String {
        let cols = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let width = |c: usize| {
            self.rows
                .iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        };
        let widths: Vec<usize> = (0..cols).map(width).collect();
        let mut out = String::new();
        for r in &self.rows {
            let mut line = String::new();
            for (c, cell) in r.iter().enumerate() {
                if c > 0 {
                    line.push_str("  ");
                }
                let w = widths[c];
                if c < self.left {
                    let _ = write!(line, "{cell:<w$}");
                } else {
                    let _ = write!(line, "{cell:>w$}");
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields() {
        let f = Fields::new("verify blocks=2000 mismatches=0 io=irq");
        assert_eq!(f.kind(), Some("verify"));
        assert_eq!(f.get::<u64>("blocks"), Ok(2000));
        assert_eq!(f.str("io"), Ok("irq"));
        assert!(f.has("mismatches") && !f.has("verify") && !f.has("nope"));
        assert_eq!(f.get::<u64>("nope").unwrap_err(), "no `nope=`");
        assert_eq!(
            Fields::new("n=x").get::<u64>("n").unwrap_err(),
            "`n=x` is not a valid number"
        );
        assert_eq!(Fields::new("n=").get::<u64>("n").unwrap_err(), "no `n=`");
        assert_eq!(Fields::new("a=1 b").kind(), None);
        assert_eq!(Fields::new("").kind(), None);
        let pairs: Vec<_> = Fields::new("x a=1 b=2").pairs().collect();
        assert_eq!(pairs, [("a", "1"), ("b", "2")]);
    }

    #[test]
    fn table_aligns_columns() {
        let mut t = Table::new(&["machine", "io", "p50 µs"], 2);
        t.row(vec!["microvm".into(), "irq".into(), "12.50".into()]);
        t.row(vec!["q35".into(), "poll".into(), "7.00".into()]);
        assert_eq!(
            t.render(),
            "machine  io    p50 µs\n\
             microvm  irq    12.50\n\
             q35      poll    7.00\n"
        );
    }

    #[test]
    fn microseconds() {
        assert_eq!(us(12_340.0), "12.34");
        assert_eq!(us(1_500.0), "1.50");
        assert_eq!(us(0.0), "0.00");
    }

    #[test]
    fn json_goes_under_target_bench() {
        let p = bench_path(Path::new("/r"), "blk.json");
        assert_eq!(p, Path::new("/r/target/bench/blk.json"));
    }
}
