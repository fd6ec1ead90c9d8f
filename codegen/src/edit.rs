//! Tools the in-memory passes share (melior and the MLIR C API where melior has no wrapper):
//! finding ops and function bodies, reading integer constants, cloning ops, remapping
//! operands, replacing an op by another, declaring functions.
//!
//! Values are keyed by their raw pointer ([`key`]) in maps that are only looked up, never
//! iterated, so no address reaches an artifact.

use melior::dialect::func;
use melior::ir::attribute::{AttributeLike, DenseI32ArrayAttribute, IntegerAttribute, StringAttribute, TypeAttribute};
use melior::ir::operation::{OperationLike, OperationRef, WalkOrder, WalkResult};
use melior::ir::r#type::{FunctionType, IntegerType, MemRefType, ShapedTypeLike, TypeLike};
use melior::ir::ValueLike;
use melior::ir::{BlockLike, BlockRef, Identifier, Location, Module, Operation, Region, RegionLike, Type, Value};
use melior::Context;
use mlir_sys::{MlirOperation, MlirValue};
use std::collections::BTreeMap;

/// A value's identity, for maps that are only looked up.
pub(crate) fn key(v: MlirValue) -> usize {
    v.ptr as usize
}

/// The ops of `module` that pass `pick`, in pre-order, collected before any is changed.
pub(crate) fn ops_where(module: &Module, mut pick: impl FnMut(&OperationRef) -> bool) -> Vec<MlirOperation> {
    let mut found = vec![];
    module.as_operation().walk(WalkOrder::PreOrder, |op| {
        if pick(&op) {
            found.push(op.to_raw());
        }
        WalkResult::Advance
    });
    found
}

/// The ops of `module` named `name`, in pre-order.
pub(crate) fn ops_named(module: &Module, name: &str) -> Vec<MlirOperation> {
    ops_where(module, |op| op.name().as_string_ref().as_str() == Ok(name))
}

/// The symbol name (`sym_name`) of an op, if it has one.
pub(crate) fn symbol(op: &OperationRef) -> Option<String> {
    let name = op.attribute("sym_name").ok()?;
    Some(StringAttribute::try_from(name).ok()?.value().to_string())
}

/// The functions of `module` that have a body, with their entry blocks, in order.
pub(crate) fn function_bodies<'c, 'a>(module: &'a Module<'c>) -> Vec<(OperationRef<'c, 'a>, BlockRef<'c, 'a>)> {
    let mut functions = vec![];
    let mut next = module.body().first_operation();
    while let Some(op) = next {
        next = op.next_in_block();
        if op.name().as_string_ref().as_str() == Ok("func.func") {
            if let Some(body) = op.region(0).ok().and_then(|r| r.first_block()) {
                functions.push((op, body));
            }
        }
    }
    functions
}

/// The value of `v` if it is an integer constant (`arith.constant` of an integer or index).
pub(crate) fn int_constant(v: Value) -> Option<i64> {
    if !v.is_operation_result() {
        return None;
    }
    // SAFETY: `v` is an operation result, so its owner is a live op.
    let owner = unsafe { OperationRef::from_raw(mlir_sys::mlirOpResultGetOwner(v.to_raw())) };
    if owner.name().as_string_ref().as_str() != Ok("arith.constant") {
        return None;
    }
    // (The kind is checked first: a failed conversion prints the attribute.)
    let value = owner.attribute("value").ok().filter(|a| a.is_integer())?;
    Some(IntegerAttribute::try_from(value).ok()?.value())
}

/// Whether `v` is defined in `op`: a result of `op` or of an op nested in it, or an argument
/// of a block of its regions.
pub(crate) fn defined_in(v: Value, op: &OperationRef) -> bool {
    // SAFETY: ownership queries on live values, blocks and ops.
    let mut owner = unsafe {
        if v.is_operation_result() {
            OperationRef::from_option_raw(mlir_sys::mlirOpResultGetOwner(v.to_raw()))
        } else {
            let block = mlir_sys::mlirBlockArgumentGetOwner(v.to_raw());
            OperationRef::from_option_raw(mlir_sys::mlirBlockGetParentOperation(block))
        }
    };
    while let Some(o) = owner {
        if o.to_raw().ptr == op.to_raw().ptr {
            return true;
        }
        owner = o.parent_operation();
    }
    false
}

/// The first operand, in `from` and the ops after it in its block (nested ops included), that
/// `pick` chooses.
pub(crate) fn first_use_from(from: Option<OperationRef>, pick: impl Fn(Value) -> bool) -> Option<MlirValue> {
    let mut next = from;
    while let Some(op) = next {
        let mut found = None;
        op.walk(WalkOrder::PreOrder, |inner| {
            found = found.or_else(|| inner.operands().find(|&v| pick(v)).map(|v| v.to_raw()));
            WalkResult::Advance
        });
        if found.is_some() {
            return found;
        }
        next = op.next_in_block();
    }
    None
}

/// The sizes of an op's operand segments (its `operandSegmentSizes`).
pub(crate) fn segment_sizes(op: &OperationRef) -> Option<Vec<usize>> {
    let sizes = DenseI32ArrayAttribute::try_from(op.attribute("operandSegmentSizes").ok()?).ok()?;
    (0..sizes.len()).map(|i| sizes.element(i).ok().and_then(|n| usize::try_from(n).ok())).collect()
}

/// Bytes of an element type: index, integers (i1 takes a byte) and floats.
pub(crate) fn element_bytes(ty: Type) -> Option<u64> {
    // SAFETY: type queries on a live type.
    unsafe {
        if mlir_sys::mlirTypeIsAIndex(ty.to_raw()) {
            Some(8)
        } else if let Ok(int) = IntegerType::try_from(ty) {
            Some(u64::from(int.width()).div_ceil(8))
        } else if mlir_sys::mlirTypeIsAFloat(ty.to_raw()) {
            Some(u64::from(mlir_sys::mlirFloatTypeGetWidth(ty.to_raw())).div_ceil(8))
        } else {
            None
        }
    }
}

/// Bytes of a memref type with a static shape; None for anything else.
pub(crate) fn memref_bytes(ty: Type) -> Option<u64> {
    let memref = MemRefType::try_from(ty).ok()?;
    // SAFETY: shape queries on a live ranked type.
    let dims: Vec<i64> = unsafe {
        if !mlir_sys::mlirShapedTypeHasStaticShape(ty.to_raw()) {
            return None;
        }
        (0..memref.rank()).map(|i| mlir_sys::mlirShapedTypeGetDimSize(ty.to_raw(), i as isize)).collect()
    };
    dims.iter().try_fold(element_bytes(memref.element())?, |n, &d| n.checked_mul(u64::try_from(d).ok()?))
}

/// A clone of a live op, owned by the caller.
pub(crate) fn cloned<'c>(op: &OperationRef<'c, '_>) -> Operation<'c> {
    // SAFETY: cloning a live op gives an op nobody else owns.
    unsafe { Operation::from_raw(mlir_sys::mlirOperationClone(op.to_raw())) }
}

/// Sets every operand of `op`, and of the ops nested in it, that `map` has a replacement for.
/// Each replacement must have the operand's type and dominate the use.
pub(crate) fn remap(op: &OperationRef, map: &BTreeMap<usize, MlirValue>) {
    op.walk(WalkOrder::PreOrder, |inner| {
        for (i, v) in inner.operands().enumerate() {
            if let Some(&new) = map.get(&key(v.to_raw())) {
                // SAFETY: `inner` is live and `i` one of its operands.
                unsafe { mlir_sys::mlirOperationSetOperand(inner.to_raw(), i as isize, new) };
            }
        }
        WalkResult::Advance
    });
}

/// Replaces every use of `from`'s results by `to`'s, result by result.
///
/// # Safety
/// Both ops are alive, and `to` has at least `from`'s results with the same types.
pub(crate) unsafe fn replace_uses(from: MlirOperation, to: MlirOperation) {
    for i in 0..mlir_sys::mlirOperationGetNumResults(from) {
        let (old, new) = (mlir_sys::mlirOperationGetResult(from, i), mlir_sys::mlirOperationGetResult(to, i));
        mlir_sys::mlirValueReplaceAllUsesOfWith(old, new);
    }
}

/// Replaces every use of `from`'s results by `to`'s and erases `from`.
///
/// # Safety
/// As [`replace_uses`], and `from` is not used again.
pub(crate) unsafe fn replace_op(from: MlirOperation, to: MlirOperation) {
    replace_uses(from, to);
    mlir_sys::mlirOperationDestroy(from);
}

/// Erases a live op that nothing uses.
///
/// # Safety
/// `op` is alive, its results (if any) unused, and it is not used again.
pub(crate) unsafe fn erase(op: MlirOperation) {
    mlir_sys::mlirOperationDestroy(op);
}

/// `func.func private @name(inputs) -> results`, a declaration.
pub(crate) fn declaration<'c>(
    context: &'c Context,
    name: &str,
    inputs: &[Type<'c>],
    results: &[Type<'c>],
) -> Operation<'c> {
    func::func(
        context,
        StringAttribute::new(context, name),
        TypeAttribute::new(FunctionType::new(context, inputs, results).into()),
        Region::new(),
        &[(Identifier::new(context, "sym_visibility"), StringAttribute::new(context, "private").into())],
        Location::unknown(context),
    )
}
