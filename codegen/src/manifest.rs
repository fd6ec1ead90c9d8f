//! The artifact contract (kiln-manifest) filled in from kiln's IR: each function's entry in
//! the manifest and the ABI descriptor embedded in the object. The types, names and formats
//! are kiln-manifest's; this module only says how IR types map onto them.

use kiln_ir::{Module, TensorType};
pub use kiln_manifest::*;

/// The artifact dtype of an IR dtype.
pub fn dtype(d: kiln_ir::DType) -> DType {
    match d {
        kiln_ir::DType::Bool => DType::Bool,
        kiln_ir::DType::U8 => DType::U8,
        kiln_ir::DType::I32 => DType::I32,
        kiln_ir::DType::U32 => DType::U32,
        kiln_ir::DType::I64 => DType::I64,
        kiln_ir::DType::F16 => DType::F16,
        kiln_ir::DType::BF16 => DType::BF16,
        kiln_ir::DType::F32 => DType::F32,
        kiln_ir::DType::F64 => DType::F64,
    }
}

fn arg(name: &str, ty: &TensorType) -> ArgInfo {
    ArgInfo {
        name: name.to_string(),
        dtype: dtype(ty.dtype),
        shape: ty.shape.iter().map(|&d| d as u64).collect(),
        bytes: ty.size_bytes() as u64,
    }
}

/// The functions of a module as the manifest lists them, with their workspace and stack bytes
/// and (GPU) launch plans.
pub fn functions(module: &Module, workspace: &[u64], stack: &[u64], launches: &[Vec<Step>]) -> Vec<FunctionInfo> {
    module
        .funcs
        .iter()
        .zip(workspace)
        .enumerate()
        .map(|(i, (f, &workspace_bytes))| FunctionInfo {
            workspace_bytes,
            stack_bytes: stack.get(i).copied().unwrap_or(0),
            launches: launches.get(i).cloned().unwrap_or_default(),
            name: f.name.clone(),
            symbol: entry_symbol(&module.name, &f.name),
            params: f.params.iter().map(|p| arg(&p.name, &p.ty)).collect(),
            results: f.result_names.iter().zip(f.result_types()).map(|(n, t)| arg(n, t)).collect(),
        })
        .collect()
}

/// The ABI descriptor of a module (kiln-manifest's [`abi`] of its [`functions`]).
pub fn module_abi(module: &Module, workspace: &[u64]) -> String {
    abi(&functions(module, workspace, &[], &[]))
}
