//! The contract between the host CLI (`ringos`) and the guest kernel.
//!
//! Both sides depend on this crate so the numbers and strings below exist in
//! one place only: the guest's exit statuses (carried by QEMU's
//! `isa-debug-exit`), the kernel command-line keys the CLI passes, and the
//! console lines the CLI and the tests look for.
#![no_std]

/// I/O port of QEMU's `isa-debug-exit` device (`-device isa-debug-exit,iobase=0xf4,iosize=4`).
pub const DEBUG_EXIT_PORT: u16 = 0xf4;

/// Guest exit statuses. A guest value `v` written to [`DEBUG_EXIT_PORT`]
/// makes QEMU exit with `(v << 1) | 1`; the CLI maps it back to `v`.
pub mod exit {
    /// Everything ran and finished.
    pub const SUCCESS: u8 = 0;
    /// Generic failure (a test mode's check failed, a bad argument).
    pub const FAILURE: u8 = 1;
    /// The kernel panicked (Rust convention for a panic status).
    pub const PANIC: u8 = 101;
    /// A CPU exception the kernel could not recover from.
    pub const CPU_EXCEPTION: u8 = 102;
    /// Out of physical memory or heap.
    pub const OUT_OF_MEMORY: u8 = 103;

    /// Host-side statuses of `ringos` itself (never written by the guest).
    pub mod host {
        /// `--timeout` elapsed; QEMU was killed (same as coreutils `timeout`).
        pub const TIMEOUT: i32 = 124;
        /// QEMU, qboot or the toolchain could not be found or started.
        pub const CANNOT_START: i32 = 125;
        /// QEMU exited without the guest writing an exit status
        /// (triple fault with `-no-reboot`, killed by a signal, ...).
        pub const NO_GUEST_STATUS: i32 = 126;
    }

    /// Decodes QEMU's process exit code into the guest's value, if the guest
    /// set one through `isa-debug-exit`.
    pub fn from_qemu_status(code: i32) -> Option<u8> {
        if code & 1 == 1 && (1..=511).contains(&code) {
            Some((code >> 1) as u8)
        } else {
            None
        }
    }

    /// A one-line description of a guest status for the CLI's messages.
    pub fn describe(v: u8) -> &'static str {
        match v {
            SUCCESS => "success",
            FAILURE => "failure",
            PANIC => "kernel panic",
            CPU_EXCEPTION => "CPU exception",
            OUT_OF_MEMORY => "out of memory",
            _ => "exit status",
        }
    }
}

/// Keys of the kernel command line (`key=value` words separated by spaces).
pub mod cmdline {
    /// Log level: `error`, `warn`, `info`, `debug`, `trace` (default `info`).
    pub const LOG: &str = "log";
    /// A self-test to run instead of the normal job (see [`crate::selftest`]).
    pub const TEST: &str = "test";
    /// How the reactor waits: `irq` (default, `hlt` when idle) or `poll`.
    pub const IO: &str = "io";
    /// A probe to run: `blk` (see [`crate::probe`]).
    pub const PROBE: &str = "probe";
    /// Probe parameters: operations, queue depth, write-and-verify (`1`).
    pub const OPS: &str = "ops";
    pub const QD: &str = "qd";
    pub const WRITE: &str = "write";
    /// A service to run until told to stop: `udp-echo`.
    pub const SERVICE: &str = "service";
    /// The UDP port of the echo service (default 7).
    pub const PORT: &str = "port";
    /// `wasm-timeout=<ms>`: interrupt a component still running after
    /// this long (it traps at its next loop iteration).
    pub const WASM_TIMEOUT: &str = "wasm-timeout";
    /// `epoch=<ns since 1970>` at boot: the wall clock (`wasi:clocks`
    /// system-clock) counts from it.
    pub const EPOCH: &str = "epoch";
    /// `blk-rounds=<R>` (default 1): the component runs R times in the
    /// boot; the kernel-only reads it asks for (`ringos:probe/baseline`)
    /// are pooled over all runs and printed once after the last, as
    /// `probe-blk: baseline-qd1-read-4k ...` (the same-boot reference of
    /// `ringos probe blk --component`).
    pub const BLK_ROUNDS: &str = "blk-rounds";
    /// `count-marks=1`: the kernel marks each timed kernel-only read and
    /// each component clock read with an instruction a TCG plugin counts
    /// between (`ringos probe blk --component --count`; see
    /// `benches/blk/insn_window.c`). Off, the marks cost a load and a
    /// branch.
    pub const COUNT_MARKS: &str = "count-marks";
    /// `phases=1`: the same marks also take the TSC, and after the run the
    /// kernel prints the median of each phase of a timed read, kernel-only
    /// and in the component (`probe-blk: phases path=... ` lines;
    /// `ringos probe blk --component --phases`).
    pub const PHASES: &str = "phases";

    /// `stdin=1`: the host feeds the serial port with its stdin, framed as
    /// [`super::input`] says, and the component's `wasi:cli/stdin` reads
    /// it. Without it stdin is empty (plain `qemu -serial stdio` sends
    /// keystrokes unframed, with no end).
    pub const STDIN: &str = "stdin";

    /// Iterates over the `key=value` (or bare `key`) words of a command line.
    pub fn words(line: &str) -> impl Iterator<Item = (&str, &str)> {
        line.split_ascii_whitespace()
            .map(|w| w.split_once('=').unwrap_or((w, "")))
    }

    /// The value of `key`, the last one if it is given more than once.
    pub fn get<'a>(line: &'a str, key: &str) -> Option<&'a str> {
        words(line)
            .filter(|(k, _)| *k == key)
            .map(|(_, v)| v)
            .last()
    }
}

/// Self-test modes selected with `test=<name>` on the kernel command line.
pub mod selftest {
    /// Sleep 100 ms on the LAPIC timer, printing a start and an end marker.
    pub const SLEEP: &str = "sleep";
    /// Read the unmapped null page: a page fault.
    pub const PAGE_FAULT: &str = "fault-pf";
    /// Execute `ud2`: an invalid opcode.
    pub const INVALID_OPCODE: &str = "fault-ud";
    /// Divide by zero with `div`: a divide error.
    pub const DIVIDE_ERROR: &str = "fault-de";
    /// Overflow the kernel stack into its guard page.
    pub const STACK_OVERFLOW: &str = "fault-stack";
    /// `panic!` on purpose.
    pub const PANIC: &str = "panic";
    /// Stop forever with interrupts masked (for the host's `--timeout`).
    pub const HANG: &str = "hang";
    /// Block device: patterned writes, flush, read-back at queue depth 16
    /// with completions matched to tags, and the errors for a request past
    /// the end or not sector-aligned. The host checks the image file after.
    pub const BLK: &str = "blk";
    /// Run the Wasm spec bundles of the image's payload
    /// ([`crate::payload::SPEC_BUNDLE`]) on the in-guest JIT; one
    /// [`crate::marker::WASM_SPEC`] line per file and a total line.
    pub const WASM_SPEC: &str = "wasm-spec";
    /// Every mode, for `--help` texts.
    pub const ALL: &[&str] = &[
        SLEEP,
        PAGE_FAULT,
        INVALID_OPCODE,
        DIVIDE_ERROR,
        STACK_OVERFLOW,
        PANIC,
        HANG,
        BLK,
        WASM_SPEC,
    ];

    /// Where the blk self-test writes, for a device of `capacity` sectors:
    /// (first sector, sectors) of each write.
    pub fn blk_writes(capacity: u64) -> [(u64, u64); 5] {
        let mid = capacity / 2 / 8 * 8;
        [
            (0, 8),
            (16, 8),
            (mid, 8),
            (capacity - 16, 8),
            (capacity - 1, 1),
        ]
    }
}

/// The bytes the block self-test and probe write: a function of the sector
/// and the offset in it, so the host can check any sector of the image.
pub fn disk_pattern(sector: u64, offset: usize) -> u8 {
    let x = sector.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56;
    (x as u8) ^ (offset as u8).wrapping_mul(31) ^ ((offset >> 8) as u8).wrapping_mul(97) ^ 0xa5
}

/// Probes selected with `probe=<name>`; each prints `key=value` lines.
pub mod probe {
    /// Block latency and throughput: lines start with [`BLK_LINE`].
    pub const BLK: &str = "blk";
    pub const BLK_LINE: &str = "probe-blk: ";
}

/// Services selected with `service=<name>`, run until the host says stop.
pub mod service {
    /// UDP echo on `port=` (default 7); the datagram [`QUIT`] ends it.
    pub const UDP_ECHO: &str = "udp-echo";
    pub const QUIT: &[u8] = b"ringos:quit";
    pub const DEFAULT_PORT: u16 = 7;
}

/// Lines the kernel prints that the host looks for. Each starts a line.
pub mod marker {
    /// First line of the banner: `ringos <version>`.
    pub const BANNER: &str = "ringos ";
    /// `memory: <usable MiB> MiB usable, <regions> regions`
    pub const MEMORY: &str = "memory: ";
    /// The kernel is up (printed after interrupts and the clock are ready):
    /// `ready: <ns since boot> ns`. `ringos probe boot` times up to this line.
    pub const READY: &str = "ready: ";
    /// `sleep: start` / `sleep: done <measured ns> ns` in the sleep self-test.
    pub const SLEEP_START: &str = "sleep: start";
    pub const SLEEP_DONE: &str = "sleep: done ";
    /// `EXCEPTION: <name> (#<mnemonic>, vector <n>) ...` for a CPU exception.
    pub const EXCEPTION: &str = "EXCEPTION: ";
    /// `PANIC: <message> at <file>:<line>`.
    pub const PANIC: &str = "PANIC: ";
    /// `service: ready ...`: a service listens; the host may start.
    pub const SERVICE_READY: &str = "service: ready";
    /// `net-stats: rx=.. tx=.. echoed=.. dropped=.. truncated=.. ...`
    pub const NET_STATS: &str = "net-stats: ";
    /// `EXIT: <status>`: the last line before the guest writes its status to
    /// `isa-debug-exit`. It tells a guest status 0 (QEMU exit code 1) from
    /// QEMU failing by itself (also exit code 1).
    pub const EXIT: &str = "EXIT: ";
    /// `wasm-spec: <file>: <N> passed, <N> failed` per spec file, then
    /// `wasm-spec: total: <N> passed, <N> failed` (test=wasm-spec).
    pub const WASM_SPEC: &str = "wasm-spec: ";
    /// The name the total line uses in place of a file.
    pub const WASM_SPEC_TOTAL: &str = "total";
    /// A line the component wrote to `wasi:cli/stdout` / `stderr` (the
    /// kernel buffers partial lines), its bytes escaped as [`super::output`]
    /// says: the host strips the marker, decodes the rest and keeps the
    /// app's output apart from kernel logs.
    pub const STDOUT: &str = "stdout: ";
    pub const STDERR: &str = "stderr: ";
    /// `component: <what happened>`: the component could not load, link or
    /// run, or it trapped (the message names the rule).
    pub const COMPONENT: &str = "component: ";
}

/// The host's stdin on the serial port (with `stdin=1`): its bytes as they
/// are, but [`ESCAPE`](input::ESCAPE) doubled; [`ESCAPE`](input::ESCAPE)
/// then [`END`](input::END) is the end of input (the serial line has no
/// end of its own). The host sends only once the kernel printed
/// [`marker::READY`]: the kernel's setup of the UART empties its receiver.
pub mod input {
    pub const ESCAPE: u8 = 0xff;
    pub const END: u8 = 0x00;

    /// The framed bytes for `bytes`, to `push`.
    pub fn encode(bytes: &[u8], mut push: impl FnMut(&[u8])) {
        for piece in bytes.split_inclusive(|&b| b == ESCAPE) {
            push(piece);
            if piece.last() == Some(&ESCAPE) {
                push(&[ESCAPE]);
            }
        }
    }

    /// What a framed byte means.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Unframed {
        Byte(u8),
        /// The first half of an escape: nothing yet.
        Nothing,
        End,
    }

    /// Undoes [`encode`] byte by byte.
    #[derive(Default, Debug)]
    pub struct Decoder {
        escaped: bool,
    }

    impl Decoder {
        pub fn feed(&mut self, b: u8) -> Unframed {
            match (core::mem::take(&mut self.escaped), b) {
                (false, ESCAPE) => {
                    self.escaped = true;
                    Unframed::Nothing
                }
                (false, b) => Unframed::Byte(b),
                (true, END) => Unframed::End,
                // `ESCAPE ESCAPE` (anything else after an escape is not
                // sent; taken as the byte).
                (true, b) => Unframed::Byte(b),
            }
        }
    }
}

/// A component's output bytes on the console, exactly: the text of a
/// `stdout: ` / `stderr: ` line stands for its bytes and then a newline.
/// Printable UTF-8 and tabs are themselves; a backslash is `\\`; every
/// other byte (controls, `\r`, escape sequences, bytes that are not
/// UTF-8) is `\xNN`. A line ending in `\c` has no newline after it (the
/// last piece of output, or a long piece cut off). The console stays
/// valid UTF-8 that a terminal shows as it is, and nothing the component
/// writes can fake a kernel line.
pub mod output {
    use core::fmt::{self, Write};

    /// Where a long piece is cut (`\c`): the kernel buffers no more than
    /// this per stream.
    pub const MAX_LINE: usize = 4096;

    /// Writes the text of one line for `bytes` (without its newline) to
    /// `out`; `newline: false` ends it with `\c`.
    pub fn encode(bytes: &[u8], newline: bool, out: &mut impl Write) -> fmt::Result {
        for chunk in bytes.utf8_chunks() {
            for c in chunk.valid().chars() {
                match c {
                    '\\' => out.write_str("\\\\")?,
                    '\t' => out.write_char(c)?,
                    c if c.is_control() => {
                        let mut utf8 = [0; 4];
                        for b in c.encode_utf8(&mut utf8).bytes() {
                            write!(out, "\\x{b:02x}")?;
                        }
                    }
                    c => out.write_char(c)?,
                }
            }
            for b in chunk.invalid() {
                write!(out, "\\x{b:02x}")?;
            }
        }
        if !newline {
            out.write_str("\\c")?;
        }
        Ok(())
    }

    /// The bytes a line's `text` stands for, given to `push` piece by
    /// piece, newline included unless it ends in `\c`. What is not a
    /// known escape is taken as it is.
    pub fn decode(text: &str, mut push: impl FnMut(&[u8])) {
        let (body, newline) = match text.strip_suffix("\\c") {
            // `\\c` at the end is a backslash and a `c`.
            Some(b) if !ends_in_escaped_backslash(b) => (b, false),
            _ => (text, true),
        };
        let mut rest = body.as_bytes();
        while let Some(at) = rest.iter().position(|&b| b == b'\\') {
            push(&rest[..at]);
            let hex = |h: &[u8]| {
                core::str::from_utf8(h)
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
            };
            rest = match &rest[at + 1..] {
                [b'\\', tail @ ..] => {
                    push(b"\\");
                    tail
                }
                [b'x', h @ ..] if h.len() >= 2 && hex(&h[..2]).is_some() => {
                    push(&[hex(&h[..2]).unwrap_or(0)]);
                    &h[2..]
                }
                tail => {
                    push(b"\\");
                    tail
                }
            };
        }
        push(rest);
        if newline {
            push(b"\n");
        }
    }

    /// Whether `s` ends in an odd number of backslashes: a `\\c` after
    /// them is then an escaped backslash and a `c`, not the marker.
    fn ends_in_escaped_backslash(s: &str) -> bool {
        s.bytes().rev().take_while(|&b| b == b'\\').count() % 2 == 1
    }
}

/// What the CLI embeds in the kernel image (no kernel rebuild): a payload
/// in its own PT_LOAD segment, found through [`payload::Descriptor`], holding a
/// tagged container of entries.
///
/// The container: [`payload::MAGIC`] (8 bytes), then entries of
/// `kind: u32 LE, len: u64 LE, bytes[len]`, packed, to the end.
pub mod payload {
    /// Name of the descriptor static in the kernel's `.data`; the CLI finds
    /// it through the ELF symbol table and patches it.
    pub const DESCRIPTOR_SYMBOL: &str = "RINGOS_PAYLOAD";
    /// `Descriptor::magic`.
    pub const DESCRIPTOR_MAGIC: u64 = u64::from_le_bytes(*b"RNGPAYLD");
    pub const DESCRIPTOR_VERSION: u32 = 1;
    /// Container magic.
    pub const MAGIC: [u8; 8] = *b"RNGOSPL1";

    /// A component (a Wasm binary).
    pub const COMPONENT: u32 = 1;
    /// Program arguments: NUL-separated UTF-8 strings.
    pub const ARGS: u32 = 2;
    /// Environment: NUL-separated `KEY=VALUE` strings.
    pub const ENV: u32 = 3;
    /// A spec-test bundle: `name_len: u32 LE, name (UTF-8), bundle bytes`
    /// (the bundle format is `ringos_runtime::script`'s).
    pub const SPEC_BUNDLE: u32 = 4;

    /// The kernel's `#[no_mangle] static RINGOS_PAYLOAD` (in `.data`);
    /// `paddr`/`len` are 0 when the image carries no payload.
    #[repr(C)]
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Descriptor {
        pub magic: u64,
        pub version: u32,
        pub reserved: u32,
        /// Physical (= load) address of the container.
        pub paddr: u64,
        pub len: u64,
    }

    impl Descriptor {
        pub const SIZE: usize = 32;
        pub const EMPTY: Descriptor = Descriptor {
            magic: DESCRIPTOR_MAGIC,
            version: DESCRIPTOR_VERSION,
            reserved: 0,
            paddr: 0,
            len: 0,
        };

        pub fn to_bytes(&self) -> [u8; Self::SIZE] {
            let mut b = [0u8; Self::SIZE];
            b[0..8].copy_from_slice(&self.magic.to_le_bytes());
            b[8..12].copy_from_slice(&self.version.to_le_bytes());
            b[12..16].copy_from_slice(&self.reserved.to_le_bytes());
            b[16..24].copy_from_slice(&self.paddr.to_le_bytes());
            b[24..32].copy_from_slice(&self.len.to_le_bytes());
            b
        }

        pub fn from_bytes(b: &[u8]) -> Option<Descriptor> {
            let u64_at = |o: usize| Some(u64::from_le_bytes(b.get(o..o + 8)?.try_into().ok()?));
            let u32_at = |o: usize| Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?));
            Some(Descriptor {
                magic: u64_at(0)?,
                version: u32_at(8)?,
                reserved: u32_at(12)?,
                paddr: u64_at(16)?,
                len: u64_at(24)?,
            })
        }
    }

    /// One entry of a container.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Entry<'a> {
        pub kind: u32,
        pub bytes: &'a [u8],
    }

    /// The entries of a container, or `None` if it is not one (bad magic
    /// or a truncated entry).
    pub fn entries(container: &[u8]) -> Option<impl Iterator<Item = Entry<'_>>> {
        let mut rest = container.strip_prefix(&MAGIC[..])?;
        let mut all_ok = true;
        let mut check = rest;
        while !check.is_empty() {
            match split_entry(check) {
                Some((_, tail)) => check = tail,
                None => {
                    all_ok = false;
                    break;
                }
            }
        }
        all_ok.then_some(core::iter::from_fn(move || {
            let (e, tail) = split_entry(rest)?;
            rest = tail;
            Some(e)
        }))
    }

    fn split_entry(b: &[u8]) -> Option<(Entry<'_>, &[u8])> {
        let kind = u32::from_le_bytes(b.get(0..4)?.try_into().ok()?);
        let len = u64::from_le_bytes(b.get(4..12)?.try_into().ok()?);
        let len = usize::try_from(len).ok()?;
        let bytes = b.get(12..12usize.checked_add(len)?)?;
        Some((Entry { kind, bytes }, &b[12 + len..]))
    }

    /// Splits a [`SPEC_BUNDLE`] entry into (file name, bundle bytes).
    pub fn split_spec_bundle(b: &[u8]) -> Option<(&str, &[u8])> {
        let n = u32::from_le_bytes(b.get(0..4)?.try_into().ok()?) as usize;
        let name = core::str::from_utf8(b.get(4..4usize.checked_add(n)?)?).ok()?;
        Some((name, &b[4 + n..]))
    }
}

#[cfg(test)]
extern crate std;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_status_decoding() {
        assert_eq!(exit::from_qemu_status(1), Some(0));
        assert_eq!(exit::from_qemu_status(3), Some(1));
        assert_eq!(exit::from_qemu_status((101 << 1) | 1), Some(101));
        assert_eq!(exit::from_qemu_status(511), Some(255));
        assert_eq!(exit::from_qemu_status(0), None);
        assert_eq!(exit::from_qemu_status(2), None);
    }

    #[test]
    fn payload_container_parses() {
        let mut c = payload::MAGIC.to_vec();
        for (kind, bytes) in [
            (payload::ARGS, &b"a\0b"[..]),
            (payload::COMPONENT, &b""[..]),
        ] {
            c.extend_from_slice(&kind.to_le_bytes());
            c.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
            c.extend_from_slice(bytes);
        }
        let e: [_; 2] = core::array::from_fn({
            let mut it = payload::entries(&c).unwrap();
            move |_| it.next().unwrap()
        });
        assert_eq!(e[0].kind, payload::ARGS);
        assert_eq!(e[0].bytes, b"a\0b");
        assert_eq!(e[1].kind, payload::COMPONENT);
        assert!(payload::entries(&c[..c.len() - 1]).is_none());
        assert!(payload::entries(b"nope").is_none());
        let d = payload::Descriptor {
            paddr: 0x80_0000,
            len: 5,
            ..payload::Descriptor::EMPTY
        };
        assert_eq!(payload::Descriptor::from_bytes(&d.to_bytes()), Some(d));
        let mut sb = 3u32.to_le_bytes().to_vec();
        sb.extend_from_slice(b"i32xyz");
        assert_eq!(payload::split_spec_bundle(&sb), Some(("i32", &b"xyz"[..])));
    }

    fn round_trip(bytes: &[u8], newline: bool) -> (std::string::String, std::vec::Vec<u8>) {
        let mut text = std::string::String::new();
        output::encode(bytes, newline, &mut text).unwrap();
        let mut back = std::vec::Vec::new();
        output::decode(&text, |b| back.extend_from_slice(b));
        (text, back)
    }

    #[test]
    fn output_bytes_survive_the_console_exactly() {
        let every: std::vec::Vec<u8> = (0..=255u8).collect();
        let cases: [&[u8]; 12] = [
            b"",
            b"Hello, WASI!",
            &every,
            b"\\",
            b"\\c",
            b"a\\\\c",
            b"ends in a backslash \\",
            b"\\x41 is not an A",
            b"tab\tcr\r\x1b[31mred\x1b[0m",
            "caf\u{e9} \u{1f980} \u{85}".as_bytes(),
            &[0xe2, 0x82],
            &[0xff, b'c'],
        ];
        for bytes in cases {
            for newline in [true, false] {
                let (text, back) = round_trip(bytes, newline);
                let mut want = bytes.to_vec();
                if newline {
                    want.push(b'\n');
                }
                assert_eq!(back, want, "{bytes:?} as {text:?}");
                // One console line: no line breaks, nothing a terminal
                // would act on.
                assert!(
                    text.chars().all(|c| c == '\t' || !c.is_control()),
                    "{text:?}"
                );
            }
        }
        // Printable text reads as it is.
        assert_eq!(round_trip(b"Hello, WASI!", true).0, "Hello, WASI!");
        assert_eq!(round_trip(b"a\\b", true).0, "a\\\\b");
        assert_eq!(round_trip(b"no newline", false).0, "no newline\\c");
        // A broken escape from elsewhere is taken as it is.
        let mut back = std::vec::Vec::new();
        output::decode("\\x4 \\q", |b| back.extend_from_slice(b));
        assert_eq!(back, b"\\x4 \\q\n");
    }

    #[test]
    fn stdin_framing_round_trips_and_ends() {
        let every: std::vec::Vec<u8> = (0..=255u8).chain([0xff, 0xff, 0, 0xff]).collect();
        let mut framed = std::vec::Vec::new();
        input::encode(&every, |b| framed.extend_from_slice(b));
        framed.extend_from_slice(&[input::ESCAPE, input::END, b'x']);
        let mut d = input::Decoder::default();
        let mut back = std::vec::Vec::new();
        for &b in &framed {
            match d.feed(b) {
                input::Unframed::Byte(b) => back.push(b),
                input::Unframed::Nothing => {}
                input::Unframed::End => break,
            }
        }
        assert_eq!(back, every);
    }

    #[test]
    fn cmdline_lookup() {
        let l = "log=debug test=sleep quiet log=warn";
        assert_eq!(cmdline::get(l, "log"), Some("warn"));
        assert_eq!(cmdline::get(l, "test"), Some("sleep"));
        assert_eq!(cmdline::get(l, "quiet"), Some(""));
        assert_eq!(cmdline::get(l, "nope"), None);
    }
}
