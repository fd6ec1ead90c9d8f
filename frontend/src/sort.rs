//! Sorting along an axis: argsort as [`Op::Argsort`] of keys in lax.sort's order, and sort,
//! top_k and random permutations built on it.
//!
//! The op is stable (equal keys keep their order, as jnp.argsort's default and lax.top_k's
//! lower-index-first ties), sorts the last axis, and compares integers: keys order as lax.sort
//! orders values, floats by their total order with -0.0 equal to 0.0 and every NaN after +inf
//! (jax's _float_to_int_for_sort), integers by value, false before true. Sort's gradient is
//! the gather's scatter, as JAX's; the positions have none.

use crate::builtins::{axis_slice, binary, take_along};
use crate::elab::{Elab, Lit};
use crate::indexing::Mode;
use kiln_ir::{BinaryOp, DType, Diagnostic, Op, Span, Value};

type R<T> = Result<T, Diagnostic>;

/// The positions that sort `x` along `axis` (ascending, or descending; equal keys keep their
/// order): i32, or i64 for an axis longer than i32 counts.
pub fn argsort(el: &mut Elab, x: Value, axis: usize, descending: bool, span: Span) -> R<Value> {
    let rank = el.ty(x).rank();
    // The sorted axis last.
    let mut perm: Vec<usize> = (0..rank).filter(|&a| a != axis).collect();
    perm.push(axis);
    let x = el.transpose(x, perm.clone(), span)?;
    let key = order_key(el, x, span)?;
    let sorted = el.push(Op::Argsort { descending }, vec![key], span)?;
    el.transpose(sorted, crate::indexing::inverse(&perm), span)
}

/// `x` sorted along `axis`.
pub fn sort(el: &mut Elab, x: Value, axis: usize, descending: bool, span: Span) -> R<Value> {
    let order = argsort(el, x, axis, descending, span)?;
    take_along(el, x, order, axis, (true, Mode::Clip), span)
}

/// The `k` largest elements along the last axis, largest first (the lower index first among
/// equals), and their indices: lax.top_k.
pub fn top_k(el: &mut Elab, x: Value, k: usize, span: Span) -> R<(Value, Value)> {
    let xt = el.ty(x).clone();
    let last = xt.rank() - 1;
    let order = argsort(el, x, last, true, span)?;
    let indices = axis_slice(el, order, last, 0, k, 1, span)?;
    let values = take_along(el, x, indices, last, (true, Mode::Clip), span)?;
    Ok((values, indices))
}

/// Keys whose integer order is the sort's order: floats as the signed integers of their total
/// order (zeros as one, NaNs as one above +inf; 16-bit floats through their exact f32 values),
/// integers as they are, bools as u8.
fn order_key(el: &mut Elab, x: Value, span: Span) -> R<Value> {
    let x = if el.ty(x).dtype.is_half() { el.convert(x, DType::F32, span)? } else { x };
    let dtype = el.ty(x).dtype;
    if dtype == DType::Bool {
        return el.convert(x, DType::U8, span);
    }
    if !dtype.is_float() {
        return Ok(x);
    }
    let (signed, unsigned, nan) = if dtype == DType::F32 {
        (DType::I32, DType::U32, f32::NAN.to_bits() as i64)
    } else {
        (DType::I64, DType::I64, f64::NAN.to_bits() as i64)
    };
    let bits = el.push(Op::Bitcast { to: signed }, vec![x], span)?;
    let zero = el.lit_to(Lit::Float(0.0), dtype, span)?;
    let is_zero = binary(el, BinaryOp::Eq, x, zero, span)?;
    let int_zero = el.lit_to(Lit::Int(0), signed, span)?;
    let bits = select(el, is_zero, int_zero, bits, span)?;
    let is_nan = binary(el, BinaryOp::Ne, x, x, span)?;
    let nan = el.lit_to(Lit::Int(nan), signed, span)?;
    let bits = select(el, is_nan, nan, bits, span)?;
    // A negative float's magnitude grows with its bits: reflect them below zero,
    // max_signed - bits in the unsigned type (i64 wraps alike for f64).
    let cast = |el: &mut Elab, v: Value, to: DType| {
        if el.ty(v).dtype == to {
            Ok(v)
        } else {
            el.push(Op::Bitcast { to }, vec![v], span)
        }
    };
    let pattern = cast(el, bits, unsigned)?;
    let max = el.lit_to(Lit::Int(signed.int_range().1), unsigned, span)?;
    let flipped = binary(el, BinaryOp::Sub, max, pattern, span)?;
    let flipped = cast(el, flipped, signed)?;
    let negative = binary(el, BinaryOp::Lt, bits, int_zero, span)?;
    select(el, negative, flipped, bits, span)
}

/// select(c, a, b) with c and a scalar broadcast to b's shape.
fn select(el: &mut Elab, c: Value, a: Value, b: Value, span: Span) -> R<Value> {
    let shape = el.ty(b).shape.clone();
    let (c, a) = (el.broadcast(c, &shape, span)?, el.broadcast(a, &shape, span)?);
    el.push(Op::Select, vec![c, a, b], span)
}
