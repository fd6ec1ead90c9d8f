//! Random well-typed instances of every op and random programs over the op table, for
//! property and differential tests (round trips, compiled code against the interpreter,
//! rewrites against the interpreter). Deterministic for a given seed.

use crate::func::{Func, Value};
use crate::interp::{Data, Tensor};
use crate::ops::{BinaryOp, ConvWindow, Domain, Op, ReduceKind, UnaryOp};
use crate::types::{DType, Literal, TensorType};
use crate::Span;

/// The seed of a randomized test run: KILN_TEST_SEED if set, else drawn from the clock.
/// Printed, so that a failure can be reproduced.
pub fn test_seed() -> u64 {
    let seed = std::env::var("KILN_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1)
    });
    eprintln!("random seed: {seed} (set KILN_TEST_SEED={seed} to reproduce)");
    seed
}

/// SplitMix64: a small, fast, seedable generator (tests only need reproducibility).
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
}

/// A random dtype that `domain` accepts.
pub fn dtype_in(rng: &mut Rng, domain: Domain) -> DType {
    let all: Vec<DType> = DType::ALL.iter().copied().filter(|&d| domain.accepts(d)).collect();
    rng.pick(&all)
}

/// A random shape of rank `lo..=hi` with small dimensions.
pub fn shape(rng: &mut Rng, lo: usize, hi: usize) -> Vec<usize> {
    let rank = lo + rng.below(hi - lo + 1);
    (0..rank).map(|_| 1 + rng.below(5)).collect()
}

/// Random elements for `ty`: floats mostly in [-2, 2] with occasional large values, zeros and
/// (when `specials`) NaN and infinities; integers in a small signed range; bools half true.
pub fn tensor(rng: &mut Rng, ty: &TensorType, specials: bool) -> Tensor {
    let n = ty.num_elements();
    let float = |rng: &mut Rng| -> f64 {
        let r = rng.unit();
        if specials && r < 0.03 {
            rng.pick(&[f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 3.0e9, -3.0e9, 1.0e20])
        } else if r < 0.06 {
            0.0
        } else {
            4.0 * rng.unit() - 2.0
        }
    };
    let data = match ty.dtype {
        DType::Bool => Data::Bool((0..n).map(|_| rng.chance(0.5)).collect()),
        DType::U8 => Data::U8((0..n).map(|_| rng.below(256) as u8).collect()),
        DType::I32 => Data::I32((0..n).map(|_| rng.below(21) as i32 - 10).collect()),
        // Mostly small values, some with the top bit set, where unsigned and signed differ.
        DType::U32 => Data::U32(
            (0..n)
                .map(|_| if rng.chance(0.2) { u32::MAX - rng.below(16) as u32 } else { rng.below(21) as u32 })
                .collect(),
        ),
        DType::I64 => Data::I64((0..n).map(|_| rng.below(21) as i64 - 10).collect()),
        DType::F16 => Data::F16((0..n).map(|_| half::f16::from_f32(float(rng) as f32)).collect()),
        DType::BF16 => Data::BF16((0..n).map(|_| half::bf16::from_f32(float(rng) as f32)).collect()),
        DType::F32 => Data::F32((0..n).map(|_| float(rng) as f32).collect()),
        DType::F64 => Data::F64((0..n).map(|_| float(rng)).collect()),
    };
    Tensor::new(ty.shape.clone(), data)
}

/// Random arguments for `f`, one per parameter as [`tensor`] draws them, except that an
/// integer parameter named `labels` holds class indices, drawn from [0, 2): valid for
/// `cross_entropy` over any number of classes (whose loss is NaN for a label out of range), so
/// that tests exercise the loss and its derivatives rather than NaN.
pub fn arguments(rng: &mut Rng, f: &Func, specials: bool) -> Vec<Tensor> {
    f.params
        .iter()
        .map(|p| match p.ty.dtype {
            DType::I32 | DType::I64 if p.name == "labels" => {
                let labels = (0..p.ty.num_elements()).map(|_| rng.below(2) as i64);
                let data = if p.ty.dtype == DType::I32 {
                    Data::I32(labels.map(|l| l as i32).collect())
                } else {
                    Data::I64(labels.collect())
                };
                Tensor::new(p.ty.shape.clone(), data)
            }
            _ => tensor(rng, &p.ty, specials),
        })
        .collect()
}

/// A random literal of `dtype`.
pub fn literal(rng: &mut Rng, dtype: DType) -> Literal {
    match dtype {
        DType::Bool => Literal::Bool(rng.chance(0.5)),
        d if d.is_int() => Literal::of_i64(d, rng.below(41) as i64 - 20),
        d => Literal::of_f64(d, ((8.0 * rng.unit() - 4.0) * 1024.0).round() / 1024.0),
    }
}

/// A random well-typed instance of the same kind of op as `template` (attributes drawn
/// afresh) with the operand types it needs.
pub fn instance(rng: &mut Rng, template: &Op) -> (Op, Vec<TensorType>) {
    match template {
        Op::Const(_) => {
            let d = dtype_in(rng, Domain::Any);
            (Op::Const(literal(rng, d)), vec![])
        }
        Op::Data(_) => {
            let ty = TensorType::new(dtype_in(rng, Domain::Numeric), shape(rng, 0, 3));
            let bytes = (0..ty.num_elements())
                .flat_map(|_| crate::interp::Data::splat(literal(rng, ty.dtype), 1).to_bytes())
                .collect();
            (Op::Data(crate::Constant::new(ty, bytes).expect("one element per position")), vec![])
        }
        Op::Iota { .. } => {
            let s = shape(rng, 1, 3);
            let axis = rng.below(s.len());
            (Op::Iota { dtype: dtype_in(rng, Domain::Numeric), shape: s, axis }, vec![])
        }
        Op::Unary(u) => {
            let ty = TensorType::new(dtype_in(rng, u.domain()), shape(rng, 0, 3));
            (Op::Unary(*u), vec![ty])
        }
        Op::Binary(b) => {
            let ty = TensorType::new(dtype_in(rng, b.domain()), shape(rng, 0, 3));
            (Op::Binary(*b), vec![ty.clone(), ty])
        }
        Op::Select => {
            let ty = TensorType::new(dtype_in(rng, Domain::Any), shape(rng, 0, 3));
            (Op::Select, vec![ty.with_dtype(DType::Bool), ty.clone(), ty])
        }
        Op::Convert { .. } => {
            let ty = TensorType::new(dtype_in(rng, Domain::Any), shape(rng, 0, 3));
            (Op::Convert { to: dtype_in(rng, Domain::Any) }, vec![ty])
        }
        Op::Bitcast { .. } => {
            let (from, to) = rng.pick(&[
                (DType::F32, DType::U32),
                (DType::U32, DType::F32),
                (DType::F32, DType::I32),
                (DType::I32, DType::F32),
                (DType::F64, DType::I64),
                (DType::I64, DType::F64),
                (DType::U8, DType::U8),
            ]);
            (Op::Bitcast { to }, vec![TensorType::new(from, shape(rng, 0, 3))])
        }
        Op::Reduce { kind, .. } => {
            let s = shape(rng, 1, 4);
            let mut axes: Vec<usize> = (0..s.len()).filter(|_| rng.chance(0.5)).collect();
            if axes.is_empty() {
                axes.push(rng.below(s.len()));
            }
            (Op::Reduce { kind: *kind, axes }, vec![TensorType::new(dtype_in(rng, Domain::Numeric), s)])
        }
        Op::Dot => {
            let batch = shape(rng, 0, 2);
            let (m, k, n) = (1 + rng.below(6), 1 + rng.below(9), 1 + rng.below(6));
            let d = dtype_in(rng, Domain::Numeric);
            let with = |a: usize, b: usize| batch.iter().copied().chain([a, b]).collect::<Vec<_>>();
            (Op::Dot, vec![TensorType::new(d, with(m, k)), TensorType::new(d, with(k, n))])
        }
        Op::Conv(_) => loop {
            // Any window: strides, dilations of input and kernel, padding that may crop.
            let mut pick = |choices: &[usize]| [rng.pick(choices), rng.pick(choices)];
            let (stride, lhs_dilation, rhs_dilation) = (pick(&[1, 1, 2, 3]), pick(&[1, 1, 2]), pick(&[1, 1, 2]));
            let pads = [-1i64, 0, 0, 1, 2];
            let window = ConvWindow {
                stride,
                pad_lo: [rng.pick(&pads), rng.pick(&pads)],
                pad_hi: [rng.pick(&pads), rng.pick(&pads)],
                lhs_dilation,
                rhs_dilation,
            };
            let (c, d) = (1 + rng.below(3), dtype_in(rng, Domain::Float));
            let x = TensorType::new(d, vec![1 + rng.below(2), 1 + rng.below(6), 1 + rng.below(6), c]);
            let w = TensorType::new(d, vec![1 + rng.below(3), 1 + rng.below(3), c, 1 + rng.below(3)]);
            let op = Op::Conv(window);
            if op.infer(&[&x, &w]).is_ok() {
                break (op, vec![x, w]);
            }
        },
        Op::Reshape { .. } => {
            let s = shape(rng, 0, 3);
            let n: usize = s.iter().product();
            // A random factorization of n.
            let mut target = vec![];
            let mut rest = n;
            while rest > 1 && rng.chance(0.7) {
                let divisors: Vec<usize> = (2..=rest).filter(|&d| rest.is_multiple_of(d)).collect();
                let d = rng.pick(&divisors);
                target.push(d);
                rest /= d;
            }
            if rest > 1 || rng.chance(0.3) {
                target.push(rest);
            }
            (Op::Reshape { shape: target }, vec![TensorType::new(dtype_in(rng, Domain::Any), s)])
        }
        Op::Transpose { .. } => {
            let s = shape(rng, 1, 4);
            let mut perm: Vec<usize> = (0..s.len()).collect();
            for i in (1..perm.len()).rev() {
                perm.swap(i, rng.below(i + 1));
            }
            (Op::Transpose { perm }, vec![TensorType::new(dtype_in(rng, Domain::Any), s)])
        }
        Op::Broadcast { .. } => {
            let out = shape(rng, 1, 4);
            let dims: Vec<usize> = (0..out.len()).filter(|_| rng.chance(0.6)).collect();
            let in_shape = dims.iter().map(|&d| if rng.chance(0.3) { 1 } else { out[d] }).collect();
            (Op::Broadcast { shape: out, dims }, vec![TensorType::new(dtype_in(rng, Domain::Any), in_shape)])
        }
        Op::Slice { .. } => {
            let s: Vec<usize> = shape(rng, 1, 3).iter().map(|d| d + 2).collect();
            let (mut start, mut step, mut out) = (vec![], vec![], vec![]);
            for &n in &s {
                let k = rng.pick(&[1i64, 1, 2, 3, -1, -2]);
                let first = rng.below(n);
                // Elements reachable from `first` with step k.
                let avail = if k > 0 { (n - 1 - first) as i64 / k + 1 } else { first as i64 / -k + 1 };
                start.push(first);
                step.push(k);
                out.push(1 + rng.below(avail as usize));
            }
            (Op::Slice { start, step, shape: out }, vec![TensorType::new(dtype_in(rng, Domain::Any), s)])
        }
        Op::Concat { .. } => {
            let s = shape(rng, 1, 3);
            let axis = rng.below(s.len());
            let d = dtype_in(rng, Domain::Any);
            let parts = (0..1 + rng.below(3))
                .map(|_| {
                    let mut p = s.clone();
                    p[axis] = 1 + rng.below(4);
                    TensorType::new(d, p)
                })
                .collect();
            (Op::Concat { axis }, parts)
        }
        Op::DynamicSlice { .. } => {
            let s = shape(rng, 0, 3);
            let sizes: Vec<usize> = s.iter().map(|&d| 1 + rng.below(d)).collect();
            let start = TensorType::scalar(if rng.chance(0.5) { DType::I32 } else { DType::I64 });
            let operands = std::iter::once(TensorType::new(dtype_in(rng, Domain::Any), s.clone()))
                .chain(s.iter().map(|_| start.clone()));
            (Op::DynamicSlice { sizes }, operands.collect())
        }
        Op::DynamicUpdateSlice => {
            let s = shape(rng, 0, 3);
            let d = dtype_in(rng, Domain::Any);
            let update = TensorType::new(d, s.iter().map(|&n| 1 + rng.below(n)).collect());
            let start = TensorType::scalar(if rng.chance(0.5) { DType::I32 } else { DType::I64 });
            let operands = [TensorType::new(d, s.clone()), update].into_iter().chain(s.iter().map(|_| start.clone()));
            (Op::DynamicUpdateSlice, operands.collect())
        }
        Op::Gather { .. } => {
            let s = shape(rng, 1, 3);
            let axis = rng.below(s.len());
            let idx = TensorType::new(if rng.chance(0.5) { DType::I32 } else { DType::I64 }, shape(rng, 0, 2));
            (Op::Gather { axis }, vec![TensorType::new(dtype_in(rng, Domain::Any), s), idx])
        }
        Op::Scatter { kind, .. } => {
            let s = shape(rng, 1, 3);
            let axis = rng.below(s.len());
            let domain = if *kind == crate::ops::ScatterKind::Set { Domain::Any } else { Domain::Numeric };
            let x = TensorType::new(dtype_in(rng, domain), s.clone());
            let idx = TensorType::new(if rng.chance(0.5) { DType::I32 } else { DType::I64 }, shape(rng, 0, 2));
            let updates = Op::Gather { axis }.infer(&[&x, &idx]).expect("a gather of these types");
            (Op::Scatter { axis, kind: *kind }, vec![x, idx, updates])
        }
        Op::Argsort { .. } => {
            // Rows of up to 20 keys from a small range: ties are common.
            let mut s = shape(rng, 0, 2);
            s.push(1 + rng.below(20));
            (Op::Argsort { descending: rng.chance(0.5) }, vec![TensorType::new(dtype_in(rng, Domain::Int), s)])
        }
        Op::While { .. } => {
            let t = TensorType::new(dtype_in(rng, Domain::Float), shape(rng, 0, 3));
            (while_of(&t), vec![t.clone(), TensorType::scalar(DType::I32), t])
        }
        Op::Loop { .. } => {
            let t = TensorType::new(dtype_in(rng, Domain::Float), shape(rng, 0, 3));
            let index = if rng.chance(0.5) { DType::I32 } else { DType::I64 };
            let bound = TensorType::scalar(index);
            (loop_of(&t, index, rng.chance(0.5)), vec![bound.clone(), bound, t.clone(), t])
        }
        Op::Scan { .. } => {
            let t = TensorType::new(dtype_in(rng, Domain::Float), shape(rng, 0, 3));
            let xs =
                TensorType::new(t.dtype, std::iter::once(1 + rng.below(4)).chain(t.shape.iter().copied()).collect());
            (scan_of(&t, rng.chance(0.5), rng.chance(0.5), rng.below(2)), vec![t.clone(), xs, t])
        }
        Op::Cond { .. } => {
            let t = TensorType::new(dtype_in(rng, Domain::Float), shape(rng, 0, 3));
            let (op, types) = (cond_of(&t), vec![TensorType::scalar(DType::Bool), t.clone(), t]);
            (op, types)
        }
    }
}

/// A loop over indices of `index` dtype carrying one value of float type `t` and reading one
/// more: `c <- sin(c) * 0.75 + x * i`; `checkpoint` as [`Op::Loop`] has it.
pub fn loop_of(t: &TensorType, index: DType, checkpoint: bool) -> Op {
    let mut f = Func::new("body", Span::default());
    let i = f.add_param("i", TensorType::scalar(index), Span::default());
    let c = f.add_param("c", t.clone(), Span::default());
    let x = f.add_param("x", t.clone(), Span::default());
    let mut push = |op, args| f.push(op, args, Span::default()).expect("well typed");
    let s = push(Op::Unary(UnaryOp::Sin), vec![c]);
    let k = push(Op::Const(Literal::of_f64(t.dtype, 0.75)), vec![]);
    let k = push(Op::Broadcast { shape: t.shape.clone(), dims: vec![] }, vec![k]);
    let s = push(Op::Binary(BinaryOp::Mul), vec![s, k]);
    let fi = push(Op::Convert { to: t.dtype }, vec![i]);
    let fi = push(Op::Broadcast { shape: t.shape.clone(), dims: vec![] }, vec![fi]);
    let xi = push(Op::Binary(BinaryOp::Mul), vec![x, fi]);
    let r = push(Op::Binary(BinaryOp::Add), vec![s, xi]);
    f.results.push(r);
    f.result_names.push("c".into());
    Op::Loop { body: crate::ops::Bodies::new(vec![f]), checkpoint, result: 0 }
}

/// A while loop carrying a value of float type `t` and an i32 count, reading one more value:
/// `(c, k) <- (c * 0.5 + x, k + 1)` while k < 3.
pub fn while_of(t: &TensorType) -> Op {
    let count = TensorType::scalar(DType::I32);
    let function = |name: &str| {
        let mut f = Func::new(name, Span::default());
        let c = f.add_param("c", t.clone(), Span::default());
        let k = f.add_param("k", count.clone(), Span::default());
        let x = f.add_param("x", t.clone(), Span::default());
        (f, c, k, x)
    };
    let (mut cond, _, k, _) = function("cond");
    let three = cond.push(Op::Const(Literal::Int(DType::I32, 3)), vec![], Span::default()).expect("constant");
    let go = cond.push(Op::Binary(BinaryOp::Lt), vec![k, three], Span::default()).expect("same types");
    cond.results.push(go);
    cond.result_names.push("go".into());
    let (mut body, c, k, x) = function("body");
    let mut push = |op, args| body.push(op, args, Span::default()).expect("well typed");
    let half = push(Op::Const(Literal::of_f64(t.dtype, 0.5)), vec![]);
    let half = push(Op::Broadcast { shape: t.shape.clone(), dims: vec![] }, vec![half]);
    let scaled = push(Op::Binary(BinaryOp::Mul), vec![c, half]);
    let next = push(Op::Binary(BinaryOp::Add), vec![scaled, x]);
    let one = push(Op::Const(Literal::Int(DType::I32, 1)), vec![]);
    let counted = push(Op::Binary(BinaryOp::Add), vec![k, one]);
    body.results.extend([next, counted]);
    body.result_names.extend(["c".to_string(), "k".to_string()]);
    Op::While { bodies: crate::ops::Bodies::new(vec![cond, body]), result: 0 }
}

/// A scan over rows x of float type `t` carrying one value of that type and reading one
/// more, w: `(c, y) <- (sin(c) * w + x, c * x)`, backwards when `reverse`, checkpointed when
/// `checkpoint`, taking result `result` (0: the last carry, 1: the stacked ys).
pub fn scan_of(t: &TensorType, reverse: bool, checkpoint: bool, result: usize) -> Op {
    let mut f = Func::new("body", Span::default());
    let [c, x, w] = ["c", "x", "w"].map(|name| f.add_param(name, t.clone(), Span::default()));
    let mut push = |op, args| f.push(op, args, Span::default()).expect("well typed");
    let s = push(Op::Unary(UnaryOp::Sin), vec![c]);
    let s = push(Op::Binary(BinaryOp::Mul), vec![s, w]);
    let next = push(Op::Binary(BinaryOp::Add), vec![s, x]);
    let y = push(Op::Binary(BinaryOp::Mul), vec![c, x]);
    f.results.extend([next, y]);
    f.result_names.extend(["c".to_string(), "y".to_string()]);
    Op::Scan { body: crate::ops::Bodies::new(vec![f]), carries: 1, scanned: 1, reverse, checkpoint, result }
}

/// A conditional of two operands of type `t`: `x * sin(y)` when true, `x - y` when false.
pub fn cond_of(t: &TensorType) -> Op {
    let branch = |name: &str, body: &dyn Fn(&mut Func, Value, Value) -> Value| {
        let mut f = Func::new(name, Span::default());
        let x = f.add_param("x", t.clone(), Span::default());
        let y = f.add_param("y", t.clone(), Span::default());
        let r = body(&mut f, x, y);
        f.results.push(r);
        f.result_names.push("out0".into());
        f
    };
    let then = branch("then", &|f, x, y| {
        let s = f.push(Op::Unary(UnaryOp::Sin), vec![y], Span::default()).expect("float");
        f.push(Op::Binary(BinaryOp::Mul), vec![x, s], Span::default()).expect("same types")
    });
    let otherwise = branch("otherwise", &|f, x, y| {
        f.push(Op::Binary(BinaryOp::Sub), vec![x, y], Span::default()).expect("same types")
    });
    Op::Cond { branches: crate::ops::Bodies::new(vec![then, otherwise]), result: 0 }
}

/// A function applying one random instance of `template` to its parameters.
pub fn single_op_func(rng: &mut Rng, template: &Op, name: &str) -> Func {
    let (op, types) = instance(rng, template);
    op_func(name, op, types).expect("generated instances are well typed")
}

/// A function `name` applying `op` to parameters `p0, p1, ...` of `types`, with one result
/// `out0`; an error when the op does not accept those types.
pub fn op_func(name: &str, op: Op, types: Vec<TensorType>) -> Result<Func, String> {
    let mut f = Func::new(name, Span::default());
    let args: Vec<Value> =
        types.into_iter().enumerate().map(|(i, t)| f.add_param(format!("p{i}"), t, Span::default())).collect();
    let r = f.push(op, args, Span::default())?;
    f.results.push(r);
    f.result_names.push("out0".into());
    Ok(f)
}

/// A random program of about `size` instructions: each step applies a random elementwise,
/// reduction, contraction or shape op to earlier values of matching types (or to new
/// parameters), and a few values are returned.
pub fn random_func(rng: &mut Rng, size: usize, name: &str) -> Func {
    let base = TensorType::new(rng.pick(&[DType::F32, DType::F64]), shape(rng, 1, 3));
    random_func_over(rng, size, name, base)
}

/// [`random_func`] whose two parameters have type `base` (long rows, say, to reach code paths
/// that small shapes do not).
pub fn random_func_over(rng: &mut Rng, size: usize, name: &str, base: TensorType) -> Func {
    let mut f = Func::new(name, Span::default());
    let p0 = f.add_param("x", base.clone(), Span::default());
    let p1 = f.add_param("y", base.clone(), Span::default());
    let mut pool: Vec<Value> = vec![p0, p1];
    for _ in 0..size {
        let a = rng.pick(&pool);
        let ta = f.ty(a).clone();
        let same: Vec<Value> = pool.iter().copied().filter(|&v| *f.ty(v) == ta).collect();
        let b = rng.pick(&same);
        let candidates: Vec<(Op, Vec<Value>)> = {
            let mut c = vec![];
            if ta.dtype.is_float() {
                for &u in UnaryOp::ALL {
                    c.push((Op::Unary(u), vec![a]));
                }
            }
            if ta.dtype.is_numeric() {
                for &op in BinaryOp::ALL.iter().filter(|b| b.domain().accepts(ta.dtype)) {
                    c.push((Op::Binary(op), vec![a, b]));
                }
                if ta.rank() > 0 {
                    let axes = vec![rng.below(ta.rank())];
                    c.push((Op::Reduce { kind: rng.pick(&ReduceKind::ALL), axes }, vec![a]));
                    let mut perm: Vec<usize> = (0..ta.rank()).collect();
                    perm.reverse();
                    c.push((Op::Transpose { perm }, vec![a]));
                }
                if ta.rank() == 2 && ta.shape[0] == ta.shape[1] {
                    c.push((Op::Dot, vec![a, b]));
                }
                let mut wide = ta.shape.clone();
                wide.insert(0, 2);
                c.push((Op::Broadcast { shape: wide, dims: (1..=ta.rank()).collect() }, vec![a]));
            }
            if ta.dtype == DType::Bool {
                c.push((Op::Convert { to: base.dtype }, vec![a]));
            }
            c.push((Op::Reshape { shape: vec![ta.num_elements()] }, vec![a]));
            c
        };
        let (op, args) = candidates[rng.below(candidates.len())].clone();
        if let Ok(v) = f.push(op, args, Span::default()) {
            if f.ty(v).num_elements() <= 4096 {
                pool.push(v);
            }
        }
    }
    let n = 1 + rng.below(2.min(pool.len()));
    for i in 0..n {
        let v = pool[pool.len() - 1 - i];
        f.results.push(v);
        f.result_names.push(format!("out{i}"));
    }
    f
}
