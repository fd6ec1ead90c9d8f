//! Loop-invariant code motion: the instructions of a loop body (a counted loop's, a while
//! loop's, a scan's) that depend on the arrays the loop reads unchanged (its captured
//! operands) and on nothing that changes between steps run once, before the loop, and reach
//! the body as new captured operands. A weight transposed in every step of a scan's reverse,
//! or a product of two captured arrays, is computed once.
//!
//! Captured operands that no body reads any more are dropped. Broadcasts stay in the body: inside, they fuse into their consumers; hoisted, they would be
//! materialized arrays. Conditionals keep their branches whole (a branch's work runs only when
//! it is taken). Bodies are processed innermost first, so an invariant moves out of several
//! loops in turn.

use crate::dce::dce_func;
use kiln_ir::ops::Bodies;
use kiln_ir::{Func, Module, Op, Span, Value};
use std::collections::BTreeMap;

pub fn run(module: &mut Module) {
    for f in &mut module.funcs {
        hoist(f);
    }
}

/// Moves the invariants of the loops of `f` (and of the loops in their bodies) out.
fn hoist(f: &mut Func) {
    if !f.insts.iter().any(|i| i.op.bodies().is_some()) {
        return;
    }
    let insts = std::mem::take(&mut f.insts);
    let mut map: Vec<Value> = (0..f.params.len()).map(|p| Value(p as u32)).collect();
    // The rewritten op (at result 0) and operands of each loop, by its original op and operands.
    let mut moved: BTreeMap<(Op, Vec<Value>), (Op, Vec<Value>)> = BTreeMap::new();
    for inst in insts {
        let args: Vec<Value> = inst.args.iter().map(|a| map[a.index()]).collect();
        let v = match (inst.op.group(), inst.op.structure()) {
            (Some(group), Some((_, result))) => {
                let key = (group, args.clone());
                if !moved.contains_key(&key) {
                    let rewritten = hoisted(f, &key.0, &args, inst.span);
                    moved.insert(key.clone(), rewritten);
                }
                let (op, operands) = &moved[&key];
                let bodies = op.bodies().expect("an op with bodies").clone();
                f.push(op.restructured(bodies, result), operands.clone(), inst.span).expect("the same types")
            }
            _ => f.push(inst.op, args, inst.span).expect("the same types"),
        };
        map.push(v);
    }
    f.results = f.results.iter().map(|r| map[r.index()]).collect();
    dce_func(f);
}

/// The loop `op` (taking result 0) with operands `args`, its bodies' own loops rewritten and
/// its invariants computed in `f` before it: the new op and operands.
fn hoisted(f: &mut Func, op: &Op, args: &[Value], span: Span) -> (Op, Vec<Value>) {
    let bodies = op
        .bodies()
        .expect("an op with bodies")
        .map(|g| {
            let mut g = g.clone();
            hoist(&mut g);
            Ok::<_, ()>(g)
        })
        .expect("infallible");
    // The first captured parameter, and the operand of each parameter from it on.
    let (first, offset) = match op {
        Op::Loop { body, .. } => (1 + body.funcs()[0].results.len(), 1),
        Op::While { bodies, .. } => (bodies.funcs()[1].results.len(), 0),
        Op::Scan { carries, scanned, .. } => (carries + scanned, 0),
        _ => return (op.restructured(bodies, 0), args.to_vec()),
    };
    let mut operands = args.to_vec();
    let mut frontiers = vec![];
    for g in bodies.funcs() {
        let (values, frontier) = invariants(g, first);
        // Outside: the invariant instructions, their captured parameters bound to the operands.
        let mut outside: Vec<Option<Value>> = vec![None; g.num_values()];
        for p in first..g.params.len() {
            outside[p] = Some(args[p + offset]);
        }
        for (i, inst) in g.insts.iter().enumerate() {
            let at = g.params.len() + i;
            if values[at] {
                let a = inst.args.iter().map(|a| outside[a.index()].expect("an invariant's operands are")).collect();
                outside[at] = Some(f.push(inst.op.clone(), a, span).expect("the same types"));
            }
        }
        operands.extend(frontier.iter().map(|v| outside[v.index()].expect("an invariant")));
        frontiers.push(frontier);
    }
    if frontiers.iter().all(Vec::is_empty) {
        return pruned(op.restructured(bodies, 0), args.to_vec(), first, offset);
    }
    // Inside: every body takes all the hoisted values as new captured parameters.
    let all: Vec<(usize, Value)> =
        frontiers.iter().enumerate().flat_map(|(k, fr)| fr.iter().map(move |&v| (k, v))).collect();
    let rewritten = bodies
        .funcs()
        .iter()
        .enumerate()
        .map(|(k, g)| {
            let mut out = Func { insts: vec![], ..g.clone() };
            let added: Vec<Value> = all
                .iter()
                .enumerate()
                .map(|(q, &(from, v))| {
                    let ty = bodies.funcs()[from].ty(v).clone();
                    out.add_param(format!("hoisted{q}"), ty, Span::default())
                })
                .collect();
            let mut map: Vec<Value> = (0..g.params.len()).map(|p| Value(p as u32)).collect();
            for (i, inst) in g.insts.iter().enumerate() {
                let at = Value((g.params.len() + i) as u32);
                let hoisted = all.iter().position(|&(from, v)| from == k && v == at);
                let v = match hoisted {
                    Some(q) => added[q],
                    None => {
                        let a = inst.args.iter().map(|a| map[a.index()]).collect();
                        out.push(inst.op.clone(), a, inst.span).expect("the same types")
                    }
                };
                map.push(v);
            }
            out.results = g.results.iter().map(|r| map[r.index()]).collect();
            dce_func(&mut out);
            Ok::<_, ()>(out)
        })
        .collect::<Result<Vec<_>, _>>()
        .expect("infallible");
    pruned(op.restructured(Bodies::new(rewritten), 0), operands, first, offset)
}

/// The loop `op` without the captured parameters (from `first` on, parameter p passed as
/// operand p + `offset`) that none of its bodies reads, nor their operands.
fn pruned(op: Op, operands: Vec<Value>, first: usize, offset: usize) -> (Op, Vec<Value>) {
    let bodies = op.bodies().expect("an op with bodies");
    let params = bodies.funcs()[0].params.len();
    let keep: Vec<bool> =
        (0..params).map(|p| p < first || bodies.funcs().iter().any(|g| g.reads(Value(p as u32)))).collect();
    if keep.iter().all(|&k| k) {
        return (op, operands);
    }
    let bodies = bodies.map(|g| Ok::<_, ()>(g.keep_params(&keep))).expect("infallible");
    let operands =
        operands.into_iter().enumerate().filter(|&(i, _)| i < offset || keep[i - offset]).map(|(_, v)| v).collect();
    (op.restructured(bodies, 0), operands)
}

/// The values of `g` that depend on its captured parameters (from `first` on) and on no other
/// parameter, and of those the ones to hoist: not broadcasts, read by an instruction that
/// stays or by a result.
fn invariants(g: &Func, first: usize) -> (Vec<bool>, Vec<Value>) {
    let np = g.params.len();
    // Per value: depends on a captured parameter, depends on another parameter.
    let mut captured: Vec<bool> = (0..np).map(|p| p >= first).collect();
    let mut varies: Vec<bool> = (0..np).map(|p| p < first).collect();
    for inst in &g.insts {
        captured.push(inst.args.iter().any(|a| captured[a.index()]));
        varies.push(inst.args.iter().any(|a| varies[a.index()]));
    }
    let invariant: Vec<bool> = (0..g.num_values()).map(|v| v >= np && captured[v] && !varies[v]).collect();
    let movable = |v: usize| invariant[v] && !matches!(g.insts[v - np].op, Op::Broadcast { .. });
    let mut frontier = vec![];
    let add = |v: Value, frontier: &mut Vec<Value>| {
        if movable(v.index()) && !frontier.contains(&v) {
            frontier.push(v);
        }
    };
    for (i, inst) in g.insts.iter().enumerate() {
        if !movable(np + i) {
            for &a in &inst.args {
                add(a, &mut frontier);
            }
        }
    }
    for &r in &g.results {
        add(r, &mut frontier);
    }
    frontier.sort();
    // What the outside computes: the invariants, and the constants they read.
    let mut needed = invariant.clone();
    for (i, inst) in g.insts.iter().enumerate().rev() {
        if needed[np + i] {
            for a in &inst.args {
                if a.index() >= np {
                    needed[a.index()] = true;
                }
            }
        }
    }
    (needed, frontier)
}
