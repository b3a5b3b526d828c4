//! Wasm function bodies to Cranelift IR. One [`Translator`] per function:
//! an operand stack of SSA values, a control stack of frames, and loads
//! through vmctx for everything outside the function.

mod control;
mod memory;
mod numeric;

use alloc::format;
use alloc::vec::Vec;
use cranelift_codegen::ir::{
    self, types, AbiParam, ArgumentPurpose, BlockArg, BlockCall, ExceptionTableData,
    ExceptionTableItem, ExtFuncData, ExternalName, Function, GlobalValueData, InstBuilder,
    MemFlagsData, Signature, Type, UserExternalName, UserFuncName, Value,
};
use cranelift_codegen::isa::{CallConv, TargetFrontendConfig};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext, Variable};
use target_lexicon::PointerWidth;
use wasmparser::{BinaryReader, FunctionBody, Operator, ValType};

use crate::module::{FuncType, ModuleInfo};
use crate::trap::TrapKind;
use crate::vmctx::{self, Libcall, LIBCALL_COUNT};
use crate::Error;
use control::Frame;

/// The pointer type (x86_64 only for now).
pub(crate) const PTR: Type = types::I64;

pub(crate) fn clif_type(t: ValType) -> Result<Type, Error> {
    match t {
        ValType::I32 => Ok(types::I32),
        ValType::I64 => Ok(types::I64),
        ValType::F32 => Ok(types::F32),
        ValType::F64 => Ok(types::F64),
        ValType::Ref(_) => Ok(PTR),
        ValType::V128 => Err(Error::Unsupported("SIMD (v128)".into())),
    }
}

/// The calling convention of Wasm functions (and host-call stubs):
/// Cranelift's `tail`, the same registers as SysV for the arguments and
/// callee-saved registers on the normal path, but a `try_call` of it
/// clobbers every register on the exceptional edge, so the unwinder only
/// restores SP, FP and PC.
pub(crate) const WASM_CALL_CONV: CallConv = CallConv::Tail;

/// The native signature of a Wasm function: `(vmctx, params...) -> results`.
pub(crate) fn native_signature(ty: &FuncType) -> Result<Signature, Error> {
    let mut sig = Signature::new(WASM_CALL_CONV);
    sig.params
        .push(AbiParam::special(PTR, ArgumentPurpose::VMContext));
    for p in &ty.params {
        sig.params.push(AbiParam::new(clif_type(*p)?));
    }
    for r in &ty.results {
        sig.returns.push(AbiParam::new(clif_type(*r)?));
    }
    Ok(sig)
}

/// Flags for loads of runtime structures that never trap nor change while
/// generated code runs.
pub(crate) fn readonly() -> MemFlagsData {
    MemFlagsData::trusted().with_readonly()
}

/// [`readonly`], for loads whose address is valid anywhere in the function
/// (the vmctx's fields and the arrays they point at, a memory's base: fixed
/// from instantiation, as memories grow in their reservation). Cranelift
/// may then merge such loads and move them out of loops: a memory access
/// need not reload the base after every store.
pub(crate) fn fixed() -> MemFlagsData {
    readonly().with_can_move()
}

pub(crate) struct Translator<'a> {
    m: &'a ModuleInfo,
    b: FunctionBuilder<'a>,
    vmctx: Value,
    stack: Vec<Value>,
    frames: Vec<Frame>,
    locals: Vec<Variable>,
    reachable: bool,
    /// Nesting of blocks opened in unreachable code.
    unreachable_depth: u32,
    type_sigs: Vec<Option<ir::SigRef>>,
    libcall_sigs: [Option<ir::SigRef>; LIBCALL_COUNT],
    /// Memory accesses rely on guard regions instead of explicit checks.
    guarded: bool,
    /// How many `try_table`s are open (calls are `try_call`s when some are).
    try_depth: u32,
    /// The module's own functions this one calls directly, by index.
    callees: alloc::collections::BTreeMap<u32, ir::FuncRef>,
}

/// The namespace of [`UserExternalName`]s that name a module function by
/// its index (a direct call's relocation, resolved in `compile`).
pub(crate) const FUNC_NAMESPACE: u32 = 0;

/// Whom a call goes to.
#[derive(Clone, Copy)]
enum Callee {
    /// A function of this module: `call` to code at a fixed place, with
    /// the caller's own vmctx (no table loads, and a direct branch that
    /// the CPU, or TCG's block chaining, follows without a lookup).
    Direct(ir::FuncRef),
    /// Code and vmctx loaded at run time (imports, `call_indirect`).
    Indirect { code: Value, vmctx: Value },
}

/// Translates local function `index` (in the module's function space).
pub(crate) fn translate_function(
    m: &ModuleInfo,
    bytes: &[u8],
    index: u32,
    guarded: bool,
    fctx: &mut FunctionBuilderContext,
) -> Result<Function, Error> {
    let ty = m.func_type(index);
    let mut func =
        Function::with_name_signature(UserFuncName::user(0, index), native_signature(ty)?);
    // Stack limit: vmctx->store->stack_limit, checked in each prologue.
    let vmctx_gv = func.create_global_value(GlobalValueData::VMContext);
    let ro = func
        .dfg
        .mem_flags
        .insert(readonly())
        .map_err(|_| Error::Compile("mem flags".into()))?;
    let rw = func
        .dfg
        .mem_flags
        .insert(MemFlagsData::trusted())
        .map_err(|_| Error::Compile("mem flags".into()))?;
    let store_gv = func.create_global_value(GlobalValueData::Load {
        base: vmctx_gv,
        offset: vmctx::VMCTX_STORE.into(),
        global_type: PTR,
        flags: ro,
    });
    let limit_gv = func.create_global_value(GlobalValueData::Load {
        base: store_gv,
        offset: vmctx::STORE_STACK_LIMIT.into(),
        global_type: PTR,
        flags: rw,
    });
    func.stack_limit = Some(limit_gv);

    let local = (index - m.num_imported_funcs) as usize;
    let range = m.bodies[local].clone();
    let body = FunctionBody::new(BinaryReader::new(&bytes[range.clone()], range.start as u64));

    let mut b = FunctionBuilder::new(&mut func, fctx);
    let entry = b.create_block();
    b.append_block_params_for_function_params(entry);
    b.switch_to_block(entry);
    let params = b.block_params(entry).to_vec();
    let vmctx = params[0];
    let mut locals = Vec::new();
    for (p, t) in params[1..].iter().zip(&ty.params) {
        let v = b.declare_var(clif_type(*t)?);
        b.def_var(v, *p);
        locals.push(v);
    }
    let mut lr = body.get_locals_reader().map_err(crate::module_err)?;
    for _ in 0..lr.get_count() {
        let (n, t) = lr.read().map_err(crate::module_err)?;
        let ct = clif_type(t)?;
        for _ in 0..n {
            let v = b.declare_var(ct);
            let zero = zero_value(&mut b, ct);
            b.def_var(v, zero);
            locals.push(v);
        }
    }
    let ret = b.create_block();
    for r in &ty.results {
        b.append_block_param(ret, clif_type(*r)?);
    }
    let mut t = Translator {
        m,
        b,
        vmctx,
        stack: Vec::new(),
        frames: Vec::new(),
        locals,
        reachable: true,
        unreachable_depth: 0,
        type_sigs: alloc::vec![None; m.types.len()],
        libcall_sigs: [None; LIBCALL_COUNT],
        guarded,
        try_depth: 0,
        callees: Default::default(),
    };
    t.frames.push(Frame::function(ret, ty.results.len()));
    let mut ops = body.get_operators_reader().map_err(crate::module_err)?;
    while !ops.eof() {
        let op = ops.read().map_err(crate::module_err)?;
        t.operator(&op)?;
    }
    t.b.seal_all_blocks();
    t.b.finalize(frontend_config());
    Ok(func)
}

pub(crate) fn frontend_config() -> TargetFrontendConfig {
    TargetFrontendConfig {
        default_call_conv: CallConv::SystemV,
        pointer_width: PointerWidth::U64,
        page_size_align_log2: 12,
    }
}

pub(crate) fn zero_value(b: &mut FunctionBuilder<'_>, t: Type) -> Value {
    match t {
        types::F32 => b.ins().f32const(0.0),
        types::F64 => b.ins().f64const(0.0),
        t => b.ins().iconst(t, 0),
    }
}

impl Translator<'_> {
    fn push(&mut self, v: Value) {
        self.stack.push(v);
    }

    fn pop(&mut self) -> Value {
        self.stack
            .pop()
            .expect("validated: operand stack underflow")
    }

    fn pop2(&mut self) -> (Value, Value) {
        let b = self.pop();
        let a = self.pop();
        (a, b)
    }

    fn peekn(&self, n: usize) -> &[Value] {
        &self.stack[self.stack.len() - n..]
    }

    /// Loads a pointer field of the vmctx.
    fn vmctx_ptr(&mut self, offset: i32) -> Value {
        self.b.ins().load(PTR, fixed(), self.vmctx, offset)
    }

    /// At every loop header: trap if the embedder interrupted the store
    /// (two loads and a never-taken branch per iteration). The flag is
    /// read with an atomic load: another thread or an interrupt sets it,
    /// and a plain load of it could be merged with the one at an outer
    /// loop's header (redundant-load elimination, then the two identical
    /// traps deduplicated), leaving an inner loop that never checks. On
    /// x86 the atomic load is the same `mov`.
    fn check_interrupt(&mut self) {
        let store = self.vmctx_ptr(vmctx::VMCTX_STORE);
        let at = self
            .b
            .ins()
            .iadd_imm_s(store, i64::from(vmctx::STORE_INTERRUPT));
        let flag = self
            .b
            .ins()
            .atomic_load(types::I32, MemFlagsData::trusted(), at);
        self.trap_if(flag, TrapKind::Interrupted);
    }

    fn trap_if(&mut self, cond: Value, kind: TrapKind) {
        self.b.ins().trapnz(cond, kind.code());
    }

    fn sig_for_type(&mut self, ty: u32) -> Result<ir::SigRef, Error> {
        if let Some(s) = self.type_sigs[ty as usize] {
            return Ok(s);
        }
        let sig = native_signature(&self.m.types[ty as usize])?;
        let s = self.b.import_signature(sig);
        self.type_sigs[ty as usize] = Some(s);
        Ok(s)
    }

    /// Calls a runtime libcall through `vmctx->libcalls`.
    fn libcall(&mut self, lc: Libcall, args: &[Value], ret: Option<Type>) -> Option<Value> {
        let sig = match self.libcall_sigs[lc as usize] {
            Some(s) => s,
            None => {
                let mut sig = Signature::new(CallConv::SystemV);
                sig.params.push(AbiParam::new(PTR));
                for a in args {
                    sig.params
                        .push(AbiParam::new(self.b.func.dfg.value_type(*a)));
                }
                if let Some(r) = ret {
                    sig.returns.push(AbiParam::new(r));
                }
                let s = self.b.import_signature(sig);
                self.libcall_sigs[lc as usize] = Some(s);
                s
            }
        };
        let table = self.vmctx_ptr(vmctx::VMCTX_LIBCALLS);
        let f = self.b.ins().load(PTR, fixed(), table, (lc as i32) * 8);
        let mut all = Vec::with_capacity(args.len() + 1);
        all.push(self.vmctx);
        all.extend_from_slice(args);
        let call = self.b.ins().call_indirect(sig, f, &all);
        self.b.inst_results(call).first().copied()
    }

    /// The direct-call reference to module function `index` (defined in
    /// this module, not imported).
    fn callee_ref(&mut self, index: u32, ty: u32) -> Result<ir::FuncRef, Error> {
        if let Some(&f) = self.callees.get(&index) {
            return Ok(f);
        }
        let signature = self.sig_for_type(ty)?;
        let name = self
            .b
            .func
            .declare_imported_user_function(UserExternalName::new(FUNC_NAMESPACE, index));
        let f = self.b.import_function(ExtFuncData {
            name: ExternalName::user(name),
            signature,
            colocated: true,
            patchable: false,
        });
        self.callees.insert(index, f);
        Ok(f)
    }

    /// Calls `callee` with the top arguments of type `ty`, pushing its
    /// results.
    fn call_with(&mut self, ty: u32, callee: Callee) -> Result<(), Error> {
        let sig = self.sig_for_type(ty)?;
        let n = self.m.types[ty as usize].params.len();
        let mut args = Vec::with_capacity(n + 1);
        args.push(match callee {
            Callee::Direct(_) => self.vmctx,
            Callee::Indirect { vmctx, .. } => vmctx,
        });
        args.extend_from_slice(self.peekn(n));
        self.stack.truncate(self.stack.len() - n);
        let Some(dispatch) = self.innermost_dispatch() else {
            let call = match callee {
                Callee::Direct(f) => self.b.ins().call(f, &args),
                Callee::Indirect { code, .. } => self.b.ins().call_indirect(sig, code, &args),
            };
            let results = self.b.inst_results(call).to_vec();
            self.stack.extend(results);
            return Ok(());
        };
        // Inside a try_table: an exception unwinding out of the callee
        // lands in the try_table's handler block with the exception
        // object in the first payload register.
        let mut rets = Vec::new();
        for r in &self.m.types[ty as usize].results {
            rets.push(clif_type(*r)?);
        }
        let cont = self.b.create_block();
        for t in &rets {
            self.b.append_block_param(cont, *t);
        }
        let pool = &mut self.b.func.dfg.value_lists;
        let normal = BlockCall::new(cont, (0..rets.len() as u32).map(BlockArg::TryCallRet), pool);
        let landing = BlockCall::new(dispatch, [BlockArg::TryCallExn(0)], pool);
        let table = ExceptionTableData::new(sig, normal, [ExceptionTableItem::Default(landing)]);
        let et = self.b.func.dfg.exception_tables.push(table);
        match callee {
            Callee::Direct(f) => self.b.ins().try_call(f, &args, et),
            Callee::Indirect { code, .. } => self.b.ins().try_call_indirect(code, &args, et),
        };
        self.b.switch_to_block(cont);
        self.stack.extend_from_slice(self.b.block_params(cont));
        Ok(())
    }

    /// The store-wide identity of tag `tag`.
    fn tag_id(&mut self, tag: u32) -> Value {
        let tags = self.vmctx_ptr(vmctx::VMCTX_TAGS);
        self.b.ins().load(types::I64, fixed(), tags, tag as i32 * 8)
    }

    fn operator(&mut self, op: &Operator<'_>) -> Result<(), Error> {
        if !self.reachable {
            return self.unreachable_operator(op);
        }
        if self.control(op)? || self.memory(op)? || self.numeric(op)? {
            return Ok(());
        }
        match *op {
            Operator::Nop => {}
            Operator::Drop => {
                self.pop();
            }
            Operator::Select | Operator::TypedSelect { .. } => {
                let c = self.pop();
                let (a, b) = self.pop2();
                let v = self.b.ins().select(c, a, b);
                self.push(v);
            }
            Operator::LocalGet { local_index } => {
                let v = self.b.use_var(self.locals[local_index as usize]);
                self.push(v);
            }
            Operator::LocalSet { local_index } => {
                let v = self.pop();
                self.b.def_var(self.locals[local_index as usize], v);
            }
            Operator::LocalTee { local_index } => {
                let v = *self.stack.last().expect("validated");
                self.b.def_var(self.locals[local_index as usize], v);
            }
            Operator::GlobalGet { global_index } => {
                let (cell, ty) = self.global_cell(global_index)?;
                let v = self.b.ins().load(ty, MemFlagsData::trusted(), cell, 0);
                self.push(v);
            }
            Operator::GlobalSet { global_index } => {
                let (cell, _) = self.global_cell(global_index)?;
                let v = self.pop();
                self.b.ins().store(MemFlagsData::trusted(), v, cell, 0);
            }
            Operator::Call { function_index } if function_index >= self.m.num_imported_funcs => {
                let ty = self.m.funcs[function_index as usize];
                let f = self.callee_ref(function_index, ty)?;
                self.call_with(ty, Callee::Direct(f))?;
            }
            Operator::Call { function_index } => {
                let funcs = self.vmctx_ptr(vmctx::VMCTX_FUNCS);
                let off = function_index as i32 * vmctx::FUNCREF_SIZE as i32;
                let code = self
                    .b
                    .ins()
                    .load(PTR, fixed(), funcs, off + vmctx::FUNCREF_CODE);
                let vmctx = self
                    .b
                    .ins()
                    .load(PTR, fixed(), funcs, off + vmctx::FUNCREF_VMCTX);
                let ty = self.m.funcs[function_index as usize];
                self.call_with(ty, Callee::Indirect { code, vmctx })?;
            }
            Operator::CallIndirect {
                type_index,
                table_index,
            } => {
                let idx = self.pop();
                let elem = self.table_elem_addr(table_index, idx);
                let fref = self.b.ins().load(PTR, MemFlagsData::trusted(), elem, 0);
                self.b.ins().trapz(fref, TrapKind::IndirectCallNull.code());
                let tid = self
                    .b
                    .ins()
                    .load(types::I64, readonly(), fref, vmctx::FUNCREF_TYPE_ID);
                let ids = self.vmctx_ptr(vmctx::VMCTX_TYPE_IDS);
                let want = self
                    .b
                    .ins()
                    .load(types::I64, fixed(), ids, type_index as i32 * 8);
                let bad = self.b.ins().icmp(ir::condcodes::IntCC::NotEqual, tid, want);
                self.trap_if(bad, TrapKind::IndirectCallTypeMismatch);
                let code = self
                    .b
                    .ins()
                    .load(PTR, readonly(), fref, vmctx::FUNCREF_CODE);
                let vmctx = self
                    .b
                    .ins()
                    .load(PTR, readonly(), fref, vmctx::FUNCREF_VMCTX);
                self.call_with(type_index, Callee::Indirect { code, vmctx })?;
            }
            Operator::RefNull { .. } => {
                let v = self.b.ins().iconst(PTR, 0);
                self.push(v);
            }
            Operator::RefIsNull => {
                let v = self.pop();
                let c = self.b.ins().icmp_imm_s(ir::condcodes::IntCC::Equal, v, 0);
                let c = self.b.ins().uextend(types::I32, c);
                self.push(c);
            }
            Operator::RefFunc { function_index } => {
                let funcs = self.vmctx_ptr(vmctx::VMCTX_FUNCS);
                let v = self
                    .b
                    .ins()
                    .iadd_imm_s(funcs, function_index as i64 * vmctx::FUNCREF_SIZE);
                self.push(v);
            }
            ref op => return Err(Error::Unsupported(format!("operator {op:?}"))),
        }
        Ok(())
    }

    /// The cell of a global and its Cranelift type.
    fn global_cell(&mut self, index: u32) -> Result<(Value, Type), Error> {
        let ty = clif_type(self.m.globals[index as usize].content_type)?;
        let globals = self.vmctx_ptr(vmctx::VMCTX_GLOBALS);
        let cell = self.b.ins().load(PTR, fixed(), globals, index as i32 * 8);
        Ok((cell, ty))
    }

    /// The `TableDef` pointer of a table.
    fn table_def(&mut self, table: u32) -> Value {
        let tables = self.vmctx_ptr(vmctx::VMCTX_TABLES);
        self.b.ins().load(PTR, fixed(), tables, table as i32 * 8)
    }

    /// Address of element `idx` (i32) of `table`, trapping when out of bounds.
    fn table_elem_addr(&mut self, table: u32, idx: Value) -> Value {
        let def = self.table_def(table);
        let len = self
            .b
            .ins()
            .load(types::I64, MemFlagsData::trusted(), def, vmctx::TABLE_LEN);
        let idx = self.b.ins().uextend(types::I64, idx);
        let oob = self
            .b
            .ins()
            .icmp(ir::condcodes::IntCC::UnsignedGreaterThanOrEqual, idx, len);
        self.b.ins().trapnz(oob, TrapKind::TableOutOfBounds.code());
        let base = self
            .b
            .ins()
            .load(PTR, MemFlagsData::trusted(), def, vmctx::TABLE_BASE);
        let off = self.b.ins().ishl_imm_u(idx, 3);
        self.b.ins().iadd(base, off)
    }
}
