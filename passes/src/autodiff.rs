//! Automatic differentiation as IR-to-IR transformations: forward mode ([`jvp`]) and reverse
//! mode ([`vjp`]); `grad` and `value_and_grad` are [`vjp`] with a unit cotangent ([`grad`]).
//!
//! Both copy the primal program and append derivative instructions built by the rules in
//! [`rules`], one per op with an exhaustive match, so an op cannot be added without its
//! derivatives. Only float values carry tangents and cotangents; integer and bool values are
//! constants to differentiation.

mod residuals;
pub mod rules;

use kiln_ir::{DType, Func, Op, Span, TensorType, Value};
use std::collections::{BTreeMap, HashMap};

/// Builds derivative code into a function, next to a copy of the primal program.
pub struct Builder {
    pub func: Func,
    /// For `Literal` constants: (dtype, bits) -> value, so that repeated constants are shared.
    consts: HashMap<(DType, u64), Value>,
}

impl Builder {
    fn new(name: &str) -> Builder {
        Builder { func: Func::new(name, Span::default()), consts: HashMap::new() }
    }

    /// Appends an instruction; derivative rules only build well-typed code, so a type error
    /// here is a bug in a rule.
    pub fn push(&mut self, op: Op, args: Vec<Value>) -> Value {
        let span = Span::default();
        self.func.push(op, args, span).unwrap_or_else(|e| panic!("derivative rule built ill-typed code: {e}"))
    }

    pub fn ty(&self, v: Value) -> &TensorType {
        self.func.ty(v)
    }

    /// A float constant of `ty`'s dtype, broadcast to `ty`'s shape.
    pub fn constant(&mut self, value: f64, ty: &TensorType) -> Value {
        let lit = kiln_ir::Literal::of_f64(ty.dtype, value);
        let key = (ty.dtype, lit.as_f64().to_bits());
        let scalar = match self.consts.get(&key) {
            Some(&v) => v,
            None => {
                let v = self.push(Op::Const(lit), vec![]);
                self.consts.insert(key, v);
                v
            }
        };
        self.broadcast_scalar(scalar, &ty.shape)
    }

    fn broadcast_scalar(&mut self, scalar: Value, shape: &[usize]) -> Value {
        if shape.is_empty() {
            scalar
        } else {
            self.push(Op::Broadcast { shape: shape.to_vec(), dims: vec![] }, vec![scalar])
        }
    }

    pub fn zeros(&mut self, ty: &TensorType) -> Value {
        self.constant(0.0, ty)
    }

    /// A derivative that may be absent (zero) as a value of type `ty`.
    pub fn or_zeros(&mut self, v: Option<Value>, ty: &TensorType) -> Value {
        match v {
            Some(v) => v,
            None => self.zeros(ty),
        }
    }

    pub fn unary(&mut self, op: kiln_ir::UnaryOp, x: Value) -> Value {
        self.push(Op::Unary(op), vec![x])
    }

    pub fn binary(&mut self, op: kiln_ir::BinaryOp, x: Value, y: Value) -> Value {
        self.push(Op::Binary(op), vec![x, y])
    }

    pub fn add(&mut self, x: Value, y: Value) -> Value {
        self.binary(kiln_ir::BinaryOp::Add, x, y)
    }

    pub fn sub(&mut self, x: Value, y: Value) -> Value {
        self.binary(kiln_ir::BinaryOp::Sub, x, y)
    }

    pub fn mul(&mut self, x: Value, y: Value) -> Value {
        self.binary(kiln_ir::BinaryOp::Mul, x, y)
    }

    pub fn div(&mut self, x: Value, y: Value) -> Value {
        self.binary(kiln_ir::BinaryOp::Div, x, y)
    }

    pub fn neg(&mut self, x: Value) -> Value {
        self.unary(kiln_ir::UnaryOp::Neg, x)
    }

    /// `x * c` for a float constant c.
    pub fn scale(&mut self, x: Value, c: f64) -> Value {
        let ty = self.ty(x).clone();
        let k = self.constant(c, &ty);
        self.mul(x, k)
    }

    /// Converts a bool mask to `dtype` (1.0 where true).
    pub fn mask(&mut self, m: Value, dtype: DType) -> Value {
        self.push(Op::Convert { to: dtype }, vec![m])
    }

    /// `x` padded along `axis` (see [`kiln_ir::compose::pad`]).
    pub fn pad(&mut self, x: Value, axis: usize, lo: i64, hi: i64, interior: usize) -> Value {
        kiln_ir::compose::pad(&mut self.func, x, axis, lo, hi, interior, Span::default())
            .unwrap_or_else(|e| panic!("derivative rule built ill-typed code: {e}"))
    }

    /// `x` reversed along `axis`.
    pub fn reverse(&mut self, x: Value, axis: usize) -> Value {
        kiln_ir::compose::reverse(&mut self.func, x, axis, Span::default())
            .unwrap_or_else(|e| panic!("derivative rule built ill-typed code: {e}"))
    }

    /// The sum of two optional values.
    pub fn accumulate(&mut self, acc: Option<Value>, x: Value) -> Value {
        match acc {
            None => x,
            Some(a) => self.add(a, x),
        }
    }

    /// Adds `f`'s parameters, then `extra` parameters, then copies `f`'s instructions. Returns
    /// the map from `f`'s values to their copies and the extra parameters' values.
    fn copy_primal(&mut self, f: &Func, extra: &[(String, TensorType)]) -> (Vec<Value>, Vec<Value>) {
        let mut map: Vec<Value> =
            f.params.iter().map(|p| self.func.add_param(p.name.clone(), p.ty.clone(), p.span)).collect();
        let added = extra.iter().map(|(n, t)| self.func.add_param(n.clone(), t.clone(), Span::default())).collect();
        for inst in &f.insts {
            let args = inst.args.iter().map(|a| map[a.index()]).collect();
            let v = self.func.push(inst.op.clone(), args, inst.span).expect("the primal program is well typed");
            map.push(v);
        }
        (map, added)
    }
}

/// Whether values of `ty` carry derivatives.
pub fn differentiable(ty: &TensorType) -> bool {
    ty.dtype.is_float()
}

/// A name not used by any parameter of `f`: `base`, then `base_`, ...
fn fresh_name(f: &Func, base: String) -> String {
    let mut name = base;
    while f.params.iter().any(|p| p.name == name) {
        name.push('_');
    }
    name
}

/// Forward mode: `name(primals..., tangents...) -> (results..., result tangents...)`, with a
/// tangent parameter `t_<p>` for every float parameter and a tangent result for every float
/// result (in order).
pub fn jvp(f: &Func, name: &str) -> Func {
    let mut b = Builder::new(name);
    let tangent_params: Vec<(usize, (String, TensorType))> = f
        .params
        .iter()
        .enumerate()
        .filter(|(_, p)| differentiable(&p.ty))
        .map(|(i, p)| (i, (fresh_name(f, format!("t_{}", p.name)), p.ty.clone())))
        .collect();
    let extra: Vec<(String, TensorType)> = tangent_params.iter().map(|(_, e)| e.clone()).collect();
    let (map, added) = b.copy_primal(f, &extra);
    let mut tangent: Vec<Option<Value>> = vec![None; f.num_values()];
    for ((i, _), t) in tangent_params.iter().zip(added) {
        tangent[*i] = Some(t);
    }
    let n = f.params.len();
    for (k, inst) in f.insts.iter().enumerate() {
        let arg_tangents: Vec<Option<Value>> = inst.args.iter().map(|a| tangent[a.index()]).collect();
        if differentiable(&inst.ty) && arg_tangents.iter().any(Option::is_some) {
            let args: Vec<Value> = inst.args.iter().map(|a| map[a.index()]).collect();
            tangent[n + k] = rules::jvp(&mut b, &inst.op, &args, map[n + k], &arg_tangents);
        }
    }
    for (&r, name) in f.results.iter().zip(&f.result_names) {
        b.func.results.push(map[r.index()]);
        b.func.result_names.push(name.clone());
    }
    for (&r, name) in f.results.iter().zip(&f.result_names) {
        if differentiable(f.ty(r)) {
            let t = b.or_zeros(tangent[r.index()], f.ty(r));
            b.func.results.push(t);
            b.func.result_names.push(format!("t_{name}"));
        }
    }
    b.func
}

/// Reverse mode: `name(primals..., cotangents...) -> (results..., parameter cotangents...)`,
/// with a cotangent parameter `ct_<r>` for every float result and a cotangent result
/// `ct_<p>` for every float parameter in `wrt` (all float parameters when `wrt` is None).
pub fn vjp(f: &Func, name: &str, wrt: Option<&[usize]>) -> Func {
    let mut b = Builder::new(name);
    let float_results: Vec<(Value, &String)> = f
        .results
        .iter()
        .zip(&f.result_names)
        .filter(|(r, _)| differentiable(f.ty(**r)))
        .map(|(r, n)| (*r, n))
        .collect();
    let extra: Vec<(String, TensorType)> =
        float_results.iter().map(|(r, rname)| (fresh_name(f, format!("ct_{rname}")), f.ty(*r).clone())).collect();
    let (map, added) = b.copy_primal(f, &extra);
    let mut cotangent: Vec<Option<Value>> = vec![None; f.num_values()];
    for ((r, _), ct) in float_results.iter().zip(added) {
        let acc = cotangent[r.index()];
        cotangent[r.index()] = Some(b.accumulate(acc, ct));
    }
    backward(&mut b, f, &map, &mut cotangent);
    for (&r, name) in f.results.iter().zip(&f.result_names) {
        b.func.results.push(map[r.index()]);
        b.func.result_names.push(name.clone());
    }
    let wanted: Vec<usize> = wrt.map(<[usize]>::to_vec).unwrap_or_else(|| (0..f.params.len()).collect());
    for i in wanted.into_iter().filter(|&i| differentiable(&f.params[i].ty)) {
        let ct = b.or_zeros(cotangent[i], &f.params[i].ty);
        b.func.results.push(ct);
        b.func.result_names.push(fresh_name(f, format!("ct_{}", f.params[i].name)));
    }
    residuals::share_forward_scans(&mut b.func);
    b.func
}

/// Whether reverse mode can save what it needs of `f`'s scans, nested ones included: each
/// scan saves at least the carries entering every row (when its residuals would not fit, it
/// is checkpointed, see `rules::vjp_structured`), `rows` times the carry, which must pass
/// kiln's shape limits. Otherwise a lowercase reason, for a diagnostic.
pub fn check_carry_stacks(f: &Func) -> Result<(), String> {
    for inst in &f.insts {
        if let Op::Scan { body, carries, .. } = &inst.op {
            let rows = f.ty(inst.args[*carries]).shape[0];
            for p in &body.funcs()[0].params[..*carries] {
                rules::stackable(&p.ty, rows).map_err(|e| {
                    format!("reverse mode of a scan over {rows} rows saves its carry `{}` at every row: {e}", p.name)
                })?;
            }
        }
        for body in inst.op.bodies().map(|b| b.funcs()).unwrap_or_default() {
            check_carry_stacks(body)?;
        }
    }
    Ok(())
}

/// `value_and_grad` of a function with one scalar float result: `name(primals...) -> (value,
/// gradients...)` with the gradient of each parameter in `wrt` (float parameters only).
pub fn value_and_grad(f: &Func, name: &str, wrt: &[usize]) -> Result<Func, String> {
    check_carry_stacks(f)?;
    let rt = f.result_types();
    if rt.len() != 1 || !rt[0].shape.is_empty() || !rt[0].dtype.is_float() {
        return Err(format!(
            "grad needs a function with one float scalar result, `{}` returns {}",
            f.name,
            rt.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(", ")
        ));
    }
    let mut b = Builder::new(name);
    let (map, _) = b.copy_primal(f, &[]);
    let mut cotangent: Vec<Option<Value>> = vec![None; f.num_values()];
    let r = f.results[0];
    let one = b.constant(1.0, &rt[0].clone());
    cotangent[r.index()] = Some(one);
    backward(&mut b, f, &map, &mut cotangent);
    b.func.results.push(map[r.index()]);
    b.func.result_names.push("value".into());
    for &i in wrt {
        let ct = b.or_zeros(cotangent[i], &f.params[i].ty);
        b.func.results.push(ct);
        b.func.result_names.push(fresh_name(f, format!("grad_{}", f.params[i].name)));
    }
    residuals::share_forward_scans(&mut b.func);
    Ok(b.func)
}

/// Propagates cotangents from results to parameters through `f`'s instructions in reverse.
/// The instructions taking the results of one op with bodies (equal but for the result they
/// take, with equal operands) are differentiated together at the first of them, when the
/// cotangents of all are complete.
fn backward(b: &mut Builder, f: &Func, map: &[Value], cotangent: &mut [Option<Value>]) {
    let n = f.params.len();
    let mut groups: BTreeMap<(Op, &[Value]), Vec<usize>> = BTreeMap::new();
    for (k, inst) in f.insts.iter().enumerate() {
        if let Some(group) = inst.op.group() {
            groups.entry((group, &inst.args)).or_default().push(k);
        }
    }
    for (k, inst) in f.insts.iter().enumerate().rev() {
        let args: Vec<Value> = inst.args.iter().map(|a| map[a.index()]).collect();
        let wants: Vec<bool> = inst.args.iter().map(|a| differentiable(f.ty(*a))).collect();
        let cts = if let Some(group) = inst.op.group() {
            let members = &groups[&(group, &inst.args[..])];
            if members[0] != k {
                continue;
            }
            let mut gs = vec![None; inst.op.results()];
            for &m in members {
                let result = f.insts[m].op.structure().map_or(0, |(_, r)| r);
                if let (Some(g), true) = (cotangent[n + m], differentiable(&f.insts[m].ty)) {
                    gs[result] = Some(b.accumulate(gs[result], g));
                }
            }
            if gs.iter().all(Option::is_none) {
                continue;
            }
            rules::vjp_structured(b, &inst.op, &args, &gs, &wants)
        } else {
            let Some(g) = cotangent[n + k] else { continue };
            if !differentiable(&inst.ty) {
                continue;
            }
            rules::vjp(b, &inst.op, &args, map[n + k], g, &wants)
        };
        for ((a, ct), want) in inst.args.iter().zip(cts).zip(wants) {
            if let (Some(ct), true) = (ct, want) {
                let acc = cotangent[a.index()];
                cotangent[a.index()] = Some(b.accumulate(acc, ct));
            }
        }
    }
}
