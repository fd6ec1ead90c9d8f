//! Equality saturation with egg: a function becomes an e-graph over kiln's op table, rewrite
//! rules ([`rules`]) grow it within bounds, and the cheapest equivalent program by a
//! shape-aware cost model ([`cost`]) is extracted back into IR.
//!
//! The e-graph's language is generated from the op table: a node is an [`Op`] (attributes
//! included) over child e-classes, or a parameter. The analysis gives every e-class its tensor
//! type (from [`Op::infer`]), its constant value when known (folded with the interpreter, so
//! folding is exact) and a source span, so rewritten code still points at the user's line.

pub mod cost;
pub mod rules;

use egg::{Analysis, DidMerge, EGraph, Id, Language, Runner, StopReason};
use kiln_ir::interp::{eval, Data, Tensor};
use kiln_ir::ops::Bodies;
use kiln_ir::{Func, Literal, Module, Op, Span, TensorType, Value};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// A node of the e-graph: an op over child e-classes, or parameter `i` of the function.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Node {
    Param(u32),
    Op(Op, Vec<Id>),
}

impl Language for Node {
    type Discriminant = (Option<Op>, u32, usize);

    fn discriminant(&self) -> Self::Discriminant {
        match self {
            Node::Param(i) => (None, *i, 0),
            Node::Op(op, c) => (Some(op.clone()), 0, c.len()),
        }
    }

    fn matches(&self, other: &Self) -> bool {
        self.discriminant() == other.discriminant()
    }

    fn children(&self) -> &[Id] {
        match self {
            Node::Param(_) => &[],
            Node::Op(_, c) => c,
        }
    }

    fn children_mut(&mut self) -> &mut [Id] {
        match self {
            Node::Param(_) => &mut [],
            Node::Op(_, c) => c,
        }
    }
}

impl std::fmt::Display for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Node::Param(i) => write!(f, "param{i}"),
            Node::Op(op, _) => f.write_str(op.name()),
        }
    }
}

/// Reads op names in rule patterns: ops without attributes only (rules about attributes are
/// written as Rust appliers).
impl egg::FromOp for Node {
    type Error = String;

    fn from_op(op: &str, children: Vec<Id>) -> Result<Self, Self::Error> {
        let plain = Op::catalog().into_iter().find(|o| o.name() == op && !has_attributes(o));
        match plain {
            Some(o) => Ok(Node::Op(o, children)),
            None => Err(format!("`{op}` is not an attribute-free op")),
        }
    }
}

fn has_attributes(op: &Op) -> bool {
    !matches!(op, Op::Unary(_) | Op::Binary(_) | Op::Select | Op::Dot)
}

/// What the analysis knows about an e-class.
#[derive(Clone, Debug)]
pub struct Meta {
    pub ty: TensorType,
    /// The value of every element, when all are equal and known at compile time.
    pub constant: Option<Literal>,
    /// The source span of the first node that entered the class.
    pub span: Span,
}

/// The analysis: types, constants and spans. `params` are the function's parameter types.
#[derive(Clone, Debug, Default)]
pub struct Facts {
    pub params: Vec<TensorType>,
    /// The span a node is created with (set while converting IR into the e-graph).
    pub next_span: Span,
}

pub type Graph = EGraph<Node, Facts>;

/// The splat value of an elementwise op over splat constants, computed by the interpreter on
/// one element.
fn fold(op: &Op, consts: &[Literal], ty: &TensorType) -> Option<Literal> {
    if !matches!(op, Op::Unary(_) | Op::Binary(_) | Op::Select | Op::Convert { .. } | Op::Bitcast { .. }) {
        return None;
    }
    let args: Vec<Tensor> = consts.iter().map(|&l| Tensor::new(vec![], Data::splat(l, 1))).collect();
    let refs: Vec<&Tensor> = args.iter().collect();
    let r = eval(op, &refs, &TensorType::scalar(ty.dtype));
    Some(r.data.literal(0))
}

impl Analysis<Node> for Facts {
    type Data = Meta;

    fn make(egraph: &mut Graph, node: &Node, _id: Id) -> Meta {
        let span = egraph.analysis.next_span;
        match node {
            Node::Param(i) => Meta { ty: egraph.analysis.params[*i as usize].clone(), constant: None, span },
            Node::Op(op, children) => {
                let types: Vec<&TensorType> = children.iter().map(|c| &egraph[*c].data.ty).collect();
                let ty =
                    op.infer(&types).unwrap_or_else(|e| panic!("a rewrite built an ill-typed node {}: {e}", op.name()));
                let consts: Option<Vec<Literal>> = children.iter().map(|c| egraph[*c].data.constant).collect();
                let constant = match op {
                    Op::Const(l) => Some(*l),
                    // Broadcasting and reshaping a splat keep it a splat.
                    Op::Broadcast { .. } | Op::Reshape { .. } | Op::Transpose { .. } => {
                        consts.and_then(|c| c.first().copied())
                    }
                    _ => consts.and_then(|c| fold(op, &c, &ty)),
                };
                Meta { ty, constant, span }
            }
        }
    }

    fn merge(&mut self, a: &mut Meta, b: Meta) -> DidMerge {
        assert_eq!(a.ty, b.ty, "merged e-classes of different types");
        let mut changed = DidMerge(false, false);
        if a.constant.is_none() && b.constant.is_some() {
            a.constant = b.constant;
            changed.0 = true;
        }
        changed
    }

    /// A class with a known splat value also contains that constant.
    fn modify(egraph: &mut Graph, id: Id) {
        let Some(lit) = egraph[id].data.constant else { return };
        let ty = egraph[id].data.ty.clone();
        let c = egraph.add(Node::Op(Op::Const(lit), vec![]));
        let v = if ty.shape.is_empty() {
            c
        } else {
            egraph.add(Node::Op(Op::Broadcast { shape: ty.shape.clone(), dims: vec![] }, vec![c]))
        };
        egraph.union(id, v);
    }
}

/// Limits of one saturation, and whether IEEE-unsafe rules may fire.
#[derive(Clone, Debug)]
pub struct Options {
    pub node_limit: usize,
    pub iter_limit: usize,
    pub time_limit: Duration,
    pub fast_math: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options { node_limit: 20_000, iter_limit: 30, time_limit: Duration::from_secs(5), fast_math: false }
    }
}

/// What a saturation did, for `--time-passes` and stats.
#[derive(Clone, Debug)]
pub struct Report {
    pub function: String,
    pub stop: String,
    /// Whether the time limit stopped it: then its result depends on the machine's speed.
    pub timed_out: bool,
    pub iterations: usize,
    pub nodes: usize,
    pub classes: usize,
    pub cost_before: f64,
    pub cost_after: f64,
    /// Instructions and FLOPs before and after.
    pub instructions: (usize, usize),
    pub flops: (u64, u64),
}

/// Optimizes every function of `module`, the bodies of its loops and conditionals first
/// (each distinct body once), returning one report per function.
pub fn saturate_module(module: &mut Module, options: &Options) -> Vec<Report> {
    let mut done = BTreeMap::new();
    module
        .funcs
        .iter_mut()
        .map(|f| {
            saturate_bodies(f, options, &mut done);
            saturate(f, options)
        })
        .collect()
}

/// Saturates the bodies of the loops and conditionals of `f`, innermost first; `done` holds
/// the bodies already saturated, so the instructions of one loop (one per result) keep equal
/// bodies and each body is saturated once.
fn saturate_bodies(f: &mut Func, options: &Options, done: &mut BTreeMap<Bodies, Bodies>) {
    for inst in &mut f.insts {
        let Some((bodies, result)) = inst.op.structure() else { continue };
        let saturated = match done.get(bodies) {
            Some(b) => b.clone(),
            None => {
                let b = bodies
                    .map(|g| {
                        let mut g = g.clone();
                        saturate_bodies(&mut g, options, done);
                        saturate(&mut g, options);
                        Ok::<_, ()>(g)
                    })
                    .expect("infallible");
                done.insert(bodies.clone(), b.clone());
                b
            }
        };
        inst.op = inst.op.restructured(saturated, result);
    }
}

/// Optimizes one function in place.
pub fn saturate(f: &mut Func, options: &Options) -> Report {
    let mut graph = Graph::new(Facts { params: f.params.iter().map(|p| p.ty.clone()).collect(), next_span: f.span });
    let mut ids: Vec<Id> = vec![];
    for (i, p) in f.params.iter().enumerate() {
        graph.analysis.next_span = p.span;
        ids.push(graph.add(Node::Param(i as u32)));
    }
    for inst in &f.insts {
        graph.analysis.next_span = inst.span;
        let children = inst.args.iter().map(|a| ids[a.index()]).collect();
        ids.push(graph.add(Node::Op(inst.op.clone(), children)));
    }
    graph.rebuild();
    let roots: Vec<Id> = f.results.iter().map(|r| ids[r.index()]).collect();
    let cost_before = cost::program_cost(f);
    let before = crate::stats::func_stats(f);
    let runner = Runner::default()
        .with_egraph(graph)
        .with_node_limit(options.node_limit)
        .with_iter_limit(options.iter_limit)
        .with_time_limit(options.time_limit)
        .run(&rules::rules(options.fast_math));
    let stop = match &runner.stop_reason {
        Some(StopReason::Saturated) => "saturated".to_string(),
        Some(StopReason::IterationLimit(n)) => format!("iteration limit ({n})"),
        Some(StopReason::NodeLimit(n)) => format!("node limit ({n})"),
        Some(StopReason::TimeLimit(t)) => format!("time limit ({t:.2} s)"),
        Some(StopReason::Other(s)) => s.clone(),
        None => "not run".to_string(),
    };
    let graph = &runner.egraph;
    let extracted = extract(graph, &roots);
    let mut g = rebuild(f, graph, &extracted, &roots);
    // Keep the program unchanged unless the extracted one is cheaper.
    let cost_after = cost::program_cost(&g);
    if cost_after < cost_before {
        g.name = f.name.clone();
        *f = g;
    }
    let after = crate::stats::func_stats(f);
    Report {
        function: f.name.clone(),
        stop,
        timed_out: matches!(runner.stop_reason, Some(StopReason::TimeLimit(_))),
        iterations: runner.iterations.len(),
        nodes: graph.total_number_of_nodes(),
        classes: graph.number_of_classes(),
        cost_before,
        cost_after: cost_after.min(cost_before),
        instructions: (before.instructions, after.instructions),
        flops: (before.flops, after.flops),
    }
}

/// The chosen node of every e-class reachable from `roots`: the node of least tree cost
/// ([`cost::tree_cost`]: its own cost plus its children's, a shared child counted in every
/// parent), found in one pass in order of increasing cost (Knuth's generalization of
/// Dijkstra's algorithm, valid because a node costs at least as much as each child). egg's
/// extractor repeats passes over every class until nothing changes, which takes as many passes
/// as the graph is deep: quadratic on a long chain of lets. Ties go to the lower class id and
/// node index, so the choice is deterministic.
fn extract(graph: &Graph, roots: &[Id]) -> HashMap<Id, Node> {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    let mut classes: Vec<Id> = graph.classes().map(|c| c.id).collect();
    classes.sort();
    // For each class, the (class, node index) of every node that has it as a child, once per
    // occurrence; for each node, how many of its child occurrences have no cost yet.
    let mut parents: HashMap<Id, Vec<(Id, usize)>> = HashMap::new();
    let mut pending: HashMap<(Id, usize), usize> = HashMap::new();
    let mut ready = BinaryHeap::new();
    let candidate = |class: Id, k: usize, done: &HashMap<Id, (f64, usize)>| {
        let node = &graph[class].nodes[k];
        let children = node.children().iter().map(|&c| done[&graph.find(c)].0);
        let cost = cost::tree_cost(graph, node, children);
        Reverse((Cost(cost), class, k))
    };
    let mut done: HashMap<Id, (f64, usize)> = HashMap::new();
    for &class in &classes {
        for (k, node) in graph[class].nodes.iter().enumerate() {
            for &c in node.children() {
                parents.entry(graph.find(c)).or_default().push((class, k));
            }
            if node.children().is_empty() {
                ready.push(candidate(class, k, &done));
            } else {
                pending.insert((class, k), node.children().len());
            }
        }
    }
    while let Some(Reverse((Cost(cost), class, k))) = ready.pop() {
        if done.contains_key(&class) {
            continue;
        }
        done.insert(class, (cost, k));
        for &(parent, j) in parents.get(&class).map_or(&[][..], Vec::as_slice) {
            let left = pending.get_mut(&(parent, j)).expect("a parent node waits for its children");
            *left -= 1;
            if *left == 0 && !done.contains_key(&parent) {
                ready.push(candidate(parent, j, &done));
            }
        }
    }
    let mut chosen = HashMap::new();
    let mut stack: Vec<Id> = roots.iter().map(|&r| graph.find(r)).collect();
    while let Some(id) = stack.pop() {
        if chosen.contains_key(&id) {
            continue;
        }
        let node = graph[id].nodes[done[&id].1].clone();
        stack.extend(node.children().iter().map(|&c| graph.find(c)));
        chosen.insert(id, node);
    }
    chosen
}

/// A cost ordered totally (costs are never NaN; infinity orders last).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Cost(f64);

impl Eq for Cost {}

impl PartialOrd for Cost {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Cost {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// Builds the extracted program as a function with `f`'s signature: every chosen class once,
/// in dependency order, with the span of its e-class.
fn rebuild(f: &Func, graph: &Graph, chosen: &HashMap<Id, Node>, roots: &[Id]) -> Func {
    let mut g = Func::new(f.name.clone(), f.span);
    for p in &f.params {
        g.add_param(p.name.clone(), p.ty.clone(), p.span);
    }
    let mut values: HashMap<Id, Value> = HashMap::new();
    fn emit(id: Id, graph: &Graph, chosen: &HashMap<Id, Node>, g: &mut Func, values: &mut HashMap<Id, Value>) -> Value {
        let id = graph.find(id);
        if let Some(&v) = values.get(&id) {
            return v;
        }
        let v = match &chosen[&id] {
            Node::Param(i) => Value(*i),
            Node::Op(op, children) => {
                let args: Vec<Value> = children.iter().map(|&c| emit(c, graph, chosen, g, values)).collect();
                g.push(op.clone(), args, graph[id].data.span).expect("extracted programs are well typed")
            }
        };
        values.insert(id, v);
        v
    }
    for &r in roots {
        let v = emit(r, graph, chosen, &mut g, &mut values);
        g.results.push(v);
    }
    g.result_names = f.result_names.clone();
    g
}
