//! Naive doubly recursive Fibonacci: call overhead and small-function code.
#![no_std]

use core::hint::black_box;

const N: u32 = 38;

fn fib(n: u32) -> u64 {
    if n < 2 {
        n as u64
    } else {
        fib(n - 1) + fib(n - 2)
    }
}

/// fib(N).
#[no_mangle]
pub extern "C" fn run() -> i64 {
    fib(black_box(N)) as i64
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    core::arch::wasm32::unreachable()
}
