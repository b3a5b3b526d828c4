//! Cranelift compilation: the ISA (no cranelift-native: CPUID ourselves),
//! function bodies, array-call trampolines and host-call stubs, all laid
//! out in one W^X code region with no relocations left (the only ones
//! accepted are direct calls between the module's functions, patched here).

use alloc::format;
use alloc::vec::Vec;
use cranelift_codegen::binemit::Reloc;
use cranelift_codegen::entity::EntityRef;
use cranelift_codegen::ir::{
    types, AbiParam, ExternalName, Function, InstBuilder, MemFlagsData, Signature, StackSlotData,
    StackSlotKind, UserExternalName, UserFuncName, Value,
};
use cranelift_codegen::isa::{CallConv, OwnedTargetIsa};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_codegen::Context;
use cranelift_codegen::{FinalizedMachExceptionHandler, FinalizedRelocTarget};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use target_lexicon::{Architecture, BinaryFormat, Environment, OperatingSystem, Triple, Vendor};

use crate::module::{FuncType, ModuleInfo};
use crate::platform::Platform;
use crate::translate::{self, clif_type, native_signature, PTR};
use crate::trap::{self, Landing, TrapKind};
use crate::Error;

/// x86_64 SysV, baseline SSE2 plus the CPUID-reported extensions Cranelift
/// uses for scalar code (never AVX: XCR0 may not enable it in the guest).
pub fn isa() -> Result<OwnedTargetIsa, Error> {
    let triple = Triple {
        architecture: Architecture::X86_64,
        vendor: Vendor::Unknown,
        operating_system: OperatingSystem::None_,
        environment: Environment::Unknown,
        binary_format: BinaryFormat::Elf,
    };
    let mut flags = settings::builder();
    let set = |f: &mut settings::Builder, k: &str, v: &str| {
        f.set(k, v).map_err(|e| Error::Compile(format!("{k}: {e}")))
    };
    set(&mut flags, "opt_level", "speed")?;
    set(&mut flags, "unwind_info", "false")?;
    set(&mut flags, "enable_multi_ret_implicit_sret", "true")?;
    set(
        &mut flags,
        "enable_verifier",
        if cfg!(debug_assertions) {
            "true"
        } else {
            "false"
        },
    )?;
    let mut isa =
        cranelift_codegen::isa::lookup(triple).map_err(|e| Error::Compile(format!("{e}")))?;
    for (name, on) in cpu_features() {
        if on {
            isa.enable(name)
                .map_err(|e| Error::Compile(format!("{name}: {e}")))?;
        }
    }
    isa.finish(settings::Flags::new(flags))
        .map_err(|e| Error::Compile(format!("{e}")))
}

#[cfg(target_arch = "x86_64")]
fn cpu_features() -> [(&'static str, bool); 8] {
    use core::arch::x86_64::{__cpuid, __cpuid_count};
    // CPUID is safe to call on every x86_64 CPU.
    let (l1, l7, e1) = (__cpuid(1), __cpuid_count(7, 0), __cpuid(0x8000_0001));
    let bit = |r: u32, b: u32| r & (1 << b) != 0;
    [
        ("has_sse3", bit(l1.ecx, 0)),
        ("has_ssse3", bit(l1.ecx, 9)),
        ("has_sse41", bit(l1.ecx, 19)),
        ("has_sse42", bit(l1.ecx, 20)),
        ("has_popcnt", bit(l1.ecx, 23)),
        ("has_bmi1", bit(l7.ebx, 3)),
        ("has_bmi2", bit(l7.ebx, 8)),
        ("has_lzcnt", bit(e1.ecx, 5)),
    ]
}

#[cfg(not(target_arch = "x86_64"))]
fn cpu_features() -> [(&'static str, bool); 0] {
    []
}

/// Executable code owned by a module; unregistered and freed on drop.
pub struct CodeMemory {
    ptr: *mut u8,
    len: usize,
    platform: &'static dyn Platform,
}

impl CodeMemory {
    pub fn addr(&self, offset: u32) -> usize {
        self.ptr as usize + offset as usize
    }
}

impl Drop for CodeMemory {
    fn drop(&mut self) {
        trap::unregister_code(self.ptr as usize);
        self.platform.free_code(self.ptr, self.len);
    }
}

/// Offsets into a module's [`CodeMemory`].
pub struct CompiledCode {
    pub code: CodeMemory,
    /// Per local function.
    pub funcs: Vec<u32>,
    /// Array-call trampoline per module type index.
    pub trampolines: Vec<u32>,
    /// Host-call stub per module type index.
    pub host_stubs: Vec<u32>,
}

struct Emitter {
    isa: OwnedTargetIsa,
    ctx: Context,
    text: Vec<u8>,
    traps: Vec<(u32, TrapKind)>,
    landings: Vec<Landing>,
    /// Direct calls to patch once every function has its place.
    calls: Vec<CallFixup>,
}

/// A direct call's 32-bit displacement at `at` in the text, to module
/// function `callee`: `callee's start + addend - at`.
struct CallFixup {
    at: u32,
    callee: u32,
    addend: i64,
}

impl Emitter {
    fn emit(&mut self, func: Function) -> Result<u32, Error> {
        self.ctx.clear();
        // The functions it calls directly, by name reference.
        let names: Vec<UserExternalName> =
            func.params.user_named_funcs().values().cloned().collect();
        self.ctx.func = func;
        let compiled = self
            .ctx
            .compile(&*self.isa, &mut Default::default())
            .map_err(|e| Error::Compile(format!("{:?}", e.inner)))?;
        let align = compiled.buffer.alignment.max(16) as usize;
        while !self.text.len().is_multiple_of(align) {
            self.text.push(0xcc);
        }
        let start = self.text.len() as u32;
        for r in compiled.buffer.relocs() {
            let callee = match (r.kind, &r.target) {
                (
                    Reloc::X86CallPCRel4,
                    FinalizedRelocTarget::ExternalName(ExternalName::User(n)),
                ) => names
                    .get(n.index())
                    .filter(|n| n.namespace == translate::FUNC_NAMESPACE)
                    .map(|n| n.index),
                _ => None,
            };
            let Some(callee) = callee else {
                // A libcall Cranelift wanted (e.g. ceil without SSE4.1).
                return Err(Error::Unsupported(format!(
                    "code needing a relocation: {r:?}"
                )));
            };
            self.calls.push(CallFixup {
                at: start + r.offset,
                callee,
                addend: r.addend,
            });
        }
        self.text.extend_from_slice(compiled.code_buffer());
        for t in compiled.buffer.traps() {
            self.traps
                .push((start + t.offset, TrapKind::from_code(t.code)));
        }
        for site in compiled.buffer.call_sites() {
            // The translator gives each try_call one default handler.
            let handler = site.exception_handlers.iter().find_map(|h| match *h {
                FinalizedMachExceptionHandler::Default(off)
                | FinalizedMachExceptionHandler::Tag(_, off) => Some(off),
                FinalizedMachExceptionHandler::Context(_) => None,
            });
            if let Some(handler) = handler {
                let frame_offset = site
                    .frame_offset
                    .ok_or_else(|| Error::Compile("a try_call without a frame offset".into()))?;
                self.landings.push(Landing {
                    ret: start + site.ret_addr,
                    handler: start + handler,
                    frame_offset,
                });
            }
        }
        Ok(start)
    }
}

pub fn compile(
    m: &ModuleInfo,
    bytes: &[u8],
    platform: &'static dyn Platform,
    guarded: bool,
) -> Result<CompiledCode, Error> {
    let mut e = Emitter {
        isa: isa()?,
        ctx: Context::new(),
        text: Vec::new(),
        traps: Vec::new(),
        landings: Vec::new(),
        calls: Vec::new(),
    };
    // Payload types the translator can load and store (no v128): checked
    // once here, so catch clauses need not.
    for t in &m.tags {
        for p in &m.types[*t as usize].params {
            clif_type(*p)?;
        }
    }
    let mut fctx = FunctionBuilderContext::new();
    let mut funcs = Vec::with_capacity(m.bodies.len());
    for i in 0..m.bodies.len() as u32 {
        let f =
            translate::translate_function(m, bytes, m.num_imported_funcs + i, guarded, &mut fctx)?;
        funcs.push(e.emit(f)?);
    }
    let mut trampolines = Vec::with_capacity(m.types.len());
    let mut host_stubs = Vec::with_capacity(m.types.len());
    for ty in &m.types {
        trampolines.push(e.emit(array_trampoline(ty, &mut fctx)?)?);
        host_stubs.push(e.emit(host_stub(ty, &mut fctx)?)?);
    }
    // Direct calls between the module's functions: the text is one block,
    // so a displacement is known once every function has its offset.
    for c in &e.calls {
        let target = c
            .callee
            .checked_sub(m.num_imported_funcs)
            .and_then(|i| funcs.get(i as usize))
            .ok_or_else(|| Error::Compile(format!("a direct call to function {}", c.callee)))?;
        let disp = i64::from(*target) + c.addend - i64::from(c.at);
        let disp = i32::try_from(disp).map_err(|_| Error::Resource("code over 2 GiB".into()))?;
        let at = c.at as usize;
        e.text[at..at + 4].copy_from_slice(&disp.to_le_bytes());
    }
    let len = e.text.len().max(1).next_multiple_of(platform.page_size());
    let ptr = platform
        .alloc_code(len)
        .ok_or_else(|| Error::Resource("code memory".into()))?;
    // SAFETY: `ptr` is a fresh writable allocation of `len >= text.len()` bytes.
    unsafe { core::ptr::copy_nonoverlapping(e.text.as_ptr(), ptr, e.text.len()) };
    let code = CodeMemory { ptr, len, platform };
    if !platform.seal_code(ptr, len) {
        return Err(Error::Resource("sealing code memory".into()));
    }
    trap::register_code(
        ptr as usize,
        len,
        core::mem::take(&mut e.traps),
        core::mem::take(&mut e.landings),
    );
    Ok(CompiledCode {
        code,
        funcs,
        trampolines,
        host_stubs,
    })
}

/// `fn(vmctx, code, slots: *mut u64)`: calls `code(vmctx, args...)` with
/// arguments from `slots` and writes the results back to `slots`. Only
/// integers cross the native boundary, so soft-float callers can use it.
fn array_trampoline(ty: &FuncType, fctx: &mut FunctionBuilderContext) -> Result<Function, Error> {
    let mut sig = Signature::new(CallConv::SystemV);
    sig.params.extend([AbiParam::new(PTR); 3]);
    let mut func = Function::with_name_signature(UserFuncName::user(1, 0), sig);
    let mut b = FunctionBuilder::new(&mut func, fctx);
    let entry = b.create_block();
    b.append_block_params_for_function_params(entry);
    b.switch_to_block(entry);
    let p = b.block_params(entry).to_vec();
    let (vmctx, code, slots) = (p[0], p[1], p[2]);
    let mut args = alloc::vec![vmctx];
    for (i, t) in ty.params.iter().enumerate() {
        args.push(
            b.ins()
                .load(clif_type(*t)?, MemFlagsData::trusted(), slots, i as i32 * 8),
        );
    }
    let callee_sig = b.import_signature(native_signature(ty)?);
    let call = b.ins().call_indirect(callee_sig, code, &args);
    let results = b.inst_results(call).to_vec();
    for (i, r) in results.into_iter().enumerate() {
        store_slot(&mut b, r, slots, i);
    }
    b.ins().return_(&[]);
    b.seal_all_blocks();
    b.finalize(translate::frontend_config());
    Ok(func)
}

/// Stores `v` in slot `i` as all 64 bits of its raw value (`Val::to_raw`):
/// a 32-bit value zero-extended, so a host function reading the slot as
/// bits never sees the stack's leftovers above an `i32`.
fn store_slot(b: &mut FunctionBuilder<'_>, v: Value, slots: Value, i: usize) {
    let v = match b.func.dfg.value_type(v) {
        types::I32 => b.ins().uextend(types::I64, v),
        types::F32 => {
            let bits = b.ins().bitcast(types::I32, MemFlagsData::new(), v);
            b.ins().uextend(types::I64, bits)
        }
        _ => v,
    };
    b.ins()
        .store(MemFlagsData::trusted(), v, slots, i as i32 * 8);
}

/// The native entry of a host function of type `ty`: spills the arguments
/// to a slot buffer and calls `HostFuncCtx::dispatch(vmctx, slots)`, which
/// leaves the results in the same slots.
fn host_stub(ty: &FuncType, fctx: &mut FunctionBuilderContext) -> Result<Function, Error> {
    let mut func = Function::with_name_signature(UserFuncName::user(2, 0), native_signature(ty)?);
    let mut b = FunctionBuilder::new(&mut func, fctx);
    let entry = b.create_block();
    b.append_block_params_for_function_params(entry);
    b.switch_to_block(entry);
    let p = b.block_params(entry).to_vec();
    let n = ty.params.len().max(ty.results.len()).max(1) as u32;
    let slot = b.create_sized_stack_slot(StackSlotData::new(StackSlotKind::ExplicitSlot, n * 8, 3));
    let slots = b.ins().stack_addr(PTR, slot, 0);
    for (i, v) in p[1..].iter().enumerate() {
        store_slot(&mut b, *v, slots, i);
    }
    let mut dsig = Signature::new(CallConv::SystemV);
    dsig.params.extend([AbiParam::new(PTR); 2]);
    let dsig = b.import_signature(dsig);
    let dispatch = b.ins().load(PTR, MemFlagsData::trusted(), p[0], 0);
    b.ins().call_indirect(dsig, dispatch, &[p[0], slots]);
    let mut rets = Vec::new();
    for (i, t) in ty.results.iter().enumerate() {
        rets.push(
            b.ins()
                .load(clif_type(*t)?, MemFlagsData::trusted(), slots, i as i32 * 8),
        );
    }
    b.ins().return_(&rets);
    b.seal_all_blocks();
    b.finalize(translate::frontend_config());
    Ok(func)
}
