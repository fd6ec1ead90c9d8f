//! The front half of code generation, shared by the CPU ([`crate::cpu`]) and GPU
//! ([`crate::gpu`]) back ends: kiln's IR emitted as MLIR on tensors, elementwise fusion, empty
//! tensors replaced by destinations, bufferization, and the static workspace plan. Each
//! function here is one stage of [`crate::pipeline::compile`] over a [`Compilation`].

use crate::context::{err, CodegenError, Dump, Mlir};
use crate::hide;
use crate::mlir::{emit_module, impl_symbol, Contraction, Convolution, Emitted};
use crate::target::Target;
use crate::workspace;
use kiln_ir::Module;
use melior::ir::Module as MlirModule;

/// Fuses elementwise producers into their consumers and folds unit dimensions (at -O1 and
/// above; unit dimensions left by reshapes would block the row groups' fusion), with the
/// contractions hidden (see [`crate::hide`]).
const FUSE_PIPELINE: &str = "builtin.module(linalg-fuse-elementwise-ops,linalg-fold-unit-extent-dims,canonicalize)";

/// Replaces each result's `tensor.empty` with its destination. This runs before the
/// contractions are scheduled: the schedule's cse would merge equal `tensor.empty`s, and
/// empty-tensor elimination would then hand one destination to two results.
const PREPARE_PIPELINE: &str = "builtin.module(eliminate-empty-tensors)";

/// Linalg on tensors to buffers. The second canonicalization, after cse, removes the
/// self-copies that tiling's `tensor.insert_slice`s bufferize into. Buffers allocated inside a
/// loop (a row group's rows) move out of it: the workspace plan handles top-level buffers.
const BUFFERIZE_PIPELINE: &str = "builtin.module(\
     one-shot-bufferize{bufferize-function-boundaries=1 function-boundary-type-conversion=identity-layout-map},\
     canonicalize,cse,canonicalize,func.func(buffer-loop-hoisting))";

/// One compilation on its way through the MLIR stages: the module, and what earlier stages
/// decided that later ones need.
pub(crate) struct Compilation<'c> {
    pub mlir: &'c Mlir,
    pub ir: &'c Module,
    pub target: &'c Target,
    pub opt: u8,
    pub module: MlirModule<'c>,
    /// The emitted module's text (for `--emit mlir`).
    pub emitted: String,
    /// The products and direct convolutions the emitter tagged `kiln.contraction`.
    pub contractions: Vec<Contraction>,
    pub convolutions: Vec<Convolution>,
    /// The loop schedule applied (CPU targets at -O1 and above).
    pub script: Option<String>,
    /// Workspace and stack bytes of each function, in IR order (after [`plan_workspace`]).
    pub workspace: Vec<u64>,
    pub stack: Vec<u64>,
}

impl Dump for Compilation<'_> {
    fn dump(&self) -> String {
        self.module.dump()
    }
    const EXTENSION: &'static str = "mlir";
}

impl<'c> Compilation<'c> {
    /// Replaces the module by `edit` of its printed form: the stages that still rewrite text
    /// (issue #16 replaces each with an in-memory pass).
    pub fn edit_text(
        &mut self,
        stage: &'static str,
        edit: impl FnOnce(&str) -> Result<String, String>,
    ) -> Result<(), CodegenError> {
        let text = edit(&self.module.as_operation().to_string()).map_err(|e| err(stage, e))?;
        self.module = self.mlir.parse(&text, stage)?;
        Ok(())
    }

    /// Runs a textual pass pipeline on the module.
    pub fn run(&mut self, pipeline: &str) -> Result<(), CodegenError> {
        self.mlir.run(&mut self.module, pipeline)
    }
}

/// The MLIR module of `ir` for `target` as text, with the contractions and convolutions in it
/// (see [`crate::mlir::emit_module`]).
pub fn emitted(ir: &Module, target: &Target) -> Result<Emitted, CodegenError> {
    let pad_b_from_m = crate::schedule::MatmulTiles::for_target(target.registers(), 32).pad_b_from_m;
    emit_module(ir, target, pad_b_from_m)
}

/// Stage `emit`: the MLIR module of `ir` for `target` (see [`emitted`]).
pub(crate) fn emit<'c>(
    mlir: &'c Mlir,
    ir: &'c Module,
    target: &'c Target,
    opt: u8,
) -> Result<Compilation<'c>, CodegenError> {
    let emitted = emitted(ir, target)?;
    Ok(Compilation {
        mlir,
        ir,
        target,
        opt,
        module: mlir.parse(&emitted.text, "MLIR parsing")?,
        emitted: emitted.text,
        contractions: emitted.contractions,
        convolutions: emitted.convolutions,
        script: None,
        workspace: vec![],
        stack: vec![],
    })
}

/// Stage `fuse` (-O1 and above): elementwise fusion with the contractions hidden
/// ([`crate::hide`]).
pub(crate) fn fuse(c: &mut Compilation) -> Result<(), CodegenError> {
    if c.opt == 0 {
        return Ok(());
    }
    let hidden = hide::hide(&c.mlir.context, &c.module).map_err(|e| err("elementwise fusion", e))?;
    c.run(FUSE_PIPELINE)?;
    hide::restore(&c.module, hidden).map_err(|e| err("elementwise fusion", e))
}

/// Stage `prepare`: results' empty tensors replaced by their destinations.
pub(crate) fn prepare(c: &mut Compilation) -> Result<(), CodegenError> {
    c.run(PREPARE_PIPELINE)
}

/// Stage `bufferize`: tensors to buffers.
pub(crate) fn bufferize(c: &mut Compilation) -> Result<(), CodegenError> {
    c.run(BUFFERIZE_PIPELINE)
}

/// Stage `plan-workspace`: every allocation a view of the workspace or of the stack arena
/// ([`workspace`]), and the bytes of each function's workspace and stack.
pub(crate) fn plan_workspace(c: &mut Compilation) -> Result<(), CodegenError> {
    let plans = workspace::plan(&c.module).map_err(|e| err("workspace planning", e))?;
    let ordered: Vec<&workspace::FunctionPlan> =
        c.ir.funcs
            .iter()
            .map(|f| {
                let symbol = impl_symbol(&c.ir.name, &f.name);
                plans
                    .iter()
                    .find(|p| p.symbol == symbol)
                    .ok_or_else(|| err("workspace planning", format!("no plan for `{symbol}`")))
            })
            .collect::<Result<_, _>>()?;
    c.workspace = ordered.iter().map(|p| p.bytes).collect();
    c.stack = ordered.iter().map(|p| p.stack).collect();
    c.edit_text("workspace planning", |text| workspace::rewrite(text, &plans))
}
