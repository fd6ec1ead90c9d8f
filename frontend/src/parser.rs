//! The parser: tokens to [`SourceFile`], by recursive descent with precedence climbing.
//!
//! Precedence, loosest first: comparisons (non-associative), `+ -`, `* / @`, unary `-`,
//! `**` (right-associative, so `-x**2` is `-(x**2)` as in Python), then calls and indexing.

use crate::ast::*;
use crate::lexer::{lex, Tok, Token};
use kiln_ir::{Diagnostic, Span};

/// Comparison operators, longest first so that `<=` wins over `<`.
const COMPARISONS: &[(&str, BinOp)] =
    &[("==", BinOp::Eq), ("!=", BinOp::Ne), ("<=", BinOp::Le), (">=", BinOp::Ge), ("<", BinOp::Lt), (">", BinOp::Gt)];

/// Nesting deeper than this is refused with a diagnostic rather than overflowing the stack.
const MAX_DEPTH: usize = 256;

/// Parses a whole file, or returns its syntax errors: after an error the parser skips to the
/// next item (`fn` or `export` first on its line, or after a `}` or `;`) and goes on, so one run reports an error in
/// each broken item, up to [`crate::MAX_ERRORS`].
pub fn parse(src: &str) -> Result<SourceFile, Vec<Diagnostic>> {
    let tokens = lex(src).map_err(|d| vec![d])?;
    let mut p = Parser { tokens, pos: 0, depth: 0 };
    let mut file = SourceFile::default();
    let mut errors = vec![];
    while p.peek() != &Tok::Eof && errors.len() < crate::MAX_ERRORS {
        let start = p.pos;
        match p.item() {
            Ok(item) => file.items.push(item),
            Err(e) => {
                errors.push(e);
                p.depth = 0;
                if p.pos == start {
                    p.bump();
                }
                p.skip_to_item(src);
            }
        }
    }
    if errors.is_empty() {
        Ok(file)
    } else {
        Err(errors)
    }
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    depth: usize,
}

type PResult<T> = Result<T, Diagnostic>;

impl Parser {
    fn peek(&self) -> &Tok {
        &self.tokens[self.pos].tok
    }

    /// The token `n` ahead of the current one (the end-of-file token past the end).
    fn peek_ahead(&self, n: usize) -> &Tok {
        &self.tokens[(self.pos + n).min(self.tokens.len() - 1)].tok
    }

    fn span(&self) -> Span {
        self.tokens[self.pos].span
    }

    fn prev_span(&self) -> Span {
        self.tokens[self.pos.saturating_sub(1)].span
    }

    fn bump(&mut self) -> Token {
        let t = self.tokens[self.pos].clone();
        if self.pos + 1 < self.tokens.len() {
            self.pos += 1;
        }
        t
    }

    /// Moves to the start of the next item: `fn` or `export` first on its line or right after
    /// a `}` or `;`, or the end of the file.
    fn skip_to_item(&mut self, src: &str) {
        while self.peek() != &Tok::Eof {
            let start = self.span().start as usize;
            let line_start = src[..start].trim_end_matches([' ', '\t']).ends_with('\n') || start == 0;
            let after_item = self.pos > 0 && matches!(self.tokens[self.pos - 1].tok, Tok::Punct("}" | ";"));
            if (line_start || after_item) && (self.is_keyword("fn") || self.is_keyword("export")) {
                return;
            }
            self.bump();
        }
    }

    fn is(&self, p: &str) -> bool {
        matches!(self.peek(), Tok::Punct(q) if *q == p)
    }

    fn is_keyword(&self, k: &str) -> bool {
        matches!(self.peek(), Tok::Ident(s) if s == k)
    }

    fn eat(&mut self, p: &str) -> bool {
        let found = self.is(p);
        if found {
            self.bump();
        }
        found
    }

    /// Consumes the contextual keyword `k` if it is next.
    fn eat_keyword(&mut self, k: &str) -> bool {
        let found = self.is_keyword(k);
        if found {
            self.bump();
        }
        found
    }

    fn unexpected(&self, expected: &str) -> Diagnostic {
        let found = self.peek().describe();
        Diagnostic::error("E0003", format!("expected {expected}, found {found}"))
            .at(self.span(), format!("expected {expected}"))
    }

    fn expect(&mut self, p: &str) -> PResult<Span> {
        if self.is(p) {
            Ok(self.bump().span)
        } else {
            Err(self.unexpected(&format!("`{p}`")))
        }
    }

    fn ident(&mut self, what: &str) -> PResult<Ident> {
        match self.peek().clone() {
            Tok::Ident(name) if !is_reserved(&name) => Ok(Ident { name, span: self.bump().span }),
            _ => Err(self.unexpected(what)),
        }
    }

    fn enter(&mut self) -> PResult<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(Diagnostic::error("E0004", "expression is nested too deeply")
                .at(self.span(), format!("more than {MAX_DEPTH} levels of nesting"))
                .help("split the expression with `let` bindings"));
        }
        Ok(())
    }

    /// A comma-separated list up to `close`, each element read by `f`.
    fn comma_list<T>(&mut self, close: &str, mut f: impl FnMut(&mut Self) -> PResult<T>) -> PResult<Vec<T>> {
        let mut items = vec![];
        while !self.eat(close) {
            items.push(f(self)?);
            if !self.eat(",") {
                self.expect(close)?;
                break;
            }
        }
        Ok(items)
    }

    fn item(&mut self) -> PResult<Item> {
        let start = self.span();
        if self.is_keyword("fn") {
            self.bump();
            let name = self.ident("a function name")?;
            self.expect("(")?;
            let params = self.comma_list(")", |p| {
                let name = p.ident("a parameter name")?;
                p.expect(":")?;
                Ok(Param { name, ty: p.ty()? })
            })?;
            let ret = if self.eat("->") {
                if self.eat("(") {
                    Some(self.comma_list(")", Self::ty)?)
                } else {
                    Some(vec![self.ty()?])
                }
            } else {
                None
            };
            let body = self.block()?;
            Ok(Item::Fn(FnDef { name, params, ret, body, span: start.to(self.prev_span()) }))
        } else if self.is_keyword("export") {
            self.bump();
            let target = self.expr()?;
            let alias = if self.eat_keyword("as") { Some(self.ident("an export name")?) } else { None };
            self.expect(";")?;
            Ok(Item::Export(Export { target, alias, span: start.to(self.prev_span()) }))
        } else {
            Err(self.unexpected("`fn` or `export`"))
        }
    }

    fn ty(&mut self) -> PResult<TypeExpr> {
        let dtype = self.ident("a type such as `f32[2, 3]`")?;
        let mut dims = vec![];
        if self.eat("[") {
            dims = self.comma_list("]", |p| match p.peek().clone() {
                Tok::Int(v) => {
                    let span = p.bump().span;
                    Ok(Dim::Known(usize::try_from(v).unwrap_or(usize::MAX), span))
                }
                Tok::Ident(_) => Ok(Dim::Var(p.ident("a dimension")?)),
                _ => Err(p.unexpected("a dimension (a number or a shape variable)")),
            })?;
        }
        Ok(TypeExpr { span: dtype.span.to(self.prev_span()), dtype, dims })
    }

    fn block(&mut self) -> PResult<Block> {
        self.expect("{")?;
        self.enter()?;
        let mut lets = vec![];
        while self.is_keyword("let") {
            self.bump();
            let pattern = self.pattern()?;
            let ty = if self.eat(":") { Some(self.ty()?) } else { None };
            self.expect("=")?;
            let value = self.expr()?;
            self.expect(";")?;
            lets.push(Let { pattern, ty, value });
        }
        let result = Box::new(self.expr()?);
        self.expect("}")?;
        self.depth -= 1;
        Ok(Block { lets, result })
    }

    fn pattern(&mut self) -> PResult<Pattern> {
        self.enter()?;
        let start = self.span();
        let pattern = if self.eat("(") {
            let items = self.comma_list(")", Self::pattern)?;
            Pattern::Tuple(items, start.to(self.prev_span()))
        } else if self.is_keyword("_") {
            Pattern::Ignore(self.bump().span)
        } else {
            Pattern::Name(self.ident("a name or `(`")?)
        };
        self.depth -= 1;
        Ok(pattern)
    }

    fn expr(&mut self) -> PResult<Expr> {
        self.enter()?;
        let lhs = self.binary(0)?;
        let e = if let Some(op) = self.binop(COMPARISONS) {
            let rhs = self.binary(0)?;
            if self.binop(COMPARISONS).is_some() {
                return Err(Diagnostic::error("E0003", "comparisons cannot be chained")
                    .at(self.prev_span(), "second comparison")
                    .help("use parentheses to say which comparison comes first"));
            }
            mk_binary(op, lhs, rhs)
        } else {
            lhs
        };
        self.depth -= 1;
        Ok(e)
    }

    fn binop(&mut self, table: &[(&str, BinOp)]) -> Option<(BinOp, Span)> {
        let (_, op) = table.iter().find(|(p, _)| self.is(p))?;
        Some((*op, self.bump().span))
    }

    /// Left-associative levels: 0 is `+ -`, 1 is `* / @`, then unary.
    fn binary(&mut self, level: usize) -> PResult<Expr> {
        const LEVELS: [&[(&str, BinOp)]; 2] = [
            &[("+", BinOp::Add), ("-", BinOp::Sub)],
            &[("*", BinOp::Mul), ("/", BinOp::Div), ("%", BinOp::Rem), ("@", BinOp::MatMul)],
        ];
        if level == LEVELS.len() {
            return self.unary();
        }
        // A chain `a + b + c` builds a left-deep tree: each operand is a level of nesting for
        // the stages that walk it recursively.
        let depth = self.depth;
        let mut lhs = self.binary(level + 1)?;
        while let Some(op) = self.binop(LEVELS[level]) {
            self.enter()?;
            let rhs = self.binary(level + 1)?;
            lhs = mk_binary(op, lhs, rhs);
        }
        self.depth = depth;
        Ok(lhs)
    }

    fn unary(&mut self) -> PResult<Expr> {
        if self.is("-") {
            let start = self.bump().span;
            self.enter()?;
            let inner = self.unary()?;
            self.depth -= 1;
            return Ok(Expr { span: start.to(inner.span), kind: ExprKind::Neg(Box::new(inner)) });
        }
        let base = self.postfix()?;
        if let Some(op) = self.binop(&[("**", BinOp::Pow)]) {
            self.enter()?;
            let exponent = self.unary()?;
            self.depth -= 1;
            return Ok(mk_binary(op, base, exponent));
        }
        Ok(base)
    }

    fn postfix(&mut self) -> PResult<Expr> {
        let depth = self.depth;
        let mut e = self.primary()?;
        while self.is("[") || self.is("(") || self.is(".") {
            self.enter()?;
            let start = e.span;
            let base = Box::new(e);
            let kind = if self.eat("[") {
                ExprKind::Index { base, items: self.comma_list("]", Self::index_item)? }
            } else if self.eat(".") {
                self.indexed_update(base)?
            } else {
                self.bump();
                ExprKind::Apply { func: base, args: self.comma_list(")", Self::arg)? }
            };
            e = Expr { span: start.to(self.prev_span()), kind };
        }
        self.depth = depth;
        Ok(e)
    }

    /// After `x.`: `at[items].method(args)`, the only attribute arrays have.
    fn indexed_update(&mut self, base: Box<Expr>) -> PResult<ExprKind> {
        if !matches!(self.peek(), Tok::Ident(n) if n == "at") {
            return Err(self.unexpected("`at` (as in `x.at[i].set(v)`)"));
        }
        self.bump();
        self.expect("[")?;
        let items = self.comma_list("]", Self::index_item)?;
        self.expect(".")?;
        let method = self.ident("an update method such as `set` or `add`")?;
        self.expect("(")?;
        let args = self.comma_list(")", Self::arg)?;
        Ok(ExprKind::At { base, items, method, args })
    }

    /// A call argument: `value` or `keyword = value`.
    fn arg(&mut self) -> PResult<Arg> {
        let keyword = match (self.peek(), self.peek_ahead(1)) {
            (Tok::Ident(_), Tok::Punct("=")) => {
                let k = self.ident("a keyword")?;
                self.bump();
                Some(k)
            }
            _ => None,
        };
        Ok(Arg { keyword, value: self.expr()? })
    }

    fn index_item(&mut self) -> PResult<IndexItem> {
        let start_span = self.span();
        if self.eat("...") {
            return Ok(IndexItem::Ellipsis(start_span));
        }
        let ends_item = matches!(self.peek_ahead(1), Tok::Punct("," | "]"));
        if matches!(self.peek(), Tok::Ident(n) if n == "None") && ends_item {
            self.bump();
            return Ok(IndexItem::NewAxis(start_span));
        }
        let part = |p: &mut Self| -> PResult<Option<Expr>> {
            if p.is(":") || p.is(",") || p.is("]") {
                Ok(None)
            } else {
                Ok(Some(p.expr()?))
            }
        };
        let start = part(self)?;
        if !self.eat(":") {
            return match start {
                Some(e) => Ok(IndexItem::At(e)),
                None => Err(self.unexpected("an index or a slice")),
            };
        }
        let stop = part(self)?;
        let step = if self.eat(":") { part(self)? } else { None };
        Ok(IndexItem::Range { start, stop, step, span: start_span.to(self.prev_span()) })
    }

    fn primary(&mut self) -> PResult<Expr> {
        let start = self.span();
        let kind = match self.peek().clone() {
            Tok::Int(v) => {
                self.bump();
                ExprKind::Int(v)
            }
            Tok::Float(v) => {
                self.bump();
                ExprKind::Float(v)
            }
            Tok::Str(v) => {
                self.bump();
                ExprKind::Str(v)
            }
            Tok::Ident(name) if name == "if" => return self.conditional(),
            Tok::Ident(name) if name == "loop" || name == "scan" => return self.counted_loop(),
            Tok::Ident(name) if name == "true" || name == "false" => {
                self.bump();
                ExprKind::Bool(name == "true")
            }
            Tok::Ident(_) => {
                let id = self.ident("an expression")?;
                if self.eat("(") {
                    let args = self.comma_list(")", Self::arg)?;
                    ExprKind::Call { callee: id, args }
                } else {
                    ExprKind::Name(id.name)
                }
            }
            Tok::Punct("(") => {
                self.bump();
                let mut items = self.comma_list(")", Self::expr)?;
                // `(x,)` is a one-element tuple, `(x)` a parenthesized expression.
                let trailing_comma = self.pos >= 2 && self.tokens[self.pos - 2].tok == Tok::Punct(",");
                if items.len() == 1 && !trailing_comma {
                    let mut e = items.pop().unwrap();
                    e.span = start.to(self.prev_span());
                    return Ok(e);
                }
                ExprKind::Tuple(items)
            }
            Tok::Punct("[") => {
                self.bump();
                ExprKind::List(self.comma_list("]", Self::expr)?)
            }
            Tok::Punct("{") => ExprKind::Block(self.block()?),
            _ => return Err(self.unexpected("an expression")),
        };
        Ok(Expr { kind, span: start.to(self.prev_span()) })
    }
}

impl Parser {
    /// `loop PATTERN = INIT for I < COUNT [checkpoint] { ... }`, `loop PATTERN = INIT while COND
    /// [max_iter N] { ... }` (`max_iter` a keyword only there),
    /// `loop PATTERN = INIT for ROW in [rev] XS { ... }` or `scan PATTERN = INIT for ROW in
    /// [rev] XS [checkpoint] { ... }`. `rev` is a keyword only right after `in`, `checkpoint`
    /// only right after the count or the arrays.
    fn counted_loop(&mut self) -> PResult<Expr> {
        let scan = self.is_keyword("scan");
        let start = self.bump().span;
        self.enter()?;
        let pattern = self.pattern()?;
        self.expect("=")?;
        let init = self.expr()?;
        let control = if self.is_keyword("for") {
            self.bump();
            let over_rows = self.is("(") || matches!(self.peek_ahead(1), Tok::Ident(w) if w == "in");
            if over_rows {
                let row = self.pattern()?;
                if !self.is_keyword("in") {
                    return Err(self.unexpected("`in`, as in `for x in xs`"));
                }
                self.bump();
                let reverse = self.is_keyword("rev") && !matches!(self.peek_ahead(1), Tok::Punct("{"));
                if reverse {
                    self.bump();
                }
                // The arrays are an expression without comparisons: its `{` begins the body.
                let xs = self.binary(0)?;
                let checkpoint = self.eat_keyword("checkpoint");
                LoopControl::Over { row, xs, reverse, checkpoint }
            } else if scan {
                return Err(self.unexpected("a row and `in`, as in `scan c = c0 for x in xs { ... }`"));
            } else {
                let index = self.ident("the loop index")?;
                self.expect("<")?;
                // The count is an expression without comparisons: its `{` begins the body.
                let count = self.binary(0)?;
                let checkpoint = self.eat_keyword("checkpoint");
                LoopControl::For { index, count, checkpoint }
            }
        } else if self.is_keyword("while") && !scan {
            self.bump();
            let cond = self.expr()?;
            let max_iter = if self.eat_keyword("max_iter") {
                // The bound is an expression without comparisons: its `{` begins the body.
                Some(self.binary(0)?)
            } else {
                None
            };
            LoopControl::While(cond, max_iter)
        } else if scan {
            return Err(self.unexpected("`for`, as in `scan c = c0 for x in xs { ... }`"));
        } else {
            return Err(self.unexpected("`for` or `while`, as in `loop x = x0 for i < n { ... }`"));
        };
        let body = self.block()?;
        self.depth -= 1;
        let kind = ExprKind::Loop(Box::new(LoopExpr { scan, pattern, init, control, body }));
        Ok(Expr { span: start.to(self.prev_span()), kind })
    }

    /// `if cond { ... } else { ... }`, the else branch a block or another `if`.
    fn conditional(&mut self) -> PResult<Expr> {
        let start = self.bump().span;
        self.enter()?;
        let cond = Box::new(self.expr()?);
        let then = self.block()?;
        if !self.is_keyword("else") {
            return Err(self.unexpected("`else`: a conditional has a value either way"));
        }
        self.bump();
        let otherwise = if self.is_keyword("if") {
            self.conditional()?
        } else {
            let block_start = self.span();
            let block = self.block()?;
            Expr { kind: ExprKind::Block(block), span: block_start.to(self.prev_span()) }
        };
        self.depth -= 1;
        Ok(Expr { span: start.to(self.prev_span()), kind: ExprKind::If { cond, then, otherwise: Box::new(otherwise) } })
    }
}

fn mk_binary((op, op_span): (BinOp, Span), lhs: Expr, rhs: Expr) -> Expr {
    Expr { span: lhs.span.to(rhs.span), kind: ExprKind::Binary { op, op_span, lhs: Box::new(lhs), rhs: Box::new(rhs) } }
}

/// Words that cannot name a value or function.
pub fn is_reserved(name: &str) -> bool {
    matches!(
        name,
        "fn" | "let"
            | "export"
            | "as"
            | "true"
            | "false"
            | "_"
            | "if"
            | "else"
            | "loop"
            | "for"
            | "while"
            | "scan"
            | "in"
    )
}
