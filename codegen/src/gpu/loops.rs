//! Parallel loops shaped for the GPU mapping (stage `map-loops`), in memory: multi-dimensional
//! loops collapsed to one linear index ([`collapse_parallel_loops`]), and host statements that
//! compute data wrapped in one-iteration loops ([`wrap_serial_statements`]), so that every
//! computation becomes a kernel.

use super::HOST_OPS;
use crate::edit::{first_use_from, function_bodies, int_constant, key, ops_named, segment_sizes};
use melior::dialect::arith;
use melior::ir::attribute::{DenseI32ArrayAttribute, IntegerAttribute};
use melior::ir::operation::{OperationBuilder, OperationLike, OperationMutLike, OperationRef as Op, OperationRefMut};
use melior::ir::{
    Block, BlockLike, BlockRef, Identifier, Location, Module, Region, RegionLike, Type, Value, ValueLike,
};
use melior::Context;
use std::collections::BTreeSet;

/// `arith.constant value : index`, inserted before `at`.
fn index_constant<'c, 'a>(context: &'c Context, block: &BlockRef<'c, 'a>, at: Op<'c, 'a>, value: i64) -> Value<'c, 'a> {
    let attribute = IntegerAttribute::new(Type::index(context), value).into();
    let op = block.insert_operation_before(at, arith::constant(context, attribute, at.location()));
    op.result(0).expect("a constant has a result").into()
}

/// Each multi-dimensional `scf.parallel` with constant bounds, from 0 by 1, as a loop over
/// one linear index, its indices recovered by division (the last fastest). Tiling then gives
/// [`super::THREADS_PER_BLOCK`] consecutive linear indices, consecutive elements of the
/// innermost dimension, to the threads of a block (coalesced accesses, every thread busy) and
/// the rest to blocks along x, the grid dimension that is not limited to 65535. Mapped as they
/// were, the first dimension went to the threads (4 of 256 busy over a [4, 100000] array, each
/// reading 400 KB apart) and the second to grid y, beyond its limit.
pub(super) fn collapse_parallel_loops<'c>(context: &'c Context, module: &Module<'c>) -> Result<(), String> {
    let loops = ops_named(module, "scf.parallel");
    let index = Type::index(context);
    for raw in loops {
        // SAFETY: collected from the live module; each loop is changed once, in place.
        let op = unsafe { Op::from_raw(raw) };
        let Some([n, _, _, inits]) = segment_sizes(&op).and_then(|s| <[usize; 4]>::try_from(s).ok()) else {
            return Err(format!("an scf.parallel without its operand segments: {op}"));
        };
        let operands: Vec<Value> = op.operands().collect();
        let bounds: Option<Vec<i64>> = operands[..3 * n].iter().map(|&v| int_constant(v)).collect();
        let Some(bounds) = bounds else { continue };
        let (lower, upper, step) = (&bounds[..n], &bounds[n..2 * n], &bounds[2 * n..]);
        if n < 2 || lower.iter().any(|&l| l != 0) || step.iter().any(|&s| s != 1) {
            continue;
        }
        let Some(total) = upper.iter().try_fold(1i64, |a, &e| a.checked_mul(e)) else { continue };
        let parent = op.block().ok_or("a loop outside a block")?;
        let (zero, one, total) = (
            index_constant(context, &parent, op, 0),
            index_constant(context, &parent, op, 1),
            index_constant(context, &parent, op, total),
        );
        let body = op.region(0).map_err(|e| e.to_string())?.first_block().ok_or("a loop without a body")?;
        let first = body.first_operation().ok_or("an empty loop body")?;
        let linear = body.insert_argument(0, index, op.location());
        // The indices from the linear one, the last fastest: i_k = r mod e_k, r = r div e_k.
        let mut rest = linear;
        let mut ivs = vec![linear; n];
        for k in (1..n).rev() {
            let extent = index_constant(context, &body, first, upper[k]);
            let location = op.location();
            let rem = body.insert_operation_before(first, arith::remui(rest, extent, location));
            let div = body.insert_operation_before(first, arith::divui(rest, extent, location));
            ivs[k] = rem.result(0).map_err(|e| e.to_string())?.into();
            rest = div.result(0).map_err(|e| e.to_string())?.into();
        }
        ivs[0] = rest;
        // SAFETY: arguments 1..=n are the old indices, replaced everywhere before they are
        // erased; the new operands keep the init values and their segment sizes.
        unsafe {
            for (k, iv) in ivs.iter().enumerate() {
                let old = body.argument(k + 1).map_err(|e| e.to_string())?;
                mlir_sys::mlirValueReplaceAllUsesOfWith(old.to_raw(), iv.to_raw());
            }
            for _ in 0..n {
                body.erase_argument(1);
            }
            let new_operands: Vec<_> =
                [zero, total, one].iter().chain(&operands[3 * n..]).map(|v| v.to_raw()).collect();
            mlir_sys::mlirOperationSetOperands(raw, new_operands.len() as isize, new_operands.as_ptr());
            let mut op = OperationRefMut::from_raw(raw);
            let sizes = DenseI32ArrayAttribute::new(context, &[1, 1, 1, inits as i32]);
            op.set_attribute("operandSegmentSizes", sizes.into());
        }
    }
    Ok(())
}

/// Wraps each run of top-level host statements that compute data (loop nests without parallel
/// loops, scalar loads and stores: ops not in [`HOST_OPS`]) into a one-iteration
/// `scf.parallel`, so that it becomes a kernel. A value such a run computes cannot be used
/// after it (it would live on the device).
pub(super) fn wrap_serial_statements<'c>(context: &'c Context, module: &Module<'c>) -> Result<(), String> {
    for (_, body) in function_bodies(module) {
        let mut runs: Vec<Vec<Op>> = vec![];
        let mut previous_was_host = true;
        let mut next = body.first_operation();
        while let Some(op) = next {
            next = op.next_in_block();
            let host = op.name().as_string_ref().as_str().is_ok_and(|n| HOST_OPS.contains(&n));
            if !host {
                if previous_was_host {
                    runs.push(vec![]);
                }
                runs.last_mut().expect("a run was started").push(op);
            }
            previous_was_host = host;
        }
        for run in runs {
            wrap(context, &body, &run)?;
        }
    }
    Ok(())
}

/// Moves `run`, consecutive ops of `body`, into a new `scf.parallel` of one iteration.
fn wrap<'c, 'a>(context: &'c Context, body: &BlockRef<'c, 'a>, run: &[Op<'c, 'a>]) -> Result<(), String> {
    let last = *run.last().ok_or("an empty run")?;
    let defined: BTreeSet<usize> = run.iter().flat_map(|op| op.results().map(|r| key(r.to_raw()))).collect();
    if let Some(v) = first_use_from(last.next_in_block(), |v| defined.contains(&key(v.to_raw()))) {
        // SAFETY: an operand of a live op.
        let v = unsafe { Value::from_raw(v) };
        return Err(format!("the value `{v}` computed on the host is used by a later kernel"));
    }
    let (zero, one) = (index_constant(context, body, run[0], 0), index_constant(context, body, run[0], 1));
    let location = Location::unknown(context);
    let block = Block::new(&[(Type::index(context), location)]);
    let reduce =
        block.append_operation(OperationBuilder::new("scf.reduce", location).build().map_err(|e| e.to_string())?);
    let region = Region::new();
    region.append_block(block);
    let parallel = OperationBuilder::new("scf.parallel", location)
        .add_operands(&[zero, one, one])
        .add_attributes(&[(
            Identifier::new(context, "operandSegmentSizes"),
            DenseI32ArrayAttribute::new(context, &[1, 1, 1, 0]).into(),
        )])
        .add_regions([region])
        .build()
        .map_err(|e| e.to_string())?;
    body.insert_operation_before(run[0], parallel);
    for op in run {
        // SAFETY: `op` is a live op of `body`; it moves into the loop's block, before its
        // terminator.
        let mut op = unsafe { OperationRefMut::from_raw(op.to_raw()) };
        op.move_before(reduce);
    }
    Ok(())
}
