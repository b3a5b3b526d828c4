//! Layouts shared by generated code and the runtime. Generated code reaches
//! everything through the vmctx pointer passed as the first argument, so the
//! code itself holds no addresses (no relocations).

use core::mem::offset_of;

/// Per-instance context; the first argument of every generated function.
#[repr(C)]
pub struct VmCtx {
    pub store: *mut StoreCtx,
    /// The instance's memory (null without one).
    pub memory: *mut MemoryDef,
    /// `[global index] -> *mut u64` cell.
    pub globals: *const *mut u64,
    /// `[function index] -> FuncRef` (imports first).
    pub funcs: *const FuncRef,
    /// `[table index] -> *mut TableDef`.
    pub tables: *const *mut TableDef,
    /// `[module type index] -> canonical type id` for call_indirect.
    pub type_ids: *const u64,
    /// `[Libcall] -> extern "C" fn` pointer.
    pub libcalls: *const usize,
    /// Back pointer to the runtime's instance data (for libcalls).
    pub instance: *mut u8,
    /// `[memory index] -> *mut MemoryDef` (memory 0 is also `memory`).
    pub memories: *const *mut MemoryDef,
    /// `[tag index] -> tag identity` (store-wide, never 0): what a thrown
    /// exception carries and a `catch` compares.
    pub tags: *const u64,
}

/// Per-store state shared by all instances of a store.
#[repr(C)]
pub struct StoreCtx {
    /// Lowest stack address generated code may use (Cranelift stack_limit).
    pub stack_limit: usize,
    /// The innermost active entry's jump buffer (null outside wasm).
    pub jmpbuf: *mut crate::trap::JmpBuf,
    /// The store of the innermost active entry: host functions get it
    /// back (they may call into Wasm again).
    pub store: *mut crate::instance::Store,
    /// Set (by a timer or another thread) to stop the Wasm running: every
    /// loop header checks it and traps with `TrapKind::Interrupted`.
    pub interrupt: core::sync::atomic::AtomicU32,
    /// A `memory.grow` failed because the platform had no memory left
    /// (not because of the memory's maximum): explains a later trap.
    pub grow_refused: bool,
    /// Stack address of the outermost active entry (0 outside wasm): the
    /// top of the stack the exception collector scans.
    pub stack_top: usize,
}

/// An exception object (what an exnref points to): a header, then
/// `len` payload slots of 8 bytes (each value in its natural
/// representation at the slot's start, floats as their bits).
#[repr(C)]
pub struct ExnHeader {
    /// The identity of the exception's tag (`VmCtx::tags`).
    pub tag: u64,
    /// Nonzero once an exnref to it exists (`catch_ref`/`catch_all_ref`):
    /// then only the collector frees it; otherwise the catch that handles
    /// it (or the trap of an uncaught one) does.
    pub referenced: u32,
    /// Its index in the store's list of live exceptions.
    pub slot: u32,
    pub len: u64,
}

#[repr(C)]
pub struct MemoryDef {
    pub base: *mut u8,
    pub len: u64,
}

/// Table elements are u64: a `*const FuncRef` or an externref (0 = null).
#[repr(C)]
pub struct TableDef {
    pub base: *mut u64,
    pub len: u64,
}

/// A callable function: code plus the vmctx it expects; `type_id` is the
/// store-wide canonical signature id checked by call_indirect.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct FuncRef {
    pub code: usize,
    pub vmctx: usize,
    pub type_id: u64,
}

pub const VMCTX_STORE: i32 = offset_of!(VmCtx, store) as i32;
pub const VMCTX_MEMORY: i32 = offset_of!(VmCtx, memory) as i32;
pub const VMCTX_GLOBALS: i32 = offset_of!(VmCtx, globals) as i32;
pub const VMCTX_FUNCS: i32 = offset_of!(VmCtx, funcs) as i32;
pub const VMCTX_TABLES: i32 = offset_of!(VmCtx, tables) as i32;
pub const VMCTX_TYPE_IDS: i32 = offset_of!(VmCtx, type_ids) as i32;
pub const VMCTX_LIBCALLS: i32 = offset_of!(VmCtx, libcalls) as i32;
pub const VMCTX_MEMORIES: i32 = offset_of!(VmCtx, memories) as i32;
pub const VMCTX_TAGS: i32 = offset_of!(VmCtx, tags) as i32;
pub const EXN_TAG: i32 = offset_of!(ExnHeader, tag) as i32;
pub const EXN_REFERENCED: i32 = offset_of!(ExnHeader, referenced) as i32;
pub const EXN_PAYLOAD: i32 = core::mem::size_of::<ExnHeader>() as i32;
pub const STORE_STACK_LIMIT: i32 = offset_of!(StoreCtx, stack_limit) as i32;
pub const STORE_INTERRUPT: i32 = offset_of!(StoreCtx, interrupt) as i32;
pub const MEMORY_BASE: i32 = offset_of!(MemoryDef, base) as i32;
pub const MEMORY_LEN: i32 = offset_of!(MemoryDef, len) as i32;
pub const TABLE_BASE: i32 = offset_of!(TableDef, base) as i32;
pub const TABLE_LEN: i32 = offset_of!(TableDef, len) as i32;
pub const FUNCREF_CODE: i32 = offset_of!(FuncRef, code) as i32;
pub const FUNCREF_VMCTX: i32 = offset_of!(FuncRef, vmctx) as i32;
pub const FUNCREF_TYPE_ID: i32 = offset_of!(FuncRef, type_id) as i32;
pub const FUNCREF_SIZE: i64 = core::mem::size_of::<FuncRef>() as i64;

/// Runtime entry points reached through `VmCtx::libcalls`; all take the
/// caller's vmctx first and only integer arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum Libcall {
    /// (vmctx, mem: i32, delta: i32) -> i32
    MemoryGrow,
    /// (vmctx, mem: i32, dst: i32, val: i32, len: i32)
    MemoryFill,
    /// (vmctx, dst_mem: i32, src_mem: i32, dst: i32, src: i32, len: i32)
    MemoryCopy,
    /// (vmctx, mem: i32, seg: i32, dst: i32, src: i32, len: i32)
    MemoryInit,
    /// (vmctx, seg: i32)
    DataDrop,
    /// (vmctx, table: i32, init: i64, delta: i32) -> i32
    TableGrow,
    /// (vmctx, table: i32, dst: i32, val: i64, len: i32)
    TableFill,
    /// (vmctx, dst_table: i32, src_table: i32, dst: i32, src: i32, len: i32)
    TableCopy,
    /// (vmctx, table: i32, seg: i32, dst: i32, src: i32, len: i32)
    TableInit,
    /// (vmctx, seg: i32)
    ElemDrop,
    /// (vmctx, tag: i32) -> exn: a new exception object of the tag, its
    /// payload slots for the caller to fill (may collect unreachable ones).
    ExnNew,
    /// (vmctx, exn) -> !: unwinds to the nearest handler in the Wasm
    /// frames above the caller (the caller's own handlers are jumps).
    Throw,
    /// (vmctx, exn): a plain `catch`/`catch_all` took the exception;
    /// frees it unless an exnref to it exists.
    ExnCaught,
}

pub const LIBCALL_COUNT: usize = Libcall::ExnCaught as usize + 1;
