//! The `kiln` command line: `kiln build`, `check`, `eval`, `expect`, `bench` and `explain`.
//!
//! Exit codes: 0 success, 1 an error in the user's program or options, 2 a malformed command
//! line, 101 an internal compiler error (a bug, with a message that asks for a report).

use clap::{Args, Parser, Subcommand};
use kiln::{EmitKind, Error, ErrorFormat, Options, OutputKind, Source};
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "kiln", version, about = "kiln: an ahead-of-time tensor compiler")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// How errors and warnings are printed: `human`, or `json` (one object per line, with
    /// spans, for editors and tools).
    #[arg(long = "error-format", global = true, default_value = "human", value_parser = ["human", "json"])]
    error_format: String,
}

#[derive(Subcommand)]
enum Command {
    /// Compile a .kn file (or an .onnx model) into an object, a C header and a manifest.
    Build(Box<BuildArgs>),
    /// Import an ONNX model as kiln source (DIR/NAME.kn) and its weights (DIR/NAME.safetensors).
    Import {
        /// Take the weights as parameters after the inputs, rather than `load`ing them.
        #[arg(long = "weights-as-params")]
        weights_as_params: bool,
        /// The .onnx model.
        file: PathBuf,
        /// Output directory.
        #[arg(short = 'o', long = "out-dir", default_value = ".")]
        out_dir: PathBuf,
        /// Sizes of an input's symbolic dimensions: NAME=DIMS, such as input=1x3x224x224.
        #[arg(long = "shape", value_name = "NAME=DIMS")]
        shapes: Vec<String>,
    },
    /// Check a .kn file and report errors, producing nothing.
    Check {
        /// The .kn source file.
        file: PathBuf,
    },
    /// Run an exported function in the reference interpreter on raw input files.
    Eval(EvalArgs),
    /// Write random inputs and the interpreter's results for every exported function as raw
    /// files (DIR/FUNCTION.ARGUMENT.bin), for kiln-gpu-check on a machine with a GPU (an
    /// integer parameter named `labels` gets class indices 0 and 1).
    Expect {
        /// The .kn source file.
        file: PathBuf,
        /// Output directory.
        #[arg(short = 'o', long = "out-dir")]
        out_dir: PathBuf,
        /// Seed of the random inputs.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// The most memory the interpreter may use per function, in MiB.
        #[arg(long = "memory-limit", value_name = "MIB", default_value_t = 4096)]
        memory_limit: u64,
    },
    /// Time kiln's compiled code on the CPU benchmark suite against this machine's limits.
    Bench {
        /// LLVM CPU name, or `native`.
        #[arg(long = "target-cpu")]
        target_cpu: Option<String>,
        /// Timed runs per benchmark (the median is reported).
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// The Python whose numpy measures OpenBLAS sgemm.
        #[arg(long, default_value = "python3")]
        python: String,
        /// Only benchmarks whose name contains this.
        #[arg(long)]
        filter: Option<String>,
        /// Threads running parallel loops (and OpenBLAS), the caller's included
        #[arg(long, default_value_t = 1)]
        threads: usize,
    },
    /// Print the page that explains an error or warning code (E0101, W0001, ...).
    Explain {
        /// The code, as diagnostics print it.
        code: String,
    },
}

#[derive(Args)]
struct BuildArgs {
    /// The .kn source file, or an .onnx model (imported as `kiln import` does).
    file: PathBuf,
    /// For an .onnx model: sizes of an input's symbolic dimensions, NAME=DIMS.
    #[arg(long = "shape", value_name = "NAME=DIMS")]
    shapes: Vec<String>,
    /// For an .onnx model: take its weights as parameters after its inputs (written beside
    /// the object as NAME.safetensors) rather than compiling them into the object.
    #[arg(long = "weights-as-params")]
    weights_as_params: bool,
    /// Output directory; without it, --emit kinds other than obj print to stdout.
    #[arg(short = 'o', long = "out-dir")]
    out_dir: Option<PathBuf>,
    /// Optimization level, 0 to 3.
    #[arg(short = 'O', default_value_t = 2, value_parser = clap::value_parser!(u8).range(0..=3))]
    opt_level: u8,
    /// Target triple (x86_64-unknown-linux-gnu, aarch64-unknown-linux-gnu, nvptx64-nvidia-cuda).
    #[arg(long)]
    target: Option<String>,
    /// GPU architecture for --target nvptx64-nvidia-cuda: sm_80 (default) or sm_90.
    #[arg(long)]
    gpu: Option<String>,
    /// LLVM CPU name (x86-64-v3 by default on x86-64, x86-64-v4, skylake, ...) or `native`.
    #[arg(long = "target-cpu")]
    target_cpu: Option<String>,
    /// Module name: the prefix of every exported symbol (default: the file name).
    #[arg(long = "module-name")]
    module_name: Option<String>,
    /// What to produce: ast, ir, opt, stats, mlir, llvm, asm, obj (comma-separated).
    #[arg(long, value_delimiter = ',')]
    emit: Vec<String>,
    /// Print the module after these steps: the IR passes (saturate, dce) and the code
    /// generation stages (emit, fuse, ..., object or ptx), or `all`; with -o, write each to
    /// DIR/M.after-STEP.EXT instead.
    #[arg(long = "dump-after", value_delimiter = ',')]
    dump_after: Vec<String>,
    /// Print the time spent in each step and stage to stderr.
    #[arg(long = "timings", alias = "time-passes")]
    time_passes: bool,
    /// The library to produce: object (M.o), static (libM.a) or shared (libM.so).
    #[arg(long = "output-kind", default_value = "object")]
    output_kind: String,
    /// The C compiler driver that links shared libraries.
    #[arg(long)]
    linker: Option<String>,
    /// Build twice and fail unless every artifact is byte-identical.
    #[arg(long = "verify-reproducible")]
    verify_reproducible: bool,
    /// Allow rewrites that are false under IEEE arithmetic (x*0 = 0, reassociation, ...).
    #[arg(long = "fast-math")]
    fast_math: bool,
    /// Equality saturation: most e-graph nodes per function.
    #[arg(long = "egraph-nodes", default_value_t = 20_000)]
    egraph_nodes: usize,
    /// Equality saturation: most rewrite iterations per function.
    #[arg(long = "egraph-iters", default_value_t = 30)]
    egraph_iters: usize,
    /// Equality saturation: most seconds per function, a safety net: reaching it fails the
    /// build (its result would depend on the machine's speed), so that the node and iteration
    /// limits alone decide the program.
    #[arg(long = "egraph-seconds", default_value_t = 5.0, value_parser = seconds)]
    egraph_seconds: f64,
    /// Sign the manifest with this ed25519 private key (PKCS#8 PEM, from `openssl genpkey
    /// -algorithm ed25519`), writing M.json.sig beside it for the runtime to verify.
    #[arg(long, value_name = "KEY")]
    sign: Option<PathBuf>,
}

/// A time limit in seconds: finite, not negative, at most an hour.
fn seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if (0.0..=3600.0).contains(&s) => Ok(s),
        Ok(_) => Err("must be between 0 and 3600 seconds".into()),
        Err(e) => Err(e.to_string()),
    }
}

#[derive(Args)]
struct EvalArgs {
    /// The .kn source file.
    file: PathBuf,
    /// The exported function to run.
    #[arg(long)]
    function: String,
    /// An input as NAME=PATH: a raw file of the parameter's elements (little-endian, row-major).
    #[arg(long = "input", value_name = "NAME=PATH")]
    inputs: Vec<String>,
    /// Compare a result with a raw file, as NAME=PATH; exits 1 on a mismatch.
    #[arg(long = "compare", value_name = "NAME=PATH")]
    compare: Vec<String>,
    /// Relative tolerance of --compare for floats (scaled by the largest magnitude).
    #[arg(long, default_value_t = 1e-5)]
    rtol: f64,
    /// The most memory the interpreter may use, in MiB.
    #[arg(long = "memory-limit", value_name = "MIB", default_value_t = 4096)]
    memory_limit: u64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let format = ErrorFormat::parse(&cli.error_format).expect("clap checked the name");
    // Deeply nested programs recurse deeply: give the compiler a large stack of its own.
    let worker = std::thread::Builder::new().stack_size(256 << 20).spawn(move || run(cli, format));
    let result = match worker {
        Ok(handle) => handle.join().unwrap_or_else(|panic| {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            Err(Error::Internal(msg))
        }),
        Err(e) => Err(Error::Internal(format!("cannot start the compiler thread: {e}"))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprint!("{}", e.render_as(format, std::io::stderr().is_terminal()));
            ExitCode::from(if matches!(e, Error::Internal(_)) { 101 } else { 1 })
        }
    }
}

fn run(cli: Cli, format: ErrorFormat) -> Result<(), Error> {
    match cli.command {
        Command::Build(args) => build(*args, format),
        Command::Check { file } => check(&file, format).map(|_| ()),
        Command::Import { file, out_dir, shapes, weights_as_params } => {
            import(&file, &out_dir, &shapes, weights_as_params)
        }
        Command::Eval(args) => eval(args, format),
        Command::Expect { file, out_dir, seed, memory_limit } => expect(&file, &out_dir, seed, memory_limit, format),
        Command::Bench { target_cpu, runs, python, filter, threads } => {
            let report = kiln::bench::run(&kiln::bench::BenchOptions { target_cpu, runs, python, filter, threads })?;
            print!("{report}");
            Ok(())
        }
        Command::Explain { code } => match kiln::report::explain(&code) {
            Some(page) => print([page]),
            None => Err(Error::Usage(format!(
                "no diagnostic has the code `{code}`; codes are: {}",
                kiln::report::codes().collect::<Vec<_>>().join(", ")
            ))),
        },
    }
}

/// Prints the warnings about `source` to stderr.
fn warn(source: &Source, warnings: &[kiln_ir::Diagnostic], format: ErrorFormat) {
    if !warnings.is_empty() {
        let color = std::io::stderr().is_terminal();
        eprint!("{}", kiln::report::render(warnings, &source.name, &source.text, format, color));
    }
}

/// Reads and checks the source at `file`, printing its warnings.
fn check(file: &Path, format: ErrorFormat) -> Result<(Source, kiln_ir::Module), Error> {
    let source = Source::read(file)?;
    let (module, warnings) = kiln::diagnose(&source, &source.default_module_name())?;
    warn(&source, &warnings, format);
    Ok((source, module))
}

/// Writes `file`'s import: DIR/NAME.kn and, when it has weights, DIR/NAME.safetensors.
fn import(file: &Path, dir: &Path, shapes: &[String], weights_as_params: bool) -> Result<(), Error> {
    let (source, imported) = kiln::import_onnx(file, &kiln::onnx_options(shapes, weights_as_params)?)?;
    let stem = source.default_module_name();
    std::fs::create_dir_all(dir).map_err(|e| Error::Usage(format!("cannot create `{}`: {e}", dir.display())))?;
    let write = |name: String, bytes: &[u8]| {
        let path = dir.join(name);
        std::fs::write(&path, bytes).map_err(|e| Error::Usage(format!("cannot write `{}`: {e}", path.display())))
    };
    write(format!("{stem}.kn"), source.text.as_bytes())?;
    if !imported.weights.is_empty() {
        write(imported.weights_file.clone(), &weights_file(&imported)?)?;
    }
    Ok(())
}

fn weights_file(imported: &kiln::kiln_onnx::Imported) -> Result<Vec<u8>, Error> {
    kiln::kiln_onnx::safetensors(&imported.weights).map_err(|e| Error::Internal(format!("writing the weights: {e}")))
}

fn build(args: BuildArgs, format: ErrorFormat) -> Result<(), Error> {
    let onnx = kiln::is_onnx(&args.file);
    if !onnx && (!args.shapes.is_empty() || args.weights_as_params) {
        return Err(Error::Usage("--shape and --weights-as-params are for .onnx models".into()));
    }
    // An ONNX model's weights are compiled in from memory, or with --weights-as-params
    // written beside the object for the caller to pass.
    let (mut compiled_in, mut written) = (BTreeMap::new(), None);
    let source = if onnx {
        let options = kiln::onnx_options(&args.shapes, args.weights_as_params)?;
        let (source, imported) = kiln::import_onnx(&args.file, &options)?;
        if !imported.weights.is_empty() {
            let bytes = weights_file(&imported)?;
            if args.weights_as_params {
                written = Some(bytes);
            } else {
                compiled_in.insert(imported.weights_file, bytes);
            }
        }
        source
    } else {
        Source::read(&args.file)?
    };
    let target = kiln::target(args.target.as_deref(), args.target_cpu.as_deref(), args.gpu.as_deref())?;
    let mut emit = vec![];
    for e in &args.emit {
        emit.push(EmitKind::parse(e).ok_or_else(|| {
            let names: Vec<&str> = EmitKind::ALL.iter().map(|k| k.1).collect();
            Error::Usage(format!("unknown --emit kind `{e}`; kinds are: {}", names.join(", ")))
        })?);
    }
    let to_stdout = args.out_dir.is_none() && !emit.is_empty();
    if emit.is_empty() {
        emit.push(EmitKind::Obj);
    }
    if to_stdout && emit.contains(&EmitKind::Obj) {
        return Err(Error::Usage("--emit=obj needs an output directory (-o DIR)".into()));
    }
    let output = OutputKind::parse(&args.output_kind).ok_or_else(|| {
        let names: Vec<&str> = OutputKind::ALL.iter().map(|k| k.1).collect();
        Error::Usage(format!("unknown --output-kind `{}`; kinds are: {}", args.output_kind, names.join(", ")))
    })?;
    let options = Options {
        weights: compiled_in,
        opt_level: args.opt_level,
        target,
        output,
        linker: args.linker,
        module_name: args.module_name,
        emit,
        dump_after: args.dump_after,
        saturate: kiln_passes::saturate::Options {
            node_limit: args.egraph_nodes,
            iter_limit: args.egraph_iters,
            time_limit: std::time::Duration::from_secs_f64(args.egraph_seconds),
            fast_math: args.fast_math,
        },
        sign_key: match &args.sign {
            Some(path) => Some(
                String::from_utf8(kiln::read_file(path, 64 << 10)?)
                    .map_err(|_| Error::Usage(format!("--sign: `{}` is not a PEM text file", path.display())))?,
            ),
            None => None,
        },
    };
    let out = if args.verify_reproducible {
        kiln::build_verified(&source, &options)?
    } else {
        kiln::build(&source, &options)?
    };
    warn(&source, &out.warnings, format);
    if to_stdout || !options.dump_after.is_empty() && args.out_dir.is_none() {
        print(out.dumps.iter().map(|(_, text)| text.as_str()))?;
    }
    if !to_stdout {
        let dir = args.out_dir.as_deref().unwrap_or(Path::new("."));
        kiln::write_output(&out, dir)?;
        if let Some(bytes) = written {
            let path = dir.join(format!("{}.safetensors", out.module_name));
            std::fs::write(&path, bytes)
                .map_err(|e| Error::Usage(format!("cannot write `{}`: {e}", path.display())))?;
        }
    }
    if args.time_passes {
        let total: f64 = out.timings.iter().map(|(_, d)| d.as_secs_f64()).sum();
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "timings: {:.3} ms total", total * 1e3);
        for (name, d) in &out.timings {
            let _ = writeln!(err, "  {:<16} {:>10.3} ms", name, d.as_secs_f64() * 1e3);
        }
        let _ = write!(err, "{}", kiln::saturation_report(&out.saturation));
    }
    Ok(())
}

/// Writes `texts` to standard output, flushed: a failed write (a closed pipe, a full disk) is an
/// error, not a silent success.
fn print<T: AsRef<str>>(texts: impl IntoIterator<Item = T>) -> Result<(), Error> {
    let mut stdout = std::io::stdout().lock();
    texts
        .into_iter()
        .try_for_each(|t| stdout.write_all(t.as_ref().as_bytes()))
        .and_then(|()| stdout.flush())
        .map_err(|e| Error::Usage(format!("cannot write to standard output: {e}")))
}

/// Refuses to interpret `func` when the interpreter would hold more than `limit_mib` MiB.
fn check_memory(func: &kiln_ir::Func, limit_mib: u64) -> Result<(), Error> {
    let bytes = kiln_ir::interp::memory_bytes(func);
    if bytes > limit_mib << 20 {
        return Err(Error::Usage(format!(
            "interpreting `{}` needs about {} MiB, more than --memory-limit {limit_mib} MiB",
            func.name,
            bytes >> 20
        )));
    }
    Ok(())
}

fn name_and_path(spec: &str, flag: &str) -> Result<(String, PathBuf), Error> {
    let (name, path) =
        spec.split_once('=').ok_or_else(|| Error::Usage(format!("{flag} takes NAME=PATH, got `{spec}`")))?;
    Ok((name.to_string(), PathBuf::from(path)))
}

fn expect(file: &Path, dir: &Path, seed: u64, memory_limit: u64, format: ErrorFormat) -> Result<(), Error> {
    let (_, module) = check(file, format)?;
    module.funcs.iter().try_for_each(|f| check_memory(f, memory_limit))?;
    std::fs::create_dir_all(dir).map_err(|e| Error::Usage(format!("cannot create `{}`: {e}", dir.display())))?;
    let mut rng = kiln_ir::gen::Rng::new(seed);
    for f in &module.funcs {
        let inputs: Vec<_> = kiln_ir::gen::arguments(&mut rng, f, false);
        let results = kiln_ir::interp::run(f, &inputs);
        let names = f.params.iter().map(|p| &p.name).chain(&f.result_names);
        for (name, t) in names.zip(inputs.iter().chain(&results)) {
            let path = dir.join(format!("{}.{name}.bin", f.name));
            std::fs::write(&path, t.data.to_bytes())
                .map_err(|e| Error::Usage(format!("cannot write `{}`: {e}", path.display())))?;
        }
    }
    Ok(())
}

fn eval(args: EvalArgs, format: ErrorFormat) -> Result<(), Error> {
    use kiln_ir::interp::{Data, Tensor};
    let (_, module) = check(&args.file, format)?;
    let func = module.func(&args.function).ok_or_else(|| {
        let names: Vec<&str> = module.funcs.iter().map(|f| f.name.as_str()).collect();
        Error::Usage(format!("no exported function `{}`; exports are: {}", args.function, names.join(", ")))
    })?;
    check_memory(func, args.memory_limit)?;
    let read = |path: &Path, ty: &kiln_ir::TensorType, what: &str| -> Result<Tensor, Error> {
        let bytes = kiln::read_file(path, ty.size_bytes() as u64)?;
        if bytes.len() != ty.size_bytes() {
            return Err(Error::Usage(format!(
                "{what} is {ty}, {} bytes, but `{}` has {} bytes",
                ty.size_bytes(),
                path.display(),
                bytes.len()
            )));
        }
        let data = Data::from_bytes(ty.dtype, &bytes).expect("length checked");
        Ok(Tensor::new(ty.shape.clone(), data))
    };
    let mut inputs = vec![];
    let given: Vec<(String, PathBuf)> =
        args.inputs.iter().map(|s| name_and_path(s, "--input")).collect::<Result<_, _>>()?;
    if let Some((n, _)) = given.iter().enumerate().find_map(|(i, g)| given[..i].iter().find(|h| h.0 == g.0)) {
        return Err(Error::Usage(format!("--input {n}=... is given twice")));
    }
    for p in &func.params {
        let (_, path) = given
            .iter()
            .find(|(n, _)| *n == p.name)
            .ok_or_else(|| Error::Usage(format!("missing --input {}=PATH", p.name)))?;
        inputs.push(read(path, &p.ty, &format!("parameter `{}`", p.name))?);
    }
    if let Some((n, _)) = given.iter().find(|(n, _)| !func.params.iter().any(|p| p.name == *n)) {
        return Err(Error::Usage(format!("`{}` has no parameter `{n}`", func.name)));
    }
    let results = kiln_ir::interp::run(func, &inputs);
    let mut failures = vec![];
    for (spec, name, path) in args
        .compare
        .iter()
        .map(|s| name_and_path(s, "--compare").map(|(n, p)| (s, n, p)))
        .collect::<Result<Vec<_>, _>>()?
    {
        let Some(i) = func.result_names.iter().position(|r| *r == name) else {
            return Err(Error::Usage(format!("`{}` has no result `{name}` (in `{spec}`)", func.name)));
        };
        let actual = read(&path, func.ty(func.results[i]), &format!("result `{name}`"))?;
        if let Err(e) = kiln_ir::interp::compare(&results[i], &actual, kiln_ir::interp::Tolerance::Scaled(args.rtol)) {
            failures.push(format!("result `{name}` differs from the interpreter: {e}"));
        }
    }
    let lines = func.result_names.iter().zip(&results);
    print(lines.map(|(name, t)| format!("{name}: {} = {}\n", t.ty(), kiln_ir::interp::summary(t))))?;
    if !failures.is_empty() {
        return Err(Error::Usage(failures.join("\n")));
    }
    if !args.compare.is_empty() {
        print([format!("compiled results agree with the interpreter (rtol {:e})\n", args.rtol)])?;
    }
    Ok(())
}
