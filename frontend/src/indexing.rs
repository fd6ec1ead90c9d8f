//! Indexing by data: numpy's advanced indexing `x[idx]` (integer arrays on any axes, mixed
//! with integers and slices), JAX's indexed updates `x.at[items].set(v)` (and `add`,
//! `subtract`, `min`, `max`, `get`), and the builtins built on them (`take`,
//! `take_along_axis`, `dynamic_slice`, `dynamic_update_slice`).
//!
//! Every form is one `gather` or `scatter` along one axis: the indexed axes are brought
//! together (a transpose, when they are not adjacent) and merged into one (a reshape), their
//! indices into one linear index, and the result is laid out in numpy's order (a transpose).
//! An index that alone indexes one axis goes to the op as it is: the op wraps negative
//! indices, clamps a gather's and drops a scatter's out-of-bounds ones. Indices merged into
//! one are first wrapped and checked per axis, so that an index out of range on one axis never
//! lands on another element.

use crate::ast::{Expr, ExprKind, IndexItem};
use crate::builtins::{and, binary};
use crate::elab::{broadcast_shapes, lit_text, promote, slice_indices, Elab, Env, Lit, Val};
use kiln_ir::types::format_shape;
use kiln_ir::{BinaryOp, DType, Diagnostic, Op, ScatterKind, Span, TensorType, Value};

type R<T> = Result<T, Diagnostic>;

/// One axis of an index expression, its item evaluated.
#[derive(Clone, Copy, Debug)]
pub enum Item {
    /// A static slice, or the whole axis: `len` elements from `first` by `step`.
    Slice { first: i64, step: i64, len: usize },
    /// An integer known when compiling, already in [0, n).
    Const(i64),
    /// Integer indices known when the program runs: a scalar or an array (numpy's advanced
    /// index). `in_range` when they are known to lie in [0, n).
    Data { index: Value, in_range: bool },
}

impl Item {
    /// The whole axis of `n` elements.
    pub fn whole(n: usize) -> Item {
        Item::Slice { first: 0, step: 1, len: n }
    }

    /// An array index (rank >= 1): the expression leaves basic indexing.
    fn is_array(&self, el: &Elab) -> bool {
        matches!(self, Item::Data { index, .. } if el.ty(*index).rank() > 0)
    }
}

/// The methods of `x.at[...]`: a read (`get`), or an update by a scatter (`subtract` adds
/// the negated values; `divide` and `power` divide x by, or raise it to, the product of the
/// values landing on each element, as jnp's).
pub const AT_METHODS: [(&str, Option<ScatterKind>); 9] = [
    ("get", None),
    ("set", Some(ScatterKind::Set)),
    ("add", Some(ScatterKind::Add)),
    ("subtract", Some(ScatterKind::Add)),
    ("multiply", Some(ScatterKind::Mul)),
    ("divide", Some(ScatterKind::Mul)),
    ("power", Some(ScatterKind::Mul)),
    ("min", Some(ScatterKind::Min)),
    ("max", Some(ScatterKind::Max)),
];

/// What a gather gives where an index is out of bounds.
#[derive(Clone, Copy, Debug)]
pub enum Mode {
    /// The nearest element (`x[idx]`, `x.at[idx].get()`).
    Clip,
    /// A fill value: the given one, else NaN for floats, the most negative integer, `true`
    /// (`take`, `take_along_axis`, `mode="fill"`).
    Fill(Option<Lit>),
}

/// Evaluates the items of `x[items]`, one per axis (omitted trailing ones, and those `...`
/// stands for, are whole axes), with x: as given, or with an axis of length 1 inserted for
/// each `None` and indexed whole there (which is numpy's newaxis, also among arrays).
pub fn items<'a>(
    el: &mut Elab<'a>,
    env: &mut Env,
    x: Value,
    items: &'a [IndexItem],
    span: Span,
) -> R<(Value, Vec<Item>)> {
    let ty = el.ty(x).clone();
    let consuming = items.iter().filter(|i| matches!(i, IndexItem::At(_) | IndexItem::Range { .. })).count();
    if consuming > ty.rank() {
        return Err(Diagnostic::error("E0219", format!("too many indices for {ty}"))
            .at(span, format!("{consuming} indices for rank {}", ty.rank())));
    }
    let ellipses: Vec<Span> =
        items.iter().filter_map(|i| if let IndexItem::Ellipsis(s) = i { Some(*s) } else { None }).collect();
    if let [_, second, ..] = ellipses[..] {
        return Err(Diagnostic::error("E0206", "an index can have only one `...`").at(second, "a second ellipsis"));
    }
    // One entry per axis of x with its new axes: the item, or None for a whole axis.
    let mut per_axis: Vec<Option<&'a IndexItem>> = vec![];
    let mut new_axes = vec![];
    for item in items {
        match item {
            IndexItem::Ellipsis(_) => per_axis.extend(std::iter::repeat_n(None, ty.rank() - consuming)),
            IndexItem::NewAxis(_) => {
                new_axes.push(per_axis.len());
                per_axis.push(None);
            }
            item => per_axis.push(Some(item)),
        }
    }
    let x = if new_axes.is_empty() {
        x
    } else {
        let mut dims = ty.shape.iter().copied();
        let mut shape = vec![];
        let total = ty.rank() + new_axes.len();
        for a in 0..total {
            shape.push(if new_axes.contains(&a) { 1 } else { dims.next().expect("one per axis") });
        }
        el.reshape(x, shape, span)?
    };
    let ty = el.ty(x).clone();
    let mut out = vec![];
    for (axis, &n) in ty.shape.iter().enumerate() {
        let n = n as i64;
        out.push(match per_axis.get(axis).copied().flatten() {
            None | Some(IndexItem::NewAxis(_) | IndexItem::Ellipsis(_)) => Item::whole(n as usize),
            Some(IndexItem::At(e)) => match el.eval(env, e)? {
                Val::Lit(Lit::Int(i)) => {
                    let j = if i < 0 { i + n } else { i };
                    if !(0..n).contains(&j) {
                        return Err(Diagnostic::error(
                            "E0206",
                            format!("index {i} is out of bounds for axis {axis} of size {n}"),
                        )
                        .at(e.span, "out of bounds"));
                    }
                    Item::Const(j)
                }
                Val::Tensor(t) if el.ty(t).dtype.is_int() => {
                    Item::Data { index: signed(el, t, e.span)?, in_range: false }
                }
                Val::Tensor(t) if el.ty(t).rank() > 0 || el.ty(t).dtype == DType::Bool => {
                    return Err(not_integers(el.ty(t), e.span))
                }
                v => {
                    return Err(Diagnostic::error("E0216", "expected an integer index")
                        .at(e.span, format!("this is {}", el.describe(&v)))
                        .note("an index is an integer constant, an integer scalar or an array of integers"))
                }
            },
            Some(IndexItem::Range { start, stop, step, span: item_span }) => {
                let mut opt =
                    |e: &'a Option<Expr>| -> R<Option<i64>> { e.as_ref().map(|e| el.const_int(env, e)).transpose() };
                let (s, e, k) = (opt(start)?, opt(stop)?, opt(step)?);
                let k = k.unwrap_or(1);
                if k == 0 {
                    return Err(Diagnostic::error("E0206", "slice step cannot be zero").at(*item_span, "zero step"));
                }
                let (first, len) = slice_indices(n, s, e, k);
                if len == 0 {
                    return Err(Diagnostic::error("E0206", format!("slice of axis {axis} (size {n}) is empty"))
                        .at(*item_span, "selects no elements")
                        .note("kiln arrays cannot be empty"));
                }
                // One element is selected whatever the step: keep no huge stride downstream.
                Item::Slice { first, step: if len == 1 { 1 } else { k }, len: len as usize }
            }
        });
    }
    Ok((x, out))
}

/// Whether any item is an array, which makes `x[items]` advanced indexing.
pub fn has_arrays(el: &Elab, items: &[Item]) -> bool {
    items.iter().any(|i| i.is_array(el))
}

/// The error for indices that are not integers (bool masks included).
pub fn not_integers(ty: &TensorType, span: Span) -> Diagnostic {
    let d = Diagnostic::error("E0231", format!("indices must be integers, not {ty}")).at(span, format!("this is {ty}"));
    if ty.dtype == DType::Bool {
        d.note("a boolean mask selects a number of elements known only when the program runs")
            .help("keep the shape with `where(mask, x, 0.0)`, or index with integers")
    } else {
        d.help("convert the indices: `cast(i, i32)`")
    }
}

/// How an index expression maps onto one gather or scatter.
struct Plan {
    /// Per axis of x, after integers became scalar data indices.
    axes: Vec<Axis>,
    /// The broadcast shape of the data indices.
    block: Vec<usize>,
    /// numpy's place for the block among the result's sliced axes: where the first data index
    /// was when the data indices are adjacent, else first.
    block_at: usize,
    /// The axes with an index (all but the whole ones), in order.
    indexed: Vec<usize>,
    /// The dtype of the merged index: wide enough for every index and for the merged axis.
    dtype: DType,
}

#[derive(Clone, Copy)]
enum Axis {
    Whole,
    Strided { first: i64, step: i64, len: usize },
    Data { index: Value, in_range: bool },
}

/// A dimension of a gather's result: a block dimension of the data indices, or an axis of x
/// (whole or sliced).
#[derive(Clone, Copy, PartialEq)]
enum Label {
    Block(usize),
    Axis(usize),
}

impl Plan {
    fn new(el: &mut Elab, x: Value, items: &[Item], span: Span) -> R<Plan> {
        let shape = el.ty(x).shape.clone();
        let mut axes = vec![];
        for (k, item) in items.iter().enumerate() {
            axes.push(match *item {
                Item::Slice { first: 0, step: 1, len } if len == shape[k] => Axis::Whole,
                Item::Slice { first, step, len } => Axis::Strided { first, step, len },
                Item::Const(j) => Axis::Data { index: el.lit_to(Lit::Int(j), DType::I32, span)?, in_range: true },
                Item::Data { index, in_range } => Axis::Data { index, in_range },
            });
        }
        let data: Vec<usize> = (0..axes.len()).filter(|&k| matches!(axes[k], Axis::Data { .. })).collect();
        let mut block: Vec<usize> = vec![];
        for &k in &data {
            let Axis::Data { index, .. } = axes[k] else { unreachable!("data axis") };
            let ty = el.ty(index);
            block = broadcast_shapes(&block, &ty.shape).ok_or_else(|| {
                Diagnostic::error(
                    "E0231",
                    format!(
                        "index arrays of shapes {} and {} do not broadcast",
                        format_shape(&block),
                        format_shape(&ty.shape)
                    ),
                )
                .at(span, "in this index")
                .note("the integer arrays of one index broadcast together, as numpy's")
            })?;
        }
        let adjacent = data.windows(2).all(|w| w[1] == w[0] + 1);
        let block_at = match data.first() {
            Some(&first) if adjacent => (0..first).filter(|&k| !matches!(axes[k], Axis::Data { .. })).count(),
            _ => 0,
        };
        let indexed: Vec<usize> = (0..axes.len()).filter(|&k| !matches!(axes[k], Axis::Whole)).collect();
        let merged: u128 = indexed.iter().map(|&k| shape[k] as u128).product();
        let mut dtype = if merged > i32::MAX as u128 { DType::I64 } else { DType::I32 };
        for &k in &data {
            let Axis::Data { index, .. } = axes[k] else { unreachable!("data axis") };
            dtype = promote(dtype, el.ty(index).dtype);
        }
        Ok(Plan { axes, block, block_at, indexed, dtype })
    }

    /// The one data index that alone indexes its axis, which the op takes as it is.
    fn direct(&self) -> Option<(usize, Value)> {
        match self.indexed[..] {
            [k] => match self.axes[k] {
                Axis::Data { index, .. } => Some((k, index)),
                _ => None,
            },
            _ => None,
        }
    }

    /// The shape the merged index runs over: the block, then each strided axis's length.
    fn grid(&self) -> Vec<usize> {
        let strided = self.axes.iter().filter_map(|a| match a {
            Axis::Strided { len, .. } => Some(*len),
            _ => None,
        });
        self.block.iter().copied().chain(strided).collect()
    }

    fn grid_labels(&self) -> Vec<Label> {
        let strided = (0..self.axes.len()).filter(|&k| matches!(self.axes[k], Axis::Strided { .. })).map(Label::Axis);
        (0..self.block.len()).map(Label::Block).chain(strided).collect()
    }

    /// The result's dimensions in numpy's order: the sliced and whole axes in order, the block
    /// at `block_at`.
    fn result_labels(&self) -> Vec<Label> {
        let mut labels: Vec<Label> =
            (0..self.axes.len()).filter(|&k| !matches!(self.axes[k], Axis::Data { .. })).map(Label::Axis).collect();
        labels.splice(self.block_at..self.block_at, (0..self.block.len()).map(Label::Block));
        labels
    }
}

/// x with its indexed axes merged into one at `axis`.
struct Merged {
    x: Value,
    axis: usize,
    /// The transpose that brought the indexed axes together (the identity when they were).
    order: Vec<usize>,
    /// The shape before merging (after the transpose).
    unmerged: Vec<usize>,
    /// The dimensions of a gather of the merged x, with the grid in place of the merged axis.
    labels: Vec<Label>,
}

impl Merged {
    fn new(el: &mut Elab, x: Value, plan: &Plan, span: Span) -> R<Merged> {
        let rank = el.ty(x).rank();
        let first = plan.indexed[0];
        let contiguous = plan.indexed.iter().enumerate().all(|(i, &k)| k == first + i);
        let (axis, order): (usize, Vec<usize>) = if contiguous {
            (first, (0..rank).collect())
        } else {
            let kept = (0..rank).filter(|k| !plan.indexed.contains(k));
            (0, plan.indexed.iter().copied().chain(kept).collect())
        };
        let x = el.transpose(x, order.clone(), span)?;
        let unmerged = el.ty(x).shape.clone();
        let m = plan.indexed.len();
        let size: usize = unmerged[axis..axis + m].iter().product();
        let shape = [&unmerged[..axis], &[size], &unmerged[axis + m..]].concat();
        let merged = el.reshape(x, shape, span)?;
        let labels = order[..axis]
            .iter()
            .map(|&k| Label::Axis(k))
            .chain(plan.grid_labels())
            .chain(order[axis + m..].iter().map(|&k| Label::Axis(k)))
            .collect();
        Ok(Merged { x: merged, axis, order, unmerged, labels })
    }

    /// The transpose from the gather's layout to numpy's order.
    fn to_result(&self, plan: &Plan) -> Vec<usize> {
        plan.result_labels()
            .iter()
            .map(|l| self.labels.iter().position(|m| m == l).expect("every result dimension is gathered"))
            .collect()
    }
}

/// The index into the merged axis, over the grid, and where every per-axis index is in
/// bounds (None when all are known to be; computed only when `valid` is asked for).
fn merged_index(el: &mut Elab, x: Value, plan: &Plan, valid: bool, span: Span) -> R<(Value, Option<Value>)> {
    let shape = el.ty(x).shape.clone();
    if let Some((k, index)) = plan.direct() {
        // The op wraps negatives itself; an index is valid in [-n, n).
        let in_range = matches!(plan.axes[k], Axis::Data { in_range: true, .. });
        let mask =
            if valid && !in_range { Some(within(el, index, -(shape[k] as i64), shape[k] as i64, span)?) } else { None };
        return Ok((index, mask));
    }
    let grid = plan.grid();
    // A value over the block, over the grid (which extends it by the strided axes).
    let to_grid = |el: &mut Elab, t: Value| -> R<Value> {
        if el.ty(t).shape == grid {
            return Ok(t);
        }
        el.push(Op::Broadcast { shape: grid.clone(), dims: (0..plan.block.len()).collect() }, vec![t], span)
    };
    let (mut linear, mut mask): (Option<Value>, Option<Value>) = (None, None);
    let mut stride: i64 = 1;
    for &k in plan.indexed.iter().rev() {
        let n = shape[k] as i64;
        let index = match plan.axes[k] {
            Axis::Strided { first, step, .. } => {
                // Strided axes follow the block in the grid, in axis order.
                let before = plan.axes[..k].iter().filter(|a| matches!(a, Axis::Strided { .. })).count();
                let axis = plan.block.len() + before;
                let iota = el.push(Op::Iota { dtype: plan.dtype, shape: grid.clone(), axis }, vec![], span)?;
                let scaled = scale(el, iota, step, plan.dtype, span)?;
                offset(el, scaled, first, plan.dtype, span)?
            }
            Axis::Data { index, in_range } => {
                let index = el.convert(index, plan.dtype, span)?;
                let index = el.broadcast(index, &plan.block, span)?;
                let index = if in_range {
                    index
                } else {
                    // j = i + n where i < 0, else i; valid when 0 <= j < n; clamped into range.
                    let wrapped = wrap(el, index, n, span)?;
                    if valid {
                        let ok = within(el, wrapped, 0, n, span)?;
                        mask = Some(match mask {
                            None => ok,
                            Some(m) => and(el, m, ok, span)?,
                        });
                    }
                    clamp(el, wrapped, 0, n - 1, span)?
                };
                to_grid(el, index)?
            }
            Axis::Whole => unreachable!("whole axes are not indexed"),
        };
        let term = scale(el, index, stride, plan.dtype, span)?;
        linear = Some(match linear {
            None => term,
            Some(l) => binary(el, BinaryOp::Add, l, term, span)?,
        });
        stride *= n;
    }
    let mask = match mask {
        Some(m) => Some(to_grid(el, m)?),
        None => None,
    };
    Ok((linear.expect("at least one indexed axis"), mask))
}

/// `x[items]` by one gather (the caller has checked that some item is an array, or wants a
/// gather anyway), out-of-bounds indices as `mode` says.
pub fn gather(el: &mut Elab, x: Value, items: &[Item], mode: Mode, span: Span) -> R<Value> {
    let plan = Plan::new(el, x, items, span)?;
    if plan.indexed.is_empty() {
        return Ok(x);
    }
    let merged = Merged::new(el, x, &plan, span)?;
    let fill = matches!(mode, Mode::Fill(_));
    let (index, valid) = merged_index(el, x, &plan, fill, span)?;
    let mut g = el.push(Op::Gather { axis: merged.axis }, vec![merged.x, index], span)?;
    if let (Mode::Fill(value), Some(valid)) = (mode, valid) {
        let ty = el.ty(g).clone();
        let grid = plan.grid();
        let valid = if ty.shape == grid {
            valid
        } else {
            let dims = (merged.axis..merged.axis + grid.len()).collect();
            el.push(Op::Broadcast { shape: ty.shape.clone(), dims }, vec![valid], span)?
        };
        let fill = fill_value(el, value, ty.dtype, span)?;
        let fill = el.broadcast(fill, &ty.shape, span)?;
        g = el.push(Op::Select, vec![valid, g, fill], span)?;
    }
    el.transpose(g, merged.to_result(&plan), span)
}

/// `x.at[items]` updated by `kind` with `updates` (broadcast to the shape of `x[items]`);
/// updates whose index is out of bounds are dropped.
pub fn scatter(
    el: &mut Elab,
    x: Value,
    items: &[Item],
    kind: ScatterKind,
    (updates, us): (Val, Span),
    span: Span,
) -> R<Value> {
    let plan = Plan::new(el, x, items, span)?;
    let xt = el.ty(x).clone();
    let updates = update_values(el, updates, us, &xt, kind)?;
    if plan.indexed.is_empty() {
        // Every element is named once: the update is the whole array.
        let u = fit(el, updates, us, &xt.shape, span)?;
        return match kind.combiner() {
            None => Ok(u),
            Some(op) => el.push(Op::Binary(op), vec![x, u], span),
        };
    }
    let merged = Merged::new(el, x, &plan, span)?;
    // A direct index is checked by the op; merged ones are checked here.
    let (index, valid) = merged_index(el, x, &plan, plan.direct().is_none(), span)?;
    // An update whose index is out of bounds on any axis goes to the merged axis's end, past
    // its last element, where the scatter drops it.
    let index = match valid {
        Some(valid) => {
            let size: usize = plan.indexed.iter().map(|&k| xt.shape[k]).product();
            let past = el.splat(Lit::Int(size as i64), plan.dtype, &el.ty(index).shape.clone(), span)?;
            el.push(Op::Select, vec![valid, index, past], span)?
        }
        _ => index,
    };
    // The updates in numpy's order, then in the gather's.
    let gathered: Vec<usize> = {
        let mx = el.ty(merged.x).shape.clone();
        let it = el.ty(index).shape.clone();
        [&mx[..merged.axis], &it[..], &mx[merged.axis + 1..]].concat()
    };
    let to_result = merged.to_result(&plan);
    let target: Vec<usize> = to_result.iter().map(|&p| gathered[p]).collect();
    let u = fit(el, updates, us, &target, span)?;
    let u = el.transpose(u, inverse(&to_result), span)?;
    let s = el.push(Op::Scatter { axis: merged.axis, kind }, vec![merged.x, index, u], span)?;
    let s = el.reshape(s, merged.unmerged.clone(), span)?;
    el.transpose(s, inverse(&merged.order), span)
}

/// The updates of a scatter into `x`, as x's dtype: literals take it; arrays convert when no
/// information is lost (JAX warns and converts otherwise; kiln asks for the cast).
fn update_values(el: &mut Elab, v: Val, span: Span, x: &TensorType, kind: ScatterKind) -> R<Value> {
    let dtype = x.dtype;
    if kind != ScatterKind::Set && !dtype.is_numeric() {
        return Err(Diagnostic::error("E0232", format!("cannot combine updates into {x} by `{}`", method_name(kind)))
            .at(span, format!("the array is {x}"))
            .help("convert it first, e.g. `cast(x, i32)`"));
    }
    match v {
        Val::Lit(l) => el.lit_to(l, dtype, span),
        v => {
            let t = el.tensor_arg(v, span)?;
            let from = el.ty(t).dtype;
            if promote(from, dtype) != dtype {
                return Err(Diagnostic::error("E0232", format!("cannot write {} updates into {x}", from))
                    .at(span, format!("this is {}", el.ty(t)))
                    .help(format!("convert them first: `cast(v, {dtype})`")));
            }
            el.convert(t, dtype, span)
        }
    }
}

/// `u` broadcast to `shape`, or the error that it does not fit there.
fn fit(el: &mut Elab, u: Value, us: Span, shape: &[usize], span: Span) -> R<Value> {
    let ut = el.ty(u).clone();
    if broadcast_shapes(&ut.shape, shape).as_deref() != Some(shape) {
        return Err(Diagnostic::error(
            "E0232",
            format!("updates of {ut} do not fit the {} elements they update", format_shape(shape)),
        )
        .at(us, format!("this is {ut}"))
        .also(span, format!("these are {}", format_shape(shape)))
        .note("the updates broadcast to the shape of the indexed elements, as in JAX's `x.at[i].set(v)`"));
    }
    el.broadcast(u, shape, span)
}

/// The method of `x.at[...]` a scatter kind comes from.
fn method_name(kind: ScatterKind) -> &'static str {
    AT_METHODS.iter().find(|m| m.1 == Some(kind)).expect("every kind has a method").0
}

/// The scalar a fill-mode gather gives out of bounds, as jax.lax.gather chooses it.
fn fill_value(el: &mut Elab, value: Option<Lit>, dtype: DType, span: Span) -> R<Value> {
    let lit = value.unwrap_or(match dtype {
        DType::Bool => Lit::Bool(true),
        d if d.is_unsigned() => Lit::Int(d.int_range().1),
        d if d.is_int() => Lit::Int(d.int_range().0),
        _ => Lit::Float(f64::NAN),
    });
    el.lit_to(lit, dtype, span)
        .map_err(|d| d.note(format!("the fill value {} is given for {dtype} elements", lit_text(lit))))
}

/// The start of a dynamic window on an axis of `n` elements: a negative start counts from the
/// end (the op clamps what is still out of range).
pub fn window_start(el: &mut Elab, v: Val, n: usize, span: Span) -> R<Value> {
    match v {
        Val::Lit(Lit::Int(i)) => {
            el.lit_to(Lit::Int(if i < 0 { i.saturating_add(n as i64) } else { i }), DType::I32, span)
        }
        Val::Tensor(t) if el.ty(t).shape.is_empty() && el.ty(t).dtype.is_int() => {
            let t = signed(el, t, span)?;
            wrap(el, t, n as i64, span)
        }
        v => Err(Diagnostic::error("E0216", "expected an integer start")
            .at(span, format!("this is {}", el.describe(&v)))
            .note("a start is an integer constant or an integer scalar known when the program runs")),
    }
}

/// Integer indices as a signed type that holds them all (u8 as i32, u32 as i64), so that one
/// path counts negative indices from the end and clamps or masks the rest.
pub fn signed(el: &mut Elab, i: Value, span: Span) -> R<Value> {
    let dtype = el.ty(i).dtype;
    el.convert(i, promote(dtype, DType::I32), span)
}

/// Indices clipped into [0, n): negative ones to 0.
pub fn clip(el: &mut Elab, i: Value, n: usize, span: Span) -> R<Value> {
    clamp(el, i, 0, n as i64 - 1, span)
}

/// i + n where i < 0, else i.
fn wrap(el: &mut Elab, i: Value, n: i64, span: Span) -> R<Value> {
    let negative = compare(el, BinaryOp::Lt, i, 0, span)?;
    let shifted = offset(el, i, n, el.ty(i).dtype, span)?;
    el.push(Op::Select, vec![negative, shifted, i], span)
}

/// lo <= i < hi.
fn within(el: &mut Elab, i: Value, lo: i64, hi: i64, span: Span) -> R<Value> {
    let above = compare(el, BinaryOp::Ge, i, lo, span)?;
    let below = compare(el, BinaryOp::Lt, i, hi, span)?;
    and(el, above, below, span)
}

/// min(max(i, lo), hi).
fn clamp(el: &mut Elab, i: Value, lo: i64, hi: i64, span: Span) -> R<Value> {
    let dtype = el.ty(i).dtype;
    let lo = el.lit_to(Lit::Int(lo), dtype, span)?;
    let hi = el.lit_to(Lit::Int(hi), dtype, span)?;
    let up = binary(el, BinaryOp::Max, i, lo, span)?;
    binary(el, BinaryOp::Min, up, hi, span)
}

fn compare(el: &mut Elab, op: BinaryOp, i: Value, c: i64, span: Span) -> R<Value> {
    let c = el.lit_to(Lit::Int(c), el.ty(i).dtype, span)?;
    binary(el, op, i, c, span)
}

/// i * c (no instruction when c is 1).
fn scale(el: &mut Elab, i: Value, c: i64, dtype: DType, span: Span) -> R<Value> {
    if c == 1 {
        return Ok(i);
    }
    let c = el.lit_to(Lit::Int(c), dtype, span)?;
    binary(el, BinaryOp::Mul, i, c, span)
}

/// i + c (no instruction when c is 0).
fn offset(el: &mut Elab, i: Value, c: i64, dtype: DType, span: Span) -> R<Value> {
    if c == 0 {
        return Ok(i);
    }
    let c = el.lit_to(Lit::Int(c), dtype, span)?;
    binary(el, BinaryOp::Add, i, c, span)
}

/// The permutation that undoes `perm`.
pub fn inverse(perm: &[usize]) -> Vec<usize> {
    let mut inv = vec![0; perm.len()];
    for (i, &p) in perm.iter().enumerate() {
        inv[p] = i;
    }
    inv
}

/// A `mode=` argument: "clip" (or JAX's "promise_in_bounds", which XLA clamps) or "fill",
/// `default` when absent.
pub fn mode_arg(e: Option<&Expr>, fill_value: Option<Lit>, default: Mode) -> R<Mode> {
    let Some(e) = e else {
        return Ok(match (default, fill_value) {
            (Mode::Fill(_), v) => Mode::Fill(v),
            (Mode::Clip, _) => Mode::Clip,
        });
    };
    match &e.kind {
        ExprKind::Str(s) if s == "clip" || s == "promise_in_bounds" => Ok(Mode::Clip),
        ExprKind::Str(s) if s == "fill" => Ok(Mode::Fill(fill_value)),
        ExprKind::Str(s) => Err(Diagnostic::error("E0233", format!("there is no indexing mode \"{s}\""))
            .at(e.span, "unknown mode")
            .help("write `mode=\"clip\"` (the nearest element) or `mode=\"fill\"` (a fill value)")),
        _ => Err(Diagnostic::error("E0233", "expected an indexing mode")
            .at(e.span, "not a mode")
            .help("write `mode=\"clip\"` (the nearest element) or `mode=\"fill\"` (a fill value)")),
    }
}
