//! GPU code generation for NVIDIA GPUs: PTX kernels and, per function, a launch plan that
//! kiln's runtime replays (no MLIR host runtime, no libdevice).
//!
//! Route (docs/gpu.md): the same tensor program as on the CPU is fused, bufferized and
//! planned (intermediates are views of one device workspace); float matrix products over whole
//! buffers become library calls ([`Gemm`], cuBLAS in the runtime); other linalg ops become parallel loops,
//! tiled by [`THREADS_PER_BLOCK`] and mapped to blocks and threads, and outlined into
//! `gpu.module`s. Whatever remains on the host besides constants, views and launches (a loop
//! nest with no parallel dimension, a scalar store) is first wrapped in a one-iteration parallel
//! loop, so that it runs as a single-thread kernel. The host functions are then read, not
//! lowered: each `gpu.launch_func` becomes a [`Launch`] (kernel, grid, block, arguments as
//! parameters, workspace offsets or constants) and each library call a [`Gemm`]. Each kernel module is lowered through NVVM,
//! translated to LLVM IR and emitted as PTX by LLVM's NVPTX target. Math ops become LLVM
//! intrinsics the NVPTX backend selects; exp, log, tanh, sin, cos and pow, in f32 and f64, are
//! kiln's own polynomials (GPU targets have `libm: false`); any other math op would be refused
//! rather than turned into a libdevice call.
//!
//! Reductions over at least 64 elements per output get a block of threads each ([`reduce`]);
//! other loops map one thread per output element (integer products and small reductions run
//! sequentially in their thread). Every plan is checked by ptxas and, in the test suite, run on
//! kiln's PTX emulator against the interpreter.

mod control;
mod loops;
mod reduce;

use crate::context::{err, CodegenError};
use crate::edit::{
    cloned, declaration, erase, function_bodies, key, ops_named, ops_where, replace_op, segment_sizes, symbol,
};
use crate::front::Compilation;
use crate::manifest::{Conditional, CountedLoop, Gemm, Launch, LaunchArg, Scalar, Step, WhileLoop, SCRATCH_ALIGN};
use crate::mlir::Contraction;
use inkwell::context::Context as LlvmContext;
use inkwell::passes::PassBuilderOptions;
use inkwell::targets::FileType;
use kiln_ir::DType;
use melior::dialect::func;
use melior::ir::attribute::{
    AttributeLike, DenseI32ArrayAttribute, FlatSymbolRefAttribute, FloatAttribute, IntegerAttribute, StringAttribute,
};
use melior::ir::operation::{OperationBuilder, OperationLike, OperationRef, OperationResult};
use melior::ir::r#type::MemRefType;
use melior::ir::{
    Attribute, BlockLike, BlockRef, Identifier, Location, Module as MlirModule, RegionLike, Type, Value, ValueLike,
};
use melior::Context;
use std::collections::BTreeMap;

/// The stage of a [`CodegenError`] for programs the GPU backend cannot compile yet: a
/// limitation to report to the user, not a compiler bug.
pub const UNSUPPORTED: &str = "GPU support";

/// Threads per block of the elementwise mapping.
pub const THREADS_PER_BLOCK: usize = 256;

/// One kernel: the name of its module in the plan, its PTX entry, and the PTX text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kernel {
    pub name: String,
    pub entry: String,
    pub ptx: String,
}

/// Host ops that may stay around the launches: they compute no data.
const HOST_OPS: &[&str] = &[
    "arith.constant",
    "ub.poison",
    "memref.view",
    "memref.expand_shape",
    "memref.collapse_shape",
    "memref.cast",
    "scf.parallel",
    "gpu.launch_func",
    "gpu.launch",
    // The library products, and the end of a function.
    "func.call",
    "func.return",
];

/// The function `symbol` of the module's body.
fn host_function<'c, 'a>(module: &'a MlirModule<'c>, name: &str) -> Option<OperationRef<'c, 'a>> {
    function_bodies(module).into_iter().map(|(func, _)| func).find(|func| symbol(func).as_deref() == Some(name))
}

/// The prefix of the functions that stand for library products between planning and the
/// launch plan, followed by [`OVERWRITE`] or [`ACCUMULATE`] and the contraction's id (see
/// [`library_products`]).
const GEMM_CALLEE: &str = "kiln_gemm_";
const OVERWRITE: &str = "set_";
const ACCUMULATE: &str = "add_";

/// The scratch memory cuBLAS is given for the products of a function on `gpu`: the sizes the
/// cuBLAS guide recommends for `cublasSetWorkspace`, 32 MiB on Hopper (sm_90) and 4 MiB before.
fn blas_scratch_bytes(gpu: &str) -> u64 {
    let sm: u32 = gpu.trim_start_matches("sm_").parse().unwrap_or(0);
    if sm >= 90 {
        32 << 20
    } else {
        4 << 20
    }
}

/// Math ops and the LLVM intrinsic the NVPTX backend selects for each (per element type).
const INTRINSICS: &[(&str, &str)] = &[
    ("math.floor", "llvm.floor"),
    ("math.ceil", "llvm.ceil"),
    ("math.roundeven", "llvm.roundeven"),
    ("math.trunc", "llvm.trunc"),
    ("math.fma", "llvm.fma"),
    ("math.absf", "llvm.fabs"),
    ("math.copysign", "llvm.copysign"),
    ("math.sqrt", "llvm.sqrt"),
];

/// The lowering of each kernel module (after outlining).
const DEVICE_PIPELINE: &str = "builtin.module(gpu.module(fold-memref-alias-ops,expand-strided-metadata,lower-affine,\
     convert-scf-to-cf,convert-gpu-to-nvvm{index-bitwidth=64 use-bare-ptr-memref-call-conv=1},canonicalize,cse,\
     reconcile-unrealized-casts))";

/// Stage `bufferize` for GPUs: as for CPUs ([`crate::front::bufferize`]), and then each
/// conditional's results in buffers of their own ([`control::branches_in_place`]).
pub(crate) fn bufferize(c: &mut Compilation) -> Result<(), CodegenError> {
    crate::front::bufferize(c)?;
    control::branches_in_place(&c.mlir.context, &c.module).map_err(|e| err("bufferization", e))
}

/// Stage `library-products`: float products over whole buffers become library calls
/// ([`library_calls`]).
pub(crate) fn library_products(c: &mut Compilation) -> Result<(), CodegenError> {
    library_calls(&c.mlir.context, &c.module, &c.contractions).map_err(|e| err("GPU library products", e))
}

/// Stage `block-reductions`: reductions and the row ops around them become block launches
/// ([`reduce`]).
pub(crate) fn block_reductions(c: &mut Compilation) -> Result<(), CodegenError> {
    reduce::block_reductions(c.mlir, &c.module).map_err(|e| err("GPU block reductions", e))
}

/// Stage `map-loops`: the remaining linalg ops become parallel loops, each nest collapsed to
/// one linear index, and host statements that compute data wrapped in one-iteration loops.
pub(crate) fn map_loops(c: &mut Compilation) -> Result<(), CodegenError> {
    c.run("builtin.module(func.func(convert-linalg-to-parallel-loops),canonicalize,cse)")?;
    loops::collapse_parallel_loops(&c.mlir.context, &c.module).map_err(|e| err("GPU mapping", e))?;
    loops::wrap_serial_statements(&c.mlir.context, &c.module).map_err(|e| err("GPU mapping", e))
}

/// Stage `outline-kernels`: parallel loops tiled by [`THREADS_PER_BLOCK`], mapped to blocks
/// and threads, and outlined into `gpu.module`s launched from the host functions.
pub(crate) fn outline_kernels(c: &mut Compilation) -> Result<(), CodegenError> {
    c.run(&format!(
        "builtin.module(func.func(scf-parallel-loop-tiling{{parallel-loop-tile-sizes={THREADS_PER_BLOCK} no-min-max-bounds=true}},\
         gpu-map-parallel-loops,convert-parallel-loops-to-gpu),gpu-launch-sink-index-computations,gpu-kernel-outlining,canonicalize,cse)"
    ))
}

/// Stage `launch-plan`: each host function read as its launch plan, with the library's
/// scratch memory added to its workspace.
pub(crate) fn launch_plan(c: &mut Compilation) -> Result<Vec<Vec<Step>>, CodegenError> {
    let mut launches: Vec<Vec<Step>> = vec![];
    for f in &c.ir.funcs {
        let symbol = crate::mlir::impl_symbol(&c.ir.name, &f.name);
        let func = host_function(&c.module, &symbol).ok_or_else(|| err("GPU launch plan", format!("no `{symbol}`")))?;
        launches.push(
            function_plan(func, f.params.len() + f.results.len(), &c.contractions)
                .map_err(|e| err("GPU launch plan", e))?,
        );
    }
    for (steps, bytes) in launches.iter_mut().zip(&mut c.workspace) {
        reserve_scratch(steps, bytes, blas_scratch_bytes(&c.target.cpu));
    }
    Ok(launches)
}

/// Stage `lower-kernels`: math ops to the intrinsics NVPTX selects, kernels to NVVM.
pub(crate) fn lower_kernels(c: &mut Compilation) -> Result<(), CodegenError> {
    // A math op without an intrinsic is the user's limit, not a bug: reported as unsupported.
    with_intrinsics(&c.mlir.context, &c.module).map_err(|e| err(UNSUPPORTED, e))?;
    c.run(DEVICE_PIPELINE)
}

/// Stage `ptx`: each kernel module translated to LLVM IR, optimized and emitted as PTX.
pub(crate) fn ptx(c: &mut Compilation) -> Result<Vec<Kernel>, CodegenError> {
    let machine = c.target.machine(c.opt.max(2)).map_err(|e| err("target setup", e))?;
    let mut kernels = vec![];
    for (name, kernel) in kernel_modules(&c.mlir.context, &c.module).map_err(|e| err("PTX emission", e))? {
        let llvm = LlvmContext::create();
        let m = c.mlir.translate(&kernel, &llvm)?;
        m.set_name(&name);
        m.set_triple(&machine.get_triple());
        m.set_data_layout(&machine.get_target_data().get_data_layout());
        m.verify().map_err(|e| err("LLVM IR verification", e.to_string()))?;
        let external = |f: &inkwell::values::FunctionValue| {
            f.count_basic_blocks() == 0 && !f.get_name().to_string_lossy().starts_with("llvm.")
        };
        if let Some(f) = m.get_functions().find(external) {
            return Err(err(
                "GPU math",
                format!("kernel `{name}` calls `{}`, which kiln cannot ship", f.get_name().to_string_lossy()),
            ));
        }
        m.run_passes("default<O3>", &machine, PassBuilderOptions::create())
            .map_err(|e| err("LLVM optimization", e.to_string()))?;
        let entry = m
            .get_functions()
            .find(|f| f.count_basic_blocks() > 0)
            .map(|f| f.get_name().to_string_lossy().into_owned())
            .ok_or_else(|| err("PTX emission", format!("kernel module `{name}` is empty")))?;
        let ptx =
            machine.write_to_memory_buffer(&m, FileType::Assembly).map_err(|e| err("PTX emission", e.to_string()))?;
        kernels.push(Kernel { name, entry, ptx: String::from_utf8_lossy(ptx.as_slice()).into_owned() });
    }
    Ok(kernels)
}

/// Gives the library products of a plan `scratch` bytes at the end of its `workspace`, which
/// grows by them (products run one after another on one stream, so they share it).
fn reserve_scratch(steps: &mut [Step], workspace: &mut u64, scratch: u64) {
    let offset = workspace.div_ceil(SCRATCH_ALIGN) * SCRATCH_ALIGN;
    if place_scratch(steps, LaunchArg::Workspace { offset }, scratch) {
        *workspace = offset + scratch;
    }
}

/// Gives every product of `steps`, inside loops and conditionals too, `bytes` of scratch
/// memory at `at`; whether there was one.
fn place_scratch(steps: &mut [Step], at: LaunchArg, bytes: u64) -> bool {
    let mut used = false;
    for step in steps {
        if let Step::Gemm { gemm } = step {
            (gemm.scratch, gemm.scratch_bytes) = (at, bytes);
            used = true;
        }
        for inner in step.children_mut() {
            used |= place_scratch(inner, at, bytes);
        }
    }
    used
}

/// The launch plan of host function `func` of the outlined module: every op must be a
/// constant, a view, a launch or a library call ([`HOST_OPS`]), a loop or a conditional
/// ([`control`]) or a scalar one of those reads. `buffers` is its number of parameter and
/// result buffers (the workspace follows them).
fn function_plan(func: OperationRef, buffers: usize, contractions: &[Contraction]) -> Result<Vec<Step>, String> {
    let symbol = func.attribute("sym_name").map_err(|e| e.to_string())?.to_string();
    let body = func.region(0).map_err(|e| e.to_string())?.first_block().ok_or("a host function without a body")?;
    let mut plan = Planner { symbol, contractions, values: BTreeMap::new(), scalars: BTreeMap::new(), condition: None };
    for i in 0..body.argument_count() {
        let arg = if i < buffers { LaunchArg::Buffer { index: i } } else { LaunchArg::Workspace { offset: 0 } };
        plan.values.insert(id(&body.argument(i).map_err(|e| e.to_string())?.into()), arg);
    }
    plan.steps(&body, 0)
}

/// A value's identity in a [`Planner`]'s maps.
fn id(v: &Value) -> usize {
    key(v.to_raw())
}

/// Reads a host function's ops as launch steps.
struct Planner<'a> {
    symbol: String,
    contractions: &'a [Contraction],
    /// What each host value is for a launch: a buffer, the workspace, an integer (for grid
    /// sizes too) or a loop's index (by raw pointer, only looked up).
    values: BTreeMap<usize, LaunchArg>,
    /// The scalars the host reads back from the device: loads of one element, and their casts.
    scalars: BTreeMap<usize, Scalar>,
    /// The condition of the while loop whose first region was read last.
    condition: Option<Scalar>,
}

impl Planner<'_> {
    /// The scalar `v` is to the host: an integer constant or a read of the device's memory.
    fn scalar(&self, v: Value) -> Result<Scalar, String> {
        match (self.scalars.get(&id(&v)), self.values.get(&id(&v))) {
            (Some(s), _) => Ok(*s),
            (None, Some(LaunchArg::Int { value })) => Ok(Scalar::Int { value: *value }),
            _ => Err(format!("a bound or condition the host cannot read in {}: {v}", self.symbol)),
        }
    }

    /// The steps of region `r` of `op` inside `loops` counted loops (none for an empty region).
    fn region(&mut self, op: &OperationRef, r: usize, loops: usize) -> Result<Vec<Step>, String> {
        match op.region(r).map_err(|e| e.to_string())?.first_block() {
            Some(block) => self.steps(&block, loops),
            None => Ok(vec![]),
        }
    }

    /// The steps of `block`, inside `loops` counted loops.
    fn steps(&mut self, block: &BlockRef, loops: usize) -> Result<Vec<Step>, String> {
        let symbol = self.symbol.clone();
        let mut steps = vec![];
        let mut next = block.first_operation();
        while let Some(op) = next {
            next = op.next_in_block();
            let name = op.name().as_string_ref().as_str().map_err(|e| e.to_string())?.to_string();
            let operand = |i: usize| op.operand(i).ok().and_then(|v| self.values.get(&id(&v)).copied());
            let defined = match name.as_str() {
                // (The kind is checked first: a failed conversion prints the attribute, and float
                // constants can be large.)
                "arith.constant" => op
                    .attribute("value")
                    .ok()
                    .filter(|a| a.is_integer())
                    .and_then(|a| IntegerAttribute::try_from(a).ok())
                    .map(|v| LaunchArg::Int { value: v.value() }),
                "memref.view" => match (operand(0), operand(1)) {
                    (Some(LaunchArg::Workspace { offset }), Some(LaunchArg::Int { value })) => {
                        Some(LaunchArg::Workspace { offset: offset + value as u64 })
                    }
                    _ => return Err(format!("unexpected view in {symbol}: {op}")),
                },
                "memref.expand_shape" | "memref.collapse_shape" | "memref.cast" => {
                    Some(operand(0).ok_or_else(|| format!("unexpected reshape in {symbol}: {op}"))?)
                }
                "gpu.launch_func" => {
                    let launch = launch(&op, &self.values).ok_or_else(|| format!("unexpected launch: {op}"))?;
                    steps.push(Step::Kernel(launch));
                    None
                }
                "func.call" => {
                    let gemm = library_call(&op, &self.values, self.contractions)
                        .ok_or_else(|| format!("unexpected call: {op}"))?;
                    steps.push(Step::Gemm { gemm });
                    None
                }
                "memref.load" => {
                    let read = operand(0).filter(|_| op.operand_count() == 1).zip(scalar_dtype(&op));
                    let (at, dtype) = read.ok_or_else(|| format!("unexpected load on the host in {symbol}: {op}"))?;
                    self.scalars
                        .insert(id(&op.result(0).map_err(|e| e.to_string())?.into()), Scalar::Read { at, dtype });
                    None
                }
                cast if control::CASTS.contains(&cast) => {
                    let scalar = self.scalar(op.operand(0).map_err(|e| e.to_string())?)?;
                    self.scalars.insert(id(&op.result(0).map_err(|e| e.to_string())?.into()), scalar);
                    None
                }
                "scf.for" => {
                    let bound = |i: usize| op.operand(i).map_err(|e| e.to_string()).and_then(|v| self.scalar(v));
                    let (from, to) = (bound(0)?, bound(1)?);
                    if bound(2)? != (Scalar::Int { value: 1 }) || op.operand_count() != 3 {
                        return Err(format!("a counted loop with a step or carried values in {symbol}: {op}"));
                    }
                    let body = op.region(0).map_err(|e| e.to_string())?.first_block().ok_or("a loop without a body")?;
                    let index = body.argument(0).map_err(|e| e.to_string())?;
                    self.values.insert(id(&index.into()), LaunchArg::Index { depth: loops });
                    let body = self.steps(&body, loops + 1)?;
                    steps.push(Step::Loop { r#loop: CountedLoop { from, to, body } });
                    None
                }
                "scf.while" => {
                    if op.operand_count() != 0 {
                        return Err(format!("a while loop with carried values in {symbol}: {op}"));
                    }
                    let before = self.region(&op, 0, loops)?;
                    let cond =
                        self.condition.take().ok_or_else(|| format!("a while loop without a condition: {op}"))?;
                    let body = self.region(&op, 1, loops)?;
                    steps.push(Step::While { r#while: WhileLoop { before, cond, body } });
                    None
                }
                "scf.condition" => {
                    if op.operand_count() != 1 {
                        return Err(format!("a while loop with carried values in {symbol}: {op}"));
                    }
                    self.condition = Some(self.scalar(op.operand(0).map_err(|e| e.to_string())?)?);
                    None
                }
                "scf.if" => {
                    let cond = self.scalar(op.operand(0).map_err(|e| e.to_string())?)?;
                    let (then, r#else) = (self.region(&op, 0, loops)?, self.region(&op, 1, loops)?);
                    steps.push(Step::If { r#if: Conditional { cond, then, r#else } });
                    None
                }
                _ if HOST_OPS.contains(&name.as_str()) || control::is_control(&op) => None,
                _ => return Err(format!("`{name}` remains on the host in {symbol}")),
            };
            // (melior's error for a missing result prints the op, verifying it: a symbol lookup
            // for a call, milliseconds each; the count is checked first.)
            if let (Some(arg), true) = (defined, op.result_count() > 0) {
                self.values.insert(id(&op.result(0).map_err(|e| e.to_string())?.into()), arg);
            }
        }
        Ok(steps)
    }
}

/// The element type of a host load's result, when the host can read it: bool, i32 or i64.
fn scalar_dtype(load: &OperationRef) -> Option<crate::manifest::DType> {
    let ty = load.result(0).ok()?.r#type();
    match melior::ir::r#type::IntegerType::try_from(ty).ok()?.width() {
        1 => Some(crate::manifest::DType::Bool),
        32 => Some(crate::manifest::DType::I32),
        64 => Some(crate::manifest::DType::I64),
        _ => None,
    }
}

/// One `func.call @kiln_gemm_MODE_ID(%a, %b, %c)` written by [`library_calls`], its
/// scratch memory not yet placed (see [`reserve_scratch`]).
fn library_call(op: &OperationRef, values: &BTreeMap<usize, LaunchArg>, contractions: &[Contraction]) -> Option<Gemm> {
    let callee = FlatSymbolRefAttribute::try_from(op.attribute("callee").ok()?).ok()?;
    let callee = callee.value().strip_prefix(GEMM_CALLEE)?;
    let (accumulate, id) = match callee.strip_prefix(OVERWRITE) {
        Some(id) => (false, id),
        None => (true, callee.strip_prefix(ACCUMULATE)?),
    };
    let id: usize = id.parse().ok()?;
    let c = contractions.iter().find(|c| c.id == id)?;
    let operands: Vec<LaunchArg> =
        op.operands().map(|v| values.get(&key(v.to_raw())).copied()).collect::<Option<_>>()?;
    let [a, b, out]: [LaunchArg; 3] = operands.try_into().ok()?;
    Some(Gemm {
        dtype: crate::manifest::dtype(c.dtype),
        batch: c.batch.iter().product::<usize>() as u64,
        m: c.m as u64,
        n: c.n as u64,
        k: c.k as u64,
        a_transposed: c.a_transposed,
        accumulate,
        a,
        b,
        c: out,
        scratch: LaunchArg::Workspace { offset: 0 },
        scratch_bytes: 0,
    })
}

/// The operand groups of a `gpu.launch_func`, in order (its `operandSegmentSizes`): async
/// dependencies, grid x, y, z, block x, y, z, cluster x, y, z, dynamic shared memory, kernel
/// operands, async object.
const LAUNCH_SEGMENTS: usize = 13;
const GRID: usize = 1;
const BLOCK: usize = 4;
const KERNEL_OPERANDS: usize = 11;

/// One `gpu.launch_func @module::@kernel blocks in (...) threads in (...) args(...)`, its
/// grid and block sizes constants, its arguments known values.
fn launch(op: &OperationRef, values: &BTreeMap<usize, LaunchArg>) -> Option<Launch> {
    let kernel = op.attribute("kernel").ok()?;
    // SAFETY: `kernel` is a live symbol reference attribute (checked first).
    let kernel = unsafe {
        if !mlir_sys::mlirAttributeIsASymbolRef(kernel.to_raw()) {
            return None;
        }
        melior::StringRef::from_raw(mlir_sys::mlirSymbolRefAttrGetRootReference(kernel.to_raw()))
            .as_str()
            .ok()?
            .to_string()
    };
    let sizes = segment_sizes(op)?;
    if sizes.len() != LAUNCH_SEGMENTS {
        return None;
    }
    // The operands of segment `s`.
    let segment = |s: usize| -> Vec<Option<LaunchArg>> {
        let start: usize = sizes[..s].iter().sum();
        (start..start + sizes[s])
            .map(|i| op.operand(i).ok().and_then(|v| values.get(&key(v.to_raw())).copied()))
            .collect()
    };
    let dims = |first: usize| -> Option<[u64; 3]> {
        let dims: Vec<u64> = (first..first + 3)
            .map(|s| match segment(s).as_slice() {
                [Some(LaunchArg::Int { value })] => u64::try_from(*value).ok(),
                _ => None,
            })
            .collect::<Option<_>>()?;
        dims.try_into().ok()
    };
    let args = segment(KERNEL_OPERANDS).into_iter().collect::<Option<_>>()?;
    Some(Launch { kernel, grid: dims(GRID)?, block: dims(BLOCK)?, args })
}

/// Turns each float product of the bufferized module whose operands are whole dense buffers
/// into a call of `@kiln_gemm_MODE_ID`, declared at the end of the module: it stays on the
/// host, where [`function_plan`] reads it as a library call. cuBLAS runs these products far faster
/// than loops MLIR can map to threads (docs/gpu.md); products of integers, or of
/// strided views, stay loops. A zero fill of the product's output just before it is dropped and
/// the product overwrites instead of accumulating (BLAS's beta = 0): `c = 0; c += a b` is
/// `c = a b`, one launch and one pass over c fewer.
fn library_calls<'c>(
    context: &'c Context,
    module: &MlirModule<'c>,
    contractions: &[Contraction],
) -> Result<(), String> {
    for raw in ops_named(module, "linalg.contract") {
        // SAFETY: collected from the live module; each product is replaced once.
        let op = unsafe { OperationRef::from_raw(raw) };
        let Some(c) = op
            .attribute("kiln.contraction")
            .ok()
            .filter(|a| a.is_integer())
            .and_then(|a| IntegerAttribute::try_from(a).ok())
            .and_then(|id| contractions.iter().find(|c| c.id as i64 == id.value() && c.dtype.is_float()))
        else {
            continue;
        };
        // The operands must be whole dense buffers of the product's shapes.
        let element = if c.dtype == DType::F64 { Type::float64(context) } else { Type::float32(context) };
        let memref = |x: usize, y: usize| -> Type<'c> {
            let dims: Vec<i64> = c.batch.iter().copied().chain([x, y]).map(|d| d as i64).collect();
            MemRefType::new(element, &dims, None, None).into()
        };
        let a = if c.a_transposed { memref(c.k, c.m) } else { memref(c.m, c.k) };
        let types = [a, memref(c.k, c.n), memref(c.m, c.n)];
        let operands: Vec<Value> = op.operands().collect();
        if operands.len() != 3 || operands.iter().zip(&types).any(|(v, t)| v.r#type() != *t) {
            continue;
        }
        let block = op.block().ok_or("a product outside a block")?;
        // `c = 0; c += a b` is `c = a b`: the zero fill just before the product goes.
        let zero_fill = previous_in_block(&op).filter(|fill| {
            fill.name().as_string_ref().as_str() == Ok("linalg.fill")
                && fill.operand(1).is_ok_and(|out| out == operands[2])
                && fill.operand(0).ok().and_then(|v| is_float_zero(&v)).unwrap_or(false)
        });
        let callee = format!("{GEMM_CALLEE}{}{}", if zero_fill.is_some() { OVERWRITE } else { ACCUMULATE }, c.id);
        block.insert_operation_before(
            op,
            func::call(context, FlatSymbolRefAttribute::new(context, &callee), &operands, &[], op.location()),
        );
        module.body().append_operation(declaration(context, &callee, &types, &[]));
        // SAFETY: a product and a fill on buffers have no results, so nothing uses them.
        unsafe {
            if let Some(fill) = zero_fill {
                erase(fill.to_raw());
            }
            erase(raw);
        }
    }
    Ok(())
}

/// The op before `op` in its block (melior 0.27's `previous_in_block` is unimplemented: the
/// C API lacks it).
fn previous_in_block<'c, 'a>(op: &OperationRef<'c, 'a>) -> Option<OperationRef<'c, 'a>> {
    let mut previous = None;
    let mut next = op.block()?.first_operation();
    while let Some(current) = next {
        if current.to_raw().ptr == op.to_raw().ptr {
            return previous;
        }
        next = current.next_in_block();
        previous = Some(current);
    }
    None
}

/// Whether `v` is a float constant equal to zero (either sign); None if it is not a constant.
fn is_float_zero(v: &Value) -> Option<bool> {
    if !v.is_operation_result() {
        return None;
    }
    let result = OperationResult::try_from(*v).ok()?;
    let constant = result.owner();
    if constant.name().as_string_ref().as_str() != Ok("arith.constant") {
        return None;
    }
    let value = constant.attribute("value").ok().filter(|a| a.is_float())?;
    Some(FloatAttribute::try_from(value).ok()?.value() == 0.0)
}

/// Turns every math op of the outlined module (they are all in kernels) into the LLVM
/// intrinsic the NVPTX backend selects, `llvm.call_intrinsic "llvm.floor.f32"(%a)`; any other
/// math op is an error.
fn with_intrinsics<'c>(context: &'c Context, module: &MlirModule<'c>) -> Result<(), String> {
    let math = ops_where(module, |op| op.name().as_string_ref().as_str().is_ok_and(|n| n.starts_with("math.")));
    let no_fast_math = Attribute::parse(context, "#llvm.fastmath<none>").ok_or("no fast-math flags attribute")?;
    for raw in math {
        // SAFETY: collected from the live module; each op is replaced once.
        let op = unsafe { OperationRef::from_raw(raw) };
        let name = op.name().as_string_ref().as_str().map_err(|e| e.to_string())?.to_string();
        let ty = op.result(0).map_err(|e| e.to_string())?.r#type();
        let (_, intrinsic) = INTRINSICS
            .iter()
            .find(|(m, _)| *m == name)
            .ok_or_else(|| format!("`{}` ({ty}) is not supported on GPU targets", name.trim_start_matches("math.")))?;
        let operands: Vec<_> = op.operands().collect();
        let attribute = |name: &str, value: Attribute<'c>| (Identifier::new(context, name), value);
        let call = OperationBuilder::new("llvm.call_intrinsic", op.location())
            .add_operands(&operands)
            .add_results(&[ty])
            .add_attributes(&[
                attribute("intrin", StringAttribute::new(context, &format!("{intrinsic}.{ty}")).into()),
                attribute("fastmathFlags", no_fast_math),
                attribute("op_bundle_sizes", DenseI32ArrayAttribute::new(context, &[]).into()),
                attribute(
                    "operandSegmentSizes",
                    DenseI32ArrayAttribute::new(context, &[operands.len() as i32, 0]).into(),
                ),
            ])
            .build()
            .map_err(|e| e.to_string())?;
        let call = op.block().ok_or("a math op outside a block")?.insert_operation_before(op, call);
        // SAFETY: the op and the call are alive with the same result type.
        unsafe { replace_op(raw, call.to_raw()) };
    }
    Ok(())
}

/// Each `gpu.module` of the lowered module as a module of its own (its ops cloned), by name,
/// in order.
fn kernel_modules<'c>(context: &'c Context, module: &MlirModule<'c>) -> Result<Vec<(String, MlirModule<'c>)>, String> {
    let mut modules = vec![];
    let mut op = module.body().first_operation();
    while let Some(gpu_module) = op {
        op = gpu_module.next_in_block();
        if gpu_module.name().as_string_ref().as_str() != Ok("gpu.module") {
            continue;
        }
        let name = symbol(&gpu_module).ok_or("a gpu.module without a name")?;
        let kernel = MlirModule::new(Location::unknown(context));
        let body = gpu_module.region(0).map_err(|e| e.to_string())?.first_block().ok_or("an empty gpu.module")?;
        let mut inner = body.first_operation();
        while let Some(op) = inner {
            inner = op.next_in_block();
            kernel.body().append_operation(cloned(&op));
        }
        modules.push((name, kernel));
    }
    Ok(modules)
}
