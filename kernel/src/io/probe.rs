//! I/O self-tests and probes, run on the reactor: the block self-test the
//! QEMU tier checks from the host, the block latency probe behind
//! `ringos probe blk`, and the UDP echo service behind `ringos probe net`.

use super::hal::DmaBuf;
use super::reactor::{Event, Reactor};
use crate::arch::cpu;
use crate::{println, time};

use alloc::vec::Vec;
use ringos_drivers::blk::{BlkError, Request, SECTOR_SIZE};
use ringos_proto::{disk_pattern, marker, probe, selftest};

const BLOCK: usize = 4096;
const BLOCK_SECTORS: u64 = (BLOCK / SECTOR_SIZE) as u64;

fn fill_pattern(buf: &mut [u8], first_sector: u64) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b = disk_pattern(first_sector + (i / SECTOR_SIZE) as u64, i % SECTOR_SIZE);
    }
}

fn matches_pattern(buf: &[u8], first_sector: u64) -> bool {
    buf.iter()
        .enumerate()
        .all(|(i, &b)| b == disk_pattern(first_sector + (i / SECTOR_SIZE) as u64, i % SECTOR_SIZE))
}

/// Submits one request and waits for its completion (QD1 helper).
fn one(r: &mut Reactor, req: &Request) -> Result<usize, BlkError> {
    one_into(r, req, &mut Vec::new())
}

/// [`one`] with the caller's (empty) event list, so that a timed read
/// allocates nothing, as a component's read does not.
fn one_into(r: &mut Reactor, req: &Request, events: &mut Vec<Event>) -> Result<usize, BlkError> {
    // SAFETY: the caller's buffer outlives this call, which returns only
    // after the completion (tag 0) came back.
    unsafe { r.submit_blk(0, req)? };
    loop {
        r.wait(events);
        for e in events.drain(..) {
            if let Event::Blk(c) = e {
                return c.result;
            }
        }
    }
}

/// `test=blk`: returns whether every check passed.
pub fn blk_selftest(r: &mut Reactor) -> bool {
    let Some(cap) = r.blk.as_ref().map(|b| b.capacity()) else {
        println!("blk: no block device (give the VM a disk)");
        return false;
    };
    if cap < 64 {
        println!("blk: the disk is too small ({cap} sectors; need 64)");
        return false;
    }
    let mut ok = true;
    // 1. Patterned writes, including the device's last sector, then flush.
    let writes = selftest::blk_writes(cap);
    let mut buf = DmaBuf::new(BLOCK).expect("DMA buffer");
    for &(sector, n) in &writes {
        let len = (n * SECTOR_SIZE as u64) as usize;
        fill_pattern(&mut buf.as_mut_slice()[..len], sector);
        let res = one(
            r,
            &Request::Write {
                sector,
                buf: buf.as_ptr(),
                len,
            },
        );
        println!("blk: write {n} sectors at {sector}: {res:?}");
        ok &= res == Ok(len);
    }
    let res = one(r, &Request::Flush);
    println!("blk: flush: {res:?}");
    ok &= res == Ok(0);

    // 2. Read back at queue depth 16: one sector each, tags matched to the
    // sector they asked for, whatever order the device completes them in.
    let sectors: Vec<u64> = writes
        .iter()
        .flat_map(|&(s, n)| s..s + n)
        .take(16)
        .collect();
    let mut bufs: Vec<DmaBuf> = sectors
        .iter()
        .map(|_| DmaBuf::new(SECTOR_SIZE).expect("DMA buffer"))
        .collect();
    for (tag, (&sector, b)) in sectors.iter().zip(&mut bufs).enumerate() {
        // SAFETY: the buffers live in `bufs` until every completion is in.
        if let Err(e) = unsafe {
            r.submit_blk(
                tag as u64,
                &Request::Read {
                    sector,
                    buf: b.as_ptr(),
                    len: SECTOR_SIZE,
                },
            )
        } {
            println!("blk: submit {tag}: {e}");
            ok = false;
        }
    }
    let max_in_flight = r.blk.as_ref().map_or(0, |b| b.in_flight());
    let (mut matched, mut done) = (0, 0);
    let mut order = Vec::new();
    let mut events = Vec::new();
    while done < sectors.len() && ok {
        r.wait(&mut events);
        for e in events.drain(..) {
            if let Event::Blk(c) = e {
                done += 1;
                let tag = c.tag as usize;
                order.push(tag);
                if c.result == Ok(SECTOR_SIZE)
                    && matches_pattern(&bufs[tag].as_slice()[..SECTOR_SIZE], sectors[tag])
                {
                    matched += 1;
                }
            }
        }
    }
    println!(
        "blk: qd{max_in_flight} reads matched {matched}/{} (completion order {order:?})",
        sectors.len()
    );
    ok &= matched == sectors.len() && max_in_flight == sectors.len();

    // 3. Requests the device must refuse, with the kernel still fine after.
    for (what, req, want) in [
        (
            "read past the end",
            Request::Read {
                sector: cap,
                buf: buf.as_ptr(),
                len: SECTOR_SIZE,
            },
            "OutOfRange",
        ),
        (
            "read across the end",
            Request::Read {
                sector: cap - 1,
                buf: buf.as_ptr(),
                len: 2 * SECTOR_SIZE,
            },
            "OutOfRange",
        ),
        (
            "write past the end",
            Request::Write {
                sector: u64::MAX - 1,
                buf: buf.as_ptr(),
                len: SECTOR_SIZE,
            },
            "OutOfRange",
        ),
        (
            "read of 100 bytes",
            Request::Read {
                sector: 0,
                buf: buf.as_ptr(),
                len: 100,
            },
            "Unaligned",
        ),
    ] {
        let res = one(r, &req);
        match res {
            Err(e) => println!("blk: {what}: error: {e}"),
            Ok(n) => println!("blk: {what}: unexpectedly succeeded ({n} bytes)"),
        }
        ok &= matches!(res, Err(ref e) if alloc::format!("{e:?}").starts_with(want));
    }
    let res = one(
        r,
        &Request::Read {
            sector: 0,
            buf: buf.as_ptr(),
            len: BLOCK,
        },
    );
    ok &= res == Ok(BLOCK) && matches_pattern(&buf.as_slice()[..BLOCK], 0);
    println!("blk: {}", if ok { "ok" } else { "FAILED" });
    ok
}

/// Nearest-rank percentile; `per_mille` 500 is the median, 999 p99.9.
fn percentile(sorted: &[u64], per_mille: usize) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (per_mille * sorted.len()).div_ceil(1000);
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// A small xorshift: the random block numbers of the probe.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// QD1 latency: `ops` random 4 KiB reads over `blocks`, each submitted
/// and waited for alone; the ns of each (TSC before and after), and
/// whether all succeeded.
fn qd1_reads(r: &mut Reactor, ops: usize, blocks: u64, rng: &mut Rng) -> (Vec<u64>, bool) {
    let buf = DmaBuf::new(BLOCK).expect("DMA buffer");
    let mut lat = Vec::with_capacity(ops);
    let mut ok = true;
    let mut events = Vec::with_capacity(4);
    for _ in 0..ops {
        let (ns, res) = qd1_read(r, &buf, blocks, rng, &mut events);
        ok &= res;
        lat.push(ns);
    }
    (lat, ok)
}

/// One timed QD1 read of a random block into `buf`: its ns, and whether
/// it succeeded. `events` is empty, and left so.
fn qd1_read(
    r: &mut Reactor,
    buf: &DmaBuf,
    blocks: u64,
    rng: &mut Rng,
    events: &mut Vec<Event>,
) -> (u64, bool) {
    let clock = time::clock().expect("clock");
    let sector = rng.next() % blocks * BLOCK_SECTORS;
    crate::count_marks::kernel_read();
    let t0 = cpu::rdtsc();
    let res = one_into(
        r,
        &Request::Read {
            sector,
            buf: buf.as_ptr(),
            len: BLOCK,
        },
        events,
    );
    let t1 = cpu::rdtsc();
    crate::count_marks::kernel_read();
    (clock.tsc.ticks_to_ns(t1 - t0), res == Ok(BLOCK))
}

/// The kernel-only QD1 reads of `probe=blk` in a component's boot: the
/// same-boot reference of `ringos probe blk --component`, so neither the
/// device's drift between boots nor the host's within one enters the
/// ratio more on one side than the other. The component asks for a block
/// of them beside each block of its own reads
/// (`ringos:probe/baseline.read`), so both sets sample the same
/// milliseconds of the host. All land in one list, printed once after the
/// last run.
pub struct BlkBaseline {
    lat: Vec<u64>,
    ok: bool,
    rng: Rng,
    /// The page the reads land in, and the reactor's event list (allocated
    /// once: a paired read allocates nothing, as the component's do not).
    buf: Option<DmaBuf>,
    events: Vec<Event>,
}

impl Default for BlkBaseline {
    fn default() -> Self {
        Self::new()
    }
}

impl BlkBaseline {
    pub fn new() -> Self {
        BlkBaseline {
            lat: Vec::new(),
            ok: true,
            rng: Rng(0x9e37_79b9_7f4a_7c15),
            buf: None,
            events: Vec::with_capacity(4),
        }
    }

    /// `count` reads, back to back, paired with as many of the
    /// component's: it must have none of its own in flight (each of these
    /// takes the next completion as its own).
    pub fn paired(&mut self, r: &mut Reactor, count: u32) {
        let busy = r.blk.as_ref().map_or(0, |b| b.in_flight());
        if busy > 0 {
            log::error!(
                "ringos:probe: baseline reads asked for with {busy} request(s) of the component in flight: refused"
            );
            self.ok = false;
            return;
        }
        self.reads(r, count as usize);
    }

    /// `n` timed reads, stopping at the first that cannot be done.
    fn reads(&mut self, r: &mut Reactor, n: usize) {
        for _ in 0..n {
            if !self.read(r) {
                return;
            }
        }
    }

    /// One timed read; false if there is no disk to read (nothing done).
    fn read(&mut self, r: &mut Reactor) -> bool {
        let Some(cap) = r.blk.as_ref().map(|b| b.capacity()) else {
            self.ok = false;
            return false;
        };
        let blocks = cap / BLOCK_SECTORS;
        if blocks == 0 {
            self.ok = false;
            return false;
        }
        if self.buf.is_none() {
            self.buf = DmaBuf::new(BLOCK);
        }
        let Some(buf) = &self.buf else {
            self.ok = false;
            return false;
        };
        let (ns, ok) = qd1_read(r, buf, blocks, &mut self.rng, &mut self.events);
        self.lat.push(ns);
        self.ok &= ok;
        true
    }

    /// Prints the pooled result (after the last slice).
    pub fn report(&mut self) {
        if self.lat.is_empty() && self.ok {
            return;
        }
        self.lat.sort_unstable();
        println!(
            "{}baseline-qd1-read-4k ops={} ok={} p50_ns={} p99_ns={} max_ns={}",
            probe::BLK_LINE,
            self.lat.len(),
            u8::from(self.ok),
            percentile(&self.lat, 500),
            percentile(&self.lat, 990),
            self.lat.last().copied().unwrap_or(0)
        );
    }
}

/// `probe=blk`: QD1 4 KiB random-read latency (TSC-timed), IOPS at `qd`,
/// and with `write`, patterned writes + flush + read-back verification.
pub fn blk_probe(r: &mut Reactor, ops: usize, qd: usize, write: bool) -> bool {
    let Some(cap) = r.blk.as_ref().map(|b| b.capacity()) else {
        println!("{}error=no block device", probe::BLK_LINE);
        return false;
    };
    let blocks = cap / BLOCK_SECTORS;
    if blocks == 0 {
        println!("{}error=disk smaller than 4 KiB", probe::BLK_LINE);
        return false;
    }
    let clock = time::clock().expect("clock");
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut ok = true;
    println!(
        "{}capacity_sectors={cap} ops={ops} qd={qd} io={}",
        probe::BLK_LINE,
        r.mode().name()
    );

    if write {
        let n = (ops as u64).min(blocks);
        let mut buf = DmaBuf::new(BLOCK).expect("DMA buffer");
        for b in 0..n {
            fill_pattern(buf.as_mut_slice(), b * BLOCK_SECTORS);
            ok &= one(
                r,
                &Request::Write {
                    sector: b * BLOCK_SECTORS,
                    buf: buf.as_ptr(),
                    len: BLOCK,
                },
            ) == Ok(BLOCK);
        }
        ok &= one(r, &Request::Flush) == Ok(0);
        let mut mismatches = 0;
        for b in 0..n {
            let res = one(
                r,
                &Request::Read {
                    sector: b * BLOCK_SECTORS,
                    buf: buf.as_ptr(),
                    len: BLOCK,
                },
            );
            if res != Ok(BLOCK) || !matches_pattern(buf.as_slice(), b * BLOCK_SECTORS) {
                mismatches += 1;
            }
        }
        println!(
            "{}verify blocks={n} mismatches={mismatches}",
            probe::BLK_LINE
        );
        ok &= mismatches == 0;
    }

    let (mut lat, reads_ok) = qd1_reads(r, ops, blocks, &mut rng);
    ok &= reads_ok;
    lat.sort_unstable();
    println!(
        "{}qd1-read-4k ops={ops} p50_ns={} p90_ns={} p99_ns={} p999_ns={} max_ns={}",
        probe::BLK_LINE,
        percentile(&lat, 500),
        percentile(&lat, 900),
        percentile(&lat, 990),
        percentile(&lat, 999),
        lat.last().copied().unwrap_or(0)
    );

    // Throughput at queue depth `qd`: keep `qd` reads in flight.
    let qd = qd.clamp(1, ringos_drivers::blk::MAX_IN_FLIGHT);
    let bufs: Vec<DmaBuf> = (0..qd)
        .map(|_| DmaBuf::new(BLOCK).expect("DMA buffer"))
        .collect();
    let (mut submitted, mut completed, mut max_in_flight) = (0usize, 0usize, 0usize);
    let mut events = Vec::new();
    let t0 = cpu::rdtsc();
    let mut free: Vec<usize> = (0..qd).collect();
    while completed < ops && ok {
        while submitted < ops {
            let Some(i) = free.pop() else { break };
            let sector = rng.next() % blocks * BLOCK_SECTORS;
            // SAFETY: bufs[i] is not reused until its completion (tag i).
            match unsafe {
                r.submit_blk(
                    i as u64,
                    &Request::Read {
                        sector,
                        buf: bufs[i].as_ptr(),
                        len: BLOCK,
                    },
                )
            } {
                Ok(()) => submitted += 1,
                Err(_) => {
                    free.push(i);
                    break;
                }
            }
        }
        max_in_flight = max_in_flight.max(submitted - completed);
        r.wait(&mut events);
        for e in events.drain(..) {
            if let Event::Blk(c) = e {
                ok &= c.result == Ok(BLOCK);
                completed += 1;
                free.push(c.tag as usize);
            }
        }
    }
    let ns = clock.tsc.ticks_to_ns(cpu::rdtsc() - t0).max(1);
    println!(
        "{}qd{qd}-read-4k ops={completed} ns={ns} iops={} max_in_flight={max_in_flight}",
        probe::BLK_LINE,
        completed as u64 * 1_000_000_000 / ns
    );
    println!("{}done ok={}", probe::BLK_LINE, ok as u8);
    ok
}

/// `service=udp-echo`: echo until the host sends the quit datagram.
pub fn udp_echo(r: &mut Reactor, port: u16) -> bool {
    let Some(net) = r.net.as_mut() else {
        println!("net: no network device (give the VM a NIC)");
        return false;
    };
    net.serve_udp_echo(port);
    println!(
        "{} udp-echo port={port} ip={} io={}",
        marker::SERVICE_READY,
        super::net::GUEST_IP,
        r.mode().name()
    );
    r.run_until(|r| r.net.as_ref().is_some_and(|n| n.quit_requested()));
    let s = r.net.as_ref().map(|n| n.stats()).unwrap_or_default();
    let mut line = alloc::format!(
        "{}rx={} tx={} echoed={} dropped={}",
        marker::NET_STATS,
        s.rx_frames,
        s.tx_frames,
        s.echoed,
        s.dropped_total()
    );
    for d in ringos_drivers::frame_check::Drop::ALL {
        line.push_str(&alloc::format!(" {}={}", d.name(), s.dropped[d as usize]));
    }
    println!("{line} halts={}", r.stats.halts);
    true
}
