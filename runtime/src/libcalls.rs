//! Runtime functions generated code calls through `VmCtx::libcalls`.
//! Each gets the caller's vmctx; a trap unwinds to the active entry.

use alloc::boxed::Box;
use alloc::vec::Vec;

use crate::instance::{InstanceData, MemoryInner, TableInner};
use crate::trap::{self, TrapKind};
use crate::vmctx::{Libcall, VmCtx, LIBCALL_COUNT};

pub(crate) fn table() -> Box<[usize]> {
    let mut t = alloc::vec![0usize; LIBCALL_COUNT];
    t[Libcall::MemoryGrow as usize] = memory_grow as *const () as usize;
    t[Libcall::MemoryFill as usize] = memory_fill as *const () as usize;
    t[Libcall::MemoryCopy as usize] = memory_copy as *const () as usize;
    t[Libcall::MemoryInit as usize] = memory_init as *const () as usize;
    t[Libcall::DataDrop as usize] = data_drop as *const () as usize;
    t[Libcall::TableGrow as usize] = table_grow as *const () as usize;
    t[Libcall::TableFill as usize] = table_fill as *const () as usize;
    t[Libcall::TableCopy as usize] = table_copy as *const () as usize;
    t[Libcall::TableInit as usize] = table_init as *const () as usize;
    t[Libcall::ElemDrop as usize] = elem_drop as *const () as usize;
    t[Libcall::ExnNew as usize] = crate::exn::exn_new_addr();
    t[Libcall::Throw as usize] = crate::exn::throw_addr();
    t[Libcall::ExnCaught as usize] = crate::exn::exn_caught as *const () as usize;
    t.into_boxed_slice()
}

/// The instance behind a vmctx.
///
/// # Safety
/// `vmctx` must be the vmctx of a live instance.
unsafe fn instance<'a>(vmctx: *mut VmCtx) -> &'a mut InstanceData {
    // SAFETY: guaranteed by the caller; generated code runs single-threaded.
    unsafe { &mut *((*vmctx).instance as *mut InstanceData) }
}

/// Ends the libcall with a trap, or returns its value.
///
/// # Safety
/// Must be called from a libcall entered from Wasm (an `enter` is active).
unsafe fn check<T>(vmctx: *mut VmCtx, r: Result<T, TrapKind>) -> T {
    match r {
        Ok(v) => v,
        // SAFETY: the store published the jump buffer of the active entry;
        // the frames skipped own nothing that needs dropping.
        Err(k) => unsafe { trap::raise((*(*vmctx).store).jmpbuf, k) },
    }
}

fn memory<'a>(inst: &InstanceData, mem: u32) -> &'a mut MemoryInner {
    // SAFETY: MemoryDef is the first field of a live, boxed MemoryInner;
    // validation checked the index.
    unsafe { &mut *(inst.memories[mem as usize] as *mut MemoryInner) }
}

fn table_of<'a>(inst: &InstanceData, t: u32) -> &'a mut TableInner {
    // SAFETY: TableDef is the first field of a live, boxed TableInner.
    unsafe { &mut *(inst.tables[t as usize] as *mut TableInner) }
}

fn range(off: u32, len: u32, size: u64) -> Result<core::ops::Range<usize>, TrapKind> {
    let end = off as u64 + len as u64;
    if end > size {
        return Err(TrapKind::MemoryOutOfBounds);
    }
    Ok(off as usize..end as usize)
}

fn mem_slice<'a>(m: &MemoryInner) -> &'a mut [u8] {
    // SAFETY: `len` bytes from `base` are committed.
    unsafe { core::slice::from_raw_parts_mut(m.def.base, m.def.len as usize) }
}

unsafe extern "C" fn memory_grow(vmctx: *mut VmCtx, mem: u32, delta: u32) -> u32 {
    // SAFETY: called by generated code with its vmctx.
    let inst = unsafe { instance(vmctx) };
    let m = memory(inst, mem);
    match m.grow(delta as u64) {
        Some(old) => old as u32,
        None => {
            if m.within_max(delta as u64) {
                // SAFETY: the vmctx's store context is live while Wasm runs.
                unsafe { (*(*vmctx).store).grow_refused = true };
            }
            u32::MAX
        }
    }
}

unsafe extern "C" fn memory_fill(vmctx: *mut VmCtx, mem: u32, dst: u32, val: u32, len: u32) {
    // SAFETY: called by generated code with its vmctx.
    let inst = unsafe { instance(vmctx) };
    let m = memory(inst, mem);
    let r = range(dst, len, m.def.len).map(|r| mem_slice(m)[r].fill(val as u8));
    // SAFETY: entered from Wasm.
    unsafe { check(vmctx, r) }
}

unsafe extern "C" fn memory_copy(
    vmctx: *mut VmCtx,
    dst_mem: u32,
    src_mem: u32,
    dst: u32,
    src: u32,
    len: u32,
) {
    // SAFETY: called by generated code with its vmctx.
    let inst = unsafe { instance(vmctx) };
    let (d, s) = (memory(inst, dst_mem), memory(inst, src_mem));
    let r = range(src, len, s.def.len).and_then(|sr| {
        let dr = range(dst, len, d.def.len)?;
        if dst_mem == src_mem {
            mem_slice(d).copy_within(sr, dst as usize);
        } else {
            // Two distinct memories: the ranges cannot overlap.
            let from = mem_slice(s)[sr].to_vec();
            mem_slice(d)[dr].copy_from_slice(&from);
        }
        Ok(())
    });
    // SAFETY: entered from Wasm.
    unsafe { check(vmctx, r) }
}

unsafe extern "C" fn memory_init(
    vmctx: *mut VmCtx,
    mem: u32,
    seg: u32,
    dst: u32,
    src: u32,
    len: u32,
) {
    // SAFETY: called by generated code with its vmctx.
    let inst = unsafe { instance(vmctx) };
    let m = memory(inst, mem);
    let module = inst.module.clone();
    let bytes: &[u8] = if inst.data_dropped[seg as usize] {
        &[]
    } else {
        &module.info.datas[seg as usize].bytes
    };
    let r = range(src, len, bytes.len() as u64).and_then(|s| {
        let d = range(dst, len, m.def.len)?;
        mem_slice(m)[d].copy_from_slice(&bytes[s]);
        Ok(())
    });
    drop(module);
    // SAFETY: entered from Wasm.
    unsafe { check(vmctx, r) }
}

unsafe extern "C" fn data_drop(vmctx: *mut VmCtx, seg: u32) {
    // SAFETY: called by generated code with its vmctx.
    let inst = unsafe { instance(vmctx) };
    inst.data_dropped[seg as usize] = true;
}

unsafe extern "C" fn table_grow(vmctx: *mut VmCtx, t: u32, init: u64, delta: u32) -> u32 {
    // SAFETY: called by generated code with its vmctx.
    let inst = unsafe { instance(vmctx) };
    match table_of(inst, t).grow(delta as u64, init) {
        Some(old) => old as u32,
        None => u32::MAX,
    }
}

fn trange(off: u32, len: u32, size: usize) -> Result<core::ops::Range<usize>, TrapKind> {
    let end = off as u64 + len as u64;
    if end > size as u64 {
        return Err(TrapKind::TableOutOfBounds);
    }
    Ok(off as usize..end as usize)
}

unsafe extern "C" fn table_fill(vmctx: *mut VmCtx, t: u32, dst: u32, val: u64, len: u32) {
    // SAFETY: called by generated code with its vmctx.
    let inst = unsafe { instance(vmctx) };
    let tab = table_of(inst, t);
    let r = trange(dst, len, tab.elems.len()).map(|r| tab.elems[r].fill(val));
    // SAFETY: entered from Wasm.
    unsafe { check(vmctx, r) }
}

unsafe extern "C" fn table_copy(vmctx: *mut VmCtx, dt: u32, st: u32, dst: u32, src: u32, len: u32) {
    // SAFETY: called by generated code with its vmctx.
    let inst = unsafe { instance(vmctx) };
    let (d, s) = (table_of(inst, dt), table_of(inst, st));
    let r = trange(src, len, s.elems.len()).and_then(|sr| {
        let dr = trange(dst, len, d.elems.len())?;
        // Same table or not: copy through a buffer to keep it simple.
        let tmp: Vec<u64> = s.elems[sr].to_vec();
        d.elems[dr].copy_from_slice(&tmp);
        Ok(())
    });
    // SAFETY: entered from Wasm.
    unsafe { check(vmctx, r) }
}

unsafe extern "C" fn table_init(vmctx: *mut VmCtx, t: u32, seg: u32, dst: u32, src: u32, len: u32) {
    // SAFETY: called by generated code with its vmctx.
    let inst = unsafe { instance(vmctx) };
    let tab = table_of(inst, t);
    let items = &inst.elems[seg as usize];
    let r = trange(src, len, items.len()).and_then(|sr| {
        let dr = trange(dst, len, tab.elems.len())?;
        tab.elems[dr].copy_from_slice(&items[sr]);
        Ok(())
    });
    // SAFETY: entered from Wasm.
    unsafe { check(vmctx, r) }
}

unsafe extern "C" fn elem_drop(vmctx: *mut VmCtx, seg: u32) {
    // SAFETY: called by generated code with its vmctx.
    let inst = unsafe { instance(vmctx) };
    inst.elems[seg as usize] = Vec::new();
}
