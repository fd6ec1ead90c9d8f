//! kiln: the driver. The library API that build scripts and the `kiln` CLI share.
//!
//! Owns: reading sources, running the stages in order (frontend, passes, codegen), writing
//! artifacts (object, C header, manifest) and dumps, and turning every failure into an
//! [`Error`] the CLI maps to an exit code.
//!
//! May depend on: every kiln crate.
//!
//! Guarantees: user errors are [`Error::Source`] diagnostics; the same input, compiler version,
//! target and options give byte-identical artifacts (no time or path is recorded).

use kiln_codegen::manifest::{self, Compiler, FileInfo, Kind, Manifest, TargetInfo};
use kiln_codegen::{Emit, Target};
use kiln_frontend::Transform;
use kiln_ir::{Diagnostic, Func, Module};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub mod bench;
mod build_script;
pub mod report;

pub use build_script::Build;
pub use kiln_codegen;
pub use kiln_frontend;
pub use kiln_ir;
pub use kiln_onnx;
pub use kiln_passes;
pub use report::ErrorFormat;

/// The compiler version recorded in artifacts.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Things `--emit` can produce.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum EmitKind {
    /// The parsed syntax tree.
    Ast,
    /// The IR as the frontend produced it.
    Ir,
    /// The IR after the pass pipeline.
    Opt,
    /// MLIR before its pass pipeline.
    Mlir,
    /// Op counts and FLOPs per function, after the pass pipeline.
    Stats,
    /// Optimized LLVM IR.
    Llvm,
    /// Assembly.
    Asm,
    /// The object, with its C header and manifest.
    Obj,
}

impl EmitKind {
    pub const ALL: [(EmitKind, &'static str, &'static str); 8] = [
        (EmitKind::Ast, "ast", "ast.txt"),
        (EmitKind::Ir, "ir", "kir"),
        (EmitKind::Opt, "opt", "opt.kir"),
        (EmitKind::Stats, "stats", "stats.txt"),
        (EmitKind::Mlir, "mlir", "mlir"),
        (EmitKind::Llvm, "llvm", "ll"),
        (EmitKind::Asm, "asm", "s"),
        (EmitKind::Obj, "obj", "o"),
    ];

    pub fn parse(name: &str) -> Option<EmitKind> {
        Self::ALL.iter().find(|k| k.1 == name).map(|k| k.0)
    }

    pub fn extension(self) -> &'static str {
        Self::ALL.iter().find(|k| k.0 == self).map(|k| k.2).expect("every kind is listed")
    }
}

/// What form the compiled code takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OutputKind {
    /// A relocatable object, `M.o`.
    #[default]
    Object,
    /// A static library, `libM.a`, holding the object (written in-process, deterministically).
    Static,
    /// A shared library, `libM.so`, linked by the target's C compiler driver.
    Shared,
}

impl OutputKind {
    pub const ALL: [(OutputKind, &'static str); 3] =
        [(OutputKind::Object, "object"), (OutputKind::Static, "static"), (OutputKind::Shared, "shared")];

    pub fn name(self) -> &'static str {
        Self::ALL.iter().find(|k| k.0 == self).map(|k| k.1).expect("every kind is listed")
    }

    pub fn parse(name: &str) -> Option<OutputKind> {
        Self::ALL.iter().find(|k| k.1 == name).map(|k| k.0)
    }

    /// The manifest's name for the kind.
    pub fn manifest_kind(self) -> Kind {
        match self {
            OutputKind::Object => Kind::Object,
            OutputKind::Static => Kind::Static,
            OutputKind::Shared => Kind::Shared,
        }
    }

    /// The library file's name for module `m`.
    pub fn file_name(self, m: &str) -> String {
        match self {
            OutputKind::Object => format!("{m}.o"),
            OutputKind::Static => format!("lib{m}.a"),
            OutputKind::Shared => format!("lib{m}.so"),
        }
    }
}

/// Options of a build.
#[derive(Clone, Debug)]
pub struct Options {
    pub opt_level: u8,
    pub target: Target,
    pub output: OutputKind,
    /// The C compiler driver that links shared libraries (default: `cc` for the host's
    /// architecture, `<arch>-linux-gnu-gcc` for another).
    pub linker: Option<String>,
    /// The module name (symbol prefix); by default made from the file name.
    pub module_name: Option<String>,
    pub emit: Vec<EmitKind>,
    pub dump_after: Vec<String>,
    /// Equality saturation's limits and whether IEEE-unsafe rewrites may fire (`--fast-math`).
    pub saturate: kiln_passes::saturate::Options,
    /// An ed25519 private key (PKCS#8 PEM) that signs the manifest (`--sign`): the build then
    /// writes [`manifest::signature_file`] beside it.
    pub sign_key: Option<String>,
    /// Weights files given in memory, by the name the program's `load` calls use; a name not
    /// here is read beside the program.
    pub weights: BTreeMap<String, Vec<u8>>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            opt_level: 2,
            target: Target::default(),
            output: OutputKind::Object,
            linker: None,
            module_name: None,
            emit: vec![EmitKind::Obj],
            dump_after: vec![],
            saturate: Default::default(),
            sign_key: None,
            weights: BTreeMap::new(),
        }
    }
}

impl Options {
    /// Refuses options that contradict each other rather than ignoring one of them.
    fn check(&self) -> Result<(), Error> {
        let gpu = self.target.arch.is_gpu();
        if gpu && self.output != OutputKind::Object {
            return Err(Error::Usage(format!(
                "--output-kind {} is for CPU targets; a {} build is a bundle of PTX files and a manifest",
                self.output.name(),
                self.target.triple
            )));
        }
        if self.linker.is_some() && self.output != OutputKind::Shared {
            return Err(Error::Usage(format!(
                "--linker links shared libraries, and this build's output kind is `{}`; add --output-kind shared",
                self.output.name()
            )));
        }
        Ok(())
    }

    /// The options that decide a build's output, as flags in a fixed order and without paths
    /// or times: the manifest's record of how the bundle was built.
    pub fn flags(&self) -> Vec<String> {
        let s = &self.saturate;
        let mut flags = vec![
            format!("-O{}", self.opt_level),
            format!("--target {}", self.target.triple),
            format!("--target-cpu {}", self.target.cpu),
            format!("--output-kind {}", self.output.name()),
            format!("--egraph-nodes {}", s.node_limit),
            format!("--egraph-iters {}", s.iter_limit),
        ];
        if s.fast_math {
            flags.push("--fast-math".into());
        }
        if let Some(m) = &self.module_name {
            flags.push(format!("--module-name {m}"));
        }
        flags
    }
}

/// The target of a build: an LLVM triple (default x86-64 Linux), and a CPU name (`native`
/// for this machine) or, for `nvptx64-nvidia-cuda`, a GPU architecture (`sm_80`), as the CLI's
/// `--target`, `--target-cpu` and `--gpu` give them.
pub fn target(triple: Option<&str>, cpu: Option<&str>, gpu: Option<&str>) -> Result<Target, Error> {
    let cpu = match (gpu, cpu) {
        (Some(_), Some(_)) => return Err(Error::Usage("give either --gpu or --target-cpu, not both".into())),
        (Some(gpu), None) => {
            if triple != Some("nvptx64-nvidia-cuda") {
                return Err(Error::Usage("--gpu needs --target nvptx64-nvidia-cuda".into()));
            }
            Some(gpu)
        }
        (None, Some(cpu)) if triple == Some("nvptx64-nvidia-cuda") => {
            return Err(Error::Usage(format!(
                "--target-cpu names a CPU, and `{cpu}` is not a GPU; give a GPU architecture with --gpu (sm_80, sm_90)"
            )))
        }
        (None, cpu) => cpu,
    };
    Target::new(triple, cpu).map_err(Error::Usage)
}

/// Why a build failed.
#[derive(Debug)]
pub enum Error {
    /// Errors in the user's program: every diagnostic of the run (at least one error, and the
    /// warnings), in source order.
    Source { diags: Vec<Diagnostic>, file: String, src: String },
    /// A bad option or a file that cannot be read or written.
    Usage(String),
    /// A compiler bug.
    Internal(String),
}

impl Error {
    /// The message as the CLI prints it (diagnostics rendered against the source).
    pub fn render(&self, color: bool) -> String {
        self.render_as(ErrorFormat::Human, color)
    }

    /// The message in `format`: for people, or one JSON object per diagnostic for tools.
    pub fn render_as(&self, format: ErrorFormat, color: bool) -> String {
        match self {
            Error::Source { diags, file, src } => report::render(diags, file, src, format, color),
            Error::Usage(m) => report::render_message(format, m, None),
            Error::Internal(m) => report::render_message(
                format,
                &format!("internal compiler error: {m}"),
                Some(&format!("this is a bug in kiln {VERSION}; please report it with the input that caused it")),
            ),
        }
    }

    /// The first error diagnostic, for an error in the program.
    pub fn diagnostic(&self) -> Option<&Diagnostic> {
        match self {
            Error::Source { diags, .. } => diags.iter().find(|d| d.severity == kiln_ir::Severity::Error),
            _ => None,
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.render(false))
    }
}

impl std::error::Error for Error {}

/// The products of a build, in memory.
#[derive(Debug, Default)]
pub struct Output {
    pub module_name: String,
    /// (extension, contents) of each text dump asked for with `--emit` or `--dump-after`.
    pub dumps: Vec<(String, String)>,
    /// (file name, contents) of the artifacts: object, header, manifest.
    pub files: Vec<(String, Vec<u8>)>,
    /// Time spent in each stage, in order.
    pub timings: Vec<(String, Duration)>,
    /// What equality saturation did to each function.
    pub saturation: Vec<kiln_passes::saturate::Report>,
    /// The warnings about the source, in source order.
    pub warnings: Vec<Diagnostic>,
}

/// A source file read into memory, with the name diagnostics show.
pub struct Source {
    pub name: String,
    pub text: String,
}

impl Source {
    pub fn read(path: &Path) -> Result<Source, Error> {
        let bytes = read_file(path, MAX_SOURCE_BYTES)?;
        let text =
            String::from_utf8(bytes).map_err(|_| Error::Usage(format!("`{}` is not UTF-8 text", path.display())))?;
        Ok(Source { name: path.display().to_string(), text })
    }

    /// The default module name: the file stem as a C identifier.
    pub fn default_module_name(&self) -> String {
        kiln_frontend::module_name_from_stem(&self.stem())
    }

    /// The file name without its directory and extension.
    fn stem(&self) -> String {
        Path::new(&self.name).file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
    }

    /// The module name a build takes from the file name: the stem itself, which must be a C
    /// identifier. A stem that would need changing (`my-model`, `ü`) is refused rather than
    /// changed silently: `my-model` and `my_model` would both become `my_model` and their
    /// symbols collide when linked together.
    pub fn artifact_module_name(&self) -> Result<String, Error> {
        let stem = self.stem();
        let name = self.default_module_name();
        if name != stem {
            return Err(Error::Usage(format!(
                "the file name `{stem}` is not a C identifier, which kiln takes as the module name; \
                 give one with --module-name (for example `{name}`)"
            )));
        }
        Ok(name)
    }

    fn errors(&self, diags: Vec<Diagnostic>) -> Error {
        Error::Source { diags, file: self.name.clone(), src: self.text.clone() }
    }
}

/// The largest source file kiln reads (16 MiB: checking takes seconds, not minutes).
pub const MAX_SOURCE_BYTES: u64 = 16 << 20;

/// The bytes of the file at `path`, refusing one of more than `limit` bytes without reading
/// past the limit (so a device such as /dev/zero or a growing pipe ends in an error, not in
/// running out of memory).
pub fn read_file(path: &Path, limit: u64) -> Result<Vec<u8>, Error> {
    use std::io::Read;
    let cannot = |e: std::io::Error| Error::Usage(format!("cannot read `{}`: {e}", path.display()));
    let mut bytes = vec![];
    std::fs::File::open(path).map_err(cannot)?.take(limit + 1).read_to_end(&mut bytes).map_err(cannot)?;
    if bytes.len() as u64 > limit {
        return Err(Error::Usage(format!(
            "`{}` is larger than {limit} bytes, the most kiln reads here",
            path.display()
        )));
    }
    Ok(bytes)
}

/// The largest ONNX model kiln reads (protobuf's own limit is 2 GiB; larger models keep their
/// weights in external-data files).
pub const MAX_ONNX_BYTES: u64 = 2 << 30;

/// The importer's options from the CLI's: `--shape NAME=DIMS` (`input=1x3x224x224`) and
/// `--weights-as-params`.
pub fn onnx_options(shapes: &[String], weights_as_params: bool) -> Result<kiln_onnx::Options, Error> {
    let mut options = kiln_onnx::Options { weights_as_params, ..Default::default() };
    for spec in shapes {
        let bad = || Error::Usage(format!("--shape takes NAME=DIMS such as input=1x3x224x224, got `{spec}`"));
        let (name, dims) = spec.rsplit_once('=').ok_or_else(bad)?;
        let dims = dims.split('x').map(|d| d.parse::<usize>().ok().filter(|&d| d > 0)).collect::<Option<Vec<_>>>();
        if options.shapes.insert(name.to_string(), dims.ok_or_else(bad)?).is_some() {
            return Err(Error::Usage(format!("--shape {name}=... is given twice")));
        }
    }
    Ok(options)
}

/// Imports the ONNX model at `path`: its graph as kiln source (named after the model's file,
/// so the module takes the file's name) and its weights. Every problem with the model is a
/// diagnostic (docs/onnx.md).
pub fn import_onnx(path: &Path, options: &kiln_onnx::Options) -> Result<(Source, kiln_onnx::Imported), Error> {
    let bytes = read_file(path, MAX_ONNX_BYTES)?;
    let imported = kiln_onnx::import(&bytes, path, options).map_err(|diags| Error::Source {
        diags,
        file: path.display().to_string(),
        src: String::new(),
    })?;
    Ok((Source { name: path.display().to_string(), text: imported.source.clone() }, imported))
}

/// Whether `path` names an ONNX model (by its extension).
pub fn is_onnx(path: &Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("onnx"))
}

/// The frontend's transformations (`grad`, `value_and_grad`, `jvp`, `vjp`, `vmap`), applied
/// by kiln-passes' autodiff and batching.
pub struct Autodiff;

impl kiln_frontend::Differentiator for Autodiff {
    fn transform(&self, kind: Transform, f: &Func, wrt: &[usize], name: &str) -> Result<Func, String> {
        use kiln_passes::autodiff;
        match kind {
            Transform::ValueAndGrad => autodiff::value_and_grad(f, name, wrt),
            Transform::Grad => {
                let mut g = autodiff::value_and_grad(f, name, wrt)?;
                g.results.remove(0);
                g.result_names.remove(0);
                Ok(g)
            }
            Transform::Jvp => Ok(autodiff::jvp(f, name)),
            Transform::Vjp => autodiff::check_carry_stacks(f).map(|()| autodiff::vjp(f, name, None)),
            Transform::Vmap => unreachable!("vmap is not a derivative: Differentiator::vmap"),
        }
    }

    fn vmap(
        &self,
        f: &Func,
        in_axes: &[Option<usize>],
        out_axes: &[usize],
        size: usize,
        name: &str,
    ) -> Result<(Func, Vec<String>), String> {
        kiln_passes::vmap::vmap(f, name, in_axes, out_axes, size).map(|v| (v.func, v.notes))
    }
}

/// Parses and checks a source, returning the IR module (the work of `kiln check`).
pub fn check(source: &Source, module_name: &str) -> Result<Module, Error> {
    diagnose(source, module_name).map(|(module, _warnings)| module)
}

/// Parses and checks a source, returning the IR module and the warnings.
pub fn diagnose(source: &Source, module_name: &str) -> Result<(Module, Vec<Diagnostic>), Error> {
    diagnose_with(source, module_name, &BTreeMap::new())
}

/// [`diagnose`], with weights files given in memory (as [`Options::weights`]).
pub fn diagnose_with(
    source: &Source,
    module_name: &str,
    weights: &BTreeMap<String, Vec<u8>>,
) -> Result<(Module, Vec<Diagnostic>), Error> {
    let file = kiln_frontend::parser::parse(&source.text).map_err(|d| source.errors(d))?;
    elaborate(source, &file, module_name, weights)
}

/// The most bytes of one weights file `load` reads.
pub const MAX_WEIGHTS_BYTES: u64 = 16 << 30;

/// The weights files `load` reads: safetensors files given in memory by name, else beside the
/// program. Each file is read and its header parsed once per compilation, however many
/// tensors the program loads from it.
struct WeightFiles<'a> {
    dir: PathBuf,
    memory: &'a BTreeMap<String, Vec<u8>>,
    parsed: std::cell::RefCell<BTreeMap<String, std::rc::Rc<WeightFile<'a>>>>,
}

/// A safetensors file: its bytes, where its data starts, and its parsed header.
struct WeightFile<'a> {
    bytes: std::borrow::Cow<'a, [u8]>,
    data: usize,
    header: safetensors::tensor::Metadata,
}

impl<'a> WeightFiles<'a> {
    fn new(dir: PathBuf, memory: &'a BTreeMap<String, Vec<u8>>) -> WeightFiles<'a> {
        WeightFiles { dir, memory, parsed: Default::default() }
    }

    /// The file `file`, read and parsed on first use.
    fn file(&self, file: &str) -> Result<std::rc::Rc<WeightFile<'a>>, String> {
        if let Some(f) = self.parsed.borrow().get(file) {
            return Ok(f.clone());
        }
        let bytes = match self.memory.get(file) {
            Some(b) => std::borrow::Cow::Borrowed(&b[..]),
            None => std::borrow::Cow::Owned(
                read_file(&self.dir.join(file), MAX_WEIGHTS_BYTES)
                    .map_err(|e| e.render(false).trim().trim_start_matches("error: ").to_string())?,
            ),
        };
        let (header_bytes, header) = safetensors::SafeTensors::read_metadata(&bytes)
            .map_err(|e| format!("it is not a safetensors file ({e})"))?;
        // The format: an 8-byte header length, the JSON header, then the data.
        let parsed = std::rc::Rc::new(WeightFile { data: 8 + header_bytes, header, bytes });
        self.parsed.borrow_mut().insert(file.to_string(), parsed.clone());
        Ok(parsed)
    }
}

impl kiln_frontend::Files for WeightFiles<'_> {
    fn load(&self, file: &str, name: &str) -> Result<kiln_ir::Constant, String> {
        let weights = self.file(file)?;
        let info = weights.header.info(name).ok_or_else(|| {
            let mut names = weights.header.offset_keys();
            names.sort();
            let shown: Vec<&str> = names.iter().take(8).map(|n| &n[..]).collect();
            format!(
                "it has no tensor of that name (it has {}{})",
                shown.join(", "),
                if names.len() > 8 { ", ..." } else { "" }
            )
        })?;
        use kiln_ir::DType;
        let dtype = match info.dtype {
            safetensors::Dtype::F32 => DType::F32,
            safetensors::Dtype::F64 => DType::F64,
            safetensors::Dtype::F16 => DType::F16,
            safetensors::Dtype::BF16 => DType::BF16,
            safetensors::Dtype::I32 => DType::I32,
            safetensors::Dtype::I64 => DType::I64,
            safetensors::Dtype::U8 => DType::U8,
            safetensors::Dtype::U32 => DType::U32,
            other => return Err(format!("its dtype {other:?} is not one `load` reads (floats, i32, i64, u8, u32)")),
        };
        if info.shape.contains(&0) {
            return Err(format!("its shape {:?} is empty", info.shape));
        }
        let (begin, end) = info.data_offsets;
        let data = weights.bytes[weights.data + begin..weights.data + end].to_vec();
        kiln_ir::Constant::new(kiln_ir::TensorType::new(dtype, info.shape.clone()), data)
    }
}

/// Lowers a parsed source into a module named `module_name`, with autodiff available; returns
/// it with the warnings.
fn elaborate(
    source: &Source,
    file: &kiln_frontend::ast::SourceFile,
    module_name: &str,
    weights: &BTreeMap<String, Vec<u8>>,
) -> Result<(Module, Vec<Diagnostic>), Error> {
    if !kiln_ir::func::is_identifier(module_name) {
        return Err(Error::Usage(format!("module name `{module_name}` is not a C identifier")));
    }
    let dir = Path::new(&source.name).parent().map(Path::to_path_buf).unwrap_or_default();
    let files = WeightFiles::new(dir, weights);
    let (module, warnings) =
        kiln_frontend::elaborate(file, module_name, Some(&Autodiff), Some(&files)).map_err(|d| source.errors(d))?;
    if let Err(clash) = kiln_codegen::names::check(&module) {
        let error = Diagnostic::error("E0110", clash.message)
            .at(clash.span, "this name")
            .help("rename it, or export the function under another name with `as`");
        let mut diags = warnings;
        diags.push(error);
        return Err(source.errors(kiln_frontend::in_source_order(diags)));
    }
    Ok((module, warnings))
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn file_info(name: &str, bytes: &[u8]) -> FileInfo {
    FileInfo { name: name.to_string(), sha256: sha256_hex(bytes), bytes: bytes.len() as u64 }
}

/// Compiles a source with `options`, in memory.
pub fn build(source: &Source, options: &Options) -> Result<Output, Error> {
    options.check()?;
    let module_name = match &options.module_name {
        Some(name) => name.clone(),
        None => source.artifact_module_name()?,
    };
    let mut out = Output { module_name: module_name.clone(), ..Default::default() };
    let wants = |k: EmitKind| options.emit.contains(&k);
    let start = Instant::now();
    let file = kiln_frontend::parser::parse(&source.text).map_err(|d| source.errors(d))?;
    if wants(EmitKind::Ast) {
        out.dumps.push((EmitKind::Ast.extension().into(), format!("{file:#?}\n")));
    }
    out.timings.push(("parse".into(), start.elapsed()));
    let start = Instant::now();
    let (mut module, warnings) = elaborate(source, &file, &module_name, &options.weights)?;
    out.warnings = warnings;
    if module.funcs.is_empty() {
        return Err(Error::Usage(format!(
            "`{}` exports nothing, so its library would be empty; add `export NAME;` for each function to compile",
            source.name
        )));
    }
    out.timings.push(("elaborate".into(), start.elapsed()));
    if wants(EmitKind::Ir) {
        out.dumps.push((EmitKind::Ir.extension().into(), kiln_ir::text::print_module(&module)));
    }
    let stages = kiln_codegen::stage_names(options.target.arch.is_gpu());
    let steps: Vec<&str> = ["all"].into_iter().chain(kiln_passes::step_names()).chain(stages.iter().copied()).collect();
    if let Some(d) = options.dump_after.iter().find(|d| !steps.contains(&d.as_str())) {
        return Err(Error::Usage(format!("unknown step `{d}` in --dump-after; steps are: {}", steps.join(", "))));
    }
    let pipeline =
        kiln_passes::PipelineOptions { dump_after: options.dump_after.clone(), saturate: options.saturate.clone() };
    let report = kiln_passes::run_pipeline(&mut module, &pipeline).map_err(Error::Internal)?;
    // Node and iteration limits give the same program on every machine; the time limit does
    // not, so reaching it fails the build rather than making an artifact that depends on speed.
    if let Some(r) = report.saturation.iter().find(|r| r.timed_out) {
        return Err(Error::Usage(format!(
            "equality saturation of `{}` reached --egraph-seconds ({:.1} s) before its node and iteration \
             limits, so its result would depend on this machine's speed; lower --egraph-nodes or \
             --egraph-iters, or raise --egraph-seconds",
            r.function,
            options.saturate.time_limit.as_secs_f64()
        )));
    }
    out.timings.extend(report.timings);
    out.saturation = report.saturation;
    for (step, text) in report.dumps {
        out.dumps.push((format!("after-{step}.kir"), text));
    }
    if wants(EmitKind::Opt) {
        out.dumps.push((EmitKind::Opt.extension().into(), kiln_ir::text::print_module(&module)));
    }
    if wants(EmitKind::Stats) {
        let mut text = kiln_passes::stats::report(&module);
        text.push_str(&saturation_report(&out.saturation));
        out.dumps.push((EmitKind::Stats.extension().into(), text));
    }
    let needs_codegen = [EmitKind::Mlir, EmitKind::Llvm, EmitKind::Asm, EmitKind::Obj].iter().any(|&k| wants(k))
        || options.dump_after.iter().any(|d| d == "all" || stages.contains(&d.as_str()));
    if !needs_codegen {
        return Ok(out);
    }
    let emit = Emit {
        mlir: wants(EmitKind::Mlir),
        llvm: wants(EmitKind::Llvm),
        asm: wants(EmitKind::Asm),
        dump_after: options.dump_after.clone(),
    };
    let artifacts = kiln_codegen::compile(&module, &options.target, options.opt_level, emit).map_err(|e| {
        if e.stage == kiln_codegen::gpu::UNSUPPORTED {
            return Error::Usage(format!("{}: {}", options.target.cpu, e.message));
        }
        // A codegen failure is a compiler bug; when MLIR names a source location, show it.
        let place = e.span.map(|span| {
            let diag = Diagnostic::error("E9999", format!("internal compiler error in {}", e.stage))
                .at(span, "while compiling this");
            kiln_frontend::render_diagnostic(&diag, &source.name, &source.text, false)
        });
        Error::Internal(format!("{e}{}", place.map(|p| format!("\n{p}")).unwrap_or_default()))
    })?;
    out.timings.extend(artifacts.timings.iter().cloned());
    out.dumps.extend(artifacts.dumps.iter().cloned());
    for (kind, text) in
        [(EmitKind::Mlir, &artifacts.mlir), (EmitKind::Llvm, &artifacts.llvm), (EmitKind::Asm, &artifacts.asm)]
    {
        if let Some(t) = text {
            out.dumps.push((kind.extension().into(), t.clone()));
        }
    }
    if wants(EmitKind::Obj) {
        out.files = package(source, &module, artifacts, options)?;
    }
    Ok(out)
}

/// One line per function: why saturation stopped, the e-graph it reached and the cost change.
pub fn saturation_report(reports: &[kiln_passes::saturate::Report]) -> String {
    reports
        .iter()
        .map(|r| {
            format!(
                "saturate {}: stopped by {} after {} iterations, {} nodes in {} classes; instructions {} -> {}, flops {} -> {}, cost {:.0} -> {:.0}\n",
                r.function,
                r.stop,
                r.iterations,
                r.nodes,
                r.classes,
                r.instructions.0,
                r.instructions.1,
                r.flops.0,
                r.flops.1,
                r.cost_before,
                r.cost_after
            )
        })
        .collect()
}

/// The artifacts of a compiled module and the manifest that lists them all with their hashes:
/// for a CPU, the library file of the requested kind, the C header and the Rust bindings; for a
/// GPU, one PTX file per kernel (the launch plans are in the manifest) and a C header of sizes.
fn package(
    source: &Source,
    module: &Module,
    artifacts: kiln_codegen::Artifacts,
    options: &Options,
) -> Result<Vec<(String, Vec<u8>)>, Error> {
    let m = &module.name;
    let workspace = &artifacts.workspace;
    let gpu = options.target.arch.is_gpu();
    let mut files = vec![];
    let mut kernels = vec![];
    if gpu {
        for k in &artifacts.kernels {
            let file = format!("{m}.{}.ptx", k.name);
            kernels.push(manifest::KernelInfo { name: k.name.clone(), entry: k.entry.clone(), file: file.clone() });
            files.push((file, k.ptx.clone().into_bytes()));
        }
        files.push((format!("{m}.h"), kiln_codegen::header::emit_gpu_header(module, VERSION, workspace).into_bytes()));
    } else {
        let library = match options.output {
            OutputKind::Object => artifacts.object,
            OutputKind::Static => static_library(vec![(format!("{m}.o"), artifacts.object)])?,
            OutputKind::Shared => shared_library(m, &artifacts.object, options)?,
        };
        files.push((options.output.file_name(m), library));
        files.push((format!("{m}.h"), kiln_codegen::header::emit_header(module, VERSION, workspace).into_bytes()));
        files.push((format!("{m}.rs"), kiln_codegen::bindings::emit_bindings(module, VERSION, workspace).into_bytes()));
    }
    let functions = manifest::functions(module, workspace, &artifacts.stack, &artifacts.launches);
    if gpu {
        files.push((manifest::plan_file(m), manifest::plan_bytes(&functions)));
    }
    let source_name = Path::new(&source.name).file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let manifest = Manifest {
        format: manifest::FORMAT.to_string(),
        version: manifest::version_of(&functions),
        module: m.clone(),
        kind: if gpu { Kind::Gpu } else { options.output.manifest_kind() },
        compiler: Compiler {
            name: "kiln".to_string(),
            version: VERSION.to_string(),
            llvm: kiln_codegen::target::llvm_version(),
            flags: options.flags(),
        },
        target: TargetInfo {
            triple: options.target.triple.clone(),
            cpu: options.target.cpu.clone(),
            features: options.target.features.clone(),
        },
        opt_level: options.opt_level,
        source: file_info(&source_name, source.text.as_bytes()),
        functions,
        kernels,
        files: files.iter().map(|(name, bytes)| file_info(name, bytes)).collect(),
        requirements: None,
    };
    let manifest = Manifest {
        requirements: Some(manifest::requirements(manifest.kind, &manifest.target, &manifest.functions)),
        ..manifest
    };
    let mut json = serde_json::to_vec_pretty(&manifest).map_err(|e| Error::Internal(e.to_string()))?;
    json.push(b'\n');
    if let Some(key) = &options.sign_key {
        let signature = manifest::sign(&json, key).map_err(|e| Error::Usage(format!("--sign: {e}")))?;
        files.push((manifest::signature_file(m), signature.into_bytes()));
    }
    files.push((format!("{m}.json"), json));
    Ok(files)
}

/// A GNU archive holding `objects` (name, bytes), with a symbol index and zeroed timestamps
/// and owners.
pub(crate) fn static_library(objects: Vec<(String, Vec<u8>)>) -> Result<Vec<u8>, Error> {
    use ar_archive_writer::{write_archive_to_stream, ArchiveKind, NewArchiveMember, DEFAULT_OBJECT_READER};
    let members: Vec<NewArchiveMember> =
        objects.into_iter().map(|(name, bytes)| NewArchiveMember::new(bytes, &DEFAULT_OBJECT_READER, name)).collect();
    let mut out = std::io::Cursor::new(Vec::new());
    write_archive_to_stream(&mut out, &members, ArchiveKind::Gnu, false, None)
        .map_err(|e| Error::Internal(format!("cannot write the static library: {e}")))?;
    Ok(out.into_inner())
}

/// Links the object into a shared library with the target's C compiler driver.
fn shared_library(m: &str, object: &[u8], options: &Options) -> Result<Vec<u8>, Error> {
    let linker = options.linker.clone().unwrap_or_else(|| kiln_codegen::target::default_linker(&options.target));
    let dir = tempfile::tempdir().map_err(|e| Error::Usage(format!("cannot create a temporary directory: {e}")))?;
    let obj = dir.path().join(format!("{m}.o"));
    let lib = dir.path().join(format!("lib{m}.so"));
    std::fs::write(&obj, object).map_err(|e| Error::Usage(format!("cannot write `{}`: {e}", obj.display())))?;
    let out = std::process::Command::new(&linker)
        .args(["-shared", "-nostartfiles", "-Wl,--build-id=none", "-o"])
        .arg(&lib)
        .arg(&obj)
        .arg("-lm")
        .output()
        .map_err(|e| Error::Usage(format!("cannot run the linker `{linker}`: {e}; choose one with --linker")))?;
    if !out.status.success() {
        return Err(Error::Usage(format!(
            "linking `lib{m}.so` with `{linker}` failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    std::fs::read(&lib).map_err(|e| Error::Usage(format!("cannot read `{}`: {e}", lib.display())))
}

/// Builds twice and compares every artifact byte for byte; the error names the first file
/// that differs.
pub fn build_verified(source: &Source, options: &Options) -> Result<Output, Error> {
    let first = build(source, options)?;
    let second = build(source, options)?;
    for ((name, a), (_, b)) in first.files.iter().zip(&second.files) {
        if a != b {
            let at = a.iter().zip(b).position(|(x, y)| x != y).unwrap_or(a.len().min(b.len()));
            return Err(Error::Usage(format!(
                "the build is not reproducible: `{name}` differs between two builds of the same input \
                 (first at byte {at}); please report it with the input"
            )));
        }
    }
    Ok(first)
}

/// Writes the artifacts of `out` into `dir` (created if missing), and the dumps as
/// `<module>.<ext>` files. Returns the paths written.
pub fn write_output(out: &Output, dir: &Path) -> Result<Vec<PathBuf>, Error> {
    std::fs::create_dir_all(dir).map_err(|e| Error::Usage(format!("cannot create `{}`: {e}", dir.display())))?;
    let mut written = vec![];
    let dumps = out.dumps.iter().map(|(ext, text)| (format!("{}.{ext}", out.module_name), text.as_bytes()));
    for (name, bytes) in out.files.iter().map(|(n, b)| (n.clone(), b.as_slice())).chain(dumps) {
        let path = dir.join(name);
        std::fs::write(&path, bytes).map_err(|e| Error::Usage(format!("cannot write `{}`: {e}", path.display())))?;
        written.push(path);
    }
    Ok(written)
}
