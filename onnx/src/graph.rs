//! The walk over an ONNX graph: every value is either named in the kiln source being written,
//! with its type, or known while importing (initializers, constants, and the shape arithmetic
//! exporters emit), so that shapes, axes and pads are plain numbers in the source.

use std::collections::{BTreeMap, BTreeSet};

use kiln_ir::interp::{Data, Tensor};
use kiln_ir::{DType, TensorType};

use crate::proto::{attribute_proto::AttributeType, AttributeProto, NodeProto};

/// An ONNX value during the import.
#[derive(Clone, Debug)]
pub enum Val {
    /// A value of the kiln source, by its name there.
    Named { name: String, ty: TensorType },
    /// A value known while importing. Used as data, it becomes a weight (or, when every
    /// element is the same, a broadcast literal).
    Known(Tensor),
}

impl Val {
    pub fn ty(&self) -> TensorType {
        match self {
            Val::Named { ty, .. } => ty.clone(),
            Val::Known(t) => t.ty(),
        }
    }

    pub fn known(&self) -> Option<&Tensor> {
        match self {
            Val::Known(t) => Some(t),
            Val::Named { .. } => None,
        }
    }
}

/// A weight: a known tensor the source `load`s from the weights file, or takes as a parameter
/// (with `weights_as_params`).
#[derive(Clone, Debug)]
pub struct Weight {
    /// Its name in the source and in the weights file.
    pub name: String,
    pub tensor: Tensor,
}

/// The kiln source being written and the values it names.
pub struct Graph {
    pub opset: i64,
    /// The weights file the source `load`s weights from, or None to take them as parameters.
    pub loads_from: Option<String>,
    values: BTreeMap<String, Val>,
    /// Known values already given a name in the source (weights and literals).
    materialized: BTreeMap<String, String>,
    pub params: Vec<(String, TensorType)>,
    pub weights: Vec<Weight>,
    pub lines: Vec<String>,
    names: BTreeSet<String>,
    /// For 4-D values of convolutional networks, the kiln name of the same value with its
    /// channels last (NHWC, kiln's conv2d layout), by ONNX name. Ops that have one compute
    /// both forms; dead-code elimination keeps the form that is read, so a chain of Conv,
    /// BatchNormalization, Relu, Add and pooling stays in NHWC without a transpose per op.
    pub nhwc: BTreeMap<String, String>,
    /// `let`s written only when their value is first read: the NCHW forms of values computed
    /// channels-last, which a network of convolutions may never read.
    pending: BTreeMap<String, String>,
}

/// The node an op handler works on, with the graph.
pub struct Node<'a> {
    pub proto: &'a NodeProto,
}

/// Why a node cannot be imported; the caller adds the node's name and op.
pub type R<T> = Result<T, String>;

impl Graph {
    pub fn new(opset: i64, loads_from: Option<String>) -> Graph {
        Graph {
            opset,
            loads_from,
            values: BTreeMap::new(),
            materialized: BTreeMap::new(),
            params: vec![],
            weights: vec![],
            lines: vec![],
            names: BTreeSet::new(),
            nhwc: BTreeMap::new(),
            pending: BTreeMap::new(),
        }
    }

    /// A fresh kiln identifier made from ONNX name `onnx`.
    pub fn fresh(&mut self, onnx: &str) -> String {
        let mut base: String =
            onnx.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).collect();
        base = base.trim_matches('_').to_string();
        let mut collapsed = String::new();
        for c in base.chars() {
            if !(c == '_' && collapsed.ends_with('_')) {
                collapsed.push(c);
            }
        }
        if collapsed.is_empty() || collapsed.starts_with(|c: char| c.is_ascii_digit()) {
            collapsed.insert_str(0, "v_");
        }
        if kiln_frontend::parser::is_reserved(&collapsed) || kiln_frontend::builtin_names().any(|b| b == collapsed) {
            collapsed.push('_');
        }
        let mut name = collapsed.clone();
        let mut k = 1;
        while self.names.contains(&name) {
            k += 1;
            name = format!("{collapsed}_{k}");
        }
        self.names.insert(name.clone());
        name
    }

    pub fn define(&mut self, onnx: &str, v: Val) {
        self.values.insert(onnx.to_string(), v);
    }

    pub fn value(&self, onnx: &str) -> R<&Val> {
        self.values.get(onnx).ok_or_else(|| format!("its input `{onnx}` is not defined before it"))
    }

    /// A graph input: a parameter of the function.
    pub fn input(&mut self, onnx: &str, ty: TensorType) {
        let name = self.fresh(onnx);
        self.params.push((name.clone(), ty.clone()));
        self.define(onnx, Val::Named { name, ty });
    }

    /// The kiln name of value `onnx`, giving a known value a name first: a broadcast literal
    /// when all its elements are equal and finite, else a weight.
    pub fn name_of(&mut self, onnx: &str) -> R<String> {
        match self.value(onnx)?.clone() {
            Val::Named { name, .. } => {
                if let Some(line) = self.pending.remove(&name) {
                    self.lines.push(line);
                }
                Ok(name)
            }
            Val::Known(t) => {
                if let Some(name) = self.materialized.get(onnx) {
                    return Ok(name.clone());
                }
                if t.data.is_empty() {
                    return Err(format!("the empty tensor `{onnx}` is used as a value, and kiln has no empty arrays"));
                }
                let name = match splat(&t) {
                    Some(literal) => {
                        let name = self.fresh(onnx);
                        let expr = if t.shape.is_empty() {
                            literal
                        } else {
                            format!("broadcast_to({literal}, {})", list(&t.shape))
                        };
                        self.lines.push(format!("let {name} = {expr};"));
                        name
                    }
                    None => {
                        let name = self.fresh(onnx);
                        match &self.loads_from {
                            Some(file) => self.lines.push(format!("let {name} = load(\"{file}\", \"{name}\");")),
                            None => self.params.push((name.clone(), t.ty())),
                        }
                        self.weights.push(Weight { name: name.clone(), tensor: t });
                        name
                    }
                };
                self.materialized.insert(onnx.to_string(), name.clone());
                Ok(name)
            }
        }
    }

    /// Emits `let NAME_nhwc = expr;`, the channels-last form of the 4-D output `onnx` of type
    /// `ty` (NCHW), whose NCHW form is then written only if something reads it.
    pub fn emit_nhwc(&mut self, onnx: &str, expr: String, ty: TensorType) {
        let alias = self.fresh(&format!("{onnx}_nhwc"));
        self.lines.push(format!("let {alias} = {expr};"));
        let name = self.fresh(onnx);
        self.pending.insert(name.clone(), format!("let {name} = transpose({alias}, [0, 3, 1, 2]);"));
        self.define(onnx, Val::Named { name, ty });
        self.nhwc.insert(onnx.to_string(), alias);
    }

    /// Emits `let NAME = expr;` for the output `onnx` of type `ty`.
    pub fn emit(&mut self, onnx: &str, expr: String, ty: TensorType) {
        let name = self.fresh(onnx);
        self.lines.push(format!("let {name} = {expr};"));
        self.define(onnx, Val::Named { name, ty });
    }
}

/// The literal `cast(v, dtype)` when every element of `t` is the same finite number (bit for
/// bit: -0.0 is not 0.0).
fn splat(t: &Tensor) -> Option<String> {
    let first = t.data.literal(0);
    (1..t.data.len()).all(|i| t.data.literal(i) == first).then(|| literal(first)).flatten()
}

/// A scalar as kiln source of its own dtype, or None for a non-finite float.
pub fn literal(l: kiln_ir::Literal) -> Option<String> {
    Some(match l {
        kiln_ir::Literal::Bool(b) => b.to_string(),
        kiln_ir::Literal::Int(d, v) => format!("cast({v}, {d})"),
        kiln_ir::Literal::Float(d, v) if v.is_finite() => format!("cast({v:?}, {d})"),
        kiln_ir::Literal::Float(..) => return None,
    })
}

/// `[a, b, c]`.
pub fn list<T: std::fmt::Display>(items: &[T]) -> String {
    format!("[{}]", items.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", "))
}

impl Node<'_> {
    pub fn op(&self) -> &str {
        &self.proto.op_type
    }

    /// The name of input `i`, or None when the node omits it (an empty name, or past the end).
    pub fn input(&self, i: usize) -> Option<&str> {
        self.proto.input.get(i).map(String::as_str).filter(|s| !s.is_empty())
    }

    pub fn required(&self, i: usize) -> R<&str> {
        self.input(i).ok_or_else(|| format!("it lacks its input {i}"))
    }

    /// The name of output `i`, when the model uses it.
    pub fn output(&self, i: usize) -> Option<&str> {
        self.proto.output.get(i).map(String::as_str).filter(|s| !s.is_empty())
    }

    fn attr(&self, name: &str) -> Option<&AttributeProto> {
        self.proto.attribute.iter().find(|a| a.name == name)
    }

    pub fn int(&self, name: &str, default: i64) -> R<i64> {
        match self.attr(name) {
            None => Ok(default),
            Some(a) if a.r#type == AttributeType::Int as i32 => Ok(a.i),
            Some(_) => Err(format!("its attribute `{name}` is not an integer")),
        }
    }

    pub fn float(&self, name: &str, default: f32) -> R<f32> {
        match self.attr(name) {
            None => Ok(default),
            Some(a) if a.r#type == AttributeType::Float as i32 => Ok(a.f),
            Some(_) => Err(format!("its attribute `{name}` is not a float")),
        }
    }

    pub fn ints(&self, name: &str) -> R<Option<Vec<i64>>> {
        match self.attr(name) {
            None => Ok(None),
            Some(a) if a.r#type == AttributeType::Ints as i32 => Ok(Some(a.ints.clone())),
            Some(_) => Err(format!("its attribute `{name}` is not a list of integers")),
        }
    }

    pub fn string(&self, name: &str, default: &str) -> R<String> {
        match self.attr(name) {
            None => Ok(default.to_string()),
            Some(a) if a.r#type == AttributeType::String as i32 => {
                String::from_utf8(a.s.clone()).map_err(|_| format!("its attribute `{name}` is not UTF-8"))
            }
            Some(_) => Err(format!("its attribute `{name}` is not a string")),
        }
    }

    pub fn tensor_attr(&self, name: &str) -> Option<&AttributeProto> {
        self.attr(name)
    }
}

/// The values of a known integer tensor.
pub fn ints_of(t: &Tensor) -> R<Vec<i64>> {
    if t.data.dtype().is_float() || t.data.dtype() == DType::Bool {
        return Err(format!("expected integers, got {}", t.ty()));
    }
    Ok((0..t.data.len()).map(|i| t.data.get_i64(i)).collect())
}

/// A known i64 tensor.
pub fn i64s(shape: Vec<usize>, v: Vec<i64>) -> Tensor {
    Tensor::new(shape, Data::I64(v))
}
