//! Modules, stores and instances: linking, instantiation (globals, tables,
//! memory, segments, start) and calls from the embedder into Wasm.

use alloc::boxed::Box;
use alloc::format;
use alloc::rc::Rc;

use alloc::vec;
use alloc::vec::Vec;
use wasmparser::{
    AbstractHeapType, ExternalKind, GlobalType, HeapType, MemoryType, RefType, TableType, ValType,
};

use crate::compile::{self, CompiledCode};
use crate::exn::ExnHeap;
use crate::libcalls;
use crate::module::{self, ConstExpr, ElemMode, FuncType, ImportKind, ModuleInfo};
use crate::platform::{Platform, GUARDED_RESERVATION};
use crate::trap::{self, JmpBuf, Trap, TrapKind};
use crate::vmctx::{FuncRef, MemoryDef, StoreCtx, TableDef, VmCtx};
use crate::Error;

const PAGE: u64 = 65536;
/// Largest table the runtime will grow to.
const MAX_TABLE: u64 = 10_000_000;

/// A compiled module.
pub struct Module {
    pub info: ModuleInfo,
    pub(crate) code: CompiledCode,
    /// Compiled without explicit bounds checks: needs guarded memories.
    guarded: bool,
}

impl Module {
    /// Validates, translates and compiles `bytes`.
    pub fn new(platform: &'static dyn Platform, bytes: &[u8]) -> Result<Rc<Module>, Error> {
        Self::new_with(platform, bytes, module::features())
    }

    /// [`Module::new`] validating with `features` (which the translator
    /// must support: Wasm 2.0, multiple memories).
    pub fn new_with(
        platform: &'static dyn Platform,
        bytes: &[u8],
        features: wasmparser::WasmFeatures,
    ) -> Result<Rc<Module>, Error> {
        let info = module::parse_with(bytes, features)?;
        let guarded = platform.guard_pages();
        let code = compile::compile(&info, bytes, platform, guarded)?;
        Ok(Rc::new(Module {
            info,
            code,
            guarded,
        }))
    }

    /// Only validates `bytes`.
    pub fn validate(bytes: &[u8]) -> Result<(), Error> {
        module::parse(bytes).map(|_| ())
    }
}

/// Interrupts a store's Wasm ([`Store::interrupt_handle`]). Valid while
/// the store lives (its context is boxed and never moves).
#[derive(Clone, Copy)]
pub struct InterruptHandle(*const core::sync::atomic::AtomicU32);

// SAFETY: only an atomic is reached through the pointer.
unsafe impl Send for InterruptHandle {}
// SAFETY: as above.
unsafe impl Sync for InterruptHandle {}

impl InterruptHandle {
    pub fn interrupt(&self) {
        // SAFETY: the store (and its boxed context) outlives the handle, as
        // the embedder promises by using it only while the store lives.
        unsafe { (*self.0).store(1, core::sync::atomic::Ordering::Relaxed) }
    }
    pub fn reset(&self) {
        // SAFETY: as in `interrupt`.
        unsafe { (*self.0).store(0, core::sync::atomic::Ordering::Relaxed) }
    }
}

/// A Wasm value; references are raw (0 = null): a funcref is the address
/// of its `FuncRef`, an externref is whatever the host put there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Val {
    I32(i32),
    I64(i64),
    /// Bits, so NaN payloads survive.
    F32(u32),
    F64(u64),
    FuncRef(usize),
    ExternRef(u64),
}

impl Val {
    pub(crate) fn to_raw(self) -> u64 {
        match self {
            Val::I32(v) => v as u32 as u64,
            Val::I64(v) => v as u64,
            Val::F32(v) => v as u64,
            Val::F64(v) => v,
            Val::FuncRef(v) => v as u64,
            Val::ExternRef(v) => v,
        }
    }

    pub(crate) fn from_raw(ty: ValType, raw: u64) -> Val {
        match ty {
            ValType::I32 => Val::I32(raw as u32 as i32),
            ValType::I64 => Val::I64(raw as i64),
            ValType::F32 => Val::F32(raw as u32),
            ValType::F64 => Val::F64(raw),
            ValType::Ref(r) if r.is_func_ref() => Val::FuncRef(raw as usize),
            _ => Val::ExternRef(raw),
        }
    }

    fn ty_matches(self, ty: ValType) -> bool {
        // The host holds no exceptions: only a null exnref goes in.
        if let (Val::ExternRef(0), ValType::Ref(r)) = (self, ty) {
            if is_exn_ref(r) {
                return true;
            }
        }
        matches!(
            (self, ty),
            (Val::I32(_), ValType::I32)
                | (Val::I64(_), ValType::I64)
                | (Val::F32(_), ValType::F32)
                | (Val::F64(_), ValType::F64)
        ) || matches!((self, ty), (Val::FuncRef(_), ValType::Ref(r)) if r.is_func_ref())
            || matches!((self, ty), (Val::ExternRef(_), ValType::Ref(r)) if r.is_extern_ref())
    }
}

// Function and memory ids are u32: they sit in the canonical options
// that every stream/future buffer carries, and smaller options are
// cheaper to move.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FuncId(u32);
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableId(usize);
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryId(u32);

impl MemoryId {
    /// The memory's index in its store (an identity for comparisons).
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl FuncId {
    fn index(self) -> usize {
        self.0 as usize
    }
}

/// The id of the last of `n` entries (a store holds far fewer than 2^32).
fn last_id(n: usize) -> u32 {
    u32::try_from(n - 1).expect("fewer than 2^32 functions and memories")
}
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GlobalId(usize);
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InstanceId(usize);
/// An exception tag of a store; its index is its identity (plus one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TagId(usize);

/// Whether references of type `r` may point to exception objects.
pub(crate) fn is_exn_ref(r: RefType) -> bool {
    matches!(
        r.heap_type(),
        HeapType::Abstract {
            ty: AbstractHeapType::Exn | AbstractHeapType::NoExn,
            ..
        }
    )
}

/// Something an instance exports or imports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Extern {
    Func(FuncId),
    Table(TableId),
    Memory(MemoryId),
    Global(GlobalId),
    Tag(TagId),
}

/// A host function: gets the store (to read memories or call back into
/// Wasm), the arguments, and a slot for each result (zeros of the result
/// types until written). To trap with a message, set it with
/// [`Store::set_trap_message`] and return `Err(Trap(TrapKind::Host))`.
pub type HostFn = dyn Fn(&mut Store, &[Val], &mut [Val]) -> Result<(), Trap>;

/// A host function on the stub's raw slots: on entry `slots` holds the
/// arguments, each in its u64 slot as generated code passes it (an i32 in
/// the low half), and the results go back the same way. For built-ins
/// whose values are all integers, so nothing is converted on the way in or
/// out of a call.
pub type RawHostFn = dyn Fn(&mut Store, &mut [u64]) -> Result<(), Trap>;

/// How a host function takes its values.
enum HostImpl {
    Vals(Box<HostFn>),
    Raw(Box<RawHostFn>),
}

/// What a host-call stub finds through its vmctx.
#[repr(C)]
pub(crate) struct HostFuncCtx {
    /// `extern "C" fn(*mut HostFuncCtx, *mut u64)`; must stay first.
    dispatch: usize,
    store: *mut StoreCtx,
    ty: FuncType,
    f: HostImpl,
}

enum FuncKind {
    Wasm {
        funcref: *const FuncRef,
        trampoline: usize,
    },
    Host(usize),
}

struct FuncEntry {
    ty: FuncType,
    kind: FuncKind,
}

#[repr(C)]
pub(crate) struct MemoryInner {
    /// Must stay first: generated code holds `*mut MemoryDef`.
    pub(crate) def: MemoryDef,
    reserved: usize,
    /// The reservation includes the guard region (`GUARDED_RESERVATION`).
    guarded: bool,
    pub(crate) max_pages: u64,
    platform: &'static dyn Platform,
}

impl MemoryInner {
    /// Whether growing by `delta` pages would stay within the maximum
    /// (so a failure can only be the platform running out of memory).
    pub(crate) fn within_max(&self, delta: u64) -> bool {
        (self.def.len / PAGE)
            .checked_add(delta)
            .is_some_and(|n| n <= self.max_pages)
    }

    /// Grows by `delta` pages; the old size in pages, or `None`.
    pub(crate) fn grow(&mut self, delta: u64) -> Option<u64> {
        let old = self.def.len / PAGE;
        let new = old.checked_add(delta)?;
        if new > self.max_pages {
            return None;
        }
        if delta > 0
            && !self.platform.commit(
                // SAFETY: within the reservation since new <= max_pages.
                unsafe { self.def.base.add(self.def.len as usize) },
                (delta * PAGE) as usize,
            )
        {
            return None;
        }
        self.def.len = new * PAGE;
        Some(old)
    }
}

impl Drop for MemoryInner {
    fn drop(&mut self) {
        trap::unregister_memory(self.def.base as usize);
        self.platform.release(self.def.base, self.reserved);
    }
}

#[repr(C)]
pub(crate) struct TableInner {
    /// Must stay first: generated code holds `*mut TableDef`.
    pub(crate) def: TableDef,
    pub(crate) elems: Vec<u64>,
    pub(crate) max: u64,
    ty: TableType,
}

impl TableInner {
    pub(crate) fn grow(&mut self, delta: u64, init: u64) -> Option<u64> {
        let old = self.elems.len() as u64;
        let new = old.checked_add(delta)?;
        if new > self.max {
            return None;
        }
        self.elems.resize(new as usize, init);
        self.def = TableDef {
            base: self.elems.as_mut_ptr(),
            len: new,
        };
        Some(old)
    }
}

#[repr(C)]
struct GlobalInner {
    /// Must stay first: generated code holds a `*mut u64` to it.
    value: u64,
    ty: GlobalType,
}

/// Per-instance data; `vmctx.instance` points back here.
pub(crate) struct InstanceData {
    pub(crate) vmctx: VmCtx,
    pub(crate) module: Rc<Module>,
    funcs: Box<[FuncRef]>,
    globals: Box<[*mut u64]>,
    pub(crate) tables: Box<[*mut TableDef]>,
    type_ids: Box<[u64]>,
    libcalls: Box<[usize]>,
    /// Evaluated element segments (emptied when dropped).
    pub(crate) elems: Vec<Vec<u64>>,
    pub(crate) data_dropped: Vec<bool>,
    global_ids: Vec<usize>,
    table_ids: Vec<usize>,
    memory_ids: Vec<usize>,
    /// `[tag index] -> store tag index`.
    tag_ids: Vec<usize>,
    /// `[tag index] -> tag identity`, for `vmctx.tags`.
    pub(crate) tags: Box<[u64]>,
    /// `[memory index] -> *mut MemoryDef`, for `vmctx.memories`.
    pub(crate) memories: Box<[*mut MemoryDef]>,
}

/// Owns everything instances create; nothing is freed before the store.
// Boxes keep addresses stable: generated code holds pointers into them.
#[allow(clippy::vec_box)]
pub struct Store {
    pub(crate) platform: &'static dyn Platform,
    pub(crate) ctx: Box<StoreCtx>,
    /// Canonical function types; a type's id is its index + 1.
    types: Vec<FuncType>,
    funcs: Vec<FuncEntry>,
    host_funcs: Vec<Box<HostFuncCtx>>,
    memories: Vec<Box<MemoryInner>>,
    tables: Vec<Box<TableInner>>,
    globals: Vec<Box<GlobalInner>>,
    instances: Vec<Box<InstanceData>>,
    /// Exception tags by identity - 1: each one's type.
    tags: Vec<FuncType>,
    /// The exception objects alive in this store.
    pub(crate) exns: ExnHeap,
    stack_budget: usize,
    /// Why a host function trapped (taken by [`Store::take_trap_message`]).
    trap_message: Option<alloc::string::String>,
    /// Stacks of tasks that can block (see `fiber.rs`).
    pub(crate) fibers: crate::fiber::Fibers,
    /// Core start functions run at instantiation (off for a link check:
    /// [`Store::skip_start_functions`]).
    skip_starts: bool,
}

impl Store {
    pub fn new(platform: &'static dyn Platform) -> Store {
        platform.install_trap_handler();
        Store {
            platform,
            ctx: Box::new(StoreCtx {
                stack_limit: 0,
                jmpbuf: core::ptr::null_mut(),
                store: core::ptr::null_mut(),
                interrupt: core::sync::atomic::AtomicU32::new(0),
                grow_refused: false,
                stack_top: 0,
            }),
            types: Vec::new(),
            funcs: Vec::new(),
            host_funcs: Vec::new(),
            memories: Vec::new(),
            tables: Vec::new(),
            globals: Vec::new(),
            instances: Vec::new(),
            tags: Vec::new(),
            exns: ExnHeap::new(),
            stack_budget: 512 * 1024,
            trap_message: None,
            fibers: crate::fiber::Fibers::new(platform),
            skip_starts: false,
        }
    }

    /// A handle that stops Wasm running in this store from anywhere (a
    /// timer interrupt, another thread): the next loop iteration traps
    /// with `TrapKind::Interrupted`, and so does every later one until
    /// [`InterruptHandle::reset`].
    /// Instantiates without running core start functions from now on:
    /// for checking that a component links (its imports are there and
    /// of the right types) without running any of its code.
    pub fn skip_start_functions(&mut self) {
        self.skip_starts = true;
    }

    pub fn interrupt_handle(&self) -> InterruptHandle {
        InterruptHandle(&self.ctx.interrupt)
    }

    /// Whether the embedder interrupted this store (Wasm traps at its next
    /// loop; a loop waiting for I/O or a timer asks this after each wait).
    pub fn interrupted(&self) -> bool {
        self.ctx
            .interrupt
            .load(core::sync::atomic::Ordering::Relaxed)
            != 0
    }

    /// Whether a `memory.grow` failed for lack of memory since the last
    /// call of this (then cleared).
    pub fn take_grow_refused(&mut self) -> bool {
        core::mem::take(&mut self.ctx.grow_refused)
    }

    /// Records why a host function is about to trap; the first message
    /// wins until taken.
    pub fn set_trap_message(&mut self, msg: alloc::string::String) {
        self.trap_message.get_or_insert(msg);
    }

    /// Takes the message of the last host trap.
    pub fn take_trap_message(&mut self) -> Option<alloc::string::String> {
        self.trap_message.take()
    }

    /// The live `MemoryDef` of memory `m` (base and length, re-read after
    /// every grow); for the component layer's views of guest memory.
    pub fn memory_def(&mut self, m: MemoryId) -> *mut MemoryDef {
        &mut self.memories[m.index()].def
    }

    /// Stack Wasm may use below the outermost entry (the host thread's
    /// stack must have this plus room for host calls and fault handling).
    pub fn set_stack_budget(&mut self, bytes: usize) {
        self.stack_budget = bytes;
    }

    fn type_id(&mut self, ty: &FuncType) -> u64 {
        if let Some(i) = self.types.iter().position(|t| t == ty) {
            return i as u64 + 1;
        }
        self.types.push(ty.clone());
        self.types.len() as u64
    }

    /// Defines a host function.
    pub fn host_func(&mut self, params: &[ValType], results: &[ValType], f: Box<HostFn>) -> FuncId {
        self.add_host_func(params, results, HostImpl::Vals(f))
    }

    /// A host function on raw slots (see [`RawHostFn`]).
    pub fn host_func_raw(
        &mut self,
        params: &[ValType],
        results: &[ValType],
        f: Box<RawHostFn>,
    ) -> FuncId {
        self.add_host_func(params, results, HostImpl::Raw(f))
    }

    fn add_host_func(&mut self, params: &[ValType], results: &[ValType], f: HostImpl) -> FuncId {
        let ty = FuncType {
            params: params.to_vec(),
            results: results.to_vec(),
        };
        self.host_funcs.push(Box::new(HostFuncCtx {
            dispatch: host_dispatch as *const () as usize,
            store: &mut *self.ctx,
            ty: ty.clone(),
            f,
        }));
        self.funcs.push(FuncEntry {
            ty,
            kind: FuncKind::Host(self.host_funcs.len() - 1),
        });
        FuncId(last_id(self.funcs.len()))
    }

    /// Defines a global; an exnref one starts null (the host holds no
    /// exceptions).
    pub fn global(&mut self, ty: GlobalType, v: Val) -> GlobalId {
        let value = match ty.content_type {
            ValType::Ref(r) if is_exn_ref(r) => 0,
            _ => v.to_raw(),
        };
        self.globals.push(Box::new(GlobalInner { value, ty }));
        GlobalId(self.globals.len() - 1)
    }

    pub fn table(&mut self, ty: TableType) -> Result<TableId, Error> {
        let mut t = Box::new(TableInner {
            def: TableDef {
                base: core::ptr::null_mut(),
                len: 0,
            },
            elems: Vec::new(),
            max: ty.maximum.unwrap_or(MAX_TABLE).min(MAX_TABLE),
            ty,
        });
        t.grow(ty.initial, 0)
            .ok_or_else(|| Error::Resource("table too large".into()))?;
        self.tables.push(t);
        Ok(TableId(self.tables.len() - 1))
    }

    pub fn memory(&mut self, ty: MemoryType) -> Result<MemoryId, Error> {
        let max_pages = ty.maximum.unwrap_or(65536).min(65536);
        let guarded = self.platform.guard_pages();
        let reserved = if guarded {
            GUARDED_RESERVATION
        } else {
            ((max_pages * PAGE) as usize).max(self.platform.page_size())
        };
        let base = self
            .platform
            .reserve(reserved)
            .ok_or_else(|| Error::Resource("linear memory reservation".into()))?;
        trap::register_memory(base as usize, reserved);
        let mut m = Box::new(MemoryInner {
            def: MemoryDef { base, len: 0 },
            reserved,
            guarded,
            max_pages,
            platform: self.platform,
        });
        m.grow(ty.initial)
            .ok_or_else(|| Error::Resource("initial linear memory".into()))?;
        self.memories.push(m);
        Ok(MemoryId(last_id(self.memories.len())))
    }

    pub fn global_get(&self, g: GlobalId) -> Val {
        let g = &self.globals[g.0];
        Val::from_raw(g.ty.content_type, g.value)
    }

    pub fn memory_data(&self, m: MemoryId) -> &[u8] {
        let def = &self.memories[m.index()].def;
        // SAFETY: `len` bytes from `base` are committed while the store lives.
        unsafe { core::slice::from_raw_parts(def.base, def.len as usize) }
    }

    pub fn func_type(&self, f: FuncId) -> (&[ValType], &[ValType]) {
        let t = &self.funcs[f.index()].ty;
        (&t.params, &t.results)
    }

    /// Looks up an export of an instance.
    pub fn export(&mut self, inst: InstanceId, name: &str) -> Option<Extern> {
        let data = &self.instances[inst.0];
        let e = data
            .module
            .info
            .exports
            .iter()
            .find(|e| e.name == name)?
            .clone();
        let i = e.index as usize;
        Some(match e.kind {
            ExternalKind::Func => {
                let m = &data.module;
                let ty = m.info.funcs[i];
                let entry = FuncEntry {
                    ty: m.info.types[ty as usize].clone(),
                    kind: FuncKind::Wasm {
                        funcref: &data.funcs[i],
                        trampoline: m.code.code.addr(m.code.trampolines[ty as usize]),
                    },
                };
                self.funcs.push(entry);
                Extern::Func(FuncId(last_id(self.funcs.len())))
            }
            ExternalKind::Table => Extern::Table(TableId(data.table_ids[i])),
            ExternalKind::Memory => Extern::Memory(MemoryId(*data.memory_ids.get(i)? as u32)),
            ExternalKind::Global => Extern::Global(GlobalId(data.global_ids[i])),
            ExternalKind::Tag => Extern::Tag(TagId(data.tag_ids[i])),
            ExternalKind::FuncExact => return None,
        })
    }

    /// Calls a function; traps come back as `Err(Error::Trap)`.
    pub fn call(&mut self, f: FuncId, args: &[Val]) -> Result<Vec<Val>, Error> {
        // Placeholders: `call_into` writes every result.
        let mut out = alloc::vec![Val::I32(0); self.funcs[f.index()].ty.results.len()];
        self.call_into(f, args, &mut out)?;
        Ok(out)
    }

    /// [`Store::call`] with the results written to `out` (one per result
    /// of the function's type): no allocation for the results, which is
    /// what a loop calling a component's callback per event wants.
    pub fn call_into(&mut self, f: FuncId, args: &[Val], out: &mut [Val]) -> Result<(), Error> {
        let entry = &self.funcs[f.index()];
        if args.len() != entry.ty.params.len()
            || !args
                .iter()
                .zip(&entry.ty.params)
                .all(|(a, t)| a.ty_matches(*t))
        {
            return Err(Error::Usage("argument types do not match".into()));
        }
        if out.len() != entry.ty.results.len() {
            return Err(Error::Usage("room for the wrong number of results".into()));
        }
        // Calls with few values (callbacks, most exports) need no
        // allocation for their slots.
        let n = entry.ty.params.len().max(entry.ty.results.len());
        let mut few = [0u64; 8];
        let mut many = Vec::new();
        let slots: &mut [u64] = if n <= few.len() {
            &mut few[..n]
        } else {
            many.resize(n, 0);
            &mut many
        };
        for (s, a) in slots.iter_mut().zip(args) {
            *s = a.to_raw();
        }
        match entry.kind {
            FuncKind::Host(h) => {
                let ctx: *const HostFuncCtx = &*self.host_funcs[h];
                // SAFETY: host function contexts are boxed and live as long
                // as the store; the closure may push more of them.
                let (f, ty) = unsafe { (&(*ctx).f, &(*ctx).ty) };
                match f {
                    HostImpl::Vals(f) => {
                        for (o, t) in out.iter_mut().zip(&ty.results) {
                            *o = Val::from_raw(*t, 0);
                        }
                        return f(self, args, out).map_err(Error::Trap);
                    }
                    HostImpl::Raw(f) => f(self, slots).map_err(Error::Trap)?,
                }
            }
            FuncKind::Wasm {
                funcref,
                trampoline,
            } => {
                // SAFETY: `funcref` points into a live instance of this store.
                let fr = unsafe { *funcref };
                self.enter(trampoline, fr.vmctx, fr.code, slots)?;
            }
        }
        let results = &self.funcs[f.index()].ty.results;
        for ((o, t), s) in out.iter_mut().zip(results).zip(slots.iter()) {
            *o = Val::from_raw(*t, *s);
        }
        Ok(())
    }

    fn enter(
        &mut self,
        tramp: usize,
        vmctx: usize,
        code: usize,
        slots: &mut [u64],
    ) -> Result<(), Trap> {
        let mut jb = JmpBuf::default();
        let prev = self.ctx.jmpbuf;
        if prev.is_null() {
            let here = &jb as *const JmpBuf as usize;
            // On a fiber, Wasm may go down to the fiber's floor.
            self.ctx.stack_limit = match self.fibers.floor {
                0 => here.saturating_sub(self.stack_budget),
                floor => floor,
            };
            self.ctx.stack_top = here;
        }
        self.ctx.jmpbuf = &mut jb;
        let prev_store = self.ctx.store;
        let ctx: *mut StoreCtx = &mut *self.ctx;
        let prev_current = self.platform.swap_current(ctx);
        // Last use of `self` before Wasm runs: host functions reach the
        // store through this pointer until `trap::enter` returns.
        self.ctx.store = self;
        // SAFETY: the trampoline matches `code`'s type (both come from the
        // function's type), `slots` is large enough for params and results,
        // and the jump buffer is published in the StoreCtx and the platform.
        let r = unsafe { trap::enter(&mut jb, tramp, vmctx, code, slots.as_mut_ptr()) };
        self.platform.swap_current(prev_current);
        self.ctx.jmpbuf = prev;
        self.ctx.store = prev_store;
        r
    }

    /// Instantiates `module` with `imports` in the module's import order.
    pub fn instantiate(
        &mut self,
        module: &Rc<Module>,
        imports: &[Extern],
    ) -> Result<InstanceId, Error> {
        let info = &module.info;
        if imports.len() != info.imports.len() {
            return Err(Error::Link(format!(
                "expected {} imports, got {}",
                info.imports.len(),
                imports.len()
            )));
        }
        let type_ids: Box<[u64]> = info.types.iter().map(|t| self.type_id(t)).collect();
        let mut funcs = Vec::with_capacity(info.funcs.len());
        let mut global_ids = Vec::new();
        let mut table_ids = Vec::new();
        let mut memory_ids = Vec::new();
        let mut tag_ids = Vec::new();
        for (imp, ext) in info.imports.iter().zip(imports) {
            let what = || format!("{}::{}", imp.module, imp.name);
            match (&imp.kind, *ext) {
                (ImportKind::Func(t), Extern::Func(f)) => {
                    let entry = &self.funcs[f.index()];
                    if entry.ty != info.types[*t as usize] {
                        return Err(Error::Link(format!("{}: function type", what())));
                    }
                    funcs.push(match entry.kind {
                        // SAFETY: points into a live instance of this store.
                        FuncKind::Wasm { funcref, .. } => unsafe { *funcref },
                        FuncKind::Host(h) => FuncRef {
                            code: module.code.code.addr(module.code.host_stubs[*t as usize]),
                            vmctx: &*self.host_funcs[h] as *const HostFuncCtx as usize,
                            type_id: type_ids[*t as usize],
                        },
                    });
                }
                (ImportKind::Global(t), Extern::Global(g)) => {
                    if self.globals[g.0].ty != *t {
                        return Err(Error::Link(format!("{}: global type", what())));
                    }
                    global_ids.push(g.0);
                }
                (ImportKind::Table(t), Extern::Table(id)) => {
                    let tab = &self.tables[id.0];
                    if tab.ty.element_type != t.element_type
                        || !limits_match(
                            tab.elems.len() as u64,
                            tab.ty.maximum,
                            t.initial,
                            t.maximum,
                        )
                    {
                        return Err(Error::Link(format!("{}: table type", what())));
                    }
                    table_ids.push(id.0);
                }
                (ImportKind::Memory(t), Extern::Memory(id)) => {
                    let mem = &self.memories[id.index()];
                    if module.guarded && !mem.guarded {
                        return Err(Error::Link(format!("{}: memory without guard", what())));
                    }
                    let max = (mem.max_pages < 65536).then_some(mem.max_pages);
                    if !limits_match(mem.def.len / PAGE, max, t.initial, t.maximum) {
                        return Err(Error::Link(format!("{}: memory type", what())));
                    }
                    memory_ids.push(id.index());
                }
                (ImportKind::Tag(t), Extern::Tag(id)) => {
                    if self.tags[id.0] != info.types[*t as usize] {
                        return Err(Error::Link(format!("{}: tag type", what())));
                    }
                    tag_ids.push(id.0);
                }
                _ => return Err(Error::Link(format!("{}: kind of import", what()))),
            }
        }
        // Local functions; their vmctx is filled in once the data is boxed.
        for (i, off) in module.code.funcs.iter().enumerate() {
            let ty = info.funcs[info.num_imported_funcs as usize + i];
            funcs.push(FuncRef {
                code: module.code.code.addr(*off),
                vmctx: 0,
                type_id: type_ids[ty as usize],
            });
        }
        for t in &info.tables[info.num_imported_tables as usize..] {
            table_ids.push(self.table(*t)?.0);
        }
        for t in &info.memories[info.num_imported_memories as usize..] {
            memory_ids.push(self.memory(*t)?.index());
        }
        // Tags are generative: each instantiation defines new ones.
        for t in &info.tags[info.num_imported_tags as usize..] {
            self.tags.push(info.types[*t as usize].clone());
            tag_ids.push(self.tags.len() - 1);
        }
        let mut data = Box::new(InstanceData {
            vmctx: VmCtx {
                store: &mut *self.ctx,
                memory: core::ptr::null_mut(),
                globals: core::ptr::null(),
                funcs: core::ptr::null(),
                tables: core::ptr::null(),
                type_ids: core::ptr::null(),
                libcalls: core::ptr::null(),
                instance: core::ptr::null_mut(),
                memories: core::ptr::null(),
                tags: core::ptr::null(),
            },
            module: module.clone(),
            funcs: funcs.into_boxed_slice(),
            globals: Box::new([]),
            tables: table_ids
                .iter()
                .map(|t| &mut self.tables[*t].def as *mut TableDef)
                .collect(),
            type_ids,
            libcalls: libcalls::table(),
            elems: Vec::new(),
            data_dropped: vec![false; info.datas.len()],
            global_ids: Vec::new(),
            table_ids,
            memories: memory_ids
                .iter()
                .map(|m| &mut self.memories[*m].def as *mut MemoryDef)
                .collect(),
            memory_ids,
            tags: tag_ids.iter().map(|t| *t as u64 + 1).collect(),
            tag_ids,
        });
        let vmctx_addr = &data.vmctx as *const VmCtx as usize;
        for f in &mut data.funcs[info.num_imported_funcs as usize..] {
            f.vmctx = vmctx_addr;
        }
        // Globals, in order (an initializer may read an imported global).
        for (i, init) in info.global_inits.iter().enumerate() {
            let v = eval(init, &data, &self.globals, &global_ids);
            let ty = info.globals[info.num_imported_globals as usize + i];
            self.globals.push(Box::new(GlobalInner { value: v, ty }));
            global_ids.push(self.globals.len() - 1);
        }
        data.globals = global_ids
            .iter()
            .map(|g| &mut self.globals[*g].value as *mut u64)
            .collect();
        data.global_ids = global_ids;
        for (i, init) in info.table_inits.iter().enumerate() {
            let v = eval(init, &data, &self.globals, &data.global_ids);
            let t = data.table_ids[info.num_imported_tables as usize + i];
            self.tables[t].elems.fill(v);
        }
        data.elems = info
            .elems
            .iter()
            .map(|s| {
                s.items
                    .iter()
                    .map(|c| eval(c, &data, &self.globals, &data.global_ids))
                    .collect()
            })
            .collect();
        data.vmctx.memory = data
            .memories
            .first()
            .copied()
            .unwrap_or(core::ptr::null_mut());
        data.vmctx.memories = data.memories.as_ptr();
        data.vmctx.globals = data.globals.as_ptr();
        data.vmctx.funcs = data.funcs.as_ptr();
        data.vmctx.tables = data.tables.as_ptr();
        data.vmctx.type_ids = data.type_ids.as_ptr();
        data.vmctx.libcalls = data.libcalls.as_ptr();
        data.vmctx.tags = data.tags.as_ptr();
        data.vmctx.instance = &mut *data as *mut InstanceData as *mut u8;
        let id = InstanceId(self.instances.len());
        self.instances.push(data);
        self.init_segments(id)?;
        if let Some(start) = info.start.filter(|_| !self.skip_starts) {
            let data = &self.instances[id.0];
            let fr = data.funcs[start as usize];
            let ty = info.funcs[start as usize] as usize;
            let tramp = module.code.code.addr(module.code.trampolines[ty]);
            self.enter(tramp, fr.vmctx, fr.code, &mut [0u64; 1])?;
        }
        Ok(id)
    }

    /// Active element and data segments, in order; a trap keeps what was
    /// written before it (Wasm 2.0).
    fn init_segments(&mut self, id: InstanceId) -> Result<(), Error> {
        let data = &mut self.instances[id.0];
        let module = data.module.clone();
        for (i, seg) in module.info.elems.iter().enumerate() {
            match &seg.mode {
                ElemMode::Active { table, offset } => {
                    let off = eval(offset, data, &self.globals, &data.global_ids) as u32 as usize;
                    let t = &mut self.tables[data.table_ids[*table as usize]];
                    let items = core::mem::take(&mut data.elems[i]);
                    let end = off.checked_add(items.len());
                    match end {
                        Some(end) if end <= t.elems.len() => {
                            t.elems[off..end].copy_from_slice(&items)
                        }
                        _ => return Err(Trap(TrapKind::TableOutOfBounds).into()),
                    }
                }
                ElemMode::Declared => data.elems[i].clear(),
                ElemMode::Passive => {}
            }
        }
        for (i, seg) in module.info.datas.iter().enumerate() {
            if let Some(offset) = &seg.offset {
                let off = eval(offset, data, &self.globals, &data.global_ids) as u32 as usize;
                let mem = data
                    .memory_ids
                    .get(seg.memory as usize)
                    .map(|m| &mut self.memories[*m])
                    .ok_or_else(|| Error::Invalid("data segment without memory".into()))?;
                let end = off + seg.bytes.len();
                if end as u64 > mem.def.len {
                    return Err(Trap(TrapKind::MemoryOutOfBounds).into());
                }
                // SAFETY: [off, end) is within the committed memory.
                unsafe {
                    core::ptr::copy_nonoverlapping(
                        seg.bytes.as_ptr(),
                        mem.def.base.add(off),
                        seg.bytes.len(),
                    )
                };
                data.data_dropped[i] = true;
            }
        }
        Ok(())
    }
}

impl Store {
    /// Collects unreachable exception objects; `stack` yields the words
    /// of the stack between the Wasm running and the outermost entry.
    pub(crate) fn collect_exns(&mut self, stack: impl Iterator<Item = u64>) {
        let globals = self
            .globals
            .iter()
            .filter(|g| matches!(g.ty.content_type, ValType::Ref(r) if is_exn_ref(r)))
            .map(|g| g.value);
        let tables = self
            .tables
            .iter()
            .filter(|t| is_exn_ref(t.ty.element_type))
            .flat_map(|t| t.elems.iter().copied());
        let mut roots = stack.chain(globals).chain(tables);
        self.exns.collect(&mut roots);
    }

    /// How many exception objects are alive (for tests).
    pub fn live_exceptions(&self) -> usize {
        self.exns.len()
    }

    /// The type of tag `t` (its params are the payload).
    pub fn tag_type(&self, t: TagId) -> &[ValType] {
        &self.tags[t.0].params
    }
}

fn limits_match(cur: u64, cur_max: Option<u64>, min: u64, max: Option<u64>) -> bool {
    cur >= min
        && match max {
            None => true,
            Some(m) => cur_max.is_some_and(|c| c <= m),
        }
}

fn eval(c: &ConstExpr, data: &InstanceData, globals: &[Box<GlobalInner>], ids: &[usize]) -> u64 {
    match *c {
        ConstExpr::I32(v) => v as u32 as u64,
        ConstExpr::I64(v) => v as u64,
        ConstExpr::F32(v) => v as u64,
        ConstExpr::F64(v) => v,
        ConstExpr::RefNull => 0,
        ConstExpr::RefFunc(i) => &data.funcs[i as usize] as *const FuncRef as u64,
        ConstExpr::GlobalGet(i) => globals[ids[i as usize]].value,
    }
}

/// Entry of every host-call stub.
unsafe extern "C" fn host_dispatch(ctx: *mut HostFuncCtx, slots: *mut u64) {
    // SAFETY: the stub passes its vmctx, a live HostFuncCtx.
    let ctx = unsafe { &*ctx };
    let r = call_host(ctx, slots);
    if let Err(k) = r {
        // SAFETY: called from Wasm inside an `enter` whose jump buffer the
        // store published; nothing on this frame needs dropping.
        unsafe { trap::raise((*ctx.store).jmpbuf, k) }
    }
}

fn call_host(ctx: &HostFuncCtx, slots: *mut u64) -> Result<(), TrapKind> {
    let n = ctx.ty.params.len().max(ctx.ty.results.len());
    // SAFETY: the stub's slot buffer holds max(params, results, 1) slots.
    let slots = unsafe { core::slice::from_raw_parts_mut(slots, n) };
    // SAFETY: set by the `enter` this call runs inside; that frame does
    // not touch the store until the Wasm it called returns.
    let store = unsafe { &mut *(*ctx.store).store };
    let f = match &ctx.f {
        HostImpl::Raw(f) => return f(store, slots).map_err(|t| t.0),
        HostImpl::Vals(f) => f,
    };
    // Most calls take a few arguments: no allocation for those.
    let mut few = [Val::I32(0); 8];
    let many: Vec<Val>;
    let params = &ctx.ty.params;
    let args: &[Val] = if params.len() <= few.len() {
        for ((a, t), s) in few.iter_mut().zip(params.iter()).zip(slots.iter()) {
            *a = Val::from_raw(*t, *s);
        }
        &few[..params.len()]
    } else {
        many = params
            .iter()
            .zip(slots.iter())
            .map(|(t, s)| Val::from_raw(*t, *s))
            .collect();
        &many
    };
    let types = &ctx.ty.results;
    let mut out_few = [Val::I32(0); 2];
    let mut out_many: Vec<Val>;
    let out: &mut [Val] = if types.len() <= out_few.len() {
        &mut out_few[..types.len()]
    } else {
        out_many = alloc::vec![Val::I32(0); types.len()];
        &mut out_many
    };
    for (o, t) in out.iter_mut().zip(types) {
        *o = Val::from_raw(*t, 0);
    }
    f(store, args, out).map_err(|t| t.0)?;
    for ((s, r), t) in slots.iter_mut().zip(out.iter()).zip(types) {
        *s = match t {
            // The host holds no exceptions: an exnref result is null.
            ValType::Ref(rt) if is_exn_ref(*rt) => 0,
            _ => r.to_raw(),
        };
    }
    Ok(())
}
