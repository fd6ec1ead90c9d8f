//! Name resolution of a function body without elaborating it: every value a body names is in
//! scope, and every function it calls exists. It runs on every function before elaboration and
//! reports every unknown name of the file; a generic helper that nothing calls is never
//! elaborated (its shapes are unknown), so for it this is the only check.
//!
//! The same walk finds the warnings about names: a `let` binding never used (W0001), a
//! parameter never used (W0002), a binding that shadows a parameter or an earlier binding
//! (W0003). A name that starts with `_` is exempt, as in Rust.

use crate::ast::{Block, Dim, Expr, ExprKind, FnDef, Ident, IndexItem, LoopControl, LoopExpr, Pattern};
use crate::elab::Errors;
use crate::transform::Transform;
use kiln_ir::{DType, Diagnostic, Span};
use std::collections::BTreeMap;

/// Checks the names in `def`'s body against its parameters, its shape variables, its lets and
/// the functions of the file (`fns`) and the builtins, pushing an error for each unknown name
/// and a warning for each unused or shadowing one.
pub fn check_names(def: &FnDef, fns: &BTreeMap<&str, &FnDef>, errors: &mut Errors, warnings: &mut Vec<Diagnostic>) {
    let mut r = Resolver { fns, errors, warnings, scope: vec![] };
    let types = def.params.iter().map(|p| &p.ty).chain(def.ret.iter().flatten());
    for ty in types {
        for d in &ty.dims {
            if let Dim::Var(v) = d {
                if !r.scope.iter().any(|b| b.name == v.name) {
                    r.scope.push(Binding { name: &v.name, span: v.span, kind: Kind::ShapeVar, used: true });
                }
            }
        }
    }
    for p in &def.params {
        r.scope.push(Binding { name: &p.name.name, span: p.name.span, kind: Kind::Param, used: false });
    }
    r.block(&def.body);
    r.close(0);
}

/// What a name in scope was bound by.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    ShapeVar,
    Param,
    Let,
}

struct Binding<'e> {
    name: &'e str,
    span: Span,
    kind: Kind,
    used: bool,
}

struct Resolver<'f, 'a, 'e> {
    fns: &'f BTreeMap<&'a str, &'a FnDef>,
    errors: &'f mut Errors,
    warnings: &'f mut Vec<Diagnostic>,
    /// The names in scope, innermost last.
    scope: Vec<Binding<'e>>,
}

impl<'e> Resolver<'_, '_, 'e> {
    fn block(&mut self, block: &'e Block) {
        let outer = self.scope.len();
        for l in &block.lets {
            self.expr(&l.value);
            self.bind(&l.pattern);
        }
        self.expr(&block.result);
        self.close(outer);
    }

    /// Leaves the scope opened when it held `outer` names, warning of those never used.
    fn close(&mut self, outer: usize) {
        for b in self.scope.drain(outer..) {
            if b.used || b.name.starts_with('_') {
                continue;
            }
            let (code, what) = match b.kind {
                Kind::ShapeVar => continue,
                Kind::Param => ("W0002", "parameter"),
                Kind::Let => ("W0001", "value"),
            };
            self.warnings.push(
                Diagnostic::warning(code, format!("unused {what} `{}`", b.name))
                    .at(b.span, format!("this {what} is never used"))
                    .help(format!("remove it, or name it `_{}` to say it is unused on purpose", b.name)),
            );
        }
    }

    fn bind(&mut self, p: &'e Pattern) {
        match p {
            Pattern::Name(Ident { name, span }) => {
                if let Some(prev) = self.scope.iter().rev().find(|b| b.name == name) {
                    if !name.starts_with('_') {
                        let what = if prev.kind == Kind::Let { "an earlier binding" } else { "a parameter" };
                        self.warnings.push(
                            Diagnostic::warning("W0003", format!("`{name}` shadows {what} of the same name"))
                                .at(*span, "this binding hides the earlier one")
                                .also(prev.span, "earlier binding here")
                                .help("give the new value a name of its own"),
                        );
                    }
                }
                self.scope.push(Binding { name, span: *span, kind: Kind::Let, used: false });
            }
            Pattern::Ignore(_) => {}
            Pattern::Tuple(items, _) => items.iter().for_each(|i| self.bind(i)),
        }
    }

    fn expr(&mut self, e: &'e Expr) {
        match &e.kind {
            ExprKind::Int(_) | ExprKind::Float(_) | ExprKind::Bool(_) | ExprKind::Str(_) => {}
            ExprKind::Name(n) => {
                if let Some(b) = self.scope.iter_mut().rev().find(|b| b.name == n) {
                    b.used = true;
                } else if !self.is_function(n) && DType::from_name(n).is_none() {
                    // A dtype (`cast(x, f64)`) or a function given to a transformation are
                    // names too.
                    let d = Diagnostic::error("E0101", format!("cannot find value `{n}` in this scope"))
                        .at(e.span, "not found in this scope");
                    let similar = crate::elab::suggest(n, self.scope.iter().map(|b| b.name));
                    self.errors.push(match similar {
                        Some(s) => d.help(format!("a value with a similar name exists: `{s}`")),
                        None => d,
                    });
                }
            }
            ExprKind::Call { callee, args } => {
                if !self.is_function(&callee.name) && Transform::parse(&callee.name).is_none() {
                    self.errors.push(crate::elab::unknown_function(&callee.name, callee.span, self.fns));
                }
                // A transformation's keywords (`wrt=`, `in_axes=`, ...) are read as written, and
                // a cast's target is a dtype.
                let transform = Transform::parse(&callee.name);
                let mut positional = 0;
                for a in args {
                    let position = a.keyword.is_none().then(|| {
                        positional += 1;
                        positional - 1
                    });
                    let keyword = a.keyword.as_ref().map(|k| k.name.as_str());
                    if crate::builtins::is_dtype_argument(&callee.name, position, keyword) {
                        if let Err(e) = crate::builtins::dtype_argument(&a.value) {
                            self.errors.push(e);
                        }
                    } else if a
                        .keyword
                        .as_ref()
                        .is_none_or(|k| !transform.is_some_and(|t| t.keywords().contains(&k.name.as_str())))
                    {
                        self.expr(&a.value);
                    }
                }
            }
            ExprKind::Apply { func, args } => {
                self.expr(func);
                args.iter().for_each(|a| self.expr(&a.value));
            }
            ExprKind::Binary { lhs, rhs, .. } => {
                self.expr(lhs);
                self.expr(rhs);
            }
            ExprKind::Neg(inner) => self.expr(inner),
            ExprKind::Index { base, items } => {
                self.expr(base);
                self.index_items(items);
            }
            ExprKind::At { base, items, args, .. } => {
                self.expr(base);
                self.index_items(items);
                args.iter().for_each(|a| self.expr(&a.value));
            }
            ExprKind::Tuple(items) | ExprKind::List(items) => items.iter().for_each(|i| self.expr(i)),
            ExprKind::Block(b) => self.block(b),
            ExprKind::Loop(l) => {
                let LoopExpr { pattern, init, control, body, .. } = &**l;
                self.expr(init);
                // The carries (often named as the values they start from) and the index are
                // bound without warnings: the loop's result reads the carries, and a loop need
                // not read its index.
                let outer = self.scope.len();
                let mut names = vec![];
                match control {
                    LoopControl::For { index, count, .. } => {
                        self.expr(count);
                        names.push(index);
                    }
                    LoopControl::Over { row, xs, .. } => {
                        self.expr(xs);
                        pattern_names(row, &mut names);
                    }
                    LoopControl::While(_, max_iter) => max_iter.iter().for_each(|n| self.expr(n)),
                }
                pattern_names(pattern, &mut names);
                for id in names {
                    self.scope.push(Binding { name: &id.name, span: id.span, kind: Kind::Let, used: true });
                }
                if let LoopControl::While(cond, _) = control {
                    self.expr(cond);
                }
                self.block(body);
                self.close(outer);
            }
            ExprKind::If { cond, then, otherwise } => {
                self.expr(cond);
                self.block(then);
                self.expr(otherwise);
            }
        }
    }

    fn index_items(&mut self, items: &'e [IndexItem]) {
        for item in items {
            match item {
                IndexItem::At(i) => self.expr(i),
                IndexItem::Range { start, stop, step, .. } => {
                    [start, stop, step].into_iter().flatten().for_each(|p| self.expr(p))
                }
                IndexItem::NewAxis(_) | IndexItem::Ellipsis(_) => {}
            }
        }
    }

    fn is_function(&self, name: &str) -> bool {
        self.fns.contains_key(name) || crate::builtins::is_builtin(name)
    }
}

/// The names a pattern binds.
fn pattern_names<'e>(p: &'e Pattern, out: &mut Vec<&'e Ident>) {
    match p {
        Pattern::Name(id) => out.push(id),
        Pattern::Ignore(_) => {}
        Pattern::Tuple(items, _) => items.iter().for_each(|i| pattern_names(i, out)),
    }
}
