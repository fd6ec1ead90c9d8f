//! Compositions of primitive ops that more than one stage builds: zero padding (XLA's pad,
//! interior padding included) and reversal. They are made of slices, reshapes, concatenations
//! and broadcast constants, so every later stage handles them without an op of their own.

use crate::{Func, Literal, Op, Span, Value};

/// `x` padded with zeros along `axis`: `interior` zeros between neighbouring elements, then
/// `lo` before and `hi` after; a negative `lo` or `hi` removes that many elements instead.
pub fn pad(
    f: &mut Func,
    x: Value,
    axis: usize,
    lo: i64,
    hi: i64,
    interior: usize,
    span: Span,
) -> Result<Value, String> {
    let mut cur = x;
    let t = f.ty(x).clone();
    let n = t.shape[axis];
    if interior > 0 && n > 1 {
        // [.., n, ..] as [.., n, 1, ..], zeros [.., n, interior, ..] beside it along the new
        // axis, merged into [.., n (interior + 1), ..]: the trailing zeros after the last
        // element are cut, leaving (n - 1) (interior + 1) + 1.
        let mut column = t.shape.clone();
        column.insert(axis + 1, 1);
        let elements = f.push(Op::Reshape { shape: column.clone() }, vec![cur], span)?;
        column[axis + 1] = interior;
        let gaps = zeros(f, x, column, span)?;
        let spread = f.push(Op::Concat { axis: axis + 1 }, vec![elements, gaps], span)?;
        let mut merged = t.shape.clone();
        merged[axis] = n * (interior + 1);
        let merged = f.push(Op::Reshape { shape: merged }, vec![spread], span)?;
        cur = window(f, merged, axis, 0, (n - 1) * (interior + 1) + 1, span)?;
    }
    let len = f.ty(cur).shape[axis] as i64;
    let (cut_lo, cut_hi) = ((-lo).max(0), (-hi).max(0));
    if len + lo + hi < 1 {
        return Err(format!("padding by {lo} and {hi} leaves no element of axis {axis} ({len} long)"));
    }
    if cut_lo + cut_hi >= len {
        // Every element is cut and only padding on the other side remains.
        let mut shape = f.ty(cur).shape.clone();
        shape[axis] = (len + lo + hi) as usize;
        return zeros(f, x, shape, span);
    }
    if cut_lo + cut_hi > 0 {
        cur = window(f, cur, axis, cut_lo as usize, (len - cut_lo - cut_hi) as usize, span)?;
    }
    let zeros_along = |f: &mut Func, amount: i64| {
        let mut shape = f.ty(cur).shape.clone();
        shape[axis] = amount as usize;
        zeros(f, x, shape, span)
    };
    let mut parts = vec![cur];
    if lo > 0 {
        parts.insert(0, zeros_along(f, lo)?);
    }
    if hi > 0 {
        parts.push(zeros_along(f, hi)?);
    }
    if parts.len() > 1 {
        cur = f.push(Op::Concat { axis }, parts, span)?;
    }
    Ok(cur)
}

/// `x` reversed along `axis`.
pub fn reverse(f: &mut Func, x: Value, axis: usize, span: Span) -> Result<Value, String> {
    let shape = f.ty(x).shape.clone();
    let mut start = vec![0; shape.len()];
    let mut step = vec![1; shape.len()];
    start[axis] = shape[axis] - 1;
    step[axis] = -1;
    f.push(Op::Slice { start, step, shape }, vec![x], span)
}

/// Elements `start..start + len` of `x` along `axis`.
fn window(f: &mut Func, x: Value, axis: usize, start: usize, len: usize, span: Span) -> Result<Value, String> {
    let mut shape = f.ty(x).shape.clone();
    let mut first = vec![0; shape.len()];
    first[axis] = start;
    shape[axis] = len;
    f.push(Op::Slice { start: first, step: vec![1; shape.len()], shape }, vec![x], span)
}

/// Zeros of `like`'s dtype in `shape`.
fn zeros(f: &mut Func, like: Value, shape: Vec<usize>, span: Span) -> Result<Value, String> {
    let zero = f.push(Op::Const(Literal::of_i64(f.ty(like).dtype, 0)), vec![], span)?;
    f.push(Op::Broadcast { shape, dims: vec![] }, vec![zero], span)
}
