//! kiln-manifest: the artifact contract between the compiler and the runtime.
//!
//! Owns: the manifest's types (format `kiln-manifest`, [`VERSION`]; docs/artifact-format.md),
//! written by the compiler and read by the runtime through the same definitions; the names kiln
//! gives entry points and the ABI descriptor ([`entry_symbol`], [`abi_symbol`],
//! [`parallel_for_symbol`]); the ABI descriptor's text ([`abi`]); the GPU launch plan
//! ([`Step`], [`Launch`], [`Gemm`], [`LaunchArg`]) and the limits both sides check it against
//! ([`GRID_LIMITS`], [`BLOCK_LIMITS`], [`SCRATCH_ALIGN`]).
//!
//! Also owns what a manifest promises beyond the files: the versions a runtime opens
//! ([`check_version`]), the requirements section ([`requirements`], [`cpu_features`]) and
//! detached ed25519 signatures of the manifest ([`signature_file`], [`sign`], [`verify`]).
//!
//! May depend on: serde and ed25519-dalek only. The compiler and the runtime both depend on
//! this crate; it depends on neither, so the runtime links nothing of the compiler.
//!
//! Guarantees: serializing a [`Manifest`] writes its fields in declaration order and nothing
//! else (no time, no path), so the same build gives the same bytes; every type that the
//! compiler writes is the type the runtime reads.

use serde::{Deserialize, Serialize};

/// The manifest's `format` field.
pub const FORMAT: &str = "kiln-manifest";
/// The manifest's major version, which this compiler writes. It changes only when an older
/// runtime could no longer run a new bundle correctly (a field removed or given another
/// meaning, a new kind of launch step); fields added with a default do not change it, and a
/// runtime ignores fields it does not know (docs/artifact-format.md, "Compatibility").
pub const VERSION: u32 = 5;
/// The oldest manifest version this runtime opens: every bundle from version 3 on.
pub const OLDEST_VERSION: u32 = 3;
/// The version that added loops and conditionals to GPU launch plans ([`Step::Loop`],
/// [`Step::While`], [`Step::If`], [`LaunchArg::Index`]).
pub const CONTROL_VERSION: u32 = 4;
/// The version that added the dtypes `u8`, `u32`, `f16` and `bf16` to parameters and results.
pub const DTYPES_VERSION: u32 = 5;

/// The version a bundle of `functions` is written with: the oldest whose runtimes run it, so
/// that a bundle that needs nothing new still opens in older runtimes ([`CONTROL_VERSION`]
/// only when a launch plan has a loop or a conditional, [`DTYPES_VERSION`] only when an
/// argument has one of its dtypes).
pub fn version_of(functions: &[FunctionInfo]) -> u32 {
    let control = functions.iter().any(|f| f.launches.iter().any(|s| !s.children().is_empty()));
    let new_dtype = functions
        .iter()
        .flat_map(|f| f.params.iter().chain(&f.results))
        .any(|a| matches!(a.dtype, DType::U8 | DType::U32 | DType::F16 | DType::BF16));
    if new_dtype {
        DTYPES_VERSION
    } else if control {
        CONTROL_VERSION
    } else {
        OLDEST_VERSION
    }
}

/// Whether a runtime of this crate's version opens a manifest of `version`; the error names
/// both versions and what to do.
pub fn check_version(version: u32) -> Result<(), String> {
    if version > VERSION {
        return Err(format!(
            "the bundle's manifest is version {version}, newer than this runtime's {VERSION}: \
             load it with a kiln runtime as new as the compiler that built it"
        ));
    }
    if version < OLDEST_VERSION {
        return Err(format!(
            "the bundle's manifest is version {version}; this runtime opens versions {OLDEST_VERSION} to \
             {VERSION}: rebuild the bundle"
        ));
    }
    Ok(())
}

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
    /// What running the bundle needs, for a scheduler that reads only this file: always
    /// [`requirements`] of the fields above (a runtime refuses a manifest where it is not).
    /// Absent from bundles built before kiln wrote it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requirements: Option<Requirements>,
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

/// What built a bundle (its provenance, with `target` and `source`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compiler {
    pub name: String,
    pub version: String,
    /// The LLVM that generated the code (`22.1.0`); empty in bundles built before kiln
    /// recorded it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub llvm: String,
    /// The options that decided the output, in a fixed order and without paths
    /// (`-O2`, `--target-cpu x86-64-v3`, `--egraph-nodes 20000`, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<String>,
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
    U8,
    I32,
    U32,
    I64,
    /// IEEE binary16 and bfloat16, two bytes each (their bits).
    F16,
    BF16,
    F32,
    F64,
}

impl DType {
    pub const ALL: [DType; 9] =
        [DType::Bool, DType::U8, DType::I32, DType::U32, DType::I64, DType::F16, DType::BF16, DType::F32, DType::F64];

    pub fn name(self) -> &'static str {
        match self {
            DType::Bool => "bool",
            DType::U8 => "u8",
            DType::I32 => "i32",
            DType::U32 => "u32",
            DType::I64 => "i64",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
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
            DType::Bool | DType::U8 => 1,
            DType::F16 | DType::BF16 => 2,
            DType::I32 | DType::U32 | DType::F32 => 4,
            DType::I64 | DType::F64 => 8,
        }
    }
}

/// One step of a GPU function's launch plan, in order: a kernel launch, a library product, or
/// (from version 4) a loop or a conditional whose steps the runtime repeats or picks on the
/// host, reading each bound or condition back from the device as one scalar.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Step {
    Kernel(Launch),
    Gemm { gemm: Gemm },
    Loop { r#loop: CountedLoop },
    While { r#while: WhileLoop },
    If { r#if: Conditional },
}

impl Step {
    /// The step lists this step runs (none for a launch or a product).
    pub fn children(&self) -> Vec<&[Step]> {
        match self {
            Step::Kernel(_) | Step::Gemm { .. } => vec![],
            Step::Loop { r#loop } => vec![&r#loop.body],
            Step::While { r#while } => vec![&r#while.before, &r#while.body],
            Step::If { r#if } => vec![&r#if.then, &r#if.r#else],
        }
    }

    /// [`children`](Self::children), to change.
    pub fn children_mut(&mut self) -> Vec<&mut Vec<Step>> {
        match self {
            Step::Kernel(_) | Step::Gemm { .. } => vec![],
            Step::Loop { r#loop } => vec![&mut r#loop.body],
            Step::While { r#while } => vec![&mut r#while.before, &mut r#while.body],
            Step::If { r#if } => vec![&mut r#if.then, &mut r#if.r#else],
        }
    }
}

/// A counted loop: `body` runs once for each index from `from` up to (not including) `to`;
/// its launches read the index as [`LaunchArg::Index`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CountedLoop {
    pub from: Scalar,
    pub to: Scalar,
    pub body: Vec<Step>,
}

/// A while loop: `before` runs, then `cond` is read; while it is true, `body` runs and
/// `before` again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WhileLoop {
    pub before: Vec<Step>,
    pub cond: Scalar,
    pub body: Vec<Step>,
}

/// A conditional: `then` runs when `cond` is true (not zero), `else` otherwise.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conditional {
    pub cond: Scalar,
    pub then: Vec<Step>,
    pub r#else: Vec<Step>,
}

/// An integer the host needs to run a plan (a loop bound, a condition).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scalar {
    Int {
        value: i64,
    },
    /// One element of type `dtype` (an integer or bool) read back from device memory `at`
    /// (a buffer or the workspace) once every step before it has finished.
    Read {
        at: LaunchArg,
        dtype: DType,
    },
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
    /// The index of the enclosing counted loop `depth` (0 the outermost), a 64-bit integer
    /// passed by value (from version 4).
    Index { depth: usize },
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
        assert_eq!(DType::parse("f8"), None);
    }
}

/// What running a bundle needs: the machine, and the memory of each function's calls.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requirements {
    /// The target triple the code runs on.
    pub triple: String,
    /// CPU bundles for x86-64: the instruction-set features the code may use (LLVM's names),
    /// those of the psABI level (`x86-64-v3`: avx2, fma, ...) and those recorded for
    /// `--target-cpu native`. Empty for a GPU bundle and for a named CPU beyond the psABI
    /// levels, which a scheduler matches by `target.cpu`.
    pub cpu_features: Vec<String>,
    /// GPU bundles: the architecture (`sm_80`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<String>,
    pub functions: Vec<FunctionNeeds>,
    /// The most memory one call uses: the largest sum of a function's parameter, result and
    /// workspace bytes (host memory for CPU bundles, device memory for GPU bundles).
    pub call_bytes: u64,
}

/// The memory a call of one function uses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionNeeds {
    pub name: String,
    pub param_bytes: u64,
    pub result_bytes: u64,
    pub workspace_bytes: u64,
    /// Stack per thread of its parallel loops (CPU), beyond the caller's.
    pub stack_bytes: u64,
}

impl FunctionNeeds {
    /// Parameters, results and workspace together (saturating).
    pub fn call_bytes(&self) -> u64 {
        self.param_bytes.saturating_add(self.result_bytes).saturating_add(self.workspace_bytes)
    }
}

/// The requirements section of a manifest with these fields.
pub fn requirements(kind: Kind, target: &TargetInfo, functions: &[FunctionInfo]) -> Requirements {
    let sum = |args: &[ArgInfo]| args.iter().fold(0u64, |n, a| n.saturating_add(a.bytes));
    let functions: Vec<FunctionNeeds> = functions
        .iter()
        .map(|f| FunctionNeeds {
            name: f.name.clone(),
            param_bytes: sum(&f.params),
            result_bytes: sum(&f.results),
            workspace_bytes: f.workspace_bytes,
            stack_bytes: f.stack_bytes,
        })
        .collect();
    let gpu = kind == Kind::Gpu;
    Requirements {
        triple: target.triple.clone(),
        cpu_features: if gpu { vec![] } else { cpu_features(&target.cpu, &target.features) },
        gpu: gpu.then(|| target.cpu.clone()),
        call_bytes: functions.iter().map(FunctionNeeds::call_bytes).max().unwrap_or(0),
        functions,
    }
}

/// The x86-64 microarchitecture levels of the psABI and the features each adds to the one
/// before (LLVM's `x86-64-v2` ... `x86-64-v4`; kiln's default CPU is `x86-64-v3`).
pub const X86_64_LEVELS: [(&str, &[&str]); 3] = [
    ("x86-64-v2", &["sse3", "ssse3", "sse4.1", "sse4.2", "popcnt", "cmpxchg16b"]),
    ("x86-64-v3", &["avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "lzcnt", "movbe", "xsave"]),
    ("x86-64-v4", &["avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"]),
];

/// The features code for `cpu` with extra `features` (LLVM's `+name,-name` list) may use:
/// those of its psABI level and every `+name`, in that order, each once.
pub fn cpu_features(cpu: &str, features: &str) -> Vec<String> {
    let level = X86_64_LEVELS.iter().position(|(name, _)| *name == cpu);
    let implied = level.into_iter().flat_map(|l| X86_64_LEVELS[..=l].iter().flat_map(|(_, f)| f.iter().copied()));
    let listed = features.split(',').filter_map(|f| f.strip_prefix('+'));
    let mut out: Vec<String> = vec![];
    for f in implied.chain(listed) {
        if !out.iter().any(|o| o == f) {
            out.push(f.to_string());
        }
    }
    out
}

/// The detached signature of module `module`'s manifest (`module.json`): `module.json.sig`,
/// beside it, holding the hex of an ed25519 signature of the manifest's bytes. The manifest
/// lists every other file with its SHA-256, so the signature covers the whole bundle.
pub fn signature_file(module: &str) -> String {
    format!("{module}.json.sig")
}

/// The contents of [`signature_file`] for `manifest`, signed with the PKCS#8 PEM private key
/// `key_pem` (as `openssl genpkey -algorithm ed25519` writes it).
pub fn sign(manifest: &[u8], key_pem: &str) -> Result<String, String> {
    use ed25519_dalek::pkcs8::DecodePrivateKey;
    use ed25519_dalek::Signer;
    let key = ed25519_dalek::SigningKey::from_pkcs8_pem(key_pem)
        .map_err(|e| format!("not an ed25519 private key in PKCS#8 PEM ({e})"))?;
    let signature = key.sign(manifest);
    Ok(format!("{}\n", hex(&signature.to_bytes())))
}

/// Checks that `signature` (the contents of [`signature_file`]) is a signature of `manifest`
/// by the SubjectPublicKeyInfo PEM public key `public_pem` (`openssl pkey -pubout`).
pub fn verify(manifest: &[u8], signature: &[u8], public_pem: &str) -> Result<(), String> {
    use ed25519_dalek::pkcs8::DecodePublicKey;
    let key = ed25519_dalek::VerifyingKey::from_public_key_pem(public_pem)
        .map_err(|e| format!("not an ed25519 public key in PEM ({e})"))?;
    let text = std::str::from_utf8(signature).map_err(|_| "the signature file is not text".to_string())?;
    let bytes = unhex(text.trim()).ok_or("the signature file does not hold 64 bytes in hex")?;
    let signature = ed25519_dalek::Signature::from_bytes(&bytes);
    key.verify_strict(manifest, &signature)
        .map_err(|_| "the manifest's signature does not verify with the given key".to_string())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<[u8; 64]> {
    if text.len() != 128 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; 64];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}
