//! kiln-gpu-check: runs GPU bundles on this machine's GPU against expected results computed
//! elsewhere, and times them. It needs only the runtime and the CUDA driver; the bundles come
//! from `kiln build --target nvptx64-nvidia-cuda` and the data from `kiln expect` (raw files
//! DIR/FUNCTION.ARGUMENT.bin), both on any machine.
//!
//! Usage: kiln-gpu-check [OPTIONS] MANIFEST DATA_DIR ... (manifest and data directory in
//! pairs; `--help` lists the options). Exit status: 0 all agree, 1 a mismatch or error,
//! 2 no usable GPU. With `--emulate` the bundles run on kiln's PTX emulator instead, on any
//! machine: slow, every memory access checked; its times say nothing of a GPU.
//!
//! `kiln-gpu-check --bench [--runs N] MANIFEST ...` times every function on generated inputs
//! (uniform in [-1, 1), small integers), copied to the device once: per function the median
//! seconds of a run, the bandwidth its parameters and results alone would need at that time,
//! and the TFLOP/s of its matrix products (scripts/gpu-bench.sh compares them with PyTorch).

use kiln_runtime::gpu::{GpuBundle, GpuExecutor};
use kiln_runtime::DType;
use std::path::PathBuf;
use std::time::Instant;

/// What `--help` prints, and what a malformed command line gets.
const USAGE: &str = "\
Runs GPU bundles against expected results, or times them

Usage: kiln-gpu-check [OPTIONS] MANIFEST DATA_DIR [MANIFEST DATA_DIR ...]
       kiln-gpu-check --bench [OPTIONS] MANIFEST [MANIFEST ...]

DATA_DIR holds FUNCTION.ARGUMENT.bin files from `kiln expect`.

Options:
      --emulate              Run on kiln's PTX emulator instead of a GPU (slow; every access checked)
      --bench                Time every function on generated inputs instead of checking results
      --runs <N>             Timed runs per function, the median reported [default: 10]
      --rtol <R>             Relative tolerance of the comparison [default: 1e-4]
      --memory-limit <BYTES> Refuse a bundle whose calls need more device memory
      --public-key <PEM>     Open only bundles whose manifest signature verifies with this ed25519 key
  -h, --help                 Print help

Exit status: 0 all agree, 1 a mismatch or error, 2 no usable GPU.
";

struct Options {
    runs: usize,
    rtol: f64,
    memory_limit: Option<usize>,
    public_key: Option<String>,
    emulate: bool,
    bench: bool,
    pairs: Vec<(PathBuf, PathBuf)>,
}

/// The options of the command line, or None when it asked for help.
fn parse() -> Result<Option<Options>, String> {
    let mut o = Options {
        runs: 10,
        rtol: 1e-4,
        memory_limit: None,
        public_key: None,
        emulate: false,
        bench: false,
        pairs: vec![],
    };
    let mut args = std::env::args().skip(1);
    let mut paths = vec![];
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--runs" => o.runs = value("--runs")?.parse().map_err(|e| format!("--runs: {e}"))?,
            "--rtol" => o.rtol = value("--rtol")?.parse().map_err(|e| format!("--rtol: {e}"))?,
            "--emulate" => o.emulate = true,
            "--bench" => o.bench = true,
            "--memory-limit" => {
                o.memory_limit = Some(value("--memory-limit")?.parse().map_err(|e| format!("--memory-limit: {e}"))?)
            }
            "--public-key" => {
                let path = value("--public-key")?;
                let pem = std::fs::read_to_string(&path).map_err(|e| format!("--public-key `{path}`: {e}"))?;
                o.public_key = Some(pem);
            }
            "-h" | "--help" => return Ok(None),
            flag if flag.starts_with('-') => return Err(format!("unknown option `{flag}`\n\n{USAGE}")),
            _ => paths.push(PathBuf::from(a)),
        }
    }
    if o.bench && !paths.is_empty() {
        o.pairs = paths.into_iter().map(|p| (p, PathBuf::new())).collect();
    } else if paths.is_empty() || paths.len() % 2 != 0 {
        return Err(format!("give manifests and data folders in pairs\n\n{USAGE}"));
    } else {
        o.pairs = paths.chunks(2).map(|p| (p[0].clone(), p[1].clone())).collect();
    }
    Ok(Some(o))
}

/// Elements as f64 (bool and integers exactly).
fn values(dtype: DType, bytes: &[u8]) -> Vec<f64> {
    let n = dtype.size() as usize;
    bytes
        .chunks_exact(n)
        .map(|c| match dtype {
            DType::Bool | DType::U8 => c[0] as f64,
            DType::U32 => u32::from_le_bytes(c.try_into().unwrap()) as f64,
            DType::I32 => i32::from_le_bytes(c.try_into().unwrap()) as f64,
            DType::I64 => i64::from_le_bytes(c.try_into().unwrap()) as f64,
            DType::F16 => f64::from(half::f16::from_le_bytes(c.try_into().unwrap())),
            DType::BF16 => f64::from(half::bf16::from_le_bytes(c.try_into().unwrap())),
            DType::F32 => f32::from_le_bytes(c.try_into().unwrap()) as f64,
            DType::F64 => f64::from_le_bytes(c.try_into().unwrap()),
        })
        .collect()
}

/// The largest difference relative to the largest expected magnitude (floats), or whether all
/// elements are equal (integers, bool: 0 or infinity).
fn error(dtype: DType, got: &[u8], want: &[u8]) -> f64 {
    let (g, w) = (values(dtype, got), values(dtype, want));
    let exact = !matches!(dtype, DType::F16 | DType::BF16 | DType::F32 | DType::F64);
    let scale = w.iter().fold(1e-30f64, |m, x| m.max(x.abs()));
    g.iter().zip(&w).fold(0.0, |e: f64, (a, b)| {
        if a.is_nan() && b.is_nan() {
            e
        } else if exact {
            if a == b {
                e
            } else {
                f64::INFINITY
            }
        } else {
            e.max((a - b).abs() / scale)
        }
    })
}

/// Generated input bytes for `dtype`: uniform in [-1, 1) for floats, in [-8, 8) for signed
/// integers and [0, 16) for unsigned ones, 0 or 1 for bool (a fixed linear congruential
/// sequence).
fn generated(dtype: DType, bytes: usize, seed: &mut u64) -> Vec<u8> {
    let mut next = || {
        *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (*seed >> 11) as f64 / (1u64 << 53) as f64
    };
    let n = bytes / dtype.size() as usize;
    let mut out = Vec::with_capacity(bytes);
    for _ in 0..n {
        let u = next();
        match dtype {
            DType::Bool => out.push(u8::from(u < 0.5)),
            DType::U8 => out.push((u * 16.0) as u8),
            DType::U32 => out.extend(((u * 16.0) as u32).to_le_bytes()),
            DType::I32 => out.extend(((u * 16.0) as i32 - 8).to_le_bytes()),
            DType::I64 => out.extend(((u * 16.0) as i64 - 8).to_le_bytes()),
            DType::F16 => out.extend(half::f16::from_f64(u * 2.0 - 1.0).to_le_bytes()),
            DType::BF16 => out.extend(half::bf16::from_f64(u * 2.0 - 1.0).to_le_bytes()),
            DType::F32 => out.extend(((u * 2.0 - 1.0) as f32).to_le_bytes()),
            DType::F64 => out.extend((u * 2.0 - 1.0).to_le_bytes()),
        }
    }
    out
}

/// Times every function of `executor`'s bundle (see the module documentation).
fn bench(executor: &GpuExecutor, runs: usize) -> Result<(), String> {
    use kiln_runtime::gpu::Step;
    let module = &executor.bundle().module;
    let mut seed = 1;
    for f in &executor.bundle().functions {
        let inputs: Vec<Vec<u8>> = f.params.iter().map(|p| generated(p.dtype, p.bytes, &mut seed)).collect();
        let refs: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
        // One run first: module loading and library set-up are not timed.
        executor.time(&f.name, &refs, 1).map_err(|e| format!("{module}.{}: {e}", f.name))?;
        let mut times = executor.time(&f.name, &refs, runs).map_err(|e| format!("{module}.{}: {e}", f.name))?;
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        let bytes: usize = f.params.iter().chain(&f.results).map(|a| a.bytes).sum();
        let flops: f64 = f
            .launches
            .iter()
            .map(|s| match s {
                Step::Gemm(g) => g.flops(),
                // Products inside loops and conditionals run as often as the data says: not
                // counted.
                _ => 0.0,
            })
            .sum();
        println!(
            "{module}.{}: median {:.4} ms, {:.1} GB/s of parameters and results, {:.2} TFLOP/s of products{}",
            f.name,
            median * 1e3,
            bytes as f64 / median / 1e9,
            flops / median / 1e12,
            if executor.is_emulated() { " (emulated)" } else { "" }
        );
    }
    Ok(())
}

fn run(o: &Options) -> Result<bool, (i32, String)> {
    let mut ok = true;
    for (manifest, data) in &o.pairs {
        let open = kiln_runtime::OpenOptions {
            public_key: o.public_key.clone(),
            memory_limit: o.memory_limit.map(|m| m as u64),
        };
        let bundle = GpuBundle::open_with(manifest, &open).map_err(|e| (1, format!("{}: {e}", manifest.display())))?;
        let module = bundle.module.clone();
        let executor = if o.emulate {
            GpuExecutor::emulated(bundle, o.memory_limit)
        } else {
            GpuExecutor::new(bundle, 0, o.memory_limit)
        };
        let executor = executor.map_err(|e| match e {
            kiln_runtime::Error::Device(m) => (2, m),
            e => (1, e.to_string()),
        })?;
        if o.bench {
            bench(&executor, o.runs).map_err(|e| (1, e))?;
            continue;
        }
        for f in executor.bundle().functions.clone() {
            let read = |name: &str| {
                let path = data.join(format!("{}.{name}.bin", f.name));
                std::fs::read(&path).map_err(|e| (1, format!("{}: {e}", path.display())))
            };
            let inputs: Vec<Vec<u8>> = f.params.iter().map(|p| read(&p.name)).collect::<Result<_, _>>()?;
            let expected: Vec<Vec<u8>> = f.results.iter().map(|r| read(&r.name)).collect::<Result<_, _>>()?;
            let refs: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
            let mut outputs: Vec<Vec<u8>> = f.results.iter().map(|r| vec![0u8; r.bytes]).collect();
            let mut times = vec![];
            for _ in 0..o.runs.max(1) {
                let mut outs: Vec<&mut [u8]> = outputs.iter_mut().map(Vec::as_mut_slice).collect();
                let start = Instant::now();
                executor.call(&f.name, &refs, &mut outs).map_err(|e| (1, format!("{module}.{}: {e}", f.name)))?;
                times.push(start.elapsed().as_secs_f64());
            }
            times.sort_by(f64::total_cmp);
            let worst = f
                .results
                .iter()
                .zip(&outputs)
                .zip(&expected)
                .map(|((r, g), w)| error(r.dtype, g, w))
                .fold(0.0, f64::max);
            let agrees = worst <= o.rtol;
            ok &= agrees;
            println!(
                "{module}.{}: {} (max relative error {worst:.2e}), median {:.3} ms per call with copies{}",
                f.name,
                if agrees { "agrees" } else { "DIFFERS" },
                times[times.len() / 2] * 1e3,
                if o.emulate { " (emulated)" } else { "" }
            );
        }
    }
    Ok(ok)
}

fn main() {
    let options = match parse() {
        Ok(Some(o)) => o,
        Ok(None) => {
            print!("{USAGE}");
            return;
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    match run(&options) {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err((code, message)) => {
            eprintln!("error: {message}");
            std::process::exit(code);
        }
    }
}
