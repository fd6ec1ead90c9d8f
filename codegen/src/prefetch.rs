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
//! This works on the printed, bufferized and planned module (before [`crate::parallel`]), where
//! the schedule marked each row loop `kiln.rows`. A prefetch never faults and never changes a
//! result.

use crate::printed::{indent, index_constants, loop_at, Loop};
use std::collections::BTreeMap;

/// Bytes of a cache line.
const LINE: usize = 64;

/// The loops directly inside `outer` (one indentation step in), in order.
fn inner_loops(lines: &[&str], outer: &Loop) -> Vec<Loop> {
    let depth = indent(lines[outer.header]) + 2;
    let mut loops = vec![];
    let mut at = outer.header + 1;
    while at < outer.close {
        match loop_at(lines, at).filter(|_| indent(lines[at]) == depth) {
            Some(l) => {
                at = l.close + 1;
                loops.push(l);
            }
            None => at += 1,
        }
    }
    loops
}

/// A vector read `vector.transfer_read %m[i, j], ...` or `vector.load %m[i, j] ...` in a line:
/// the memref, its indices and its type.
fn vector_read(line: &str) -> Option<(&str, Vec<&str>, &str)> {
    let rest = ["vector.transfer_read ", "vector.load "].iter().find_map(|op| line.split_once(op).map(|(_, r)| r))?;
    let (memref, rest) = rest.split_once('[')?;
    let (indices, rest) = rest.split_once(']')?;
    let ty = rest.split(" : ").nth(1)?.split(", vector").next()?.trim();
    ty.starts_with("memref<").then(|| (memref.trim(), indices.split(", ").map(str::trim).collect(), ty))
}

/// Bytes of a memref type's elements (`memref<4096x1024xf32>`, with or without a layout).
fn element_bytes(ty: &str) -> Option<usize> {
    let shape = ty.strip_prefix("memref<")?.split([',', '>']).next()?;
    match shape.rsplit('x').next()? {
        "f64" | "i64" | "index" => Some(8),
        "f32" | "i32" => Some(4),
        "i8" | "i1" => Some(1),
        _ => None,
    }
}

/// `text` with the second loop of every `kiln.rows` loop prefetching the next row of what its
/// first loop reads by row.
pub fn next_rows(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let constants = index_constants(lines.iter().copied());
    // Lines to insert before the line at each index.
    let mut inserts: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    let mut count = 0;
    for at in 0..lines.len() {
        let Some(row) = loop_at(&lines, at) else { continue };
        if !lines[row.close].contains("kiln.rows") {
            continue;
        }
        let inner = inner_loops(&lines, &row);
        let (Some(first), Some(second)) = (inner.first(), inner.get(1)) else { continue };
        let (Some(&upper), Some(&step)) = (constants.get(row.upper.as_str()), constants.get(second.step.as_str()))
        else {
            continue;
        };
        if second.upper != first.upper {
            continue;
        }
        // What the first loop reads by row: memref, indices, type (each memref once).
        let mut reads: Vec<(&str, Vec<&str>, &str)> = vec![];
        for line in &lines[first.header + 1..first.close] {
            if let Some((memref, indices, ty)) = vector_read(line) {
                let by_row = indices.contains(&row.iv.as_str()) && indices.last() == Some(&first.iv.as_str());
                if by_row && !reads.iter().any(|r| r.0 == memref) {
                    reads.push((memref, indices, ty));
                }
            }
        }
        if reads.is_empty() {
            continue;
        }
        let p = format!("%kiln_pf{count}");
        count += 1;
        let outer_pad = " ".repeat(indent(lines[second.header]));
        inserts.entry(second.header).or_default().push(format!(
            "{outer_pad}{p}_one = arith.constant 1 : index\n\
             {outer_pad}{p}_last = arith.constant {} : index\n\
             {outer_pad}{p}_next = arith.addi {}, {p}_one : index\n\
             {outer_pad}{p}_row = arith.minsi {p}_next, {p}_last : index",
            upper - 1,
            row.iv
        ));
        let pad = " ".repeat(indent(lines[second.header]) + 2);
        let mut body = vec![];
        for (r, (memref, indices, ty)) in reads.iter().enumerate() {
            let Some(bytes) = element_bytes(ty) else { continue };
            let per_line = (LINE / bytes).max(1) as i64;
            let lines_per_iteration = (usize::try_from(step).unwrap_or(0) * bytes).div_ceil(LINE);
            for k in 0..lines_per_iteration as i64 {
                let column = if k == 0 {
                    second.iv.clone()
                } else {
                    body.push(format!("{pad}{p}_c{r}_{k} = arith.constant {} : index", k * per_line));
                    body.push(format!("{pad}{p}_j{r}_{k} = arith.addi {}, {p}_c{r}_{k} : index", second.iv));
                    format!("{p}_j{r}_{k}")
                };
                let at: Vec<String> = indices
                    .iter()
                    .enumerate()
                    .map(|(i, &x)| {
                        if i + 1 == indices.len() {
                            column.clone()
                        } else if x == row.iv {
                            format!("{p}_row")
                        } else {
                            x.to_string()
                        }
                    })
                    .collect();
                body.push(format!("{pad}memref.prefetch {memref}[{}], read, locality<3>, data : {ty}", at.join(", ")));
            }
        }
        inserts.entry(second.header + 1).or_default().push(body.join("\n"));
    }
    let mut out = String::with_capacity(text.len() + inserts.len() * 256);
    for (i, line) in lines.iter().enumerate() {
        for insert in inserts.get(&i).into_iter().flatten().filter(|s| !s.is_empty()) {
            out.push_str(insert);
            out.push('\n');
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_second_loop_prefetches_the_next_row_of_the_first_loops_reads() {
        let text = "  func.func private @f(%arg0: memref<64x256xf32>, %out: memref<64x256xf32>) {
    %c0 = arith.constant 0 : index
    %c1 = arith.constant 1 : index
    %c32 = arith.constant 32 : index
    %c64 = arith.constant 64 : index
    %c256 = arith.constant 256 : index
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
";
        let out = next_rows(text);
        assert!(out.contains("      %kiln_pf0_last = arith.constant 63 : index\n"));
        assert!(out.contains("      %kiln_pf0_row = arith.minsi %kiln_pf0_next, %kiln_pf0_last : index\n      scf.for %arg3 = %c0 to %c256 step %c32 {\n"));
        // 32 floats per iteration: two lines.
        assert!(out.contains(
            "        memref.prefetch %arg0[%kiln_pf0_row, %arg3], read, locality<3>, data : memref<64x256xf32>\n"
        ));
        assert!(out.contains("        %kiln_pf0_j0_1 = arith.addi %arg3, %kiln_pf0_c0_1 : index\n"));
        assert!(out.contains("memref.prefetch %arg0[%kiln_pf0_row, %kiln_pf0_j0_1]"));
        assert_eq!(out.matches("memref.prefetch").count(), 2);
        // Unmarked loops are left alone.
        let unmarked = text.replace(", kiln.rows", "");
        assert_eq!(next_rows(&unmarked), unmarked);
    }
}
