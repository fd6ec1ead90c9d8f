//! Prefetching the next row of a row group (see `schedule::rows`).
//!
//! A row group's loop body first streams its input row from memory (softmax's max, layernorm's
//! mean), then computes on the row from L1 (softmax's exp, sum and scale). While it computes,
//! the memory system idles: the hardware prefetcher follows the reads of the first loop, not a
//! row that nobody reads yet. The second loop over the row therefore prefetches the next row of
//! every memref the first loop reads by row, one cache line per `memref.prefetch`: the read of
//! row i + 1 overlaps the computation on row i. softmax 4096x1024 on one Zen 5 core: 2.2-2.4 ->
//! 1.64-1.68 ms.
//!
//! This works in memory on the bufferized and planned module (before [`crate::parallel`]),
//! where the schedule marked each row loop `kiln.rows`. A prefetch never faults and never
//! changes a result.

use crate::edit::{defined_in, element_bytes, int_constant, ops_where};
use melior::dialect::arith;
use melior::ir::attribute::{BoolAttribute, IntegerAttribute};
use melior::ir::operation::{OperationBuilder, OperationLike, OperationRef, WalkOrder, WalkResult};
use melior::ir::r#type::{IntegerType, MemRefType, ShapedTypeLike};
use melior::ir::{BlockLike, BlockRef, Identifier, Module, RegionLike, Type, Value, ValueLike};
use melior::Context;

/// Bytes of a cache line.
const LINE: usize = 64;

/// The `scf.for` ops directly in `block`, in order.
fn loops_in<'c, 'a>(block: &BlockRef<'c, 'a>) -> Vec<OperationRef<'c, 'a>> {
    let mut loops = vec![];
    let mut op = block.first_operation();
    while let Some(current) = op {
        if current.name().as_string_ref().as_str() == Ok("scf.for") {
            loops.push(current);
        }
        op = current.next_in_block();
    }
    loops
}

/// The body block of a loop.
fn body<'c, 'a>(op: &OperationRef<'c, 'a>) -> Option<BlockRef<'c, 'a>> {
    op.region(0).ok()?.first_block()
}

/// A vector read by row in the first loop of a row group: a `vector.transfer_read` or
/// `vector.load` of a memref whose indices include the row's and end with the first loop's.
struct Read<'c, 'a> {
    memref: Value<'c, 'a>,
    indices: Vec<Value<'c, 'a>>,
    element: usize,
}

/// The distinct memrefs the loop `first` reads by row `row` (its induction variable
/// `row_iv`), with their indices.
fn reads_by_row<'c, 'a>(first: &OperationRef<'c, 'a>, row_iv: Value<'c, 'a>) -> Vec<Read<'c, 'a>> {
    let Some(first_iv) = body(first).and_then(|b| b.argument(0).ok()) else { return vec![] };
    let first_iv: Value = first_iv.into();
    let mut reads: Vec<Read> = vec![];
    first.walk(WalkOrder::PreOrder, |op| {
        if matches!(op.name().as_string_ref().as_str(), Ok("vector.transfer_read" | "vector.load")) {
            let memref = op.operand(0).ok();
            let ty = memref.and_then(|m| MemRefType::try_from(m.r#type()).ok());
            if let (Some(memref), Some(ty)) = (memref, ty) {
                let rank = ty.rank();
                let indices: Vec<Value> = op.operands().skip(1).take(rank).collect();
                let by_row = indices.len() == rank
                    && indices.contains(&row_iv)
                    && indices.last() == Some(&first_iv)
                    && indices[..rank - 1].iter().all(|&i| i == row_iv || !defined_in(i, first));
                let known = reads.iter().any(|r| r.memref == memref);
                if let (true, false, Some(element)) = (by_row, known, element_bytes(ty.element())) {
                    // SAFETY: the values live in the module, which outlives this pass.
                    let extend = |v: Value| unsafe { Value::from_raw(v.to_raw()) };
                    reads.push(Read {
                        memref: extend(memref),
                        indices: indices.into_iter().map(extend).collect(),
                        element: element as usize,
                    });
                }
            }
        }
        WalkResult::Advance
    });
    reads
}

/// Inserts an op before `at` in `block` and returns its first result.
fn insert<'c, 'a>(block: &BlockRef<'c, 'a>, at: OperationRef<'c, 'a>, op: melior::ir::Operation<'c>) -> Value<'c, 'a> {
    block.insert_operation_before(at, op).result(0).expect("an op with a result").into()
}

/// Makes the second loop of every `kiln.rows` loop prefetch the next row of what its first
/// loop reads by row.
pub fn next_rows<'c>(context: &'c Context, module: &Module<'c>) -> Result<(), String> {
    let rows =
        ops_where(module, |op| op.name().as_string_ref().as_str() == Ok("scf.for") && op.has_attribute("kiln.rows"));
    let index = Type::index(context);
    let constant_op =
        |value: i64, location| arith::constant(context, IntegerAttribute::new(index, value).into(), location);
    for raw in rows {
        // SAFETY: collected from the live module; ops are only inserted inside it.
        let row = unsafe { OperationRef::from_raw(raw) };
        let Some(row_body) = body(&row) else { continue };
        let inner = loops_in(&row_body);
        let (Some(first), Some(second)) = (inner.first(), inner.get(1)) else { continue };
        let row_iv: Value = row_body.argument(0).map_err(|e| e.to_string())?.into();
        let (upper, step) = (row.operand(1).ok().and_then(int_constant), second.operand(2).ok().and_then(int_constant));
        let (Some(upper), Some(step)) = (upper, step) else { continue };
        if second.operand(1).ok() != first.operand(1).ok() {
            continue;
        }
        let reads = reads_by_row(first, row_iv);
        if reads.is_empty() {
            continue;
        }
        // The next row, the last one on the last iteration: min(i + 1, rows - 1).
        let location = second.location();
        let one = insert(&row_body, *second, constant_op(1, location));
        let last = insert(&row_body, *second, constant_op(upper - 1, location));
        let next = insert(&row_body, *second, arith::addi(row_iv, one, location));
        let next_row = insert(&row_body, *second, arith::minsi(next, last, location));
        let second_body = body(second).ok_or("a loop without a body")?;
        let start = second_body.first_operation().ok_or("an empty loop")?;
        let column_iv: Value = second_body.argument(0).map_err(|e| e.to_string())?.into();
        for read in &reads {
            let per_line = (LINE / read.element).max(1) as i64;
            let lines_per_iteration = (usize::try_from(step).unwrap_or(0) * read.element).div_ceil(LINE);
            for k in 0..lines_per_iteration as i64 {
                let column = if k == 0 {
                    column_iv
                } else {
                    let offset = insert(&second_body, start, constant_op(k * per_line, location));
                    insert(&second_body, start, arith::addi(column_iv, offset, location))
                };
                let last_index = read.indices.len() - 1;
                let at = read.indices.iter().enumerate().map(|(i, &x)| {
                    if i == last_index {
                        column
                    } else if x == row_iv {
                        next_row
                    } else {
                        x
                    }
                });
                let operands: Vec<Value> = [read.memref].into_iter().chain(at).collect();
                let prefetch = OperationBuilder::new("memref.prefetch", location)
                    .add_operands(&operands)
                    .add_attributes(&[
                        (Identifier::new(context, "isDataCache"), BoolAttribute::new(context, true).into()),
                        (Identifier::new(context, "isWrite"), BoolAttribute::new(context, false).into()),
                        (
                            Identifier::new(context, "localityHint"),
                            IntegerAttribute::new(IntegerType::new(context, 32).into(), 3).into(),
                        ),
                    ])
                    .build()
                    .map_err(|e| e.to_string())?;
                second_body.insert_operation_before(start, prefetch);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::Mlir;

    #[test]
    fn the_second_loop_prefetches_the_next_row_of_the_first_loops_reads() {
        let text = "module {
  func.func private @f(%arg0: memref<64x256xf32>, %out: memref<64x256xf32>, %v: vector<1x64xf32>) {
    %c0 = arith.constant 0 : index
    %c1 = arith.constant 1 : index
    %c32 = arith.constant 32 : index
    %c64 = arith.constant 64 : index
    %c256 = arith.constant 256 : index
    %p = arith.constant 0.0 : f32
    scf.for %arg2 = %c0 to %c64 step %c1 {
      %1 = scf.for %arg3 = %c0 to %c256 step %c64 iter_args(%a = %v) -> (vector<1x64xf32>) {
        %2 = vector.transfer_read %arg0[%arg2, %arg3], %p {in_bounds = [true, true]} : memref<64x256xf32>, vector<1x64xf32>
        scf.yield %2 : vector<1x64xf32>
      }
      scf.for %arg3 = %c0 to %c256 step %c32 {
        %3 = vector.transfer_read %arg0[%arg2, %arg3], %p {in_bounds = [true, true]} : memref<64x256xf32>, vector<1x32xf32>
      }
    } {kiln.parallel = 4 : i64, kiln.rows}
    return
  }
}
";
        let mlir = Mlir::new();
        let module = mlir.parse(text, "test").unwrap();
        next_rows(&mlir.context, &module).unwrap();
        assert!(module.as_operation().verify());
        let out = module.as_operation().to_string();
        assert!(out.contains("arith.constant 63 : index"), "{out}");
        assert!(out.contains("arith.minsi"), "{out}");
        // 32 floats per iteration: two lines, the second 16 floats on.
        assert_eq!(out.matches("memref.prefetch").count(), 2, "{out}");
        assert!(out.contains("arith.constant 16 : index"), "{out}");
        assert!(out.contains("read, locality<3>, data : memref<64x256xf32>"), "{out}");
        // Unmarked loops are left alone.
        let unmarked = mlir.parse(&text.replace(", kiln.rows", ""), "test").unwrap();
        let before = unmarked.as_operation().to_string();
        next_rows(&mlir.context, &unmarked).unwrap();
        assert_eq!(unmarked.as_operation().to_string(), before);
    }
}
