//! kiln-manifest: the artifact contract between the compiler and the runtime.
//!
//! Owns: the manifest's types (format `kiln-manifest`, [`VERSION`]; docs/artifact-format.md),
//! written by the compiler and read by the runtime through the same definitions; the names kiln
//! gives entry points and the ABI descriptor ([`entry_symbol`], [`abi_symbol`],
//! [`parallel_for_symbol`]); the ABI descriptor's text ([`abi`]); the GPU launch plan
//! ([`Step`], [`Launch`], [`Gemm`], [`LaunchArg`]) and the limits both sides check it against
//! ([`GRID_LIMITS`], [`BLOCK_LIMITS`], [`SCRATCH_ALIGN`]).
//!
//! May depend on: serde only. The compiler and the runtime both depend on this crate; it
//! depends on neither, so the runtime links nothing of the compiler.
//!
//! Guarantees: serializing a [`Manifest`] writes its fields in declaration order and nothing
//! else (no time, no path), so the same build gives the same bytes; every type that the
//! compiler writes is the type the runtime reads.

use serde::{Deserialize, Serialize};

/// The manifest's `format` field.
pub const FORMAT: &str = "kiln-manifest";
/// The manifest version this compiler writes and this runtime reads.
pub const VERSION: u32 = 3;

/// The alignment of a CPU function's workspace and of every buffer in it (bytes).
pub const WORKSPACE_ALIGNMENT: u64 = 64;
/// The alignment of the scratch memory a GPU product gives the BLAS library (cuBLAS asks for
/// 256 bytes).
pub const SCRATCH_ALIGN: u64 = 256;
/// The largest matrix dimension, leading dimension and batch count of a GPU product (cuBLAS's
/// `int`s), and CUDA's grid x limit.
pub const MAX_DIM: u64 = (1 << 31) - 1;
/// CUDA's limits on grid dimensions.
pub const GRID_LIMITS: [u64; 3] = [MAX_DIM, 65535, 65535];
/// CUDA's limits on block dimensions.
pub const BLOCK_LIMITS: [u64; 3] = [1024, 1024, 64];
/// CUDA's limit on the threads of one block.
pub const MAX_THREADS_PER_BLOCK: u64 = 1024;

/// A built module's description: what it is, what built it, for which target, its functions
/// and every file with its hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    pub version: u32,
    pub module: String,
    pub kind: Kind,
    pub compiler: Compiler,
    pub target: TargetInfo,
    pub opt_level: u8,
    pub source: FileInfo,
    pub functions: Vec<FunctionInfo>,
    /// GPU bundles: each kernel's name (as launches name it), PTX entry and file.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kernels: Vec<KernelInfo>,
    pub files: Vec<FileInfo>,
}

/// What the library file of a build is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A relocatable object.
    Object,
    /// A static library (GNU archive).
    Static,
    /// A shared library, what the runtime loads.
    Shared,
    /// PTX kernels and launch plans.
    Gpu,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Object => "object",
            Kind::Static => "static",
            Kind::Shared => "shared",
            Kind::Gpu => "gpu",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compiler {
    pub name: String,
    pub version: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetInfo {
    pub triple: String,
    /// The CPU (`x86-64-v3`, `native`, ...) or, for GPU bundles, the architecture (`sm_90`).
    pub cpu: String,
    /// Empty unless the CPU is `native`, when it lists what the host has.
    #[serde(default)]
    pub features: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileInfo {
    /// The file name, without any directory.
    pub name: String,
    pub sha256: String,
    pub bytes: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelInfo {
    pub name: String,
    pub entry: String,
    pub file: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionInfo {
    pub name: String,
    /// [`entry_symbol`] of the module and the function.
    pub symbol: String,
    pub params: Vec<ArgInfo>,
    pub results: Vec<ArgInfo>,
    /// Bytes of scratch memory the function needs, 64-byte aligned (its last argument; device
    /// memory for GPU bundles).
    pub workspace_bytes: u64,
    /// Bytes of stack the function's parallel loops take per thread for rows they keep in
    /// cache (row groups), besides the caller's stack use; 0 for most functions.
    #[serde(default)]
    pub stack_bytes: u64,
    /// GPU bundles: the kernel launches and library products that compute the function, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub launches: Vec<Step>,
}

/// A parameter or result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArgInfo {
    pub name: String,
    pub dtype: DType,
    /// `[]` for a scalar.
    pub shape: Vec<u64>,
    /// The buffer size the caller provides.
    pub bytes: u64,
}

/// Element types, as artifacts name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    /// One byte per element: 0 or 1 on output, any nonzero byte is true on input.
    Bool,
    I32,
    I64,
    F32,
    F64,
}

impl DType {
    pub const ALL: [DType; 5] = [DType::Bool, DType::I32, DType::I64, DType::F32, DType::F64];

    pub fn name(self) -> &'static str {
        match self {
            DType::Bool => "bool",
            DType::I32 => "i32",
            DType::I64 => "i64",
            DType::F32 => "f32",
            DType::F64 => "f64",
        }
    }

    pub fn parse(name: &str) -> Option<DType> {
        DType::ALL.into_iter().find(|d| d.name() == name)
    }

    /// Bytes of one element.
    pub fn size(self) -> u64 {
        match self {
            DType::Bool => 1,
            DType::I32 | DType::F32 => 4,
            DType::I64 | DType::F64 => 8,
        }
    }
}

/// One step of a GPU function's launch plan, in order: a kernel launch or a library product.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Step {
    Kernel(Launch),
    Gemm { gemm: Gemm },
}

/// One kernel launch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Launch {
    /// A [`KernelInfo::name`].
    pub kernel: String,
    pub grid: [u64; 3],
    pub block: [u64; 3],
    pub args: Vec<LaunchArg>,
}

/// An argument of a launch or a product.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LaunchArg {
    /// The function's parameter or result buffer number `index` (parameters first).
    Buffer { index: usize },
    /// The device workspace, `offset` bytes in.
    Workspace { offset: u64 },
    /// A 64-bit integer passed by value.
    Int { value: i64 },
}

/// A matrix product the runtime computes with the GPU's BLAS (cuBLAS), as XLA does for dots:
/// `c[i] = a[i] b[i]` (`c[i] += a[i] b[i]` when `accumulate`) for each of `batch` row-major
/// matrices, `a[i]` m×k (k×m stored when `a_transposed`), `b[i]` k×n, `c[i]` m×n, each batch
/// following the previous one densely. The library works in `scratch_bytes` of the function's
/// workspace at `scratch` (aligned to [`SCRATCH_ALIGN`]), so that the manifest's workspace is
/// all the device memory a call uses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gemm {
    /// `f32` or `f64`.
    pub dtype: DType,
    pub batch: u64,
    pub m: u64,
    pub n: u64,
    pub k: u64,
    pub a_transposed: bool,
    pub accumulate: bool,
    pub a: LaunchArg,
    pub b: LaunchArg,
    pub c: LaunchArg,
    pub scratch: LaunchArg,
    pub scratch_bytes: u64,
}

impl Gemm {
    /// Bytes of a, b and c (all batches), saturating.
    pub fn bytes(&self) -> [u64; 3] {
        let size = self.dtype.size();
        [(self.m, self.k), (self.k, self.n), (self.m, self.n)]
            .map(|(r, c)| r.saturating_mul(c).saturating_mul(self.batch).saturating_mul(size))
    }

    /// Floating-point operations (a multiply and an add per term).
    pub fn flops(&self) -> f64 {
        2.0 * self.batch as f64 * self.m as f64 * self.n as f64 * self.k as f64
    }
}

/// The C symbol of function `function` of module `module`: `module_function`.
pub fn entry_symbol(module: &str, function: &str) -> String {
    format!("{module}_{function}")
}

/// The file of a GPU bundle that holds its launch plan as built: the manifest's functions
/// (launch steps included) as compact JSON. The file is listed and hashed like every other, so
/// a manifest whose plan was edited alone (block sizes, buffer indices, kernel names) no longer
/// matches it and is refused at open, as a CPU bundle's ABI descriptor refuses edited shapes.
pub fn plan_file(module: &str) -> String {
    format!("{module}.plan")
}

/// The contents of [`plan_file`] for `functions`.
pub fn plan_bytes(functions: &[FunctionInfo]) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(functions).expect("manifest types serialize");
    bytes.push(b'\n');
    bytes
}

/// The symbol of a function's packed entry point, `int32_t module_function_packed(void **args)`:
/// the entry point with its arguments (inputs, outputs, workspace) read from one array, so a
/// loader calls a function of any arity through one signature. Libraries of kiln 0.1 built
/// before it have only the plain entry point.
pub fn packed_entry_symbol(module: &str, function: &str) -> String {
    format!("{}_packed", entry_symbol(module, function))
}

/// The symbol of a module's ABI descriptor: `module.kiln_abi` (the `.` keeps it apart from
/// every C identifier, so it cannot clash with an entry point).
pub fn abi_symbol(module: &str) -> String {
    format!("{module}.kiln_abi")
}

/// The symbol of a module's parallel-for setter: `module_set_parallel_for`.
pub fn parallel_for_symbol(module: &str) -> String {
    format!("{module}_set_parallel_for")
}

/// The ABI descriptor of a module's functions, embedded in its object as the string
/// [`abi_symbol`]: one `symbol(dtype[dims],...)->(dtype[dims],...)ws=BYTES` per function,
/// joined by `;`, for example `mlp_loss(f32[16,32],i32[16])->(f32[])ws=4096`. The compiler
/// embeds it; the runtime computes it from the manifest and refuses a bundle whose library
/// embeds another.
pub fn abi(functions: &[FunctionInfo]) -> String {
    let list = |args: &[ArgInfo]| -> String {
        let items: Vec<String> = args
            .iter()
            .map(|a| {
                let dims: Vec<String> = a.shape.iter().map(|d| d.to_string()).collect();
                format!("{}[{}]", a.dtype.name(), dims.join(","))
            })
            .collect();
        items.join(",")
    };
    let items: Vec<String> = functions
        .iter()
        .map(|f| format!("{}({})->({})ws={}", f.symbol, list(&f.params), list(&f.results), f.workspace_bytes))
        .collect();
    items.join(";")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arg(dtype: DType, shape: &[u64]) -> ArgInfo {
        let bytes = shape.iter().product::<u64>() * dtype.size();
        ArgInfo { name: "x".into(), dtype, shape: shape.to_vec(), bytes }
    }

    #[test]
    fn abi_lists_symbols_types_and_workspace() {
        let f = FunctionInfo {
            name: "loss".into(),
            symbol: entry_symbol("mlp", "loss"),
            params: vec![arg(DType::F32, &[16, 32]), arg(DType::I32, &[16])],
            results: vec![arg(DType::F32, &[])],
            workspace_bytes: 4096,
            stack_bytes: 0,
            launches: vec![],
        };
        let g = FunctionInfo { name: "g".into(), symbol: entry_symbol("mlp", "g"), params: vec![], ..f.clone() };
        assert_eq!(abi(&[f, g]), "mlp_loss(f32[16,32],i32[16])->(f32[])ws=4096;mlp_g()->(f32[])ws=4096");
    }

    /// The JSON shapes docs/artifact-format.md shows, read and written back unchanged.
    #[test]
    fn launch_plans_keep_the_documented_json() {
        let launch = r#"{"kernel":"m_f_impl_kernel_0","grid":[16,1,1],"block":[256,1,1],"args":[{"int":{"value":1}},{"buffer":{"index":0}},{"workspace":{"offset":512}}]}"#;
        let gemm = r#"{"gemm":{"dtype":"f32","batch":1,"m":64,"n":48,"k":32,"a_transposed":false,"accumulate":false,"a":{"buffer":{"index":0}},"b":{"buffer":{"index":1}},"c":{"workspace":{"offset":0}},"scratch":{"workspace":{"offset":12288}},"scratch_bytes":4194304}}"#;
        for text in [launch, gemm] {
            let step: Step = serde_json::from_str(text).unwrap();
            assert_eq!(serde_json::to_string(&step).unwrap(), text);
        }
        let Step::Gemm { gemm } = serde_json::from_str(gemm).unwrap() else { panic!("a product") };
        assert_eq!(gemm.bytes(), [64 * 32 * 4, 32 * 48 * 4, 64 * 48 * 4]);
        assert!(serde_json::from_str::<Step>(&launch.replace("\"int\"", "\"float\"")).is_err());
    }

    #[test]
    fn dtype_names_round_trip() {
        for d in DType::ALL {
            assert_eq!(DType::parse(d.name()), Some(d));
        }
        assert_eq!(DType::parse("f16"), None);
    }
}
