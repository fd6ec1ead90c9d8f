//! The code generation pipeline: MLIR text, the MLIR pass pipeline (bufferize, lower to loops,
//! lower to the LLVM dialect), translation to LLVM IR, C entry points, LLVM optimization, and
//! assembly or object emission. Each step is timed under its name.

use crate::manifest::entry_symbol;
use crate::mlir::{emit_module, impl_symbol};
use crate::parallel;
use crate::schedule;
use crate::target::Target;
use crate::workspace;
use inkwell::context::Context as LlvmContext;
use inkwell::module::{Linkage, Module as LlvmModule};
use inkwell::passes::PassBuilderOptions;
use inkwell::targets::FileType;
use inkwell::AddressSpace;
use kiln_ir::Module;
use melior::dialect::DialectRegistry;
use melior::ir::{BlockLike, Module as MlirModule};
use melior::pass::PassManager;
use melior::utility::{
    parse_pass_pipeline, register_all_dialects, register_all_llvm_translations, register_all_passes,
};
use melior::Context;
use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Fuses elementwise producers into their consumers and folds unit dimensions (at -O1 and
/// above; unit dimensions left by reshapes would block the row groups' fusion), with the
/// contractions hidden (see [`crate::mlir::hide_contractions`]).
const FUSE_PIPELINE: &str = "builtin.module(linalg-fuse-elementwise-ops,linalg-fold-unit-extent-dims,canonicalize)";

/// Replaces each result's `tensor.empty` with its destination. This runs before the
/// contractions are scheduled: the schedule's cse would merge equal `tensor.empty`s, and
/// empty-tensor elimination would then hand one destination to two results.
const PREPARE_PIPELINE: &str = "builtin.module(eliminate-empty-tensors)";

/// Linalg on tensors to buffers (after [`PREPARE_PIPELINE`]). The second canonicalization, after cse, removes the
/// self-copies that tiling's `tensor.insert_slice`s bufferize into. Buffers allocated inside a
/// loop (a row group's rows) move out of it: the workspace plan handles top-level buffers. Its
/// output is planned by [`workspace`].
const BUFFERIZE_PIPELINE: &str = "builtin.module(\
     one-shot-bufferize{bufferize-function-boundaries=1 function-boundary-type-conversion=identity-layout-map},\
     canonicalize,cse,canonicalize,func.func(buffer-loop-hoisting))";

/// The second MLIR pipeline: buffers (allocations already rewritten into workspace views) to
/// the LLVM dialect.
const LOWER_PIPELINE: &str = "builtin.module(func.func(convert-linalg-to-loops),convert-vector-to-scf{full-unroll=true},convert-scf-to-cf,\
     expand-strided-metadata,lower-affine,convert-vector-to-llvm,convert-math-to-llvm,convert-math-to-libm,convert-arith-to-llvm,\
     convert-index-to-llvm,finalize-memref-to-llvm,convert-func-to-llvm{use-bare-ptr-memref-call-conv=1},\
     convert-cf-to-llvm,convert-ub-to-llvm,reconcile-unrealized-casts)";

/// Which outputs to produce besides the object.
#[derive(Clone, Copy, Debug, Default)]
pub struct Emit {
    pub mlir: bool,
    pub llvm: bool,
    pub asm: bool,
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
    /// Stack bytes of each function's loop scratch (see [`workspace`]), in module order.
    pub stack: Vec<u64>,
    /// Time spent in each step, in order.
    pub timings: Vec<(String, Duration)>,
}

/// A failure inside code generation. User errors are caught before codegen, so any of these
/// is a compiler bug (or an unsupported target/CPU, reported as such by the driver).
#[derive(Debug)]
pub struct CodegenError {
    pub stage: &'static str,
    pub message: String,
    /// The source span MLIR's diagnostics point at, when they point at one.
    pub span: Option<kiln_ir::Span>,
}

impl std::fmt::Display for CodegenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} failed: {}", self.stage, self.message)
    }
}

impl std::error::Error for CodegenError {}

pub(crate) fn err(stage: &'static str, message: impl Into<String>) -> CodegenError {
    let message = message.into();
    CodegenError { stage, span: crate::mlir::span_in(&message), message }
}

pub(crate) struct Timer {
    pub timings: Vec<(String, Duration)>,
    pub start: Instant,
}

impl Timer {
    pub fn lap(&mut self, name: &str) {
        let now = Instant::now();
        self.timings.push((name.to_string(), now - self.start));
        self.start = now;
    }
}

/// Compiles a verified module for `target` at optimization level `opt` (0 to 3).
/// The MLIR context of one compilation, with every dialect, pass and translation registered,
/// collecting diagnostics.
pub(crate) struct Mlir {
    pub context: Context,
    messages: Rc<RefCell<Vec<String>>>,
}

impl Mlir {
    pub fn new() -> Mlir {
        let registry = DialectRegistry::new();
        register_all_dialects(&registry);
        let context = Context::new();
        context.enable_multi_threading(false);
        context.append_dialect_registry(&registry);
        context.load_all_available_dialects();
        register_all_llvm_translations(&context);
        register_all_passes();
        let messages = Rc::new(RefCell::new(Vec::<String>::new()));
        let sink = messages.clone();
        context.attach_diagnostic_handler(move |d| {
            sink.borrow_mut().push(format!("{}: {}", d.location(), d));
            true
        });
        Mlir { context, messages }
    }

    /// The diagnostics so far.
    pub fn collected(&self) -> String {
        self.messages.borrow().join("\n")
    }

    pub fn parse(&self, text: &str, stage: &'static str) -> Result<MlirModule<'_>, CodegenError> {
        MlirModule::parse(&self.context, text).ok_or_else(|| err(stage, self.collected()))
    }

    /// Runs a textual pass pipeline; any error diagnostic is a failure, even when the pass
    /// manager reports success.
    pub fn run(&self, module: &mut MlirModule, pipeline: &str) -> Result<(), CodegenError> {
        let pm = PassManager::new(&self.context);
        parse_pass_pipeline(pm.as_operation_pass_manager(), pipeline)
            .map_err(|e| err("MLIR pipeline parsing", e.to_string()))?;
        pm.run(module).map_err(|_| err("MLIR lowering", self.collected()))?;
        if self.messages.borrow().is_empty() {
            Ok(())
        } else {
            Err(err("MLIR lowering", self.collected()))
        }
    }

    /// Translates an LLVM-dialect module into `llvm`'s context.
    pub fn translate<'l>(&self, module: &MlirModule, llvm: &'l LlvmContext) -> Result<LlvmModule<'l>, CodegenError> {
        // SAFETY: both contexts are alive; the returned module is owned by `llvm`.
        let raw = unsafe { mlir_sys::mlirTranslateModuleToLLVMIR(module.as_operation().to_raw(), llvm.raw() as _) };
        if raw.is_null() {
            return Err(err("translation to LLVM IR", self.collected()));
        }
        Ok(unsafe { LlvmModule::new(raw as _) })
    }
}

/// The emitted module bufferized and planned: elementwise fusion, the schedule `script` makes
/// from the fused module (if any), bufferization, `before_plan`'s rewrite of the bufferized
/// text (if any: the GPU's library calls and block launches, whose buffers the plan must then
/// see), and the workspace plan with allocations rewritten into views of `%kiln_ws` (or stack
/// buffers).
pub(crate) fn bufferize_and_plan(
    mlir: &Mlir,
    module: &Module,
    text: &str,
    opt: u8,
    script: impl FnOnce(&MlirModule) -> Option<String>,
    before_plan: Option<&dyn Fn(&str) -> String>,
) -> Result<Planned, CodegenError> {
    let mut bufferized = if opt > 0 {
        let (hidden_text, hidden) = crate::mlir::hide_contractions(text);
        let mut fused = mlir.parse(&hidden_text, "MLIR parsing")?;
        mlir.run(&mut fused, FUSE_PIPELINE)?;
        let restored = crate::mlir::restore_contractions(&fused.as_operation().to_string(), &hidden)
            .map_err(|e| err("elementwise fusion", e))?;
        mlir.parse(&restored, "MLIR parsing (fused)")?
    } else {
        mlir.parse(text, "MLIR parsing")?
    };
    mlir.run(&mut bufferized, PREPARE_PIPELINE)?;
    let script = script(&bufferized);
    if let Some(script) = &script {
        apply_schedule(&mlir.context, &bufferized, script).map_err(|e| err("loop schedule", e + &mlir.collected()))?;
    }
    mlir.run(&mut bufferized, BUFFERIZE_PIPELINE)?;
    if let Some(rewrite) = before_plan {
        bufferized = mlir.parse(&rewrite(&bufferized.as_operation().to_string()), "MLIR parsing (before planning)")?;
    }
    let plans = workspace::plan(&bufferized).map_err(|e| err("workspace planning", e))?;
    let planned =
        workspace::rewrite(&bufferized.as_operation().to_string(), &plans).map_err(|e| err("workspace planning", e))?;
    let ordered: Vec<&workspace::FunctionPlan> = module
        .funcs
        .iter()
        .map(|f| {
            let symbol = impl_symbol(&module.name, &f.name);
            plans
                .iter()
                .find(|p| p.symbol == symbol)
                .ok_or_else(|| err("workspace planning", format!("no plan for `{symbol}`")))
        })
        .collect::<Result<_, _>>()?;
    Ok(Planned {
        text: planned,
        workspace: ordered.iter().map(|p| p.bytes).collect(),
        stack: ordered.iter().map(|p| p.stack).collect(),
        script,
    })
}

/// What [`bufferize_and_plan`] produces.
pub(crate) struct Planned {
    /// The planned module.
    pub text: String,
    /// Workspace bytes of each function, in module order.
    pub workspace: Vec<u64>,
    /// Stack bytes of each function's loop scratch, in module order.
    pub stack: Vec<u64>,
    /// The transform script applied, if any.
    pub script: Option<String>,
}

/// Compiles a verified module for `target` at optimization level `opt` (0 to 3): an object
/// for a CPU, PTX kernels and a launch plan for a GPU ([`crate::gpu`]).
pub fn compile(module: &Module, target: &Target, opt: u8, emit: Emit) -> Result<Artifacts, CodegenError> {
    if target.arch.is_gpu() {
        return crate::gpu::compile(module, target, opt, emit);
    }
    let mut timer = Timer { timings: vec![], start: Instant::now() };
    let emitted = emit_module(module, target)?;
    let text = emitted.text;
    timer.lap("mlir-emit");

    let mlir = Mlir::new();
    let Planned { text: planned, workspace, stack, script } = bufferize_and_plan(
        &mlir,
        module,
        &text,
        opt,
        |fused| {
            (opt > 0).then(|| {
                let tagged = schedule::tag(&mlir.context, fused);
                schedule::transform_script(&emitted.contractions, &emitted.convolutions, &tagged, target.registers())
            })?
        },
        None,
    )?;
    let (planned, stages) = if opt > 0 {
        parallel::outline(&crate::prefetch::next_rows(&planned)).map_err(|e| err("parallel loops", e))?
    } else {
        (planned, vec![])
    };
    let mut mlir_module = mlir.parse(&planned, "MLIR parsing (planned)")?;
    mlir.run(&mut mlir_module, LOWER_PIPELINE)?;
    timer.lap("mlir-lower");

    let llvm = LlvmContext::create();
    let llvm_module = mlir.translate(&mlir_module, &llvm)?;
    llvm_module.set_name(&module.name);
    llvm_module.set_source_file_name(&format!("{}.kn", module.name));
    add_entry_points(&llvm, &llvm_module, module, &workspace)?;
    parallel::add_dispatch(&llvm, &llvm_module, &module.name, &stages).map_err(|e| err("parallel loops", e))?;
    add_abi_descriptor(&llvm, &llvm_module, module, &workspace);
    timer.lap("llvm-translate");

    let machine = target.machine(opt).map_err(|e| err("target setup", e))?;
    llvm_module.set_triple(&machine.get_triple());
    llvm_module.set_data_layout(&machine.get_target_data().get_data_layout());
    llvm_module.verify().map_err(|e| err("LLVM IR verification", e.to_string()))?;
    check_external_functions(&llvm_module)?;
    llvm_module
        .run_passes(&format!("default<O{}>", opt.min(3)), &machine, PassBuilderOptions::create())
        .map_err(|e| err("LLVM optimization", e.to_string()))?;
    timer.lap("llvm-opt");

    let mlir = emit.mlir.then(|| match script {
        Some(script) => {
            format!("{text}// The loop schedule (transform dialect), applied before bufferization:\n{script}")
        }
        None => text,
    });
    let mut artifacts = Artifacts { mlir, workspace, stack, ..Default::default() };
    if emit.llvm {
        artifacts.llvm = Some(llvm_module.print_to_string().to_string());
    }
    if emit.asm {
        let buf = machine
            .write_to_memory_buffer(&llvm_module, FileType::Assembly)
            .map_err(|e| err("assembly emission", e.to_string()))?;
        artifacts.asm = Some(String::from_utf8_lossy(buf.as_slice()).into_owned());
    }
    let buf = machine
        .write_to_memory_buffer(&llvm_module, FileType::Object)
        .map_err(|e| err("object emission", e.to_string()))?;
    artifacts.object = buf.as_slice().to_vec();
    timer.lap("object");
    artifacts.timings = timer.timings;
    Ok(artifacts)
}

/// Applies a transform script (`@__transform_main` in its own module) to `payload`.
fn apply_schedule(context: &Context, payload: &MlirModule, script: &str) -> Result<(), String> {
    let script = MlirModule::parse(context, script).ok_or("the schedule does not parse: ")?;
    let entry = script.body().first_operation().ok_or("the schedule is empty: ")?;
    // SAFETY: every handle is alive for the whole call; the options are destroyed once.
    let applied = unsafe {
        let options = mlir_sys::mlirTransformOptionsCreate();
        let result = mlir_sys::mlirTransformApplyNamedSequence(
            payload.as_operation().to_raw(),
            entry.to_raw(),
            script.as_operation().to_raw(),
            options,
        );
        mlir_sys::mlirTransformOptionsDestroy(options);
        result.value != 0
    };
    if applied {
        Ok(())
    } else {
        Err("the transform interpreter failed: ".into())
    }
}

/// The only functions an object may call outside itself: C's allocator and memory functions,
/// and libm (LLVM intrinsics such as `llvm.exp.f32` become calls to the libm function).
pub const ALLOWED_EXTERNAL: &[&str] = &[
    "aligned_alloc",
    "malloc",
    "free",
    "memcpy",
    "memmove",
    "memset",
    "expf",
    "exp",
    "logf",
    "log",
    "sqrtf",
    "sqrt",
    "tanhf",
    "tanh",
    "sinf",
    "sin",
    "cosf",
    "cos",
    "powf",
    "pow",
    "fabsf",
    "fabs",
];

/// Refuses a module that declares a function outside [`ALLOWED_EXTERNAL`] (such as MLIR's
/// runtime library), so every object links with nothing but libc and libm.
fn check_external_functions(m: &LlvmModule) -> Result<(), CodegenError> {
    for f in m.get_functions() {
        let name = f.get_name().to_string_lossy().into_owned();
        if f.count_basic_blocks() == 0 && !name.starts_with("llvm.") && !ALLOWED_EXTERNAL.contains(&name.as_str()) {
            return Err(err(
                "external symbol check",
                format!("the generated code calls `{name}`, which is neither libc nor libm"),
            ));
        }
    }
    Ok(())
}

/// Adds the constant C string [`crate::manifest::abi_symbol`] holding the module's ABI descriptor
/// ([`crate::manifest::module_abi`]): a loader can check that a manifest describes the library it
/// sits beside before calling anything.
fn add_abi_descriptor<'c>(llvm: &'c LlvmContext, m: &LlvmModule<'c>, module: &Module, workspace: &[u64]) {
    let text = crate::manifest::module_abi(module, workspace);
    let value = llvm.const_string(text.as_bytes(), true);
    let global = m.add_global(value.get_type(), None, &crate::manifest::abi_symbol(&module.name));
    global.set_initializer(&value);
    global.set_constant(true);
}

/// Adds the C entry point `int32_t <module>_<f>(ptr in..., ptr out..., ptr workspace)` of
/// every function. It returns 1 when an input or output pointer is NULL, 2 when the workspace
/// is not 64-byte aligned, 3 when it must allocate the workspace (NULL given) and cannot; else
/// it calls the implementation and returns 0. Implementations become internal so that only
/// entry points are exported.
fn add_entry_points<'c>(
    llvm: &'c LlvmContext,
    m: &LlvmModule<'c>,
    module: &Module,
    workspace: &[u64],
) -> Result<(), CodegenError> {
    for f in m.get_functions() {
        if f.count_basic_blocks() > 0 {
            f.set_linkage(Linkage::Internal);
        }
    }
    let ptr = llvm.ptr_type(AddressSpace::default());
    let i32t = llvm.i32_type();
    let i64t = llvm.i64_type();
    let aligned_alloc = m.add_function("aligned_alloc", ptr.fn_type(&[i64t.into(), i64t.into()], false), None);
    let free = m.add_function("free", llvm.void_type().fn_type(&[ptr.into()], false), None);
    for (func, &bytes) in module.funcs.iter().zip(workspace) {
        let imp = m
            .get_function(&impl_symbol(&module.name, &func.name))
            .ok_or_else(|| err("entry points", format!("no implementation of `{}`", func.name)))?;
        let n = func.params.len() + func.results.len();
        let params = vec![ptr.into(); n + 1];
        let entry = m.add_function(&entry_symbol(&module.name, &func.name), i32t.fn_type(&params, false), None);
        let b = llvm.create_builder();
        let block = |name: &str| llvm.append_basic_block(entry, name);
        let (start, null, given, misaligned, call, allocate, failed, owned) = (
            block("entry"),
            block("null_argument"),
            block("workspace_given"),
            block("misaligned_workspace"),
            block("call"),
            block("allocate_workspace"),
            block("allocation_failed"),
            block("call_with_own_workspace"),
        );
        let build = |e: inkwell::builder::BuilderError| err("entry points", e.to_string());
        let ret = |at, code: u64| -> Result<(), CodegenError> {
            b.position_at_end(at);
            b.build_return(Some(&i32t.const_int(code, false))).map(|_| ()).map_err(build)
        };
        let args: Vec<_> = entry.get_param_iter().map(|p| p.into()).collect();
        let ws = entry.get_nth_param(n as u32).expect("workspace parameter").into_pointer_value();
        b.position_at_end(start);
        let mut any_null = llvm.bool_type().const_zero();
        for p in entry.get_param_iter().take(n) {
            let is_null = b.build_is_null(p.into_pointer_value(), "").map_err(build)?;
            any_null = b.build_or(any_null, is_null, "").map_err(build)?;
        }
        b.build_conditional_branch(any_null, null, given).map_err(build)?;
        ret(null, 1)?;
        // A NULL workspace with nothing to plan is fine: the views are never read.
        b.position_at_end(given);
        let ws_null = b.build_is_null(ws, "").map_err(build)?;
        let address = b.build_ptr_to_int(ws, i64t, "").map_err(build)?;
        let low = b.build_and(address, i64t.const_int(workspace::ALIGNMENT - 1, false), "").map_err(build)?;
        let aligned = b.build_int_compare(inkwell::IntPredicate::EQ, low, i64t.const_zero(), "").map_err(build)?;
        let needs_own =
            b.build_and(ws_null, llvm.bool_type().const_int((bytes > 0) as u64, false), "").map_err(build)?;
        let ok = b.build_or(aligned, ws_null, "").map_err(build)?;
        let check = llvm.append_basic_block(entry, "check_alignment");
        b.build_conditional_branch(needs_own, allocate, check).map_err(build)?;
        b.position_at_end(check);
        b.build_conditional_branch(ok, call, misaligned).map_err(build)?;
        ret(misaligned, 2)?;
        b.position_at_end(call);
        b.build_call(imp, &args, "").map_err(build)?;
        b.build_return(Some(&i32t.const_zero())).map_err(build)?;
        b.position_at_end(allocate);
        let size = i64t.const_int(bytes, false);
        let own = b
            .build_call(aligned_alloc, &[i64t.const_int(workspace::ALIGNMENT, false).into(), size.into()], "")
            .map_err(build)?
            .try_as_basic_value()
            .basic()
            .ok_or_else(|| err("entry points", "aligned_alloc returns nothing"))?
            .into_pointer_value();
        let own_null = b.build_is_null(own, "").map_err(build)?;
        b.build_conditional_branch(own_null, failed, owned).map_err(build)?;
        ret(failed, 3)?;
        b.position_at_end(owned);
        let mut own_args = args.clone();
        own_args[n] = own.into();
        b.build_call(imp, &own_args, "").map_err(build)?;
        b.build_call(free, &[own.into()], "").map_err(build)?;
        b.build_return(Some(&i32t.const_zero())).map_err(build)?;
    }
    Ok(())
}
