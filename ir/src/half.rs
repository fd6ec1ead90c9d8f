//! 16-bit floats (f16, bf16) are storage types: every op that computes (elementwise math,
//! reductions, products, convolutions, scatters) runs on their values widened to f32 and rounds
//! its result back to nearest-even, as XLA's float normalization does on CPUs and as JAX's
//! results show. Data movement (reshape, transpose, slices, gathers, select, concat) and
//! conversions keep the 16-bit type. The interpreter applies the rule op by op; codegen
//! rewrites functions with [`widened`] first, so that it only ever computes in f32 or f64 and
//! converts at the edges.

use crate::func::{Func, Value};
use crate::ops::{Bodies, Op};
use crate::types::DType;

/// Whether `op` computes in f32 when an operand or its result is a 16-bit float.
pub fn computes_in_f32(op: &Op) -> bool {
    matches!(op, Op::Unary(_) | Op::Binary(_) | Op::Reduce { .. } | Op::Dot | Op::Conv(_) | Op::Scatter { .. })
}

/// The dtype a value of `dtype` computes in: f32 for the 16-bit floats.
pub fn compute_dtype(dtype: DType) -> DType {
    if dtype.is_half() {
        DType::F32
    } else {
        dtype
    }
}

/// Whether `f` (bodies included) holds a 16-bit float anywhere.
pub fn uses_halves(f: &Func) -> bool {
    f.params.iter().any(|p| p.ty.dtype.is_half())
        || f.insts
            .iter()
            .any(|i| i.ty.dtype.is_half() || i.op.bodies().is_some_and(|b| b.funcs().iter().any(uses_halves)))
}

/// `f` with every computing op on 16-bit floats widened: its half operands converted to f32,
/// the op on f32, and a half result converted back; bodies of loops and conditionals alike.
/// A function without 16-bit floats comes back equal.
pub fn widened(f: &Func) -> Func {
    let mut out = Func { insts: vec![], results: vec![], ..f.clone() };
    let mut map: Vec<Value> = (0..f.params.len()).map(|p| Value(p as u32)).collect();
    for inst in &f.insts {
        let args: Vec<Value> = inst.args.iter().map(|a| map[a.index()]).collect();
        let halves = inst.ty.dtype.is_half() || args.iter().any(|&a| out.ty(a).dtype.is_half());
        let op = match inst.op.structure() {
            Some((bodies, result)) => {
                inst.op.restructured(Bodies::new(bodies.funcs().iter().map(widened).collect()), result)
            }
            None => inst.op.clone(),
        };
        let push = |out: &mut Func, op: Op, args: Vec<Value>| {
            out.push(op, args, inst.span).expect("widening keeps every op's operands valid")
        };
        let v = if halves && computes_in_f32(&op) {
            let wide: Vec<Value> = args
                .iter()
                .map(|&a| {
                    let d = out.ty(a).dtype;
                    if d.is_half() {
                        push(&mut out, Op::Convert { to: DType::F32 }, vec![a])
                    } else {
                        a
                    }
                })
                .collect();
            let r = push(&mut out, op, wide);
            if inst.ty.dtype.is_half() {
                push(&mut out, Op::Convert { to: inst.ty.dtype }, vec![r])
            } else {
                r
            }
        } else {
            push(&mut out, op, args)
        };
        map.push(v);
    }
    out.results = f.results.iter().map(|r| map[r.index()]).collect();
    out
}
