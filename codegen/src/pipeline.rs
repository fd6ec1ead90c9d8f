//! The code generation pipeline, stage by stage: [`compile`] lists every stage in order. Each
//! stage has a name, which is its `--dump-after` name and its label in `--timings`
//! ([`stage_names`] lists them per target). The stages work on one MLIR module in memory,
//! parsed once from the emitted text, then on one LLVM module: no stage reads the printed
//! module back.

use crate::context::{CodegenError, Mlir, Stages};
use crate::{cpu, front, gpu};
use inkwell::context::Context as LlvmContext;
use kiln_ir::{Module, Op};
use std::time::Duration;

/// Which outputs to produce besides the object.
#[derive(Clone, Debug, Default)]
pub struct Emit {
    pub mlir: bool,
    pub llvm: bool,
    pub asm: bool,
    /// Stages after which to print the module (names of [`stage_names`], or `all`).
    pub dump_after: Vec<String>,
}

/// What code generation produced.
#[derive(Debug, Default)]
pub struct Artifacts {
    /// The MLIR module before the pass pipeline (when asked for).
    pub mlir: Option<String>,
    /// The optimized LLVM IR (when asked for).
    pub llvm: Option<String>,
    /// Assembly (when asked for).
    pub asm: Option<String>,
    /// The relocatable object file (CPU targets).
    pub object: Vec<u8>,
    /// The kernels (GPU targets).
    pub kernels: Vec<crate::gpu::Kernel>,
    /// The launch plan of each function, in module order (GPU targets).
    pub launches: Vec<Vec<crate::manifest::Step>>,
    /// Workspace bytes of each function, in module order.
    pub workspace: Vec<u64>,
    /// Stack bytes of each function's loop scratch (see [`crate::workspace`]), in module order.
    pub stack: Vec<u64>,
    /// Time spent in each stage, in order.
    pub timings: Vec<(String, Duration)>,
    /// The module after each stage named in [`Emit::dump_after`]: (stage, text).
    pub dumps: Vec<(String, String)>,
}

/// The stages of a CPU build, in order.
pub const CPU_STAGES: &[&str] = &[
    "emit",
    "fuse",
    "prepare",
    "schedule",
    "bufferize",
    "plan-workspace",
    "prefetch",
    "outline-parallel",
    "split-functions",
    "lower",
    "llvm-ir",
    "llvm-opt",
    "object",
];

/// The stages of a GPU build, in order.
pub const GPU_STAGES: &[&str] = &[
    "emit",
    "fuse",
    "prepare",
    "bufferize",
    "library-products",
    "block-reductions",
    "plan-workspace",
    "map-loops",
    "outline-kernels",
    "launch-plan",
    "lower-kernels",
    "ptx",
];

/// The names of the stages [`compile`] runs for a target.
pub fn stage_names(gpu: bool) -> &'static [&'static str] {
    if gpu {
        GPU_STAGES
    } else {
        CPU_STAGES
    }
}

/// Where `f` (or a body inside it) uses a constant loaded from a weights file, if it does.
fn loaded_constant(f: &kiln_ir::Func) -> Option<kiln_ir::Span> {
    f.insts.iter().find_map(|i| match &i.op {
        Op::Data(_) => Some(i.span),
        op => op.bodies().and_then(|b| b.funcs().iter().find_map(loaded_constant)),
    })
}

/// Compiles a verified module for `target` at optimization level `opt` (0 to 3): an object
/// for a CPU, PTX kernels and a launch plan for a GPU. Stages that only optimize (fuse,
/// schedule, prefetch, outline-parallel) leave the module as it is at -O0.
pub fn compile(module: &Module, target: &crate::Target, opt: u8, emit: Emit) -> Result<Artifacts, CodegenError> {
    // 16-bit floats compute in f32 (kiln_ir::half): codegen sees them only at conversions and
    // in data movement. Modules without them are compiled as they are.
    let widened;
    let module = if module.funcs.iter().any(kiln_ir::half::uses_halves) {
        widened = Module { funcs: module.funcs.iter().map(kiln_ir::half::widened).collect(), ..module.clone() };
        &widened
    } else {
        module
    };
    if target.arch.is_gpu() {
        if let Some(span) = module.funcs.iter().find_map(loaded_constant) {
            return Err(CodegenError {
                stage: crate::gpu::UNSUPPORTED,
                message:
                    "weights compiled in with `load` are not supported on GPU targets yet; take them as parameters"
                        .into(),
                span: Some(span),
            });
        }
    }
    let mlir = Mlir::new();
    let mut s = Stages::new(&emit.dump_after);
    let mut c = s.make("emit", || front::emit(&mlir, module, target, opt))?;
    s.apply("fuse", &mut c, front::fuse)?;
    s.apply("prepare", &mut c, front::prepare)?;
    let mut artifacts = if target.arch.is_gpu() {
        s.apply("bufferize", &mut c, gpu::bufferize)?;
        s.apply("library-products", &mut c, gpu::library_products)?;
        s.apply("block-reductions", &mut c, gpu::block_reductions)?;
        s.apply("plan-workspace", &mut c, front::plan_workspace)?;
        s.apply("map-loops", &mut c, gpu::map_loops)?;
        s.apply("outline-kernels", &mut c, gpu::outline_kernels)?;
        let launches = s.apply("launch-plan", &mut c, gpu::launch_plan)?;
        s.apply("lower-kernels", &mut c, gpu::lower_kernels)?;
        let kernels = s.apply("ptx", &mut c, gpu::ptx)?;
        Artifacts { kernels, launches, ..Default::default() }
    } else {
        s.apply("schedule", &mut c, cpu::schedule)?;
        s.apply("bufferize", &mut c, front::bufferize)?;
        s.apply("plan-workspace", &mut c, front::plan_workspace)?;
        s.apply("prefetch", &mut c, cpu::prefetch)?;
        let stages = s.apply("outline-parallel", &mut c, cpu::outline_parallel)?;
        s.apply("split-functions", &mut c, cpu::split_functions)?;
        s.apply("lower", &mut c, cpu::lower)?;
        let machine = target.machine(opt).map_err(|e| crate::context::err("target setup", e))?;
        let llvm = LlvmContext::create();
        let mut m = s.make("llvm-ir", || cpu::llvm_ir(&c, &llvm, &machine, &stages))?;
        s.apply("llvm-opt", &mut m, |m| cpu::llvm_opt(m, &machine, opt))?;
        let llvm_text = emit.llvm.then(|| m.print_to_string().to_string());
        let (object, asm) = s.apply("object", &mut m, |m| cpu::object(m, &machine, emit.asm))?;
        Artifacts { object, asm, llvm: llvm_text, ..Default::default() }
    };
    artifacts.mlir = emit.mlir.then(|| match &c.script {
        Some(script) => {
            format!("{}// The loop schedule (transform dialect), applied before bufferization:\n{script}", c.emitted)
        }
        None => c.emitted.clone(),
    });
    artifacts.workspace = c.workspace;
    artifacts.stack = c.stack;
    artifacts.timings = s.timings;
    artifacts.dumps = s.dumps;
    Ok(artifacts)
}
