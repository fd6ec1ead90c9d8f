//! The front half of code generation, shared by the CPU ([`crate::cpu`]) and GPU
//! ([`crate::gpu`]) back ends: kiln's IR emitted as MLIR on tensors, elementwise fusion, empty
//! tensors replaced by destinations, bufferization, and the static workspace plan. Each
//! function here is one stage of [`crate::pipeline::compile`] over a [`Compilation`].

use crate::context::{err, CodegenError, Dump, Mlir};
use crate::edit::ops_where;
use crate::hide;
use crate::mlir::{emit_module, impl_symbol, Contraction, Convolution, Emitted};
use crate::target::Target;
use crate::workspace;
use kiln_ir::Module;
use melior::ir::attribute::{FlatSymbolRefAttribute, StringAttribute};
use melior::ir::operation::{
    OperationBuilder, OperationLike, OperationMutLike, OperationRef, OperationRefMut, WalkOrder, WalkResult,
};
use melior::ir::{BlockLike, Module as MlirModule, RegionLike, ValueLike};
use melior::Context;
use std::collections::BTreeMap;

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
/// conditional's branch or a loop (a row group's rows) move out of it: the workspace plan
/// handles top-level buffers.
const BUFFERIZE_PIPELINE: &str = "builtin.module(\
     one-shot-bufferize{bufferize-function-boundaries=1 function-boundary-type-conversion=identity-layout-map unknown-type-conversion=identity-layout-map},\
     canonicalize,cse,canonicalize,func.func(buffer-hoisting,buffer-loop-hoisting))";

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

/// Stage `bufferize`: tensors to buffers, constants numbered in the order they are used.
pub(crate) fn bufferize(c: &mut Compilation) -> Result<(), CodegenError> {
    carry_in_place(&c.module).map_err(|e| err("bufferization", e))?;
    c.run(BUFFERIZE_PIPELINE)?;
    number_constants(&c.mlir.context, &c.module).map_err(|e| err("bufferization", e))
}

/// Writes each next carry of every loop the emitter made (`scf.for` or `scf.while` tagged
/// `kiln.carries`) into
/// its carry, as `bufferization.materialize_in_destination` before the loop's yield: one-shot
/// bufferization needs a loop's yielded buffers to be its iteration arguments', and copies
/// only where the body still reads a carry after writing the next one. This runs after
/// empty-tensor elimination (stage `prepare`), which would otherwise make the body's last op
/// write the carry in place, and the tiles of a scheduled body read a carry that earlier
/// tiles wrote.
fn carry_in_place(module: &MlirModule) -> Result<(), String> {
    for raw in ops_where(module, |op| op.has_attribute("kiln.carries")) {
        // SAFETY: collected from the live module; only ops inside its body are added.
        let lp = unsafe { OperationRef::from_raw(raw) };
        // `scf.for`: the body is region 0, its carries after the index; `scf.while`: the
        // body is region 1 (after the condition), its arguments the carries.
        let (region, first) = if lp.name().as_string_ref().as_str() == Ok("scf.while") { (1, 0) } else { (0, 1) };
        let body = lp.region(region).map_err(|e| e.to_string())?.first_block().ok_or("a loop without a body")?;
        let yield_op = body.terminator().ok_or("a loop body without a yield")?;
        for k in 0..yield_op.operand_count() {
            let next = yield_op.operand(k).map_err(|e| e.to_string())?;
            let carry = body.argument(first + k).map_err(|e| e.to_string())?;
            let copy = OperationBuilder::new("bufferization.materialize_in_destination", yield_op.location())
                .add_operands(&[next, carry.into()])
                .add_results(&[next.r#type()])
                .build()
                .map_err(|e| e.to_string())?;
            let copy = body.insert_operation_before(yield_op, copy);
            let written = copy.result(0).map_err(|e| e.to_string())?;
            // SAFETY: the yield is live and operand k exists; the new value has its type.
            unsafe { mlir_sys::mlirOperationSetOperand(yield_op.to_raw(), k as isize, written.to_raw()) };
        }
    }
    Ok(())
}

/// Renames the module's `memref.global`s `kiln_constant_N`, N the order of their first use
/// (functions in order, ops in pre-order), and puts them in that order at the module's start.
/// Bufferization names and orders the globals it makes for constants by an order that varies
/// from run to run (`__constant_xf32_0` was one constant in one build and another in the
/// next), which made -O0 objects differ between identical builds.
fn number_constants<'c>(context: &'c Context, module: &MlirModule<'c>) -> Result<(), String> {
    let mut globals = BTreeMap::new();
    let mut uses = vec![];
    module.as_operation().walk(WalkOrder::PreOrder, |op| {
        match op.name().as_string_ref().as_str() {
            Ok("memref.global") => {
                if let Some(name) = op.attribute("sym_name").ok().and_then(|a| StringAttribute::try_from(a).ok()) {
                    globals.insert(name.value().to_string(), op.to_raw());
                }
            }
            Ok("memref.get_global") => uses.push(op.to_raw()),
            _ => {}
        }
        WalkResult::Advance
    });
    // Old name to new name, in order of first use.
    let mut numbered: Vec<(String, String)> = vec![];
    // The numbered globals go, in order, before the module's first op that is not a global.
    let mut first = module.body().first_operation();
    while let Some(op) = first.filter(|op| op.name().as_string_ref().as_str() == Ok("memref.global")) {
        first = op.next_in_block();
    }
    let first = first.ok_or("a module of globals alone")?;
    for raw in uses {
        // SAFETY: collected from the live module; renaming changes no op's existence.
        let mut get = unsafe { OperationRefMut::from_raw(raw) };
        let old = get
            .attribute("name")
            .ok()
            .and_then(|a| FlatSymbolRefAttribute::try_from(a).ok())
            .ok_or("a `memref.get_global` without a name")?
            .value()
            .to_string();
        let new = match numbered.iter().find(|(o, _)| *o == old) {
            Some((_, new)) => new.clone(),
            None => {
                let new = format!("kiln_constant_{}", numbered.len());
                let global = *globals.get(&old).ok_or_else(|| format!("no global `{old}`"))?;
                // SAFETY: a live op of the module body.
                let mut global = unsafe { OperationRefMut::from_raw(global) };
                global.set_attribute("sym_name", StringAttribute::new(context, &new).into());
                global.move_before(first);
                numbered.push((old, new.clone()));
                new
            }
        };
        get.set_attribute("name", FlatSymbolRefAttribute::new(context, &new).into());
    }
    Ok(())
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
    workspace::apply(&c.mlir.context, &c.module, &plans).map_err(|e| err("workspace planning", e))
}
