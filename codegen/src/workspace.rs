//! The static memory plan: every intermediate buffer of a function lives at a fixed offset of
//! one caller-provided workspace, so the exact scratch size of each function is known at
//! compile time and generated code never allocates when given a workspace.
//!
//! After bufferization, each function's top-level block holds its `memref.alloc`s. The plan
//! computes each buffer's live range (from its allocation to the last top-level op that uses
//! it or a view of it, nested uses included), places buffers largest first at the lowest
//! 64-byte-aligned offset that overlaps no buffer whose range intersects its own, and rewrites
//! each allocation into a `memref.view` of a new last function argument, `%kiln_ws`.
//!
//! A buffer used only inside one loop marked parallel (`kiln.parallel`, see [`crate::parallel`])
//! is that loop's scratch (a row of a row group, say): threads running different iterations
//! need their own copy, so it is not in the workspace but on the stack: a view of one stack
//! arena (`%kiln_stack`, a `memref.alloca` that each stage call recomputes). Different loops'
//! scratch shares the arena, since no two loops run at once, so the arena is the largest
//! loop's scratch, not the sum: a function with twenty softmaxes needs one softmax's rows. The
//! schedule bounds each loop's scratch (32 KiB); the plan reports the arena's bytes and
//! refuses more than [`STACK_LIMIT`].

use melior::ir::operation::{OperationLike, WalkOrder, WalkResult};

use melior::ir::{BlockLike, Module, RegionLike, ValueLike};
use std::collections::HashMap;

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

/// Bytes of a static `memref<AxBxT>` type; None for anything else.
pub(crate) fn memref_bytes(ty: &str) -> Option<u64> {
    let inner = ty.strip_prefix("memref<")?.strip_suffix('>')?;
    let mut parts: Vec<&str> = inner.split('x').collect();
    let elem = parts.pop()?;
    let size = match elem {
        "i1" | "i8" => 1,
        "i32" | "f32" => 4,
        "i64" | "f64" | "index" => 8,
        _ => return None,
    };
    parts.iter().try_fold(size, |n: u64, d| d.parse::<u64>().ok().and_then(|d| n.checked_mul(d)))
}

/// Plans every function of a bufferized module.
pub fn plan(module: &Module) -> Result<Vec<FunctionPlan>, String> {
    let mut plans = vec![];
    let mut op = module.body().first_operation();
    while let Some(func) = op {
        if func.name().as_string_ref().as_str() == Ok("func.func") {
            let symbol =
                func.attribute("sym_name").map_err(|e| e.to_string())?.to_string().trim_matches('"').to_string();
            // Declarations (the GPU's library products) have nothing to plan.
            if let Some(body) = func.region(0).map_err(|e| e.to_string())?.first_block() {
                plans.push(plan_block(&symbol, &body)?);
            }
        }
        op = func.next_in_block();
    }
    Ok(plans)
}

fn plan_block<'c: 'a, 'a>(symbol: &str, body: &impl BlockLike<'c, 'a>) -> Result<FunctionPlan, String> {
    let mut buffers: Vec<Buffer> = vec![];
    // Raw value pointer -> the buffer it is (or is a view of).
    let mut owner: HashMap<usize, usize> = HashMap::new();
    // Top-level loops marked parallel.
    let mut parallel = vec![];
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
        let is_view = top.results().any(|r| r.r#type().to_string().starts_with("memref<"));
        for v in &used {
            if let Some(&b) = owner.get(v) {
                buffers[b].last = index;
                if !is_view && buffers[b].users.last() != Some(&index) {
                    buffers[b].users.push(index);
                }
            }
        }
        if name == "scf.for" && top.attribute("kiln.parallel").is_ok() {
            parallel.push(index);
        }
        if name == "memref.alloc" {
            let result = top.result(0).map_err(|e| e.to_string())?;
            let ty = result.r#type().to_string();
            let bytes =
                memref_bytes(&ty).ok_or_else(|| format!("`{symbol}` allocates `{ty}`, which has no static size"))?;
            owner.insert(result.to_raw().ptr as usize, buffers.len());
            buffers.push(Buffer { bytes, first: index, last: index, users: vec![] });
        } else if let Some(&b) = top.operands().find_map(|v| owner.get(&(v.to_raw().ptr as usize))) {
            // Views (reshapes, casts, subviews) of a buffer keep it alive while they are used.
            for r in top.results() {
                if r.r#type().to_string().starts_with("memref<") {
                    owner.insert(r.to_raw().ptr as usize, b);
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
        match b.users.as_slice() {
            [l] if parallel.contains(l) => {
                let used = loop_bytes.entry(*l).or_default();
                offsets[i] = Placement::Stack(*used);
                *used += align(b.bytes);
            }
            _ => in_workspace.push(i),
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

/// `memref.copy %a, %b : A to B` as `linalg.copy`, which becomes a loop nest: MLIR lowers a
/// `memref.copy` between strided views to a call into its runtime library, which a kiln object
/// must not need. Bufferization writes such copies where it cannot compute a value in place.
fn copy_as_loops(line: &str) -> Option<String> {
    let trimmed = line.trim_start();
    let indent = &line[..line.len() - trimmed.len()];
    let (operands, types) = trimmed.strip_prefix("memref.copy ")?.split_once(" : ")?;
    let (source, dest) = operands.split_once(", ")?;
    let (from, to) = types.split_once(" to ")?;
    Some(format!("{indent}linalg.copy ins({source} : {from}) outs({dest} : {to})"))
}

/// Rewrites the printed, bufferized module: each function of `plans` gets the argument
/// `%kiln_ws: memref<Nxi8> {llvm.noalias}` and its allocations become views of it at the
/// planned offsets (or stack buffers, see the module's documentation); copies become loops
/// (`copy_as_loops`).
pub fn rewrite(text: &str, plans: &[FunctionPlan]) -> Result<String, String> {
    let by_symbol: HashMap<&str, &FunctionPlan> = plans.iter().map(|p| (p.symbol.as_str(), p)).collect();
    let mut out = String::with_capacity(text.len() + 1024);
    // The function being rewritten, its allocations seen so far, and whether its stack arena
    // is defined yet.
    let mut current: Option<(&FunctionPlan, usize, bool)> = None;
    for line in text.lines() {
        let trimmed = line.trim_start();
        let indent = &line[..line.len() - trimmed.len()];
        // Declarations (no body) keep their line.
        let definition = trimmed.strip_prefix("func.func ").filter(|_| trimmed.ends_with('{'));
        if let Some(rest) = definition {
            if let Some((plan, seen, _)) = current.take() {
                check_count(plan, seen)?;
            }
            let symbol = rest.split('@').nth(1).and_then(|s| s.split('(').next()).unwrap_or("");
            let plan = by_symbol.get(symbol).ok_or_else(|| format!("no workspace plan for `{symbol}`"))?;
            let close = line.rfind(") {").ok_or_else(|| format!("unexpected function header `{line}`"))?;
            let sep = if line[..close].ends_with('(') { "" } else { ", " };
            out.push_str(&format!(
                "{}{sep}%kiln_ws: memref<{}xi8> {{llvm.noalias}}{}\n",
                &line[..close],
                plan.bytes,
                &line[close..]
            ));
            current = Some((plan, 0, false));
        } else if let Some((name, alloc)) = trimmed.split_once(" = memref.alloc()") {
            let (plan, seen, arena) = current.as_mut().ok_or("an allocation outside a function")?;
            let ty = alloc.rsplit(": ").next().unwrap_or("").trim();
            let offset = *plan
                .offsets
                .get(*seen)
                .ok_or_else(|| format!("`{}` has more allocations than planned", plan.symbol))?;
            let (base, bytes, offset) = match offset {
                Placement::Workspace(offset) => ("%kiln_ws", plan.bytes, offset),
                Placement::Stack(offset) => {
                    if !*arena {
                        out.push_str(&format!(
                            "{indent}%kiln_stack = memref.alloca() {{alignment = {ALIGNMENT} : i64}} : memref<{}xi8>\n",
                            plan.stack
                        ));
                        *arena = true;
                    }
                    ("%kiln_stack", plan.stack, offset)
                }
            };
            out.push_str(&format!("{indent}%kiln_off{seen} = arith.constant {offset} : index\n"));
            out.push_str(&format!(
                "{indent}{name} = memref.view {base}[%kiln_off{seen}][] : memref<{bytes}xi8> to {ty}\n"
            ));
            *seen += 1;
        } else if let Some(copy) = copy_as_loops(line) {
            out.push_str(&copy);
            out.push('\n');
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    if let Some((plan, seen, _)) = current {
        check_count(plan, seen)?;
    }
    Ok(out)
}

fn check_count(plan: &FunctionPlan, seen: usize) -> Result<(), String> {
    if seen == plan.offsets.len() {
        Ok(())
    } else {
        Err(format!("`{}` has {seen} allocations in its text but {} in its plan", plan.symbol, plan.offsets.len()))
    }
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
    fn copies_become_linalg_copies() {
        let line = "    memref.copy %a, %sub : memref<2x3xf32> to memref<2x3xf32, strided<[6, 1], offset: 3>>";
        assert_eq!(
            copy_as_loops(line).unwrap(),
            "    linalg.copy ins(%a : memref<2x3xf32>) outs(%sub : memref<2x3xf32, strided<[6, 1], offset: 3>>)"
        );
        assert_eq!(copy_as_loops("    %x = memref.alloc() : memref<4xf32>"), None);
    }

    #[test]
    fn memref_sizes() {
        assert_eq!(memref_bytes("memref<16x64xf32>"), Some(4096));
        assert_eq!(memref_bytes("memref<f64>"), Some(8));
        assert_eq!(memref_bytes("memref<3xi1>"), Some(3));
        assert_eq!(memref_bytes("memref<?xf32>"), None);
    }
}
