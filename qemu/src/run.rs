//! `ringos run`: a WASI 0.3 command component as a VM. The CLI embeds the
//! component (and any providers) in a copy of the kernel image, boots it,
//! and writes what the component wrote to `wasi:cli/stdout` / `stderr` to
//! its own stdout / stderr; kernel logs only with `-v`. `--hosted` runs the
//! same in this process instead (no VM).

use std::io::Write;
use std::path::{Path, PathBuf};

use ringos_proto::{cmdline, marker, output, payload};

use crate::hosted_run::{self, Echo};
use crate::{image, kernel_image, Console, Error, Machine, Result, VmConfig};

/// What to run and how.
pub struct RunConfig {
    pub app: PathBuf,
    /// Components whose exports the app imports, instantiated first.
    pub with: Vec<PathBuf>,
    /// `wasi:cli/environment` arguments and variables.
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub machine: Machine,
    pub mem_mib: u32,
    pub timeout: std::time::Duration,
    pub verbose: bool,
    pub hosted: bool,
    /// Devices for the VM (the kernel discovers them; components reach
    /// them through ringos interfaces as those land).
    pub disk: Option<PathBuf>,
    pub net: Option<crate::Net>,
    pub accel: crate::Accel,
    /// Run QEMU on this one host CPU (`--pin`; not with `hosted`).
    pub pin_cpu: Option<usize>,
    /// The component's `wasi:cli/stdin`.
    pub stdin: crate::Stdin,
}

/// A component file's binary: `.wasm` as it is, or the text format
/// (`.wat`: anything not starting with the `\0asm` magic) encoded.
pub fn read(p: &Path) -> Result<Vec<u8>> {
    let bytes =
        std::fs::read(p).map_err(|e| Error::CannotStart(format!("{}: {e}", p.display())))?;
    if bytes.starts_with(b"\0asm") {
        return Ok(bytes);
    }
    let Ok(text) = std::str::from_utf8(&bytes) else {
        return Ok(bytes); // neither: `check` says what it is not
    };
    // A bad component: refused like an invalid binary (status 1).
    let refuse = |e: String| Error::Failed {
        message: format!("{}: {e}", p.display()),
        exit_code: 1,
    };
    if !looks_like_wat(text) {
        return Err(refuse(
            "not WebAssembly: a component is a binary starting with `\\0asm` (.wasm) \
             or text starting with `(` (.wat)"
                .into(),
        ));
    }
    from_text(text).map_err(refuse)
}

/// Whether `text` starts, after blanks and comments, with `(`: the text
/// format's first token. Anything else (a README, a script) is not worth
/// a parser's error at 1:1.
fn looks_like_wat(text: &str) -> bool {
    let mut rest = text;
    loop {
        rest = rest.trim_start();
        if let Some(line) = rest.strip_prefix(";;") {
            rest = line.split_once('\n').map_or("", |(_, r)| r);
        } else if let Some(block) = rest.strip_prefix("(;") {
            // An unclosed block comment: the parser says so.
            let Some((_, r)) = block.split_once(";)") else {
                return true;
            };
            rest = r;
        } else {
            return rest.starts_with('(');
        }
    }
}

/// Encodes a component (or module) in the text format.
pub fn from_text(text: &str) -> std::result::Result<Vec<u8>, String> {
    let fail = |mut e: wast::Error| {
        e.set_text(text);
        format!("not a valid text component: {e}")
    };
    let buf = wast::parser::ParseBuffer::new(text).map_err(fail)?;
    let mut wat: wast::Wat = wast::parser::parse(&buf).map_err(fail)?;
    wat.encode().map_err(fail)
}

/// The kernel image with the components embedded: providers first, the
/// app last (the kernel runs the last `COMPONENT` entry).
pub fn image_with(app: &[u8], with: &[Vec<u8>], verbose: bool) -> Result<PathBuf> {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let out = kernel_image::target_dir(&kernel_image::root())
        .join("run")
        .join(format!("ringos-app-{}-{n}.elf", std::process::id()));
    write_image(app, with, &[], &[], verbose, &out)
}

/// Writes the kernel image with the components, arguments and
/// environment embedded to `out` (the kernel is not rebuilt: the payload
/// is a new segment).
pub fn write_image(
    app: &[u8],
    with: &[Vec<u8>],
    args: &[String],
    env: &[(String, String)],
    verbose: bool,
    out: &Path,
) -> Result<PathBuf> {
    let kernel = kernel_image::build(verbose)?;
    let args_b = args.join("\0").into_bytes();
    let env_b = env
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("\0")
        .into_bytes();
    let mut entries: Vec<(u32, &[u8])> =
        with.iter().map(|b| (payload::COMPONENT, &b[..])).collect();
    entries.push((payload::COMPONENT, app));
    if !args.is_empty() {
        entries.push((payload::ARGS, &args_b));
    }
    if !env.is_empty() {
        entries.push((payload::ENV, &env_b));
    }
    let container = image::container(entries);
    image::write(&kernel, &container, out)
}

/// Refuses a component ringos cannot run, before any VM starts: not a
/// component, invalid, or importing what neither ringos's WASI nor a
/// provider gives (checked by instantiating it on the host, without
/// running it).
pub fn check(app: &[u8], with: &[Vec<u8>]) -> std::result::Result<(), String> {
    let (app, with) = (app.to_vec(), with.to_vec());
    std::thread::Builder::new()
        .stack_size(32 << 20)
        .spawn(move || hosted_run::instantiate_only(&app, &with))
        .map_err(|e| e.to_string())?
        .join()
        .map_err(|_| "checking the component panicked".to_string())?
}

/// What a component printed in a VM, split from the kernel's lines.
#[derive(Debug, Default)]
pub struct VmOutput {
    /// The component's output as text (lossy where it is not UTF-8).
    pub stdout: String,
    pub stderr: String,
    /// The same, the bytes exactly as the component wrote them.
    pub stdout_bytes: Vec<u8>,
    pub stderr_bytes: Vec<u8>,
    /// `component: ...` lines (load, link, trap errors).
    pub component: Vec<String>,
    pub run: Option<crate::VmRun>,
}

/// Boots `image`, routing lines as they arrive: app output to `out`/`err`
/// (if given), the rest kept.
pub fn boot_component(
    image: &Path,
    cfg: &RunConfig,
    mut live: Option<&mut dyn FnMut(&str)>,
) -> Result<VmOutput> {
    let mut vm = VmConfig::new(image);
    vm.machine = cfg.machine;
    vm.mem_mib = cfg.mem_mib;
    vm.timeout = cfg.timeout;
    vm.verbose = cfg.verbose;
    vm.disk = cfg.disk.clone();
    vm.net = cfg.net.clone();
    vm.accel = cfg.accel;
    vm.pin_cpu = cfg.pin_cpu;
    vm.stdin = cfg.stdin.clone();
    // The guest interrupts the component shortly before QEMU would be
    // killed, so a runaway component ends with a clear trap.
    let t = cfg.timeout.as_millis() as u64;
    let wasm_ms = if t > 4000 { t - 2000 } else { t / 2 };
    let epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    vm.append = format!(
        "{}={wasm_ms} {}={epoch}",
        cmdline::WASM_TIMEOUT,
        cmdline::EPOCH
    );
    if cfg.stdin != crate::Stdin::Empty {
        vm.append = format!("{} {}=1", vm.append, cmdline::STDIN);
    }
    let mut running = crate::vm::spawn(&vm, Console::Capture)?;
    let mut o = VmOutput::default();
    while let Some(l) = running.next_console_line() {
        if let Some(s) = l.strip_prefix(marker::STDOUT) {
            output::decode(s, |b| o.stdout_bytes.extend_from_slice(b));
        } else if let Some(s) = l.strip_prefix(marker::STDERR) {
            output::decode(s, |b| o.stderr_bytes.extend_from_slice(b));
        } else if let Some(s) = l.strip_prefix(marker::COMPONENT) {
            o.component.push(s.to_string());
        }
        if let Some(f) = live.as_mut() {
            f(&l);
        }
    }
    o.stdout = String::from_utf8_lossy(&o.stdout_bytes).into_owned();
    o.stderr = String::from_utf8_lossy(&o.stderr_bytes).into_owned();
    o.run = Some(running.finish()?);
    Ok(o)
}

/// `ringos run`; the exit status (the component's: 0 when `run` returned
/// ok).
pub fn run(cfg: &RunConfig) -> Result<i32> {
    if cfg.hosted && cfg.pin_cpu.is_some() {
        return Err(Error::CannotStart(
            "--pin places QEMU's threads; --hosted runs the component in this process, \
             with no QEMU (use taskset for that)"
                .into(),
        ));
    }
    let app = read(&cfg.app)?;
    let with: Vec<Vec<u8>> = cfg.with.iter().map(|p| read(p)).collect::<Result<_>>()?;
    if cfg.hosted {
        return match hosted_run::run_with_disk(
            &app,
            &with,
            &cfg.args,
            &cfg.env,
            Echo::Through,
            Some(cfg.timeout),
            cfg.disk.as_deref(),
            match &cfg.stdin {
                crate::Stdin::Empty => None,
                crate::Stdin::Inherit => Some(Box::new(hosted_run::ProcessStdin::default())),
                crate::Stdin::Bytes(b) => Some(Box::new(ringos_runtime::wasi::Bytes::new(b))),
            },
        ) {
            Ok(o) => {
                if cfg.verbose {
                    // After the component's own output, not inside it.
                    let _ = std::io::Write::flush(&mut std::io::stdout());
                    eprintln!(
                        "ringos: hosted: validated, JIT-compiled and instantiated in {:.3} ms; \
                         wasi:cli/run ended after {:.3} ms",
                        o.start_time.as_secs_f64() * 1e3,
                        o.run_time.as_secs_f64() * 1e3
                    );
                }
                Ok(i32::from(o.status))
            }
            Err(e) => {
                eprintln!("ringos: {e}");
                Ok(1)
            }
        };
    }
    if let Err(why) = check(&app, &with) {
        eprintln!("ringos: {}: {why}", cfg.app.display());
        return Ok(1);
    }
    let out = kernel_image::target_dir(&kernel_image::root())
        .join("run")
        .join(format!("ringos-app-{}.elf", std::process::id()));
    let image = write_image(&app, &with, &cfg.args, &cfg.env, cfg.verbose, &out)?;
    let r = boot_image(&image, cfg);
    let _ = std::fs::remove_file(&image);
    r
}

/// Boots an app image, its output on ours (kernel lines with `-v`); the
/// component's exit status.
pub fn boot_image(image: &Path, cfg: &RunConfig) -> Result<i32> {
    let verbose = cfg.verbose;
    // The component's bytes as it wrote them; a closed stdout (`| head`)
    // must not end the VM.
    let mut route = |l: &str| {
        if let Some(s) = l.strip_prefix(marker::STDOUT) {
            let mut o = std::io::stdout().lock();
            output::decode(s, |b| {
                let _ = o.write_all(b);
            });
            let _ = o.flush();
        } else if let Some(s) = l.strip_prefix(marker::STDERR) {
            let mut e = std::io::stderr().lock();
            output::decode(s, |b| {
                let _ = e.write_all(b);
            });
        } else if let Some(s) = l.strip_prefix(marker::COMPONENT) {
            eprintln!("ringos: component: {s}");
        } else if verbose {
            eprintln!("  | {l}");
        }
    };
    let run = boot_component(image, cfg, Some(&mut route))?
        .run
        .ok_or_else(|| Error::Io("no VM run".into()))?;
    if let Some(msg) = run.outcome.message(cfg.timeout) {
        if !run.outcome.is_success() {
            eprintln!("ringos: {msg}");
        }
    }
    Ok(run.outcome.exit_code())
}
