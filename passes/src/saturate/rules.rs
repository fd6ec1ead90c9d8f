//! Rewrite rules, by topic. Each is named, with its formula above it. The rules for writing
//! rules are in docs/rewrite-rules.md: a rule never makes code worse on its own (extraction
//! picks the cheapest form, so growth is only a search cost), rules that are false under IEEE
//! arithmetic (x * 0 = 0, x - x = 0, exp(log x) = x, reassociation) are in [`fast_math`] and
//! only run with `--fast-math`.
//!
//! Rules over ops without attributes are egg patterns; rules that read or build attributes
//! (permutations, shapes, axes) are [`Structural`] rules written in Rust.

use super::{Facts, Graph, Node};
use egg::{rewrite as rw, Applier, Id, Rewrite, SearchMatches, Searcher, Subst, Symbol, Var};
use kiln_ir::{BinaryOp, Literal, Op, ReduceKind, TensorType, UnaryOp};

pub type Rule = Rewrite<Node, Facts>;

/// The rules for a run: the IEEE-exact ones, plus [`fast_math`] when allowed.
pub fn rules(fast_math: bool) -> Vec<Rule> {
    let mut rules = exact();
    if fast_math {
        rules.extend(self::fast_math());
    }
    rules
}

/// Whether class `id` is a splat of the float or integer value `v`.
fn is_const(graph: &Graph, id: Id, v: f64) -> bool {
    match graph[id].data.constant {
        Some(Literal::Float(_, x)) => x == v && x.is_sign_negative() == v.is_sign_negative(),
        Some(Literal::Int(_, x)) => x as f64 == v,
        _ => false,
    }
}

fn var(name: &str) -> Var {
    name.parse().expect("a pattern variable")
}

/// A condition that `?name` is the constant `v` (for floats, +0.0 is not -0.0).
fn constant_is(name: &'static str, v: f64) -> impl Fn(&mut Graph, Id, &Subst) -> bool {
    move |g, _, s| is_const(g, s[var(name)], v)
}

/// Rules that hold exactly in IEEE arithmetic (same bits, NaNs where NaNs were).
pub fn exact() -> Vec<Rule> {
    let mut rules: Vec<Rule> = vec![
        // ---- algebra ----
        // a + b = b + a
        rw!("add-comm"; "(add ?a ?b)" => "(add ?b ?a)"),
        // a * b = b * a
        rw!("mul-comm"; "(mul ?a ?b)" => "(mul ?b ?a)"),
        // x * 1 = x
        rw!("mul-one"; "(mul ?x ?one)" => "?x" if constant_is("?one", 1.0)),
        // x / 1 = x
        rw!("div-one"; "(div ?x ?one)" => "?x" if constant_is("?one", 1.0)),
        // x - (+0) = x (x + (+0) is not: -0 + 0 = +0)
        rw!("sub-zero"; "(sub ?x ?zero)" => "?x" if constant_is("?zero", 0.0)),
        // x + (-0) = x, -0 included (-0 + -0 = -0)
        rw!("add-neg-zero"; "(add ?x ?zero)" => "?x" if constant_is("?zero", -0.0)),
        // -(-x) = x
        rw!("neg-neg"; "(neg (neg ?x))" => "?x"),
        // a - b = a + (-b)
        rw!("sub-to-add-neg"; "(sub ?a ?b)" => "(add ?a (neg ?b))"),
        // x * -1 = -x
        rw!("mul-minus-one"; "(mul ?x ?m)" => "(neg ?x)" if constant_is("?m", -1.0)),
        // ---- exp, log and pow ----
        // pow(x, 1) = x
        rw!("pow-one"; "(pow ?x ?one)" => "?x" if constant_is("?one", 1.0)),
        // ---- comparisons and where ----
        // where(p, x, x) = x
        rw!("select-same"; "(select ?p ?x ?x)" => "?x"),
        // max(x, x) = x, min(x, x) = x
        rw!("max-self"; "(max ?x ?x)" => "?x"),
        rw!("min-self"; "(min ?x ?x)" => "?x"),
        // max(a, b) = max(b, a), min likewise (NaN propagates either way)
        rw!("max-comm"; "(max ?a ?b)" => "(max ?b ?a)"),
        rw!("min-comm"; "(min ?a ?b)" => "(min ?b ?a)"),
    ];
    rules.extend(structural_exact());
    rules
}

/// Rules that change results under IEEE arithmetic; `--fast-math` only.
pub fn fast_math() -> Vec<Rule> {
    let mut rules: Vec<Rule> = vec![
        // [fast-math] (a + b) + c = a + (b + c): reassociation rounds differently
        rw!("add-assoc"; "(add (add ?a ?b) ?c)" => "(add ?a (add ?b ?c))"),
        // [fast-math] (a * b) * c = a * (b * c)
        rw!("mul-assoc"; "(mul (mul ?a ?b) ?c)" => "(mul ?a (mul ?b ?c))"),
        // [fast-math] a * b + a * c = a * (b + c): distributivity rounds differently
        rw!("distribute"; "(add (mul ?a ?b) (mul ?a ?c))" => "(mul ?a (add ?b ?c))"),
        // [fast-math] x + (+0) = x: false for x = -0 (the sum is +0)
        rw!("add-zero"; "(add ?x ?zero)" => "?x" if constant_is("?zero", 0.0)),
        // [fast-math] exp(log x) = x: false for x < 0 (NaN) and x = inf rounding
        rw!("exp-log"; "(exp (log ?x))" => "?x"),
        // [fast-math] log(exp x) = x: false where exp overflows
        rw!("log-exp"; "(log (exp ?x))" => "?x"),
        // [fast-math] pow(x, 2) = x * x: x * x rounds once, a pow function need not (libm's
        // powf gives 1.78675 for -1.3366936^2, x * x 1.7867498)
        rw!("pow-two"; "(pow ?x ?two)" => "(mul ?x ?x)" if constant_is("?two", 2.0)),
        // [fast-math] exp(a) * exp(b) = exp(a + b)
        rw!("exp-mul"; "(mul (exp ?a) (exp ?b))" => "(exp (add ?a ?b))"),
        // [fast-math] (A B) C = A (B C): matrix products reassociate their sums
        rw!("dot-assoc-right"; "(dot (dot ?a ?b) ?c)" => "(dot ?a (dot ?b ?c))"),
        rw!("dot-assoc-left"; "(dot ?a (dot ?b ?c))" => "(dot (dot ?a ?b) ?c)"),
    ];
    rules.extend(structural_fast_math());
    rules
}

/// What a structural rule adds: an existing class, or a node over built children.
pub enum Build {
    Class(Id),
    Node(Op, Vec<Build>),
}

/// A rule written in Rust: `find` lists, for an e-class, expressions equal to it.
pub struct Structural {
    pub find: fn(&Graph, Id) -> Vec<Build>,
}

impl Searcher<Node, Facts> for Structural {
    fn search_eclass_with_limit(&self, egraph: &Graph, eclass: Id, limit: usize) -> Option<SearchMatches<'_, Node>> {
        (limit > 0 && !(self.find)(egraph, eclass).is_empty()).then(|| SearchMatches {
            eclass,
            substs: vec![Subst::default()],
            ast: None,
        })
    }

    fn vars(&self) -> Vec<Var> {
        vec![]
    }
}

fn add_build(egraph: &mut Graph, b: &Build) -> Id {
    match b {
        Build::Class(id) => *id,
        Build::Node(op, children) => {
            let ids = children.iter().map(|c| add_build(egraph, c)).collect();
            egraph.add(Node::Op(op.clone(), ids))
        }
    }
}

impl Applier<Node, Facts> for Structural {
    fn apply_one(
        &self,
        egraph: &mut Graph,
        eclass: Id,
        _: &Subst,
        _: Option<&egg::PatternAst<Node>>,
        _: Symbol,
    ) -> Vec<Id> {
        let mut changed = vec![];
        for b in (self.find)(egraph, eclass) {
            let id = add_build(egraph, &b);
            if egraph.union(eclass, id) {
                changed.push(eclass);
            }
        }
        changed
    }
}

fn structural(name: &str, find: fn(&Graph, Id) -> Vec<Build>) -> Rule {
    Rewrite::new(name, Structural { find }, Structural { find }).expect("a valid rule")
}

/// The nodes of class `id` with op matching `pick`, with their children.
fn nodes<'g, T>(
    g: &'g Graph,
    id: Id,
    pick: impl Fn(&'g Op) -> Option<T> + 'g,
) -> impl Iterator<Item = (T, &'g [Id])> + 'g {
    g[id].nodes.iter().filter_map(move |n| match n {
        Node::Op(op, c) => pick(op).map(|t| (t, c.as_slice())),
        Node::Param(_) => None,
    })
}

fn ty(g: &Graph, id: Id) -> &TensorType {
    &g[id].data.ty
}

fn structural_exact() -> Vec<Rule> {
    vec![
        // transpose(transpose(x, p), q) = transpose(x, p∘q), and x when that is the identity
        structural("transpose-transpose", |g, id| {
            let mut out = vec![];
            for (q, c) in nodes(g, id, |op| if let Op::Transpose { perm } = op { Some(perm) } else { None }) {
                for (p, cc) in nodes(g, c[0], |op| if let Op::Transpose { perm } = op { Some(perm) } else { None }) {
                    let r: Vec<usize> = q.iter().map(|&i| p[i]).collect();
                    let x = Build::Class(cc[0]);
                    out.push(if r.iter().enumerate().all(|(i, &j)| i == j) {
                        x
                    } else {
                        Build::Node(Op::Transpose { perm: r }, vec![x])
                    });
                }
            }
            out
        }),
        // reshape(reshape(x)) = reshape(x); reshape(x) = x when the shape is x's own
        structural("reshape-reshape", |g, id| {
            let mut out = vec![];
            for (shape, c) in nodes(g, id, |op| if let Op::Reshape { shape } = op { Some(shape) } else { None }) {
                if ty(g, c[0]).shape == *shape {
                    out.push(Build::Class(c[0]));
                }
                for (_, cc) in nodes(g, c[0], |op| matches!(op, Op::Reshape { .. }).then_some(())) {
                    out.push(Build::Node(Op::Reshape { shape: shape.clone() }, vec![Build::Class(cc[0])]));
                }
            }
            out
        }),
        // transpose(x, identity) = x; broadcast(x) = x when it adds nothing
        structural("identity-shape-op", |g, id| {
            let mut out = vec![];
            for node in &g[id].nodes {
                if let Node::Op(op @ (Op::Transpose { .. } | Op::Broadcast { .. } | Op::Slice { .. }), c) = node {
                    let same = ty(g, c[0]) == ty(g, id);
                    let trivial = match op {
                        Op::Transpose { perm } => perm.iter().enumerate().all(|(i, &j)| i == j),
                        Op::Broadcast { dims, .. } => same && dims.iter().enumerate().all(|(i, &j)| i == j),
                        Op::Slice { start, step, .. } => {
                            same && start.iter().all(|&s| s == 0) && step.iter().all(|&k| k == 1)
                        }
                        _ => false,
                    };
                    if trivial {
                        out.push(Build::Class(c[0]));
                    }
                }
            }
            out
        }),
        // max(max(x, a1), a2) = max(x, a1 ∪ a2), and min likewise: max is associative exactly
        structural("reduce-extreme-nested", |g, id| nested_reductions(g, id, &[ReduceKind::Max, ReduceKind::Min])),
        // broadcast(broadcast(x, s1, d1), s2, d2) = broadcast(x, s2, d2 ∘ d1)
        structural("broadcast-broadcast", |g, id| {
            let mut out = vec![];
            let bcast = |op: &Op| {
                if let Op::Broadcast { shape, dims } = op {
                    Some((shape.clone(), dims.clone()))
                } else {
                    None
                }
            };
            for ((shape, outer), c) in nodes(g, id, bcast) {
                for ((_, inner), cc) in nodes(g, c[0], bcast) {
                    let dims: Vec<usize> = inner.iter().map(|&i| outer[i]).collect();
                    out.push(Build::Node(Op::Broadcast { shape: shape.clone(), dims }, vec![Build::Class(cc[0])]));
                }
            }
            out
        }),
        // (A B)^T = B^T A^T over the last two axes: each element is the same products (a b = b a
        // exactly) summed over k in the same order
        structural("dot-transpose", |g, id| {
            let mut out = vec![];
            for (perm, c) in nodes(g, id, |op| if let Op::Transpose { perm } = op { Some(perm.clone()) } else { None })
            {
                if !swaps_last_two(&perm) {
                    continue;
                }
                for (_, cc) in nodes(g, c[0], |op| (*op == Op::Dot).then_some(())) {
                    let t = |x: Id| Build::Node(Op::Transpose { perm: perm.clone() }, vec![Build::Class(x)]);
                    out.push(Build::Node(Op::Dot, vec![t(cc[1]), t(cc[0])]));
                }
            }
            out
        }),
    ]
}

/// Whether `perm` swaps the last two axes and keeps the others.
fn swaps_last_two(perm: &[usize]) -> bool {
    let r = perm.len();
    r >= 2 && perm[r - 1] == r - 2 && perm[r - 2] == r - 1 && perm[..r - 2].iter().enumerate().all(|(i, &p)| i == p)
}

fn structural_fast_math() -> Vec<Rule> {
    vec![
        // [fast-math] sum(sum(x, a1), a2) = sum(x, a1 ∪ a2): the sums reassociate
        structural("reduce-sum-nested", |g, id| nested_reductions(g, id, &[ReduceKind::Sum])),
        // [fast-math] sum(broadcast(x)) over the axes the broadcast added = x · (their size): n
        // additions round differently from one multiplication
        structural("reduce-sum-broadcast", |g, id| {
            let mut out = vec![];
            for (axes, c) in nodes(g, id, |op| {
                if let Op::Reduce { kind: ReduceKind::Sum, axes } = op {
                    Some(axes.clone())
                } else {
                    None
                }
            }) {
                for ((shape, dims), cc) in nodes(g, c[0], |op| {
                    if let Op::Broadcast { shape, dims } = op {
                        Some((shape.clone(), dims.clone()))
                    } else {
                        None
                    }
                }) {
                    let added: Vec<usize> = (0..shape.len()).filter(|d| !dims.contains(d)).collect();
                    let x = ty(g, cc[0]);
                    if axes == added && x.dtype.is_float() && x.shape.iter().zip(&dims).all(|(&n, &d)| n == shape[d]) {
                        let count: usize = added.iter().map(|&a| shape[a]).product();
                        out.push(Build::Node(
                            Op::Binary(BinaryOp::Mul),
                            vec![Build::Class(cc[0]), splat(x, count as f64)],
                        ));
                    }
                }
            }
            out
        }),
        // [fast-math] x * 0 = 0: false for x = inf or NaN, and for x < 0 (gives -0)
        structural("mul-zero", |g, id| {
            let zero_operand = nodes(g, id, |op| (*op == Op::Binary(BinaryOp::Mul)).then_some(()))
                .any(|(_, c)| is_const(g, c[0], 0.0) || is_const(g, c[1], 0.0));
            if zero_operand {
                vec![zeros(ty(g, id))]
            } else {
                vec![]
            }
        }),
        // [fast-math] x - x = 0: false for x = inf or NaN
        structural("sub-self", |g, id| {
            let same = nodes(g, id, |op| (*op == Op::Binary(BinaryOp::Sub)).then_some(()))
                .any(|(_, c)| g.find(c[0]) == g.find(c[1]));
            if same && ty(g, id).dtype.is_float() {
                vec![zeros(ty(g, id))]
            } else {
                vec![]
            }
        }),
        // [fast-math] x / x = 1: false for x = 0, inf or NaN
        structural("div-self", |g, id| {
            let same = nodes(g, id, |op| (*op == Op::Binary(BinaryOp::Div)).then_some(()))
                .any(|(_, c)| g.find(c[0]) == g.find(c[1]));
            if same {
                vec![splat(ty(g, id), 1.0)]
            } else {
                vec![]
            }
        }),
        // [fast-math] sqrt(x) * sqrt(x) = x: false for x < 0 and rounds differently
        structural("sqrt-square", |g, id| {
            let mut out = vec![];
            for (_, c) in nodes(g, id, |op| (*op == Op::Binary(BinaryOp::Mul)).then_some(())) {
                if g.find(c[0]) == g.find(c[1]) {
                    for (_, cc) in nodes(g, c[0], |op| (*op == Op::Unary(UnaryOp::Sqrt)).then_some(())) {
                        out.push(Build::Class(cc[0]));
                    }
                }
            }
            out
        }),
    ]
}

/// reduce(reduce(x, inner), outer) with one kind of `kinds` = reduce(x, inner ∪ outer), the
/// outer axes mapped back to x's axes.
fn nested_reductions(g: &Graph, id: Id, kinds: &[ReduceKind]) -> Vec<Build> {
    let mut out = vec![];
    let reduce = |op: &Op| {
        if let Op::Reduce { kind, axes } = op {
            kinds.contains(kind).then(|| (*kind, axes.clone()))
        } else {
            None
        }
    };
    for ((kind, outer), c) in nodes(g, id, reduce) {
        for ((inner_kind, inner), cc) in nodes(g, c[0], reduce) {
            if inner_kind != kind {
                continue;
            }
            let kept: Vec<usize> = (0..ty(g, cc[0]).rank()).filter(|a| !inner.contains(a)).collect();
            let mut axes: Vec<usize> = inner.clone();
            axes.extend(outer.iter().map(|&o| kept[o]));
            axes.sort_unstable();
            out.push(Build::Node(Op::Reduce { kind, axes }, vec![Build::Class(cc[0])]));
        }
    }
    out
}

/// A splat of `v` with `ty`'s type.
fn splat(ty: &TensorType, v: f64) -> Build {
    let c = Build::Node(Op::Const(Literal::of_f64(ty.dtype, v)), vec![]);
    if ty.shape.is_empty() {
        c
    } else {
        Build::Node(Op::Broadcast { shape: ty.shape.clone(), dims: vec![] }, vec![c])
    }
}

fn zeros(ty: &TensorType) -> Build {
    splat(ty, 0.0)
}
