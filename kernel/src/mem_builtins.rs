//! `memcpy`, `memmove` and `memset` for the guest, in place of
//! compiler_builtins' (weak) ones.
//!
//! Why: the kernel is built soft-float, so LLVM cannot move a struct of
//! more than a few words with vector registers and calls `memcpy` for it;
//! compiler_builtins' version is `rep movsq`, and under QEMU's TCG every
//! iteration of a `rep` instruction is a translation block of its own
//! (about 8 bytes per block). These copy 32 bytes per loop iteration with
//! plain moves: one block per 32 bytes, and natively as fast for the small
//! sizes the kernel copies (large copies are rare: code emission, page
//! setup).

/// The three functions under the given symbol names (the guest's, or
/// names of their own for the host's unit tests). System V arguments:
/// `memcpy(dst: rdi, src: rsi, n: rdx) -> rax = dst`; `memmove` copies
/// backward when `dst` lies inside `[src, src + n)`, else it is `memcpy`;
/// `memset(dst: rdi, c: esi, n: rdx)`.
#[cfg(any(target_os = "none", all(test, target_arch = "x86_64")))]
macro_rules! mem_functions {
    ($cpy:literal, $mov:literal, $set:literal) => {
        core::arch::global_asm!(concat!(
            ".pushsection .text.ringos_mem,\"ax\",@progbits\n",
            "    .globl ",
            $cpy,
            "\n",
            "    .type ",
            $cpy,
            ",@function",
            "\n",
            $cpy,
            ":",
            "\n",
            "    mov rax, rdi",
            "\n",
            "2:",
            "\n",
            "    cmp rdx, 32",
            "\n",
            "    jb 3f",
            "\n",
            "    mov r8, [rsi]",
            "\n",
            "    mov r9, [rsi + 8]",
            "\n",
            "    mov r10, [rsi + 16]",
            "\n",
            "    mov r11, [rsi + 24]",
            "\n",
            "    mov [rdi], r8",
            "\n",
            "    mov [rdi + 8], r9",
            "\n",
            "    mov [rdi + 16], r10",
            "\n",
            "    mov [rdi + 24], r11",
            "\n",
            "    add rsi, 32",
            "\n",
            "    add rdi, 32",
            "\n",
            "    sub rdx, 32",
            "\n",
            "    jmp 2b",
            "\n",
            "3:",
            "\n",
            "    cmp rdx, 8",
            "\n",
            "    jb 4f",
            "\n",
            "    mov r8, [rsi]",
            "\n",
            "    mov [rdi], r8",
            "\n",
            "    add rsi, 8",
            "\n",
            "    add rdi, 8",
            "\n",
            "    sub rdx, 8",
            "\n",
            "    jmp 3b",
            "\n",
            "4:",
            "\n",
            "    test rdx, rdx",
            "\n",
            "    jz 5f",
            "\n",
            "    mov r8b, [rsi]",
            "\n",
            "    mov [rdi], r8b",
            "\n",
            "    inc rsi",
            "\n",
            "    inc rdi",
            "\n",
            "    dec rdx",
            "\n",
            "    jmp 4b",
            "\n",
            "5:",
            "\n",
            "    ret",
            "\n",
            "    .size ",
            $cpy,
            ", . - ",
            $cpy,
            "\n",
            "    .globl ",
            $mov,
            "\n",
            "    .type ",
            $mov,
            ",@function",
            "\n",
            $mov,
            ":",
            "\n",
            "    mov rax, rdi",
            "\n",
            "    sub rax, rsi",
            "\n",
            "    cmp rax, rdx",
            "\n",
            "    jae ",
            $cpy,
            "\n",
            "    mov rax, rdi",
            "\n",
            "    add rsi, rdx",
            "\n",
            "    add rdi, rdx",
            "\n",
            "6:",
            "\n",
            "    cmp rdx, 8",
            "\n",
            "    jb 7f",
            "\n",
            "    sub rsi, 8",
            "\n",
            "    sub rdi, 8",
            "\n",
            "    mov r8, [rsi]",
            "\n",
            "    mov [rdi], r8",
            "\n",
            "    sub rdx, 8",
            "\n",
            "    jmp 6b",
            "\n",
            "7:",
            "\n",
            "    test rdx, rdx",
            "\n",
            "    jz 8f",
            "\n",
            "    dec rsi",
            "\n",
            "    dec rdi",
            "\n",
            "    mov r8b, [rsi]",
            "\n",
            "    mov [rdi], r8b",
            "\n",
            "    dec rdx",
            "\n",
            "    jmp 7b",
            "\n",
            "8:",
            "\n",
            "    ret",
            "\n",
            "    .size ",
            $mov,
            ", . - ",
            $mov,
            "\n",
            "    .globl ",
            $set,
            "\n",
            "    .type ",
            $set,
            ",@function",
            "\n",
            $set,
            ":",
            "\n",
            "    mov rax, rdi",
            "\n",
            "    movzx r8d, sil",
            "\n",
            "    mov r9, 0x0101010101010101",
            "\n",
            "    imul r8, r9",
            "\n",
            "9:",
            "\n",
            "    cmp rdx, 32",
            "\n",
            "    jb 10f",
            "\n",
            "    mov [rdi], r8",
            "\n",
            "    mov [rdi + 8], r8",
            "\n",
            "    mov [rdi + 16], r8",
            "\n",
            "    mov [rdi + 24], r8",
            "\n",
            "    add rdi, 32",
            "\n",
            "    sub rdx, 32",
            "\n",
            "    jmp 9b",
            "\n",
            "10:",
            "\n",
            "    cmp rdx, 8",
            "\n",
            "    jb 11f",
            "\n",
            "    mov [rdi], r8",
            "\n",
            "    add rdi, 8",
            "\n",
            "    sub rdx, 8",
            "\n",
            "    jmp 10b",
            "\n",
            "11:",
            "\n",
            "    test rdx, rdx",
            "\n",
            "    jz 12f",
            "\n",
            "    mov [rdi], r8b",
            "\n",
            "    inc rdi",
            "\n",
            "    dec rdx",
            "\n",
            "    jmp 11b",
            "\n",
            "12:",
            "\n",
            "    ret",
            "\n",
            "    .size ",
            $set,
            ", . - ",
            $set,
            "\n",
            ".popsection\n",
        ));
    };
}

#[cfg(target_os = "none")]
mem_functions!("memcpy", "memmove", "memset");

#[cfg(all(test, target_arch = "x86_64", not(target_os = "none")))]
mem_functions!(
    "ringos_test_memcpy",
    "ringos_test_memmove",
    "ringos_test_memset"
);

#[cfg(all(test, target_arch = "x86_64", not(target_os = "none")))]
mod tests {
    extern "C" {
        fn ringos_test_memcpy(d: *mut u8, s: *const u8, n: usize) -> *mut u8;
        fn ringos_test_memmove(d: *mut u8, s: *const u8, n: usize) -> *mut u8;
        fn ringos_test_memset(d: *mut u8, c: i32, n: usize) -> *mut u8;
    }

    fn pattern(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + 3) as u8).collect()
    }

    #[test]
    fn memcpy_every_size_and_offset() {
        for n in 0..100 {
            for off in 0..9 {
                let src = pattern(n + off);
                let mut dst = vec![0xeeu8; n + 20];
                // SAFETY: both buffers hold the bytes copied.
                let r = unsafe {
                    ringos_test_memcpy(dst.as_mut_ptr().add(3), src.as_ptr().add(off), n)
                };
                assert_eq!(r, dst[3..].as_mut_ptr());
                assert_eq!(&dst[3..3 + n], &src[off..off + n]);
                assert!(
                    dst[..3].iter().chain(&dst[3 + n..]).all(|&b| b == 0xee),
                    "n={n}"
                );
            }
        }
    }

    #[test]
    fn memmove_overlapping_both_ways() {
        for n in 0..70 {
            for shift in 0..12usize {
                let mut fwd = pattern(n + 12);
                let mut want = fwd.clone();
                want.copy_within(shift..shift + n, 0);
                // SAFETY: in bounds of `fwd`; overlap is what memmove allows.
                unsafe { ringos_test_memmove(fwd.as_mut_ptr(), fwd.as_ptr().add(shift), n) };
                assert_eq!(fwd, want, "down n={n} shift={shift}");
                let mut back = pattern(n + 12);
                let mut want = back.clone();
                want.copy_within(0..n, shift);
                // SAFETY: as above.
                unsafe { ringos_test_memmove(back.as_mut_ptr().add(shift), back.as_ptr(), n) };
                assert_eq!(back, want, "up n={n} shift={shift}");
            }
        }
    }

    #[test]
    fn memset_every_size() {
        for n in 0..100 {
            let mut d = vec![1u8; n + 10];
            // SAFETY: in bounds.
            let r = unsafe { ringos_test_memset(d.as_mut_ptr().add(5), 0x1ab, n) };
            assert_eq!(r, d[5..].as_mut_ptr());
            assert!(d[5..5 + n].iter().all(|&b| b == 0xab));
            assert!(d[..5].iter().chain(&d[5 + n..]).all(|&b| b == 1));
        }
    }
}
