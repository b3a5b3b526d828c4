//! Running one VM: spawn QEMU, timestamp (and optionally stream) the serial
//! console, enforce the timeout, classify the end.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStderr, ChildStdout, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread;
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
    let mut cmd = qemu_command(cfg)?;
    if cfg.verbose {
        eprintln!("ringos: {}", command_line(&cmd));
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
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
    let (eof_tx, eof_rx) = mpsc::channel();
    let serial = thread::spawn(move || read_serial(stdout, start, echo, eof_tx));
    let errors = thread::spawn(move || read_stderr(stderr, echo));

    // An absurd timeout means "never", not an overflow panic.
    let deadline = start
        .checked_add(cfg.timeout)
        .unwrap_or_else(|| start + Duration::from_secs(u64::from(u32::MAX)));
    let status = wait(&mut child, &eof_rx, deadline);
    let wall = start.elapsed();
    if status.is_err() {
        // The readers only finish once QEMU is gone.
        let _ = child.kill();
        let _ = child.wait();
    }
    let lines = serial.join().unwrap_or_default();
    let stderr = errors.join().unwrap_or_default();
    let status = status.map_err(|e| Error::Io(format!("waiting for QEMU: {e}")))?;

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

/// Waits for QEMU until `deadline`, then kills it (`Ok(None)`).
fn wait(
    child: &mut Child,
    eof: &Receiver<()>,
    deadline: Instant,
) -> io::Result<Option<ExitStatus>> {
    // QEMU closes stdout as it exits: block on that instead of polling, so the
    // wall time is not rounded up to a poll interval.
    let _ = eof.recv_timeout(deadline.saturating_duration_since(Instant::now()));
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

fn read_serial(
    out: ChildStdout,
    start: Instant,
    echo: bool,
    eof: Sender<()>,
) -> Vec<(Duration, String)> {
    let mut reader = BufReader::new(out);
    let mut lines = Vec::new();
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
        lines.push((at, text.trim_end_matches(['\n', '\r']).to_string()));
    }
    let _ = eof.send(());
    lines
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
