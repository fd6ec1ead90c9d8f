//! kiln-onnx: ONNX models as kiln source.
//!
//! Owns: reading ONNX files (the protobuf schema compiled by prost from ONNX's own
//! `onnx.proto3`, never parsed by hand), checking their opsets, and writing a model's graph as
//! one kiln function whose parameters are the graph's inputs and then its weights. Shapes,
//! axes, pads and the shape arithmetic exporters emit are folded while importing, so the source
//! holds plain numbers, as a person would write it.
//!
//! May depend on: kiln-ir (dtypes, tensors, diagnostics), kiln-frontend (reserved words and
//! builtin names, which generated names avoid), prost.
//!
//! Guarantees: a model is imported whole or refused with diagnostics listing every node that
//! cannot be imported; a corrupt file, an unknown opset or a missing external-data file is a
//! diagnostic, never a panic.

use std::collections::BTreeMap;
use std::path::Path;

use kiln_ir::interp::Tensor;
use kiln_ir::{Diagnostic, TensorType};
use prost::Message;

mod graph;
mod ops;
mod tensor;

/// The ONNX protobuf types, generated from proto/onnx.proto3.
#[allow(clippy::all, missing_docs)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/onnx.rs"));
}

pub use graph::Weight;

/// The opsets of the default domain kiln imports.
pub const OPSETS: std::ops::RangeInclusive<i64> = 13..=21;

/// How a model is imported.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Sizes for inputs whose dimensions the model leaves symbolic, by input name.
    pub shapes: BTreeMap<String, Vec<usize>>,
    /// Take the weights as parameters after the inputs, rather than `load` them from the
    /// weights file.
    pub weights_as_params: bool,
}

/// An imported model.
#[derive(Debug)]
pub struct Imported {
    /// `fn forward(inputs...) -> outputs { ... }` and its export; with
    /// [`Options::weights_as_params`], the weights are parameters after the inputs.
    pub source: String,
    /// The weights, in the order the source loads them (or takes them as parameters).
    pub weights: Vec<Weight>,
    /// The weights file's name, which the source's `load` calls read: the model's file stem
    /// with `.safetensors`.
    pub weights_file: String,
}

/// The function an imported model's graph becomes.
pub const FUNCTION: &str = "forward";

fn error(code: &'static str, message: impl Into<String>) -> Diagnostic {
    Diagnostic::error(code, message)
}

/// Imports the model `bytes`, read from `path` (whose folder holds its external data).
pub fn import(bytes: &[u8], path: &Path, options: &Options) -> Result<Imported, Vec<Diagnostic>> {
    let model = proto::ModelProto::decode(bytes).map_err(|e| {
        vec![error("E0700", format!("`{}` is not an ONNX model: {e}", path.display()))
            .help("the file may be truncated or corrupt; export the model again")]
    })?;
    let opset = opset(&model).map_err(|d| vec![d])?;
    let graph = model.graph.as_ref().ok_or_else(|| vec![error("E0700", "the model has no graph")])?;
    let unsupported: Vec<String> = graph
        .node
        .iter()
        .filter(|n| !(n.domain.is_empty() || n.domain == "ai.onnx") || ops::handler(&n.op_type).is_none())
        .map(|n| {
            let domain = if n.domain.is_empty() { "ai.onnx" } else { &n.domain };
            format!("node `{}`: {} ({domain}, opset {opset})", node_name(n), n.op_type)
        })
        .collect();
    if !unsupported.is_empty() {
        let mut d = error(
            "E0701",
            format!(
                "{} node{} of the model use operators kiln does not import",
                unsupported.len(),
                plural(unsupported.len())
            ),
        );
        for u in unsupported {
            d = d.note(u);
        }
        return Err(vec![d.help("docs/onnx.md lists the operators kiln imports")]);
    }
    let dir = path.parent().unwrap_or(Path::new(""));
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into());
    let weights_file = format!("{}.safetensors", kiln_frontend::module_name_from_stem(&stem));
    let mut g = graph::Graph::new(opset, (!options.weights_as_params).then(|| weights_file.clone()));
    let mut diags = vec![];
    for init in &graph.initializer {
        match tensor::decode(init, dir) {
            Ok(t) => g.define(&init.name, graph::Val::Known(t)),
            Err(e) => diags.push(error("E0702", format!("initializer `{}`: {e}", init.name))),
        }
    }
    let initializers: std::collections::BTreeSet<&str> = graph.initializer.iter().map(|i| i.name.as_str()).collect();
    for input in graph.input.iter().filter(|i| !initializers.contains(i.name.as_str())) {
        match input_type(input, options) {
            Ok(ty) => g.input(&input.name, ty),
            Err(d) => diags.push(d),
        }
    }
    if let Some(name) = options.shapes.keys().find(|k| !graph.input.iter().any(|i| &i.name == *k)) {
        diags.push(error("E0703", format!("--shape names `{name}`, which is not an input of the model")));
    }
    if !diags.is_empty() {
        return Err(diags);
    }
    for node in &graph.node {
        let n = graph::Node { proto: node };
        let handler = ops::handler(&node.op_type).expect("checked above");
        if let Err(e) = handler(&mut g, &n) {
            return Err(vec![error(
                "E0704",
                format!("node `{}` ({}) cannot be imported: {e}", node_name(node), node.op_type),
            )]);
        }
    }
    let mut results = vec![];
    for output in &graph.output {
        let value =
            g.value(&output.name).map_err(|e| vec![error("E0704", format!("output `{}`: {e}", output.name))])?;
        let ty = value.ty();
        if let Some(declared) = declared_shape(output) {
            if declared.len() != ty.rank() || declared.iter().zip(&ty.shape).any(|(d, &s)| d.is_some_and(|d| d != s)) {
                return Err(vec![error(
                    "E0704",
                    format!("output `{}` is {ty} after import, but the model declares shape {declared:?}", output.name),
                )]);
            }
        }
        let name = g.name_of(&output.name).map_err(|e| vec![error("E0704", e)])?;
        results.push((name, ty));
    }
    if results.is_empty() {
        return Err(vec![error("E0700", "the model's graph has no outputs")]);
    }
    Ok(Imported { source: source(path, &g, &results), weights: g.weights, weights_file })
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn node_name(n: &proto::NodeProto) -> &str {
    if n.name.is_empty() {
        n.output.first().map(String::as_str).unwrap_or("")
    } else {
        &n.name
    }
}

/// The opset of the default domain, refusing one outside [`OPSETS`].
fn opset(model: &proto::ModelProto) -> Result<i64, Diagnostic> {
    let version = model
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version)
        .ok_or_else(|| error("E0700", "the model imports no opset of the default domain"))?;
    if !OPSETS.contains(&version) {
        return Err(error("E0705", format!("the model uses opset {version}; kiln imports opsets 13 to 21"))
            .help("convert it with onnx.version_converter.convert_version(model, 17)"));
    }
    Ok(version)
}

/// The declared dimensions of a value: Some(size) or None (symbolic), when it declares a shape.
fn declared_shape(v: &proto::ValueInfoProto) -> Option<Vec<Option<usize>>> {
    let proto::type_proto::Value::TensorType(t) = v.r#type.as_ref()?.value.as_ref()? else { return None };
    let dims = &t.shape.as_ref()?.dim;
    Some(
        dims.iter()
            .map(|d| match d.value {
                Some(proto::tensor_shape_proto::dimension::Value::DimValue(v)) if v > 0 => Some(v as usize),
                _ => None,
            })
            .collect(),
    )
}

/// The type of a graph input: its element type and shape, symbolic dimensions given by
/// `options.shapes`.
fn input_type(v: &proto::ValueInfoProto, options: &Options) -> Result<TensorType, Diagnostic> {
    let tensor = match v.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(proto::type_proto::Value::TensorType(t)) => t,
        _ => return Err(error("E0702", format!("input `{}` is not a tensor", v.name))),
    };
    let dtype = tensor::dtype(tensor.elem_type)
        .map_err(|name| error("E0702", format!("input `{}` has element type {name}, which kiln lacks", v.name)))?;
    let declared = declared_shape(v).ok_or_else(|| error("E0703", format!("input `{}` declares no shape", v.name)))?;
    if let Some(given) = options.shapes.get(&v.name) {
        if given.len() != declared.len() || given.iter().zip(&declared).any(|(g, d)| d.is_some_and(|d| d != *g)) {
            return Err(error("E0703", format!("--shape {}={:?} contradicts the model's {declared:?}", v.name, given)));
        }
        return Ok(TensorType::new(dtype, given.clone()));
    }
    declared.iter().copied().collect::<Option<Vec<usize>>>().map(|shape| TensorType::new(dtype, shape)).ok_or_else(
        || {
            let dims: Vec<String> = declared.iter().map(|d| d.map_or("?".into(), |d| d.to_string())).collect();
            error("E0703", format!("input `{}` has symbolic dimensions [{}]", v.name, dims.join(", "))).help(format!(
                "fix them with --shape {}={}",
                v.name,
                dims.iter().map(|d| if d == "?" { "1" } else { d }).collect::<Vec<_>>().join("x")
            ))
        },
    )
}

/// The model as kiln source.
fn source(path: &Path, g: &graph::Graph, results: &[(String, TensorType)]) -> String {
    let file = path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
    let mut s = format!("// Imported from {file} (ONNX opset {}) by `kiln import`.\n", g.opset);
    if !g.weights.is_empty() && g.loads_from.is_none() {
        s.push_str("// The parameters after the model's inputs are its weights, in the weights file.\n");
    }
    let params: Vec<String> = g.params.iter().map(|(n, t)| format!("{n}: {t}")).collect();
    let types: Vec<String> = results.iter().map(|(_, t)| t.to_string()).collect();
    let result_type = if types.len() == 1 { types[0].clone() } else { format!("({})", types.join(", ")) };
    s.push_str(&format!("fn {FUNCTION}({}) -> {result_type} {{\n", params.join(", ")));
    for line in &g.lines {
        s.push_str(&format!("    {line}\n"));
    }
    let names: Vec<&str> = results.iter().map(|(n, _)| n.as_str()).collect();
    let value = if names.len() == 1 { names[0].to_string() } else { format!("({})", names.join(", ")) };
    s.push_str(&format!("    {value}\n}}\n\nexport {FUNCTION};\n"));
    s
}

/// The weights file of an import: the weights by parameter name, in safetensors format (a
/// JSON header of names, dtypes, shapes and offsets, then the little-endian data), which
/// numpy, PyTorch, JAX and Rust read. The same weights give the same bytes.
pub fn safetensors(weights: &[Weight]) -> Result<Vec<u8>, String> {
    struct View<'a>(&'a Tensor, Vec<u8>);
    impl safetensors::View for View<'_> {
        fn dtype(&self) -> safetensors::Dtype {
            use kiln_ir::DType;
            match self.0.data.dtype() {
                DType::Bool => safetensors::Dtype::BOOL,
                DType::U8 => safetensors::Dtype::U8,
                DType::I32 => safetensors::Dtype::I32,
                DType::U32 => safetensors::Dtype::U32,
                DType::I64 => safetensors::Dtype::I64,
                DType::F16 => safetensors::Dtype::F16,
                DType::BF16 => safetensors::Dtype::BF16,
                DType::F32 => safetensors::Dtype::F32,
                DType::F64 => safetensors::Dtype::F64,
            }
        }
        fn shape(&self) -> &[usize] {
            &self.0.shape
        }
        fn data(&self) -> std::borrow::Cow<'_, [u8]> {
            std::borrow::Cow::Borrowed(&self.1)
        }
        fn data_len(&self) -> usize {
            self.1.len()
        }
    }
    let views = weights.iter().map(|w| (w.name.as_str(), View(&w.tensor, w.tensor.data.to_bytes())));
    safetensors::serialize(views, None).map_err(|e| e.to_string())
}
