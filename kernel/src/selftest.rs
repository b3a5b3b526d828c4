//! Self-tests chosen with `test=<name>` on the kernel command line
//! (`ringos_proto::selftest`). The QEMU test tier boots them and checks the
//! console and the exit status from the host.

use crate::fault::exit_vm;
use crate::println;
use ringos_proto::{exit, marker, selftest};

pub fn run(name: &str) -> ! {
    match name {
        selftest::SLEEP => {
            let fires = crate::time::timer_fires();
            println!("{}", marker::SLEEP_START);
            let t0 = crate::time::now_ns();
            crate::time::sleep_ns(100_000_000);
            let t1 = crate::time::now_ns();
            println!(
                "{}{} ns (timer interrupts: {})",
                marker::SLEEP_DONE,
                t1 - t0,
                crate::time::timer_fires() - fires
            );
            exit_vm(if crate::time::timer_fires() > fires {
                exit::SUCCESS
            } else {
                exit::FAILURE
            })
        }
        selftest::PAGE_FAULT => {
            // SAFETY: deliberately reads the unmapped null page to fault.
            let v = unsafe {
                core::ptr::read_volatile(core::hint::black_box(core::ptr::null::<u64>()))
            };
            println!("read {v} from the null page: the fault did not happen");
        }
        selftest::INVALID_OPCODE => {
            // SAFETY: ud2 raises #UD on purpose.
            unsafe { core::arch::asm!("ud2") };
        }
        selftest::DIVIDE_ERROR => {
            // SAFETY: an integer division by zero raises #DE on purpose.
            unsafe {
                core::arch::asm!("div {0}", in(reg) 0u64, inout("rax") 1u64 => _, inout("rdx") 0u64 => _);
            }
        }
        selftest::STACK_OVERFLOW => {
            println!("recursed {} levels", recurse(core::hint::black_box(0)));
        }
        selftest::PANIC => panic!("panic requested by test=panic"),
        selftest::WASM_SPEC => exit_vm(if crate::wasm::spec::run() {
            exit::SUCCESS
        } else {
            exit::FAILURE
        }),
        selftest::HANG => {
            println!("hanging on purpose (interrupts masked)");
            crate::arch::cpu::halt_forever();
        }
        other => {
            println!("unknown test mode {other:?}; known: {:?}", selftest::ALL);
            exit_vm(exit::FAILURE);
        }
    }
    println!("test {name}: the expected fault did not happen");
    exit_vm(exit::FAILURE)
}

/// Recurses until the stack guard page stops it (the limit is never reached).
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    let mut pad = [depth; 64];
    core::hint::black_box(&mut pad);
    if depth == u64::MAX {
        return pad[3];
    }
    recurse(depth + 1) + pad[3]
}
