//! The kernel's main path, read top to bottom: each step needs the ones
//! before it.

use crate::arch::{cpu, lapic, legacy};
use crate::boot_info::BootInfo;
use crate::fault::exit_vm;
use crate::io::reactor::{IoMode, Reactor};
use crate::{console, interrupts, io, mem, println, time};
use core::fmt::Write;
use ringos_proto::{cmdline, exit, marker, probe, selftest, service};

/// Entered from the boot stage on the boot stack, interrupts masked, with the
/// early identity map of the first 4 GiB.
pub fn main(boot: &'static BootInfo) -> ! {
    let tsc_entry = cpu::rdtsc();
    cpu::enable_sse();
    console::init();
    let line = boot.cmdline();
    console::init_log(console::parse_level(cmdline::get(line, cmdline::LOG)));
    let mut brand = [0u8; 48];
    println!(
        "{}{} - WebAssembly components on bare metal ({})",
        marker::BANNER,
        env!("CARGO_PKG_VERSION"),
        cpu::brand(&mut brand)
    );
    log::debug!("command line: {line:?}");

    interrupts::init();
    let stats = mem::init(boot);
    println!(
        "{}{} MiB usable, {} regions, heap {} MiB",
        marker::MEMORY,
        stats.usable_bytes >> 20,
        stats.regions,
        stats.heap_bytes >> 20
    );
    for r in boot.memory_map() {
        log::debug!("  {:#012x}..{:#012x} {:?}", r.start, r.end(), r.kind);
    }
    log::debug!("{} frames free", stats.free_frames);

    legacy::pic_disable();
    mem::map_mmio(lapic::phys_base(), 4096).expect("mapping the LAPIC");
    lapic::init();
    let clock = time::init(tsc_entry);
    log::info!(
        "clock: TSC {}.{:03} MHz ({}), LAPIC timer {}.{:03} MHz",
        clock.tsc.hz() / 1_000_000,
        (clock.tsc.hz() / 1000) % 1000,
        clock.source,
        clock.lapic.hz() / 1_000_000,
        (clock.lapic.hz() / 1000) % 1000
    );
    cpu::interrupts_enable();
    println!("{}{} ns", marker::READY, time::now_ns());

    let test = cmdline::get(line, cmdline::TEST);
    if let Some(t) = test.filter(|&t| t != selftest::BLK) {
        crate::selftest::run(t);
    }

    if cmdline::get(line, cmdline::COUNT_MARKS) == Some("1") {
        crate::count_marks::enable();
    }
    if cmdline::get(line, cmdline::PHASES) == Some("1") {
        crate::count_marks::enable_phases();
    }
    let devs = io::devices::discover(line);
    let mut reactor = Reactor::new(devs, IoMode::from_cmdline(cmdline::get(line, cmdline::IO)));
    log::info!(
        "devices: blk {}, net {} ({}, io={})",
        if reactor.blk.is_some() { "yes" } else { "no" },
        if reactor.net.is_some() { "yes" } else { "no" },
        reactor.transport(),
        reactor.mode().name()
    );
    let num = |key: &str, default: usize| {
        cmdline::get(line, key)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    if test.is_none() {
        let timeout = cmdline::get(line, cmdline::WASM_TIMEOUT).and_then(|v| v.parse().ok());
        let epoch = cmdline::get(line, cmdline::EPOCH)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if crate::wasm::component::present() {
            let rounds = num(cmdline::BLK_ROUNDS, 1);
            let stdin = cmdline::get(line, cmdline::STDIN) == Some("1");
            exit_vm(crate::wasm::component::run(
                reactor, timeout, epoch, rounds, stdin,
            ));
        }
    }
    let ok = if test == Some(selftest::BLK) {
        io::probe::blk_selftest(&mut reactor)
    } else if cmdline::get(line, cmdline::PROBE) == Some(probe::BLK) {
        let write = cmdline::get(line, cmdline::WRITE).is_some_and(|v| v == "1" || v.is_empty());
        io::probe::blk_probe(
            &mut reactor,
            num(cmdline::OPS, 2000),
            num(cmdline::QD, 16),
            write,
        )
    } else if cmdline::get(line, cmdline::SERVICE) == Some(service::UDP_ECHO) {
        io::probe::udp_echo(
            &mut reactor,
            num(cmdline::PORT, service::DEFAULT_PORT as usize) as u16,
        )
    } else {
        true
    };
    exit_vm(if ok { exit::SUCCESS } else { exit::FAILURE })
}

/// For the boot stage when it cannot even build a BootInfo.
pub fn early_fail(why: &str) -> ! {
    console::init();
    let _ = writeln!(console::emergency(), "{}{why}", marker::PANIC);
    exit_vm(exit::PANIC)
}
