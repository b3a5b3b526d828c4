//! Sieve of Eratosthenes over a byte array, repeated: loads, stores and
//! branches over linear memory.
#![no_std]

use core::hint::black_box;

const LIMIT: usize = 8_000_000;
const REPEAT: u32 = 20;

static mut SIEVE: [u8; LIMIT + 1] = [0; LIMIT + 1];

/// Each pass: sieve up to LIMIT, then fold the count of primes and the sum
/// of every 1000th prime into the checksum.
#[no_mangle]
pub extern "C" fn run() -> i64 {
    // SAFETY: single-threaded; `run` is the only user of SIEVE.
    let s = unsafe { &mut *core::ptr::addr_of_mut!(SIEVE) };
    let limit = black_box(LIMIT);
    let mut checksum = 0i64;
    for pass in 0..black_box(REPEAT) {
        s[..=limit].fill(1);
        s[0] = 0;
        s[1] = 0;
        let mut i = 2;
        while i * i <= limit {
            if s[i] != 0 {
                let mut j = i * i;
                while j <= limit {
                    s[j] = 0;
                    j += i;
                }
            }
            i += 1;
        }
        let mut count = 0i64;
        let mut sum = 0i64;
        for (n, &p) in s[..=limit].iter().enumerate() {
            if p != 0 {
                count += 1;
                if count % 1000 == 0 {
                    sum += n as i64;
                }
            }
        }
        checksum = checksum
            .wrapping_mul(31)
            .wrapping_add(count ^ sum ^ pass as i64);
    }
    checksum
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    core::arch::wasm32::unreachable()
}
