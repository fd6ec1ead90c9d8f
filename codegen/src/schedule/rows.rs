//! Row groups: ops that run together, one row at a time.
//!
//! Row-wise programs (softmax, layernorm, a loss over logits) are chains of reductions over the
//! last axis and elementwise ops that read the reduced values back along the rows. Scheduled op
//! by op, each op streams the whole tensor through memory: softmax reads its input twice,
//! writes and reads back exp twice, and writes its output. A *row group* is such a chain run
//! as one loop over rows: a row of input is read from memory once, every intermediate row stays
//! in L1 (a few KiB of stack per thread), and the output row is written once.
//!
//! A group has a *root* (its last op, whose rows the loop runs) and *producers*: ops whose
//! results are read only by members of the group, one row of the result per row of the
//! consumer (see `Loops::row_dims`). The schedule tiles the root's leading loops by 1
//! (`tile_using_for`), fuses each producer into that loop, consumers first
//! (`fuse_into_containing_op`: one tiled copy per use, merged by cse), and then vectorizes
//! each member inside the loop like any other op. This is the schedule of
//! a hand-written one-pass softmax and layernorm (docs/decisions.md, row groups), derived from
//! the program.

use super::{annotate_parallel, list, Generic, Loops};
use melior::ir::operation::OperationLike;
use melior::ir::operation::OperationRef;
use melior::ir::ValueLike;
use mlir_sys::MlirOperation;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fmt::Write;

/// Intermediate rows of a group, at most (bytes per row loop iteration): they live on the stack
/// of the thread running the loop (see `workspace`), next to L1's 32-48 KiB.
pub const ROW_SCRATCH_BYTES: usize = 32 << 10;

/// The most generics a row group may hold. Row-wise work is a few dozen ops (a layer norm's
/// backward pass); a longer chain is cut into groups of at most this many, latest first.
pub const MAX_ROW_GROUP_GENERICS: usize = 32;

/// Fused producers times the ops of their function, at most, per function. Fusing a producer
/// into a row loop costs time proportional to the whole function holding it, not to the group:
/// `fuse_into_containing_op` builds its "could not fuse" remark eagerly, and printing an op
/// verifies and numbers every op of its enclosing `func.func` (MLIR's local scope stops at the
/// nearest op isolated from above). A function of n ops with n/k groups would cost n²/k; past
/// this budget (about 5 s of fusion on the host of docs/performance.md) its remaining ops run
/// ungrouped, so the schedule stays linear in the program. Every example and benchmark is far
/// below it; a function of 20,000 ops keeps about 200 fused producers.
pub const ROW_FUSION_BUDGET: usize = 1 << 22;

/// A linalg op a row group may contain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Member {
    /// A `linalg.generic` tagged `kiln.vectorize = ID`.
    Generic(usize),
    /// A `linalg.fill` (a reduction's initial value), tagged `kiln.fill = ID` when grouped.
    Fill(usize),
}

impl Member {
    pub fn generic(&self) -> Option<usize> {
        match self {
            Member::Generic(id) => Some(*id),
            Member::Fill(_) => None,
        }
    }

    /// A transform-dialect match of the op.
    pub fn matcher(&self) -> String {
        let (ops, attr, id) = match self {
            Member::Generic(id) => ("linalg.generic", "kiln.vectorize", id),
            Member::Fill(id) => ("linalg.fill", "kiln.fill", id),
        };
        format!("transform.structured.match ops{{[\"{ops}\"]}} attributes {{{attr} = {id} : i64}} in %root : (!transform.any_op) -> !transform.any_op")
    }
}

/// A linalg op of the payload, with what grouping needs to know about it.
pub(crate) struct Node {
    op: MlirOperation,
    member: Member,
    loops: Loops,
    /// The function holding the op: its index in walk order, and its ops.
    function: (usize, usize),
}

impl Node {
    pub fn new<'c: 'a, 'a>(
        op: &impl OperationLike<'c, 'a>,
        member: Member,
        loops: Loops,
        function: (usize, usize),
    ) -> Node {
        Node { op: op.to_raw(), member, loops, function }
    }

    pub fn op(&self) -> OperationRef<'_, '_> {
        // SAFETY: the op belongs to the module being tagged, which outlives the nodes.
        unsafe { OperationRef::from_raw(self.op) }
    }
}

/// A group of ops run as one loop over rows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowGroup {
    /// The root, a generic.
    pub root: usize,
    /// The producers, in the order they are fused (consumers first).
    pub producers: Vec<Member>,
    /// The producers' nodes (parallel to `producers`), for tagging.
    pub(crate) nodes: Vec<usize>,
    /// Leading loops of the root that the row loop runs: a row is one iteration of them.
    pub dims: usize,
    /// Iterations of the row loop.
    pub rows: usize,
    /// Loop iterations of all members, per row: the work of one row loop iteration.
    pub work_per_row: usize,
}

/// The row groups among `nodes` (linalg ops in walk order): each generic not yet grouped,
/// latest first, roots a group of the producers that may join it; groups with fewer than two
/// generics, whose intermediate rows exceed [`ROW_SCRATCH_BYTES`], or that would overrun their
/// function's `budget` (see [`ROW_FUSION_BUDGET`]), are dropped.
pub(crate) fn find(nodes: &[Node], generics: &[Generic], budget: usize) -> Vec<RowGroup> {
    let index: HashMap<usize, usize> = nodes.iter().enumerate().map(|(i, n)| (n.op.ptr as usize, i)).collect();
    let producers: Vec<Vec<(usize, usize)>> = nodes.iter().map(|n| operand_producers(n, &index)).collect();
    // Users that are not linalg ops of interest are usize::MAX: always outside a group.
    let users: Vec<Vec<usize>> = nodes
        .iter()
        .map(|n| result_users(n).into_iter().map(|u| index.get(&u).copied().unwrap_or(usize::MAX)).collect())
        .collect();
    let mut taken = vec![false; nodes.len()];
    let mut spent: HashMap<usize, usize> = HashMap::new();
    let mut groups = vec![];
    for root in (0..nodes.len()).rev() {
        let Member::Generic(root_id) = nodes[root].member else { continue };
        if taken[root] || !generics[root_id].vectorize || nodes[root].loops.row_dims == 0 {
            continue;
        }
        let Some((members, dims)) = grow(root, nodes, &producers, &users, &taken) else { continue };
        let rows: usize = nodes[root].loops.extents[..dims].iter().product();
        let scratch: usize = members.iter().map(|&m| nodes[m].loops.bytes / rows).sum();
        let alone = members.iter().all(|&m| matches!(nodes[m].member, Member::Fill(_)));
        let (function, function_ops) = nodes[root].function;
        let cost = members.len().saturating_mul(function_ops);
        let spent = spent.entry(function).or_default();
        if alone || scratch > ROW_SCRATCH_BYTES || spent.saturating_add(cost) > budget {
            continue;
        }
        *spent += cost;
        for &n in std::iter::once(&root).chain(&members) {
            taken[n] = true;
        }
        let work_per_row = std::iter::once(&root)
            .chain(&members)
            .filter(|&&m| matches!(nodes[m].member, Member::Generic(_)))
            .map(|&m| nodes[m].loops.extents.iter().product::<usize>() / rows)
            .sum();
        groups.push(RowGroup {
            root: root_id,
            producers: members.iter().map(|&m| nodes[m].member).collect(),
            nodes: members,
            dims,
            rows,
            work_per_row,
        });
    }
    groups
}

/// The producers that may join `root`'s group, consumers first, and the group's row loops:
/// every op reachable through operands whose leading row extent is the root's and that is a
/// fill or a vectorized generic (the nearest, up to [`MAX_ROW_GROUP_GENERICS`] generics), less
/// those with a user outside the group (a result needed elsewhere is computed whole, once),
/// repeatedly. The row loops are the leading loops that are
/// rows of every member's result and of every operand one member reads from another, with
/// equal extents.
fn grow(
    root: usize,
    nodes: &[Node],
    producers: &[Vec<(usize, usize)>],
    users: &[Vec<usize>],
    taken: &[bool],
) -> Option<(Vec<usize>, usize)> {
    let first = nodes[root].loops.extents[0];
    let joins = |p: usize| {
        let l = &nodes[p].loops;
        !taken[p] && l.row_dims > 0 && l.extents[0] == first && l.vectorize
    };
    // The root's own initial value (a reduction's fill) is the row loop's iteration argument,
    // which fusion cannot move into the loop: it stays whole, outside.
    let root_init = nodes[root].op().operand_count().saturating_sub(1);
    // Breadth first, nearest producers first, up to the cap: a longer chain is cut, and what
    // lies beyond the cut roots groups of its own.
    let mut members = BTreeSet::from([root]);
    let mut generics = 1;
    let mut queue = VecDeque::from([root]);
    while let Some(m) = queue.pop_front() {
        for &(operand, p) in &producers[m] {
            if m == root && operand == root_init {
                continue;
            }
            let generic = matches!(nodes[p].member, Member::Generic(_));
            if !members.contains(&p) && joins(p) && !(generic && generics == MAX_ROW_GROUP_GENERICS) {
                generics += usize::from(generic);
                members.insert(p);
                queue.push_back(p);
            }
        }
    }
    loop {
        let outside: Vec<usize> =
            members.iter().copied().filter(|&m| m != root && users[m].iter().any(|u| !members.contains(u))).collect();
        if outside.is_empty() {
            break;
        }
        for m in outside {
            members.remove(&m);
        }
    }
    // Producers no longer connected to the root through members cannot be fused into its loop.
    let mut connected = BTreeSet::from([root]);
    let mut dims = nodes[root].loops.row_dims;
    let mut stack = vec![root];
    while let Some(m) = stack.pop() {
        for &(operand, p) in &producers[m] {
            if members.contains(&p) {
                dims = dims.min(nodes[m].loops.operand_rows[operand]).min(nodes[p].loops.row_dims);
                if connected.insert(p) {
                    stack.push(p);
                }
            }
        }
    }
    let extents = &nodes[root].loops.extents;
    while dims > 0 && connected.iter().any(|&m| nodes[m].loops.extents.get(..dims) != extents.get(..dims)) {
        dims -= 1;
    }
    connected.remove(&root);
    (dims > 0).then(|| (connected.into_iter().rev().collect(), dims))
}

/// The nodes that produce `node`'s operands, with the operand's position.
fn operand_producers(node: &Node, index: &HashMap<usize, usize>) -> Vec<(usize, usize)> {
    let op = node.op();
    (0..op.operand_count())
        .filter_map(|i| {
            let v = op.operand(i).ok()?.to_raw();
            // SAFETY: `v` is a live value of the op; its owner is read only for op results.
            let owner = unsafe {
                if !mlir_sys::mlirValueIsAOpResult(v) {
                    return None;
                }
                mlir_sys::mlirOpResultGetOwner(v)
            };
            index.get(&(owner.ptr as usize)).map(|&p| (i, p))
        })
        .collect()
}

/// The ops that use `node`'s result, as raw pointers.
fn result_users(node: &Node) -> Vec<usize> {
    let mut users = vec![];
    // SAFETY: the op has one result (linalg ops on tensors); its use list is walked while
    // the module is unchanged.
    unsafe {
        let result = mlir_sys::mlirOperationGetResult(node.op, 0);
        let mut use_ = mlir_sys::mlirValueGetFirstUse(result);
        while !mlir_sys::mlirOpOperandIsNull(use_) {
            users.push(mlir_sys::mlirOpOperandGetOwner(use_).ptr as usize);
            use_ = mlir_sys::mlirOpOperandGetNextUse(use_);
        }
    }
    users
}

/// Writes the fusion of `group`: the root's row loops, each producer fused into the innermost
/// one, consumers first, and the outermost row loop marked parallel.
pub fn fuse(s: &mut String, group: &RowGroup, root_op: &Generic) {
    let root = group.root;
    let k = group.dims;
    let tiles = std::iter::repeat_n(1, k).chain(std::iter::repeat_n(0, root_op.extents.len() - k));
    let _ = writeln!(
        s,
        "    %row{root} = {}\n\
         \x20   %row{root}_t, %row{root}_loops:{k} = transform.structured.tile_using_for %row{root} tile_sizes [{}] : (!transform.any_op) -> ({})",
        Member::Generic(root).matcher(),
        list(tiles),
        super::any_ops(k + 1)
    );
    let mut containing = format!("%row{root}_loops#{}", k - 1);
    for (i, member) in group.producers.iter().enumerate() {
        let _ = writeln!(
            s,
            "    %row{root}_p{i} = {}\n\
             \x20   %row{root}_f{i}, %row{root}_in{i} = transform.structured.fuse_into_containing_op %row{root}_p{i} into {containing} : (!transform.any_op, !transform.any_op) -> (!transform.any_op, !transform.any_op)",
            member.matcher()
        );
        containing = format!("%row{root}_in{i}");
        // One tiled copy per use: merged at once, so that the next producer is fused into one
        // consumer, not into each copy (a chain of n producers read twice would make 2^n).
        let _ = writeln!(s, "    transform.apply_cse to {containing} : !transform.any_op");
    }
    // Fusion may replace the loop it fuses into: the outermost row loop is marked afterwards.
    // An iteration of it runs the rows of the inner ones.
    let outermost = if k == 1 { containing.clone() } else { format!("%row{root}_loops#0") };
    let inner_rows: usize = root_op.extents[1..k].iter().product();
    annotate_parallel(s, &outermost, group.rows * group.work_per_row, inner_rows * group.work_per_row);
    // The innermost row loop prefetches its next row (see `crate::prefetch`).
    let _ = writeln!(s, "    transform.annotate {containing} \"kiln.rows\" : !transform.any_op");
}
