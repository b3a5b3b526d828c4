//! Integer and float operators. Wasm's trapping cases are explicit where
//! Cranelift's semantics differ or to pin down the trap kind.

use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{types, InstBuilder, MemFlagsData, Type, Value};
use cranelift_frontend::FunctionBuilder;
use wasmparser::Operator;

use super::Translator;
use crate::trap::TrapKind;
use crate::Error;

type Bin = fn(&mut FunctionBuilder<'_>, Value, Value) -> Value;
type Un = fn(&mut FunctionBuilder<'_>, Value) -> Value;

impl Translator<'_> {
    fn bin(&mut self, f: Bin) {
        let (a, b) = self.pop2();
        let v = f(&mut self.b, a, b);
        self.push(v);
    }

    fn un(&mut self, f: Un) {
        let a = self.pop();
        let v = f(&mut self.b, a);
        self.push(v);
    }

    fn icmp(&mut self, cc: IntCC) {
        let (a, b) = self.pop2();
        let c = self.b.ins().icmp(cc, a, b);
        let v = self.b.ins().uextend(types::I32, c);
        self.push(v);
    }

    fn fcmp(&mut self, cc: FloatCC) {
        let (a, b) = self.pop2();
        let c = self.b.ins().fcmp(cc, a, b);
        let v = self.b.ins().uextend(types::I32, c);
        self.push(v);
    }

    fn eqz(&mut self) {
        let a = self.pop();
        let c = self.b.ins().icmp_imm_s(IntCC::Equal, a, 0);
        let v = self.b.ins().uextend(types::I32, c);
        self.push(v);
    }

    /// div/rem with Wasm's trap rules: zero divisor traps; signed
    /// `MIN / -1` traps, `MIN % -1` is 0.
    fn divrem(&mut self, ty: Type, signed: bool, rem: bool) {
        let (a, b) = self.pop2();
        let zero = self.b.ins().icmp_imm_s(IntCC::Equal, b, 0);
        self.trap_if(zero, TrapKind::IntegerDivideByZero);
        let v = match (signed, rem) {
            (false, false) => self.b.ins().udiv(a, b),
            (false, true) => self.b.ins().urem(a, b),
            (true, false) => {
                let min = if ty == types::I32 {
                    i32::MIN as i64
                } else {
                    i64::MIN
                };
                let a_min = self.b.ins().icmp_imm_s(IntCC::Equal, a, min);
                let b_m1 = self.b.ins().icmp_imm_s(IntCC::Equal, b, -1);
                let ovf = self.b.ins().band(a_min, b_m1);
                self.trap_if(ovf, TrapKind::IntegerOverflow);
                self.b.ins().sdiv(a, b)
            }
            (true, true) => {
                let b_m1 = self.b.ins().icmp_imm_s(IntCC::Equal, b, -1);
                let one = self.b.ins().iconst(ty, 1);
                let b = self.b.ins().select(b_m1, one, b);
                self.b.ins().srem(a, b)
            }
        };
        self.push(v);
    }

    fn convert(&mut self, f: impl FnOnce(&mut FunctionBuilder<'_>, Value) -> Value) {
        let a = self.pop();
        let v = f(&mut self.b, a);
        self.push(v);
    }

    fn sext_from(&mut self, ty: Type, from: Type) {
        self.convert(|b, a| {
            let n = b.ins().ireduce(from, a);
            b.ins().sextend(ty, n)
        });
    }

    /// Handles numeric operators; `false` if `op` is not one.
    pub(super) fn numeric(&mut self, op: &Operator<'_>) -> Result<bool, Error> {
        use types::{F32, F64, I16, I32, I64, I8};
        match *op {
            Operator::I32Const { value } => {
                let v = self.b.ins().iconst(I32, value as u32 as i64);
                self.push(v);
            }
            Operator::I64Const { value } => {
                let v = self.b.ins().iconst(I64, value);
                self.push(v);
            }
            Operator::F32Const { value } => {
                let v = self.b.ins().f32const(f32::from_bits(value.bits()));
                self.push(v);
            }
            Operator::F64Const { value } => {
                let v = self.b.ins().f64const(f64::from_bits(value.bits()));
                self.push(v);
            }
            Operator::I32Eqz | Operator::I64Eqz => self.eqz(),
            Operator::I32Eq | Operator::I64Eq => self.icmp(IntCC::Equal),
            Operator::I32Ne | Operator::I64Ne => self.icmp(IntCC::NotEqual),
            Operator::I32LtS | Operator::I64LtS => self.icmp(IntCC::SignedLessThan),
            Operator::I32LtU | Operator::I64LtU => self.icmp(IntCC::UnsignedLessThan),
            Operator::I32GtS | Operator::I64GtS => self.icmp(IntCC::SignedGreaterThan),
            Operator::I32GtU | Operator::I64GtU => self.icmp(IntCC::UnsignedGreaterThan),
            Operator::I32LeS | Operator::I64LeS => self.icmp(IntCC::SignedLessThanOrEqual),
            Operator::I32LeU | Operator::I64LeU => self.icmp(IntCC::UnsignedLessThanOrEqual),
            Operator::I32GeS | Operator::I64GeS => self.icmp(IntCC::SignedGreaterThanOrEqual),
            Operator::I32GeU | Operator::I64GeU => self.icmp(IntCC::UnsignedGreaterThanOrEqual),
            Operator::F32Eq | Operator::F64Eq => self.fcmp(FloatCC::Equal),
            Operator::F32Ne | Operator::F64Ne => self.fcmp(FloatCC::NotEqual),
            Operator::F32Lt | Operator::F64Lt => self.fcmp(FloatCC::LessThan),
            Operator::F32Gt | Operator::F64Gt => self.fcmp(FloatCC::GreaterThan),
            Operator::F32Le | Operator::F64Le => self.fcmp(FloatCC::LessThanOrEqual),
            Operator::F32Ge | Operator::F64Ge => self.fcmp(FloatCC::GreaterThanOrEqual),
            Operator::I32Clz | Operator::I64Clz => self.un(|b, a| b.ins().clz(a)),
            Operator::I32Ctz | Operator::I64Ctz => self.un(|b, a| b.ins().ctz(a)),
            Operator::I32Popcnt | Operator::I64Popcnt => self.un(|b, a| b.ins().popcnt(a)),
            Operator::I32Add | Operator::I64Add => self.bin(|b, x, y| b.ins().iadd(x, y)),
            Operator::I32Sub | Operator::I64Sub => self.bin(|b, x, y| b.ins().isub(x, y)),
            Operator::I32Mul | Operator::I64Mul => self.bin(|b, x, y| b.ins().imul(x, y)),
            Operator::I32DivS => self.divrem(I32, true, false),
            Operator::I32DivU => self.divrem(I32, false, false),
            Operator::I32RemS => self.divrem(I32, true, true),
            Operator::I32RemU => self.divrem(I32, false, true),
            Operator::I64DivS => self.divrem(I64, true, false),
            Operator::I64DivU => self.divrem(I64, false, false),
            Operator::I64RemS => self.divrem(I64, true, true),
            Operator::I64RemU => self.divrem(I64, false, true),
            Operator::I32And | Operator::I64And => self.bin(|b, x, y| b.ins().band(x, y)),
            Operator::I32Or | Operator::I64Or => self.bin(|b, x, y| b.ins().bor(x, y)),
            Operator::I32Xor | Operator::I64Xor => self.bin(|b, x, y| b.ins().bxor(x, y)),
            // Cranelift shifts and rotates take the amount modulo the width, as Wasm does.
            Operator::I32Shl | Operator::I64Shl => self.bin(|b, x, y| b.ins().ishl(x, y)),
            Operator::I32ShrS | Operator::I64ShrS => self.bin(|b, x, y| b.ins().sshr(x, y)),
            Operator::I32ShrU | Operator::I64ShrU => self.bin(|b, x, y| b.ins().ushr(x, y)),
            Operator::I32Rotl | Operator::I64Rotl => self.bin(|b, x, y| b.ins().rotl(x, y)),
            Operator::I32Rotr | Operator::I64Rotr => self.bin(|b, x, y| b.ins().rotr(x, y)),
            Operator::F32Abs | Operator::F64Abs => self.un(|b, a| b.ins().fabs(a)),
            Operator::F32Neg | Operator::F64Neg => self.un(|b, a| b.ins().fneg(a)),
            Operator::F32Ceil | Operator::F64Ceil => self.un(|b, a| b.ins().ceil(a)),
            Operator::F32Floor | Operator::F64Floor => self.un(|b, a| b.ins().floor(a)),
            Operator::F32Trunc | Operator::F64Trunc => self.un(|b, a| b.ins().trunc(a)),
            Operator::F32Nearest | Operator::F64Nearest => self.un(|b, a| b.ins().nearest(a)),
            Operator::F32Sqrt | Operator::F64Sqrt => self.un(|b, a| b.ins().sqrt(a)),
            Operator::F32Add | Operator::F64Add => self.bin(|b, x, y| b.ins().fadd(x, y)),
            Operator::F32Sub | Operator::F64Sub => self.bin(|b, x, y| b.ins().fsub(x, y)),
            Operator::F32Mul | Operator::F64Mul => self.bin(|b, x, y| b.ins().fmul(x, y)),
            Operator::F32Div | Operator::F64Div => self.bin(|b, x, y| b.ins().fdiv(x, y)),
            // Cranelift's fmin/fmax follow Wasm: NaN in, NaN out; -0 < +0.
            Operator::F32Min | Operator::F64Min => self.bin(|b, x, y| b.ins().fmin(x, y)),
            Operator::F32Max | Operator::F64Max => self.bin(|b, x, y| b.ins().fmax(x, y)),
            Operator::F32Copysign | Operator::F64Copysign => {
                self.bin(|b, x, y| b.ins().fcopysign(x, y))
            }
            Operator::I32WrapI64 => self.convert(|b, a| b.ins().ireduce(I32, a)),
            Operator::I64ExtendI32S => self.convert(|b, a| b.ins().sextend(I64, a)),
            Operator::I64ExtendI32U => self.convert(|b, a| b.ins().uextend(I64, a)),
            Operator::I32TruncF32S | Operator::I32TruncF64S => {
                self.convert(|b, a| b.ins().fcvt_to_sint(I32, a))
            }
            Operator::I32TruncF32U | Operator::I32TruncF64U => {
                self.convert(|b, a| b.ins().fcvt_to_uint(I32, a))
            }
            Operator::I64TruncF32S | Operator::I64TruncF64S => {
                self.convert(|b, a| b.ins().fcvt_to_sint(I64, a))
            }
            Operator::I64TruncF32U | Operator::I64TruncF64U => {
                self.convert(|b, a| b.ins().fcvt_to_uint(I64, a))
            }
            Operator::I32TruncSatF32S | Operator::I32TruncSatF64S => {
                self.convert(|b, a| b.ins().fcvt_to_sint_sat(I32, a))
            }
            Operator::I32TruncSatF32U | Operator::I32TruncSatF64U => {
                self.convert(|b, a| b.ins().fcvt_to_uint_sat(I32, a))
            }
            Operator::I64TruncSatF32S | Operator::I64TruncSatF64S => {
                self.convert(|b, a| b.ins().fcvt_to_sint_sat(I64, a))
            }
            Operator::I64TruncSatF32U | Operator::I64TruncSatF64U => {
                self.convert(|b, a| b.ins().fcvt_to_uint_sat(I64, a))
            }
            Operator::F32ConvertI32S | Operator::F32ConvertI64S => {
                self.convert(|b, a| b.ins().fcvt_from_sint(F32, a))
            }
            Operator::F32ConvertI32U | Operator::F32ConvertI64U => {
                self.convert(|b, a| b.ins().fcvt_from_uint(F32, a))
            }
            Operator::F64ConvertI32S | Operator::F64ConvertI64S => {
                self.convert(|b, a| b.ins().fcvt_from_sint(F64, a))
            }
            Operator::F64ConvertI32U | Operator::F64ConvertI64U => {
                self.convert(|b, a| b.ins().fcvt_from_uint(F64, a))
            }
            Operator::F32DemoteF64 => self.convert(|b, a| b.ins().fdemote(F32, a)),
            Operator::F64PromoteF32 => self.convert(|b, a| b.ins().fpromote(F64, a)),
            Operator::I32ReinterpretF32 => {
                self.convert(|b, a| b.ins().bitcast(I32, MemFlagsData::new(), a))
            }
            Operator::I64ReinterpretF64 => {
                self.convert(|b, a| b.ins().bitcast(I64, MemFlagsData::new(), a))
            }
            Operator::F32ReinterpretI32 => {
                self.convert(|b, a| b.ins().bitcast(F32, MemFlagsData::new(), a))
            }
            Operator::F64ReinterpretI64 => {
                self.convert(|b, a| b.ins().bitcast(F64, MemFlagsData::new(), a))
            }
            Operator::I32Extend8S => self.sext_from(I32, I8),
            Operator::I32Extend16S => self.sext_from(I32, I16),
            Operator::I64Extend8S => self.sext_from(I64, I8),
            Operator::I64Extend16S => self.sext_from(I64, I16),
            Operator::I64Extend32S => self.sext_from(I64, I32),
            _ => return Ok(false),
        }
        Ok(true)
    }
}
