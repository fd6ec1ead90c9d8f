//! The CPU back end: the stages after the shared front half ([`crate::front`]) that make an
//! object for x86-64 or aarch64: the loop schedule (before bufferization), next-row
//! prefetches, parallel stages, lowering to the LLVM dialect, LLVM IR with the C entry points,
//! the parallel-for dispatch and the ABI descriptor, LLVM's optimization, and the object.

use crate::context::{err, CodegenError};
use crate::front::Compilation;
use crate::manifest::{entry_symbol, packed_entry_symbol};
use crate::mlir::impl_symbol;
use crate::parallel;
use crate::schedule;
use crate::workspace;
use inkwell::context::Context as LlvmContext;
use inkwell::module::{Linkage, Module as LlvmModule};
use inkwell::passes::PassBuilderOptions;
use inkwell::targets::{FileType, TargetMachine};
use inkwell::AddressSpace;
use kiln_ir::Module;
use melior::ir::{BlockLike, Module as MlirModule};
use melior::Context;

/// The second MLIR pipeline: buffers (allocations already rewritten into workspace views) to
/// the LLVM dialect.
const LOWER_PIPELINE: &str = "builtin.module(func.func(convert-linalg-to-loops),convert-vector-to-scf{full-unroll=true},convert-scf-to-cf,\
     expand-strided-metadata,lower-affine,convert-math-to-llvm,convert-math-to-libm,convert-vector-to-llvm,convert-arith-to-llvm,\
     convert-index-to-llvm,finalize-memref-to-llvm,convert-func-to-llvm{use-bare-ptr-memref-call-conv=1},\
     convert-cf-to-llvm,convert-ub-to-llvm,reconcile-unrealized-casts)";

/// Stage `schedule` (-O1 and above): the transform script of [`schedule`] for the fused
/// module's contractions, row groups and generics, applied before bufferization.
pub(crate) fn schedule(c: &mut Compilation) -> Result<(), CodegenError> {
    if c.opt == 0 {
        return Ok(());
    }
    let products = schedule::Products { contractions: &c.contractions, convolutions: &c.convolutions };
    let tagged = schedule::tag(&c.mlir.context, &c.module, &products, c.target.registers());
    c.script = schedule::transform_script(&products, &tagged, c.target.registers());
    if let Some(script) = &c.script {
        apply_schedule(&c.mlir.context, &c.module, script).map_err(|e| c.mlir.failure("loop schedule", &e))?;
    }
    Ok(())
}

/// Stage `prefetch` (-O1 and above): row groups prefetch their next row ([`crate::prefetch`]).
pub(crate) fn prefetch(c: &mut Compilation) -> Result<(), CodegenError> {
    if c.opt == 0 {
        return Ok(());
    }
    crate::prefetch::next_rows(&c.mlir.context, &c.module).map_err(|e| err("next-row prefetch", e))
}

/// Stage `outline-parallel` (-O1 and above): loops marked parallel become stage functions
/// ([`parallel`]); returns the stages, which [`llvm_ir`] dispatches.
pub(crate) fn outline_parallel(c: &mut Compilation) -> Result<Vec<parallel::Stage>, CodegenError> {
    if c.opt == 0 {
        return Ok(vec![]);
    }
    parallel::outline(&c.mlir.context, &c.module).map_err(|e| err("parallel loops", e))
}

/// Stage `split-functions` (every level): functions too long for LLVM to compile in linear
/// time cut into segments ([`crate::segment`]).
pub(crate) fn split_functions(c: &mut Compilation) -> Result<(), CodegenError> {
    crate::segment::split(&c.mlir.context, &c.module).map(|_| ()).map_err(|e| err("function segments", e))
}

/// Stage `lower`: buffers and loops to the LLVM dialect.
pub(crate) fn lower(c: &mut Compilation) -> Result<(), CodegenError> {
    c.run(LOWER_PIPELINE)
}

/// Stage `llvm-ir`: the module translated to LLVM IR in `llvm`, with the C entry points, the
/// parallel-for dispatch of `stages` and the ABI descriptor, set up for `machine` and
/// verified.
pub(crate) fn llvm_ir<'l>(
    c: &Compilation,
    llvm: &'l LlvmContext,
    machine: &TargetMachine,
    stages: &[parallel::Stage],
) -> Result<LlvmModule<'l>, CodegenError> {
    let (module, workspace) = (c.ir, &c.workspace);
    let m = c.mlir.translate(&c.module, llvm)?;
    m.set_name(&module.name);
    m.set_source_file_name(&format!("{}.kn", module.name));
    add_entry_points(llvm, &m, module, workspace)?;
    parallel::add_dispatch(llvm, &m, &module.name, stages).map_err(|e| err("parallel loops", e))?;
    add_abi_descriptor(llvm, &m, module, workspace);
    m.set_triple(&machine.get_triple());
    m.set_data_layout(&machine.get_target_data().get_data_layout());
    m.verify().map_err(|e| err("LLVM IR verification", e.to_string()))?;
    check_external_functions(&m)?;
    Ok(m)
}

/// Stage `llvm-opt`: LLVM's `default<O{opt}>` pipeline.
pub(crate) fn llvm_opt(m: &mut LlvmModule, machine: &TargetMachine, opt: u8) -> Result<(), CodegenError> {
    m.run_passes(&format!("default<O{}>", opt.min(3)), machine, PassBuilderOptions::create())
        .map_err(|e| err("LLVM optimization", e.to_string()))
}

/// Stage `object`: the relocatable object, and the assembly when `asm`.
pub(crate) fn object(
    m: &mut LlvmModule,
    machine: &TargetMachine,
    asm: bool,
) -> Result<(Vec<u8>, Option<String>), CodegenError> {
    let assembly = if asm {
        let buf = machine
            .write_to_memory_buffer(m, FileType::Assembly)
            .map_err(|e| err("assembly emission", e.to_string()))?;
        Some(String::from_utf8_lossy(buf.as_slice()).into_owned())
    } else {
        None
    };
    let buf = machine.write_to_memory_buffer(m, FileType::Object).map_err(|e| err("object emission", e.to_string()))?;
    Ok((buf.as_slice().to_vec(), assembly))
}

/// Applies a transform script (`@__transform_main` in its own module) to `payload`.
fn apply_schedule(context: &Context, payload: &MlirModule, script: &str) -> Result<(), String> {
    let script = MlirModule::parse(context, script).ok_or("the schedule does not parse: ")?;
    let entry = script.body().first_operation().ok_or("the schedule is empty: ")?;
    // SAFETY: every handle is alive for the whole call; the options are destroyed once.
    let applied = unsafe {
        let options = mlir_sys::mlirTransformOptionsCreate();
        // Handle-invalidation checks before every transform op: in debug builds, which run
        // every schedule template in the tests (docs/decisions.md, row fusion budget).
        mlir_sys::mlirTransformOptionsEnableExpensiveChecks(options, cfg!(debug_assertions));
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
    "erf",
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
        // The packed entry point: the same arguments, read from an array of n + 1 pointers.
        let packed =
            m.add_function(&packed_entry_symbol(&module.name, &func.name), i32t.fn_type(&[ptr.into()], false), None);
        b.position_at_end(llvm.append_basic_block(packed, "entry"));
        let array = packed.get_nth_param(0).expect("the argument array").into_pointer_value();
        let mut unpacked = vec![];
        for i in 0..=n {
            // SAFETY (of the generated code): the caller passes n + 1 pointers.
            let slot = unsafe { b.build_gep(ptr, array, &[i64t.const_int(i as u64, false)], "") }.map_err(build)?;
            unpacked.push(b.build_load(ptr, slot, "").map_err(build)?.into());
        }
        let status = b
            .build_call(entry, &unpacked, "")
            .map_err(build)?
            .try_as_basic_value()
            .basic()
            .ok_or_else(|| err("entry points", "an entry point returns nothing"))?;
        b.build_return(Some(&status)).map_err(build)?;
    }
    Ok(())
}
