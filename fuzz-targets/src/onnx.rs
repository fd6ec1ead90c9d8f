//! The `onnx` target: ONNX models, as bytes, are imported or refused with ONNX diagnostics, and
//! what imports builds. The seeds are small models written here with the protobuf types, one
//! per family of operators the importer handles.

use kiln::kiln_onnx::proto::{
    attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto, type_proto, AttributeProto, GraphProto,
    ModelProto, NodeProto, OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};
use prost::Message;

use crate::Outcome;

/// Imports `data` as a model from `fuzz.onnx`. An import gives kiln source that builds (with
/// its weights compiled in); a refusal is a diagnostic of the importer's, E0700 to E0705.
pub fn onnx(data: &[u8]) -> Outcome {
    let path = std::path::Path::new("fuzz.onnx");
    match kiln::kiln_onnx::import(data, path, &Default::default()) {
        Err(diags) => {
            assert!(!diags.is_empty(), "a refusal says why");
            for d in &diags {
                assert!(d.code.starts_with("E070"), "an import error outside E0700-E0705: {} {}", d.code, d.message);
            }
            Outcome::Refused
        }
        Ok(imported) => {
            let weights = kiln::kiln_onnx::safetensors(&imported.weights).expect("weights serialize");
            let source = kiln::Source { name: "fuzz.kn".into(), text: imported.source };
            let options = kiln::Options {
                module_name: Some("fuzz".into()),
                weights: [(imported.weights_file, weights)].into(),
                ..crate::fuzz_options()
            };
            match kiln::build(&source, &options) {
                Ok(_) => Outcome::Accepted,
                // The importer writes only programs kiln accepts; one it refuses is a bug.
                Err(e @ (kiln::Error::Source { .. } | kiln::Error::Internal(_))) => {
                    panic!("imported source does not build:\n{}\n{}", e.render(false), source.text)
                }
                // Sizes past kiln's limits (a model declaring huge inputs) are refused as usage.
                Err(kiln::Error::Usage(_)) => Outcome::Refused,
            }
        }
    }
}

fn f32_info(name: &str, dims: &[i64]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|&d| tensor_shape_proto::Dimension {
            value: Some(tensor_shape_proto::dimension::Value::DimValue(d)),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: DataType::Float as i32,
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn output(name: &str) -> ValueInfoProto {
    ValueInfoProto { name: name.into(), ..Default::default() }
}

fn floats(name: &str, dims: &[i64]) -> TensorProto {
    let n: i64 = dims.iter().product();
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: DataType::Float as i32,
        float_data: (0..n).map(|i| ((i * 37 % 17) as f32 - 8.0) / 16.0).collect(),
        ..Default::default()
    }
}

fn ints(name: &str, values: &[i64]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: vec![values.len() as i64],
        data_type: DataType::Int64 as i32,
        int64_data: values.to_vec(),
        ..Default::default()
    }
}

/// An attribute: an integer, a float or a list of integers.
enum A {
    I(i64),
    F(f32),
    Is(&'static [i64]),
}

fn node(op: &str, inputs: &[&str], outputs: &[&str], attrs: &[(&str, A)]) -> NodeProto {
    let attribute = attrs
        .iter()
        .map(|(name, a)| {
            let mut p = AttributeProto { name: (*name).into(), ..Default::default() };
            match a {
                A::I(i) => (p.r#type, p.i) = (AttributeType::Int as i32, *i),
                A::F(f) => (p.r#type, p.f) = (AttributeType::Float as i32, *f),
                A::Is(v) => (p.r#type, p.ints) = (AttributeType::Ints as i32, v.to_vec()),
            }
            p
        })
        .collect();
    NodeProto {
        op_type: op.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        attribute,
        ..Default::default()
    }
}

fn model(nodes: Vec<NodeProto>, inputs: Vec<ValueInfoProto>, outputs: &[&str], inits: Vec<TensorProto>) -> Vec<u8> {
    ModelProto {
        ir_version: 9,
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 17 }],
        graph: Some(GraphProto {
            name: "seed".into(),
            node: nodes,
            input: inputs,
            output: outputs.iter().map(|o| output(o)).collect(),
            initializer: inits,
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

/// Small models of the importer's operator families.
pub fn seeds() -> Vec<Vec<u8>> {
    let mlp = model(
        vec![
            node("MatMul", &["x", "w1"], &["h"], &[]),
            node("Add", &["h", "b1"], &["h1"], &[]),
            node("Relu", &["h1"], &["h2"], &[]),
            node("Gemm", &["h2", "w2", "b2"], &["y"], &[("transB", A::I(1)), ("alpha", A::F(0.5))]),
            node("Softmax", &["y"], &["p"], &[("axis", A::I(-1))]),
        ],
        vec![f32_info("x", &[2, 4])],
        &["p"],
        vec![floats("w1", &[4, 8]), floats("b1", &[8]), floats("w2", &[3, 8]), floats("b2", &[3])],
    );
    let cnn = model(
        vec![
            node("Conv", &["x", "w", "b"], &["c"], &[("kernel_shape", A::Is(&[3, 3])), ("pads", A::Is(&[1, 1, 1, 1]))]),
            node("BatchNormalization", &["c", "s", "o", "m", "v"], &["n"], &[]),
            node("MaxPool", &["n"], &["p"], &[("kernel_shape", A::Is(&[2, 2])), ("strides", A::Is(&[2, 2]))]),
            node("AveragePool", &["p"], &["q"], &[("kernel_shape", A::Is(&[3, 3])), ("pads", A::Is(&[1, 1, 1, 1]))]),
            node("GlobalAveragePool", &["q"], &["g"], &[]),
            node("Flatten", &["g"], &["y"], &[]),
        ],
        vec![f32_info("x", &[1, 2, 6, 6])],
        &["y"],
        vec![
            floats("w", &[4, 2, 3, 3]),
            floats("b", &[4]),
            floats("s", &[4]),
            floats("o", &[4]),
            floats("m", &[4]),
            TensorProto { float_data: vec![1.0, 2.0, 0.5, 1.5], ..floats("v", &[4]) },
        ],
    );
    let shapes = model(
        vec![
            node("Shape", &["x"], &["s"], &[]),
            node("Gather", &["s", "zero"], &["n"], &[("axis", A::I(0))]),
            node("Unsqueeze", &["n", "axes"], &["n1"], &[]),
            node("Concat", &["n1", "rest"], &["t"], &[("axis", A::I(0))]),
            node("Reshape", &["x", "t"], &["r"], &[]),
            node("Transpose", &["r"], &["y"], &[("perm", A::Is(&[1, 0]))]),
        ],
        vec![f32_info("x", &[2, 3, 4])],
        &["y"],
        vec![TensorProto { dims: vec![], ..ints("zero", &[0]) }, ints("axes", &[0]), ints("rest", &[-1])],
    );
    let encoder = model(
        vec![
            node("LayerNormalization", &["x", "g", "b"], &["l"], &[("axis", A::I(-1))]),
            node("Split", &["l", "parts"], &["q", "k"], &[("axis", A::I(2))]),
            node("Transpose", &["k"], &["kt"], &[("perm", A::Is(&[0, 2, 1]))]),
            node("MatMul", &["q", "kt"], &["a"], &[]),
            node("Softmax", &["a"], &["w"], &[("axis", A::I(-1))]),
            node("MatMul", &["w", "q"], &["o"], &[]),
            node("Erf", &["o"], &["e"], &[]),
            node("ReduceMean", &["e"], &["m"], &[("axes", A::Is(&[1])), ("keepdims", A::I(0))]),
            node("Slice", &["m", "st", "en"], &["y"], &[]),
        ],
        vec![f32_info("x", &[1, 4, 8])],
        &["y"],
        vec![floats("g", &[8]), floats("b", &[8]), ints("parts", &[4, 4]), ints("st", &[0, 1]), ints("en", &[1, 3])],
    );
    vec![mlp, cnn, shapes, encoder]
}
