//! The static memory plan: every intermediate buffer of a function lives at a fixed offset of
//! one caller-provided workspace, so the exact scratch size of each function is known at
//! compile time and generated code never allocates when given a workspace.
//!
//! After bufferization, each function's top-level block holds its `memref.alloc`s (those of a
//! conditional's branches and of a loop's body are moved there first). The plan
//! computes each buffer's live range (from its allocation to the last top-level op that uses
//! it or a view of it, nested uses included), places buffers largest first at the lowest
//! 64-byte-aligned offset that overlaps no buffer whose range intersects its own, and replaces
//! each allocation by a `memref.view` of a new last function argument, the workspace
//! ([`apply`], in memory).
//!
//! A buffer used only inside one loop marked parallel (`kiln.parallel`, see [`crate::parallel`])
//! is that loop's scratch (a row of a row group, say): threads running different iterations
//! need their own copy, so it is not in the workspace but on the stack: a view of one stack
//! arena (a `memref.alloca` that each stage call recomputes). So is a buffer that, inside a
//! kiln loop's body, only one parallel loop uses (its allocation hoisted as any body's is).
//! Different loops'
//! scratch shares the arena, since no two loops run at once, so the arena is the largest
//! loop's scratch, not the sum: a function with twenty softmaxes needs one softmax's rows. The
//! schedule bounds each loop's scratch (32 KiB); the plan reports the arena's bytes and
//! refuses more than [`STACK_LIMIT`].

use crate::edit::{erase, function_bodies, memref_bytes, ops_named, replace_op, symbol};
use melior::dialect::arith;
use melior::ir::attribute::{ArrayAttribute, DenseI32ArrayAttribute, IntegerAttribute, TypeAttribute};
use melior::ir::operation::{
    OperationBuilder, OperationLike, OperationMutLike, OperationRef, OperationRefMut, WalkOrder, WalkResult,
};
use melior::ir::r#type::{FunctionType, IntegerType, MemRefType, ShapedTypeLike};
use melior::ir::{
    Attribute, Block, BlockLike, BlockRef, Identifier, Module, Region, RegionLike, Type, Value, ValueLike,
};
use melior::Context;
use std::collections::{BTreeMap, HashMap};

/// Alignment of every buffer in the workspace, and of the workspace itself.
pub const ALIGNMENT: u64 = 64;

/// Stack bytes a function's loop scratch may take, at most: well under the 2 MiB of a thread's
/// stack (Rust's default for spawned threads).
pub const STACK_LIMIT: u64 = 256 << 10;

/// The plan of one function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FunctionPlan {
    /// The MLIR symbol of the function.
    pub symbol: String,
    /// Where each allocation goes, in the order the allocations appear.
    pub offsets: Vec<Placement>,
    /// Workspace bytes the function needs (0 when it has no intermediate buffer).
    pub bytes: u64,
    /// Bytes of the stack arena of its loops' scratch buffers.
    pub stack: u64,
}

/// Where a buffer lives: an offset into the workspace, or into the stack arena (a parallel
/// loop's scratch).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    Workspace(u64),
    Stack(u64),
}

struct Buffer {
    bytes: u64,
    first: usize,
    last: usize,
    /// The top-level ops that use the buffer or a view of it, other than views.
    users: Vec<usize>,
}

/// Plans every function of a bufferized module.
pub fn plan(module: &Module) -> Result<Vec<FunctionPlan>, String> {
    // Declarations (the GPU's library products) have no body and nothing to plan.
    function_bodies(module)
        .into_iter()
        .map(|(func, body)| plan_block(&symbol(&func).ok_or("a function without a name")?, &body))
        .collect()
}

/// Moves the allocations inside conditionals and the loops the emitter made (`kiln.carries`)
/// before them, to the top level, where the plan places buffers: a branch's scratch is
/// reserved whether or not the branch runs, as a static plan must, and a loop body's scratch
/// is reused by every iteration (whose carries live in the loop's own buffers, see
/// `front::carry_in_place`). The scratch of one parallel loop nested there goes to the stack
/// arena like a top-level loop's ([`crate::parallel`] keeps a loop whose scratch is in the
/// workspace serial), so workspace scratch has no two users at once.
/// (Bufferization allocates with static sizes, so an allocation has no operands and may move
/// anywhere before its uses.)
fn hoist_nested_allocations<'c: 'a, 'a>(body: &impl BlockLike<'c, 'a>) {
    let mut op = body.first_operation();
    while let Some(top) = op {
        op = top.next_in_block();
        let name = top.name().as_string_ref().as_str().map(str::to_string).unwrap_or_default();
        if !(name == "scf.if" || top.has_attribute("kiln.carries")) {
            continue;
        }
        let mut allocations = vec![];
        top.walk(WalkOrder::PreOrder, |inner| {
            if inner.name().as_string_ref().as_str() == Ok("memref.alloc") && inner.operand_count() == 0 {
                allocations.push(inner.to_raw());
            }
            WalkResult::Advance
        });
        for raw in allocations {
            // SAFETY: collected from the live function body just above; moving keeps it alive.
            unsafe { OperationRefMut::from_raw(raw) }.move_before(top);
        }
    }
}

fn plan_block<'c: 'a, 'a>(symbol: &str, body: &impl BlockLike<'c, 'a>) -> Result<FunctionPlan, String> {
    hoist_nested_allocations(body);
    let mut buffers: Vec<Buffer> = vec![];
    // Raw value pointer -> the buffers it is (or may be a view of).
    let mut owner: HashMap<usize, Vec<usize>> = HashMap::new();
    // Top-level loops marked parallel.
    let mut parallel = vec![];
    // Buffers used by one parallel loop inside a kiln loop alone: by buffer, the loop (an
    // index after the top-level ops').
    let mut inner = NestedScratch::default();
    let mut index = 0;
    let mut op = body.first_operation();
    while let Some(top) = op {
        let mut used = vec![];
        let mut nested_alloc = false;
        top.walk(WalkOrder::PreOrder, |inner| {
            used.extend(inner.operands().map(|v| v.to_raw().ptr as usize));
            if inner.to_raw().ptr != top.to_raw().ptr && inner.name().as_string_ref().as_str() == Ok("memref.alloc") {
                nested_alloc = true;
            }
            WalkResult::Advance
        });
        if nested_alloc {
            return Err(format!(
                "`{symbol}` allocates inside a region; the workspace plan handles top-level buffers only"
            ));
        }
        let name = top.name().as_string_ref().as_str().map(str::to_string).unwrap_or_default();
        if top.has_attribute("kiln.carries") {
            nested_scratch(&top, &owner, &mut inner);
        }
        let is_view = top.results().any(|r| MemRefType::try_from(r.r#type()).is_ok());
        let read: Vec<usize> = used.iter().filter_map(|v| owner.get(v)).flatten().copied().collect();
        for &b in &read {
            buffers[b].last = index;
            if !is_view && buffers[b].users.last() != Some(&index) {
                buffers[b].users.push(index);
            }
        }
        if name == "scf.for" && top.attribute("kiln.parallel").is_ok() {
            parallel.push(index);
        }
        if name == "memref.alloc" {
            let result = top.result(0).map_err(|e| e.to_string())?;
            let bytes = memref_bytes(result.r#type())
                .ok_or_else(|| format!("`{symbol}` allocates `{}`, which has no static size", result.r#type()))?;
            owner.insert(result.to_raw().ptr as usize, vec![buffers.len()]);
            buffers.push(Buffer { bytes, first: index, last: index, users: vec![] });
        } else if !read.is_empty() {
            // Views (reshapes, casts, subviews) of a buffer keep it alive while they are used,
            // and so do the buffers a conditional's result may be (those its branches read).
            for r in top.results() {
                if MemRefType::try_from(r.r#type()).is_ok() {
                    owner.insert(r.to_raw().ptr as usize, read.clone());
                }
            }
        }
        index += 1;
        op = top.next_in_block();
    }
    // Scratch of a parallel loop (used by that loop only): consecutive in the stack arena,
    // from offset 0 for each loop.
    let mut offsets = vec![Placement::Workspace(0); buffers.len()];
    let mut loop_bytes: HashMap<usize, u64> = HashMap::new();
    let mut in_workspace = vec![];
    for (i, b) in buffers.iter().enumerate() {
        // The loop whose scratch the buffer is: a top-level parallel loop, or one in a kiln
        // loop's body (the buffer's only top-level user).
        let scratch_of = match b.users.as_slice() {
            [l] if parallel.contains(l) => Some(*l),
            [_] => inner.loop_of.get(&i).copied().flatten().map(|l| index + l),
            _ => None,
        };
        match scratch_of {
            Some(l) => {
                let used = loop_bytes.entry(l).or_default();
                offsets[i] = Placement::Stack(*used);
                *used += align(b.bytes);
            }
            None => in_workspace.push(i),
        }
    }
    let stack = loop_bytes.values().copied().max().unwrap_or(0);
    if stack > STACK_LIMIT {
        return Err(format!(
            "`{symbol}` has a loop with {stack} bytes of scratch, more than the {STACK_LIMIT} the stack may take"
        ));
    }
    let placed: Vec<Buffer> = in_workspace.iter().map(|&i| Buffer { users: vec![], ..buffers[i] }).collect();
    let (placed_offsets, bytes) = place(&placed);
    for (&i, offset) in in_workspace.iter().zip(placed_offsets) {
        offsets[i] = Placement::Workspace(offset);
    }
    Ok(FunctionPlan { symbol: symbol.to_string(), offsets, bytes, stack })
}

/// The buffers that ops inside kiln loops use, each with the parallel loop (nested in a kiln
/// loop, numbered in order) that holds all of those ops, or `None` when some are outside
/// such a loop or in two.
#[derive(Default)]
struct NestedScratch {
    loop_of: BTreeMap<usize, Option<usize>>,
    /// The loops met, by raw op pointer: their numbers.
    loops: BTreeMap<usize, usize>,
}

/// Records in `inner` the buffers (by `owner`, raw value -> buffers) that the ops inside the
/// kiln loop `top` use, with the outermost parallel loop in `top` around each use.
fn nested_scratch(top: &OperationRef, owner: &HashMap<usize, Vec<usize>>, inner: &mut NestedScratch) {
    top.walk(WalkOrder::PreOrder, |op| {
        if op.to_raw().ptr == top.to_raw().ptr {
            return WalkResult::Advance;
        }
        let buffers: Vec<usize> =
            op.operands().filter_map(|v| owner.get(&(v.to_raw().ptr as usize))).flatten().copied().collect();
        if buffers.is_empty() {
            return WalkResult::Advance;
        }
        // The outermost parallel loop between the op (itself included) and `top`.
        let mut around = None;
        let mut at = Some(op);
        while let Some(o) = at.filter(|o| o.to_raw().ptr != top.to_raw().ptr) {
            if o.name().as_string_ref().as_str() == Ok("scf.for") && o.has_attribute("kiln.parallel") {
                around = Some(o.to_raw().ptr as usize);
            }
            at = o.parent_operation();
        }
        let met = inner.loops.len();
        let id = around.map(|l| *inner.loops.entry(l).or_insert(met));
        for b in buffers {
            let entry = inner.loop_of.entry(b).or_insert(id);
            if *entry != id {
                *entry = None;
            }
        }
        WalkResult::Advance
    });
}

fn align(n: u64) -> u64 {
    n.div_ceil(ALIGNMENT) * ALIGNMENT
}

/// Offsets for buffers with live ranges: largest first (ties by position), each at the lowest
/// aligned offset free of every placed buffer whose range intersects its own.
fn place(buffers: &[Buffer]) -> (Vec<u64>, u64) {
    let mut order: Vec<usize> = (0..buffers.len()).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(buffers[i].bytes), i));
    let mut offsets = vec![0u64; buffers.len()];
    let mut placed: Vec<usize> = vec![];
    let mut total = 0;
    for i in order {
        let b = &buffers[i];
        let mut busy: Vec<(u64, u64)> = placed
            .iter()
            .filter(|&&j| buffers[j].first <= b.last && b.first <= buffers[j].last)
            .map(|&j| (offsets[j], offsets[j] + buffers[j].bytes))
            .collect();
        busy.sort_unstable();
        let mut offset = 0;
        for (start, end) in busy {
            if offset + b.bytes <= start {
                break;
            }
            offset = offset.max(align(end));
        }
        offsets[i] = offset;
        total = total.max(align(offset + b.bytes));
        placed.push(i);
    }
    (offsets, total)
}

/// Carries out `plans` on the bufferized module, in memory: each function gets a last argument
/// `memref<Nxi8> {llvm.noalias}`, the workspace, and its allocations become `memref.view`s of
/// it at the planned offsets (or of the stack arena, see the module's documentation); copies
/// become loops ([`copy_as_loops`]).
pub fn apply<'c>(context: &'c Context, module: &Module<'c>, plans: &[FunctionPlan]) -> Result<(), String> {
    for (func, body) in function_bodies(module) {
        let symbol = symbol(&func).ok_or("a function without a name")?;
        let plan =
            plans.iter().find(|p| p.symbol == symbol).ok_or_else(|| format!("no workspace plan for `{symbol}`"))?;
        // SAFETY: `func` is a live op of `module`, changed only through this reference.
        let mut func = unsafe { OperationRefMut::from_raw(func.to_raw()) };
        let workspace = add_workspace_argument(context, &mut func, &body, plan.bytes)?;
        place_allocations(context, &body, plan, workspace)?;
    }
    copy_as_loops(context, module)
}

/// `memref<Nxi8>`, the type of a workspace or stack arena of `bytes`.
fn byte_buffer(context: &Context, bytes: u64) -> Type<'_> {
    MemRefType::new(IntegerType::new(context, 8).into(), &[bytes as i64], None, None).into()
}

/// Appends the workspace argument to `func` (its entry block `body`, its type and its argument
/// attributes) and returns it.
fn add_workspace_argument<'c, 'a>(
    context: &'c Context,
    func: &mut OperationRefMut<'c, 'a>,
    body: &BlockRef<'c, 'a>,
    bytes: u64,
) -> Result<Value<'c, 'a>, String> {
    let ty = byte_buffer(context, bytes);
    let signature = func
        .attribute("function_type")
        .ok()
        .and_then(|a| TypeAttribute::try_from(a).ok())
        .and_then(|t| FunctionType::try_from(t.value()).ok())
        .ok_or("a function without a type")?;
    let inputs: Vec<Type> = (0..signature.input_count())
        .map(|i| signature.input(i))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let results: Vec<Type> = (0..signature.result_count())
        .map(|i| signature.result(i))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let no_alias = Attribute::parse(context, "{llvm.noalias}").ok_or("no `llvm.noalias` attribute")?;
    let mut arg_attrs: Vec<Attribute> = match func.attribute("arg_attrs").ok().map(ArrayAttribute::try_from) {
        Some(Ok(array)) => {
            (0..array.len()).map(|i| array.element(i)).collect::<Result<_, _>>().map_err(|e| e.to_string())?
        }
        _ => vec![Attribute::parse(context, "{}").ok_or("no empty dictionary")?; inputs.len()],
    };
    arg_attrs.push(no_alias);
    let with_workspace: Vec<Type> = inputs.iter().copied().chain([ty]).collect();
    func.set_attribute(
        "function_type",
        TypeAttribute::new(FunctionType::new(context, &with_workspace, &results).into()).into(),
    );
    func.set_attribute("arg_attrs", ArrayAttribute::new(context, &arg_attrs).into());
    Ok(body.add_argument(ty, func.location()))
}

/// Replaces each top-level allocation of `body` by a view of `workspace` or of the stack
/// arena (created before the first allocation placed there), at its planned offset.
fn place_allocations<'c, 'a>(
    context: &'c Context,
    body: &BlockRef<'c, 'a>,
    plan: &FunctionPlan,
    workspace: Value<'c, 'a>,
) -> Result<(), String> {
    let index = Type::index(context);
    let mut arena: Option<Value> = None;
    let mut seen = 0;
    let mut op = body.first_operation();
    while let Some(alloc) = op {
        op = alloc.next_in_block();
        if alloc.name().as_string_ref().as_str() != Ok("memref.alloc") {
            continue;
        }
        let placement =
            *plan.offsets.get(seen).ok_or_else(|| format!("`{}` has more allocations than planned", plan.symbol))?;
        seen += 1;
        let location = alloc.location();
        let (base, offset) = match placement {
            Placement::Workspace(offset) => (workspace, offset),
            Placement::Stack(offset) => {
                let base = match arena {
                    Some(base) => base,
                    None => {
                        let alloca = OperationBuilder::new("memref.alloca", location)
                            .add_attributes(&[
                                (
                                    Identifier::new(context, "alignment"),
                                    IntegerAttribute::new(IntegerType::new(context, 64).into(), ALIGNMENT as i64)
                                        .into(),
                                ),
                                (
                                    Identifier::new(context, "operandSegmentSizes"),
                                    DenseI32ArrayAttribute::new(context, &[0, 0]).into(),
                                ),
                            ])
                            .add_results(&[byte_buffer(context, plan.stack)])
                            .build()
                            .map_err(|e| e.to_string())?;
                        let alloca = body.insert_operation_before(alloc, alloca);
                        *arena.insert(alloca.result(0).map_err(|e| e.to_string())?.into())
                    }
                };
                (base, offset)
            }
        };
        let shift = body.insert_operation_before(
            alloc,
            arith::constant(context, IntegerAttribute::new(index, offset as i64).into(), location),
        );
        let result = alloc.result(0).map_err(|e| e.to_string())?;
        let view = OperationBuilder::new("memref.view", location)
            .add_operands(&[base, shift.result(0).map_err(|e| e.to_string())?.into()])
            .add_results(&[result.r#type()])
            .build()
            .map_err(|e| e.to_string())?;
        let view = body.insert_operation_before(alloc, view);
        // SAFETY: the allocation and the view are alive with the same type.
        unsafe { replace_op(alloc.to_raw(), view.to_raw()) };
    }
    if seen == plan.offsets.len() {
        Ok(())
    } else {
        Err(format!("`{}` has {seen} allocations but {} in its plan", plan.symbol, plan.offsets.len()))
    }
}

/// Every `memref.copy %a, %b` as `linalg.copy ins(%a) outs(%b)`, which becomes a loop nest:
/// MLIR lowers a `memref.copy` between strided views to a call into its runtime library,
/// which a kiln object must not need. Bufferization writes such copies where it cannot
/// compute a value in place.
fn copy_as_loops<'c>(context: &'c Context, module: &Module<'c>) -> Result<(), String> {
    for raw in ops_named(module, "memref.copy") {
        // SAFETY: collected from the live module; each copy is replaced once.
        let copy = unsafe { OperationRef::from_raw(raw) };
        let (source, dest) = (copy.operand(0).map_err(|e| e.to_string())?, copy.operand(1).map_err(|e| e.to_string())?);
        let element = MemRefType::try_from(source.r#type()).map_err(|e| e.to_string())?.element();
        let location = copy.location();
        let block = Block::new(&[(element, location), (element, location)]);
        block.append_operation(
            OperationBuilder::new("linalg.yield", location)
                .add_operands(&[block.argument(0).map_err(|e| e.to_string())?.into()])
                .build()
                .map_err(|e| e.to_string())?,
        );
        let region = Region::new();
        region.append_block(block);
        let linalg_copy = OperationBuilder::new("linalg.copy", location)
            .add_operands(&[source, dest])
            .add_attributes(&[(
                Identifier::new(context, "operandSegmentSizes"),
                DenseI32ArrayAttribute::new(context, &[1, 1]).into(),
            )])
            .add_regions([region])
            .build()
            .map_err(|e| e.to_string())?;
        copy.block().ok_or("a copy outside a block")?.insert_operation_before(copy, linalg_copy);
        // SAFETY: a copy has no results, so nothing uses it.
        unsafe { erase(raw) };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_with_disjoint_lives_share_memory() {
        let b = |bytes, first, last| Buffer { bytes, first, last, users: vec![] };
        // 0 and 2 never live at once; 1 overlaps both.
        let (offsets, total) = place(&[b(100, 0, 1), b(10, 1, 3), b(100, 2, 3)]);
        assert_eq!(offsets, vec![0, 128, 0]);
        assert_eq!(total, 192);
        assert_eq!(place(&[]), (vec![], 0));
    }

    #[test]
    fn memref_sizes() {
        let mlir = crate::context::Mlir::new();
        let bytes = |ty: &str| memref_bytes(Type::parse(&mlir.context, ty).unwrap());
        assert_eq!(bytes("memref<16x64xf32>"), Some(4096));
        assert_eq!(bytes("memref<f64>"), Some(8));
        assert_eq!(bytes("memref<3xi1>"), Some(3));
        assert_eq!(bytes("memref<?xf32>"), None);
    }
}
