//! Sorting along an axis: argsort as a bitonic sorting network of elementwise ops, and sort,
//! top_k and random permutations built on it.
//!
//! The network sorts (key, position) pairs, so that equal keys keep their order (a stable
//! sort, as jnp.argsort's default and lax.top_k's lower-index-first ties) and every pair is
//! distinct. Each of its log2(N)(log2(N) + 1)/2 stages compares every element with its
//! partner at position i xor j (a static reshuffle: reshape, reverse an axis of 2, reshape)
//! and keeps the first or the second of the two as the stage's direction says. A stage is one
//! fused elementwise pass, on every target, with nothing data-dependent but the selects: the
//! sort costs O(n log² n) and compiles like any other program, and its derivative, batching
//! and GPU lowering follow from the ops (sort's gradient is the gather's scatter, as JAX's).
//!
//! Keys order as lax.sort orders them: floats by their total order with -0.0 equal to 0.0
//! and every NaN after +inf (jax's _float_to_int_for_sort), integers by value, false before
//! true.

use crate::builtins::{axis_slice, binary, take_along};
use crate::elab::{Elab, Lit};
use crate::indexing::Mode;
use kiln_ir::{BinaryOp, DType, Diagnostic, Op, Span, Value};

type R<T> = Result<T, Diagnostic>;

/// The positions that sort `x` along `axis` (ascending, or descending; equal keys keep their
/// order): i32, or i64 for an axis longer than i32 counts.
pub fn argsort(el: &mut Elab, x: Value, axis: usize, descending: bool, span: Span) -> R<Value> {
    let xt = el.ty(x).clone();
    let rank = xt.rank();
    let n = xt.shape[axis];
    let index = if n > i32::MAX as usize { DType::I64 } else { DType::I32 };
    // The sorted axis last.
    let mut perm: Vec<usize> = (0..rank).filter(|&a| a != axis).collect();
    perm.push(axis);
    let x = el.transpose(x, perm.clone(), span)?;
    let shape = el.ty(x).shape.clone();
    let key = order_key(el, x, span)?;
    // Padded to a power of two with keys that sort last (the padding's positions are past n).
    let width = n.next_power_of_two();
    let padded: Vec<usize> = [&shape[..rank - 1], &[width]].concat();
    kiln_ir::types::check_shape(&padded).map_err(|e| {
        Diagnostic::error("E0213", format!("sorting pads an axis of {n} to {width}: {e}"))
            .at(span, "this sort")
            .note("the sorting network works on a power of two of elements per row")
    })?;
    let key = if width == n {
        key
    } else {
        let kt = el.ty(key).dtype;
        let (lo, hi) = kt.int_range();
        let fill = el.splat(
            Lit::Int(if descending { lo } else { hi }),
            kt,
            &[&shape[..rank - 1], &[width - n]].concat(),
            span,
        )?;
        el.push(Op::Concat { axis: rank - 1 }, vec![key, fill], span)?
    };
    let position = el.push(Op::Iota { dtype: index, shape: padded.clone(), axis: rank - 1 }, vec![], span)?;
    let lane = el.push(Op::Iota { dtype: index, shape: vec![width], axis: 0 }, vec![], span)?;
    let (mut key, mut position) = (key, position);
    let mut k = 2;
    while k <= width {
        let mut j = k / 2;
        while j >= 1 {
            let partner_key = partner(el, key, j, span)?;
            let partner_position = partner(el, position, j, span)?;
            let before = comes_first(el, (key, position), (partner_key, partner_position), descending, span)?;
            // The lower of each pair keeps the first of the two in blocks of k sorted up, the
            // second in blocks sorted down; the upper the other one.
            let lower = bit_clear(el, lane, j, span)?;
            let up = bit_clear(el, lane, k, span)?;
            let keeps_first = binary(el, BinaryOp::Eq, lower, up, span)?;
            let keeps_first = el.broadcast(keeps_first, &padded, span)?;
            let stays = binary(el, BinaryOp::Eq, before, keeps_first, span)?;
            key = el.push(Op::Select, vec![stays, key, partner_key], span)?;
            position = el.push(Op::Select, vec![stays, position, partner_position], span)?;
            j /= 2;
        }
        k *= 2;
    }
    let sorted = if width == n { position } else { axis_slice(el, position, rank - 1, 0, n, 1, span)? };
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

/// The element at position i xor j along the last axis (j a power of two dividing it).
fn partner(el: &mut Elab, v: Value, j: usize, span: Span) -> R<Value> {
    let shape = el.ty(v).shape.clone();
    let r = shape.len();
    let pairs: Vec<usize> = [&shape[..r - 1], &[shape[r - 1] / (2 * j), 2, j]].concat();
    let split = el.reshape(v, pairs, span)?;
    let swapped = axis_slice(el, split, r, 1, 2, -1, span)?;
    el.reshape(swapped, shape, span)
}

/// Whether (key, position) a comes before b: by key (descending if asked), then position.
fn comes_first(el: &mut Elab, a: (Value, Value), b: (Value, Value), descending: bool, span: Span) -> R<Value> {
    let order = if descending { BinaryOp::Gt } else { BinaryOp::Lt };
    let by_key = binary(el, order, a.0, b.0, span)?;
    let tied = binary(el, BinaryOp::Eq, a.0, b.0, span)?;
    let by_position = binary(el, BinaryOp::Lt, a.1, b.1, span)?;
    let tie_broken = crate::builtins::and(el, tied, by_position, span)?;
    binary(el, BinaryOp::Or, by_key, tie_broken, span)
}

/// (i & bit) == 0 over the lanes `i`.
fn bit_clear(el: &mut Elab, lane: Value, bit: usize, span: Span) -> R<Value> {
    let dtype = el.ty(lane).dtype;
    let b = el.lit_to(Lit::Int(bit as i64), dtype, span)?;
    let masked = binary(el, BinaryOp::And, lane, b, span)?;
    let zero = el.lit_to(Lit::Int(0), dtype, span)?;
    binary(el, BinaryOp::Eq, masked, zero, span)
}
