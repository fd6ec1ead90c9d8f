//! Reductions as one block of threads per output element (GPU targets).
//!
//! The naive mapping gives each output element one thread that runs the whole reduction: a
//! softmax over 64 rows of 1000 ran on 64 threads. Here a planned `linalg.generic` with
//! reduction loops, one output and a body that ends by combining the output with an
//! associative operator (`%r = arith.addf %out, %x`, max, min, products, integer and bitwise
//! forms) becomes a `gpu.launch` of one block of [`THREADS`] threads per output element:
//!
//! 1. each thread runs the generic's body (inlined, its output argument replaced by the
//!    thread's partial result) over the reduction indices `tid, tid + 256, ...`, starting
//!    from the operator's identity: consecutive threads read consecutive elements;
//! 2. the 256 partial results are combined in workgroup memory by a tree of 8 halvings, each
//!    followed by a barrier: a fixed order, so results are reproducible run to run;
//! 3. thread 0 combines the total with the output's initial value (the fill before the
//!    generic) and stores it.
//!
//! Anything else (fewer than [`MIN_EXTENT`] reduced elements, several outputs, strided views,
//! another body) keeps the naive mapping.

use crate::printed::{indent, names, op_name};
use std::collections::BTreeMap;

/// Threads per block of a block reduction.
pub const THREADS: usize = 256;
/// The fewest reduced elements per output worth a block of threads.
const MIN_EXTENT: usize = 64;

/// The identity of combining operator `op` on element type `ty`, as an `arith.constant` value.
fn identity(op: &str, ty: &str) -> Option<String> {
    Some(match (op, ty) {
        ("arith.addf", "f32" | "f64") => "-0.000000e+00".into(),
        ("arith.mulf", "f32" | "f64") => "1.000000e+00".into(),
        ("arith.maximumf", "f32") => "0xFF800000".into(),
        ("arith.minimumf", "f32") => "0x7F800000".into(),
        ("arith.maximumf", "f64") => "0xFFF0000000000000".into(),
        ("arith.minimumf", "f64") => "0x7FF0000000000000".into(),
        ("arith.addi" | "arith.ori" | "arith.xori", "i32" | "i64") => "0".into(),
        ("arith.muli", "i32" | "i64") => "1".into(),
        ("arith.andi", "i32" | "i64") => "-1".into(),
        ("arith.maxsi", "i32") => i32::MIN.to_string(),
        ("arith.minsi", "i32") => i32::MAX.to_string(),
        ("arith.maxsi", "i64") => i64::MIN.to_string(),
        ("arith.minsi", "i64") => i64::MAX.to_string(),
        _ => return None,
    })
}

/// A dense memref type's shape and element type (`memref<64x1000xf32>`, `memref<f64>`).
fn dense_memref(ty: &str) -> Option<(Vec<usize>, &str)> {
    let inner = ty.strip_prefix("memref<")?.strip_suffix('>')?;
    if inner.contains([',', '<']) {
        return None;
    }
    let mut parts: Vec<&str> = inner.split('x').collect();
    let elem = parts.pop()?;
    Some((parts.iter().map(|d| d.parse().ok()).collect::<Option<_>>()?, elem))
}

/// A map's results as loop dimensions (`None` for the constant 0), from
/// `affine_map<(d0, d1) -> (d0, 0)>`.
fn map_results(map: &str) -> Option<Vec<Option<usize>>> {
    let results = map.split("-> (").nth(1)?.split(')').next()?;
    results
        .split(", ")
        .filter(|r| !r.is_empty())
        .map(|r| match r.strip_prefix('d') {
            Some(d) => d.parse().ok().map(Some),
            None => (r == "0").then_some(None),
        })
        .collect()
}

/// `text` with every `%name` in `renames` replaced.
fn rename(text: &str, renames: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for name in names(text) {
        let at = last + text[last..].find(name).expect("names come from the text");
        out.push_str(&text[last..at]);
        out.push_str(renames.get(name).map_or(name, String::as_str));
        last = at + name.len();
    }
    out.push_str(&text[last..]);
    out
}

/// The planned module `text` with every eligible reduction generic replaced by a block
/// reduction (see the module documentation).
pub fn block_reductions(text: &str) -> String {
    let maps: BTreeMap<&str, &str> =
        text.lines().take_while(|l| !l.starts_with("module")).filter_map(|l| l.split_once(" = affine_map<")).collect();
    let lines: Vec<&str> = text.lines().collect();
    let mut out = String::with_capacity(text.len());
    let (mut i, mut count) = (0, 0);
    while i < lines.len() {
        let line = lines[i];
        if op_name(line) == "linalg.generic" && line.trim_end().ends_with('{') {
            let end = (i + 1..lines.len()).find(|&j| indent(lines[j]) == indent(line) && lines[j].trim() == "}");
            if let Some(end) = end {
                if let Some(launch) = block_reduction(&lines[i..=end], &maps, count) {
                    out.push_str(&launch);
                    count += 1;
                    i = end + 1;
                    continue;
                }
            }
        }
        out.push_str(line);
        out.push('\n');
        i += 1;
    }
    out
}

/// The `gpu.launch` computing the generic whose lines are `generic` (first line to closing
/// brace), or `None` if it is not an eligible reduction. `n` makes its names unique.
fn block_reduction(generic: &[&str], maps: &BTreeMap<&str, &str>, n: usize) -> Option<String> {
    let head = generic[0].trim_start();
    let map_names: Vec<&str> = head.split("indexing_maps = [").nth(1)?.split(']').next()?.split(", ").collect();
    let iterators: Vec<bool> =
        head.split("iterator_types = [").nth(1)?.split(']').next()?.split(", ").map(|t| t == "\"reduction\"").collect();
    let operands = |key: &str| -> Option<Vec<(&str, &str)>> {
        let inside = head.split(key).nth(1)?.split(')').next()?;
        let (names, types) = inside.split_once(" : ")?;
        let (names, types): (Vec<&str>, Vec<&str>) = (names.split(", ").collect(), types.split(", ").collect());
        (names.len() == types.len()).then(|| names.into_iter().zip(types).collect())
    };
    let (ins, outs) = (operands(" ins(")?, operands(" outs(")?);
    let [(out, out_ty)] = outs[..] else { return None };
    let results: Vec<Vec<Option<usize>>> =
        map_names.iter().map(|m| maps.get(m).and_then(|t| map_results(t))).collect::<Option<_>>()?;
    if results.len() != ins.len() + 1 || !iterators.iter().any(|&r| r) {
        return None;
    }
    // Loop extents, from the operands' shapes.
    let mut extents = vec![None; iterators.len()];
    let mut shapes = vec![];
    for ((_, ty), dims) in ins.iter().chain(&outs).zip(&results) {
        let (shape, _) = dense_memref(ty)?;
        if shape.len() != dims.len() {
            return None;
        }
        for (&extent, d) in shape.iter().zip(dims) {
            if let Some(d) = *d {
                *extents.get_mut(d)? = Some(extent);
            }
        }
        shapes.push(shape);
    }
    let extents: Vec<usize> = extents.into_iter().collect::<Option<_>>()?;
    let (reduced, parallel): (Vec<usize>, Vec<usize>) = (0..iterators.len()).partition(|&d| iterators[d]);
    let (rows, extent) = (
        parallel.iter().map(|&d| extents[d]).product::<usize>(),
        reduced.iter().map(|&d| extents[d]).product::<usize>(),
    );
    let (_, elem) = dense_memref(out_ty)?;
    if extent < MIN_EXTENT || rows > i32::MAX as usize {
        return None;
    }
    // The body: block arguments, lines, and the combining operator of its last value.
    let block = generic.get(1)?.trim();
    let args: Vec<&str> = names(block.strip_prefix("^bb0(")?).collect();
    let body = &generic[2..generic.len() - 1];
    let (yield_line, body) = body.split_last()?;
    let yielded = yield_line.trim().strip_prefix("linalg.yield ")?.split(" : ").next()?;
    let out_arg = *args.last()?;
    if args.len() != ins.len() + 1 {
        return None;
    }
    let combine_line = body.iter().find(|l| l.trim_start().starts_with(&format!("{yielded} = ")))?;
    let combiner = op_name(combine_line);
    let identity = identity(combiner, elem)?;
    let combined: Vec<&str> = names(crate::printed::rhs(combine_line)).collect();
    let uses = body.iter().flat_map(|l| names(l)).filter(|&x| x == out_arg).count();
    if combined.len() != 2 || !combined.contains(&out_arg) || uses != 1 {
        return None;
    }

    let pad = " ".repeat(indent(generic[0]));
    let p = format!("%kiln_r{n}_");
    let smem = format!("memref<{THREADS}x{elem}, #gpu.address_space<workgroup>>");
    let mut s = String::new();
    let mut emit = |depth: usize, text: String| {
        s.push_str(&pad);
        s.push_str(&"  ".repeat(depth));
        s.push_str(&text);
        s.push('\n');
    };
    emit(0, format!("{p}rows = arith.constant {rows} : index"));
    emit(0, format!("{p}threads = arith.constant {THREADS} : index"));
    emit(0, format!("{p}one = arith.constant 1 : index"));
    emit(
        0,
        format!(
            "gpu.launch blocks({p}bx, {p}by, {p}bz) in ({p}gx = {p}rows, {p}gy = {p}one, {p}gz = {p}one) \
             threads({p}tx, {p}ty, {p}tz) in ({p}sx = {p}threads, {p}sy = {p}one, {p}sz = {p}one) \
             workgroup({p}smem : {smem}) {{"
        ),
    );
    emit(1, format!("{p}zero = arith.constant 0 : index"));
    emit(1, format!("{p}extent = arith.constant {extent} : index"));
    emit(1, format!("{p}step = arith.constant {THREADS} : index"));
    // Loop indices from a linear index, the last dimension fastest.
    let delinearize = |emit: &mut dyn FnMut(usize, String), depth: usize, from: &str, dims: &[usize]| {
        let mut rest = from.to_string();
        for (k, &d) in dims.iter().enumerate().rev() {
            if k == 0 {
                emit(depth, format!("{p}d{d} = arith.addi {rest}, {p}zero : index"));
            } else {
                emit(depth, format!("{p}e{d} = arith.constant {} : index", extents[d]));
                emit(depth, format!("{p}d{d} = arith.remui {rest}, {p}e{d} : index"));
                emit(depth, format!("{p}q{d} = arith.divui {rest}, {p}e{d} : index"));
                rest = format!("{p}q{d}");
            }
        }
    };
    let index = |dims: &[Option<usize>]| -> String {
        dims.iter().map(|d| d.map_or(format!("{p}zero"), |d| format!("{p}d{d}"))).collect::<Vec<_>>().join(", ")
    };
    delinearize(&mut emit, 1, &format!("{p}bx"), &parallel);
    emit(1, format!("{p}identity = arith.constant {identity} : {elem}"));
    emit(
        1,
        format!(
            "{p}partial = scf.for {p}r = {p}tx to {p}extent step {p}step iter_args({p}acc = {p}identity) -> ({elem}) {{"
        ),
    );
    delinearize(&mut emit, 2, &format!("{p}r"), &reduced);
    let mut renames: BTreeMap<String, String> = BTreeMap::new();
    for (k, ((name, ty), dims)) in ins.iter().zip(&results).enumerate() {
        emit(2, format!("{p}in{k} = memref.load {name}[{}] : {ty}", index(dims)));
        renames.insert(args[k].to_string(), format!("{p}in{k}"));
    }
    renames.insert(out_arg.to_string(), format!("{p}acc"));
    for line in body {
        for defined in crate::printed::definitions(line) {
            renames.insert(defined.to_string(), format!("{p}v{}", &defined[1..]));
        }
    }
    for line in body {
        emit(2, rename(line.trim(), &renames));
    }
    emit(2, format!("scf.yield {} : {elem}", rename(yielded, &renames)));
    emit(1, "}".into());
    emit(1, format!("memref.store {p}partial, {p}smem[{p}tx] : {smem}"));
    emit(1, "gpu.barrier".into());
    let mut half = THREADS / 2;
    while half > 0 {
        let h = format!("{p}h{half}");
        emit(1, format!("{h} = arith.constant {half} : index"));
        emit(1, format!("{h}_lt = arith.cmpi ult, {p}tx, {h} : index"));
        emit(1, format!("scf.if {h}_lt {{"));
        emit(2, format!("{h}_j = arith.addi {p}tx, {h} : index"));
        emit(2, format!("{h}_a = memref.load {p}smem[{p}tx] : {smem}"));
        emit(2, format!("{h}_b = memref.load {p}smem[{h}_j] : {smem}"));
        emit(2, format!("{h}_c = {combiner} {h}_a, {h}_b : {elem}"));
        emit(2, format!("memref.store {h}_c, {p}smem[{p}tx] : {smem}"));
        emit(1, "}".into());
        emit(1, "gpu.barrier".into());
        half /= 2;
    }
    emit(1, format!("{p}first = arith.cmpi eq, {p}tx, {p}zero : index"));
    emit(1, format!("scf.if {p}first {{"));
    let out_index = index(results.last()?);
    emit(2, format!("{p}total = memref.load {p}smem[{p}zero] : {smem}"));
    emit(2, format!("{p}init = memref.load {out}[{out_index}] : {out_ty}"));
    emit(2, format!("{p}result = {combiner} {p}init, {p}total : {elem}"));
    emit(2, format!("memref.store {p}result, {out}[{out_index}] : {out_ty}"));
    emit(1, "}".into());
    emit(1, "gpu.terminator".into());
    emit(0, "}".into());
    Some(s)
}
