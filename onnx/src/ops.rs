//! ONNX operators as kiln expressions: one handler per operator, each inferring its outputs'
//! types as the ONNX specification defines them (opsets 13 to 21), and folding what is known
//! while importing (shapes and the arithmetic on them).

use kiln_ir::interp::{Data, Tensor};
use kiln_ir::{DType, Op, TensorType};

use crate::graph::{i64s, ints_of, list, literal, Graph, Node, Val, R};

type Handler = fn(&mut Graph, &Node) -> R<()>;

/// Every operator kiln imports, by ONNX op type.
pub const OPS: &[(&str, Handler)] = &[
    ("Abs", unary),
    ("Add", binary),
    ("And", binary),
    ("ArgMax", arg_extreme),
    ("ArgMin", arg_extreme),
    ("AveragePool", pool),
    ("BatchNormalization", batch_norm),
    ("Cast", cast),
    ("Ceil", unary),
    ("Clip", clip),
    ("Concat", concat),
    ("Constant", constant),
    ("ConstantOfShape", constant_of_shape),
    ("Conv", conv),
    ("Cos", unary),
    ("CumSum", cumsum),
    ("Div", binary),
    ("Dropout", dropout),
    ("Einsum", einsum),
    ("Equal", binary),
    ("Erf", unary),
    ("Exp", unary),
    ("Expand", expand),
    ("Flatten", flatten),
    ("Floor", unary),
    ("Gather", gather),
    ("Gelu", gelu),
    ("Gemm", gemm),
    ("GlobalAveragePool", global_pool),
    ("GlobalMaxPool", global_pool),
    ("Greater", binary),
    ("GreaterOrEqual", binary),
    ("Identity", identity),
    ("LayerNormalization", layer_norm),
    ("LeakyRelu", leaky_relu),
    ("Less", binary),
    ("LessOrEqual", binary),
    ("Log", unary),
    ("LogSoftmax", softmax),
    ("MatMul", matmul),
    ("Max", variadic),
    ("MaxPool", pool),
    ("Min", variadic),
    ("Mul", binary),
    ("Neg", unary),
    ("Not", unary),
    ("Or", binary),
    ("Pad", pad),
    ("Pow", binary),
    ("Range", range),
    ("Reciprocal", unary),
    ("ReduceMax", reduce),
    ("ReduceMean", reduce),
    ("ReduceMin", reduce),
    ("ReduceProd", reduce),
    ("ReduceSum", reduce),
    ("Relu", unary),
    ("Reshape", reshape),
    ("Resize", resize),
    ("Round", unary),
    ("Shape", shape),
    ("Sigmoid", unary),
    ("Sign", unary),
    ("Sin", unary),
    ("Slice", slice),
    ("Softmax", softmax),
    ("Softplus", unary),
    ("Split", split),
    ("Sqrt", unary),
    ("Squeeze", squeeze),
    ("Sub", binary),
    ("Tanh", unary),
    ("TopK", top_k),
    ("Transpose", transpose),
    ("Unsqueeze", unsqueeze),
    ("Where", where_),
    ("Xor", binary),
];

/// The handler of op type `op`.
pub fn handler(op: &str) -> Option<Handler> {
    OPS.iter().find(|(name, _)| *name == op).map(|&(_, h)| h)
}

// ---- helpers ------------------------------------------------------------------------------

/// Input `i`'s value.
fn val(g: &Graph, n: &Node, i: usize) -> R<Val> {
    g.value(n.required(i)?).cloned()
}

/// Input `i`'s kiln name and type.
fn arg(g: &mut Graph, n: &Node, i: usize) -> R<(String, TensorType)> {
    let onnx = n.required(i)?;
    let ty = g.value(onnx)?.ty();
    Ok((g.name_of(onnx)?, ty))
}

/// Input `i` as integers known while importing (a shape, axes, pads), or None when omitted.
fn known_ints(g: &Graph, n: &Node, i: usize, what: &str) -> R<Option<Vec<i64>>> {
    let Some(onnx) = n.input(i) else { return Ok(None) };
    match g.value(onnx)? {
        Val::Known(t) => ints_of(t).map(Some).map_err(|e| format!("its {what}: {e}")),
        Val::Named { .. } => Err(format!(
            "its {what} (`{onnx}`) must be known when importing: a constant, an initializer, or computed from shapes"
        )),
    }
}

/// The output `0`.
fn out0<'a>(n: &'a Node) -> R<&'a str> {
    n.output(0).ok_or_else(|| "it has no output".to_string())
}

/// An axis in [-rank, rank) as an index.
fn axis(a: i64, rank: usize) -> R<usize> {
    let r = rank as i64;
    if (-r..r).contains(&a) {
        Ok(a.rem_euclid(r.max(1)) as usize)
    } else {
        Err(format!("axis {a} is out of range for rank {rank}"))
    }
}

/// numpy's broadcast of two shapes (ONNX's multidirectional broadcasting).
fn broadcast(a: &[usize], b: &[usize]) -> R<Vec<usize>> {
    kiln_frontend::broadcast_shapes(a, b).ok_or_else(|| format!("shapes {a:?} and {b:?} do not broadcast"))
}

fn ty(dtype: DType, shape: Vec<usize>) -> TensorType {
    TensorType::new(dtype, shape)
}

/// Small known tensors are folded; a model's weights are never copied around by folding.
const FOLD_ELEMENTS: usize = 1 << 16;

fn foldable(vals: &[&Val]) -> Option<Vec<Tensor>> {
    vals.iter().map(|v| v.known().filter(|t| t.data.len() <= FOLD_ELEMENTS).cloned()).collect()
}

/// The element of `t` at the broadcast position `index` of an output of shape `out`.
fn broadcast_index(t: &Tensor, out: &[usize], index: usize) -> usize {
    let mut rest = index;
    let mut flat = 0;
    let mut stride = 1;
    for (k, &d) in out.iter().enumerate().rev() {
        let coordinate = rest % d;
        rest /= d;
        let offset = k as isize - (out.len() as isize - t.shape.len() as isize);
        if offset >= 0 {
            let size = t.shape[offset as usize];
            flat += if size == 1 { 0 } else { coordinate * stride };
            stride *= size;
        }
    }
    flat
}

// ---- elementwise --------------------------------------------------------------------------

fn unary(g: &mut Graph, n: &Node) -> R<()> {
    let t = val(g, n, 0)?.ty();
    let x = match g.nhwc.contains_key(n.required(0)?) {
        true => String::new(),
        false => arg(g, n, 0)?.0,
    };
    let float = t.dtype.is_float();
    let apply = |x: &str| -> R<String> {
        Ok(match n.op() {
            "Neg" => format!("-{x}"),
            "Reciprocal" if float => format!("1.0 / {x}"),
            "Not" if t.dtype == DType::Bool => format!("logical_not({x})"),
            "Abs" | "Sign" => format!("{}({x})", n.op().to_lowercase()),
            "Relu" | "Sigmoid" | "Tanh" | "Exp" | "Log" | "Sqrt" | "Floor" | "Ceil" | "Erf" | "Sin" | "Cos"
            | "Round" | "Softplus"
                if float =>
            {
                format!("{}({x})", n.op().to_lowercase())
            }
            op => return Err(format!("{op} of {t} is not defined")),
        })
    };
    if let Some(alias) = g.nhwc.get(n.required(0)?).cloned() {
        g.emit_nhwc(out0(n)?, apply(&alias)?, t);
        return Ok(());
    }
    let expr = apply(&x)?;
    g.emit(out0(n)?, expr, t);
    Ok(())
}

fn leaky_relu(g: &mut Graph, n: &Node) -> R<()> {
    let (x, t) = arg(g, n, 0)?;
    let alpha = n.float("alpha", 0.01)?;
    g.emit(out0(n)?, format!("where({x} >= 0.0, {x}, {x} * {alpha:?})"), t);
    Ok(())
}

fn gelu(g: &mut Graph, n: &Node) -> R<()> {
    let (x, t) = arg(g, n, 0)?;
    let tanh = match n.string("approximate", "none")?.as_str() {
        "none" => false,
        "tanh" => true,
        other => return Err(format!("approximate=\"{other}\" is not `none` or `tanh`")),
    };
    g.emit(out0(n)?, format!("gelu({x}, approximate={tanh})"), t);
    Ok(())
}

/// Binary elementwise operators, with numpy's broadcasting (ONNX's multidirectional one).
fn binary(g: &mut Graph, n: &Node) -> R<()> {
    let (a, b) = (val(g, n, 0)?, val(g, n, 1)?);
    let (at, bt) = (a.ty(), b.ty());
    let shape = broadcast(&at.shape, &bt.shape)?;
    let compare = matches!(n.op(), "Equal" | "Less" | "LessOrEqual" | "Greater" | "GreaterOrEqual");
    let logical = matches!(n.op(), "And" | "Or" | "Xor");
    if n.op() != "Pow" && at.dtype != bt.dtype {
        return Err(format!("its inputs are {at} and {bt}, of different types"));
    }
    if logical && at.dtype != DType::Bool {
        return Err(format!("{} of {at} is not defined", n.op()));
    }
    let dtype = if compare || logical { DType::Bool } else { at.dtype };
    if let Some(known) = foldable(&[&a, &b]).filter(|_| at.dtype.is_int() && !compare && !logical) {
        return fold_int(g, n, &known, shape);
    }
    let aliases = (g.nhwc.get(n.required(0)?).cloned(), g.nhwc.get(n.required(1)?).cloned());
    if let (Some(xa), Some(ya), true, "Add" | "Sub" | "Mul") = (aliases.0, aliases.1, at.shape == bt.shape, n.op()) {
        let sign = match n.op() {
            "Add" => "+",
            "Sub" => "-",
            _ => "*",
        };
        g.emit_nhwc(out0(n)?, format!("{xa} {sign} {ya}"), ty(dtype, shape));
        return Ok(());
    }
    let (x, y) = (g.name_of(n.required(0)?)?, g.name_of(n.required(1)?)?);
    let expr = match n.op() {
        "Add" => format!("{x} + {y}"),
        "Sub" => format!("{x} - {y}"),
        "Mul" => format!("{x} * {y}"),
        "Div" if at.dtype.is_float() => format!("{x} / {y}"),
        // ONNX's integer division truncates toward zero, numpy's floor_divide rounds down.
        "Div" => format!(
            "where(logical_and({x} % {y} != 0, logical_xor({x} < 0, {y} < 0)), floor_divide({x}, {y}) + 1, floor_divide({x}, {y}))"
        ),
        "Pow" if bt.dtype == at.dtype => format!("pow({x}, {y})"),
        "Pow" => format!("pow({x}, cast({y}, {}))", at.dtype),
        "Equal" => format!("{x} == {y}"),
        "Less" => format!("{x} < {y}"),
        "LessOrEqual" => format!("{x} <= {y}"),
        "Greater" => format!("{x} > {y}"),
        "GreaterOrEqual" => format!("{x} >= {y}"),
        "And" => format!("logical_and({x}, {y})"),
        "Or" => format!("logical_or({x}, {y})"),
        _ => format!("logical_xor({x}, {y})"),
    };
    g.emit(out0(n)?, expr, ty(dtype, shape));
    Ok(())
}

/// Integer arithmetic on known tensors: the shape computations exporters write.
fn fold_int(g: &mut Graph, n: &Node, known: &[Tensor], shape: Vec<usize>) -> R<()> {
    let count: usize = shape.iter().product();
    let (a, b) = (&known[0], &known[1]);
    let mut v = Vec::with_capacity(count);
    for i in 0..count {
        let (x, y) = (a.data.get_i64(broadcast_index(a, &shape, i)), b.data.get_i64(broadcast_index(b, &shape, i)));
        v.push(match n.op() {
            "Add" => x.wrapping_add(y),
            "Sub" => x.wrapping_sub(y),
            "Mul" => x.wrapping_mul(y),
            "Div" if y == 0 => return Err("it divides by zero".into()),
            "Div" => x.wrapping_div(y),
            op => return Err(format!("{op} of known integers is not folded")),
        });
    }
    let dtype = a.data.dtype();
    g.define(out0(n)?, Val::Known(Tensor::new(shape, Data::I64(v).convert(dtype))));
    Ok(())
}

fn variadic(g: &mut Graph, n: &Node) -> R<()> {
    let f = if n.op() == "Max" { "maximum" } else { "minimum" };
    let (mut expr, mut t) = arg(g, n, 0)?;
    for i in 1..n.proto.input.len() {
        let (y, yt) = arg(g, n, i)?;
        if yt.dtype != t.dtype {
            return Err(format!("its inputs are {t} and {yt}, of different types"));
        }
        t = ty(t.dtype, broadcast(&t.shape, &yt.shape)?);
        expr = format!("{f}({expr}, {y})");
    }
    g.emit(out0(n)?, expr, t);
    Ok(())
}

fn where_(g: &mut Graph, n: &Node) -> R<()> {
    let ((c, ct), (x, xt), (y, yt)) = (arg(g, n, 0)?, arg(g, n, 1)?, arg(g, n, 2)?);
    if ct.dtype != DType::Bool || xt.dtype != yt.dtype {
        return Err(format!("Where takes a bool condition and two values of one type, got {ct}, {xt} and {yt}"));
    }
    let shape = broadcast(&broadcast(&ct.shape, &xt.shape)?, &yt.shape)?;
    g.emit(out0(n)?, format!("where({c}, {x}, {y})"), ty(xt.dtype, shape));
    Ok(())
}

fn clip(g: &mut Graph, n: &Node) -> R<()> {
    let (mut expr, t) = arg(g, n, 0)?;
    for (i, f) in [(1, "maximum"), (2, "minimum")] {
        if let Some(onnx) = n.input(i) {
            let bound = g.value(onnx)?.ty();
            if !bound.shape.is_empty() || bound.dtype != t.dtype {
                return Err(format!("its bound `{onnx}` is {bound}, not a scalar of {}", t.dtype));
            }
            expr = format!("{f}({expr}, {})", g.name_of(onnx)?);
        }
    }
    g.emit(out0(n)?, expr, t);
    Ok(())
}

fn cast(g: &mut Graph, n: &Node) -> R<()> {
    let to =
        crate::tensor::dtype(n.int("to", 0)? as i32).map_err(|name| format!("it casts to {name}, which kiln lacks"))?;
    let x = val(g, n, 0)?;
    if let Some([t]) = foldable(&[&x]).as_deref() {
        g.define(out0(n)?, Val::Known(Tensor::new(t.shape.clone(), t.data.convert(to))));
        return Ok(());
    }
    let (name, t) = arg(g, n, 0)?;
    g.emit(out0(n)?, format!("cast({name}, {to})"), ty(to, t.shape));
    Ok(())
}

fn identity(g: &mut Graph, n: &Node) -> R<()> {
    let x = val(g, n, 0)?;
    g.define(out0(n)?, x);
    Ok(())
}

fn dropout(g: &mut Graph, n: &Node) -> R<()> {
    if n.int("training_mode", 0)? != 0
        || n.input(2).is_some_and(|t| g.value(t).ok().and_then(Val::known).is_none_or(|k| k.data.get_i64(0) != 0))
    {
        return Err("Dropout in training mode is not imported: kiln imports inference graphs".into());
    }
    let x = val(g, n, 0)?;
    let shape = x.ty().shape;
    g.define(out0(n)?, x);
    if let Some(mask) = n.output(1) {
        g.emit(mask, format!("broadcast_to(true, {})", list(&shape)), ty(DType::Bool, shape));
    }
    Ok(())
}

// ---- known values -------------------------------------------------------------------------

fn constant(g: &mut Graph, n: &Node) -> R<()> {
    let attr = n.proto.attribute.first().ok_or("it has no value")?;
    let t = match attr.name.as_str() {
        "value" => crate::tensor::decode(attr.t.as_ref().ok_or("its value is not a tensor")?, std::path::Path::new(""))
            .map_err(|e| format!("its value: {e}"))?,
        "value_float" => Tensor::new(vec![], Data::F32(vec![attr.f])),
        "value_floats" => Tensor::new(vec![attr.floats.len()], Data::F32(attr.floats.clone())),
        "value_int" => i64s(vec![], vec![attr.i]),
        "value_ints" => i64s(vec![attr.ints.len()], attr.ints.clone()),
        other => return Err(format!("its attribute `{other}` is not imported")),
    };
    g.define(out0(n)?, Val::Known(t));
    Ok(())
}

fn constant_of_shape(g: &mut Graph, n: &Node) -> R<()> {
    let dims = known_ints(g, n, 0, "shape")?.ok_or("it lacks its shape")?;
    let shape = crate::tensor::shape(&dims)?;
    let value = match n.tensor_attr("value").and_then(|a| a.t.as_ref()) {
        Some(t) => crate::tensor::decode(t, std::path::Path::new("")).map_err(|e| format!("its value: {e}"))?,
        None => Tensor::new(vec![1], Data::F32(vec![0.0])),
    };
    if value.data.len() != 1 {
        return Err("its value must hold one element".into());
    }
    let count: usize = shape.iter().product();
    if count > FOLD_ELEMENTS {
        let v = literal(value.data.literal(0)).ok_or("its value must be finite")?;
        g.emit(out0(n)?, format!("broadcast_to({v}, {})", list(&shape)), ty(value.data.dtype(), shape));
        return Ok(());
    }
    g.define(out0(n)?, Val::Known(Tensor::new(shape, Data::splat(value.data.literal(0), count))));
    Ok(())
}

fn shape(g: &mut Graph, n: &Node) -> R<()> {
    let dims = val(g, n, 0)?.ty().shape;
    let r = dims.len() as i64;
    let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
    let (start, end) = (clamp(n.int("start", 0)?), clamp(n.int("end", r)?));
    let v: Vec<i64> = dims[start..end.max(start)].iter().map(|&d| d as i64).collect();
    g.define(out0(n)?, Val::Known(i64s(vec![v.len()], v)));
    Ok(())
}

fn range(g: &mut Graph, n: &Node) -> R<()> {
    let known = |i| -> R<Tensor> {
        g.value(n.required(i)?)?
            .known()
            .cloned()
            .ok_or_else(|| "its start, limit and delta must be known when importing".to_string())
    };
    let (start, limit, delta) = (known(0)?, known(1)?, known(2)?);
    let dtype = start.data.dtype();
    let (s, l, d) = (start.data.get_f64(0), limit.data.get_f64(0), delta.data.get_f64(0));
    if d == 0.0 {
        return Err("its delta is 0".into());
    }
    let count = ((l - s) / d).ceil().max(0.0) as usize;
    if count > FOLD_ELEMENTS {
        return Err(format!("it makes {count} elements"));
    }
    let v: Vec<f64> = (0..count).map(|i| s + i as f64 * d).collect();
    g.define(out0(n)?, Val::Known(Tensor::new(vec![count], Data::F64(v).convert(dtype))));
    Ok(())
}

// ---- shapes -------------------------------------------------------------------------------

/// Gives output 0 the shape `shape`: folded when the input is known, else a reshape.
fn reshaped(g: &mut Graph, n: &Node, shape: Vec<usize>) -> R<()> {
    let x = val(g, n, 0)?;
    if x.ty().shape.iter().product::<usize>() != shape.iter().product::<usize>() {
        return Err(format!("{} cannot take the shape {shape:?}", x.ty()));
    }
    if let Some(t) = x.known() {
        g.define(out0(n)?, Val::Known(Tensor::new(shape, t.data.clone())));
        return Ok(());
    }
    let (name, t) = arg(g, n, 0)?;
    if t.shape == shape {
        return identity(g, n);
    }
    g.emit(out0(n)?, format!("reshape({name}, {})", list(&shape)), ty(t.dtype, shape));
    Ok(())
}

fn reshape(g: &mut Graph, n: &Node) -> R<()> {
    let dims = known_ints(g, n, 1, "shape")?.ok_or("it lacks its shape")?;
    let from = val(g, n, 0)?.ty().shape;
    let allow_zero = n.int("allowzero", 0)? != 0;
    let mut shape: Vec<i64> = dims
        .iter()
        .enumerate()
        .map(|(i, &d)| if d == 0 && !allow_zero { from.get(i).map_or(0, |&f| f as i64) } else { d })
        .collect();
    let count: usize = from.iter().product();
    if let Some(hole) = shape.iter().position(|&d| d == -1) {
        let rest = shape
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != hole)
            .try_fold(1i64, |p, (_, &d)| p.checked_mul(d))
            .ok_or_else(|| format!("its shape {dims:?} overflows"))?;
        if rest <= 0 || count as i64 % rest != 0 {
            return Err(format!("{count} elements cannot take the shape {dims:?}"));
        }
        shape[hole] = count as i64 / rest;
    }
    reshaped(g, n, crate::tensor::shape(&shape)?)
}

fn flatten(g: &mut Graph, n: &Node) -> R<()> {
    let from = val(g, n, 0)?.ty().shape;
    let a = if n.int("axis", 1)? == from.len() as i64 { from.len() } else { axis(n.int("axis", 1)?, from.len())? };
    reshaped(g, n, vec![from[..a].iter().product(), from[a..].iter().product()])
}

fn squeeze(g: &mut Graph, n: &Node) -> R<()> {
    let from = val(g, n, 0)?.ty().shape;
    let axes = match known_ints(g, n, 1, "axes")? {
        Some(a) => a.iter().map(|&a| axis(a, from.len())).collect::<R<Vec<_>>>()?,
        None => (0..from.len()).filter(|&i| from[i] == 1).collect(),
    };
    if let Some(&a) = axes.iter().find(|&&a| from[a] != 1) {
        return Err(format!("axis {a} has length {}, not 1", from[a]));
    }
    reshaped(g, n, (0..from.len()).filter(|i| !axes.contains(i)).map(|i| from[i]).collect())
}

fn unsqueeze(g: &mut Graph, n: &Node) -> R<()> {
    let from = val(g, n, 0)?.ty().shape;
    let axes = known_ints(g, n, 1, "axes")?.ok_or("it lacks its axes")?;
    let rank = from.len() + axes.len();
    let axes = axes.iter().map(|&a| axis(a, rank)).collect::<R<Vec<_>>>()?;
    let mut rest = from.iter();
    let shape = (0..rank).map(|i| if axes.contains(&i) { 1 } else { *rest.next().unwrap_or(&1) }).collect();
    reshaped(g, n, shape)
}

fn transpose(g: &mut Graph, n: &Node) -> R<()> {
    let x = val(g, n, 0)?;
    let t = x.ty();
    let perm: Vec<usize> = match n.ints("perm")? {
        Some(p) => p.iter().map(|&a| axis(a, t.rank())).collect::<R<_>>()?,
        None => (0..t.rank()).rev().collect(),
    };
    let mut sorted = perm.clone();
    sorted.sort();
    if sorted != (0..t.rank()).collect::<Vec<_>>() {
        return Err(format!("perm {perm:?} is not a permutation of the {} axes", t.rank()));
    }
    let shape: Vec<usize> = perm.iter().map(|&p| t.shape[p]).collect();
    if let Some(k) = x.known() {
        g.define(out0(n)?, Val::Known(permuted(k, &perm)?));
        return Ok(());
    }
    let (name, _) = arg(g, n, 0)?;
    g.emit(out0(n)?, format!("transpose({name}, {})", list(&perm)), ty(t.dtype, shape));
    Ok(())
}

/// `op` on known tensors, as kiln's reference interpreter computes it: how the importer
/// folds what it knows, with the IR's own semantics.
fn fold(op: Op, args: &[&Tensor]) -> R<Tensor> {
    let types: Vec<TensorType> = args.iter().map(|t| t.ty()).collect();
    let ty = op.infer(&types.iter().collect::<Vec<_>>())?;
    Ok(kiln_ir::interp::eval(&op, args, &ty))
}

/// A known tensor with its axes permuted.
fn permuted(t: &Tensor, perm: &[usize]) -> R<Tensor> {
    fold(Op::Transpose { perm: perm.to_vec() }, &[t])
}

fn concat(g: &mut Graph, n: &Node) -> R<()> {
    let vals: Vec<Val> = (0..n.proto.input.len()).map(|i| val(g, n, i)).collect::<R<_>>()?;
    let first = vals.first().ok_or("it has no inputs")?.ty();
    let a = axis(n.int("axis", 0)?, first.rank())?;
    let mut shape = first.shape.clone();
    shape[a] = 0;
    for v in &vals {
        let t = v.ty();
        if t.dtype != first.dtype
            || t.rank() != first.rank()
            || (0..t.rank()).any(|i| i != a && t.shape[i] != first.shape[i])
        {
            return Err(format!("it cannot join {first} and {t} along axis {a}"));
        }
        shape[a] += t.shape[a];
    }
    if let Some(known) = foldable(&vals.iter().collect::<Vec<_>>()) {
        let joined = fold(Op::Concat { axis: a }, &known.iter().collect::<Vec<_>>())?;
        g.define(out0(n)?, Val::Known(joined));
        return Ok(());
    }
    let names: Vec<String> = (0..vals.len()).map(|i| g.name_of(n.required(i)?)).collect::<R<_>>()?;
    g.emit(out0(n)?, format!("concat({}, axis={a})", list(&names)), ty(first.dtype, shape));
    Ok(())
}

fn expand(g: &mut Graph, n: &Node) -> R<()> {
    let dims = known_ints(g, n, 1, "shape")?.ok_or("it lacks its shape")?;
    let (x, t) = arg(g, n, 0)?;
    let shape = broadcast(&t.shape, &crate::tensor::shape(&dims)?)?;
    g.emit(out0(n)?, format!("broadcast_to({x}, {})", list(&shape)), ty(t.dtype, shape));
    Ok(())
}

fn gather(g: &mut Graph, n: &Node) -> R<()> {
    let (x, indices) = (val(g, n, 0)?, val(g, n, 1)?);
    let (xt, it) = (x.ty(), indices.ty());
    let a = axis(n.int("axis", 0)?, xt.rank())?;
    let shape: Vec<usize> = xt.shape[..a].iter().chain(&it.shape).chain(&xt.shape[a + 1..]).copied().collect();
    if let (Some([data, idx]), true) = (foldable(&[&x, &indices]).as_deref(), it.dtype.is_int()) {
        let len = xt.shape[a] as i64;
        let picks = ints_of(idx)?
            .into_iter()
            .map(|i| {
                if (-len..len).contains(&i) {
                    Ok(i.rem_euclid(len) as usize)
                } else {
                    Err(format!("index {i} is out of range"))
                }
            })
            .collect::<R<Vec<_>>>()?;
        let inner: usize = xt.shape[a + 1..].iter().product();
        let outer: usize = xt.shape[..a].iter().product();
        let mut flat = vec![];
        for o in 0..outer {
            for &p in &picks {
                flat.extend((0..inner).map(|k| (o * xt.shape[a] + p) * inner + k));
            }
        }
        g.define(out0(n)?, Val::Known(Tensor::new(shape, data.data.gather(&flat))));
        return Ok(());
    }
    let (name, _) = arg(g, n, 0)?;
    let (idx, _) = arg(g, n, 1)?;
    g.emit(out0(n)?, format!("take({name}, {idx}, axis={a})"), ty(xt.dtype, shape));
    Ok(())
}

fn slice(g: &mut Graph, n: &Node) -> R<()> {
    let x = val(g, n, 0)?;
    let t = x.ty();
    let starts = known_ints(g, n, 1, "starts")?.ok_or("it lacks its starts")?;
    let ends = known_ints(g, n, 2, "ends")?.ok_or("it lacks its ends")?;
    let axes = match known_ints(g, n, 3, "axes")? {
        Some(a) => a.iter().map(|&a| axis(a, t.rank())).collect::<R<Vec<_>>>()?,
        None => (0..starts.len()).collect(),
    };
    let steps = known_ints(g, n, 4, "steps")?.unwrap_or(vec![1; starts.len()]);
    if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() || steps.contains(&0) {
        return Err("its starts, ends, axes and steps disagree in length, or a step is 0".into());
    }
    if let Some(a) = axes.iter().find(|&&a| a >= t.rank()) {
        return Err(format!("axis {a} is out of range for rank {}", t.rank()));
    }
    let mut items: Vec<(i64, usize, i64)> = t.shape.iter().map(|&d| (0, d, 1)).collect();
    for k in 0..starts.len() {
        // ONNX clamps its bounds as numpy does (i64::MAX and i64::MIN mean "to the end").
        let (s, count) =
            kiln_frontend::slice_indices(t.shape[axes[k]] as i64, Some(starts[k]), Some(ends[k]), steps[k]);
        items[axes[k]] = (s, count as usize, steps[k]);
    }
    let shape: Vec<usize> = items.iter().map(|i| i.1).collect();
    if shape.contains(&0) {
        return Err(format!("it takes an empty slice of {t}, and kiln has no empty arrays"));
    }
    if let Some(known) = x.known() {
        let start = items.iter().map(|i| i.0 as usize).collect();
        let step = items.iter().map(|i| i.2).collect();
        g.define(out0(n)?, Val::Known(fold(Op::Slice { start, step, shape }, &[known])?));
        return Ok(());
    }
    let (name, _) = arg(g, n, 0)?;
    let text: Vec<String> = items
        .iter()
        .map(|&(s, count, step)| {
            let last = s + (count as i64 - 1) * step;
            let end = last + step.signum();
            if end < 0 {
                format!("{s}::{step}")
            } else {
                format!("{s}:{end}:{step}")
            }
        })
        .collect();
    g.emit(out0(n)?, format!("{name}[{}]", text.join(", ")), ty(t.dtype, shape));
    Ok(())
}

fn split(g: &mut Graph, n: &Node) -> R<()> {
    let t = val(g, n, 0)?.ty();
    let a = axis(n.int("axis", 0)?, t.rank())?;
    let outputs = n.proto.output.len();
    let sizes = match known_ints(g, n, 1, "split")? {
        Some(s) => {
            s.iter().map(|&v| usize::try_from(v).map_err(|_| format!("a split of {v}"))).collect::<R<Vec<_>>>()?
        }
        None => {
            let parts = n.int("num_outputs", outputs as i64)? as usize;
            let each = t.shape[a].div_ceil(parts.max(1));
            (0..parts).map(|k| each.min(t.shape[a].saturating_sub(k * each))).collect()
        }
    };
    if sizes.iter().sum::<usize>() != t.shape[a] || sizes.len() != outputs || sizes.contains(&0) {
        return Err(format!("it cannot split {} along axis {a} into {sizes:?}", t));
    }
    let (name, _) = arg(g, n, 0)?;
    let mut start = 0;
    for (k, &size) in sizes.iter().enumerate() {
        let mut shape = t.shape.clone();
        shape[a] = size;
        let index: Vec<String> =
            (0..t.rank()).map(|i| if i == a { format!("{start}:{}", start + size) } else { ":".into() }).collect();
        if let Some(out) = n.output(k) {
            g.emit(out, format!("{name}[{}]", index.join(", ")), ty(t.dtype, shape));
        }
        start += size;
    }
    Ok(())
}

// ---- products and layers ------------------------------------------------------------------

fn matmul(g: &mut Graph, n: &Node) -> R<()> {
    let ((a, at), (b, bt)) = (arg(g, n, 0)?, arg(g, n, 1)?);
    if at.dtype != bt.dtype || !at.dtype.is_float() || at.rank() == 0 || bt.rank() == 0 {
        return Err(format!("MatMul of {at} and {bt} is not defined"));
    }
    let (m, k) =
        if at.rank() == 1 { (None, at.shape[0]) } else { (Some(at.shape[at.rank() - 2]), at.shape[at.rank() - 1]) };
    let (k2, nn) =
        if bt.rank() == 1 { (bt.shape[0], None) } else { (bt.shape[bt.rank() - 2], Some(bt.shape[bt.rank() - 1])) };
    if k != k2 {
        return Err(format!("MatMul of {at} and {bt}: inner dimensions {k} and {k2} differ"));
    }
    let batch_a = &at.shape[..at.rank().saturating_sub(2)];
    let batch_b = &bt.shape[..bt.rank().saturating_sub(2)];
    let mut shape = broadcast(batch_a, batch_b)?;
    shape.extend(m);
    shape.extend(nn);
    g.emit(out0(n)?, format!("{a} @ {b}"), ty(at.dtype, shape));
    Ok(())
}

fn gemm(g: &mut Graph, n: &Node) -> R<()> {
    let (a, at) = arg(g, n, 0)?;
    let bt = val(g, n, 1)?.ty();
    if at.rank() != 2 || bt.rank() != 2 || at.dtype != bt.dtype {
        return Err(format!("Gemm takes two matrices of one type, got {at} and {bt}"));
    }
    let (alpha, beta) = (n.float("alpha", 1.0)?, n.float("beta", 1.0)?);
    let (ta, tb) = (n.int("transA", 0)? != 0, n.int("transB", 0)? != 0);
    let (m, k) = if ta { (at.shape[1], at.shape[0]) } else { (at.shape[0], at.shape[1]) };
    let (k2, nn) = if tb { (bt.shape[1], bt.shape[0]) } else { (bt.shape[0], bt.shape[1]) };
    if k != k2 {
        return Err(format!("Gemm of {at} and {bt} (transA={ta}, transB={tb}): inner dimensions {k} and {k2} differ"));
    }
    let operand = |name: String, t: bool| if t { format!("transpose({name}, [1, 0])") } else { name };
    // A known B is stored already transposed, so the product reads it as it is.
    let b = match (tb, val(g, n, 1)?.known()) {
        (true, Some(known)) => {
            let onnx = format!("{}_t", n.required(1)?);
            g.define(&onnx, Val::Known(permuted(known, &[1, 0])?));
            g.name_of(&onnx)?
        }
        _ => operand(g.name_of(n.required(1)?)?, tb),
    };
    let mut expr = format!("{} @ {b}", operand(a, ta));
    if alpha != 1.0 {
        expr = format!("({expr}) * {alpha:?}");
    }
    if let Some(c) = n.input(2) {
        let ct = g.value(c)?.ty();
        broadcast(&ct.shape, &[m, nn])?;
        let c = g.name_of(c)?;
        expr = if beta == 1.0 { format!("{expr} + {c}") } else { format!("{expr} + {c} * {beta:?}") };
    }
    g.emit(out0(n)?, expr, ty(at.dtype, vec![m, nn]));
    Ok(())
}

/// The padding of a 2-D window op: (before, after) per spatial axis, from `pads` or
/// `auto_pad`.
fn window_pads(
    n: &Node,
    input: &[usize],
    kernel: &[usize],
    strides: &[usize],
    dilations: &[usize],
) -> R<[[usize; 2]; 2]> {
    let mode = n.string("auto_pad", "NOTSET")?;
    let mut pads = [[0; 2]; 2];
    match mode.as_str() {
        "NOTSET" => {
            let p = n.ints("pads")?.unwrap_or(vec![0; 4]);
            if p.len() != 4 || p.iter().any(|&v| v < 0) {
                return Err(format!("its pads {p:?} are not 4 non-negative integers"));
            }
            pads = [[p[0] as usize, p[2] as usize], [p[1] as usize, p[3] as usize]];
        }
        "VALID" => {}
        "SAME_UPPER" | "SAME_LOWER" => {
            for a in 0..2 {
                let out = input[a].div_ceil(strides[a]);
                let needed = ((out - 1) * strides[a] + dilations[a] * (kernel[a] - 1) + 1).saturating_sub(input[a]);
                let small = needed / 2;
                pads[a] = if mode == "SAME_UPPER" { [small, needed - small] } else { [needed - small, small] };
            }
        }
        other => return Err(format!("auto_pad={other} is not defined")),
    }
    Ok(pads)
}

/// The output size of a 2-D window op along each spatial axis: how many windows (`kernel`
/// wide, dilated) fit in the padded input at the strides.
fn window_output(
    input: &[usize],
    kernel: [usize; 2],
    strides: [usize; 2],
    dilations: [usize; 2],
    pads: [[usize; 2]; 2],
) -> R<Vec<usize>> {
    (0..2)
        .map(|a| {
            let span = input[a] + pads[a][0] + pads[a][1];
            let reach = dilations[a] * (kernel[a] - 1) + 1;
            if reach > span {
                return Err(format!("its window ({reach} wide) is larger than the padded input ({span})"));
            }
            Ok((span - reach) / strides[a] + 1)
        })
        .collect()
}

/// A 2-D window attribute (`strides`, `dilations`), 1 by default.
fn pair(n: &Node, name: &str) -> R<[usize; 2]> {
    match n.ints(name)?.as_deref() {
        None => Ok([1, 1]),
        Some(&[a, b]) if a > 0 && b > 0 => Ok([a as usize, b as usize]),
        Some(v) => Err(format!("its {name} {v:?} are not two positive integers")),
    }
}

/// Conv as kiln's conv2d, which is NHWC with an [KH, KW, C, CO] kernel (a known kernel is
/// stored so). A grouped convolution is one conv2d per group, on its slice of the input's
/// channels with its block of kernels, joined along the channels.
fn conv(g: &mut Graph, n: &Node) -> R<()> {
    let (xt, wt) = (val(g, n, 0)?.ty(), val(g, n, 1)?.ty());
    if xt.rank() != 4 || wt.rank() != 4 {
        return Err(format!("only 2-D convolutions are imported (input [N, C, H, W]), got {xt} and {wt}"));
    }
    let group = usize::try_from(n.int("group", 1)?).ok().filter(|&g| g > 0).ok_or("its group is not positive")?;
    if wt.shape[1] * group != xt.shape[1] || wt.shape[0] % group != 0 || wt.dtype != xt.dtype {
        return Err(format!("a kernel {wt} in {group} group(s) cannot convolve an input {xt}"));
    }
    let kernel = [wt.shape[2], wt.shape[3]];
    let (strides, dilations) = (pair(n, "strides")?, pair(n, "dilations")?);
    let pads = window_pads(n, &xt.shape[2..], &kernel, &strides, &dilations)?;
    let mut out = vec![xt.shape[0], wt.shape[0]];
    out.extend(window_output(&xt.shape[2..], kernel, strides, dilations, pads)?);
    let mut input = match g.nhwc.get(n.required(0)?).cloned() {
        Some(alias) => alias,
        None => format!("transpose({}, [0, 2, 3, 1])", arg(g, n, 0)?.0),
    };
    let x = n.required(0)?.to_string();
    let symmetric = pads.iter().all(|p| p[0] == p[1]);
    if !symmetric {
        input = format!("pad({input}, [[0, 0], {}, {}, [0, 0]])", list(&pads[0]), list(&pads[1]));
    }
    if group > 1 {
        let name = g.fresh(&format!("{x}_nhwc"));
        g.lines.push(format!("let {name} = {input};"));
        input = name;
    }
    let padding = if symmetric { [pads[0][0], pads[1][0]] } else { [0, 0] };
    let (channels, kernels) = (wt.shape[1], wt.shape[0] / group);
    let known = val(g, n, 1)?.known().cloned();
    let mut parts = vec![];
    for j in 0..group {
        let block = |t: &Tensor| {
            let size = t.data.len() / group;
            Tensor::new(
                [vec![kernels], t.shape[1..].to_vec()].concat(),
                t.data.gather(&(j * size..(j + 1) * size).collect::<Vec<_>>()),
            )
        };
        let w = match &known {
            Some(k) => {
                let onnx =
                    format!("{}_hwio{}", n.required(1)?, if group > 1 { format!("_{j}") } else { String::new() });
                g.define(&onnx, Val::Known(permuted(&block(k), &[2, 3, 1, 0])?));
                g.name_of(&onnx)?
            }
            None if group == 1 => format!("transpose({}, [2, 3, 1, 0])", g.name_of(n.required(1)?)?),
            None => format!(
                "transpose({}[{}:{}], [2, 3, 1, 0])",
                g.name_of(n.required(1)?)?,
                j * kernels,
                (j + 1) * kernels
            ),
        };
        let x = if group == 1 {
            input.clone()
        } else {
            format!("{input}[:, :, :, {}:{}]", j * channels, (j + 1) * channels)
        };
        parts.push(format!(
            "conv2d({x}, {w}, stride={}, padding={}, dilation={})",
            list(&strides),
            list(&padding),
            list(&dilations)
        ));
    }
    let mut expr = if group == 1 { parts.remove(0) } else { format!("concat({}, axis=3)", list(&parts)) };
    if let Some(b) = n.input(2) {
        let bt = g.value(b)?.ty();
        if bt.shape != [wt.shape[0]] {
            return Err(format!("its bias is {bt}, not [{}]", wt.shape[0]));
        }
        expr = format!("{expr} + reshape({}, [1, 1, 1, {}])", g.name_of(b)?, wt.shape[0]);
    }
    // The result is computed channels-last; its NCHW form is read only by ops that lack an
    // NHWC one.
    g.emit_nhwc(out0(n)?, expr, ty(xt.dtype, out));
    Ok(())
}

/// MaxPool and AveragePool over 2-D windows, as the maximum or sum of the window's strided
/// slices of the padded input.
fn pool(g: &mut Graph, n: &Node) -> R<()> {
    let t = val(g, n, 0)?.ty();
    if t.rank() != 4 || !t.dtype.is_float() {
        return Err(format!("only 2-D pooling of floats is imported (input [N, C, H, W]), got {t}"));
    }
    if n.int("ceil_mode", 0)? != 0 {
        return Err("ceil_mode=1 is not imported yet".into());
    }
    if n.output(1).is_some() {
        return Err("MaxPool's indices output is not imported".into());
    }
    let kernel = match n.ints("kernel_shape")?.as_deref() {
        Some(&[a, b]) if a > 0 && b > 0 => [a as usize, b as usize],
        other => return Err(format!("its kernel_shape {other:?} is not two positive integers")),
    };
    let (strides, dilations) = (pair(n, "strides")?, pair(n, "dilations")?);
    let pads = window_pads(n, &t.shape[2..], &kernel, &strides, &dilations)?;
    let max = n.op() == "MaxPool";
    let mut out = t.shape[..2].to_vec();
    out.extend(window_output(&t.shape[2..], kernel, strides, dilations, pads)?);
    let include_pad = n.int("count_include_pad", 0)? != 0;
    let window = Window { kernel, strides, dilations, pads, out: [out[2], out[3]], max };
    // Each output divides by the elements of its window inside the input, unless padding counts.
    let counts = if max || include_pad || pads.iter().flatten().all(|&p| p == 0) {
        None
    } else {
        let counts = window_counts(&t.shape[2..], &out[2..], kernel, strides, dilations, pads);
        let onnx = format!("{}_window_counts", out0(n)?);
        g.define(&onnx, Val::Known(Tensor::new(vec![1, 1, out[2], out[3]], Data::F32(counts).convert(t.dtype))));
        Some(g.name_of(&onnx)?)
    };
    if let Some(alias) = g.nhwc.get(n.required(0)?).cloned() {
        let expr = window.over(g, &alias, true, counts.as_deref());
        g.emit_nhwc(out0(n)?, expr, ty(t.dtype, out));
        return Ok(());
    }
    let x = g.name_of(n.required(0)?)?;
    let expr = window.over(g, &x, false, counts.as_deref());
    g.emit(out0(n)?, expr, ty(t.dtype, out));
    Ok(())
}

/// A 2-D pooling window and its output size.
struct Window {
    kernel: [usize; 2],
    strides: [usize; 2],
    dilations: [usize; 2],
    pads: [[usize; 2]; 2],
    out: [usize; 2],
    max: bool,
}

impl Window {
    /// The pooling of `x`, NCHW or (with `nhwc`) channels-last, as the maximum or sum of the
    /// window's strided slices of the padded input; `counts` ([1, 1, OH, OW]) divides an average
    /// that leaves padding out.
    fn over(&self, g: &mut Graph, x: &str, nhwc: bool, counts: Option<&str>) -> String {
        let spatial =
            |a: String, b: String| if nhwc { format!("[:, {a}, {b}, :]") } else { format!("[:, :, {a}, {b}]") };
        let padded = if self.pads.iter().flatten().any(|&p| p > 0) {
            // Padding never wins a maximum, and adds nothing to a sum.
            let fill = if self.max { format!("{:?}", -(f32::MAX as f64)) } else { "0.0".into() };
            let name = g.fresh(&format!("{x}_padded"));
            let (h, w) = (list(&self.pads[0]), list(&self.pads[1]));
            let width =
                if nhwc { format!("[[0, 0], {h}, {w}, [0, 0]]") } else { format!("[[0, 0], [0, 0], {h}, {w}]") };
            g.lines.push(format!("let {name} = pad({x}, {width}, constant_values={fill});"));
            name
        } else {
            x.to_string()
        };
        let mut terms = vec![];
        for i in 0..self.kernel[0] {
            for j in 0..self.kernel[1] {
                let (r, c) = (i * self.dilations[0], j * self.dilations[1]);
                let (re, ce) =
                    (r + self.strides[0] * (self.out[0] - 1) + 1, c + self.strides[1] * (self.out[1] - 1) + 1);
                let index = spatial(format!("{r}:{re}:{}", self.strides[0]), format!("{c}:{ce}:{}", self.strides[1]));
                terms.push(format!("{padded}{index}"));
            }
        }
        if self.max {
            return terms.into_iter().reduce(|a, b| format!("maximum({a}, {b})")).expect("a window has elements");
        }
        let sum = terms.join(" + ");
        match counts {
            Some(c) if nhwc => format!("({sum}) / reshape({c}, [1, {}, {}, 1])", self.out[0], self.out[1]),
            Some(c) => format!("({sum}) / {c}"),
            None => format!("({sum}) / {:?}", (self.kernel[0] * self.kernel[1]) as f64),
        }
    }
}

/// How many elements of each output's window lie inside the input.
fn window_counts(
    input: &[usize],
    out: &[usize],
    kernel: [usize; 2],
    strides: [usize; 2],
    dilations: [usize; 2],
    pads: [[usize; 2]; 2],
) -> Vec<f32> {
    let inside = |a: usize, o: usize| {
        (0..kernel[a])
            .filter(|&k| (o * strides[a] + k * dilations[a]).checked_sub(pads[a][0]).is_some_and(|p| p < input[a]))
            .count()
    };
    let mut counts = vec![];
    for r in 0..out[0] {
        for c in 0..out[1] {
            counts.push((inside(0, r) * inside(1, c)) as f32);
        }
    }
    counts
}

fn global_pool(g: &mut Graph, n: &Node) -> R<()> {
    let t = val(g, n, 0)?.ty();
    if t.rank() < 3 {
        return Err(format!("{} takes [N, C, ...], got {t}", n.op()));
    }
    let axes: Vec<usize> = (2..t.rank()).collect();
    let f = if n.op() == "GlobalMaxPool" { "max" } else { "mean" };
    let mut shape = t.shape.clone();
    axes.iter().for_each(|&a| shape[a] = 1);
    if let (Some(alias), 4) = (g.nhwc.get(n.required(0)?).cloned(), t.rank()) {
        g.emit_nhwc(out0(n)?, format!("{f}({alias}, axis=[1, 2], keepdims=true)"), ty(t.dtype, shape));
        return Ok(());
    }
    let x = g.name_of(n.required(0)?)?;
    g.emit(out0(n)?, format!("{f}({x}, axis={}, keepdims=true)", list(&axes)), ty(t.dtype, shape));
    Ok(())
}

/// The shape that broadcasts a per-channel vector against [N, C, ...] of `rank`.
fn channel_shape(c: usize, rank: usize) -> Vec<usize> {
    (0..rank).map(|i| if i == 1 { c } else { 1 }).collect()
}

fn batch_norm(g: &mut Graph, n: &Node) -> R<()> {
    if n.int("training_mode", 0)? != 0 || n.output(1).is_some() {
        return Err("BatchNormalization in training mode is not imported: kiln imports inference graphs".into());
    }
    let t = val(g, n, 0)?.ty();
    let eps = n.float("epsilon", 1e-5)? as f64;
    let c = *t.shape.get(1).ok_or("its input has no channel axis")?;
    let vals: Vec<Val> = (1..5).map(|i| val(g, n, i)).collect::<R<_>>()?;
    if vals.iter().any(|v| v.ty().shape != [c]) {
        return Err(format!("its scale, bias, mean and variance must be [{c}]"));
    }
    let shape = channel_shape(c, t.rank());
    let onnx = out0(n)?.to_string();
    let expr = match foldable(&vals.iter().collect::<Vec<_>>()) {
        // Known statistics fold into one scale and shift per channel, in f64.
        Some(k) => {
            let get = |t: &Tensor, i| t.data.get_f64(i);
            let scale: Vec<f64> = (0..c).map(|i| get(&k[0], i) / (get(&k[3], i) + eps).sqrt()).collect();
            let shift: Vec<f64> = (0..c).map(|i| get(&k[1], i) - get(&k[2], i) * scale[i]).collect();
            for (suffix, v) in [("scale", &scale), ("shift", &shift)] {
                g.define(
                    &format!("{onnx}_{suffix}"),
                    Val::Known(Tensor::new(shape.clone(), Data::F64(v.clone()).convert(t.dtype))),
                );
            }
            let (scale, shift) = (g.name_of(&format!("{onnx}_scale"))?, g.name_of(&format!("{onnx}_shift"))?);
            if let (Some(alias), 4) = (g.nhwc.get(n.required(0)?).cloned(), t.rank()) {
                let last = list(&[1, 1, 1, c]);
                g.emit_nhwc(&onnx, format!("{alias} * reshape({scale}, {last}) + reshape({shift}, {last})"), t);
                return Ok(());
            }
            format!("{} * {scale} + {shift}", g.name_of(n.required(0)?)?)
        }
        None => {
            let r: Vec<String> = (1..5)
                .map(|i| Ok(format!("reshape({}, {})", g.name_of(n.required(i)?)?, list(&shape))))
                .collect::<R<_>>()?;
            let x = g.name_of(n.required(0)?)?;
            format!("({x} - {}) / sqrt({} + {eps:?}) * {} + {}", r[2], r[3], r[0], r[1])
        }
    };
    g.emit(&onnx, expr, t);
    Ok(())
}

fn layer_norm(g: &mut Graph, n: &Node) -> R<()> {
    if n.output(1).is_some() || n.output(2).is_some() {
        return Err("LayerNormalization's mean and inverse deviation outputs are not imported".into());
    }
    let (x, t) = arg(g, n, 0)?;
    let a = axis(n.int("axis", -1)?, t.rank())?;
    let eps = n.float("epsilon", 1e-5)? as f64;
    let axes = list(&(a..t.rank()).collect::<Vec<_>>());
    let onnx = out0(n)?.to_string();
    let centered = g.fresh(&format!("{onnx}_centered"));
    g.lines.push(format!("let {centered} = {x} - mean({x}, axis={axes}, keepdims=true);"));
    let mut expr = format!(
        "{centered} / sqrt(mean({centered} * {centered}, axis={axes}, keepdims=true) + {eps:?}) * {}",
        g.name_of(n.required(1)?)?
    );
    if let Some(b) = n.input(2) {
        expr = format!("{expr} + {}", g.name_of(b)?);
    }
    g.emit(&onnx, expr, t);
    Ok(())
}

fn softmax(g: &mut Graph, n: &Node) -> R<()> {
    let (x, t) = arg(g, n, 0)?;
    let a = axis(n.int("axis", -1)?, t.rank())?;
    let expr = if n.op() == "Softmax" {
        format!("softmax({x}, axis={a})")
    } else {
        format!("{x} - logsumexp({x}, axis={a}, keepdims=true)")
    };
    g.emit(out0(n)?, expr, t);
    Ok(())
}

fn reduce(g: &mut Graph, n: &Node) -> R<()> {
    let (x, t) = arg(g, n, 0)?;
    // Axes are an input from opset 13 for ReduceSum and from 18 for the others.
    let axes = if n.op() == "ReduceSum" || g.opset >= 18 { known_ints(g, n, 1, "axes")? } else { n.ints("axes")? };
    let axes: Vec<usize> = match axes.filter(|a| !a.is_empty()) {
        Some(a) => a.iter().map(|&a| axis(a, t.rank())).collect::<R<_>>()?,
        None if n.int("noop_with_empty_axes", 0)? != 0 || t.rank() == 0 => return identity(g, n),
        None => (0..t.rank()).collect(),
    };
    let keep = n.int("keepdims", 1)? != 0;
    let f = &n.op()["Reduce".len()..].to_lowercase();
    let shape: Vec<usize> =
        (0..t.rank()).filter_map(|i| if axes.contains(&i) { keep.then_some(1) } else { Some(t.shape[i]) }).collect();
    g.emit(out0(n)?, format!("{f}({x}, axis={}, keepdims={keep})", list(&axes)), ty(t.dtype, shape));
    Ok(())
}

fn arg_extreme(g: &mut Graph, n: &Node) -> R<()> {
    let (x, t) = arg(g, n, 0)?;
    let a = axis(n.int("axis", 0)?, t.rank())?;
    let keep = n.int("keepdims", 1)? != 0;
    let shape: Vec<usize> =
        (0..t.rank()).filter_map(|i| if i == a { keep.then_some(1) } else { Some(t.shape[i]) }).collect();
    let f = n.op().to_lowercase();
    // kiln's argmax takes the first extreme; the last is the first of the reversed axis,
    // counted from the end.
    let expr = if n.int("select_last_index", 0)? != 0 {
        format!("{} - cast({f}(flip({x}, axis={a}), axis={a}, keepdims={keep}), i64)", t.shape[a] - 1)
    } else {
        format!("cast({f}({x}, axis={a}, keepdims={keep}), i64)")
    };
    g.emit(out0(n)?, expr, ty(DType::I64, shape));
    Ok(())
}

/// Resize with mode "nearest" by whole scales along the spatial axes of [N, C, H, W]: for
/// the coordinate and rounding modes under which each input element is repeated `s` times
/// (asymmetric with floor; half_pixel and pytorch_half_pixel with round_prefer_floor or floor),
/// a broadcast and a reshape. Other modes are refused, naming the attribute.
fn resize(g: &mut Graph, n: &Node) -> R<()> {
    let (x, t) = arg(g, n, 0)?;
    let mode = n.string("mode", "nearest")?;
    let coordinates = n.string("coordinate_transformation_mode", "half_pixel")?;
    let rounding = n.string("nearest_mode", "round_prefer_floor")?;
    let repeats = matches!(
        (coordinates.as_str(), rounding.as_str()),
        ("asymmetric", "floor") | ("half_pixel" | "pytorch_half_pixel", "round_prefer_floor" | "floor")
    );
    if mode != "nearest" || !repeats {
        return Err(format!(
            "mode=\"{mode}\" with coordinate_transformation_mode=\"{coordinates}\" and nearest_mode=\"{rounding}\" is not imported yet (nearest by whole scales is)"
        ));
    }
    if t.rank() != 4 {
        return Err(format!("only [N, C, H, W] inputs are resized, got {t}"));
    }
    // Scales (input 2) or sizes (input 3), known when importing.
    let factors: Vec<usize> =
        match (n.input(2).and_then(|s| g.value(s).ok()?.known().cloned()), known_ints(g, n, 3, "sizes")?) {
            (Some(scales), _) if scales.data.len() == 4 => (0..4)
                .map(|i| scales.data.get_f64(i))
                .map(|s| if s >= 1.0 && s.fract() == 0.0 { Ok(s as usize) } else { Err(format!("a scale of {s}")) })
                .collect::<R<_>>()?,
            (_, Some(sizes)) if sizes.len() == 4 => sizes
                .iter()
                .zip(&t.shape)
                .map(|(&s, &d)| {
                    if s > 0 && (s as usize).is_multiple_of(d) {
                        Ok(s as usize / d)
                    } else {
                        Err(format!("a size of {s} for a dimension of {d}"))
                    }
                })
                .collect::<R<_>>()?,
            _ => return Err("its scales or sizes must be known when importing, one per axis".into()),
        };
    if factors[0] != 1 || factors[1] != 1 {
        return Err(format!("it scales the batch or channel axis ({factors:?})"));
    }
    let [nb, c, h, w] = [t.shape[0], t.shape[1], t.shape[2], t.shape[3]];
    let (sh, sw) = (factors[2], factors[3]);
    let expr = format!(
        "reshape(broadcast_to(reshape({x}, [{nb}, {c}, {h}, 1, {w}, 1]), [{nb}, {c}, {h}, {sh}, {w}, {sw}]), [{nb}, {c}, {}, {}])",
        h * sh,
        w * sw
    );
    g.emit(out0(n)?, expr, ty(t.dtype, vec![nb, c, h * sh, w * sw]));
    Ok(())
}

fn top_k(g: &mut Graph, n: &Node) -> R<()> {
    let (x, t) = arg(g, n, 0)?;
    let k = known_ints(g, n, 1, "k")?.ok_or("it lacks its k")?;
    let a = axis(n.int("axis", -1)?, t.rank())?;
    let k = match k.as_slice() {
        [k] if (1..=t.shape[a] as i64).contains(k) => *k as usize,
        _ => return Err(format!("its k {k:?} is not one integer from 1 to {}", t.shape[a])),
    };
    let largest = n.int("largest", 1)? != 0;
    let last = t.rank() - 1;
    // kiln's top_k runs along the last axis: another axis is swapped there and back.
    let mut perm: Vec<usize> = (0..t.rank()).collect();
    perm.swap(a, last);
    let moved = if a == last { x } else { format!("transpose({x}, {})", list(&perm)) };
    let operand = if largest { moved } else { format!("-{moved}") };
    let pair = g.fresh(&format!("{}_top", out0(n)?));
    let idx = g.fresh(&format!("{}_indices", out0(n)?));
    g.lines.push(format!("let ({pair}, {idx}) = top_k({operand}, {k});"));
    let back = |e: String| if a == last { e } else { format!("transpose({e}, {})", list(&perm)) };
    let mut shape = t.shape.clone();
    shape[a] = k;
    let values = if largest { pair } else { format!("-{pair}") };
    g.emit(out0(n)?, back(values), ty(t.dtype, shape.clone()));
    if let Some(o) = n.output(1) {
        g.emit(o, back(format!("cast({idx}, i64)")), ty(DType::I64, shape));
    }
    Ok(())
}

fn cumsum(g: &mut Graph, n: &Node) -> R<()> {
    let (x, t) = arg(g, n, 0)?;
    let a = match known_ints(g, n, 1, "axis")?.as_deref() {
        Some(&[a]) => axis(a, t.rank())?,
        _ => return Err("its axis must be one known integer".into()),
    };
    let (exclusive, reverse) = (n.int("exclusive", 0)? != 0, n.int("reverse", 0)? != 0);
    let input = if reverse { format!("flip({x}, axis={a})") } else { x.clone() };
    let mut expr = format!("cumsum({input}, axis={a})");
    if exclusive {
        expr = format!("{expr} - {input}");
    }
    if reverse {
        expr = format!("flip({expr}, axis={a})");
    }
    g.emit(out0(n)?, expr, t);
    Ok(())
}

fn pad(g: &mut Graph, n: &Node) -> R<()> {
    let (x, t) = arg(g, n, 0)?;
    let pads = known_ints(g, n, 1, "pads")?.ok_or("it lacks its pads")?;
    let axes = match known_ints(g, n, 3, "axes")? {
        Some(a) => a.iter().map(|&a| axis(a, t.rank())).collect::<R<Vec<_>>>()?,
        None => (0..t.rank()).collect(),
    };
    if pads.len() != 2 * axes.len() || pads.iter().any(|&p| p < 0) {
        return Err(format!("its pads {pads:?} are not a non-negative begin and end for each of {} axes", axes.len()));
    }
    let mut width = vec![[0usize; 2]; t.rank()];
    for (k, &a) in axes.iter().enumerate() {
        width[a] = [pads[k] as usize, pads[k + axes.len()] as usize];
    }
    let mode = n.string("mode", "constant")?;
    if !["constant", "edge", "reflect"].contains(&mode.as_str()) {
        return Err(format!("mode=\"{mode}\" is not imported"));
    }
    let mut expr = format!("pad({x}, {}, mode=\"{mode}\"", list(&width.iter().map(|w| list(w)).collect::<Vec<_>>()));
    if let Some(v) = n.input(2) {
        let value = g.value(v)?.known().filter(|k| k.data.len() == 1).map(|k| k.data.literal(0)).and_then(literal);
        expr = format!("{expr}, constant_values={}", value.ok_or("its constant value must be a known finite scalar")?);
    }
    let shape = t.shape.iter().zip(&width).map(|(d, w)| d + w[0] + w[1]).collect();
    g.emit(out0(n)?, format!("{expr})"), ty(t.dtype, shape));
    Ok(())
}

fn einsum(g: &mut Graph, n: &Node) -> R<()> {
    let equation = n.string("equation", "")?.replace(' ', "");
    let (lhs, rhs) =
        equation.split_once("->").ok_or("its equation has no `->` (an implicit output is not imported)")?;
    let specs: Vec<&str> = lhs.split(',').collect();
    if specs.len() != n.proto.input.len() || equation.contains('.') {
        return Err(format!(
            "its equation `{equation}` does not name its {} inputs without `...`",
            n.proto.input.len()
        ));
    }
    let mut sizes = std::collections::BTreeMap::new();
    let mut names = vec![];
    let mut dtype = None;
    for (i, spec) in specs.iter().enumerate() {
        let (name, t) = arg(g, n, i)?;
        if spec.len() != t.rank() {
            return Err(format!("`{spec}` does not match {t}"));
        }
        for (c, &d) in spec.chars().zip(&t.shape) {
            if *sizes.entry(c).or_insert(d) != d {
                return Err(format!("index `{c}` has two sizes"));
            }
        }
        dtype = Some(t.dtype);
        names.push(name);
    }
    let shape = rhs
        .chars()
        .map(|c| sizes.get(&c).copied().ok_or(format!("output index `{c}` is on no input")))
        .collect::<R<_>>()?;
    g.emit(
        out0(n)?,
        format!("einsum(\"{equation}\", {})", names.join(", ")),
        ty(dtype.ok_or("it has no inputs")?, shape),
    );
    Ok(())
}
