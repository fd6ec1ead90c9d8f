//! Parallel loops shaped for the GPU mapping (stage `map-loops`), in memory: multi-dimensional
//! loops collapsed to one linear index ([`collapse_parallel_loops`]), and host statements that
//! compute data wrapped in one-iteration loops ([`wrap_serial_statements`]), so that every
//! computation becomes a kernel.

use super::{control, HOST_OPS};
use crate::edit::{cloned, erase, first_use_from, function_bodies, int_constant, key, ops_named, segment_sizes};
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

/// Wraps each run of host statements that compute data (loop nests without parallel loops,
/// scalar loads and stores: ops not in [`HOST_OPS`]) into a one-iteration `scf.parallel`, so
/// that it becomes a kernel; the same inside loops and conditionals, which stay on the host
/// with the scalars their bounds and conditions read ([`control::host_scalars`]). A value
/// such a run computes cannot be used after it (it would live on the device).
pub(super) fn wrap_serial_statements<'c>(context: &'c Context, module: &Module<'c>) -> Result<(), String> {
    sink_globals(module)?;
    for (_, body) in function_bodies(module) {
        wrap_block(context, &body)?;
    }
    Ok(())
}

/// Clones each `memref.get_global` just before each of its users, and erases it: a constant
/// is read where it is used, inside the kernel that reads it (outlining copies the global into
/// the kernel's module), never on the host, which could not pass it to a launch. (Globals are
/// read in loops whose body is inside a loop or conditional, while bufferization puts every
/// `get_global` at the top of the function.)
fn sink_globals(module: &Module) -> Result<(), String> {
    for raw in ops_named(module, "memref.get_global") {
        // SAFETY: collected from the live module; each get_global is replaced once, its users
        // reading a clone placed before them in their block.
        let op = unsafe { Op::from_raw(raw) };
        let global: Value = op.result(0).map_err(|e| e.to_string())?.into();
        for (user, number) in control::uses(global) {
            let block = user.block().ok_or("a use outside a block")?;
            let clone = block.insert_operation_before(user, cloned(&op));
            let value = clone.result(0).map_err(|e| e.to_string())?;
            // SAFETY: operand `number` of the live user, given a value of the same type.
            unsafe { mlir_sys::mlirOperationSetOperand(user.to_raw(), number as isize, value.to_raw()) };
        }
        // SAFETY: every use now reads a clone.
        unsafe { erase(raw) };
    }
    Ok(())
}

/// Gives each later use of a pure value of `run` (arith ops, such as the clamped index of a
/// dynamic slice that CSE shared between a loop body's serial statements and a later parallel
/// loop) its own copy of the op, placed just before the user: a run's values live on the device
/// and only its memory writes outlive it. Ops are visited last first, so that a copy's
/// operands from the run are copied before their own later users in turn.
fn recompute_at_later_uses(run: &[Op]) -> Result<(), String> {
    let inside: BTreeSet<usize> = run.iter().map(|op| op.to_raw().ptr as usize).collect();
    // Whether `op` is one of the run's ops or nested in one.
    let in_run = |op: &Op| {
        let mut current = Some(*op);
        while let Some(o) = current {
            if inside.contains(&(o.to_raw().ptr as usize)) {
                return true;
            }
            current = o.parent_operation();
        }
        false
    };
    for op in run.iter().rev() {
        let pure = op.name().as_string_ref().as_str().is_ok_and(|n| n.starts_with("arith."));
        if !pure {
            continue;
        }
        for r in 0..op.result_count() {
            let result: Value = op.result(r).map_err(|e| e.to_string())?.into();
            for (user, number) in control::uses(result).into_iter().filter(|(user, _)| !in_run(user)) {
                let block = user.block().ok_or("a use outside a block")?;
                let copy = block.insert_operation_before(user, cloned(op));
                let value = copy.result(r).map_err(|e| e.to_string())?;
                // SAFETY: operand `number` of the live user, given a value of the same type.
                unsafe { mlir_sys::mlirOperationSetOperand(user.to_raw(), number as isize, value.to_raw()) };
            }
        }
    }
    Ok(())
}

/// [`wrap_serial_statements`] for the ops of `body`, and of the regions of its control ops.
fn wrap_block<'c, 'a>(context: &'c Context, body: &BlockRef<'c, 'a>) -> Result<(), String> {
    let scalars = control::host_scalars(body);
    let mut next = body.first_operation();
    while let Some(op) = next {
        next = op.next_in_block();
        if control::is_control_op(&op) {
            for r in 0..op.region_count() {
                if let Some(block) = op.region(r).map_err(|e| e.to_string())?.first_block() {
                    wrap_block(context, &block)?;
                }
            }
        }
    }
    // A copy made for a later use in this block joins that use's run, found again after.
    for run in runs(body, &scalars) {
        recompute_at_later_uses(&run)?;
    }
    for run in runs(body, &scalars) {
        wrap(context, body, &run)?;
    }
    Ok(())
}

/// The runs of consecutive ops of `body` that compute data: neither host ops, control ops nor
/// the host's `scalars`.
fn runs<'c, 'a>(body: &BlockRef<'c, 'a>, scalars: &BTreeSet<usize>) -> Vec<Vec<Op<'c, 'a>>> {
    let mut runs: Vec<Vec<Op>> = vec![];
    let mut previous_was_host = true;
    let mut next = body.first_operation();
    while let Some(op) = next {
        next = op.next_in_block();
        let name = op.name().as_string_ref().as_str().unwrap_or_default().to_string();
        let host = HOST_OPS.contains(&name.as_str())
            || control::is_control(&op)
            || scalars.contains(&(op.to_raw().ptr as usize));
        if !host {
            if previous_was_host {
                runs.push(vec![]);
            }
            runs.last_mut().expect("a run was started").push(op);
        }
        previous_was_host = host;
    }
    runs
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
