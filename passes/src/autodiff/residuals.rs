//! A loop body's vjp split in two, as JAX's partial evaluation splits a scan body's: a forward
//! part that computes the body's results and saves the residuals (the values its reverse needs
//! that do not depend on cotangents), run once per step going forward with the residuals
//! stacked, and a backward part that reads a step's residuals and cotangents and gives the
//! cotangents of the step's inputs, run once per step going back. Each step's forward work is
//! done once, where recomputing from saved carries (jax.checkpoint) does it twice more.
//!
//! Values that depend on no carry or row (constants, and values of the captured arrays alone,
//! such as a transposed weight) are the same at every step: they are recomputed in the
//! backward part rather than stacked. So are values that a step's rows give through shape
//! ops alone (a weight row broadcast over the batch and transposed, say): stacking one costs
//! writing it going forward and reading it going back, more than moving the row's elements
//! again, and the row is stacked already.

use crate::dce::dce_func;
use kiln_ir::ops::Bodies;
use kiln_ir::{Func, Inst, Op, OpClass, TensorType, Value};
use std::collections::BTreeMap;

/// A scan body `f` (carries `carries`, rows `rows`, then captured arrays) split for reverse
/// mode.
pub struct Split {
    /// (carries, rows, captured) -> (f's results, residuals...).
    pub forward: Func,
    /// (cotangents of the float carries, sums of those of the float captured arrays,
    /// residuals..., the rows read (`rows_read`), cotangents of the float ys, captured) ->
    /// (the cotangents of the float carries, the sums, the cotangents of the float rows).
    pub backward: Func,
    /// Which rows the backward part reads.
    pub rows_read: Vec<bool>,
    /// How many residuals the forward part saves.
    pub residuals: usize,
    /// The float carries, rows and captured arrays (parameter positions of the body), and
    /// the float ys (result positions): the ones that have cotangents.
    pub float_carries: Vec<usize>,
    pub float_rows: Vec<usize>,
    pub float_captured: Vec<usize>,
    pub float_ys: Vec<usize>,
}

/// How a value of the vjp relates to the steps and the cotangents: each kind depends on
/// values of its own kind or earlier ones only.
#[derive(Clone, Copy, PartialEq, PartialOrd)]
enum Kind {
    /// Depends on no parameter.
    Constant,
    /// Depends on captured arrays only: the same at every step, recomputed where needed.
    Invariant,
    /// Depends on the step's rows (and captured arrays) through shape ops only: recomputed
    /// going back from the rows.
    Row,
    /// Depends on the step's carries or rows, not on cotangents: computed going forward.
    Primal,
    /// Depends on a cotangent: computed going back.
    Linear,
}

impl Split {
    /// The split of `f`'s vjp; with `checkpoint`, the forward part saves only the carries
    /// entering the step, and the backward part recomputes every other value it needs from
    /// them and the rows.
    pub fn of(f: &Func, carries: usize, rows: usize, checkpoint: bool) -> Split {
        let np = f.params.len();
        let nr = f.results.len();
        // vjp: (f's parameters, cotangents of the float results) -> (f's results, cotangents
        // of the float parameters).
        let v = super::vjp(f, &f.name, None);
        // Checkpointed, what depends on a step's carries and rows is recomputed going back,
        // as what depends on the captured arrays alone always is.
        let (carry, row) = if checkpoint { (Kind::Invariant, Kind::Invariant) } else { (Kind::Primal, Kind::Row) };
        let mut kind: Vec<Kind> = (0..v.params.len())
            .map(|p| match p {
                _ if p < carries => carry,
                _ if p < carries + rows => row,
                _ if p < np => Kind::Invariant,
                _ => Kind::Linear,
            })
            .collect();
        for inst in &v.insts {
            let k =
                inst.args.iter().map(|a| kind[a.index()]).fold(Kind::Constant, |acc, k| if k > acc { k } else { acc });
            let moves = matches!(inst.op.class(), OpClass::Shape | OpClass::Source);
            kind.push(if k == Kind::Row && !moves { Kind::Primal } else { k });
        }
        // The values the backward part reads (those that cotangents' instructions and
        // results read, and the operands of the row values among them, last to first): the
        // primal ones are saved, the row values recomputed from the rows they read, and
        // rows and captured arrays the reverse scan passes itself.
        let mut needed = vec![false; v.num_values()];
        for inst in v.insts.iter().zip(&kind[v.params.len()..]).filter(|(_, &k)| k == Kind::Linear).map(|(i, _)| i) {
            for a in &inst.args {
                needed[a.index()] = true;
            }
        }
        for r in &v.results[nr..] {
            needed[r.index()] = true;
        }
        for (i, inst) in v.insts.iter().enumerate().rev() {
            let at = v.params.len() + i;
            if needed[at] && kind[at] == Kind::Row {
                for a in &inst.args {
                    needed[a.index()] = true;
                }
            }
        }
        // Checkpointed, the entering carries are saved and every row is read.
        let saved: Vec<Value> = (0..v.num_values())
            .filter(|&i| {
                if checkpoint {
                    i < carries
                } else {
                    needed[i] && kind[i] == Kind::Primal && !(carries..np).contains(&i)
                }
            })
            .map(|i| Value(i as u32))
            .collect();
        let mut rows_read: Vec<bool> = (carries..carries + rows).map(|p| checkpoint || needed[p]).collect();
        let float_results: Vec<usize> = (0..nr).filter(|&q| super::differentiable(f.ty(f.results[q]))).collect();
        // A scan runs over at least one array: the first rows, when nothing else is scanned.
        if saved.is_empty() && !rows_read.contains(&true) && !float_results.iter().any(|&q| q >= carries) {
            rows_read[0] = true;
        }

        // Forward: f's parameters, the primal and constant instructions.
        let mut forward = Func { insts: vec![], results: vec![], result_names: vec![], ..v.clone() };
        forward.params.truncate(np);
        let mut map: Vec<Option<Value>> =
            (0..np).map(|p| Some(Value(p as u32))).chain(vec![None; v.num_values() - np]).collect();
        copy(&v, &mut forward, &mut map, |at| kind[at] != Kind::Linear);
        let value = |map: &[Option<Value>], x: &Value| map[x.index()].expect("a forward value");
        forward.results = v.results[..nr].iter().chain(&saved).map(|x| value(&map, x)).collect();
        forward.result_names =
            f.result_names.iter().cloned().chain((0..saved.len()).map(|q| format!("res{q}"))).collect();
        dce_func(&mut forward);

        // Backward: the parameters in the reverse scan's order, the linear and constant
        // instructions.
        let mut backward = Func::new(format!("{}_back", f.name), f.span);
        let param = |b: &mut Func, name: String, ty: &TensorType| b.add_param(name, ty.clone(), Default::default());
        let floats = |range: std::ops::Range<usize>| -> Vec<usize> {
            range.filter(|&p| super::differentiable(&f.params[p].ty)).collect()
        };
        let (fc, fx, fw) = (floats(0..carries), floats(carries..carries + rows), floats(carries + rows..np));
        let mut map: Vec<Option<Value>> = vec![None; v.num_values()];
        // The cotangent parameters of the vjp, in order: the float carries', then the float ys'.
        let ct_of = |q: usize| np + float_results.iter().position(|&r| r == q).expect("a float result");
        for &p in &fc {
            map[ct_of(p)] = Some(param(&mut backward, format!("ct{p}"), &f.params[p].ty));
        }
        let sums: Vec<Value> = fw.iter().map(|&p| param(&mut backward, format!("sum{p}"), &f.params[p].ty)).collect();
        for (q, &s) in saved.iter().enumerate() {
            map[s.index()] = Some(param(&mut backward, format!("res{q}"), v.ty(s)));
        }
        for p in (carries..carries + rows).filter(|&p| rows_read[p - carries]) {
            map[p] = Some(param(&mut backward, format!("r{p}"), &f.params[p].ty));
        }
        for &q in float_results.iter().filter(|&&q| q >= carries) {
            map[ct_of(q)] = Some(param(&mut backward, format!("gy{q}"), f.ty(f.results[q])));
        }
        for (p, slot) in map.iter_mut().enumerate().take(np).skip(carries + rows) {
            *slot = Some(param(&mut backward, format!("w{p}"), &f.params[p].ty));
        }
        copy(&v, &mut backward, &mut map, |at| match kind[at] {
            Kind::Primal => false,
            Kind::Row => needed[at],
            _ => true,
        });
        let cts: Vec<Value> = v.results[nr..].iter().map(|x| map[x.index()].expect("a backward value")).collect();
        let row_cts = &cts[fc.len()..cts.len() - fw.len()];
        let mut results = cts[..fc.len()].to_vec();
        for (&sum, &ct) in sums.iter().zip(&cts[cts.len() - fw.len()..]) {
            let add = kiln_ir::Op::Binary(kiln_ir::BinaryOp::Add);
            results.push(backward.push(add, vec![sum, ct], Default::default()).expect("same types"));
        }
        results.extend(row_cts);
        backward.result_names = (0..results.len()).map(|q| format!("r{q}")).collect();
        backward.results = results;
        dce_func(&mut backward);
        let float_ys = float_results.into_iter().filter(|&q| q >= carries).collect();
        Split {
            forward,
            backward,
            rows_read,
            residuals: saved.len(),
            float_carries: fc,
            float_rows: fx,
            float_captured: fw,
            float_ys,
        }
    }
}

/// Copies the instructions of `v` whose values `keep` selects into `to`, their operands
/// mapped by `map` (which records the copies); an instruction whose value is already mapped
/// (a saved residual) is not copied.
fn copy(v: &Func, to: &mut Func, map: &mut [Option<Value>], keep: impl Fn(usize) -> bool) {
    for (i, inst) in v.insts.iter().enumerate() {
        let at = v.params.len() + i;
        if !keep(at) || map[at].is_some() {
            continue;
        }
        let args =
            inst.args.iter().map(|a| map[a.index()].expect("operands come first, saved or recomputed")).collect();
        to.insts.push(Inst { args, ..inst.clone() });
        map[at] = Some(Value((to.num_values() - 1) as u32));
    }
}

/// Runs each scan of `f` once where a later scan over the same operands extends it (its first
/// results are the scan's, computed by the same instructions), as the forward part of a
/// scan's vjp extends the primal scan: the later scan takes the earlier one's place, and the
/// earlier one's results are its first ones.
pub fn share_forward_scans(f: &mut Func) {
    let key = |op: &Op, args: &[Value]| op.group().map(|group| (group, args.to_vec()));
    let mut groups: Vec<(Op, Vec<Value>)> = vec![];
    for inst in &f.insts {
        if let Some(k) = key(&inst.op, &inst.args).filter(|(op, _)| matches!(op, Op::Scan { .. })) {
            if !groups.contains(&k) {
                groups.push(k);
            }
        }
    }
    // Each scan extended by a later one: the later one, by the earlier one's key.
    let mut extended: BTreeMap<(Op, Vec<Value>), (Op, Vec<Value>)> = BTreeMap::new();
    for (i, (a, args)) in groups.iter().enumerate() {
        let Op::Scan { body: fa, .. } = a else { continue };
        let fa = &fa.funcs()[0];
        let later = groups[i + 1..].iter().find(|(b, b_args)| {
            let Op::Scan { body: fb, .. } = b else { return false };
            let fb = &fb.funcs()[0];
            b_args == args && same_control(a, b) && fb.results.len() > fa.results.len() && extends(fb, fa)
        });
        if let Some(b) = later {
            extended.insert((a.clone(), args.clone()), b.clone());
        }
    }
    if extended.is_empty() {
        return;
    }
    let np = f.params.len();
    let mut map: Vec<Value> = (0..np).map(|p| Value(p as u32)).collect();
    let mut emitted: BTreeMap<(Op, Vec<Value>, usize), Value> = BTreeMap::new();
    let insts = std::mem::take(&mut f.insts);
    for inst in insts {
        let args: Vec<Value> = inst.args.iter().map(|a| map[a.index()]).collect();
        let (op, result) = match (key(&inst.op, &inst.args), inst.op.structure()) {
            (Some(k), Some((_, r))) => match extended.get(&k) {
                Some((b, _)) => (b.clone(), r),
                None => (k.0, r),
            },
            _ => {
                f.insts.push(Inst { args, ..inst });
                map.push(Value((f.num_values() - 1) as u32));
                continue;
            }
        };
        let id = (op.clone(), args.clone(), result);
        let v = match emitted.get(&id) {
            Some(&v) => v,
            None => {
                let bodies = op.bodies().expect("a scan").clone();
                f.push(op.restructured(bodies, result), args, inst.span).expect("the same operands")
            }
        };
        emitted.insert(id, v);
        map.push(v);
    }
    f.results = f.results.iter().map(|r| map[r.index()]).collect();
    dce_func(f);
}

/// Whether two scans run alike: the same carries, arrays and direction.
fn same_control(a: &Op, b: &Op) -> bool {
    matches!((a, b), (Op::Scan { carries: c, scanned: s, reverse: r, .. }, Op::Scan { carries: c2, scanned: s2, reverse: r2, .. })
        if (c, s, r) == (c2, s2, r2))
}

/// Whether `longer` computes `shorter`'s results first, with the same instructions.
fn extends(longer: &Func, shorter: &Func) -> bool {
    let mut prefix = longer.with_results(&(0..shorter.results.len()).collect::<Vec<_>>());
    let mut shorter = shorter.clone();
    dce_func(&mut prefix);
    dce_func(&mut shorter);
    Bodies::new(vec![prefix]) == Bodies::new(vec![shorter])
}
