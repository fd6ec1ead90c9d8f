//! What every stage of code generation shares: the MLIR context of one compilation
//! ([`Mlir`]: dialects, passes and translations registered, diagnostics collected), the error
//! type, and the record of stages run ([`Stages`]: the time of each, and the module after each
//! stage asked for with `--dump-after`).

use inkwell::context::Context as LlvmContext;
use inkwell::module::Module as LlvmModule;
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
    CodegenError { stage, span: span_in(&message), message }
}

/// The first source span named in MLIR diagnostics text (a location written by
/// [`crate::mlir::span_location`]), if any.
pub fn span_in(text: &str) -> Option<kiln_ir::Span> {
    let rest = &text[text.find("kiln.span:")? + "kiln.span:".len()..];
    let (start, rest) = rest.split_once('-')?;
    let end: String = rest.chars().take_while(char::is_ascii_digit).collect();
    Some(kiln_ir::Span::new(start.parse().ok()?, end.parse().ok()?))
}

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
