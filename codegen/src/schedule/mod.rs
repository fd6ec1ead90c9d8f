//! Loop schedules for contractions, applied with MLIR's transform dialect before bufferization.
//!
//! Every `linalg.contract` the emitter produces carries `{kiln.contraction = ID}`; this module
//! writes one transform script (`@__transform_main`) that, for each of them:
//!
//! 1. tiles (batch, m, n) into cache tiles: a B panel of `cache_k x cache_n` stays in L2 while
//!    `cache_m` rows of A stream past it;
//! 2. tiles k by `cache_k`: small k tiles keep the rows of B a register tile touches in L1 even
//!    when the row stride is a power of two (the rows alias in L1 sets);
//! 3. tiles (m, n, k) by (`reg_m`, `reg_n`, 1), k innermost: the `reg_m x reg_n` tile of C lives
//!    in vector registers across the k loop, which is unrolled by `unroll_k`;
//! 4. peels every loop whose extent the tile does not divide, innermost first, so that every
//!    tile has a static shape (the main loops run full tiles, one remainder iteration runs the
//!    rest) and vectorization needs no masks;
//!
//! and then, for all of them together: vectorizes the tiled contractions, turns the vector
//! contractions into outer products (one broadcast of A and `reg_n / lanes` FMAs per row and k
//! step), hoists the C tile out of the k loop (loop-invariant subsets become `iter_args`), and
//! lowers the vector transfers to plain loads and stores.
//!
//! Direct convolutions (a stride-1 conv2d left by `lower.rs`, one generic over (n, oh, ow, f,
//! kh, kw, c), also tagged `kiln.contraction`) reuse the register tile: one result row per
//! iteration of the outer loops, `reg_m` pixels by `reg_n` channels accumulated over every
//! tap and input channel, vectorized once the taps' unit loops are folded away
//! ([`tile_convolution`]).
//!
//! Row-wise chains of reductions and elementwise ops (softmax, layernorm) first become row
//! groups, one loop over rows with every op of the chain fused into it ([`rows`]).
//!
//! Every other `linalg.generic` (elementwise chains after fusion, reductions, broadcasts), and
//! every member of a row group inside its loop, is vectorized along its innermost loop: [`tag`]
//! marks it `{kiln.vectorize = ID}` after elementwise fusion (and `{kiln.recipe = R}`, its
//! schedule, shared by the generics that get the same one), and the script tiles its outer
//! loops by 1 and its innermost loop by two vector registers' worth of elements
//! ([`RegisterFile::vector_elements`]), peels the remainder, and vectorizes the tiles. A
//! reduction over its innermost loop (a row reduction) is split into partial results instead
//! (`tile_reduction_using_for`): [`LANES`] of them for float sums, whose result depends on the
//! order (the same on every target), and four vector registers' worth for max, min and integer
//! sums, which are exact in any order; the partial results live in registers across the row
//! and are combined once at its end. A transpose (an input whose contiguous axis is not the
//! result's) is tiled in squares of one register's lanes instead, read by contiguous rows and
//! transposed in registers with shuffles (reading a column element by element measured 7x
//! slower). Explicit vectors do not depend on LLVM proving that
//! intermediate buffers, which are all views of one workspace, do not overlap.
//!
//! The tile sizes come from [`MatmulTiles::for_target`], one row per register file.

use crate::mlir::{Contraction, Convolution, LANES};
use crate::target::RegisterFile;
use melior::ir::attribute::AttributeLike;
use melior::ir::attribute::IntegerAttribute;
use melior::ir::operation::OperationRef;
use melior::ir::operation::{OperationLike, WalkOrder, WalkResult};
use melior::ir::r#type::IntegerType;
use melior::ir::r#type::TypeLike;
use melior::ir::{BlockLike, Module, RegionLike, ValueLike};
use melior::{Context, StringRef};
use std::collections::HashMap;
use std::fmt::Write;

pub mod rows;

/// A `linalg.generic` tagged for vectorization, with its static loop extents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Generic {
    pub id: usize,
    pub extents: Vec<usize>,
    /// Whether the outermost loop is parallel (not a reduction).
    pub parallel_outer: bool,
    /// Whether the op vectorizes; the others (gathers, bool operands) only get their outermost
    /// loop, for threads.
    pub vectorize: bool,
    /// Whether the innermost loop is the only reduction and holds whole rows of
    /// [`LANES`]: the schedule splits it into partial results (see `mlir::reduce`).
    pub lanes: bool,
    /// Whether the reduction's result depends on the order of its terms (a float sum or
    /// product): it then has exactly [`LANES`] partial results, on every target; the others
    /// (max, min, integer sums) get as many as keep four vector registers busy.
    pub ordered: bool,
    /// Leading loops that a row group already runs one at a time (0 outside groups).
    pub grouped: usize,
    /// The loop that walks the innermost axis of an input, when it is not the innermost loop
    /// (a transpose): both loops are tiled by a vector's lanes, so that the tile is read by
    /// contiguous rows and transposed in registers.
    pub transposed: Option<usize>,
}

/// The ops of a module that the schedule transforms, tagged in the module.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tagged {
    pub generics: Vec<Generic>,
    pub groups: Vec<rows::RowGroup>,
    /// The generics' distinct schedules, each by the first generic that has it. A generic is
    /// tagged `kiln.recipe = R` with the index of its schedule here: the script matches each
    /// schedule once, since a match walks the whole module (one match per generic made the
    /// schedule quadratic in long programs).
    pub recipes: Vec<usize>,
    /// The products' (contractions' and direct convolutions') distinct schedules, each by the
    /// id of the first product that has it; a product is tagged `kiln.product_recipe = R`, as
    /// generics are tagged with their recipes, and for the same reason.
    pub products: Vec<usize>,
}

/// Tags every `linalg.generic` (and `linalg.copy`, see `mlir::copy`) of `module` that the
/// schedule tiles with `kiln.vectorize = ID`, finds the row groups among them (see [`rows`]),
/// and returns both, in walk order (deterministic). Left alone: ops without loops and ops whose indexing maps are not
/// projected permutations (MLIR's vectorizer rejects them). Tiled for threads but left scalar:
/// ops that gather (`tensor.extract` in the body; vector gathers are slower than scalar loads)
/// and ops with bool operands (vectors of `i1` are bit-packed in memory, bool buffers hold a
/// byte per element).
pub fn tag(context: &Context, module: &Module, products: &Products, registers: RegisterFile) -> Tagged {
    tag_within(context, module, products, registers, rows::ROW_FUSION_BUDGET)
}

/// The products the emitter made, which the schedule tiles: contractions and direct
/// convolutions, with ids shared between them (`kiln.contraction = ID`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Products<'a> {
    pub contractions: &'a [Contraction],
    pub convolutions: &'a [Convolution],
}

/// One product the schedule tiles.
#[derive(Clone, Copy, Debug)]
enum Product<'a> {
    Contraction(&'a Contraction),
    Convolution(&'a Convolution),
}

impl<'a> Products<'a> {
    /// Every product by its id.
    fn by_id(&self) -> std::collections::BTreeMap<usize, Product<'a>> {
        let contractions = self.contractions.iter().map(|c| (c.id, Product::Contraction(c)));
        contractions.chain(self.convolutions.iter().map(|c| (c.id, Product::Convolution(c)))).collect()
    }
}

impl Product<'_> {
    /// Writes the schedule of the products of recipe `recipe`, scheduled as this one.
    fn schedule(self, s: &mut String, recipe: usize, registers: RegisterFile) {
        let bits = |dtype: kiln_ir::DType| dtype.size_bytes() * 8;
        match self {
            Product::Contraction(c) => {
                tile_contraction(s, recipe, c, MatmulTiles::for_target(registers, bits(c.dtype)).clamped(c))
            }
            Product::Convolution(c) => {
                tile_convolution(s, recipe, c, MatmulTiles::for_target(registers, bits(c.dtype)))
            }
        }
    }
}

/// [`tag`], with row fusion limited to `budget` per function (see `rows::ROW_FUSION_BUDGET`).
fn tag_within(
    context: &Context,
    module: &Module,
    products: &Products,
    registers: RegisterFile,
    budget: usize,
) -> Tagged {
    let mut generics = vec![];
    let mut generic_ops = vec![];
    let mut nodes = vec![];
    let mut fills = 0;
    let mut empties = 0;
    let i64_type = IntegerType::new(context, 64).into();
    // Products whose schedules read the same (written for one recipe) share a recipe.
    let mut recipes_of_products = vec![];
    let mut product_recipe: std::collections::BTreeMap<usize, usize> = Default::default();
    let mut by_schedule: HashMap<String, usize> = HashMap::new();
    for (&id, product) in &products.by_id() {
        let mut schedule = String::new();
        product.schedule(&mut schedule, 0, registers);
        let recipe = *by_schedule.entry(schedule).or_insert_with(|| {
            recipes_of_products.push(id);
            recipes_of_products.len() - 1
        });
        product_recipe.insert(id, recipe);
    }
    // The function being walked: its index and its ops (see `rows::ROW_FUSION_BUDGET`).
    let mut function = (0, 0);
    let mut functions = 0;
    module.as_operation().walk(WalkOrder::PreOrder, |op| {
        let product = op.attribute("kiln.contraction").ok().and_then(|a| IntegerAttribute::try_from(a).ok());
        if let Some(&recipe) = product.and_then(|id| product_recipe.get(&usize::try_from(id.value()).ok()?)) {
            set_tag(&op, "kiln.product_recipe", IntegerAttribute::new(i64_type, recipe as i64).into());
        }
        match op.name().as_string_ref().as_str() {
            Ok("func.func") => {
                let mut ops = 0usize;
                op.walk(WalkOrder::PreOrder, |_| {
                    ops += 1;
                    WalkResult::Advance
                });
                function = (functions, ops);
                functions += 1;
            }
            Ok("linalg.generic") => {
                if let Some(loops) = loops_of(&op) {
                    let id = generics.len();
                    set_tag(&op, "kiln.vectorize", IntegerAttribute::new(i64_type, id as i64).into());
                    generic_ops.push(op.to_raw());
                    let inner = loops.extents[loops.extents.len() - 1];
                    let reductions = loops.parallel.iter().filter(|&&p| !p).count();
                    generics.push(Generic {
                        id,
                        parallel_outer: loops.parallel[0],
                        vectorize: loops.vectorize,
                        lanes: loops.vectorize
                            && reductions == 1
                            && !loops.parallel[loops.parallel.len() - 1]
                            && inner >= 2 * LANES
                            && inner.is_multiple_of(LANES),
                        grouped: 0,
                        ordered: float_combiner(&op),
                        transposed: loops.transposed.filter(|_| loops.vectorize && loops.parallel.iter().all(|&p| p)),
                        extents: loops.extents.clone(),
                    });
                    nodes.push(rows::Node::new(&op, rows::Member::Generic(id), loops, function));
                }
            }
            Ok("linalg.copy") => {
                if let Some(loops) = elementwise_loops(&op) {
                    let id = generics.len();
                    set_tag(&op, "kiln.vectorize", IntegerAttribute::new(i64_type, id as i64).into());
                    generic_ops.push(op.to_raw());
                    generics.push(Generic {
                        id,
                        parallel_outer: true,
                        vectorize: loops.vectorize,
                        lanes: false,
                        ordered: false,
                        grouped: 0,
                        transposed: None,
                        extents: loops.extents.clone(),
                    });
                }
            }
            Ok("tensor.empty") => {
                // Distinct empty tensors stay distinct under cse (see `MERGE_FUSED`).
                set_tag(&op, "kiln.empty", IntegerAttribute::new(i64_type, empties as i64).into());
                empties += 1;
            }
            Ok("linalg.fill") => {
                if let Some(loops) = elementwise_loops(&op) {
                    nodes.push(rows::Node::new(&op, rows::Member::Fill(fills), loops, function));
                    fills += 1;
                }
            }
            _ => {}
        }
        WalkResult::Advance
    });
    let groups = rows::find(&nodes, &generics, budget);
    for group in &groups {
        for (node, member) in group.nodes.iter().zip(&group.producers) {
            if let rows::Member::Fill(id) = member {
                set_tag(&nodes[*node].op(), "kiln.fill", IntegerAttribute::new(i64_type, *id as i64).into());
            }
        }
        for g in std::iter::once(group.root).chain(group.producers.iter().filter_map(|m| m.generic())) {
            generics[g].grouped = group.dims;
        }
    }
    // Generics whose schedules read the same (written for one id) share a recipe.
    let mut recipes = vec![];
    let mut by_schedule: HashMap<(bool, String), usize> = HashMap::new();
    for (g, &op) in generics.iter().zip(&generic_ops) {
        let mut schedule = String::new();
        tile_generic(&mut schedule, 0, g, registers.vector_elements());
        let recipe = *by_schedule.entry((g.vectorize, schedule)).or_insert_with(|| {
            recipes.push(g.id);
            recipes.len() - 1
        });
        // SAFETY: the op belongs to `module`, alive and unchanged since the walk.
        let op = unsafe { OperationRef::from_raw(op) };
        set_tag(&op, "kiln.recipe", IntegerAttribute::new(i64_type, recipe as i64).into());
    }
    Tagged { generics, groups, recipes, products: recipes_of_products }
}

/// Whether a generic's yielded value comes from a float add or multiply: a reduction whose
/// value depends on the order of its terms.
fn float_combiner<'c: 'a, 'a>(op: &impl OperationLike<'c, 'a>) -> bool {
    let combiner = || -> Option<bool> {
        let block = op.region(0).ok()?.first_block()?;
        let value = block.terminator()?.operand(0).ok()?.to_raw();
        // SAFETY: `value` is a live value of the op's body; its owner is read only for results.
        let owner = unsafe {
            if !mlir_sys::mlirValueIsAOpResult(value) {
                return Some(false);
            }
            OperationRef::from_raw(mlir_sys::mlirOpResultGetOwner(value))
        };
        Some(matches!(owner.name().as_string_ref().as_str(), Ok("arith.addf" | "arith.mulf")))
    };
    combiner().unwrap_or(true)
}

/// Sets a discardable attribute on an op.
fn set_tag<'c: 'a, 'a>(op: &impl OperationLike<'c, 'a>, name: &str, value: melior::ir::Attribute<'c>) {
    // SAFETY: the attribute belongs to the op's context, which outlives the call.
    unsafe {
        mlir_sys::mlirOperationSetDiscardableAttributeByName(
            op.to_raw(),
            StringRef::new(name).to_raw(),
            value.to_raw(),
        );
    }
}

/// The loop nest of a linalg op, as the schedule sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Loops {
    /// Static extent of each loop.
    pub extents: Vec<usize>,
    /// Whether each loop is parallel (not a reduction).
    pub parallel: Vec<bool>,
    /// Leading loops that are parallel and index the leading axes of the result in order: a
    /// row of the result is an iteration of them.
    pub row_dims: usize,
    /// For each operand, how many leading loops index its leading axes in order: a row of the
    /// result reads only the same row of such an operand.
    pub operand_rows: Vec<usize>,
    /// Whether the op vectorizes (see [`tag`]).
    pub vectorize: bool,
    /// The loop walking the innermost axis of an input, when it is not the innermost loop.
    pub transposed: Option<usize>,
    /// Bytes of the result.
    pub bytes: usize,
}

/// The loops of a `linalg.generic`, read from its indexing maps and static operand shapes;
/// `None` when it has no loops or maps that are not projected permutations (see [`tag`]).
fn loops_of<'c: 'a, 'a>(op: &impl OperationLike<'c, 'a>) -> Option<Loops> {
    let maps = op.attribute("indexing_maps").ok()?.to_raw();
    let iterators = op.attribute("iterator_types").ok()?.to_string();
    let parallel: Vec<bool> = iterators.split(',').map(|i| i.contains("parallel")).collect();
    let mut gathers = false;
    op.walk(WalkOrder::PreOrder, |inner| {
        gathers |= inner.name().as_string_ref().as_str() == Ok("tensor.extract");
        WalkResult::Advance
    });
    let mut vectorize = !gathers;
    let mut extents: Vec<Option<usize>> = vec![None; parallel.len()];
    let mut operand_rows = vec![];
    let mut transposed = None;
    let inputs = op.operand_count().saturating_sub(1);
    for i in 0..op.operand_count() {
        let ty = op.operand(i).ok()?.r#type().to_raw();
        // SAFETY: `maps` is the op's ArrayAttr of AffineMapAttrs (one per operand) and `ty` a
        // ranked tensor type (the emitter writes no other operand types).
        unsafe {
            let element = mlir_sys::mlirShapedTypeGetElementType(ty);
            if mlir_sys::mlirTypeIsAInteger(element) && mlir_sys::mlirIntegerTypeGetWidth(element) == 1 {
                vectorize = false;
            }
            let map = mlir_sys::mlirAffineMapAttrGetValue(mlir_sys::mlirArrayAttrGetElement(maps, i as isize));
            if mlir_sys::mlirAffineMapGetNumDims(map) as usize != parallel.len() {
                return None;
            }
            let results = mlir_sys::mlirAffineMapGetNumResults(map) as usize;
            let mut rows = results;
            for r in 0..results {
                let expr = mlir_sys::mlirAffineMapGetResult(map, r as isize);
                if mlir_sys::mlirAffineExprIsADim(expr) {
                    let d = mlir_sys::mlirAffineDimExprGetPosition(expr) as usize;
                    let size = mlir_sys::mlirShapedTypeGetDimSize(ty, r as isize);
                    extents[d] = usize::try_from(size).ok();
                    if r < rows && d != r {
                        rows = r;
                    }
                } else if mlir_sys::mlirAffineExprIsAConstant(expr)
                    && mlir_sys::mlirAffineConstantExprGetValue(expr) == 0
                {
                    // The 0 of a broadcast size-1 axis.
                    rows = rows.min(r);
                } else {
                    return None;
                }
            }
            operand_rows.push(rows);
            if i < inputs && results > 0 {
                let last = mlir_sys::mlirAffineMapGetResult(map, results as isize - 1);
                if mlir_sys::mlirAffineExprIsADim(last)
                    && mlir_sys::mlirShapedTypeGetDimSize(ty, results as isize - 1) > 1
                {
                    let d = mlir_sys::mlirAffineDimExprGetPosition(last) as usize;
                    if d + 1 != parallel.len() && parallel[d] {
                        transposed = Some(d);
                    }
                }
            }
        }
    }
    let extents: Vec<usize> = extents.into_iter().collect::<Option<_>>()?;
    let bytes = result_bytes(op)?;
    // The result is the last operand (the init).
    let row_dims = operand_rows.last().copied()?.min(parallel.iter().take_while(|&&p| p).count());
    (!extents.is_empty()).then_some(Loops { extents, parallel, row_dims, operand_rows, vectorize, transposed, bytes })
}

/// The loops of a `linalg.fill` or `linalg.copy` on a static tensor of rank 1 or more: every
/// loop is parallel and a row; bools are left scalar (see [`tag`]).
fn elementwise_loops<'c: 'a, 'a>(op: &impl OperationLike<'c, 'a>) -> Option<Loops> {
    let ty = op.result(0).ok()?.r#type().to_raw();
    // SAFETY: a fill's result is a shaped type (a ranked tensor before bufferization).
    let extents: Vec<usize> = unsafe {
        if !mlir_sys::mlirTypeIsARankedTensor(ty) {
            return None;
        }
        (0..mlir_sys::mlirShapedTypeGetRank(ty))
            .map(|r| usize::try_from(mlir_sys::mlirShapedTypeGetDimSize(ty, r as isize)).ok())
            .collect::<Option<_>>()?
    };
    let rank = extents.len();
    // SAFETY: `ty` is a ranked tensor type.
    let bools = unsafe {
        let element = mlir_sys::mlirShapedTypeGetElementType(ty);
        mlir_sys::mlirTypeIsAInteger(element) && mlir_sys::mlirIntegerTypeGetWidth(element) == 1
    };
    (rank > 0).then(|| Loops {
        parallel: vec![true; rank],
        row_dims: rank,
        // The value, then the init.
        operand_rows: vec![0, rank],
        transposed: None,
        vectorize: !bools,
        bytes: result_bytes(op).unwrap_or(0),
        extents,
    })
}

/// Bytes of an op's first result, a static tensor (bools take a byte each).
fn result_bytes<'c: 'a, 'a>(op: &impl OperationLike<'c, 'a>) -> Option<usize> {
    let ty = op.result(0).ok()?.r#type().to_raw();
    // SAFETY: `ty` is checked to be a ranked tensor before its shape is read.
    unsafe {
        if !mlir_sys::mlirTypeIsARankedTensor(ty) || !mlir_sys::mlirShapedTypeHasStaticShape(ty) {
            return None;
        }
        let element = mlir_sys::mlirShapedTypeGetElementType(ty);
        let bits = if mlir_sys::mlirTypeIsAInteger(element) {
            mlir_sys::mlirIntegerTypeGetWidth(element) as usize
        } else if mlir_sys::mlirTypeIsAFloat(element) {
            mlir_sys::mlirFloatTypeGetWidth(element) as usize
        } else {
            return None;
        };
        let elements: i64 = (0..mlir_sys::mlirShapedTypeGetRank(ty))
            .map(|r| mlir_sys::mlirShapedTypeGetDimSize(ty, r as isize))
            .product();
        Some(usize::try_from(elements).ok()? * bits.div_ceil(8))
    }
}

/// The row cache tile of a product of `m` rows without batch axes: whole register tiles of
/// `reg_m` rows, from half the table's `max` register tiles up to all of them, chosen so that 2
/// and 4 threads finish together: each thread runs its share of the tiles, then the rows the
/// tiles leave over run serially (the peeled remainder). m = 1024 in tiles of 96 left 64 rows
/// over and 2 threads reached 1.74x; tiles of 84 leave 16 rows. Larger tiles win ties.
fn row_tile(m: usize, reg_m: usize, max: usize) -> usize {
    let register_rows = m / reg_m;
    if register_rows == 0 {
        return m;
    }
    let cost = |r: usize| -> usize {
        let rows = r * reg_m;
        let (tiles, rest) = (m / rows, m % rows);
        // Rows one thread runs, scaled by the thread count to weigh 2 and 4 threads alike.
        [2, 4].iter().map(|&t| (tiles.div_ceil(t) * rows + rest) * t).sum()
    };
    let largest = max.min(register_rows);
    let smallest = (max / 2).clamp(1, largest);
    (smallest..=largest).rev().min_by_key(|&r| cost(r)).unwrap_or(largest) * reg_m
}

/// Tile sizes of the contraction schedule, in elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatmulTiles {
    pub cache_m: usize,
    pub cache_n: usize,
    pub cache_k: usize,
    pub reg_m: usize,
    pub reg_n: usize,
    pub unroll_k: usize,
    /// Products of at least this many rows read B through a copy with padded rows (see
    /// `mlir::with_padded_rows`); `None`: never.
    pub pad_b_from_m: Option<usize>,
}

impl MatmulTiles {
    /// The tiles for elements of `elem_bits` on a register file.
    ///
    /// | vector registers | register tile (rows x vectors) | why |
    /// |---|---|---|
    /// | 32 x 512 bit (AVX-512) | 12 x 2 | 24 accumulators, 2 loads of B and a broadcast of A in the other 8 (12 x 2 measured 1.3-1.5x faster than 8 x 2 on Zen 5) |
    /// | 16 x 256 bit (AVX2) | 6 x 2 | 12 accumulators + 2 B + 1 broadcast = 15 of 16 (BLIS's Haswell kernel) |
    /// | 32 x 128 bit (NEON) | 8 x 3 | 24 accumulators + 3 B + broadcasts (BLIS's ARMv8 kernel) |
    /// | other | 4 x 2 | fits 16 registers of any width |
    ///
    /// Cache tiles (measured on AMD EPYC Zen 5, docs/performance.md): 96 rows of A (a multiple
    /// of every register tile's rows, so full cache tiles need no peeling) by a 256 x 512 panel
    /// of B (512 KiB of f32, half of a 1 MiB L2). The k loop is unrolled twice: four times
    /// measured slower on both AVX2 and AVX-512 (more code, no more independent work).
    ///
    /// B rows whose stride is a multiple of 256 bytes fall in a few L1 sets; copying B with
    /// padded rows costs a pass over B, which pays when the product has enough rows to reuse
    /// it. Measured on Zen 5: 1024^3 on AVX2 69 -> 120 GFLOP/s, on AVX-512 210 -> 232; with
    /// 256 rows the copy costs what it saves or more (AVX2 256x4096x256 4.5 -> 5.1 ms, the
    /// MLP's products 8% slower on AVX-512): from 512 rows. SSE unchanged (never); NEON
    /// unmeasured (never).
    pub fn for_target(registers: RegisterFile, elem_bits: usize) -> MatmulTiles {
        let lanes = (registers.vector_bits as usize / elem_bits).max(1);
        let (reg_m, vectors, pad_b_from_m) = match (registers.count, registers.vector_bits) {
            (32, 512) => (12, 2, Some(512)),
            (16, 256) => (6, 2, Some(512)),
            (32, 128) => (8, 3, None),
            _ => (4, 2, None),
        };
        MatmulTiles {
            cache_m: 96,
            cache_n: 512,
            cache_k: 256,
            reg_m,
            reg_n: vectors * lanes,
            unroll_k: 2,
            pad_b_from_m,
        }
    }

    /// The tiles clamped to a contraction's extents (a tile never exceeds its loop). Without
    /// batch axes the row cache tiles are the parallel loop, and the rows the tiles leave over
    /// run serially after it: see [`row_tile`].
    fn clamped(self, c: &Contraction) -> MatmulTiles {
        let cache_m = if c.batch.is_empty() {
            row_tile(c.m, self.reg_m, self.cache_m / self.reg_m)
        } else {
            self.cache_m.min(c.m)
        };
        let cache_n = self.cache_n.min(c.n);
        MatmulTiles {
            cache_m,
            cache_n,
            cache_k: self.cache_k.min(c.k),
            reg_m: self.reg_m.min(cache_m),
            reg_n: self.reg_n.min(cache_n),
            unroll_k: self.unroll_k,
            pad_b_from_m: self.pad_b_from_m,
        }
    }
}

/// The transform module scheduling `contractions`, fusing the row groups and vectorizing the
/// generics of `tagged`, or `None` when there is nothing to schedule.
pub fn transform_script(products: &Products, tagged: &Tagged, registers: RegisterFile) -> Option<String> {
    let generics = &tagged.generics;
    if tagged.products.is_empty() && generics.is_empty() {
        return None;
    }
    let mut s = String::from(
        "module attributes {transform.with_named_sequence} {\n  transform.named_sequence @__transform_main(%root: !transform.any_op {transform.readonly}) {\n",
    );
    let by_id = products.by_id();
    for (recipe, product) in tagged.products.iter().filter_map(|id| by_id.get(id)).enumerate() {
        product.schedule(&mut s, recipe, registers);
    }
    for group in &tagged.groups {
        rows::fuse(&mut s, group, &generics[group.root]);
    }
    if !tagged.groups.is_empty() {
        s.push_str(MERGE_FUSED);
    }
    for (recipe, &g) in tagged.recipes.iter().enumerate() {
        tile_generic(&mut s, recipe, &generics[g], registers.vector_elements());
    }
    s.push_str(CANONICALIZE);
    if !products.contractions.is_empty() {
        s.push_str(VECTORIZE_CONTRACTIONS);
    }
    for (id, _) in tagged.recipes.iter().enumerate().filter(|(_, &g)| generics[g].vectorize) {
        let _ = writeln!(
            s,
            "    %r{id}_tiles = transform.structured.match interface{{LinalgOp}} attributes {{kiln.recipe = {id} : i64}} in %root : (!transform.any_op) -> !transform.any_op\n\
             \x20   transform.structured.vectorize %r{id}_tiles : !transform.any_op"
        );
    }
    // A group's fills (reductions' initial rows) too: reads of a vectorized fill fold into
    // constants, where a fill left for later would be a buffer read from every row.
    for (group, member) in tagged.groups.iter().flat_map(|g| g.producers.iter().map(move |m| (g.root, m))) {
        if let rows::Member::Fill(id) = member {
            let _ = writeln!(
                s,
                "    %row{group}_fill{id} = {}\n\
                 \x20   transform.structured.vectorize %row{group}_fill{id} : !transform.any_op",
                member.matcher()
            );
        }
    }
    s.push_str(LOWER);
    s.push_str("    transform.yield\n  }\n}\n");
    Some(s)
}

/// Handle types: `n` handles to any op.
fn any_ops(n: usize) -> String {
    vec!["!transform.any_op"; n].join(", ")
}

/// A comma-separated list.
fn list(xs: impl IntoIterator<Item = usize>) -> String {
    xs.into_iter().map(|x| x.to_string()).collect::<Vec<_>>().join(", ")
}

/// Marks a parallel loop `kiln.parallel = GRAIN` (iterations per chunk, see [`crate::parallel`])
/// when its `total` work is worth threads; `per_iteration` is the work of one iteration. Peeling
/// later copies the mark onto the remainder loop.
fn annotate_parallel(s: &mut String, handle: &str, total: usize, per_iteration: usize) {
    let Some(grain) = crate::parallel::grain(total, per_iteration) else { return };
    let name = &handle[1..].replace('#', "_");
    let _ = writeln!(
        s,
        "    %{name}_grain = transform.param.constant {grain} : i64 -> !transform.param<i64>\n\
         \x20   transform.annotate {handle} \"kiln.parallel\" = %{name}_grain : !transform.any_op, !transform.param<i64>"
    );
}

/// Writes the peeling of each loop handle in `loops`.
fn peel(s: &mut String, prefix: &str, loops: &[String]) {
    for (i, handle) in loops.iter().enumerate() {
        let _ = writeln!(
            s,
            "    {prefix}_p{i} = transform.cast {handle} : !transform.any_op to !transform.op<\"scf.for\">\n\
             \x20   {prefix}_p{i}_main, {prefix}_p{i}_rest = transform.loop.peel {prefix}_p{i} : (!transform.op<\"scf.for\">) -> (!transform.any_op, !transform.any_op)"
        );
    }
}

/// Tiles a generic to vectorize its outer loops by 1 and its innermost loop by `vector`
/// elements (or its whole extent, when shorter), peeling the remainder; a row reduction
/// ([`Generic::lanes`]) has its innermost loop split into [`LANES`] partial results instead.
/// Loops a row group runs are not tiled again. One left scalar only gets its outermost loop,
/// for threads. A parallel outermost loop outside a row group is marked. The script applies it
/// to every generic of recipe `id` (see [`Tagged::recipes`]).
fn tile_generic(s: &mut String, id: usize, g: &Generic, vector: usize) {
    let n = g.extents.len();
    let inner = g.extents[n - 1];
    let outer = |t: usize| (0..n - 1).map(move |d| if d < g.grouped { 0 } else { t });
    let transposed = g.transposed.filter(|_| g.grouped == 0);
    let tiles: Vec<usize> = if g.lanes {
        outer(1).chain([0]).collect()
    } else if let Some(d) = transposed {
        // A square of lanes: rows of the input and of the result are read and written whole.
        let lanes = vector / 2;
        (0..n).map(|i| if i == d || i == n - 1 { lanes.min(g.extents[i]) } else { 1 }).collect()
    } else if g.vectorize {
        outer(1).chain([vector.min(inner)]).collect()
    } else if g.parallel_outer && n > 1 && g.grouped == 0 {
        // Scalar inside: only the outermost loop, for threads.
        [1].into_iter().chain(std::iter::repeat_n(0, n - 1)).collect()
    } else {
        return;
    };
    let loops = tiles.iter().filter(|&&t| t > 0).count();
    let _ = writeln!(
        s,
        "    %r{id} = transform.structured.match interface{{LinalgOp}} attributes {{kiln.recipe = {id} : i64}} in %root : (!transform.any_op) -> !transform.any_op"
    );
    let mut tiled = format!("%r{id}");
    if loops > 0 {
        let _ = writeln!(
            s,
            "    %r{id}_t, %r{id}_loops:{loops} = transform.structured.tile_using_for %r{id} tile_sizes [{}] : (!transform.any_op) -> ({})",
            list(tiles.iter().copied()),
            any_ops(loops + 1)
        );
        tiled = format!("%r{id}_t");
        if g.parallel_outer && g.grouped == 0 {
            let per_iteration: usize = tiles[0] * g.extents[1..].iter().product::<usize>();
            annotate_parallel(s, &format!("%r{id}_loops#0"), g.extents.iter().product(), per_iteration);
        }
    }
    if g.lanes {
        // The partial results, the loop filling them and their merge are vectorized with recipe `id`.
        let free = 2 * vector;
        let count = if !g.ordered && inner.is_multiple_of(free) { free } else { LANES };
        let lanes: Vec<usize> = std::iter::repeat_n(0, n - 1).chain([count]).collect();
        let _ = writeln!(
            s,
            "    %r{id}_fill, %r{id}_part, %r{id}_merge, %r{id}_lanes = transform.structured.tile_reduction_using_for {tiled} by tile_sizes = [{}] : (!transform.any_op) -> ({})\n\
             \x20   %r{id}_tag = transform.param.constant {id} : i64 -> !transform.param<i64>",
            list(lanes),
            any_ops(4)
        );
        for part in ["fill", "part", "merge"] {
            let _ = writeln!(
                s,
                "    transform.annotate %r{id}_{part} \"kiln.recipe\" = %r{id}_tag : !transform.any_op, !transform.param<i64>"
            );
        }
    } else if g.vectorize {
        // Loops whose extent the tile does not divide, innermost first.
        let handle = |dim: usize| format!("%r{id}_loops#{}", tiles[..dim].iter().filter(|&&t| t > 0).count());
        let partial: Vec<String> =
            (0..n).rev().filter(|&d| tiles[d] > 1 && !g.extents[d].is_multiple_of(tiles[d])).map(handle).collect();
        peel(s, &format!("%r{id}"), &partial);
    }
}

/// Steps 1 to 4 for the contractions of recipe `id` (scheduled as `c`), whose loops are
/// (batch..., m, k, n).
fn tile_contraction(s: &mut String, id: usize, c: &Contraction, t: MatmulTiles) {
    let b = c.batch.len();
    let ones = || std::iter::repeat_n(1, b);
    let zeros = || std::iter::repeat_n(0, b);
    let cache: Vec<usize> = ones().chain([t.cache_m, 0, t.cache_n]).collect();
    let k_tile: Vec<usize> = zeros().chain([0, t.cache_k, 0]).collect();
    let reg: Vec<usize> = zeros().chain([t.reg_m, 1, t.reg_n]).collect();
    // Register loops in the order m, n, k: k innermost.
    let interchange: Vec<usize> = (0..b).chain([b, b + 2, b + 1]).collect();
    let _ = writeln!(
        s,
        "    %c{id} = transform.structured.match ops{{[\"linalg.contract\"]}} attributes {{kiln.product_recipe = {id} : i64}} in %root : (!transform.any_op) -> !transform.any_op\n\
         \x20   %c{id}_t1, %c{id}_cache:{nc} = transform.structured.tile_using_for %c{id} tile_sizes [{cache}] : (!transform.any_op) -> ({r1})\n\
         \x20   %c{id}_t2, %c{id}_k = transform.structured.tile_using_for %c{id}_t1 tile_sizes [{k_tile}] : (!transform.any_op) -> ({r2})\n\
         \x20   %c{id}_t3, %c{id}_reg:3 = transform.structured.tile_using_for %c{id}_t2 tile_sizes [{reg}] interchange = [{interchange}] : (!transform.any_op) -> ({r4})\n\
         \x20   transform.loop.unroll %c{id}_reg#2 {{ factor = {unroll} }} : !transform.any_op",
        nc = b + 2,
        cache = list(cache),
        k_tile = list(k_tile),
        reg = list(reg),
        interchange = list(interchange),
        r1 = any_ops(b + 3),
        r2 = any_ops(2),
        r4 = any_ops(4),
        unroll = t.unroll_k,
    );
    // A loop needs peeling when its extent is dynamic (the enclosing cache tile is partial)
    // or not a multiple of its step.
    let partial_m = !c.m.is_multiple_of(t.cache_m);
    let partial_n = !c.n.is_multiple_of(t.cache_n);
    let peels = [
        (format!("%c{id}_reg#1"), partial_n || !t.cache_n.is_multiple_of(t.reg_n)),
        (format!("%c{id}_reg#0"), partial_m || !t.cache_m.is_multiple_of(t.reg_m)),
        (format!("%c{id}_k"), !c.k.is_multiple_of(t.cache_k)),
        (format!("%c{id}_cache#{}", b + 1), partial_n),
        (format!("%c{id}_cache#{b}"), partial_m),
    ];
    // The outermost loop (a batch or the m cache tiles) is parallel.
    let per_iteration = if b > 0 { c.m * c.n * c.k } else { t.cache_m * c.n * c.k };
    annotate_parallel(
        s,
        &format!("%c{id}_cache#0"),
        c.batch.iter().product::<usize>() * c.m * c.n * c.k,
        per_iteration,
    );
    let needed: Vec<String> = peels.into_iter().filter(|(_, needed)| *needed).map(|(handle, _)| handle).collect();
    peel(s, &format!("%c{id}"), &needed);
}

/// The direct convolution kernel of the convolutions of recipe `id` (scheduled as `c`), loops
/// (n, oh, ow, f, kh, kw, c): register tiles of `reg_m`
/// result pixels by `reg_n` channels, the matmul kernel's, accumulated over every tap and
/// input channel (kh, kw, c innermost). Once the tile's unit loops are folded away it is a
/// rank-1 update, `reg_m` broadcast pixels times a row of the kernel, which vectorizes into
/// FMAs; the accumulators leave the three reduction loops when `LOWER` hoists them.
///
/// The tile's pixels are neighbours in a result row, one row (n, oh) per iteration of the
/// outer loops (parallel over images, or over rows of a single image): the padded input's rows
/// stay in L1 and the kernel in L2 while a row is made. Rows shorter than a register tile
/// (kernel cotangents, whose rows are the kernel's: 3 pixels) take the pixel at one position
/// in `reg_m` images instead, the largest divisor of the image count that fits, so that no
/// loop needs peeling but the channels'; the loop over groups of images is the parallel one.
fn tile_convolution(s: &mut String, id: usize, c: &Convolution, t: MatmulTiles) {
    let [n, oh, ow, f, kh, kw, ch] = c.loops;
    let reg_n = tile_without_single_remainder(f, t.reg_n);
    let across_images =
        (ow < t.reg_m).then(|| (ow + 1..=t.reg_m.min(n)).rev().find(|&d| n.is_multiple_of(d))).flatten();
    let _ = writeln!(
        s,
        "    %v{id} = transform.structured.match ops{{[\"linalg.generic\"]}} attributes {{kiln.product_recipe = {id} : i64}} in %root : (!transform.any_op) -> !transform.any_op"
    );
    let per_row = ow * f * kh * kw * ch;
    let (outer, mut peels) = match across_images {
        None => {
            let reg_m = tile_without_single_remainder(ow, t.reg_m);
            let _ = writeln!(
                s,
                "    %v{id}_t1, %v{id}_rows:2 = transform.structured.tile_using_for %v{id} tile_sizes [1, 1, 0, 0, 0, 0, 0] : (!transform.any_op) -> ({r3})\n\
                 \x20   %v{id}_t2, %v{id}_reg:5 = transform.structured.tile_using_for %v{id}_t1 tile_sizes [0, 0, {reg_m}, {reg_n}, 1, 1, 1] : (!transform.any_op) -> ({r6})",
                r3 = any_ops(3),
                r6 = any_ops(6),
            );
            let parallel = if n > 1 { format!("%v{id}_rows#0") } else { format!("%v{id}_rows#1") };
            annotate_parallel(s, &parallel, n * oh * per_row, if n > 1 { oh * per_row } else { per_row });
            let peels = vec![
                (format!("%v{id}_reg#1"), !f.is_multiple_of(reg_n)),
                (format!("%v{id}_reg#0"), !ow.is_multiple_of(reg_m)),
            ];
            (format!("%v{id}_rows#0"), peels)
        }
        Some(reg_m) => {
            let _ = writeln!(
                s,
                "    %v{id}_t0, %v{id}_images = transform.structured.tile_using_for %v{id} tile_sizes [{reg_m}, 0, 0, 0, 0, 0, 0] : (!transform.any_op) -> ({r2})\n\
                 \x20   %v{id}_t1, %v{id}_rows:2 = transform.structured.tile_using_for %v{id}_t0 tile_sizes [0, 1, 1, 0, 0, 0, 0] : (!transform.any_op) -> ({r3})\n\
                 \x20   %v{id}_t2, %v{id}_reg:4 = transform.structured.tile_using_for %v{id}_t1 tile_sizes [0, 0, 0, {reg_n}, 1, 1, 1] : (!transform.any_op) -> ({r5})",
                r2 = any_ops(2),
                r3 = any_ops(3),
                r5 = any_ops(5),
            );
            annotate_parallel(s, &format!("%v{id}_images"), n * oh * per_row, reg_m * oh * per_row);
            (format!("%v{id}_images"), vec![(format!("%v{id}_reg#0"), !f.is_multiple_of(reg_n))])
        }
    };
    peels.retain(|(_, needed)| *needed);
    let needed: Vec<String> = peels.into_iter().map(|(handle, _)| handle).collect();
    peel(s, &format!("%v{id}"), &needed);
    // Within each outer loop (one per convolution of the recipe): the unit loops folded away,
    // then vectorized.
    let _ = writeln!(
        s,
        "    transform.foreach {outer} : !transform.any_op {{\n\
         \x20   ^bb0(%v{id}_outer: !transform.any_op):\n\
         \x20   transform.apply_patterns to %v{id}_outer {{\n\
         \x20     transform.apply_patterns.linalg.fold_unit_extent_dims_via_slices\n\
         \x20     transform.apply_patterns.canonicalization\n\
         \x20   }} : !transform.any_op\n\
         \x20   %v{id}_tiles = transform.structured.match ops{{[\"linalg.generic\"]}} in %v{id}_outer : (!transform.any_op) -> !transform.any_op\n\
         \x20   transform.structured.vectorize %v{id}_tiles : !transform.any_op\n\
         \x20   transform.apply_patterns to %v{id}_outer {{\n\
         \x20     transform.apply_patterns.canonicalization\n\
         \x20     transform.apply_patterns.tensor.fold_tensor_subset_ops_into_vector_transfers\n\
         \x20     transform.apply_patterns.tensor.fold_tensor_subset_ops\n\
         \x20   }} : !transform.any_op\n\
         \x20   transform.yield\n\
         \x20   }}"
    );
}

/// A tile for a loop of `extent` of at most `max`, the largest that leaves no remainder of one
/// (2 or more when the extent is): folding a direct convolution's unit loops turns a tile
/// whose pixels and channels are both one into an op without loops, which linalg's vectorizer
/// refuses. `lower.rs` expands the convolutions whose rows and channels are both one.
fn tile_without_single_remainder(extent: usize, max: usize) -> usize {
    let largest = max.min(extent).max(1);
    (2..=largest).rev().find(|&t| extent % t != 1).unwrap_or(largest)
}

/// After row groups are fused: merges the tiled copies of a producer that fusion made for each
/// of its uses (cse; empty tensors are tagged apart, see [`tag`], so that two results never
/// share one), then turns the slices of empty tensors inside row loops into row-sized
/// allocations (the rows that the workspace plan puts on the stack): `alloc_tensor`, not
/// `tensor.empty`, which a later cse would merge into one buffer for two live rows.
const MERGE_FUSED: &str = r#"    transform.apply_cse to %root : !transform.any_op
    transform.apply_patterns to %root {
      transform.apply_patterns.canonicalization
      transform.apply_patterns.tensor.fold_tensor_empty
    } : !transform.any_op
    %empties = transform.structured.match ops{["tensor.empty"]} in %root : (!transform.any_op) -> !transform.any_op
    %empty_ops = transform.cast %empties : !transform.any_op to !transform.op<"tensor.empty">
    transform.bufferization.empty_tensor_to_alloc_tensor %empty_ops : (!transform.op<"tensor.empty">) -> !transform.op<"bufferization.alloc_tensor">
"#;

/// Folds the peeled tiles' sizes to constants, so that vectorization needs no masks.
const CANONICALIZE: &str = r#"    transform.apply_patterns to %root {
      transform.apply_patterns.canonicalization
    } : !transform.any_op
"#;

/// Vectorizes the contraction tiles. `reduction_to_contract` must run before any
/// canonicalization of the vectorized code (otherwise a k tile of 1 becomes mulf + addf, and
/// no FMA).
const VECTORIZE_CONTRACTIONS: &str = r#"    %tiles = transform.structured.match ops{["linalg.contract"]} in %root : (!transform.any_op) -> !transform.any_op
    transform.structured.vectorize %tiles : !transform.any_op
    transform.apply_patterns to %root {
      transform.apply_patterns.vector.reduction_to_contract
      transform.apply_patterns.vector.transfer_permutation_patterns
    } : !transform.any_op
"#;

/// Hoists and lowers every vectorized tile: accumulators (the C tile of a contraction, the
/// partial results of a reduction) leave their loops as `iter_args` once cse and licm have
/// exposed the loop-invariant subsets; contractions become outer products, and transfers plain
/// vector loads and stores. Patterns apply to the whole module: a handle to several functions
/// cannot be a pattern root.
const LOWER: &str = r#"    transform.apply_patterns to %root {
      transform.apply_patterns.canonicalization
      transform.apply_patterns.tensor.fold_tensor_subset_ops_into_vector_transfers
    } : !transform.any_op
    transform.apply_cse to %root : !transform.any_op
    %loops = transform.structured.match ops{["scf.for"]} in %root : (!transform.any_op) -> !transform.any_op
    transform.apply_licm to %loops : !transform.any_op
    transform.loop.hoist_loop_invariant_subsets %loops : !transform.any_op
    transform.apply_patterns to %root {
      transform.apply_patterns.vector.lower_contraction lowering_strategy = "outerproduct"
      transform.apply_patterns.vector.lower_outerproduct
      transform.apply_patterns.vector.transfer_permutation_patterns
      transform.apply_patterns.vector.lower_multi_reduction lowering_strategy = "innerreduction"
      transform.apply_patterns.vector.transfer_to_scf max_transfer_rank = 1 full_unroll = true
      transform.apply_patterns.vector.lower_transfer max_transfer_rank = 1
      transform.apply_patterns.vector.lower_shape_cast
      transform.apply_patterns.canonicalization
    } : !transform.any_op
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::Mlir;

    /// Two elementwise ops over rows, the second reading the first: one row group.
    const CHAIN: &str = r#"
#map = affine_map<(d0, d1) -> (d0, d1)>
module {
  func.func @f(%x: tensor<8x64xf32>) -> tensor<8x64xf32> {
    %e0 = tensor.empty() : tensor<8x64xf32>
    %a = linalg.generic {indexing_maps = [#map, #map], iterator_types = ["parallel", "parallel"]} ins(%x : tensor<8x64xf32>) outs(%e0 : tensor<8x64xf32>) {
    ^bb0(%in: f32, %out: f32):
      %0 = math.exp %in : f32
      linalg.yield %0 : f32
    } -> tensor<8x64xf32>
    %e1 = tensor.empty() : tensor<8x64xf32>
    %b = linalg.generic {indexing_maps = [#map, #map], iterator_types = ["parallel", "parallel"]} ins(%a : tensor<8x64xf32>) outs(%e1 : tensor<8x64xf32>) {
    ^bb0(%in: f32, %out: f32):
      %0 = arith.addf %in, %in : f32
      linalg.yield %0 : f32
    } -> tensor<8x64xf32>
    return %b : tensor<8x64xf32>
  }
}
"#;

    /// Fusing a producer costs the ops of its whole function: a function whose groups would
    /// overrun the budget keeps the per-op schedule.
    #[test]
    fn row_fusion_stops_at_the_function_budget() {
        let mlir = Mlir::new();
        let grouped = |budget| {
            let module = mlir.parse(CHAIN, "test").unwrap();
            tag_within(
                &mlir.context,
                &module,
                &Products::default(),
                RegisterFile { count: 16, vector_bits: 256 },
                budget,
            )
            .groups
        };
        let groups = grouped(rows::ROW_FUSION_BUDGET);
        assert_eq!(groups.len(), 1, "{groups:?}");
        assert_eq!(groups[0].producers, [rows::Member::Generic(0)]);
        // The function has 10 ops (itself, two empties, two generics of two ops each, the
        // return): one fused producer costs 10.
        assert_eq!(grouped(10).len(), 1);
        assert!(grouped(9).is_empty());
    }

    /// Generics scheduled alike are matched once, by one recipe; a different shape of tiles
    /// is a recipe of its own.
    #[test]
    fn generics_scheduled_alike_share_a_recipe() {
        let mlir = Mlir::new();
        let avx2 = RegisterFile { count: 16, vector_bits: 256 };
        let module = mlir.parse(CHAIN, "test").unwrap();
        let tagged = tag_within(&mlir.context, &module, &Products::default(), avx2, 0);
        assert_eq!(tagged.recipes, [0]);
        assert_eq!(module.as_operation().to_string().matches("kiln.recipe = 0").count(), 2);
        let script = transform_script(&Products::default(), &tagged, avx2).unwrap();
        assert_eq!(script.matches("kiln.recipe = 0").count(), 2, "{script}");
        // A second function on rows of 60: its tiles leave a remainder to peel.
        let (head, f) = CHAIN.split_once("module {").unwrap();
        let f = f.rsplit_once('}').unwrap().0;
        let g = f.replace("@f", "@g").replace("8x64", "8x60");
        let module = mlir.parse(&format!("{head}module {{{f}{g}}}"), "test").unwrap();
        let tagged = tag_within(&mlir.context, &module, &Products::default(), avx2, 0);
        assert_eq!(tagged.recipes, [0, 2]);
        let script = transform_script(&Products::default(), &tagged, avx2).unwrap();
        assert!(script.contains("kiln.recipe = 1") && script.contains("transform.loop.peel %r1"), "{script}");
    }

    fn product(batch: &[usize], m: usize) -> Contraction {
        Contraction { id: 0, batch: batch.to_vec(), m, k: 64, n: 64, dtype: kiln_ir::DType::F32, a_transposed: false }
    }

    #[test]
    fn short_products_get_row_tiles_for_every_thread() {
        let avx512 = MatmulTiles::for_target(RegisterFile { count: 32, vector_bits: 512 }, 32);
        // 256 rows: four tiles of five register tiles (60 rows) and a 16-row rest.
        assert_eq!(avx512.clamped(&product(&[], 256)).cache_m, 60);
        // 1024 rows: twelve tiles of 84 and a 16-row rest (tiles of 96 left 64 rows over).
        assert_eq!(avx512.clamped(&product(&[], 1024)).cache_m, 84);
        // 960 rows: sixteen tiles of 60 (even for 2 and 4 threads), nothing over.
        assert_eq!(avx512.clamped(&product(&[], 960)).cache_m, 60);
        // 288 rows: three tiles of 96 would leave 4 threads unbalanced; four of 72.
        assert_eq!(avx512.clamped(&product(&[], 288)).cache_m, 72);
        // Short products: whole register tiles, or all rows.
        assert_eq!(avx512.clamped(&product(&[], 30)).cache_m, 24);
        assert_eq!(avx512.clamped(&product(&[], 7)).cache_m, 7);
        // Batched products are parallel over the batch.
        assert_eq!(avx512.clamped(&product(&[4], 256)).cache_m, 96);
        let avx2 = MatmulTiles::for_target(RegisterFile { count: 16, vector_bits: 256 }, 32);
        assert_eq!(avx2.clamped(&product(&[], 256)).cache_m, 60);
    }
}
