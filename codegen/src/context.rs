//! What every stage of code generation shares: the MLIR context of one compilation
//! ([`Mlir`]: dialects, passes and translations registered, diagnostics collected), the error
//! type, and the record of stages run ([`Stages`]: the time of each, and the module after each
//! stage asked for with `--dump-after`).

use inkwell::context::Context as LlvmContext;
use inkwell::module::Module as LlvmModule;
use melior::dialect::DialectRegistry;
use melior::ir::Location;
use melior::ir::Module as MlirModule;
use melior::pass::PassManager;
use melior::utility::{
    parse_pass_pipeline, register_all_dialects, register_all_llvm_translations, register_all_passes,
};
use melior::Context;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

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
    CodegenError { stage, span: None, message: message.into() }
}

/// The first source span a location names (one written by [`crate::mlir::span_location`]),
/// looking through the locations passes wrap it in: fused (ops merged), call sites (inlined)
/// and the children of names.
pub fn location_span(location: Location) -> Option<kiln_ir::Span> {
    if location.is_name() {
        let name = location.name_value();
        let span = name.as_string_ref().as_str().ok()?.strip_prefix(SPAN_PREFIX).and_then(|range| {
            let (start, end) = range.split_once('-')?;
            Some(kiln_ir::Span::new(start.parse().ok()?, end.parse().ok()?))
        });
        span.or_else(|| location_span(location.name_child_location()))
    } else if location.is_fused() {
        (0..location.fused_num_locations()).find_map(|i| location_span(location.fused_location(i)))
    } else if location.is_call_site() {
        location_span(location.call_site_callee()).or_else(|| location_span(location.call_site_caller()))
    } else {
        None
    }
}

/// How a location name that holds a source span begins.
pub const SPAN_PREFIX: &str = "kiln.span:";

/// The MLIR context of one compilation, with every dialect, pass and translation registered,
/// collecting diagnostics.
pub(crate) struct Mlir {
    pub context: Context,
    messages: Rc<RefCell<Vec<String>>>,
    /// The first source span the diagnostics' locations name.
    span: Rc<Cell<Option<kiln_ir::Span>>>,
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
        let span = Rc::new(Cell::new(None));
        let (sink, first) = (messages.clone(), span.clone());
        context.attach_diagnostic_handler(move |d| {
            let location = d.location();
            if first.get().is_none() {
                first.set(location_span(location));
            }
            sink.borrow_mut().push(format!("{location}: {d}"));
            true
        });
        Mlir { context, messages, span }
    }

    /// The diagnostics so far.
    pub fn collected(&self) -> String {
        self.messages.borrow().join("\n")
    }

    /// The failure of `stage`: `context`, then the diagnostics so far, at the source span the
    /// first of them that names one points at.
    pub fn failure(&self, stage: &'static str, context: &str) -> CodegenError {
        CodegenError { stage, message: format!("{context}{}", self.collected()), span: self.span.get() }
    }

    pub fn parse(&self, text: &str, stage: &'static str) -> Result<MlirModule<'_>, CodegenError> {
        MlirModule::parse(&self.context, text).ok_or_else(|| self.failure(stage, ""))
    }

    /// Runs a textual pass pipeline; any error diagnostic is a failure, even when the pass
    /// manager reports success.
    pub fn run(&self, module: &mut MlirModule, pipeline: &str) -> Result<(), CodegenError> {
        let pm = PassManager::new(&self.context);
        parse_pass_pipeline(pm.as_operation_pass_manager(), pipeline)
            .map_err(|e| err("MLIR pipeline parsing", e.to_string()))?;
        pm.run(module).map_err(|_| self.failure("MLIR lowering", ""))?;
        if self.messages.borrow().is_empty() {
            Ok(())
        } else {
            Err(self.failure("MLIR lowering", ""))
        }
    }

    /// Translates an LLVM-dialect module into `llvm`'s context.
    pub fn translate<'l>(&self, module: &MlirModule, llvm: &'l LlvmContext) -> Result<LlvmModule<'l>, CodegenError> {
        // SAFETY: both contexts are alive; the returned module is owned by `llvm`.
        let raw = unsafe { mlir_sys::mlirTranslateModuleToLLVMIR(module.as_operation().to_raw(), llvm.raw() as _) };
        if raw.is_null() {
            return Err(self.failure("translation to LLVM IR", ""));
        }
        Ok(unsafe { LlvmModule::new(raw as _) })
    }
}

/// What a stage leaves behind, printed for `--dump-after`.
pub(crate) trait Dump {
    fn dump(&self) -> String;
    /// The extension of its dump file.
    const EXTENSION: &'static str;
}

impl Dump for MlirModule<'_> {
    fn dump(&self) -> String {
        self.as_operation().to_string()
    }
    const EXTENSION: &'static str = "mlir";
}

impl Dump for LlvmModule<'_> {
    fn dump(&self) -> String {
        self.print_to_string().to_string()
    }
    const EXTENSION: &'static str = "ll";
}

/// The stages run so far: each one's time, and what it left behind when its name is in
/// `dump_after` (or `dump_after` holds `all`), as (`after-STAGE.EXT`, text).
pub(crate) struct Stages<'a> {
    dump_after: &'a [String],
    pub timings: Vec<(String, Duration)>,
    pub dumps: Vec<(String, String)>,
}

impl<'a> Stages<'a> {
    pub fn new(dump_after: &'a [String]) -> Stages<'a> {
        Stages { dump_after, timings: vec![], dumps: vec![] }
    }

    fn record<S: Dump>(&mut self, name: &'static str, start: Instant, state: &S) {
        self.timings.push((name.to_string(), start.elapsed()));
        if self.dump_after.iter().any(|d| d == name || d == "all") {
            self.dumps.push((format!("after-{name}.{}", S::EXTENSION), state.dump()));
        }
    }

    /// Runs stage `name`, which changes `state` in place.
    pub fn apply<S: Dump, R>(
        &mut self,
        name: &'static str,
        state: &mut S,
        stage: impl FnOnce(&mut S) -> Result<R, CodegenError>,
    ) -> Result<R, CodegenError> {
        let start = Instant::now();
        let result = stage(state)?;
        self.record(name, start, state);
        Ok(result)
    }

    /// Runs stage `name`, which makes a new state (the emitted module, the LLVM module).
    pub fn make<T: Dump>(
        &mut self,
        name: &'static str,
        stage: impl FnOnce() -> Result<T, CodegenError>,
    ) -> Result<T, CodegenError> {
        let start = Instant::now();
        let state = stage()?;
        self.record(name, start, &state);
        Ok(state)
    }
}
