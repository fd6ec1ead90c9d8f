//! The reference interpreter: the meaning of every op on every dtype.
//!
//! It is the oracle for all compiled code, so it favors clarity and accuracy over speed: float
//! sums and dot products accumulate in f64 (so f32 results are correctly rounded sums), integer
//! arithmetic wraps, float-to-integer conversion saturates, max and min propagate NaN.

use crate::func::{Func, Value};
use crate::ops::{float_max, float_min, BinaryOp, ConvWindow, Op, ReduceKind};
use crate::types::{DType, Literal, TensorType};

/// Elements of a tensor, row-major. bool is stored as `bool`.
#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    Bool(Vec<bool>),
    U8(Vec<u8>),
    I32(Vec<i32>),
    U32(Vec<u32>),
    I64(Vec<i64>),
    F16(Vec<half::f16>),
    BF16(Vec<half::bf16>),
    F32(Vec<f32>),
    F64(Vec<f64>),
}

/// Applies a generic expression to the vector inside any variant, rebuilding the same variant.
macro_rules! map_data {
    ($data:expr, |$v:ident| $e:expr) => {
        match $data {
            Data::Bool($v) => Data::Bool($e),
            Data::U8($v) => Data::U8($e),
            Data::I32($v) => Data::I32($e),
            Data::U32($v) => Data::U32($e),
            Data::I64($v) => Data::I64($e),
            Data::F16($v) => Data::F16($e),
            Data::BF16($v) => Data::BF16($e),
            Data::F32($v) => Data::F32($e),
            Data::F64($v) => Data::F64($e),
        }
    };
}

/// Conversions between element types with the semantics of the `convert` op.
pub trait Elem: Copy + Default + PartialEq + std::fmt::Debug {
    fn to_f64(self) -> f64;
    fn to_f32(self) -> f32;
    fn to_i64(self) -> i64;
    fn to_i32(self) -> i32;
    fn to_u8(self) -> u8;
    fn to_u32(self) -> u32;
    fn to_bool(self) -> bool;
}

macro_rules! impl_elem {
    ($($t:ty),*) => {$(
        impl Elem for $t {
            fn to_f64(self) -> f64 { self as f64 }
            fn to_f32(self) -> f32 { self as f32 }
            fn to_i64(self) -> i64 { self as i64 }
            fn to_i32(self) -> i32 { self as i32 }
            fn to_u8(self) -> u8 { self as u8 }
            fn to_u32(self) -> u32 { self as u32 }
            fn to_bool(self) -> bool { self != (0 as $t) }
        }
    )*};
}
impl_elem!(u8, i32, u32, i64, f32, f64);

/// The 16-bit floats convert as their f32 values do.
macro_rules! impl_half_elem {
    ($($t:ty),*) => {$(
        impl Elem for $t {
            fn to_f64(self) -> f64 { f64::from(self) }
            fn to_f32(self) -> f32 { f32::from(self) }
            fn to_i64(self) -> i64 { f32::from(self) as i64 }
            fn to_i32(self) -> i32 { f32::from(self) as i32 }
            fn to_u8(self) -> u8 { f32::from(self) as u8 }
            fn to_u32(self) -> u32 { f32::from(self) as u32 }
            fn to_bool(self) -> bool { f32::from(self) != 0.0 }
        }
    )*};
}
impl_half_elem!(half::f16, half::bf16);

impl Elem for bool {
    fn to_f64(self) -> f64 {
        self as i64 as f64
    }
    fn to_f32(self) -> f32 {
        self as i64 as f32
    }
    fn to_i64(self) -> i64 {
        self as i64
    }
    fn to_i32(self) -> i32 {
        self as i32
    }
    fn to_u8(self) -> u8 {
        self as u8
    }
    fn to_u32(self) -> u32 {
        self as u32
    }
    fn to_bool(self) -> bool {
        self
    }
}

impl Data {
    pub fn dtype(&self) -> DType {
        match self {
            Data::Bool(_) => DType::Bool,
            Data::U8(_) => DType::U8,
            Data::I32(_) => DType::I32,
            Data::U32(_) => DType::U32,
            Data::I64(_) => DType::I64,
            Data::F16(_) => DType::F16,
            Data::BF16(_) => DType::BF16,
            Data::F32(_) => DType::F32,
            Data::F64(_) => DType::F64,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Data::Bool(v) => v.len(),
            Data::U8(v) => v.len(),
            Data::I32(v) => v.len(),
            Data::U32(v) => v.len(),
            Data::I64(v) => v.len(),
            Data::F16(v) => v.len(),
            Data::BF16(v) => v.len(),
            Data::F32(v) => v.len(),
            Data::F64(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `out[i] = self[indices[i]]`.
    pub fn gather(&self, indices: &[usize]) -> Data {
        map_data!(self, |v| indices.iter().map(|&i| v[i]).collect())
    }

    /// Sets element `i` to element 0 of `from`, of the same dtype.
    fn set(&mut self, i: usize, from: &Data) {
        match (self, from) {
            (Data::Bool(v), Data::Bool(f)) => v[i] = f[0],
            (Data::U8(v), Data::U8(f)) => v[i] = f[0],
            (Data::I32(v), Data::I32(f)) => v[i] = f[0],
            (Data::U32(v), Data::U32(f)) => v[i] = f[0],
            (Data::I64(v), Data::I64(f)) => v[i] = f[0],
            (Data::F16(v), Data::F16(f)) => v[i] = f[0],
            (Data::BF16(v), Data::BF16(f)) => v[i] = f[0],
            (Data::F32(v), Data::F32(f)) => v[i] = f[0],
            (Data::F64(v), Data::F64(f)) => v[i] = f[0],
            _ => unreachable!("the type rule checks that dtypes agree"),
        }
    }

    /// Every element converted to `to`.
    pub fn convert(&self, to: DType) -> Data {
        fn conv<T: Elem>(v: &[T], to: DType) -> Data {
            match to {
                DType::Bool => Data::Bool(v.iter().map(|x| x.to_bool()).collect()),
                DType::U8 => Data::U8(v.iter().map(|x| x.to_u8()).collect()),
                DType::I32 => Data::I32(v.iter().map(|x| x.to_i32()).collect()),
                DType::U32 => Data::U32(v.iter().map(|x| x.to_u32()).collect()),
                DType::I64 => Data::I64(v.iter().map(|x| x.to_i64()).collect()),
                // Through f32, as every conversion to a 16-bit float.
                DType::F16 => Data::F16(v.iter().map(|x| half::f16::from_f32(x.to_f32())).collect()),
                DType::BF16 => Data::BF16(v.iter().map(|x| half::bf16::from_f32(x.to_f32())).collect()),
                DType::F32 => Data::F32(v.iter().map(|x| x.to_f32()).collect()),
                DType::F64 => Data::F64(v.iter().map(|x| x.to_f64()).collect()),
            }
        }
        match self {
            Data::Bool(v) => conv(v, to),
            Data::U8(v) => conv(v, to),
            Data::I32(v) => conv(v, to),
            Data::U32(v) => conv(v, to),
            Data::I64(v) => conv(v, to),
            Data::F16(v) => conv(v, to),
            Data::BF16(v) => conv(v, to),
            Data::F32(v) => conv(v, to),
            Data::F64(v) => conv(v, to),
        }
    }

    /// Element i as f64 (integers and bools exactly where representable).
    pub fn get_f64(&self, i: usize) -> f64 {
        match self {
            Data::Bool(v) => v[i].to_f64(),
            Data::U8(v) => v[i].to_f64(),
            Data::I32(v) => v[i].to_f64(),
            Data::U32(v) => v[i].to_f64(),
            Data::I64(v) => v[i].to_f64(),
            Data::F16(v) => v[i].to_f64(),
            Data::BF16(v) => v[i].to_f64(),
            Data::F32(v) => v[i].to_f64(),
            Data::F64(v) => v[i],
        }
    }

    /// Element i as i64 (floats truncated toward zero and saturated, as `convert` does).
    pub fn get_i64(&self, i: usize) -> i64 {
        match self {
            Data::Bool(v) => v[i].to_i64(),
            Data::U8(v) => v[i].to_i64(),
            Data::I32(v) => v[i].to_i64(),
            Data::U32(v) => v[i].to_i64(),
            Data::I64(v) => v[i],
            Data::F16(v) => v[i].to_i64(),
            Data::BF16(v) => v[i].to_i64(),
            Data::F32(v) => v[i].to_i64(),
            Data::F64(v) => v[i].to_i64(),
        }
    }

    /// Element i as a literal of the data's dtype.
    pub fn literal(&self, i: usize) -> Literal {
        match self {
            Data::Bool(v) => Literal::Bool(v[i]),
            Data::F64(v) => Literal::Float(DType::F64, v[i]),
            float @ (Data::F16(_) | Data::BF16(_) | Data::F32(_)) => Literal::Float(float.dtype(), float.get_f64(i)),
            int => Literal::Int(int.dtype(), int.get_i64(i)),
        }
    }

    /// `n` copies of a literal.
    pub fn splat(lit: Literal, n: usize) -> Data {
        match lit {
            Literal::Bool(b) => Data::Bool(vec![b; n]),
            Literal::Int(d, v) => Data::I64(vec![v; n]).convert(d),
            Literal::Float(d, v) => Data::F64(vec![v; n]).convert(d),
        }
    }

    /// The bytes of the elements as stored in buffers passed to compiled code (little-endian
    /// host order; bool as one byte 0 or 1).
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Data::Bool(v) => v.iter().map(|&b| b as u8).collect(),
            Data::U8(v) => v.clone(),
            Data::I32(v) => v.iter().flat_map(|x| x.to_ne_bytes()).collect(),
            Data::U32(v) => v.iter().flat_map(|x| x.to_ne_bytes()).collect(),
            Data::I64(v) => v.iter().flat_map(|x| x.to_ne_bytes()).collect(),
            Data::F16(v) => v.iter().flat_map(|x| x.to_ne_bytes()).collect(),
            Data::BF16(v) => v.iter().flat_map(|x| x.to_ne_bytes()).collect(),
            Data::F32(v) => v.iter().flat_map(|x| x.to_ne_bytes()).collect(),
            Data::F64(v) => v.iter().flat_map(|x| x.to_ne_bytes()).collect(),
        }
    }

    /// The inverse of [`Data::to_bytes`]; None when the length does not match.
    pub fn from_bytes(dtype: DType, bytes: &[u8]) -> Option<Data> {
        let size = dtype.size_bytes();
        if !bytes.len().is_multiple_of(size) {
            return None;
        }
        let chunks = bytes.chunks_exact(size);
        Some(match dtype {
            DType::Bool => Data::Bool(bytes.iter().map(|&b| b != 0).collect()),
            DType::U8 => Data::U8(bytes.to_vec()),
            DType::I32 => Data::I32(chunks.map(|c| i32::from_ne_bytes(c.try_into().unwrap())).collect()),
            DType::U32 => Data::U32(chunks.map(|c| u32::from_ne_bytes(c.try_into().unwrap())).collect()),
            DType::I64 => Data::I64(chunks.map(|c| i64::from_ne_bytes(c.try_into().unwrap())).collect()),
            DType::F16 => Data::F16(chunks.map(|c| half::f16::from_ne_bytes(c.try_into().unwrap())).collect()),
            DType::BF16 => Data::BF16(chunks.map(|c| half::bf16::from_ne_bytes(c.try_into().unwrap())).collect()),
            DType::F32 => Data::F32(chunks.map(|c| f32::from_ne_bytes(c.try_into().unwrap())).collect()),
            DType::F64 => Data::F64(chunks.map(|c| f64::from_ne_bytes(c.try_into().unwrap())).collect()),
        })
    }
}

/// A tensor value: a type and its elements.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Data,
}

impl Tensor {
    pub fn new(shape: Vec<usize>, data: Data) -> Tensor {
        assert_eq!(shape.iter().product::<usize>(), data.len(), "shape and data disagree");
        Tensor { shape, data }
    }

    pub fn ty(&self) -> TensorType {
        TensorType::new(self.data.dtype(), self.shape.clone())
    }
}

/// Row-major strides of a shape.
pub fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// Calls `f` with every multi-index of `shape` in row-major order.
pub fn for_each_index(shape: &[usize], mut f: impl FnMut(&[usize])) {
    let n: usize = shape.iter().product();
    let mut idx = vec![0; shape.len()];
    for _ in 0..n {
        f(&idx);
        for d in (0..shape.len()).rev() {
            idx[d] += 1;
            if idx[d] < shape[d] {
                break;
            }
            idx[d] = 0;
        }
    }
}

/// The starts of a window of `sizes` in an array of `shape`, each clamped into
/// [0, dim - size] as lax.dynamic_slice does.
fn clamped_starts(shape: &[usize], starts: &[&Tensor], sizes: &[usize]) -> Vec<usize> {
    (0..shape.len()).map(|d| starts[d].data.get_i64(0).clamp(0, (shape[d] - sizes[d]) as i64) as usize).collect()
}

/// For every element of `out_shape`, the flat index of the operand element it reads, where
/// `source(out_index, operand_index)` fills in the operand's multi-index.
fn gather_indices(
    out_shape: &[usize],
    in_shape: &[usize],
    mut source: impl FnMut(&[usize], &mut [usize]),
) -> Vec<usize> {
    let in_strides = strides(in_shape);
    let mut in_idx = vec![0; in_shape.len()];
    let mut indices = Vec::with_capacity(out_shape.iter().product());
    for_each_index(out_shape, |out_idx| {
        source(out_idx, &mut in_idx);
        indices.push(in_idx.iter().zip(&in_strides).map(|(i, s)| i * s).sum());
    });
    indices
}

/// The bytes [`run`] holds at once on `func`: it keeps every value until the call returns.
/// Callers refuse a function above their memory budget instead of letting the allocation abort.
pub fn memory_bytes(func: &Func) -> u64 {
    let params = func.params.iter().map(|p| &p.ty);
    params.chain(func.insts.iter().map(|i| &i.ty)).map(|t| t.size_bytes() as u64).fold(0, u64::saturating_add)
}

/// Runs a function on arguments of its parameter types and returns its results.
///
/// Panics if an argument's type differs from its parameter's: callers check arguments first.
pub fn run(func: &Func, args: &[Tensor]) -> Vec<Tensor> {
    run_with(func, args, |_, _, _| {})
}

/// [`run`], with `adjust` applied to each instruction's result (given its op and operands)
/// before later ones read it, in loop bodies and branches too (at every step): to see how a
/// rounding difference in one op carries to the results.
pub fn run_with(func: &Func, args: &[Tensor], mut adjust: impl FnMut(&Op, &[&Tensor], &mut Tensor)) -> Vec<Tensor> {
    assert_eq!(args.len(), func.params.len(), "argument count");
    let mut values: Vec<Tensor> = Vec::with_capacity(func.num_values());
    for (arg, p) in args.iter().zip(&func.params) {
        assert_eq!(arg.ty(), p.ty, "argument `{}` has the wrong type", p.name);
        values.push(arg.clone());
    }
    for inst in &func.insts {
        let operands: Vec<&Tensor> = inst.args.iter().map(|a| &values[a.index()]).collect();
        let mut result = eval_with(&inst.op, &operands, &inst.ty, &mut adjust);
        adjust(&inst.op, &operands, &mut result);
        debug_assert_eq!(result.ty(), inst.ty);
        values.push(result);
    }
    func.results.iter().map(|&r: &Value| values[r.index()].clone()).collect()
}

/// Evaluates one op on its operands; `ty` is the result type the op's rule gave.
pub fn eval(op: &Op, args: &[&Tensor], ty: &TensorType) -> Tensor {
    eval_with(op, args, ty, &mut |_, _, _| {})
}

/// [`eval`], running the bodies of loops and conditionals with [`run_with`]'s `adjust`.
fn eval_with(
    op: &Op,
    args: &[&Tensor],
    ty: &TensorType,
    adjust: &mut dyn FnMut(&Op, &[&Tensor], &mut Tensor),
) -> Tensor {
    if let Op::Data(c) = op {
        let data = Data::from_bytes(c.ty().dtype, c.bytes()).expect("a constant's bytes fill its type");
        return Tensor::new(c.ty().shape.clone(), data);
    }
    if crate::half::computes_in_f32(op) && (ty.dtype.is_half() || args.iter().any(|a| a.data.dtype().is_half())) {
        // 16-bit floats compute in f32, the result rounded back (crate::half).
        let wide: Vec<Tensor> = args
            .iter()
            .map(|a| Tensor::new(a.shape.clone(), a.data.convert(crate::half::compute_dtype(a.data.dtype()))))
            .collect();
        let refs: Vec<&Tensor> = wide.iter().collect();
        let r = eval_with(op, &refs, &ty.with_dtype(crate::half::compute_dtype(ty.dtype)), adjust);
        return Tensor::new(r.shape, r.data.convert(ty.dtype));
    }
    let n = ty.num_elements();
    let data = match op {
        Op::Const(lit) => Data::splat(*lit, 1),
        Op::Data(_) => unreachable!("constants are read above"),
        Op::Iota { shape, axis, .. } => {
            let mut v = Vec::with_capacity(n);
            for_each_index(shape, |idx| v.push(idx[*axis] as i64));
            Data::I64(v).convert(ty.dtype)
        }
        Op::Unary(u) => match &args[0].data {
            Data::F32(v) => Data::F32(v.iter().map(|&x| u.eval_float(x)).collect()),
            Data::F64(v) => Data::F64(v.iter().map(|&x| u.eval_float(x)).collect()),
            Data::U8(v) => Data::U8(v.iter().map(|&x| u.eval_int(x as i64) as u8).collect()),
            Data::I32(v) => Data::I32(v.iter().map(|&x| u.eval_int(x as i64) as i32).collect()),
            Data::U32(v) => Data::U32(v.iter().map(|&x| u.eval_int(x as i64) as u32).collect()),
            Data::F16(_) | Data::BF16(_) => unreachable!("16-bit floats compute in f32 (crate::half)"),
            Data::I64(v) => Data::I64(v.iter().map(|&x| u.eval_int(x)).collect()),
            Data::Bool(_) => unreachable!("type rule rejects unary ops on bool"),
        },
        Op::Binary(b) => binary(*b, &args[0].data, &args[1].data),
        Op::Select => {
            let Data::Bool(pred) = &args[0].data else { unreachable!("select predicate is bool") };
            let (a, b) = (&args[1].data, &args[2].data);
            let indices: Vec<usize> = pred.iter().enumerate().map(|(i, &p)| if p { i } else { i + n }).collect();
            concat_data(&[a, b]).gather(&indices)
        }
        Op::Convert { to } => args[0].data.convert(*to),
        Op::Bitcast { to } => Data::from_bytes(*to, &args[0].data.to_bytes()).expect("the type rule checks widths"),
        Op::Loop { body, result, .. } => {
            let f = &body.funcs()[0];
            let (lo, hi) = (args[0].data.get_i64(0), args[1].data.get_i64(0));
            let carries = f.results.len();
            let mut carried: Vec<Tensor> = args[2..2 + carries].iter().map(|&a| a.clone()).collect();
            for i in lo..hi {
                let index = Tensor::new(vec![], Data::I64(vec![i]).convert(args[0].data.dtype()));
                let operands: Vec<Tensor> = std::iter::once(index)
                    .chain(carried)
                    .chain(args[2 + carries..].iter().map(|&a| a.clone()))
                    .collect();
                carried = run_with(f, &operands, &mut *adjust);
            }
            carried.swap_remove(*result).data
        }
        Op::While { bodies, result } => {
            let [cond, body] = bodies.funcs() else { unreachable!("the type rule checks a condition and a body") };
            let carries = body.results.len();
            let mut carried: Vec<Tensor> = args[..carries].iter().map(|&a| a.clone()).collect();
            let with_xs = |carried: Vec<Tensor>| -> Vec<Tensor> {
                carried.into_iter().chain(args[carries..].iter().map(|&a| a.clone())).collect()
            };
            loop {
                let operands = with_xs(carried.clone());
                let Data::Bool(go) = &run_with(cond, &operands, &mut *adjust)[0].data else {
                    unreachable!("the condition is bool")
                };
                if !go[0] {
                    break;
                }
                carried = run_with(body, &operands, &mut *adjust);
            }
            carried.swap_remove(*result).data
        }
        Op::Scan { body, carries, scanned, reverse, result, .. } => {
            let f = &body.funcs()[0];
            let xs = &args[*carries..carries + scanned];
            let n = xs[0].shape[0];
            let row = |x: &Tensor, t: usize| {
                let len = x.data.len() / n;
                Tensor::new(x.shape[1..].to_vec(), x.data.gather(&(t * len..(t + 1) * len).collect::<Vec<_>>()))
            };
            let mut carried: Vec<Tensor> = args[..*carries].iter().map(|&a| a.clone()).collect();
            let mut ys: Vec<Option<Tensor>> = vec![None; n];
            let steps: Vec<usize> = if *reverse { (0..n).rev().collect() } else { (0..n).collect() };
            for t in steps {
                let operands: Vec<Tensor> = carried
                    .into_iter()
                    .chain(xs.iter().map(|x| row(x, t)))
                    .chain(args[carries + scanned..].iter().map(|&a| a.clone()))
                    .collect();
                let mut out = run_with(f, &operands, &mut *adjust);
                if result >= carries {
                    ys[t] = Some(out.swap_remove(*result));
                }
                out.truncate(*carries);
                carried = out;
            }
            match carried.get(*result) {
                Some(c) => c.data.clone(),
                None => concat_data(&ys.iter().map(|y| &y.as_ref().expect("every row ran").data).collect::<Vec<_>>()),
            }
        }
        Op::Cond { branches, result } => {
            let Data::Bool(pred) = &args[0].data else { unreachable!("cond predicate is bool") };
            let operands: Vec<Tensor> = args[1..].iter().map(|&a| a.clone()).collect();
            run_with(branches.branch(pred[0]), &operands, &mut *adjust).swap_remove(*result).data
        }
        Op::Reduce { kind, axes } => reduce(*kind, axes, args[0]).data,
        Op::Dot => dot(args[0], args[1], ty).data,
        Op::Conv(window) => conv(window, args[0], args[1], ty),
        Op::Reshape { .. } => args[0].data.clone(),
        Op::Transpose { perm } => {
            let idx = gather_indices(&ty.shape, &args[0].shape, |o, i| {
                for (d, &p) in perm.iter().enumerate() {
                    i[p] = o[d];
                }
            });
            args[0].data.gather(&idx)
        }
        Op::Broadcast { dims, .. } => {
            let in_shape = &args[0].shape;
            let idx = gather_indices(&ty.shape, in_shape, |o, i| {
                for (k, &d) in dims.iter().enumerate() {
                    i[k] = if in_shape[k] == 1 { 0 } else { o[d] };
                }
            });
            args[0].data.gather(&idx)
        }
        Op::Slice { start, step, .. } => {
            let idx = gather_indices(&ty.shape, &args[0].shape, |o, i| {
                for d in 0..o.len() {
                    i[d] = (start[d] as i64 + o[d] as i64 * step[d]) as usize;
                }
            });
            args[0].data.gather(&idx)
        }
        Op::DynamicSlice { sizes } => {
            let starts = clamped_starts(&args[0].shape, &args[1..], sizes);
            let idx = gather_indices(&ty.shape, &args[0].shape, |o, i| {
                for d in 0..o.len() {
                    i[d] = starts[d] + o[d];
                }
            });
            args[0].data.gather(&idx)
        }
        Op::DynamicUpdateSlice => {
            let (x, update) = (args[0], args[1]);
            let starts = clamped_starts(&x.shape, &args[2..], &update.shape);
            // Elements of x, then of the update, laid end to end.
            let update_strides = strides(&update.shape);
            let mut idx = Vec::with_capacity(n);
            let mut flat = 0;
            for_each_index(&x.shape, |p| {
                let inside = (0..p.len()).all(|d| p[d] >= starts[d] && p[d] < starts[d] + update.shape[d]);
                idx.push(if inside {
                    x.data.len() + (0..p.len()).map(|d| (p[d] - starts[d]) * update_strides[d]).sum::<usize>()
                } else {
                    flat
                });
                flat += 1;
            });
            concat_data(&[&x.data, &update.data]).gather(&idx)
        }
        Op::Gather { axis } => {
            let (x, idx) = (args[0], args[1]);
            let rank = idx.shape.len();
            let idx_strides = strides(&idx.shape);
            let at = gather_indices(&ty.shape, &x.shape, |o, i| {
                let k: usize = (0..rank).map(|d| o[axis + d] * idx_strides[d]).sum();
                let j = normalized(idx.data.get_i64(k), x.shape[*axis]);
                i[..*axis].copy_from_slice(&o[..*axis]);
                i[*axis] = j.clamp(0, x.shape[*axis] as i64 - 1) as usize;
                i[axis + 1..].copy_from_slice(&o[axis + rank..]);
            });
            x.data.gather(&at)
        }
        Op::Argsort { descending } => {
            let keys = args[0];
            let n = *keys.shape.last().expect("the type rule checks the rank");
            let mut order = Vec::with_capacity(keys.data.len());
            for row in 0..keys.data.len().checked_div(n).unwrap_or(0) {
                let mut positions: Vec<usize> = (0..n).collect();
                let key = |i: usize| keys.data.get_i64(row * n + i);
                // A stable sort: equal keys keep their order, descending too.
                if *descending {
                    positions.sort_by_key(|&i| std::cmp::Reverse(key(i)));
                } else {
                    positions.sort_by_key(|&i| key(i));
                }
                order.extend(positions.into_iter().map(|i| i as i64));
            }
            match ty.dtype {
                DType::I32 => Data::I32(order.into_iter().map(|i| i as i32).collect()),
                _ => Data::I64(order),
            }
        }
        Op::Scatter { axis, kind } => {
            let (x, idx, updates) = (args[0], args[1], args[2]);
            let (rank, n) = (idx.shape.len(), x.shape[*axis]);
            let (idx_strides, x_strides) = (strides(&idx.shape), strides(&x.shape));
            let mut out = x.data.clone();
            let mut k = 0;
            for_each_index(&updates.shape, |o| {
                let j = normalized(idx.data.get_i64((0..rank).map(|d| o[axis + d] * idx_strides[d]).sum()), n);
                if (0..n as i64).contains(&j) {
                    let before = o[..*axis].iter().zip(&x_strides).map(|(a, s)| a * s).sum::<usize>();
                    let after = o[axis + rank..].iter().zip(&x_strides[axis + 1..]).map(|(a, s)| a * s).sum::<usize>();
                    let t = before + j as usize * x_strides[*axis] + after;
                    let update = updates.data.gather(&[k]);
                    let value = match kind.combiner() {
                        None => update,
                        Some(op) => binary(op, &out.gather(&[t]), &update),
                    };
                    out.set(t, &value);
                }
                k += 1;
            });
            out
        }
        Op::Concat { axis } => {
            // Index into the operands laid end to end.
            let mut offsets = vec![0];
            let mut bounds = vec![0];
            for a in args {
                offsets.push(offsets.last().unwrap() + a.data.len());
                bounds.push(bounds.last().unwrap() + a.shape[*axis]);
            }
            let mut indices = Vec::with_capacity(n);
            for_each_index(&ty.shape, |o| {
                let k = bounds.iter().rposition(|&b| b <= o[*axis]).unwrap();
                let a = &args[k];
                let s = strides(&a.shape);
                let flat: usize =
                    (0..o.len()).map(|d| if d == *axis { (o[d] - bounds[k]) * s[d] } else { o[d] * s[d] }).sum();
                indices.push(offsets[k] + flat);
            });
            let parts: Vec<&Data> = args.iter().map(|a| &a.data).collect();
            concat_data(&parts).gather(&indices)
        }
    };
    Tensor::new(ty.shape.clone(), data)
}

/// An index into an axis of `n` elements with a negative one counted from the end (once).
fn normalized(j: i64, n: usize) -> i64 {
    if j < 0 {
        j.saturating_add(n as i64)
    } else {
        j
    }
}

/// The operands' elements laid end to end (all of one dtype).
pub fn concat_data(parts: &[&Data]) -> Data {
    macro_rules! cat {
        ($variant:ident) => {
            Data::$variant(
                parts
                    .iter()
                    .flat_map(|p| match p {
                        Data::$variant(v) => v.iter().copied(),
                        _ => unreachable!("type rule gives concat operands of one dtype"),
                    })
                    .collect(),
            )
        };
    }
    match parts[0] {
        Data::Bool(_) => cat!(Bool),
        Data::U8(_) => cat!(U8),
        Data::I32(_) => cat!(I32),
        Data::U32(_) => cat!(U32),
        Data::I64(_) => cat!(I64),
        Data::F16(_) => cat!(F16),
        Data::BF16(_) => cat!(BF16),
        Data::F32(_) => cat!(F32),
        Data::F64(_) => cat!(F64),
    }
}

fn binary(op: BinaryOp, a: &Data, b: &Data) -> Data {
    fn float<T: crate::ops::Float>(op: BinaryOp, a: &[T], b: &[T], wrap: fn(Vec<T>) -> Data) -> Data {
        let r: Vec<T> = a.iter().zip(b).map(|(&x, &y)| op.eval_float(x, y)).collect();
        if op.is_comparison() {
            Data::Bool(r.iter().map(|&x| x == T::ONE).collect())
        } else {
            wrap(r)
        }
    }
    fn int<T: Elem>(op: BinaryOp, a: &[T], b: &[T], bits: u32, wrap: fn(Vec<i64>) -> Data) -> Data {
        let r: Vec<i64> = a.iter().zip(b).map(|(x, y)| op.eval_int(x.to_i64(), y.to_i64(), bits)).collect();
        if op.is_comparison() {
            Data::Bool(r.iter().map(|&x| x != 0).collect())
        } else {
            wrap(r)
        }
    }
    match (a, b) {
        (Data::F32(a), Data::F32(b)) => float(op, a, b, Data::F32),
        (Data::F64(a), Data::F64(b)) => float(op, a, b, Data::F64),
        (Data::U8(a), Data::U8(b)) => int(op, a, b, 8, |v| Data::U8(v.into_iter().map(|x| x as u8).collect())),
        (Data::I32(a), Data::I32(b)) => int(op, a, b, 32, |v| Data::I32(v.into_iter().map(|x| x as i32).collect())),
        (Data::U32(a), Data::U32(b)) => int(op, a, b, 32, |v| Data::U32(v.into_iter().map(|x| x as u32).collect())),
        (Data::I64(a), Data::I64(b)) => int(op, a, b, 64, Data::I64),
        (Data::Bool(a), Data::Bool(b)) => int(op, a, b, 1, |v| Data::Bool(v.into_iter().map(|x| x != 0).collect())),
        _ => unreachable!("type rule gives binary ops operands of one dtype"),
    }
}

/// Accumulates a reduction: sums in f64 for floats (wrapping i64 for integers), max and min
/// propagating NaN.
fn reduce(kind: ReduceKind, axes: &[usize], x: &Tensor) -> Tensor {
    let kept: Vec<usize> = (0..x.shape.len()).filter(|a| !axes.contains(a)).collect();
    let out_shape: Vec<usize> = kept.iter().map(|&a| x.shape[a]).collect();
    let out_strides = strides(&out_shape);
    let mut target = Vec::with_capacity(x.data.len());
    for_each_index(&x.shape, |idx| {
        target.push(kept.iter().zip(&out_strides).map(|(&a, s)| idx[a] * s).sum::<usize>());
    });
    let m: usize = out_shape.iter().product();
    fn fold<T: Copy>(init: T, m: usize, target: &[usize], v: &[T], f: impl Fn(T, T) -> T) -> Vec<T> {
        let mut acc = vec![init; m];
        for (i, &x) in v.iter().enumerate() {
            acc[target[i]] = f(acc[target[i]], x);
        }
        acc
    }
    let init = kind.identity(x.data.dtype());
    let data = match (&x.data, kind) {
        (Data::F32(v), ReduceKind::Sum) => {
            let wide: Vec<f64> = v.iter().map(|&x| x as f64).collect();
            Data::F32(fold(0.0, m, &target, &wide, |a, b| a + b).into_iter().map(|x| x as f32).collect())
        }
        (Data::F64(v), ReduceKind::Sum) => Data::F64(fold(0.0, m, &target, v, |a, b| a + b)),
        (Data::F32(v), ReduceKind::Prod) => Data::F32(fold(1.0, m, &target, v, |a, b| a * b)),
        (Data::F64(v), ReduceKind::Prod) => Data::F64(fold(1.0, m, &target, v, |a, b| a * b)),
        (Data::F32(v), _) => {
            let f = if kind == ReduceKind::Max { float_max::<f32> } else { float_min::<f32> };
            Data::F32(fold(init.as_f64() as f32, m, &target, v, f))
        }
        (Data::F64(v), _) => {
            let f = if kind == ReduceKind::Max { float_max::<f64> } else { float_min::<f64> };
            Data::F64(fold(init.as_f64(), m, &target, v, f))
        }
        (Data::Bool(_), _) => unreachable!("type rule rejects reductions of bool"),
        (data, _) => {
            let d = data.dtype();
            let wide: Vec<i64> = (0..data.len()).map(|i| data.get_i64(i)).collect();
            let Literal::Int(_, init) = init else { unreachable!("integer identity") };
            let r = fold(init, m, &target, &wide, |a, b| d.wrap(kind.combiner().eval_int(a, b, d.bits())));
            Data::I64(r).convert(d)
        }
    };
    Tensor::new(out_shape, data)
}

/// Batched matrix product, accumulating floats in f64 and integers with wrapping.
fn dot(a: &Tensor, b: &Tensor, ty: &TensorType) -> Tensor {
    let r = a.shape.len();
    let (m, k, n) = (a.shape[r - 2], a.shape[r - 1], b.shape[r - 1]);
    let batch: usize = a.shape[..r - 2].iter().product();
    let mut out = vec![0f64; batch * m * n];
    let mut out_int = vec![0i64; batch * m * n];
    let is_float = ty.dtype.is_float();
    // Each result element sums its k products in order of l, as the definition does; the loops
    // run over rows of b, the innermost over a row's elements.
    let floats = |d: &Data| -> Vec<f64> { (0..d.len()).map(|i| d.get_f64(i)).collect() };
    let (af, bf) = if is_float { (floats(&a.data), floats(&b.data)) } else { (vec![], vec![]) };
    for bt in 0..batch {
        for i in 0..m {
            let o = (bt * m + i) * n;
            for l in 0..k {
                let x = bt * m * k + i * k + l;
                let y = bt * k * n + l * n;
                if is_float {
                    let p = af[x];
                    for (acc, &q) in out[o..o + n].iter_mut().zip(&bf[y..y + n]) {
                        *acc += p * q;
                    }
                } else {
                    let p = a.data.get_i64(x);
                    for j in 0..n {
                        out_int[o + j] = out_int[o + j].wrapping_add(p.wrapping_mul(b.data.get_i64(y + j)));
                    }
                }
            }
        }
    }
    let data = if is_float { Data::F64(out).convert(ty.dtype) } else { Data::I64(out_int).convert(ty.dtype) };
    Tensor::new(ty.shape.clone(), data)
}

/// The convolution by its definition, summed over taps and then channels, in f64. Padding and
/// dilation zeros are multiplied like any element (an infinite weight gives NaN there), as in
/// the padded input the definition describes.
fn conv(window: &ConvWindow, x: &Tensor, w: &Tensor, ty: &TensorType) -> Data {
    let (&[n, h, wd, c], &[kh, kw, _, f]) = (x.shape.as_slice(), w.shape.as_slice()) else {
        unreachable!("the type rule checks conv2d's ranks")
    };
    let (oh, ow) = (ty.shape[1], ty.shape[2]);
    let mut out = vec![0f64; ty.num_elements()];
    for b in 0..n {
        for i in 0..oh {
            for j in 0..ow {
                let y = &mut out[((b * oh + i) * ow + j) * f..][..f];
                for p in 0..kh {
                    let r = window.source(0, i, p, h);
                    for q in 0..kw {
                        let s = window.source(1, j, q, wd);
                        for ch in 0..c {
                            let xv = match (r, s) {
                                (Some(r), Some(s)) => x.data.get_f64(((b * h + r) * wd + s) * c + ch),
                                _ => 0.0,
                            };
                            let k = ((p * kw + q) * c + ch) * f;
                            for (o, acc) in y.iter_mut().enumerate() {
                                *acc += xv * w.data.get_f64(k + o);
                            }
                        }
                    }
                }
            }
        }
    }
    Data::F64(out).convert(ty.dtype)
}

/// How float results are compared with the reference.
#[derive(Clone, Copy, Debug)]
pub enum Tolerance {
    /// |a - r| <= rtol * |r| for every element: for elementwise results.
    Elementwise(f64),
    /// |a - r| <= rtol * max|r|: errors scaled by the tensor's magnitude, so that sums and dot
    /// products with cancellation are judged fairly.
    Scaled(f64),
    /// |a - r| <= rtol * max(max|r|, operands): for whole programs, whose results may be
    /// differences of values as large as their inputs (`exp(log(x)) - x`), exact only relative
    /// to those; `operands` is the largest magnitude among the inputs.
    Program { rtol: f64, operands: f64 },
}

/// Compares a result with the reference: same type; integers and bools exactly; floats within
/// the tolerance, infinities exactly, and NaN exactly where the reference has NaN.
pub fn compare(reference: &Tensor, actual: &Tensor, tolerance: Tolerance) -> Result<(), String> {
    compare_where(reference, actual, tolerance, &vec![true; reference.data.len()])
}

/// [`compare`] on the elements `considered` marks only (the well-conditioned ones, say).
pub fn compare_where(
    reference: &Tensor,
    actual: &Tensor,
    tolerance: Tolerance,
    considered: &[bool],
) -> Result<(), String> {
    if reference.ty() != actual.ty() {
        return Err(format!("type {} instead of {}", actual.ty(), reference.ty()));
    }
    let agree = agreement(reference, actual, tolerance);
    match (0..agree.len()).find(|&i| considered[i] && !agree[i]) {
        None => Ok(()),
        Some(i) => {
            let (r, a) = (reference.data.get_f64(i), actual.data.get_f64(i));
            Err(if reference.data.dtype().is_float() {
                format!("element {i} is {a:e} instead of {r:e} (tolerance {:e})", allowance(reference, tolerance)(i))
            } else {
                format!("element {i} is {a} instead of {r}")
            })
        }
    }
}

/// Whether each element of `actual` agrees with `reference` (of the same type) as [`compare`]
/// judges it.
pub fn agreement(reference: &Tensor, actual: &Tensor, tolerance: Tolerance) -> Vec<bool> {
    let allowed = allowance(reference, tolerance);
    let float = reference.data.dtype().is_float();
    (0..reference.data.len())
        .map(|i| {
            let (r, a) = (reference.data.get_f64(i), actual.data.get_f64(i));
            if !float {
                r == a
            } else if r.is_nan() || a.is_nan() {
                r.is_nan() && a.is_nan()
            } else if r.is_infinite() || a.is_infinite() {
                r == a
            } else {
                (a - r).abs() <= allowed(i).max(f64::MIN_POSITIVE)
            }
        })
        .collect()
}

/// The error `tolerance` allows at each element of `reference`.
fn allowance(reference: &Tensor, tolerance: Tolerance) -> impl Fn(usize) -> f64 + '_ {
    let n = reference.data.len();
    let scale = (0..n).map(|i| reference.data.get_f64(i)).filter(|x| x.is_finite()).fold(0.0f64, |m, x| m.max(x.abs()));
    move |i| match tolerance {
        Tolerance::Elementwise(rtol) => rtol * reference.data.get_f64(i).abs(),
        Tolerance::Scaled(rtol) => rtol * scale,
        Tolerance::Program { rtol, operands } => rtol * scale.max(operands),
    }
}

/// A short text form of a tensor: all elements if there are at most 8, else the first 8.
pub fn summary(t: &Tensor) -> String {
    let n = t.data.len();
    let shown: Vec<String> = (0..n.min(8))
        .map(|i| match &t.data {
            Data::Bool(v) => v[i].to_string(),
            Data::U8(v) => v[i].to_string(),
            Data::I32(v) => v[i].to_string(),
            Data::U32(v) => v[i].to_string(),
            Data::I64(v) => v[i].to_string(),
            Data::F16(v) => format!("{:.4}", v[i]),
            Data::BF16(v) => format!("{:.3}", v[i]),
            Data::F32(v) => format!("{:.6}", v[i]),
            Data::F64(v) => format!("{:.6}", v[i]),
        })
        .collect();
    let more = if n > 8 { format!(", ... ({n} elements)") } else { String::new() };
    if t.shape.is_empty() {
        shown[0].clone()
    } else {
        format!("[{}{more}]", shown.join(", "))
    }
}
