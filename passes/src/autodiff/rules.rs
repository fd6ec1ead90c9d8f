//! Derivative rules: for every op, its forward-mode rule (tangent of the result from the
//! tangents of the operands) and its reverse-mode rule (cotangents of the operands from the
//! cotangent of the result). Both matches are exhaustive over [`Op`]. Formulas are in terms of
//! operands x, a, b, result y, tangents t and cotangent g.
//!
//! Ties: `max`/`min` (and so `relu`, which is `max(x, 0)`) split the derivative evenly between
//! equal operands, as jax.numpy.maximum does; reductions with `max`/`min` split it evenly among
//! all elements equal to the extreme. `abs` has derivative 0 at 0 (sign(0) = 0).

use super::Builder;
use kiln_ir::ops::Bodies;
use kiln_ir::{BinaryOp, ConvWindow, DType, Func, Op, ReduceKind, ScatterKind, TensorType, UnaryOp, Value};

/// sign(x) = [x > 0] - [x < 0], in x's dtype.
fn sign(b: &mut Builder, x: Value) -> Value {
    let ty = b.ty(x).clone();
    let zero = b.zeros(&ty);
    let pos = b.binary(BinaryOp::Gt, x, zero);
    let neg = b.binary(BinaryOp::Lt, x, zero);
    let (p, n) = (b.mask(pos, ty.dtype), b.mask(neg, ty.dtype));
    b.sub(p, n)
}

/// The derivative dy/dx of a unary op.
fn unary_derivative(b: &mut Builder, op: UnaryOp, x: Value, y: Value) -> Value {
    let ty = b.ty(x).clone();
    match op {
        // d(-x) = -1
        UnaryOp::Neg => b.constant(-1.0, &ty),
        // d|x| = sign(x)
        UnaryOp::Abs => sign(b, x),
        // d exp(x) = exp(x) = y
        UnaryOp::Exp => y,
        // d expm1(x) = exp(x) = y + 1
        UnaryOp::Expm1 => {
            let one = b.constant(1.0, &ty);
            b.add(y, one)
        }
        // d log(x) = 1 / x
        UnaryOp::Log => {
            let one = b.constant(1.0, &ty);
            b.div(one, x)
        }
        // d log1p(x) = 1 / (1 + x)
        UnaryOp::Log1p => {
            let one = b.constant(1.0, &ty);
            let u = b.add(one, x);
            b.div(one, u)
        }
        // d sqrt(x) = 1 / (2 sqrt(x)) = 0.5 / y
        UnaryOp::Sqrt => {
            let half = b.constant(0.5, &ty);
            b.div(half, y)
        }
        // d x^(-1/2) = -1/2 x^(-3/2) = -0.5 y / x
        UnaryOp::Rsqrt => {
            let q = b.div(y, x);
            b.scale(q, -0.5)
        }
        // d tanh(x) = 1 - y^2
        UnaryOp::Tanh => {
            let one = b.constant(1.0, &ty);
            let y2 = b.mul(y, y);
            b.sub(one, y2)
        }
        // d sigmoid(x) = y (1 - y)
        UnaryOp::Sigmoid => {
            let one = b.constant(1.0, &ty);
            let c = b.sub(one, y);
            b.mul(y, c)
        }
        // d sin(x) = cos(x)
        UnaryOp::Sin => b.unary(UnaryOp::Cos, x),
        // d cos(x) = -sin(x)
        UnaryOp::Cos => {
            let s = b.unary(UnaryOp::Sin, x);
            b.neg(s)
        }
        // d erfinv(x) = sqrt(pi)/2 exp(y^2)
        UnaryOp::ErfInv => {
            let y2 = b.mul(y, y);
            let e = b.unary(UnaryOp::Exp, y2);
            b.scale(e, std::f64::consts::PI.sqrt() / 2.0)
        }
        // Piecewise constant: d floor(x) = d ceil(x) = d round(x) = d trunc(x) = d sign(x) = 0
        // (JAX's derivative, away from the jumps).
        UnaryOp::Floor | UnaryOp::Ceil | UnaryOp::Round | UnaryOp::Trunc | UnaryOp::Sign => b.zeros(&ty),
        // d erf(x) = 2/sqrt(pi) exp(-x^2)
        UnaryOp::Erf => {
            let x2 = b.mul(x, x);
            let n = b.neg(x2);
            let e = b.unary(UnaryOp::Exp, n);
            b.scale(e, std::f64::consts::FRAC_2_SQRT_PI)
        }
    }
}

/// The partial derivatives (dy/da, dy/db) of a differentiable binary op, or None for the
/// linear ones handled directly (add, sub) and comparisons.
fn binary_partials(b: &mut Builder, op: BinaryOp, x: Value, z: Value, y: Value) -> Option<(Value, Value)> {
    let ty = b.ty(x).clone();
    match op {
        // d(a b) = (b, a)
        BinaryOp::Mul => Some((z, x)),
        // d(a / b) = (1 / b, -y / b)
        BinaryOp::Div => {
            let one = b.constant(1.0, &ty);
            let da = b.div(one, z);
            let q = b.div(y, z);
            Some((da, b.neg(q)))
        }
        // d max(a, b) = ([a > b] + [a == b] / 2, the rest); min likewise with a < b.
        BinaryOp::Max | BinaryOp::Min => {
            let wins = if op == BinaryOp::Max { BinaryOp::Gt } else { BinaryOp::Lt };
            let w = b.binary(wins, x, z);
            let e = b.binary(BinaryOp::Eq, x, z);
            let (w, e) = (b.mask(w, ty.dtype), b.mask(e, ty.dtype));
            let half = b.scale(e, 0.5);
            let da = b.add(w, half);
            let one = b.constant(1.0, &ty);
            Some((da, b.sub(one, da)))
        }
        // d a^b = (b a^(b-1), log(a) a^b)
        BinaryOp::Pow => {
            let one = b.constant(1.0, &ty);
            let bm1 = b.sub(z, one);
            let p = b.binary(BinaryOp::Pow, x, bm1);
            let da = b.mul(z, p);
            let l = b.unary(UnaryOp::Log, x);
            Some((da, b.mul(l, y)))
        }
        // d rem(a, b) = (1, -trunc(a / b)) (lax.rem's), away from the jumps.
        BinaryOp::Rem => {
            let one = b.constant(1.0, &ty);
            let q = b.div(x, z);
            let t = b.unary(UnaryOp::Trunc, q);
            Some((one, b.neg(t)))
        }
        BinaryOp::Add | BinaryOp::Sub => None,
        BinaryOp::Eq | BinaryOp::Ne | BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge => None,
        // Integer-only: no derivative.
        BinaryOp::Quot
        | BinaryOp::And
        | BinaryOp::Or
        | BinaryOp::Xor
        | BinaryOp::Shl
        | BinaryOp::Shr
        | BinaryOp::ShrU => None,
    }
}

/// ∂prod(x)/∂x over `axes`: each element's product of the others, with zeros handled exactly
/// (as JAX's rule): with no zero in its group, p / x_i; with one zero, p at the zero and 0
/// elsewhere; with more, 0; p being the product of the group's nonzero elements.
fn prod_partials(b: &mut Builder, x: Value, axes: &[usize]) -> Value {
    let xt = b.ty(x).clone();
    let zero = b.zeros(&xt);
    let is_zero = b.binary(BinaryOp::Eq, x, zero);
    let zeros = b.mask(is_zero, xt.dtype);
    let count = b.push(Op::Reduce { kind: ReduceKind::Sum, axes: axes.to_vec() }, vec![zeros]);
    let one = b.constant(1.0, &xt);
    let nonzero = b.push(Op::Select, vec![is_zero, one, x]);
    let p = b.push(Op::Reduce { kind: ReduceKind::Prod, axes: axes.to_vec() }, vec![nonzero]);
    let (p, count) = (unreduce(b, p, &xt, axes), unreduce(b, count, &xt, axes));
    let none = b.binary(BinaryOp::Eq, count, zero);
    let one_zero = b.binary(BinaryOp::Eq, count, one);
    let others = b.div(p, x);
    let at_nonzero = b.push(Op::Select, vec![none, others, zero]);
    let at_zero = b.push(Op::Select, vec![one_zero, p, zero]);
    b.push(Op::Select, vec![is_zero, at_zero, at_nonzero])
}

/// For `max`/`min` reductions: the mask of elements equal to the extreme (as x's dtype) and
/// the number of them per output element.
fn extreme_mask(b: &mut Builder, x: Value, y: Value, axes: &[usize]) -> (Value, Value) {
    let xt = b.ty(x).clone();
    let kept: Vec<usize> = (0..xt.rank()).filter(|a| !axes.contains(a)).collect();
    let yb = b.push(Op::Broadcast { shape: xt.shape.clone(), dims: kept }, vec![y]);
    let eq = b.binary(BinaryOp::Eq, x, yb);
    let mask = b.mask(eq, xt.dtype);
    let count = b.push(Op::Reduce { kind: ReduceKind::Sum, axes: axes.to_vec() }, vec![mask]);
    (mask, count)
}

/// The indices `idx` into axis `axis` of `x` counted from the end when negative (once), as
/// gather and scatter read them.
fn counted_from_end(b: &mut Builder, idx: Value, x: Value, axis: usize) -> Value {
    let it = b.ty(idx).clone();
    let n = b.ty(x).shape[axis] as f64;
    let (zero, count) = (b.constant(0.0, &it), b.constant(n, &it));
    let negative = b.binary(BinaryOp::Lt, idx, zero);
    let wrapped = b.add(idx, count);
    b.push(Op::Select, vec![negative, wrapped, idx])
}

/// The indices as gather uses them: counted from the end, then clamped into the axis.
fn clamped(b: &mut Builder, idx: Value, x: Value, axis: usize) -> Value {
    let it = b.ty(idx).clone();
    let last = b.ty(x).shape[axis] as f64 - 1.0;
    let j = counted_from_end(b, idx, x, axis);
    let (zero, last) = (b.constant(0.0, &it), b.constant(last, &it));
    let low = b.binary(BinaryOp::Max, j, zero);
    b.binary(BinaryOp::Min, low, last)
}

/// 1.0 (of `dtype`) for the updates of a scatter along `axis` whose index lies inside x's axis
/// (the ones a scatter applies), 0.0 for the dropped ones, in the updates' shape.
fn applied(b: &mut Builder, idx: Value, x: Value, axis: usize, dtype: DType) -> Value {
    let it = b.ty(idx).clone();
    let n = b.ty(x).shape[axis] as f64;
    let j = counted_from_end(b, idx, x, axis);
    let (zero, count) = (b.constant(0.0, &it), b.constant(n, &it));
    let above = b.binary(BinaryOp::Ge, j, zero);
    let below = b.binary(BinaryOp::Lt, j, count);
    let (above, below) = (b.mask(above, dtype), b.mask(below, dtype));
    let inside = b.mul(above, below);
    spread_over_updates(b, inside, x, axis)
}

/// A value of idx's shape broadcast over the updates of a scatter into `x` along `axis`.
fn spread_over_updates(b: &mut Builder, v: Value, x: Value, axis: usize) -> Value {
    let (xs, vs) = (&b.ty(x).shape, &b.ty(v).shape);
    let shape = xs[..axis].iter().chain(vs).chain(&xs[axis + 1..]).copied().collect();
    let dims = (axis..axis + vs.len()).collect();
    b.push(Op::Broadcast { shape, dims }, vec![v])
}

/// For a `set` scatter, 1.0 for each applied update that is the last one to its element (the
/// one whose value lands), 0.0 for the others: each update's position in idx's row-major
/// order, scattered with `max` into a copy of x holding -1, read back and compared.
fn landed(b: &mut Builder, idx: Value, x: Value, axis: usize, dtype: DType) -> Value {
    let it = b.ty(idx).clone();
    let position_type = TensorType::new(DType::I64, it.shape.clone());
    let mut position = b.constant(0.0, &position_type);
    let mut stride = 1.0;
    for d in (0..it.rank()).rev() {
        let along = b.push(Op::Iota { dtype: DType::I64, shape: it.shape.clone(), axis: d }, vec![]);
        let scaled = b.scale(along, stride);
        position = b.add(position, scaled);
        stride *= it.shape[d] as f64;
    }
    let positions = spread_over_updates(b, position, x, axis);
    let none = b.constant(-1.0, &TensorType::new(DType::I64, b.ty(x).shape.clone()));
    let last = b.push(Op::Scatter { axis, kind: ScatterKind::Max }, vec![none, idx, positions]);
    let read = b.push(Op::Gather { axis }, vec![last, idx]);
    let same = b.binary(BinaryOp::Eq, read, positions);
    let same = b.mask(same, dtype);
    let inside = applied(b, idx, x, axis, dtype);
    b.mul(same, inside)
}

/// For a `mul` scatter of updates u into x: the product p of the applied updates landing on
/// each element of x (1 where none does), and for each update the product of the others
/// landing on its element (0 for a dropped one), exact through zero updates as prod's
/// derivative: with z zeros and a product n of the nonzero updates at an element, a nonzero
/// update's others are n / u where z = 0 (else 0), a zero update's are n where z = 1 (else 0).
fn scatter_products(b: &mut Builder, args: &[Value], axis: usize) -> (Value, Value) {
    let (x, idx, u) = (args[0], args[1], args[2]);
    let (xt, ut) = (b.ty(x).clone(), b.ty(u).clone());
    let inside = applied(b, idx, x, axis, xt.dtype);
    let (zero_u, one_u) = (b.zeros(&ut), b.constant(1.0, &ut));
    let is_zero = b.binary(BinaryOp::Eq, u, zero_u);
    let nonzero = b.push(Op::Select, vec![is_zero, one_u, u]);
    let zero_mask = b.mask(is_zero, xt.dtype);
    let zero_mask = b.mul(zero_mask, inside);
    let ones_x = b.constant(1.0, &xt);
    let zeros_x = b.zeros(&xt);
    let mul = |b: &mut Builder, base: Value, v: Value| {
        b.push(Op::Scatter { axis, kind: ScatterKind::Mul }, vec![base, idx, v])
    };
    let p = mul(b, ones_x, u);
    let n = mul(b, ones_x, nonzero);
    let z = b.push(Op::Scatter { axis, kind: ScatterKind::Add }, vec![zeros_x, idx, zero_mask]);
    let (n, z) = (b.push(Op::Gather { axis }, vec![n, idx]), b.push(Op::Gather { axis }, vec![z, idx]));
    let (no_zero, one_zero) = (b.binary(BinaryOp::Eq, z, zero_u), b.binary(BinaryOp::Eq, z, one_u));
    let quotient = b.div(n, nonzero);
    let when_nonzero = b.push(Op::Select, vec![no_zero, quotient, zero_u]);
    let when_zero = b.push(Op::Select, vec![one_zero, n, zero_u]);
    let others = b.push(Op::Select, vec![is_zero, when_zero, when_nonzero]);
    (p, b.mul(others, inside))
}

/// For a `max` or `min` scatter with result `y`: 1.0 where x's element is y's, the same for
/// each applied update equal to the element it lands on, and how many tie at each element
/// (the derivative is shared among ties, as for reductions).
fn extreme_scatter_masks(b: &mut Builder, args: &[Value], y: Value, axis: usize) -> (Value, Value, Value) {
    let (x, idx, u) = (args[0], args[1], args[2]);
    let dtype = b.ty(x).dtype;
    let at_x = b.binary(BinaryOp::Eq, x, y);
    let at_x = b.mask(at_x, dtype);
    let landed_on = b.push(Op::Gather { axis }, vec![y, idx]);
    let at_u = b.binary(BinaryOp::Eq, u, landed_on);
    let at_u = b.mask(at_u, dtype);
    let inside = applied(b, idx, x, axis, dtype);
    let at_u = b.mul(at_u, inside);
    let zeros = zeros_like(b, x);
    let from_updates = b.push(Op::Scatter { axis, kind: ScatterKind::Add }, vec![zeros, idx, at_u]);
    let count = b.add(at_x, from_updates);
    (at_x, at_u, count)
}

/// Zeros of `v`'s type.
fn zeros_like(b: &mut Builder, v: Value) -> Value {
    let ty = b.ty(v).clone();
    b.zeros(&ty)
}

/// Broadcasts a reduction's result (or cotangent) back to the operand's shape.
fn unreduce(b: &mut Builder, v: Value, xt: &TensorType, axes: &[usize]) -> Value {
    let kept = (0..xt.rank()).filter(|a| !axes.contains(a)).collect();
    b.push(Op::Broadcast { shape: xt.shape.clone(), dims: kept }, vec![v])
}

/// Swaps the last two axes.
fn swap_last(b: &mut Builder, x: Value) -> Value {
    let r = b.ty(x).rank();
    let mut perm: Vec<usize> = (0..r).collect();
    perm.swap(r - 1, r - 2);
    b.push(Op::Transpose { perm }, vec![x])
}

/// Forward mode: the tangent of `y = op(args)` from the operands' tangents (None is zero).
pub fn jvp(b: &mut Builder, op: &Op, args: &[Value], y: Value, t: &[Option<Value>]) -> Option<Value> {
    let tangent = |b: &mut Builder, i: usize| -> Value {
        let ty = b.ty(args[i]).clone();
        b.or_zeros(t[i], &ty)
    };
    Some(match op {
        // A bitcast's bits move in jumps: no derivative, as lax.bitcast_convert_type's.
        Op::Const(_) | Op::Data(_) | Op::Iota { .. } | Op::Bitcast { .. } | Op::Argsort { .. } => return None,
        // y' = t dy/dx
        Op::Unary(u) => {
            let d = unary_derivative(b, *u, args[0], y);
            b.mul(t[0]?, d)
        }
        // (a + b)' = ta + tb
        Op::Binary(BinaryOp::Add) => {
            let (ta, tb) = (tangent(b, 0), tangent(b, 1));
            b.add(ta, tb)
        }
        // (a - b)' = ta - tb
        Op::Binary(BinaryOp::Sub) => {
            let (ta, tb) = (tangent(b, 0), tangent(b, 1));
            b.sub(ta, tb)
        }
        // y' = ta dy/da + tb dy/db
        Op::Binary(op) => {
            let (da, db) = binary_partials(b, *op, args[0], args[1], y)?;
            let (ta, tb) = (tangent(b, 0), tangent(b, 1));
            let (x, z) = (b.mul(ta, da), b.mul(tb, db));
            b.add(x, z)
        }
        // select(p, a, b)' = select(p, ta, tb)
        Op::Select => {
            let (ta, tb) = (tangent(b, 1), tangent(b, 2));
            b.push(Op::Select, vec![args[0], ta, tb])
        }
        Op::Convert { to } => b.push(Op::Convert { to: *to }, vec![t[0]?]),
        // sum(x)' = sum(t)
        Op::Reduce { kind: ReduceKind::Sum, axes } => {
            b.push(Op::Reduce { kind: ReduceKind::Sum, axes: axes.clone() }, vec![t[0]?])
        }
        // prod(x)' = sum(t ∂prod/∂x)
        Op::Reduce { kind: ReduceKind::Prod, axes } => {
            let d = prod_partials(b, args[0], axes);
            let p = b.mul(t[0]?, d);
            b.push(Op::Reduce { kind: ReduceKind::Sum, axes: axes.clone() }, vec![p])
        }
        // max(x)' = sum(t [x == max]) / #[x == max]
        Op::Reduce { axes, .. } => {
            let (mask, count) = extreme_mask(b, args[0], y, axes);
            let picked = b.mul(t[0]?, mask);
            let s = b.push(Op::Reduce { kind: ReduceKind::Sum, axes: axes.clone() }, vec![picked]);
            b.div(s, count)
        }
        // Bilinear ops: (a b)' = ta b + a tb, conv(x, w)' = conv(tx, w) + conv(x, tw).
        Op::Dot | Op::Conv(_) => {
            let mut acc = None;
            if let Some(ta) = t[0] {
                acc = Some(b.push(op.clone(), vec![ta, args[1]]));
            }
            if let Some(tb) = t[1] {
                let d = b.push(op.clone(), vec![args[0], tb]);
                acc = Some(b.accumulate(acc, d));
            }
            acc?
        }
        // Linear shape ops apply to the tangent as they do to the value.
        Op::Reshape { .. } | Op::Transpose { .. } | Op::Broadcast { .. } | Op::Slice { .. } => {
            b.push(op.clone(), vec![t[0]?])
        }
        Op::Concat { .. } => {
            let ts: Vec<Value> = (0..args.len()).map(|i| tangent(b, i)).collect();
            b.push(op.clone(), ts)
        }
        // Linear in the array operands; the starts are integers.
        Op::DynamicSlice { .. } => {
            b.push(op.clone(), std::iter::once(t[0]?).chain(args[1..].iter().copied()).collect())
        }
        Op::DynamicUpdateSlice => {
            let (tx, tu) = (tangent(b, 0), tangent(b, 1));
            b.push(op.clone(), [tx, tu].into_iter().chain(args[2..].iter().copied()).collect())
        }
        // Linear in x; the indices are integers.
        Op::Gather { .. } => b.push(op.clone(), vec![t[0]?, args[1]]),
        // scatter_add and scatter_set are linear in (x, updates) for fixed indices.
        Op::Scatter { kind: ScatterKind::Add | ScatterKind::Set, .. } => {
            let (tx, tu) = (tangent(b, 0), tangent(b, 2));
            b.push(op.clone(), vec![tx, args[1], tu])
        }
        // y = x p, p the product of the updates landing on each element:
        // y' = tx p + x scatter_add(0, idx, tu * (product of the other updates there)).
        Op::Scatter { axis, kind: ScatterKind::Mul } => {
            let (tx, tu) = (tangent(b, 0), tangent(b, 2));
            let (p, others) = scatter_products(b, args, *axis);
            let from_x = b.mul(tx, p);
            let weighted = b.mul(tu, others);
            let zeros = zeros_like(b, args[0]);
            let spread = b.push(Op::Scatter { axis: *axis, kind: ScatterKind::Add }, vec![zeros, args[1], weighted]);
            let from_u = b.mul(args[0], spread);
            b.add(from_x, from_u)
        }
        // The tangent of the extreme, shared among the operands that tie for it.
        Op::Scatter { axis, .. } => {
            let (tx, tu) = (tangent(b, 0), tangent(b, 2));
            let (at_x, at_u, count) = extreme_scatter_masks(b, args, y, *axis);
            let from_x = b.mul(tx, at_x);
            let picked = b.mul(tu, at_u);
            let from_u = b.push(Op::Scatter { axis: *axis, kind: ScatterKind::Add }, vec![from_x, args[1], picked]);
            b.div(from_u, count)
        }
        // loop(lo, hi, cs, xs)' = loop(lo, hi, (cs, tcs), (xs, txs)) over the body's jvp, its
        // parameters ordered as a loop's: (i, cs, tcs, xs, txs).
        Op::Loop { body, checkpoint, result } => {
            let f = &body.funcs()[0];
            let carries = f.results.len();
            let layout = TangentLayout::of(f, &[1, 1 + carries], &[]);
            let body = Bodies::new(vec![layout.arrange(&super::jvp(f, &f.name))]);
            // Operands: (lo, hi, cs, tcs, xs, txs); operand k + 1 is parameter k.
            let operands = layout.operands(b, &args[1..], |b, p| tangent(b, p + 1));
            let position = layout.params[1].floats.iter().position(|&p| p == result + 1)?;
            b.push(
                Op::Loop { body, checkpoint: *checkpoint, result: carries + position },
                [args[0]].into_iter().chain(operands).collect(),
            )
        }
        // while(cs, xs)' = while((cs, tcs), (xs, txs)) over the condition's and the body's
        // jvps (the condition's has no tangent result: it reads the primal carries only).
        Op::While { bodies, result } => {
            let [cond, body] = bodies.funcs() else { unreachable!("the type rule checks a condition and a body") };
            let carries = body.results.len();
            let layout = TangentLayout::of(body, &[carries], &[]);
            let cond = super::jvp(cond, &cond.name).with_params(&layout.param_order);
            let jvps = Bodies::new(vec![cond, layout.arrange(&super::jvp(body, &body.name))]);
            // Operands: (cs, tcs, xs, txs); operand k is parameter k.
            let operands = layout.operands(b, args, tangent);
            let position = layout.params[0].floats.iter().position(|&p| p == *result)?;
            b.push(Op::While { bodies: jvps, result: carries + position }, operands)
        }
        // scan(cs, xs, ws)' = scan((cs, tcs), (xs, txs), (ws, tws)) over the body's jvp, its
        // parameters so ordered and its results ordered (cs, tcs, ys, tys).
        Op::Scan { body, carries, scanned, reverse, checkpoint, result } => {
            let f = &body.funcs()[0];
            let (k, m) = (*carries, *scanned);
            let layout = TangentLayout::of(f, &[k, k + m], &[k]);
            let body = Bodies::new(vec![layout.arrange(&super::jvp(f, &f.name))]);
            let operands = layout.operands(b, args, tangent);
            let (float_cs, float_ys) = (&layout.results[0].floats, &layout.results[1].floats);
            let position = match float_cs.iter().position(|&q| q == *result) {
                Some(q) => k + q,
                None => k + float_cs.len() + (f.results.len() - k) + float_ys.iter().position(|&q| q == *result)?,
            };
            let (carries, scanned) = (k + float_cs.len(), m + layout.params[1].floats.len());
            let op = Op::Scan { body, carries, scanned, reverse: *reverse, checkpoint: *checkpoint, result: position };
            b.push(op, operands)
        }
        // cond(p, xs)' = cond(p, xs, txs) over the branches' jvps: the taken branch runs
        // again with its tangents.
        Op::Cond { branches, result } => {
            let jvps = branches.map(|f| Ok::<_, ()>(super::jvp(f, &f.name))).expect("infallible");
            let then = &branches.funcs()[0];
            let mut operands = args.to_vec();
            for (i, &a) in args.iter().enumerate().skip(1) {
                if super::differentiable(b.ty(a)) {
                    operands.push(tangent(b, i));
                }
            }
            let results = then.result_types();
            let position = results[..*result].iter().filter(|t| super::differentiable(t)).count();
            b.push(Op::Cond { branches: jvps, result: results.len() + position }, operands)
        }
    })
}

/// Reverse mode: the cotangent of each operand of `y = op(args)` given the cotangent `g` of y,
/// for the operands where `wants` is set.
pub fn vjp(b: &mut Builder, op: &Op, args: &[Value], y: Value, g: Value, wants: &[bool]) -> Vec<Option<Value>> {
    match op {
        Op::Const(_) | Op::Data(_) | Op::Iota { .. } => vec![],
        // ga = g dy/dx
        Op::Unary(u) => {
            let d = unary_derivative(b, *u, args[0], y);
            vec![Some(b.mul(g, d))]
        }
        Op::Binary(BinaryOp::Add) => vec![Some(g), Some(g)],
        Op::Binary(BinaryOp::Sub) => vec![Some(g), Some(b.neg(g))],
        // (ga, gb) = (g dy/da, g dy/db)
        Op::Binary(op) => match binary_partials(b, *op, args[0], args[1], y) {
            Some((da, db)) => {
                let ga = wants[0].then(|| b.mul(g, da));
                let gb = wants[1].then(|| b.mul(g, db));
                vec![ga, gb]
            }
            None => vec![None, None],
        },
        // (ga, gb) = (select(p, g, 0), select(p, 0, g))
        Op::Select => {
            let ty = b.ty(g).clone();
            let zero = b.zeros(&ty);
            let ga = wants[1].then(|| b.push(Op::Select, vec![args[0], g, zero]));
            let gb = wants[2].then(|| b.push(Op::Select, vec![args[0], zero, g]));
            vec![None, ga, gb]
        }
        Op::Bitcast { .. } | Op::Argsort { .. } => vec![None],
        Op::Convert { .. } => {
            let from = b.ty(args[0]).dtype;
            vec![wants[0].then(|| b.push(Op::Convert { to: from }, vec![g]))]
        }
        // Each element receives the cotangent of the output element it was summed into.
        Op::Reduce { kind: ReduceKind::Sum, axes } => {
            let xt = b.ty(args[0]).clone();
            vec![Some(unreduce(b, g, &xt, axes))]
        }
        // Each element receives g times the product of the others.
        Op::Reduce { kind: ReduceKind::Prod, axes } => {
            let xt = b.ty(args[0]).clone();
            let d = prod_partials(b, args[0], axes);
            let spread = unreduce(b, g, &xt, axes);
            vec![Some(b.mul(spread, d))]
        }
        // The extreme's cotangent, shared evenly among tied elements.
        Op::Reduce { axes, .. } => {
            let xt = b.ty(args[0]).clone();
            let (mask, count) = extreme_mask(b, args[0], y, axes);
            let share = b.div(g, count);
            let spread = unreduce(b, share, &xt, axes);
            vec![Some(b.mul(spread, mask))]
        }
        // For y = a b: ga = g b^T, gb = a^T g (over the last two axes).
        Op::Dot => {
            let ga = wants[0].then(|| {
                let bt = swap_last(b, args[1]);
                b.push(Op::Dot, vec![g, bt])
            });
            let gb = wants[1].then(|| {
                let at = swap_last(b, args[0]);
                b.push(Op::Dot, vec![at, g])
            });
            vec![ga, gb]
        }
        Op::Conv(window) => {
            let gx = wants[0].then(|| conv_input_cotangent(b, window, args[0], args[1], g));
            let gw = wants[1].then(|| conv_kernel_cotangent(b, window, args[0], args[1], g));
            vec![gx, gw]
        }
        Op::Reshape { .. } => {
            let shape = b.ty(args[0]).shape.clone();
            vec![Some(b.push(Op::Reshape { shape }, vec![g]))]
        }
        // Transposed back with the inverse permutation.
        Op::Transpose { perm } => {
            let mut inverse = vec![0; perm.len()];
            for (i, &p) in perm.iter().enumerate() {
                inverse[p] = i;
            }
            vec![Some(b.push(Op::Transpose { perm: inverse }, vec![g]))]
        }
        // Summed over the axes the broadcast created or stretched, size-1 axes restored.
        Op::Broadcast { shape, dims } => {
            let xt = b.ty(args[0]).clone();
            let axes: Vec<usize> = (0..shape.len())
                .filter(|d| match dims.iter().position(|e| e == d) {
                    None => true,
                    Some(i) => xt.shape[i] == 1 && shape[*d] != 1,
                })
                .collect();
            let summed = if axes.is_empty() { g } else { b.push(Op::Reduce { kind: ReduceKind::Sum, axes }, vec![g]) };
            let restored =
                if *b.ty(summed) == xt { summed } else { b.push(Op::Reshape { shape: xt.shape }, vec![summed]) };
            vec![Some(restored)]
        }
        Op::Slice { start, step, shape } => {
            let xt = b.ty(args[0]).clone();
            vec![Some(unslice(b, g, &xt, start, step, shape))]
        }
        // Each operand receives its window of g.
        Op::Concat { axis } => {
            let mut offset = 0;
            args.iter()
                .zip(wants)
                .map(|(&a, &want)| {
                    let at = b.ty(a).clone();
                    let mut start = vec![0; at.rank()];
                    start[*axis] = offset;
                    offset += at.shape[*axis];
                    want.then(|| {
                        b.push(Op::Slice { start, step: vec![1; at.rank()], shape: at.shape.clone() }, vec![g])
                    })
                })
                .collect()
        }
        // The adjoint of taking a window is putting it back among zeros, and of replacing a
        // window, keeping the rest (for x) and taking the window (for the update).
        Op::DynamicSlice { .. } => {
            let zeros = b.zeros(&b.ty(args[0]).clone());
            let starts = args[1..].iter().copied();
            vec![Some(b.push(Op::DynamicUpdateSlice, [zeros, g].into_iter().chain(starts).collect()))]
        }
        Op::DynamicUpdateSlice => {
            let ut = b.ty(args[1]).clone();
            let zeros = b.zeros(&ut);
            let starts: Vec<Value> = args[2..].to_vec();
            let gx = wants[0]
                .then(|| b.push(Op::DynamicUpdateSlice, [g, zeros].into_iter().chain(starts.clone()).collect()));
            let gu = wants[1].then(|| {
                b.push(Op::DynamicSlice { sizes: ut.shape.clone() }, std::iter::once(g).chain(starts).collect())
            });
            vec![gx, gu]
        }
        // The adjoint of a gather is a scatter-add of g to the elements it read (clamped
        // indices included: a clamped read took the edge element).
        Op::Gather { axis } => {
            let zeros = zeros_like(b, args[0]);
            let at = clamped(b, args[1], args[0], *axis);
            vec![Some(b.push(Op::Scatter { axis: *axis, kind: ScatterKind::Add }, vec![zeros, at, g])), None]
        }
        // x's elements pass g through; each applied update receives g at its element.
        Op::Scatter { axis, kind: ScatterKind::Add } => {
            let dtype = b.ty(g).dtype;
            let read = b.push(Op::Gather { axis: *axis }, vec![g, args[1]]);
            let inside = applied(b, args[1], args[0], *axis, dtype);
            vec![Some(g), None, wants[2].then(|| b.mul(read, inside))]
        }
        // Elements overwritten receive nothing through x; only the update that lands receives
        // g.
        Op::Scatter { axis, kind: ScatterKind::Set } => {
            let dtype = b.ty(g).dtype;
            let gx = wants[0].then(|| {
                let zeros = zeros_like(b, args[2]);
                b.push(op.clone(), vec![g, args[1], zeros])
            });
            let gu = wants[2].then(|| {
                let read = b.push(Op::Gather { axis: *axis }, vec![g, args[1]]);
                let last = landed(b, args[1], args[0], *axis, dtype);
                b.mul(read, last)
            });
            vec![gx, None, gu]
        }
        // gx = g p; each applied update receives g x at its element times the other updates'
        // product there.
        Op::Scatter { axis, kind: ScatterKind::Mul } => {
            let (p, others) = scatter_products(b, args, *axis);
            let gx = wants[0].then(|| b.mul(g, p));
            let gu = wants[2].then(|| {
                let gx_times_x = b.mul(g, args[0]);
                let read = b.push(Op::Gather { axis: *axis }, vec![gx_times_x, args[1]]);
                b.mul(read, others)
            });
            vec![gx, None, gu]
        }
        Op::Scatter { axis, .. } => {
            let (at_x, at_u, count) = extreme_scatter_masks(b, args, y, *axis);
            let shared = b.div(g, count);
            let gx = wants[0].then(|| b.mul(shared, at_x));
            let gu = wants[2].then(|| {
                let read = b.push(Op::Gather { axis: *axis }, vec![shared, args[1]]);
                b.mul(read, at_u)
            });
            vec![gx, None, gu]
        }
        Op::Cond { .. } | Op::Loop { .. } | Op::While { .. } | Op::Scan { .. } => {
            unreachable!("the cotangents of ops with bodies are taken for all results at once: vjp_structured")
        }
    }
}

/// Reverse mode through an op with bodies: the cotangent of each operand of the op, given
/// the cotangents `gs` of its results (one per result, None where a result has none), for
/// the operands where `wants` is set. One reverse loop or conditional serves all results.
pub fn vjp_structured(
    b: &mut Builder,
    op: &Op,
    args: &[Value],
    gs: &[Option<Value>],
    wants: &[bool],
) -> Vec<Option<Value>> {
    match op {
        // loop(lo, hi, cs, xs) with constant bounds is scan(cs, [lo, ..., hi - 1], xs) of the
        // body with its index as the row, differentiated by the scan rule (residuals saved, as
        // lax.fori_loop with a static trip count is). With bounds known only at run time
        // nothing can be stacked in a static plan: a reverse loop over k = 0 .. hi - lo at step
        // j = hi - 1 - k carries the cotangents of the float carries (gs at first, zeros where
        // none) and the sums of those of the float xs, each step applying the body's vjp at the
        // carries entering step j, which it recomputes from the start: exact, quadratic in the
        // trip count.
        Op::Loop { body, checkpoint, .. } => {
            let f = &body.funcs()[0];
            let (carries, index) = (f.results.len(), b.ty(args[0]).clone());
            // Stacks that would pass kiln's shape limits are not made: those steps recompute.
            let fits = |n: usize| (1..=carries).all(|p| stackable(&f.params[p].ty, n).is_ok());
            if let Some(trips) = static_trips(b, args[0], args[1]).filter(|&n| fits(n)) {
                let iota = b.push(Op::Iota { dtype: index.dtype, shape: vec![trips], axis: 0 }, vec![]);
                let lo = b.push(Op::Broadcast { shape: vec![trips], dims: vec![] }, vec![args[0]]);
                let indices = b.add(iota, lo);
                // The scan's body takes (cs, i, xs); the loop's, (i, cs, xs).
                let order: Vec<usize> = (1..=carries).chain([0]).chain(carries + 1..f.params.len()).collect();
                let scan = Op::Scan {
                    body: Bodies::new(vec![f.with_params(&order)]),
                    carries,
                    scanned: 1,
                    reverse: false,
                    checkpoint: *checkpoint,
                    result: 0,
                };
                // The scan's operands, (cs, indices, xs), from the loop's (lo, hi, cs, xs).
                fn as_scan<T: Copy>(loop_operands: &[T], carries: usize, row: T) -> Vec<T> {
                    let (cs, xs) = loop_operands[2..].split_at(carries);
                    cs.iter().copied().chain([row]).chain(xs.iter().copied()).collect()
                }
                let (scan_args, scan_wants) = (as_scan(args, carries, indices), as_scan(wants, carries, false));
                let mut cts = vjp_structured(b, &scan, &scan_args, gs, &scan_wants);
                cts.remove(carries);
                return [None, None].into_iter().chain(cts).collect();
            }
            let reverse = reverse_loop_body(f);
            let float = |p: usize| super::differentiable(&f.params[p].ty);
            let mut operands = vec![b.constant(0.0, &index), b.sub(args[1], args[0])];
            for p in (1..=carries).filter(|&p| float(p)) {
                operands.push(b.or_zeros(gs[p - 1], &f.params[p].ty));
            }
            for p in (carries + 1..f.params.len()).filter(|&p| float(p)) {
                operands.push(b.zeros(&f.params[p].ty));
            }
            operands.extend(args);
            let body = Bodies::new(vec![reverse]);
            let mut position = 0;
            let mut cts = vec![None, None];
            for (p, &want) in (1..f.params.len()).zip(&wants[2..]) {
                if !float(p) {
                    cts.push(None);
                    continue;
                }
                cts.push(want.then(|| {
                    b.push(Op::Loop { body: body.clone(), checkpoint: false, result: position }, operands.clone())
                }));
                position += 1;
            }
            cts
        }
        // while(cs, xs) with cotangents gs on its carries: a while loop that also counts its steps
        // gives the trip count n, and the loop is then loop(0, n, cs, xs) of a body that ignores
        // its index, whose rule (with a count known only at run time: recomputing) applies.
        Op::While { bodies, .. } => {
            let [cond, body] = bodies.funcs() else { unreachable!("the type rule checks a condition and a body") };
            let carries = body.results.len();
            let counter = TensorType::scalar(kiln_ir::DType::I32);
            let (counting, stepping) = (counting_while(cond, body, &counter), indexed_body(body, &counter));
            let zero = b.constant(0.0, &counter);
            let counting_args: Vec<Value> =
                args[..carries].iter().copied().chain([zero]).chain(args[carries..].iter().copied()).collect();
            let trips = b.push(Op::While { bodies: counting, result: carries }, counting_args);
            let loop_args: Vec<Value> = [zero, trips].into_iter().chain(args.iter().copied()).collect();
            let loop_wants: Vec<bool> = [false, false].into_iter().chain(wants.iter().copied()).collect();
            let mut cts = vjp_structured(
                b,
                &Op::Loop { body: stepping, checkpoint: false, result: 0 },
                &loop_args,
                gs,
                &loop_wants,
            );
            cts.drain(..2);
            cts
        }
        // cond(p, xs) with cotangents gs on its results: the cotangents of xs are
        // cond(p, xs, gs) over the branches' vjps (zeros where a result has no cotangent): the taken branch runs again, then backwards (jax.checkpoint of a branch).
        Op::Cond { branches, .. } => {
            let vjps = branches.map(|f| Ok::<_, ()>(super::vjp(f, &f.name, None))).expect("infallible");
            let then = &branches.funcs()[0];
            let results = then.result_types();
            let mut operands = args.to_vec();
            for (k, t) in results.iter().enumerate().filter(|(_, t)| super::differentiable(t)) {
                operands.push(b.or_zeros(gs[k], t));
            }
            let mut position = results.len();
            let mut cts = vec![None];
            for (i, &want) in wants.iter().enumerate().skip(1) {
                if !super::differentiable(b.ty(args[i])) {
                    cts.push(None);
                    continue;
                }
                cts.push(want.then(|| b.push(Op::Cond { branches: vjps.clone(), result: position }, operands.clone())));
                position += 1;
            }
            cts
        }
        // scan(cs, xs, ws) with cotangents gc on its last carries and gy on its stacked ys: the
        // body's vjp is split (super::residuals) into a forward part, run as a scan like the
        // primal that also stacks each row's residuals (in the workspace), and a backward part,
        // run as a scan the other way over the residual stacks, the rows it reads and gy,
        // carrying the cotangents of the float carries (gc at first) and the sums of those of
        // the float ws (zeros at first); its ys, stacked, are the cotangents of the float xs.
        // A checkpointed scan saves only the carries entering each row, and its backward part
        // recomputes the rest (jax.checkpoint of the body); so is a scan whose residual stacks
        // would pass kiln's shape limits (its carries' stacks are checked before
        // differentiating, `super::check_carry_stacks`).
        Op::Scan { body, carries, scanned, reverse, checkpoint, .. } => {
            let (f, k, m) = (&body.funcs()[0], *carries, *scanned);
            let n = b.ty(args[k]).shape[0];
            let split = super::residuals::Split::of(f, k, m, *checkpoint);
            let residuals_fit = split.forward.result_types()[f.results.len()..].iter().all(|t| stackable(t, n).is_ok());
            let (split, checkpoint) = if *checkpoint || residuals_fit {
                (split, *checkpoint)
            } else {
                (super::residuals::Split::of(f, k, m, true), true)
            };
            let forward = Bodies::new(vec![split.forward]);
            let results = f.results.len();
            let residuals: Vec<Value> = (0..split.residuals)
                .map(|q| {
                    let op = Op::Scan {
                        body: forward.clone(),
                        carries: k,
                        scanned: m,
                        reverse: *reverse,
                        checkpoint,
                        result: results + q,
                    };
                    b.push(op, args.to_vec())
                })
                .collect();
            let (fc, fx, fw, fy) = (split.float_carries, split.float_rows, split.float_captured, split.float_ys);
            let result_types = f.result_types();
            let mut operands: Vec<Value> = fc.iter().map(|&p| b.or_zeros(gs[p], &f.params[p].ty)).collect();
            for &p in &fw {
                operands.push(b.zeros(&f.params[p].ty));
            }
            operands.extend(&residuals);
            operands.extend(args[k..k + m].iter().zip(&split.rows_read).filter(|(_, &read)| read).map(|(&x, _)| x));
            for &q in &fy {
                let ty = stack_type(result_types[q], n);
                operands.push(b.or_zeros(gs[q], &ty));
            }
            operands.extend(&args[k + m..]);
            let (carries, scanned) = (fc.len() + fw.len(), operands.len() - fc.len() - fw.len() - (args.len() - k - m));
            let backward = Bodies::new(vec![split.backward]);
            let mut take = |result: usize| {
                let op = Op::Scan { body: backward.clone(), carries, scanned, reverse: !reverse, checkpoint, result };
                b.push(op, operands.clone())
            };
            (0..args.len())
                .map(|p| {
                    let position = match (fc.iter().position(|&q| q == p), fx.iter().position(|&q| q == p)) {
                        (Some(c), _) => c,
                        (_, Some(x)) => carries + x,
                        _ => fc.len() + fw.iter().position(|&q| q == p)?,
                    };
                    wants[p].then(|| take(position))
                })
                .collect()
        }
        _ => unreachable!("an op without bodies: vjp"),
    }
}

/// Where a loop body's values and their tangents go in the body's jvp, given as a loop's
/// body. A loop passes its body's parameters in groups (a counted loop's index, its carries
/// and the rest; a scan's carries, rows and captured arrays), each group followed by the
/// tangents of its float members, and takes the body's results so too (a scan's carries,
/// then its ys); a jvp takes and returns all tangents after all values.
struct TangentLayout {
    /// The groups of parameters and of results.
    params: Vec<Group>,
    results: Vec<Group>,
    /// The jvp's parameters and results in the loop's order.
    param_order: Vec<usize>,
    result_order: Vec<usize>,
}

/// Consecutive parameters (or results) of a loop body, and which of them are floats.
struct Group {
    members: std::ops::Range<usize>,
    floats: Vec<usize>,
}

impl TangentLayout {
    /// The layout of `f`'s jvp, its parameters grouped at `param_bounds` (each bound starts a
    /// new group) and its results at `result_bounds`.
    fn of(f: &Func, param_bounds: &[usize], result_bounds: &[usize]) -> TangentLayout {
        let (params, param_order) = interleave(&f.param_types(), param_bounds);
        let (results, result_order) = interleave(&f.result_types(), result_bounds);
        TangentLayout { params, results, param_order, result_order }
    }

    /// A jvp of a function with the body's parameters and results, in the loop's order.
    fn arrange(&self, jvp: &Func) -> Func {
        jvp.with_params(&self.param_order).with_results(&self.result_order)
    }

    /// The loop's operands given those of the body's parameters, `primal` (one each): each
    /// group followed by the tangents of its floats, `tangent(b, p)` for parameter p.
    fn operands(
        &self,
        b: &mut Builder,
        primal: &[Value],
        mut tangent: impl FnMut(&mut Builder, usize) -> Value,
    ) -> Vec<Value> {
        let mut operands = vec![];
        for group in &self.params {
            operands.extend(&primal[group.members.clone()]);
            operands.extend(group.floats.iter().map(|&p| tangent(b, p)));
        }
        operands
    }
}

/// Values of `types` in groups starting at `bounds` (and at 0), and the order of a jvp's
/// values (all of them, then the tangents of the floats) that puts after each group the
/// tangents of its floats.
fn interleave(types: &[&TensorType], bounds: &[usize]) -> (Vec<Group>, Vec<usize>) {
    let floats: Vec<usize> = (0..types.len()).filter(|&p| super::differentiable(types[p])).collect();
    let starts = std::iter::once(0).chain(bounds.iter().copied());
    let ends = bounds.iter().copied().chain([types.len()]);
    let mut order = vec![];
    let groups = starts
        .zip(ends)
        .map(|(start, end)| {
            let members = start..end;
            let group_floats: Vec<usize> = floats.iter().copied().filter(|p| members.contains(p)).collect();
            order.extend(members.clone());
            order.extend(
                group_floats.iter().map(|&p| types.len() + floats.iter().position(|&q| q == p).expect("a float")),
            );
            Group { members, floats: group_floats }
        })
        .collect();
    (groups, order)
}

/// A while loop's condition and body that also count the steps taken, in a carry of type
/// `counter` after the others.
fn counting_while(cond: &Func, body: &Func, counter: &TensorType) -> Bodies {
    let carries = body.results.len();
    let with_counter = |name: &str, f: &Func| {
        let mut b = Builder::new(name);
        let mut params: Vec<Value> =
            f.params.iter().map(|p| b.func.add_param(p.name.clone(), p.ty.clone(), Default::default())).collect();
        let n = b.func.add_param(super::fresh_name(f, "steps".into()), counter.clone(), Default::default());
        params.insert(carries, n);
        (b, params, n)
    };
    let (mut c, params, _) = with_counter("cond", cond);
    let go = inline(&mut c, cond, &[&params[..carries], &params[carries + 1..]].concat());
    c.func.results.extend(go);
    c.func.result_names.push("go".into());
    let (mut s, params, n) = with_counter("body", body);
    let mut next = inline(&mut s, body, &[&params[..carries], &params[carries + 1..]].concat());
    let one = s.constant(1.0, counter);
    next.push(s.add(n, one));
    for (k, v) in next.into_iter().enumerate() {
        s.func.results.push(v);
        s.func.result_names.push(format!("r{k}"));
    }
    let order: Vec<usize> = (0..carries).chain([body.params.len()]).chain(carries..body.params.len()).collect();
    Bodies::new(vec![c.func.with_params(&order), s.func.with_params(&order)])
}

/// A while loop's body as a counted loop's: an index parameter of type `index` first, unread.
fn indexed_body(body: &Func, index: &TensorType) -> Bodies {
    let mut b = Builder::new("body");
    b.func.add_param(super::fresh_name(body, "i".into()), index.clone(), Default::default());
    let params: Vec<Value> =
        body.params.iter().map(|p| b.func.add_param(p.name.clone(), p.ty.clone(), Default::default())).collect();
    for (k, v) in inline(&mut b, body, &params).into_iter().enumerate() {
        b.func.results.push(v);
        b.func.result_names.push(format!("r{k}"));
    }
    Bodies::new(vec![b.func])
}

/// The trip count of a loop whose bounds are constants, and positive.
fn static_trips(b: &Builder, lo: Value, hi: Value) -> Option<usize> {
    let constant = |v: Value| match b.func.inst(v).map(|i| &i.op) {
        Some(Op::Const(l)) => Some(l.as_f64() as i64),
        _ => None,
    };
    usize::try_from(constant(hi)? - constant(lo)?).ok().filter(|&n| n > 0)
}

/// The type of `trips` values of type `t`, stacked along a new first axis.
fn stack_type(t: &TensorType, trips: usize) -> TensorType {
    TensorType::new(t.dtype, std::iter::once(trips).chain(t.shape.iter().copied()).collect())
}

/// Whether `trips` values of type `t` stacked pass kiln's shape limits; otherwise why not.
pub(super) fn stackable(t: &TensorType, trips: usize) -> Result<(), String> {
    kiln_ir::types::check_shape(&stack_type(t, trips).shape)
}

/// The body of the reverse loop of a loop whose body is `f` and whose bounds are known at run
/// time only (see the `Op::Loop` rule of [`vjp_structured`]): parameters (k, cotangents of
/// the float carries, sums of the cotangents of the float xs, lo, hi, the initial carries,
/// xs...), results the first two groups after step j = hi - 1 - k.
fn reverse_loop_body(f: &Func) -> Func {
    let carries = f.results.len();
    let floats: Vec<usize> = (1..f.params.len()).filter(|&p| super::differentiable(&f.params[p].ty)).collect();
    let mut b = Builder::new("reverse");
    let index = f.params[0].ty.clone();
    let param = |b: &mut Builder, name: String, ty: &TensorType| b.func.add_param(name, ty.clone(), Default::default());
    let k = param(&mut b, "k".into(), &index);
    let cts: Vec<Value> = floats.iter().map(|&p| param(&mut b, format!("ct{p}"), &f.params[p].ty)).collect();
    let (lo, hi) = (param(&mut b, "lo".into(), &index), param(&mut b, "hi".into(), &index));
    let inits: Vec<Value> = (1..=carries).map(|p| param(&mut b, format!("c{p}"), &f.params[p].ty)).collect();
    let xs: Vec<Value> =
        (carries + 1..f.params.len()).map(|p| param(&mut b, format!("x{p}"), &f.params[p].ty)).collect();
    let one = b.constant(1.0, &index);
    let last = b.sub(hi, one);
    let j = b.sub(last, k);
    // The carries entering step j: the loop run from lo to j.
    let forward = Bodies::new(vec![f.clone()]);
    let entering: Vec<Value> = (0..carries)
        .map(|r| {
            let args = [lo, j].into_iter().chain(inits.iter().copied()).chain(xs.iter().copied()).collect();
            b.push(Op::Loop { body: forward.clone(), checkpoint: false, result: r }, args)
        })
        .collect();
    // The body's vjp at step j: (i, cs, xs, cotangents of the float results) -> (results,
    // cotangents of the float parameters after i, in order).
    let vjp = super::vjp(f, &f.name, None);
    let float_carries = floats.iter().filter(|&&p| p <= carries).count();
    let args: Vec<Value> = std::iter::once(j)
        .chain(entering)
        .chain(xs.iter().copied())
        .chain(cts[..float_carries].iter().copied())
        .collect();
    let out = inline(&mut b, &vjp, &args);
    let new_cts = &out[carries..];
    for (q, &ct) in new_cts.iter().enumerate() {
        let r = if q < float_carries { ct } else { b.add(cts[q], ct) };
        b.func.results.push(r);
        b.func.result_names.push(format!("r{q}"));
    }
    b.func
}

/// Copies `f`'s instructions into `b` with its parameters bound to `args`; returns its results.
fn inline(b: &mut Builder, f: &Func, args: &[Value]) -> Vec<Value> {
    b.func.inline(f, args, Default::default()).expect("a well-typed body inlines")
}

/// The adjoint of a strided slice: `g` placed back at the positions the slice read, zeros
/// elsewhere: along each axis, reversed for a negative step, then padded with step - 1 zeros
/// between elements and zeros up to the operand's ends.
fn unslice(b: &mut Builder, g: Value, xt: &TensorType, start: &[usize], step: &[i64], shape: &[usize]) -> Value {
    let mut cur = g;
    for axis in 0..xt.rank() {
        let n = shape[axis];
        let k = step[axis].unsigned_abs() as usize;
        let lowest = if step[axis] > 0 { start[axis] } else { start[axis] - (n - 1) * k };
        if step[axis] < 0 && n > 1 {
            cur = b.reverse(cur, axis);
        }
        let high = xt.shape[axis] - lowest - ((n - 1) * k + 1);
        cur = b.pad(cur, axis, lowest as i64, high as i64, k - 1);
    }
    cur
}

/// For y = conv(x, w) with window (s, lo, hi, ld, rd) along each axis, and D(n, d) =
/// (n - 1) d + 1 the extent of n elements d apart: the cotangent of x is g convolved with w
/// reversed in space and with its channels exchanged, with
///   stride' = ld, lhs_dilation' = s, rhs_dilation' = rd,
///   lo' = D(KH, rd) - lo - 1, hi' = D(H, ld) + D(KH, rd) - 1 - D(OH, s) - lo'
/// (jax.lax's transpose of conv_general_dilated in its left operand); the result is [N, H, W, C].
fn conv_input_cotangent(b: &mut Builder, window: &ConvWindow, x: Value, w: Value, g: Value) -> Value {
    let (xs, ws, gs) = (b.ty(x).shape.clone(), b.ty(w).shape.clone(), b.ty(g).shape.clone());
    let mut t = ConvWindow {
        stride: window.lhs_dilation,
        pad_lo: [0; 2],
        pad_hi: [0; 2],
        lhs_dilation: window.stride,
        rhs_dilation: window.rhs_dilation,
    };
    for a in 0..2 {
        let reach = ConvWindow::dilated(ws[a], window.rhs_dilation[a]);
        let lo = reach - window.pad_lo[a] as i128 - 1;
        let spread = ConvWindow::dilated(gs[1 + a], window.stride[a]);
        t.pad_lo[a] = lo as i64;
        t.pad_hi[a] = (ConvWindow::dilated(xs[1 + a], window.lhs_dilation[a]) + reach - 1 - spread - lo) as i64;
    }
    let exchanged = b.push(Op::Transpose { perm: vec![0, 1, 3, 2] }, vec![w]);
    let flipped = b.reverse(exchanged, 0);
    let flipped = b.reverse(flipped, 1);
    b.push(Op::Conv(t), vec![g, flipped])
}

/// The cotangent of w for y = conv(x, w) (notation of [`conv_input_cotangent`]): x with its
/// batch and channels exchanged ([C, H, W, N]) convolved with g as the kernel ([OH, OW, N, F]),
/// the stride and the kernel dilation trading places,
///   stride' = rd, lhs_dilation' = ld, rhs_dilation' = s,
///   lo' = lo, hi' = D(OH, s) - D(H, ld) + D(KH, rd) - lo - 1,
/// gives [C, KH, KW, F], transposed to w's [KH, KW, C, F] (jax.lax's transpose in the right
/// operand).
fn conv_kernel_cotangent(b: &mut Builder, window: &ConvWindow, x: Value, w: Value, g: Value) -> Value {
    let (xs, ws, gs) = (b.ty(x).shape.clone(), b.ty(w).shape.clone(), b.ty(g).shape.clone());
    let mut t = ConvWindow {
        stride: window.rhs_dilation,
        pad_lo: window.pad_lo,
        pad_hi: [0; 2],
        lhs_dilation: window.lhs_dilation,
        rhs_dilation: window.stride,
    };
    for a in 0..2 {
        t.pad_hi[a] = (ConvWindow::dilated(gs[1 + a], window.stride[a])
            - ConvWindow::dilated(xs[1 + a], window.lhs_dilation[a])
            + ConvWindow::dilated(ws[a], window.rhs_dilation[a])
            - window.pad_lo[a] as i128
            - 1) as i64;
    }
    let xt = b.push(Op::Transpose { perm: vec![3, 1, 2, 0] }, vec![x]);
    let gt = b.push(Op::Transpose { perm: vec![1, 2, 0, 3] }, vec![g]);
    let y = b.push(Op::Conv(t), vec![xt, gt]);
    b.push(Op::Transpose { perm: vec![1, 2, 0, 3] }, vec![y])
}
