//! The console: COM1 (a 16550 UART at port 0x3f8) and the `log` backend.
//!
//! Everything the kernel prints goes through one lock. Fault and panic paths
//! use [`emergency`], which writes without the lock: the lock may be held by
//! the very code that faulted.

use crate::arch::port::{inb, outb};
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, Ordering};
use log::{Level, LevelFilter, Log, Metadata, Record};
use spin::Mutex;

const COM1: u16 = 0x3f8;
/// The 16550's transmit FIFO (enabled in `init`).
const FIFO_DEPTH: usize = 16;

pub struct Serial {
    port: u16,
}

impl Serial {
    const fn new(port: u16) -> Self {
        Self { port }
    }

    fn init(&self) {
        let p = self.port;
        // SAFETY: the 16550 programming sequence on COM1's ports:
        // interrupts off, 115200 baud (divisor 1), 8N1, FIFOs on.
        unsafe {
            outb(p + 1, 0x00);
            outb(p + 3, 0x80);
            outb(p, 0x01);
            outb(p + 1, 0x00);
            outb(p + 3, 0x03);
            outb(p + 2, 0xc7);
            outb(p + 4, 0x03);
        }
    }

    /// Writes bytes, polling the line status only once per FIFO's worth
    /// (each port access is a VM exit, and the console is on the boot path).
    fn put_all(&self, bytes: impl Iterator<Item = u8>) {
        let mut room = 0;
        for byte in bytes {
            if room == 0 {
                // Bounded wait for an empty transmit FIFO: a missing UART
                // (LSR reads 0xff) must not hang the kernel.
                for _ in 0..100_000 {
                    // SAFETY: reading COM1's line status register.
                    if unsafe { inb(self.port + 5) } & 0x20 != 0 {
                        break;
                    }
                }
                room = FIFO_DEPTH;
            }
            // SAFETY: writing COM1's transmit register.
            unsafe { outb(self.port, byte) };
            room -= 1;
        }
    }
}

impl Write for Serial {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.put_all(
            s.bytes()
                .flat_map(|b| (b == b'\n').then_some(b'\r').into_iter().chain([b])),
        );
        Ok(())
    }
}

static CONSOLE: Mutex<Serial> = Mutex::new(Serial::new(COM1));
static READY: AtomicBool = AtomicBool::new(false);
/// A read of the serial port's input waits (see [`set_input_wanted`]).
static INPUT_WANTED: AtomicBool = AtomicBool::new(false);

/// Whether a received byte waits in COM1's receive FIFO.
pub fn input_ready() -> bool {
    // SAFETY: reading COM1's line status register (data ready: bit 0).
    unsafe { inb(COM1 + 5) & 1 != 0 }
}

/// Takes a received byte from COM1, if one is there.
pub fn read_byte() -> Option<u8> {
    crate::interrupts::without(|| {
        let _console = CONSOLE.lock();
        // SAFETY: reading COM1's receive register once its line status
        // says a byte is there.
        input_ready().then(|| unsafe { inb(COM1) })
    })
}

/// Received bytes raise COM1's interrupt from the first one on (FIFO
/// trigger level 1, the received-data interrupt on): for the host's stdin
/// (`stdin=1`), so the loop may halt while a read waits for input.
pub fn enable_input_interrupt() {
    crate::interrupts::without(|| {
        let _console = CONSOLE.lock();
        // SAFETY: COM1's FIFO control (FIFOs on, trigger at 1 byte; not
        // cleared: input may be waiting already) and interrupt enable
        // (received data only) registers.
        unsafe {
            outb(COM1 + 2, 0x01);
            outb(COM1 + 1, 0x01);
        }
    });
}

/// Says whether a read of the input waits: the idle loop then does not
/// halt while a byte is already there (its interrupt may have come and
/// gone while the byte sat unread).
pub fn set_input_wanted(wanted: bool) {
    INPUT_WANTED.store(wanted, Ordering::Relaxed);
}

/// A read waits and a byte is there for it.
pub fn input_for_reader() -> bool {
    INPUT_WANTED.load(Ordering::Relaxed) && input_ready()
}

/// Whether a read of the input waits.
pub fn input_wanted() -> bool {
    INPUT_WANTED.load(Ordering::Relaxed)
}

pub fn init() {
    CONSOLE.lock().init();
    READY.store(true, Ordering::Release);
}

#[doc(hidden)]
pub fn _print(args: fmt::Arguments) {
    crate::interrupts::without(|| {
        let _ = CONSOLE.lock().write_fmt(args);
    });
}

/// A writer for the fault and panic paths: no lock, no allocation.
pub fn emergency() -> impl Write {
    Serial::new(COM1)
}

#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::console::_print(format_args!($($arg)*)) };
}

#[macro_export]
macro_rules! println {
    () => { $crate::print!("\n") };
    ($($arg:tt)*) => { $crate::console::_print(format_args!("{}\n", format_args!($($arg)*))) };
}

struct Logger;

impl Log for Logger {
    fn enabled(&self, m: &Metadata) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &Record) {
        if !self.enabled(r.metadata()) || !READY.load(Ordering::Acquire) {
            return;
        }
        let ns = crate::time::now_ns();
        let level = match r.level() {
            Level::Error => "ERROR",
            Level::Warn => "WARN ",
            Level::Info => "INFO ",
            Level::Debug => "DEBUG",
            Level::Trace => "TRACE",
        };
        crate::println!(
            "[{:>4}.{:06}] {} {}: {}",
            ns / 1_000_000_000,
            (ns / 1000) % 1_000_000,
            level,
            r.target(),
            r.args()
        );
    }

    fn flush(&self) {}
}

static LOGGER: Logger = Logger;

/// Parses a `log=` value; unknown words fall back to `info`.
pub fn parse_level(s: Option<&str>) -> LevelFilter {
    match s {
        Some("off") => LevelFilter::Off,
        Some("error") => LevelFilter::Error,
        Some("warn") => LevelFilter::Warn,
        Some("debug") => LevelFilter::Debug,
        Some("trace") => LevelFilter::Trace,
        _ => LevelFilter::Info,
    }
}

pub fn init_log(level: LevelFilter) {
    // set_logger only fails if called twice; the first logger stays.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}
