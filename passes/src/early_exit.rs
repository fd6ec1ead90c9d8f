//! Early exit for bounded while loops. `loop x = x0 while c max_iter n { f }` is elaborated as
//! a counted loop of n runs whose body is guarded, `if c(x) { f(x) } else { x }`, so that
//! reverse mode sees a loop of known length (passes/src/autodiff). Run forward, such a loop
//! keeps stepping through guarded runs after the condition fails: n reads of the condition,
//! where the loop needed a few. Once the condition fails the carries stop changing, and the
//! condition reads nothing else that changes (not the index), so every later run is a no-op
//! too: the loop is a while loop with a counter,
//!
//!   loop(lo, hi, x0, xs) { i, x => if c(x, xs) { f(x, xs) } else { x } }
//!     = while (k, x) = (lo, x0) { k < hi && c(x, xs) } { (k + 1, f(x, xs)) }
//!
//! which is what this step makes of every counted loop of that shape (nested ones included),
//! after differentiation has used the counted form.

use crate::dce::dce_func;
use kiln_ir::ops::Bodies;
use kiln_ir::{BinaryOp, Func, Literal, Module, Op, Span, TensorType, Value};

pub fn run(module: &mut Module) {
    for f in &mut module.funcs {
        rewrite(f);
    }
}

/// Rewrites the guarded counted loops of `f` and of the bodies of its ops.
fn rewrite(f: &mut Func) {
    if !f.insts.iter().any(|i| i.op.bodies().is_some()) {
        return;
    }
    let insts = std::mem::take(&mut f.insts);
    let mut map: Vec<Value> = (0..f.params.len()).map(|p| Value(p as u32)).collect();
    for inst in insts {
        let args: Vec<Value> = inst.args.iter().map(|a| map[a.index()]).collect();
        let op = match inst.op.structure() {
            Some((bodies, result)) => {
                let inner = bodies
                    .funcs()
                    .iter()
                    .map(|g| {
                        let mut g = g.clone();
                        rewrite(&mut g);
                        g
                    })
                    .collect();
                inst.op.restructured(Bodies::new(inner), result)
            }
            None => inst.op,
        };
        let v = match &op {
            Op::Loop { body, result, .. } => match guarded(&body.funcs()[0]) {
                Some(guard) => {
                    let bound = f.ty(args[1]).clone();
                    let bodies = while_bodies(&guard, &body.funcs()[0], &bound);
                    // Operands: the counter from lo, the carries, the captured arrays, hi.
                    let operands = std::iter::once(args[0]).chain(args[2..].iter().copied()).chain([args[1]]).collect();
                    f.push(Op::While { bodies, result: result + 1 }, operands, inst.span).expect("the same types")
                }
                None => f.push(op, args, inst.span).expect("the same types"),
            },
            _ => f.push(op, args, inst.span).expect("the same types"),
        };
        map.push(v);
    }
    f.results = f.results.iter().map(|r| map[r.index()]).collect();
    dce_func(f);
}

/// A guarded body's parts: the condition's value in it, and the branch that steps.
struct Guard {
    go: Value,
    step: Func,
}

/// The guard of a counted loop's body `g` (parameters: index, carries, captured arrays), when
/// it has the shape `if c { step } else { carries }` on every carry, the condition and the
/// step reading the carries and captured arrays as they are and never the index.
fn guarded(g: &Func) -> Option<Guard> {
    let carries = g.results.len();
    if carries == 0 || g.reads(Value(0)) {
        return None;
    }
    let first = g.insts.iter().position(|i| matches!(i.op, Op::Cond { .. }))?;
    let (branches, args) = (&g.insts[first].op, &g.insts[first].args);
    let Op::Cond { branches, .. } = branches else { return None };
    let [step, keep] = branches.funcs() else { return None };
    // Operands: the condition, then every parameter but the index, in order.
    let passes_params = args.len() == g.params.len() && args[1..].iter().enumerate().all(|(p, v)| v.index() == p + 1);
    let identity = keep.insts.is_empty() && keep.results.iter().enumerate().all(|(k, v)| v.index() == k);
    let every_carry = g.results.iter().enumerate().all(|(k, r)| {
        let at = r.index().checked_sub(g.params.len());
        at.and_then(|i| g.insts.get(i))
            .is_some_and(|inst| inst.op == Op::Cond { branches: branches.clone(), result: k } && inst.args == *args)
    });
    (passes_params && identity && every_carry).then(|| Guard { go: args[0], step: step.clone() })
}

/// The condition and body of the while loop that replaces a guarded counted loop with body
/// `g` and bounds of type `bound`: parameters (counter, carries, captured arrays, hi).
fn while_bodies(guard: &Guard, g: &Func, bound: &TensorType) -> Bodies {
    let span = Span::default();
    let params = |name: &str| {
        let mut h = Func::new(name, span);
        let k = h.add_param("k", bound.clone(), span);
        let rest: Vec<Value> = g.params[1..].iter().map(|p| h.add_param(p.name.clone(), p.ty.clone(), span)).collect();
        let hi = h.add_param("hi", bound.clone(), span);
        (h, k, rest, hi)
    };
    // k < hi && c(carries, xs), the condition computed as in the guarded body.
    let (mut cond, k, rest, hi) = params("cond");
    let mut predicate = g.clone();
    predicate.results = vec![guard.go];
    predicate.result_names = vec!["go".into()];
    let args: Vec<Value> = std::iter::once(k).chain(rest.iter().copied()).collect();
    let go = cond.inline(&predicate, &args, span).expect("the body's parameters")[0];
    let below = cond.push(Op::Binary(BinaryOp::Lt), vec![k, hi], span).expect("integer bounds");
    let no = cond.push(Op::Const(Literal::Bool(false)), vec![], span).expect("a constant");
    let both = cond.push(Op::Select, vec![below, go, no], span).expect("scalar bools");
    cond.results = vec![both];
    cond.result_names = vec!["go".into()];
    dce_func(&mut cond);
    // (k + 1, step(carries, xs)).
    let (mut body, k, rest, _) = params("body");
    let next = body.inline(&guard.step, &rest, span).expect("the step's parameters");
    let one = body.push(Op::Const(Literal::Int(bound.dtype, 1)), vec![], span).expect("a constant");
    let counted = body.push(Op::Binary(BinaryOp::Add), vec![k, one], span).expect("integer bounds");
    body.results = std::iter::once(counted).chain(next).collect();
    body.result_names = std::iter::once("k".to_string()).chain(guard.step.result_names.iter().cloned()).collect();
    Bodies::new(vec![cond, body])
}
