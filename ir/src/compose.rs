//! Compositions of primitive ops that more than one stage builds: zero padding (XLA's pad,
//! interior padding included) and reversal. They are made of slices, reshapes, concatenations
//! and broadcast constants, so every later stage handles them without an op of their own.

use crate::{BinaryOp, Func, Literal, Op, Span, Value};

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
    let dtype = f.ty(like).dtype;
    splat(f, dtype, 0, shape, span)
}

/// `value` of `dtype` in every element of `shape`.
fn splat(f: &mut Func, dtype: crate::DType, value: i64, shape: Vec<usize>, span: Span) -> Result<Value, String> {
    let scalar = f.push(Op::Const(Literal::of_i64(dtype, value)), vec![], span)?;
    f.push(Op::Broadcast { shape, dims: vec![] }, vec![scalar], span)
}

/// [`Op::Argsort`] of integer `keys` as a bitonic sorting network of elementwise ops, for
/// targets where data-dependent loops are slow (GPUs) and as a reference for the op's own
/// lowering. The network sorts (key, position) pairs, so that equal keys keep their order and
/// every comparison is strict. Rows are padded to a power of two N with keys that sort last
/// (their positions are past the row). Each of its log2(N)(log2(N) + 1)/2 stages compares every
/// element with its partner at position i xor j (a static reshuffle: reshape, reverse an axis
/// of 2, reshape) and keeps the first or the second of the two as the stage's direction says:
/// one elementwise pass per stage, O(n log² n) work.
pub fn argsort_network(f: &mut Func, keys: Value, descending: bool, span: Span) -> Result<Value, String> {
    let result = Op::Argsort { descending }.infer(&[f.ty(keys)])?;
    let shape = result.shape.clone();
    let rank = shape.len();
    let n = shape[rank - 1];
    let width = n.next_power_of_two();
    let padded: Vec<usize> = [&shape[..rank - 1], &[width]].concat();
    let kt = f.ty(keys).dtype;
    let key = if width == n {
        keys
    } else {
        let (lo, hi) = kt.int_range();
        let fill = splat(f, kt, if descending { lo } else { hi }, [&shape[..rank - 1], &[width - n]].concat(), span)?;
        f.push(Op::Concat { axis: rank - 1 }, vec![keys, fill], span)?
    };
    let index = result.dtype;
    let position = f.push(Op::Iota { dtype: index, shape: padded.clone(), axis: rank - 1 }, vec![], span)?;
    let lane = f.push(Op::Iota { dtype: index, shape: vec![width], axis: 0 }, vec![], span)?;
    let binary = |f: &mut Func, op, a, b| f.push(Op::Binary(op), vec![a, b], span);
    // (lane & bit) == 0.
    let bit_clear = |f: &mut Func, bit: usize| {
        let b = splat(f, index, bit as i64, vec![width], span)?;
        let masked = binary(f, BinaryOp::And, lane, b)?;
        let zero = splat(f, index, 0, vec![width], span)?;
        binary(f, BinaryOp::Eq, masked, zero)
    };
    // The element at position i xor j along the last axis.
    let partner = |f: &mut Func, v: Value, j: usize| {
        let pairs: Vec<usize> = [&shape[..rank - 1], &[width / (2 * j), 2, j]].concat();
        let split = f.push(Op::Reshape { shape: pairs }, vec![v], span)?;
        let swapped = reverse(f, split, rank, span)?;
        f.push(Op::Reshape { shape: padded.clone() }, vec![swapped], span)
    };
    let (mut key, mut position) = (key, position);
    let mut k = 2;
    while k <= width {
        let mut j = k / 2;
        while j >= 1 {
            let (partner_key, partner_position) = (partner(f, key, j)?, partner(f, position, j)?);
            // (key, position) before its partner: by key (descending if asked), then position.
            let by_key = binary(f, if descending { BinaryOp::Gt } else { BinaryOp::Lt }, key, partner_key)?;
            let tied = binary(f, BinaryOp::Eq, key, partner_key)?;
            let by_position = binary(f, BinaryOp::Lt, position, partner_position)?;
            let tie_broken = binary(f, BinaryOp::And, tied, by_position)?;
            let before = binary(f, BinaryOp::Or, by_key, tie_broken)?;
            // The lower of each pair keeps the first of the two in blocks of k sorted up, the
            // second in blocks sorted down; the upper the other one.
            let (lower, up) = (bit_clear(f, j)?, bit_clear(f, k)?);
            let keeps_first = binary(f, BinaryOp::Eq, lower, up)?;
            let keeps_first =
                f.push(Op::Broadcast { shape: padded.clone(), dims: vec![rank - 1] }, vec![keeps_first], span)?;
            let stays = binary(f, BinaryOp::Eq, before, keeps_first)?;
            key = f.push(Op::Select, vec![stays, key, partner_key], span)?;
            position = f.push(Op::Select, vec![stays, position, partner_position], span)?;
            j /= 2;
        }
        k *= 2;
    }
    if width == n {
        Ok(position)
    } else {
        window(f, position, rank - 1, 0, n, span)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gen::{self, Rng};
    use crate::{DType, TensorType};

    /// The network gives the op's positions (the interpreter's stable sort) for rows that are
    /// and are not a power of two long, with many ties, ascending and descending, in every
    /// integer key type.
    #[test]
    fn the_network_sorts_as_the_op() {
        let mut rng = Rng::new(gen::test_seed());
        for (i, dtype) in [DType::U8, DType::I32, DType::U32, DType::I64].into_iter().enumerate() {
            for (shape, descending) in
                [(vec![3, 16], false), (vec![2, 3, 13], true), (vec![1], false), (vec![37], true)]
            {
                let ty = TensorType::new(dtype, shape);
                let mut f = Func::new(format!("f{i}"), Span::default());
                let keys = f.add_param("keys", ty.clone(), Span::default());
                let op = f.push(Op::Argsort { descending }, vec![keys], Span::default()).unwrap();
                let network = argsort_network(&mut f, keys, descending, Span::default()).unwrap();
                f.results = vec![op, network];
                f.result_names = vec!["op".into(), "network".into()];
                let args = [gen::tensor(&mut rng, &ty, false)];
                let [by_op, by_network] = <[_; 2]>::try_from(crate::interp::run(&f, &args)).unwrap();
                assert_eq!(by_op, by_network, "{dtype} {descending} {:?}", args[0]);
            }
        }
    }
}
