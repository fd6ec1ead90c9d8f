//! Ops this backend computes as compositions of others, expanded in the IR before MLIR is
//! emitted: conv2d, except where the direct kernel computes it, and on GPUs argsort (the
//! bitonic network of [`kiln_ir::compose::argsort_network`]: a merge sort's data-dependent
//! loop would run as one thread per row there; CPUs run it, `mlir/sort.rs`).
//!
//! The convolution's input is first dilated and padded ([`kiln_ir::compose::pad`]), so that
//! every tap reads a strided window of one array. Then, for
//! y[n, i, j, f] = Σ_{p, q, c} xp[n, i s + p d, j s + q d, c] w[p, q, c, f]:
//!
//! - on CPUs, a stride-1 convolution (forward convolutions, input cotangents, and the kernel
//!   cotangents of convolutions without kernel dilation) stays one conv2d with its
//!   non-negative padding (dilation and cropping done here): the emitter copies the input
//!   into a zeroed buffer once and writes the convolution as one generic, which the schedule
//!   runs as a direct kernel (`schedule::tile_convolution`). For the benchmark's kernel
//!   cotangent (3x3 result positions, a 56x56 "kernel") it measured as fast as the stacked
//!   windows below, without their 58 MB and in half the compile time;
//! - otherwise by taps, when the kernel has no more taps than the result has positions: the
//!   KH·KW taps' windows [N, OH, OW, C] concatenated along the channels are the
//!   [N·OH·OW, KH·KW·C] im2col matrix, times the kernel as a [KH·KW·C, F] matrix, one product
//!   with a long reduction. The matrix is built for a few images at a time, at most
//!   [`IM2COL_BYTES`] (one image at least), one product per chunk;
//! - or by positions, when the result has fewer positions than the kernel taps (the kernel's
//!   cotangent, whose "kernel" is the result's cotangent): the window [N, KH, KW, C] each
//!   result position reads, stacked along the rows for a few positions at a time (at most
//!   [`IM2COL_BYTES`], one position at least), times the same kernel matrix.
//!
//! Both expansions gather N·OH·OW·KH·KW·C elements into matrices of the same size; the choice
//! keeps the number of slices at the smaller of KH·KW and OH·OW, and products have many rows
//! either way (rows are what threads share). Strided convolutions are expanded because the
//! direct kernel's tile would read its pixels `s` apart, which linalg's vectorizer refuses;
//! GPUs expand every convolution (their launch plans have no such kernel yet).

use kiln_ir::ops::Bodies;
use kiln_ir::{compose, BinaryOp, ConvWindow, DType, Func, Literal, Op, Span, TensorType, Value};
use std::borrow::Cow;
use std::collections::BTreeMap;

/// Bytes of an im2col matrix built at once, at most (one image's is built whatever its size):
/// the matrix lives in the workspace, and products of a few thousand rows already run at the
/// contraction kernel's speed.
pub const IM2COL_BYTES: usize = 32 << 20;

/// `f` with every conv2d expanded (borrowed unchanged when it has none), except, with
/// `cpu`, stride-1 convolutions: those keep one conv2d, for the direct kernel (see the
/// module documentation); with every scan a counted loop ([`scan`]); and, unless `cpu`, every
/// argsort a sorting network. Fails only when an
/// expansion's intermediate array would exceed kiln's shape limits.
pub fn expand(f: &Func, cpu: bool) -> Result<Cow<'_, Func>, String> {
    if !expands(f, cpu) {
        return Ok(Cow::Borrowed(f));
    }
    let mut out = Func::new(f.name.clone(), f.span);
    let mut map: Vec<Value> = f.params.iter().map(|p| out.add_param(p.name.clone(), p.ty.clone(), p.span)).collect();
    // Each op with bodies (at result 0), by it and its operands: the op with its bodies
    // expanded, once for all its instructions; and the results of the loops scans became.
    let mut expanded: BTreeMap<(Op, Vec<Value>), Op> = BTreeMap::new();
    let mut scans: BTreeMap<(Op, Vec<Value>), Vec<Value>> = BTreeMap::new();
    for inst in &f.insts {
        let args: Vec<Value> = inst.args.iter().map(|a| map[a.index()]).collect();
        let v = match (&inst.op, inst.op.group(), inst.op.structure()) {
            (Op::Conv(window), ..) => conv(&mut out, window, args[0], args[1], cpu, inst.span)?,
            (Op::Argsort { descending }, ..) if !cpu => {
                compose::argsort_network(&mut out, args[0], *descending, inst.span)?
            }
            (_, Some(group), Some((_, result))) => {
                let key = (group, args);
                if !expanded.contains_key(&key) {
                    let bodies = key.0.bodies().expect("an op with bodies");
                    let bodies = bodies.map(|f| expand(f, cpu).map(Cow::into_owned))?;
                    expanded.insert(key.clone(), key.0.restructured(bodies, 0));
                }
                let group = expanded[&key].clone();
                let bodies = group.bodies().expect("an op with bodies");
                if let Op::Scan { carries, scanned, reverse, .. } = group {
                    if !scans.contains_key(&key) {
                        let results = scan(&mut out, &bodies.funcs()[0], carries, scanned, reverse, &key.1, inst.span)?;
                        scans.insert(key.clone(), results);
                    }
                    scans[&key][result]
                } else {
                    out.push(group.restructured(bodies.clone(), result), key.1, inst.span)?
                }
            }
            (op, ..) => out.push(op.clone(), args, inst.span)?,
        };
        map.push(v);
    }
    out.results = f.results.iter().map(|r| map[r.index()]).collect();
    out.result_names = f.result_names.clone();
    Ok(Cow::Owned(out))
}

/// Whether `f` or a body in it has a convolution, a scan, or (not on `cpu`) an argsort.
fn expands(f: &Func, cpu: bool) -> bool {
    f.insts.iter().any(|i| match &i.op {
        Op::Conv(_) | Op::Scan { .. } => true,
        Op::Argsort { .. } => !cpu,
        op => op.bodies().is_some_and(|b| b.funcs().iter().any(|f| expands(f, cpu))),
    })
}

/// scan(cs, xs, ws) of `body` (`carries` carries, `scanned` arrays of n rows) as
/// loop(0, n, (cs, ys), (xs, ws)), the stacks ys starting as zeros, whose body at index i
/// runs `body` on row t of each x (t = i, or n - 1 - i when `reverse`) and writes its ys to
/// row t of the stacks: the loop's results are the scan's. The stacks are carries, written in
/// place (as every carry), and the rows are windows: nothing is copied per row.
fn scan(
    f: &mut Func,
    body: &Func,
    carries: usize,
    scanned: usize,
    reverse: bool,
    args: &[Value],
    span: Span,
) -> Result<Vec<Value>, String> {
    let n = f.ty(args[carries]).shape[0];
    let index = TensorType::scalar(DType::I64);
    let bound = |f: &mut Func, v: usize| f.push(Op::Const(Literal::Int(DType::I64, v as i64)), vec![], span);
    let ys: Vec<TensorType> = body.result_types()[carries..]
        .iter()
        .map(|y| TensorType::new(y.dtype, std::iter::once(n).chain(y.shape.iter().copied()).collect()))
        .collect();
    let mut step = Func::new("body", span);
    let i = step.add_param("i", index.clone(), span);
    let types: Vec<TensorType> = args.iter().map(|&a| f.ty(a).clone()).collect();
    let params: Vec<Value> = types[..carries]
        .iter()
        .chain(&ys)
        .chain(&types[carries..])
        .enumerate()
        .map(|(p, t)| step.add_param(format!("p{p}"), t.clone(), span))
        .collect();
    let t = if reverse {
        let last = bound(&mut step, n - 1)?;
        step.push(Op::Binary(BinaryOp::Sub), vec![last, i], span)?
    } else {
        i
    };
    let (cs, rest) = params.split_at(carries);
    let (stacks, rest) = rest.split_at(ys.len());
    let (xs, ws) = rest.split_at(scanned);
    let rows = xs.iter().map(|&x| row(&mut step, x, t, span)).collect::<Result<Vec<_>, _>>()?;
    let inputs: Vec<Value> = cs.iter().chain(&rows).chain(ws).copied().collect();
    let out = step.inline(body, &inputs, span)?;
    let mut results = out[..carries].to_vec();
    for (&stack, &y) in stacks.iter().zip(&out[carries..]) {
        results.push(put_row(&mut step, stack, y, t, span)?);
    }
    step.result_names = (0..results.len()).map(|q| format!("r{q}")).collect();
    step.results = results;
    let body = Bodies::new(vec![step]);
    let (lo, hi) = (bound(f, 0)?, bound(f, n)?);
    let mut operands = vec![lo, hi];
    operands.extend(&args[..carries]);
    for y in &ys {
        let zero = f.push(Op::Const(Literal::of_i64(y.dtype, 0)), vec![], span)?;
        operands.push(f.push(Op::Broadcast { shape: y.shape.clone(), dims: vec![] }, vec![zero], span)?);
    }
    operands.extend(&args[carries..]);
    (0..carries + ys.len())
        .map(|r| f.push(Op::Loop { body: body.clone(), checkpoint: false, result: r }, operands.clone(), span))
        .collect()
}

/// conv2d(x, w) with `window` as products of gathered windows (see the module documentation).
fn conv(f: &mut Func, window: &ConvWindow, x: Value, w: Value, direct: bool, span: Span) -> Result<Value, String> {
    let (ws, xt) = (f.ty(w).shape.clone(), f.ty(x).clone());
    let y = Op::Conv(*window).infer(&[&xt, f.ty(w)])?.shape;
    let (&[kh, kw, c, co], &[n, oh, ow, _]) = (ws.as_slice(), y.as_slice()) else {
        unreachable!("the type rule checks conv2d's ranks")
    };
    let (s, d) = (window.stride, window.rhs_dilation);
    let depth = kh * kw * c;
    // The direct kernel pads its input itself (one copy into a zeroed buffer); dilation and
    // cropping are done here, first, so they must leave an element of the dilated input. A
    // result of single pixels of one channel would make tiles without loops, which do not
    // vectorize (`schedule::tile_convolution`).
    let crops_all = (0..2).any(|a| {
        let dilated = ConvWindow::dilated(xt.shape[1 + a], window.lhs_dilation[a]);
        dilated + i128::from(window.pad_lo[a].min(0)) + i128::from(window.pad_hi[a].min(0)) < 1
    });
    let direct = direct && s == [1, 1] && (ow > 1 || co > 1) && !crops_all;
    let kept = |p: i64| if direct { p.max(0) } else { 0 };
    let mut xp = x;
    for a in 0..2 {
        let (lo, hi) = (window.pad_lo[a], window.pad_hi[a]);
        xp = compose::pad(f, xp, 1 + a, lo - kept(lo), hi - kept(hi), window.lhs_dilation[a] - 1, span)?;
    }
    if direct {
        let padded = ConvWindow {
            pad_lo: window.pad_lo.map(kept),
            pad_hi: window.pad_hi.map(kept),
            ..ConvWindow::new([1, 1], [0, 0], d)
        };
        return f.push(Op::Conv(padded), vec![xp, w], span);
    }
    let kernel = reshape(f, w, vec![depth, co], span)?;
    if kh * kw <= oh * ow {
        let per_image = oh * ow * depth * xt.dtype.size_bytes();
        let chunk = (IM2COL_BYTES / per_image).clamp(1, n);
        let mut results = vec![];
        for first in (0..n).step_by(chunk) {
            let images = chunk.min(n - first);
            let mut taps = vec![];
            for p in 0..kh {
                for q in 0..kw {
                    let start = [first, p * d[0], q * d[1]];
                    taps.push(strided_window(f, xp, start, s, [images, oh, ow, c], span)?);
                }
            }
            let product = gathered_product(f, taps, 3, images * oh * ow, kernel, span)?;
            results.push(reshape(f, product, vec![images, oh, ow, co], span)?);
        }
        concat(f, results, 0, span)
    } else {
        // The windows of a few result positions at a time stacked along the rows,
        // [positions · N, KH·KW·C], one product per chunk; rows are position-major.
        let positions: Vec<(usize, usize)> = (0..oh).flat_map(|i| (0..ow).map(move |j| (i, j))).collect();
        let per_position = n * depth * xt.dtype.size_bytes();
        let chunk = (IM2COL_BYTES / per_position).clamp(1, positions.len());
        let mut results = vec![];
        for group in positions.chunks(chunk) {
            let mut windows = vec![];
            for &(i, j) in group {
                windows.push(strided_window(f, xp, [0, i * s[0], j * s[1]], d, [n, kh, kw, c], span)?);
            }
            results.push(gathered_product(f, windows, 0, group.len() * n, kernel, span)?);
        }
        let joined = concat(f, results, 0, span)?;
        let joined = reshape(f, joined, vec![oh, ow, n, co], span)?;
        if n == 1 {
            reshape(f, joined, vec![n, oh, ow, co], span)
        } else {
            f.push(Op::Transpose { perm: vec![2, 0, 1, 3] }, vec![joined], span)
        }
    }
}

/// The window of `xp` ([N, H, W, C]) from `start` (image, row, column) with `step` between rows
/// and between columns, of `shape`, all channels.
fn strided_window(
    f: &mut Func,
    xp: Value,
    start: [usize; 3],
    step: [usize; 2],
    shape: [usize; 4],
    span: Span,
) -> Result<Value, String> {
    let (start, step) = (vec![start[0], start[1], start[2], 0], vec![1, step[0] as i64, step[1] as i64, 1]);
    f.push(Op::Slice { start, step, shape: shape.to_vec() }, vec![xp], span)
}

/// The `windows` joined along `axis` and read as a [rows, KH·KW·C] matrix, times the kernel
/// matrix: one product of gathered windows.
fn gathered_product(
    f: &mut Func,
    windows: Vec<Value>,
    axis: usize,
    rows: usize,
    kernel: Value,
    span: Span,
) -> Result<Value, String> {
    let depth = f.ty(kernel).shape[0];
    let joined = concat(f, windows, axis, span)?;
    let matrix = reshape(f, joined, vec![rows, depth], span)?;
    f.push(Op::Dot, vec![matrix, kernel], span)
}

/// `x` reshaped, or `x` itself when it has the shape already.
fn reshape(f: &mut Func, x: Value, shape: Vec<usize>, span: Span) -> Result<Value, String> {
    if f.ty(x).shape == shape {
        Ok(x)
    } else {
        f.push(Op::Reshape { shape }, vec![x], span)
    }
}

/// The parts joined along `axis`, or the only part.
fn concat(f: &mut Func, parts: Vec<Value>, axis: usize, span: Span) -> Result<Value, String> {
    if parts.len() == 1 {
        Ok(parts[0])
    } else {
        f.push(Op::Concat { axis }, parts, span)
    }
}

/// Row `t` of `x` (`t` an integer scalar, clamped to the rows as a dynamic slice's start):
/// x[t], one rank lower.
fn row(f: &mut Func, x: Value, t: Value, span: Span) -> Result<Value, String> {
    let shape = f.ty(x).shape.clone();
    let starts = row_starts(f, t, shape.len(), span)?;
    let sizes = std::iter::once(1).chain(shape[1..].iter().copied()).collect();
    let window = f.push(Op::DynamicSlice { sizes }, std::iter::once(x).chain(starts).collect(), span)?;
    f.push(Op::Reshape { shape: shape[1..].to_vec() }, vec![window], span)
}

/// `stack` with its row `t` (clamped as [`row`]'s) replaced by `x`.
fn put_row(f: &mut Func, stack: Value, x: Value, t: Value, span: Span) -> Result<Value, String> {
    let shape = f.ty(stack).shape.clone();
    let starts = row_starts(f, t, shape.len(), span)?;
    let one = std::iter::once(1).chain(shape[1..].iter().copied()).collect();
    let x = f.push(Op::Reshape { shape: one }, vec![x], span)?;
    f.push(Op::DynamicUpdateSlice, [stack, x].into_iter().chain(starts).collect(), span)
}

/// The starts of the window of row `t` of an array of rank `rank`: t, then zeros.
fn row_starts(f: &mut Func, t: Value, rank: usize, span: Span) -> Result<Vec<Value>, String> {
    let zero = f.push(Op::Const(Literal::Int(f.ty(t).dtype, 0)), vec![], span)?;
    Ok(std::iter::once(t).chain(std::iter::repeat_n(zero, rank - 1)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_ir::{DType, TensorType};

    /// The products an expansion of conv2d(x, w) with `window` makes: [rows, depth] each.
    fn products(x: &[usize], w: &[usize], window: ConvWindow) -> Vec<Vec<usize>> {
        expanded(x, w, window, false).1
    }

    /// conv2d(x, w) with `window` expanded (for the direct kernel with `direct`): the windows
    /// of the conv2d ops left, and the [rows, depth] of each product.
    fn expanded(x: &[usize], w: &[usize], window: ConvWindow, direct: bool) -> (Vec<ConvWindow>, Vec<Vec<usize>>) {
        let mut f = Func::new("f", Span::default());
        let xv = f.add_param("x", TensorType::new(DType::F32, x.to_vec()), Span::default());
        let wv = f.add_param("w", TensorType::new(DType::F32, w.to_vec()), Span::default());
        let y = f.push(Op::Conv(window), vec![xv, wv], Span::default()).unwrap();
        f.results.push(y);
        f.result_names.push("out0".into());
        let expanded = expand(&f, direct).unwrap();
        assert_eq!(expanded.ty(expanded.results[0]), f.ty(y));
        let convs = expanded.insts.iter().filter_map(|i| if let Op::Conv(w) = i.op { Some(w) } else { None });
        let products = expanded.insts.iter().filter(|i| i.op == Op::Dot).map(|i| expanded.ty(i.args[0]).shape.clone());
        (convs.collect(), products.collect())
    }

    #[test]
    fn stride_one_convolutions_stay_for_the_direct_kernel() {
        // Input dilation and cropping move into the input; padding and kernel dilation stay.
        let mut window = ConvWindow::new([1, 1], [1, 2], [2, 1]);
        window.lhs_dilation = [2, 1];
        window.pad_hi = [-1, 2];
        let direct = ConvWindow { lhs_dilation: [1, 1], pad_hi: [0, 2], ..window };
        assert_eq!(expanded(&[2, 9, 9, 4], &[3, 3, 4, 8], window, true), (vec![direct], vec![]));
        // More taps than result positions: direct too. Strided: expanded.
        let plain = ConvWindow::new([1, 1], [0, 0], [1, 1]);
        assert_eq!(expanded(&[2, 9, 9, 4], &[8, 8, 4, 8], plain, true), (vec![plain], vec![]));
        let strided = ConvWindow::new([2, 1], [1, 1], [1, 1]);
        let (convs, products) = expanded(&[2, 9, 9, 4], &[3, 3, 4, 8], strided, true);
        assert!(convs.is_empty() && products.len() == 1);
    }

    #[test]
    fn forward_convolutions_gather_taps_in_chunks_of_images() {
        // 3x3 over 8 images of 56x56x64: 3136 rows of 576 per image, 7.2 MB, four images a chunk.
        let p = products(&[8, 56, 56, 64], &[3, 3, 64, 64], ConvWindow::new([1, 1], [1, 1], [1, 1]));
        assert_eq!(p, vec![vec![4 * 3136, 576]; 2]);
    }

    #[test]
    fn kernel_cotangents_gather_result_positions_in_chunks() {
        // The benchmark's kernel cotangent: x as [64, 56, 56, 8] convolved with the 56x56
        // cotangent as its kernel, 3x3 results: 9 windows of 64 rows of 25088 (6.4 MB each),
        // five to a chunk, so that the products have rows for threads to share.
        let p = products(&[64, 56, 56, 8], &[56, 56, 8, 64], ConvWindow::new([1, 1], [1, 1], [1, 1]));
        assert_eq!(p, vec![vec![5 * 64, 25088], vec![4 * 64, 25088]]);
    }
}
