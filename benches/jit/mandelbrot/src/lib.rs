//! Mandelbrot set escape times over a 2000x2000 grid of [-2, 1] x [-1.5, 1.5],
//! up to 200 iterations per point, in f64: a tight floating-point loop.
#![no_std]

use core::hint::black_box;

const SIZE: u32 = 2000;
const MAX_ITER: u32 = 200;

/// Sum over the grid of each point's iteration count, mixed with its row.
#[no_mangle]
pub extern "C" fn run() -> i64 {
    let size = black_box(SIZE);
    let max_iter = black_box(MAX_ITER);
    let scale = 3.0 / size as f64;
    let mut checksum = 0i64;
    for y in 0..size {
        let ci = y as f64 * scale - 1.5;
        let mut row = 0i64;
        for x in 0..size {
            let cr = x as f64 * scale - 2.0;
            let (mut zr, mut zi) = (0.0f64, 0.0f64);
            let mut n = 0;
            while n < max_iter {
                let (zr2, zi2) = (zr * zr, zi * zi);
                if zr2 + zi2 > 4.0 {
                    break;
                }
                zi = 2.0 * zr * zi + ci;
                zr = zr2 - zi2 + cr;
                n += 1;
            }
            row += i64::from(n);
        }
        checksum = checksum.wrapping_mul(1_000_003).wrapping_add(row);
    }
    checksum
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    core::arch::wasm32::unreachable()
}
