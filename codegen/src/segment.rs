//! Long functions cut into segments, so that LLVM's work stays linear in the program's size.
//!
//! LLVM's code generation of one function grows faster than the function (its register
//! coalescer, machine copy propagation and machine CSE): a function of 10,000 chained lets
//! took 6.8 s in stage `object` at 5,000 lets and 26.6 s at 10,000. A function whose
//! top-level ops hold more than [`SEGMENT_OPS`] ops (nested ones included) is therefore cut,
//! between top-level ops, into segment functions `@F_segK(params of F...)` of about
//! [`SEGMENT_OPS`] ops each, which `@F` calls in order. Segments are `noinline`, so that LLVM
//! compiles each on its own; a call per segment costs nothing next to the work in it.
//!
//! This works on the bufferized, planned module after [`crate::parallel`]'s stages are
//! outlined, where top-level ops communicate through memory. A segment takes the function's
//! parameters and recomputes the pure top-level values it uses (constants, views of the
//! workspace, slots), exactly as a parallel stage does ([`crate::parallel::Function`]). A cut
//! goes only where no value an earlier op computed (a hoisted load, say) is used after it.
//! Functions under the bound, which is every example and benchmark, are left as they are.

use crate::edit::{function_bodies, key, remap, symbol};
use crate::parallel::Function;
use melior::dialect::func;
use melior::ir::attribute::{ArrayAttribute, FlatSymbolRefAttribute, StringAttribute, TypeAttribute};
use melior::ir::operation::{OperationLike, OperationRef, WalkOrder, WalkResult};
use melior::ir::r#type::FunctionType;
use melior::ir::{
    Attribute, Block, BlockLike, BlockRef, Identifier, Location, Module, Region, RegionLike, Type, ValueLike,
};
use melior::Context;
use mlir_sys::MlirValue;
use std::collections::BTreeMap;

/// Ops (nested ones included) a segment holds, about: a function with more is cut. Well below
/// the size where LLVM's code generation stops being linear (1,000 lets, about 37,000 ops,
/// took 1.3 ms per let in stage `object`; 10,000 lets 2.7 ms), and well above any function
/// of the examples (a GPT's training step has about 2,500 top-level-function ops).
pub const SEGMENT_OPS: usize = 8192;

/// Cuts every function of `module` with more than [`SEGMENT_OPS`] ops into segments; returns
/// how many segments were made.
pub fn split<'c>(context: &'c Context, module: &Module<'c>) -> Result<usize, String> {
    let mut made = 0;
    for (func, body) in function_bodies(module) {
        let name = symbol(&func).ok_or("a function without a name")?;
        let segments = segments_of(&func, &body)?;
        let Some(f) = segments.function else { continue };
        let mut after = func;
        for (k, ops) in segments.runs.iter().enumerate() {
            let segment = segment_function(context, &f, &format!("{name}_seg{k}"), ops)?;
            after = module.body().insert_operation_after(after, segment);
            made += 1;
        }
        remove_unused(&segments.recomputable);
    }
    Ok(made)
}

/// The runs of top-level ops a function is cut into, with the function's analysis (None when
/// it is not cut).
struct Segments<'c, 'a> {
    function: Option<Function<'c, 'a>>,
    runs: Vec<Vec<OperationRef<'c, 'a>>>,
    /// The function's recomputable top-level ops, in order.
    recomputable: Vec<OperationRef<'c, 'a>>,
}

/// Where `func` is cut: runs of consecutive work ops (top-level ops that are not recomputable
/// and not the terminator) of about [`SEGMENT_OPS`] ops each, closed only where no result of
/// the run is used later. A last run that cannot be closed stays in the function.
fn segments_of<'c, 'a>(func: &OperationRef<'c, 'a>, body: &BlockRef<'c, 'a>) -> Result<Segments<'c, 'a>, String> {
    let none = || Segments { function: None, runs: vec![], recomputable: vec![] };
    // A function of no more ops than a segment holds is left before any analysis.
    if weight(func) <= SEGMENT_OPS {
        return Ok(none());
    }
    let mut f = Function::new(func, body)?;
    let (mut tops, mut recomputable) = (vec![], vec![]);
    let mut op = body.first_operation();
    while let Some(top) = op {
        op = top.next_in_block();
        if f.note(&top) {
            recomputable.push(top);
            tops.push((top, false, 0));
        } else {
            // The terminator stays.
            tops.push((top, op.is_some(), weight(&top)));
        }
    }
    if tops.iter().map(|&(_, work, w)| if work { w } else { 0 }).sum::<usize>() <= SEGMENT_OPS {
        return Ok(none());
    }
    // The last top-level op that uses each top-level op's results.
    let position: BTreeMap<usize, usize> =
        tops.iter().enumerate().flat_map(|(i, (top, ..))| top.results().map(move |r| (key(r.to_raw()), i))).collect();
    let mut last_use: Vec<usize> = (0..tops.len()).collect();
    for (j, (top, ..)) in tops.iter().enumerate() {
        top.walk(WalkOrder::PreOrder, |op| {
            for v in op.operands() {
                if let Some(&i) = position.get(&key(v.to_raw())) {
                    last_use[i] = last_use[i].max(j);
                }
            }
            WalkResult::Advance
        });
    }
    let mut runs = vec![];
    let (mut run, mut ops, mut reach) = (vec![], 0, 0);
    for (j, &(top, work, w)) in tops.iter().enumerate() {
        if !work {
            continue;
        }
        run.push(top);
        ops += w;
        reach = reach.max(last_use[j]);
        if ops >= SEGMENT_OPS && reach <= j {
            runs.push(std::mem::take(&mut run));
            ops = 0;
        }
    }
    // The rest, when nothing after it uses its results.
    if !run.is_empty() && reach < tops.len() - 1 {
        runs.push(run);
    }
    let cut = runs.len() > 1 || runs.first().is_some_and(|r| r.len() < tops.iter().filter(|t| t.1).count());
    Ok(if cut { Segments { function: Some(f), runs, recomputable } } else { none() })
}

/// Ops in `op`, itself included.
fn weight(op: &OperationRef) -> usize {
    let mut n = 0;
    op.walk(WalkOrder::PreOrder, |_| {
        n += 1;
        WalkResult::Advance
    });
    n
}

/// The segment `@name(params of f...)` running `ops` (moved out of the function, in order),
/// after the recomputable values they use; a call of it takes the place of the first op.
fn segment_function<'c>(
    context: &'c Context,
    f: &Function<'c, '_>,
    name: &str,
    ops: &[OperationRef<'c, '_>],
) -> Result<melior::ir::Operation<'c>, String> {
    let location = ops[0].location();
    let params = f.params();
    let types: Vec<Type> = params.iter().map(|p| p.r#type()).collect();
    let block = Block::new(&types.iter().map(|&t| (t, location)).collect::<Vec<_>>());
    let mut map: BTreeMap<usize, MlirValue> = BTreeMap::new();
    for (i, p) in params.iter().enumerate() {
        map.insert(key(p.to_raw()), block.argument(i).map_err(|e| e.to_string())?.to_raw());
    }
    f.recompute_into(ops, &block, &mut map);
    let call = func::call(context, FlatSymbolRefAttribute::new(context, name), params, &[], location);
    let caller = ops[0].block().ok_or("a top-level op outside a block")?;
    caller.insert_operation_before(ops[0], call);
    for op in ops {
        // SAFETY: a live top-level op of the function, moved (not copied) to the end of the
        // segment's block, which takes ownership of it.
        unsafe {
            mlir_sys::mlirOperationRemoveFromParent(op.to_raw());
            mlir_sys::mlirBlockAppendOwnedOperation(block.to_raw(), op.to_raw());
        }
        remap(op, &map);
    }
    block.append_operation(func::r#return(&[], location));
    let region = Region::new();
    region.append_block(block);
    let arg_attrs = f.argument_attributes(context, 0)?;
    let noinline = Attribute::parse(context, "[\"noinline\"]").ok_or("no passthrough attribute")?;
    Ok(func::func(
        context,
        StringAttribute::new(context, name),
        TypeAttribute::new(FunctionType::new(context, &types, &[]).into()),
        region,
        &[
            (Identifier::new(context, "sym_visibility"), StringAttribute::new(context, "private").into()),
            (Identifier::new(context, "arg_attrs"), ArrayAttribute::new(context, &arg_attrs).into()),
            (Identifier::new(context, "passthrough"), noinline),
        ],
        Location::unknown(context),
    ))
}

/// Erases the recomputable top-level ops of the function that are no longer used (their
/// users moved to segments), last first.
fn remove_unused(recomputable: &[OperationRef]) {
    for op in recomputable.iter().rev() {
        // SAFETY: use queries on the results of a live op.
        let unused = op.results().all(|r| unsafe { mlir_sys::mlirValueGetFirstUse(r.to_raw()).ptr.is_null() });
        if unused {
            // SAFETY: a pure op (see [`Function`]) whose results nothing uses.
            unsafe { crate::edit::erase(op.to_raw()) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::Mlir;

    /// A function of `loops` loops of about 45 ops each, storing to the workspace, where loop
    /// `load_at` is preceded by a load from the workspace that loops up to `last_user` use.
    fn long_function(loops: usize, load_at: usize, last_user: usize) -> String {
        let mut s = String::from(
            "module {\n  func.func private @f(%x: memref<64xf32> {llvm.noalias, llvm.readonly}, %y: memref<64xf32> {llvm.noalias}, %ws: memref<256xi8> {llvm.noalias}) {\n    %c0 = arith.constant 0 : index\n    %c1 = arith.constant 1 : index\n    %c64 = arith.constant 64 : index\n    %t = memref.view %ws[%c0][] : memref<256xi8> to memref<64xf32>\n",
        );
        for k in 0..loops {
            if k == load_at {
                s += "    %s = memref.load %t[%c0] {kiln.tag = \"load\"} : memref<64xf32>\n";
            }
            s += "    scf.for %i = %c0 to %c64 step %c1 {\n      %v0 = memref.load %x[%i] : memref<64xf32>\n";
            for j in 1..40 {
                s += &format!("      %v{j} = arith.addf %v{}, %v0 : f32\n", j - 1);
            }
            let stored = if (load_at..=last_user).contains(&k) {
                s += "      %w = arith.mulf %v39, %s : f32\n";
                "%w"
            } else {
                "%v39"
            };
            s += &format!("      memref.store {stored}, %t[%i] : memref<64xf32>\n    }}");
            s += if k == last_user { " {kiln.tag = \"last user\"}\n" } else { "\n" };
        }
        s + "    scf.for %i = %c0 to %c64 step %c1 {\n      %v = memref.load %t[%i] : memref<64xf32>\n      memref.store %v, %y[%i] : memref<64xf32>\n    }\n    return\n  }\n}\n"
    }

    #[test]
    fn long_functions_are_cut_where_no_computed_value_crosses() {
        let mlir = Mlir::new();
        // 43 ops a loop, about 16,400 in all: the first cut would come after loop 190 but for
        // the load before loop 180, which loops up to 200 use.
        let module = mlir.parse(&long_function(380, 180, 200), "test").unwrap();
        let made = split(&mlir.context, &module).unwrap();
        let text = module.as_operation().to_string();
        assert!(module.as_operation().verify(), "{text}");
        assert_eq!(made, 2, "{text}");
        let (caller, segments) = text.split_once("func.func private @f_seg0(").unwrap();
        // The function calls its segments in order, and its unused constants and view are gone.
        assert!(caller.contains("call @f_seg0(%arg0, %arg1, %arg2)"), "{caller}");
        assert!(caller.find("call @f_seg0").unwrap() < caller.find("call @f_seg1").unwrap(), "{caller}");
        assert!(!caller.contains("memref.view"), "{caller}");
        let (first, second) = segments.split_once("func.func private @f_seg1(").unwrap();
        for segment in [first, second] {
            assert!(segment.contains("passthrough = [\"noinline\"]"), "{segment}");
            assert!(segment.starts_with("%arg0: memref<64xf32> {llvm.noalias, llvm.readonly}"), "{segment}");
            assert!(segment.contains("memref.view"), "each segment recomputes the view: {segment}");
        }
        // The load and its last user are in the first segment, which ends after the user.
        assert!(first.contains("\"load\"") && first.contains("\"last user\""), "{first}");
        assert_eq!(first.matches("scf.for").count(), 201, "{first}");
        assert_eq!(second.matches("scf.for").count(), 180, "{second}");
    }

    #[test]
    fn short_functions_are_left_alone() {
        let mlir = Mlir::new();
        let source = long_function(100, 10, 20);
        let module = mlir.parse(&source, "test").unwrap();
        let before = module.as_operation().to_string();
        assert_eq!(split(&mlir.context, &module).unwrap(), 0);
        assert_eq!(module.as_operation().to_string(), before);
    }
}
