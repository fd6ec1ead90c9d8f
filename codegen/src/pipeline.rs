//! The code generation pipeline: MLIR text, the MLIR pass pipeline (bufferize, lower to loops,
//! lower to the LLVM dialect), translation to LLVM IR, C entry points, LLVM optimization, and
//! assembly or object emission. Each step is timed under its name.

use crate::mlir::{emit_module, entry_symbol, impl_symbol};
use crate::target::Target;
use inkwell::context::Context as LlvmContext;
use inkwell::module::{Linkage, Module as LlvmModule};
use inkwell::passes::PassBuilderOptions;
use inkwell::targets::FileType;
use inkwell::AddressSpace;
use kiln_ir::Module;
use melior::dialect::DialectRegistry;
use melior::ir::Module as MlirModule;
use melior::pass::PassManager;
use melior::utility::{
    parse_pass_pipeline, register_all_dialects, register_all_llvm_translations, register_all_passes,
};
use melior::Context;
use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// The MLIR pipeline from linalg on tensors to the LLVM dialect. At -O1 and above,
/// elementwise producers are first fused into their consumers.
fn mlir_pipeline(opt: u8) -> String {
    let fuse = if opt > 0 { "linalg-fuse-elementwise-ops," } else { "" };
    format!(
        "builtin.module({fuse}eliminate-empty-tensors,\
         one-shot-bufferize{{bufferize-function-boundaries=1 function-boundary-type-conversion=identity-layout-map}},\
         canonicalize,buffer-deallocation-pipeline,func.func(convert-linalg-to-loops),convert-scf-to-cf,\
         expand-strided-metadata,lower-affine,convert-math-to-llvm,convert-math-to-libm,convert-arith-to-llvm,\
         convert-index-to-llvm,finalize-memref-to-llvm,convert-func-to-llvm{{use-bare-ptr-memref-call-conv=1}},\
         convert-cf-to-llvm,convert-ub-to-llvm,reconcile-unrealized-casts)"
    )
}

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
    /// The relocatable object file.
    pub object: Vec<u8>,
    /// Time spent in each step, in order.
    pub timings: Vec<(String, Duration)>,
}

/// A failure inside code generation. User errors are caught before codegen, so any of these
/// is a compiler bug (or an unsupported target/CPU, reported as such by the driver).
#[derive(Debug)]
pub struct CodegenError {
    pub stage: &'static str,
    pub message: String,
}

impl std::fmt::Display for CodegenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} failed: {}", self.stage, self.message)
    }
}

impl std::error::Error for CodegenError {}

fn err(stage: &'static str, message: impl Into<String>) -> CodegenError {
    CodegenError { stage, message: message.into() }
}

struct Timer {
    timings: Vec<(String, Duration)>,
    start: Instant,
}

impl Timer {
    fn lap(&mut self, name: &str) {
        let now = Instant::now();
        self.timings.push((name.to_string(), now - self.start));
        self.start = now;
    }
}

/// Compiles a verified module for `target` at optimization level `opt` (0 to 3).
pub fn compile(module: &Module, target: &Target, opt: u8, emit: Emit) -> Result<Artifacts, CodegenError> {
    let mut timer = Timer { timings: vec![], start: Instant::now() };
    let text = emit_module(module);
    timer.lap("mlir-emit");

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
    let collected = || messages.borrow().join("\n");

    let mut mlir_module = MlirModule::parse(&context, &text).ok_or_else(|| err("MLIR parsing", collected()))?;
    let pm = PassManager::new(&context);
    parse_pass_pipeline(pm.as_operation_pass_manager(), &mlir_pipeline(opt))
        .map_err(|e| err("MLIR pipeline parsing", e.to_string()))?;
    pm.run(&mut mlir_module).map_err(|_| err("MLIR lowering", collected()))?;
    if !messages.borrow().is_empty() {
        return Err(err("MLIR lowering", collected()));
    }
    timer.lap("mlir-lower");

    let llvm = LlvmContext::create();
    let raw = unsafe { mlir_sys::mlirTranslateModuleToLLVMIR(mlir_module.as_operation().to_raw(), llvm.raw() as _) };
    if raw.is_null() {
        return Err(err("translation to LLVM IR", collected()));
    }
    let llvm_module = unsafe { LlvmModule::new(raw as _) };
    llvm_module.set_name(&module.name);
    llvm_module.set_source_file_name(&format!("{}.kn", module.name));
    add_entry_points(&llvm, &llvm_module, module)?;
    add_abi_descriptor(&llvm, &llvm_module, module);
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

    let mut artifacts = Artifacts { mlir: emit.mlir.then_some(text), ..Default::default() };
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

/// The only functions an object may call outside itself: C's allocator and memory functions,
/// and libm (LLVM intrinsics such as `llvm.exp.f32` become calls to the libm function).
pub const ALLOWED_EXTERNAL: &[&str] = &[
    "malloc", "free", "memcpy", "memmove", "memset", "expf", "exp", "logf", "log", "sqrtf", "sqrt", "tanhf", "tanh",
    "sinf", "sin", "cosf", "cos", "powf", "pow", "fabsf", "fabs",
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

/// Adds the constant C string `<module>.kiln_abi` holding [`crate::manifest::abi`]: a loader can
/// check that a manifest describes the library it sits beside before calling anything. The `.`
/// keeps the name apart from every C identifier, so it cannot clash with an entry point.
fn add_abi_descriptor<'c>(llvm: &'c LlvmContext, m: &LlvmModule<'c>, module: &Module) {
    let text = crate::manifest::abi(module);
    let value = llvm.const_string(text.as_bytes(), true);
    let global = m.add_global(value.get_type(), None, &format!("{}.kiln_abi", module.name));
    global.set_initializer(&value);
    global.set_constant(true);
}

/// Adds the C entry point `int32_t <module>_<f>(ptr...)` of every function: it returns 1 when
/// any pointer is NULL, else calls the implementation and returns 0. Implementations become
/// internal so that only entry points are exported.
fn add_entry_points<'c>(llvm: &'c LlvmContext, m: &LlvmModule<'c>, module: &Module) -> Result<(), CodegenError> {
    for f in m.get_functions() {
        if f.count_basic_blocks() > 0 {
            f.set_linkage(Linkage::Internal);
        }
    }
    let ptr = llvm.ptr_type(AddressSpace::default());
    let i32t = llvm.i32_type();
    for func in &module.funcs {
        let imp = m
            .get_function(&impl_symbol(&module.name, &func.name))
            .ok_or_else(|| err("entry points", format!("no implementation of `{}`", func.name)))?;
        let n = func.params.len() + func.results.len();
        let params = vec![ptr.into(); n];
        let entry = m.add_function(&entry_symbol(&module.name, &func.name), i32t.fn_type(&params, false), None);
        let b = llvm.create_builder();
        let start = llvm.append_basic_block(entry, "entry");
        let null = llvm.append_basic_block(entry, "null_argument");
        let call = llvm.append_basic_block(entry, "call");
        b.position_at_end(start);
        let build = |e: inkwell::builder::BuilderError| err("entry points", e.to_string());
        let mut any_null = llvm.bool_type().const_zero();
        for p in entry.get_param_iter() {
            let is_null = b.build_is_null(p.into_pointer_value(), "").map_err(build)?;
            any_null = b.build_or(any_null, is_null, "").map_err(build)?;
        }
        b.build_conditional_branch(any_null, null, call).map_err(build)?;
        b.position_at_end(null);
        b.build_return(Some(&i32t.const_int(1, false))).map_err(build)?;
        b.position_at_end(call);
        let args: Vec<_> = entry.get_param_iter().map(|p| p.into()).collect();
        b.build_call(imp, &args, "").map_err(build)?;
        b.build_return(Some(&i32t.const_zero())).map_err(build)?;
    }
    Ok(())
}
