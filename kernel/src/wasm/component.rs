//! Runs the image's components: every `COMPONENT` entry of the payload
//! but the last is a provider (instantiated in order, its exports become
//! imports of the ones after), the last is the app, whose `wasi:cli/run`
//! is called. `wasi:cli/stdout` and `stderr` go to the console line by
//! line behind the `stdout: ` / `stderr: ` markers, so the host keeps the
//! app's output apart from kernel logs.

use alloc::boxed::Box;
use alloc::rc::Rc;
use alloc::vec::Vec;
use core::cell::RefCell;

use ringos_proto::{exit, input, marker, output, payload};
use ringos_runtime::blk;
use ringos_runtime::component::{ComponentStore, Value};
use ringos_runtime::wasi::{self, Cli};

use super::disk::VirtioDisk;
use crate::io::probe::BlkBaseline;
use crate::io::reactor::Reactor;

use super::KERNEL;
use crate::println;

/// Collects output bytes and prints complete lines behind a marker,
/// escaped ([`output`]) so the host gets the bytes exactly.
struct Lines {
    marker: &'static str,
    buf: Vec<u8>,
}

impl Lines {
    fn write(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        while let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
            self.print(&self.buf[..i], true);
            self.buf.drain(..=i);
        }
        // Output without newlines goes out in cut pieces: the kernel holds
        // no more than this of it.
        while self.buf.len() >= output::MAX_LINE {
            self.print(&self.buf[..output::MAX_LINE], false);
            self.buf.drain(..output::MAX_LINE);
        }
    }

    fn print(&self, bytes: &[u8], newline: bool) {
        let mut line = alloc::string::String::with_capacity(self.marker.len() + bytes.len() + 2);
        line.push_str(self.marker);
        // Writing to a String does not fail.
        let _ = output::encode(bytes, newline, &mut line);
        println!("{line}");
    }

    /// A last piece without its newline.
    fn flush(&mut self) {
        if !self.buf.is_empty() {
            let rest = core::mem::take(&mut self.buf);
            self.print(&rest, false);
        }
    }
}

/// The kernel's clocks and randomness for WASI, and how the loop idles.
struct KernelSystem {
    /// ns since 1970 at boot (`epoch=`), if the host said.
    epoch_ns: u64,
    disk: Rc<VirtioDisk>,
}

impl wasi::System for KernelSystem {
    fn monotonic_ns(&self) -> u64 {
        crate::count_marks::component_clock();
        crate::time::now_ns()
    }
    fn wall(&self) -> (i64, u32) {
        let t = self.epoch_ns.saturating_add(crate::time::now_ns());
        ((t / 1_000_000_000) as i64, (t % 1_000_000_000) as u32)
    }
    fn random(&self, buf: &mut [u8]) -> Result<(), alloc::string::String> {
        if !crate::arch::cpu::has_rdrand() {
            return Err("wasi:random: this CPU has no RDRAND (try -cpu max)".into());
        }
        for chunk in buf.chunks_mut(8) {
            let v = crate::arch::cpu::rdrand64()
                .ok_or("wasi:random: RDRAND kept failing (no entropy)")?;
            chunk.copy_from_slice(&v.to_le_bytes()[..chunk.len()]);
        }
        Ok(())
    }
}

/// The host's stdin as the serial port receives it (`stdin=1`), unframed
/// (`ringos_proto::input`). Clones share the state: each run of the app
/// gets one, and the input's end stays seen.
#[derive(Clone, Default)]
struct SerialInput {
    decoder: Rc<RefCell<input::Decoder>>,
    ended: Rc<core::cell::Cell<bool>>,
}

impl wasi::Input for SerialInput {
    fn read(&self, buf: &mut [u8]) -> wasi::Received {
        let mut n = 0;
        let mut decoder = self.decoder.borrow_mut();
        while n < buf.len() && !self.ended.get() {
            let Some(b) = crate::console::read_byte() else {
                break;
            };
            match decoder.feed(b) {
                input::Unframed::Byte(b) => {
                    buf[n] = b;
                    n += 1;
                }
                input::Unframed::Nothing => {}
                input::Unframed::End => self.ended.set(true),
            }
        }
        match (n, self.ended.get()) {
            (1.., _) => wasi::Received::Bytes(n),
            (0, true) => wasi::Received::End,
            (0, false) => wasi::Received::Nothing,
        }
    }

    fn wanted(&self, waiting: bool) {
        crate::console::set_input_wanted(waiting);
    }
}

/// How long the loop halts at most while a read of stdin waits: bytes
/// whose interrupt is not routed are still seen.
const INPUT_POLL_NS: u64 = 10_000_000;

impl ringos_runtime::component::Waiter for KernelSystem {
    fn now_ns(&self) -> u64 {
        crate::time::now_ns()
    }
    /// Halts until the deadline or a device interrupt (the loop has
    /// nothing else to do), or the watchdog's deadline if sooner: the
    /// loop then sees the store interrupted. The watchdog's timer is armed
    /// again after if the wait took it.
    fn wait(&self, deadline_ns: Option<u64>) {
        let input_poll = crate::console::input_wanted()
            .then(|| crate::time::now_ns().saturating_add(INPUT_POLL_NS));
        let deadline_ns = deadline_ns
            .into_iter()
            .chain(super::watchdog::deadline())
            .chain(input_poll)
            .min();
        self.disk.wait(deadline_ns);
        super::watchdog::rearm();
    }
}

fn sink(lines: &Rc<RefCell<Lines>>) -> wasi::Sink {
    let lines = lines.clone();
    Rc::new(RefCell::new(move |b: &[u8]| lines.borrow_mut().write(b)))
}

/// The components of the payload, providers first, the app last.
fn components() -> Vec<&'static [u8]> {
    crate::payload::entries()
        .filter(|e| e.kind == payload::COMPONENT)
        .map(|e| e.bytes)
        .collect()
}

/// The NUL-separated strings of the payload's `kind` entry.
fn strings(kind: u32) -> Vec<alloc::string::String> {
    crate::payload::entries()
        .filter(|e| e.kind == kind)
        .flat_map(|e| e.bytes.split(|b| *b == 0))
        .filter(|s| !s.is_empty())
        .map(|s| alloc::string::String::from_utf8_lossy(s).into_owned())
        .collect()
}

/// Whether the image carries a component to run.
pub fn present() -> bool {
    !components().is_empty()
}

/// Runs the image's app on the reactor's devices; returns its exit status.
/// `rounds`: runs of the app (`blk-rounds=`, for `ringos probe blk
/// --component`; the first run that fails ends them). The app may ask for
/// kernel-only reads paired with its own (`ringos:probe/baseline`); those
/// of all runs are reported together. `stdin`: the host feeds COM1
/// (`stdin=1`).
pub fn run(
    reactor: Reactor,
    timeout_ms: Option<u64>,
    epoch_ns: u64,
    rounds: usize,
    stdin: bool,
) -> u8 {
    let rounds = rounds.max(1);
    if stdin && !crate::io::devices::route_serial_input() {
        log::warn!("stdin: no I/O APIC for COM1's interrupt; reads look for input every 10 ms");
    }
    if stdin {
        crate::console::enable_input_interrupt();
    }
    let env = RunEnv {
        comps: components(),
        disk: Rc::new(VirtioDisk::new(reactor)),
        baseline: Rc::new(RefCell::new(BlkBaseline::new())),
        timeout_ms,
        epoch_ns,
        stdin: stdin.then(SerialInput::default),
    };
    let mut status = exit::SUCCESS;
    for _ in 0..rounds {
        status = super::on_wasm_stack(|| run_components(&env));
        if status != exit::SUCCESS {
            break;
        }
    }
    env.baseline.borrow_mut().report();
    crate::count_marks::report_phases();
    let s = env.disk.stats();
    log::info!(
        "ringos:blk: {} requests, {} bytes moved by DMA to/from linear memory, {} bytes copied by the kernel",
        s.requests,
        s.dma_bytes,
        s.copied_bytes
    );
    // How the loop waited: an idle component should have halted the CPU,
    // not spun it (the host sees a spin as a busy core).
    let r = env.disk.reactor();
    log::info!(
        "loop: {} turns, {} halts (io={})",
        r.stats.turns,
        r.stats.halts,
        r.mode().name()
    );
    drop(r);
    status
}

/// What every run of the app gets.
struct RunEnv {
    comps: Vec<&'static [u8]>,
    disk: Rc<VirtioDisk>,
    baseline: Rc<RefCell<BlkBaseline>>,
    timeout_ms: Option<u64>,
    epoch_ns: u64,
    /// The host's stdin (`stdin=1`); else stdin is empty.
    stdin: Option<SerialInput>,
}

fn run_components(env: &RunEnv) -> u8 {
    let out = Rc::new(RefCell::new(Lines {
        marker: marker::STDOUT,
        buf: Vec::new(),
    }));
    let err = Rc::new(RefCell::new(Lines {
        marker: marker::STDERR,
        buf: Vec::new(),
    }));
    let r = instantiate_and_run(env, &out, &err);
    super::watchdog::stop();
    crate::console::set_input_wanted(false);
    out.borrow_mut().flush();
    err.borrow_mut().flush();
    match r {
        Ok(true) => exit::SUCCESS,
        Ok(false) => {
            println!("{}run returned an error", marker::COMPONENT);
            exit::FAILURE
        }
        Err(why) => match wasi::exit_status(&why) {
            // `wasi:cli/exit`: the component chose its status.
            Some(status) => status,
            None => {
                println!("{}{why}", marker::COMPONENT);
                exit::FAILURE
            }
        },
    }
}

fn instantiate_and_run(
    env: &RunEnv,
    out: &Rc<RefCell<Lines>>,
    err: &Rc<RefCell<Lines>>,
) -> Result<bool, alloc::string::String> {
    use alloc::format;
    let RunEnv {
        comps,
        disk,
        baseline,
        timeout_ms,
        epoch_ns,
        ..
    } = env;
    let mut store = ComponentStore::new(&KERNEL);
    store.core.set_stack_budget(super::BUDGET);
    if let Some(ms) = timeout_ms {
        super::watchdog::start(store.core.interrupt_handle(), ms.saturating_mul(1_000_000));
    }
    let stdin = env.stdin.clone().map(|i| {
        let s = Rc::new(wasi::Stdin::new(Box::new(i)));
        store.add_io(s.clone());
        s
    });
    let mut imports = wasi::cli(Cli {
        stdin,
        stdout: sink(out),
        stderr: sink(err),
        args: strings(payload::ARGS),
        env: strings(payload::ENV)
            .into_iter()
            .filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.into(), v.into())))
            .collect(),
    });
    let sys = Rc::new(KernelSystem {
        epoch_ns: *epoch_ns,
        disk: disk.clone(),
    });
    store.set_waiter(sys.clone());
    imports.extend(wasi::clocks_and_random(sys));
    let blk = blk::Disk::new(disk.clone());
    store.add_io(blk.clone());
    imports.extend(blk::imports(&blk));
    let (b, d) = (baseline.clone(), disk.clone());
    imports.extend(blk::probe_imports(Box::new(move |count| {
        b.borrow_mut().paired(&mut d.reactor(), count)
    })));
    let (app, providers) = comps.split_last().ok_or("no component")?;
    let started = crate::time::now_ns();
    let run = wasi::instantiate_command(&mut store, &KERNEL, imports, app, providers)?;
    let ready = crate::time::now_ns();
    // The slow part of a start under TCG (Cranelift runs on the emulated
    // CPU too): said with -v, as the time it took.
    log::info!(
        "component: {} KiB (and {} provider(s)) validated, JIT-compiled and instantiated in {}",
        app.len().div_ceil(1024),
        providers.len(),
        Ms(ready - started)
    );
    let r = store.call(&run, &[]);
    log::info!(
        "component: wasi:cli/run ended after {}",
        Ms(crate::time::now_ns() - ready)
    );
    // The component may have ended (returned, trapped, exited) with
    // requests in flight into its memory: let them land before the store
    // and its memory go.
    disk.drain();
    let r = r.map_err(|e| format!("run: {e}"))?;
    Ok(matches!(r, Some(Value::Variant(0, _))))
}

/// A duration in ns, shown in ms to the µs.
struct Ms(u64);

impl core::fmt::Display for Ms {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{}.{:03} ms",
            self.0 / 1_000_000,
            (self.0 / 1_000) % 1_000
        )
    }
}
