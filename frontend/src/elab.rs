//! Elaboration: name resolution, shape inference, type promotion and lowering of a parsed file
//! into IR. Each export becomes one IR function; helper functions are inlined at every call,
//! where their shape variables are bound from the argument types.
//!
//! Values follow jax.numpy: numeric literals are weakly typed (they take the dtype of the
//! array they meet), arrays of different dtypes promote (bool < integers < floats, wider wins,
//! an integer meeting a float takes the float's dtype), and shapes broadcast as in numpy.

use crate::ast::*;
use crate::indexing;
use crate::transform::{Differentiator, Transform};
use crate::Files;
use kiln_ir::ops::Bodies;
use kiln_ir::types::check_shape;
use kiln_ir::{BinaryOp, DType, Diagnostic, Func, Literal, Module, Op, Span, TensorType, UnaryOp, Value};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::rc::Rc;

/// A weakly typed literal: the value of a number written in the source (and of arithmetic on
/// such numbers, which is folded).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Lit {
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl Lit {
    /// The dtype a literal gets when nothing else decides: i32, f32 or bool (as in JAX).
    pub fn default_dtype(self) -> DType {
        match self {
            Lit::Int(_) => DType::I32,
            Lit::Float(_) => DType::F32,
            Lit::Bool(_) => DType::Bool,
        }
    }
}

/// The value of an expression during elaboration.
#[derive(Clone, Debug)]
pub enum Val {
    Tensor(Value),
    Lit(Lit),
    Tuple(Vec<Val>),
    /// Random keys (jax.random's key arrays): the key data, u32 of the keys' shape and then 2
    /// (threefry2x32's two words). A key is not an array: arithmetic refuses it, and only the
    /// random builtins, indexing and `key_data` read it.
    Key(Value),
}

/// What a name refers to inside a function body.
#[derive(Clone, Default)]
pub struct Env {
    vars: HashMap<String, Val>,
    shape_vars: HashMap<String, usize>,
    /// Names bound by a `let` that failed: reading one is a follow-on error, not reported.
    poisoned: HashSet<String>,
}

pub struct Elab<'a> {
    file: Rc<File<'a>>,
    pub func: Func,
    call_stack: Vec<&'a str>,
    diff: Option<&'a dyn Differentiator>,
    /// The value of every op pushed so far, by op and operands: pure ops are pushed once.
    pushed: HashMap<(Op, Vec<Value>), Value>,
    /// The result of every helper call so far whose arguments are arrays, by helper and
    /// arguments: a call repeated on the same values (`f(x) + f(x)`, nested) is elaborated
    /// once, so elaboration stays linear in the program rather than exponential in the depth
    /// of calls.
    calls: HashMap<(&'a str, Vec<Value>), Val>,
    /// Reads of poisoned names so far (see [`Env::poisoned`]): an error raised while this
    /// grows follows from an error already reported.
    follow_ons: usize,
}

/// What every elaborator of a file shares: its functions, and the names of those a call has
/// elaborated or tried to (at their declared types, when they have no shape variables: so
/// checked, or their first error reported through the call).
struct File<'a> {
    fns: BTreeMap<&'a str, &'a FnDef>,
    /// Where `load` reads weights files, when the caller gave it a way.
    files: Option<&'a dyn Files>,
    called: RefCell<BTreeSet<&'a str>>,
    /// Notes on how transformations went (a vmap that runs both branches of a conditional),
    /// reported as warnings.
    notes: RefCell<Vec<Diagnostic>>,
    /// Errors of `let`s that elaboration went on past (see `Elab::eval_block`), beside the
    /// error each failing function returns.
    recovered: RefCell<Vec<Diagnostic>>,
}

/// A function as a value: a definition, or a transformation of a function value.
enum FnValue<'a> {
    Def(&'a FnDef),
    Transformed { kind: Transform, inner: Box<FnValue<'a>>, wrt: Option<Vec<Ident>>, axes: BatchAxes<'a>, span: Span },
}

/// The arguments of a `vmap`, as written: `in_axes=`, `out_axes=` and `axis_size=`.
#[derive(Default)]
struct BatchAxes<'a> {
    in_axes: Option<&'a Expr>,
    out_axes: Option<&'a Expr>,
    axis_size: Option<&'a Expr>,
}

/// An axis list of `vmap`: one entry for all (an axis, or `None` for unmapped), or one each.
enum Axes {
    All(Option<i64>, Span),
    Each(Vec<(Option<i64>, Span)>),
}

impl Axes {
    /// Reads `in_axes=` or `out_axes=` (`None` entries only where `unmapped` allows them);
    /// `default` (axis 0) when absent.
    fn read(e: Option<&Expr>, default: Span, unmapped: bool) -> R<Axes> {
        let one = |e: &Expr| -> R<(Option<i64>, Span)> {
            match &e.kind {
                ExprKind::Int(v) => Ok((Some(i64::try_from(*v).unwrap_or(i64::MAX)), e.span)),
                ExprKind::Neg(inner) if matches!(inner.kind, ExprKind::Int(_)) => {
                    let ExprKind::Int(v) = inner.kind else { unreachable!("matched") };
                    Ok((Some(-i64::try_from(v).unwrap_or(i64::MAX)), e.span))
                }
                ExprKind::Name(n) if n == "None" && unmapped => Ok((None, e.span)),
                _ => Err(Diagnostic::error("E0229", "`vmap` axes are integers or `None`")
                    .at(e.span, "not an axis")
                    .help(if unmapped {
                        "write `in_axes=[0, None]`: an axis for each mapped parameter, `None` for shared ones"
                    } else {
                        "write `out_axes=0`, or one axis per result: `out_axes=[0, 1]`"
                    })),
            }
        };
        match e {
            None => Ok(Axes::All(Some(0), default)),
            Some(Expr { kind: ExprKind::List(items), .. }) => Ok(Axes::Each(items.iter().map(one).collect::<R<_>>()?)),
            Some(e) => {
                let (axis, span) = one(e)?;
                Ok(Axes::All(axis, span))
            }
        }
    }

    /// The axis of each of `count` values (negative axes count from the end of `rank(k)`, the
    /// rank of value k with its batch axis), checked to be in range.
    fn resolve(&self, count: usize, rank: impl Fn(usize) -> usize, what: &str) -> R<Vec<Option<usize>>> {
        let entries: Vec<(Option<i64>, Span)> = match self {
            Axes::All(a, s) => vec![(*a, *s); count],
            Axes::Each(list) if list.len() == count => list.clone(),
            Axes::Each(list) => {
                let span =
                    list.first().map_or(Span::default(), |f| f.1).to(list.last().map_or(Span::default(), |l| l.1));
                return Err(Diagnostic::error("E0229", format!("`vmap` needs one axis per {what}"))
                    .at(span, format!("{} axes for {count} {what}s", list.len())));
            }
        };
        entries
            .into_iter()
            .enumerate()
            .map(|(k, (axis, span))| {
                let Some(axis) = axis else { return Ok(None) };
                let r = rank(k) as i64;
                let resolved = if axis < 0 { axis + r } else { axis };
                if !(0..r).contains(&resolved) {
                    return Err(Diagnostic::error("E0229", format!("`vmap` axis {axis} is out of range"))
                        .at(span, format!("{what} {k} has {r} axes with the batch"))
                        .help("axes count from 0, or from the end when negative"));
                }
                Ok(Some(resolved as usize))
            })
            .collect()
    }
}

type R<T> = Result<T, Diagnostic>;

/// The deepest chain of calls elaborated: each level takes about 2 KiB of stack, so this fits
/// a thread's default 2 MiB beside the parser's nesting limit.
const MAX_CALL_DEPTH: usize = 500;

/// Lowers every export of `file` into a function of a module named `module_name`, and checks
/// every function whose parameter types are fully known even if it is not exported.
///
/// Errors come in two rounds, each reporting all it finds (up to [`crate::MAX_ERRORS`]):
/// definitions and names first, in every function; then, when those are clean, types and
/// shapes, in each exported or checked function every error that does not follow from an
/// earlier one (see `Elab::eval_block`).
///
/// Returns the module and the warnings, or the errors with the warnings, in source order.
pub fn elaborate<'a>(
    file: &'a SourceFile,
    module_name: &str,
    diff: Option<&'a dyn Differentiator>,
    files: Option<&'a dyn Files>,
) -> Result<(Module, Vec<Diagnostic>), Vec<Diagnostic>> {
    let mut errors = Errors::default();
    let mut warnings = vec![];
    let mut fns: BTreeMap<&str, &FnDef> = BTreeMap::new();
    for item in &file.items {
        if let Item::Fn(f) = item {
            if crate::builtins::is_builtin(&f.name.name) || Transform::parse(&f.name.name).is_some() {
                errors.push(
                    Diagnostic::error("E0104", format!("`{}` is a builtin and cannot be redefined", f.name.name))
                        .at(f.name.span, "redefines a builtin")
                        .help("choose another name"),
                );
                continue;
            }
            let mut seen: HashMap<&str, Span> = HashMap::new();
            for p in &f.params {
                if let Some(prev) = seen.insert(&p.name.name, p.name.span) {
                    errors.push(
                        Diagnostic::error("E0105", format!("parameter `{}` is declared twice", p.name.name))
                            .at(p.name.span, "second declaration")
                            .also(prev, "first declaration here"),
                    );
                }
            }
            if let Some(prev) = fns.get(f.name.name.as_str()) {
                errors.push(
                    Diagnostic::error("E0104", format!("function `{}` is defined twice", f.name.name))
                        .at(f.name.span, "second definition")
                        .also(prev.name.span, "first definition here"),
                );
                continue;
            }
            fns.insert(&f.name.name, f);
        }
    }
    for def in fns.values() {
        crate::resolve::check_names(def, &fns, &mut errors, &mut warnings);
    }
    let mut warnings = crate::in_source_order(warnings);
    warnings.truncate(crate::MAX_ERRORS);
    errors.take_result(&warnings)?;
    let shared = Rc::new(File {
        fns,
        files,
        called: Default::default(),
        notes: Default::default(),
        recovered: Default::default(),
    });
    let fns = &shared.fns;
    let mut module = Module { name: module_name.to_string(), funcs: vec![] };
    let mut exported: HashMap<String, Span> = HashMap::new();
    for item in &file.items {
        let Item::Export(export) = item else { continue };
        let elaborated = match &export.target.kind {
            ExprKind::Name(target) => match fns.get(target.as_str()) {
                None => Err(unknown_function(target, export.target.span, fns)),
                Some(def) => Elab::new(&shared, target, diff)
                    .instantiate(def, None)
                    .map(|f| (f, target.clone(), export.target.span)),
            },
            ExprKind::Call { callee, .. } if Transform::parse(&callee.name).is_some() => {
                let el = Elab::new(&shared, &callee.name, diff);
                el.function_value(&export.target).and_then(|fv| el.instantiate_value(&fv, None)).map(|f| {
                    let name = f.name.clone();
                    (f, name, export.target.span)
                })
            }
            _ => Err(Diagnostic::error("E0107", "only functions can be exported")
                .at(export.target.span, "not a function")
                .help("export a function by name, `export loss;`, or a transformation of one, `export grad(loss, wrt=[w]) as g;`")),
        };
        let (func, default_name, name_span) = match elaborated {
            Ok(e) => e,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        let name = export.alias.as_ref().map_or(default_name, |a| a.name.clone());
        let name_span = export.alias.as_ref().map_or(name_span, |a| a.span);
        if let Some(prev) = exported.insert(name.clone(), name_span) {
            errors.push(
                Diagnostic::error("E0106", format!("`{name}` is exported twice"))
                    .at(name_span, "second export of this name")
                    .also(prev, "first exported here")
                    .help("give one of them another name with `as`"),
            );
            continue;
        }
        module.funcs.push(Func { name, ..func });
    }
    // Functions with fully known parameter types are checked even when nothing exports them
    // (the names of generic ones, whose shapes only a call gives, were checked above).
    for def in fns.values() {
        if def.params.iter().all(|p| p.ty.dims.iter().all(|d| matches!(d, Dim::Known(..)))) {
            // A call instantiated it already, at the only types it takes.
            let called = shared.called.borrow().contains(def.name.name.as_str());
            if !exported.contains_key(&def.name.name) && !called {
                if let Err(e) = Elab::new(&shared, &def.name.name, diff).instantiate(def, None) {
                    errors.push(e);
                }
            }
        }
    }
    for e in shared.recovered.take() {
        errors.push(e);
    }
    warnings.extend(shared.notes.take());
    let mut warnings = crate::in_source_order(warnings);
    warnings.dedup();
    warnings.truncate(crate::MAX_ERRORS);
    errors.take_result(&warnings)?;
    if let Err(e) = kiln_ir::verify::verify_module(&module) {
        return Err(vec![Diagnostic::error(
            "E9999",
            format!("internal compiler error: the frontend produced invalid IR: {e}"),
        )
        .help("please report this as a bug in kiln")]);
    }
    Ok((module, warnings))
}

/// The errors of one run: each reported once (a helper's error reached through two exports
/// is one error), at most [`crate::MAX_ERRORS`], in the order of the source.
#[derive(Default)]
pub struct Errors(Vec<Diagnostic>);

impl Errors {
    pub fn push(&mut self, d: Diagnostic) {
        if self.0.len() < crate::MAX_ERRORS && !self.0.contains(&d) {
            self.0.push(d);
        }
    }

    /// Nothing when no error was pushed, otherwise the errors and `warnings` in source order.
    pub fn take_result(&mut self, warnings: &[Diagnostic]) -> Result<(), Vec<Diagnostic>> {
        if self.0.is_empty() {
            return Ok(());
        }
        let mut all = std::mem::take(&mut self.0);
        all.extend_from_slice(warnings);
        Err(crate::in_source_order(all))
    }
}

/// The body of a counted loop that runs `body` while `cond` holds (both functions of the
/// carries and the captured arrays) and keeps the carries once it fails: (i, carries,
/// captured) -> cond(...) ? body(...) : carries, its index (of type `index`) unread.
fn guarded(cond: &Func, body: &Func, index: &TensorType) -> Func {
    let span = Span::default();
    let mut g = Func::new("body", span);
    g.add_param("i", index.clone(), span);
    let params: Vec<Value> = body.params.iter().map(|p| g.add_param(p.name.clone(), p.ty.clone(), span)).collect();
    let go = g.inline(cond, &params, span).expect("the condition takes the body's parameters")[0];
    let mut keep = Func { insts: vec![], results: vec![], result_names: vec![], ..body.clone() };
    keep.name = "done".into();
    keep.results = (0..body.results.len()).map(|c| Value(c as u32)).collect();
    keep.result_names = body.result_names.clone();
    let branches = Bodies::new(vec![body.clone(), keep]);
    let operands: Vec<Value> = std::iter::once(go).chain(params).collect();
    for (r, name) in body.result_names.iter().enumerate() {
        let v = g.push(Op::Cond { branches: branches.clone(), result: r }, operands.clone(), span).expect("well typed");
        g.results.push(v);
        g.result_names.push(name.clone());
    }
    g
}

fn no_mapped_parameter(span: Span) -> Diagnostic {
    Diagnostic::error("E0229", "`vmap` maps no parameter")
        .at(span, "every `in_axes` entry is `None`")
        .help("give at least one parameter an axis to map over, e.g. `in_axes=[0, None]`")
}

/// The names of a `wrt=` argument: one name or a list of names.
fn wrt_names(e: &Expr) -> R<Vec<Ident>> {
    let one = |e: &Expr| match &e.kind {
        ExprKind::Name(n) => Ok(Ident { name: n.clone(), span: e.span }),
        _ => Err(Diagnostic::error("E0302", "`wrt` names parameters")
            .at(e.span, "not a parameter name")
            .help("write `wrt=[w1, b1]`")),
    };
    match &e.kind {
        ExprKind::List(items) => items.iter().map(one).collect(),
        _ => Ok(vec![one(e)?]),
    }
}

/// Levenshtein distance, for "did you mean" suggestions.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for j in 0..b.len() {
            let cur = row[j + 1];
            row[j + 1] = (prev + (ca != b[j]) as usize).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// The closest candidate to `name`, if it is close enough to be a likely typo.
pub fn suggest<'c>(name: &str, candidates: impl Iterator<Item = &'c str>) -> Option<&'c str> {
    candidates
        .map(|c| (edit_distance(name, c), c))
        // Within a third of the length, and never every character (`y` for `x`).
        .filter(|&(d, c)| d <= (name.len().max(c.len()) / 3).max(1) && d < name.len())
        .min()
        .map(|(_, c)| c)
}

pub(crate) fn unknown_function(name: &str, span: Span, fns: &BTreeMap<&str, &FnDef>) -> Diagnostic {
    let candidates = fns.keys().copied().chain(crate::builtins::names().map(|n| -> &str { n }));
    let d = Diagnostic::error("E0102", format!("cannot find function `{name}`")).at(span, "not found");
    match suggest(name, candidates) {
        Some(s) => d.help(format!("a function with a similar name exists: `{s}`")),
        None => d,
    }
}

impl<'a> Elab<'a> {
    fn new(file: &Rc<File<'a>>, name: &str, diff: Option<&'a dyn Differentiator>) -> Elab<'a> {
        Elab {
            file: file.clone(),
            func: Func::new(name, Span::default()),
            call_stack: vec![],
            diff,
            pushed: HashMap::new(),
            calls: HashMap::new(),
            follow_ons: 0,
        }
    }

    /// An elaborator for a function instantiated while elaborating this one (a transformed
    /// function): it shares the call stack, so recursion through transformations is caught.
    fn child(&self, name: &str) -> Elab<'a> {
        Elab {
            file: self.file.clone(),
            func: Func::new(name, Span::default()),
            call_stack: self.call_stack.clone(),
            diff: self.diff,
            pushed: HashMap::new(),
            calls: HashMap::new(),
            follow_ons: 0,
        }
    }

    /// The function an expression denotes: a function name, or a transformation of one.
    fn function_value(&self, e: &'a Expr) -> R<FnValue<'a>> {
        match &e.kind {
            ExprKind::Name(name) => match self.file.fns.get(name.as_str()) {
                Some(def) => Ok(FnValue::Def(def)),
                None => Err(unknown_function(name, e.span, &self.file.fns)),
            },
            ExprKind::Call { callee, args } if Transform::parse(&callee.name).is_some() => {
                let kind = Transform::parse(&callee.name).expect("checked");
                let mut inner = None;
                let mut wrt = None;
                let mut axes = BatchAxes::default();
                for a in args {
                    match (&a.keyword, inner.is_none()) {
                        (None, true) => inner = Some(self.function_value(&a.value)?),
                        (Some(k), _) if kind.keywords().contains(&k.name.as_str()) => match k.name.as_str() {
                            "wrt" => wrt = Some(wrt_names(&a.value)?),
                            "in_axes" => axes.in_axes = Some(&a.value),
                            "out_axes" => axes.out_axes = Some(&a.value),
                            _ => axes.axis_size = Some(&a.value),
                        },
                        (Some(k), _) => {
                            return Err(Diagnostic::error(
                                "E0215",
                                format!("`{}` has no parameter named `{}`", kind.name(), k.name),
                            )
                            .at(k.span, "unknown keyword")
                            .note(match kind {
                                Transform::Grad | Transform::ValueAndGrad => "signature: grad(f, wrt=[names])",
                                Transform::Jvp | Transform::Vjp => {
                                    "signature: jvp(f) and vjp(f) take the function alone"
                                }
                                Transform::Vmap => {
                                    "signature: vmap(f, in_axes=[0, None, ...], out_axes=0, axis_size=n)"
                                }
                            }))
                        }
                        (None, false) => {
                            return Err(Diagnostic::error("E0201", format!("`{}` takes one function", kind.name()))
                                .at(a.value.span, "unexpected argument"))
                        }
                    }
                }
                let inner = inner.ok_or_else(|| {
                    Diagnostic::error("E0201", format!("`{}` is missing the function to transform", kind.name()))
                        .at(e.span, "no function given")
                })?;
                Ok(FnValue::Transformed { kind, inner: Box::new(inner), wrt, axes, span: e.span })
            }
            _ => Err(Diagnostic::error("E0304", "expected a function")
                .at(e.span, "not a function")
                .help("transformations take a function name or another transformation, e.g. `grad(loss, wrt=[w])`")),
        }
    }

    /// Instantiates a function value: at `types` when given (a call), else at its declared
    /// static types (an export).
    fn instantiate_value(&self, fv: &FnValue<'a>, types: Option<(&[TensorType], Span)>) -> R<Func> {
        match fv {
            FnValue::Def(def) => self.child(&def.name.name).instantiate(def, types),
            FnValue::Transformed { kind, inner, wrt, axes, span: tspan } => {
                let g = if *kind == Transform::Vmap {
                    self.batched(inner, axes, types, *tspan)?
                } else {
                    let inner_types = match types {
                        Some((ts, s)) => {
                            let k = self.param_count(inner, ts, s)?.min(ts.len());
                            Some((&ts[..k], s))
                        }
                        None => None,
                    };
                    let f = self.instantiate_value(inner, inner_types)?;
                    self.transform(*kind, &f, wrt.as_deref(), *tspan)?
                };
                if let Some((ts, s)) = types {
                    let expected = g.param_types();
                    if expected.len() != ts.len() || expected.iter().zip(ts).any(|(a, b)| *a != b) {
                        let list = |v: Vec<String>| v.join(", ");
                        return Err(Diagnostic::error(
                            "E0207",
                            format!("`{}` takes ({})", g.name, list(expected.iter().map(|t| t.to_string()).collect())),
                        )
                        .at(s, format!("called with ({})", list(ts.iter().map(|t| t.to_string()).collect()))));
                    }
                }
                Ok(g)
            }
        }
    }

    /// How many of `types` the function value takes as its own parameters.
    fn param_count(&self, fv: &FnValue<'a>, types: &[TensorType], span: Span) -> R<usize> {
        Ok(match fv {
            FnValue::Def(def) => def.params.len(),
            FnValue::Transformed {
                kind: Transform::Grad | Transform::ValueAndGrad | Transform::Vmap, inner, ..
            } => self.param_count(inner, types, span)?,
            FnValue::Transformed { kind: Transform::Jvp, inner, .. } => {
                let k = self.param_count(inner, types, span)?.min(types.len());
                k + types[..k].iter().filter(|t| t.dtype.is_float()).count()
            }
            FnValue::Transformed { kind: Transform::Vjp, inner, .. } => {
                let k = self.param_count(inner, types, span)?.min(types.len());
                let f = self.instantiate_value(inner, Some((&types[..k], span)))?;
                k + f.result_types().iter().filter(|t| t.dtype.is_float()).count()
            }
        })
    }

    /// `vmap(inner, in_axes=, out_axes=, axis_size=)` instantiated: at `types` when given (a
    /// call, whose arguments give the batch size), else at the inner function's declared
    /// types with `axis_size` elements.
    fn batched(
        &self,
        inner: &FnValue<'a>,
        axes: &BatchAxes<'a>,
        types: Option<(&[TensorType], Span)>,
        span: Span,
    ) -> R<Func> {
        let in_axes = Axes::read(axes.in_axes, span, true)?;
        let out_axes = Axes::read(axes.out_axes, span, false)?;
        let given = match axes.axis_size {
            None => None,
            Some(Expr { kind: ExprKind::Int(n), span: s }) if *n >= 1 => {
                Some((usize::try_from(*n).unwrap_or(usize::MAX), *s))
            }
            Some(e) => {
                return Err(Diagnostic::error("E0229", "`axis_size` of `vmap` must be a positive integer")
                    .at(e.span, "not a positive integer literal"))
            }
        };
        let (f, mapped, size) = match types {
            Some((ts, s)) => {
                let k = self.param_count(inner, ts, s)?.min(ts.len());
                let mapped = in_axes.resolve(k, |p| ts[p].rank(), "parameter")?;
                let mut size: Option<(usize, usize)> = None;
                let mut inner_types = ts[..k].to_vec();
                for (p, axis) in mapped.iter().enumerate() {
                    let Some(axis) = *axis else { continue };
                    let n = inner_types[p].shape.remove(axis);
                    match size {
                        Some((m, q)) if m != n => {
                            return Err(Diagnostic::error("E0230", "`vmap` maps axes of different lengths")
                                .at(s, format!("argument {q} has {m} elements along its mapped axis, argument {p} has {n}"))
                                .help("every mapped argument gives one element per batch entry: their mapped axes must have one length"))
                        }
                        _ => size = Some((n, p)),
                    }
                }
                let Some((n, _)) = size else { return Err(no_mapped_parameter(span)) };
                if let Some((m, at)) = given.filter(|&(m, _)| m != n) {
                    return Err(Diagnostic::error("E0230", format!("`axis_size={m}` disagrees with the arguments"))
                        .at(at, "this size")
                        .also(s, format!("these arguments map {n} elements")));
                }
                (self.instantiate_value(inner, Some((&inner_types, s)))?, mapped, n)
            }
            None => {
                let f = self.instantiate_value(inner, None)?;
                let mapped = in_axes.resolve(f.params.len(), |p| f.params[p].ty.rank() + 1, "parameter")?;
                let Some((n, _)) = given else {
                    return Err(Diagnostic::error("E0229", "an exported `vmap` needs `axis_size=`")
                        .at(span, "no batch size")
                        .help("state how many elements the exported function maps over, e.g. `axis_size=32`"));
                };
                (f, mapped, n)
            }
        };
        if mapped.iter().all(Option::is_none) {
            return Err(no_mapped_parameter(span));
        }
        let result_types = f.result_types();
        let stacked = out_axes.resolve(result_types.len(), |r| result_types[r].rank() + 1, "result")?;
        let stacked: Vec<usize> = stacked.into_iter().map(|a| a.expect("out_axes has no None")).collect();
        let diff = self.diff.ok_or_else(|| {
            Diagnostic::error("E0305", "`vmap` needs the transformation passes, which this frontend was not given")
                .at(span, "transformation")
                .note("kiln's driver provides them; a bare frontend only lowers programs without transformations")
        })?;
        let name = format!("vmap_{}", f.name);
        let (g, notes) = diff.vmap(&f, &mapped, &stacked, size, &name).map_err(|e| {
            Diagnostic::error("E0301", format!("cannot take `vmap` of `{}`: {e}", f.name))
                .at(span, "this transformation")
        })?;
        for note in notes {
            self.file.notes.borrow_mut().push(
                Diagnostic::warning("W0004", format!("in `vmap` of `{}`, {note}", f.name))
                    .at(span, "this vmap")
                    .note("the results are exact; only the work differs from one batched op"),
            );
        }
        Ok(g)
    }

    /// The tensor `name` of weights file `file`, through the caller's [`Files`].
    pub(crate) fn load(&self, file: &str, name: &str) -> Result<kiln_ir::Constant, String> {
        match self.file.files {
            Some(files) => files.load(file, name),
            None => Err("this compilation reads no files".into()),
        }
    }

    /// Applies a transformation through the differentiator.
    fn transform(&self, kind: Transform, f: &Func, wrt: Option<&[Ident]>, span: Span) -> R<Func> {
        let diff = self.diff.ok_or_else(|| {
            Diagnostic::error(
                "E0305",
                format!("`{}` needs the autodiff pass, which this frontend was not given", kind.name()),
            )
            .at(span, "transformation")
            .note("kiln's driver provides it; a bare frontend only lowers programs without transformations")
        })?;
        let wrt: Vec<usize> = match wrt {
            _ if !kind.takes_wrt() => vec![],
            None => {
                // As jax.grad: the first parameter.
                if !f.params.first().is_some_and(|p| p.ty.dtype.is_float()) {
                    return Err(Diagnostic::error(
                        "E0303",
                        format!(
                            "`{}` differentiates with respect to the first parameter of `{}`, which is not a float",
                            kind.name(),
                            f.name
                        ),
                    )
                    .at(span, "no float parameter to differentiate")
                    .help("name the parameters with `wrt=[...]`"));
                }
                vec![0]
            }
            Some([]) => {
                return Err(Diagnostic::error(
                    "E0302",
                    format!("`{}` of `{}` names no parameter", kind.name(), f.name),
                )
                .at(span, "`wrt=[]` differentiates with respect to nothing")
                .help("name at least one parameter, e.g. `wrt=[w]`"));
            }
            Some(names) => {
                let mut idx = vec![];
                for n in names {
                    let Some(i) = f.params.iter().position(|p| p.name == n.name) else {
                        let names: Vec<&str> = f.params.iter().map(|p| p.name.as_str()).collect();
                        return Err(Diagnostic::error("E0302", format!("`{}` has no parameter `{}`", f.name, n.name))
                            .at(n.span, "not a parameter")
                            .note(format!("its parameters are: {}", names.join(", "))));
                    };
                    if !f.params[i].ty.dtype.is_float() {
                        return Err(Diagnostic::error(
                            "E0303",
                            format!("cannot differentiate with respect to `{}`, which is {}", n.name, f.params[i].ty),
                        )
                        .at(n.span, "not a float")
                        .note("only f32 and f64 values have derivatives"));
                    }
                    if idx.contains(&i) {
                        return Err(Diagnostic::error("E0302", format!("`{}` is named twice in `wrt`", n.name))
                            .at(n.span, "repeated"));
                    }
                    idx.push(i);
                }
                idx
            }
        };
        let name = format!("{}_{}", kind.name(), f.name);
        diff.transform(kind, f, &wrt, &name).map_err(|e| {
            Diagnostic::error("E0301", format!("cannot take `{}` of `{}`: {e}", kind.name(), f.name))
                .at(span, "this transformation")
        })
    }

    /// Copies the instructions of `f` into this function with its parameters bound to `args`;
    /// returns its result, or a tuple of its results.
    fn inline(&mut self, f: &Func, args: &[Value]) -> R<Val> {
        let mut map: Vec<Value> = args.to_vec();
        for inst in &f.insts {
            let a = inst.args.iter().map(|v| map[v.index()]).collect();
            map.push(self.push(inst.op.clone(), a, inst.span)?);
        }
        let results: Vec<Val> = f.results.iter().map(|r| Val::Tensor(map[r.index()])).collect();
        Ok(if results.len() == 1 { results.into_iter().next().expect("one result") } else { Val::Tuple(results) })
    }

    /// A call of a computed function, `grad(f)(x)`.
    fn apply(&mut self, env: &mut Env, func: &'a Expr, args: &'a [Arg], span: Span) -> R<Val> {
        let fv = self.function_value(func)?;
        if let Some(a) = args.iter().find(|a| a.keyword.is_some()) {
            return Err(Diagnostic::error("E0215", "transformed functions take positional arguments only")
                .at(a.keyword.as_ref().expect("found").span, "keyword argument"));
        }
        let mut values = vec![];
        for a in args {
            // A key passes as its data; the function's parameter types say which are keys.
            values.push(match self.eval(env, &a.value)? {
                Val::Key(t) => t,
                v => self.tensor_arg(v, a.value.span)?,
            });
        }
        let types: Vec<TensorType> = values.iter().map(|&v| self.ty(v).clone()).collect();
        let f = self.instantiate_value(&fv, Some((&types, span)))?;
        self.inline(&f, &values)
    }

    /// Lowers `def` into a standalone function: with `types` as its parameter types (checked
    /// against the declared ones, binding shape variables), or with its declared types, which
    /// must then be fully static.
    fn instantiate(mut self, def: &'a FnDef, types: Option<(&[TensorType], Span)>) -> R<Func> {
        self.func.span = def.span;
        let mut env = Env::default();
        if let Some((types, span)) = types {
            if types.len() != def.params.len() {
                return Err(Diagnostic::error(
                    "E0201",
                    format!("`{}` takes {} arguments but {} were given", def.name.name, def.params.len(), types.len()),
                )
                .at(span, format!("{} arguments", types.len()))
                .also(def.name.span, "defined here"));
            }
            for (p, ty) in def.params.iter().zip(types) {
                let v = self.func.add_param(p.name.name.clone(), ty.clone(), p.name.span);
                let v = if crate::random::is_key_type(&p.ty) { Val::Key(v) } else { Val::Tensor(v) };
                let v =
                    self.check_against(&mut env, v, &p.ty, span, "E0207", &format!("argument `{}`", p.name.name))?;
                env.vars.insert(p.name.name.clone(), v);
            }
            return self.finish(def, env);
        }
        for p in &def.params {
            let mut dims = vec![];
            for d in &p.ty.dims {
                match d {
                    Dim::Known(n, _) => dims.push(*n),
                    Dim::Var(v) => {
                        return Err(Diagnostic::error("E0108", format!("exported function `{}` has a shape variable", def.name.name))
                            .at(v.span, format!("`{}` is not known", v.name))
                            .note("shape variables are inferred at calls; an exported function is called from C, so its shapes must be numbers")
                            .help("write a helper with shape variables and export a function that calls it with fixed shapes"));
                    }
                }
            }
            let key = crate::random::is_key_type(&p.ty);
            let (dtype, dims) =
                if key { (DType::U32, [dims, vec![2]].concat()) } else { (resolve_dtype(&p.ty.dtype)?, dims) };
            check_type_shape(&dims, p.ty.span)?;
            let v = self.func.add_param(p.name.name.clone(), TensorType::new(dtype, dims), p.name.span);
            env.vars.insert(p.name.name.clone(), if key { Val::Key(v) } else { Val::Tensor(v) });
        }
        self.finish(def, env)
    }

    /// Elaborates `def`'s body in `env` (its parameters bound) and sets the results.
    fn finish(mut self, def: &'a FnDef, mut env: Env) -> R<Func> {
        if self.call_stack.contains(&def.name.name.as_str()) {
            return Err(Diagnostic::error("E0109", format!("`{}` calls itself", def.name.name))
                .at(def.name.span, "recursive through a transformation")
                .note("kiln inlines every call, so recursion cannot be compiled"));
        }
        self.call_stack.push(&def.name.name);
        let result = self.eval_block(&mut env, &def.body)?;
        let result = self.check_result(def, &mut env, result)?;
        let parts = match result {
            Val::Tuple(items) => items,
            v => vec![v],
        };
        for (i, part) in parts.into_iter().enumerate() {
            // A key crosses the boundary as its data (jax.random.key_data).
            let v = match part {
                Val::Key(t) => t,
                part => self.tensor_default(part, def.body.result.span)?,
            };
            self.func.results.push(v);
            // `out0`, `out1`, ...; underscores added until no parameter has the name.
            let mut name = format!("out{i}");
            while self.func.params.iter().any(|p| p.name == name) {
                name.push('_');
            }
            self.func.result_names.push(name);
        }
        Ok(self.func)
    }

    /// Checks the body's value against the declared result types (binding any shape variables
    /// they still name) and converts literal results to the declared dtype.
    fn check_result(&mut self, def: &FnDef, env: &mut Env, result: Val) -> R<Val> {
        let Some(ret) = &def.ret else {
            if let Val::Tuple(items) = &result {
                if items.iter().any(|i| matches!(i, Val::Tuple(_))) {
                    return Err(Diagnostic::error("E0214", "functions cannot return nested tuples")
                        .at(def.body.result.span, "nested tuple"));
                }
            }
            return Ok(result);
        };
        let span = def.body.result.span;
        let items = match (ret.len(), result) {
            (1, v @ (Val::Tensor(_) | Val::Lit(_) | Val::Key(_))) => vec![v],
            (n, Val::Tuple(items)) if n == items.len() && n != 1 => items,
            (_, v) => {
                return Err(Diagnostic::error("E0209", "the function's result does not match its declared type")
                    .at(span, format!("this is {}", self.describe(&v)))
                    .also(
                        ret[0].span.to(ret[ret.len() - 1].span),
                        format!("declared as {} value{}", ret.len(), if ret.len() == 1 { "" } else { "s" }),
                    ))
            }
        };
        let mut out = vec![];
        for (item, ty) in items.into_iter().zip(ret) {
            out.push(self.check_against(env, item, ty, span, "E0209", "the function's result")?);
        }
        Ok(if out.len() == 1 { out.pop().unwrap() } else { Val::Tuple(out) })
    }

    /// Checks that `v` has type `ty` (binding shape variables of `env`), converting a literal
    /// to a scalar of the declared dtype. `what` names the value in the message.
    pub(crate) fn check_against(
        &mut self,
        env: &mut Env,
        v: Val,
        ty: &TypeExpr,
        span: Span,
        code: &'static str,
        what: &str,
    ) -> R<Val> {
        if crate::random::is_key_type(ty) {
            return crate::random::check_key(self, env, v, ty, span, code, what);
        }
        let dtype = resolve_dtype(&ty.dtype)?;
        let mismatch = |found: String| {
            Diagnostic::error(code, format!("mismatched types: {what} is {found}, declared {}", type_expr_text(ty)))
                .at(span, format!("this is {found}"))
                .also(ty.span, "declared here")
        };
        let t = match v {
            Val::Lit(l) if ty.dims.is_empty() => self.lit_to(l, dtype, span)?,
            Val::Tensor(t) => t,
            other => return Err(mismatch(self.describe(&other))),
        };
        let actual = self.func.ty(t).clone();
        if actual.dtype != dtype || actual.rank() != ty.dims.len() {
            return Err(mismatch(actual.to_string()));
        }
        for (axis, (d, &n)) in ty.dims.iter().zip(&actual.shape).enumerate() {
            match d {
                Dim::Known(k, _) if *k != n => return Err(mismatch(actual.to_string())),
                Dim::Known(..) => {}
                Dim::Var(var) => {
                    let bound = *env.shape_vars.entry(var.name.clone()).or_insert(n);
                    if bound != n {
                        return Err(Diagnostic::error(
                            "E0208",
                            format!("shape variable `{}` is {bound} and {n} at once", var.name),
                        )
                        .at(span, format!("axis {axis} of this {actual} makes `{}` = {n}", var.name))
                        .also(var.span, format!("`{}` was bound to {bound} by an earlier argument", var.name))
                        .note("a shape variable takes one value per call, from the first argument that mentions it"));
                    }
                }
            }
        }
        Ok(Val::Tensor(t))
    }

    pub fn describe(&self, v: &Val) -> String {
        match v {
            Val::Tensor(t) => self.func.ty(*t).to_string(),
            Val::Lit(l) => format!("the number {}", lit_text(*l)),
            Val::Tuple(items) => format!("a tuple of {} values", items.len()),
            Val::Key(t) => crate::random::key_text(self.func.ty(*t)),
        }
    }

    pub fn ty(&self, v: Value) -> &TensorType {
        self.func.ty(v)
    }

    /// Appends an instruction; a type rule failure here is a compiler bug, since callers check
    /// operands and report user errors first.
    pub fn push(&mut self, op: Op, args: Vec<Value>, span: Span) -> R<Value> {
        let key = (op, args);
        if let Some(&v) = self.pushed.get(&key) {
            return Ok(v);
        }
        let v = self.func.push(key.0.clone(), key.1.clone(), span).map_err(|e| {
            match e.strip_prefix(kiln_ir::types::SHAPE_LIMIT) {
                // Shapes built from valid ones can still exceed the limits (broadcasting two large
                // arrays, one_hot with a huge class count): the user's error, not a bug.
                Some(reason) => {
                    Diagnostic::error("E0213", format!("invalid shape: {reason}")).at(span, "this expression's result")
                }
                None => Diagnostic::error("E9999", format!("internal compiler error: {e}"))
                    .at(span, "while lowering this expression")
                    .help("please report this as a bug in kiln"),
            }
        })?;
        self.pushed.insert(key, v);
        Ok(v)
    }

    /// A block's value. A `let` that fails does not end the block: its names are poisoned
    /// and the rest is checked, so one run reports every independent error of a function (as
    /// rustc's error type does); errors that only follow from a poisoned name are dropped. The
    /// block then fails with its first error, the others going to [`File::recovered`].
    fn eval_block(&mut self, env: &mut Env, block: &'a Block) -> R<Val> {
        let saved = (env.vars.clone(), env.poisoned.clone());
        let mut errors = vec![];
        let mut follow_on = None;
        for l in &block.lets {
            let before = self.follow_ons;
            if let Err(e) = self.eval_let(env, l) {
                if self.follow_ons == before {
                    errors.push(e);
                } else {
                    follow_on = Some(e);
                }
                for name in l.pattern.names() {
                    env.vars.remove(name);
                    env.poisoned.insert(name.to_string());
                }
            }
        }
        let before = self.follow_ons;
        let result = self.eval(env, &block.result);
        (env.vars, env.poisoned) = saved;
        match result {
            Err(e) if self.follow_ons == before => errors.push(e),
            Err(e) => follow_on = Some(e),
            Ok(v) if errors.is_empty() && follow_on.is_none() => return Ok(v),
            Ok(_) => {}
        }
        let mut errors = errors.into_iter();
        match errors.next() {
            Some(first) => {
                self.file.recovered.borrow_mut().extend(errors);
                Err(first)
            }
            None => Err(follow_on.expect("a block without errors failed")),
        }
    }

    fn eval_let(&mut self, env: &mut Env, l: &'a Let) -> R<()> {
        let mut v = self.eval(env, &l.value)?;
        if let Some(ty) = &l.ty {
            v = self.check_against(env, v, ty, l.value.span, "E0209", "the value")?;
        }
        self.bind(env, &l.pattern, v, l.value.span)
    }

    fn bind(&mut self, env: &mut Env, pattern: &Pattern, v: Val, span: Span) -> R<()> {
        match (pattern, v) {
            (Pattern::Ignore(_), _) => Ok(()),
            (Pattern::Name(id), v) => {
                env.poisoned.remove(&id.name);
                env.vars.insert(id.name.clone(), v);
                Ok(())
            }
            (Pattern::Tuple(pats, _), Val::Tuple(items)) if pats.len() == items.len() => {
                pats.iter().zip(items).try_for_each(|(p, item)| self.bind(env, p, item, span))
            }
            // An array of keys comes apart along its first axis: `let (k1, k2) = split(k);`.
            (Pattern::Tuple(pats, _), Val::Key(t)) if self.ty(t).rank() > 1 && self.ty(t).shape[0] == pats.len() => {
                pats.iter().enumerate().try_for_each(|(i, p)| {
                    let key = crate::random::key_at(self, t, i, span)?;
                    self.bind(env, p, key, span)
                })
            }
            (p, v) => Err(Diagnostic::error("E0214", format!("cannot destructure {}", self.describe(&v)))
                .at(p.span(), format!("this pattern expects {}", pattern_text(p)))
                .also(span, format!("this is {}", self.describe(&v)))),
        }
    }

    pub fn eval(&mut self, env: &mut Env, e: &'a Expr) -> R<Val> {
        match &e.kind {
            ExprKind::Int(v) => Ok(Val::Lit(Lit::Int(i64::try_from(*v).map_err(|_| {
                Diagnostic::error("E0218", "integer literal is too large").at(e.span, "exceeds the largest i64")
            })?))),
            ExprKind::Float(v) => Ok(Val::Lit(Lit::Float(*v))),
            ExprKind::Bool(b) => Ok(Val::Lit(Lit::Bool(*b))),
            ExprKind::Name(name) => self.lookup(env, name, e.span),
            ExprKind::Neg(inner) => {
                let v = self.eval(env, inner)?;
                self.negate(v, inner.span, e.span)
            }
            ExprKind::Binary { op, op_span, lhs, rhs } => {
                let a = self.eval(env, lhs)?;
                let b = self.eval(env, rhs)?;
                self.binary(*op, *op_span, (a, lhs.span), (b, rhs.span), e.span)
            }
            ExprKind::Tuple(items) => Ok(Val::Tuple(items.iter().map(|i| self.eval(env, i)).collect::<R<_>>()?)),
            ExprKind::List(_) => Err(Diagnostic::error("E0216", "a list is not a value")
                .at(e.span, "lists only appear as arguments, such as axes and shapes")
                .help("use concat([a, b], axis=0) to join arrays")),
            ExprKind::Block(b) => {
                let mut inner = env.clone();
                self.eval_block(&mut inner, b)
            }
            ExprKind::If { cond, then, otherwise } => self.conditional(env, cond, then, otherwise, e.span),
            ExprKind::Loop(_) => self.loop_expr(env, e),
            ExprKind::Index { base, items } => match self.eval(env, base)? {
                Val::Key(t) => crate::random::index(self, env, t, items, e.span),
                b => {
                    let t = self.tensor_arg(b, base.span)?;
                    self.index(env, t, items, e.span)
                }
            },
            ExprKind::At { base, items, method, args } => self.indexed_update(env, (base, items), method, args, e.span),
            ExprKind::Str(_) => Err(Diagnostic::error("E0233", "a string is not a value")
                .at(e.span, "not a value")
                .note("strings only name options, such as `mode=\"clip\"`")),
            ExprKind::Apply { func, args } => self.apply(env, func, args, e.span),
            ExprKind::Call { callee, .. } if Transform::parse(&callee.name).is_some() => {
                Err(Diagnostic::error("E0304", format!("`{}` makes a function; call it", callee.name))
                    .at(e.span, "a function, not a value")
                    .help(format!("apply it to arguments: `{}(f, ...)(x, ...)`", callee.name)))
            }
            ExprKind::Call { callee, args } => {
                if crate::builtins::is_builtin(&callee.name) {
                    crate::builtins::call(self, env, callee, args, e.span)
                } else {
                    self.call_user(env, callee, args, e.span)
                }
            }
        }
    }

    /// `if cond { then } else { otherwise }`. A literal condition picks its branch here; an
    /// array condition must be a scalar bool, and the branches become the functions of a
    /// conditional ([`Op::Cond`]) over the arrays they read, with one type: a literal result
    /// takes the other branch's type.
    fn conditional(
        &mut self,
        env: &mut Env,
        cond: &'a Expr,
        then: &'a Block,
        otherwise: &'a Expr,
        span: Span,
    ) -> R<Val> {
        let p = match self.eval(env, cond)? {
            Val::Lit(Lit::Bool(taken)) => {
                let mut inner = env.clone();
                return if taken { self.eval_block(&mut inner, then) } else { self.eval(&mut inner, otherwise) };
            }
            Val::Tensor(t) if *self.ty(t) == TensorType::scalar(DType::Bool) => t,
            v => return Err(not_a_condition("if", cond.span, &self.describe(&v))),
        };
        // Each branch is elaborated as a function of every array in scope; those neither reads
        // are dropped afterwards.
        let mut captured: Vec<Value> = env.vars.values().flat_map(tensors_of).collect();
        captured.sort_unstable();
        captured.dedup();
        let (mut a, va) = self.branch("then", env, &captured, |child, env| child.eval_block(env, then))?;
        let (mut b, vb) = self.branch("otherwise", env, &captured, |child, env| child.eval(env, otherwise))?;
        let mismatch = |first: String, second: String| {
            Diagnostic::error("E0224", "the branches of `if` have different types")
                .at(then.result.span, format!("this is {first}"))
                .also(otherwise.span, format!("this is {second}"))
                .help(
                    "both branches must give one type: convert with `cast(x, dtype)` or broadcast with `broadcast_to`",
                )
        };
        let (parts_a, parts_b) = match (&va, &vb) {
            (Val::Tuple(x), Val::Tuple(y)) if x.len() == y.len() => (x.clone(), y.clone()),
            (Val::Tuple(_), _) | (_, Val::Tuple(_)) => {
                return Err(mismatch(a.describe(&va), b.describe(&vb)));
            }
            _ => (vec![va.clone()], vec![vb.clone()]),
        };
        let mut results = vec![];
        let mut kinds = vec![];
        for (x, y) in parts_a.into_iter().zip(parts_b) {
            kinds.push(if matches!((&x, &y), (Val::Key(_), Val::Key(_))) { Carry::Key } else { Carry::Array });
            let (x, y) = match (x, y) {
                (Val::Tensor(x), Val::Tensor(y)) | (Val::Key(x), Val::Key(y)) => (x, y),
                (Val::Lit(l), Val::Tensor(y)) => (a.lit_as(l, &b.ty(y).clone(), then.result.span)?, y),
                (Val::Tensor(x), Val::Lit(l)) => (x, b.lit_as(l, &a.ty(x).clone(), otherwise.span)?),
                (x, y) => (a.tensor_arg(x, then.result.span)?, b.tensor_arg(y, otherwise.span)?),
            };
            if a.ty(x) != b.ty(y) {
                return Err(mismatch(a.ty(x).to_string(), b.ty(y).to_string()));
            }
            results.push((x, y));
        }
        for (k, (x, y)) in results.iter().enumerate() {
            a.func.results.push(*x);
            b.func.results.push(*y);
            a.func.result_names.push(format!("r{k}"));
            b.func.result_names.push(format!("r{k}"));
        }
        let used: Vec<bool> =
            (0..captured.len()).map(|i| a.func.reads(Value(i as u32)) || b.func.reads(Value(i as u32))).collect();
        let branches = Bodies::new(vec![a.func.keep_params(&used), b.func.keep_params(&used)]);
        let args: Vec<Value> =
            std::iter::once(p).chain(captured.iter().zip(&used).filter(|(_, &u)| u).map(|(&v, _)| v)).collect();
        let values: Vec<Val> = (0..results.len())
            .map(|result| {
                Ok(kinds[result].value(self.push(
                    Op::Cond { branches: branches.clone(), result },
                    args.clone(),
                    span,
                )?))
            })
            .collect::<R<_>>()?;
        Ok(match &va {
            Val::Tuple(_) => Val::Tuple(values),
            _ => values.into_iter().next().expect("one result"),
        })
    }

    /// Elaborates a branch with `body` in a function whose parameters stand for `captured`,
    /// with `env`'s names rebound to them.
    fn branch(
        &self,
        name: &str,
        env: &Env,
        captured: &[Value],
        body: impl FnOnce(&mut Elab<'a>, &mut Env) -> R<Val>,
    ) -> R<(Elab<'a>, Val)> {
        self.body_function(name, env, &[], captured, |child, env, _| body(child, env))
    }

    /// Elaborates `body` in a function whose parameters are `leading` (given to `body`), then
    /// ones that stand for `captured`, with `env`'s names rebound to them.
    fn body_function(
        &self,
        name: &str,
        env: &Env,
        leading: &[(String, TensorType)],
        captured: &[Value],
        body: impl FnOnce(&mut Elab<'a>, &mut Env, &[Value]) -> R<Val>,
    ) -> R<(Elab<'a>, Val)> {
        let mut child = self.child(name);
        let leading: Vec<Value> =
            leading.iter().map(|(n, ty)| child.func.add_param(n.clone(), ty.clone(), Span::default())).collect();
        let map: HashMap<Value, Value> = captured
            .iter()
            .enumerate()
            .map(|(i, &v)| (v, child.func.add_param(format!("c{i}"), self.ty(v).clone(), Span::default())))
            .collect();
        let mut inner = env.clone();
        for v in inner.vars.values_mut() {
            *v = rebind(v, &map);
        }
        let v = body(&mut child, &mut inner, &leading)?;
        Ok((child, v))
    }

    /// `loop PATTERN = INIT for INDEX < COUNT { BODY }`, a counted loop ([`Op::Loop`]),
    /// `loop PATTERN = INIT while COND { BODY }` ([`Op::While`]), or `loop PATTERN = INIT for
    /// ROW in [rev] XS { BODY }` and `scan ...` with the same parts ([`Op::Scan`]). The carries
    /// are the pattern's names, started from `init`; the body, a function of the index (when
    /// counted), the carries, the rows (when over rows) and the arrays it reads, gives the next
    /// carries, of the same types (a scan's, a pair: those and its ys). A count is an integer:
    /// a constant, or an i32 or i64 scalar known when the program runs; a condition, read
    /// before each run, a scalar bool of the carries and the arrays in scope.
    fn loop_expr(&mut self, env: &mut Env, e: &'a Expr) -> R<Val> {
        // A carry started from a number takes the dtype its body gives it (a float scalar
        // accumulating f64 values is f64), as JAX's weakly typed constants do: the loop is
        // elaborated again with that dtype.
        let mut retype = BTreeMap::new();
        loop {
            match self.loop_attempt(env, e, &retype)? {
                Ok(v) => return Ok(v),
                Err((k, dtype)) => retype.insert(k, dtype),
            };
        }
    }

    /// [`Self::loop_expr`] with the carries written as numbers at positions in `retype` of the
    /// dtypes it gives; or the position and dtype of such a carry whose body gives another
    /// dtype than its number's.
    fn loop_attempt(
        &mut self,
        env: &mut Env,
        e: &'a Expr,
        retype: &BTreeMap<usize, DType>,
    ) -> R<Result<Val, (usize, DType)>> {
        let ExprKind::Loop(l) = &e.kind else { unreachable!("a loop") };
        let LoopExpr { scan, pattern, init, control, body } = &**l;
        let keyword = if *scan { "scan" } else { "loop" };
        // A counted loop's bounds (0 and the count) and index.
        let counted = match control {
            LoopControl::For { index, count, .. } => {
                let (zero, bound) = self.loop_bounds(env, count)?;
                Some((index, zero, bound))
            }
            LoopControl::While(..) | LoopControl::Over { .. } => None,
        };
        // A bounded while loop's bounds: it is a counted loop whose body runs while the
        // condition holds.
        let bounded = match control {
            LoopControl::While(_, Some(max_iter)) => Some(self.loop_bounds(env, max_iter)?),
            _ => None,
        };
        // The carries: the pattern's names, bound to the initial values (each an array).
        let start = self.eval(env, init)?;
        let mut names: Vec<(String, Span)> = vec![];
        let mut inits: Vec<Value> = vec![];
        let mut kinds = vec![];
        self.carries(pattern, start, init.span, &mut names, &mut inits, &mut kinds, retype)?;
        // A loop over rows: the row pattern's names, bound to the arrays whose rows they take.
        let (mut row_names, mut xs, mut row_kinds) = (vec![], vec![], vec![]);
        if let LoopControl::Over { row, xs: arrays, .. } = control {
            let v = self.eval(env, arrays)?;
            self.carries(row, v, arrays.span, &mut row_names, &mut xs, &mut row_kinds, &BTreeMap::new())?;
            let length = |x: Value| self.ty(x).shape.first().copied();
            if let Some((k, &x)) =
                xs.iter().enumerate().find(|(_, &x)| length(x).is_none() || length(x) != length(xs[0]))
            {
                let d = Diagnostic::error("E0227", format!("`{keyword}` needs arrays of one length to run over"));
                return Err(match length(x) {
                    None => d.at(arrays.span, format!("`{}` is {}, which has no rows", row_names[k].0, self.ty(x))),
                    Some(n) => d
                        .at(arrays.span, format!("`{}` has {n} rows", row_names[k].0))
                        .also(row_names[0].1, format!("`{}` has {} rows", row_names[0].0, length(xs[0]).unwrap_or(0))),
                }
                .help("each array gives one row per run: their first axes must have one length"));
            }
        }
        let mut captured: Vec<Value> = env.vars.values().flat_map(tensors_of).collect();
        captured.sort_unstable();
        captured.dedup();
        let carried: Vec<(String, TensorType)> =
            names.iter().zip(&inits).map(|((n, _), &v)| (n.clone(), self.ty(v).clone())).collect();
        let index = counted.as_ref().map(|(index, _, bound)| (index.name.clone(), self.ty(*bound).clone()));
        let rows: Vec<(String, TensorType)> = row_names
            .iter()
            .zip(&xs)
            .map(|((n, _), &x)| (n.clone(), TensorType::new(self.ty(x).dtype, self.ty(x).shape[1..].to_vec())))
            .collect();
        let leading: Vec<(String, TensorType)> =
            index.iter().cloned().chain(carried.iter().cloned()).chain(rows.iter().cloned()).collect();
        let leading_kinds: Vec<Carry> =
            index.iter().map(|_| Carry::Array).chain(kinds.iter().copied()).chain(row_kinds.iter().copied()).collect();
        let bind = |env: &mut Env, params: &[Value]| {
            for (((n, _), &p), kind) in leading.iter().zip(params).zip(&leading_kinds) {
                env.vars.insert(n.clone(), kind.value(p));
            }
        };
        let (mut child, result) = self.body_function("body", env, &leading, &captured, |child, env, params| {
            bind(env, params);
            child.eval_block(env, body)
        })?;
        // The body's value: the next carries, matching the pattern (and a scan's ys).
        let (next, ys) = match result {
            Val::Tuple(mut pair) if *scan && pair.len() == 2 => {
                let ys = pair.pop().expect("a pair");
                (pair.pop().expect("a pair"), Some(ys))
            }
            v if *scan => {
                return Err(Diagnostic::error("E0228", "the body of `scan` must give a pair (carries, y)")
                    .at(body.result.span, format!("this is {}", child.describe(&v)))
                    .help("end the body with `(c, y)`: the next carries and this row's y, stacked into the ys"))
            }
            v => (v, None),
        };
        let parts = match (pattern, next) {
            (Pattern::Tuple(..), Val::Tuple(items)) if items.len() == inits.len() => items,
            (Pattern::Tuple(..), v) => {
                return Err(Diagnostic::error(
                    "E0226",
                    format!("the body of `{keyword}` gives other types than its carries"),
                )
                .at(body.result.span, format!("this is {}", child.describe(&v)))
                .also(pattern.span(), format!("{} carries", inits.len())))
            }
            (_, v) => vec![v],
        };
        for (k, part) in parts.into_iter().enumerate() {
            let ty = self.ty(inits[k]).clone();
            let v = match (part, kinds[k]) {
                (Val::Key(t), Carry::Key) => t,
                (v, Carry::Key) => {
                    return Err(Diagnostic::error(
                        "E0226",
                        format!("the body of `{keyword}` gives other types than its carries"),
                    )
                    .at(body.result.span, format!("this gives {} for `{}`", child.describe(&v), names[k].0))
                    .also(names[k].1, format!("`{}` is a {}", names[k].0, crate::random::key_text(&ty))))
                }
                (Val::Lit(l), _) => child.lit_as(l, &ty, body.result.span)?,
                (v, _) => child.tensor_arg(v, body.result.span)?,
            };
            let given = child.ty(v).clone();
            if given != ty && kinds[k] == Carry::Number && given.shape == ty.shape && !retype.contains_key(&k) {
                return Ok(Err((k, given.dtype)));
            }
            if given != ty {
                return Err(Diagnostic::error(
                    "E0226",
                    format!("the body of `{keyword}` gives other types than its carries"),
                )
                .at(body.result.span, format!("this gives {} for `{}`", child.ty(v), names[k].0))
                .also(names[k].1, format!("`{}` is {ty}", names[k].0))
                .help("convert with `cast(x, dtype)` or broadcast, so that each carry keeps its type"));
            }
            child.func.results.push(v);
            child.func.result_names.push(format!("r{k}"));
        }
        // A scan's ys: one array, or a tuple of arrays, per row.
        let stacked_tuple = matches!(ys, Some(Val::Tuple(_)));
        let ys: Vec<Val> = match ys {
            Some(Val::Tuple(items)) => items,
            Some(y) => vec![y],
            None => vec![],
        };
        // Keys among the ys stack into an array of keys.
        let mut y_kinds = vec![];
        for (k, y) in ys.into_iter().enumerate() {
            let v = match y {
                Val::Key(t) => {
                    y_kinds.push(Carry::Key);
                    t
                }
                y => {
                    y_kinds.push(Carry::Array);
                    child.tensor_arg(y, body.result.span)?
                }
            };
            child.func.results.push(v);
            child.func.result_names.push(format!("y{k}"));
        }
        // A while loop's condition: a function of the same parameters.
        let condition = match control {
            LoopControl::While(cond, _) => {
                let (mut c, v) = self.body_function("cond", env, &leading, &captured, |child, env, params| {
                    bind(env, params);
                    child.eval(env, cond)
                })?;
                let go = match v {
                    Val::Lit(Lit::Bool(b)) => c.lit_to(Lit::Bool(b), DType::Bool, cond.span)?,
                    Val::Tensor(t) if *c.ty(t) == TensorType::scalar(DType::Bool) => t,
                    v => return Err(not_a_condition("while", cond.span, &c.describe(&v))),
                };
                c.func.results.push(go);
                c.func.result_names.push("go".into());
                Some(c.func)
            }
            LoopControl::For { .. } | LoopControl::Over { .. } => None,
        };
        let fixed = leading.len();
        let read = |p: usize| {
            child.func.reads(Value(p as u32)) || condition.as_ref().is_some_and(|c| c.reads(Value(p as u32)))
        };
        let keep: Vec<bool> = (0..fixed + captured.len()).map(|p| p < fixed || read(p)).collect();
        let inner = captured.iter().zip(&keep[fixed..]).filter(|(_, &k)| k).map(|(&v, _)| v);
        let (op, args): (Box<dyn Fn(usize) -> Op>, Vec<Value>) = match (counted, condition, control) {
            (_, _, &LoopControl::Over { reverse, checkpoint, .. }) => {
                let body = Bodies::new(vec![child.func.keep_params(&keep)]);
                let args = inits.iter().chain(&xs).copied().chain(inner).collect();
                let (carries, scanned) = (inits.len(), xs.len());
                let op = move |result| Op::Scan { body: body.clone(), carries, scanned, reverse, checkpoint, result };
                (Box::new(op), args)
            }
            (Some((_, zero, bound)), _, _) => {
                let body = Bodies::new(vec![child.func.keep_params(&keep)]);
                let args = [zero, bound].into_iter().chain(inits.iter().copied()).chain(inner).collect();
                let checkpoint = matches!(control, LoopControl::For { checkpoint: true, .. });
                (Box::new(move |result| Op::Loop { body: body.clone(), checkpoint, result }), args)
            }
            (None, Some(cond), _) if bounded.is_some() => {
                let (zero, bound) = bounded.expect("checked");
                let body = Bodies::new(vec![guarded(
                    &cond.keep_params(&keep),
                    &child.func.keep_params(&keep),
                    self.ty(bound),
                )]);
                let args = [zero, bound].into_iter().chain(inits.iter().copied()).chain(inner).collect();
                (Box::new(move |result| Op::Loop { body: body.clone(), checkpoint: false, result }), args)
            }
            (None, Some(cond), _) => {
                let bodies = Bodies::new(vec![cond.keep_params(&keep), child.func.keep_params(&keep)]);
                let args = inits.iter().copied().chain(inner).collect();
                (Box::new(move |result| Op::While { bodies: bodies.clone(), result }), args)
            }
            (None, None, _) => unreachable!("a loop is counted, runs over rows or has a condition"),
        };
        let result_kinds: Vec<Carry> = kinds.iter().chain(&y_kinds).copied().collect();
        let mut values: Vec<Val> = (0..child.func.results.len())
            .map(|result| {
                let kind = result_kinds[result];
                Ok(kind.value(self.push(op(result), args.clone(), e.span)?))
            })
            .collect::<R<_>>()?;
        let stacked = values.split_off(inits.len());
        let last = match pattern {
            Pattern::Tuple(..) => Val::Tuple(values),
            _ => values.into_iter().next().expect("one carry"),
        };
        Ok(Ok(match (*scan, stacked_tuple) {
            (false, _) => last,
            (true, true) => Val::Tuple(vec![last, Val::Tuple(stacked)]),
            (true, false) => Val::Tuple(vec![last, stacked.into_iter().next().expect("one y")]),
        }))
    }

    /// The bounds 0 and `count` of a counted loop: an integer constant (as i32) or an integer
    /// scalar known at run time (as i64 when unsigned: the index is always signed, so that
    /// every target reads bounds one way).
    fn loop_bounds(&mut self, env: &mut Env, count: &'a Expr) -> R<(Value, Value)> {
        let bound = match self.eval(env, count)? {
            Val::Lit(Lit::Int(n)) => self.lit_to(Lit::Int(n), DType::I32, count.span)?,
            Val::Tensor(t) if self.ty(t).shape.is_empty() && self.ty(t).dtype.is_unsigned() => {
                self.convert(t, DType::I64, count.span)?
            }
            Val::Tensor(t) if self.ty(t).shape.is_empty() && self.ty(t).dtype.is_int() => t,
            v => {
                return Err(Diagnostic::error("E0225", "the count of `loop` must be an integer scalar")
                    .at(count.span, format!("this is {}", self.describe(&v)))
                    .help("count with an integer: a constant, a shape variable, or an i32 or i64 scalar"))
            }
        };
        let zero = self.lit_to(Lit::Int(0), self.ty(bound).dtype, count.span)?;
        Ok((zero, bound))
    }

    /// Binds a loop's carry pattern to its initial value: the names (with their spans) and the
    /// arrays, in order, and what each was (a number takes the dtype `retype` gives its
    /// position, else its default one).
    #[allow(clippy::too_many_arguments)]
    fn carries(
        &mut self,
        pattern: &Pattern,
        v: Val,
        span: Span,
        names: &mut Vec<(String, Span)>,
        inits: &mut Vec<Value>,
        kinds: &mut Vec<Carry>,
        retype: &BTreeMap<usize, DType>,
    ) -> R<()> {
        match (pattern, v) {
            (Pattern::Name(id), v) => {
                kinds.push(match v {
                    Val::Lit(_) => Carry::Number,
                    Val::Key(_) => Carry::Key,
                    _ => Carry::Array,
                });
                inits.push(match (v, retype.get(&inits.len())) {
                    (Val::Lit(l), Some(&dtype)) => self.lit_to(l, dtype, span)?,
                    (Val::Key(t), _) => t,
                    (v, _) => self.tensor_arg(v, span)?,
                });
                names.push((id.name.clone(), id.span));
                Ok(())
            }
            (Pattern::Tuple(items, _), Val::Tuple(vs)) if items.len() == vs.len() => {
                items.iter().zip(vs).try_for_each(|(p, v)| self.carries(p, v, span, names, inits, kinds, retype))
            }
            (Pattern::Ignore(s), _) => Err(Diagnostic::error("E0214", "a loop's carries need names")
                .at(*s, "`_` cannot be carried")
                .help("name the value, as `_unused`, if the body does not read it")),
            (p, v) => Err(Diagnostic::error("E0214", format!("cannot destructure {}", self.describe(&v)))
                .at(p.span(), format!("this pattern expects {}", pattern_text(p)))
                .also(span, format!("this is {}", self.describe(&v)))),
        }
    }

    /// The literal as an array of `ty`: a scalar constant broadcast to its shape.
    fn lit_as(&mut self, l: Lit, ty: &TensorType, span: Span) -> R<Value> {
        let c = self.lit_to(l, ty.dtype, span)?;
        if ty.shape.is_empty() {
            return Ok(c);
        }
        self.push(Op::Broadcast { shape: ty.shape.clone(), dims: vec![] }, vec![c], span)
    }

    fn lookup(&mut self, env: &Env, name: &str, span: Span) -> R<Val> {
        if let Some(v) = env.vars.get(name) {
            return Ok(v.clone());
        }
        if env.poisoned.contains(name) {
            self.follow_ons += 1;
            return Err(Diagnostic::error("E0101", format!("`{name}` has no value: its `let` failed"))
                .at(span, "bound by a failed `let`"));
        }
        if let Some(&n) = env.shape_vars.get(name) {
            return Ok(Val::Lit(Lit::Int(n as i64)));
        }
        if self.file.fns.contains_key(name) || crate::builtins::is_builtin(name) {
            return Err(Diagnostic::error("E0101", format!("`{name}` is a function, not a value"))
                .at(span, "a function")
                .help(format!("call it: `{name}(...)`")));
        }
        let candidates = env.vars.keys().chain(env.shape_vars.keys()).map(String::as_str);
        let d = Diagnostic::error("E0101", format!("cannot find value `{name}` in this scope"))
            .at(span, "not found in this scope");
        Err(match suggest(name, candidates) {
            Some(s) => d.help(format!("a value with a similar name exists: `{s}`")),
            None => d,
        })
    }

    fn call_user(&mut self, env: &mut Env, callee: &Ident, args: &'a [Arg], span: Span) -> R<Val> {
        let Some(&def) = self.file.fns.get(callee.name.as_str()) else {
            return Err(unknown_function(&callee.name, callee.span, &self.file.fns));
        };
        if self.call_stack.contains(&def.name.name.as_str()) {
            return Err(Diagnostic::error("E0109", format!("`{}` calls itself", def.name.name))
                .at(span, "recursive call")
                .also(def.name.span, "defined here")
                .note("kiln inlines every call, so recursion cannot be compiled"));
        }
        if self.call_stack.len() >= MAX_CALL_DEPTH {
            return Err(Diagnostic::error("E0004", format!("calls nest more than {MAX_CALL_DEPTH} deep"))
                .at(span, "this call is one too many")
                .note("kiln inlines every call, and refuses rather than risk overflowing its stack"));
        }
        if let Some(a) = args.iter().find(|a| a.keyword.is_some()) {
            return Err(Diagnostic::error("E0215", "functions defined in kiln take positional arguments only")
                .at(a.keyword.as_ref().unwrap().span, "keyword argument"));
        }
        if args.len() != def.params.len() {
            return Err(Diagnostic::error(
                "E0201",
                format!(
                    "`{}` takes {} argument{} but {} {} given",
                    def.name.name,
                    def.params.len(),
                    plural(def.params.len()),
                    args.len(),
                    if args.len() == 1 { "was" } else { "were" }
                ),
            )
            .at(span, format!("{} argument{}", args.len(), plural(args.len())))
            .also(def.name.span, "defined here"));
        }
        let mut inner = Env::default();
        let mut tensors = vec![];
        for (p, a) in def.params.iter().zip(args) {
            let v = self.eval(env, &a.value)?;
            let v = self
                .check_against(&mut inner, v, &p.ty, a.value.span, "E0207", &format!("argument `{}`", p.name.name))
                .map_err(|d| d.also(p.name.span, "parameter declared here"))?;
            if let Val::Tensor(t) | Val::Key(t) = v {
                tensors.push(t);
            }
            inner.vars.insert(p.name.name.clone(), v);
        }
        // Only a call whose arguments are all arrays is remembered (a literal stays weakly typed).
        let key = (tensors.len() == def.params.len()).then_some((def.name.name.as_str(), tensors));
        if let Some(v) = key.as_ref().and_then(|k| self.calls.get(k)) {
            return Ok(v.clone());
        }
        if let Some(key) = &key {
            self.file.called.borrow_mut().insert(key.0);
        }
        self.call_stack.push(&def.name.name);
        let result =
            self.eval_block(&mut inner, &def.body).and_then(|r| self.check_result(def, &mut inner, r)).map_err(|d| {
                // The calls that led to an error, up to a few (not a deep chain's hundreds).
                if d.labels.iter().any(|l| l.span == span) || d.labels.len() > 8 {
                    d
                } else {
                    d.also(span, format!("in this call of `{}`", def.name.name))
                }
            });
        self.call_stack.pop();
        let result = result?;
        if let Some(key) = key {
            self.calls.insert(key, result.clone());
        }
        Ok(result)
    }

    // ---- values and conversions -------------------------------------------------------

    /// A tensor value; literals become scalars of their default dtype.
    pub fn tensor_default(&mut self, v: Val, span: Span) -> R<Value> {
        match v {
            Val::Lit(l) => self.lit_to(l, l.default_dtype(), span),
            v => self.tensor_arg(v, span),
        }
    }

    /// A tensor value; literals become scalars of their default dtype, tuples are an error.
    pub fn tensor_arg(&mut self, v: Val, span: Span) -> R<Value> {
        match v {
            Val::Tensor(t) => Ok(t),
            Val::Lit(l) => self.lit_to(l, l.default_dtype(), span),
            Val::Tuple(items) => Err(Diagnostic::error("E0214", "expected an array, found a tuple")
                .at(span, format!("a tuple of {} values", items.len()))
                .help("destructure it first: `let (a, b) = ...;`")),
            Val::Key(t) => Err(crate::random::key_as_array(self.ty(t), span)),
        }
    }

    /// A scalar constant of `dtype` holding the literal.
    pub fn lit_to(&mut self, l: Lit, dtype: DType, span: Span) -> R<Value> {
        let literal = match (l, dtype) {
            (Lit::Bool(b), DType::Bool) => Literal::Bool(b),
            (Lit::Bool(b), d) => Literal::of_i64(d, b as i64),
            (Lit::Float(_) | Lit::Int(_), d) if d.is_half() && overflows_half(l, d) => {
                let largest = if d == DType::F16 { "65504" } else { "3.3895314e38" };
                return Err(Diagnostic::error("E0218", format!("literal `{}` does not fit in {d}", lit_text(l)))
                    .at(span, format!("out of range for {d}"))
                    .note(format!(
                        "the largest finite {d} is {largest}; a literal that rounds to infinity is refused"
                    )));
            }
            (Lit::Int(i), d) if d.is_int() => {
                let (lo, hi) = d.int_range();
                if !(lo..=hi).contains(&i) {
                    return Err(Diagnostic::error("E0218", format!("literal `{i}` does not fit in {d}"))
                        .at(span, format!("out of range for {d}")));
                }
                Literal::Int(d, i)
            }
            (Lit::Int(i), d) => Literal::of_i64(d, i),
            (Lit::Float(f), d) if d.is_float() => Literal::of_f64(d, f),
            (Lit::Float(f), d) => {
                return Err(Diagnostic::error("E0202", format!("a float literal cannot be {d}"))
                    .at(span, format!("`{}` is a float", lit_text(Lit::Float(f)))))
            }
        };
        self.push(Op::Const(literal), vec![], span)
    }

    /// Converts `t` to `dtype` (no instruction when it already is).
    pub fn convert(&mut self, t: Value, dtype: DType, span: Span) -> R<Value> {
        if self.ty(t).dtype == dtype {
            Ok(t)
        } else {
            self.push(Op::Convert { to: dtype }, vec![t], span)
        }
    }

    /// Broadcasts `t` to `shape`, which numpy's rules must allow (checked by the caller).
    pub fn broadcast(&mut self, t: Value, shape: &[usize], span: Span) -> R<Value> {
        let ty = self.ty(t);
        if ty.shape == shape {
            return Ok(t);
        }
        let offset = shape.len() - ty.rank();
        let dims = (offset..shape.len()).collect();
        self.push(Op::Broadcast { shape: shape.to_vec(), dims }, vec![t], span)
    }

    /// Reshapes `t` (no instruction when the shape is already right).
    pub fn reshape(&mut self, t: Value, shape: Vec<usize>, span: Span) -> R<Value> {
        if self.ty(t).shape == shape {
            Ok(t)
        } else {
            self.push(Op::Reshape { shape }, vec![t], span)
        }
    }

    /// Transposes `t` by `perm` (no instruction when it is the identity).
    pub fn transpose(&mut self, t: Value, perm: Vec<usize>, span: Span) -> R<Value> {
        if perm.iter().enumerate().all(|(i, &p)| i == p) {
            Ok(t)
        } else {
            self.push(Op::Transpose { perm }, vec![t], span)
        }
    }

    /// The literal as `dtype`, broadcast to `shape`.
    pub fn splat(&mut self, l: Lit, dtype: DType, shape: &[usize], span: Span) -> R<Value> {
        let c = self.lit_to(l, dtype, span)?;
        self.broadcast(c, shape, span)
    }

    /// A float version of `t`: integers and bools convert to f32 (as jax.numpy does for exp,
    /// true division and the like).
    pub fn float_of(&mut self, t: Value, span: Span) -> R<Value> {
        let d = self.ty(t).dtype;
        if d.is_float() {
            Ok(t)
        } else {
            self.convert(t, DType::F32, span)
        }
    }

    pub fn require_numeric(&self, t: Value, span: Span, what: &str) -> R<()> {
        let ty = self.ty(t);
        if ty.dtype.is_numeric() {
            Ok(())
        } else {
            Err(Diagnostic::error("E0202", format!("cannot {what} a value of type {ty}"))
                .at(span, format!("this is {ty}"))
                .help("convert it first, e.g. `cast(x, i32)`"))
        }
    }

    /// Several values brought to one dtype (JAX promotion, literals weak) and one broadcast
    /// shape. `spans` are the operands' spans, for errors.
    pub fn unify(&mut self, vals: Vec<(Val, Span)>, span: Span) -> R<Vec<Value>> {
        let mut dtype: Option<DType> = None;
        for (v, s) in &vals {
            if let Val::Tensor(t) = v {
                let d = self.ty(*t).dtype;
                dtype = Some(dtype.map_or(d, |e| promote(e, d)));
            } else if let Val::Tuple(_) = v {
                return Err(Diagnostic::error("E0214", "expected an array, found a tuple").at(*s, self.describe(v)));
            } else if let Val::Key(t) = v {
                return Err(crate::random::key_as_array(self.ty(*t), *s));
            }
        }
        // Literals are weak: they join the arrays' dtype, except that a float literal lifts
        // integers and bools to f32 and an integer literal lifts bools to i32.
        for (v, _) in &vals {
            if let Val::Lit(l) = v {
                dtype = Some(match (dtype, l) {
                    (None, l) => l.default_dtype(),
                    (Some(d), Lit::Float(_)) if !d.is_float() => DType::F32,
                    (Some(DType::Bool), Lit::Int(_)) => DType::I32,
                    (Some(d), _) => d,
                });
            }
        }
        let dtype = dtype.expect("unify takes at least one value");
        let mut shape: Vec<usize> = vec![];
        let mut shape_from: Option<Span> = None;
        let mut values = vec![];
        for (v, s) in vals {
            let t = match v {
                Val::Lit(l) => self.lit_to(l, dtype, s)?,
                Val::Tensor(t) => self.convert(t, dtype, s)?,
                Val::Tuple(_) | Val::Key(_) => unreachable!("rejected above"),
            };
            let ts = self.ty(t).shape.clone();
            shape = match broadcast_shapes(&shape, &ts) {
                Some(b) => b,
                None => {
                    let d = Diagnostic::error(
                        "E0203",
                        format!("cannot broadcast {} with {}", TensorType::new(dtype, shape.clone()), self.ty(t)),
                    )
                    .at(s, format!("this is {}", self.ty(t)));
                    let d = match shape_from {
                        Some(p) => d.also(p, format!("this is {}", TensorType::new(dtype, shape.clone()))),
                        None => d,
                    };
                    return Err(
                        d.note("dimensions are compared from the right; each pair must be equal or one of them 1")
                    );
                }
            };
            if !ts.is_empty() && shape_from.is_none() {
                shape_from = Some(s);
            }
            values.push(t);
        }
        values.into_iter().map(|t| self.broadcast(t, &shape, span)).collect()
    }

    fn binary(&mut self, op: BinOp, op_span: Span, (a, sa): (Val, Span), (b, sb): (Val, Span), span: Span) -> R<Val> {
        if let (Val::Lit(x), Val::Lit(y)) = (&a, &b) {
            match fold(op, *x, *y) {
                Ok(Some(l)) => return Ok(Val::Lit(l)),
                Ok(None) => {}
                Err(()) => {
                    return Err(Diagnostic::error(
                        "E0218",
                        format!("`{} {} {}` overflows i64", lit_text(*x), op.symbol(), lit_text(*y)),
                    )
                    .at(span, "constant arithmetic out of range")
                    .note("integer constants are computed exactly in 64 bits, or not at all"))
                }
            }
        }
        if op == BinOp::MatMul {
            return self.matmul((a, sa), (b, sb), span).map(Val::Tensor);
        }
        // x ** n for a small literal integer n: repeated multiplication (exact, any dtype).
        if let (BinOp::Pow, Val::Lit(Lit::Int(n @ 0..=16))) = (op, &b) {
            let x = self.tensor_arg(a, sa)?;
            self.require_numeric(x, sa, "raise to a power")?;
            return self.int_power(x, *n as u32, span).map(Val::Tensor);
        }
        let vals = self.unify(vec![(a, sa), (b, sb)], span)?;
        let (mut x, mut y) = (vals[0], vals[1]);
        let dtype = self.ty(x).dtype;
        if op == BinOp::Rem {
            for (t, s) in [(x, sa), (y, sb)] {
                self.require_numeric(t, s, "take `%` of")?;
            }
            return crate::builtins::remainder(self, x, y, span).map(Val::Tensor);
        }
        let ir_op = match op {
            BinOp::Add => BinaryOp::Add,
            BinOp::Sub => BinaryOp::Sub,
            BinOp::Mul => BinaryOp::Mul,
            BinOp::Div => BinaryOp::Div,
            BinOp::Pow => BinaryOp::Pow,
            BinOp::Eq => BinaryOp::Eq,
            BinOp::Ne => BinaryOp::Ne,
            BinOp::Lt => BinaryOp::Lt,
            BinOp::Le => BinaryOp::Le,
            BinOp::Gt => BinaryOp::Gt,
            BinOp::Ge => BinaryOp::Ge,
            BinOp::MatMul | BinOp::Rem => unreachable!("handled above"),
        };
        if !ir_op.is_comparison() && dtype == DType::Bool {
            return Err(Diagnostic::error("E0202", format!("cannot apply `{}` to bool values", op.symbol()))
                .at(op_span, "arithmetic on bool")
                .help("convert first, e.g. `cast(x, i32)`"));
        }
        if matches!(ir_op, BinaryOp::Div | BinaryOp::Pow) && !dtype.is_float() {
            x = self.float_of(x, sa)?;
            y = self.float_of(y, sb)?;
        }
        self.push(Op::Binary(ir_op), vec![x, y], span).map(Val::Tensor)
    }

    /// x^n by square-and-multiply.
    fn int_power(&mut self, x: Value, n: u32, span: Span) -> R<Value> {
        if n == 0 {
            let one = self.lit_to(Lit::Int(1), self.ty(x).dtype, span)?;
            let shape = self.ty(x).shape.clone();
            return self.broadcast(one, &shape, span);
        }
        let mut result: Option<Value> = None;
        let mut base = x;
        let mut k = n;
        loop {
            if k & 1 == 1 {
                result = Some(match result {
                    None => base,
                    Some(r) => self.push(Op::Binary(BinaryOp::Mul), vec![r, base], span)?,
                });
            }
            k >>= 1;
            if k == 0 {
                return Ok(result.unwrap());
            }
            base = self.push(Op::Binary(BinaryOp::Mul), vec![base, base], span)?;
        }
    }

    /// `a @ b` with numpy's matmul rules: vectors are promoted to matrices and the added axis
    /// removed again, batch dimensions broadcast.
    fn matmul(&mut self, (a, sa): (Val, Span), (b, sb): (Val, Span), span: Span) -> R<Value> {
        let (x, y) = (self.tensor_arg(a, sa)?, self.tensor_arg(b, sb)?);
        for (t, s) in [(x, sa), (y, sb)] {
            if self.ty(t).rank() == 0 {
                return Err(Diagnostic::error("E0204", "matmul needs arrays of rank 1 or more")
                    .at(s, format!("this is {}", self.ty(t)))
                    .help("use `*` to multiply by a scalar"));
            }
            self.require_numeric(t, s, "multiply")?;
        }
        let dtype = promote(self.ty(x).dtype, self.ty(y).dtype);
        let x = self.convert(x, dtype, sa)?;
        let y = self.convert(y, dtype, sb)?;
        let (xs, ys) = (self.ty(x).shape.clone(), self.ty(y).shape.clone());
        let (x_vec, y_vec) = (xs.len() == 1, ys.len() == 1);
        let xm = if x_vec { vec![1, xs[0]] } else { xs.clone() };
        let ym = if y_vec { vec![ys[0], 1] } else { ys.clone() };
        let (k1, k2) = (xm[xm.len() - 1], ym[ym.len() - 2]);
        if k1 != k2 {
            return Err(Diagnostic::error(
                "E0204",
                format!("matmul shapes do not match: {} @ {}", self.ty(x), self.ty(y)),
            )
            .at(sa, format!("this has {k1} columns"))
            .also(sb, format!("this has {k2} rows"))
            .note("for `a @ b`, the last dimension of a must equal the second-to-last of b"));
        }
        let (xb, yb) = (&xm[..xm.len() - 2], &ym[..ym.len() - 2]);
        let Some(batch) = broadcast_shapes(xb, yb) else {
            return Err(Diagnostic::error(
                "E0204",
                format!("matmul batch dimensions do not broadcast: {} @ {}", self.ty(x), self.ty(y)),
            )
            .at(sa, format!("batch {}", kiln_ir::types::format_shape(xb)))
            .also(sb, format!("batch {}", kiln_ir::types::format_shape(yb))));
        };
        let full =
            |m: &[usize], batch: &[usize]| -> Vec<usize> { batch.iter().chain(&m[m.len() - 2..]).copied().collect() };
        let xr = self.reshape(x, xm.clone(), sa)?;
        let yr = self.reshape(y, ym.clone(), sb)?;
        let xf = self.broadcast(xr, &full(&xm, &batch), sa)?;
        let yf = self.broadcast(yr, &full(&ym, &batch), sb)?;
        let d = self.push(Op::Dot, vec![xf, yf], span)?;
        let mut out: Vec<usize> = batch.clone();
        if !x_vec {
            out.push(xm[xm.len() - 2]);
        }
        if !y_vec {
            out.push(ym[ym.len() - 1]);
        }
        self.reshape(d, out, span)
    }

    /// -v, folded for literals.
    fn negate(&mut self, v: Val, inner: Span, span: Span) -> R<Val> {
        match v {
            Val::Lit(Lit::Int(i)) => i.checked_neg().map(|n| Val::Lit(Lit::Int(n))).ok_or_else(|| {
                Diagnostic::error("E0218", format!("`-({i})` overflows i64"))
                    .at(span, "constant arithmetic out of range")
            }),
            Val::Lit(Lit::Float(f)) => Ok(Val::Lit(Lit::Float(-f))),
            v => {
                let t = self.tensor_arg(v, inner)?;
                self.require_numeric(t, inner, "negate")?;
                Ok(Val::Tensor(self.push(Op::Unary(UnaryOp::Neg), vec![t], span)?))
            }
        }
    }

    /// `x[items]`: numpy's basic indexing with integers and slices (a slice, then a dynamic
    /// slice for indices known when the program runs), or advanced indexing when an item is an
    /// integer array (a gather).
    pub(crate) fn index(&mut self, env: &mut Env, t: Value, items: &'a [IndexItem], span: Span) -> R<Val> {
        let (t, items) = indexing::items(self, env, t, items, span)?;
        if indexing::has_arrays(self, &items) {
            return indexing::gather(self, t, &items, indexing::Mode::Clip, span).map(Val::Tensor);
        }
        let ty = self.ty(t).clone();
        let (mut start, mut step, mut shape, mut keep) = (vec![], vec![], vec![], vec![]);
        // Axes indexed by an integer scalar known when the program runs, and that scalar.
        let mut dynamic: Vec<(usize, Value)> = vec![];
        for (axis, item) in items.into_iter().enumerate() {
            match item {
                indexing::Item::Slice { first, step: k, len } => {
                    start.push(first as usize);
                    step.push(k);
                    shape.push(len);
                    keep.push(len);
                }
                indexing::Item::Const(j) => {
                    start.push(j as usize);
                    step.push(1);
                    shape.push(1);
                }
                indexing::Item::Data { index, .. } => {
                    dynamic.push((axis, index));
                    start.push(0);
                    step.push(1);
                    shape.push(ty.shape[axis]);
                }
            }
        }
        let whole = start.iter().all(|&s| s == 0) && step.iter().all(|&k| k == 1) && shape == ty.shape;
        let mut sliced =
            if whole { t } else { self.push(Op::Slice { start, step, shape: shape.clone() }, vec![t], span)? };
        if !dynamic.is_empty() {
            sliced = self.dynamic_index(sliced, &shape, &dynamic, span)?;
        }
        self.reshape(sliced, keep, span).map(Val::Tensor)
    }

    /// The element of each axis in `dynamic` at its index (known when the program runs), of
    /// `t` (of `shape`): as numpy, a negative index counts from the end; as JAX, one still out
    /// of range is clamped to the nearest element.
    fn dynamic_index(&mut self, t: Value, shape: &[usize], dynamic: &[(usize, Value)], span: Span) -> R<Value> {
        let mut starts = vec![];
        let mut sizes = shape.to_vec();
        for (axis, &n) in shape.iter().enumerate() {
            match dynamic.iter().find(|(a, _)| *a == axis) {
                None => starts.push(self.lit_to(Lit::Int(0), DType::I32, span)?),
                Some(&(_, i)) => {
                    sizes[axis] = 1;
                    starts.push(indexing::window_start(self, Val::Tensor(i), n, span)?);
                }
            }
        }
        self.push(Op::DynamicSlice { sizes }, std::iter::once(t).chain(starts).collect(), span)
    }

    /// `x.at[items].method(args)`: an indexed update (`set`, `add`, `subtract`, `min`, `max`)
    /// or read (`get`), as JAX's.
    fn indexed_update(
        &mut self,
        env: &mut Env,
        (base, items): (&'a Expr, &'a [IndexItem]),
        method: &Ident,
        args: &'a [Arg],
        span: Span,
    ) -> R<Val> {
        let b = self.eval(env, base)?;
        let x = self.tensor_arg(b, base.span)?;
        let names = || indexing::AT_METHODS.iter().map(|m| m.0);
        let Some(&(_, kind)) = indexing::AT_METHODS.iter().find(|m| m.0 == method.name) else {
            let d = Diagnostic::error("E0233", format!("`.at[...]` has no method `{}`", method.name))
                .at(method.span, "unknown method");
            return Err(match suggest(&method.name, names()) {
                Some(s) => d.help(format!("did you mean `{s}`?")),
                None => d.note(format!(
                    "the methods are {}",
                    names().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(", ")
                )),
            });
        };
        let name = format!("at[...].{}", method.name);
        let (x_new_axes, selected) = indexing::items(self, env, x, items, span)?;
        let Some(kind) = kind else {
            let b = crate::builtins::bind(&name, &["mode", "fill_value"], 0, args, span)?;
            let fill = b.get(1).map(|e| self.const_lit(env, e)).transpose()?;
            let mode = indexing::mode_arg(b.get(0), fill, indexing::Mode::Clip)?;
            return indexing::gather(self, x_new_axes, &selected, mode, span).map(Val::Tensor);
        };
        let b = crate::builtins::bind(&name, &["values"], 1, args, span)?;
        let e = b.get(0).expect("required");
        let mut v = self.eval(env, e)?;
        if method.name == "subtract" {
            // x - v = x + (-v), exactly.
            v = self.negate(v, e.span, e.span)?;
        }
        // x / p and x ** p for p the product of the values landing on each element (1 where
        // none does), as jnp's `divide` and `power`.
        let then = match method.name.as_str() {
            "divide" => Some(BinOp::Div),
            "power" => Some(BinOp::Pow),
            _ => None,
        };
        let target = match then {
            Some(_) => {
                let xt = self.ty(x_new_axes).clone();
                self.splat(Lit::Int(1), xt.dtype, &xt.shape, span)?
            }
            None => x_new_axes,
        };
        // New axes (`None`) are indexed whole; the update is of x's own shape.
        let updated = indexing::scatter(self, target, &selected, kind, (v, e.span), span)?;
        let shape = self.ty(x).shape.clone();
        let updated = self.reshape(updated, shape, span)?;
        match then {
            Some(op) => self.binary(op, method.span, (Val::Tensor(x), base.span), (Val::Tensor(updated), span), span),
            None => Ok(Val::Tensor(updated)),
        }
    }

    /// An integer known at compile time: a literal, a shape variable, or arithmetic on them.
    pub fn const_int(&mut self, env: &mut Env, e: &'a Expr) -> R<i64> {
        let v = self.eval(env, e)?;
        self.lit_int(v, e.span)
    }

    /// A scalar constant: a literal or arithmetic on literals.
    pub fn const_lit(&mut self, env: &mut Env, e: &'a Expr) -> R<Lit> {
        match self.eval(env, e)? {
            Val::Lit(l) => Ok(l),
            v => Err(Diagnostic::error("E0216", "expected a constant")
                .at(e.span, format!("this is {}", self.describe(&v)))
                .note("a fill value must be known when the program is compiled")),
        }
    }

    /// The integer constant `v` is, or an error at `span`.
    fn lit_int(&self, v: Val, span: Span) -> R<i64> {
        match v {
            Val::Lit(Lit::Int(i)) => Ok(i),
            v => Err(Diagnostic::error("E0216", "expected an integer constant")
                .at(span, format!("this is {}", self.describe(&v)))
                .note("axes, shapes and indices must be known when the program is compiled")),
        }
    }
}

/// numpy's slice semantics: bounds are clamped, negative ones count from the end. Returns the
/// first index and the number of elements.
pub fn slice_indices(n: i64, start: Option<i64>, stop: Option<i64>, step: i64) -> (i64, i64) {
    let norm = |i: i64, lo: i64, hi: i64| if i < 0 { (i + n).max(lo) } else { i.min(hi) };
    let (s, e) = if step > 0 {
        (start.map_or(0, |s| norm(s, 0, n)), stop.map_or(n, |e| norm(e, 0, n)))
    } else {
        (start.map_or(n - 1, |s| norm(s, -1, n - 1)), stop.map_or(-1, |e| norm(e, -1, n - 1)))
    };
    // The distance covered is at most n + 1; a step of any size (i64::MIN included) divides it.
    let distance = if step > 0 { e - s } else { s - e };
    let len = if distance <= 0 { 0 } else { ((distance as u64 - 1) / step.unsigned_abs() + 1) as i64 };
    (s, len)
}

/// numpy broadcasting of two shapes, or None when they are incompatible.
pub fn broadcast_shapes(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let n = a.len().max(b.len());
    let mut out = vec![0; n];
    for i in 0..n {
        let x = if i + a.len() >= n { a[i + a.len() - n] } else { 1 };
        let y = if i + b.len() >= n { b[i + b.len() - n] } else { 1 };
        out[i] = match (x, y) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return None,
        };
    }
    Some(out)
}

/// Whether a finite number literal rounds to infinity as the 16-bit float `d`.
fn overflows_half(l: Lit, d: DType) -> bool {
    let v = match l {
        Lit::Int(i) => i as f64,
        Lit::Float(f) => f,
        Lit::Bool(_) => return false,
    };
    v.is_finite() && !Literal::of_f64(d, v).as_f64().is_finite()
}

/// JAX's promotion of two array dtypes (with 64-bit types enabled): bool yields to anything,
/// an integer meeting a float takes the float, integers of one signedness or two floats take
/// the wider, and a signed integer meeting an unsigned one takes the narrowest signed type
/// that holds both (u8 with i32 is i32; u32 with i32 is i64).
pub fn promote(a: DType, b: DType) -> DType {
    match (a, b) {
        (a, b) if a == b => a,
        (DType::Bool, x) | (x, DType::Bool) => x,
        (x, y) if x.is_float() != y.is_float() => {
            if x.is_float() {
                x
            } else {
                y
            }
        }
        // f16 with bf16: neither holds the other (JAX's lattice joins them at f32).
        (x, y) if x.is_half() && y.is_half() => DType::F32,
        (x, y) if x.is_unsigned() != y.is_unsigned() => {
            let (u, s) = if x.is_unsigned() { (x, y) } else { (y, x) };
            if s.bits() > u.bits() {
                s
            } else {
                DType::I64
            }
        }
        (x, y) => {
            if x.bits() >= y.bits() {
                x
            } else {
                y
            }
        }
    }
}

/// Folds arithmetic on two literals, or None when the result is not a literal (matmul); Err
/// when integer arithmetic overflows i64 (never wrapped: a wrapped shape or index would be
/// accepted as another).
fn fold(op: BinOp, a: Lit, b: Lit) -> Result<Option<Lit>, ()> {
    use Lit::*;
    let as_f = |l: Lit| match l {
        Int(i) => i as f64,
        Float(f) => f,
        Bool(b) => b as i64 as f64,
    };
    let cmp = |o: std::cmp::Ordering| -> bool {
        match op {
            BinOp::Eq => o.is_eq(),
            BinOp::Ne => o.is_ne(),
            BinOp::Lt => o.is_lt(),
            BinOp::Le => o.is_le(),
            BinOp::Gt => o.is_gt(),
            _ => o.is_ge(),
        }
    };
    Ok(Some(match (op, a, b) {
        (BinOp::MatMul, ..) => return Ok(None),
        (BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge, a, b) => {
            let (x, y) = (as_f(a), as_f(b));
            match x.partial_cmp(&y) {
                Some(o) => Bool(cmp(o)),
                None => Bool(op == BinOp::Ne),
            }
        }
        (_, Bool(_), _) | (_, _, Bool(_)) => return Ok(None),
        (BinOp::Add, Int(x), Int(y)) => Int(x.checked_add(y).ok_or(())?),
        (BinOp::Sub, Int(x), Int(y)) => Int(x.checked_sub(y).ok_or(())?),
        (BinOp::Mul, Int(x), Int(y)) => Int(x.checked_mul(y).ok_or(())?),
        (BinOp::Pow, Int(x), Int(y)) if (0..64).contains(&y) => Int(x.checked_pow(y as u32).ok_or(())?),
        (BinOp::Add, x, y) => Float(as_f(x) + as_f(y)),
        (BinOp::Sub, x, y) => Float(as_f(x) - as_f(y)),
        (BinOp::Mul, x, y) => Float(as_f(x) * as_f(y)),
        (BinOp::Div, x, y) => Float(as_f(x) / as_f(y)),
        (BinOp::Pow, x, y) => Float(as_f(x).powf(as_f(y))),
        // numpy's remainder, with the divisor's sign (0 for an integer divisor of 0, as the
        // compiled `%` gives).
        (BinOp::Rem, Int(_), Int(0)) => Int(0),
        (BinOp::Rem, Int(x), Int(y)) => {
            let r = x.wrapping_rem(y);
            Int(if r != 0 && (r < 0) != (y < 0) { r + y } else { r })
        }
        (BinOp::Rem, x, y) => {
            let (x, y) = (as_f(x), as_f(y));
            let r = x % y;
            Float(if r != 0.0 && (r < 0.0) != (y < 0.0) { r + y } else { r })
        }
    }))
}

pub fn resolve_dtype(id: &Ident) -> R<DType> {
    DType::from_name(&id.name).ok_or_else(|| {
        let names = DType::ALL.iter().map(|d| d.name());
        let d = Diagnostic::error("E0103", format!("unknown element type `{}`", id.name)).at(id.span, "not a dtype");
        match suggest(&id.name, names) {
            Some(s) => {
                d.help(format!("did you mean `{s}`? kiln's dtypes are bool, u8, i32, u32, i64, f16, bf16, f32 and f64"))
            }
            None => d.help("kiln's dtypes are bool, u8, i32, u32, i64, f16, bf16, f32 and f64"),
        }
    })
}

pub fn check_type_shape(dims: &[usize], span: Span) -> R<()> {
    check_shape(dims).map_err(|e| Diagnostic::error("E0213", e).at(span, "this type"))
}

/// A declared type as written: `f32[B, 3]`, `f32` for a scalar.
pub(crate) fn type_expr_text(ty: &TypeExpr) -> String {
    let dims: Vec<String> = ty
        .dims
        .iter()
        .map(|d| match d {
            Dim::Known(n, _) => n.to_string(),
            Dim::Var(v) => v.name.clone(),
        })
        .collect();
    if dims.is_empty() {
        ty.dtype.name.clone()
    } else {
        format!("{}[{}]", ty.dtype.name, dims.join(", "))
    }
}

fn pattern_text(p: &Pattern) -> String {
    match p {
        Pattern::Tuple(items, _) => format!("a tuple of {} values", items.len()),
        _ => "a value".into(),
    }
}

pub fn lit_text(l: Lit) -> String {
    match l {
        Lit::Int(i) => i.to_string(),
        Lit::Float(f) => kiln_ir::types::format_float(f),
        Lit::Bool(b) => b.to_string(),
    }
}

pub fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// What a loop carries (or runs over) in one place: an array, an array started from a number
/// (weakly typed: it takes the dtype its body gives), or random keys.
#[derive(Clone, Copy, PartialEq)]
enum Carry {
    Array,
    Number,
    Key,
}

impl Carry {
    /// The value of a carry whose data is `t`.
    fn value(self, t: Value) -> Val {
        if self == Carry::Key {
            Val::Key(t)
        } else {
            Val::Tensor(t)
        }
    }
}

/// The arrays in a value.
fn tensors_of(v: &Val) -> Vec<Value> {
    match v {
        Val::Tensor(t) | Val::Key(t) => vec![*t],
        Val::Lit(_) => vec![],
        Val::Tuple(items) => items.iter().flat_map(tensors_of).collect(),
    }
}

/// `v` with its arrays replaced as `map` says (those it does not name are kept).
fn rebind(v: &Val, map: &HashMap<Value, Value>) -> Val {
    match v {
        Val::Tensor(t) => Val::Tensor(map.get(t).copied().unwrap_or(*t)),
        Val::Key(t) => Val::Key(map.get(t).copied().unwrap_or(*t)),
        Val::Lit(l) => Val::Lit(*l),
        Val::Tuple(items) => Val::Tuple(items.iter().map(|i| rebind(i, map)).collect()),
    }
}

/// E0223: the condition of an `if` or a `while` loop (`what`), at `span`, is `described`.
fn not_a_condition(what: &str, span: Span, described: &str) -> Diagnostic {
    Diagnostic::error("E0223", format!("the condition of `{what}` must be a scalar bool"))
        .at(span, format!("this is {described}"))
        .help(format!("compare to make one, as in `{what} sum(x) > 0.0`, or select elementwise with `where(c, a, b)`"))
}
