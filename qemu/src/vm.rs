//! Running one VM: spawn QEMU, timestamp (and optionally stream) the serial
//! console, enforce the timeout, classify the end.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStderr, ChildStdout, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use ringos_proto::marker;

use crate::outcome::parse_exit_line;
use crate::qemu::{command_line, qemu_command};
use crate::{Error, Outcome, Result, VmConfig};

/// Where the guest's console goes besides [`VmRun::lines`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Console {
    /// Only captured.
    Capture,
    /// Also echoed as it arrives: serial to stdout, QEMU's stderr to stderr.
    Stream,
}

/// A finished VM.
#[derive(Clone, Debug)]
pub struct VmRun {
    pub outcome: Outcome,
    /// Serial console lines (without line ends), each with the host time
    /// since QEMU was spawned at which its newline arrived.
    pub lines: Vec<(Duration, String)>,
    /// QEMU's own stderr.
    pub stderr: String,
    /// Spawn to exit (or to the kill on timeout).
    pub wall: Duration,
    /// Host time of the first `ready:` line.
    pub ready_at: Option<Duration>,
}

impl VmRun {
    /// The guest's own boot time from its `ready: <ns> ns` line: ns since
    /// kernel entry.
    pub fn guest_ready_ns(&self) -> Option<u64> {
        self.lines.iter().find_map(|(_, l)| parse_ready(l))
    }

    /// The last `n` console lines, for failure reports.
    pub fn tail(&self, n: usize) -> impl Iterator<Item = &str> {
        let skip = self.lines.len().saturating_sub(n);
        self.lines[skip..].iter().map(|(_, l)| l.as_str())
    }
}

/// The ns value of a `ready: <ns> ns` line.
pub fn parse_ready(line: &str) -> Option<u64> {
    line.strip_prefix(marker::READY)?
        .split_ascii_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Boots `cfg` and waits for it to end. An `Err` means QEMU could not be
/// run at all; everything after the spawn is in [`VmRun::outcome`].
pub fn run(cfg: &VmConfig, console: Console) -> Result<VmRun> {
    spawn(cfg, console)?.finish()
}

/// A VM running in the background: its console lines can be watched as
/// they arrive ([`RunningVm::wait_for_line`]) while the host talks to it.
/// Dropping it without [`RunningVm::finish`] kills QEMU.
pub struct RunningVm {
    child: Child,
    start: Instant,
    deadline: Instant,
    /// Console lines as the reader thread timestamps them; disconnected
    /// once QEMU closed its stdout.
    rx: Receiver<(Duration, String)>,
    /// Every line received so far.
    lines: Vec<(Duration, String)>,
    /// QEMU closed its stdout (it is exiting).
    eof: bool,
    serial: Option<JoinHandle<()>>,
    errors: Option<JoinHandle<String>>,
    finished: bool,
}

/// Spawns QEMU for `cfg` and returns at once. An `Err` means QEMU could not
/// be run at all.
pub fn spawn(cfg: &VmConfig, console: Console) -> Result<RunningVm> {
    let mut cmd = qemu_command(cfg)?;
    if cfg.verbose {
        eprintln!("ringos: {}", command_line(&cmd));
    }
    let stdin = match cfg.stdin {
        crate::Stdin::Empty => Stdio::null(),
        _ => Stdio::piped(),
    };
    cmd.stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // The CPU set to pin QEMU to, made before the fork.
    let pin = match cfg.pin_cpu {
        Some(cpu) => {
            crate::qemu::check_host_cpu(cpu).map_err(Error::CannotStart)?;
            // SAFETY: a zeroed cpu_set_t is an empty set; `cpu` was checked
            // to be below CPU_SETSIZE (it is one of the allowed CPUs).
            Some(unsafe {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(cpu, &mut set);
                set
            })
        }
        None => None,
    };
    // QEMU dies with us: a killed `ringos` (or a test that panicked) must
    // not leave a VM running on its own. Pinned, every thread QEMU starts
    // inherits the CPU set.
    // SAFETY: only prctl and sched_setaffinity, both async-signal-safe
    // system calls, run in the child between fork and exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if let Some(set) = &pin {
                if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), set) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let start = Instant::now();
    let mut child = cmd.spawn().map_err(|e| {
        Error::CannotStart(format!(
            "cannot run {}: {e}",
            cmd.get_program().to_string_lossy()
        ))
    })?;
    let echo = console == Console::Stream;
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    // The input goes once the kernel is ready for it (its setup of the
    // UART empties the receiver).
    let (ready_tx, ready_rx) = mpsc::channel();
    if let Some(pipe) = child.stdin.take() {
        let input = cfg.stdin.clone();
        thread::spawn(move || {
            if ready_rx.recv().is_ok() {
                feed_serial(pipe, input);
            }
        });
    }
    let (tx, rx) = mpsc::channel();
    let serial = thread::spawn(move || read_serial(stdout, start, echo, tx, ready_tx));
    let errors = thread::spawn(move || read_stderr(stderr, echo));
    // An absurd timeout means "never", not an overflow panic.
    let deadline = start
        .checked_add(cfg.timeout)
        .unwrap_or_else(|| start + Duration::from_secs(u64::from(u32::MAX)));
    Ok(RunningVm {
        child,
        start,
        deadline,
        rx,
        lines: Vec::new(),
        eof: false,
        serial: Some(serial),
        errors: Some(errors),
        finished: false,
    })
}

impl RunningVm {
    /// QEMU's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// When QEMU was spawned.
    pub fn start(&self) -> Instant {
        self.start
    }

    /// When [`RunningVm::finish`] kills QEMU if it is still running.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// The console lines received so far.
    pub fn lines(&self) -> &[(Duration, String)] {
        &self.lines
    }

    /// Waits up to `timeout` (and at most until the deadline) for a new
    /// console line starting with `prefix`, and returns it. Lines before it
    /// are kept for [`VmRun::lines`]. `None` if the time ran out or QEMU
    /// closed its console first.
    pub fn wait_for_line(&mut self, prefix: &str, timeout: Duration) -> Option<String> {
        let until = Instant::now()
            .checked_add(timeout)
            .map_or(self.deadline, |t| t.min(self.deadline));
        loop {
            let (at, line) = self.next_line(until)?;
            let found = line.starts_with(prefix);
            self.lines.push((at, line));
            if found {
                return self.lines.last().map(|(_, l)| l.clone());
            }
        }
    }

    /// Waits (until the deadline) for the next console line; `None` once
    /// the console ended or the time ran out. The line is kept.
    pub fn next_console_line(&mut self) -> Option<String> {
        let l = self.next_line(self.deadline)?;
        let text = l.1.clone();
        self.lines.push(l);
        Some(text)
    }

    /// The next console line, or `None` at `until` or at the end of the console.
    fn next_line(&mut self, until: Instant) -> Option<(Duration, String)> {
        if self.eof {
            return None;
        }
        match self
            .rx
            .recv_timeout(until.saturating_duration_since(Instant::now()))
        {
            Ok(l) => Some(l),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => {
                self.eof = true;
                None
            }
        }
    }

    /// Kills QEMU now if it is still running (the outcome is then
    /// [`Outcome::TimedOut`]) and returns the run so far.
    pub fn kill(mut self) -> Result<VmRun> {
        self.deadline = Instant::now();
        self.finish()
    }

    /// Waits for the VM to end (killing it at the deadline) and classifies
    /// how it ended.
    pub fn finish(mut self) -> Result<VmRun> {
        // QEMU closes stdout as it exits: block on that instead of polling,
        // so the wall time is not rounded up to a poll interval.
        while let Some(l) = self.next_line(self.deadline) {
            self.lines.push(l);
        }
        let status = wait(&mut self.child, self.deadline);
        let wall = self.start.elapsed();
        if status.is_err() {
            // The readers only finish once QEMU is gone.
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        self.finished = true;
        if let Some(t) = self.serial.take() {
            let _ = t.join();
        }
        // The reader is done: the rest of the lines are in the channel.
        self.lines.extend(self.rx.try_iter());
        let stderr = self
            .errors
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default();
        let status = status.map_err(|e| Error::Io(format!("waiting for QEMU: {e}")))?;
        let lines = std::mem::take(&mut self.lines);

        let outcome = match status {
            None => Outcome::TimedOut,
            Some(s) => {
                let exit_line = lines
                    .iter()
                    .rev()
                    .find(|(_, l)| l.starts_with(marker::EXIT))
                    .and_then(|(_, l)| parse_exit_line(l));
                Outcome::from_exit(s.code(), exit_line, &stderr)
            }
        };
        let ready_at = lines
            .iter()
            .find(|(_, l)| l.starts_with(marker::READY))
            .map(|(t, _)| *t);
        Ok(VmRun {
            outcome,
            lines,
            stderr,
            wall,
            ready_at,
        })
    }
}

impl Drop for RunningVm {
    fn drop(&mut self) {
        if !self.finished {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Waits for QEMU until `deadline`, then kills it (`Ok(None)`).
fn wait(child: &mut Child, deadline: Instant) -> io::Result<Option<ExitStatus>> {
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            child.kill()?;
            child.wait()?;
            return Ok(None);
        }
        thread::sleep(Duration::from_micros(200));
    }
}

/// Sends `input` to the guest's serial port, framed (`ringos_proto::input`),
/// and then its end. Stops when QEMU is gone (the pipe breaks).
fn feed_serial(mut pipe: std::process::ChildStdin, input: crate::Stdin) {
    use ringos_proto::input;
    let mut send = |bytes: &[u8]| -> io::Result<()> {
        let mut framed = Vec::with_capacity(bytes.len() + 16);
        input::encode(bytes, |b| framed.extend_from_slice(b));
        pipe.write_all(&framed).and_then(|()| pipe.flush())
    };
    let sent = match input {
        crate::Stdin::Empty => Ok(()),
        crate::Stdin::Bytes(b) => send(&b),
        crate::Stdin::Inherit => {
            let mut stdin = io::stdin().lock();
            let mut buf = vec![0u8; 64 << 10];
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) | Err(_) => break Ok(()),
                    Ok(n) => {
                        if let Err(e) = send(&buf[..n]) {
                            break Err(e);
                        }
                    }
                }
            }
        }
    };
    if sent.is_ok() {
        let _ = pipe.write_all(&[input::ESCAPE, input::END]);
    }
}

/// Reads the console line by line; tells `ready` when the kernel's ready
/// line came.
fn read_serial(
    out: ChildStdout,
    start: Instant,
    echo: bool,
    lines: Sender<(Duration, String)>,
    ready: Sender<()>,
) {
    let mut ready = Some(ready);
    let mut reader = BufReader::new(out);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let at = start.elapsed();
        if echo {
            // A closed stdout (`ringos boot | head`) must not stop the VM.
            let mut o = io::stdout().lock();
            let _ = o.write_all(&buf).and_then(|()| o.flush());
        }
        let text = String::from_utf8_lossy(&buf);
        let line = text.trim_end_matches(['\n', '\r']).to_string();
        if line.starts_with(ringos_proto::marker::READY) {
            if let Some(r) = ready.take() {
                let _ = r.send(());
            }
        }
        // The receiver outlives this thread unless the VM was dropped.
        if lines.send((at, line)).is_err() {
            break;
        }
    }
}

fn read_stderr(mut err: ChildStderr, echo: bool) -> String {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n @ 1..) = err.read(&mut buf) {
        if echo {
            let _ = io::stderr().write_all(&buf[..n]);
        }
        all.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&all).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_lines() {
        assert_eq!(parse_ready("ready: 12345 ns"), Some(12345));
        assert_eq!(parse_ready("ready: 7"), Some(7));
        assert_eq!(parse_ready("ready: soon"), None);
        assert_eq!(parse_ready("memory: 255 MiB usable"), None);
    }
}
