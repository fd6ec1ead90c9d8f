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
//!
//! In memory: the ops are read through melior (operand segments, indexing maps, iterator
//! types, memref types, the body's combining op). Each launch is written as a template, a
//! function `@kiln_template` whose arguments are the buffers and values the group uses and
//! where each generic's body is a call `@kiln_body_Q` on its loaded inputs (and accumulator);
//! [`splice`] parses the template, clones its ops before the op after the group with the
//! arguments replaced by those values, and clones each generic's body in place of its call.
//! The group's ops, and the allocations of buffers now in workgroup memory, then go.

use crate::context::Mlir;
use crate::edit::{cloned, element_bytes, erase, first_use_from, function_bodies, key, remap, segment_sizes, symbol};
use melior::ir::attribute::{ArrayAttribute, AttributeLike, FlatSymbolRefAttribute, IntegerAttribute};
use melior::ir::operation::{OperationLike, OperationRef, WalkOrder, WalkResult};
use melior::ir::r#type::{MemRefType, ShapedTypeLike, TypeLike};
use melior::ir::{Attribute, BlockLike, BlockRef, Module, RegionLike, Type, Value, ValueLike};
use mlir_sys::{MlirOperation, MlirValue};
use std::collections::{BTreeMap, BTreeSet};

/// Statements that compute nothing a group reads or writes, left where they are above its
/// launch.
const PURE: &[&str] = &["memref.alloc", "memref.view", "arith.constant"];

/// Threads per block of a block reduction.
pub const THREADS: usize = 256;
/// Threads per warp.
const WARP: usize = 32;
/// The fewest reduced elements per output worth a block of threads.
const MIN_EXTENT: usize = 64;
/// The prefix of the functions that stand for generic bodies in a launch template.
const BODY: &str = "kiln_body_";

/// The op that reads a loop coordinate inside a linalg body.
const LOOP_INDEX: &str = "linalg.index";

/// Whether a linalg body reads its loop coordinates.
fn reads_coordinates(body: &BlockRef) -> bool {
    let mut reads = false;
    let mut next = body.first_operation();
    while let Some(op) = next {
        next = op.next_in_block();
        op.walk(WalkOrder::PreOrder, |o| {
            reads |= o.name().as_string_ref().as_str() == Ok(LOOP_INDEX);
            WalkResult::Advance
        });
    }
    reads
}

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

/// The op `raw` (collected from the live module being rewritten).
///
/// # Safety
/// `raw` is a live op.
unsafe fn op_at<'c, 'a>(raw: MlirOperation) -> OperationRef<'c, 'a> {
    OperationRef::from_raw(raw)
}

/// A dense memref type (static shape, identity layout, default memory space): its shape and
/// element type.
fn dense_memref(ty: Type) -> Option<(Vec<usize>, String)> {
    let memref = MemRefType::try_from(ty).ok()?;
    // SAFETY: queries on a live type and its attributes.
    let dense = unsafe {
        let layout = mlir_sys::mlirMemRefTypeGetLayout(ty.to_raw());
        mlir_sys::mlirShapedTypeHasStaticShape(ty.to_raw())
            && mlir_sys::mlirAttributeIsAAffineMap(layout)
            && mlir_sys::mlirAffineMapIsIdentity(mlir_sys::mlirAffineMapAttrGetValue(layout))
            && mlir_sys::mlirMemRefTypeGetMemorySpace(ty.to_raw()).ptr.is_null()
    };
    if !dense {
        return None;
    }
    // SAFETY: a static shape's dimensions, queried on a live type.
    let shape: Option<Vec<usize>> = (0..memref.rank())
        .map(|i| usize::try_from(unsafe { mlir_sys::mlirShapedTypeGetDimSize(ty.to_raw(), i as isize) }).ok())
        .collect();
    Some((shape?, memref.element().to_string()))
}

/// An indexing map's results as loop dimensions (`None` for the constant 0).
fn map_results(map: Attribute) -> Option<Vec<Option<usize>>> {
    // SAFETY: queries on a live attribute and its affine map.
    unsafe {
        if !mlir_sys::mlirAttributeIsAAffineMap(map.to_raw()) {
            return None;
        }
        let map = mlir_sys::mlirAffineMapAttrGetValue(map.to_raw());
        (0..mlir_sys::mlirAffineMapGetNumResults(map))
            .map(|i| {
                let e = mlir_sys::mlirAffineMapGetResult(map, i);
                if mlir_sys::mlirAffineExprIsADim(e) {
                    Some(Some(mlir_sys::mlirAffineDimExprGetPosition(e) as usize))
                } else if mlir_sys::mlirAffineExprIsAConstant(e) && mlir_sys::mlirAffineConstantExprGetValue(e) == 0 {
                    Some(None)
                } else {
                    None
                }
            })
            .collect()
    }
}

/// The elements of an array attribute.
fn elements(attribute: Attribute) -> Option<Vec<Attribute>> {
    let array = ArrayAttribute::try_from(attribute).ok()?;
    (0..array.len()).map(|i| array.element(i).ok()).collect()
}

/// A buffer an op reads or writes, and its map's results.
#[derive(Clone)]
struct Access {
    buffer: MlirValue,
    dims: Vec<Option<usize>>,
}

/// A bufferized statement a launch can compute.
struct Op {
    op: MlirOperation,
    ins: Vec<Access>,
    out: Access,
    /// Loop extents and which loops reduce.
    extents: Vec<usize>,
    reduced: Vec<bool>,
    elem: String,
    kind: Kind,
}

enum Kind {
    /// `linalg.fill` with this value.
    Fill(MlirValue),
    Generic {
        /// Whether the body reads the output's old value.
        uses_out: bool,
        /// The combining operator of a reduction.
        combiner: Option<String>,
        /// Whether the body reads its loop coordinates (`linalg.index`, as a strided slice or a
        /// gather fused into it does): its call then passes them, one per loop.
        indexed: bool,
    },
}

impl Op {
    /// The op `raw`, if it is a fill or generic on dense memrefs with one output (and, with
    /// reduction loops, a body a reduction phase can split). `reduction` is the iterator type
    /// `#linalg.iterator_type<reduction>`.
    fn parse(raw: MlirOperation, reduction: Attribute) -> Option<Op> {
        // SAFETY: `raw` is a live op of the function being read.
        let op = unsafe { op_at(raw) };
        let name = op.name().as_string_ref().as_str().ok()?.to_string();
        let operands: Vec<Value> = op.operands().collect();
        if name == "linalg.fill" {
            let [value, out] = operands[..] else { return None };
            let (shape, elem) = dense_memref(out.r#type())?;
            let dims = (0..shape.len()).map(Some).collect();
            return Some(Op {
                op: raw,
                ins: vec![],
                out: Access { buffer: out.to_raw(), dims },
                reduced: vec![false; shape.len()],
                extents: shape,
                elem,
                kind: Kind::Fill(value.to_raw()),
            });
        }
        if name != "linalg.generic" {
            return None;
        }
        let [inputs, outputs] = segment_sizes(&op)?[..] else { return None };
        if outputs != 1 || operands.len() != inputs + 1 {
            return None;
        }
        let reduced: Vec<bool> =
            elements(op.attribute("iterator_types").ok()?)?.iter().map(|t| *t == reduction).collect();
        let results: Vec<Vec<Option<usize>>> =
            elements(op.attribute("indexing_maps").ok()?)?.into_iter().map(map_results).collect::<Option<_>>()?;
        if results.len() != operands.len() {
            return None;
        }
        let mut extents = vec![None; reduced.len()];
        let mut elem = String::new();
        for (v, dims) in operands.iter().zip(&results) {
            let (shape, e) = dense_memref(v.r#type())?;
            if shape.len() != dims.len() {
                return None;
            }
            for (&extent, d) in shape.iter().zip(dims) {
                if let Some(d) = *d {
                    *extents.get_mut(d)? = Some(extent);
                }
            }
            elem = e;
        }
        let extents: Vec<usize> = extents.into_iter().collect::<Option<_>>()?;
        let body = op.region(0).ok()?.first_block()?;
        let out_arg: Value = body.argument(inputs).ok()?.into();
        let terminator = body.terminator()?;
        let [yielded] = terminator.operands().collect::<Vec<_>>()[..] else { return None };
        let mut out_uses = 0;
        let mut next = body.first_operation();
        while let Some(inner) = next {
            next = inner.next_in_block();
            inner.walk(WalkOrder::PreOrder, |o| {
                out_uses += o.operands().filter(|&v| v == out_arg).count();
                WalkResult::Advance
            });
        }
        let indexed = reads_coordinates(&body);
        let combiner = if reduced.contains(&true) {
            // The body ends by combining the output with one value: `%r = OP %out, %x`.
            if !yielded.is_operation_result() {
                return None;
            }
            // SAFETY: `yielded` is an operation result, so its owner is live.
            let last = unsafe { op_at(mlir_sys::mlirOpResultGetOwner(yielded.to_raw())) };
            let combined: Vec<Value> = last.operands().collect();
            let combiner = last.name().as_string_ref().as_str().ok()?.to_string();
            if combined.len() != 2 || !combined.contains(&out_arg) || out_uses != 1 || last.block()? != body {
                return None;
            }
            identity(&combiner, &elem)?;
            Some(combiner)
        } else {
            None
        };
        let ins = operands[..inputs].iter().zip(&results).map(|(v, r)| Access { buffer: v.to_raw(), dims: r.clone() });
        Some(Op {
            op: raw,
            ins: ins.collect(),
            out: Access { buffer: operands[inputs].to_raw(), dims: results.last()?.clone() },
            extents,
            reduced,
            elem,
            kind: Kind::Generic { uses_out: out_uses > 0, combiner, indexed },
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
                (reduction && in_order(&self.out.dims, loops - 1)).then_some((rows, n))
            }
            _ => (in_order(&self.out.dims, loops) && loops >= 1).then_some((rows, n)),
        }
    }

    /// The buffers it reads and writes.
    fn buffers(&self) -> impl Iterator<Item = usize> + '_ {
        self.ins.iter().map(|i| key(i.buffer)).chain([key(self.out.buffer)])
    }

    /// The values a launch template takes for it: its buffers and its fill value.
    fn operands(&self) -> impl Iterator<Item = MlirValue> + '_ {
        let value = match self.kind {
            Kind::Fill(v) => Some(v),
            Kind::Generic { .. } => None,
        };
        self.ins.iter().map(|i| i.buffer).chain([self.out.buffer]).chain(value)
    }
}

/// The text of one launch template being written.
struct Launch {
    text: String,
    pad: String,
    /// The prefix of its names.
    p: String,
    /// Each value it takes, with its name and type in the template, in order.
    names: Vec<(MlirValue, String, String)>,
    /// Buffers kept in workgroup memory instead (see [`locals`]), in order: key, workgroup
    /// buffer and type.
    locals: Vec<(usize, String, String)>,
    /// The declarations of the functions standing for generic bodies, and the generic each
    /// stands for.
    declarations: String,
    bodies: BTreeMap<String, MlirOperation>,
}

impl Launch {
    fn new(p: String, group: &[&Op], locals: Vec<(usize, String, String)>) -> Launch {
        let mut names: Vec<(MlirValue, String, String)> = vec![];
        for v in group.iter().flat_map(|op| op.operands()) {
            if !names.iter().any(|(n, _, _)| key(*n) == key(v)) {
                // SAFETY: the values of live ops.
                let ty = unsafe { Value::from_raw(v) }.r#type().to_string();
                names.push((v, format!("%kiln_t{}", names.len()), ty));
            }
        }
        Launch {
            text: String::new(),
            pad: "    ".into(),
            p,
            names,
            locals,
            declarations: String::new(),
            bodies: BTreeMap::new(),
        }
    }

    /// The name and type of a value the launch takes.
    fn name(&self, v: MlirValue) -> (&str, &str) {
        let (_, name, ty) = self.names.iter().find(|(n, _, _)| key(*n) == key(v)).expect("a value the launch takes");
        (name, ty)
    }

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
        let locals: Vec<String> = self.locals.iter().map(|(_, name, ty)| format!("{name} : {ty}")).collect();
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
    /// block's loops); the others are the thread's strided positions. A generic's body is a
    /// call of `@kiln_body_Q` on its loaded inputs (and its accumulator or old output), which
    /// [`splice`] replaces by the body itself.
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
        let place = |launch: &Launch, access: &Access| -> String {
            let local = launch.locals.iter().find(|(b, _, _)| *b == key(access.buffer)).map(|(_, n, t)| (n, t));
            let names: Vec<String> = access
                .dims
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
                None => {
                    let (name, ty) = launch.name(access.buffer);
                    format!("{name}[{}] : {ty}", names.join(", "))
                }
            }
        };
        let out_place = place(self, &op.out);
        let elem = op.elem.as_str();
        match &op.kind {
            Kind::Fill(value) if inner.is_empty() => {
                let value = self.name(*value).0.to_string();
                self.line(1, format!("{pq}first = arith.cmpi eq, {p}tx, {p}zero : index"));
                self.line(1, format!("scf.if {pq}first {{"));
                self.line(2, format!("memref.store {value}, {out_place}"));
                self.line(1, "}".into());
                self.line(1, "gpu.barrier".into());
            }
            Kind::Fill(value) => {
                let value = self.name(*value).0.to_string();
                self.line(1, format!("{pq}extent = arith.constant {inner_extent} : index"));
                self.line(1, format!("scf.for {pq}r = {p}tx to {pq}extent step {p}step {{"));
                self.delinearize(2, &format!("{pq}r"), &format!("{q}_"), &inner, &op.extents);
                self.line(2, format!("memref.store {value}, {out_place}"));
                self.line(1, "}".into());
            }
            Kind::Generic { uses_out, combiner, indexed } => {
                self.line(1, format!("{pq}extent = arith.constant {inner_extent} : index"));
                let loop_head = match combiner {
                    Some(combiner) => {
                        let identity = identity(combiner, elem).expect("checked when parsed");
                        self.line(1, format!("{pq}identity = arith.constant {identity} : {elem}"));
                        format!(
                            "{pq}partial = scf.for {pq}r = {p}tx to {pq}extent step {p}step \
                             iter_args({pq}acc = {pq}identity) -> ({elem}) {{"
                        )
                    }
                    None => format!("scf.for {pq}r = {p}tx to {pq}extent step {p}step {{"),
                };
                self.line(1, loop_head);
                self.delinearize(2, &format!("{pq}r"), &format!("{q}_"), &inner, &op.extents);
                let (mut args, mut types) = (vec![], vec![]);
                for (k, access) in op.ins.iter().enumerate() {
                    let at = place(self, access);
                    self.line(2, format!("{pq}in{k} = memref.load {at}"));
                    args.push(format!("{pq}in{k}"));
                    // SAFETY: an operand of a live op.
                    let ty = unsafe { Value::from_raw(access.buffer) }.r#type();
                    types.push(dense_memref(ty).map(|(_, e)| e).unwrap_or_default());
                }
                if combiner.is_some() {
                    args.push(format!("{pq}acc"));
                    types.push(elem.to_string());
                } else if *uses_out {
                    self.line(2, format!("{pq}old = memref.load {out_place}"));
                    args.push(format!("{pq}old"));
                    types.push(elem.to_string());
                }
                if *indexed {
                    // The coordinates of every loop: the block's row, the thread's positions.
                    for d in 0..op.extents.len() {
                        args.push(index.get(&d).cloned().unwrap_or(format!("{pq}d{d}")));
                        types.push("index".into());
                    }
                }
                let callee = format!("{BODY}{q}");
                self.line(
                    2,
                    format!("{pq}y = func.call @{callee}({}) : ({}) -> {elem}", args.join(", "), types.join(", ")),
                );
                self.declarations.push_str(&format!("  func.func private @{callee}({}) -> {elem}\n", types.join(", ")));
                self.bodies.insert(callee, op.op);
                let value = format!("{pq}y");
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

    /// The template module: the launch in `@kiln_template`, whose arguments are the values
    /// it takes, in order, beside the declarations of the bodies.
    fn template(&self) -> (String, Vec<MlirValue>) {
        let signature: Vec<String> = self.names.iter().map(|(_, n, t)| format!("{n}: {t}")).collect();
        let text = format!(
            "module {{\n{}  func.func @kiln_template({}) {{\n{}    return\n  }}\n}}\n",
            self.declarations,
            signature.join(", "),
            self.text
        );
        (text, self.names.iter().map(|(v, _, _)| *v).collect())
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
fn lone_reduction(op: &Op, n: usize) -> Option<Launch> {
    let parallel: Vec<usize> = (0..op.extents.len()).filter(|&d| !op.reduced[d]).collect();
    let blocks: usize = parallel.iter().map(|&d| op.extents[d]).product();
    let extent: usize = (0..op.extents.len()).filter(|&d| op.reduced[d]).map(|d| op.extents[d]).product();
    if !op.is_reduction() || extent < MIN_EXTENT || blocks > i32::MAX as usize {
        return None;
    }
    let mut l = Launch::new(format!("%kiln_r{n}_"), &[op], vec![]);
    l.open(blocks, &[&op.elem]);
    let bx = format!("{}bx", l.p);
    l.delinearize(1, &bx, "", &parallel, &op.extents);
    let index = parallel.iter().map(|&d| (d, format!("{}d{d}", l.p))).collect();
    l.phase(0, op, &index);
    l.close();
    Some(l)
}

/// A row group (see the module documentation) as one launch, or `None` if it has no row
/// reduction worth a block.
fn row_group(ops: &[Op], rows: &[usize], locals: &[(usize, usize)], n: usize) -> Option<Launch> {
    let worth = ops.iter().any(|o| o.is_reduction() && o.extents.last().is_some_and(|&e| e >= MIN_EXTENT));
    let blocks: usize = rows.iter().product();
    if !worth || blocks > i32::MAX as usize {
        return None;
    }
    let mut types: Vec<&str> = ops.iter().filter(|o| o.is_reduction()).map(|o| o.elem.as_str()).collect();
    types.sort_unstable();
    types.dedup();
    let p = format!("%kiln_r{n}_");
    let locals = locals
        .iter()
        .enumerate()
        .map(|(k, &(buffer, count))| {
            let elem = &ops.iter().find(|o| key(o.out.buffer) == buffer).expect("a group op writes it").elem;
            (buffer, format!("{p}local{k}"), format!("memref<{count}x{elem}, #gpu.address_space<workgroup>>"))
        })
        .collect();
    let group: Vec<&Op> = ops.iter().collect();
    let mut l = Launch::new(p, &group, locals);
    l.open(blocks, &types);
    let bx = format!("{}bx", l.p);
    let row_dims: Vec<usize> = (0..rows.len()).collect();
    l.delinearize(1, &bx, "", &row_dims, rows);
    let index: BTreeMap<usize, String> = row_dims.iter().map(|&d| (d, format!("{}d{d}", l.p))).collect();
    for (q, op) in ops.iter().enumerate() {
        l.phase(q + 1, op, &index);
    }
    l.close();
    Some(l)
}

/// The buffers a group can keep in workgroup memory, with their elements per row, in the
/// order the group writes them: written by the group before it reads them, used by nothing
/// from `later` on, not parameters, at most 32 KB in all.
fn locals(group: &[Op], rows: &[usize], places: &Places, later: Option<OperationRef>) -> Vec<(usize, usize)> {
    let mut locals: Vec<(usize, usize)> = vec![];
    let mut bytes = 0u64;
    for op in group {
        let buffer = key(op.out.buffer);
        let first = group.iter().find(|g| g.buffers().any(|b| b == buffer)).expect("op is in the group");
        // SAFETY: an operand of a live op.
        let ty = unsafe { Value::from_raw(op.out.buffer) }.r#type();
        let (Some((shape, _)), Ok(memref)) = (dense_memref(ty), MemRefType::try_from(ty)) else { continue };
        let count: usize = shape[rows.len().min(shape.len())..].iter().product();
        let Some(size) = element_bytes(memref.element()).and_then(|b| b.checked_mul(count as u64)) else { continue };
        if !places.allocations.contains(&buffer)
            || first.ins.iter().any(|i| key(i.buffer) == buffer)
            || locals.iter().any(|&(b, _)| b == buffer)
            || first_use_from(later, |v| key(v.to_raw()) == buffer).is_some()
        {
            continue;
        }
        if bytes + size <= 32 << 10 {
            bytes += size;
            locals.push((buffer, count));
        }
    }
    locals
}

/// Whether `op` is elementwise over `rows` only (a per-row value: a mean from a sum), its
/// output indexed by its loops in order; thread 0 computes it.
fn per_row(op: &Op, rows: &[usize]) -> bool {
    !op.is_reduction() && op.extents == rows && op.out.dims.iter().copied().eq((0..rows.len()).map(Some))
}

/// Whether fill `op` writes per-row values or whole rows of `rows`.
fn fills(op: &Op, rows: &[usize]) -> bool {
    op.extents == rows || op.extents.split_last().is_some_and(|(_, r)| r == rows)
}

/// The buffers of a function whose places are known: its parameters and its allocations
/// (before the workspace plan, which then sees every buffer a launch uses live across it).
/// Any other value (a reshaped view) may alias one of them.
struct Places {
    params: BTreeSet<usize>,
    allocations: BTreeSet<usize>,
}

impl Places {
    /// Whether `buffer` is a buffer of its own.
    fn known(&self, buffer: usize) -> bool {
        self.params.contains(&buffer) || self.allocations.contains(&buffer)
    }
}

/// Whether `op` can join a row group over `rows` whose ops so far are `group`: same rows,
/// every value it reads from the group read where it was written (by the same thread, or per
/// row after a barrier), it overwrites nothing the group reads, and its buffers are buffers of
/// their own (no two names for one buffer).
fn joins(op: &Op, rows: &[usize], group: &[Op], places: &Places) -> bool {
    if !op.buffers().all(|b| places.known(b)) {
        return false;
    }
    let same_rows = match op.kind {
        Kind::Fill(_) => fills(op, rows),
        Kind::Generic { .. } => op.row().is_some_and(|(r, _)| r == rows) || per_row(op, rows),
    };
    let out = key(op.out.buffer);
    if !same_rows || group.iter().any(|g| g.ins.iter().any(|i| key(i.buffer) == out)) {
        return false;
    }
    op.ins.iter().all(|access| match group.iter().rev().find(|g| key(g.out.buffer) == key(access.buffer)) {
        None => true,
        Some(producer) => access.dims == producer.out.dims,
    })
}

/// Inserts the launch of `launch`'s template before `before` in `block`: the template's ops
/// cloned with its arguments replaced by the values it takes, and each body call replaced by
/// the generic's body, cloned on the call's operands.
fn splice<'c, 'a>(
    mlir: &'c Mlir,
    launch: &Launch,
    block: &BlockRef<'c, 'a>,
    before: OperationRef<'c, 'a>,
) -> Result<(), String> {
    let (text, values) = launch.template();
    let template = mlir.parse(&text, "GPU block reduction template").map_err(|e| format!("{e}\n{text}"))?;
    let (_, body) = function_bodies(&template)
        .into_iter()
        .find(|(f, _)| symbol(f).as_deref() == Some("kiln_template"))
        .ok_or("a launch template without its function")?;
    let mut map: BTreeMap<usize, MlirValue> = BTreeMap::new();
    for (i, &v) in values.iter().enumerate() {
        map.insert(key(body.argument(i).map_err(|e| e.to_string())?.to_raw()), v);
    }
    let mut inserted = vec![];
    let mut next = body.first_operation();
    while let Some(op) = next {
        next = op.next_in_block();
        if op.name().as_string_ref().as_str() == Ok("func.return") {
            continue;
        }
        let copy = block.insert_operation_before(before, cloned(&op));
        remap(&copy, &map);
        for (old, new) in op.results().zip(copy.results()) {
            map.insert(key(old.to_raw()), new.to_raw());
        }
        inserted.push(copy);
    }
    // The bodies, inlined in place of their calls.
    let mut calls = vec![];
    for op in &inserted {
        op.walk(WalkOrder::PreOrder, |inner| {
            let callee = inner.attribute("callee").ok().and_then(|a| FlatSymbolRefAttribute::try_from(a).ok());
            if let Some(generic) = callee.and_then(|c| launch.bodies.get(c.value()).copied()) {
                calls.push((inner.to_raw(), generic));
            }
            WalkResult::Advance
        });
    }
    for (call, generic) in calls {
        // SAFETY: the call is live in the launch just inserted, the generic in the function.
        let (call, generic) = unsafe { (op_at(call), op_at(generic)) };
        let call_block = call.block().ok_or("a body call outside a block")?;
        let generic_body = generic.region(0).ok().and_then(|r| r.first_block()).ok_or("a generic without a body")?;
        let mut inner_map: BTreeMap<usize, MlirValue> = BTreeMap::new();
        // The call passes the loaded inputs, then the accumulator or old output when the body
        // reads it (a prefix of the body's arguments), then, when the body reads them, the
        // coordinates of its loops, which replace its `linalg.index` ops.
        let operands: Vec<MlirValue> = call.operands().map(|v| v.to_raw()).collect();
        let loops = elements(generic.attribute("iterator_types").map_err(|e| e.to_string())?)
            .ok_or("a generic without iterator types")?
            .len();
        let passed = if reads_coordinates(&generic_body) { loops } else { 0 };
        let (arguments, coordinates) = operands.split_at(operands.len() - passed);
        for (i, &operand) in arguments.iter().enumerate() {
            inner_map.insert(key(generic_body.argument(i).map_err(|e| e.to_string())?.to_raw()), operand);
        }
        let mut yielded = None;
        let mut next = generic_body.first_operation();
        while let Some(op) = next {
            next = op.next_in_block();
            if op.name().as_string_ref().as_str() == Ok("linalg.yield") {
                yielded = op.operand(0).ok().map(|v| v.to_raw());
                continue;
            }
            if op.name().as_string_ref().as_str() == Ok(LOOP_INDEX) {
                let dim = op.attribute("dim").ok().and_then(|a| IntegerAttribute::try_from(a).ok());
                let coordinate = dim.and_then(|d| coordinates.get(d.value() as usize)).ok_or("a bad linalg.index")?;
                inner_map.insert(key(op.result(0).map_err(|e| e.to_string())?.to_raw()), *coordinate);
                continue;
            }
            let copy = call_block.insert_operation_before(call, cloned(&op));
            remap(&copy, &inner_map);
            for (old, new) in op.results().zip(copy.results()) {
                inner_map.insert(key(old.to_raw()), new.to_raw());
            }
        }
        let yielded = yielded.ok_or("a generic body without its yield")?;
        let value = inner_map.get(&key(yielded)).copied().unwrap_or(yielded);
        // SAFETY: the call's result has the body's type; the call is then unused and erased.
        unsafe {
            mlir_sys::mlirValueReplaceAllUsesOfWith(mlir_sys::mlirOperationGetResult(call.to_raw(), 0), value);
            erase(call.to_raw());
        }
    }
    Ok(())
}

/// Computes the reductions of the bufferized module, and the row ops around them, by blocks
/// of threads (see the module documentation): each group becomes a `gpu.launch` before the
/// op after it, and its ops (and the allocations of buffers now in workgroup memory) go.
pub(crate) fn block_reductions<'c>(mlir: &'c Mlir, module: &Module<'c>) -> Result<(), String> {
    let reduction = Attribute::parse(&mlir.context, "#linalg.iterator_type<reduction>").ok_or("no iterator type")?;
    let mut count = 0;
    for (_, body) in function_bodies(module) {
        let mut statements: Vec<MlirOperation> = vec![];
        let mut next = body.first_operation();
        while let Some(op) = next {
            next = op.next_in_block();
            statements.push(op.to_raw());
        }
        let name = |raw: MlirOperation| {
            // SAFETY: the function's own ops, alive until this function is done.
            unsafe { op_at(raw) }.name().as_string_ref().as_str().map(str::to_string).unwrap_or_default()
        };
        // SAFETY: an allocation's result, of a live op.
        let allocations: Vec<(MlirOperation, usize)> = statements
            .iter()
            .filter(|&&s| name(s) == "memref.alloc")
            .map(|&s| (s, key(unsafe { mlir_sys::mlirOperationGetResult(s, 0) })))
            .collect();
        let places = Places {
            params: (0..body.argument_count()).filter_map(|i| body.argument(i).ok()).map(|a| key(a.to_raw())).collect(),
            allocations: allocations.iter().map(|&(_, k)| k).collect(),
        };
        // The groups' ops and the allocations moved to workgroup memory, erased at the end.
        let mut erased: Vec<MlirOperation> = vec![];
        let mut moved: BTreeSet<usize> = BTreeSet::new();
        let mut k = 0;
        while k < statements.len() {
            // The longest row group from here, with the views and constants among its ops.
            let mut group: Vec<Op> = vec![];
            // Its rows are those of its first generic (fills before it wait to be checked).
            let (mut ends, mut rows): (Vec<usize>, Option<Vec<usize>>) = (vec![], None);
            for (j, &st) in statements.iter().enumerate().skip(k) {
                if PURE.contains(&name(st).as_str()) {
                    continue;
                }
                let Some(op) = Op::parse(st, reduction) else { break };
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
            // SAFETY: the function's own ops.
            let later = statements.get(taken).map(|&s| unsafe { op_at(s) });
            let local = locals(&group, rows.as_deref().unwrap_or_default(), &places, later);
            let launch = match &rows {
                Some(rows) if group.len() > 1 => row_group(&group, rows, &local, count).map(|l| {
                    let ops = group.iter().map(|o| o.op).collect::<Vec<_>>();
                    (l, taken, ops, local.iter().map(|&(b, _)| b).collect::<Vec<_>>())
                }),
                _ => None,
            };
            let launch = launch.or_else(|| {
                let op = Op::parse(statements[k], reduction)?;
                Some((lone_reduction(&op, count)?, k + 1, vec![op.op], vec![]))
            });
            match launch {
                Some((launch, next, ops, locals)) => {
                    // The launch goes where the group ends, after the pure statements among
                    // its ops.
                    let before = match statements.get(next) {
                        // SAFETY: the function's own ops.
                        Some(&s) => unsafe { op_at(s) },
                        None => body.terminator().ok_or("a function without a terminator")?,
                    };
                    splice(mlir, &launch, &body, before)?;
                    erased.extend(ops);
                    moved.extend(locals);
                    count += 1;
                    k = next;
                }
                None => k += 1,
            }
        }
        for op in erased {
            // SAFETY: a group op on buffers has no results; nothing uses it.
            unsafe { erase(op) };
        }
        for (alloc, buffer) in allocations {
            if moved.contains(&buffer) {
                // SAFETY: allocations are never in a group, so this one is alive; its users
                // were the group's ops, now erased.
                unsafe { erase(alloc) };
            }
        }
    }
    Ok(())
}
