//! Linear memory and table operators. Memory accesses are bounds-checked
//! explicitly against `MemoryDef::len`, unless the platform gives memories
//! guard regions (`Platform::guard_pages`): then an out-of-bounds access
//! faults on an uncommitted page of the reservation, and the load/store's
//! heap out-of-bounds trap code maps the fault to the trap.

use cranelift_codegen::ir::{condcodes::IntCC, types, InstBuilder, MemFlagsData, Type, Value};
use wasmparser::{MemArg, Operator};

use super::{Translator, PTR};
use crate::trap::TrapKind;
use crate::vmctx::{self, Libcall};
use crate::Error;

impl Translator<'_> {
    /// Native address of a `size`-byte access at the popped i32 index.
    fn mem_addr(&mut self, memarg: &MemArg, size: u32) -> Value {
        let idx = self.pop();
        let mem = match memarg.target {
            wasmparser::MemArgTarget::Memory(m) => m,
            // GC arrays are not enabled by the features modules validate with.
            wasmparser::MemArgTarget::Array(_) => 0,
        };
        let def = self.memory_def(mem);
        if self.guarded {
            // base + zext(index) + offset < base + 8 GiB: inside the
            // reservation, faulting past the committed length.
            let base = self
                .b
                .ins()
                .load(PTR, super::fixed(), def, vmctx::MEMORY_BASE);
            let idx = self.b.ins().uextend(types::I64, idx);
            let a = self.b.ins().iadd(base, idx);
            return self.b.ins().iadd_imm_s(a, memarg.offset as i64);
        }
        let len = self
            .b
            .ins()
            .load(types::I64, MemFlagsData::trusted(), def, vmctx::MEMORY_LEN);
        let idx = self.b.ins().uextend(types::I64, idx);
        // index + offset + size fits in 64 bits: both are below 2^32.
        let end = self
            .b
            .ins()
            .iadd_imm_s(idx, memarg.offset as i64 + size as i64);
        let oob = self.b.ins().icmp(IntCC::UnsignedGreaterThan, end, len);
        self.trap_if(oob, TrapKind::MemoryOutOfBounds);
        let base = self
            .b
            .ins()
            .load(PTR, super::fixed(), def, vmctx::MEMORY_BASE);
        let a = self.b.ins().iadd(base, idx);
        self.b.ins().iadd_imm_s(a, memarg.offset as i64)
    }

    fn load(&mut self, memarg: &MemArg, ty: Type, size: u32, kind: Load) {
        let a = self.mem_addr(memarg, size);
        let f = heap_flags();
        let ins = self.b.ins();
        let v = match kind {
            Load::Full => ins.load(ty, f, a, 0),
            Load::S8 => ins.sload8(ty, f, a, 0),
            Load::U8 => ins.uload8(ty, f, a, 0),
            Load::S16 => ins.sload16(ty, f, a, 0),
            Load::U16 => ins.uload16(ty, f, a, 0),
            Load::S32 => ins.sload32(f, a, 0),
            Load::U32 => ins.uload32(f, a, 0),
        };
        self.push(v);
    }

    fn store(&mut self, memarg: &MemArg, size: u32) {
        let v = self.pop();
        let a = self.mem_addr(memarg, size);
        let f = heap_flags();
        let vt = self.b.func.dfg.value_type(v);
        let ins = self.b.ins();
        match size {
            1 => ins.istore8(f, v, a, 0),
            2 => ins.istore16(f, v, a, 0),
            4 if vt == types::I64 => ins.istore32(f, v, a, 0),
            _ => ins.store(f, v, a, 0),
        };
    }

    fn call_lib(&mut self, lc: Libcall, n: usize, ret: Option<Type>) {
        let args = self.peekn(n).to_vec();
        self.stack.truncate(self.stack.len() - n);
        if let Some(v) = self.libcall(lc, &args, ret) {
            self.push(v);
        }
    }

    fn push_const(&mut self, v: u32) {
        let c = self.b.ins().iconst(types::I32, v as i64);
        self.push(c);
    }

    /// Handles memory and table operators; `false` if `op` is not one.
    pub(super) fn memory(&mut self, op: &Operator<'_>) -> Result<bool, Error> {
        use types::{F32, F64, I32, I64};
        match op {
            Operator::I32Load { memarg } => self.load(memarg, I32, 4, Load::Full),
            Operator::I64Load { memarg } => self.load(memarg, I64, 8, Load::Full),
            Operator::F32Load { memarg } => self.load(memarg, F32, 4, Load::Full),
            Operator::F64Load { memarg } => self.load(memarg, F64, 8, Load::Full),
            Operator::I32Load8S { memarg } => self.load(memarg, I32, 1, Load::S8),
            Operator::I32Load8U { memarg } => self.load(memarg, I32, 1, Load::U8),
            Operator::I32Load16S { memarg } => self.load(memarg, I32, 2, Load::S16),
            Operator::I32Load16U { memarg } => self.load(memarg, I32, 2, Load::U16),
            Operator::I64Load8S { memarg } => self.load(memarg, I64, 1, Load::S8),
            Operator::I64Load8U { memarg } => self.load(memarg, I64, 1, Load::U8),
            Operator::I64Load16S { memarg } => self.load(memarg, I64, 2, Load::S16),
            Operator::I64Load16U { memarg } => self.load(memarg, I64, 2, Load::U16),
            Operator::I64Load32S { memarg } => self.load(memarg, I64, 4, Load::S32),
            Operator::I64Load32U { memarg } => self.load(memarg, I64, 4, Load::U32),
            Operator::I32Store { memarg } | Operator::F32Store { memarg } => self.store(memarg, 4),
            Operator::I64Store { memarg } | Operator::F64Store { memarg } => self.store(memarg, 8),
            Operator::I32Store8 { memarg } | Operator::I64Store8 { memarg } => {
                self.store(memarg, 1)
            }
            Operator::I32Store16 { memarg } | Operator::I64Store16 { memarg } => {
                self.store(memarg, 2)
            }
            Operator::I64Store32 { memarg } => self.store(memarg, 4),
            Operator::MemorySize { mem } => {
                let def = self.memory_def(*mem);
                let len = self
                    .b
                    .ins()
                    .load(I64, MemFlagsData::trusted(), def, vmctx::MEMORY_LEN);
                let pages = self.b.ins().ushr_imm_u(len, 16);
                let v = self.b.ins().ireduce(I32, pages);
                self.push(v);
            }
            Operator::MemoryGrow { mem } => {
                self.insert_const_below(*mem, 1);
                self.call_lib(Libcall::MemoryGrow, 2, Some(I32))
            }
            Operator::MemoryFill { mem } => {
                self.insert_const_below(*mem, 3);
                self.call_lib(Libcall::MemoryFill, 4, None)
            }
            Operator::MemoryCopy { dst_mem, src_mem } => {
                self.insert_const_below(*src_mem, 3);
                self.insert_const_below(*dst_mem, 4);
                self.call_lib(Libcall::MemoryCopy, 5, None)
            }
            Operator::MemoryInit { data_index, mem } => {
                self.insert_const_below(*data_index, 3);
                self.insert_const_below(*mem, 4);
                self.call_lib(Libcall::MemoryInit, 5, None);
            }
            Operator::DataDrop { data_index } => {
                self.push_const(*data_index);
                self.call_lib(Libcall::DataDrop, 1, None);
            }
            Operator::TableGet { table } => {
                let idx = self.pop();
                let a = self.table_elem_addr(*table, idx);
                let v = self.b.ins().load(PTR, MemFlagsData::trusted(), a, 0);
                self.push(v);
            }
            Operator::TableSet { table } => {
                let v = self.pop();
                let idx = self.pop();
                let a = self.table_elem_addr(*table, idx);
                self.b.ins().store(MemFlagsData::trusted(), v, a, 0);
            }
            Operator::TableSize { table } => {
                let def = self.table_def(*table);
                let len = self
                    .b
                    .ins()
                    .load(I64, MemFlagsData::trusted(), def, vmctx::TABLE_LEN);
                let v = self.b.ins().ireduce(I32, len);
                self.push(v);
            }
            Operator::TableGrow { table } => {
                self.insert_const_below(*table, 2);
                self.call_lib(Libcall::TableGrow, 3, Some(I32));
            }
            Operator::TableFill { table } => {
                self.insert_const_below(*table, 3);
                self.call_lib(Libcall::TableFill, 4, None);
            }
            Operator::TableCopy {
                dst_table,
                src_table,
            } => {
                self.insert_const_below(*src_table, 3);
                self.insert_const_below(*dst_table, 4);
                self.call_lib(Libcall::TableCopy, 5, None);
            }
            Operator::TableInit { elem_index, table } => {
                self.insert_const_below(*elem_index, 3);
                self.insert_const_below(*table, 4);
                self.call_lib(Libcall::TableInit, 5, None);
            }
            Operator::ElemDrop { elem_index } => {
                self.push_const(*elem_index);
                self.call_lib(Libcall::ElemDrop, 1, None);
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The `MemoryDef` of memory `mem` (0 straight from the vmctx).
    fn memory_def(&mut self, mem: u32) -> Value {
        if mem == 0 {
            return self.vmctx_ptr(vmctx::VMCTX_MEMORY);
        }
        let defs = self.vmctx_ptr(vmctx::VMCTX_MEMORIES);
        self.b
            .ins()
            .load(super::PTR, super::fixed(), defs, mem as i32 * 8)
    }

    /// Inserts an i32 constant `depth` operands below the top.
    fn insert_const_below(&mut self, v: u32, depth: usize) {
        let c = self.b.ins().iconst(types::I32, v as i64);
        let n = self.stack.len();
        self.stack.insert(n - depth, c);
    }
}

/// Flags of a Wasm load/store: a fault there (guard region) is the heap
/// out-of-bounds trap, which registers the instruction in the trap table.
fn heap_flags() -> MemFlagsData {
    MemFlagsData::new().with_trap_code(Some(TrapKind::MemoryOutOfBounds.code()))
}

#[derive(Clone, Copy)]
enum Load {
    Full,
    S8,
    U8,
    S16,
    U16,
    S32,
    U32,
}
