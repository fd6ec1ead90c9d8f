//! Random numbers as jax.random draws them, bit for bit: threefry2x32 keys derived as JAX does
//! by default since 0.5 (`jax_threefry_partitionable`), and the samplers built on their bits.
//!
//! A key is its own kind of value ([`Val::Key`]): its data are two u32 words (an array of keys
//! has the keys' shape and then 2, as `jax.random.key_data` shows it). Everything here is
//! elaborated into ordinary u32 elementwise ops (wrapping adds, rotations, xors), which fuse
//! into one loop per draw; nothing is drawn when the program is compiled.
//!
//! JAX's definitions (jax/_src/random/threefry2x32.py and core.py):
//! - threefry2x32(k, (x0, x1)): 20 rounds of Threefish's mix on two words with a key injection
//!   every 4 rounds (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", 2011).
//! - key(seed) = [seed >> 32, seed & 0xFFFFFFFF] (a 32-bit seed's high word is 0).
//! - counts over a shape: the row-major position of each element as 64 bits, split into a high
//!   and a low word (`iota_2x32_shape`).
//! - split(k, shape) = stack(threefry2x32(k, counts(shape)), axis=-1).
//! - fold_in(k, d) = threefry2x32(k, (0, d)).
//! - random_bits(k, shape) = b0 ^ b1 of threefry2x32(k, counts(shape)); 64 bits are b0 << 32 | b1.
//! - uniform: the top mantissa bits of random bits under the exponent of 1.0 give [1, 2);
//!   minus 1, scaled and shifted: max(lo, u (hi - lo) + lo).
//! - normal = sqrt(2) erfinv(uniform in (-1, 1)); bernoulli = uniform < p; categorical =
//!   argmax(logits + gumbel), gumbel = -log(-log(uniform in [tiny, 1))).

use crate::ast::{Dim, Expr, ExprKind, IndexItem, TypeExpr};
use crate::builtins::{arg_extreme, axis_arg, axis_slice, binary, bool_arg, int_list, Bound};
use crate::elab::{broadcast_shapes, Elab, Env, Lit, Val};
use kiln_ir::types::format_shape;
use kiln_ir::{BinaryOp, DType, Diagnostic, Op, ReduceKind, Span, TensorType, UnaryOp, Value};

type R<T> = Result<T, Diagnostic>;

/// The builtins this module lowers, with their parameters and how many are required (see
/// `builtins::SIGNATURES`).
pub const SIGNATURES: &[(&str, &[&str], usize)] = &[
    ("key", &["seed"], 1),
    ("split", &["key", "num"], 1),
    ("fold_in", &["key", "data"], 2),
    ("random_bits", &["key", "shape", "dtype"], 1),
    ("uniform", &["key", "shape", "dtype", "minval", "maxval"], 1),
    ("normal", &["key", "shape", "dtype"], 1),
    ("bernoulli", &["key", "p", "shape"], 1),
    ("categorical", &["key", "logits", "axis", "shape"], 2),
    ("permutation", &["key", "x", "axis", "independent"], 2),
    ("key_data", &["keys"], 1),
    ("wrap_key_data", &["key_bits_array"], 1),
];

/// The type name of keys in signatures: `key`, `key[4]`.
const KEY_TYPE: &str = "key";

/// threefry2x32's key-schedule parity word (Threefish's C240 for 32-bit words).
const PARITY: i64 = 0x1BD1_1BDA;

/// The rotation distances of threefry2x32's rounds: the first row for rounds 1-4, 9-12 and
/// 17-20, the second for 5-8 and 13-16.
const ROTATIONS: [[i64; 4]; 2] = [[13, 15, 26, 6], [17, 29, 16, 24]];

/// Whether a declared type is a key type.
pub fn is_key_type(ty: &TypeExpr) -> bool {
    ty.dtype.name == KEY_TYPE
}

/// How a key of data type `data` is written: `key`, `key[4]`.
pub fn key_text(data: &TensorType) -> String {
    let shape = &data.shape[..data.rank() - 1];
    if shape.is_empty() {
        KEY_TYPE.to_string()
    } else {
        format!("{KEY_TYPE}{}", format_shape(shape))
    }
}

/// E0236: a key where an array is expected.
pub fn key_as_array(data: &TensorType, span: Span) -> Diagnostic {
    Diagnostic::error("E0236", "expected an array, found a random key")
        .at(span, format!("this is a {}", key_text(data)))
        .help("draw numbers with it, as `uniform(k, [3])`, or read its two u32 words with `key_data(k)`")
}

/// E0237: something other than a key where a key is expected.
fn not_a_key(el: &Elab, v: &Val, span: Span, what: &str) -> Diagnostic {
    Diagnostic::error("E0237", format!("expected {what}, found {}", el.describe(v)))
        .at(span, format!("this is {}", el.describe(v)))
        .help("make a key with `key(seed)`, or from u32 words of shape [..., 2] with `wrap_key_data(bits)`")
}

/// Checks that `v` is a key of the declared key type (binding its shape variables).
pub fn check_key<'a>(
    el: &mut Elab<'a>,
    env: &mut Env,
    v: Val,
    ty: &TypeExpr,
    span: Span,
    code: &'static str,
    what: &str,
) -> R<Val> {
    let mismatch = |found: String| {
        let declared = crate::elab::type_expr_text(ty);
        Diagnostic::error(code, format!("mismatched types: {what} is {found}, declared {declared}"))
            .at(span, format!("this is {found}"))
            .also(ty.span, "declared here")
    };
    let Val::Key(t) = v else { return Err(mismatch(el.describe(&v))) };
    let mut data = ty.clone();
    data.dtype.name = DType::U32.name().to_string();
    data.dims.push(Dim::Known(2, ty.span));
    match el.check_against(env, Val::Tensor(t), &data, span, code, what) {
        Ok(_) => Ok(Val::Key(t)),
        Err(_) => Err(mismatch(key_text(el.ty(t)))),
    }
}

/// The `i`th key of an array of keys `t` (along its first axis).
pub fn key_at(el: &mut Elab, t: Value, i: usize, span: Span) -> R<Val> {
    first_axis_at(el, t, i, span).map(Val::Key)
}

/// Element `i` of `t`'s first axis, without that axis.
fn first_axis_at(el: &mut Elab, t: Value, i: usize, span: Span) -> R<Value> {
    let rest = el.ty(t).shape[1..].to_vec();
    let sliced = axis_slice(el, t, 0, i, 1, 1, span)?;
    el.reshape(sliced, rest, span)
}

/// `keys[items]`: keys picked or sliced as an array of their shape would be (integers and
/// ranges only: the words axis stays whole).
pub fn index<'a>(el: &mut Elab<'a>, env: &mut Env, t: Value, items: &'a [IndexItem], span: Span) -> R<Val> {
    let rank = el.ty(t).rank() - 1;
    if let Some(item) = items.iter().find(|i| matches!(i, IndexItem::NewAxis(_) | IndexItem::Ellipsis(_))) {
        let s = match item {
            IndexItem::NewAxis(s) | IndexItem::Ellipsis(s) => *s,
            _ => span,
        };
        return Err(Diagnostic::error("E0236", "keys are indexed by integers and ranges only")
            .at(s, "not for keys")
            .help("index the keys' data instead: `key_data(keys)[...]`"));
    }
    if items.len() > rank {
        return Err(Diagnostic::error("E0206", format!("too many indices for a {}", key_text(el.ty(t))))
            .at(span, format!("{} indices for {rank} axes", items.len())));
    }
    match el.index(env, t, items, span)? {
        Val::Tensor(d) => Ok(Val::Key(d)),
        v => Ok(v),
    }
}

/// Lowers a call of one of [`SIGNATURES`]' builtins.
pub fn call<'a>(el: &mut Elab<'a>, env: &mut Env, name: &str, b: &Bound<'a>, span: Span) -> R<Val> {
    let arg = |i: usize| b.get(i);
    Ok(match name {
        "key" => Val::Key(seed_key(el, env, arg(0).expect("required"), span)?),
        "split" => {
            let k = single_key(el, env, arg(0), name)?;
            let shape = match arg(1) {
                None => vec![2],
                Some(e) => shape_arg(el, env, e, true)?,
            };
            let [b0, b1] = words(el, k, &shape, span)?;
            Val::Key(stack_words(el, b0, b1, span)?)
        }
        "fold_in" => {
            let k = single_key(el, env, arg(0), name)?;
            let e = arg(1).expect("required");
            let v = el.eval(env, e)?;
            let data = integer_scalar(el, v, e.span, "the data of `fold_in`")?;
            let data = el.convert(data, DType::U32, span)?;
            let zero = el.lit_to(Lit::Int(0), DType::U32, span)?;
            let [b0, b1] = threefry(el, k, [zero, data], span)?;
            Val::Key(stack_words(el, b0, b1, span)?)
        }
        "random_bits" => {
            let k = single_key(el, env, arg(0), name)?;
            let shape = optional_shape(el, env, arg(1))?;
            let dtype = match arg(2) {
                None => DType::U32,
                Some(e) => crate::builtins::dtype_argument(e)?,
            };
            if !matches!(dtype, DType::U8 | DType::U32) {
                return Err(Diagnostic::error("E0217", format!("`random_bits` draws u8 or u32 values, not {dtype}"))
                    .at(arg(2).map_or(span, |e| e.span), "not an unsigned dtype"));
            }
            let bits = bits32(el, k, &shape, span)?;
            Val::Tensor(el.convert(bits, dtype, span)?)
        }
        "uniform" => {
            let k = single_key(el, env, arg(0), name)?;
            let shape = optional_shape(el, env, arg(1))?;
            let dtype = float_dtype(arg(2), name)?;
            let lo = bound(el, env, arg(3), 0.0, dtype, span)?;
            let hi = bound(el, env, arg(4), 1.0, dtype, span)?;
            Val::Tensor(uniform(el, k, &shape, dtype, (lo, hi), span)?)
        }
        "normal" => {
            let k = single_key(el, env, arg(0), name)?;
            let shape = optional_shape(el, env, arg(1))?;
            let dtype = float_dtype(arg(2), name)?;
            Val::Tensor(normal(el, k, &shape, dtype, span)?)
        }
        "bernoulli" => {
            let k = single_key(el, env, arg(0), name)?;
            let p = match arg(1) {
                None => el.lit_to(Lit::Float(0.5), DType::F32, span)?,
                Some(e) => {
                    let v = el.eval(env, e)?;
                    let p = el.tensor_arg(v, e.span)?;
                    el.require_numeric(p, e.span, "draw `bernoulli` with")?;
                    el.float_of(p, e.span)?
                }
            };
            let pt = el.ty(p).clone();
            let shape = match arg(2) {
                None => pt.shape.clone(),
                Some(e) => {
                    let shape = shape_arg(el, env, e, false)?;
                    if broadcast_shapes(&shape, &pt.shape).as_deref() != Some(&shape[..]) {
                        return Err(shape_mismatch("p", &pt, &shape, e.span));
                    }
                    shape
                }
            };
            let (lo, hi) = (el.lit_to(Lit::Float(0.0), pt.dtype, span)?, el.lit_to(Lit::Float(1.0), pt.dtype, span)?);
            let u = uniform(el, k, &shape, pt.dtype, (lo, hi), span)?;
            Val::Tensor(binary(el, BinaryOp::Lt, u, p, span)?)
        }
        "categorical" => {
            let k = single_key(el, env, arg(0), name)?;
            let e = arg(1).expect("required");
            let v = el.eval(env, e)?;
            let logits = el.tensor_arg(v, e.span)?;
            el.require_numeric(logits, e.span, "draw `categorical` from")?;
            let logits = el.float_of(logits, e.span)?;
            Val::Tensor(categorical(el, env, k, logits, (arg(2), arg(3)), span)?)
        }
        "permutation" => {
            let k = single_key(el, env, arg(0), name)?;
            let e = arg(1).expect("required");
            let x = match el.eval(env, e)? {
                Val::Lit(Lit::Int(n)) if n >= 1 => {
                    let n = usize::try_from(n).ok().filter(|&n| n as u64 <= kiln_ir::types::MAX_ELEMENTS);
                    let n = n.ok_or_else(|| {
                        Diagnostic::error("E0213", "too many elements to permute").at(e.span, "too many")
                    })?;
                    el.push(Op::Iota { dtype: DType::I32, shape: vec![n], axis: 0 }, vec![], span)?
                }
                Val::Lit(Lit::Int(n)) => {
                    return Err(Diagnostic::error("E0213", format!("cannot permute {n} elements"))
                        .at(e.span, "must be positive"))
                }
                v => el.tensor_arg(v, e.span)?,
            };
            let rank = el.ty(x).rank();
            if rank == 0 {
                return Err(Diagnostic::error(
                    "E0205",
                    "`permutation` needs a positive integer or an array with an axis",
                )
                .at(e.span, "a scalar array"));
            }
            let axis = match arg(2) {
                None => 0,
                Some(a) => axis_arg(el, env, a, rank)?,
            };
            let independent = bool_arg(el, env, arg(3))?;
            Val::Tensor(permutation(el, k, x, axis, independent, span)?)
        }
        "key_data" => {
            let e = arg(0).expect("required");
            match el.eval(env, e)? {
                Val::Key(t) => Val::Tensor(t),
                v => return Err(not_a_key(el, &v, e.span, "random keys")),
            }
        }
        _ => {
            let e = arg(0).expect("required");
            let v = el.eval(env, e)?;
            let t = el.tensor_arg(v, e.span)?;
            let ty = el.ty(t).clone();
            if ty.dtype != DType::U32 || ty.shape.last() != Some(&2) {
                return Err(Diagnostic::error("E0237", format!("key data must be u32 of shape [..., 2], not {ty}"))
                    .at(e.span, format!("this is {ty}"))
                    .note("a threefry2x32 key is two u32 words, as `key_data` gives them"));
            }
            Val::Key(t)
        }
    })
}

/// The key `key(seed)` makes: JAX's threefry_seed, with a literal seed taken as i64 (as
/// jax.random.key takes a Python int).
fn seed_key<'a>(el: &mut Elab<'a>, env: &mut Env, e: &'a Expr, span: Span) -> R<Value> {
    let v = el.eval(env, e)?;
    let (hi, lo) = match v {
        Val::Lit(Lit::Int(s)) => (
            el.lit_to(Lit::Int((s as u64 >> 32) as i64), DType::U32, span)?,
            el.lit_to(Lit::Int(s as u32 as i64), DType::U32, span)?,
        ),
        v => {
            let seed = integer_scalar(el, v, e.span, "a seed")?;
            let hi = if el.ty(seed).dtype.bits() > 32 {
                let shift = el.lit_to(Lit::Int(32), el.ty(seed).dtype, span)?;
                let top = el.push(Op::Binary(BinaryOp::ShrU), vec![seed, shift], span)?;
                el.convert(top, DType::U32, span)?
            } else {
                el.lit_to(Lit::Int(0), DType::U32, span)?
            };
            (hi, el.convert(seed, DType::U32, span)?)
        }
    };
    stack_words(el, hi, lo, span)
}

/// An integer scalar (a literal as i64), for `what` in the error.
fn integer_scalar(el: &mut Elab, v: Val, span: Span, what: &str) -> R<Value> {
    let t = match v {
        Val::Lit(Lit::Int(i)) => return el.lit_to(Lit::Int(i), DType::I64, span),
        Val::Tensor(t) => t,
        v => {
            return Err(Diagnostic::error("E0216", format!("expected an integer scalar for {what}"))
                .at(span, format!("this is {}", el.describe(&v))))
        }
    };
    let ty = el.ty(t);
    if !ty.dtype.is_int() || ty.rank() != 0 {
        return Err(Diagnostic::error("E0216", format!("expected an integer scalar for {what}"))
            .at(span, format!("this is {ty}"))
            .note("use `vmap` to draw with many keys or seeds at once"));
    }
    Ok(t)
}

/// The two words of a single key argument (E0237 for anything else, including arrays of keys).
fn single_key<'a>(el: &mut Elab<'a>, env: &mut Env, e: Option<&'a Expr>, name: &str) -> R<[Value; 2]> {
    let e = e.expect("required");
    let v = el.eval(env, e)?;
    let t = match v {
        Val::Key(t) if el.ty(t).rank() == 1 => t,
        Val::Key(t) => {
            return Err(Diagnostic::error(
                "E0237",
                format!("`{name}` takes a single key, not a {}", key_text(el.ty(t))),
            )
            .at(e.span, format!("this is a {}", key_text(el.ty(t))))
            .help("pick one, as `keys[0]`, or use `vmap` to draw with each"))
        }
        v => return Err(not_a_key(el, &v, e.span, "a random key")),
    };
    Ok([first_axis_at(el, t, 0, e.span)?, first_axis_at(el, t, 1, e.span)?])
}

/// A shape argument: a list of dimensions or (where `single` allows, as split's `num`) one
/// number.
fn shape_arg<'a>(el: &mut Elab<'a>, env: &mut Env, e: &'a Expr, single: bool) -> R<Vec<usize>> {
    let dims = match &e.kind {
        ExprKind::List(_) => int_list(el, env, e)?,
        _ if single => vec![el.const_int(env, e)?],
        _ => {
            return Err(Diagnostic::error("E0216", "expected a shape")
                .at(e.span, "not a list")
                .help("write a shape as a list, e.g. `[2, 3]`, or `[]` for a scalar"))
        }
    };
    if dims.iter().any(|&d| d <= 0) {
        return Err(
            Diagnostic::error("E0213", format!("invalid shape {dims:?}")).at(e.span, "dimensions must be positive")
        );
    }
    let shape: Vec<usize> = dims.iter().map(|&d| d as usize).collect();
    crate::elab::check_type_shape(&shape, e.span)?;
    Ok(shape)
}

/// An optional shape argument: a scalar when absent (as jax.random's `shape=()`).
fn optional_shape<'a>(el: &mut Elab<'a>, env: &mut Env, e: Option<&'a Expr>) -> R<Vec<usize>> {
    e.map_or(Ok(vec![]), |e| shape_arg(el, env, e, false))
}

/// A sampler's float dtype: f32 unless given.
fn float_dtype(e: Option<&Expr>, name: &str) -> R<DType> {
    let Some(e) = e else { return Ok(DType::F32) };
    let d = crate::builtins::dtype_argument(e)?;
    if !d.is_float() {
        return Err(Diagnostic::error("E0217", format!("`{name}` draws floats, not {d}"))
            .at(e.span, "not a float dtype")
            .help("draw integers with `random_bits`"));
    }
    Ok(d)
}

/// A bound of `uniform` (`default` when absent) as `dtype`.
fn bound<'a>(
    el: &mut Elab<'a>,
    env: &mut Env,
    e: Option<&'a Expr>,
    default: f64,
    dtype: DType,
    span: Span,
) -> R<Value> {
    let Some(e) = e else { return el.lit_to(Lit::Float(default), dtype, span) };
    let v = el.eval(env, e)?;
    match v {
        Val::Lit(l) => el.lit_to(Lit::Float(lit_f64(l)), dtype, e.span),
        v => {
            let t = el.tensor_arg(v, e.span)?;
            el.require_numeric(t, e.span, "bound `uniform` by")?;
            el.convert(t, dtype, e.span)
        }
    }
}

fn lit_f64(l: Lit) -> f64 {
    match l {
        Lit::Int(i) => i as f64,
        Lit::Float(f) => f,
        Lit::Bool(b) => b as i64 as f64,
    }
}

fn shape_mismatch(what: &str, ty: &TensorType, shape: &[usize], span: Span) -> Diagnostic {
    Diagnostic::error("E0203", format!("{what} of type {ty} does not broadcast to the shape {}", format_shape(shape)))
        .at(span, format!("the shape is {}", format_shape(shape)))
        .note("jax.random's parameters broadcast to the shape drawn")
}

fn u32_const(el: &mut Elab, v: i64, span: Span) -> R<Value> {
    el.lit_to(Lit::Int(v), DType::U32, span)
}

/// x rotated left by `r` bits (0 < r < 32): (x << r) | (x >> (32 - r)).
fn rotate_left(el: &mut Elab, x: Value, r: i64, span: Span) -> R<Value> {
    let (left, right) = (u32_const(el, r, span)?, u32_const(el, 32 - r, span)?);
    let high = binary(el, BinaryOp::Shl, x, left, span)?;
    let low = binary(el, BinaryOp::ShrU, x, right, span)?;
    binary(el, BinaryOp::Or, high, low, span)
}

/// threefry2x32 of the two count words `x` (of one shape) under the key words `k`.
fn threefry(el: &mut Elab, k: [Value; 2], x: [Value; 2], span: Span) -> R<[Value; 2]> {
    let parity = u32_const(el, PARITY, span)?;
    let k01 = binary(el, BinaryOp::Xor, k[0], k[1], span)?;
    let ks = [k[0], k[1], binary(el, BinaryOp::Xor, k01, parity, span)?];
    let add = |el: &mut Elab, a: Value, b: Value| binary(el, BinaryOp::Add, a, b, span);
    let mut x = [add(el, x[0], ks[0])?, add(el, x[1], ks[1])?];
    for i in 0..5 {
        for &r in &ROTATIONS[i % 2] {
            x[0] = add(el, x[0], x[1])?;
            let rotated = rotate_left(el, x[1], r, span)?;
            x[1] = binary(el, BinaryOp::Xor, x[0], rotated, span)?;
        }
        // The key injection after each group of four rounds: the schedule's next words, and
        // the group's number.
        x[0] = add(el, x[0], ks[(i + 1) % 3])?;
        let injected = add(el, x[1], ks[(i + 2) % 3])?;
        let round = u32_const(el, i as i64 + 1, span)?;
        x[1] = add(el, injected, round)?;
    }
    Ok(x)
}

/// The row-major position of each element of `shape` as 64 bits: its high and low words.
fn counts(el: &mut Elab, shape: &[usize], span: Span) -> R<(Value, Value)> {
    let n: usize = shape.iter().product();
    let wide = n as u64 > u32::MAX as u64;
    let dtype = if wide { DType::I64 } else { DType::U32 };
    let mut position = el.splat(Lit::Int(0), dtype, shape, span)?;
    let mut stride = 1i64;
    for axis in (0..shape.len()).rev() {
        let along = el.push(Op::Iota { dtype, shape: shape.to_vec(), axis }, vec![], span)?;
        let scale = el.lit_to(Lit::Int(stride), dtype, span)?;
        let scaled = if stride == 1 { along } else { binary(el, BinaryOp::Mul, along, scale, span)? };
        position = binary(el, BinaryOp::Add, position, scaled, span)?;
        stride *= shape[axis] as i64;
    }
    if !wide {
        return Ok((el.splat(Lit::Int(0), DType::U32, shape, span)?, position));
    }
    let shift = el.lit_to(Lit::Int(32), DType::I64, span)?;
    let top = binary(el, BinaryOp::ShrU, position, shift, span)?;
    Ok((el.convert(top, DType::U32, span)?, el.convert(position, DType::U32, span)?))
}

/// Two word arrays of one shape as key data: stacked on a new last axis.
fn stack_words(el: &mut Elab, a: Value, b: Value, span: Span) -> R<Value> {
    let shape = [el.ty(a).shape.clone(), vec![1]].concat();
    let parts = [el.reshape(a, shape.clone(), span)?, el.reshape(b, shape.clone(), span)?];
    el.push(Op::Concat { axis: shape.len() - 1 }, parts.to_vec(), span)
}

/// The two threefry words drawn for each element of `shape`.
fn words(el: &mut Elab, k: [Value; 2], shape: &[usize], span: Span) -> R<[Value; 2]> {
    let (hi, lo) = counts(el, shape, span)?;
    threefry(el, k, [hi, lo], span)
}

/// 32 random bits per element of `shape` (JAX's random_bits at width 32).
fn bits32(el: &mut Elab, k: [Value; 2], shape: &[usize], span: Span) -> R<Value> {
    let [b0, b1] = words(el, k, shape, span)?;
    binary(el, BinaryOp::Xor, b0, b1, span)
}

/// Uniform floats of `dtype` in [lo, hi) over `shape` (lo and hi broadcast to it).
fn uniform(
    el: &mut Elab,
    k: [Value; 2],
    shape: &[usize],
    dtype: DType,
    (lo, hi): (Value, Value),
    span: Span,
) -> R<Value> {
    for bound in [lo, hi] {
        let bt = el.ty(bound).clone();
        if broadcast_shapes(shape, &bt.shape).as_deref() != Some(shape) {
            return Err(shape_mismatch("a bound", &bt, shape, span));
        }
    }
    let unit = unit_interval(el, k, shape, dtype, span)?;
    let width = binary(el, BinaryOp::Sub, hi, lo, span)?;
    // u (hi - lo) + lo as XLA computes it: for f32 rounded once (a fused multiply-add; f32
    // operands multiply exactly in f64, so the sum is rounded once there and once more to f32,
    // which differs from one rounding only when the f64 sum ties two f32s, about 2^-29 of
    // draws); for 16-bit floats rounded after each op, as JAX's bits show; f64 bounds other
    // than [0, 1) round twice.
    let wide = if dtype == DType::F32 { DType::F64 } else { dtype };
    let [unit, width, low] = [unit, width, lo].map(|v| el.convert(v, wide, span));
    let scaled = binary(el, BinaryOp::Mul, unit?, width?, span)?;
    let shifted = binary(el, BinaryOp::Add, scaled, low?, span)?;
    let shifted = el.convert(shifted, dtype, span)?;
    binary(el, BinaryOp::Max, lo, shifted, span)
}

/// Uniform floats of `dtype` in [0, 1) over `shape`: the mantissa's bits from the top of the
/// random bits under the exponent of 1.0, a float in [1, 2), less 1. JAX draws 32 bits for an
/// f32, 64 for an f64, 16 for an f16 and 8 for a bf16 (whose 7 mantissa bits are fewer than 8):
/// the low bits of b0 ^ b1 for the 16-bit types, whose value m / 2^mantissa kiln builds
/// exactly in f32 rather than from a 16-bit pattern.
fn unit_interval(el: &mut Elab, k: [Value; 2], shape: &[usize], dtype: DType, span: Span) -> R<Value> {
    if dtype.is_half() {
        let (width, mantissa) = if dtype == DType::F16 { (16, 10) } else { (8, 7) };
        let bits = bits32(el, k, shape, span)?;
        let low = el.lit_to(Lit::Int((1 << width) - 1), DType::U32, span)?;
        let low = binary(el, BinaryOp::And, bits, low, span)?;
        let drop = el.lit_to(Lit::Int(width - mantissa), DType::U32, span)?;
        let m = binary(el, BinaryOp::ShrU, low, drop, span)?;
        let m = el.convert(m, DType::F32, span)?;
        let scale = el.lit_to(Lit::Float(2f64.powi(-(mantissa as i32))), DType::F32, span)?;
        let unit = binary(el, BinaryOp::Mul, m, scale, span)?;
        return el.convert(unit, dtype, span);
    }
    let (bits, int, mantissa, one) = if dtype == DType::F32 {
        (bits32(el, k, shape, span)?, DType::U32, 23, 1f32.to_bits() as i64)
    } else {
        let [b0, b1] = words(el, k, shape, span)?;
        let (high, low) = (el.convert(b0, DType::I64, span)?, el.convert(b1, DType::I64, span)?);
        let shift = el.lit_to(Lit::Int(32), DType::I64, span)?;
        let high = binary(el, BinaryOp::Shl, high, shift, span)?;
        (binary(el, BinaryOp::Or, high, low, span)?, DType::I64, 52, 1f64.to_bits() as i64)
    };
    let drop = el.lit_to(Lit::Int(dtype.bits() as i64 - mantissa), int, span)?;
    let top = binary(el, BinaryOp::ShrU, bits, drop, span)?;
    let exponent = el.lit_to(Lit::Int(one), int, span)?;
    let pattern = binary(el, BinaryOp::Or, top, exponent, span)?;
    let in_one_two = el.push(Op::Bitcast { to: dtype }, vec![pattern], span)?;
    let one = el.lit_to(Lit::Float(1.0), dtype, span)?;
    binary(el, BinaryOp::Sub, in_one_two, one, span)
}

/// A float dtype's machine epsilon (the step above 1.0) and smallest normal value.
fn epsilon_and_tiny(dtype: DType) -> (f64, f64) {
    match dtype {
        DType::F16 => (2f64.powi(-10), 2f64.powi(-14)),
        DType::BF16 => (2f64.powi(-7), 2f64.powi(-126)),
        DType::F32 => (f32::EPSILON as f64, f32::MIN_POSITIVE as f64),
        _ => (f64::EPSILON, f64::MIN_POSITIVE),
    }
}

/// Standard normal floats: sqrt(2) erfinv(u) for u uniform in (-1, 1).
fn normal(el: &mut Elab, k: [Value; 2], shape: &[usize], dtype: DType, span: Span) -> R<Value> {
    // The float after -1 toward 0, so that erfinv stays finite.
    let lo = el.lit_to(Lit::Float(-(1.0 - epsilon_and_tiny(dtype).0 / 2.0)), dtype, span)?;
    let hi = el.lit_to(Lit::Float(1.0), dtype, span)?;
    let u = uniform(el, k, shape, dtype, (lo, hi), span)?;
    let y = el.push(Op::Unary(UnaryOp::ErfInv), vec![u], span)?;
    let sqrt2 = el.lit_to(Lit::Float(std::f64::consts::SQRT_2), dtype, span)?;
    binary(el, BinaryOp::Mul, sqrt2, y, span)
}

/// x shuffled along `axis` (each line on its own when `independent`, else all lines alike, by
/// one shuffle of the positions): JAX's permutation, which sorts by fresh random u32 keys in
/// as many rounds as make ties between keys unlikely to survive (3 ln n / ln(2^32 - 1)).
fn permutation(el: &mut Elab, k: [Value; 2], x: Value, axis: usize, independent: bool, span: Span) -> R<Value> {
    let xt = el.ty(x).clone();
    if !independent && xt.rank() > 1 {
        let n = xt.shape[axis];
        let positions = el.push(Op::Iota { dtype: DType::I32, shape: vec![n], axis: 0 }, vec![], span)?;
        let order = shuffle(el, k, positions, 0, span)?;
        let mut shape = vec![1; xt.rank()];
        shape[axis] = n;
        let order = el.reshape(order, shape, span)?;
        let order =
            el.push(Op::Broadcast { shape: xt.shape.clone(), dims: (0..xt.rank()).collect() }, vec![order], span)?;
        return crate::builtins::take_along(el, x, order, axis, (true, crate::indexing::Mode::Clip), span);
    }
    shuffle(el, k, x, axis, span)
}

/// JAX's _shuffle: x reordered along `axis` by sorting it by random u32 keys, round by round.
fn shuffle(el: &mut Elab, mut k: [Value; 2], mut x: Value, axis: usize, span: Span) -> R<Value> {
    let shape = el.ty(x).shape.clone();
    let size: usize = shape.iter().product();
    let rounds = (3.0 * (size.max(1) as f64).ln() / (u32::MAX as f64).ln()).ceil() as usize;
    for _ in 0..rounds {
        // key, subkey = split(key): key i is word i of each of split's two word arrays.
        let [b0, b1] = words(el, k, &[2], span)?;
        let sub = [first_axis_at(el, b0, 1, span)?, first_axis_at(el, b1, 1, span)?];
        k = [first_axis_at(el, b0, 0, span)?, first_axis_at(el, b1, 0, span)?];
        let sort_keys = bits32(el, sub, &shape, span)?;
        let order = crate::sort::argsort(el, sort_keys, axis, false, span)?;
        x = crate::builtins::take_along(el, x, order, axis, (true, crate::indexing::Mode::Clip), span)?;
    }
    Ok(x)
}

/// Indices drawn from the categorical distributions of `logits` along `axis` (the last by
/// default), `shape` samples (the batch shape by default; else it ends with the batch shape):
/// argmax(logits + gumbel noise), JAX's sampling with replacement.
fn categorical<'a>(
    el: &mut Elab<'a>,
    env: &mut Env,
    k: [Value; 2],
    logits: Value,
    (axis, shape): (Option<&'a Expr>, Option<&'a Expr>),
    span: Span,
) -> R<Value> {
    let lt = el.ty(logits).clone();
    let rank = lt.rank();
    if rank == 0 {
        return Err(Diagnostic::error("E0202", "`categorical` needs logits with an axis of categories")
            .at(span, "the logits are a scalar"));
    }
    let axis = match axis {
        None => rank - 1,
        Some(e) => axis_arg(el, env, e, rank)?,
    };
    let batch: Vec<usize> = (0..rank).filter(|&d| d != axis).map(|d| lt.shape[d]).collect();
    let shape = match shape {
        None => batch.clone(),
        Some(e) => {
            let s = shape_arg(el, env, e, false)?;
            if s.len() < batch.len() || s[s.len() - batch.len()..] != batch[..] {
                return Err(Diagnostic::error(
                    "E0203",
                    format!(
                        "the shape {} does not end with the logits' batch shape {}",
                        format_shape(&s),
                        format_shape(&batch)
                    ),
                )
                .at(e.span, format!("the shape is {}", format_shape(&s)))
                .note("the shape is the samples' shape: any leading axes, then the logits' shape without the axis"));
            }
            s
        }
    };
    let prefix = shape.len() - batch.len();
    let noise_shape: Vec<usize> = [&shape[..prefix], &lt.shape[..]].concat();
    // gumbel = -log(-log(u)), u uniform in [tiny, 1): finite everywhere.
    let lo = el.lit_to(Lit::Float(epsilon_and_tiny(lt.dtype).1), lt.dtype, span)?;
    let hi = el.lit_to(Lit::Float(1.0), lt.dtype, span)?;
    let u = uniform(el, k, &noise_shape, lt.dtype, (lo, hi), span)?;
    let mut g = u;
    for _ in 0..2 {
        let log = el.push(Op::Unary(UnaryOp::Log), vec![g], span)?;
        g = el.push(Op::Unary(UnaryOp::Neg), vec![log], span)?;
    }
    let noisy = binary(el, BinaryOp::Add, g, logits, span)?;
    arg_extreme(el, ReduceKind::Max, noisy, prefix + axis, false, span)
}
