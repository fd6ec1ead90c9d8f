//! Ops kept out of reach of an upstream pass, in memory: the products and direct convolutions
//! the emitter tagged `kiln.contraction`, and the elementwise ops it tagged
//! `kiln.fusion_barrier`, while elementwise fusion runs (stage `fuse`).
//!
//! MLIR's `linalg-fuse-elementwise-ops` propagates reshapes into every linalg op it meets,
//! turning a contraction whose operand is reshaped (an im2col matrix, say) into a generic with
//! several reduction loops that the contraction schedule no longer recognizes, and would fuse
//! elementwise producers into a convolution, recomputing them for every tap. The pass takes no
//! control function through the C API (which is how IREE and XLA keep such ops apart), and it
//! grows a fused op's region by cloning at each step, quadratic in a long chain's length: the
//! emitter bounds each fusion group (see `fusion_barriers` in mlir.rs) by tagging the op where
//! one ends. [`hide`] replaces each tagged op by a call of a declared function
//! `@kiln_hidden_contraction_ID` (or `_barrier_ID`)
//! with the same operands and results, which no linalg pattern looks into, and takes the op
//! out of its block; [`restore`] puts each op back where its call stands, on the call's
//! operands, and removes the calls and declarations.
//!
//! A detached op keeps its operands, so while hidden it is one more user of each value its
//! call uses: every value it reads stays alive (the call reads it too), and a pattern that
//! replaces a value's uses updates both. Ops still detached when [`Hidden`] is dropped (a
//! failed pass) are destroyed.

use crate::edit::{declaration, erase, ops_where, replace_uses};
use melior::dialect::func;
use melior::ir::attribute::{FlatSymbolRefAttribute, IntegerAttribute, StringAttribute};
use melior::ir::operation::{OperationLike, OperationRef};
use melior::ir::{BlockLike, Module, Type, ValueLike};
use melior::Context;
use mlir_sys::MlirOperation;

/// The attributes that mark the ops to hide (each with the op's id, an integer), with the part
/// of the standing-in function's name that says which.
const TAGS: [(&str, &str); 2] = [("kiln.contraction", "contraction"), ("kiln.fusion_barrier", "barrier")];
/// The prefix of the functions whose calls stand for hidden ops.
const CALLEE: &str = "kiln_hidden_";

/// The ops [`hide`] took out of the module, by the name of the function that stands for each.
pub(crate) struct Hidden {
    ops: Vec<(String, MlirOperation)>,
}

impl Drop for Hidden {
    fn drop(&mut self) {
        for (_, op) in self.ops.drain(..) {
            // SAFETY: the op is detached and owned by `self` alone.
            unsafe { mlir_sys::mlirOperationDestroy(op) };
        }
    }
}

/// Replaces every op of `module` tagged with one of [`TAGS`] by a call of a private function
/// declared at the end of the module, and returns the ops taken out.
pub(crate) fn hide<'c>(context: &'c Context, module: &Module<'c>) -> Result<Hidden, String> {
    let mut hidden = Hidden { ops: vec![] };
    for raw in ops_where(module, |op| TAGS.iter().any(|(tag, _)| op.has_attribute(tag))) {
        // SAFETY: `raw` was collected from the live module and nothing has erased it.
        let op = unsafe { OperationRef::from_raw(raw) };
        let &(tag, kind) = TAGS.iter().find(|(tag, _)| op.has_attribute(tag)).expect("collected as tagged");
        let id = op
            .attribute(tag)
            .ok()
            .and_then(|a| IntegerAttribute::try_from(a).ok())
            .ok_or_else(|| format!("`{tag}` is not an integer on {op}"))?
            .value();
        let callee = format!("{CALLEE}{kind}_{id}");
        if hidden.ops.iter().any(|(name, _)| *name == callee) {
            return Err(format!("two ops are tagged `{tag} = {id}`"));
        }
        let block = op.block().ok_or_else(|| format!("a tagged op outside a block: {op}"))?;
        let operands: Vec<_> = op.operands().collect();
        let operand_types: Vec<Type> = operands.iter().map(|v| v.r#type()).collect();
        let result_types: Vec<Type> = op.results().map(|r| r.r#type()).collect();
        let symbol = FlatSymbolRefAttribute::new(context, &callee);
        let call =
            block.insert_operation_before(op, func::call(context, symbol, &operands, &result_types, op.location()));
        // SAFETY: the call and the op are alive with the same result types; the op is then
        // detached, owned by `hidden` until `restore` or drop.
        unsafe {
            replace_uses(raw, call.to_raw());
            mlir_sys::mlirOperationRemoveFromParent(raw);
        }
        hidden.ops.push((callee.clone(), raw));
        module.body().append_operation(declaration(context, &callee, &operand_types, &result_types));
    }
    Ok(hidden)
}

/// The name a call or a declaration of [`hide`] stands for, if `op` is one.
fn hidden_name(op: &OperationRef) -> Option<String> {
    let attribute = match op.name().as_string_ref().as_str().ok()? {
        "func.call" => FlatSymbolRefAttribute::try_from(op.attribute("callee").ok()?).ok()?.value().to_string(),
        "func.func" => StringAttribute::try_from(op.attribute("sym_name").ok()?).ok()?.value().to_string(),
        _ => return None,
    };
    attribute.starts_with(CALLEE).then_some(attribute)
}

/// Puts every op [`hide`] took out back in place of its call, reading the call's operands, and
/// removes the calls and their declarations.
pub(crate) fn restore(module: &Module, mut hidden: Hidden) -> Result<(), String> {
    for raw in ops_where(module, |op| hidden_name(op).is_some()) {
        // SAFETY: collected from the live module; each op is handled once.
        let op = unsafe { OperationRef::from_raw(raw) };
        let name = hidden_name(&op).unwrap_or_default();
        if op.name().as_string_ref().as_str() == Ok("func.call") {
            let at =
                hidden.ops.iter().position(|(n, _)| *n == name).ok_or_else(|| format!("a second call of @{name}"))?;
            let (_, original) = hidden.ops.swap_remove(at);
            let block = op.block().ok_or("a call outside a block")?;
            // SAFETY: `original` is detached with as many operands as the call and the same
            // result types; it goes back into the call's block before the call, which is then
            // erased.
            unsafe {
                for (i, operand) in op.operands().enumerate() {
                    mlir_sys::mlirOperationSetOperand(original, i as isize, operand.to_raw());
                }
                mlir_sys::mlirBlockInsertOwnedOperationBefore(block.to_raw(), raw, original);
                replace_uses(raw, original);
            }
        }
        // SAFETY: the call has no uses left; a declaration has none.
        unsafe { erase(raw) };
    }
    match hidden.ops.first() {
        Some((name, _)) => Err(format!("the call of @{name} is gone")),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::Mlir;

    /// A product and a convolution generic, both tagged, between untagged ops.
    const MODULE: &str = r#"module {
  func.func @f(%a: tensor<4x3xf32>, %b: tensor<3x2xf32>, %x: tensor<1x4x4x2xf32>, %w: tensor<3x3x2x5xf32>) -> (tensor<4x2xf32>, tensor<1x2x2x5xf32>) {
    %zero = arith.constant 0.0 : f32
    %e = tensor.empty() : tensor<4x2xf32>
    %c = linalg.fill ins(%zero : f32) outs(%e : tensor<4x2xf32>) -> tensor<4x2xf32>
    %p = linalg.contract indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d1)>, affine_map<(d0, d1, d2) -> (d1, d2)>, affine_map<(d0, d1, d2) -> (d0, d2)>] ins(%a, %b : tensor<4x3xf32>, tensor<3x2xf32>) outs(%c : tensor<4x2xf32>) {kiln.contraction = 7 : i64} -> tensor<4x2xf32>
    %e2 = tensor.empty() : tensor<1x2x2x5xf32>
    %y0 = linalg.fill ins(%zero : f32) outs(%e2 : tensor<1x2x2x5xf32>) -> tensor<1x2x2x5xf32>
    %y = linalg.generic {indexing_maps = [affine_map<(d0, d1, d2, d3, d4, d5, d6) -> (d0, d1 + d4, d2 + d5, d6)>, affine_map<(d0, d1, d2, d3, d4, d5, d6) -> (d4, d5, d6, d3)>, affine_map<(d0, d1, d2, d3, d4, d5, d6) -> (d0, d1, d2, d3)>], iterator_types = ["parallel", "parallel", "parallel", "parallel", "reduction", "reduction", "reduction"]} ins(%x, %w : tensor<1x4x4x2xf32>, tensor<3x3x2x5xf32>) outs(%y0 : tensor<1x2x2x5xf32>) attrs = {kiln.contraction = 8 : i64} {
    ^bb0(%in: f32, %k: f32, %acc: f32):
      %m = arith.mulf %in, %k : f32
      %s = arith.addf %acc, %m : f32
      linalg.yield %s : f32
    } -> tensor<1x2x2x5xf32>
    return %p, %y : tensor<4x2xf32>, tensor<1x2x2x5xf32>
  }
}
"#;

    #[test]
    fn hidden_ops_are_calls_and_come_back_as_they_were() {
        let mlir = Mlir::new();
        let module = mlir.parse(MODULE, "test").unwrap();
        let original = module.as_operation().to_string();
        let hidden = hide(&mlir.context, &module).unwrap();
        let text = module.as_operation().to_string();
        assert!(module.as_operation().verify(), "{text}");
        assert!(!text.contains("linalg.contract") && !text.contains("linalg.generic"), "{text}");
        for id in [7, 8] {
            assert!(text.contains(&format!("call @kiln_hidden_contraction_{id}(")), "{text}");
            assert!(text.contains(&format!("func.func private @kiln_hidden_contraction_{id}(")), "{text}");
        }
        restore(&module, hidden).unwrap();
        assert!(module.as_operation().verify());
        assert_eq!(module.as_operation().to_string(), original);
    }

    /// What an upstream pass does to a call's operands (here, canonicalization folding the
    /// fills' zero constant and cse) reaches the restored op.
    #[test]
    fn restored_ops_read_what_their_calls_read() {
        let mlir = Mlir::new();
        let doubled = MODULE
            .replace("%c = linalg.fill", "%c_unused = linalg.fill")
            .replace("outs(%c : tensor<4x2xf32>) {kiln", "outs(%e : tensor<4x2xf32>) {kiln");
        let mut module = mlir.parse(&doubled, "test").unwrap();
        let hidden = hide(&mlir.context, &module).unwrap();
        mlir.run(&mut module, "builtin.module(canonicalize,cse)").unwrap();
        restore(&module, hidden).unwrap();
        let text = module.as_operation().to_string();
        assert!(module.as_operation().verify(), "{text}");
        assert!(!text.contains("%c_unused") && text.contains("linalg.contract"), "{text}");
    }

    /// A pass that fails with ops hidden leaves them to [`Hidden`]'s drop.
    #[test]
    fn ops_never_restored_are_destroyed() {
        let mlir = Mlir::new();
        let module = mlir.parse(MODULE, "test").unwrap();
        drop(hide(&mlir.context, &module).unwrap());
        assert!(module.as_operation().verify());
        let twice = MODULE.replace("kiln.contraction = 8", "kiln.contraction = 7");
        let module = mlir.parse(&twice, "test").unwrap();
        assert!(hide(&mlir.context, &module).is_err());
    }
}
