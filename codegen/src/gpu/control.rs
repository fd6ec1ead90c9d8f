//! Loops and conditionals on the GPU: they stay on the host, where the launch plan repeats
//! or picks their steps ([`crate::manifest::Step::Loop`], `While`, `If`), and every
//! computation inside them becomes kernels as at the top level. What the host itself needs
//! of the data is a loop's bounds and a condition: each is a scalar read back from the device
//! ([`host_scalars`]); nothing else is computed on the host. A counted loop's index reaches
//! the kernels of its body as an argument.

use crate::edit::ops_named;
use melior::dialect::memref;
use melior::ir::attribute::IntegerAttribute;
use melior::ir::operation::{OperationBuilder, OperationLike, OperationRef as Op};
use melior::ir::r#type::{DimSize, IntegerType, MemRefType, ShapedTypeLike};
use melior::ir::{BlockLike, BlockRef, Module, RegionLike, Type, Value, ValueLike};
use melior::Context;
use std::collections::BTreeSet;

/// The terminators of the control ops' regions.
const TERMINATORS: &[&str] = &["scf.yield", "scf.condition"];

/// Whether `op` runs on the host and holds steps: a loop of kiln's IR (an `scf.for` or
/// `scf.while` the emitter tagged `kiln.carries`) or a conditional. Other `scf.for`s are the
/// serial loops of a computation (a reduction with no parallel dimension) and run inside
/// its kernel.
pub(super) fn is_control_op(op: &Op) -> bool {
    match op.name().as_string_ref().as_str() {
        Ok("scf.for") | Ok("scf.while") => op.has_attribute("kiln.carries"),
        Ok("scf.if") => true,
        _ => false,
    }
}

/// The integer casts a scalar the host reads may go through (the launch plan reads through
/// them, `Planner::steps`).
pub(super) const CASTS: &[&str] = &["arith.index_cast", "arith.index_castui", "arith.extsi", "arith.extui"];

/// Whether `op` is a control op or one of their terminators.
pub(super) fn is_control(op: &Op) -> bool {
    is_control_op(op) || op.name().as_string_ref().as_str().is_ok_and(|n| TERMINATORS.contains(&n))
}

/// The uses of `v`: (the op using it, the operand's number).
pub(super) fn uses<'c, 'a>(v: Value<'c, 'a>) -> Vec<(Op<'c, 'a>, usize)> {
    let mut found = vec![];
    // SAFETY: walks the use list of a live value; each use's owner is a live op.
    unsafe {
        let mut operand = mlir_sys::mlirValueGetFirstUse(v.to_raw());
        while !operand.ptr.is_null() {
            let owner = Op::from_raw(mlir_sys::mlirOpOperandGetOwner(operand));
            found.push((owner, mlir_sys::mlirOpOperandGetOperandNumber(operand) as usize));
            operand = mlir_sys::mlirOpOperandGetNextUse(operand);
        }
    }
    found
}

/// Whether operand `number` of `op` is one the host reads: a counted loop's bounds and step,
/// a conditional's or a while loop's condition.
fn read_by_host(op: &Op, number: usize) -> bool {
    match op.name().as_string_ref().as_str() {
        Ok("scf.for") => is_control_op(op) && number < 3,
        Ok("scf.if") | Ok("scf.condition") => number == 0,
        _ => false,
    }
}

/// The ops of `block` (by raw pointer) that compute scalars only the host reads: loads of one
/// element and casts of them, each of whose uses is a bound or condition ([`read_by_host`]) or
/// another such op. They stay on the host, where the plan reads them back from the device.
pub(super) fn host_scalars(block: &BlockRef) -> BTreeSet<usize> {
    let mut ops = vec![];
    let mut next = block.first_operation();
    while let Some(op) = next {
        next = op.next_in_block();
        ops.push(op);
    }
    let mut scalars = BTreeSet::new();
    // Users follow their operands in a block, so one walk backwards sees every user first.
    for op in ops.iter().rev() {
        let name = op.name().as_string_ref().as_str().unwrap_or_default().to_string();
        let scalar = (name == "memref.load" && op.operand_count() == 1) || CASTS.contains(&name.as_str());
        if !scalar || op.result_count() != 1 {
            continue;
        }
        let Ok(result) = op.result(0) else { continue };
        let users = uses(result.into());
        let host = !users.is_empty()
            && users
                .iter()
                .all(|(user, number)| read_by_host(user, *number) || scalars.contains(&(user.to_raw().ptr as usize)));
        if host {
            scalars.insert(op.to_raw().ptr as usize);
        }
    }
    scalars
}

/// Makes every conditional's results buffers of their own, written by both branches: before
/// each `scf.if` with results, one allocation per result; at the end of each branch, a copy of
/// what it yields into it; and every use of the result reads the allocation. The launch plan
/// can then name each result's buffer before it knows which branch runs (bufferization yields
/// whichever buffer each branch computed in).
pub(super) fn branches_in_place<'c>(context: &'c Context, module: &Module<'c>) -> Result<(), String> {
    for raw in ops_named(module, "scf.if") {
        // SAFETY: collected from the live module; ops are only added around it.
        let op = unsafe { Op::from_raw(raw) };
        if op.result_count() == 0 {
            continue;
        }
        let block = op.block().ok_or("a conditional outside a block")?;
        let mut places = vec![];
        for k in 0..op.result_count() {
            let result = op.result(k).map_err(|e| e.to_string())?;
            let ty = MemRefType::try_from(result.r#type())
                .map_err(|_| format!("a conditional's result is not a buffer: {}", result.r#type()))?;
            // A dense buffer of the result's shape (bufferization gives a result a strided
            // layout when the branches yield views of different layouts), cast to the result's
            // type for its uses.
            let static_dim = |d: usize| match ty.dim_size(d) {
                Ok(DimSize::Static(n)) => Ok(n as i64),
                _ => Err(format!("a conditional's result of a dynamic shape: {ty}")),
            };
            let shape: Vec<i64> = (0..ty.rank()).map(static_dim).collect::<Result<_, _>>()?;
            let dense = MemRefType::new(ty.element(), &shape, None, None);
            let alignment = IntegerAttribute::new(IntegerType::new(context, 64).into(), 64);
            let alloc = block
                .insert_operation_before(op, memref::alloc(context, dense, &[], &[], Some(alignment), op.location()));
            let place: Value = alloc.result(0).map_err(|e| e.to_string())?.into();
            let read = if Type::from(dense) == Type::from(ty) {
                place
            } else {
                let cast = block.insert_operation_before(op, memref::cast(place, ty, op.location()));
                cast.result(0).map_err(|e| e.to_string())?.into()
            };
            // SAFETY: the read has the result's type and dominates all its uses.
            unsafe { mlir_sys::mlirValueReplaceAllUsesOfWith(result.to_raw(), read.to_raw()) };
            places.push((place, read));
        }
        for r in 0..op.region_count() {
            let Some(branch) = op.region(r).map_err(|e| e.to_string())?.first_block() else { continue };
            let yield_op = branch.terminator().ok_or("a branch without a yield")?;
            for (k, (place, read)) in places.iter().enumerate() {
                let yielded = uncast(yield_op.operand(k).map_err(|e| e.to_string())?);
                let copy = OperationBuilder::new("memref.copy", op.location())
                    .add_operands(&[yielded, *place])
                    .build()
                    .map_err(|e| e.to_string())?;
                branch.insert_operation_before(yield_op, copy);
                // SAFETY: the yield is live and operand k exists; the read has its type.
                unsafe { mlir_sys::mlirOperationSetOperand(yield_op.to_raw(), k as isize, read.to_raw()) };
            }
        }
    }
    Ok(())
}

/// `v` without the `memref.cast`s that made it (a cast only forgets what the type knew of the
/// layout: the buffer is the same).
fn uncast<'c, 'a>(v: Value<'c, 'a>) -> Value<'c, 'a> {
    let mut raw = v.to_raw();
    // SAFETY: walks from a live value to the live ops that define it.
    unsafe {
        while mlir_sys::mlirValueIsAOpResult(raw) {
            let producer = mlir_sys::mlirOpResultGetOwner(raw);
            if Op::from_raw(producer).name().as_string_ref().as_str() != Ok("memref.cast") {
                break;
            }
            raw = mlir_sys::mlirOperationGetOperand(producer, 0);
        }
        Value::from_raw(raw)
    }
}
