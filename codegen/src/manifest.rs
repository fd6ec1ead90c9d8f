//! The manifest: a JSON description of a built module (format `kiln-manifest`, version [`VERSION`],
//! documented in docs/artifact-format.md). Field order is fixed and no time or path is
//! recorded, so the same build gives the same bytes.

use kiln_ir::{Module, TensorType};
use serde::Serialize;

pub const FORMAT: &str = "kiln-manifest";
pub const VERSION: u32 = 3;

#[derive(Serialize)]
pub struct Manifest {
    pub format: &'static str,
    pub version: u32,
    pub module: String,
    /// What the library file is: `object`, `static` or `shared`; `gpu` for PTX kernels.
    pub kind: &'static str,
    pub compiler: Compiler,
    pub target: TargetInfo,
    pub opt_level: u8,
    pub source: FileInfo,
    pub functions: Vec<FunctionInfo>,
    /// GPU bundles: each kernel's name (as launches name it), PTX entry and file.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub kernels: Vec<KernelInfo>,
    pub files: Vec<FileInfo>,
}

#[derive(Serialize)]
pub struct KernelInfo {
    pub name: String,
    pub entry: String,
    pub file: String,
}

#[derive(Serialize)]
pub struct Compiler {
    pub name: &'static str,
    pub version: String,
}

#[derive(Serialize)]
pub struct TargetInfo {
    pub triple: String,
    pub cpu: String,
    pub features: String,
}

#[derive(Serialize)]
pub struct FileInfo {
    /// The file name, without any directory.
    pub name: String,
    pub sha256: String,
    pub bytes: u64,
}

#[derive(Serialize)]
pub struct FunctionInfo {
    pub name: String,
    pub symbol: String,
    pub params: Vec<ArgInfo>,
    pub results: Vec<ArgInfo>,
    /// Bytes of scratch memory the function needs, 64-byte aligned (its last argument; device
    /// memory for GPU bundles).
    pub workspace_bytes: u64,
    /// Bytes of stack the function's parallel loops take per thread for rows they keep in
    /// cache (row groups), besides the caller's stack use; 0 for most functions.
    pub stack_bytes: u64,
    /// GPU bundles: the kernel launches and library products that compute the function, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub launches: Vec<crate::gpu::Step>,
}

#[derive(Serialize)]
pub struct ArgInfo {
    pub name: String,
    pub dtype: &'static str,
    pub shape: Vec<usize>,
    pub bytes: usize,
}

fn arg(name: &str, ty: &TensorType) -> ArgInfo {
    ArgInfo { name: name.to_string(), dtype: ty.dtype.name(), shape: ty.shape.clone(), bytes: ty.size_bytes() }
}

/// The functions of a module as the manifest lists them, with their workspace and stack bytes
/// and (GPU) launch plans.
pub fn functions(
    module: &Module,
    workspace: &[u64],
    stack: &[u64],
    launches: &[Vec<crate::gpu::Step>],
) -> Vec<FunctionInfo> {
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
            symbol: crate::mlir::entry_symbol(&module.name, &f.name),
            params: f.params.iter().map(|p| arg(&p.name, &p.ty)).collect(),
            results: f.result_names.iter().zip(f.result_types()).map(|(n, t)| arg(n, t)).collect(),
        })
        .collect()
}

/// The ABI descriptor of a module, embedded in its object as the string `<module>.kiln_abi`:
/// one `symbol(dtype[dims],...)->(dtype[dims],...)ws=BYTES` per function, joined by `;`, for
/// example `mlp_loss(f32[16,32],i32[16])->(f32[])ws=4096`. docs/artifact-format.md specifies it; the runtime
/// rebuilds it from a manifest and refuses the bundle when the two differ.
pub fn abi(module: &Module, workspace: &[u64]) -> String {
    let list = |types: Vec<&TensorType>| -> String {
        let items: Vec<String> = types
            .iter()
            .map(|t| format!("{}[{}]", t.dtype, t.shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(",")))
            .collect();
        items.join(",")
    };
    let funcs: Vec<String> = module
        .funcs
        .iter()
        .zip(workspace)
        .map(|(f, ws)| {
            let params = list(f.params.iter().map(|p| &p.ty).collect());
            let symbol = crate::mlir::entry_symbol(&module.name, &f.name);
            format!("{symbol}({params})->({})ws={ws}", list(f.result_types()))
        })
        .collect();
    funcs.join(";")
}
