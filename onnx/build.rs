//! Generates the ONNX protobuf types from proto/onnx.proto3 (ONNX 1.23.0), with protox (a
//! protobuf compiler in Rust, so no protoc is needed) and prost.

fn main() {
    println!("cargo:rerun-if-changed=proto/onnx.proto3");
    let descriptors = protox::compile(["onnx.proto3"], ["proto"]).expect("proto/onnx.proto3 compiles");
    prost_build::Config::new().compile_fds(descriptors).expect("prost generates the ONNX types");
}
