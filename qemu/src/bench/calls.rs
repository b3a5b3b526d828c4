//! `bench calls`: the cost of one call across a component boundary,
//! in-process, next to wasmtime running the same component.
//!
//! `benches/calls/calls.wat` composes a caller and a callee component;
//! the caller's export `run-X(n)` makes n calls to the callee's `X`. ringos
//! runs it in this process (one instantiation, timed calls of `run-X(n)`);
//! wasmtime runs it with `wasmtime run --invoke 'run-X(n)'`, and the same
//! with n = 0 cancels its process start-up and compilation. Both figures
//! are the time per call: (t(n) - t(0)) / n for wasmtime, t(n) / n for
//! ringos (its one host entry is within noise at this n).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use ringos_runtime::component::{Component, ComponentStore, Item, Value};
use ringos_runtime::hosted::HOSTED;
use serde::Serialize;

use super::jit::find_wasmtime;
use crate::probe::{self, Table};
use crate::stats::Summary;
use crate::{kernel_image, Error, Result};

/// The component, in text form (compiled when the bench runs).
pub const SOURCE: &str = include_str!("../../../benches/calls/calls.wat");

/// The call kinds: export, what one call is.
pub const KINDS: [(&str, &str); 3] = [
    ("run-noop", "sync func() -> ()"),
    ("run-len", "sync func(string) -> u32, 16-byte string"),
    (
        "run-async",
        "async func(string) -> u32, async lower, returns at once",
    ),
];

pub const DEFAULT_RUNS: u32 = 7;
pub const DEFAULT_CALLS: u32 = 200_000;

pub struct BenchCalls {
    pub runs: u32,
    pub calls: u32,
    pub install_peer: bool,
}

#[derive(Serialize)]
struct KindReport {
    export: &'static str,
    call: &'static str,
    /// ns per call, one sample per run.
    ringos_ns: Vec<f64>,
    ringos: Option<Summary>,
    wasmtime_ns: Vec<f64>,
    wasmtime: Option<Summary>,
    /// wasmtime median / ringos median (> 1: ringos is faster).
    speedup: Option<f64>,
}

#[derive(Serialize)]
struct Report {
    unix_time: u64,
    runs: u32,
    calls: u32,
    method: &'static str,
    wasmtime: Option<String>,
    kinds: Vec<KindReport>,
}

fn failed(message: String) -> Error {
    Error::Failed {
        message,
        exit_code: 1,
    }
}

/// The component binary.
pub fn component() -> Result<Vec<u8>> {
    let buf = wast::parser::ParseBuffer::new(SOURCE).map_err(|e| failed(e.to_string()))?;
    let mut wat: wast::Wat = wast::parser::parse(&buf).map_err(|e| failed(e.to_string()))?;
    wat.encode().map_err(|e| failed(e.to_string()))
}

/// ns per call of each kind in this process, `runs` samples each.
fn measure_ringos(bytes: Vec<u8>, runs: u32, calls: u32) -> Result<Vec<Vec<f64>>> {
    let work = move || -> std::result::Result<Vec<Vec<f64>>, String> {
        let c = Component::new(&HOSTED, &bytes).map_err(|e| e.to_string())?;
        let mut store = ComponentStore::new(&HOSTED);
        let exports = store
            .instantiate(&c, &Default::default())
            .map_err(|e| e.to_string())?;
        let mut all = Vec::new();
        for (export, _) in KINDS {
            let Some(Item::Func(f)) = exports.get(export) else {
                return Err(format!("no export {export}"));
            };
            // Warm up (first-call paths, caches).
            store
                .call(f, &[Value::U32(calls / 10)])
                .map_err(|e| e.to_string())?;
            let mut samples = Vec::new();
            for _ in 0..runs {
                let t = Instant::now();
                store
                    .call(f, &[Value::U32(calls)])
                    .map_err(|e| e.to_string())?;
                samples.push(t.elapsed().as_nanos() as f64 / f64::from(calls));
            }
            all.push(samples);
        }
        Ok(all)
    };
    std::thread::Builder::new()
        .stack_size(32 << 20)
        .spawn(work)
        .map_err(|e| Error::Io(e.to_string()))?
        .join()
        .map_err(|_| failed("ringos measurement panicked".into()))?
        .map_err(failed)
}

/// Seconds of one `wasmtime run --invoke 'export(n)'`.
fn wasmtime_once(wasmtime: &Path, file: &Path, export: &str, n: u32) -> Result<f64> {
    let t = Instant::now();
    let out = Command::new(wasmtime)
        .args(["run", "-W", "component-model-async=y", "--invoke"])
        .arg(format!("{export}({n})"))
        .arg(file)
        .output()
        .map_err(|e| Error::Io(format!("{}: {e}", wasmtime.display())))?;
    let secs = t.elapsed().as_secs_f64();
    if !out.status.success() {
        return Err(failed(format!(
            "wasmtime {export}({n}) failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(secs)
}

fn measure_wasmtime(wasmtime: &Path, file: &Path, runs: u32, calls: u32) -> Result<Vec<Vec<f64>>> {
    let mut all = Vec::new();
    for (export, _) in KINDS {
        let mut samples = Vec::new();
        for _ in 0..runs {
            let full = wasmtime_once(wasmtime, file, export, calls)?;
            let empty = wasmtime_once(wasmtime, file, export, 0)?;
            samples.push(((full - empty) * 1e9 / f64::from(calls)).max(0.0));
        }
        all.push(samples);
    }
    Ok(all)
}

pub fn bench_calls(cfg: &BenchCalls) -> Result<i32> {
    let root = kernel_image::root();
    if cfg!(debug_assertions) {
        eprintln!("bench calls: warning: a debug build of ringos; use a release build");
    }
    let bytes = component()?;
    let file: PathBuf = probe::bench_path(&root, "calls.wasm");
    if let Some(d) = file.parent() {
        std::fs::create_dir_all(d).map_err(|e| Error::Io(e.to_string()))?;
    }
    std::fs::write(&file, &bytes).map_err(|e| Error::Io(e.to_string()))?;
    let wasmtime = find_wasmtime(&root, cfg.install_peer)?;
    eprintln!(
        "bench calls: {} runs x {} calls per kind, ringos in-process",
        cfg.runs, cfg.calls
    );
    let ringos = measure_ringos(bytes, cfg.runs, cfg.calls)?;
    let peer = match &wasmtime {
        Ok(w) => {
            eprintln!("bench calls: wasmtime {}", w.display());
            Some(measure_wasmtime(w, &file, cfg.runs, cfg.calls)?)
        }
        Err(why) => {
            eprintln!("bench calls: {why}; measuring ringos only");
            None
        }
    };
    let mut kinds = Vec::new();
    let mut table = Table::new(
        &[
            "call",
            "ringos ns (median / p99)",
            "wasmtime ns (median / p99)",
            "wasmtime/ringos",
        ],
        1,
    );
    for (i, (export, call)) in KINDS.iter().enumerate() {
        let r = Summary::of(&ringos[i]);
        let w_ns = peer.as_ref().map(|p| p[i].clone()).unwrap_or_default();
        let w = Summary::of(&w_ns);
        let speedup = match (r, w) {
            (Some(r), Some(w)) if r.median > 0.0 => Some(w.median / r.median),
            _ => None,
        };
        let cell = |s: Option<Summary>| {
            s.map_or("-".into(), |s| format!("{:.0} / {:.0}", s.median, s.p99))
        };
        table.row(vec![
            format!("{export}: {call}"),
            cell(r),
            cell(w),
            speedup.map_or("-".into(), |x| format!("{x:.2}x")),
        ]);
        kinds.push(KindReport {
            export,
            call,
            ringos_ns: ringos[i].clone(),
            ringos: r,
            wasmtime_ns: w_ns,
            wasmtime: w,
            speedup,
        });
    }
    print!("{}", table.render());
    let report = Report {
        unix_time: probe::unix_time(),
        runs: cfg.runs,
        calls: cfg.calls,
        method: "ns per call = run time of run-X(n) / n; wasmtime: (t(n) - t(0)) / n of \
                 `wasmtime run --invoke` (cancels process start-up and compilation)",
        wasmtime: wasmtime.ok().map(|p| p.display().to_string()),
        kinds,
    };
    let path = probe::bench_path(&root, "calls.json");
    probe::write_json(&path, &report)?;
    eprintln!("bench calls: results written to {}", path.display());
    Ok(0)
}
