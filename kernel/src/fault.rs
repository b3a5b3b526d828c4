//! What happens when things go wrong: CPU exceptions and panics are
//! reported on the console and end the VM with a distinct status
//! (`ringos_proto::exit`), never a hang or a silent reboot.

use crate::arch::idt::TrapFrame;
use crate::arch::{cpu, legacy};
use core::fmt::Write;
use core::sync::atomic::{AtomicUsize, Ordering};
use ringos_proto::{exit, marker};

const NAMES: [(&str, &str); 32] = [
    ("Divide Error", "DE"),
    ("Debug", "DB"),
    ("Non-Maskable Interrupt", "NMI"),
    ("Breakpoint", "BP"),
    ("Overflow", "OF"),
    ("Bound Range Exceeded", "BR"),
    ("Invalid Opcode", "UD"),
    ("Device Not Available", "NM"),
    ("Double Fault", "DF"),
    ("Coprocessor Segment Overrun", "CSO"),
    ("Invalid TSS", "TS"),
    ("Segment Not Present", "NP"),
    ("Stack-Segment Fault", "SS"),
    ("General Protection Fault", "GP"),
    ("Page Fault", "PF"),
    ("Reserved", "RES"),
    ("x87 Floating-Point Exception", "MF"),
    ("Alignment Check", "AC"),
    ("Machine Check", "MC"),
    ("SIMD Floating-Point Exception", "XM"),
    ("Virtualization Exception", "VE"),
    ("Control Protection Exception", "CP"),
    ("Reserved", "RES"),
    ("Reserved", "RES"),
    ("Reserved", "RES"),
    ("Reserved", "RES"),
    ("Reserved", "RES"),
    ("Reserved", "RES"),
    ("Hypervisor Injection Exception", "HV"),
    ("VMM Communication Exception", "VC"),
    ("Security Exception", "SX"),
    ("Reserved", "RES"),
];

/// Ends the VM with `status`, printing the `EXIT:` marker first so the host
/// can tell a guest status from QEMU's own exit codes.
pub fn exit_vm(status: u8) -> ! {
    let _ = writeln!(crate::console::emergency(), "{}{}", marker::EXIT, status);
    legacy::vm_exit(status)
}

/// A handler that may take over a CPU exception (the Wasm JIT turning a
/// fault in generated code into a Wasm trap): it returns true after
/// rewriting the frame so that `iretq` resumes somewhere sensible.
pub type RecoverHook = fn(&mut TrapFrame) -> bool;

static RECOVER: AtomicUsize = AtomicUsize::new(0);

/// Installs the one recover hook (replacing any previous one).
pub fn set_recover_hook(hook: RecoverHook) {
    RECOVER.store(hook as usize, Ordering::Release);
}

/// A CPU exception: resumed if the recover hook claims it, otherwise
/// reported, and the VM ends.
pub(crate) fn exception(frame: &mut TrapFrame) {
    let hook = RECOVER.load(Ordering::Acquire);
    if hook != 0 {
        // SAFETY: only `set_recover_hook` stores here, a RecoverHook.
        let hook: RecoverHook = unsafe { core::mem::transmute::<usize, RecoverHook>(hook) };
        if hook(frame) {
            return;
        }
    }
    report(frame)
}

fn report(frame: &TrapFrame) -> ! {
    let v = frame.vector as usize;
    let (name, mnemonic) = NAMES[v];
    let mut w = crate::console::emergency();
    let _ = write!(
        w,
        "\n{}{} (#{}, vector {}) at RIP={:#018x}, error code {:#x}",
        marker::EXCEPTION,
        name,
        mnemonic,
        v,
        frame.rip,
        frame.error_code
    );
    if v == 14 {
        let cr2 = cpu::read_cr2();
        let e = frame.error_code;
        let _ = write!(
            w,
            ", CR2={:#018x} ({} {} page, {} mode)",
            cr2,
            if e & 0x10 != 0 {
                "fetch from"
            } else if e & 2 != 0 {
                "write to"
            } else {
                "read of"
            },
            if e & 1 != 0 {
                "a protected"
            } else {
                "a not-present"
            },
            if e & 4 != 0 { "user" } else { "kernel" }
        );
        if crate::mem::is_stack_guard(cr2) {
            let _ = write!(w, ": kernel stack overflow (hit the guard page)");
        } else if cr2 < 4096 {
            let _ = write!(w, ": null pointer dereference");
        }
    }
    let _ = writeln!(w);
    let _ = writeln!(
        w,
        "  rax={:#018x} rbx={:#018x} rcx={:#018x} rdx={:#018x}\n  rsi={:#018x} rdi={:#018x} rbp={:#018x} rsp={:#018x}\n  r8 ={:#018x} r9 ={:#018x} r10={:#018x} r11={:#018x}\n  r12={:#018x} r13={:#018x} r14={:#018x} r15={:#018x}\n  rflags={:#x} cs={:#x} ss={:#x}",
        frame.rax, frame.rbx, frame.rcx, frame.rdx, frame.rsi, frame.rdi, frame.rbp, frame.rsp,
        frame.r8, frame.r9, frame.r10, frame.r11, frame.r12, frame.r13, frame.r14, frame.r15,
        frame.rflags, frame.cs, frame.ss
    );
    exit_vm(exit::CPU_EXCEPTION)
}

#[cfg(target_os = "none")]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    cpu::interrupts_disable();
    let mut w = crate::console::emergency();
    let msg = info.message();
    let _ = write!(w, "\n{}{}", marker::PANIC, msg);
    if let Some(loc) = info.location() {
        let _ = write!(w, " at {}:{}:{}", loc.file(), loc.line(), loc.column());
    }
    let _ = writeln!(w);
    // The default alloc error handler panics with this message.
    let oom = msg.as_str().is_none() && {
        let mut probe = PrefixProbe {
            prefix: b"memory allocation of ",
            matched: 0,
            ok: true,
        };
        let _ = write!(probe, "{msg}");
        probe.ok && probe.matched == probe.prefix.len()
    };
    exit_vm(if oom {
        exit::OUT_OF_MEMORY
    } else {
        exit::PANIC
    })
}

/// Checks whether formatted text starts with a prefix, without allocating.
#[cfg(target_os = "none")]
struct PrefixProbe {
    prefix: &'static [u8],
    matched: usize,
    ok: bool,
}

#[cfg(target_os = "none")]
impl Write for PrefixProbe {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for &b in s.as_bytes() {
            if self.matched < self.prefix.len() {
                if b != self.prefix[self.matched] {
                    self.ok = false;
                }
                self.matched += 1;
            }
        }
        Ok(())
    }
}
