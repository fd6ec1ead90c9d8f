//! Reductions, and the row operations around them, as one block of threads per output row
//! (GPU targets).
//!
//! The naive mapping gives each output element one thread that runs the whole reduction: a
//! softmax over 64 rows of 1000 ran on 64 threads. Here bufferized linalg ops (before the
//! workspace plan, which then sees what each launch uses) become `gpu.launch`es
//! of one block of [`THREADS`] threads per output row:
//!
//! - A reduction (a generic with reduction loops, one dense output, and a body that ends by
//!   combining the output with an associative operator: `%r = arith.addf %out, %x`, max, min,
//!   products, integer and bitwise forms) runs as a *reduction phase*: each thread runs the
//!   inlined body, its output argument replaced by the thread's partial result, over the
//!   reduction indices `tid, tid + 256, ...` from the operator's identity (consecutive threads
//!   read consecutive elements); the 256 partials are combined by warp shuffles and, across
//!   the 8 warps, through workgroup memory (a fixed order: reproducible); thread 0 folds in
//!   the output's initial value and stores it; a barrier publishes it to the block.
//! - A *row group* is a run of statements over the same rows: fills of per-row outputs, row
//!   reductions over the last loop, elementwise generics over [rows..., n], and per-row
//!   elementwise generics over [rows...] (thread 0 computes those, then a barrier). They become
//!   phases of one launch: an elementwise phase has each thread compute the positions
//!   `tid, tid + 256, ...` of its row, the same positions a reduction phase gives it, so values
//!   one phase writes and a later one reads at the same position stay with one thread (read
//!   back from its cache), and per-row results are read after the reduction's barrier. Buffers
//!   the group writes before reading and nothing after it uses live in workgroup memory (see
//!   [`locals`]). A softmax is one launch, not six, and its intermediates never leave the block.
//!
//! A group needs a reduction over at least [`MIN_EXTENT`] elements per row. A lone reduction
//! over other loops (the first stage of a full sum) gets its own launch; anything else (several
//! outputs, strided views, another body) keeps the naive mapping.

use super::printed::{definitions, indent, names, op_name, rhs};
use std::collections::BTreeMap;

/// Statements that compute nothing a group reads or writes, hoisted above its launch.
const PURE: &[&str] = &["memref.alloc", "memref.view", "arith.constant"];

/// Threads per block of a block reduction.
pub const THREADS: usize = 256;
/// Threads per warp.
const WARP: usize = 32;
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

/// A bufferized statement a launch can compute.
struct Op<'t> {
    /// Input memrefs (name, type) and their maps' results; the output and its map's results.
    ins: Vec<(&'t str, &'t str, Vec<Option<usize>>)>,
    out: (&'t str, &'t str, Vec<Option<usize>>),
    /// Loop extents and which loops reduce.
    extents: Vec<usize>,
    reduced: Vec<bool>,
    elem: &'t str,
    kind: Kind<'t>,
}

enum Kind<'t> {
    /// `linalg.fill` with this value.
    Fill(&'t str),
    Generic {
        args: Vec<&'t str>,
        body: Vec<&'t str>,
        yielded: &'t str,
        /// The combining operator of a reduction.
        combiner: Option<&'t str>,
    },
}

impl<'t> Op<'t> {
    /// The op of a statement (its lines), if it is a fill or generic on dense memrefs with one
    /// output (and, with reduction loops, a body a reduction phase can split).
    fn parse(lines: &[&'t str], maps: &BTreeMap<&str, &'t str>) -> Option<Op<'t>> {
        let head = lines[0].trim_start();
        let operands = |key: &str| -> Option<Vec<(&'t str, &'t str)>> {
            let inside = head.split(key).nth(1)?.split(')').next()?;
            let (names, types) = inside.split_once(" : ")?;
            let (names, types): (Vec<&str>, Vec<&str>) = (names.split(", ").collect(), types.split(", ").collect());
            (names.len() == types.len()).then(|| names.into_iter().zip(types).collect())
        };
        let [(out, out_ty)] = operands(" outs(")?[..] else { return None };
        let (out_shape, elem) = dense_memref(out_ty)?;
        if op_name(head) == "linalg.fill" {
            let [(value, _)] = operands("ins(")?[..] else { return None };
            let dims: Vec<Option<usize>> = (0..out_shape.len()).map(Some).collect();
            let reduced = vec![false; out_shape.len()];
            return Some(Op {
                ins: vec![],
                out: (out, out_ty, dims),
                extents: out_shape,
                reduced,
                elem,
                kind: Kind::Fill(value),
            });
        }
        if op_name(head) != "linalg.generic" || lines.len() < 3 {
            return None;
        }
        let list = |key: &str| Some(head.split(key).nth(1)?.split(']').next()?.split(", ").collect::<Vec<_>>());
        let reduced: Vec<bool> = list("iterator_types = [")?.iter().map(|t| *t == "\"reduction\"").collect();
        let results: Vec<Vec<Option<usize>>> = list("indexing_maps = [")?
            .iter()
            .map(|m| maps.get(m).and_then(|t| map_results(t)))
            .collect::<Option<_>>()?;
        let ins = operands(" ins(").unwrap_or_default();
        if results.len() != ins.len() + 1 {
            return None;
        }
        let mut extents = vec![None; reduced.len()];
        for ((_, ty), dims) in ins.iter().chain([&(out, out_ty)]).zip(&results) {
            let (shape, _) = dense_memref(ty)?;
            if shape.len() != dims.len() {
                return None;
            }
            for (&extent, d) in shape.iter().zip(dims) {
                if let Some(d) = *d {
                    *extents.get_mut(d)? = Some(extent);
                }
            }
        }
        let extents: Vec<usize> = extents.into_iter().collect::<Option<_>>()?;
        let args: Vec<&str> = names(lines[1].trim().strip_prefix("^bb0(")?).collect();
        let (yield_line, body) = lines[2..lines.len() - 1].split_last()?;
        let yielded = yield_line.trim().strip_prefix("linalg.yield ")?.split(" : ").next()?;
        let out_arg = *args.last()?;
        if args.len() != ins.len() + 1 || yielded.contains(',') {
            return None;
        }
        let combiner = if reduced.contains(&true) {
            let line = body.iter().find(|l| l.trim_start().starts_with(&format!("{yielded} = ")))?;
            let combined: Vec<&str> = names(rhs(line)).collect();
            let uses = body.iter().flat_map(|l| names(l)).filter(|&x| x == out_arg).count();
            if combined.len() != 2 || !combined.contains(&out_arg) || uses != 1 {
                return None;
            }
            identity(op_name(line), elem)?;
            Some(op_name(line))
        } else {
            None
        };
        let ins = ins.into_iter().zip(results.clone()).map(|((n, t), r)| (n, t, r)).collect();
        let out = (out, out_ty, results.last()?.clone());
        Some(Op {
            ins,
            out,
            extents,
            reduced,
            elem,
            kind: Kind::Generic { args, body: body.to_vec(), yielded, combiner },
        })
    }

    fn is_reduction(&self) -> bool {
        self.reduced.contains(&true)
    }

    /// Its rows and row length when it is a row op: a reduction over its last loop into a
    /// [rows...] output, or an elementwise op or fill over [rows..., n]; the output indexed by
    /// its loops in order.
    fn row(&self) -> Option<(Vec<usize>, usize)> {
        let loops = self.extents.len();
        let (rows, n) = self.extents.split_last().map(|(n, rows)| (rows.to_vec(), *n))?;
        let in_order = |dims: &[Option<usize>], count: usize| dims.iter().copied().eq((0..count).map(Some));
        let reduction = self.reduced.iter().enumerate().all(|(d, &r)| r == (d + 1 == loops));
        match self.kind {
            Kind::Generic { .. } if self.is_reduction() => {
                (reduction && in_order(&self.out.2, loops - 1)).then_some((rows, n))
            }
            _ => (in_order(&self.out.2, loops) && loops >= 1).then_some((rows, n)),
        }
    }
}

/// The text of one launch being written.
struct Launch {
    text: String,
    pad: String,
    /// The prefix of its names.
    p: String,
    /// Buffers kept in workgroup memory instead (see [`locals`]): name to its workgroup
    /// buffer and type.
    locals: BTreeMap<String, (String, String)>,
}

impl Launch {
    fn line(&mut self, depth: usize, text: String) {
        self.text.push_str(&self.pad);
        self.text.push_str(&"  ".repeat(depth));
        self.text.push_str(&text);
        self.text.push('\n');
    }

    /// Names `{p}{prefix}d{d}` for loops `dims` of `extents`, from the linear index `from`
    /// (the last dimension fastest).
    fn delinearize(&mut self, depth: usize, from: &str, prefix: &str, dims: &[usize], extents: &[usize]) {
        let p = self.p.clone();
        let mut rest = from.to_string();
        for (k, &d) in dims.iter().enumerate().rev() {
            if k == 0 {
                self.line(depth, format!("{p}{prefix}d{d} = arith.addi {rest}, {p}zero : index"));
            } else {
                self.line(depth, format!("{p}{prefix}e{d} = arith.constant {} : index", extents[d]));
                self.line(depth, format!("{p}{prefix}d{d} = arith.remui {rest}, {p}{prefix}e{d} : index"));
                self.line(depth, format!("{p}{prefix}q{d} = arith.divui {rest}, {p}{prefix}e{d} : index"));
                rest = format!("{p}{prefix}q{d}");
            }
        }
    }

    /// Opens `gpu.launch` over `blocks` blocks with a 256-slot workgroup buffer per element type
    /// in `reduced` (named `{p}smem_<type>`) and the local buffers.
    fn open(&mut self, blocks: usize, reduced: &[&str]) {
        let p = self.p.clone();
        let locals: Vec<String> = self.locals.values().map(|(name, ty)| format!("{name} : {ty}")).collect();
        self.line(0, format!("{p}blocks = arith.constant {blocks} : index"));
        self.line(0, format!("{p}threads = arith.constant {THREADS} : index"));
        self.line(0, format!("{p}one = arith.constant 1 : index"));
        let mut buffers: Vec<String> = reduced.iter().map(|t| format!("{p}smem_{t} : {}", smem(t))).collect();
        buffers.extend(locals);
        self.line(
            0,
            format!(
                "gpu.launch blocks({p}bx, {p}by, {p}bz) in ({p}gx = {p}blocks, {p}gy = {p}one, {p}gz = {p}one) \
                 threads({p}tx, {p}ty, {p}tz) in ({p}sx = {p}threads, {p}sy = {p}one, {p}sz = {p}one){} {{",
                if buffers.is_empty() { String::new() } else { format!(" workgroup({})", buffers.join(", ")) }
            ),
        );
        self.line(1, format!("{p}zero = arith.constant 0 : index"));
        self.line(1, format!("{p}step = arith.constant {THREADS} : index"));
    }

    fn close(&mut self) {
        self.line(1, "gpu.terminator".into());
        self.line(0, "}".into());
    }

    /// Phase `q` computing `op`, whose loops have the index names in `index` where known (the
    /// block's loops); the others are the thread's strided positions.
    fn phase(&mut self, q: usize, op: &Op, index: &BTreeMap<usize, String>) {
        let p = self.p.clone();
        let pq = format!("{p}{q}_");
        let (inner, inner_extent): (Vec<usize>, usize) = {
            let dims: Vec<usize> = (0..op.extents.len()).filter(|d| !index.contains_key(d)).collect();
            let extent = dims.iter().map(|&d| op.extents[d]).product();
            (dims, extent)
        };
        // `buffer[indices] : type` of an access, in workgroup memory for a local buffer (indexed
        // by the thread's positions only: the row is the block's).
        let locals = self.locals.clone();
        let place = |name: &str, ty: &str, dims: &[Option<usize>]| -> String {
            let local = locals.get(name);
            let names: Vec<String> = dims
                .iter()
                .filter(|d| local.is_none() || d.is_some_and(|d| !index.contains_key(&d)))
                .map(|d| match d {
                    Some(d) => index.get(d).cloned().unwrap_or(format!("{pq}d{d}")),
                    None => format!("{p}zero"),
                })
                .collect();
            match local {
                Some((smem, smem_ty)) if names.is_empty() => format!("{smem}[{p}zero] : {smem_ty}"),
                Some((smem, smem_ty)) => format!("{smem}[{}] : {smem_ty}", names.join(", ")),
                None => format!("{name}[{}] : {ty}", names.join(", ")),
            }
        };
        let (out, out_ty, out_dims) = &op.out;
        let out_place = place(out, out_ty, out_dims);
        let elem = op.elem;
        match &op.kind {
            Kind::Fill(value) if inner.is_empty() => {
                self.line(1, format!("{pq}first = arith.cmpi eq, {p}tx, {p}zero : index"));
                self.line(1, format!("scf.if {pq}first {{"));
                self.line(2, format!("memref.store {value}, {out_place}"));
                self.line(1, "}".into());
                self.line(1, "gpu.barrier".into());
            }
            Kind::Fill(value) => {
                self.line(1, format!("{pq}extent = arith.constant {inner_extent} : index"));
                self.line(1, format!("scf.for {pq}r = {p}tx to {pq}extent step {p}step {{"));
                self.delinearize(2, &format!("{pq}r"), &format!("{q}_"), &inner, &op.extents);
                self.line(2, format!("memref.store {value}, {out_place}"));
                self.line(1, "}".into());
            }
            Kind::Generic { args, body, yielded, combiner } => {
                let mut renames: BTreeMap<String, String> = BTreeMap::new();
                for line in body.iter() {
                    for defined in definitions(line) {
                        renames.insert(defined.to_string(), format!("{pq}v{}", &defined[1..]));
                    }
                }
                self.line(1, format!("{pq}extent = arith.constant {inner_extent} : index"));
                let loop_head = match combiner {
                    Some(combiner) => {
                        let identity = identity(combiner, elem).expect("checked when parsed");
                        self.line(1, format!("{pq}identity = arith.constant {identity} : {elem}"));
                        renames.insert(args[args.len() - 1].to_string(), format!("{pq}acc"));
                        format!(
                            "{pq}partial = scf.for {pq}r = {p}tx to {pq}extent step {p}step \
                             iter_args({pq}acc = {pq}identity) -> ({elem}) {{"
                        )
                    }
                    None => format!("scf.for {pq}r = {p}tx to {pq}extent step {p}step {{"),
                };
                self.line(1, loop_head);
                self.delinearize(2, &format!("{pq}r"), &format!("{q}_"), &inner, &op.extents);
                for (k, (name, ty, dims)) in op.ins.iter().enumerate() {
                    self.line(2, format!("{pq}in{k} = memref.load {}", place(name, ty, dims)));
                    renames.insert(args[k].to_string(), format!("{pq}in{k}"));
                }
                let out_arg = args[args.len() - 1];
                if combiner.is_none() && body.iter().any(|l| names(l).any(|x| x == out_arg)) {
                    self.line(2, format!("{pq}old = memref.load {out_place}"));
                    renames.insert(out_arg.to_string(), format!("{pq}old"));
                }
                for line in body.iter() {
                    self.line(2, rename(line.trim(), &renames));
                }
                let value = rename(yielded, &renames);
                match combiner {
                    Some(combiner) => {
                        self.line(2, format!("scf.yield {value} : {elem}"));
                        self.line(1, "}".into());
                        self.combine(&pq, combiner, elem, &out_place);
                    }
                    None => {
                        self.line(2, format!("memref.store {value}, {out_place}"));
                        self.line(1, "}".into());
                        if inner.is_empty() {
                            // A per-row value, computed by thread 0 (the loop's one iteration).
                            self.line(1, "gpu.barrier".into());
                        }
                    }
                }
            }
        }
    }

    /// Combines the threads' `{pq}partial`s and folds the total into the output at `out`
    /// (`buffer[indices] : type`; thread 0); a barrier then makes it visible to the block.
    /// Each warp combines its 32 values by 5 butterfly shuffles; lane 0 of each warp stores
    /// its result in workgroup memory; after a barrier every warp combines those 8 (padded
    /// with the identity) the same way, and thread 0 uses its total: a fixed order, two
    /// barriers (docs/gpu.md's template).
    fn combine(&mut self, pq: &str, combiner: &str, elem: &str, out: &str) {
        let p = self.p.clone();
        let (smem, buffer) = (smem(elem), format!("{p}smem_{elem}"));
        let warp_total = self.warp_reduce(&format!("{pq}w"), &format!("{pq}partial"), combiner, elem);
        self.line(1, format!("{pq}warp_size = arith.constant {WARP} : index"));
        self.line(1, format!("{pq}lane = arith.remui {p}tx, {pq}warp_size : index"));
        self.line(1, format!("{pq}warp = arith.divui {p}tx, {pq}warp_size : index"));
        self.line(1, format!("{pq}lane0 = arith.cmpi eq, {pq}lane, {p}zero : index"));
        self.line(1, format!("scf.if {pq}lane0 {{"));
        self.line(2, format!("memref.store {warp_total}, {buffer}[{pq}warp] : {smem}"));
        self.line(1, "}".into());
        self.line(1, "gpu.barrier".into());
        self.line(1, format!("{pq}warps = arith.constant {} : index", THREADS / WARP));
        self.line(1, format!("{pq}last = arith.constant {} : index", THREADS / WARP - 1));
        self.line(1, format!("{pq}slot = arith.minui {p}tx, {pq}last : index"));
        self.line(1, format!("{pq}stored = memref.load {buffer}[{pq}slot] : {smem}"));
        self.line(1, format!("{pq}in_range = arith.cmpi ult, {p}tx, {pq}warps : index"));
        self.line(1, format!("{pq}x = arith.select {pq}in_range, {pq}stored, {pq}identity : {elem}"));
        let total = self.warp_reduce(&format!("{pq}b"), &format!("{pq}x"), combiner, elem);
        self.line(1, format!("{pq}first = arith.cmpi eq, {p}tx, {p}zero : index"));
        self.line(1, format!("scf.if {pq}first {{"));
        self.line(2, format!("{pq}init = memref.load {out}"));
        self.line(2, format!("{pq}result = {combiner} {pq}init, {total} : {elem}"));
        self.line(2, format!("memref.store {pq}result, {out}"));
        self.line(1, "}".into());
        self.line(1, "gpu.barrier".into());
    }

    /// `value` combined across each warp by butterfly shuffles (every lane gets the total);
    /// the name of the result. Every thread of the block must run it.
    fn warp_reduce(&mut self, n: &str, value: &str, combiner: &str, elem: &str) -> String {
        self.line(1, format!("{n}_width = arith.constant {WARP} : i32"));
        let mut current = value.to_string();
        let mut offset = WARP / 2;
        while offset > 0 {
            self.line(1, format!("{n}_off{offset} = arith.constant {offset} : i32"));
            self.line(
                1,
                format!(
                    "{n}_s{offset}, {n}_ok{offset} = gpu.shuffle xor {current}, {n}_off{offset}, {n}_width : {elem}"
                ),
            );
            self.line(1, format!("{n}_v{offset} = {combiner} {current}, {n}_s{offset} : {elem}"));
            current = format!("{n}_v{offset}");
            offset /= 2;
        }
        current
    }
}

/// The type of a reduction's workgroup buffer: one slot per warp.
fn smem(elem: &str) -> String {
    format!("memref<{}x{elem}, #gpu.address_space<workgroup>>", THREADS / WARP)
}

/// A lone reduction as one launch with a block per output element (any loops reduced).
fn lone_reduction(op: &Op, pad: &str, n: usize) -> Option<String> {
    let parallel: Vec<usize> = (0..op.extents.len()).filter(|&d| !op.reduced[d]).collect();
    let blocks: usize = parallel.iter().map(|&d| op.extents[d]).product();
    let extent: usize = (0..op.extents.len()).filter(|&d| op.reduced[d]).map(|d| op.extents[d]).product();
    if !op.is_reduction() || extent < MIN_EXTENT || blocks > i32::MAX as usize {
        return None;
    }
    let mut l =
        Launch { text: String::new(), pad: pad.to_string(), p: format!("%kiln_r{n}_"), locals: BTreeMap::new() };
    l.open(blocks, &[op.elem]);
    let bx = format!("{}bx", l.p);
    l.delinearize(1, &bx, "", &parallel, &op.extents);
    let index = parallel.iter().map(|&d| (d, format!("{}d{d}", l.p))).collect();
    l.phase(0, op, &index);
    l.close();
    Some(l.text)
}

/// A row group (see the module documentation) as one launch, or `None` if it has no row
/// reduction worth a block.
fn row_group(ops: &[Op], rows: &[usize], locals: &BTreeMap<&str, usize>, pad: &str, n: usize) -> Option<String> {
    let worth = ops.iter().any(|o| o.is_reduction() && o.extents.last().is_some_and(|&e| e >= MIN_EXTENT));
    let blocks: usize = rows.iter().product();
    if !worth || blocks > i32::MAX as usize {
        return None;
    }
    let mut types: Vec<&str> = ops.iter().filter(|o| o.is_reduction()).map(|o| o.elem).collect();
    types.sort_unstable();
    types.dedup();
    let p = format!("%kiln_r{n}_");
    let locals = locals
        .iter()
        .enumerate()
        .map(|(k, (&name, &count))| {
            let elem = ops.iter().find(|o| o.out.0 == name).expect("a group op writes it").elem;
            (
                name.to_string(),
                (format!("{p}local{k}"), format!("memref<{count}x{elem}, #gpu.address_space<workgroup>>")),
            )
        })
        .collect();
    let mut l = Launch { text: String::new(), pad: pad.to_string(), p, locals };
    l.open(blocks, &types);
    let bx = format!("{}bx", l.p);
    let row_dims: Vec<usize> = (0..rows.len()).collect();
    l.delinearize(1, &bx, "", &row_dims, rows);
    let index: BTreeMap<usize, String> = row_dims.iter().map(|&d| (d, format!("{}d{d}", l.p))).collect();
    for (q, op) in ops.iter().enumerate() {
        l.phase(q + 1, op, &index);
    }
    l.close();
    Some(l.text)
}

/// The buffers a group can keep in workgroup memory, with their elements per row: written by
/// the group before it reads them, used by nothing after it (`later`), not parameters, at
/// most 32 KB in all.
fn locals<'t>(group: &[Op<'t>], rows: &[usize], later: &[Vec<&str>]) -> BTreeMap<&'t str, usize> {
    let mut locals = BTreeMap::new();
    let mut bytes = 0u64;
    for op in group {
        let name = op.out.0;
        let first = group.iter().find(|g| buffers(g).any(|b| b == name)).expect("op is in the group");
        let used_later = later.iter().flatten().any(|l| names(l).any(|x| x == name));
        let Some((shape, elem)) = dense_memref(op.out.1) else { continue };
        let count: usize = shape[rows.len().min(shape.len())..].iter().product();
        let Some(size) = crate::workspace::memref_bytes(&format!("memref<{count}x{elem}>")) else { continue };
        if name.starts_with("%arg") || first.ins.iter().any(|i| i.0 == name) || used_later || locals.contains_key(name)
        {
            continue;
        }
        if bytes + size <= 32 << 10 {
            bytes += size;
            locals.insert(name, count);
        }
    }
    locals
}

/// Whether `op` is elementwise over `rows` only (a per-row value: a mean from a sum), its
/// output indexed by its loops in order; thread 0 computes it.
fn per_row(op: &Op, rows: &[usize]) -> bool {
    !op.is_reduction() && op.extents == rows && op.out.2.iter().copied().eq((0..rows.len()).map(Some))
}

/// Whether fill `op` writes per-row values or whole rows of `rows`.
fn fills(op: &Op, rows: &[usize]) -> bool {
    op.extents == rows || op.extents.split_last().is_some_and(|(_, r)| r == rows)
}

/// The buffers of a function whose places are known: its parameters (`%argN`) and its
/// allocations (before the workspace plan, which then sees every buffer a launch uses live
/// across it). Any other name (a reshaped view) may alias one of them.
struct Places<'t> {
    allocations: std::collections::BTreeSet<&'t str>,
}

impl<'t> Places<'t> {
    fn of(body: &[&'t str]) -> Places<'t> {
        let allocations = body.iter().filter_map(|l| Some(l.trim_start().split_once(" = memref.alloc(")?.0)).collect();
        Places { allocations }
    }

    /// Whether `name` is a buffer of its own.
    fn known(&self, name: &str) -> bool {
        name.starts_with("%arg") || self.allocations.contains(name)
    }
}

/// The buffers `op` reads and writes.
fn buffers<'a>(op: &'a Op) -> impl Iterator<Item = &'a str> {
    op.ins.iter().map(|i| i.0).chain([op.out.0])
}

/// Whether `op` can join a row group over `rows` whose ops so far are `group`: same rows,
/// every value it reads from the group read where it was written (by the same thread, or per
/// row after a barrier), it overwrites nothing the group reads, and its buffers are buffers of
/// their own (no two names for one buffer).
fn joins(op: &Op, rows: &[usize], group: &[Op], places: &Places) -> bool {
    if !buffers(op).all(|a| places.known(a)) {
        return false;
    }
    let same_rows = match op.kind {
        Kind::Fill(_) => fills(op, rows),
        Kind::Generic { .. } => op.row().is_some_and(|(r, _)| r == rows) || per_row(op, rows),
    };
    if !same_rows || group.iter().any(|g| g.ins.iter().any(|i| i.0 == op.out.0)) {
        return false;
    }
    op.ins.iter().all(|(name, _, dims)| match group.iter().rev().find(|g| g.out.0 == *name) {
        None => true,
        Some(producer) => *dims == producer.out.2,
    })
}

/// The bufferized module `text` with its reductions, and the row ops around them, computed by
/// blocks of threads (see the module documentation).
pub fn block_reductions(text: &str) -> String {
    let maps: BTreeMap<&str, &str> =
        text.lines().take_while(|l| !l.starts_with("module")).filter_map(|l| l.split_once(" = affine_map<")).collect();
    let lines: Vec<&str> = text.lines().collect();
    let mut out = String::with_capacity(text.len());
    let mut count = 0;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        out.push_str(line);
        out.push('\n');
        i += 1;
        if !(line.trim_start().starts_with("func.func ") && line.trim_end().ends_with('{')) {
            continue;
        }
        let depth = indent(line) + 2;
        let end =
            (i..lines.len()).find(|&j| indent(lines[j]) == depth - 2 && lines[j].trim() == "}").unwrap_or(lines.len());
        let statements = statements(&lines[i..end], depth);
        let places = Places::of(&lines[i..end]);
        let pad = " ".repeat(depth);
        // The function's body as rewritten, and the buffers moved to workgroup memory, whose
        // allocations go.
        let mut body = String::new();
        let mut moved: Vec<String> = vec![];
        let mut k = 0;
        while k < statements.len() {
            // The longest row group from here, with the views and constants among its ops.
            let mut group: Vec<Op> = vec![];
            // Its rows are those of its first generic (fills before it wait to be checked).
            let (mut ends, mut rows): (Vec<usize>, Option<Vec<usize>>) = (vec![], None);
            for (j, st) in statements.iter().enumerate().skip(k) {
                if PURE.contains(&op_name(st[0])) {
                    continue;
                }
                let Some(op) = Op::parse(st, &maps) else { break };
                match (&rows, &op.kind) {
                    (Some(r), _) if !joins(&op, r, &group, &places) => break,
                    (Some(_), _) | (None, Kind::Fill(_)) => {}
                    (None, Kind::Generic { .. }) => {
                        let Some((r, _)) = op.row() else { break };
                        if !group.iter().all(|f| fills(f, &r)) || !joins(&op, &r, &group, &places) {
                            break;
                        }
                        rows = Some(r);
                    }
                }
                group.push(op);
                ends.push(j + 1);
            }
            let taken = ends.last().copied().unwrap_or(k);
            let local = locals(&group, rows.as_deref().unwrap_or_default(), &statements[taken..]);
            let launch = match &rows {
                Some(rows) if group.len() > 1 => row_group(&group, rows, &local, &pad, count)
                    .map(|l| (l, taken, local.keys().map(|s| s.to_string()).collect())),
                _ => None,
            };
            let launch = launch.or_else(|| {
                let op = Op::parse(&statements[k], &maps)?;
                Some((lone_reduction(&op, &pad, count)?, k + 1, vec![]))
            });
            match launch {
                Some((text, next, locals)) => {
                    for st in statements[k..next].iter().filter(|st| PURE.contains(&op_name(st[0]))) {
                        for l in st.iter() {
                            body.push_str(l);
                            body.push('\n');
                        }
                    }
                    body.push_str(&text);
                    moved.extend(locals);
                    count += 1;
                    k = next;
                }
                None => {
                    for l in &statements[k] {
                        body.push_str(l);
                        body.push('\n');
                    }
                    k += 1;
                }
            }
        }
        for l in body.lines() {
            let allocation = l.trim_start().split_once(" = memref.alloc(").map(|(name, _)| name);
            if !allocation.is_some_and(|name| moved.iter().any(|m| m == name)) {
                out.push_str(l);
                out.push('\n');
            }
        }
        i = end;
    }
    out
}

/// Statements of a function body at `depth` spaces: each is its first line and the lines of its
/// regions, up to its closing line at the same depth.
fn statements<'t>(body: &[&'t str], depth: usize) -> Vec<Vec<&'t str>> {
    let mut out: Vec<Vec<&str>> = vec![];
    for &line in body {
        match out.last_mut() {
            // Lines deeper than the statement, its closing brace, and its regions' block labels.
            Some(open)
                if indent(line) > depth || (indent(line) == depth && line.trim_start().starts_with(['}', '^'])) =>
            {
                open.push(line)
            }
            _ => out.push(vec![line]),
        }
    }
    out
}
