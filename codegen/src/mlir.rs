//! IR to MLIR text: each IR function becomes a `func.func` on tensors built from `linalg`,
//! `tensor`, `arith` and `math` ops, in destination-passing style at the boundary: inputs
//! arrive as memrefs (read with `bufferization.to_tensor restrict`), results are written into
//! caller-provided memrefs with `bufferization.materialize_in_destination`, so after
//! bufferization the last op of each result writes straight into the caller's buffer.
//!
//! Parameters and results are `llvm.noalias`: the C interface requires that they do not overlap
//! (docs/artifact-format.md), and knowing it lets LLVM vectorize loops without runtime checks.
//! Parameters are also `llvm.readonly` (the C interface passes them as `const`).
//!
//! bool tensors are `i1` inside and one byte (`i8`, 0 or 1) at the boundary.
//! f32 sums accumulate in f64 (see docs/decisions.md): exact for up to 2^53 ones and far more
//! accurate than an f32 accumulator, at no cost in memory traffic.

mod approx;
mod sort;

use kiln_ir::ops::Bodies;
use kiln_ir::{
    BinaryOp, DType, Func, Literal, Module, Op, OpClass, ReduceKind, ScatterKind, Span, TensorType, UnaryOp, Value,
};
use std::fmt::Write;

/// Partial results per output of a reduction over contiguous elements (see `reduce`): 16 f32
/// lanes fill two AVX-512 or four AVX2 registers' worth of independent accumulators.
pub const LANES: usize = 16;

/// Independent chunks of a reduction over `rows` rows of [`LANES`] elements per output, when
/// there are `outputs` outputs: with few outputs, up to 256 chunks of at least 256 rows each (the
/// largest divisor of `rows` that allows it), so that the chunks' loop can run in parallel; one
/// chunk otherwise (the outputs' loop is parallel already). The result does not depend on the
/// thread count: chunk boundaries depend only on the shape.
fn reduction_chunks(outputs: usize, rows: usize) -> usize {
    if outputs >= 16 {
        return 1;
    }
    (1..=256).rev().find(|&c| rows.is_multiple_of(c) && rows / c >= 256).unwrap_or(1)
}

/// The most elementwise ops one fusion group may gather. MLIR's elementwise fusion clones the
/// growing region at every step, so a chain of n ops fused into one costs n^2 (a chain of 4,000
/// took 30 s); groups of at most this many keep it linear, and no realistic row of work fuses
/// more (a layer norm's forward and backward pass are a few dozen).
const MAX_FUSED_OPS: usize = 128;

/// Which operand of a product with result type `ty` is a vector, if it is a product of a
/// matrix and a vector: [m, k] x [k, 1] (the second) or [1, k] x [k, n] (the first), as `@`
/// makes a vector operand a matrix of one column or row.
fn vector_operand(ty: &TensorType) -> Option<usize> {
    match ty.shape[..] {
        [_, 1] => Some(1),
        [1, _] => Some(0),
        _ => None,
    }
}

/// For each value of `func`, whether it is an elementwise op that ends a fusion group: the ops
/// MLIR's elementwise fusion would merge into it reach [`MAX_FUSED_OPS`]. Fusion merges a
/// producer into its consumer once the consumer is the producer's only reader (two operands of
/// one op reading a value count once: fusion merges duplicate operands), so a producer joins a
/// group when every op that reads it is in the group: in `y * 0.5 + y * y`, `y` joins the sum's
/// group with both products (counting only producers read once, a chain of such lets fused
/// into one op with no barrier, and `fuse` was quadratic in its length again). The emitter
/// tags the op `kiln.fusion_barrier`, and the `fuse` stage keeps it apart ([`crate::hide`]),
/// so its producers form one group and its consumers start the next.
fn fusion_barriers(func: &Func) -> Vec<bool> {
    let p = func.params.len();
    let n = p + func.insts.len();
    // The instructions reading each value, each once; results are read by the caller.
    let mut readers: Vec<Vec<usize>> = vec![vec![]; n];
    for (i, inst) in func.insts.iter().enumerate() {
        for a in &inst.args {
            if readers[a.index()].last() != Some(&(p + i)) {
                readers[a.index()].push(p + i);
            }
        }
    }
    let mut returned = vec![false; n];
    for r in &func.results {
        returned[r.index()] = true;
    }
    let elementwise = |v: usize| v >= p && func.insts[v - p].op.class() == OpClass::Elementwise;
    let mut barrier = vec![false; n];
    for v in (p..n).filter(|&v| elementwise(v)) {
        // The group of `v`, producers taken latest first: every reader of a producer comes
        // after it, so each is in or out of the group by the time the producer is decided.
        let mut group = std::collections::BTreeSet::from([v]);
        let mut producers: std::collections::BinaryHeap<usize> =
            func.insts[v - p].args.iter().map(|a| a.index()).collect();
        while let Some(a) = producers.pop() {
            if group.len() >= MAX_FUSED_OPS {
                break;
            }
            let joins = elementwise(a) && !barrier[a] && !returned[a] && !group.contains(&a);
            if joins && readers[a].iter().all(|r| group.contains(r)) {
                group.insert(a);
                producers.extend(func.insts[a - p].args.iter().map(|x| x.index()));
            }
        }
        barrier[v] = group.len() >= MAX_FUSED_OPS;
    }
    // The vector of a product of a matrix and a vector, computed once: fused into the sum over
    // the matrix's rows (`FuncEmitter::vector_product`), an elementwise producer would run
    // once per row (a @ tanh(v) of 2048 took 3.9 ms against 0.3 ms for a @ v).
    for inst in func.insts.iter().filter(|i| i.op == Op::Dot) {
        let Some(k) = vector_operand(&inst.ty) else { continue };
        let mut vector = inst.args[k];
        while let Some(producer) = vector.index().checked_sub(func.params.len()).map(|i| &func.insts[i]) {
            match producer.op {
                Op::Reshape { .. } => vector = producer.args[0],
                _ => {
                    barrier[vector.index()] |= producer.op.class() == OpClass::Elementwise;
                    break;
                }
            }
        }
    }
    barrier
}

/// For each value of `func`, whether it is a splat: a constant, or a broadcast or reshape of
/// a splat. The emitter writes a splat again at each use (`FuncEmitter::use_of`), as XLA's
/// fusion duplicates broadcasts of constants into every consumer: shared, one splat read by n
/// ops cost n^2 in one-shot bufferization's analysis, which visits every reader of a value at
/// each of its reads (5,000 chained `exp(y) * 0.5` share one `broadcast(0.5)`: 13 s in
/// `bufferize` at -O0), and at -O1 and above a shared splat was a buffer that every
/// consumer read instead of a constant fused into its loop.
fn splats(func: &Func) -> Vec<bool> {
    let mut splat = vec![false; func.params.len()];
    for inst in &func.insts {
        let is = match inst.op {
            Op::Const(_) => true,
            Op::Broadcast { .. } | Op::Reshape { .. } => splat[inst.args[0].index()],
            _ => false,
        };
        splat.push(is);
    }
    splat
}

/// For each value of `func`, whether it is a transpose of the last two axes that is read only
/// as the left operand of products (not a result): products read A^T's source through a
/// transposed indexing map (XLA's dot dimension numbers do the same), which the contraction
/// schedule vectorizes with contiguous loads, so the transpose is never written out. (A right
/// operand stays materialized: read transposed, its rows of n would be strided gathers.)
fn fused_transposes(func: &Func) -> Vec<bool> {
    let n = func.params.len() + func.insts.len();
    let mut fused = vec![false; n];
    for (i, inst) in func.insts.iter().enumerate() {
        if let Op::Transpose { perm } = &inst.op {
            let r = perm.len();
            let swaps_last_two =
                r >= 2 && perm[..r - 2].iter().enumerate().all(|(i, &p)| p == i) && perm[r - 2] == r - 1;
            fused[func.params.len() + i] = swaps_last_two;
        }
    }
    for inst in &func.insts {
        for (k, a) in inst.args.iter().enumerate() {
            if !(inst.op == Op::Dot && k == 0) {
                fused[a.index()] = false;
            }
        }
    }
    for r in &func.results {
        fused[r.index()] = false;
    }
    fused
}

/// The MLIR symbol of a function's implementation (its C entry point wraps it).
pub fn impl_symbol(module: &str, func: &str) -> String {
    format!("{module}_{func}_impl")
}

/// The MLIR location name of a source span: `kiln.span:START-END` (byte offsets).
pub fn span_location(span: Span) -> String {
    format!("{}{}-{}", crate::context::SPAN_PREFIX, span.start, span.end)
}

/// A contraction the emitter tagged `{kiln.contraction = ID}` for [`crate::schedule`]: its
/// loops are (batch..., m, k, n).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Contraction {
    pub id: usize,
    pub batch: Vec<usize>,
    pub m: usize,
    pub k: usize,
    pub n: usize,
    pub dtype: DType,
    /// Whether the left operand is stored as [batch.., k, m] rather than [batch.., m, k] (the
    /// right one is always [batch.., k, n], the result [batch.., m, n]).
    pub a_transposed: bool,
}

/// A direct convolution kernel: a valid (unpadded), stride-1 conv2d emitted as one generic
/// over the loops (n, oh, ow, f, kh, kw, c) of these extents, tagged `kiln.contraction = id`
/// (ids are shared with [`Contraction`]s) and scheduled by `schedule::tile_convolution`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Convolution {
    pub id: usize,
    pub loops: [usize; 7],
    pub dtype: DType,
}

/// The MLIR module of an IR module, and the contractions and convolutions in it.
#[derive(Clone, Debug)]
pub struct Emitted {
    pub text: String,
    pub contractions: Vec<Contraction>,
    pub convolutions: Vec<Convolution>,
}

/// Emits the MLIR module (as text) for every function of `module` for `target`: whether f32
/// sin, cos and pow call libm or use kiln's polynomials (see [`crate::target::Target::libm`]),
/// and the forms that differ between CPUs, where kiln's loop schedule runs, and GPUs: slices
/// and concatenations copy strided views on CPUs and gather element by element on GPUs (whose
/// launch plans pass whole buffers to kernels); row reductions are one loop nest that the
/// schedule splits into partial results on CPUs and two stages on GPUs (partial results in
/// parallel threads). Ops computed as compositions of others are expanded first
/// ([`crate::lower`]); that fails only when an expansion would exceed kiln's shape limits.
///
/// `pad_b_from_m` is the schedule's decision on padding a product's right operand
/// (`schedule::MatmulTiles::pad_b_from_m`), which the emitter carries out on CPUs.
pub fn emit_module(
    module: &Module,
    target: &crate::target::Target,
    pad_b_from_m: Option<usize>,
) -> Result<Emitted, crate::CodegenError> {
    let mut text = String::from("module {\n");
    let (mut contractions, mut convolutions) = (vec![], vec![]);
    let gpu = target.arch.is_gpu();
    // Fusion barriers are numbered through the module, as hiding them needs.
    let mut barriers = 0;
    for f in &module.funcs {
        let f = crate::lower::expand(f, !gpu)
            .map_err(|e| crate::context::err("expansion", format!("in `{}`: {e}", f.name)))?;
        let mut emitter = FuncEmitter::new(&f, contractions.len() + convolutions.len(), target.libm);
        emitter.gpu = gpu;
        emitter.pad_b_from_m = pad_b_from_m.filter(|_| !gpu);
        emitter.barrier_count = barriers;
        text.push_str(&emitter.emit(&impl_symbol(&module.name, &f.name)));
        barriers = emitter.barrier_count;
        contractions.append(&mut emitter.contractions);
        convolutions.append(&mut emitter.convolutions);
    }
    text.push_str("}\n");
    Ok(Emitted { text, contractions, convolutions })
}

/// The `[offsets] [sizes] [strides]` of a `tensor.extract_slice` or `insert_slice`.
fn window(offsets: &[impl ToString], sizes: &[usize], strides: &[i64]) -> String {
    let list = |xs: Vec<String>| xs.join(", ");
    format!(
        "[{}] [{}] [{}]",
        list(offsets.iter().map(|x| x.to_string()).collect()),
        list(sizes.iter().map(|x| x.to_string()).collect()),
        list(strides.iter().map(|x| x.to_string()).collect())
    )
}

/// The MLIR element type of a dtype inside tensors.
fn elem(d: DType) -> &'static str {
    match d {
        DType::Bool => "i1",
        DType::U8 => "i8",
        DType::I32 | DType::U32 => "i32",
        DType::I64 => "i64",
        DType::F16 => "f16",
        // bf16 travels as its bits: an LLVM `bfloat` would be legalized through runtime
        // functions (__truncsfbf2) that C libraries may lack; kiln converts it itself.
        DType::BF16 => "i16",
        DType::F32 => "f32",
        DType::F64 => "f64",
    }
}

fn shaped(kind: &str, shape: &[usize], e: &str) -> String {
    let mut s = format!("{kind}<");
    for d in shape {
        let _ = write!(s, "{d}x");
    }
    format!("{s}{e}>")
}

fn tensor(ty: &TensorType) -> String {
    shaped("tensor", &ty.shape, elem(ty.dtype))
}

/// The boundary type of a parameter or result: bool travels as bytes.
fn boundary_elem(d: DType) -> &'static str {
    if d == DType::Bool {
        "i8"
    } else {
        elem(d)
    }
}

/// `affine_map<(d0, d1) -> (exprs)>` over `rank` loop dimensions.
fn affine_map(rank: usize, exprs: &[String]) -> String {
    let dims: Vec<String> = (0..rank).map(|i| format!("d{i}")).collect();
    format!("affine_map<({}) -> ({})>", dims.join(", "), exprs.join(", "))
}

fn identity_exprs(rank: usize) -> Vec<String> {
    (0..rank).map(|i| format!("d{i}")).collect()
}

/// The index `j` into an axis of `n` elements, counted from the end when negative (once).
fn counted_from_end(b: &mut Body, j: &str, n: usize) -> String {
    let zero = b.op("arith.constant 0 : index".into());
    let count = b.op(format!("arith.constant {n} : index"));
    let negative = b.op(format!("arith.cmpi slt, {j}, {zero} : index"));
    let wrapped = b.op(format!("arith.addi {j}, {count} : index"));
    b.op(format!("arith.select {negative}, {wrapped}, {j} : index"))
}

/// The signed value of the low `bits` bits of `v`.
fn sign_extended(v: i64, bits: u32) -> i64 {
    let unused = 64 - bits;
    (v << unused) >> unused
}

/// The letter of MLIR's signed (`s`) or unsigned (`u`) integer ops and predicates for `d`.
fn signedness(d: DType) -> char {
    if d.is_unsigned() {
        'u'
    } else {
        's'
    }
}

/// The cast of an integer of dtype `d` to an index: unsigned values are zero-extended.
fn index_cast(d: DType) -> &'static str {
    if d.is_unsigned() {
        "arith.index_castui"
    } else {
        "arith.index_cast"
    }
}

/// An exact MLIR float constant: the bit pattern in hex.
fn float_bits(d: DType, v: f64) -> String {
    match d {
        DType::F16 => format!("0x{:04X}", half::f16::from_f64(v).to_bits()),
        DType::F32 => format!("0x{:08X}", (v as f32).to_bits()),
        _ => format!("0x{:016X}", v.to_bits()),
    }
}

/// The text of a scalar constant of `dtype`.
fn scalar_const(lit: Literal) -> String {
    match lit {
        Literal::Bool(b) => format!("{b}"),
        lit => format!("{} : {}", const_value(lit), elem(lit.dtype())),
    }
}

/// The text of a literal's value as MLIR reads it for its element type: integers are
/// signless, so an unsigned value is written as the signed one with its bits, and a bf16 as
/// its bits (an i16, see `elem`).
fn const_value(lit: Literal) -> String {
    match lit {
        Literal::Bool(b) => format!("{b}"),
        Literal::Int(d, v) => sign_extended(v, d.bits()).to_string(),
        Literal::Float(DType::BF16, v) => (half::bf16::from_f64(v).to_bits() as i16).to_string(),
        Literal::Float(d, v) => float_bits(d, v),
    }
}

/// Builds the scalar body of a `linalg.generic` region.
struct Body {
    lines: String,
    next: usize,
    /// Whether f32 sin, cos and pow call libm (CPU) or use kiln's polynomials (GPU).
    libm: bool,
}

impl Body {
    fn op(&mut self, text: String) -> String {
        let name = format!("%s{}", self.next);
        self.next += 1;
        let _ = writeln!(self.lines, "      {name} = {text}");
        name
    }

    fn constant(&mut self, lit: Literal) -> String {
        self.op(format!("arith.constant {}", scalar_const(lit)))
    }

    fn unary(&mut self, op: UnaryOp, x: &str, d: DType) -> String {
        let t = elem(d);
        if d.is_int() {
            // Signed or unsigned predicates: an unsigned value is never below 0.
            let s = signedness(d);
            return match op {
                UnaryOp::Neg => {
                    let zero = self.constant(Literal::Int(d, 0));
                    self.op(format!("arith.subi {zero}, {x} : {t}"))
                }
                // |x| = x < 0 ? 0 - x : x, wrapping like the interpreter (plain arith: MLIR 22
                // cannot lower math.absi on the 2-D vectors of a vectorized tile).
                UnaryOp::Abs => {
                    let zero = self.constant(Literal::Int(d, 0));
                    let negative = self.op(format!("arith.cmpi {s}lt, {x}, {zero} : {t}"));
                    let negated = self.op(format!("arith.subi {zero}, {x} : {t}"));
                    self.op(format!("arith.select {negative}, {negated}, {x} : {t}"))
                }
                // Integers are integral already.
                UnaryOp::Floor | UnaryOp::Ceil | UnaryOp::Round | UnaryOp::Trunc => x.to_string(),
                // sign(x) = [x > 0] - [x < 0]
                UnaryOp::Sign => {
                    let zero = self.constant(Literal::Int(d, 0));
                    let pos = self.op(format!("arith.cmpi {s}gt, {x}, {zero} : {t}"));
                    let neg = self.op(format!("arith.cmpi {s}lt, {x}, {zero} : {t}"));
                    let p = self.op(format!("arith.extui {pos} : i1 to {t}"));
                    let n = self.op(format!("arith.extui {neg} : i1 to {t}"));
                    self.op(format!("arith.subi {p}, {n} : {t}"))
                }
                _ => unreachable!("float-only op {} on {d}", op.name()),
            };
        }
        let one = || Literal::Float(d, 1.0);
        let fmt = approx::Fmt::of(d);
        // f32 exp, log, tanh and erf are always kiln's (they vectorize); the rest only without
        // libm.
        let own = d == DType::F32 || !self.libm;
        match op {
            UnaryOp::Neg => self.op(format!("arith.negf {x} : {t}")),
            UnaryOp::Abs => self.op(format!("math.absf {x} : {t}")),
            UnaryOp::Exp if own => self.exp(fmt, x),
            UnaryOp::Exp => self.op(format!("math.exp {x} : {t}")),
            // expm1(x) = (u - 1) (x / log u) with u = e^x (Kahan): the rounding error of u
            // cancels between u - 1 and log u. x itself where u rounds to 1 (keeping -0), -1
            // where u - 1 is -1, and u where it is +inf.
            UnaryOp::Expm1 => {
                let u = self.unary(UnaryOp::Exp, x, d);
                let c1 = self.constant(one());
                let m1 = self.constant(Literal::Float(d, -1.0));
                let um1 = self.op(format!("arith.subf {u}, {c1} : {t}"));
                let l = self.unary(UnaryOp::Log, &u, d);
                let q = self.op(format!("arith.divf {x}, {l} : {t}"));
                let r = self.op(format!("arith.mulf {um1}, {q} : {t}"));
                let is_m1 = self.op(format!("arith.cmpf oeq, {um1}, {m1} : {t}"));
                let r = self.op(format!("arith.select {is_m1}, {m1}, {r} : {t}"));
                self.unless_one_or_infinite(x, &u, &r, d)
            }
            UnaryOp::Log if own => self.log(fmt, x),
            UnaryOp::Log => self.op(format!("math.log {x} : {t}")),
            // log1p(x) = log u (x / (u - 1)) with u = 1 + x (Goldberg): x / (u - 1) corrects
            // the rounding of u. x itself where u rounds to 1 (keeping -0), and u where it is
            // +inf; log gives -inf at x = -1 and NaN below.
            UnaryOp::Log1p => {
                let c1 = self.constant(one());
                let u = self.op(format!("arith.addf {x}, {c1} : {t}"));
                let um1 = self.op(format!("arith.subf {u}, {c1} : {t}"));
                let l = self.unary(UnaryOp::Log, &u, d);
                let q = self.op(format!("arith.divf {x}, {um1} : {t}"));
                let r = self.op(format!("arith.mulf {l}, {q} : {t}"));
                self.unless_one_or_infinite(x, &u, &r, d)
            }
            UnaryOp::Sqrt => self.op(format!("math.sqrt {x} : {t}")),
            UnaryOp::Floor => self.op(format!("math.floor {x} : {t}")),
            UnaryOp::Ceil => self.op(format!("math.ceil {x} : {t}")),
            UnaryOp::Round => self.op(format!("math.roundeven {x} : {t}")),
            UnaryOp::Trunc => self.op(format!("math.trunc {x} : {t}")),
            // sign(x) = 1 where x > 0, -1 where x < 0, else x (±0 and NaN).
            UnaryOp::Sign => {
                let zero = self.constant(Literal::Float(d, 0.0));
                let c1 = self.constant(one());
                let m1 = self.constant(Literal::Float(d, -1.0));
                let pos = self.op(format!("arith.cmpf ogt, {x}, {zero} : {t}"));
                let neg = self.op(format!("arith.cmpf olt, {x}, {zero} : {t}"));
                let r = self.op(format!("arith.select {neg}, {m1}, {x} : {t}"));
                self.op(format!("arith.select {pos}, {c1}, {r} : {t}"))
            }
            UnaryOp::Tanh if own => self.tanh(fmt, x),
            UnaryOp::Tanh => self.op(format!("math.tanh {x} : {t}")),
            UnaryOp::Sin if !self.libm => self.sin(fmt, x),
            UnaryOp::Sin => self.op(format!("math.sin {x} : {t}")),
            UnaryOp::Cos if !self.libm => self.cos(fmt, x),
            UnaryOp::Cos => self.op(format!("math.cos {x} : {t}")),
            UnaryOp::Erf if own => self.erf(fmt, x),
            UnaryOp::Erf => self.op(format!("math.erf {x} : {t}")),
            UnaryOp::ErfInv => self.erf_inv(fmt, x),
            // rsqrt(x) = 1 / sqrt(x), as the interpreter computes it.
            UnaryOp::Rsqrt => {
                let s = self.op(format!("math.sqrt {x} : {t}"));
                let c = self.constant(one());
                self.op(format!("arith.divf {c}, {s} : {t}"))
            }
            // sigmoid(x) = s for x >= 0 and e s for x < 0, where e = exp(-|x|), s = 1 / (1 + e)
            // (see the `Sigmoid` row of the op table).
            UnaryOp::Sigmoid => {
                let a = self.op(format!("math.absf {x} : {t}"));
                let n = self.op(format!("arith.negf {a} : {t}"));
                let e = self.unary(UnaryOp::Exp, &n, d);
                let c = self.constant(one());
                let sum = self.op(format!("arith.addf {c}, {e} : {t}"));
                let s = self.op(format!("arith.divf {c}, {sum} : {t}"));
                let es = self.op(format!("arith.mulf {e}, {s} : {t}"));
                let zero = self.constant(Literal::Float(d, 0.0));
                let negative = self.op(format!("arith.cmpf olt, {x}, {zero} : {t}"));
                self.op(format!("arith.select {negative}, {es}, {s} : {t}"))
            }
        }
    }

    /// The end of expm1 and log1p, which compute `r` from an intermediate `u` (e^x or 1 + x):
    /// `r`, but x itself where u rounds to 1 (so tiny x and -0 come through exactly) and u
    /// where it is +inf (where `r` would be inf/inf).
    fn unless_one_or_infinite(&mut self, x: &str, u: &str, r: &str, d: DType) -> String {
        let t = elem(d);
        let c1 = self.constant(Literal::Float(d, 1.0));
        let inf = self.constant(Literal::Float(d, f64::INFINITY));
        let is_inf = self.op(format!("arith.cmpf oeq, {u}, {inf} : {t}"));
        let r = self.op(format!("arith.select {is_inf}, {u}, {r} : {t}"));
        let is_one = self.op(format!("arith.cmpf oeq, {u}, {c1} : {t}"));
        self.op(format!("arith.select {is_one}, {x}, {r} : {t}"))
    }

    /// `d` is the operands' dtype.
    fn binary(&mut self, op: BinaryOp, a: &str, b: &str, d: DType) -> String {
        let t = elem(d);
        if op == BinaryOp::Pow && d.is_float() && !self.libm {
            return self.pow(approx::Fmt::of(d), a, b);
        }
        match op {
            BinaryOp::Rem | BinaryOp::Quot if d.is_int() => return self.division(op, a, b, d),
            BinaryOp::Rem if !self.libm => return self.remainder(approx::Fmt::of(d), a, b),
            BinaryOp::Shl | BinaryOp::Shr | BinaryOp::ShrU => return self.shift(op, a, b, d),
            _ => {}
        }
        // Bools compare as unsigned 0 < 1; the type rules give them no arithmetic.
        let (float, signed, unsigned) = match op {
            BinaryOp::Add => ("arith.addf", "arith.addi", "arith.addi"),
            BinaryOp::Sub => ("arith.subf", "arith.subi", "arith.subi"),
            BinaryOp::Mul => ("arith.mulf", "arith.muli", "arith.muli"),
            BinaryOp::Div => ("arith.divf", "", ""),
            BinaryOp::Max => ("arith.maximumf", "arith.maxsi", "arith.maxui"),
            BinaryOp::Min => ("arith.minimumf", "arith.minsi", "arith.minui"),
            BinaryOp::Pow => ("math.powf", "", ""),
            BinaryOp::Eq => ("arith.cmpf oeq,", "arith.cmpi eq,", "arith.cmpi eq,"),
            BinaryOp::Ne => ("arith.cmpf une,", "arith.cmpi ne,", "arith.cmpi ne,"),
            BinaryOp::Lt => ("arith.cmpf olt,", "arith.cmpi slt,", "arith.cmpi ult,"),
            BinaryOp::Le => ("arith.cmpf ole,", "arith.cmpi sle,", "arith.cmpi ule,"),
            BinaryOp::Gt => ("arith.cmpf ogt,", "arith.cmpi sgt,", "arith.cmpi ugt,"),
            BinaryOp::Ge => ("arith.cmpf oge,", "arith.cmpi sge,", "arith.cmpi uge,"),
            BinaryOp::Rem => ("arith.remf", "", ""),
            BinaryOp::And => ("", "arith.andi", "arith.andi"),
            BinaryOp::Or => ("", "arith.ori", "arith.ori"),
            BinaryOp::Xor => ("", "arith.xori", "arith.xori"),
            BinaryOp::Quot | BinaryOp::Shl | BinaryOp::Shr | BinaryOp::ShrU => ("", "", ""),
        };
        let name = match d {
            DType::Bool | DType::U8 | DType::U32 => unsigned,
            DType::I32 | DType::I64 => signed,
            DType::F16 | DType::BF16 | DType::F32 | DType::F64 => float,
        };
        assert!(!name.is_empty(), "`{}` is not defined on {d}", op.name());
        self.op(format!("{name} {a}, {b} : {t}"))
    }

    /// Integer `rem` and `quot` as the op table defines them where LLVM's are undefined (a
    /// divisor of 0, or -1 with the most negative signed dividend): the division runs by 1
    /// there and the result is chosen: rem(a, 0) = a, quot(a, 0) = all ones (-1 if signed),
    /// and for signed types rem(a, -1) = 0, quot(a, -1) = -a.
    fn division(&mut self, op: BinaryOp, a: &str, b: &str, d: DType) -> String {
        let t = elem(d);
        let s = signedness(d);
        let zero = self.constant(Literal::Int(d, 0));
        let one = self.constant(Literal::Int(d, 1));
        let ones = self.constant(Literal::of_i64(d, -1));
        let by_zero = self.op(format!("arith.cmpi eq, {b}, {zero} : {t}"));
        let by_minus_one = if d.is_unsigned() {
            self.op("arith.constant false".into())
        } else {
            self.op(format!("arith.cmpi eq, {b}, {ones} : {t}"))
        };
        let special = self.op(format!("arith.ori {by_zero}, {by_minus_one} : i1"));
        let divisor = self.op(format!("arith.select {special}, {one}, {b} : {t}"));
        if op == BinaryOp::Rem {
            let r = self.op(format!("arith.rem{s}i {a}, {divisor} : {t}"));
            return self.op(format!("arith.select {by_zero}, {a}, {r} : {t}"));
        }
        let q = self.op(format!("arith.div{s}i {a}, {divisor} : {t}"));
        let negated = self.op(format!("arith.subi {zero}, {a} : {t}"));
        let q = self.op(format!("arith.select {by_minus_one}, {negated}, {q} : {t}"));
        self.op(format!("arith.select {by_zero}, {ones}, {q} : {t}"))
    }

    /// Shifts as the op table defines them for every amount (LLVM's are undefined from the
    /// width on): 0 there, or all copies of the top bit for the arithmetic right shift (which
    /// reads the bits as signed, on unsigned types too).
    fn shift(&mut self, op: BinaryOp, a: &str, b: &str, d: DType) -> String {
        let t = elem(d);
        let bits = d.bits() as i64;
        let zero = self.constant(Literal::Int(d, 0));
        let width = self.constant(Literal::Int(d, bits));
        let in_range = self.op(format!("arith.cmpi ult, {b}, {width} : {t}"));
        let amount = self.op(format!("arith.select {in_range}, {b}, {zero} : {t}"));
        let (name, beyond) = match op {
            BinaryOp::Shl => ("arith.shli", zero),
            BinaryOp::ShrU => ("arith.shrui", zero),
            _ => {
                let top = self.constant(Literal::Int(d, bits - 1));
                ("arith.shrsi", self.op(format!("arith.shrsi {a}, {top} : {t}")))
            }
        };
        let r = self.op(format!("{name} {a}, {amount} : {t}"));
        self.op(format!("arith.select {in_range}, {r}, {beyond} : {t}"))
    }

    /// The index `i` as an integer of dtype `d` (iota's value, a loop's position).
    fn index_as(&mut self, i: &str, d: DType) -> String {
        let i = self.op(format!("arith.index_cast {i} : index to i64"));
        self.convert(&i, DType::I64, d)
    }

    /// Converts a scalar of dtype `from` to `to` with the `convert` op's semantics.
    fn convert(&mut self, x: &str, from: DType, to: DType) -> String {
        let (f, t) = (elem(from), elem(to));
        match (from, to) {
            _ if from == to => x.to_string(),
            // 16-bit floats convert through f32 (exactly from them; to them rounding once more).
            (h, _) if h.is_half() => {
                let wide = self.widen_half(x, h);
                self.convert(&wide, DType::F32, to)
            }
            (_, h) if h.is_half() => {
                let wide = self.convert(x, from, DType::F32);
                self.narrow_to_half(&wide, h)
            }
            (DType::Bool, d) if d.is_int() => self.op(format!("arith.extui {x} : i1 to {t}")),
            (DType::Bool, _) => self.op(format!("arith.uitofp {x} : i1 to {t}")),
            (d, DType::Bool) if d.is_int() => {
                let zero = self.constant(Literal::Int(d, 0));
                self.op(format!("arith.cmpi ne, {x}, {zero} : {f}"))
            }
            (d, DType::Bool) => {
                let zero = self.constant(Literal::Float(d, 0.0));
                self.op(format!("arith.cmpf une, {x}, {zero} : {f}"))
            }
            // Integers widen by their signedness and narrow by dropping the top bits (one width
            // is one bit pattern, for both signednesses).
            (i, j) if i.is_int() && j.is_int() => {
                let s = signedness(i);
                match i.bits().cmp(&j.bits()) {
                    std::cmp::Ordering::Less => self.op(format!("arith.ext{s}i {x} : {f} to {t}")),
                    std::cmp::Ordering::Greater => self.op(format!("arith.trunci {x} : {f} to {t}")),
                    std::cmp::Ordering::Equal => x.to_string(),
                }
            }
            (DType::F32, DType::F64) => self.op(format!("arith.extf {x} : f32 to f64")),
            (DType::F64, DType::F32) => self.op(format!("arith.truncf {x} : f64 to f32")),
            (i, _) if i.is_unsigned() => self.op(format!("arith.uitofp {x} : {f} to {t}")),
            (i, _) if i.is_int() => self.op(format!("arith.sitofp {x} : {f} to {t}")),
            // Float to integer saturates and maps NaN to 0 (Rust's `as`, LLVM's fptosi.sat):
            // clamp into range, convert, then fix the top end and NaN with selects.
            (fl, int) => {
                let s = signedness(int);
                let bits = if int.is_unsigned() { int.bits() as i32 } else { int.bits() as i32 - 1 };
                let mantissa = if fl == DType::F32 { 24 } else { 53 };
                let top = 2f64.powi(bits);
                let hi = if mantissa > bits { top - 1.0 } else { top - 2f64.powi(bits - mantissa) };
                let lo_c = self.constant(Literal::Float(fl, int.int_range().0 as f64));
                let hi_c = self.constant(Literal::Float(fl, hi));
                let top_c = self.constant(Literal::Float(fl, top));
                let lo = self.op(format!("arith.maximumf {x}, {lo_c} : {f}"));
                let clamped = self.op(format!("arith.minimumf {lo}, {hi_c} : {f}"));
                let y = self.op(format!("arith.fpto{s}i {clamped} : {f} to {t}"));
                let max = self.constant(Literal::Int(int, int.int_range().1));
                let over = self.op(format!("arith.cmpf oge, {x}, {top_c} : {f}"));
                let y = self.op(format!("arith.select {over}, {max}, {y} : {t}"));
                let zero = self.constant(Literal::Int(int, 0));
                let nan = self.op(format!("arith.cmpf uno, {x}, {x} : {f}"));
                self.op(format!("arith.select {nan}, {zero}, {y} : {t}"))
            }
        }
    }
}

impl Body {
    /// A 16-bit float widened to f32 (exact): LLVM's for f16; a bf16's bits (an i16) are an
    /// f32's top half.
    fn widen_half(&mut self, x: &str, h: DType) -> String {
        if h == DType::F16 {
            return self.op(format!("arith.extf {x} : f16 to f32"));
        }
        let wide = self.op(format!("arith.extui {x} : i16 to i32"));
        let sixteen = self.constant(Literal::Int(DType::I32, 16));
        let top = self.op(format!("arith.shli {wide}, {sixteen} : i32"));
        self.op(format!("arith.bitcast {top} : i32 to f32"))
    }

    /// An f32 rounded to the nearest 16-bit float, ties to even: LLVM's for f16; for bf16 on
    /// the bits, adding 0x7FFF plus the kept part's last bit and dropping the low half, NaN as
    /// 0x7FC0 (the bf16's bits, an i16).
    fn narrow_to_half(&mut self, x: &str, h: DType) -> String {
        if h == DType::F16 {
            return self.op(format!("arith.truncf {x} : f32 to f16"));
        }
        let bits = self.op(format!("arith.bitcast {x} : f32 to i32"));
        let sixteen = self.constant(Literal::Int(DType::I32, 16));
        let one = self.constant(Literal::Int(DType::I32, 1));
        let bias = self.constant(Literal::Int(DType::I32, 0x7FFF));
        let high = self.op(format!("arith.shrui {bits}, {sixteen} : i32"));
        let odd = self.op(format!("arith.andi {high}, {one} : i32"));
        let round = self.op(format!("arith.addi {odd}, {bias} : i32"));
        let rounded = self.op(format!("arith.addi {bits}, {round} : i32"));
        let kept = self.op(format!("arith.shrui {rounded}, {sixteen} : i32"));
        let kept = self.op(format!("arith.trunci {kept} : i32 to i16"));
        let nan = self.op(format!("arith.cmpf uno, {x}, {x} : f32"));
        let quiet = self.op("arith.constant 32704 : i16".into());
        self.op(format!("arith.select {nan}, {quiet}, {kept} : i16"))
    }
}

/// The starts of a window of `sizes` in an array of `shape`, read from scalar tensors and
/// clamped into [0, dim - size] as indices, each op written by `emit` (which takes an op's
/// text and returns the name of its result): in the function on CPUs, in a kernel's body on
/// GPUs, whose kernels cannot read values the host computed.
fn window_starts(
    emit: &mut dyn FnMut(String) -> String,
    starts: &[(String, TensorType)],
    shape: &[usize],
    sizes: &[usize],
) -> Vec<String> {
    let zero = emit("arith.constant 0 : index".into());
    starts
        .iter()
        .zip(shape.iter().zip(sizes))
        .map(|((s, t), (&dim, &size))| {
            let e = elem(t.dtype);
            let v = emit(format!("tensor.extract {s}[] : tensor<{e}>"));
            let i = emit(format!("{} {v} : {e} to index", index_cast(t.dtype)));
            let last = emit(format!("arith.constant {} : index", dim - size));
            let low = emit(format!("arith.maxsi {i}, {zero} : index"));
            emit(format!("arith.minsi {low}, {last} : index"))
        })
        .collect()
}

/// One input of a `linalg.generic`: SSA name, tensor type, indexing expressions.
struct GenericInput {
    name: String,
    /// The tensor type's text and its element type.
    ty: String,
    elem: &'static str,
    exprs: Vec<String>,
}

impl GenericInput {
    fn new(name: &str, ty: &TensorType, exprs: Vec<String>) -> GenericInput {
        GenericInput { name: name.to_string(), ty: tensor(ty), elem: elem(ty.dtype), exprs }
    }
}

/// Where a `linalg.generic` writes: its init tensor, that tensor's shape and element type, and
/// the output's indexing expressions.
struct Dest<'a> {
    init: &'a str,
    shape: &'a [usize],
    elem: &'a str,
    exprs: &'a [String],
}

struct FuncEmitter<'f> {
    func: &'f Func,
    out: String,
    next: usize,
    /// The SSA name of each IR value.
    names: Vec<String>,
    /// The span of the instruction being lowered.
    span: Option<Span>,
    /// Contractions and convolutions emitted so far, numbered together from the
    /// `first_contraction` given to `new`.
    contractions: Vec<Contraction>,
    convolutions: Vec<Convolution>,
    first_contraction: usize,
    libm: bool,
    /// Values that are transposes read only as the left operand of products: the product reads
    /// the untransposed array through its indexing map instead (see [`fused_transposes`]).
    fused: Vec<bool>,
    /// Values emitted again at each use (see [`splats`]).
    splats: Vec<bool>,
    /// The strided view each slice copies (by SSA name of the copy): a concatenation copies the
    /// view into its window directly, and the slice's own copy, then unused, is erased.
    views: std::collections::BTreeMap<String, String>,
    /// Whether the target is a GPU (see [`emit_module`]).
    gpu: bool,
    /// The values that end a fusion group (see [`fusion_barriers`]), and the id the next
    /// `linalg.generic` emitted is tagged with, while one of them is emitted.
    barriers: Vec<bool>,
    barrier: Option<usize>,
    barrier_count: usize,
    /// Products of at least this many rows read B with padded rows (see `with_padded_rows`).
    pad_b_from_m: Option<usize>,
    /// The results of each conditional and loop emitted, by bodies and operands (see `cond`).
    structured: std::collections::HashMap<(Bodies, Vec<Value>), Vec<String>>,
}

impl<'f> FuncEmitter<'f> {
    fn new(func: &'f Func, first_contraction: usize, libm: bool) -> Self {
        FuncEmitter {
            func,
            out: String::new(),
            next: 0,
            names: vec![],
            span: None,
            contractions: vec![],
            convolutions: vec![],
            first_contraction,
            libm,
            fused: fused_transposes(func),
            splats: splats(func),
            barriers: fusion_barriers(func),
            barrier: None,
            barrier_count: 0,
            views: Default::default(),
            gpu: false,
            pad_b_from_m: None,
            structured: Default::default(),
        }
    }

    fn fresh(&mut self) -> String {
        self.next += 1;
        format!("%t{}", self.next)
    }

    /// Emits one operation, located at the source span of the instruction being lowered (see
    /// [`span_location`]) so that MLIR's diagnostics name the user's code.
    fn line(&mut self, text: String) {
        match self.span {
            Some(span) => {
                let _ = writeln!(self.out, "    {text} loc(\"{}\")", span_location(span));
            }
            None => {
                let _ = writeln!(self.out, "    {text}");
            }
        }
    }

    fn emit(&mut self, symbol: &str) -> String {
        let f = self.func;
        let mut args = vec![];
        for (i, p) in f.params.iter().enumerate() {
            args.push(format!(
                "%in{i}: {} {{llvm.noalias, llvm.readonly}}",
                shaped("memref", &p.ty.shape, boundary_elem(p.ty.dtype))
            ));
        }
        for (i, ty) in f.result_types().iter().enumerate() {
            args.push(format!("%out{i}: {} {{llvm.noalias}}", shaped("memref", &ty.shape, boundary_elem(ty.dtype))));
        }
        let mut text = format!("  func.func private @{symbol}({}) {{\n", args.join(", "));
        for (i, p) in f.params.iter().enumerate() {
            let bt = shaped("tensor", &p.ty.shape, boundary_elem(p.ty.dtype));
            let mt = shaped("memref", &p.ty.shape, boundary_elem(p.ty.dtype));
            let raw = self.fresh();
            self.line(format!("{raw} = bufferization.to_tensor %in{i} restrict : {mt} to {bt}"));
            let name = if p.ty.dtype == DType::Bool {
                // Bytes to i1: any nonzero byte is true.
                let input = GenericInput { name: raw, ty: bt, elem: "i8", exprs: identity_exprs(p.ty.rank()) };
                self.parallel(&p.ty.shape, "i1", &[input], |b, a| {
                    let zero = b.op("arith.constant 0 : i8".into());
                    b.op(format!("arith.cmpi ne, {}, {zero} : i8", a[0]))
                })
            } else {
                raw
            };
            self.names.push(name);
        }
        self.body();
        self.span = None;
        for (i, &r) in f.results.iter().enumerate() {
            let ty = f.ty(r).clone();
            let mut t = self.use_of(r);
            if ty.dtype == DType::Bool {
                // i1 to bytes 0 and 1.
                t = self.map(
                    &[(t, ty.clone())],
                    &ty,
                    |b, a| b.op(format!("arith.extui {} : i1 to i8", a[0])),
                    Some("i8"),
                );
            }
            let bt = shaped("tensor", &ty.shape, boundary_elem(ty.dtype));
            let mt = shaped("memref", &ty.shape, boundary_elem(ty.dtype));
            self.line(format!(
                "bufferization.materialize_in_destination {t} in restrict writable %out{i} : ({bt}, {mt}) -> ()"
            ));
        }
        text.push_str(&std::mem::take(&mut self.out));
        text.push_str("    return\n  }\n");
        text
    }

    /// Emits the function's instructions, its parameters already named.
    fn body(&mut self) {
        let f = self.func;
        for (i, inst) in f.insts.iter().enumerate() {
            self.span = (inst.span != Span::default()).then_some(inst.span);
            let r = if self.fused[f.params.len() + i] {
                // Emitted by its products: the name stands for the untransposed array.
                self.use_of(inst.args[0])
            } else if self.splats[f.params.len() + i] {
                // Emitted at each use (see `use_of`).
                String::new()
            } else {
                if self.barriers[f.params.len() + i] {
                    self.barrier = Some(self.barrier_count);
                    self.barrier_count += 1;
                }
                let r = self.inst(&inst.op, &inst.args, &inst.ty);
                self.barrier = None;
                r
            };
            self.names.push(r);
        }
    }

    /// The region of a conditional's branch or a loop's body `f`, ending in its `scf.yield` (of
    /// `types`): `f`'s instructions emitted with its parameters named as `params` says (after
    /// any lines it writes first), numbering names and contractions on from this function's.
    fn region(&mut self, f: &Func, types: &[String], params: impl FnOnce(&mut FuncEmitter) -> Vec<String>) -> String {
        self.region_ending(f, params, |child, yielded| {
            let _ = writeln!(child.out, "      scf.yield {} : {}", yielded.join(", "), types.join(", "));
        })
    }

    /// [`region`](Self::region), ended by `terminate` given the names of `f`'s results.
    fn region_ending(
        &mut self,
        f: &Func,
        params: impl FnOnce(&mut FuncEmitter) -> Vec<String>,
        terminate: impl FnOnce(&mut FuncEmitter, &[String]),
    ) -> String {
        let mut child = FuncEmitter::new(f, self.next_contraction_id(), self.libm);
        child.gpu = self.gpu;
        child.pad_b_from_m = self.pad_b_from_m;
        child.barrier_count = self.barrier_count;
        child.next = self.next;
        child.names = params(&mut child);
        child.body();
        let yielded: Vec<String> = f.results.iter().map(|&r| child.use_of(r)).collect();
        terminate(&mut child, &yielded);
        self.next = child.next;
        self.barrier_count = child.barrier_count;
        self.contractions.append(&mut child.contractions);
        self.convolutions.append(&mut child.convolutions);
        child.out
    }

    /// Result `result` of a conditional or loop over `bodies` on `args` (named `operands`),
    /// written by `emit` given the text that binds its results. Every instruction that takes a
    /// result of the same op (equal bodies and operands) reads it from the one op emitted
    /// ([`emitted_result`](Self::emitted_result)), so that its regions run once.
    fn structured_op(
        &mut self,
        bodies: &Bodies,
        result: usize,
        args: &[Value],
        operands: &[(String, TensorType)],
        emit: fn(&mut Self, &Bodies, &[(String, TensorType)], &str),
    ) -> String {
        let key = (bodies.clone(), args.to_vec());
        // A conditional's branches and a loop's body (last, after a condition) give the results.
        let count = bodies.funcs().last().map_or(0, |f| f.results.len());
        let n = self.fresh();
        let binding = if count > 1 { format!("{n}:{count}") } else { n.clone() };
        emit(self, bodies, operands, &binding);
        let names: Vec<String> = if count > 1 { (0..count).map(|k| format!("{n}#{k}")).collect() } else { vec![n] };
        let r = names[result].clone();
        self.structured.insert(key, names);
        r
    }

    /// A loop: `scf.for` from lo to hi with the carries as `iter_args` and the body's
    /// instructions in its region, the index as a scalar tensor of the bounds' dtype.
    fn counted(&mut self, body: &Bodies, operands: &[(String, TensorType)], binding: &str) {
        let f = &body.funcs()[0];
        let carries = f.results.len();
        let ie = elem(operands[0].1.dtype);
        let bound = |this: &mut Self, t: &str| {
            let v = this.emitted(format!("tensor.extract {t}[] : tensor<{ie}>"));
            this.emitted(format!("{} {v} : {ie} to index", index_cast(operands[0].1.dtype)))
        };
        let (lo, hi) = (bound(self, &operands[0].0), bound(self, &operands[1].0));
        let one = self.emitted("arith.constant 1 : index".into());
        let types: Vec<String> = f.result_types().into_iter().map(tensor).collect();
        let iv = self.fresh();
        let iter_args: Vec<String> = (0..carries).map(|_| self.fresh()).collect();
        let inits: Vec<String> =
            iter_args.iter().zip(&operands[2..2 + carries]).map(|(a, (init, _))| format!("{a} = {init}")).collect();
        let mut text = format!(
            "{binding} = scf.for {iv} = {lo} to {hi} step {one} iter_args({}) -> ({}) {{\n",
            inits.join(", "),
            types.join(", ")
        );
        text += &self.region(f, &types, |child| {
            let i = child.emitted(format!("arith.index_cast {iv} : index to {ie}"));
            let index = child.emitted(format!("tensor.from_elements {i} : tensor<{ie}>"));
            std::iter::once(index).chain(iter_args).chain(operands[2 + carries..].iter().map(|o| o.0.clone())).collect()
        });
        // The carries are written in place before bufferization (`front::carry_in_place`).
        text.push_str("    } {kiln.carries}");
        self.line(text);
    }

    /// A while loop: `scf.while` with the carries as its arguments, the condition's
    /// instructions in its first region (ending in `scf.condition` on the condition's element)
    /// and the body's in its second; like a counted loop's, its carries are written in place.
    fn while_loop(&mut self, bodies: &Bodies, operands: &[(String, TensorType)], binding: &str) {
        let [cond, body] = bodies.funcs() else { unreachable!("the type rule checks a condition and a body") };
        let carries = body.results.len();
        let types: Vec<String> = body.result_types().into_iter().map(tensor).collect();
        let types_list = types.join(", ");
        let captured: Vec<String> = operands[carries..].iter().map(|o| o.0.clone()).collect();
        let before: Vec<String> = (0..carries).map(|_| self.fresh()).collect();
        let inits: Vec<String> = before.iter().zip(operands).map(|(a, (init, _))| format!("{a} = {init}")).collect();
        let mut text = format!("{binding} = scf.while ({}) : ({types_list}) -> ({types_list}) {{\n", inits.join(", "));
        let carried = before.clone();
        text += &self.region_ending(
            cond,
            |_| before.iter().cloned().chain(captured.iter().cloned()).collect(),
            |child, go| {
                let p = child.emitted(format!("tensor.extract {}[] : tensor<i1>", go[0]));
                child.line(format!("scf.condition({p}) {} : {types_list}", carried.join(", ")));
            },
        );
        let after: Vec<String> = (0..carries).map(|_| self.fresh()).collect();
        let block_args: Vec<String> = after.iter().zip(&types).map(|(a, t)| format!("{a}: {t}")).collect();
        let _ = writeln!(text, "    }} do {{\n    ^bb0({}):", block_args.join(", "));
        text += &self.region(body, &types, |_| after.iter().cloned().chain(captured.iter().cloned()).collect());
        // The carries are written in place before bufferization (`front::carry_in_place`).
        text.push_str("    } attributes {kiln.carries}");
        self.line(text);
    }

    /// A conditional: `scf.if` on the predicate's element with each branch's instructions in
    /// its region, yielding all of the branch's results. A result that may be a view of
    /// another buffer (a captured value, a slice or a reshape) is yielded as a copy: branches
    /// yielding views of different offsets would give the `scf.if` a dynamically strided
    /// buffer, whose 0-d vector reads LLVM lowering cannot translate.
    fn cond(&mut self, branches: &Bodies, operands: &[(String, TensorType)], binding: &str) {
        let p = self.emitted(format!("tensor.extract {}[] : tensor<i1>", operands[0].0));
        let types: Vec<String> = branches.branch(true).result_types().into_iter().map(tensor).collect();
        let mut text = format!("{binding} = scf.if {p} -> ({}) {{\n", types.join(", "));
        for (k, branch) in branches.funcs().iter().enumerate() {
            if k == 1 {
                text.push_str("    } else {\n");
            }
            let params = |_: &mut FuncEmitter| operands[1..].iter().map(|o| o.0.clone()).collect();
            text += &self.region_ending(branch, params, |child, yielded| {
                let owned: Vec<String> = yielded
                    .iter()
                    .zip(&branch.results)
                    .zip(&types)
                    .map(|((name, r), ty)| {
                        let view = branch.inst(*r).is_none_or(|i| {
                            matches!(i.op, Op::Slice { .. } | Op::Reshape { .. } | Op::DynamicSlice { .. })
                        });
                        if view {
                            child.emitted(format!("bufferization.alloc_tensor() copy({name}) : {ty}"))
                        } else {
                            name.clone()
                        }
                    })
                    .collect();
                let _ = writeln!(child.out, "      scf.yield {} : {}", owned.join(", "), types.join(", "));
            });
        }
        text.push_str("    }");
        self.line(text);
    }

    /// Emits the op `text` (its result unnamed in it) and returns its result's name.
    fn emitted(&mut self, text: String) -> String {
        let n = self.fresh();
        self.line(format!("{n} = {text}"));
        n
    }

    /// `tensor.empty` of a type with element type `e`.
    fn empty(&mut self, shape: &[usize], e: &str) -> String {
        let n = self.fresh();
        self.line(format!("{n} = tensor.empty() : {}", shaped("tensor", shape, e)));
        n
    }

    /// A `linalg.generic` with iterator kinds `iters` (one per loop) writing `dest`; `body`
    /// computes the yielded scalar from the input scalars (and the output's current value,
    /// last).
    fn generic(
        &mut self,
        iters: &[&str],
        inputs: &[GenericInput],
        dest: Dest,
        body: impl FnOnce(&mut Body, &[String]) -> String,
    ) -> String {
        let loops = iters.len();
        let Dest { init, shape: out_shape, elem: out_elem, exprs: out_exprs } = dest;
        let mut maps: Vec<String> = inputs.iter().map(|i| affine_map(loops, &i.exprs)).collect();
        maps.push(affine_map(loops, out_exprs));
        let iter_types: Vec<String> = iters.iter().map(|k| format!("\"{k}\"")).collect();
        let out_t = shaped("tensor", out_shape, out_elem);
        let ins = if inputs.is_empty() {
            String::new()
        } else {
            let names: Vec<&str> = inputs.iter().map(|i| i.name.as_str()).collect();
            let tys: Vec<&str> = inputs.iter().map(|i| i.ty.as_str()).collect();
            format!(" ins({} : {})", names.join(", "), tys.join(", "))
        };
        let mut block_args: Vec<String> =
            inputs.iter().enumerate().map(|(k, i)| format!("%a{k}: {}", i.elem)).collect();
        block_args.push(format!("%acc: {out_elem}"));
        let mut arg_names: Vec<String> = (0..inputs.len()).map(|k| format!("%a{k}")).collect();
        arg_names.push("%acc".into());
        let mut b = Body { lines: String::new(), next: 0, libm: self.libm };
        let result = body(&mut b, &arg_names);
        let n = self.fresh();
        let attrs =
            self.barrier.take().map(|id| format!(" attrs = {{kiln.fusion_barrier = {id} : i64}}")).unwrap_or_default();
        self.line(format!(
            "{n} = linalg.generic {{indexing_maps = [{}], iterator_types = [{}]}}{ins} outs({init} : {out_t}){attrs} {{\n    ^bb0({}):\n{}      linalg.yield {result} : {out_elem}\n    }} -> {out_t}",
            maps.join(", "),
            iter_types.join(", "),
            block_args.join(", "),
            b.lines
        ));
        n
    }

    /// A tensor of `shape` filled with `value` (the initial value of a reduction).
    fn filled(&mut self, shape: &[usize], value: Literal) -> String {
        let init = self.empty(shape, elem(value.dtype()));
        self.fill(&init, shape, value)
    }

    /// `dest`, a tensor of `shape`, filled with `value`.
    fn fill(&mut self, dest: &str, shape: &[usize], value: Literal) -> String {
        let e = elem(value.dtype());
        let c = self.fresh();
        self.line(format!("{c} = arith.constant {}", scalar_const(value)));
        let n = self.fresh();
        let t = shaped("tensor", shape, e);
        self.line(format!("{n} = linalg.fill ins({c} : {e}) outs({dest} : {t}) -> {t}"));
        n
    }

    /// A loop nest over a fresh tensor of `shape` and `elem`: all loops parallel, output
    /// indexed by the loop indices.
    fn parallel(
        &mut self,
        shape: &[usize],
        elem: &str,
        inputs: &[GenericInput],
        body: impl FnOnce(&mut Body, &[String]) -> String,
    ) -> String {
        let rank = shape.len();
        let init = self.empty(shape, elem);
        self.generic(
            &vec!["parallel"; rank],
            inputs,
            Dest { init: &init, shape, elem, exprs: &identity_exprs(rank) },
            body,
        )
    }

    /// An elementwise map over operands of one shape into a new tensor of `ty` (element type
    /// overridden by `out_elem` when given).
    fn map(
        &mut self,
        args: &[(String, TensorType)],
        ty: &TensorType,
        body: impl FnOnce(&mut Body, &[String]) -> String,
        out_elem: Option<&str>,
    ) -> String {
        let inputs: Vec<GenericInput> =
            args.iter().map(|(name, t)| GenericInput::new(name, t, identity_exprs(ty.rank()))).collect();
        self.parallel(&ty.shape, out_elem.unwrap_or(elem(ty.dtype)), &inputs, body)
    }

    fn operand(&mut self, v: Value) -> (String, TensorType) {
        (self.use_of(v), self.func.ty(v).clone())
    }

    /// The result of a conditional or loop whose op an earlier result emitted (see
    /// [`structured_op`](Self::structured_op)), before its operands are emitted again.
    fn emitted_result(&self, op: &Op, args: &[Value]) -> Option<String> {
        let (bodies, result) = match op {
            Op::Cond { branches, result } => (branches, *result),
            Op::Loop { body, result, .. } => (body, *result),
            Op::While { bodies, result } => (bodies, *result),
            _ => return None,
        };
        self.structured.get(&(bodies.clone(), args.to_vec())).map(|names| names[result].clone())
    }

    /// The name of `v` at a use: a splat ([`splats`]) is emitted again there.
    fn use_of(&mut self, v: Value) -> String {
        let f = self.func;
        match v.index().checked_sub(f.params.len()).filter(|_| self.splats[v.index()]) {
            Some(i) => {
                // A fusion barrier's tag is for the op using the splat, not the splat.
                let barrier = self.barrier.take();
                let name = self.inst(&f.insts[i].op, &f.insts[i].args, &f.insts[i].ty);
                self.barrier = barrier;
                name
            }
            None => self.names[v.index()].clone(),
        }
    }

    /// Emits one instruction and returns the SSA name of its result.
    fn inst(&mut self, op: &Op, args: &[Value], ty: &TensorType) -> String {
        if let Some(name) = self.emitted_result(op, args) {
            return name;
        }
        let operands: Vec<(String, TensorType)> = args.iter().map(|&a| self.operand(a)).collect();
        match op {
            Op::Const(lit) => {
                let n = self.fresh();
                self.line(format!("{n} = arith.constant dense<{}> : {}", const_value(*lit), tensor(ty)));
                n
            }
            // MLIR's hex form of dense data: the elements' little-endian bytes. Bufferization
            // makes it a constant global, in the object's read-only data.
            Op::Data(c) => {
                let n = self.fresh();
                let mut hex = String::with_capacity(2 * c.bytes().len());
                for b in c.bytes() {
                    let _ = write!(hex, "{b:02X}");
                }
                self.line(format!("{n} = arith.constant dense<\"0x{hex}\"> : {}", tensor(ty)));
                n
            }
            Op::Iota { axis, .. } => self.parallel(&ty.shape, elem(ty.dtype), &[], |b, _| {
                let i = b.op(format!("linalg.index {axis} : index"));
                b.index_as(&i, ty.dtype)
            }),
            Op::Unary(u) => {
                let d = ty.dtype;
                self.map(&operands, ty, |b, a| b.unary(*u, &a[0], d), None)
            }
            Op::Binary(bop) => {
                let d = operands[0].1.dtype;
                self.map(&operands, ty, |b, a| b.binary(*bop, &a[0], &a[1], d), None)
            }
            Op::Select => {
                let e = elem(ty.dtype);
                self.map(&operands, ty, |b, a| b.op(format!("arith.select {}, {}, {} : {e}", a[0], a[1], a[2])), None)
            }
            Op::Convert { to } => {
                let from = operands[0].1.dtype;
                self.map(&operands, ty, |b, a| b.convert(&a[0], from, *to), None)
            }
            Op::Bitcast { to } => {
                let (f, t) = (elem(operands[0].1.dtype), elem(*to));
                self.map(&operands, ty, |b, a| b.op(format!("arith.bitcast {} : {f} to {t}", a[0])), None)
            }
            Op::Reduce { kind, axes } => self.reduce(*kind, axes, &operands[0], ty),
            Op::Dot => {
                // A fused transpose's name is its untransposed source, of that type.
                let a = &args[0];
                let transposed = self.fused[a.index()];
                let left = if transposed {
                    let source = self.func.insts[a.index() - self.func.params.len()].args[0];
                    (operands[0].0.clone(), self.func.ty(source).clone())
                } else {
                    operands[0].clone()
                };
                self.dot(&left, transposed, &operands[1], ty)
            }
            Op::Reshape { shape } => self.reshape(&operands[0], shape, ty),
            Op::Transpose { perm } => {
                let rank = ty.rank();
                let mut exprs = vec![String::new(); rank];
                for (i, &p) in perm.iter().enumerate() {
                    exprs[p] = format!("d{i}");
                }
                self.gather(&operands[0], exprs, ty)
            }
            Op::Broadcast { dims, .. } => {
                let x = &operands[0].1;
                let exprs = dims
                    .iter()
                    .enumerate()
                    .map(|(k, &d)| if x.shape[k] == 1 { "0".to_string() } else { format!("d{d}") })
                    .collect();
                self.gather(&operands[0], exprs, ty)
            }
            Op::Slice { start, step, .. } => self.slice(&operands[0], start, step, ty),
            Op::Concat { axis } => self.concat(&operands, *axis, ty),
            Op::Conv(win) => self.conv(&operands[0], &operands[1], win, ty),
            Op::DynamicSlice { .. } => self.dynamic_slice(&operands[0], &operands[1..], ty),
            Op::DynamicUpdateSlice => self.dynamic_update_slice(&operands[0], &operands[1], &operands[2..]),
            Op::Gather { axis } => self.take(&operands[0], &operands[1], *axis, ty),
            Op::Scatter { axis, kind } => self.scatter(&operands[0], &operands[1], &operands[2], *axis, *kind),
            Op::Argsort { descending } => self.argsort(&operands[0], *descending, ty),
            Op::Cond { branches, result } => self.structured_op(branches, *result, args, &operands, Self::cond),
            Op::Loop { body, result, .. } => self.structured_op(body, *result, args, &operands, Self::counted),
            Op::While { bodies, result } => self.structured_op(bodies, *result, args, &operands, Self::while_loop),
            Op::Scan { .. } => unreachable!("scans are counted loops by now: lower::expand"),
        }
    }

    /// A copy where output element `d` reads operand element `exprs(d)`.
    fn gather(&mut self, x: &(String, TensorType), exprs: Vec<String>, ty: &TensorType) -> String {
        let input = GenericInput::new(&x.0, &x.1, exprs);
        self.parallel(&ty.shape, elem(ty.dtype), &[input], |_, a| a[0].clone())
    }

    /// `linalg.copy` of `source` into `dest` (both of type `ty`). A copy, not an identity
    /// `linalg.generic`, which canonicalization would fold away, leaving a `memref.copy` of a
    /// strided view that needs MLIR's runtime library; the schedule vectorizes copies.
    fn copy(&mut self, source: &str, dest: &str, ty: &TensorType) -> String {
        let n = self.fresh();
        let t = tensor(ty);
        self.line(format!("{n} = linalg.copy ins({source} : {t}) outs({dest} : {t}) -> {t}"));
        n
    }

    /// The window of `x` (a tensor of `from`) that `window` selects, a tensor of `ty`.
    fn extract_slice(&mut self, x: &str, from: &TensorType, window: &str, ty: &TensorType) -> String {
        let n = self.fresh();
        self.line(format!("{n} = tensor.extract_slice {x}{window} : {} to {}", tensor(from), tensor(ty)));
        n
    }

    /// `dest` (a tensor of `dest_ty`) with its window `window` (a tensor of `ty`) replaced by
    /// what `write` writes into it, given the window as a destination: bufferization turns the
    /// extract, write and insert into a write in place.
    fn write_window(
        &mut self,
        dest: &str,
        dest_ty: &TensorType,
        window: &str,
        ty: &TensorType,
        write: impl FnOnce(&mut Self, &str) -> String,
    ) -> String {
        let slice = self.extract_slice(dest, dest_ty, window, ty);
        let written = write(self, &slice);
        let n = self.fresh();
        self.line(format!(
            "{n} = tensor.insert_slice {written} into {dest}{window} : {} into {}",
            tensor(ty),
            tensor(dest_ty)
        ));
        n
    }

    /// A strided slice. With steps of at least 1, a copy of a strided view
    /// (`tensor.extract_slice`); a reversing slice (negative step) as a loop nest over the
    /// result whose element i of each axis reads operand element start + i * step.
    fn slice(&mut self, x: &(String, TensorType), start: &[usize], step: &[i64], ty: &TensorType) -> String {
        let rank = ty.rank();
        if !self.gpu && step.iter().all(|&k| k >= 1) {
            let view = self.extract_slice(&x.0, &x.1, &window(start, &ty.shape, step), ty);
            let dest = self.empty(&ty.shape, elem(ty.dtype));
            let copy = self.copy(&view, &dest, ty);
            self.views.insert(copy.clone(), view);
            return copy;
        }
        self.parallel(&ty.shape, elem(ty.dtype), &[], |b, _| {
            let at: Vec<String> = (0..rank)
                .map(|d| {
                    let i = b.op(format!("linalg.index {d} : index"));
                    let k = b.op(format!("arith.constant {} : index", step[d]));
                    let s = b.op(format!("arith.constant {} : index", start[d]));
                    let scaled = b.op(format!("arith.muli {i}, {k} : index"));
                    b.op(format!("arith.addi {scaled}, {s} : index"))
                })
                .collect();
            b.op(format!("tensor.extract {}[{}] : {}", x.0, at.join(", "), tensor(&x.1)))
        })
    }

    /// A window of `x` at starts known when the program runs: on CPUs a copy of a view
    /// (`tensor.extract_slice` with dynamic offsets), on GPUs a gather.
    fn dynamic_slice(&mut self, x: &(String, TensorType), starts: &[(String, TensorType)], ty: &TensorType) -> String {
        if ty.rank() == 0 {
            return x.0.clone();
        }
        if !self.gpu {
            let at = window_starts(&mut |text| self.emitted(text), starts, &x.1.shape, &ty.shape);
            let view = self.extract_slice(&x.0, &x.1, &window(&at, &ty.shape, &vec![1; ty.rank()]), ty);
            let dest = self.empty(&ty.shape, elem(ty.dtype));
            return self.copy(&view, &dest, ty);
        }
        self.parallel(&ty.shape, elem(ty.dtype), &[], |b, _| {
            let at = window_starts(&mut |text| b.op(text), starts, &x.1.shape, &ty.shape);
            let idx: Vec<String> = at
                .iter()
                .enumerate()
                .map(|(d, start)| {
                    let i = b.op(format!("linalg.index {d} : index"));
                    b.op(format!("arith.addi {i}, {start} : index"))
                })
                .collect();
            b.op(format!("tensor.extract {}[{}] : {}", x.0, idx.join(", "), tensor(&x.1)))
        })
    }

    /// `gather(x, idx)` along `axis`: a parallel loop over the result that reads each index
    /// (an input of the generic, so it fuses with what computes the indices) and the element
    /// of x it names, the index counted from the end when negative and clamped.
    fn take(&mut self, x: &(String, TensorType), idx: &(String, TensorType), axis: usize, ty: &TensorType) -> String {
        let rank = idx.1.rank();
        let input = GenericInput::new(&idx.0, &idx.1, (axis..axis + rank).map(|d| format!("d{d}")).collect());
        let (n, ie) = (x.1.shape[axis], elem(idx.1.dtype));
        self.parallel(&ty.shape, elem(ty.dtype), &[input], |b, a| {
            let raw = b.op(format!("{} {} : {ie} to index", index_cast(idx.1.dtype), a[0]));
            let j = counted_from_end(b, &raw, n);
            let zero = b.op("arith.constant 0 : index".into());
            let last = b.op(format!("arith.constant {} : index", n - 1));
            let low = b.op(format!("arith.maxsi {j}, {zero} : index"));
            let at = b.op(format!("arith.minsi {low}, {last} : index"));
            let mut coords: Vec<String> = (0..axis).map(|d| b.op(format!("linalg.index {d} : index"))).collect();
            coords.push(at);
            coords.extend((axis + rank..ty.rank()).map(|d| b.op(format!("linalg.index {d} : index"))));
            b.op(format!("tensor.extract {}[{}] : {}", x.0, coords.join(", "), tensor(&x.1)))
        })
    }

    /// `scatter(x, idx, updates)` along `axis`: a serial loop over the updates in row-major
    /// order (so that the last of several `set`s to one element wins, as in the interpreter),
    /// carrying x: each update whose index, counted from the end when negative, lies inside
    /// the axis is combined into the element it names. Bufferization writes the carried
    /// tensor in place.
    fn scatter(
        &mut self,
        x: &(String, TensorType),
        idx: &(String, TensorType),
        updates: &(String, TensorType),
        axis: usize,
        kind: ScatterKind,
    ) -> String {
        let total = updates.1.num_elements();
        if total == 0 {
            return x.0.clone();
        }
        let (tx, n, rank, d) = (tensor(&x.1), x.1.shape[axis], idx.1.rank(), x.1.dtype);
        if total == 1 {
            // One update (canonicalization would unroll its loop into statements that a GPU
            // cannot keep in one kernel): a parallel loop over x that combines it into the one
            // element it names, if any.
            let single = |t: &TensorType| vec!["0".to_string(); t.rank()];
            let inputs = [
                GenericInput::new(&x.0, &x.1, identity_exprs(x.1.rank())),
                GenericInput::new(&idx.0, &idx.1, single(&idx.1)),
                GenericInput::new(&updates.0, &updates.1, single(&updates.1)),
            ];
            let ie = elem(idx.1.dtype);
            return self.parallel(&x.1.shape, elem(d), &inputs, |b, a| {
                let raw = b.op(format!("{} {} : {ie} to index", index_cast(idx.1.dtype), a[1]));
                let j = counted_from_end(b, &raw, n);
                let here = b.op(format!("linalg.index {axis} : index"));
                let target = b.op(format!("arith.cmpi eq, {here}, {j} : index"));
                let combined = match kind.combiner() {
                    None => a[2].clone(),
                    Some(op) => b.binary(op, &a[0], &a[2], d),
                };
                b.op(format!("arith.select {target}, {combined}, {} : {}", a[0], elem(d)))
            });
        }
        let zero = self.emitted("arith.constant 0 : index".into());
        let one = self.emitted("arith.constant 1 : index".into());
        let count = self.emitted(format!("arith.constant {total} : index"));
        let (iv, acc) = (self.fresh(), self.fresh());
        let mut b = Body { lines: String::new(), next: 0, libm: self.libm };
        // The update's coordinates, the last axis fastest.
        let shape = &updates.1.shape;
        let mut coords = vec![String::new(); shape.len()];
        let mut rest = iv.clone();
        for k in (0..shape.len()).rev() {
            if k == 0 {
                coords[0] = rest.clone();
            } else {
                let e = b.op(format!("arith.constant {} : index", shape[k]));
                coords[k] = b.op(format!("arith.remui {rest}, {e} : index"));
                rest = b.op(format!("arith.divui {rest}, {e} : index"));
            }
        }
        let ie = elem(idx.1.dtype);
        let k =
            b.op(format!("tensor.extract {}[{}] : {}", idx.0, coords[axis..axis + rank].join(", "), tensor(&idx.1)));
        let raw = b.op(format!("{} {k} : {ie} to index", index_cast(idx.1.dtype)));
        let j = counted_from_end(&mut b, &raw, n);
        let (c0, cn) = (b.op("arith.constant 0 : index".into()), b.op(format!("arith.constant {n} : index")));
        let above = b.op(format!("arith.cmpi sge, {j}, {c0} : index"));
        let below = b.op(format!("arith.cmpi slt, {j}, {cn} : index"));
        let inside = b.op(format!("arith.andi {above}, {below} : i1"));
        // A dropped update rewrites element 0 of the axis with its own value (no branch: a
        // serial loop on a GPU becomes one kernel, and a branch would stay on the host).
        let place = b.op(format!("arith.select {inside}, {j}, {c0} : index"));
        let at: Vec<String> =
            coords[..axis].iter().cloned().chain([place]).chain(coords[axis + rank..].iter().cloned()).collect();
        let at = at.join(", ");
        let old = b.op(format!("tensor.extract {acc}[{at}] : {tx}"));
        let u = b.op(format!("tensor.extract {}[{}] : {}", updates.0, coords.join(", "), tensor(&updates.1)));
        let combined = match kind.combiner() {
            None => u,
            Some(op) => b.binary(op, &old, &u, d),
        };
        let e = elem(d);
        let value = b.op(format!("arith.select {inside}, {combined}, {old} : {e}"));
        let inserted = b.op(format!("tensor.insert {value} into {acc}[{at}] : {tx}"));
        let _ = writeln!(b.lines, "      scf.yield {inserted} : {tx}");
        let r = self.fresh();
        self.line(format!(
            "{r} = scf.for {iv} = {zero} to {count} step {one} iter_args({acc} = {}) -> ({tx}) {{\n{}    }}",
            x.0, b.lines
        ));
        r
    }

    /// `x` with a window replaced by `update` at starts known when the program runs: on CPUs
    /// `tensor.insert_slice` with dynamic offsets (a write of the window in place once
    /// bufferized), on GPUs a select over x's elements.
    fn dynamic_update_slice(
        &mut self,
        x: &(String, TensorType),
        update: &(String, TensorType),
        starts: &[(String, TensorType)],
    ) -> String {
        if x.1.rank() == 0 {
            return update.0.clone();
        }
        if !self.gpu {
            let at = window_starts(&mut |text| self.emitted(text), starts, &x.1.shape, &update.1.shape);
            let n = self.fresh();
            let place = window(&at, &update.1.shape, &vec![1; x.1.rank()]);
            self.line(format!(
                "{n} = tensor.insert_slice {} into {}{place} : {} into {}",
                update.0,
                x.0,
                tensor(&update.1),
                tensor(&x.1)
            ));
            return n;
        }
        let input = GenericInput::new(&x.0, &x.1, identity_exprs(x.1.rank()));
        let e = elem(x.1.dtype);
        self.parallel(&x.1.shape.clone(), e, &[input], |b, a| {
            let at = window_starts(&mut |text| b.op(text), starts, &x.1.shape, &update.1.shape);
            let mut inside = b.op("arith.constant true".into());
            let mut idx = vec![];
            for (d, start) in at.iter().enumerate() {
                let i = b.op(format!("linalg.index {d} : index"));
                let offset = b.op(format!("arith.subi {i}, {start} : index"));
                let zero = b.op("arith.constant 0 : index".into());
                let size = b.op(format!("arith.constant {} : index", update.1.shape[d]));
                let above = b.op(format!("arith.cmpi sge, {offset}, {zero} : index"));
                let below = b.op(format!("arith.cmpi slt, {offset}, {size} : index"));
                let both = b.op(format!("arith.andi {above}, {below} : i1"));
                inside = b.op(format!("arith.andi {inside}, {both} : i1"));
                // Clamped into the update, read whether or not inside.
                let last = b.op(format!("arith.constant {} : index", update.1.shape[d] - 1));
                let low = b.op(format!("arith.maxsi {offset}, {zero} : index"));
                idx.push(b.op(format!("arith.minsi {low}, {last} : index")));
            }
            let u = b.op(format!("tensor.extract {}[{}] : {}", update.0, idx.join(", "), tensor(&update.1)));
            b.op(format!("arith.select {inside}, {u}, {} : {e}", a[0]))
        })
    }

    /// Concatenation: each operand copied into its window of the result (`tensor.extract_slice`
    /// of the destination, written in place after bufferization); an operand that is a slice
    /// is copied straight from the view it slices.
    fn concat(&mut self, operands: &[(String, TensorType)], axis: usize, ty: &TensorType) -> String {
        if self.gpu {
            return self.concat_gather(operands, axis, ty);
        }
        let rank = ty.rank();
        let mut result = self.empty(&ty.shape, elem(ty.dtype));
        let mut offsets = vec![0; rank];
        for (name, t) in operands {
            let source = self.views.get(name).cloned().unwrap_or_else(|| name.clone());
            let at = window(&offsets, &t.shape, &vec![1; rank]);
            result = self.write_window(&result, ty, &at, t, |e, dest| e.copy(&source, dest, t));
            offsets[axis] += t.shape[axis];
        }
        result
    }

    /// Concatenation as one loop nest over the result (GPUs): each element reads every operand
    /// at its index clamped into that operand, and selects the one whose window holds it.
    fn concat_gather(&mut self, operands: &[(String, TensorType)], axis: usize, ty: &TensorType) -> String {
        let rank = ty.rank();
        let e = elem(ty.dtype);
        self.parallel(&ty.shape, e, &[], |b, _| {
            let idx: Vec<String> = (0..rank).map(|d| b.op(format!("linalg.index {d} : index"))).collect();
            let mut offset = 0;
            let mut result: Option<String> = None;
            for (name, t) in operands {
                let len = t.shape[axis];
                // Index along the axis inside this operand, clamped to [0, len - 1].
                let off = b.op(format!("arith.constant {offset} : index"));
                let last = b.op(format!("arith.constant {} : index", len - 1));
                let zero = b.op("arith.constant 0 : index".into());
                let local = b.op(format!("arith.subi {}, {off} : index", idx[axis]));
                let low = b.op(format!("arith.maxsi {local}, {zero} : index"));
                let clamped = b.op(format!("arith.minsi {low}, {last} : index"));
                let mut at = idx.clone();
                at[axis] = clamped;
                let v = b.op(format!("tensor.extract {name}[{}] : {}", at.join(", "), tensor(t)));
                result = Some(match result {
                    None => v,
                    Some(prev) => {
                        let inside = b.op(format!("arith.cmpi sge, {}, {off} : index", idx[axis]));
                        b.op(format!("arith.select {inside}, {v}, {prev} : {e}"))
                    }
                });
                offset += len;
            }
            result.expect("concat has operands")
        })
    }

    /// A reduction, accumulating f32 sums in f64. When the reduced axes are the trailing ones
    /// and hold a multiple of [`LANES`] elements (at least two rows of lanes), it runs with
    /// [`LANES`] partial results per output, each summing every LANES-th element (an inner loop
    /// over contiguous lanes that vectorizes), then the lanes combined. A reduction over one
    /// trailing axis that needs no chunks (a row reduction) is one loop nest: on CPUs the
    /// schedule splits it into lanes (`tile_reduction_using_for`) and can fuse it with the ops
    /// that produce and consume its rows; on GPUs each row gets a block of threads
    /// (`gpu::reduce`). The others are written in two stages here, through a reshape.
    fn reduce(&mut self, kind: ReduceKind, axes: &[usize], x: &(String, TensorType), ty: &TensorType) -> String {
        let rank = x.1.rank();
        let d = ty.dtype;
        let acc = if kind == ReduceKind::Sum && d == DType::F32 { DType::F64 } else { d };
        let n: usize = axes.iter().map(|&a| x.1.shape[a]).product();
        let trailing = axes.iter().enumerate().all(|(i, &a)| a == rank - axes.len() + i);
        let kept = &x.1.shape[..rank - axes.len()];
        let chunks = reduction_chunks(kept.iter().product(), n / LANES);
        let row = axes.len() == 1 && chunks == 1;
        let r = if trailing && !row && n >= 2 * LANES && n.is_multiple_of(LANES) {
            // [kept..., n] as [kept..., chunks, n / LANES / chunks, LANES]: partial results per
            // chunk and lane, then the chunks and lanes combined in a fixed order.
            let split =
                TensorType::new(x.1.dtype, kept.iter().copied().chain([chunks, n / LANES / chunks, LANES]).collect());
            let rows = self.reshape(x, &split.shape, &split);
            let lanes = TensorType::new(d, kept.iter().copied().chain([chunks, LANES]).collect());
            let partial = self.reduce_stage(kind, &[kept.len() + 1], &(rows, split), &lanes, acc);
            self.reduce_stage(kind, &[kept.len(), kept.len() + 1], &(partial, lanes.with_dtype(acc)), ty, acc)
        } else {
            self.reduce_stage(kind, axes, x, ty, acc)
        };
        if acc == d {
            r
        } else {
            self.map(&[(r, ty.with_dtype(acc))], ty, |b, a| b.convert(&a[0], acc, d), None)
        }
    }

    /// One reduction loop nest over `axes` of `x` into a tensor of `ty`'s shape with elements of
    /// dtype `acc`; loops run in `x`'s axis order.
    fn reduce_stage(
        &mut self,
        kind: ReduceKind,
        axes: &[usize],
        x: &(String, TensorType),
        ty: &TensorType,
        acc: DType,
    ) -> String {
        let rank = x.1.rank();
        let from = x.1.dtype;
        let filled = self.filled(&ty.shape, kind.identity(acc));
        let iters: Vec<&str> = (0..rank).map(|i| if axes.contains(&i) { "reduction" } else { "parallel" }).collect();
        let out_exprs: Vec<String> = (0..rank).filter(|i| !axes.contains(i)).map(|i| format!("d{i}")).collect();
        let input = GenericInput::new(&x.0, &x.1, identity_exprs(rank));
        let dest = Dest { init: &filled, shape: &ty.shape, elem: elem(acc), exprs: &out_exprs };
        self.generic(&iters, &[input], dest, |b, a| {
            let v = b.convert(&a[0], from, acc);
            b.binary(kind.combiner(), &a[1], &v, acc)
        })
    }

    /// A contraction as `linalg.contract`, a named op: MLIR's elementwise fusion only fuses into
    /// generic ops, so an elementwise producer is computed once rather than once per column of
    /// the product. Loops run over (batch, m, k, n): the inner loop walks rows of B and C
    /// contiguously (vectorizable), and each output still adds its k terms in increasing order.
    /// With `a_transposed`, `a` holds A^T (batch..., k, m) and is read through a transposed map:
    /// the transpose is never materialized.
    fn dot(
        &mut self,
        a: &(String, TensorType),
        a_transposed: bool,
        b: &(String, TensorType),
        ty: &TensorType,
    ) -> String {
        let r = ty.rank();
        if let Some(v) = vector_operand(ty).filter(|_| !self.gpu) {
            // The matrix, whether k is its outer axis, and the vector of k elements.
            let (matrix, k_outer, vector) = if v == 1 { (a, a_transposed, b) } else { (b, true, a) };
            return self.vector_product(matrix, k_outer, vector, ty);
        }
        let batch: Vec<String> = (0..r - 2).map(|i| format!("d{i}")).collect();
        let (m, k, n) = (format!("d{}", r - 2), format!("d{}", r - 1), format!("d{r}"));
        let with =
            |x: &[&String]| -> Vec<String> { batch.iter().cloned().chain(x.iter().map(|s| s.to_string())).collect() };
        let loops = r + 1;
        let a_axes = if a_transposed { [&k, &m] } else { [&m, &k] };
        let maps = [
            affine_map(loops, &with(&a_axes)),
            affine_map(loops, &with(&[&k, &n])),
            affine_map(loops, &with(&[&m, &n])),
        ];
        let b = &self.with_padded_rows(b, ty.shape[r - 2]);
        let filled = self.filled(&ty.shape, Literal::of_i64(ty.dtype, 0));
        let id = self.next_contraction_id();
        self.contractions.push(Contraction {
            id,
            batch: ty.shape[..r - 2].to_vec(),
            m: ty.shape[r - 2],
            k: b.1.shape[r - 2],
            n: ty.shape[r - 1],
            dtype: ty.dtype,
            a_transposed,
        });
        let t = tensor(ty);
        let head = format!("linalg.contract indexing_maps = [{}]", maps.join(", "));
        self.tagged(&head, a, b, &filled, ty, &format!(" {{kiln.contraction = {id} : i64}} -> {t}"))
    }

    /// A product of a matrix and a vector on CPUs (see [`vector_operand`]) as a `linalg.generic` that sums
    /// the products over k in the product's dtype (as BLAS's gemv), loops in the matrix's
    /// memory order: a row reduction, or a column reduction when k is the matrix's outer axis
    /// (`k_outer`). The reduction schedules then read the matrix once, vectorized along its
    /// rows. As a contraction of one column, the register tile held one element per row and
    /// the loop ran scalar code (A @ v of 2048 took 0.79 ms, v @ A 1.8 ms; see
    /// docs/performance.md).
    fn vector_product(
        &mut self,
        matrix: &(String, TensorType),
        k_outer: bool,
        vector: &(String, TensorType),
        ty: &TensorType,
    ) -> String {
        let (m, n) = (ty.shape[0], ty.shape[1]);
        let k = if k_outer { matrix.1.shape[0] } else { matrix.1.shape[1] };
        let flat = TensorType::new(vector.1.dtype, vec![k]);
        let vector = (self.reshape(vector, &[k], &flat), flat);
        let out = TensorType::new(ty.dtype, vec![m * n]);
        let (iters, k_loop, other) =
            if k_outer { (["reduction", "parallel"], "d0", "d1") } else { (["parallel", "reduction"], "d1", "d0") };
        let inputs = [
            GenericInput::new(&matrix.0, &matrix.1, identity_exprs(2)),
            GenericInput::new(&vector.0, &vector.1, vec![k_loop.to_string()]),
        ];
        let filled = self.filled(&out.shape, Literal::of_i64(ty.dtype, 0));
        let d = ty.dtype;
        let dest = Dest { init: &filled, shape: &out.shape, elem: elem(d), exprs: &[other.to_string()] };
        let sums = self.generic(&iters, &inputs, dest, |b, x| {
            let product = b.binary(BinaryOp::Mul, &x[0], &x[1], d);
            b.binary(BinaryOp::Add, &x[2], &product, d)
        });
        self.reshape(&(sums, out), &ty.shape, ty)
    }

    /// Writes `{out} = {head} ins({a}, {b} : ..) outs({init} : {ty}){tail}`, the form of the
    /// tagged ops (contractions, convolutions), and returns `out`.
    fn tagged(
        &mut self,
        head: &str,
        a: &(String, TensorType),
        b: &(String, TensorType),
        init: &str,
        ty: &TensorType,
        tail: &str,
    ) -> String {
        let out = self.fresh();
        self.line(format!(
            "{out} = {head} ins({}, {} : {}, {}) outs({init} : {}){tail}",
            a.0,
            b.0,
            tensor(&a.1),
            tensor(&b.1),
            tensor(ty)
        ));
        out
    }

    /// The id of the next contraction or convolution.
    fn next_contraction_id(&self) -> usize {
        self.first_contraction + self.contractions.len() + self.convolutions.len()
    }

    /// A stride-1 convolution with non-negative padding (what [`crate::lower::expand`] leaves
    /// for CPU targets): the input copied once into a buffer of the padded size with zeroed
    /// borders, then one generic whose products are fused into FMAs (`contract`), on one line
    /// so that it can be hidden from elementwise fusion like a contraction.
    fn conv(
        &mut self,
        x: &(String, TensorType),
        w: &(String, TensorType),
        win: &kiln_ir::ConvWindow,
        ty: &TensorType,
    ) -> String {
        let plain = kiln_ir::ConvWindow {
            pad_lo: win.pad_lo,
            pad_hi: win.pad_hi,
            ..kiln_ir::ConvWindow::new([1, 1], [0, 0], win.rhs_dilation)
        };
        assert!(
            *win == plain && win.pad_lo.iter().chain(&win.pad_hi).all(|&p| p >= 0),
            "conv2d reaches emission with stride 1 and no cropping (lower.rs)"
        );
        let (lo, hi) = (win.pad_lo.map(|p| p as usize), win.pad_hi.map(|p| p as usize));
        let padded = self.zero_padded(x, &[0, lo[0], lo[1], 0], &[0, hi[0], hi[1], 0]);
        let x = &padded;
        let [dh, dw] = win.rhs_dilation;
        let exprs = |e: &[&str]| e.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let maps = [
            affine_map(7, &exprs(&["d0", &format!("d1 + d4 * {dh}"), &format!("d2 + d5 * {dw}"), "d6"])),
            affine_map(7, &exprs(&["d4", "d5", "d6", "d3"])),
            affine_map(7, &exprs(&["d0", "d1", "d2", "d3"])),
        ];
        let (xs, ws) = (&x.1.shape, &w.1.shape);
        let id = self.next_contraction_id();
        self.convolutions.push(Convolution {
            id,
            loops: [ty.shape[0], ty.shape[1], ty.shape[2], ty.shape[3], ws[0], ws[1], xs[3]],
            dtype: ty.dtype,
        });
        let filled = self.filled(&ty.shape, Literal::of_i64(ty.dtype, 0));
        let (e, t) = (elem(ty.dtype), tensor(ty));
        let head = format!(
            "linalg.generic {{indexing_maps = [{}], iterator_types = [\"parallel\", \"parallel\", \"parallel\", \"parallel\", \"reduction\", \"reduction\", \"reduction\"]}}",
            maps.join(", ")
        );
        let tail = format!(
            " attrs = {{kiln.contraction = {id} : i64}} {{ ^bb0(%a0: {e}, %a1: {e}, %acc: {e}): %s0 = arith.mulf %a0, %a1 fastmath<contract> : {e} %s1 = arith.addf %acc, %s0 fastmath<contract> : {e} linalg.yield %s1 : {e} }} -> {t}"
        );
        self.tagged(&head, x, w, &filled, ty, &tail)
    }

    /// The right operand of a product with `m` rows, read through a copy whose rows are one
    /// cache line longer when its row length in bytes is a multiple of 256 and the target's
    /// table says the copy pays for m rows (`MatmulTiles::pad_b_from_m`). The register tile
    /// reads a column of rows of B; with such a stride they fall in a few L1 sets and evict one
    /// another before the next register tile reuses them (matmul 1024^3 on AVX2: 69 GFLOP/s,
    /// against 112 at 1000^3 and 120 padded).
    fn with_padded_rows(&mut self, b: &(String, TensorType), m: usize) -> (String, TensorType) {
        let rank = b.1.rank();
        let row_bytes = b.1.shape[rank - 1] * b.1.dtype.size_bytes();
        if self.pad_b_from_m.is_none_or(|from| m < from) || !row_bytes.is_multiple_of(256) {
            return b.clone();
        }
        let line = 64 / b.1.dtype.size_bytes();
        let mut after = vec![0; rank];
        after[rank - 1] = line;
        // The padding columns are zeroed (a line per row): that also keeps canonicalization
        // from folding the view below into the copy, which would drop the padded stride.
        let padded = self.zero_padded(b, &vec![0; rank], &after);
        let rows = window(&vec![0; rank], &b.1.shape, &vec![1; rank]);
        (self.extract_slice(&padded.0, &padded.1, &rows, &b.1), b.1.clone())
    }

    /// `x` copied into a buffer with `before` and `after` zeros along each axis (itself when
    /// there are none): the copy into the middle of an empty buffer, then the slabs around it
    /// zeroed, along each axis the slab before and the slab after, as wide as the copy along
    /// the axes before it and as the buffer along the axes after it.
    fn zero_padded(&mut self, x: &(String, TensorType), before: &[usize], after: &[usize]) -> (String, TensorType) {
        if before.iter().chain(after).all(|&p| p == 0) {
            return x.clone();
        }
        let rank = x.1.rank();
        let shape: Vec<usize> = (0..rank).map(|a| before[a] + x.1.shape[a] + after[a]).collect();
        let padded = TensorType::new(x.1.dtype, shape);
        let ones = vec![1; rank];
        let empty = self.empty(&padded.shape, elem(x.1.dtype));
        let middle = window(before, &x.1.shape, &ones);
        let mut cur = self.write_window(&empty, &padded, &middle, &x.1, |e, dest| e.copy(&x.0, dest, &x.1));
        let zero = Literal::of_i64(x.1.dtype, 0);
        for a in 0..rank {
            for (start, len) in [(0, before[a]), (before[a] + x.1.shape[a], after[a])] {
                if len == 0 {
                    continue;
                }
                let mut offsets: Vec<usize> = before[..a].to_vec();
                let mut sizes: Vec<usize> = x.1.shape[..a].to_vec();
                offsets.push(start);
                sizes.push(len);
                offsets.extend(std::iter::repeat_n(0, rank - a - 1));
                sizes.extend_from_slice(&padded.shape[a + 1..]);
                let slab = TensorType::new(x.1.dtype, sizes);
                let place = window(&offsets, &slab.shape, &ones);
                cur = self.write_window(&cur, &padded, &place, &slab, |e, dest| e.fill(dest, &slab.shape, zero));
            }
        }
        (cur, padded)
    }

    /// Row-major reshape: collapse to one dimension, then expand to the target.
    fn reshape(&mut self, x: &(String, TensorType), shape: &[usize], ty: &TensorType) -> String {
        let (name, from) = x;
        let n = from.num_elements();
        let flat = TensorType::new(ty.dtype, vec![n]);
        let all = |rank: usize| format!("[[{}]]", (0..rank).map(|i| i.to_string()).collect::<Vec<_>>().join(", "));
        // Rank 0 to or from anything: every dimension is 1 and the reassociation is empty.
        let collapsed = match from.rank() {
            1 => name.clone(),
            0 => {
                let t = self.fresh();
                self.line(format!(
                    "{t} = tensor.expand_shape {name} [] output_shape [1] : {} into {}",
                    tensor(from),
                    tensor(&flat)
                ));
                t
            }
            r => {
                let t = self.fresh();
                self.line(format!(
                    "{t} = tensor.collapse_shape {name} {} : {} into {}",
                    all(r),
                    tensor(from),
                    tensor(&flat)
                ));
                t
            }
        };
        match shape.len() {
            1 => collapsed,
            0 => {
                let t = self.fresh();
                self.line(format!(
                    "{t} = tensor.collapse_shape {collapsed} [] : {} into {}",
                    tensor(&flat),
                    tensor(ty)
                ));
                t
            }
            r => {
                let t = self.fresh();
                let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
                self.line(format!(
                    "{t} = tensor.expand_shape {collapsed} {} output_shape [{}] : {} into {}",
                    all(r),
                    dims.join(", "),
                    tensor(&flat),
                    tensor(ty)
                ));
                t
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vector of a product of a matrix and a vector ends its fusion group when an
    /// elementwise op computes it (through a reshape), so that it is computed once, not once
    /// per row of the matrix; a matrix operand, or either operand of a product of matrices,
    /// does not.
    #[test]
    fn the_vector_of_a_matrix_vector_product_is_computed_once() {
        let mut f = Func::new("f", Span::default());
        let ty = |shape: &[usize]| TensorType::new(DType::F32, shape.to_vec());
        let a = f.add_param("a", ty(&[8, 5]), Span::default());
        let v = f.add_param("v", ty(&[5]), Span::default());
        let m = f.add_param("m", ty(&[5, 3]), Span::default());
        let push = |f: &mut Func, op: Op, args: Vec<Value>| f.push(op, args, Span::default()).unwrap();
        let ta = push(&mut f, Op::Unary(UnaryOp::Tanh), vec![a]);
        let tv = push(&mut f, Op::Unary(UnaryOp::Tanh), vec![v]);
        let column = push(&mut f, Op::Reshape { shape: vec![5, 1] }, vec![tv]);
        let product = push(&mut f, Op::Dot, vec![ta, column]);
        let tm = push(&mut f, Op::Unary(UnaryOp::Tanh), vec![m]);
        let matrices = push(&mut f, Op::Dot, vec![ta, tm]);
        f.results = vec![product, matrices];
        f.result_names = vec!["p".into(), "q".into()];
        let barriers = fusion_barriers(&f);
        assert!(barriers[tv.index()]);
        assert!(!barriers[ta.index()] && !barriers[tm.index()]);
    }

    /// A span written as a location name is read back from the location, also where passes
    /// wrapped it (fused, inlined, a name's child); other locations name none.
    #[test]
    fn spans_round_trip_through_location_names() {
        use melior::ir::{Attribute, Location};
        let mlir = crate::context::Mlir::new();
        let c = &mlir.context;
        let span = Span::new(12, 30);
        let named = Location::name(c, &span_location(span), Location::unknown(c));
        let read = crate::context::location_span;
        assert_eq!(read(named), Some(span));
        let other = Location::new(c, "m.kn", 3, 4);
        assert_eq!(read(Location::fused(c, &[other, named], Attribute::unit(c))), Some(span));
        assert_eq!(read(Location::call_site(named, other)), Some(span));
        assert_eq!(read(Location::name(c, "outer", named)), Some(span));
        assert_eq!(read(Location::name(c, "kiln.span:x-1", other)), None);
        assert_eq!(read(other), None);
    }
}
