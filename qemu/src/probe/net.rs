//! `probe net`: boots the UDP echo service (`service=udp-echo`) behind QEMU
//! user networking with a host port forwarded to it, times datagram round
//! trips from a host socket, then stops the service with the quit datagram
//! and parses its `net-stats:` line.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ringos_proto::{cmdline, exit, marker, service};
use serde::Serialize;

use super::{check_outcome, failure, nanos, unix_time, us, vm_config, Fields, Table};
use crate::stats::percentile;
use crate::vm::{self, Console};
use crate::{qemu, Accel, Error, IoMode, Machine, Net, Outcome, PortForward, Protocol, Result};

/// Datagrams sent first and not counted (ARP, first-use paths).
pub const WARMUP: u32 = 20;
/// A datagram without its echo after this long is lost.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(1);
/// The sequence number takes the first 8 bytes of each datagram.
pub const MIN_SIZE: usize = 8;
/// The largest UDP payload in one 1500-byte IPv4 packet.
pub const MAX_SIZE: usize = 1472;
/// Times the quit datagram is sent (each waiting 1 s for `net-stats:`).
const QUIT_TRIES: u32 = 5;

/// What to probe.
#[derive(Clone, Debug)]
pub struct ProbeNet {
    pub image: PathBuf,
    pub machines: Vec<Machine>,
    /// Measured datagrams per machine.
    pub count: u32,
    /// UDP payload bytes, [`MIN_SIZE`]..=[`MAX_SIZE`].
    pub size: usize,
    /// `None`: the kernel's default.
    pub io: Option<IoMode>,
    pub accel: Accel,
    pub mem_mib: u32,
    /// The whole VM, echo loop included.
    pub timeout: Duration,
    /// Run QEMU on this one host CPU (`--pin`).
    pub pin_cpu: Option<usize>,
}

impl ProbeNet {
    /// The kernel command line: `service=udp-echo port=7 [io=..]`.
    pub fn cmdline(&self) -> String {
        let mut w = vec![
            format!("{}={}", cmdline::SERVICE, service::UDP_ECHO),
            format!("{}={}", cmdline::PORT, service::DEFAULT_PORT),
        ];
        w.extend(self.io.map(IoMode::cmdline_word));
        w.join(" ")
    }
}

/// `service: ready udp-echo port=7 ip=10.0.2.15 io=irq`
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ServiceReady {
    pub service: String,
    pub port: u16,
    pub ip: String,
    pub io: String,
}

/// Parses a whole `service: ready ...` line.
pub fn parse_service_ready(line: &str) -> Result<ServiceReady, String> {
    let text = line
        .strip_prefix(marker::SERVICE_READY)
        .ok_or_else(|| format!("no `{}` marker", marker::SERVICE_READY))?;
    let f = Fields::new(text);
    Ok(ServiceReady {
        service: f.kind().ok_or("no service name")?.to_string(),
        port: f.get("port")?,
        ip: f.str("ip")?.to_string(),
        io: f.str("io")?.to_string(),
    })
}

/// The guest's counters from its `net-stats:` line.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct NetStats {
    pub rx: u64,
    pub tx: u64,
    pub echoed: u64,
    /// Frames dropped for any reason (the sum of `reasons`).
    pub dropped: u64,
    /// Times the reactor halted waiting for an interrupt (0 when polling).
    pub halts: Option<u64>,
    /// Drops by reason (`truncated`, `oversized`, `ethertype`, ...).
    pub reasons: BTreeMap<String, u64>,
}

/// Parses a whole `net-stats: ...` line. Every value must be a number.
pub fn parse_net_stats(line: &str) -> Result<NetStats, String> {
    let text = line
        .strip_prefix(marker::NET_STATS)
        .ok_or_else(|| format!("no `{}` marker", marker::NET_STATS))?;
    let f = Fields::new(text);
    if let Some(k) = f.kind() {
        return Err(format!("unexpected word `{k}`"));
    }
    let mut s = NetStats {
        rx: f.get("rx")?,
        tx: f.get("tx")?,
        echoed: f.get("echoed")?,
        dropped: f.get("dropped")?,
        halts: None,
        reasons: BTreeMap::new(),
    };
    for (k, _) in f.pairs() {
        let v: u64 = f.get(k)?;
        match k {
            "rx" | "tx" | "echoed" | "dropped" => {}
            "halts" => s.halts = Some(v),
            _ => {
                s.reasons.insert(k.to_string(), v);
            }
        }
    }
    Ok(s)
}

/// What the host saw of the echo loop.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Rounds {
    /// Round trip of each echoed datagram, ns.
    pub rtt_ns: Vec<u64>,
    /// No echo within [`REPLY_TIMEOUT`].
    pub lost: u32,
    /// Replies to an earlier datagram (after it was counted lost), ignored.
    pub stale: u32,
    /// Replies with the right sequence number but other bytes.
    pub corrupt: u32,
}

/// The datagram with sequence number `seq`: `seq` (little endian), then a
/// pattern, `size` bytes in all (at least 8).
pub fn datagram(seq: u64, size: usize) -> Vec<u8> {
    let mut d = seq.to_le_bytes().to_vec();
    d.extend((8..size).map(|i| (i as u8) ^ (seq as u8)));
    d.truncate(size.max(8));
    d
}

/// Sends `count` datagrams one at a time on the connected `sock`, numbered
/// from `first_seq`, each waiting up to [`REPLY_TIMEOUT`] for its echo.
/// Fails if `deadline` passes first or the socket fails.
pub fn echo_rounds(
    sock: &UdpSocket,
    first_seq: u64,
    count: u32,
    size: usize,
    deadline: Instant,
) -> Result<Rounds> {
    let io_err = |e: std::io::Error| Error::Io(format!("UDP socket: {e}"));
    let mut r = Rounds::default();
    let mut buf = vec![0u8; MAX_SIZE.max(size) + 1];
    for seq in first_seq..first_seq + u64::from(count) {
        if Instant::now() >= deadline {
            return Err(Error::Failed {
                message: format!(
                    "the VM's time ran out after {} of {count} datagrams \
                     (raise --timeout)",
                    seq - first_seq
                ),
                exit_code: exit::host::TIMEOUT,
            });
        }
        let d = datagram(seq, size);
        let sent = Instant::now();
        sock.send(&d).map_err(io_err)?;
        let until = (sent + REPLY_TIMEOUT).min(deadline);
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                r.lost += 1;
                break;
            }
            sock.set_read_timeout(Some(left)).map_err(io_err)?;
            match sock.recv(&mut buf) {
                Ok(n) => {
                    let got = &buf[..n];
                    if n < 8 || got[..8] != d[..8] {
                        r.stale += 1;
                        continue;
                    }
                    if got == d.as_slice() {
                        r.rtt_ns.push(nanos(sent.elapsed()));
                    } else {
                        r.corrupt += 1;
                    }
                    break;
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                // An ICMP error from an earlier datagram: nothing to read.
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(e) => return Err(io_err(e)),
            }
        }
    }
    Ok(r)
}

/// RTT percentiles, µs.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Rtt {
    pub p50_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
}

impl Rtt {
    pub fn of(rtt_ns: &[u64]) -> Option<Rtt> {
        let v: Vec<f64> = rtt_ns.iter().map(|&n| n as f64 / 1e3).collect();
        Some(Rtt {
            p50_us: percentile(&v, 50.0)?,
            p99_us: percentile(&v, 99.0)?,
            max_us: percentile(&v, 100.0)?,
        })
    }
}

/// One machine's run.
#[derive(Clone, Debug, Serialize)]
pub struct NetMachine {
    pub machine: Machine,
    /// The reactor mode the service reported.
    pub io: String,
    pub host_port: u16,
    pub rtt: Option<Rtt>,
    pub rounds: Rounds,
    pub guest: NetStats,
    /// Host: QEMU spawn to exit.
    pub host_wall_ns: u64,
}

/// The whole probe, as written to `net.json`.
#[derive(Clone, Debug, Serialize)]
pub struct NetReport {
    pub accel: Accel,
    pub mem_mib: u32,
    pub count: u32,
    pub size: usize,
    pub warmup: u32,
    pub cmdline: String,
    pub qemu_version: Option<String>,
    pub unix_time: u64,
    pub machines: Vec<NetMachine>,
}

/// A UDP port on 127.0.0.1 that was free a moment ago.
pub fn free_udp_port() -> Result<u16> {
    UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .map_err(|e| Error::Io(format!("probe net: finding a free UDP port: {e}")))
}

/// Runs the probe on each machine, showing progress on stderr. The first
/// failure ends it.
pub fn probe_net(p: &ProbeNet) -> Result<NetReport> {
    if !(MIN_SIZE..=MAX_SIZE).contains(&p.size) || p.count == 0 {
        return Err(Error::Failed {
            message: format!(
                "probe net: --size must be {MIN_SIZE}..={MAX_SIZE} and --count at least 1"
            ),
            exit_code: 2,
        });
    }
    let append = p.cmdline();
    let mut machines = Vec::new();
    for &machine in &p.machines {
        machines.push(probe_machine(p, machine, &append)?);
    }
    Ok(NetReport {
        accel: p.accel,
        mem_mib: p.mem_mib,
        count: p.count,
        size: p.size,
        warmup: WARMUP,
        cmdline: append,
        qemu_version: qemu::version(),
        unix_time: unix_time(),
        machines,
    })
}

fn probe_machine(p: &ProbeNet, machine: Machine, append: &str) -> Result<NetMachine> {
    let host_port = free_udp_port()?;
    let mut cfg = vm_config(&p.image, machine, p.accel, p.mem_mib, p.timeout, p.pin_cpu);
    cfg.append = append.to_string();
    cfg.net = Some(Net::User {
        ports: vec![PortForward {
            protocol: Protocol::Udp,
            host: host_port,
            guest: service::DEFAULT_PORT,
        }],
    });
    eprintln!("probe net: {machine}: 127.0.0.1:{host_port} -> guest port 7, {append}");
    let fail = |why: String| format!("probe net: {machine} failed: {why}");

    let mut vm = vm::spawn(&cfg, Console::Capture)?;
    let ready = vm
        .wait_for_line(marker::SERVICE_READY, cfg.timeout)
        .map(|l| parse_service_ready(&l));
    let ready = match ready {
        Some(Ok(r)) => r,
        other => {
            let (why, code) = match other {
                Some(Err(e)) => (format!("bad `{}` line: {e}", marker::SERVICE_READY), 1),
                _ => (
                    format!("the guest never printed `{}`", marker::SERVICE_READY),
                    exit::host::TIMEOUT,
                ),
            };
            let run = vm.kill()?;
            // A guest that ended on its own says why better than we can.
            if run.outcome != Outcome::TimedOut {
                check_outcome(&run, cfg.timeout).map_err(|e| e.map_message(fail))?;
            }
            return Err(failure(&run, fail(why), code));
        }
    };

    let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|s| {
            s.connect(SocketAddr::from((Ipv4Addr::LOCALHOST, host_port)))?;
            Ok(s)
        })
        .map_err(|e| Error::Io(fail(format!("UDP socket: {e}"))))?;
    let deadline = vm.deadline();
    let rounds = echo_rounds(&sock, 0, WARMUP, p.size, deadline).and_then(|_| {
        eprintln!(
            "probe net: {machine}: {} datagrams of {} bytes",
            p.count, p.size
        );
        echo_rounds(&sock, u64::from(WARMUP), p.count, p.size, deadline)
    });
    let rounds = match rounds {
        Ok(r) => r,
        Err(e) => {
            let run = vm.kill()?;
            return Err(failure(&run, fail(e.to_string()), e.exit_code()));
        }
    };

    let mut stats_line = None;
    for _ in 0..QUIT_TRIES {
        let _ = sock.send(service::QUIT);
        stats_line = vm.wait_for_line(marker::NET_STATS, REPLY_TIMEOUT);
        if stats_line.is_some() {
            break;
        }
    }
    // Without the stats line the service did not stop: do not wait for it.
    let run = if stats_line.is_some() {
        vm.finish()?
    } else {
        vm.kill()?
    };
    let Some(stats_line) = stats_line else {
        return Err(failure(
            &run,
            fail(format!(
                "no `{}` line after {QUIT_TRIES} quit datagrams",
                marker::NET_STATS.trim_end()
            )),
            1,
        ));
    };
    check_outcome(&run, cfg.timeout).map_err(|e| e.map_message(fail))?;
    let guest = parse_net_stats(&stats_line).map_err(|e| failure(&run, fail(e), 1))?;
    if rounds.rtt_ns.is_empty() {
        return Err(failure(&run, fail("not one datagram came back".into()), 1));
    }
    Ok(NetMachine {
        machine,
        io: ready.io,
        host_port,
        rtt: Rtt::of(&rounds.rtt_ns),
        rounds,
        guest,
        host_wall_ns: nanos(run.wall),
    })
}

impl NetReport {
    /// The human-readable table for stdout.
    pub fn table(&self) -> String {
        let mut t = Table::new(
            &[
                "machine",
                "accel",
                "io",
                "p50 µs",
                "p99 µs",
                "max µs",
                "lost",
                "stale",
                "guest dropped",
                "guest halts",
                "host wall s",
            ],
            3,
        );
        for m in &self.machines {
            let rtt = |f: fn(&Rtt) -> f64| m.rtt.as_ref().map_or("-".into(), |r| us(f(r) * 1e3));
            t.row(vec![
                m.machine.to_string(),
                self.accel.to_string(),
                m.io.clone(),
                rtt(|r| r.p50_us),
                rtt(|r| r.p99_us),
                rtt(|r| r.max_us),
                m.rounds.lost.to_string(),
                m.rounds.stale.to_string(),
                m.guest.dropped.to_string(),
                m.guest.halts.map_or("-".into(), |h| h.to_string()),
                format!("{:.2}", m.host_wall_ns as f64 / 1e9),
            ]);
        }
        format!(
            "probe net: UDP echo round trips, {} datagrams of {} bytes (after {} warm-up)\n{}",
            self.count,
            self.size,
            self.warmup,
            t.render()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATS: &str = "net-stats: rx=345 tx=343 echoed=321 dropped=2 truncated=0 \
                         oversized=1 ethertype=1 ipv4-header=0 udp=0 halts=800";

    #[test]
    fn service_ready_line() {
        let r = parse_service_ready("service: ready udp-echo port=7 ip=10.0.2.15 io=irq").unwrap();
        assert_eq!(
            r,
            ServiceReady {
                service: "udp-echo".into(),
                port: 7,
                ip: "10.0.2.15".into(),
                io: "irq".into()
            }
        );
        for bad in [
            "service: ready port=7 ip=10.0.2.15 io=irq",
            "service: ready udp-echo port=99999 ip=10.0.2.15 io=irq",
            "service: ready udp-echo port=7 ip=10.0.2.15",
            "ready: 5 ns",
        ] {
            assert!(parse_service_ready(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn net_stats_line() {
        let s = parse_net_stats(STATS).unwrap();
        assert_eq!((s.rx, s.tx, s.echoed, s.dropped), (345, 343, 321, 2));
        assert_eq!(s.halts, Some(800));
        assert_eq!(s.reasons.len(), 5);
        assert_eq!(s.reasons["oversized"], 1);
        assert_eq!(s.reasons["ipv4-header"], 0);
        let s = parse_net_stats("net-stats: rx=1 tx=1 echoed=1 dropped=0").unwrap();
        assert_eq!((s.halts, s.reasons.len()), (None, 0));
        for bad in [
            "net-stats: rx=1 tx=1 echoed=1",
            "net-stats: rx=1 tx=x echoed=1 dropped=0",
            "net-stats: rx=1 tx=1 echoed=1 dropped=0 udp=-1",
            "net-stats: oops rx=1 tx=1 echoed=1 dropped=0",
            "net-stats:rx=1 tx=1 echoed=1 dropped=0",
            "rx=1 tx=1 echoed=1 dropped=0",
        ] {
            assert!(parse_net_stats(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn datagrams_carry_their_sequence() {
        let d = datagram(0x0102, 64);
        assert_eq!(d.len(), 64);
        assert_eq!(u64::from_le_bytes(d[..8].try_into().unwrap()), 0x0102);
        assert_eq!(datagram(5, 8), 5u64.to_le_bytes());
        assert_ne!(datagram(1, 64)[8..], datagram(2, 64)[8..]);
    }

    /// A host echo server that drops every `drop_every`-th datagram and
    /// answers each other one twice (the duplicate arrives stale).
    fn echo_server(drop_every: u64) -> SocketAddr {
        let s = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let addr = s.local_addr().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            let mut n = 0u64;
            while let Ok((len, from)) = s.recv_from(&mut buf) {
                n += 1;
                if n.is_multiple_of(drop_every) {
                    continue;
                }
                let _ = s.send_to(&buf[..len], from);
                let _ = s.send_to(&buf[..len], from);
            }
        });
        addr
    }

    #[test]
    fn rounds_against_a_host_echo() {
        let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        sock.connect(echo_server(5)).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let r = echo_rounds(&sock, 100, 10, 64, deadline).unwrap();
        assert_eq!(r.rtt_ns.len(), 8, "{r:?}");
        assert_eq!(r.lost, 2);
        assert!(r.stale >= 7, "each duplicate is stale: {r:?}");
        assert_eq!(r.corrupt, 0);
        let rtt = Rtt::of(&r.rtt_ns).unwrap();
        assert!(rtt.p50_us <= rtt.p99_us && rtt.p99_us <= rtt.max_us);
    }

    #[test]
    fn rounds_stop_at_the_deadline() {
        let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        sock.connect(echo_server(1)).unwrap();
        let t = Instant::now();
        let e = echo_rounds(&sock, 0, 100, 64, t + Duration::from_millis(200)).unwrap_err();
        assert!(t.elapsed() < Duration::from_secs(2));
        assert!(e.to_string().contains("time ran out after 1 of 100"), "{e}");
    }

    #[test]
    fn cmdline_and_table() {
        let mut p = ProbeNet {
            image: "/k".into(),
            machines: vec![Machine::Microvm],
            count: 10,
            size: 64,
            io: None,
            accel: Accel::Tcg,
            mem_mib: 256,
            timeout: Duration::from_secs(60),
            pin_cpu: None,
        };
        assert_eq!(p.cmdline(), "service=udp-echo port=7");
        p.io = Some(IoMode::Poll);
        assert_eq!(p.cmdline(), "service=udp-echo port=7 io=poll");

        let rounds = Rounds {
            rtt_ns: vec![100_000, 200_000, 900_000],
            lost: 1,
            stale: 0,
            corrupt: 0,
        };
        let report = NetReport {
            accel: Accel::Tcg,
            mem_mib: 256,
            count: 4,
            size: 64,
            warmup: WARMUP,
            cmdline: p.cmdline(),
            qemu_version: None,
            unix_time: 0,
            machines: vec![NetMachine {
                machine: Machine::Microvm,
                io: "poll".into(),
                host_port: 5555,
                rtt: Rtt::of(&rounds.rtt_ns),
                rounds,
                guest: parse_net_stats(STATS).unwrap(),
                host_wall_ns: 2_000_000_000,
            }],
        };
        let t = report.table();
        let row = t.lines().find(|l| l.starts_with("microvm")).unwrap();
        for cell in ["poll", "200.00", "900.00", " 1 ", " 2 ", "800", "2.00"] {
            assert!(row.contains(cell), "{cell:?} missing in\n{t}");
        }
        let v = serde_json::to_value(&report).unwrap();
        assert_eq!(v["machines"][0]["rtt"]["p50_us"], 200.0);
        assert_eq!(v["machines"][0]["guest"]["reasons"]["oversized"], 1);
        assert_eq!(v["machines"][0]["rounds"]["lost"], 1);
    }
}
