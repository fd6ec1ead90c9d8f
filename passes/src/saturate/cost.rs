//! The cost model: estimated work of a node from shapes alone, FLOPs plus elements written
//! (a proxy for bytes moved, which makes copies such as transposes and broadcasts cost what
//! they write). Parameters are free and constants nearly so.

use super::{Graph, Node};
use kiln_ir::{Func, Op, TensorType};

/// The cost of one op with operand types `args` and result `ty`.
pub fn node_cost(op: &Op, args: &[&TensorType], ty: &TensorType) -> f64 {
    match op {
        Op::Const(_) => 1.0,
        _ => crate::stats::flops(op, args, ty) as f64 + ty.num_elements() as f64,
    }
}

/// The cost of a whole program: each instruction counted once.
pub fn program_cost(f: &Func) -> f64 {
    f.insts
        .iter()
        .map(|inst| {
            let args: Vec<&TensorType> = inst.args.iter().map(|&a| f.ty(a)).collect();
            node_cost(&inst.op, &args, &inst.ty)
        })
        .sum()
}

/// The tree cost of `node` given its children's tree costs: its own cost plus theirs (a
/// shared child counts in every parent, which is what a greedy extraction can afford; the pass
/// keeps the result only if its DAG cost, [`program_cost`], is lower).
pub fn tree_cost(graph: &Graph, node: &Node, children: impl Iterator<Item = f64>) -> f64 {
    let own = match node {
        Node::Param(_) => 0.0,
        Node::Op(op, args) => {
            let types: Vec<&TensorType> = args.iter().map(|&c| &graph[c].data.ty).collect();
            let ty = op.infer(&types).expect("e-graph nodes are well typed");
            node_cost(op, &types, &ty)
        }
    };
    children.fold(own, |acc, c| acc + c)
}
