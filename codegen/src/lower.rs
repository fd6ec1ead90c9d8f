//! Ops this backend computes as compositions of others, expanded in the IR before MLIR is
//! emitted: conv2d becomes products of gathered windows (im2col).
//!
//! The convolution's input is first dilated and padded ([`kiln_ir::compose::pad`]), so that
//! every tap reads a strided window of one array. Then one of two equivalent forms computes
//! y[n, i, j, f] = Σ_{p, q, c} xp[n, i s + p d, j s + q d, c] w[p, q, c, f]:
//!
//! - by taps, when the kernel has no more taps than the result has positions (a forward
//!   convolution, the input's cotangent): the KH·KW taps' windows [N, OH, OW, C] concatenated
//!   along the channels are the [N·OH·OW, KH·KW·C] im2col matrix, times the kernel as a
//!   [KH·KW·C, F] matrix, one product with a long reduction. The matrix is built for a few
//!   images at a time, at most [`IM2COL_BYTES`] (one image at least), one product per chunk;
//! - by positions, when the result has fewer positions than the kernel taps (the kernel's
//!   cotangent, whose "kernel" is the result's cotangent): for each result position, the window
//!   [N, KH, KW, C] it reads as an [N, KH·KW·C] matrix times the same kernel matrix.
//!
//! Both gather N·OH·OW·KH·KW·C elements; the choice keeps the number of slices and products
//! at the smaller of KH·KW and OH·OW. A dedicated convolution kernel that tiles the input
//! instead of writing the matrix would replace this expansion (docs/decisions.md).

use kiln_ir::{compose, ConvWindow, Func, Op, Span, Value};
use std::borrow::Cow;

/// Bytes of an im2col matrix built at once, at most (one image's is built whatever its size):
/// the matrix lives in the workspace, and products of a few thousand rows already run at the
/// contraction kernel's speed.
pub const IM2COL_BYTES: usize = 32 << 20;

/// `f` with every conv2d expanded (borrowed unchanged when it has none). Fails only when an
/// expansion's intermediate array would exceed kiln's shape limits.
pub fn expand(f: &Func) -> Result<Cow<'_, Func>, String> {
    if !f.insts.iter().any(|i| matches!(i.op, Op::Conv(_))) {
        return Ok(Cow::Borrowed(f));
    }
    let mut out = Func::new(f.name.clone(), f.span);
    let mut map: Vec<Value> = f.params.iter().map(|p| out.add_param(p.name.clone(), p.ty.clone(), p.span)).collect();
    for inst in &f.insts {
        let args: Vec<Value> = inst.args.iter().map(|a| map[a.index()]).collect();
        let v = match &inst.op {
            Op::Conv(window) => conv(&mut out, window, args[0], args[1], inst.span)?,
            op => out.push(op.clone(), args, inst.span)?,
        };
        map.push(v);
    }
    out.results = f.results.iter().map(|r| map[r.index()]).collect();
    out.result_names = f.result_names.clone();
    Ok(Cow::Owned(out))
}

/// conv2d(x, w) with `window` as products of gathered windows (see the module documentation).
fn conv(f: &mut Func, window: &ConvWindow, x: Value, w: Value, span: Span) -> Result<Value, String> {
    let mut xp = x;
    for a in 0..2 {
        xp = compose::pad(f, xp, 1 + a, window.pad_lo[a], window.pad_hi[a], window.lhs_dilation[a] - 1, span)?;
    }
    let (ws, xt) = (f.ty(w).shape.clone(), f.ty(x).clone());
    let y = Op::Conv(*window).infer(&[&xt, f.ty(w)])?.shape;
    let (&[kh, kw, c, co], &[n, oh, ow, _]) = (ws.as_slice(), y.as_slice()) else {
        unreachable!("the type rule checks conv2d's ranks")
    };
    let (s, d) = (window.stride, window.rhs_dilation);
    let depth = kh * kw * c;
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
                    let start = vec![first, p * d[0], q * d[1], 0];
                    let step = vec![1, s[0] as i64, s[1] as i64, 1];
                    taps.push(f.push(Op::Slice { start, step, shape: vec![images, oh, ow, c] }, vec![xp], span)?);
                }
            }
            let patches = concat(f, taps, 3, span)?;
            let patches = reshape(f, patches, vec![images * oh * ow, depth], span)?;
            let product = f.push(Op::Dot, vec![patches, kernel], span)?;
            results.push(reshape(f, product, vec![images, oh, ow, co], span)?);
        }
        concat(f, results, 0, span)
    } else {
        let mut results = vec![];
        for i in 0..oh {
            for j in 0..ow {
                let start = vec![0, i * s[0], j * s[1], 0];
                let step = vec![1, d[0] as i64, d[1] as i64, 1];
                let window = f.push(Op::Slice { start, step, shape: vec![n, kh, kw, c] }, vec![xp], span)?;
                let rows = reshape(f, window, vec![n, depth], span)?;
                let product = f.push(Op::Dot, vec![rows, kernel], span)?;
                results.push(reshape(f, product, vec![n, 1, co], span)?);
            }
        }
        let joined = concat(f, results, 1, span)?;
        reshape(f, joined, vec![n, oh, ow, co], span)
    }
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
