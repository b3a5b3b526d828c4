//! `ringos wast`: runs spec-format `.wast` scripts against the hosted runtime.

use std::path::{Path, PathBuf};

use ringos_runtime::hosted::HOSTED;
use ringos_runtime::script::{self, Arg, Command, Exec, Invoke, Located, Pattern};
use wast::core::{AbstractHeapType, HeapType, NanPattern, WastArgCore, WastRetCore};
use wast::lexer::Lexer;
use wast::parser::{self, ParseBuffer};
use wast::{QuoteWat, Wast, WastArg, WastDirective, WastExecute, WastInvoke, WastRet};

pub use ringos_runtime::script::Tally;

#[path = "wast_component.rs"]
mod component;

/// Stack a script's Wasm may use; the runner thread gets twice that.
const WASM_STACK: usize = 8 << 20;

/// Failures a checked-in list expects (`dir/file.wast:line` per line,
/// `#` comments); the list may only shrink: an entry that passes is an
/// error, so it gets removed.
#[derive(Default)]
pub struct Known {
    entries: Vec<String>,
}

impl Known {
    pub fn load(path: &Path) -> Result<Known, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Known {
            entries: text
                .lines()
                .map(|l| l.split('#').next().unwrap_or("").trim())
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect(),
        })
    }

    /// The entries for file `f` (matched by path suffix), as line numbers.
    fn lines_for(&self, f: &Path) -> Vec<u32> {
        let p = f.to_string_lossy();
        self.entries
            .iter()
            .filter_map(|e| {
                let (file, line) = e.rsplit_once(':')?;
                p.ends_with(file).then(|| line.parse().ok()).flatten()
            })
            .collect()
    }
}

/// Runs every file, prints one line each and the totals; the exit status.
pub fn run(files: &[PathBuf], verbose: bool, known: &Known) -> i32 {
    let mut total = Tally::default();
    let mut skipped = 0;
    let (mut known_hit, mut stale) = (0u32, Vec::new());
    for f in files {
        if let Some(entry) = skip_entry(f) {
            println!("{}: skipped (skip list: {entry})", f.display());
            skipped += 1;
            continue;
        }
        let expected = known.lines_for(f);
        let t = match run_hosted(f, verbose, &expected) {
            Ok((mut t, hit)) => {
                // Expected failures are reported, not counted as failed.
                t.failed -= hit.len() as u32;
                known_hit += hit.len() as u32;
                for l in expected.iter().filter(|l| !hit.contains(l)) {
                    stale.push(format!("{}:{l}", f.display()));
                }
                t
            }
            Err(e) => {
                println!("{}: {e}", f.display());
                Tally {
                    passed: 0,
                    failed: 1,
                    skipped: 0,
                }
            }
        };
        println!("{}: {}", f.display(), counts(&t));
        total += t;
    }
    if skipped > 0 {
        println!("{skipped} files skipped");
    }
    for s in &stale {
        println!("{s}: listed as a known failure but passes: remove it from the list");
    }
    let mut line = counts(&total);
    if known_hit > 0 {
        line += &format!(" ({known_hit} known failures listed, not counted)");
    }
    println!("{line}");
    i32::from(total.failed > 0 || !stale.is_empty())
}

/// `N passed, N failed` (and `, N skipped` when directives were).
fn counts(t: &Tally) -> String {
    let mut s = format!("{} passed, {} failed", t.passed, t.failed);
    if t.skipped > 0 {
        s += &format!(
            ", {} skipped (need a proposal off in WASI 0.3.0)",
            t.skipped
        );
    }
    s
}

/// Files skipped by name: component-model files that need features off by
/// default in WASI 0.3.0 (one name a line, `#` comments, `*` suffix = prefix).
const SKIP_LIST: &str = include_str!("../../tests/conformance/component-model-skip.txt");

/// The skip-list entry naming `f`, if any.
fn skip_entry(f: &Path) -> Option<&'static str> {
    let name = f.file_name()?.to_str()?;
    SKIP_LIST
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .find(|l| match l.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => name == *l,
        })
}

/// Runs one file on the hosted runtime, on a thread with room for
/// `WASM_STACK`; `Err` says why the file could not run at all.
/// Also returns which of the `expected` failure lines did fail.
pub fn run_hosted(
    path: &Path,
    verbose: bool,
    expected: &[u32],
) -> Result<(Tally, Vec<u32>), String> {
    let path = path.to_path_buf();
    let expected = expected.to_vec();
    let r = std::thread::Builder::new()
        .stack_size(2 * WASM_STACK + (8 << 20))
        .spawn(move || run_file(&path, verbose, &expected))
        .expect("spawn runner thread")
        .join();
    match r {
        Ok(Ok(t)) => Ok(t),
        Ok(Err(e)) => Err(format!("error: {e}")),
        Err(_) => Err("runner panicked".into()),
    }
}

fn run_file(path: &Path, verbose: bool, expected: &[u32]) -> Result<(Tally, Vec<u32>), String> {
    let bundle = bundle_file(path)?;
    let mut hit = Vec::new();
    let mut on_failure = |line: u32, col: u32, why: &str| {
        let known = !why.starts_with("skipped: ") && expected.contains(&line);
        if known {
            hit.push(line);
        }
        if verbose {
            let tag = if known { " (known failure)" } else { "" };
            println!("  {}:{line}:{col}: {why}{tag}", path.display());
        }
    };
    let t = script::run(&HOSTED, &bundle, WASM_STACK, &mut on_failure)
        .map_err(|_| "malformed bundle".to_string())?;
    Ok((t, hit))
}

/// Parses a `.wast` file into a spec bundle (`ringos_runtime::script`).
pub fn bundle_file(path: &Path) -> Result<Vec<u8>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    // names.wast uses bidi and other "confusing" characters on purpose.
    let mut lexer = Lexer::new(&text);
    lexer.allow_confusing_unicode(true);
    let buf = ParseBuffer::new_with_lexer(lexer).map_err(|e| e.to_string())?;
    let script = parser::parse::<Wast>(&buf).map_err(|mut e| {
        e.set_path(path);
        e.set_text(&text);
        e.to_string()
    })?;
    let mut components = component::Components::default();
    let cmds: Vec<Located> = script
        .directives
        .into_iter()
        .filter_map(|d| {
            let (line, col) = d.span().linecol_in(&text);
            let cmd = match components.directive(d) {
                Ok(Some(c)) => c,
                Ok(None) => return None,
                Err(d) => command(*d).unwrap_or_else(Command::Fail),
            };
            Some(Located {
                line: line as u32 + 1,
                col: col as u32 + 1,
                cmd,
            })
        })
        .collect();
    Ok(script::encode(&cmds))
}

type R<T = ()> = Result<T, String>;

/// One directive as a bundle command; `Err` becomes a failing command.
fn command(d: WastDirective<'_>) -> R<Command> {
    Ok(match d {
        WastDirective::Module(mut q) => Command::Module {
            name: q.name().map(|i| i.name().to_string()),
            bytes: encode(&mut q)?,
        },
        WastDirective::ModuleDefinition(mut q) => Command::Definition {
            name: q.name().map(|i| i.name().to_string()).unwrap_or_default(),
            bytes: encode(&mut q)?,
        },
        WastDirective::ModuleInstance {
            instance, module, ..
        } => Command::Instance {
            instance: instance.map(|n| n.name().to_string()),
            module: module.map(|m| m.name().to_string()).unwrap_or_default(),
        },
        WastDirective::Register { name, module, .. } => Command::Register {
            name: name.to_string(),
            module: module.map(|m| m.name().to_string()),
        },
        WastDirective::Invoke(i) => Command::Invoke(invoke(&i)),
        WastDirective::AssertReturn { exec, results, .. } => Command::AssertReturn {
            exec: execute(exec)?,
            results: results
                .iter()
                .map(|r| match r {
                    WastRet::Core(w) => pattern(w),
                    _ => Pattern::Never("component values".into()),
                })
                .collect(),
        },
        WastDirective::AssertTrap { exec, message, .. } => Command::AssertTrap {
            exec: execute(exec)?,
            message: message.to_string(),
        },
        WastDirective::AssertException { exec, .. } => Command::AssertException {
            exec: execute(exec)?,
        },
        WastDirective::AssertExhaustion { call, message, .. } => Command::AssertExhaustion {
            invoke: invoke(&call),
            message: message.to_string(),
        },
        WastDirective::AssertInvalid {
            mut module,
            message,
            ..
        } => Command::AssertInvalid {
            bytes: encode(&mut module)?,
            message: message.to_string(),
        },
        WastDirective::AssertMalformed {
            mut module,
            message,
            ..
        } => match module.encode() {
            // Text that does not even encode is malformed enough.
            Err(_) => Command::Pass,
            Ok(bytes) => Command::AssertMalformed {
                bytes,
                message: message.to_string(),
            },
        },
        WastDirective::AssertUnlinkable {
            mut module,
            message,
            ..
        } => Command::AssertUnlinkable {
            bytes: module.encode().map_err(|e| e.to_string())?,
            message: message.to_string(),
        },
        _ => return Err("directive not supported".into()),
    })
}

fn execute(exec: WastExecute<'_>) -> R<Exec> {
    Ok(match exec {
        WastExecute::Invoke(i) => Exec::Invoke(invoke(&i)),
        WastExecute::Wat(mut w) => Exec::Module(w.encode().map_err(|e| e.to_string())?),
        WastExecute::Get { module, global, .. } => Exec::Get {
            module: module.map(|m| m.name().to_string()),
            global: global.to_string(),
        },
    })
}

fn invoke(i: &WastInvoke<'_>) -> Invoke {
    Invoke {
        module: i.module.map(|m| m.name().to_string()),
        name: i.name.to_string(),
        args: i
            .args
            .iter()
            .map(|a| match a {
                WastArg::Core(WastArgCore::I32(v)) => Arg::I32(*v),
                WastArg::Core(WastArgCore::I64(v)) => Arg::I64(*v),
                WastArg::Core(WastArgCore::F32(v)) => Arg::F32(v.bits),
                WastArg::Core(WastArgCore::F64(v)) => Arg::F64(v.bits),
                WastArg::Core(WastArgCore::RefNull(_)) => Arg::RefNull,
                WastArg::Core(WastArgCore::RefExtern(n)) => Arg::RefExtern(*n),
                _ => Arg::Unsupported,
            })
            .collect(),
    }
}

fn encode(q: &mut QuoteWat<'_>) -> R<Vec<u8>> {
    q.encode().map_err(|e| e.to_string())
}

fn pattern(want: &WastRetCore<'_>) -> Pattern {
    match want {
        WastRetCore::I32(w) => Pattern::I32(*w),
        WastRetCore::I64(w) => Pattern::I64(*w),
        WastRetCore::F32(NanPattern::Value(w)) => Pattern::F32(w.bits),
        WastRetCore::F32(NanPattern::CanonicalNan) => Pattern::F32CanonicalNan,
        WastRetCore::F32(NanPattern::ArithmeticNan) => Pattern::F32ArithmeticNan,
        WastRetCore::F64(NanPattern::Value(w)) => Pattern::F64(w.bits),
        WastRetCore::F64(NanPattern::CanonicalNan) => Pattern::F64CanonicalNan,
        WastRetCore::F64(NanPattern::ArithmeticNan) => Pattern::F64ArithmeticNan,
        // The host sees an exnref as a raw reference: any null matches.
        WastRetCore::RefNull(Some(h)) if is_exn_heap(h) => Pattern::RefNull(None),
        WastRetCore::RefNull(ty) => Pattern::RefNull(ty.as_ref().map(is_extern_heap)),
        WastRetCore::RefExtern(n) => Pattern::RefExtern(*n),
        WastRetCore::RefFunc(_) => Pattern::RefFunc,
        WastRetCore::Either(alts) => Pattern::Either(alts.iter().map(pattern).collect()),
        WastRetCore::V128(_) => Pattern::Never("v128 results".into()),
        other => Pattern::Never(format!("unsupported result {other:?}")),
    }
}

fn is_exn_heap(h: &HeapType<'_>) -> bool {
    matches!(
        h,
        HeapType::Abstract {
            ty: AbstractHeapType::Exn | AbstractHeapType::NoExn,
            ..
        }
    )
}

fn is_extern_heap(h: &HeapType<'_>) -> bool {
    matches!(
        h,
        HeapType::Abstract {
            ty: AbstractHeapType::Extern | AbstractHeapType::NoExtern,
            ..
        }
    )
}

/// `ringos wast --guest`: what to boot.
pub struct GuestConfig {
    pub machine: crate::Machine,
    pub mem_mib: u32,
    pub timeout: std::time::Duration,
    pub verbose: bool,
}

/// A guest spec run: the per-file and total counts the guest printed.
pub struct GuestRun {
    pub files: Vec<(String, Tally)>,
    pub total: Option<Tally>,
    /// Files the host could not even turn into bundles (name, why).
    pub host_errors: Vec<(String, String)>,
    pub vm: crate::VmRun,
}

/// Parses `wasm-spec: <name>: N passed, N failed`.
pub fn parse_guest_line(line: &str) -> Option<(&str, Tally)> {
    let rest = line.strip_prefix(ringos_proto::marker::WASM_SPEC)?;
    let (name, counts) = rest.rsplit_once(": ")?;
    let (p, f) = counts.split_once(" passed, ")?;
    let f = f.strip_suffix(" failed")?;
    Some((
        name,
        Tally {
            passed: p.parse().ok()?,
            failed: f.parse().ok()?,
            skipped: 0,
        },
    ))
}

/// Builds the bundles of `files`, embeds them in a copy of the kernel image
/// under the target directory and returns its path, with the files that
/// failed on the host.
pub fn guest_image(files: &[PathBuf]) -> crate::Result<(PathBuf, Vec<(String, String)>)> {
    use ringos_proto::payload::SPEC_BUNDLE;
    let kernel = crate::kernel_image::build(false)?;
    let mut entries = Vec::new();
    let mut errors = Vec::new();
    for f in files {
        let name = f.display().to_string();
        match bundle_file(f) {
            Ok(b) => entries.push(crate::image::spec_bundle_entry(&name, &b)),
            Err(e) => errors.push((name, e)),
        }
    }
    let container = crate::image::container(entries.iter().map(|e| (SPEC_BUNDLE, &e[..])));
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let out = crate::kernel_image::target_dir(&crate::kernel_image::root())
        .join("wasm-spec")
        .join(format!("ringos-kernel-{}-{n}.elf", std::process::id()));
    Ok((crate::image::write(&kernel, &container, &out)?, errors))
}

/// Boots the kernel with `files` as spec bundles (`test=wasm-spec`).
pub fn run_guest_files(files: &[PathBuf], cfg: &GuestConfig) -> crate::Result<GuestRun> {
    let (image, host_errors) = guest_image(files)?;
    let mut vm = crate::VmConfig::new(&image);
    vm.machine = cfg.machine;
    vm.mem_mib = cfg.mem_mib;
    vm.timeout = cfg.timeout;
    vm.verbose = cfg.verbose;
    vm.append = format!(
        "{}={}",
        ringos_proto::cmdline::TEST,
        ringos_proto::selftest::WASM_SPEC
    );
    let run = crate::run(&vm, crate::Console::Capture);
    let _ = std::fs::remove_file(&image);
    let run = run?;
    let mut files = Vec::new();
    let mut total = None;
    for (_, l) in &run.lines {
        if let Some((name, t)) = parse_guest_line(l) {
            if name == ringos_proto::marker::WASM_SPEC_TOTAL {
                total = Some(t);
            } else {
                files.push((name.to_string(), t));
            }
        }
    }
    Ok(GuestRun {
        files,
        total,
        host_errors,
        vm: run,
    })
}

/// `ringos wast --guest`: prints the guest's per-file lines and the totals
/// in the hosted format; the exit status.
pub fn run_guest(files: &[PathBuf], cfg: &GuestConfig) -> crate::Result<i32> {
    let r = run_guest_files(files, cfg)?;
    let mut total = Tally::default();
    for (name, why) in &r.host_errors {
        println!("{name}: error: {why}");
        println!("{name}: 0 passed, 1 failed");
        total.failed += 1;
    }
    for (_, l) in &r.vm.lines {
        if let Some((name, t)) = parse_guest_line(l) {
            if name != ringos_proto::marker::WASM_SPEC_TOTAL {
                println!("{name}: {} passed, {} failed", t.passed, t.failed);
                total += t;
            }
        } else if cfg.verbose && l.starts_with("  ") {
            // The guest's failure details.
            println!("{l}");
        }
    }
    println!("{} passed, {} failed", total.passed, total.failed);
    if r.total.is_none() || !r.vm.outcome.is_success() {
        if let Some(msg) = r.vm.outcome.message(cfg.timeout) {
            eprintln!("ringos: {msg}");
        }
        for l in r.vm.tail(20) {
            eprintln!("  | {l}");
        }
        let code = r.vm.outcome.exit_code();
        return Ok(if code == 0 { 1 } else { code });
    }
    Ok(i32::from(total.failed > 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_lines_parse() {
        assert_eq!(
            parse_guest_line("wasm-spec: a/b: c.wast: 12 passed, 3 failed"),
            Some((
                "a/b: c.wast",
                Tally {
                    passed: 12,
                    failed: 3,
                    skipped: 0,
                }
            ))
        );
        assert_eq!(
            parse_guest_line("wasm-spec: total: 0 passed, 0 failed").map(|l| l.0),
            Some(ringos_proto::marker::WASM_SPEC_TOTAL)
        );
        assert_eq!(
            parse_guest_line("wasm-spec: x: many passed, 0 failed"),
            None
        );
        assert_eq!(parse_guest_line("  x:1:2: why"), None);
    }

    #[test]
    fn hosted_bundle_counts_assertions() {
        let dir = std::env::temp_dir().join(format!("ringos-wast-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("t.wast");
        std::fs::write(
            &f,
            r#"(module (func (export "f") (result i32) (i32.const 7)))
               (assert_return (invoke "f") (i32.const 7))
               (assert_return (invoke "f") (i32.const 8))
               (assert_malformed (module quote "(func") "unexpected end")
               (invoke "f")"#,
        )
        .unwrap();
        let (t, _) = run_hosted(&f, false, &[]).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(
            t,
            Tally {
                passed: 2,
                failed: 1,
                skipped: 0,
            }
        );
    }
}
