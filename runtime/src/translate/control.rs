//! Structured control flow: blocks, loops, ifs and branches.

use alloc::vec::Vec;
use cranelift_codegen::ir::{
    condcodes::IntCC, types, Block, BlockArg, BlockCall, InstBuilder, JumpTableData, MemFlagsData,
    Type, Value,
};
use wasmparser::{BlockType, Catch, Operator};

use super::{clif_type, Translator, PTR};
use crate::trap::TrapKind;
use crate::vmctx::{self, Libcall};
use crate::Error;

pub(super) enum Kind {
    Block,
    Loop {
        header: Block,
    },
    If {
        else_block: Block,
        /// The parameters, passed again to the else branch.
        params: Vec<Value>,
        has_else: bool,
    },
    /// A `try_table`: calls inside become `try_call`s whose handler is
    /// `dispatch` (one parameter, the exception), and so do throws (a
    /// jump); at the `end`, `dispatch` tests the catch clauses in order.
    TryTable {
        dispatch: Block,
        catches: Vec<Catch>,
        /// Whether anything can reach `dispatch`.
        used: bool,
    },
    Function,
}

pub(super) struct Frame {
    kind: Kind,
    /// Continuation; its parameters are the frame's results.
    next: Block,
    params: usize,
    results: usize,
    /// Operand stack height below the frame's parameters.
    height: usize,
    branched_to: bool,
}

impl Frame {
    pub(super) fn function(ret: Block, results: usize) -> Frame {
        Frame {
            kind: Kind::Function,
            next: ret,
            params: 0,
            results,
            height: 0,
            branched_to: false,
        }
    }

    /// Branch target and arity.
    fn target(&self) -> (Block, usize) {
        match self.kind {
            Kind::Loop { header } => (header, self.params),
            _ => (self.next, self.results),
        }
    }
}

fn args(vals: &[Value]) -> Vec<BlockArg> {
    vals.iter().map(|v| BlockArg::Value(*v)).collect()
}

impl Translator<'_> {
    fn block_types(&self, bt: BlockType) -> Result<(Vec<Type>, Vec<Type>), Error> {
        Ok(match bt {
            BlockType::Empty => (Vec::new(), Vec::new()),
            BlockType::Type(t) => (Vec::new(), alloc::vec![clif_type(t)?]),
            BlockType::FuncType(i) => {
                let f = &self.m.types[i as usize];
                (
                    f.params
                        .iter()
                        .map(|t| clif_type(*t))
                        .collect::<Result<_, _>>()?,
                    f.results
                        .iter()
                        .map(|t| clif_type(*t))
                        .collect::<Result<_, _>>()?,
                )
            }
        })
    }

    fn block_with_params(&mut self, tys: &[Type]) -> Block {
        let b = self.b.create_block();
        for t in tys {
            self.b.append_block_param(b, *t);
        }
        b
    }

    /// Jumps to the frame `depth` levels out with the top operands.
    fn branch(&mut self, depth: u32) {
        let i = self.frames.len() - 1 - depth as usize;
        let (target, n) = self.frames[i].target();
        self.frames[i].branched_to = true;
        let a = args(self.peekn(n));
        self.b.ins().jump(target, &a);
    }

    fn branch_call(&mut self, depth: u32) -> BlockCall {
        let i = self.frames.len() - 1 - depth as usize;
        let (target, n) = self.frames[i].target();
        self.frames[i].branched_to = true;
        let a = args(self.peekn(n));
        BlockCall::new(target, a, &mut self.b.func.dfg.value_lists)
    }

    /// Handles control operators; `false` if `op` is not one.
    pub(super) fn control(&mut self, op: &Operator<'_>) -> Result<bool, Error> {
        match *op {
            Operator::Unreachable => {
                self.b.ins().trap(TrapKind::Unreachable.code());
                self.reachable = false;
            }
            Operator::Block { blockty } => {
                let (p, r) = self.block_types(blockty)?;
                let next = self.block_with_params(&r);
                self.frames.push(Frame {
                    kind: Kind::Block,
                    next,
                    params: p.len(),
                    results: r.len(),
                    height: self.stack.len() - p.len(),
                    branched_to: false,
                });
            }
            Operator::Loop { blockty } => {
                let (p, r) = self.block_types(blockty)?;
                let header = self.block_with_params(&p);
                let next = self.block_with_params(&r);
                let a = args(self.peekn(p.len()));
                self.b.ins().jump(header, &a);
                let height = self.stack.len() - p.len();
                self.stack.truncate(height);
                self.b.switch_to_block(header);
                self.check_interrupt();
                self.stack.extend_from_slice(self.b.block_params(header));
                self.frames.push(Frame {
                    kind: Kind::Loop { header },
                    next,
                    params: p.len(),
                    results: r.len(),
                    height,
                    branched_to: false,
                });
            }
            Operator::If { blockty } => {
                let cond = self.pop();
                let (p, r) = self.block_types(blockty)?;
                let next = self.block_with_params(&r);
                let then_block = self.b.create_block();
                let else_block = self.b.create_block();
                self.b.ins().brif(cond, then_block, &[], else_block, &[]);
                self.b.switch_to_block(then_block);
                let height = self.stack.len() - p.len();
                self.frames.push(Frame {
                    kind: Kind::If {
                        else_block,
                        params: self.peekn(p.len()).to_vec(),
                        has_else: false,
                    },
                    next,
                    params: p.len(),
                    results: r.len(),
                    height,
                    branched_to: false,
                });
            }
            Operator::TryTable { ref try_table } => {
                let (p, r) = self.block_types(try_table.ty)?;
                let next = self.block_with_params(&r);
                let dispatch = self.block_with_params(&[PTR]);
                self.try_depth += 1;
                self.frames.push(Frame {
                    kind: Kind::TryTable {
                        dispatch,
                        catches: try_table.catches.clone(),
                        used: false,
                    },
                    next,
                    params: p.len(),
                    results: r.len(),
                    height: self.stack.len() - p.len(),
                    branched_to: false,
                });
            }
            Operator::Throw { tag_index } => {
                let n = self.m.tag_type(tag_index).params.len();
                let tag = self.b.ins().iconst(types::I32, tag_index as i64);
                let exn = self
                    .libcall(Libcall::ExnNew, &[tag], Some(PTR))
                    .expect("ExnNew returns the exception");
                let vals = self.peekn(n).to_vec();
                for (i, v) in vals.into_iter().enumerate() {
                    self.b.ins().store(
                        MemFlagsData::trusted(),
                        v,
                        exn,
                        vmctx::EXN_PAYLOAD + 8 * i as i32,
                    );
                }
                self.stack.truncate(self.stack.len() - n);
                self.throw_exn(exn);
                self.reachable = false;
            }
            Operator::ThrowRef => {
                let exn = self.pop();
                self.b.ins().trapz(exn, TrapKind::NullExnRef.code());
                self.throw_exn(exn);
                self.reachable = false;
            }
            Operator::Else => self.else_()?,
            Operator::End => self.end(),
            Operator::Br { relative_depth } => {
                self.branch(relative_depth);
                self.reachable = false;
            }
            Operator::BrIf { relative_depth } => {
                let cond = self.pop();
                let i = self.frames.len() - 1 - relative_depth as usize;
                let (target, n) = self.frames[i].target();
                self.frames[i].branched_to = true;
                let a = args(self.peekn(n));
                let cont = self.b.create_block();
                self.b.ins().brif(cond, target, &a, cont, &[]);
                self.b.switch_to_block(cont);
            }
            Operator::BrTable { ref targets } => {
                let idx = self.pop();
                let mut calls = Vec::with_capacity(targets.len() as usize);
                for t in targets.targets() {
                    let t = t.map_err(crate::module_err)?;
                    calls.push(self.branch_call(t));
                }
                let def = self.branch_call(targets.default());
                let jt = self.b.create_jump_table(JumpTableData::new(def, &calls));
                self.b.ins().br_table(idx, jt);
                self.reachable = false;
            }
            Operator::Return => {
                self.branch(self.frames.len() as u32 - 1);
                self.reachable = false;
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn else_(&mut self) -> Result<(), Error> {
        let f = self.frames.last_mut().expect("validated");
        let Kind::If {
            else_block,
            ref params,
            ref mut has_else,
            ..
        } = f.kind
        else {
            unreachable!("validated: else without if")
        };
        *has_else = true;
        let params = params.clone();
        let (next, n, height) = (f.next, f.results, f.height);
        if self.reachable {
            f.branched_to = true;
            let a = args(self.peekn(n));
            self.b.ins().jump(next, &a);
        }
        self.stack.truncate(height);
        self.stack.extend_from_slice(&params);
        self.b.switch_to_block(else_block);
        self.reachable = true;
        Ok(())
    }

    /// The `try_table` handler calls inside the current code unwind to.
    pub(super) fn innermost_dispatch(&mut self) -> Option<Block> {
        if self.try_depth == 0 {
            return None;
        }
        self.frames.iter_mut().rev().find_map(|f| match f.kind {
            Kind::TryTable {
                dispatch,
                ref mut used,
                ..
            } => {
                *used = true;
                Some(dispatch)
            }
            _ => None,
        })
    }

    /// Hands exception `exn` to the innermost enclosing `try_table` of
    /// this function (a jump), or unwinds to the callers (a libcall).
    fn throw_exn(&mut self, exn: Value) {
        match self.innermost_dispatch() {
            Some(d) => {
                self.b.ins().jump(d, &[BlockArg::Value(exn)]);
            }
            None => {
                self.libcall(Libcall::Throw, &[exn], None);
                self.b.ins().trap(TrapKind::Unreachable.code());
            }
        }
    }

    /// Jumps to label `depth` (of the current frames) with `vals`.
    fn jump_to_label(&mut self, depth: u32, vals: &[Value]) {
        let i = self.frames.len() - 1 - depth as usize;
        let (target, n) = self.frames[i].target();
        debug_assert_eq!(n, vals.len(), "validated: catch label arity");
        self.frames[i].branched_to = true;
        self.b.ins().jump(target, &args(vals));
    }

    /// The body of a `try_table`'s handler block: the first clause whose
    /// tag is the exception's (or a catch-all) branches to its label with
    /// the payload (and the exnref for `_ref` clauses); without a match the
    /// exception goes on to the enclosing handler. Labels are relative to
    /// the frames outside the `try_table` (it is popped already).
    fn emit_dispatch(&mut self, dispatch: Block, catches: &[Catch]) {
        self.b.switch_to_block(dispatch);
        let exn = self.b.block_params(dispatch)[0];
        let flags = MemFlagsData::trusted();
        let tag = self.b.ins().load(types::I64, flags, exn, vmctx::EXN_TAG);
        for c in catches {
            let (label, by_tag, keep_ref) = match *c {
                Catch::One { tag, label } => (label, Some(tag), false),
                Catch::OneRef { tag, label } => (label, Some(tag), true),
                Catch::All { label } => (label, None, false),
                Catch::AllRef { label } => (label, None, true),
            };
            let miss = match by_tag {
                Some(t) => {
                    let want = self.tag_id(t);
                    let eq = self.b.ins().icmp(IntCC::Equal, tag, want);
                    let (hit, miss) = (self.b.create_block(), self.b.create_block());
                    self.b.ins().brif(eq, hit, &[], miss, &[]);
                    self.b.switch_to_block(hit);
                    Some(miss)
                }
                None => None,
            };
            let mut vals = Vec::new();
            if let Some(t) = by_tag {
                let params = self.m.tag_type(t).params.clone();
                for (i, p) in params.iter().enumerate() {
                    let ty = clif_type(*p).expect("compile checked every tag's payload types");
                    let off = vmctx::EXN_PAYLOAD + 8 * i as i32;
                    vals.push(self.b.ins().load(ty, flags, exn, off));
                }
            }
            if keep_ref {
                let one = self.b.ins().iconst(types::I32, 1);
                self.b.ins().store(flags, one, exn, vmctx::EXN_REFERENCED);
                vals.push(exn);
            } else {
                self.libcall(Libcall::ExnCaught, &[exn], None);
            }
            self.jump_to_label(label, &vals);
            match miss {
                Some(m) => self.b.switch_to_block(m),
                // A catch-all: later clauses never run.
                None => return,
            }
        }
        self.throw_exn(exn);
    }

    fn end(&mut self) {
        let mut f = self.frames.pop().expect("validated");
        if self.reachable {
            f.branched_to = true;
            let a = args(self.peekn(f.results));
            self.b.ins().jump(f.next, &a);
        }
        if let Kind::TryTable {
            dispatch,
            ref catches,
            used,
        } = f.kind
        {
            self.try_depth -= 1;
            if used {
                let catches = catches.clone();
                self.emit_dispatch(dispatch, &catches);
            }
        }
        if let Kind::If {
            else_block,
            ref params,
            has_else: false,
            ..
        } = f.kind
        {
            // No else: the false edge passes the parameters through.
            self.b.switch_to_block(else_block);
            let a = args(params);
            self.b.ins().jump(f.next, &a);
            f.branched_to = true;
        }
        self.stack.truncate(f.height);
        self.reachable = f.branched_to;
        if f.branched_to {
            self.b.switch_to_block(f.next);
            self.stack.extend_from_slice(self.b.block_params(f.next));
        }
        if matches!(f.kind, Kind::Function) && f.branched_to {
            let rets = self.stack.clone();
            self.b.ins().return_(&rets);
        }
    }

    /// In unreachable code only the nesting of control operators matters.
    pub(super) fn unreachable_operator(&mut self, op: &Operator<'_>) -> Result<(), Error> {
        match op {
            Operator::Block { .. }
            | Operator::Loop { .. }
            | Operator::If { .. }
            | Operator::TryTable { .. } => self.unreachable_depth += 1,
            Operator::Else if self.unreachable_depth == 0 => self.else_()?,
            Operator::End if self.unreachable_depth == 0 => self.end(),
            Operator::End => self.unreachable_depth -= 1,
            _ => {}
        }
        Ok(())
    }
}
