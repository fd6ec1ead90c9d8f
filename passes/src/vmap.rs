//! Batching as an IR-to-IR transformation: `vmap(f, in_axes, out_axes)` maps `f` over one
//! axis of some of its parameters (jax.vmap).
//!
//! Every value of the batched function is either batched, its first axis the batch (of
//! `size` elements), or shared by the whole batch. A parameter mapped along another axis is
//! transposed to put the batch first; a value that only shared values compute stays shared,
//! so constants and computations on unmapped parameters are not repeated. Each op has a
//! batching rule ([`Batcher::rule`]) that computes the batched result from batched operands
//! in one op of a higher rank: an elementwise op broadcasts its shared operands, a reduction
//! or a shape op shifts its axes past the batch, a product batches its rows or its leading
//! axes, a loop or a scan batches its body (the carries that a batched value reaches are
//! batched), a conditional on a shared predicate batches its branches, and one on a
//! batched predicate runs both branches and selects per element (which the caller reports).
//! What has no batched form yet (a window at batched starts, a convolution with a batched
//! kernel, a loop with batched bounds or condition) runs once per batch element, as a scan
//! over the batch (jax.lax.map), and is reported the same way.

use kiln_ir::ops::Bodies;
use kiln_ir::{Func, Literal, Op, Span, TensorType, Value};
use std::collections::BTreeMap;

/// A batched function, and notes on the parts that run other than as one batched op.
pub struct Vmapped {
    pub func: Func,
    pub notes: Vec<String>,
}

/// `f` mapped over axis `in_axes[p]` of each parameter p that has one (the others shared), with
/// `size` elements, its results stacked along axis `out_axes[r]` (jax.vmap). Errors are
/// lowercase reasons: an axis out of range, lists of the wrong length, a batch too large.
pub fn vmap(
    f: &Func,
    name: &str,
    in_axes: &[Option<usize>],
    out_axes: &[usize],
    size: usize,
) -> Result<Vmapped, String> {
    if in_axes.len() != f.params.len() || out_axes.len() != f.results.len() {
        return Err(format!(
            "`in_axes` needs one entry per parameter ({}) and `out_axes` one per result ({})",
            f.params.len(),
            f.results.len()
        ));
    }
    if in_axes.iter().all(Option::is_none) {
        return Err("`in_axes` maps no parameter".into());
    }
    let mut b = Batcher { func: Func::new(name, f.span), size, notes: vec![] };
    let mut values = vec![];
    for (p, axis) in f.params.iter().zip(in_axes) {
        let ty = match *axis {
            Some(axis) if axis > p.ty.rank() => {
                return Err(format!("`{}` is {}, which has no axis {axis} to map over", p.name, p.ty));
            }
            Some(axis) => TensorType::new(p.ty.dtype, insert(&p.ty.shape, axis, size)),
            None => p.ty.clone(),
        };
        kiln_ir::types::check_shape(&ty.shape)?;
        values.push(b.func.add_param(p.name.clone(), ty, p.span));
    }
    let mut params = vec![];
    for (v, axis) in values.into_iter().zip(in_axes) {
        let value = match *axis {
            Some(axis) => b.move_axis(v, axis, 0)?,
            None => v,
        };
        params.push(Batched { value, batched: axis.is_some() });
    }
    let results = b.body(f, &params)?;
    for ((r, &axis), name) in results.into_iter().zip(out_axes).zip(&f.result_names) {
        let v = b.batch(r)?;
        if axis >= b.func.ty(v).rank() {
            return Err(format!("result `{name}` has no axis {axis} to stack along"));
        }
        let v = b.move_axis(v, 0, axis)?;
        b.func.results.push(v);
        b.func.result_names.push(name.clone());
    }
    Ok(Vmapped { func: b.func, notes: b.notes })
}

/// `shape` with `n` inserted at `axis`.
fn insert(shape: &[usize], axis: usize, n: usize) -> Vec<usize> {
    let mut s = shape.to_vec();
    s.insert(axis, n);
    s
}

/// A value of the batched function: batched (first axis the batch) or shared.
#[derive(Clone, Copy, Debug)]
struct Batched {
    value: Value,
    batched: bool,
}

/// Builds a batched function.
struct Batcher {
    func: Func,
    size: usize,
    notes: Vec<String>,
}

impl Batcher {
    fn push(&mut self, op: Op, args: Vec<Value>) -> Result<Value, String> {
        self.func.push(op, args, Span::default())
    }

    fn ty(&self, v: Value) -> &TensorType {
        self.func.ty(v)
    }

    /// The batch size followed by `shape`.
    fn front(&self, shape: &[usize]) -> Vec<usize> {
        insert(shape, 0, self.size)
    }

    /// `v` batched: itself, or a shared value repeated along a new first axis.
    fn batch(&mut self, v: Batched) -> Result<Value, String> {
        if v.batched {
            return Ok(v.value);
        }
        let rank = self.ty(v.value).rank();
        let shape = self.front(&self.ty(v.value).shape.clone());
        self.push(Op::Broadcast { shape, dims: (1..=rank).collect() }, vec![v.value])
    }

    /// `v` with its axis `from` moved to position `to`, the others in order.
    fn move_axis(&mut self, v: Value, from: usize, to: usize) -> Result<Value, String> {
        if from == to {
            return Ok(v);
        }
        let mut perm: Vec<usize> = (0..self.ty(v).rank()).filter(|&d| d != from).collect();
        perm.insert(to, from);
        self.push(Op::Transpose { perm }, vec![v])
    }

    /// `f`'s instructions batched, its parameters bound to `params`; returns its results. The
    /// instructions of one op with bodies (one per result) are batched once, together.
    fn body(&mut self, f: &Func, params: &[Batched]) -> Result<Vec<Batched>, String> {
        let mut map: Vec<Batched> = params.to_vec();
        let mut groups: BTreeMap<(Op, Vec<Value>), Vec<Batched>> = BTreeMap::new();
        for inst in &f.insts {
            let args: Vec<Batched> = inst.args.iter().map(|a| map[a.index()]).collect();
            let v = if !args.iter().any(|a| a.batched) {
                let values = args.iter().map(|a| a.value).collect();
                Batched { value: self.push(inst.op.clone(), values)?, batched: false }
            } else if let (Some(group), Some((_, result))) = (inst.op.group(), inst.op.structure()) {
                let key = (group, args.iter().map(|a| a.value).collect());
                if !groups.contains_key(&key) {
                    let results = self.structured(&key.0, &args)?;
                    groups.insert(key.clone(), results);
                }
                groups[&key][result]
            } else {
                Batched { value: self.rule(&inst.op, &args)?, batched: true }
            };
            map.push(v);
        }
        Ok(f.results.iter().map(|r| map[r.index()]).collect())
    }

    /// The batched result of `op` (without bodies) on `args`, some of them batched.
    fn rule(&mut self, op: &Op, args: &[Batched]) -> Result<Value, String> {
        let shift = |axes: &[usize]| -> Vec<usize> { axes.iter().map(|a| a + 1).collect() };
        let all = |this: &mut Self| args.iter().map(|&a| this.batch(a)).collect::<Result<Vec<_>, _>>();
        let shared_starts = |from: usize| args[from..].iter().all(|s| !s.batched);
        match op {
            // Elementwise: shared operands are repeated (then fused away).
            Op::Unary(_) | Op::Convert { .. } | Op::Bitcast { .. } | Op::Binary(_) | Op::Select => {
                let operands = all(self)?;
                self.push(op.clone(), operands)
            }
            Op::Reduce { kind, axes } => self.push(Op::Reduce { kind: *kind, axes: shift(axes) }, vec![args[0].value]),
            // Rows along the last axis: the batch axis in front is one more row index.
            Op::Argsort { .. } => self.push(op.clone(), vec![args[0].value]),
            // [B, m, k] @ [k, n] as one product of B·m rows; otherwise batched products over
            // the leading axes.
            Op::Dot if args[0].batched && !args[1].batched && self.ty(args[1].value).rank() == 2 => {
                let (a, w) = (args[0].value, args[1].value);
                let (m, k, n) = (self.ty(a).shape[1], self.ty(a).shape[2], self.ty(w).shape[1]);
                let rows = self.push(Op::Reshape { shape: vec![self.size * m, k] }, vec![a])?;
                let product = self.push(Op::Dot, vec![rows, w])?;
                self.push(Op::Reshape { shape: vec![self.size, m, n] }, vec![product])
            }
            Op::Dot => {
                let operands = all(self)?;
                self.push(Op::Dot, operands)
            }
            // Images of all batch elements in one convolution: [B, N, ...] as [B·N, ...].
            Op::Conv(_) if !args[1].batched => {
                let x = args[0].value;
                let shape = self.ty(x).shape.clone();
                let images = self.push(Op::Reshape { shape: insert(&shape[2..], 0, shape[0] * shape[1]) }, vec![x])?;
                let y = self.push(op.clone(), vec![images, args[1].value])?;
                let out = self.ty(y).shape[1..].to_vec();
                self.push(Op::Reshape { shape: insert(&insert(&out, 0, shape[1]), 0, self.size) }, vec![y])
            }
            Op::Reshape { shape } => self.push(Op::Reshape { shape: self.front(shape) }, vec![args[0].value]),
            Op::Transpose { perm } => {
                let perm = std::iter::once(0).chain(shift(perm)).collect();
                self.push(Op::Transpose { perm }, vec![args[0].value])
            }
            Op::Broadcast { shape, dims } => {
                let dims = std::iter::once(0).chain(shift(dims)).collect();
                self.push(Op::Broadcast { shape: self.front(shape), dims }, vec![args[0].value])
            }
            Op::Slice { start, step, shape } => {
                let op = Op::Slice {
                    start: insert(start, 0, 0),
                    step: [1].into_iter().chain(step.clone()).collect(),
                    shape: self.front(shape),
                };
                self.push(op, vec![args[0].value])
            }
            Op::Concat { axis } => {
                let operands = all(self)?;
                self.push(Op::Concat { axis: axis + 1 }, operands)
            }
            // A window at shared starts: the same window of every element.
            Op::DynamicSlice { sizes } if shared_starts(1) => {
                let mut operands = vec![args[0].value];
                operands.extend(self.batch_starts(&args[1..])?);
                self.push(Op::DynamicSlice { sizes: self.front(sizes) }, operands)
            }
            Op::DynamicUpdateSlice if shared_starts(2) => {
                let mut operands = vec![self.batch(args[0])?, self.batch(args[1])?];
                operands.extend(self.batch_starts(&args[2..])?);
                self.push(Op::DynamicUpdateSlice, operands)
            }
            // Shared indices: the same slices of every element, one axis further in.
            Op::Gather { axis } if !args[1].batched => {
                self.push(Op::Gather { axis: axis + 1 }, vec![args[0].value, args[1].value])
            }
            Op::Scatter { axis, kind } if !args[1].batched => {
                let (x, u) = (self.batch(args[0])?, self.batch(args[2])?);
                self.push(Op::Scatter { axis: axis + 1, kind: *kind }, vec![x, args[1].value, u])
            }
            _ => Ok(self.per_element(op, args)?[0].value),
        }
    }

    /// Shared starts of a window, with a zero start for the batch axis first.
    fn batch_starts(&mut self, starts: &[Batched]) -> Result<Vec<Value>, String> {
        let dtype = starts.first().map_or(kiln_ir::DType::I64, |s| self.ty(s.value).dtype);
        let zero = self.push(Op::Const(Literal::Int(dtype, 0)), vec![])?;
        Ok(std::iter::once(zero).chain(starts.iter().map(|s| s.value)).collect())
    }

    /// The batched results of the op with bodies `op` (taking result 0) on `args`.
    fn structured(&mut self, op: &Op, args: &[Batched]) -> Result<Vec<Batched>, String> {
        let batched: Vec<bool> = args.iter().map(|a| a.batched).collect();
        match op {
            // A shared predicate: both branches batched alike, one conditional.
            Op::Cond { branches, .. } if !args[0].batched => {
                let [then, otherwise] = branches.funcs() else { unreachable!("the type rule checks two branches") };
                let (_, a) = self.batched_body(then, &batched[1..], &[])?;
                let (_, b) = self.batched_body(otherwise, &batched[1..], &[])?;
                let out: Vec<bool> = a.iter().zip(&b).map(|(x, y)| x | y).collect();
                let (then, _) = self.batched_body(then, &batched[1..], &out)?;
                let (otherwise, _) = self.batched_body(otherwise, &batched[1..], &out)?;
                let bodies = Bodies::new(vec![then, otherwise]);
                let operands: Vec<Value> = args.iter().map(|a| a.value).collect();
                self.group(&out, |result| Op::Cond { branches: bodies.clone(), result }, &operands)
            }
            // A batched predicate: both branches run, batched, and each element takes its own.
            Op::Cond { branches, .. } => {
                self.notes.push(
                    "a conditional whose condition differs across the batch runs both branches and selects per element"
                        .into(),
                );
                let funcs = branches.funcs();
                let out = vec![true; funcs[0].results.len()];
                let taken: Vec<Vec<Batched>> = funcs
                    .iter()
                    .map(|f| {
                        let (g, _) = self.batched_body(f, &batched[1..], &out)?;
                        let operands: Vec<Value> = args[1..].iter().map(|a| a.value).collect();
                        let values = self.func.inline(&g, &operands, Span::default())?;
                        Ok(values.into_iter().map(|value| Batched { value, batched: true }).collect())
                    })
                    .collect::<Result<_, String>>()?;
                let p = args[0].value;
                taken[0]
                    .iter()
                    .zip(&taken[1])
                    .map(|(a, b)| {
                        let shape = self.ty(a.value).shape.clone();
                        let dims = vec![0];
                        let mask = self.push(Op::Broadcast { shape, dims }, vec![p])?;
                        Ok(Batched { value: self.push(Op::Select, vec![mask, a.value, b.value])?, batched: true })
                    })
                    .collect()
            }
            &Op::Loop { ref body, checkpoint, .. } if !batched[0] && !batched[1] => {
                let f = &body.funcs()[0];
                let carries = f.results.len();
                // Parameters (i, carries, captured): the operands after the bounds, i shared.
                let mut inputs = batched[1..].to_vec();
                inputs[0] = false;
                let (g, out) = self.carried_body(f, &inputs, 1, carries)?;
                let operands = self.carry_operands(args, 2, &out)?;
                self.group(
                    &out,
                    |result| Op::Loop { body: Bodies::new(vec![g.clone()]), checkpoint, result },
                    &operands,
                )
            }
            Op::While { bodies, .. } => {
                let [cond, body] = bodies.funcs() else { unreachable!("the type rule checks a condition and a body") };
                let carries = body.results.len();
                let (g, out) = self.carried_body(body, &batched, 0, carries)?;
                let inputs: Vec<bool> =
                    (0..batched.len()).map(|p| if p < carries { out[p] } else { batched[p] }).collect();
                let (c, go) = self.batched_body(cond, &inputs, &[])?;
                if go[0] {
                    return self.per_element(op, args);
                }
                let operands = self.carry_operands(args, 0, &out)?;
                let bodies = Bodies::new(vec![c, g]);
                self.group(&out, |result| Op::While { bodies: bodies.clone(), result }, &operands)
            }
            // Rows of [B, n, ...] arrays are [B, ...]: the arrays are scanned as [n, B, ...],
            // and the stacked ys come back as [B, n, ...].
            Op::Scan { body, carries, scanned, reverse, checkpoint, .. } => {
                let (f, k, m) = (&body.funcs()[0], *carries, *scanned);
                let (g, out) = self.carried_body(f, &batched, 0, k)?;
                let mut operands = self.carry_operands(args, 0, &out[..k])?;
                for (p, x) in operands.iter_mut().enumerate().skip(k).take(m) {
                    if batched[p] {
                        *x = self.move_axis(*x, 0, 1)?;
                    }
                }
                let body = Bodies::new(vec![g]);
                let (carries, scanned, reverse, checkpoint) = (k, m, *reverse, *checkpoint);
                let results = self.group(
                    &out,
                    |result| Op::Scan { body: body.clone(), carries, scanned, reverse, checkpoint, result },
                    &operands,
                )?;
                results
                    .into_iter()
                    .enumerate()
                    .map(|(r, v)| match (r >= k, v.batched) {
                        (true, true) => Ok(Batched { value: self.move_axis(v.value, 1, 0)?, batched: true }),
                        _ => Ok(v),
                    })
                    .collect()
            }
            _ => self.per_element(op, args),
        }
    }

    /// The body `f` of a loop batched: its parameters are `first` leading ones (shared), the
    /// carries (`carries`), then the rest, batched as `inputs` says. A carry is batched when
    /// its initial value is or the body makes it so from a batched value: the set grows to a
    /// fixed point. Returns the body and which of its results are batched.
    fn carried_body(
        &mut self,
        f: &Func,
        inputs: &[bool],
        first: usize,
        carries: usize,
    ) -> Result<(Func, Vec<bool>), String> {
        let mut inputs = inputs.to_vec();
        loop {
            let force: Vec<bool> = inputs[first..first + carries].to_vec();
            let (g, out) = self.batched_body(f, &inputs, &force)?;
            let grown: Vec<usize> = (0..carries).filter(|&c| out[c] && !inputs[first + c]).collect();
            if grown.is_empty() {
                return Ok((g, out));
            }
            for c in grown {
                inputs[first + c] = true;
            }
        }
    }

    /// The operands of a loop whose carries start at `args[start..]`: each initial carry
    /// batched where `carries` (which of the carries are batched) says, the rest as they are.
    fn carry_operands(&mut self, args: &[Batched], start: usize, carries: &[bool]) -> Result<Vec<Value>, String> {
        let mut operands = vec![];
        for (p, a) in args.iter().enumerate() {
            let carry = p.checked_sub(start).filter(|&c| carries.get(c) == Some(&true));
            operands.push(if carry.is_some() { self.batch(*a)? } else { a.value });
        }
        Ok(operands)
    }

    /// `f` batched on its own: its parameters batched where `inputs` says, its results
    /// batched where they depend on a batched parameter or `force` says (missing entries:
    /// not forced). Returns the function and which results are batched.
    fn batched_body(&mut self, f: &Func, inputs: &[bool], force: &[bool]) -> Result<(Func, Vec<bool>), String> {
        let mut inner = Batcher { func: Func::new(f.name.clone(), f.span), size: self.size, notes: vec![] };
        let params: Vec<Batched> = f
            .params
            .iter()
            .zip(inputs)
            .map(|(p, &batched)| {
                let ty = if batched { TensorType::new(p.ty.dtype, inner.front(&p.ty.shape)) } else { p.ty.clone() };
                Batched { value: inner.func.add_param(p.name.clone(), ty, p.span), batched }
            })
            .collect();
        let results = inner.body(f, &params)?;
        let mut out = vec![];
        for (r, v) in results.into_iter().enumerate() {
            let batched = v.batched || force.get(r).copied().unwrap_or(false);
            let value = if batched { inner.batch(v)? } else { v.value };
            inner.func.results.push(value);
            inner.func.result_names.push(f.result_names[r].clone());
            out.push(batched);
        }
        for note in inner.notes {
            if !self.notes.contains(&note) {
                self.notes.push(note);
            }
        }
        Ok((inner.func, out))
    }

    /// The instructions `op(result)` for each result of an op with bodies, batched as `out`.
    fn group(&mut self, out: &[bool], op: impl Fn(usize) -> Op, operands: &[Value]) -> Result<Vec<Batched>, String> {
        out.iter()
            .enumerate()
            .map(|(r, &batched)| Ok(Batched { value: self.push(op(r), operands.to_vec())?, batched }))
            .collect()
    }

    /// `op` (taking result 0, when it has bodies) run once per batch element, as a scan over
    /// the batch whose ys are the op's results: the batched operands are scanned, the shared
    /// ones read whole.
    fn per_element(&mut self, op: &Op, args: &[Batched]) -> Result<Vec<Batched>, String> {
        self.notes.push(format!("`{}` has no batched form here and runs once per batch element", op.name()));
        let mut body = Func::new("element", Span::default());
        let order: Vec<usize> =
            (0..args.len()).filter(|&p| args[p].batched).chain((0..args.len()).filter(|&p| !args[p].batched)).collect();
        let mut params = vec![Value(0); args.len()];
        for &p in &order {
            let ty = self.ty(args[p].value);
            let ty = if args[p].batched { TensorType::new(ty.dtype, ty.shape[1..].to_vec()) } else { ty.clone() };
            params[p] = body.add_param(format!("a{p}"), ty, Span::default());
        }
        let count = op.results();
        for r in 0..count {
            let instance = match op.structure() {
                Some((bodies, _)) => op.restructured(bodies.clone(), r),
                None => op.clone(),
            };
            let v = body.push(instance, params.clone(), Span::default())?;
            body.results.push(v);
            body.result_names.push(format!("y{r}"));
        }
        let body = Bodies::new(vec![body]);
        let scanned = args.iter().filter(|a| a.batched).count();
        let operands: Vec<Value> = order.iter().map(|&p| args[p].value).collect();
        (0..count)
            .map(|result| {
                let op =
                    Op::Scan { body: body.clone(), carries: 0, scanned, reverse: false, checkpoint: false, result };
                Ok(Batched { value: self.push(op, operands.clone())?, batched: true })
            })
            .collect()
    }
}
