//! The builtin functions of the language, each lowered to IR ops. Composite builtins
//! (relu, mean, softmax, logsumexp, cross_entropy, one_hot) are defined here in terms of
//! primitive ops, in the numerically stable forms jax.nn uses.

use crate::ast::{Arg, Expr, ExprKind, Ident};
use crate::elab::{broadcast_shapes, plural, promote, resolve_dtype, suggest, Elab, Env, Lit, Val};
use crate::indexing::{self, Item, Mode};
use crate::random;
use crate::sort;
use kiln_ir::ops::Bodies;
use kiln_ir::ops::Domain;
use kiln_ir::types::format_shape;
use kiln_ir::{BinaryOp, ConvWindow, DType, Diagnostic, Func, Op, ReduceKind, Span, TensorType, UnaryOp, Value};
use std::collections::BTreeMap;

type R<T> = Result<T, Diagnostic>;

/// Each builtin other than the unary elementwise ops of the op table (whose rows say which
/// are builtins, `UnaryOp::is_builtin`, each taking `x`): its name, its parameters (positional
/// order, usable as keywords) and how many are required.
const SIGNATURES: &[(&str, &[&str], usize)] = &[
    ("relu", &["x"], 1),
    ("maximum", &["x", "y"], 2),
    ("minimum", &["x", "y"], 2),
    ("pow", &["x", "y"], 2),
    ("where", &["condition", "x", "y"], 3),
    ("sum", &["x", "axis", "keepdims", "where", "initial"], 1),
    ("mean", &["x", "axis", "keepdims", "where", "initial"], 1),
    ("max", &["x", "axis", "keepdims", "where", "initial"], 1),
    ("min", &["x", "axis", "keepdims", "where", "initial"], 1),
    ("prod", &["x", "axis", "keepdims", "where", "initial"], 1),
    ("reshape", &["x", "shape"], 2),
    ("transpose", &["x", "axes"], 1),
    ("broadcast_to", &["x", "shape"], 2),
    ("concat", &["arrays", "axis"], 1),
    ("cast", &["x", "dtype"], 2),
    ("softmax", &["x", "axis"], 1),
    ("logsumexp", &["x", "axis", "keepdims"], 1),
    ("cross_entropy", &["logits", "labels"], 2),
    ("one_hot", &["labels", "n"], 2),
    ("arange", &["n"], 1),
    ("conv2d", &["x", "w", "stride", "padding", "dilation"], 2),
    ("take", &["a", "indices", "axis", "mode", "fill_value"], 2),
    ("take_along_axis", &["arr", "indices", "axis", "mode", "fill_value"], 2),
    ("dynamic_slice", &["operand", "start_indices", "slice_sizes"], 3),
    ("dynamic_update_slice", &["operand", "update", "start_indices"], 3),
    ("gelu", &["x", "approximate"], 1),
    ("silu", &["x"], 1),
    ("softplus", &["x"], 1),
    ("clip", &["x", "min", "max"], 1),
    ("var", &["x", "axis", "ddof", "keepdims"], 1),
    ("std", &["x", "axis", "ddof", "keepdims"], 1),
    ("argmax", &["x", "axis", "keepdims"], 1),
    ("sort", &["a", "axis", "descending"], 1),
    ("argsort", &["a", "axis", "descending"], 1),
    ("top_k", &["operand", "k"], 2),
    ("argmin", &["x", "axis", "keepdims"], 1),
    ("isnan", &["x"], 1),
    ("isfinite", &["x"], 1),
    ("logical_not", &["x"], 1),
    ("logical_and", &["x", "y"], 2),
    ("logical_or", &["x", "y"], 2),
    ("logical_xor", &["x", "y"], 2),
    ("squeeze", &["x", "axis"], 1),
    ("expand_dims", &["x", "axis"], 2),
    ("stack", &["arrays", "axis"], 1),
    ("flip", &["x", "axis"], 1),
    ("tril", &["x", "k"], 1),
    ("triu", &["x", "k"], 1),
    ("eye", &["n", "m", "k", "dtype"], 1),
    ("cumsum", &["a", "axis"], 1),
    ("cumprod", &["a", "axis"], 1),
    ("cummax", &["a", "axis"], 1),
    ("cummin", &["a", "axis"], 1),
    ("pad", &["array", "pad_width", "mode", "constant_values"], 2),
    ("einsum", &["subscripts", "a", "b", "c", "d"], 2),
    ("load", &["file", "name"], 2),
    ("remainder", &["x1", "x2"], 2),
    ("fmod", &["x1", "x2"], 2),
    ("floor_divide", &["x1", "x2"], 2),
    ("bitwise_and", &["x1", "x2"], 2),
    ("bitwise_or", &["x1", "x2"], 2),
    ("bitwise_xor", &["x1", "x2"], 2),
    ("bitwise_not", &["x"], 1),
    ("left_shift", &["x1", "x2"], 2),
    ("right_shift", &["x1", "x2"], 2),
    ("shift_right_logical", &["x1", "x2"], 2),
    ("shift_right_arithmetic", &["x1", "x2"], 2),
];

/// The parameters of a unary elementwise builtin.
const UNARY: (&[&str], usize) = (&["x"], 1);

/// The names of all builtins: the op table's unary builtins, in table order, then the rest,
/// then the random ones.
pub fn names() -> impl Iterator<Item = &'static str> {
    let unary = UnaryOp::ALL.iter().filter(|op| op.is_builtin()).map(|op| op.name());
    unary.chain(SIGNATURES.iter().chain(random::SIGNATURES).map(|s| s.0))
}

/// A builtin's parameters and how many are required.
fn signature(name: &str) -> Option<(&'static [&'static str], usize)> {
    match UnaryOp::builtin(name) {
        Some(_) => Some(UNARY),
        None => SIGNATURES
            .iter()
            .chain(random::SIGNATURES)
            .find(|s| s.0 == name)
            .map(|&(_, params, required)| (params, required)),
    }
}

pub fn is_builtin(name: &str) -> bool {
    names().any(|n| n == name)
}

/// Whether the argument of builtin `callee` given at `position` (None for a keyword
/// argument) or by `keyword` names a dtype rather than a value: `cast(x, f32)`,
/// `eye(3, dtype=f64)`. Name resolution checks it as a dtype, not as a name in scope.
pub fn is_dtype_argument(callee: &str, position: Option<usize>, keyword: Option<&str>) -> bool {
    let Some((params, _)) = signature(callee) else { return false };
    let param = keyword.or_else(|| position.and_then(|i| params.get(i).copied()));
    param == Some("dtype") && params.contains(&"dtype")
}

/// The dtype a `dtype` argument names (E0217 otherwise).
pub fn dtype_argument(e: &Expr) -> Result<DType, Diagnostic> {
    let ExprKind::Name(n) = &e.kind else {
        return Err(Diagnostic::error("E0217", "expected a dtype")
            .at(e.span, "not a dtype")
            .help("write e.g. `cast(x, f32)`"));
    };
    resolve_dtype(&Ident { name: n.clone(), span: e.span }).map_err(|d| Diagnostic { code: "E0217", ..d })
}

/// Arguments bound to a builtin's parameters.
pub(crate) struct Bound<'a> {
    args: Vec<Option<&'a Expr>>,
}

impl<'a> Bound<'a> {
    pub(crate) fn get(&self, i: usize) -> Option<&'a Expr> {
        self.args[i]
    }
}

pub(crate) fn bind<'a>(name: &str, params: &[&str], required: usize, args: &'a [Arg], span: Span) -> R<Bound<'a>> {
    let mut bound: Vec<Option<&Expr>> = vec![None; params.len()];
    let mut positional = 0;
    for a in args {
        let i = match &a.keyword {
            None => {
                if positional >= params.len() {
                    return Err(Diagnostic::error(
                        "E0201",
                        format!("`{name}` takes at most {} argument{}", params.len(), plural(params.len())),
                    )
                    .at(a.value.span, "unexpected argument")
                    .note(format!("signature: {name}({})", params.join(", "))));
                }
                positional += 1;
                positional - 1
            }
            Some(k) => match params.iter().position(|p| *p == k.name) {
                Some(i) => i,
                None => {
                    let d = Diagnostic::error("E0215", format!("`{name}` has no parameter named `{}`", k.name))
                        .at(k.span, "unknown keyword");
                    return Err(match suggest(&k.name, params.iter().copied()) {
                        Some(s) => d.help(format!("did you mean `{s}`?")),
                        None => d.note(format!("signature: {name}({})", params.join(", "))),
                    });
                }
            },
        };
        if bound[i].is_some() {
            return Err(Diagnostic::error("E0215", format!("argument `{}` of `{name}` is given twice", params[i]))
                .at(a.value.span, "given again here"));
        }
        bound[i] = Some(&a.value);
    }
    if let Some(missing) = (0..required).find(|&i| bound[i].is_none()) {
        return Err(Diagnostic::error("E0201", format!("`{name}` is missing argument `{}`", params[missing]))
            .at(span, format!("`{}` not given", params[missing]))
            .note(format!("signature: {name}({})", params.join(", "))));
    }
    Ok(Bound { args: bound })
}

/// Lowers a call of the builtin `callee`.
pub fn call<'a>(el: &mut Elab<'a>, env: &mut Env, callee: &Ident, args: &'a [Arg], span: Span) -> R<Val> {
    let name = callee.name.as_str();
    let Some((params, required)) = signature(name) else {
        return Err(Diagnostic::error("E9999", format!("internal compiler error: `{name}` is not a builtin"))
            .at(span, "called here"));
    };
    let b = bind(name, params, required, args, span)?;
    if random::SIGNATURES.iter().any(|s| s.0 == name) {
        return random::call(el, env, name, &b, span);
    }
    let tensor = |el: &mut Elab<'a>, env: &mut Env, i: usize| -> R<(Value, Span)> {
        let e = b.get(i).expect("required");
        let v = el.eval(env, e)?;
        Ok((el.tensor_arg(v, e.span)?, e.span))
    };
    if let Some(op) = UnaryOp::builtin(name) {
        // A float op converts integers to floats first, as jax.numpy does.
        let (x, s) = tensor(el, env, 0)?;
        el.require_numeric(x, s, &format!("apply `{name}` to"))?;
        let x = if op.domain() == Domain::Float { el.float_of(x, s)? } else { x };
        return Ok(Val::Tensor(el.push(Op::Unary(op), vec![x], span)?));
    }
    let v = match name {
        // relu(x) = max(x, 0)
        "relu" => {
            let (x, s) = tensor(el, env, 0)?;
            el.require_numeric(x, s, "apply `relu` to")?;
            let v = el.unify(vec![(Val::Tensor(x), s), (Val::Lit(Lit::Int(0)), span)], span)?;
            el.push(Op::Binary(BinaryOp::Max), v, span)?
        }
        "maximum" | "minimum" | "pow" => {
            let vals = values(el, env, &b, &[0, 1])?;
            let spans = [vals[0].1, vals[1].1];
            let v = el.unify(vals, span)?;
            let mut v = v;
            for (t, s) in v.iter_mut().zip(spans) {
                el.require_numeric(*t, s, &format!("apply `{name}` to"))?;
                if name == "pow" {
                    *t = el.float_of(*t, s)?;
                }
            }
            let op = match name {
                "maximum" => BinaryOp::Max,
                "minimum" => BinaryOp::Min,
                _ => BinaryOp::Pow,
            };
            el.push(Op::Binary(op), v, span)?
        }
        "where" => {
            let (c, cs) = tensor(el, env, 0)?;
            if el.ty(c).dtype != DType::Bool {
                return Err(Diagnostic::error("E0202", format!("`where` needs a bool condition, not {}", el.ty(c)))
                    .at(cs, "not bool")
                    .help("compare to get a condition, e.g. `x > 0`"));
            }
            let vals = values(el, env, &b, &[1, 2])?;
            let v = el.unify(vals, span)?;
            let (vs, ct) = (el.ty(v[0]).clone(), el.ty(c).clone());
            let Some(shape) = broadcast_shapes(&vs.shape, &ct.shape) else {
                return Err(Diagnostic::error("E0203", format!("cannot broadcast {ct} with {vs}"))
                    .at(cs, format!("this is {ct}"))
                    .also(span, format!("the values are {vs}")));
            };
            let c = el.broadcast(c, &shape, cs)?;
            let x = el.broadcast(v[0], &shape, span)?;
            let y = el.broadcast(v[1], &shape, span)?;
            el.push(Op::Select, vec![c, x, y], span)?
        }
        "sum" | "mean" | "max" | "min" | "prod" => {
            let (x, s) = tensor(el, env, 0)?;
            let rank = el.ty(x).rank();
            let axes = match b.get(1) {
                None => (0..rank).collect(),
                Some(e) => axes_arg(el, env, e, rank)?,
            };
            let keepdims = bool_arg(el, env, b.get(2))?;
            let kind = match name {
                "max" => ReduceKind::Max,
                "min" => ReduceKind::Min,
                "prod" => ReduceKind::Prod,
                _ => ReduceKind::Sum,
            };
            let dtype = el.ty(x).dtype;
            let x = match (dtype, kind) {
                (DType::Bool, ReduceKind::Sum | ReduceKind::Prod) => el.convert(x, DType::I32, s)?,
                (DType::Bool, _) => {
                    return Err(Diagnostic::error("E0202", format!("cannot take `{name}` of bool values"))
                        .at(s, "this is bool")
                        .help("convert first, e.g. `cast(x, i32)`"))
                }
                _ => x,
            };
            let x = if name == "mean" { el.float_of(x, s)? } else { x };
            // mean computes a 16-bit float's mean in f32 and rounds it once, as jnp's.
            let half = Some(el.ty(x).dtype).filter(|d| name == "mean" && d.is_half());
            let x = if half.is_some() { el.convert(x, DType::F32, s)? } else { x };
            let initial = b.get(4).map(|e| el.const_lit(env, e)).transpose()?;
            // where=mask: the reduction over the elements where mask holds (broadcast to x),
            // the others counting as the identity, as jnp's; max and min have none, so they
            // take `initial=` (included in the reduction) instead.
            let mask = match b.get(3) {
                None => None,
                Some(e) => {
                    if initial.is_none() && matches!(kind, ReduceKind::Max | ReduceKind::Min) {
                        return Err(Diagnostic::error(
                            "E0201",
                            format!("`{name}` with `where=` is missing argument `initial`"),
                        )
                        .at(e.span, "a mask needs a value for the reduction of no element")
                        .help(format!("give one, e.g. `{name}(x, where=m, initial=0.0)`")));
                    }
                    Some(mask_arg(el, env, e, x)?)
                }
            };
            let masked = match mask {
                None => x,
                Some(m) => {
                    let dtype = el.ty(x).dtype;
                    let fill = match kind {
                        ReduceKind::Sum => Lit::Int(0),
                        ReduceKind::Prod => Lit::Int(1),
                        _ => initial.expect("checked above"),
                    };
                    let fill = el.splat(fill, dtype, &el.ty(x).shape.clone(), span)?;
                    el.push(Op::Select, vec![m, x, fill], span)?
                }
            };
            let mut r = reduce(el, kind, masked, &axes, keepdims, span)?;
            if let Some(l) = initial {
                let v = el.unify(vec![(Val::Tensor(r), span), (Val::Lit(l), span)], span)?;
                let op = kind.combiner();
                r = el.push(Op::Binary(op), v, span)?;
            }
            if name == "mean" {
                let mean = match mask {
                    None => {
                        let n: usize = axes.iter().map(|&a| el.ty(x).shape[a]).product();
                        let inv =
                            el.unify(vec![(Val::Tensor(r), span), (Val::Lit(Lit::Float(1.0 / n as f64)), span)], span)?;
                        el.push(Op::Binary(BinaryOp::Mul), inv, span)?
                    }
                    Some(m) => {
                        let ones = el.convert(m, el.ty(r).dtype, span)?;
                        let count = reduce(el, ReduceKind::Sum, ones, &axes, keepdims, span)?;
                        binary(el, BinaryOp::Div, r, count, span)?
                    }
                };
                match half {
                    Some(d) => el.convert(mean, d, span)?,
                    None => mean,
                }
            } else {
                r
            }
        }
        "reshape" => {
            let (x, _) = tensor(el, env, 0)?;
            let e = b.get(1).expect("required");
            let dims = int_list(el, env, e)?;
            let shape = reshape_target(el.ty(x).num_elements(), &dims).ok_or_else(|| {
                Diagnostic::error("E0210", format!("cannot reshape {} into {:?}", el.ty(x), dims))
                    .at(e.span, "element counts differ")
                    .note(format!("{} has {} elements", el.ty(x), el.ty(x).num_elements()))
            })?;
            el.reshape(x, shape, span)?
        }
        "transpose" => {
            let (x, _) = tensor(el, env, 0)?;
            let rank = el.ty(x).rank();
            let perm: Vec<usize> = match b.get(1) {
                None => (0..rank).rev().collect(),
                Some(e) => {
                    let raw = int_list(el, env, e)?;
                    let perm: Option<Vec<usize>> = raw.iter().map(|&a| normalize_axis(a, rank)).collect();
                    match perm {
                        Some(p) if p.len() == rank && (0..rank).all(|i| p.contains(&i)) => p,
                        _ => {
                            return Err(Diagnostic::error(
                                "E0211",
                                format!("{raw:?} is not a permutation of the axes of {}", el.ty(x)),
                            )
                            .at(e.span, format!("expected a permutation of 0..{rank}")))
                        }
                    }
                }
            };
            el.transpose(x, perm, span)?
        }
        "broadcast_to" => {
            let (x, s) = tensor(el, env, 0)?;
            let e = b.get(1).expect("required");
            let dims = int_list(el, env, e)?;
            let shape: Vec<usize> = dims.iter().map(|&d| d.max(0) as usize).collect();
            crate::elab::check_type_shape(&shape, e.span)?;
            let xs = el.ty(x).shape.clone();
            if dims.iter().any(|&d| d <= 0) || broadcast_shapes(&xs, &shape).as_deref() != Some(&shape[..]) {
                return Err(Diagnostic::error(
                    "E0221",
                    format!("cannot broadcast {} to {}", el.ty(x), format_shape(&shape)),
                )
                .at(s, format!("this is {}", el.ty(x)))
                .also(e.span, "target shape")
                .note("dimensions are compared from the right; each must be equal or 1 in the array"));
            }
            el.broadcast(x, &shape, span)?
        }
        "concat" => {
            let (ts, dtype) = arrays_arg(el, env, b.get(0).expect("required"), name)?;
            let rank = el.ty(ts[0].0).rank();
            let axis = match b.get(1) {
                None => 0,
                Some(a) => axis_arg(el, env, a, rank)?,
            };
            let first = el.ty(ts[0].0).clone();
            let mut vs = vec![];
            for &(t, s) in &ts {
                let ty = el.ty(t).clone();
                if ty.rank() != first.rank() || (0..ty.rank()).any(|i| i != axis && ty.shape[i] != first.shape[i]) {
                    return Err(Diagnostic::error(
                        "E0212",
                        format!("cannot concatenate {first} and {ty} along axis {axis}"),
                    )
                    .at(s, format!("this is {ty}"))
                    .also(ts[0].1, format!("this is {first}"))
                    .note("all dimensions except the concatenation axis must be equal"));
                }
                vs.push(el.convert(t, dtype, s)?);
            }
            join(el, vs, axis, span)?
        }
        "cast" => {
            let (x, _) = tensor(el, env, 0)?;
            let to = dtype_argument(b.get(1).expect("required"))?;
            el.convert(x, to, span)?
        }
        // softmax(x) = exp(x - max(x)) * (1 / sum(exp(x - max(x)))) along `axis`: one division
        // per row and a multiply per element, as PyTorch computes it (within an ulp of dividing
        // each element; a vector division costs several multiplies).
        "softmax" => {
            let (x, s) = tensor(el, env, 0)?;
            let x = float_arg(el, x, s, name)?;
            let axes = axes_or_last(el, env, b.get(1), x, s, name)?;
            let m = reduce(el, ReduceKind::Max, x, &axes, true, span)?;
            let shifted = binary(el, BinaryOp::Sub, x, m, span)?;
            let e = el.push(Op::Unary(UnaryOp::Exp), vec![shifted], span)?;
            let total = reduce(el, ReduceKind::Sum, e, &axes, true, span)?;
            let one = el.unify(vec![(Val::Lit(Lit::Float(1.0)), span), (Val::Tensor(total), span)], span)?;
            let inverse = el.push(Op::Binary(BinaryOp::Div), one, span)?;
            binary(el, BinaryOp::Mul, e, inverse, span)?
        }
        "logsumexp" => {
            let (x, s) = tensor(el, env, 0)?;
            let x = float_arg(el, x, s, name)?;
            let axes = axes_or_last(el, env, b.get(1), x, s, name)?;
            let keepdims = bool_arg(el, env, b.get(2))?;
            logsumexp(el, x, &axes, keepdims, span)?
        }
        // cross_entropy(logits, labels) = logsumexp(logits) - logits[label], per example.
        "cross_entropy" => {
            let (logits, ls) = tensor(el, env, 0)?;
            let logits = float_arg(el, logits, ls, name)?;
            let (labels, bs) = tensor(el, env, 1)?;
            let axis = last_axis(el, logits, ls, name)?;
            let lt = el.ty(logits).clone();
            let bt = el.ty(labels).clone();
            if !bt.dtype.is_int() || bt.shape[..] != lt.shape[..axis] {
                return Err(Diagnostic::error("E0220", format!("labels {bt} do not match logits {lt}"))
                    .at(bs, format!("this is {bt}"))
                    .also(ls, format!("this is {lt}"))
                    .note(format!(
                        "for logits {lt}, labels must be integers of shape {}",
                        format_shape(&lt.shape[..axis])
                    )));
            }
            // Labels count from the end when negative, and the loss is NaN for a label outside
            // [-n, n): optax's softmax_cross_entropy_with_integer_labels, whose
            // jnp.take_along_axis normalizes negative indices and fills out-of-bounds ones.
            let n = lt.shape[axis];
            let zero = el.lit_to(Lit::Int(0), bt.dtype, span)?;
            let negative = binary(el, BinaryOp::Lt, labels, zero, span)?;
            let count = el.lit_to(Lit::Int(n as i64), bt.dtype, span)?;
            let from_end = binary(el, BinaryOp::Add, labels, count, span)?;
            let labels = el.push(Op::Select, vec![negative, from_end, labels], span)?;
            let lse = logsumexp(el, logits, &[axis], false, span)?;
            let hot = one_hot(el, labels, n, lt.dtype, span)?;
            let picked = binary(el, BinaryOp::Mul, logits, hot, span)?;
            let picked = reduce(el, ReduceKind::Sum, picked, &[axis], false, span)?;
            let loss = binary(el, BinaryOp::Sub, lse, picked, span)?;
            let found = reduce(el, ReduceKind::Sum, hot, &[axis], false, span)?;
            let half = el.lit_to(Lit::Float(0.5), lt.dtype, span)?;
            let valid = binary(el, BinaryOp::Gt, found, half, span)?;
            let nan = el.lit_to(Lit::Float(f64::NAN), lt.dtype, span)?;
            let shape = el.ty(loss).shape.clone();
            let nan = el.broadcast(nan, &shape, span)?;
            el.push(Op::Select, vec![valid, loss, nan], span)?
        }
        "one_hot" => {
            let (labels, s) = tensor(el, env, 0)?;
            if !el.ty(labels).dtype.is_int() {
                return Err(Diagnostic::error(
                    "E0202",
                    format!("`one_hot` needs integer labels, not {}", el.ty(labels)),
                )
                .at(s, "not integers"));
            }
            let e = b.get(1).expect("required");
            let n = positive_int(el, env, e)?;
            one_hot(el, labels, n, DType::F32, span)?
        }
        // conv2d(x[N, H, W, C], w[KH, KW, C, CO]): the op, after the checks that explain a
        // mismatch in the user's terms.
        "conv2d" => {
            let (x, xs) = tensor(el, env, 0)?;
            let (w, ws) = tensor(el, env, 1)?;
            let dtype = promote(promote(el.ty(x).dtype, el.ty(w).dtype), DType::F32);
            let (x, w) = (el.convert(x, dtype, xs)?, el.convert(w, dtype, ws)?);
            let (xt, wt) = (el.ty(x).clone(), el.ty(w).clone());
            if xt.rank() != 4 || wt.rank() != 4 || xt.shape[3] != wt.shape[2] {
                return Err(Diagnostic::error("E0222", format!("cannot convolve {xt} with {wt}"))
                    .at(xs, format!("this is {xt}"))
                    .also(ws, format!("this is {wt}"))
                    .note("conv2d takes an input [N, H, W, C] and a kernel [KH, KW, C, CO] with the same C"));
            }
            let stride = pair_arg(el, env, b.get(2), "stride", 1, 1)?;
            let padding = pair_arg(el, env, b.get(3), "padding", 0, 0)?;
            let dilation = pair_arg(el, env, b.get(4), "dilation", 1, 1)?;
            for a in 0..2 {
                let span = xt.shape[1 + a] + 2 * padding[a];
                let reach = dilation[a] * (wt.shape[a] - 1) + 1;
                if reach > span {
                    return Err(Diagnostic::error(
                        "E0222",
                        format!("the kernel ({reach} wide with dilation) is larger than the padded input ({span})"),
                    )
                    .at(ws, "kernel")
                    .note("the output would be empty"));
                }
            }
            el.push(Op::Conv(ConvWindow::new(stride, padding, dilation)), vec![x, w], span)?
        }
        // take(a, indices, axis): a's slices along `axis` at the indices (all of a, flattened,
        // without an axis); negative indices count from the end and out-of-bounds ones are
        // filled, unless mode="clip" (jnp.take).
        "take" => {
            let (x, _) = tensor(el, env, 0)?;
            let indices = index_arg(el, env, &b, 1)?;
            let (x, axis) = axis_or_flattened(el, env, b.get(2), x, span)?;
            let mode = mode_arg(el, env, &b, 3, 4)?;
            let mut items: Vec<Item> = el.ty(x).shape.iter().map(|&n| Item::whole(n)).collect();
            items[axis] = match mode {
                // As numpy's take, mode="clip" clips negative indices to 0 rather than counting
                // them from the end.
                Mode::Clip => {
                    Item::Data { index: indexing::clip(el, indices, el.ty(x).shape[axis], span)?, in_range: true }
                }
                Mode::Fill(_) => Item::Data { index: indices, in_range: false },
            };
            indexing::gather(el, x, &items, mode, span)?
        }
        // take_along_axis(arr, indices, axis): result[.., j, ..] = arr[.., indices[.., j, ..], ..]
        // along `axis` (the last by default), the other axes broadcast (jnp.take_along_axis);
        // every axis indexed, each by its position but `axis`.
        "take_along_axis" => {
            let (x, xs) = tensor(el, env, 0)?;
            let indices = index_arg(el, env, &b, 1)?;
            let axis = match b.get(2) {
                None => last_axis(el, x, xs, name)?,
                Some(e) => axis_arg(el, env, e, el.ty(x).rank())?,
            };
            let (xt, it) = (el.ty(x).clone(), el.ty(indices).clone());
            let is = b.get(1).expect("required").span;
            let shape: Option<Vec<usize>> = (it.rank() == xt.rank())
                .then(|| {
                    (0..xt.rank())
                        .map(|d| match (xt.shape[d], it.shape[d]) {
                            (_, i) if d == axis => Some(i),
                            (a, i) if a == i || a == 1 => Some(i),
                            (a, 1) => Some(a),
                            _ => None,
                        })
                        .collect()
                })
                .flatten();
            let Some(shape) = shape else {
                return Err(Diagnostic::error("E0231", format!("indices {it} do not match {xt} along axis {axis}"))
                    .at(is, format!("this is {it}"))
                    .also(xs, format!("this is {xt}"))
                    .note("the indices have the array's rank; their other axes are equal to the array's, or 1"));
            };
            let indices = if it.shape == shape {
                indices
            } else {
                el.push(Op::Broadcast { shape: shape.clone(), dims: (0..shape.len()).collect() }, vec![indices], span)?
            };
            let mode = mode_arg(el, env, &b, 3, 4)?;
            take_along(el, x, indices, axis, (false, mode), span)?
        }
        // dynamic_slice(operand, [starts...], [sizes...]): lax.dynamic_slice.
        "dynamic_slice" => {
            let (x, _) = tensor(el, env, 0)?;
            let shape = el.ty(x).shape.clone();
            let starts = starts_arg(el, env, b.get(1).expect("required"), &shape)?;
            let e = b.get(2).expect("required");
            let sizes = int_list(el, env, e)?;
            let fits =
                sizes.len() == shape.len() && sizes.iter().zip(&shape).all(|(&s, &n)| s >= 1 && s as u64 <= n as u64);
            if !fits {
                return Err(Diagnostic::error("E0234", format!("a window of {sizes:?} does not fit in {}", el.ty(x)))
                    .at(e.span, "window sizes")
                    .note("give one size per axis, each from 1 to the axis's length"));
            }
            let sizes = sizes.iter().map(|&s| s as usize).collect();
            el.push(Op::DynamicSlice { sizes }, std::iter::once(x).chain(starts).collect(), span)?
        }
        // dynamic_update_slice(operand, update, [starts...]): lax.dynamic_update_slice.
        "dynamic_update_slice" => {
            let (x, _) = tensor(el, env, 0)?;
            let xt = el.ty(x).clone();
            let ue = b.get(1).expect("required");
            let u = el.eval(env, ue)?;
            let u = match u {
                Val::Lit(l) => el.lit_to(l, xt.dtype, ue.span)?,
                v => el.tensor_arg(v, ue.span)?,
            };
            let ut = el.ty(u).clone();
            let fits = ut.rank() == xt.rank() && ut.shape.iter().zip(&xt.shape).all(|(&s, &n)| s <= n);
            if !fits || promote(ut.dtype, xt.dtype) != xt.dtype {
                return Err(Diagnostic::error("E0234", format!("an update of {ut} does not fit in {xt}"))
                    .at(ue.span, format!("this is {ut}"))
                    .note("the update has the operand's rank, no axis longer than the operand's, and a dtype that converts to the operand's without loss"));
            }
            let u = el.convert(u, xt.dtype, ue.span)?;
            let starts = starts_arg(el, env, b.get(2).expect("required"), &xt.shape)?;
            el.push(Op::DynamicUpdateSlice, [x, u].into_iter().chain(starts).collect(), span)?
        }
        // gelu(x) = x Φ(x): with approximate=true (the default, as jax.nn.gelu) the tanh form
        // x (0.5 (1 + tanh(sqrt(2/π) (x + 0.044715 x³)))), else x (erf(x / sqrt 2) + 1) / 2.
        "gelu" => {
            let (x, s) = tensor(el, env, 0)?;
            let x = float_arg(el, x, s, name)?;
            let dtype = el.ty(x).dtype;
            let c = |el: &mut Elab, v: f64| el.lit_to(Lit::Float(v), dtype, span);
            if bool_arg_or(el, env, b.get(1), true)? {
                let x2 = binary(el, BinaryOp::Mul, x, x, span)?;
                let x3 = binary(el, BinaryOp::Mul, x2, x, span)?;
                let k = c(el, 0.044715)?;
                let kx3 = binary(el, BinaryOp::Mul, k, x3, span)?;
                let inner = binary(el, BinaryOp::Add, x, kx3, span)?;
                let r = c(el, (2.0 / std::f64::consts::PI).sqrt())?;
                let arg = binary(el, BinaryOp::Mul, r, inner, span)?;
                let t = el.push(Op::Unary(UnaryOp::Tanh), vec![arg], span)?;
                let one = c(el, 1.0)?;
                let t1 = binary(el, BinaryOp::Add, one, t, span)?;
                let half = c(el, 0.5)?;
                let cdf = binary(el, BinaryOp::Mul, half, t1, span)?;
                binary(el, BinaryOp::Mul, x, cdf, span)?
            } else {
                let root2 = c(el, std::f64::consts::SQRT_2)?;
                let z = binary(el, BinaryOp::Div, x, root2, span)?;
                let e = el.push(Op::Unary(UnaryOp::Erf), vec![z], span)?;
                let one = c(el, 1.0)?;
                let e1 = binary(el, BinaryOp::Add, e, one, span)?;
                let p = binary(el, BinaryOp::Mul, x, e1, span)?;
                let two = c(el, 2.0)?;
                binary(el, BinaryOp::Div, p, two, span)?
            }
        }
        // silu(x) = x sigmoid(x) (jax.nn.silu).
        "silu" => {
            let (x, s) = tensor(el, env, 0)?;
            let x = float_arg(el, x, s, name)?;
            let sg = el.push(Op::Unary(UnaryOp::Sigmoid), vec![x], span)?;
            binary(el, BinaryOp::Mul, x, sg, span)?
        }
        // softplus(x) = log(1 + e^x) = max(x, 0) + log1p(exp(-|x|)): jax.nn.softplus, which is
        // logaddexp(x, 0); never overflows.
        "softplus" => {
            let (x, s) = tensor(el, env, 0)?;
            let x = float_arg(el, x, s, name)?;
            let zero = el.lit_to(Lit::Float(0.0), el.ty(x).dtype, span)?;
            let m = binary(el, BinaryOp::Max, x, zero, span)?;
            let a = el.push(Op::Unary(UnaryOp::Abs), vec![x], span)?;
            let na = el.push(Op::Unary(UnaryOp::Neg), vec![a], span)?;
            let e = el.push(Op::Unary(UnaryOp::Exp), vec![na], span)?;
            let l = el.push(Op::Unary(UnaryOp::Log1p), vec![e], span)?;
            binary(el, BinaryOp::Add, m, l, span)?
        }
        // clip(x, min, max) = minimum(maximum(x, min), max), either bound optional (jnp.clip).
        "clip" => {
            let (x, s) = tensor(el, env, 0)?;
            el.require_numeric(x, s, "clip")?;
            let mut r = Val::Tensor(x);
            for (i, op) in [(1, BinaryOp::Max), (2, BinaryOp::Min)] {
                if let Some(e) = b.get(i) {
                    let bound = el.eval(env, e)?;
                    let v = el.unify(vec![(r, s), (bound, e.span)], span)?;
                    r = Val::Tensor(el.push(Op::Binary(op), v, span)?);
                }
            }
            el.tensor_arg(r, span)?
        }
        // var(x) = sum(|x - mean(x)|²) / (N - ddof) over `axis` (jnp.var); std = sqrt(var).
        "var" | "std" => {
            let (x, s) = tensor(el, env, 0)?;
            let x = float_arg(el, x, s, name)?;
            // A 16-bit float's variance is computed in f32 and rounded once, as jnp's.
            let dtype = el.ty(x).dtype;
            let x = if dtype.is_half() { el.convert(x, DType::F32, s)? } else { x };
            let rank = el.ty(x).rank();
            let axes = match b.get(1) {
                None => (0..rank).collect(),
                Some(e) => axes_arg(el, env, e, rank)?,
            };
            let ddof = match b.get(2) {
                None => 0,
                Some(e) => el.const_int(env, e)?,
            };
            let keepdims = bool_arg(el, env, b.get(3))?;
            let n: usize = axes.iter().map(|&a| el.ty(x).shape[a]).product();
            let total = reduce(el, ReduceKind::Sum, x, &axes, true, span)?;
            let count = el.lit_to(Lit::Float(n as f64), el.ty(x).dtype, span)?;
            let mean = binary(el, BinaryOp::Div, total, count, span)?;
            let centered = binary(el, BinaryOp::Sub, x, mean, span)?;
            let squares = binary(el, BinaryOp::Mul, centered, centered, span)?;
            let sum = reduce(el, ReduceKind::Sum, squares, &axes, keepdims, span)?;
            let normalizer = el.lit_to(Lit::Float(n as f64 - ddof as f64), el.ty(x).dtype, span)?;
            let v = binary(el, BinaryOp::Div, sum, normalizer, span)?;
            let v = el.convert(v, dtype, span)?;
            if name == "std" {
                el.push(Op::Unary(UnaryOp::Sqrt), vec![v], span)?
            } else {
                v
            }
        }
        // argmax(x, axis): the first index of the largest element along `axis` (of all of x,
        // flattened, without one), a NaN counting as the largest (jnp.argmax); argmin likewise.
        "argmax" | "argmin" => {
            let (x, s) = tensor(el, env, 0)?;
            el.require_numeric(x, s, &format!("take `{name}` of"))?;
            let (x, axis) = axis_or_flattened(el, env, b.get(1), x, span)?;
            let keepdims = bool_arg(el, env, b.get(2))?;
            let kind = if name == "argmax" { ReduceKind::Max } else { ReduceKind::Min };
            arg_extreme(el, kind, x, axis, keepdims, span)?
        }
        // Sorting along an axis (the last by default), stable, NaNs last (frontend/src/sort.rs).
        "sort" | "argsort" => {
            let (x, xs) = tensor(el, env, 0)?;
            let axis = match b.get(1) {
                None => last_axis(el, x, xs, name)?,
                Some(e) => axis_arg(el, env, e, el.ty(x).rank())?,
            };
            let descending = bool_arg(el, env, b.get(2))?;
            if name == "sort" {
                sort::sort(el, x, axis, descending, span)?
            } else {
                sort::argsort(el, x, axis, descending, span)?
            }
        }
        "top_k" => {
            let (x, xs) = tensor(el, env, 0)?;
            let last = last_axis(el, x, xs, name)?;
            let e = b.get(1).expect("required");
            let k = positive_int(el, env, e)?;
            let n = el.ty(x).shape[last];
            if k > n {
                return Err(Diagnostic::error("E0234", format!("`top_k` of {k} from an axis of {n}"))
                    .at(e.span, format!("more than {n}"))
                    .note("k is at most the length of the last axis"));
            }
            let (values, indices) = sort::top_k(el, x, k, span)?;
            return Ok(Val::Tuple(vec![Val::Tensor(values), Val::Tensor(indices)]));
        }
        // isnan(x) = x != x; isfinite(x) = |x| < inf (false for NaN); integers are neither NaN
        // nor infinite.
        "isnan" | "isfinite" => {
            let (x, s) = tensor(el, env, 0)?;
            el.require_numeric(x, s, &format!("apply `{name}` to"))?;
            let ty = el.ty(x).clone();
            if ty.dtype.is_float() {
                if name == "isnan" {
                    binary(el, BinaryOp::Ne, x, x, span)?
                } else {
                    let a = el.push(Op::Unary(UnaryOp::Abs), vec![x], span)?;
                    let inf = el.lit_to(Lit::Float(f64::INFINITY), ty.dtype, span)?;
                    binary(el, BinaryOp::Lt, a, inf, span)?
                }
            } else {
                el.splat(Lit::Bool(name == "isfinite"), DType::Bool, &ty.shape, span)?
            }
        }
        // The logical ops take bools, or numbers as `x != 0` (jnp.logical_*).
        "logical_not" | "logical_and" | "logical_or" | "logical_xor" => {
            let arity = if name == "logical_not" { 1 } else { 2 };
            let mut bools = vec![];
            for i in 0..arity {
                let e = b.get(i).expect("required");
                let v = el.eval(env, e)?;
                bools.push((Val::Tensor(truth(el, v, e.span)?), e.span));
            }
            let v = el.unify(bools, span)?;
            let shape = el.ty(v[0]).shape.clone();
            match name {
                // not a = (a != true); a or b = select(a, true, b); a xor b = (a != b).
                "logical_not" => {
                    let yes = el.splat(Lit::Bool(true), DType::Bool, &shape, span)?;
                    el.push(Op::Binary(BinaryOp::Ne), vec![v[0], yes], span)?
                }
                "logical_and" => and(el, v[0], v[1], span)?,
                "logical_or" => {
                    let yes = el.splat(Lit::Bool(true), DType::Bool, &shape, span)?;
                    el.push(Op::Select, vec![v[0], yes, v[1]], span)?
                }
                _ => el.push(Op::Binary(BinaryOp::Ne), v, span)?,
            }
        }
        // squeeze(x, axis): x without the given axes of length 1 (all of them without `axis`).
        "squeeze" => {
            let (x, s) = tensor(el, env, 0)?;
            let xt = el.ty(x).clone();
            let axes = match b.get(1) {
                None => (0..xt.rank()).filter(|&a| xt.shape[a] == 1).collect(),
                Some(e) => {
                    let axes = axes_arg(el, env, e, xt.rank())?;
                    if let Some(&a) = axes.iter().find(|&&a| xt.shape[a] != 1) {
                        return Err(Diagnostic::error(
                            "E0210",
                            format!("cannot squeeze axis {a} of {xt}: it has {} elements", xt.shape[a]),
                        )
                        .at(e.span, "not of length 1")
                        .also(s, format!("this is {xt}")));
                    }
                    axes
                }
            };
            let shape = (0..xt.rank()).filter(|a| !axes.contains(a)).map(|a| xt.shape[a]).collect();
            el.reshape(x, shape, span)?
        }
        // expand_dims(x, axis): x with new axes of length 1 at the given positions of the result.
        "expand_dims" => {
            let (x, _) = tensor(el, env, 0)?;
            let e = b.get(1).expect("required");
            let xt = el.ty(x).clone();
            let count = match &e.kind {
                ExprKind::List(items) => items.len(),
                _ => 1,
            };
            let axes = axes_arg(el, env, e, xt.rank() + count)?;
            let mut dims = xt.shape.iter().copied();
            let shape = (0..xt.rank() + axes.len())
                .map(|a| if axes.contains(&a) { 1 } else { dims.next().expect("one per axis") })
                .collect();
            el.reshape(x, shape, span)?
        }
        // stack([a, b], axis) = concat of each with a new axis at `axis` (jnp.stack).
        "stack" => {
            let (ts, dtype) = arrays_arg(el, env, b.get(0).expect("required"), name)?;
            let first = el.ty(ts[0].0).clone();
            let axis = match b.get(1) {
                None => 0,
                Some(a) => axis_arg(el, env, a, first.rank() + 1)?,
            };
            let mut shape = first.shape.clone();
            shape.insert(axis, 1);
            let mut vs = vec![];
            for &(t, ts_span) in &ts {
                let ty = el.ty(t).clone();
                if ty.shape != first.shape {
                    return Err(Diagnostic::error("E0212", format!("cannot stack {first} and {ty}"))
                        .at(ts_span, format!("this is {ty}"))
                        .also(ts[0].1, format!("this is {first}"))
                        .note("stacked arrays have one shape"));
                }
                let t = el.convert(t, dtype, ts_span)?;
                vs.push(el.reshape(t, shape.clone(), ts_span)?);
            }
            join(el, vs, axis, span)?
        }
        // flip(x, axis): x with the order of the given axes (all without `axis`) reversed.
        "flip" => {
            let (x, _) = tensor(el, env, 0)?;
            let xt = el.ty(x).clone();
            let axes = match b.get(1) {
                None => (0..xt.rank()).collect(),
                Some(e) => axes_arg(el, env, e, xt.rank())?,
            };
            let reversed = |a: usize| axes.contains(&a) && xt.shape[a] > 1;
            if !(0..xt.rank()).any(reversed) {
                x
            } else {
                let start = (0..xt.rank()).map(|a| if reversed(a) { xt.shape[a] - 1 } else { 0 }).collect();
                let step = (0..xt.rank()).map(|a| if reversed(a) { -1 } else { 1 }).collect();
                el.push(Op::Slice { start, step, shape: xt.shape.clone() }, vec![x], span)?
            }
        }
        // tril(x, k): x where column - row <= k over the last two axes, else 0; triu: >= k.
        "tril" | "triu" => {
            let (x, s) = tensor(el, env, 0)?;
            let xt = el.ty(x).clone();
            if xt.rank() < 2 {
                return Err(Diagnostic::error("E0205", format!("`{name}` needs an array with at least two axes"))
                    .at(s, format!("this is {xt}")));
            }
            let k = match b.get(1) {
                None => 0,
                Some(e) => el.const_int(env, e)?,
            };
            let keep = diagonal_band(el, &xt.shape, k, if name == "tril" { BinaryOp::Le } else { BinaryOp::Ge }, span)?;
            let zero = el.splat(Lit::Int(0), xt.dtype, &xt.shape, span)?;
            el.push(Op::Select, vec![keep, x, zero], span)?
        }
        // eye(n, m, k, dtype): ones on the k-th diagonal of an n x m matrix (jnp.eye).
        "eye" => {
            let n = positive_int(el, env, b.get(0).expect("required"))?;
            let m = match b.get(1) {
                None => n,
                Some(e) => positive_int(el, env, e)?,
            };
            let k = match b.get(2) {
                None => 0,
                Some(e) => el.const_int(env, e)?,
            };
            let dtype = match b.get(3) {
                None => DType::F32,
                Some(e) => dtype_argument(e)?,
            };
            let on = diagonal_band(el, &[n, m], k, BinaryOp::Eq, span)?;
            el.convert(on, dtype, span)?
        }
        // cumsum(a, axis): the running sums along `axis` (of all of a, flattened, without
        // one), first to last (jnp.cumsum); cumprod, cummax and cummin likewise. A scan over the
        // axis, each step a whole row.
        "cumsum" | "cumprod" | "cummax" | "cummin" => {
            let (x, s) = tensor(el, env, 0)?;
            el.require_numeric(x, s, &format!("take `{name}` of"))?;
            let (x, axis) = axis_or_flattened(el, env, b.get(1), x, span)?;
            let dtype = el.ty(x).dtype;
            let (op, identity) = match name {
                "cumsum" => (BinaryOp::Add, Lit::Int(0)),
                "cumprod" => (BinaryOp::Mul, Lit::Int(1)),
                "cummax" if dtype.is_float() => (BinaryOp::Max, Lit::Float(f64::NEG_INFINITY)),
                "cummin" if dtype.is_float() => (BinaryOp::Min, Lit::Float(f64::INFINITY)),
                "cummax" => (BinaryOp::Max, Lit::Int(dtype.int_range().0)),
                _ => (BinaryOp::Min, Lit::Int(dtype.int_range().1)),
            };
            let mut perm: Vec<usize> = (0..el.ty(x).rank()).collect();
            perm.remove(axis);
            perm.insert(0, axis);
            let front = el.transpose(x, perm.clone(), span)?;
            let c = cumulative(el, front, op, identity, span)?;
            el.transpose(c, indexing::inverse(&perm), span)?
        }
        // pad(array, pad_width, mode, constant_values): numpy's pad with mode "constant" (the
        // default; constant_values, 0 by default), "edge" (the edge element repeated) or
        // "reflect" (mirrored about the edge element), one axis after another.
        "pad" => {
            let (mut x, _) = tensor(el, env, 0)?;
            let rank = el.ty(x).rank();
            let we = b.get(1).expect("required");
            let widths = pad_widths(el, env, we, rank)?;
            let mode = match b.get(2).map(|e| (e, &e.kind)) {
                None => "constant",
                Some((_, ExprKind::Str(m))) if ["constant", "edge", "reflect"].contains(&m.as_str()) => m.as_str(),
                Some((e, _)) => {
                    return Err(Diagnostic::error("E0233", "expected a padding mode")
                        .at(e.span, "not a mode")
                        .help("write `mode=\"constant\"`, `mode=\"edge\"` or `mode=\"reflect\"`"))
                }
            };
            let value = match b.get(3) {
                None => Lit::Int(0),
                Some(e) => el.const_lit(env, e)?,
            };
            for (axis, &(before, after)) in widths.iter().enumerate() {
                if before == 0 && after == 0 {
                    continue;
                }
                let n = el.ty(x).shape[axis];
                if mode == "reflect" && before.max(after) >= n {
                    return Err(Diagnostic::error(
                        "E0234",
                        format!("cannot reflect {} elements of axis {axis}, which has {n}", before.max(after)),
                    )
                    .at(we.span, "pad widths")
                    .note("a reflection mirrors the elements after the edge: at most one fewer than the axis has"));
                }
                let mut parts = vec![];
                for (width, at_start) in [(before, true), (after, false)] {
                    if width == 0 {
                        continue;
                    }
                    let mut shape = el.ty(x).shape.clone();
                    shape[axis] = width;
                    let part = match mode {
                        "constant" => el.splat(value, el.ty(x).dtype, &shape, span)?,
                        "edge" => {
                            let edge = axis_slice(el, x, axis, if at_start { 0 } else { n - 1 }, 1, 1, span)?;
                            el.push(Op::Broadcast { shape, dims: (0..rank).collect() }, vec![edge], span)?
                        }
                        // Before: x[width], ..., x[1]; after: x[n-2], ..., x[n-1-width].
                        _ => {
                            let first = if at_start { width } else { n - 2 };
                            axis_slice(el, x, axis, first, width, -1, span)?
                        }
                    };
                    parts.push((part, at_start));
                }
                let mut all: Vec<Value> = parts.iter().filter(|p| p.1).map(|p| p.0).collect();
                all.push(x);
                all.extend(parts.iter().filter(|p| !p.1).map(|p| p.0));
                x = el.push(Op::Concat { axis }, all, span)?;
            }
            x
        }
        // load("weights.safetensors", "name"): the tensor `name` of a weights file beside the
        // program, compiled in as a constant (its dtype and shape are the file's).
        "load" => {
            let strings: Vec<(&str, Span)> = (0..2)
                .map(|i| {
                    let e = b.get(i).expect("required");
                    match &e.kind {
                        ExprKind::Str(s) => Ok((s.as_str(), e.span)),
                        _ => Err(Diagnostic::error("E0238", "`load` takes the file and the tensor's name as strings")
                            .at(e.span, "not a string")),
                    }
                })
                .collect::<R<_>>()?;
            let ((file, fs), (tensor, ts)) = (strings[0], strings[1]);
            let data = el.load(file, tensor).map_err(|reason| {
                Diagnostic::error("E0238", format!("cannot load `{tensor}` from `{file}`: {reason}"))
                    .at(fs.to(ts), "loaded here")
                    .help("a weights file is a safetensors file, found relative to the program's folder")
            })?;
            el.push(Op::Data(data), vec![], span)?
        }
        // einsum("ij,jk->ik", a, b): contractions in Einstein's notation (jnp.einsum, without
        // `...` or repeated letters in one operand), as transposes, reshapes, reductions and
        // products, the operands taken left to right.
        "einsum" => {
            let se = b.get(0).expect("required");
            let ExprKind::Str(subscripts) = &se.kind else {
                return Err(einsum_error("the subscripts are a string", se.span));
            };
            let mut operands = vec![];
            for i in 1..params.len() {
                if let Some(e) = b.get(i) {
                    let v = el.eval(env, e)?;
                    let t = el.tensor_arg(v, e.span)?;
                    el.require_numeric(t, e.span, "contract")?;
                    operands.push((t, e.span));
                }
            }
            let dtype = operands.iter().fold(el.ty(operands[0].0).dtype, |d, &(t, _)| promote(d, el.ty(t).dtype));
            for (t, ts) in operands.iter_mut() {
                *t = el.convert(*t, dtype, *ts)?;
            }
            let (inputs, output) = einsum_labels(subscripts, operands.len(), se.span)?;
            let mut sizes: BTreeMap<char, usize> = BTreeMap::new();
            for ((t, ts), labels) in operands.iter().zip(&inputs) {
                let ty = el.ty(*t).clone();
                if ty.rank() != labels.len() {
                    return Err(einsum_error(
                        &format!("`{}` names {} axes of {ty}", labels.iter().collect::<String>(), labels.len()),
                        *ts,
                    ));
                }
                for (&c, &n) in labels.iter().zip(&ty.shape) {
                    if *sizes.entry(c).or_insert(n) != n {
                        return Err(einsum_error(
                            &format!("`{c}` is {} long in one operand and {n} in {ty}", sizes[&c]),
                            *ts,
                        ));
                    }
                }
            }
            let mut current = (operands[0].0, inputs[0].clone());
            for k in 1..operands.len() {
                let keep: Vec<char> = output.iter().chain(inputs[k + 1..].iter().flatten()).copied().collect();
                current = contract(el, current, (operands[k].0, inputs[k].clone()), &keep, span)?;
            }
            let (v, labels) = current;
            let (v, labels) = sum_out(el, v, &labels, &output, span)?;
            let perm: Vec<usize> = output.iter().map(|c| labels.iter().position(|l| l == c).expect("kept")).collect();
            el.transpose(v, perm, span)?
        }
        // remainder(x1, x2) = x1 - floor(x1 / x2) x2, with x2's sign (numpy's `%`, jnp's);
        // fmod has x1's (C's); both take an integer divisor of 0 as 1, as jnp's.
        // floor_divide(x1, x2) = floor(x1 / x2) (numpy's `//`).
        "remainder" | "fmod" | "floor_divide" => {
            let vals = values(el, env, &b, &[0, 1])?;
            let spans = [vals[0].1, vals[1].1];
            let v = el.unify(vals, span)?;
            for (&t, s) in v.iter().zip(spans) {
                el.require_numeric(t, s, &format!("apply `{name}` to"))?;
            }
            match name {
                "remainder" => remainder(el, v[0], v[1], span)?,
                "fmod" => {
                    let divisor = nonzero_divisor(el, v[1], span)?;
                    el.push(Op::Binary(BinaryOp::Rem), vec![v[0], divisor], span)?
                }
                _ => floor_divide(el, v[0], v[1], span)?,
            }
        }
        // The bitwise ops on integers (and, or, xor, not also on bools) and the shifts on
        // integers: right_shift fills with the sign bit (with zeros on unsigned types, as
        // numpy's), shift_right_logical with zeros, shift_right_arithmetic with the top bit
        // (lax's, on unsigned types too); a shift by the width or more gives 0 (all sign
        // bits), as XLA's.
        "bitwise_and"
        | "bitwise_or"
        | "bitwise_xor"
        | "left_shift"
        | "right_shift"
        | "shift_right_logical"
        | "shift_right_arithmetic" => {
            let vals = values(el, env, &b, &[0, 1])?;
            let spans = [vals[0].1, vals[1].1];
            let v = el.unify(vals, span)?;
            let (op, domain) = match name {
                "bitwise_and" => (BinaryOp::And, Domain::Bits),
                "bitwise_or" => (BinaryOp::Or, Domain::Bits),
                "bitwise_xor" => (BinaryOp::Xor, Domain::Bits),
                "left_shift" => (BinaryOp::Shl, Domain::Int),
                "right_shift" if !el.ty(v[0]).dtype.is_unsigned() => (BinaryOp::Shr, Domain::Int),
                "shift_right_arithmetic" => (BinaryOp::Shr, Domain::Int),
                _ => (BinaryOp::ShrU, Domain::Int),
            };
            for (&t, s) in v.iter().zip(spans) {
                require(el, t, s, domain, name)?;
            }
            el.push(Op::Binary(op), v, span)?
        }
        // bitwise_not(x): the bits flipped (x xor all ones); logical not on bools.
        "bitwise_not" => {
            let (x, s) = tensor(el, env, 0)?;
            require(el, x, s, Domain::Bits, name)?;
            let dtype = el.ty(x).dtype;
            let ones = match dtype {
                DType::Bool => Lit::Bool(true),
                d if d.is_unsigned() => Lit::Int(d.int_range().1),
                _ => Lit::Int(-1),
            };
            let ones = el.lit_to(ones, dtype, span)?;
            binary(el, BinaryOp::Xor, x, ones, span)?
        }
        "arange" => {
            let e = b.get(0).expect("required");
            let n = positive_int(el, env, e)?;
            el.push(Op::Iota { dtype: DType::I32, shape: vec![n], axis: 0 }, vec![], span)?
        }
        _ => {
            return Err(Diagnostic::error(
                "E9999",
                format!("internal compiler error: builtin `{name}` has no lowering"),
            )
            .at(span, "called here"))
        }
    };
    Ok(Val::Tensor(v))
}

fn values<'a>(el: &mut Elab<'a>, env: &mut Env, b: &Bound<'a>, idx: &[usize]) -> R<Vec<(Val, Span)>> {
    idx.iter()
        .map(|&i| {
            let e = b.get(i).expect("required");
            Ok((el.eval(env, e)?, e.span))
        })
        .collect()
}

/// A list of arrays (`concat([a, b])`, `stack([a, b])`), evaluated, with the dtype they
/// promote to.
fn arrays_arg<'a>(el: &mut Elab<'a>, env: &mut Env, e: &'a Expr, name: &str) -> R<(Vec<(Value, Span)>, DType)> {
    let ExprKind::List(items) = &e.kind else {
        return Err(Diagnostic::error("E0212", format!("`{name}` takes a list of arrays"))
            .at(e.span, "not a list")
            .help(format!("write `{name}([a, b], axis=0)`")));
    };
    if items.is_empty() {
        return Err(Diagnostic::error("E0212", format!("`{name}` needs at least one array")).at(e.span, "empty list"));
    }
    let mut ts = vec![];
    let mut dtype: Option<DType> = None;
    for item in items {
        let v = el.eval(env, item)?;
        let t = el.tensor_arg(v, item.span)?;
        dtype = Some(dtype.map_or(el.ty(t).dtype, |d| promote(d, el.ty(t).dtype)));
        ts.push((t, item.span));
    }
    Ok((ts, dtype.expect("non-empty")))
}

/// The arrays joined along `axis` (the one array itself when there is one).
fn join(el: &mut Elab, vs: Vec<Value>, axis: usize, span: Span) -> R<Value> {
    if vs.len() == 1 {
        Ok(vs[0])
    } else {
        el.push(Op::Concat { axis }, vs, span)
    }
}

/// The error unless `t`'s dtype is in `domain`.
fn require(el: &Elab, t: Value, span: Span, domain: Domain, name: &str) -> R<()> {
    let ty = el.ty(t);
    if domain.accepts(ty.dtype) {
        return Ok(());
    }
    Err(Diagnostic::error("E0202", format!("`{name}` needs {}, not {ty}", domain.describe()))
        .at(span, format!("this is {ty}"))
        .help("convert it first, e.g. `cast(x, i32)`"))
}

/// numpy's remainder, with the divisor's sign (jnp.remainder): r = rem(a, b), plus b where r
/// is not 0 and its sign differs from b's; an integer divisor of 0 counts as 1.
pub(crate) fn remainder(el: &mut Elab, a: Value, b: Value, span: Span) -> R<Value> {
    let dtype = el.ty(a).dtype;
    let zero = el.lit_to(Lit::Int(0), dtype, span)?;
    let b = nonzero_divisor(el, b, span)?;
    let r = el.push(Op::Binary(BinaryOp::Rem), vec![a, b], span)?;
    let nonzero = binary(el, BinaryOp::Ne, r, zero, span)?;
    let r_negative = binary(el, BinaryOp::Lt, r, zero, span)?;
    let b_negative = binary(el, BinaryOp::Lt, b, zero, span)?;
    let signs_differ = binary(el, BinaryOp::Ne, r_negative, b_negative, span)?;
    let shift = and(el, signs_differ, nonzero, span)?;
    let shifted = binary(el, BinaryOp::Add, r, b, span)?;
    el.push(Op::Select, vec![shift, shifted, r], span)
}

/// An integer divisor with 1 for 0, as jnp's remainder and fmod take it (floats as they are).
fn nonzero_divisor(el: &mut Elab, b: Value, span: Span) -> R<Value> {
    let dtype = el.ty(b).dtype;
    if !dtype.is_int() {
        return Ok(b);
    }
    let zero = el.lit_to(Lit::Int(0), dtype, span)?;
    let is_zero = binary(el, BinaryOp::Eq, b, zero, span)?;
    let one = el.splat(Lit::Int(1), dtype, &el.ty(b).shape.clone(), span)?;
    el.push(Op::Select, vec![is_zero, one, b], span)
}

/// numpy's floor_divide as jnp computes it: for integers the truncated quotient, less 1 where
/// the signs differ and the division is inexact (never, unsigned); for floats
/// (a - rem(a, b)) / b, less 1 where the remainder's sign differs from b's, rounded to an
/// integer.
fn floor_divide(el: &mut Elab, a: Value, b: Value, span: Span) -> R<Value> {
    let dtype = el.ty(a).dtype;
    if dtype.is_unsigned() {
        return el.push(Op::Binary(BinaryOp::Quot), vec![a, b], span);
    }
    let zero = el.lit_to(Lit::Int(0), dtype, span)?;
    let one = el.lit_to(Lit::Int(1), dtype, span)?;
    let r = el.push(Op::Binary(BinaryOp::Rem), vec![a, b], span)?;
    let inexact = binary(el, BinaryOp::Ne, r, zero, span)?;
    let sign = |el: &mut Elab, v: Value| el.push(Op::Unary(UnaryOp::Sign), vec![v], span);
    let (q, signed) = if dtype.is_int() {
        (el.push(Op::Binary(BinaryOp::Quot), vec![a, b], span)?, sign(el, a)?)
    } else {
        let d = binary(el, BinaryOp::Sub, a, r, span)?;
        (binary(el, BinaryOp::Div, d, b, span)?, sign(el, r)?)
    };
    let sb = sign(el, b)?;
    let differ = binary(el, BinaryOp::Ne, signed, sb, span)?;
    let adjust = and(el, differ, inexact, span)?;
    let less = binary(el, BinaryOp::Sub, q, one, span)?;
    let q = el.push(Op::Select, vec![adjust, less, q], span)?;
    if dtype.is_int() {
        Ok(q)
    } else {
        el.push(Op::Unary(UnaryOp::Round), vec![q], span)
    }
}

/// take_along_axis(x, indices, axis) once the indices have x's shape but along `axis`: each
/// element of x at its indices' position on the other axes. `in_range` says the indices are
/// known to be in [0, n) (so no bounds are checked), `mode` what out-of-bounds ones read.
pub(crate) fn take_along(
    el: &mut Elab,
    x: Value,
    indices: Value,
    axis: usize,
    (in_range, mode): (bool, Mode),
    span: Span,
) -> R<Value> {
    let shape = el.ty(indices).shape.clone();
    let mut items = vec![];
    for (d, &n) in el.ty(x).shape.clone().iter().enumerate() {
        items.push(if d == axis {
            Item::Data { index: indices, in_range }
        } else if n == 1 {
            Item::Const(0)
        } else {
            let iota = el.push(Op::Iota { dtype: DType::I32, shape: shape.clone(), axis: d }, vec![], span)?;
            Item::Data { index: iota, in_range: true }
        });
    }
    indexing::gather(el, x, &items, mode, span)
}

/// The `axis` argument of a builtin that works on all of x flattened without one (take,
/// argmax, cumsum): x, or x flattened, and the axis.
fn axis_or_flattened<'a>(
    el: &mut Elab<'a>,
    env: &mut Env,
    e: Option<&'a Expr>,
    x: Value,
    span: Span,
) -> R<(Value, usize)> {
    match e {
        None => Ok((el.reshape(x, vec![el.ty(x).num_elements()], span)?, 0)),
        Some(e) => Ok((x, axis_arg(el, env, e, el.ty(x).rank())?)),
    }
}

/// A `where=` mask for reducing `x`: bools that broadcast to x's shape.
fn mask_arg<'a>(el: &mut Elab<'a>, env: &mut Env, e: &'a Expr, x: Value) -> R<Value> {
    let v = el.eval(env, e)?;
    let m = el.tensor_arg(v, e.span)?;
    let (mt, xt) = (el.ty(m).clone(), el.ty(x).clone());
    if mt.dtype != DType::Bool || broadcast_shapes(&mt.shape, &xt.shape).as_deref() != Some(&xt.shape[..]) {
        return Err(Diagnostic::error("E0203", format!("cannot mask {xt} with {mt}"))
            .at(e.span, format!("this is {mt}"))
            .note("a `where=` mask is bool and broadcasts to the reduced array's shape"));
    }
    el.broadcast(m, &xt.shape, e.span)
}

/// `len` elements of `x` along `axis` from `start` by `step` (the other axes whole).
pub(crate) fn axis_slice(
    el: &mut Elab,
    x: Value,
    axis: usize,
    start: usize,
    len: usize,
    step: i64,
    span: Span,
) -> R<Value> {
    let xt = el.ty(x).clone();
    let mut starts = vec![0; xt.rank()];
    let mut steps = vec![1; xt.rank()];
    let mut shape = xt.shape.clone();
    starts[axis] = start;
    steps[axis] = if len == 1 { 1 } else { step };
    shape[axis] = len;
    el.push(Op::Slice { start: starts, step: steps, shape }, vec![x], span)
}

/// A cumulative reduction along axis 0 of `x`: a scan whose carry starts at `identity` and
/// takes `op` with each row, each step's carry stacked.
fn cumulative(el: &mut Elab, x: Value, op: BinaryOp, identity: Lit, span: Span) -> R<Value> {
    let xt = el.ty(x).clone();
    let row = TensorType::new(xt.dtype, xt.shape[1..].to_vec());
    let mut body = Func::new("cumulative", span);
    let carry = body.add_param("c", row.clone(), span);
    let x_row = body.add_param("x", row.clone(), span);
    let next = body.push(Op::Binary(op), vec![carry, x_row], span).map_err(|e| internal(&e, span))?;
    body.results = vec![next, next];
    body.result_names = vec!["c".into(), "y".into()];
    let init = el.lit_to(identity, xt.dtype, span)?;
    let init = el.broadcast(init, &row.shape, span)?;
    let scan = Op::Scan {
        body: Bodies::new(vec![body]),
        carries: 1,
        scanned: 1,
        reverse: false,
        checkpoint: false,
        result: 1,
    };
    el.push(scan, vec![init, x], span)
}

fn internal(message: &str, span: Span) -> Diagnostic {
    Diagnostic::error("E9999", format!("internal compiler error: {message}")).at(span, "here")
}

fn einsum_error(what: &str, span: Span) -> Diagnostic {
    Diagnostic::error("E0235", format!("bad einsum: {what}"))
        .at(span, "not as the subscripts say")
        .help("write e.g. `einsum(\"bij,bjk->bik\", a, b)`: one letter per axis, operands separated by commas")
}

/// The letters of each operand and of the result of einsum `subscripts` for `n` operands; the
/// result's are, without `->`, the letters that appear once, in alphabetical order.
fn einsum_labels(subscripts: &str, n: usize, span: Span) -> R<(Vec<Vec<char>>, Vec<char>)> {
    let text: String = subscripts.chars().filter(|c| !c.is_whitespace()).collect();
    let (left, right) = match text.split_once("->") {
        Some((l, r)) => (l, Some(r)),
        None => (text.as_str(), None),
    };
    let letters = |part: &str| -> R<Vec<char>> {
        let v: Vec<char> = part.chars().collect();
        if let Some(c) = v.iter().find(|c| !c.is_ascii_alphabetic()) {
            return Err(einsum_error(&format!("`{c}` is not a letter (`...` is not supported)"), span));
        }
        if let Some(c) = v.iter().find(|&&c| v.iter().filter(|&&d| d == c).count() > 1) {
            return Err(einsum_error(&format!("`{c}` names two axes of `{part}` (diagonals are not supported)"), span));
        }
        Ok(v)
    };
    let inputs: Vec<Vec<char>> = left.split(',').map(letters).collect::<R<_>>()?;
    if inputs.len() != n {
        return Err(einsum_error(&format!("`{subscripts}` is for {} operands, given {n}", inputs.len()), span));
    }
    let all: Vec<char> = inputs.iter().flatten().copied().collect();
    let output = match right {
        Some(r) => letters(r)?,
        None => {
            let mut once: Vec<char> =
                all.iter().copied().filter(|c| all.iter().filter(|d| *d == c).count() == 1).collect();
            once.sort_unstable();
            once
        }
    };
    if let Some(c) = output.iter().find(|c| !all.contains(c)) {
        return Err(einsum_error(&format!("the result's `{c}` is in no operand"), span));
    }
    Ok((inputs, output))
}

/// `v` (axes `labels`) summed over the axes whose letter is not in `keep`.
fn sum_out(el: &mut Elab, v: Value, labels: &[char], keep: &[char], span: Span) -> R<(Value, Vec<char>)> {
    let axes: Vec<usize> = (0..labels.len()).filter(|&i| !keep.contains(&labels[i])).collect();
    let v = reduce(el, ReduceKind::Sum, v, &axes, false, span)?;
    Ok((v, labels.iter().copied().filter(|c| keep.contains(c)).collect()))
}

/// The contraction of two labelled operands keeping the letters in `keep`: the letters both
/// share and keep are batch axes, those they share and drop are summed by one product.
fn contract(
    el: &mut Elab,
    (a, la): (Value, Vec<char>),
    (b, lb): (Value, Vec<char>),
    keep: &[char],
    span: Span,
) -> R<(Value, Vec<char>)> {
    let needed_a: Vec<char> = keep.iter().chain(&lb).copied().collect();
    let needed_b: Vec<char> = keep.iter().chain(&la).copied().collect();
    let (a, la) = sum_out(el, a, &la, &needed_a, span)?;
    let (b, lb) = sum_out(el, b, &lb, &needed_b, span)?;
    let batch: Vec<char> = la.iter().copied().filter(|c| lb.contains(c) && keep.contains(c)).collect();
    let summed: Vec<char> = la.iter().copied().filter(|c| lb.contains(c) && !keep.contains(c)).collect();
    let free_a: Vec<char> = la.iter().copied().filter(|c| !lb.contains(c)).collect();
    let free_b: Vec<char> = lb.iter().copied().filter(|c| !la.contains(c)).collect();
    let size = |el: &Elab, v: Value, labels: &[char], group: &[char]| -> Vec<usize> {
        group.iter().map(|c| el.ty(v).shape[labels.iter().position(|l| l == c).expect("present")]).collect()
    };
    let arrange = |el: &mut Elab, v: Value, labels: &[char], groups: [&[char]; 3]| -> R<Value> {
        let perm: Vec<usize> = groups
            .iter()
            .flat_map(|g| g.iter())
            .map(|c| labels.iter().position(|l| l == c).expect("present"))
            .collect();
        let moved = el.transpose(v, perm, span)?;
        let mut shape: Vec<usize> = vec![];
        if !groups[0].is_empty() {
            shape.push(size(el, v, labels, groups[0]).iter().product());
        }
        shape.push(size(el, v, labels, groups[1]).iter().product());
        shape.push(size(el, v, labels, groups[2]).iter().product());
        el.reshape(moved, shape, span)
    };
    let (batch_shape, fa, fb) = (size(el, a, &la, &batch), size(el, a, &la, &free_a), size(el, b, &lb, &free_b));
    let a2 = arrange(el, a, &la, [&batch, &free_a, &summed])?;
    let b2 = arrange(el, b, &lb, [&batch, &summed, &free_b])?;
    let product = el.push(Op::Dot, vec![a2, b2], span)?;
    let shape = [batch_shape, fa, fb].concat();
    let v = el.reshape(product, shape, span)?;
    Ok((v, [batch, free_a, free_b].concat()))
}

/// numpy's pad widths for `rank` axes: `n` (every side), `[before, after]` (every axis) or
/// one `[before, after]` per axis.
fn pad_widths<'a>(el: &mut Elab<'a>, env: &mut Env, e: &'a Expr, rank: usize) -> R<Vec<(usize, usize)>> {
    let bad = |what: &str| {
        Diagnostic::error("E0234", format!("bad pad widths: {what}"))
            .at(e.span, "pad widths")
            .help("write `2`, `[1, 2]` or one `[before, after]` per axis, each from 0 to 2^20")
    };
    let width = |v: i64| if (0..1 << 20).contains(&v) { Ok(v as usize) } else { Err(bad("out of range")) };
    match &e.kind {
        ExprKind::List(items) if items.iter().all(|i| matches!(i.kind, ExprKind::List(_))) && !items.is_empty() => {
            if items.len() != rank {
                return Err(bad(&format!("{} pairs for {rank} axes", items.len())));
            }
            items
                .iter()
                .map(|i| match int_list(el, env, i)?[..] {
                    [b, a] => Ok((width(b)?, width(a)?)),
                    _ => Err(bad("a pair has two widths")),
                })
                .collect()
        }
        ExprKind::List(_) => match int_list(el, env, e)?[..] {
            [b, a] => Ok(vec![(width(b)?, width(a)?); rank]),
            _ => Err(bad("a pair has two widths")),
        },
        _ => {
            let w = width(el.const_int(env, e)?)?;
            Ok(vec![(w, w); rank])
        }
    }
}

/// Where (column - row) `cmp` k over the last two axes of `shape`.
fn diagonal_band(el: &mut Elab, shape: &[usize], k: i64, cmp: BinaryOp, span: Span) -> R<Value> {
    let r = shape.len();
    let row = el.push(Op::Iota { dtype: DType::I64, shape: shape.to_vec(), axis: r - 2 }, vec![], span)?;
    let col = el.push(Op::Iota { dtype: DType::I64, shape: shape.to_vec(), axis: r - 1 }, vec![], span)?;
    let offset = binary(el, BinaryOp::Sub, col, row, span)?;
    let k = el.lit_to(Lit::Int(k), DType::I64, span)?;
    binary(el, cmp, offset, k, span)
}

/// A value as bools: bools as they are, numbers as `x != 0`.
fn truth(el: &mut Elab, v: Val, span: Span) -> R<Value> {
    let t = el.tensor_arg(v, span)?;
    if el.ty(t).dtype == DType::Bool {
        return Ok(t);
    }
    let zero = el.lit_to(Lit::Int(0), el.ty(t).dtype, span)?;
    binary(el, BinaryOp::Ne, t, zero, span)
}

/// An argument of integer indices (E0231 otherwise).
fn index_arg<'a>(el: &mut Elab<'a>, env: &mut Env, b: &Bound<'a>, i: usize) -> R<Value> {
    let e = b.get(i).expect("required");
    let v = el.eval(env, e)?;
    let t = el.tensor_arg(v, e.span)?;
    if !el.ty(t).dtype.is_int() {
        return Err(indexing::not_integers(el.ty(t), e.span));
    }
    indexing::signed(el, t, e.span)
}

/// The `mode=` and `fill_value=` arguments (at `mode` and `fill`) of a fill-by-default gather.
fn mode_arg<'a>(el: &mut Elab<'a>, env: &mut Env, b: &Bound<'a>, mode: usize, fill: usize) -> R<Mode> {
    let value = b.get(fill).map(|e| el.const_lit(env, e)).transpose()?;
    indexing::mode_arg(b.get(mode), value, Mode::Fill(None))
}

/// A list of one start per axis of `shape`: integer constants or scalars known when the
/// program runs; negative ones count from the end.
fn starts_arg<'a>(el: &mut Elab<'a>, env: &mut Env, e: &'a Expr, shape: &[usize]) -> R<Vec<Value>> {
    let ExprKind::List(items) = &e.kind else {
        return Err(Diagnostic::error("E0234", "expected a list of starts")
            .at(e.span, "not a list")
            .help("write one start per axis, e.g. `[i, 0]`"));
    };
    if items.len() != shape.len() {
        return Err(Diagnostic::error(
            "E0234",
            format!("{} start{} given for {} axes", items.len(), plural(items.len()), shape.len()),
        )
        .at(e.span, format!("expected {} starts", shape.len())));
    }
    items
        .iter()
        .zip(shape)
        .map(|(item, &n)| {
            let v = el.eval(env, item)?;
            indexing::window_start(el, v, n, item.span)
        })
        .collect()
}

fn float_arg(el: &mut Elab, x: Value, s: Span, name: &str) -> R<Value> {
    el.require_numeric(x, s, &format!("apply `{name}` to"))?;
    el.float_of(x, s)
}

fn last_axis(el: &Elab, x: Value, s: Span, name: &str) -> R<usize> {
    let rank = el.ty(x).rank();
    if rank == 0 {
        return Err(Diagnostic::error("E0205", format!("`{name}` needs an array with at least one axis"))
            .at(s, "this is a scalar"));
    }
    Ok(rank - 1)
}

/// a && b on bools: select(a, b, false).
pub(crate) fn and(el: &mut Elab, a: Value, b: Value, span: Span) -> R<Value> {
    let no = el.splat(Lit::Bool(false), DType::Bool, &el.ty(a).shape.clone(), span)?;
    el.push(Op::Select, vec![a, b, no], span)
}

/// A binary op on operands that broadcast against each other.
pub(crate) fn binary(el: &mut Elab, op: BinaryOp, a: Value, b: Value, span: Span) -> R<Value> {
    let v = el.unify(vec![(Val::Tensor(a), span), (Val::Tensor(b), span)], span)?;
    el.push(Op::Binary(op), v, span)
}

/// The first position of the maximum (`kind` Max) or minimum along `axis`, as i32: argmax and
/// argmin. A NaN counts as the extreme.
pub(crate) fn arg_extreme(
    el: &mut Elab,
    kind: ReduceKind,
    x: Value,
    axis: usize,
    keepdims: bool,
    span: Span,
) -> R<Value> {
    let xt = el.ty(x).clone();
    let extreme = reduce(el, kind, x, &[axis], true, span)?;
    let extreme = el.broadcast(extreme, &xt.shape, span)?;
    let mut hit = binary(el, BinaryOp::Eq, x, extreme, span)?;
    if xt.dtype.is_float() {
        // A NaN makes the extreme NaN, and the first NaN is the answer.
        let nan_extreme = binary(el, BinaryOp::Ne, extreme, extreme, span)?;
        let nan = binary(el, BinaryOp::Ne, x, x, span)?;
        hit = el.push(Op::Select, vec![nan_extreme, nan, hit], span)?;
    }
    let position = el.push(Op::Iota { dtype: DType::I32, shape: xt.shape.clone(), axis }, vec![], span)?;
    let past = el.splat(Lit::Int(xt.shape[axis] as i64), DType::I32, &xt.shape, span)?;
    let candidates = el.push(Op::Select, vec![hit, position, past], span)?;
    reduce(el, ReduceKind::Min, candidates, &[axis], keepdims, span)
}

/// Reduces `x` over `axes` (sorted), keeping them as size-1 axes when `keepdims`.
fn reduce(el: &mut Elab, kind: ReduceKind, x: Value, axes: &[usize], keepdims: bool, span: Span) -> R<Value> {
    if axes.is_empty() {
        return Ok(x);
    }
    let shape = el.ty(x).shape.clone();
    let r = el.push(Op::Reduce { kind, axes: axes.to_vec() }, vec![x], span)?;
    if keepdims {
        let kept = shape.iter().enumerate().map(|(i, &d)| if axes.contains(&i) { 1 } else { d }).collect();
        el.reshape(r, kept, span)
    } else {
        Ok(r)
    }
}

/// logsumexp(x) = log(sum(exp(x - m))) + m with m = max(x), replaced by 0 where it is not
/// finite so that rows of -inf give -inf rather than NaN (as jax.nn.logsumexp).
fn logsumexp(el: &mut Elab, x: Value, axes: &[usize], keepdims: bool, span: Span) -> R<Value> {
    let m = reduce(el, ReduceKind::Max, x, axes, true, span)?;
    let dtype = el.ty(m).dtype;
    let abs_m = el.push(Op::Unary(UnaryOp::Abs), vec![m], span)?;
    let inf = el.lit_to(Lit::Float(f64::INFINITY), dtype, span)?;
    let finite = binary(el, BinaryOp::Lt, abs_m, inf, span)?;
    let zero = el.lit_to(Lit::Float(0.0), dtype, span)?;
    let shape = el.ty(m).shape.clone();
    let zero = el.broadcast(zero, &shape, span)?;
    let m = el.push(Op::Select, vec![finite, m, zero], span)?;
    let shifted = binary(el, BinaryOp::Sub, x, m, span)?;
    let e = el.push(Op::Unary(UnaryOp::Exp), vec![shifted], span)?;
    let total = reduce(el, ReduceKind::Sum, e, axes, true, span)?;
    let l = el.push(Op::Unary(UnaryOp::Log), vec![total], span)?;
    let r = binary(el, BinaryOp::Add, l, m, span)?;
    if keepdims {
        Ok(r)
    } else {
        let shape = el.ty(r).shape.iter().enumerate().filter(|(i, _)| !axes.contains(i)).map(|(_, &d)| d).collect();
        el.reshape(r, shape, span)
    }
}

/// one_hot(labels, n)[..., j] = (labels[...] == j), as `dtype`; out-of-range labels give zeros.
fn one_hot(el: &mut Elab, labels: Value, n: usize, dtype: DType, span: Span) -> R<Value> {
    let lt = el.ty(labels).clone();
    let mut shape = lt.shape.clone();
    shape.push(n);
    let axis = shape.len() - 1;
    let iota = el.push(Op::Iota { dtype: lt.dtype, shape: shape.clone(), axis }, vec![], span)?;
    let expanded =
        el.push(Op::Broadcast { shape: shape.clone(), dims: (0..lt.rank()).collect() }, vec![labels], span)?;
    let eq = el.push(Op::Binary(BinaryOp::Eq), vec![expanded, iota], span)?;
    el.convert(eq, dtype, span)
}

pub(crate) fn normalize_axis(a: i64, rank: usize) -> Option<usize> {
    let r = rank as i64;
    let a = if a < 0 { a + r } else { a };
    (0..r).contains(&a).then_some(a as usize)
}

pub(crate) fn axis_arg<'a>(el: &mut Elab<'a>, env: &mut Env, e: &'a Expr, rank: usize) -> R<usize> {
    let a = el.const_int(env, e)?;
    normalize_axis(a, rank).ok_or_else(|| axis_error(a, rank, e.span))
}

pub(crate) fn axis_error(a: i64, rank: usize, span: Span) -> Diagnostic {
    Diagnostic::error("E0205", format!("axis {a} is out of bounds for an array of rank {rank}"))
        .at(span, "out of bounds")
        .note(format!("valid axes are {} to {}", -(rank as i64), rank as i64 - 1))
}

/// An `axis` argument: an integer or a list of integers; negative axes count from the end.
/// Returned sorted.
fn axes_arg<'a>(el: &mut Elab<'a>, env: &mut Env, e: &'a Expr, rank: usize) -> R<Vec<usize>> {
    let raw = match &e.kind {
        ExprKind::List(_) => int_list(el, env, e)?,
        _ => vec![el.const_int(env, e)?],
    };
    let mut axes = vec![];
    for a in raw {
        let n = normalize_axis(a, rank).ok_or_else(|| axis_error(a, rank, e.span))?;
        if axes.contains(&n) {
            return Err(Diagnostic::error("E0205", format!("axis {a} is given twice")).at(e.span, "repeated axis"));
        }
        axes.push(n);
    }
    axes.sort_unstable();
    Ok(axes)
}

/// The `axis` argument of softmax and logsumexp: the last axis when absent.
fn axes_or_last<'a>(
    el: &mut Elab<'a>,
    env: &mut Env,
    e: Option<&'a Expr>,
    x: Value,
    s: Span,
    name: &str,
) -> R<Vec<usize>> {
    match e {
        None => Ok(vec![last_axis(el, x, s, name)?]),
        Some(e) => axes_arg(el, env, e, el.ty(x).rank()),
    }
}

pub(crate) fn bool_arg<'a>(el: &mut Elab<'a>, env: &mut Env, e: Option<&'a Expr>) -> R<bool> {
    bool_arg_or(el, env, e, false)
}

/// A `true`/`false` argument, `default` when absent.
fn bool_arg_or<'a>(el: &mut Elab<'a>, env: &mut Env, e: Option<&'a Expr>, default: bool) -> R<bool> {
    let Some(e) = e else { return Ok(default) };
    match el.eval(env, e)? {
        Val::Lit(Lit::Bool(b)) => Ok(b),
        v => {
            Err(Diagnostic::error("E0216", "expected `true` or `false`")
                .at(e.span, format!("this is {}", el.describe(&v))))
        }
    }
}

pub(crate) fn int_list<'a>(el: &mut Elab<'a>, env: &mut Env, e: &'a Expr) -> R<Vec<i64>> {
    let ExprKind::List(items) = &e.kind else {
        return Err(Diagnostic::error("E0216", "expected a list of integers")
            .at(e.span, "not a list")
            .help("write e.g. `[2, 3]`"));
    };
    items.iter().map(|i| el.const_int(env, i)).collect()
}

fn positive_int<'a>(el: &mut Elab<'a>, env: &mut Env, e: &'a Expr) -> R<usize> {
    let n = el.const_int(env, e)?;
    if n <= 0 || n as u64 > kiln_ir::types::MAX_ELEMENTS {
        return Err(
            Diagnostic::error("E0213", format!("size {n} is not a valid dimension")).at(e.span, "must be positive")
        );
    }
    Ok(n as usize)
}

/// An argument that is one non-negative integer or a list of two (height, width); `min` is the
/// smallest value allowed.
fn pair_arg<'a>(
    el: &mut Elab<'a>,
    env: &mut Env,
    e: Option<&'a Expr>,
    what: &str,
    min: i64,
    default: usize,
) -> R<[usize; 2]> {
    let Some(e) = e else { return Ok([default, default]) };
    let values = match &e.kind {
        ExprKind::List(_) => int_list(el, env, e)?,
        _ => vec![el.const_int(env, e)?; 2],
    };
    let range = min..1 << 20;
    match *values.as_slice() {
        [h, w] if range.contains(&h) && range.contains(&w) => Ok([h as usize, w as usize]),
        [h, w] => {
            let bad = if range.contains(&h) { w } else { h };
            Err(Diagnostic::error("E0222", format!("a {what} of {bad} is out of range"))
                .at(e.span, format!("each must be at least {min} and below 2^20")))
        }
        _ => Err(Diagnostic::error("E0222", format!("expected one integer or a pair [height, width] as the {what}"))
            .at(e.span, format!("{} integers", values.len()))),
    }
}

/// The shape for `reshape(x, dims)` of an array of `n` elements; one dimension may be -1.
fn reshape_target(n: usize, dims: &[i64]) -> Option<Vec<usize>> {
    let holes = dims.iter().filter(|&&d| d == -1).count();
    if holes > 1 || dims.iter().any(|&d| d == 0 || d < -1) {
        return None;
    }
    let known: u128 = dims.iter().filter(|&&d| d != -1).map(|&d| d as u128).product();
    if known == 0 || known > kiln_ir::types::MAX_ELEMENTS as u128 {
        return None;
    }
    let fill = if holes == 1 {
        if !(n as u128).is_multiple_of(known) {
            return None;
        }
        (n as u128 / known) as usize
    } else {
        if known != n as u128 {
            return None;
        }
        1
    };
    Some(dims.iter().map(|&d| if d == -1 { fill } else { d as usize }).collect())
}
