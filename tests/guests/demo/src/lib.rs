//! `demo`: the component `./ringos.sh` boots. With no arguments it shows
//! ringos at work: output, a 50 ms timer, random bytes, and a write, flush
//! and read-back on the VM's disk through `ringos:blk` (the device moves
//! the bytes straight to and from this component's memory).
//!
//! Other modes, for the tests and the probe:
//! - `disk-check`: writes a known pattern (several device requests' worth
//!   and the disk's last block), reads it back, and tries requests that
//!   must fail; the host then checks the image file.
//! - `probe N`: N random 4 KiB reads at queue depth 1, each timed from the
//!   call to the device's completion; prints the latencies' percentiles.
//!   Each block of 32 is paired with as many kernel-only reads
//!   (`ringos:probe/baseline`), after even blocks and before odd ones, as
//!   `benches/blk/probe.wat` does.
//! - `args`: prints its arguments and environment, one per line.
//! - `cat`: copies stdin to stdout, byte for byte, until stdin ends
//!   (`echo hi | ringos run demo.wasm -- cat`).

wit_bindgen::generate!({
    path: "../wit",
    world: "demo",
    with: {
        "ringos:blk/disk@0.1.0": generate,
        "ringos:probe/baseline@0.1.0": generate,
    },
});

use ringos::blk::disk::{self, ErrorCode};
use wasip3::clocks::monotonic_clock;

wasip3::cli::command::export!(Demo);

struct Demo;

/// Byte `i` of the pattern `disk-check` writes at absolute offset `i`.
/// The host's test computes the same.
pub fn pattern(i: u64) -> u8 {
    ((i / 512).wrapping_mul(31) ^ (i % 512).wrapping_mul(7) ^ 0x5a) as u8
}

async fn print(text: String) {
    let (mut tx, rx) = wasip3::wit_stream::new();
    let done = wasip3::cli::stdout::write_via_stream(rx);
    let rest = tx.write_all(text.into_bytes()).await;
    assert!(rest.is_empty());
    drop(tx);
    let _ = done.await;
}

/// Reads `len` bytes at `offset` into one buffer.
async fn read(offset: u64, len: usize) -> Result<Vec<u8>, ErrorCode> {
    let (mut rx, status) = disk::read(offset, len as u64);
    let mut buf = Vec::with_capacity(len);
    while buf.len() < len {
        let (r, b) = rx.read(buf).await;
        buf = b;
        if !matches!(r, wit_bindgen::StreamResult::Complete(_)) {
            break;
        }
    }
    drop(rx);
    status.await?;
    Ok(buf)
}

/// Writes `data` at `offset`.
async fn write(offset: u64, data: Vec<u8>) -> Result<(), ErrorCode> {
    let (mut tx, rx) = wit_stream::new();
    let status = disk::write(offset, rx);
    let rest = tx.write_all(data).await;
    drop(tx);
    status.await?;
    if !rest.is_empty() {
        return Err(ErrorCode::Io);
    }
    Ok(())
}

fn ms(ns: u64) -> String {
    format!("{}.{:01}", ns / 1_000_000, (ns / 100_000) % 10)
}

async fn demo() -> Result<(), ()> {
    print("ringos demo: a WASI 0.3 component, JIT-compiled in the guest kernel\n".into()).await;

    // Twice: under TCG the first wait also pays for QEMU translating the
    // loop's code on its first run (README), the second shows the timer.
    let mut waited = [0; 2];
    for w in &mut waited {
        let t0 = monotonic_clock::now();
        monotonic_clock::wait_for(50_000_000).await;
        *w = monotonic_clock::now() - t0;
    }
    print(format!(
        "timer: asked for 50 ms, woke after {} ms; again: {} ms\n",
        ms(waited[0]),
        ms(waited[1])
    ))
    .await;

    let (a, b) = (
        wasip3::random::random::get_random_bytes(8),
        wasip3::random::random::get_random_bytes(8),
    );
    let hex = |v: &[u8]| v.iter().map(|b| format!("{b:02x}")).collect::<String>();
    print(format!("random: {} {} (RDRAND)\n", hex(&a), hex(&b))).await;

    let cap = disk::capacity();
    if cap == 0 {
        print("disk: none (give the VM one: ringos run demo.wasm --disk FILE)\n".into()).await;
        return Ok(());
    }
    let text = b"ringos:blk -- written by the demo component, by DMA from its memory\n";
    let mut block = vec![0u8; 4096];
    block[..text.len()].copy_from_slice(text);
    let at = 0;
    let t0 = monotonic_clock::now();
    let written = write(at, block.clone()).await;
    let flushed = disk::flush().await;
    let t1 = monotonic_clock::now();
    let back = read(at, block.len()).await;
    let t2 = monotonic_clock::now();
    match (written, flushed, back) {
        (Ok(()), Ok(()), Ok(back)) if back == block => {
            print(format!(
                "disk: {} MiB; wrote 4 KiB at offset {at} and flushed ({} ms), read it back ({} ms): identical\n",
                cap >> 20,
                ms(t1 - t0),
                ms(t2 - t1)
            ))
            .await;
            Ok(())
        }
        (w, f, r) => {
            print(format!(
                "disk: FAILED: write {w:?}, flush {f:?}, read {:?}\n",
                r.map(|b| b == block)
            ))
            .await;
            Err(())
        }
    }
}

/// The pattern over `[offset, offset + len)`.
fn patterned(offset: u64, len: usize) -> Vec<u8> {
    (offset..offset + len as u64).map(pattern).collect()
}

/// Prints `what` with its verdict; returns `good`.
async fn check(what: String, good: bool) -> bool {
    print(what + if good { ": ok\n" } else { ": FAILED\n" }).await;
    good
}

async fn disk_check() -> Result<(), ()> {
    let cap = disk::capacity();
    print(format!(
        "disk-check: capacity {cap} bytes, block {}\n",
        disk::block_size()
    ))
    .await;
    let mut ok = true;
    // 200 KiB at 1 MiB: more than one device request (64 KiB each).
    let big = (1u64 << 20, 200 * 1024);
    // The last block of the disk.
    let last = (cap - 512, 512);
    for (offset, len) in [big, last] {
        let w = write(offset, patterned(offset, len)).await;
        ok &= check(format!("write {len} at {offset}: {w:?}"), w.is_ok()).await;
    }
    let f = disk::flush().await;
    ok &= check(format!("flush: {f:?}"), f.is_ok()).await;
    for (offset, len) in [big, last] {
        let r = read(offset, len).await;
        let same = r.as_ref().is_ok_and(|b| *b == patterned(offset, len));
        let verdict = if same { "the pattern" } else { "MISMATCH" };
        ok &= check(format!("read {len} at {offset}: {verdict}"), same).await;
    }
    // Requests that must fail, with the right error and nothing written.
    let past = read(cap, 512).await;
    let good = matches!(past, Err(ErrorCode::OutOfRange));
    ok &= check(format!("read past the end: {past:?}"), good).await;
    let odd = read(100, 512).await;
    let good = matches!(odd, Err(ErrorCode::Unaligned));
    ok &= check(format!("read at an unaligned offset: {odd:?}"), good).await;
    let over = write(cap - 512, vec![0xee; 1024]).await;
    let good = matches!(over, Err(ErrorCode::OutOfRange));
    ok &= check(format!("write across the end: {over:?}"), good).await;
    print(format!(
        "disk-check: {}\n",
        if ok { "passed" } else { "FAILED" }
    ))
    .await;
    if ok {
        Ok(())
    } else {
        Err(())
    }
}

async fn probe(ops: usize) -> Result<(), ()> {
    let cap = disk::capacity();
    let blocks = cap / 4096;
    if blocks == 0 {
        print("probe: the disk is smaller than 4 KiB\n".into()).await;
        return Err(());
    }
    // A small xorshift: the offsets only need to be spread out.
    let mut x = u64::from_le_bytes(
        wasip3::random::random::get_random_bytes(8)
            .try_into()
            .unwrap_or([7; 8]),
    ) | 1;
    // What the two parts of the platform's work cost, outside the timed
    // reads: a host call that returns a number, and the `read` call alone
    // (its stream dropped unread: no I/O).
    let calib = 100u64;
    let t = monotonic_clock::now();
    for _ in 0..calib {
        monotonic_clock::now();
    }
    let now_ns = (monotonic_clock::now() - t) / calib;
    let t = monotonic_clock::now();
    for _ in 0..calib {
        drop(disk::read(0, 4096));
    }
    let call_ns = (monotonic_clock::now() - t) / calib;
    let mut ns = Vec::with_capacity(ops);
    let mut buf = Vec::with_capacity(4096);
    let warm = ops / 10;
    for i in 0..ops + warm {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let offset = (x % blocks) * 4096;
        // The timed read's index; its block's kernel-only pair goes first
        // in odd blocks.
        let n = i.checked_sub(warm);
        if let Some(n) = n.filter(|n| n % 32 == 0 && (n / 32) % 2 == 1) {
            ringos::probe::baseline::read((ops - n).min(32) as u32);
        }
        buf.clear();
        let t0 = monotonic_clock::now();
        let (mut rx, status) = disk::read(offset, 4096);
        let (r, b) = rx.read(buf).await;
        let t1 = monotonic_clock::now();
        buf = b;
        drop(rx);
        let st = status.await;
        if !matches!(r, wit_bindgen::StreamResult::Complete(4096)) || st.is_err() {
            print(format!("probe: read at {offset} failed: {r:?} {st:?}\n")).await;
            return Err(());
        }
        // The first tenth warms up (JIT'd paths, the device's first touch).
        if let Some(n) = n {
            ns.push(t1 - t0);
            // ... and after the last of an even block.
            if (n / 32) % 2 == 0 && ((n + 1) % 32 == 0 || n + 1 == ops) {
                ringos::probe::baseline::read((n % 32 + 1) as u32);
            }
        }
    }
    ns.sort_unstable();
    let at = |q: usize| ns[(ns.len() * q / 100).min(ns.len() - 1)];
    print(format!(
        "probe: a host call (now) {now_ns} ns, disk.read() alone {call_ns} ns\n"
    ))
    .await;
    print(format!(
        "probe: reads={} p50_ns={} p99_ns={} min_ns={} max_ns={}\n",
        ns.len(),
        at(50),
        at(99),
        ns[0],
        ns[ns.len() - 1]
    ))
    .await;
    // Every latency too, so `ringos probe blk` can pool several runs.
    for chunk in ns.chunks(32) {
        let list: Vec<String> = chunk.iter().map(|v| v.to_string()).collect();
        print(format!("probe: lat_ns={}\n", list.join(","))).await;
    }
    Ok(())
}

/// Copies stdin to stdout until stdin ends; fails if either fails.
async fn cat() -> Result<(), ()> {
    let (mut rx, status) = wasip3::cli::stdin::read_via_stream();
    let (mut tx, out) = wasip3::wit_stream::new();
    let done = wasip3::cli::stdout::write_via_stream(out);
    let mut buf = Vec::with_capacity(16 << 10);
    loop {
        let (r, b) = rx.read(buf).await;
        buf = b;
        if !buf.is_empty() {
            buf = tx.write_all(buf).await;
            if !buf.is_empty() {
                return Err(()); // stdout went away
            }
            // What is handed back may have lost its room: a read fills
            // only the spare capacity.
            buf.reserve(16 << 10);
        }
        if !matches!(r, wit_bindgen::StreamResult::Complete(_)) {
            break;
        }
    }
    drop(rx);
    drop(tx);
    let read = status.await;
    let written = done.await;
    if read.is_ok() && written.is_ok() {
        Ok(())
    } else {
        Err(())
    }
}

impl wasip3::exports::cli::run::Guest for Demo {
    async fn run() -> Result<(), ()> {
        let args = wasip3::cli::environment::get_arguments();
        let words: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        match words.as_slice() {
            [] | [_] => demo().await,
            [_, "disk-check"] => disk_check().await,
            [_, "cat"] => cat().await,
            [_, "probe", n] => probe(n.parse().unwrap_or(1000).max(1)).await,
            [_, "args", ..] => {
                let mut out = String::new();
                for a in &args[2..] {
                    out += &format!("arg: {a}\n");
                }
                for (k, v) in wasip3::cli::environment::get_environment() {
                    out += &format!("env: {k}={v}\n");
                }
                print(out).await;
                Ok(())
            }
            _ => {
                print("usage: demo [disk-check | probe N | args ... | cat]\n".into()).await;
                Err(())
            }
        }
    }
}
