//! The abstract syntax tree of a kiln source file. Every node carries its span.

use kiln_ir::Span;

#[derive(Clone, Debug)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

/// A dimension in a type: a number or a shape variable.
#[derive(Clone, Debug)]
pub enum Dim {
    Known(usize, Span),
    Var(Ident),
}

#[derive(Clone, Debug)]
pub struct TypeExpr {
    pub dtype: Ident,
    pub dims: Vec<Dim>,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub struct Param {
    pub name: Ident,
    pub ty: TypeExpr,
}

#[derive(Clone, Debug)]
pub struct FnDef {
    pub name: Ident,
    pub params: Vec<Param>,
    /// The declared result types: one for a tensor, several for a tuple; None when omitted.
    pub ret: Option<Vec<TypeExpr>>,
    pub body: Block,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub struct Export {
    /// The exported expression: a function name (or, later, a transformation of one).
    pub target: Expr,
    pub alias: Option<Ident>,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub enum Item {
    Fn(FnDef),
    Export(Export),
}

#[derive(Clone, Debug)]
pub enum Pattern {
    Name(Ident),
    Ignore(Span),
    Tuple(Vec<Pattern>, Span),
}

impl Pattern {
    /// The names it binds.
    pub fn names(&self) -> Vec<&str> {
        match self {
            Pattern::Name(i) => vec![&i.name],
            Pattern::Ignore(_) => vec![],
            Pattern::Tuple(items, _) => items.iter().flat_map(Pattern::names).collect(),
        }
    }

    pub fn span(&self) -> Span {
        match self {
            Pattern::Name(i) => i.span,
            Pattern::Ignore(s) | Pattern::Tuple(_, s) => *s,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Let {
    pub pattern: Pattern,
    pub ty: Option<TypeExpr>,
    pub value: Expr,
}

#[derive(Clone, Debug)]
pub struct Block {
    pub lets: Vec<Let>,
    pub result: Box<Expr>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    /// `%`: numpy's remainder, with the divisor's sign.
    Rem,
    Pow,
    MatMul,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl BinOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Rem => "%",
            BinOp::Pow => "**",
            BinOp::MatMul => "@",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Arg {
    /// The keyword, for `name = value` arguments.
    pub keyword: Option<Ident>,
    pub value: Expr,
}

/// One item of an index expression `x[...]`.
#[derive(Clone, Debug)]
pub enum IndexItem {
    /// `i`: picks one element and drops the axis.
    At(Expr),
    /// `start:stop:step`, each part optional.
    Range { start: Option<Expr>, stop: Option<Expr>, step: Option<Expr>, span: Span },
    /// `None`: a new axis of length 1 here (numpy's newaxis).
    NewAxis(Span),
    /// `...`: as many whole axes as the other items leave.
    Ellipsis(Span),
}

#[derive(Clone, Debug)]
pub enum ExprKind {
    Int(u64),
    Float(f64),
    Bool(bool),
    Name(String),
    Call {
        callee: Ident,
        args: Vec<Arg>,
    },
    /// A call of a computed function: `grad(f, wrt=[w])(x, w)`.
    Apply {
        func: Box<Expr>,
        args: Vec<Arg>,
    },
    Binary {
        op: BinOp,
        op_span: Span,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
    },
    Neg(Box<Expr>),
    Index {
        base: Box<Expr>,
        items: Vec<IndexItem>,
    },
    /// `x.at[items].method(args)`: JAX's indexed update (`set`, `add`, ...) or read (`get`)
    /// of the elements `x[items]` names.
    At {
        base: Box<Expr>,
        items: Vec<IndexItem>,
        method: Ident,
        args: Vec<Arg>,
    },
    /// `"text"`: names an option, such as `mode="clip"`; not a value.
    Str(String),
    Tuple(Vec<Expr>),
    List(Vec<Expr>),
    Block(Block),
    Loop(Box<LoopExpr>),
    /// `if cond { ... } else { ... }`; `otherwise` is a block or another `if`.
    If {
        cond: Box<Expr>,
        then: Block,
        otherwise: Box<Expr>,
    },
}

/// `loop (a, b) = (a0, b0) for i < n { ... }`, `... for x in xs { ... }` or `... while cond
/// { ... }`: the block run from the initial values, each run's value the next values of the
/// pattern's names (as Futhark's `loop`). `scan c = c0 for x in xs { ... }`: the same over
/// rows, each run's value a pair (next carries, y), the loop's the last carries and the ys
/// stacked (lax.scan).
#[derive(Clone, Debug)]
pub struct LoopExpr {
    /// `scan`, not `loop`: the body also gives a y per row.
    pub scan: bool,
    pub pattern: Pattern,
    pub init: Expr,
    pub control: LoopControl,
    pub body: Block,
}

/// How many times a loop runs.
#[derive(Clone, Debug)]
pub enum LoopControl {
    /// `for i < n`: n times, i counting from 0. `for i < n checkpoint`: reverse mode saves only
    /// the carries entering each run and recomputes the rest.
    For { index: Ident, count: Expr, checkpoint: bool },
    /// `for x in xs` (`for x in rev xs`): once per row of xs (an array, or a tuple of arrays of
    /// one length), first to last (last to first). `for x in xs checkpoint`: reverse mode
    /// saves only the carries entering each row and recomputes the rest.
    Over { row: Pattern, xs: Expr, reverse: bool, checkpoint: bool },
    /// `while cond`: while the condition, read before each run, holds; `while cond max_iter n`:
    /// at most n runs.
    While(Expr, Option<Expr>),
}

#[derive(Clone, Debug)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

#[derive(Clone, Debug, Default)]
pub struct SourceFile {
    pub items: Vec<Item>,
}
