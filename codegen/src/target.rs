//! Code generation targets: an architecture, its triple and a CPU.
//!
//! The default CPU of each architecture is a fixed baseline so that artifacts are portable and
//! reproducible (x86-64-v3 for x86-64: AVX2 and FMA); `native` asks for the host's CPU and
//! features, which makes the artifact specific to this machine.

use inkwell::targets::{CodeModel, InitializationConfig, RelocMode, Target as LlvmTarget, TargetMachine, TargetTriple};
use inkwell::OptimizationLevel;

/// An architecture kiln generates code for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    X86_64,
    Aarch64,
    /// NVIDIA GPUs: PTX kernels and a launch plan (codegen/src/gpu/).
    Nvptx64,
}

mod cpus {
    include!(concat!(env!("OUT_DIR"), "/cpus.rs"));
}

impl Arch {
    /// The CPU names LLVM accepts for this architecture.
    /// For NVPTX, the GPU architectures kiln has validated with ptxas (each with PTX ISA 8.0:
    /// a wrong pair makes LLVM abort the process, so no other name reaches it).
    pub fn cpus(self) -> &'static [&'static str] {
        match self {
            Arch::X86_64 => cpus::X86_64_CPUS,
            Arch::Aarch64 => cpus::AARCH64_CPUS,
            Arch::Nvptx64 => &["sm_80", "sm_90"],
        }
    }

    /// Every architecture, with its triple and baseline CPU.
    pub const ALL: [(Arch, &'static str, &'static str); 3] = [
        (Arch::X86_64, "x86_64-unknown-linux-gnu", "x86-64-v3"),
        (Arch::Aarch64, "aarch64-unknown-linux-gnu", "generic"),
        (Arch::Nvptx64, "nvptx64-nvidia-cuda", "sm_80"),
    ];

    /// Whether code for this architecture runs on a GPU.
    pub fn is_gpu(self) -> bool {
        self == Arch::Nvptx64
    }

    fn initialize(self) {
        let config = InitializationConfig::default();
        match self {
            Arch::X86_64 => LlvmTarget::initialize_x86(&config),
            Arch::Aarch64 => LlvmTarget::initialize_aarch64(&config),
            Arch::Nvptx64 => LlvmTarget::initialize_nvptx(&config),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub arch: Arch,
    pub triple: String,
    /// The LLVM CPU name (`x86-64-v3`, `skylake-avx512`, ...), resolved for `native`.
    pub cpu: String,
    /// LLVM target features (`+avx2,...`); empty unless the CPU is `native`.
    pub features: String,
    /// Whether f32 sin, cos and pow call libm (CPU targets: correctly rounded at any argument)
    /// or use kiln's polynomials (GPU targets, which have no libm; bounds in
    /// codegen/src/mlir/approx.rs).
    pub libm: bool,
}

impl Default for Target {
    fn default() -> Self {
        Target::new(None, None).expect("the default target is valid")
    }
}

impl Target {
    /// The target for a triple (default x86_64-unknown-linux-gnu) and a CPU (default the
    /// architecture's baseline; `native` for the host).
    pub fn new(triple: Option<&str>, cpu: Option<&str>) -> Result<Target, String> {
        let triple = triple.unwrap_or(Arch::ALL[0].1);
        let Some(&(arch, _, baseline)) = Arch::ALL.iter().find(|(_, t, _)| *t == triple) else {
            let known: Vec<&str> = Arch::ALL.iter().map(|a| a.1).collect();
            return Err(format!("unsupported target `{triple}`; kiln supports {}", known.join(", ")));
        };
        let (cpu, features) = match cpu {
            Some("native") => {
                if arch != host_arch() {
                    return Err(format!("`--target-cpu native` needs a {triple} host"));
                }
                (TargetMachine::get_host_cpu_name().to_string(), TargetMachine::get_host_cpu_features().to_string())
            }
            Some(c) => (c.to_string(), String::new()),
            None => (baseline.to_string(), String::new()),
        };
        // PTX ISA 8.0 covers every GPU architecture in `Arch::cpus`.
        let features = if arch.is_gpu() { "+ptx80".to_string() } else { features };
        if !arch.cpus().contains(&cpu.as_str()) {
            let close: Vec<&str> =
                arch.cpus().iter().copied().filter(|c| c.starts_with(&cpu[..cpu.len().min(3)])).take(8).collect();
            let hint = if close.is_empty() { String::new() } else { format!(" (similar: {})", close.join(", ")) };
            if arch.is_gpu() {
                return Err(format!("unsupported GPU `{cpu}`; kiln supports {}", arch.cpus().join(", ")));
            }
            return Err(format!("unknown CPU `{cpu}` for {triple}{hint}; `--target-cpu native` uses this machine's"));
        }
        Ok(Target { arch, triple: triple.to_string(), cpu, features, libm: !arch.is_gpu() })
    }

    /// An LLVM target machine producing position-independent code.
    pub fn machine(&self, opt: u8) -> Result<TargetMachine, String> {
        self.arch.initialize();
        let triple = TargetTriple::create(&self.triple);
        let target = LlvmTarget::from_triple(&triple).map_err(|e| e.to_string())?;
        let level = match opt {
            0 => OptimizationLevel::None,
            1 => OptimizationLevel::Less,
            2 => OptimizationLevel::Default,
            _ => OptimizationLevel::Aggressive,
        };
        target
            .create_target_machine(&triple, &self.cpu, &self.features, level, RelocMode::PIC, CodeModel::Default)
            .ok_or_else(|| format!("LLVM cannot create a target machine for {} ({})", self.triple, self.cpu))
    }
}

/// The vector registers the schedules tile for (see `schedule::MatmulTiles`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegisterFile {
    pub count: u32,
    pub vector_bits: u32,
}

impl RegisterFile {
    /// Elements per vectorized tile of an elementwise loop or reduction: two registers of f32,
    /// so that two independent vector operations are in flight.
    pub fn vector_elements(self) -> usize {
        2 * self.vector_bits as usize / 32
    }
}

/// x86-64 CPUs (LLVM names) with AVX-512F: 32 registers of 512 bits.
const AVX512_CPUS: &[&str] = &[
    "x86-64-v4",
    "skylake-avx512",
    "cascadelake",
    "cooperlake",
    "cannonlake",
    "icelake-client",
    "icelake-server",
    "tigerlake",
    "rocketlake",
    "sapphirerapids",
    "emeraldrapids",
    "graniterapids",
    "graniterapids-d",
    "diamondrapids",
    "znver4",
    "znver5",
    "knl",
    "knm",
];

/// x86-64 CPUs (LLVM names) without AVX: 16 registers of 128 bits.
const SSE_CPUS: &[&str] =
    &["x86-64", "x86-64-v2", "nehalem", "westmere", "core2", "penryn", "k8", "btver1", "silvermont"];

impl Target {
    /// The vector register file of the target CPU: from the host's features for `native`, from
    /// the CPU name otherwise (x86-64: AVX-512 CPUs 32 x 512 bits, SSE-only CPUs 16 x 128,
    /// the rest AVX2's 16 x 256; aarch64: NEON's 32 x 128). A CPU missing from these lists
    /// still gets correct code, tiled for AVX2.
    pub fn registers(&self) -> RegisterFile {
        let has = |feature: &str| self.features.split(',').any(|f| f == feature);
        let (count, vector_bits) = match self.arch {
            Arch::Aarch64 | Arch::Nvptx64 => (32, 128),
            Arch::X86_64 if !self.features.is_empty() => {
                if has("+avx512f") {
                    (32, 512)
                } else if has("+avx2") {
                    (16, 256)
                } else {
                    (16, 128)
                }
            }
            Arch::X86_64 if AVX512_CPUS.contains(&self.cpu.as_str()) => (32, 512),
            Arch::X86_64 if SSE_CPUS.contains(&self.cpu.as_str()) => (16, 128),
            Arch::X86_64 => (16, 256),
        };
        RegisterFile { count, vector_bits }
    }
}

fn host_arch() -> Arch {
    if cfg!(target_arch = "aarch64") {
        Arch::Aarch64
    } else {
        Arch::X86_64
    }
}

/// The version of the LLVM kiln generates code with (`22.1.0`), recorded in manifests.
pub fn llvm_version() -> String {
    let (major, minor, patch) = inkwell::support::get_llvm_version();
    format!("{major}.{minor}.{patch}")
}

/// The C compiler driver that links for `target` on this machine: `cc` for the host's
/// architecture, the Debian cross compiler (`aarch64-linux-gnu-gcc`, ...) otherwise.
pub fn default_linker(target: &Target) -> String {
    if target.arch == host_arch() {
        "cc".into()
    } else {
        let arch = target.triple.split('-').next().unwrap_or("");
        format!("{arch}-linux-gnu-gcc")
    }
}
