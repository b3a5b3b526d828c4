//! Running a WASI 0.3 command component in this process (the hosted
//! mode): `wasi:cli` from `ringos_runtime::wasi`, other imports from
//! provider components instantiated first, then `wasi:cli/run`.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use ringos_runtime::blk;
use ringos_runtime::component::{ComponentStore, Value};
use ringos_runtime::hosted::HOSTED;
use ringos_runtime::wasi::{self, Cli};

/// What the component wrote, and how `run` ended.
#[derive(Debug, Default)]
pub struct Output {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// `run` returned `ok` (or the component exited with status 0).
    pub ok: bool,
    /// The status the component exits with: 0 for `ok`, 1 for `err`, or
    /// what it gave `wasi:cli/exit`.
    pub status: u8,
    /// How long validating, compiling and instantiating took.
    pub start_time: std::time::Duration,
    /// How long `wasi:cli/run` took.
    pub run_time: std::time::Duration,
}

/// Where output goes: captured, or also echoed to this process's own.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Echo {
    Capture,
    Through,
}

/// Clocks and randomness of this process.
struct HostSystem {
    start: std::time::Instant,
}

impl wasi::System for HostSystem {
    fn monotonic_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }
    fn wall(&self) -> (i64, u32) {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        (d.as_secs() as i64, d.subsec_nanos())
    }
    fn random(&self, buf: &mut [u8]) -> Result<(), String> {
        use std::io::Read;
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(buf))
            .map_err(|e| format!("wasi:random: /dev/urandom: {e}"))
    }
}

impl ringos_runtime::component::Waiter for HostSystem {
    fn now_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }
    /// The hosted mode's disk completes at once, so only timers and stdin
    /// wait: with no deadline, a read of stdin is waiting for input, which
    /// the next turn looks for (in 200 µs rather than spinning).
    fn wait(&self, deadline_ns: Option<u64>) {
        let now = self.start.elapsed().as_nanos() as u64;
        let until = deadline_ns.unwrap_or(now + 200_000);
        std::thread::sleep(std::time::Duration::from_nanos(until.saturating_sub(now)));
    }
}

/// This process's stdin for `wasi:cli/stdin`, read by a thread of its own
/// (from the first read on) so the loop never blocks on it.
#[derive(Default)]
pub struct ProcessStdin {
    chunks: RefCell<Option<std::sync::mpsc::Receiver<Vec<u8>>>>,
    /// What the last chunk had beyond the guest's buffer.
    rest: RefCell<std::collections::VecDeque<u8>>,
}

impl wasi::Input for ProcessStdin {
    fn read(&self, buf: &mut [u8]) -> wasi::Received {
        use std::sync::mpsc::TryRecvError;
        let mut rest = self.rest.borrow_mut();
        if rest.is_empty() {
            let mut chunks = self.chunks.borrow_mut();
            let rx = chunks.get_or_insert_with(|| {
                let (tx, rx) = std::sync::mpsc::channel();
                std::thread::spawn(move || {
                    use std::io::Read;
                    let mut b = vec![0u8; 64 << 10];
                    let mut stdin = std::io::stdin().lock();
                    // Ends (dropping `tx`) at the end of input or an error.
                    while let Ok(n @ 1..) = stdin.read(&mut b) {
                        if tx.send(b[..n].to_vec()).is_err() {
                            break;
                        }
                    }
                });
                rx
            });
            match rx.try_recv() {
                Ok(chunk) => rest.extend(chunk),
                Err(TryRecvError::Empty) => return wasi::Received::Nothing,
                Err(TryRecvError::Disconnected) => return wasi::Received::End,
            }
        }
        wasi::Received::Bytes(wasi::take_into(&mut rest, buf))
    }
}

/// `ringos:blk` on a file, for the hosted mode: each request is done at
/// once with `pread`/`pwrite` straight into or out of the guest's memory,
/// and completes on the loop's next I/O turn.
pub struct FileDisk {
    file: std::fs::File,
    capacity: u64,
    read_only: bool,
    done: RefCell<Vec<(u64, Result<usize, blk::BlockError>)>>,
}

impl FileDisk {
    pub fn open(path: &std::path::Path) -> std::io::Result<FileDisk> {
        let (file, read_only) = match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
        {
            Ok(f) => (f, false),
            Err(_) => (std::fs::File::open(path)?, true),
        };
        let capacity = file.metadata()?.len() / blk::BLOCK * blk::BLOCK;
        Ok(FileDisk {
            file,
            capacity,
            read_only,
            done: RefCell::new(Vec::new()),
        })
    }

    /// `ringos:probe/baseline.read` in the hosted mode: the next 4 KiB of
    /// the file (wrapping) read into a buffer of its own, outside the
    /// component machinery. Recorded nowhere: only the kernel prints a
    /// baseline.
    fn baseline_read(&self, at: &Cell<u64>) {
        use std::os::unix::fs::FileExt;
        const BLOCK: u64 = 4096;
        let blocks = self.capacity / BLOCK;
        if blocks == 0 {
            return;
        }
        let mut buf = [0u8; BLOCK as usize];
        let _ = self.file.read_exact_at(&mut buf, at.get() % blocks * BLOCK);
        at.set(at.get() + 1);
    }
}

impl blk::BlockDevice for FileDisk {
    fn capacity(&self) -> u64 {
        self.capacity
    }
    fn read_only(&self) -> bool {
        self.read_only
    }
    fn submit(&self, tag: u64, op: blk::BlockOp) -> Result<(), blk::BlockError> {
        use std::os::unix::fs::FileExt;
        let r = match op {
            blk::BlockOp::Read { offset, addr, len } => {
                // SAFETY: the runtime lent these guest bytes for this
                // request (`device::Transfer`), valid until it completes.
                let buf = unsafe { std::slice::from_raw_parts_mut(addr, len) };
                self.file.read_exact_at(buf, offset).map(|()| len)
            }
            blk::BlockOp::Write { offset, addr, len } => {
                // SAFETY: as for a read.
                let buf = unsafe { std::slice::from_raw_parts(addr, len) };
                self.file.write_all_at(buf, offset).map(|()| len)
            }
            blk::BlockOp::Flush => self.file.sync_data().map(|()| 0),
        };
        self.done
            .borrow_mut()
            .push((tag, r.map_err(|_| blk::BlockError::Io)));
        Ok(())
    }
    fn poll(&self, done: &mut Vec<(u64, Result<usize, blk::BlockError>)>) {
        done.append(&mut self.done.borrow_mut());
    }
}

/// Every WASI interface the hosted mode serves; the store's loop gets the
/// same clock for its timers.
fn wasi_imports(store: &mut ComponentStore, cli: Cli) -> ringos_runtime::component::Exports {
    wasi_imports_with(store, cli, None)
}

fn wasi_imports_with(
    store: &mut ComponentStore,
    cli: Cli,
    file: Option<Rc<FileDisk>>,
) -> ringos_runtime::component::Exports {
    let sys = Rc::new(HostSystem {
        start: std::time::Instant::now(),
    });
    store.set_waiter(sys.clone());
    let mut m = wasi::cli(cli);
    m.extend(wasi::clocks_and_random(sys));
    let dev: Rc<dyn blk::BlockDevice> = match &file {
        Some(f) => f.clone(),
        None => Rc::new(blk::NoDisk),
    };
    let disk = blk::Disk::new(dev);
    store.add_io(disk.clone());
    m.extend(blk::imports(&disk));
    let at = Cell::new(0);
    m.extend(blk::probe_imports(Box::new(move |count| {
        if let Some(f) = &file {
            (0..count).for_each(|_| f.baseline_read(&at));
        }
    })));
    m
}

fn sink(buf: Rc<RefCell<Vec<u8>>>, echo: Echo, err: bool) -> wasi::Sink {
    Rc::new(RefCell::new(move |b: &[u8]| {
        buf.borrow_mut().extend_from_slice(b);
        if echo == Echo::Through {
            use std::io::Write;
            if err {
                let _ = std::io::stderr().write_all(b);
            } else {
                let mut o = std::io::stdout();
                let _ = o.write_all(b);
                let _ = o.flush();
            }
        }
    }))
}

/// Instantiates `providers` and `app` without calling anything (a check
/// that they load and link).
pub fn instantiate_only(app: &[u8], providers: &[Vec<u8>]) -> Result<(), String> {
    let mut store = ComponentStore::new(&HOSTED);
    // Linking only: none of the component's code runs on the host (a
    // start function that loops would hang the check).
    store.core.skip_start_functions();
    let sink = |_: &[u8]| {};
    let imports = wasi_imports(
        &mut store,
        Cli {
            stdin: None,
            stdout: Rc::new(RefCell::new(sink)),
            stderr: Rc::new(RefCell::new(sink)),
            args: Vec::new(),
            env: Vec::new(),
        },
    );
    let deps: Vec<&[u8]> = providers.iter().map(|p| &p[..]).collect();
    wasi::instantiate_command(&mut store, &HOSTED, imports, app, &deps)?;
    Ok(())
}

/// Instantiates `providers` in order (each may use the ones before and
/// wasi:cli), then `app`, and calls its `wasi:cli/run`.
pub fn run(
    app: &[u8],
    providers: &[Vec<u8>],
    args: &[String],
    echo: Echo,
) -> Result<Output, String> {
    run_with_timeout(app, providers, args, echo, None)
}

/// [`run`], interrupting the component after `timeout` (it traps at its
/// next loop iteration).
pub fn run_with_timeout(
    app: &[u8],
    providers: &[Vec<u8>],
    args: &[String],
    echo: Echo,
    timeout: Option<std::time::Duration>,
) -> Result<Output, String> {
    run_with_disk(app, providers, args, &[], echo, timeout, None, None)
}

/// [`run_with_timeout`] with environment variables, `ringos:blk` on the
/// file `disk` (else no disk: `no-device`) and stdin from `stdin` (else
/// empty).
#[allow(clippy::too_many_arguments)]
pub fn run_with_disk(
    app: &[u8],
    providers: &[Vec<u8>],
    args: &[String],
    env: &[(String, String)],
    echo: Echo,
    timeout: Option<std::time::Duration>,
    disk: Option<&std::path::Path>,
    stdin: Option<Box<dyn wasi::Input>>,
) -> Result<Output, String> {
    let out = Rc::new(RefCell::new(Vec::new()));
    let err = Rc::new(RefCell::new(Vec::new()));
    let mut store = ComponentStore::new(&HOSTED);
    let file = match disk {
        Some(p) => Some(Rc::new(
            FileDisk::open(p).map_err(|e| format!("{}: {e}", p.display()))?,
        )),
        None => None,
    };
    let stdin = stdin.map(|i| {
        let s = Rc::new(wasi::Stdin::new(i));
        store.add_io(s.clone());
        s
    });
    let imports = wasi_imports_with(
        &mut store,
        Cli {
            stdin,
            stdout: sink(out.clone(), echo, false),
            stderr: sink(err.clone(), echo, true),
            args: args.to_vec(),
            env: env.to_vec(),
        },
        file,
    );
    let deps: Vec<&[u8]> = providers.iter().map(|p| &p[..]).collect();
    // Whether the store (what the handle points at) is still alive: the
    // watchdog interrupts only under this lock. It runs from before the
    // instantiation: core start functions run in it.
    let alive = std::sync::Arc::new(std::sync::Mutex::new(true));
    if let Some(t) = timeout {
        let (h, alive) = (store.core.interrupt_handle(), alive.clone());
        std::thread::spawn(move || {
            std::thread::sleep(t);
            if *alive.lock().unwrap_or_else(|p| p.into_inner()) {
                h.interrupt();
            }
        });
    }
    let started = std::time::Instant::now();
    let run = wasi::instantiate_command(&mut store, &HOSTED, imports, app, &deps);
    let start_time = started.elapsed();
    let r = run.as_ref().map(|run| store.call(run, &[]));
    let run_time = started.elapsed() - start_time;
    *alive.lock().unwrap_or_else(|p| p.into_inner()) = false;
    let r = r.map_err(|e| e.clone())?.map_err(|e| e.to_string());
    let status = match r {
        Ok(r) => u8::from(!matches!(r, Some(Value::Variant(0, _)))),
        Err(e) => wasi::exit_status(&e).ok_or_else(|| format!("run: {e}"))?,
    };
    let stdout = out.borrow().clone();
    let stderr = err.borrow().clone();
    Ok(Output {
        stdout,
        stderr,
        ok: status == 0,
        status,
        start_time,
        run_time,
    })
}
