//! Name resolution of a function body without elaborating it: every value a body names is in
//! scope, and every function it calls exists. Elaboration checks this and everything else for
//! the functions it instantiates; a generic helper that nothing calls is never instantiated
//! (its shapes are unknown), so this pass is what checks its names.

use crate::ast::{Block, Dim, Expr, ExprKind, FnDef, IndexItem, Pattern};
use crate::transform::Transform;
use kiln_ir::{DType, Diagnostic};
use std::collections::{BTreeMap, BTreeSet};

type R<T> = Result<T, Diagnostic>;

/// Checks the names in `def`'s body against its parameters, its shape variables, its lets and
/// the functions of the file (`fns`) and the builtins.
pub fn check_names(def: &FnDef, fns: &BTreeMap<&str, &FnDef>) -> R<()> {
    let mut scope: BTreeSet<&str> = def.params.iter().map(|p| p.name.name.as_str()).collect();
    let types = def.params.iter().map(|p| &p.ty).chain(def.ret.iter().flatten());
    for ty in types {
        scope.extend(ty.dims.iter().filter_map(|d| match d {
            Dim::Var(v) => Some(v.name.as_str()),
            Dim::Known(..) => None,
        }));
    }
    Resolver { fns }.block(&def.body, &mut scope)
}

struct Resolver<'f, 'a> {
    fns: &'f BTreeMap<&'a str, &'a FnDef>,
}

impl<'a> Resolver<'_, 'a> {
    fn block<'e>(&self, block: &'e Block, scope: &mut BTreeSet<&'e str>) -> R<()> {
        let mut inner = scope.clone();
        for l in &block.lets {
            self.expr(&l.value, &inner)?;
            bind(&l.pattern, &mut inner);
        }
        self.expr(&block.result, &inner)
    }

    fn expr(&self, e: &Expr, scope: &BTreeSet<&str>) -> R<()> {
        match &e.kind {
            ExprKind::Int(_) | ExprKind::Float(_) | ExprKind::Bool(_) => Ok(()),
            // A dtype (`cast(x, f64)`) or a function given to a transformation are names too.
            ExprKind::Name(n) if scope.contains(n.as_str()) || self.is_function(n) || DType::from_name(n).is_some() => {
                Ok(())
            }
            ExprKind::Name(n) => Err(Diagnostic::error("E0101", format!("cannot find value `{n}` in this scope"))
                .at(e.span, "not found in this scope")),
            ExprKind::Call { callee, args } => {
                if !self.is_function(&callee.name) && Transform::parse(&callee.name).is_none() {
                    return Err(crate::elab::unknown_function(&callee.name, callee.span, self.fns));
                }
                // A transformation's `wrt=` names parameters of the function it transforms.
                let values = args.iter().filter(|a| a.keyword.as_ref().is_none_or(|k| k.name != "wrt"));
                values.map(|a| &a.value).try_for_each(|v| self.expr(v, scope))
            }
            ExprKind::Apply { func, args } => {
                self.expr(func, scope)?;
                args.iter().try_for_each(|a| self.expr(&a.value, scope))
            }
            ExprKind::Binary { lhs, rhs, .. } => {
                self.expr(lhs, scope)?;
                self.expr(rhs, scope)
            }
            ExprKind::Neg(inner) => self.expr(inner, scope),
            ExprKind::Index { base, items } => {
                self.expr(base, scope)?;
                items.iter().try_for_each(|item| match item {
                    IndexItem::At(i) => self.expr(i, scope),
                    IndexItem::Range { start, stop, step, .. } => {
                        [start, stop, step].into_iter().flatten().try_for_each(|p| self.expr(p, scope))
                    }
                })
            }
            ExprKind::Tuple(items) | ExprKind::List(items) => items.iter().try_for_each(|i| self.expr(i, scope)),
            ExprKind::Block(b) => self.block(b, &mut scope.clone()),
        }
    }

    fn is_function(&self, name: &str) -> bool {
        self.fns.contains_key(name) || crate::builtins::is_builtin(name)
    }
}

fn bind<'e>(p: &'e Pattern, scope: &mut BTreeSet<&'e str>) {
    match p {
        Pattern::Name(i) => {
            scope.insert(&i.name);
        }
        Pattern::Ignore(_) => {}
        Pattern::Tuple(items, _) => items.iter().for_each(|i| bind(i, scope)),
    }
}
