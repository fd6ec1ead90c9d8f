//! Static statistics of a function: op counts and floating-point operations, from shapes.
//!
//! FLOPs: one per output element of an elementwise op (a transcendental counts as one), one per
//! input element of a reduction, 2·m·n·k per batch element of `dot`, 2·KH·KW·C per result element of `conv2d`; constants, iota, converts
//! and shape ops count none. An op with bodies counts once for all its results: a scan its
//! body's times its rows, a counted loop with constant bounds its body's times its trips (one
//! run when the count is known only at run time, as a while loop), a conditional its costlier
//! branch.

use kiln_ir::{Func, Op, OpClass, Value};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Instructions per op name, sorted by name.
    pub ops: BTreeMap<&'static str, usize>,
    pub instructions: usize,
    pub flops: u64,
}

/// The floating-point operations of one instruction with operand types `args` and result `ty`.
pub fn flops(op: &Op, args: &[&kiln_ir::TensorType], ty: &kiln_ir::TensorType) -> u64 {
    match op.class() {
        OpClass::Elementwise if !matches!(op, Op::Convert { .. }) => ty.num_elements() as u64,
        OpClass::Reduction => args[0].num_elements() as u64,
        // Products summed per result element: k for dot, every tap of every channel for conv2d.
        OpClass::Contraction => {
            let k = match op {
                Op::Conv(_) => args[1].shape[..3].iter().product::<usize>(),
                _ => args[0].shape[args[0].rank() - 1],
            };
            2 * ty.num_elements() as u64 * k as u64
        }
        _ => 0,
    }
}

pub fn func_stats(f: &Func) -> Stats {
    let mut s = Stats::default();
    let mut counted = BTreeSet::new();
    for inst in &f.insts {
        *s.ops.entry(inst.op.name()).or_default() += 1;
        s.instructions += 1;
        let args: Vec<&kiln_ir::TensorType> = inst.args.iter().map(|&a| f.ty(a)).collect();
        s.flops += match inst.op.group() {
            Some(group) if counted.insert((group.clone(), inst.args.clone())) => {
                structured_flops(f, &inst.op, &inst.args)
            }
            Some(_) => 0,
            None => flops(&inst.op, &args, &inst.ty),
        };
    }
    s
}

/// The FLOPs of an op with bodies (all its results), as the module documentation says.
fn structured_flops(f: &Func, op: &Op, args: &[Value]) -> u64 {
    let body = |g: &Func| func_stats(g).flops;
    let constant = |v: Value| match f.inst(v).map(|i| &i.op) {
        Some(Op::Const(l)) => Some(l.as_f64() as i64),
        _ => None,
    };
    match op {
        Op::Scan { body: b, carries, .. } => f.ty(args[*carries]).shape[0] as u64 * body(&b.funcs()[0]),
        Op::Loop { body: b, .. } => {
            let trips = constant(args[0]).zip(constant(args[1])).map_or(1, |(lo, hi)| (hi - lo).max(0) as u64);
            trips * body(&b.funcs()[0])
        }
        Op::While { bodies, .. } => body(&bodies.funcs()[1]),
        _ => op.bodies().map_or(0, |b| b.funcs().iter().map(body).max().unwrap_or(0)),
    }
}

/// A text report: one block per function.
pub fn report(module: &kiln_ir::Module) -> String {
    let mut out = String::new();
    for f in &module.funcs {
        let s = func_stats(f);
        out.push_str(&format!("{}: {} instructions, {} flops\n", f.name, s.instructions, s.flops));
        for (name, n) in &s.ops {
            out.push_str(&format!("  {name:<12} {n}\n"));
        }
    }
    out
}
